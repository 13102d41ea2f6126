//! The bodies of the mysimbdp HTTP API, as the host serves them and its clients read them:
//! one definition per request and answer, so a renamed field breaks both sides' builds
//! instead of leaving a blank column in the CLI. Only serde and utoipa here: a client links
//! none of the host's runtime.

/// Apps, their versions and dry runs.
pub mod apps;
/// Batch ingestion: uploads, jobs and statistics.
pub mod batch;
/// Data as a service: writes and pages of documents.
pub mod data;
/// The body of every error answer.
pub mod error;
/// The classes of a failed call into an app.
pub mod failure;
/// The host's own state: readiness.
pub mod meta;
/// Streams, their endpoints, figures and dead letters.
pub mod streams;
/// Tenants, their profiles and the hosts serving them.
pub mod tenants;
/// Quota usage and the platform's figures over time.
pub mod usage;

pub use apps::{
    Activate, AppDetail, AppKind, AppView, DryRunRequest, DryRunView, FailureView, Uploaded,
    UsageView, VersionView,
};
pub use batch::{BatchStats, JobStatus, JobSummary, JobView, Queued, QueuedFile, UnknownJobStatus};
pub use data::{Page, Rejected, SinkTarget, WriteResult};
pub use error::{ErrorBody, ErrorDetail, Written};
pub use failure::{FailureClass, UnknownFailureClass};
pub use meta::{Readiness, ServiceCheck};
pub use streams::{
    ConnectionView, CreateStream, CreatedStream, DeadLetter, EventView, IncompleteWindow, Replayed,
    SeriesPoint, StreamSeries, StreamStats, StreamStatus, StreamView,
};
pub use tenants::{
    CreateTenant, HostInfo, MeView, ProfileVersionView, Suspend, TenantStatus, TenantView,
    TenantWithToken,
};
pub use usage::{PlatformPoint, PlatformSeries, QuotaUsage, Used};
