//! Batch admission and jobs as callers see them: files staged under the profile's
//! constraints (count, size, content type), then — all of them or none — counted against the
//! daily quota and queued as jobs running the app's active version, pinned now; a refused
//! request leaves nothing staged. Also a tenant's jobs: one with its last attempt's log, the
//! listing, and replay. The HTTP handler only reads the form and hands each part over.

use super::{BatchContext, JobSpec, JobState, StageError, StagedFile};
use crate::platform::{LogEntry, Platform, StoreError, TenantRecord};
use crate::profile::BatchConstraints;
use crate::runtime::AppKind;
use futures_util::Stream;
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
        S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
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
                StageError::Io(e) => BatchError::Malformed(format!("{name}: {e:#}")),
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
        self,
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
        &self,
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
        let queue = &self.batch.queue;
        let config = &self.batch.config;
        queue
            .set_cap(&tenant.id, config.tenant_concurrency)
            .await
            .map_err(BatchError::Queue)?;
        let mut files = Vec::new();
        for pending in &self.staged {
            let spec = JobSpec {
                tenant: tenant.id.clone(),
                app: app_name.clone(),
                version: version.clone(),
                file: pending.file.id.clone(),
                name: pending.name.clone(),
                size: pending.file.size,
                content_type: pending.content_type.clone(),
                params: params.clone(),
            };
            let job = queue
                .enqueue(&spec, config.max_attempts)
                .await
                .map_err(BatchError::Queue)?;
            files.push(AdmittedFile {
                job,
                name: pending.name.clone(),
                size: pending.file.size,
                sha256: pending.file.sha256.clone(),
            });
        }
        tracing::info!(tenant = %tenant.id, app = %app_name, files = files.len(), bytes = total, "batch files queued");
        Ok(Admitted {
            app: app_name,
            version,
            files,
        })
    }

    /// Removes everything staged by this request: a refused request leaves nothing.
    pub async fn discard(self) {
        for pending in self.staged {
            if let Err(e) = self
                .batch
                .staging
                .remove(&self.tenant.id, &pending.file.id)
                .await
            {
                tracing::warn!(error = %format!("{e:#}"), "could not remove a refused upload");
            }
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
        job,
        log,
    })
}

/// Puts a dead-lettered or quarantined job of the tenant's back in the queue (attempts
/// reset, its file released from quarantine).
pub async fn replay(
    batch: &BatchContext,
    tenant: &TenantRecord,
    id: &str,
) -> Result<JobReport, BatchError> {
    let owned = owned_job(batch, tenant, id)
        .await?
        .ok_or_else(|| BatchError::NotFound(format!("no batch job {id:?}")))?;
    batch
        .staging
        .release(&tenant.id, &owned.spec.file)
        .await
        .map_err(BatchError::Staging)?;
    if !batch.queue.replay(id).await.map_err(BatchError::Queue)? {
        return Err(BatchError::Conflict(format!(
            "job {id} is {}: only dead-lettered or failed jobs are replayed",
            owned.status
        )));
    }
    job(batch, tenant, id).await
}

/// The tenant's jobs, newest first, at most `limit`, only those in `status` if given.
pub async fn jobs(
    batch: &BatchContext,
    tenant: &TenantRecord,
    status: Option<JobStatus>,
    limit: usize,
) -> Result<Vec<(String, JobState)>, BatchError> {
    // How far back the listing looks for jobs in `status`.
    const SCAN: usize = 10_000;
    batch
        .queue
        .list(&tenant.id, status, limit, SCAN)
        .await
        .map_err(BatchError::Queue)
}

/// The job `id` if it is the tenant's.
async fn owned_job(
    batch: &BatchContext,
    tenant: &TenantRecord,
    id: &str,
) -> Result<Option<JobState>, BatchError> {
    Ok(batch
        .queue
        .job(id)
        .await
        .map_err(BatchError::Queue)?
        .filter(|job| job.spec.tenant == tenant.id))
}
