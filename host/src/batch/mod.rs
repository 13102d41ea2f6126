//! Batch ingestion: staged files become jobs in Redis that workers on any host run through
//! the tenant's app into its coredms: admission (and the jobs as tenants see them), the
//! staging area, the job queue, the reconciler that rebuilds it from the jobs' durable
//! records, the workers.

pub mod admission;
pub mod queue;
pub mod reconciler;
pub mod staging;
pub mod worker;

pub use queue::{Claim, JobQueue, JobSpec, JobState, Outcome};
pub use staging::{StageError, StagedFile, Staging};
pub use worker::BatchContext;
