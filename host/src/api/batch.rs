//! `/v1/batch/…`: tenants upload files for their batch apps (streamed to staging, checked
//! against the profile's constraints, queued as jobs) and follow their jobs.

use super::auth::Tenant;
use super::error::{Json, Path, Query};
use super::{ApiError, AppState, ErrorBody};
use crate::batch::admission::{self, Admission, Admitted, BatchError, JobReport};
use crate::platform::BatchStats;
use axum::extract::State;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::http::StatusCode;
use mysimbdp_api::{JobStatus, JobSummary, JobView, Queued, QueuedFile};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The one place a batch operation's error becomes an answer.
impl From<BatchError> for ApiError {
    fn from(error: BatchError) -> Self {
        match error {
            BatchError::Malformed(message) => ApiError::bad_request(message),
            BatchError::TooLarge(message) => ApiError::too_large(message),
            BatchError::ContentTypeNotAllowed(message) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "content_type_not_allowed",
                message,
            ),
            BatchError::Conflict(message) => ApiError::conflict(message),
            BatchError::NotFound(message) => ApiError::not_found(message),
            BatchError::QuotaExceeded(message) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "quota_exceeded", message)
            }
            BatchError::Store(e) => e.into(),
            BatchError::Queue(e) => ApiError::unavailable(format!("{e:#}")),
            // A store that failed (a full disk, MongoDB unreachable) may take the retry.
            BatchError::Staging(e) => ApiError::unavailable(format!("{e:#}")),
        }
    }
}

impl From<Admitted> for Queued {
    fn from(admitted: Admitted) -> Self {
        Self {
            app: admitted.app,
            version: admitted.version,
            files: admitted
                .files
                .into_iter()
                .map(|f| QueuedFile {
                    job: f.job,
                    file: f.name,
                    size: f.size,
                    sha256: f.sha256,
                })
                .collect(),
        }
    }
}

impl From<JobReport> for JobView {
    fn from(report: JobReport) -> Self {
        let JobReport { id, job, log } = report;
        let record = log.as_ref().and_then(|l| l.job.clone());
        Self {
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
        }
    }
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
    let mut admission = Admission::new(&state.batch, &tenant);
    let mut app_name: Option<String> = None;
    let mut params = BTreeMap::new();
    let read: Result<(), ApiError> = async {
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|e| ApiError::bad_request(format!("reading the form: {e}")))?
        {
            let text_of =
                |e: axum::extract::multipart::MultipartError| ApiError::bad_request(e.to_string());
            match field.name().unwrap_or_default() {
                "app" => app_name = Some(field.text().await.map_err(text_of)?.trim().to_owned()),
                "param" => {
                    let text = field.text().await.map_err(text_of)?;
                    let (name, value) = text
                        .split_once('=')
                        .filter(|(n, _)| !n.is_empty())
                        .ok_or_else(|| {
                            ApiError::bad_request(format!("param {text:?} is not name=value"))
                        })?;
                    params.insert(name.to_owned(), value.to_owned());
                }
                "file" => {
                    let name = field.file_name().unwrap_or("upload").to_owned();
                    let content_type = admission::content_type(field.content_type(), &name);
                    let body = Box::pin(futures_util::stream::unfold(field, |mut field| async {
                        match field.chunk().await {
                            Ok(Some(chunk)) => Some((Ok(chunk), field)),
                            Ok(None) => None,
                            Err(e) => Some((Err(e), field)),
                        }
                    }));
                    admission.stage(name, content_type, body).await?;
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
        admission.discard().await;
        return Err(e);
    }
    let admitted = admission.queue(app_name, params).await?;
    Ok((StatusCode::ACCEPTED, Json(admitted.into())))
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
    Ok(Json(
        admission::job(&state.batch, &tenant, &id).await?.into(),
    ))
}

/// Put a dead-lettered or quarantined job back in the queue (attempts reset).
#[utoipa::path(post, path = "/v1/batch/jobs/{id}/replay", tag = "batch",
    security(("tenant_token" = [])),
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn replay(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    Ok(Json(
        admission::replay(&state.batch, &tenant, &id).await?.into(),
    ))
}

/// Query of a job listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    /// Only jobs with this status.
    #[param(value_type = Option<String>, pattern = "^(queued|running|retrying|paused|waiting|done|failed|dead)$")]
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
    let jobs = admission::jobs(&state.batch, &tenant, status, limit).await?;
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
