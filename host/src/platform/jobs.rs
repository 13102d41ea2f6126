//! Batch jobs' durable records: one per accepted file, written before the upload is answered.
//! The Redis queue is a fast index over them that the reconciler rebuilds when Redis loses
//! its data; the record is what the tenant sees and what decides, after any crash or outage,
//! whether a job still has to run. A record that reached a terminal status (`done`, `failed`,
//! `dead`) changes again only through a replay.

use super::{Platform, StoreResult};
use crate::documents::IdScheme;
use futures_util::TryStreamExt;
use mongodb::bson::{self, DateTime, doc};
use mongodb::options::ReturnDocument;
use mysimbdp_api::JobStatus;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a job is: which tenant's file goes through which app version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The tenant.
    pub tenant: String,
    /// The app's name.
    pub app: String,
    /// The app version (digest) pinned at upload time.
    pub version: String,
    /// Where the staged file is.
    pub file: String,
    /// The name the tenant uploaded it under.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its content type.
    pub content_type: Option<String>,
    /// App parameters.
    pub params: BTreeMap<String, String>,
    /// How the documents' ids derive: fixed when the job is created, so every attempt and
    /// replay of it writes the same ids (jobs from before ids were versioned are hashed).
    #[serde(default)]
    pub ids: IdScheme,
}

/// A batch job's durable record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchJob {
    /// The job id (24 hex digits).
    #[serde(rename = "_id")]
    pub id: String,
    /// The tenant (also in `spec`; kept at the top for the indexes).
    pub tenant: String,
    /// The job.
    pub spec: JobSpec,
    /// Where it is in its life, as last recorded.
    pub status: JobStatus,
    /// Attempts so far, as last recorded.
    pub attempts: u32,
    /// Attempts it may use before it is dead-lettered.
    pub max_attempts: u32,
    /// The last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it was accepted.
    pub created: DateTime,
    /// When it last changed.
    pub updated: DateTime,
}

/// The statuses a job leaves only through a replay.
fn terminal() -> Vec<&'static str> {
    JobStatus::ALL
        .iter()
        .filter(|s| s.is_terminal())
        .map(|s| s.as_str())
        .collect()
}

/// The update that records a job's status, attempts and error now.
fn progress(status: JobStatus, attempts: u32, error: Option<&str>) -> bson::Document {
    doc! { "$set": {
        "status": status.as_str(),
        "attempts": i64::from(attempts),
        "error": error.map(bson::Bson::from).unwrap_or(bson::Bson::Null),
        "updated": DateTime::now(),
    } }
}

impl Platform {
    /// The job `id`, whoever's it is.
    pub async fn job_record(&self, id: &str) -> StoreResult<Option<BatchJob>> {
        Ok(self.jobs.find_one(doc! { "_id": id }).await?)
    }

    /// The tenant's newest jobs, at most `limit`, only those in `status` if given.
    pub async fn job_records(
        &self,
        tenant: &str,
        status: Option<JobStatus>,
        limit: usize,
    ) -> StoreResult<Vec<BatchJob>> {
        let mut filter = doc! { "tenant": tenant };
        if let Some(status) = status {
            filter.insert("status", status.as_str());
        }
        Ok(self
            .jobs
            .find(filter)
            .sort(doc! { "created": -1, "_id": -1 })
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .await?
            .try_collect()
            .await?)
    }

    /// Records a job's progress (`running`, `retrying`, `paused`, `waiting`, `queued`) unless
    /// it already ended: a late report from an abandoned attempt never reopens a finished job.
    pub async fn note_job(
        &self,
        id: &str,
        status: JobStatus,
        attempts: u32,
        error: Option<&str>,
    ) -> StoreResult<()> {
        self.jobs
            .update_one(
                doc! { "_id": id, "status": { "$nin": terminal() } },
                progress(status, attempts, error),
            )
            .await?;
        Ok(())
    }

    /// Records how a job ended (`status` is terminal), unless it already had: then the job
    /// keeps the first ending, which is returned — two attempts of one job (one abandoned after
    /// a lost claim) both finishing settle it once. `None` when there is no record (a job
    /// queued before records existed).
    pub async fn finish_job(
        &self,
        id: &str,
        status: JobStatus,
        attempts: u32,
        error: Option<&str>,
    ) -> StoreResult<Option<JobStatus>> {
        debug_assert!(status.is_terminal());
        let updated = self
            .jobs
            .find_one_and_update(
                doc! { "_id": id, "status": { "$nin": terminal() } },
                progress(status, attempts, error),
            )
            .return_document(ReturnDocument::After)
            .await?;
        if let Some(job) = updated {
            return Ok(Some(job.status));
        }
        Ok(self.job_record(id).await?.map(|job| job.status))
    }

    /// Puts a failed or dead-lettered job of the tenant's back to `queued`, attempts reset;
    /// false when it is not (any longer) in one of those states.
    pub async fn replay_job(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        let replayable: Vec<&str> = JobStatus::ALL
            .iter()
            .filter(|s| s.is_replayable())
            .map(|s| s.as_str())
            .collect();
        let replayed = self
            .jobs
            .update_one(
                doc! { "_id": id, "tenant": tenant, "status": { "$in": replayable } },
                doc! { "$set": {
                    "status": JobStatus::Queued.as_str(),
                    "attempts": 0_i64,
                    "error": bson::Bson::Null,
                    "updated": DateTime::now(),
                } },
            )
            .await?;
        Ok(replayed.modified_count == 1)
    }

    /// Jobs that have not ended, in id order after `after`, at most `limit`: what the
    /// reconciler checks against the queue.
    pub async fn unfinished_jobs(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<BatchJob>> {
        let mut filter = doc! { "status": { "$nin": terminal() } };
        if let Some(after) = after {
            filter.insert("_id", doc! { "$gt": after });
        }
        Ok(self
            .jobs
            .find(filter)
            .sort(doc! { "_id": 1 })
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .await?
            .try_collect()
            .await?)
    }
}

impl Platform {
    /// Records the ending the queue reached on its own for `seen` (a job reaped on its last
    /// attempt), unless the record changed since it was read (a replay came in between).
    pub async fn adopt_ending(
        &self,
        seen: &BatchJob,
        status: JobStatus,
        error: Option<&str>,
    ) -> StoreResult<bool> {
        let adopted = self
            .jobs
            .update_one(
                doc! { "_id": &seen.id, "status": seen.status.as_str(), "updated": seen.updated },
                doc! { "$set": {
                    "status": status.as_str(),
                    "error": error.map(bson::Bson::from).unwrap_or(bson::Bson::Null),
                    "updated": DateTime::now(),
                } },
            )
            .await?;
        Ok(adopted.modified_count == 1)
    }
}

impl Platform {
    /// Records the jobs of one upload. If only some could be written, those are removed again
    /// (best effort) before the error is answered: a refused upload leaves no job behind.
    pub async fn insert_jobs(&self, jobs: &[BatchJob]) -> StoreResult<()> {
        if let Err(e) = self.jobs.insert_many(jobs).await {
            let ids: Vec<&str> = jobs.iter().map(|job| job.id.as_str()).collect();
            if let Err(cleanup) = self.jobs.delete_many(doc! { "_id": { "$in": ids } }).await {
                tracing::warn!(error = %cleanup, "could not remove the records of a refused upload");
            }
            return Err(e.into());
        }
        Ok(())
    }
}
