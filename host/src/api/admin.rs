//! `/v1/admin/tenants…`: the operator creates, inspects, suspends, resumes and deletes
//! tenants, rotates their tokens and sets their profiles.

use super::auth::Operator;
use super::error::{Json, Path, Query};
use super::streams::SeriesQuery;
use super::views::{ProfileVersionView, TenantView, TenantWithToken};
use super::{ApiError, AppState, ErrorBody};
use crate::platform::TenantStatus;
use crate::profile::{Format, Profile, ProfileError};
use crate::registry::HostInfo;
use crate::tenants::{self, TenantError, WithToken};
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use mysimbdp_api::{CreateTenant, PlatformSeries, QuotaUsage, Suspend};

fn profile_error(error: ProfileError) -> ApiError {
    ApiError::invalid_field("invalid_profile", error.field.clone(), error.to_string())
}

/// The one place a tenant operation's error becomes an answer.
impl From<TenantError> for ApiError {
    fn from(error: TenantError) -> Self {
        match error {
            TenantError::InvalidId(message) => {
                ApiError::invalid_field("invalid_name", "id".into(), message)
            }
            TenantError::InvalidProfile(e) => profile_error(e),
            TenantError::Store(e) => e.into(),
            TenantError::Host(e) => ApiError::internal(format!("{e:#}")),
        }
    }
}

impl From<WithToken> for TenantWithToken {
    fn from(created: WithToken) -> Self {
        Self {
            tenant: TenantView::from(&created.tenant),
            token: created.token,
        }
    }
}

/// Create a tenant; its token is in the response, once.
#[utoipa::path(post, path = "/v1/admin/tenants", tag = "admin",
    security(("operator_token" = [])),
    request_body = CreateTenant,
    responses(
        (status = 201, body = TenantWithToken),
        (status = 409, description = "The id is taken", body = ErrorBody),
        (status = 422, description = "Bad id or profile", body = ErrorBody),
    ))]
pub async fn create_tenant(
    State(state): State<AppState>,
    _: Operator,
    Json(request): Json<CreateTenant>,
) -> Result<(StatusCode, Json<TenantWithToken>), ApiError> {
    // Errors name the field as it is in this request's body: `profile.stream.…`.
    let in_body = |mut e: ProfileError| {
        e.field = format!("profile.{}", e.field)
            .trim_end_matches('.')
            .to_owned();
        profile_error(e)
    };
    tenants::check_id(&request.id)?;
    let profile = match request.profile {
        Some(value) => Profile::parse(&value.to_string(), Format::Json).map_err(in_body)?,
        None => Profile::default(),
    };
    let created = tenants::create(&state.platform, &state.apps.ceiling(), &request.id, profile)
        .await
        .map_err(|e| match e {
            TenantError::InvalidProfile(e) => in_body(e),
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// List tenants.
#[utoipa::path(get, path = "/v1/admin/tenants", tag = "admin",
    security(("operator_token" = [])),
    responses((status = 200, body = Vec<TenantView>)))]
pub async fn list_tenants(
    State(state): State<AppState>,
    _: Operator,
) -> Result<Json<Vec<TenantView>>, ApiError> {
    let tenants = state.platform.list_tenants().await?;
    Ok(Json(tenants.iter().map(TenantView::from).collect()))
}

/// Show a tenant.
#[utoipa::path(get, path = "/v1/admin/tenants/{id}", tag = "admin",
    security(("operator_token" = [])),
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = TenantView), (status = 404, body = ErrorBody)))]
pub async fn show_tenant(
    State(state): State<AppState>,
    _: Operator,
    Path(id): Path<String>,
) -> Result<Json<TenantView>, ApiError> {
    Ok(Json(TenantView::from(&state.platform.tenant(&id).await?)))
}

/// Delete a tenant with its profiles, apps and streams, and its broker vhost and user (with
/// whatever its queues still held). Its database of documents is kept for the operator to
/// archive or drop.
#[utoipa::path(delete, path = "/v1/admin/tenants/{id}", tag = "admin",
    security(("operator_token" = [])),
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_tenant(
    State(state): State<AppState>,
    _: Operator,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    tenants::delete(&state.platform, &state.streams.broker, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Suspend a tenant: its requests are refused with 403 and its work pauses.
#[utoipa::path(post, path = "/v1/admin/tenants/{id}/suspend", tag = "admin",
    security(("operator_token" = [])),
    params(("id" = String, Path, description = "Tenant id")),
    request_body(description = "Optional: no body, `null` or a `Suspend`",
        content((Option<Suspend> = "application/json"))),
    responses(
        (status = 200, body = TenantView),
        (status = 400, description = "The body is not a suspension", body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
pub async fn suspend_tenant(
    State(state): State<AppState>,
    _: Operator,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<TenantView>, ApiError> {
    let body = body?;
    // No body and `null` both mean "no reason", as the document says.
    let reason = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice::<Option<Suspend>>(&body)
            .map_err(|e| ApiError::bad_request(format!("the body is not a suspension: {e}")))?
            .and_then(|suspend| suspend.reason)
    };
    let tenant = tenants::set_status(&state.platform, &id, TenantStatus::Suspended, reason).await?;
    Ok(Json(TenantView::from(&tenant)))
}

/// Resume a suspended tenant.
#[utoipa::path(post, path = "/v1/admin/tenants/{id}/resume", tag = "admin",
    security(("operator_token" = [])),
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = TenantView), (status = 404, body = ErrorBody)))]
pub async fn resume_tenant(
    State(state): State<AppState>,
    _: Operator,
    Path(id): Path<String>,
) -> Result<Json<TenantView>, ApiError> {
    let tenant = tenants::set_status(&state.platform, &id, TenantStatus::Active, None).await?;
    Ok(Json(TenantView::from(&tenant)))
}

/// Issue a new token; the old one stops working at once.
#[utoipa::path(post, path = "/v1/admin/tenants/{id}/token", tag = "admin",
    security(("operator_token" = [])),
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = TenantWithToken), (status = 404, body = ErrorBody)))]
pub async fn rotate_token(
    State(state): State<AppState>,
    _: Operator,
    Path(id): Path<String>,
) -> Result<Json<TenantWithToken>, ApiError> {
    Ok(Json(
        tenants::rotate_token(&state.platform, &id).await?.into(),
    ))
}

/// Set a tenant's profile: a new version, in effect on every host at once. The body is
/// JSON, or TOML with `Content-Type: application/toml`.
#[utoipa::path(put, path = "/v1/admin/tenants/{id}/profile", tag = "admin",
    security(("operator_token" = [])),
    params(("id" = String, Path, description = "Tenant id")),
    request_body(description = "The profile (schema: /v1/schemas/tenant-profile.json)",
        content((Object = "application/json"), (String = "application/toml"))),
    responses(
        (status = 200, body = TenantView),
        (status = 404, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, description = "Refused, with the field", body = ErrorBody),
    ))]
pub async fn set_profile(
    State(state): State<AppState>,
    _: Operator,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<TenantView>, ApiError> {
    let body = String::from_utf8(body?.to_vec())
        .map_err(|_| ApiError::bad_request("the profile is not UTF-8 text"))?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let format = match content_type.split(';').next().map(str::trim) {
        Some("application/json") => Format::Json,
        Some("application/toml" | "text/toml" | "text/x-toml") => Format::Toml,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("a profile is application/json or application/toml, not {other}"),
            ));
        }
        None => Format::Json,
    };
    let profile = Profile::parse(&body, format).map_err(profile_error)?;
    let tenant = tenants::set_profile(&state.platform, &state.apps.ceiling(), &id, profile).await?;
    Ok(Json(TenantView::from(&tenant)))
}

/// A tenant's profile versions, newest first.
#[utoipa::path(get, path = "/v1/admin/tenants/{id}/profile/versions", tag = "admin",
    security(("operator_token" = [])),
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = Vec<ProfileVersionView>), (status = 404, body = ErrorBody)))]
pub async fn profile_versions(
    State(state): State<AppState>,
    _: Operator,
    Path(id): Path<String>,
) -> Result<Json<Vec<ProfileVersionView>>, ApiError> {
    let versions = state.platform.profile_versions(&id).await?;
    Ok(Json(
        versions.iter().map(ProfileVersionView::from).collect(),
    ))
}

/// The live hosts, from their etcd leases: a killed host disappears when its lease expires.
#[utoipa::path(get, path = "/v1/admin/hosts", tag = "admin",
    security(("operator_token" = [])),
    responses((status = 200, body = Vec<HostInfo>), (status = 503, body = ErrorBody)))]
pub async fn hosts(
    State(state): State<AppState>,
    _: Operator,
) -> Result<Json<Vec<HostInfo>>, ApiError> {
    let mut hosts = state.registry.hosts().await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "registry_unavailable",
            format!("the registry (etcd) is unavailable: {e:#}"),
        )
    })?;
    hosts.sort_by(|a, b| a.started_at.cmp(&b.started_at));
    Ok(Json(hosts))
}

/// Ingestion statistics of the whole platform, per tenant.
#[utoipa::path(get, path = "/v1/admin/stats", tag = "admin",
    security(("operator_token" = [])),
    responses((status = 200, body = std::collections::BTreeMap<String, crate::platform::BatchStats>)))]
pub async fn stats(
    State(state): State<AppState>,
    _: Operator,
) -> Result<Json<std::collections::BTreeMap<String, crate::platform::BatchStats>>, ApiError> {
    Ok(Json(state.platform.batch_stats(None).await?))
}

/// Every tenant's use of its quotas now (as `GET /v1/usage` answers each).
#[utoipa::path(get, path = "/v1/admin/usage", tag = "admin",
    security(("operator_token" = [])),
    responses((status = 200, body = Vec<QuotaUsage>)))]
pub async fn usage(
    State(state): State<AppState>,
    _: Operator,
) -> Result<Json<Vec<QuotaUsage>>, ApiError> {
    let usage = crate::usage::of_all(&state.platform, &state.streams.quota).await?;
    Ok(Json(usage))
}

/// The whole platform's work over time: stream messages per second, dead letters and
/// errors from every stream's reports, batch files done and failed, documents written.
#[utoipa::path(get, path = "/v1/admin/series", tag = "admin",
    security(("operator_token" = [])),
    params(SeriesQuery),
    responses((status = 200, body = PlatformSeries)))]
pub async fn series(
    State(state): State<AppState>,
    _: Operator,
    Query(query): Query<SeriesQuery>,
) -> Result<Json<PlatformSeries>, ApiError> {
    let (window_secs, points) = query.checked()?;
    let series = crate::usage::platform_series(&state.platform, window_secs, points).await?;
    Ok(Json(series))
}
