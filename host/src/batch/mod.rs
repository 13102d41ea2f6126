//! Batch ingestion: staged files become jobs in Redis that workers on any host run through
//! the tenant's app into its coredms. So far: the job queue and the staging area.

pub mod queue;
pub mod staging;

pub use queue::{Claim, JobQueue, JobSpec, JobState, Outcome};
pub use staging::{StageError, StagedFile, Staging};
