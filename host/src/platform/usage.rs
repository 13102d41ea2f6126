//! The ingestion log (one entry per ingestion: who, what, how much, how it ended) and daily
//! usage counters that enforce per-day quotas atomically across hosts.

use super::{Platform, StoreResult, is_duplicate_key, series};
use futures_util::TryStreamExt;
use mongodb::Collection;
use mongodb::bson::{DateTime, Document, doc};
use mongodb::options::ReturnDocument;
use mysimbdp_api::{FailureClass, JobStatus};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One ingestion, as logged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogEntry {
    /// The tenant.
    pub tenant: String,
    /// What ingested: `daas`, later `batch` and `stream`.
    pub source: String,
    /// The collection written.
    pub collection: String,
    /// The database written (and which coredms, for the record).
    pub database: String,
    /// `shared` or the dedicated coredms's id.
    pub coredms: String,
    /// Documents written now.
    pub documents: i64,
    /// Documents that were already there (a replay): success in effect.
    pub duplicates: i64,
    /// Documents refused, with reasons in the answer to the caller.
    pub rejected: i64,
    /// Bytes received.
    pub bytes: i64,
    /// Start.
    pub started_at: DateTime,
    /// End.
    pub ended_at: DateTime,
    /// `ok`, `partial` (some refused or stopped by a quota) or `failed`.
    pub status: String,
    /// Why it failed or stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Batch: the job, the file and the app version; fuel burnt; the failure class; the
    /// app's quality report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobRecord>,
}

/// What a batch ingestion adds to its log entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job id.
    pub id: String,
    /// Which attempt.
    pub attempt: i64,
    /// The file's name as uploaded.
    pub file: String,
    /// The app.
    pub app: String,
    /// Its version.
    pub version: String,
    /// Fuel burnt.
    pub fuel: i64,
    /// The failure class, if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<FailureClass>,
    /// The app's quality report (records in, bad, violations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<Document>,
}

/// A quota left no room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaExceeded {
    /// Bytes already used today.
    pub used: u64,
    /// The day's limit.
    pub limit: u64,
}

/// The UTC day daily quotas count (`YYYY-MM-DD`).
pub fn today() -> String {
    DateTime::now()
        .try_to_rfc3339_string()
        .unwrap_or_default()
        .chars()
        .take(10)
        .collect()
}

impl Platform {
    /// Today's daily counters: bytes per `(tenant, channel)`, of one tenant or of all.
    pub async fn daily_usage(
        &self,
        tenant: Option<&str>,
    ) -> StoreResult<BTreeMap<(String, String), u64>> {
        let mut filter = doc! { "day": today() };
        if let Some(tenant) = tenant {
            filter.insert("tenant", tenant);
        }
        let counters: Vec<Document> = self.usage.find(filter).await?.try_collect().await?;
        Ok(counters
            .iter()
            .filter_map(|c| {
                let tenant = c.get_str("tenant").ok()?.to_owned();
                let channel = c.get_str("channel").ok()?.to_owned();
                let bytes = c.get_i64("bytes").unwrap_or(0).max(0) as u64;
                Some(((tenant, channel), bytes))
            })
            .collect())
    }

    /// Apps per tenant, of one tenant or of all; a tenant without apps is absent.
    pub async fn app_counts(&self, tenant: Option<&str>) -> StoreResult<BTreeMap<String, u64>> {
        per_tenant(&self.apps, tenant).await
    }

    /// Streams per tenant, of one tenant or of all; a tenant without streams is absent.
    pub async fn stream_counts(&self, tenant: Option<&str>) -> StoreResult<BTreeMap<String, u64>> {
        per_tenant(&self.streams(), tenant).await
    }

    /// The latest log entry of a batch job.
    pub async fn job_log(&self, tenant: &str, job: &str) -> StoreResult<Option<LogEntry>> {
        Ok(self
            .log
            .find_one(doc! { "tenant": tenant, "job.id": job })
            .sort(doc! { "ended_at": -1 })
            .await?)
    }

    /// Appends to the ingestion log.
    pub async fn log_ingestion(&self, entry: &LogEntry) -> StoreResult<()> {
        self.log.insert_one(entry).await?;
        Ok(())
    }

    /// Adds `bytes` to the tenant's usage of `channel` today, unless that would pass `limit`.
    /// Atomic across hosts: the conditional upsert either increments or, when the condition
    /// fails on the existing counter, collides with it on `_id`.
    pub async fn reserve_daily(
        &self,
        tenant: &str,
        channel: &str,
        bytes: u64,
        limit: u64,
    ) -> StoreResult<Result<u64, QuotaExceeded>> {
        let day = today();
        let id = format!("{tenant}:{channel}:{day}");
        let room = i64::try_from(limit.saturating_sub(bytes)).unwrap_or(i64::MAX);
        if bytes > limit {
            return Ok(Err(QuotaExceeded { used: 0, limit }));
        }
        let bytes_i = i64::try_from(bytes).unwrap_or(i64::MAX);
        let updated = self
            .usage
            .find_one_and_update(
                doc! { "_id": &id, "bytes": { "$lte": room } },
                doc! {
                    "$inc": { "bytes": bytes_i },
                    "$setOnInsert": { "tenant": tenant, "channel": channel, "day": &day },
                },
            )
            .upsert(true)
            .return_document(ReturnDocument::After)
            .await;
        match updated {
            Ok(Some(counter)) => Ok(Ok(counter.get_i64("bytes").unwrap_or(0) as u64)),
            Ok(None) => Ok(Ok(bytes)),
            Err(e) if is_duplicate_key(&e) => {
                let used = self
                    .usage
                    .find_one(doc! { "_id": &id })
                    .await?
                    .and_then(|c| c.get_i64("bytes").ok())
                    .unwrap_or(0);
                Ok(Err(QuotaExceeded {
                    used: used as u64,
                    limit,
                }))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Records of `collection` per tenant (of one tenant or of all), counted by MongoDB: one
/// answer of a row per tenant, however many records there are.
async fn per_tenant<T: Send + Sync>(
    collection: &Collection<T>,
    tenant: Option<&str>,
) -> StoreResult<BTreeMap<String, u64>> {
    let mut pipeline = Vec::with_capacity(2);
    if let Some(tenant) = tenant {
        pipeline.push(doc! { "$match": { "tenant": tenant } });
    }
    pipeline.push(doc! { "$group": { "_id": "$tenant", "records": { "$sum": 1 } } });
    let rows: Vec<Document> = collection.aggregate(pipeline).await?.try_collect().await?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let tenant = row.get_str("_id").ok()?.to_owned();
            Some((tenant, series::count(row, "records")))
        })
        .collect())
}

// The figures are an API answer (`/v1/stats`): they live in the API types crate.
pub use mysimbdp_api::BatchStats;

/// Log entries read for statistics at most (the newest).
const STATS_WINDOW: i64 = 100_000;

impl Platform {
    /// Batch statistics of one tenant, or of the whole platform per tenant.
    pub async fn batch_stats(
        &self,
        tenant: Option<&str>,
    ) -> StoreResult<BTreeMap<String, BatchStats>> {
        let mut filter = doc! { "source": "batch" };
        if let Some(tenant) = tenant {
            filter.insert("tenant", tenant);
        }
        let entries: Vec<LogEntry> = self
            .log
            .find(filter)
            .sort(doc! { "ended_at": -1 })
            .limit(STATS_WINDOW)
            .await?
            .try_collect()
            .await?;
        let mut durations: BTreeMap<String, Vec<f64>> = Default::default();
        let mut stats: BTreeMap<String, BatchStats> = Default::default();
        for entry in entries {
            let s = stats.entry(entry.tenant.clone()).or_default();
            s.documents += entry.documents.max(0) as u64;
            // Batch entries carry a job status; anything else is counted in no column.
            match entry.status.parse::<JobStatus>() {
                Ok(JobStatus::Done) => {
                    s.done += 1;
                    s.files += 1;
                    s.bytes += entry.bytes.max(0) as u64;
                    let ms = (entry.ended_at.timestamp_millis()
                        - entry.started_at.timestamp_millis()) as f64;
                    durations.entry(entry.tenant).or_default().push(ms);
                }
                Ok(JobStatus::Failed) => {
                    s.failed += 1;
                    s.files += 1;
                }
                Ok(JobStatus::Dead) => {
                    s.dead += 1;
                    s.files += 1;
                }
                _ => {}
            }
        }
        for (tenant, s) in stats.iter_mut() {
            let finished = s.done + s.failed + s.dead;
            s.success_rate = if finished == 0 {
                1.0
            } else {
                s.done as f64 / finished as f64
            };
            if let Some(list) = durations.get_mut(tenant) {
                list.sort_by(f64::total_cmp);
                s.avg_duration_ms = list.iter().sum::<f64>() / list.len() as f64;
                let rank = ((list.len() as f64 * 0.95).ceil() as usize).clamp(1, list.len());
                s.p95_duration_ms = list[rank - 1];
            }
        }
        Ok(stats)
    }
}
