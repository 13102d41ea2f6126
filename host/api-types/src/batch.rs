//! Batch ingestion: uploads, jobs and their statistics.

use crate::FailureClass;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use utoipa::ToSchema;

/// Where a batch job is in its life. The queue's Lua scripts (host `batch/queue.rs`) write
/// these names into the job's Redis hash; the host parses them back into this enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for a worker.
    Queued,
    /// A worker runs it.
    Running,
    /// An attempt failed in a retryable way; it waits for the next one.
    Retrying,
    /// Put aside while its tenant cannot run work (suspended, over quota); it runs later.
    Paused,
    /// Waiting for the platform: a service the job needs (the platform database, the
    /// tenant's coredms, the registry) is unreachable. It runs when the service is back; the
    /// platform's own outage spends none of the job's attempts.
    Waiting,
    /// Ingested.
    Done,
    /// Failed for good (quarantined): replayable.
    Failed,
    /// Dead-lettered after its last attempt: replayable.
    Dead,
}

impl JobStatus {
    /// Every status, in the order of a job's life.
    pub const ALL: [Self; 8] = [
        Self::Queued,
        Self::Running,
        Self::Retrying,
        Self::Paused,
        Self::Waiting,
        Self::Done,
        Self::Failed,
        Self::Dead,
    ];

    /// The status's name on the wire and in Redis.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Paused => "paused",
            Self::Waiting => "waiting",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }

    /// Whether the job has ended: nothing moves it again except a replay.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Done | Self::Failed | Self::Dead)
    }

    /// Whether a replay may put it back in the queue (failed or dead-lettered).
    pub fn is_replayable(self) -> bool {
        matches!(self, Self::Failed | Self::Dead)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

// Statuses compare with their names, so a check reads `status == "done"` as well as with
// the variant.
impl PartialEq<str> for JobStatus {
    fn eq(&self, name: &str) -> bool {
        self.as_str() == name
    }
}

impl PartialEq<&str> for JobStatus {
    fn eq(&self, name: &&str) -> bool {
        self.as_str() == *name
    }
}

/// A name that is no job status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownJobStatus(pub String);

impl fmt::Display for UnknownJobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not a job status", self.0)
    }
}

impl std::error::Error for UnknownJobStatus {}

impl FromStr for JobStatus {
    type Err = UnknownJobStatus;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == name)
            .ok_or_else(|| UnknownJobStatus(name.to_owned()))
    }
}

/// One accepted file and its job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueuedFile {
    /// The job ingesting it.
    pub job: String,
    /// The file's name as uploaded.
    pub file: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256.
    pub sha256: String,
}

/// The answer to an upload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Queued {
    /// The app and the version the jobs will run (pinned now).
    pub app: String,
    /// The version.
    pub version: String,
    /// One job per file.
    pub files: Vec<QueuedFile>,
}

/// A batch job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    /// Its id.
    pub id: String,
    /// `queued`, `running`, `retrying`, `paused`, `waiting` (for the platform), `done`, `failed` (quarantined) or `dead`.
    #[schema(value_type = String)]
    pub status: JobStatus,
    /// Attempts so far.
    pub attempts: u32,
    /// The file.
    pub file: String,
    /// Its size.
    pub size: u64,
    /// The app and version.
    pub app: String,
    /// The version.
    pub version: String,
    /// The last error.
    pub error: Option<String>,
    /// The failure class of the last attempt.
    #[schema(value_type = Option<String>)]
    pub error_class: Option<FailureClass>,
    /// Documents written by the last attempt, whatever its outcome.
    pub documents: Option<i64>,
    /// Documents of the last attempt refused as they were emitted (`bad-output`: a key with
    /// NUL, a null `_id`, over 16 MiB…); the others were written. The first reason is in
    /// `error` when the job itself succeeded.
    pub rejected: Option<i64>,
    /// The app's quality report of the last attempt.
    #[schema(value_type = Option<Object>)]
    pub quality: Option<serde_json::Value>,
}

/// One job in a listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobSummary {
    /// Its id.
    pub id: String,
    /// Its status.
    #[schema(value_type = String)]
    pub status: JobStatus,
    /// Attempts so far.
    pub attempts: u32,
    /// The file.
    pub file: String,
    /// The app.
    pub app: String,
    /// The last error.
    pub error: Option<String>,
}

/// Batch ingestion figures, from the ingestion log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchStats {
    /// Files whose job finished (done, failed for good, or dead-lettered).
    pub files: u64,
    /// Bytes of the files ingested.
    pub bytes: u64,
    /// Documents written (by every attempt).
    pub documents: u64,
    /// Jobs done.
    pub done: u64,
    /// Jobs failed for good (quarantined).
    pub failed: u64,
    /// Jobs dead-lettered after their last retry (replayable).
    pub dead: u64,
    /// done / (done + failed + dead); 1 when nothing finished yet.
    pub success_rate: f64,
    /// Mean duration of a successful job, in ms.
    pub avg_duration_ms: f64,
    /// 95th percentile of the duration of a successful job, in ms.
    pub p95_duration_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_wire_form() {
        for status in JobStatus::ALL {
            let json = serde_json::to_value(status).unwrap_or_default();
            assert_eq!(json, serde_json::Value::from(status.as_str()));
            assert_eq!(status.as_str().parse(), Ok(status));
        }
        assert!("finished".parse::<JobStatus>().is_err());
        let terminal: Vec<_> = JobStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(
            terminal,
            [JobStatus::Done, JobStatus::Failed, JobStatus::Dead]
        );
    }
}
