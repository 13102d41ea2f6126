//! `/v1/batch/…`: tenants upload files for their batch apps (streamed to staging, checked
//! against the profile's constraints, queued as jobs) and follow their jobs.

use super::auth::Tenant;
use super::error::{Json, Path, Query};
use super::{ApiError, AppState, ErrorBody};
use crate::batch::{JobSpec, StageError, StagedFile};
use crate::platform::BatchStats;
use crate::profile::BatchConstraints;
use crate::runtime::AppKind;
use axum::extract::State;
use axum::extract::multipart::{Field, Multipart, MultipartRejection};
use axum::http::StatusCode;
use mysimbdp_api::{JobStatus, JobSummary, JobView, Queued, QueuedFile};
use serde::Deserialize;
use std::collections::BTreeMap;

struct Pending {
    staged: Vec<(String, Option<String>, StagedFile)>,
}

impl Pending {
    /// Removes everything staged by this request: a refused request leaves nothing.
    async fn discard(self, state: &AppState, tenant: &str) {
        for (_, _, file) in self.staged {
            if let Err(e) = state.batch.staging.remove(tenant, &file.id).await {
                tracing::warn!(error = %format!("{e:#}"), "could not remove a refused upload");
            }
        }
    }
}

fn content_type_of(field: &Field<'_>, name: &str) -> String {
    if let Some(declared) = field.content_type()
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

/// Upload files for a batch app: a multipart form with `app` (the app's name), any number of
/// `param` fields (`name=value`) and one or more `file` parts. Files stream to the staging
/// area; the profile's constraints (file count, size, content type, bytes per day) are
/// checked, and a refused request leaves nothing behind. Each file becomes a job running the
/// app's active version, pinned now.
#[utoipa::path(post, path = "/v1/batch/files", tag = "batch",
    security(("tenant_token" = [])),
    request_body(content_type = "multipart/form-data", description = "app, param…, file…"),
    responses(
        (status = 202, description = "Queued", body = Queued),
        (status = 400, body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
        (status = 409, description = "Not a batch app, or no active version", body = ErrorBody),
        (status = 413, description = "Too many files, or a file too large", body = ErrorBody),
        (status = 415, description = "A content type the profile does not allow", body = ErrorBody),
        (status = 429, description = "Over the daily bytes", body = ErrorBody),
    ))]
pub async fn upload(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<Queued>), ApiError> {
    let mut multipart = multipart.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let constraints = tenant.profile.batch.clone();
    let mut pending = Pending { staged: Vec::new() };
    let mut app_name: Option<String> = None;
    let mut params = BTreeMap::new();
    let read = async {
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|e| ApiError::bad_request(format!("reading the form: {e}")))?
        {
            match field.name().unwrap_or_default() {
                "app" => {
                    app_name = Some(field.text().await.map_err(|e| ApiError::bad_request(e.to_string()))?.trim().to_owned());
                }
                "param" => {
                    let text = field.text().await.map_err(|e| ApiError::bad_request(e.to_string()))?;
                    let (name, value) = text.split_once('=').filter(|(n, _)| !n.is_empty()).ok_or_else(|| {
                        ApiError::bad_request(format!("param {text:?} is not name=value"))
                    })?;
                    params.insert(name.to_owned(), value.to_owned());
                }
                "file" => {
                    if pending.staged.len() as u32 >= constraints.max_files_per_request {
                        return Err(ApiError::too_large(format!(
                            "at most {} files per request (batch.max_files_per_request)",
                            constraints.max_files_per_request
                        )));
                    }
                    let name = field.file_name().unwrap_or("upload").to_owned();
                    let content_type = content_type_of(&field, &name);
                    if !allowed(&constraints, &content_type) {
                        return Err(ApiError::new(
                            StatusCode::UNSUPPORTED_MEDIA_TYPE,
                            "content_type_not_allowed",
                            format!(
                                "{name}: {content_type} is not allowed (batch.allowed_content_types: {})",
                                constraints.allowed_content_types.join(", ")
                            ),
                        ));
                    }
                    let limit = constraints.max_file_mib * 1024 * 1024;
                    let body = Box::pin(futures_util::stream::unfold(field, |mut field| async move {
                        match field.chunk().await {
                            Ok(Some(chunk)) => Some((Ok(chunk), field)),
                            Ok(None) => None,
                            Err(e) => Some((Err(e), field)),
                        }
                    }));
                    let staged = state.batch.staging.stage(&tenant.id, body, limit).await.map_err(|e| match e {
                        StageError::TooLarge { .. } => ApiError::too_large(format!(
                            "{name} is larger than {} MiB (batch.max_file_mib)",
                            constraints.max_file_mib
                        )),
                        StageError::Io(e) => ApiError::bad_request(format!("{name}: {e:#}")),
                    })?;
                    pending.staged.push((name, Some(content_type), staged));
                }
                other => {
                    return Err(ApiError::bad_request(format!(
                        "unknown form field {other:?}: send app, param and file"
                    )));
                }
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = read {
        pending.discard(&state, &tenant.id).await;
        return Err(e);
    }
    match queue_files(&state, &tenant, app_name, params, &pending).await {
        Ok(queued) => Ok((StatusCode::ACCEPTED, Json(queued))),
        Err(e) => {
            pending.discard(&state, &tenant.id).await;
            Err(e)
        }
    }
}

async fn queue_files(
    state: &AppState,
    tenant: &crate::platform::TenantRecord,
    app_name: Option<String>,
    params: BTreeMap<String, String>,
    pending: &Pending,
) -> Result<Queued, ApiError> {
    let app_name = app_name.ok_or_else(|| ApiError::bad_request("the form has no app field"))?;
    if pending.staged.is_empty() {
        return Err(ApiError::bad_request("the form has no file"));
    }
    let app = state.platform.app(&tenant.id, &app_name).await?;
    if app.kind != AppKind::Batch {
        return Err(ApiError::conflict(format!(
            "app {app_name:?} is a {} app, not a batch app",
            app.kind
        )));
    }
    let version = app
        .active
        .clone()
        .ok_or_else(|| ApiError::conflict(format!("app {app_name:?} has no active version")))?;
    let total: u64 = pending.staged.iter().map(|(_, _, f)| f.size).sum();
    let limit = tenant.profile.batch.max_mib_per_day * 1024 * 1024;
    if let Err(exceeded) = state
        .platform
        .reserve_daily(&tenant.id, "batch", total, limit)
        .await?
    {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "quota_exceeded",
            format!(
                "these {total} bytes would pass the daily batch quota of {} MiB ({} bytes used today; batch.max_mib_per_day)",
                exceeded.limit / (1024 * 1024),
                exceeded.used
            ),
        ));
    }
    let queue = &state.batch.queue;
    queue
        .set_cap(&tenant.id, state.config.batch.tenant_concurrency)
        .await
        .map_err(|e| ApiError::unavailable(format!("{e:#}")))?;
    let mut files = Vec::new();
    for (name, content_type, staged) in &pending.staged {
        let spec = JobSpec {
            tenant: tenant.id.clone(),
            app: app_name.clone(),
            version: version.clone(),
            file: staged.id.clone(),
            name: name.clone(),
            size: staged.size,
            content_type: content_type.clone(),
            params: params.clone(),
        };
        let job = queue
            .enqueue(&spec, state.config.batch.max_attempts)
            .await
            .map_err(|e| ApiError::unavailable(format!("{e:#}")))?;
        files.push(QueuedFile {
            job,
            file: name.clone(),
            size: staged.size,
            sha256: staged.sha256.clone(),
        });
    }
    tracing::info!(tenant = %tenant.id, app = %app_name, files = files.len(), bytes = total, "batch files queued");
    Ok(Queued {
        app: app_name,
        version,
        files,
    })
}

/// A batch job of the calling tenant: its status and, once an attempt ended, its documents,
/// failure class and the app's quality report.
#[utoipa::path(get, path = "/v1/batch/jobs/{id}", tag = "batch",
    security(("tenant_token" = [])),
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody)))]
pub async fn job(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let not_found = || ApiError::not_found(format!("no batch job {id:?}"));
    if id.len() != 24 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(not_found());
    }
    let job = state
        .batch
        .queue
        .job(&id)
        .await
        .map_err(|e| ApiError::unavailable(format!("{e:#}")))?
        .filter(|job| job.spec.tenant == tenant.id)
        .ok_or_else(not_found)?;
    let log = state.platform.job_log(&tenant.id, &id).await?;
    let record = log.as_ref().and_then(|l| l.job.clone());
    Ok(Json(JobView {
        id,
        status: job.status,
        attempts: job.attempts,
        file: job.spec.name,
        size: job.spec.size,
        app: job.spec.app,
        version: job.spec.version,
        error: job
            .error
            .or_else(|| log.as_ref().and_then(|l| l.error.clone())),
        error_class: record.as_ref().and_then(|r| r.error_class),
        documents: log.as_ref().map(|l| l.documents),
        rejected: log.as_ref().map(|l| l.rejected),
        quality: record
            .and_then(|r| r.quality)
            .map(|q| mongodb::bson::Bson::Document(q).into_relaxed_extjson()),
    }))
}

/// Put a dead-lettered or quarantined job back in the queue (attempts reset).
#[utoipa::path(post, path = "/v1/batch/jobs/{id}/replay", tag = "batch",
    security(("tenant_token" = [])),
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn replay(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let queue = &state.batch.queue;
    let owned = queue
        .job(&id)
        .await
        .map_err(|e| ApiError::unavailable(format!("{e:#}")))?
        .filter(|job| job.spec.tenant == tenant.0.id)
        .ok_or_else(|| ApiError::not_found(format!("no batch job {id:?}")))?;
    state
        .batch
        .staging
        .release(&tenant.0.id, &owned.spec.file)
        .await
        .map_err(|e| ApiError::internal(format!("{e:#}")))?;
    if !queue
        .replay(&id)
        .await
        .map_err(|e| ApiError::unavailable(format!("{e:#}")))?
    {
        return Err(ApiError::conflict(format!(
            "job {id} is {}: only dead-lettered or failed jobs are replayed",
            owned.status
        )));
    }
    job(State(state), tenant, Path(id)).await
}

/// Query of a job listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    /// Only jobs with this status.
    #[param(value_type = Option<String>, pattern = "^(queued|running|retrying|paused|done|failed|dead)$")]
    pub status: Option<String>,
    /// At most this many, newest first (default 100, 1-1000; others are refused).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// The calling tenant's batch jobs, newest first.
#[utoipa::path(get, path = "/v1/batch/jobs", tag = "batch",
    security(("tenant_token" = [])),
    params(JobsQuery),
    responses((status = 200, body = Vec<JobSummary>), (status = 400, body = ErrorBody)))]
pub async fn jobs(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Query(query): Query<JobsQuery>,
) -> Result<Json<Vec<JobSummary>>, ApiError> {
    let status = match &query.status {
        Some(status) => Some(status.parse::<JobStatus>().map_err(|_| {
            let names: Vec<_> = JobStatus::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::bad_request(format!(
                "status {status:?} is not one of {}",
                names.join(", ")
            ))
        })?),
        None => None,
    };
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit = {limit}: it must be 1..=1000"
        )));
    }
    let jobs = state
        .batch
        .queue
        .list(&tenant.id, status, limit, 10_000)
        .await
        .map_err(|e| ApiError::unavailable(format!("{e:#}")))?;
    Ok(Json(
        jobs.into_iter()
            .map(|(id, job)| JobSummary {
                id,
                status: job.status,
                attempts: job.attempts,
                file: job.spec.name,
                app: job.spec.app,
                error: job.error,
            })
            .collect(),
    ))
}

/// The calling tenant's ingestion statistics.
#[utoipa::path(get, path = "/v1/stats", tag = "batch",
    security(("tenant_token" = [])),
    responses((status = 200, body = BatchStats)))]
pub async fn stats(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
) -> Result<Json<BatchStats>, ApiError> {
    let mut stats = state.platform.batch_stats(Some(&tenant.id)).await?;
    Ok(Json(stats.remove(&tenant.id).unwrap_or_else(|| {
        BatchStats {
            success_rate: 1.0,
            ..BatchStats::default()
        }
    })))
}
