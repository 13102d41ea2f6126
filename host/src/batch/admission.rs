//! Batch admission and jobs as callers see them: files staged under the profile's
//! constraints (count, size, content type), then — all of them or none — counted against the
//! daily quota, recorded durably in the platform database and queued as jobs running the
//! app's active version, pinned now; a refused request leaves nothing staged. An accepted
//! upload is a promise: once its records are written it is answered as accepted even if Redis
//! is away (the reconciler queues what the queue missed). Also a tenant's jobs: one with its last attempt's log, the
//! listing, and replay. The HTTP handler only reads the form and hands each part over.

use super::queue::new_job_id;
use super::{BatchContext, JobSpec, JobState, StageError, StagedFile, Staging};
use crate::documents::IdScheme;
use crate::platform::{BatchJob, LogEntry, Platform, StoreError, TenantRecord};
use crate::profile::BatchConstraints;
use crate::runtime::AppKind;
use futures_util::Stream;
use mongodb::bson::DateTime;
use mysimbdp_api::JobStatus;
use std::collections::BTreeMap;

/// Why an upload was refused or a job operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// A malformed request (a form without app or file, a bad part).
    #[error("{0}")]
    Malformed(String),
    /// Too many files, or a file too large.
    #[error("{0}")]
    TooLarge(String),
    /// A content type the profile does not allow.
    #[error("{0}")]
    ContentTypeNotAllowed(String),
    /// Not a batch app, no active version, or a job that cannot be replayed.
    #[error("{0}")]
    Conflict(String),
    /// No such job (of this tenant).
    #[error("{0}")]
    NotFound(String),
    /// The daily bytes would be passed.
    #[error("{0}")]
    QuotaExceeded(String),
    /// The platform database refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The job queue failed or is unreachable.
    #[error("the job queue: {0:#}")]
    Queue(#[source] anyhow::Error),
    /// The staging area failed.
    #[error("the staging area: {0:#}")]
    Staging(#[source] anyhow::Error),
}

/// One file staged for a request.
struct Pending {
    name: String,
    content_type: Option<String>,
    file: StagedFile,
}

/// One accepted file and its job.
#[derive(Debug, Clone)]
pub struct AdmittedFile {
    /// The job ingesting it.
    pub job: String,
    /// The file's name as uploaded.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256.
    pub sha256: String,
}

/// An accepted upload.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// The app.
    pub app: String,
    /// The version the jobs run (pinned now).
    pub version: String,
    /// One job per file.
    pub files: Vec<AdmittedFile>,
}

/// The files of one upload request, staged as they arrive and queued together.
pub struct Admission<'a> {
    batch: &'a BatchContext,
    tenant: &'a TenantRecord,
    staged: Vec<Pending>,
}

impl<'a> Admission<'a> {
    /// An upload of `tenant`'s, nothing staged yet.
    pub fn new(batch: &'a BatchContext, tenant: &'a TenantRecord) -> Self {
        Self {
            batch,
            tenant,
            staged: Vec::new(),
        }
    }

    fn constraints(&self) -> &BatchConstraints {
        &self.tenant.profile.batch
    }

    /// Stages one file of the request, refused over the profile's file count, content types
    /// or file size (the partial file is then removed).
    pub async fn stage<S, E>(
        &mut self,
        name: String,
        content_type: String,
        body: S,
    ) -> Result<(), BatchError>
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        let constraints = self.constraints();
        if self.staged.len() as u32 >= constraints.max_files_per_request {
            return Err(BatchError::TooLarge(format!(
                "at most {} files per request (batch.max_files_per_request)",
                constraints.max_files_per_request
            )));
        }
        if !allowed(constraints, &content_type) {
            return Err(BatchError::ContentTypeNotAllowed(format!(
                "{name}: {content_type} is not allowed (batch.allowed_content_types: {})",
                constraints.allowed_content_types.join(", ")
            )));
        }
        let max_file_mib = constraints.max_file_mib;
        let limit = max_file_mib * 1024 * 1024;
        let file = self
            .batch
            .staging
            .stage(&self.tenant.id, body, limit)
            .await
            .map_err(|e| match e {
                StageError::TooLarge { .. } => BatchError::TooLarge(format!(
                    "{name} is larger than {max_file_mib} MiB (batch.max_file_mib)"
                )),
                StageError::Body(e) => BatchError::Malformed(format!("{name}: {e:#}")),
                StageError::Store(e) => BatchError::Staging(e.context(format!("staging {name}"))),
            })?;
        self.staged.push(Pending {
            name,
            content_type: Some(content_type),
            file,
        });
        Ok(())
    }

    /// Queues a job per staged file running `app`'s active version with `params`, after the
    /// daily quota took all of their bytes. Refused or failed, the staged files are removed.
    pub async fn queue(
        mut self,
        app: Option<String>,
        params: BTreeMap<String, String>,
    ) -> Result<Admitted, BatchError> {
        match self.enqueue(app, params).await {
            Ok(admitted) => Ok(admitted),
            Err(e) => {
                self.discard().await;
                Err(e)
            }
        }
    }

    async fn enqueue(
        &mut self,
        app_name: Option<String>,
        params: BTreeMap<String, String>,
    ) -> Result<Admitted, BatchError> {
        let tenant = self.tenant;
        let app_name =
            app_name.ok_or_else(|| BatchError::Malformed("the form has no app field".into()))?;
        if self.staged.is_empty() {
            return Err(BatchError::Malformed("the form has no file".into()));
        }
        let version = active_batch_version(&self.batch.platform, tenant, &app_name).await?;
        let total: u64 = self.staged.iter().map(|p| p.file.size).sum();
        let limit = tenant.profile.batch.max_mib_per_day * 1024 * 1024;
        if let Err(exceeded) = self
            .batch
            .platform
            .reserve_daily(&tenant.id, "batch", total, limit)
            .await?
        {
            return Err(BatchError::QuotaExceeded(format!(
                "these {total} bytes would pass the daily batch quota of {} MiB ({} bytes used \
                 today; batch.max_mib_per_day)",
                exceeded.limit / (1024 * 1024),
                exceeded.used
            )));
        }
        let config = &self.batch.config;
        let mut records = Vec::new();
        for pending in &self.staged {
            let now = DateTime::now();
            records.push(BatchJob {
                id: new_job_id().map_err(BatchError::Queue)?,
                tenant: tenant.id.clone(),
                spec: JobSpec {
                    tenant: tenant.id.clone(),
                    app: app_name.clone(),
                    version: version.clone(),
                    file: pending.file.id.clone(),
                    name: pending.name.clone(),
                    size: pending.file.size,
                    content_type: pending.content_type.clone(),
                    params: params.clone(),
                    ids: IdScheme::CURRENT,
                },
                status: JobStatus::Queued,
                attempts: 0,
                max_attempts: config.max_attempts.max(1),
                error: None,
                created: now,
                updated: now,
            });
        }
        self.batch.platform.insert_jobs(&records).await?;
        // The files are the jobs' now: nothing removes them if this request goes away.
        let staged = std::mem::take(&mut self.staged);
        self.queue_records(&records).await;
        let files = records
            .iter()
            .zip(&staged)
            .map(|(record, pending)| AdmittedFile {
                job: record.id.clone(),
                name: pending.name.clone(),
                size: pending.file.size,
                sha256: pending.file.sha256.clone(),
            })
            .collect::<Vec<_>>();
        tracing::info!(tenant = %tenant.id, app = %app_name, files = files.len(), bytes = total, "batch files queued");
        Ok(Admitted {
            app: app_name,
            version,
            files,
        })
    }

    /// Queues the recorded jobs. Redis failing here does not undo the upload: the records
    /// are written, so the jobs are accepted, and the reconciler queues them once Redis
    /// answers.
    async fn queue_records(&self, records: &[BatchJob]) {
        let queue = &self.batch.queue;
        if let Err(e) = queue
            .set_cap(&self.tenant.id, self.batch.config.tenant_concurrency)
            .await
        {
            tracing::warn!(tenant = %self.tenant.id, error = %format!("{e:#}"), "could not set the tenant's job cap in Redis");
        }
        for record in records {
            if let Err(e) = queue
                .put(&record.id, &record.spec, record.max_attempts, 0, false)
                .await
            {
                tracing::warn!(job = %record.id, error = %format!("{e:#}"), "the job is recorded but not queued yet; the reconciler will queue it");
            }
        }
    }

    /// Removes everything staged by this request: a refused request leaves nothing.
    pub async fn discard(mut self) {
        let staged = std::mem::take(&mut self.staged);
        remove_all(&self.batch.staging, &self.tenant.id, staged).await;
    }
}

impl Drop for Admission<'_> {
    /// A request dropped before its jobs were recorded (its upload timed out, the host shut
    /// down with it in flight, the client went away) leaves nothing staged either: what it
    /// staged is removed in the background.
    fn drop(&mut self) {
        let staged = std::mem::take(&mut self.staged);
        if staged.is_empty() {
            return;
        }
        let (staging, tenant) = (self.batch.staging.clone(), self.tenant.id.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { remove_all(&staging, &tenant, staged).await });
        }
    }
}

/// Removes the files a request staged.
async fn remove_all(staging: &Staging, tenant: &str, staged: Vec<Pending>) {
    for pending in staged {
        if let Err(e) = staging.remove(tenant, &pending.file.id).await {
            tracing::warn!(error = %format!("{e:#}"), "could not remove a refused upload");
        }
    }
}

/// The active version of `app`, which must be a batch app.
async fn active_batch_version(
    platform: &Platform,
    tenant: &TenantRecord,
    app_name: &str,
) -> Result<String, BatchError> {
    let app = platform.app(&tenant.id, app_name).await?;
    if app.kind != AppKind::Batch {
        return Err(BatchError::Conflict(format!(
            "app {app_name:?} is a {} app, not a batch app",
            app.kind
        )));
    }
    app.active
        .ok_or_else(|| BatchError::Conflict(format!("app {app_name:?} has no active version")))
}

/// The content type of an uploaded file: the declared one (parameters dropped), unless it is
/// missing or the generic `application/octet-stream`; then one guessed from the name.
pub fn content_type(declared: Option<&str>, name: &str) -> String {
    if let Some(declared) = declared
        && declared != "application/octet-stream"
    {
        return declared
            .split(';')
            .next()
            .unwrap_or(declared)
            .trim()
            .to_ascii_lowercase();
    }
    let extension = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match extension.as_deref() {
        Some("csv") => "text/csv",
        Some("json") => "application/json",
        Some("ndjson" | "jsonl") => "application/x-ndjson",
        Some("txt" | "log") => "text/plain",
        Some("xml") => "application/xml",
        _ => "application/octet-stream",
    }
    .to_owned()
}

fn allowed(constraints: &BatchConstraints, content_type: &str) -> bool {
    constraints.allowed_content_types.iter().any(|pattern| {
        pattern == "*/*"
            || pattern == content_type
            || pattern
                .strip_suffix("/*")
                .is_some_and(|kind| content_type.split('/').next() == Some(kind))
    })
}

/// A job with the ingestion log of its last attempt.
#[derive(Debug, Clone)]
pub struct JobReport {
    /// Its id.
    pub id: String,
    /// Its state in the queue.
    pub job: JobState,
    /// The log of its last attempt, once one ended.
    pub log: Option<LogEntry>,
}

/// The tenant's job `id` (another tenant's is simply not found).
pub async fn job(
    batch: &BatchContext,
    tenant: &TenantRecord,
    id: &str,
) -> Result<JobReport, BatchError> {
    let not_found = || BatchError::NotFound(format!("no batch job {id:?}"));
    if id.len() != 24 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(not_found());
    }
    let job = owned_job(batch, tenant, id).await?.ok_or_else(not_found)?;
    let log = batch.platform.job_log(&tenant.id, id).await?;
    Ok(JobReport {
        id: id.to_owned(),
        job: job.state,
        log,
    })
}

/// Puts a dead-lettered or quarantined job of the tenant's back in the queue (attempts
/// reset, its file released from quarantine). The replay is recorded before it is queued:
/// if Redis fails in between, the reconciler queues it.
pub async fn replay(
    batch: &BatchContext,
    tenant: &TenantRecord,
    id: &str,
) -> Result<JobReport, BatchError> {
    let owned = owned_job(batch, tenant, id)
        .await?
        .ok_or_else(|| BatchError::NotFound(format!("no batch job {id:?}")))?;
    let conflict = |status: JobStatus| {
        BatchError::Conflict(format!(
            "job {id} is {status}: only dead-lettered or failed jobs are replayed"
        ))
    };
    if !owned.state.status.is_replayable() {
        return Err(conflict(owned.state.status));
    }
    batch
        .staging
        .release(&tenant.id, &owned.state.spec.file)
        .await
        .map_err(BatchError::Staging)?;
    match owned.record {
        Some(record) => {
            if !batch.platform.replay_job(&tenant.id, id).await? {
                return Err(conflict(owned.state.status));
            }
            if let Err(e) = batch
                .queue
                .put(id, &record.spec, record.max_attempts, 0, true)
                .await
            {
                tracing::warn!(job = %id, error = %format!("{e:#}"), "the replay is recorded but not queued yet; the reconciler will queue it");
            }
        }
        // A job queued before durable records existed lives in the queue only.
        None => {
            if !batch.queue.replay(id).await.map_err(BatchError::Queue)? {
                return Err(conflict(owned.state.status));
            }
        }
    }
    job(batch, tenant, id).await
}

/// The tenant's jobs, newest first, at most `limit`, only those in `status` if given, as
/// their durable records say.
pub async fn jobs(
    batch: &BatchContext,
    tenant: &TenantRecord,
    status: Option<JobStatus>,
    limit: usize,
) -> Result<Vec<(String, JobState)>, BatchError> {
    Ok(batch
        .platform
        .job_records(&tenant.id, status, limit)
        .await?
        .into_iter()
        .map(|record| (record.id.clone(), state_of(record)))
        .collect())
}

/// A job as the tenant sees it, and its durable record if it has one.
struct Owned {
    state: JobState,
    record: Option<BatchJob>,
}

/// The job `id` if it is the tenant's: its durable record, with the queue's live state (a
/// reaped attempt, a retry's error) over it while the job has not ended and Redis answers.
/// A job queued before records existed is read from the queue alone.
async fn owned_job(
    batch: &BatchContext,
    tenant: &TenantRecord,
    id: &str,
) -> Result<Option<Owned>, BatchError> {
    let record = batch
        .platform
        .job_record(id)
        .await?
        .filter(|record| record.tenant == tenant.id);
    let Some(record) = record else {
        let queued = batch
            .queue
            .job(id)
            .await
            .map_err(BatchError::Queue)?
            .filter(|job| job.spec.tenant == tenant.id);
        return Ok(queued.map(|state| Owned {
            state,
            record: None,
        }));
    };
    let mut state = state_of(record.clone());
    if !record.status.is_terminal()
        && let Ok(Some(live)) = batch.queue.job(id).await
    {
        state.status = live.status;
        state.attempts = live.attempts;
        state.error = live.error;
    }
    Ok(Some(Owned {
        state,
        record: Some(record),
    }))
}

/// A durable record as a job state.
fn state_of(record: BatchJob) -> JobState {
    JobState {
        spec: record.spec,
        status: record.status,
        attempts: record.attempts,
        error: record.error,
    }
}
