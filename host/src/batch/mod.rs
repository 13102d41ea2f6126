//! Batch ingestion: staged files become jobs in Redis that workers on any host run through
//! the tenant's app into its coredms. So far: the job queue.

pub mod queue;

pub use queue::{Claim, JobQueue, JobSpec, JobState, Outcome};
