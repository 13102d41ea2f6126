//! `/v1/tenant` and `/v1/apps…`: the calling tenant, its apps and their versions. Every
//! lookup is scoped to the caller, so another tenant's app is simply "not found".

use super::auth::Tenant;
use super::error::{Json, Path, Query};
use super::views::{
    self, AppDetail, AppView, AppViewExt, DryRunView, DryRunViewExt, MeView, TenantView, Uploaded,
    VersionView, VersionViewExt,
};
use super::{ApiError, AppState, ErrorBody};
use crate::app_store::UploadOptions;
use crate::config::{SandboxOverrides, mib_to_bytes};
use crate::tenant_apps::{self, AppsError};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use futures_util::StreamExt;
use mysimbdp_api::{Activate, DryRunRequest, QuotaUsage};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

/// The one place an app operation's error becomes an answer.
impl From<AppsError> for ApiError {
    fn from(error: AppsError) -> Self {
        match error {
            AppsError::InvalidName(message) => {
                ApiError::invalid_field("invalid_name", "name".into(), message)
            }
            AppsError::InvalidLimits(message) => {
                ApiError::invalid_field("invalid_limits", "sandbox".into(), message)
            }
            AppsError::InvalidPreset(message) => {
                ApiError::invalid_field("invalid_preset", "preset".into(), message)
            }
            AppsError::TooLarge(message) => ApiError::too_large(message),
            AppsError::Conflict(message) => ApiError::conflict(message),
            AppsError::Admit(e) => e.into(),
            AppsError::Store(e) => e.into(),
        }
    }
}

/// The calling tenant, its profile and the limits its apps run under.
#[utoipa::path(get, path = "/v1/tenant", tag = "tenant",
    security(("tenant_token" = [])),
    responses((status = 200, body = MeView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn me(State(state): State<AppState>, Tenant(tenant): Tenant) -> Json<MeView> {
    Json(MeView {
        tenant: TenantView::from(&tenant),
        limits: views::limits(&state.apps.tenant_limits(&tenant)),
    })
}

/// What the calling tenant has used against its profile's quotas: today's batch and daas
/// bytes, the current stream quota window, its apps and streams.
#[utoipa::path(get, path = "/v1/usage", tag = "tenant",
    security(("tenant_token" = [])),
    responses((status = 200, body = QuotaUsage), (status = 401, body = ErrorBody)))]
pub async fn usage(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
) -> Result<Json<QuotaUsage>, ApiError> {
    let usage = crate::usage::of_tenant(&state.platform, &state.streams.quota, &tenant).await?;
    Ok(Json(usage))
}

/// The tenant's apps.
#[utoipa::path(get, path = "/v1/apps", tag = "apps",
    security(("tenant_token" = [])),
    responses((status = 200, body = Vec<AppView>), (status = 401, body = ErrorBody)))]
pub async fn list_apps(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
) -> Result<Json<Vec<AppView>>, ApiError> {
    let apps = state.platform.list_apps(&tenant.id).await?;
    Ok(Json(
        apps.iter()
            .map(|app| AppView::new(app, state.apps.app_limits(&tenant, app)))
            .collect(),
    ))
}

/// A WebAssembly component, as bytes (documentation only: the handler streams the body).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // never built: it only names the body's schema
pub struct Component(Vec<u8>);

/// Query of an upload.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// Make the new version active (default true; a new app's first version always is).
    pub activate: Option<bool>,
    /// The sandbox preset the version runs under (`rust`, `python`, `js`, or another the
    /// operator offers); default: the operator's default limits.
    pub preset: Option<String>,
}

/// Upload a component as a new version of an app (created on first upload). The component
/// is validated, type-checked against the batch or stream world, compiled and probed
/// before anything is stored. As `multipart/form-data`, the body carries the component in
/// a `component` part and, optionally, a representative input in a `sample` part (a file
/// for a batch app, messages one per line for a stream app): the version is refused if the
/// app fails on it under the limits it will run with.
#[utoipa::path(put, path = "/v1/apps/{name}", tag = "apps",
    security(("tenant_token" = [])),
    params(("name" = String, Path, description = "App name"), UploadQuery),
    request_body(description = "The component (either binary content type; none means wasm), \
        or a multipart form with `component` and an optional `sample`",
        content((Component = "application/wasm"), (Component = "application/octet-stream"),
            (Component = "multipart/form-data"))),
    responses(
        (status = 201, description = "A new version", body = Uploaded),
        (status = 200, description = "This component already was a version of the app", body = Uploaded),
        (status = 400, body = ErrorBody),
        (status = 409, description = "The app exists with the other kind", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, description = "Not an admissible app; `class` says why", body = ErrorBody),
    ))]
pub async fn upload(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(name): Path<String>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Uploaded>), ApiError> {
    tenant_apps::check_name(&name)?;
    let max_mib = state.config.sandbox.engine.max_component_mib;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    let essence = content_type
        .as_deref()
        .map(|t| t.split(';').next().unwrap_or_default().trim());
    let (wasm, sample) = match essence {
        None | Some("application/wasm" | "application/octet-stream") => (
            read_capped(&headers, body, mib_to_bytes(max_mib), max_mib).await?,
            None,
        ),
        Some("multipart/form-data") => {
            let max_sample_kib = state.config.apps.probe_sample_max_kib;
            read_form(
                content_type.as_deref().unwrap_or_default(),
                body,
                max_mib,
                max_sample_kib,
            )
            .await?
        }
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "upload the component as application/wasm (or a multipart form with \
                     `component` and `sample`), not {:?}",
                    content_type.unwrap_or_default()
                ),
            ));
        }
    };
    let options = UploadOptions {
        activate: query.activate.unwrap_or(true),
        preset: query.preset.as_deref(),
        sample: sample.as_deref(),
    };
    let admitted =
        tenant_apps::upload(&state.apps, &state.metrics, &tenant, &name, &wasm, options).await?;
    let status = if admitted.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let limits = state.apps.app_limits(&tenant, &admitted.app);
    Ok((
        status,
        Json(Uploaded {
            version: VersionView::new(
                &admitted.version,
                &state
                    .apps
                    .version_limits(&tenant, &admitted.app, &admitted.version),
                admitted.app.active.as_deref(),
            ),
            app: AppView::new(&admitted.app, limits),
            created: admitted.created,
        }),
    ))
}

/// Reads a body of at most `max` bytes: refused from `Content-Length` before reading when
/// it says too much, and while reading when it lied or was absent.
async fn read_capped(
    headers: &HeaderMap,
    body: Body,
    max: usize,
    max_mib: u64,
) -> Result<Vec<u8>, ApiError> {
    let too_large = || ApiError::too_large(format!("components are limited to {max_mib} MiB"));
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return Err(too_large());
    }
    let mut wasm = Vec::with_capacity(declared.map_or(0, |len| len as usize));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::body(&e))?;
        if wasm.len() + chunk.len() > max {
            return Err(too_large());
        }
        wasm.extend_from_slice(&chunk);
    }
    if wasm.is_empty() {
        return Err(ApiError::bad_request(
            "the body is empty: send the component (.wasm)",
        ));
    }
    Ok(wasm)
}

/// Reads an upload's multipart form: the `component` part (required, at most `max_mib`) and
/// an optional `sample` part (at most `max_sample_kib`), each capped while it streams.
async fn read_form(
    content_type: &str,
    body: Body,
    max_mib: u64,
    max_sample_kib: usize,
) -> Result<(Vec<u8>, Option<Vec<u8>>), ApiError> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| ApiError::bad_request(format!("reading the form: {e}")))?;
    let mut form = multer::Multipart::new(body.into_data_stream(), boundary);
    let (mut component, mut sample) = (None, None);
    let form_error = |e: multer::Error| ApiError::bad_request(format!("reading the form: {e}"));
    while let Some(mut field) = form.next_field().await.map_err(form_error)? {
        let (slot, max, what) = match field.name().unwrap_or_default() {
            "component" => (
                &mut component,
                mib_to_bytes(max_mib),
                format!("components are limited to {max_mib} MiB"),
            ),
            "sample" => (
                &mut sample,
                max_sample_kib.saturating_mul(1024),
                format!("samples are limited to {max_sample_kib} KiB (apps.probe_sample_max_kib)"),
            ),
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown form field {other:?}: send component and, optionally, sample"
                )));
            }
        };
        if slot.is_some() {
            return Err(ApiError::bad_request(
                "a form field is given twice: send one component and at most one sample",
            ));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(form_error)? {
            if bytes.len() + chunk.len() > max {
                return Err(ApiError::too_large(what));
            }
            bytes.extend_from_slice(&chunk);
        }
        *slot = Some(bytes);
    }
    match component {
        Some(wasm) if !wasm.is_empty() => Ok((wasm, sample)),
        _ => Err(ApiError::bad_request(
            "the form has no component: send the .wasm as its `component` part",
        )),
    }
}

/// An app and its versions.
#[utoipa::path(get, path = "/v1/apps/{name}", tag = "apps",
    security(("tenant_token" = [])),
    params(("name" = String, Path, description = "App name")),
    responses((status = 200, body = AppDetail), (status = 404, body = ErrorBody)))]
pub async fn show_app(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(name): Path<String>,
) -> Result<Json<AppDetail>, ApiError> {
    let app = state.platform.app(&tenant.id, &name).await?;
    let versions = state.platform.list_versions(&tenant.id, &name).await?;
    Ok(Json(AppDetail {
        versions: versions
            .iter()
            .map(|v| {
                let limits = state.apps.version_limits(&tenant, &app, v);
                VersionView::new(v, &limits, app.active.as_deref())
            })
            .collect(),
        app: AppView::new(&app, state.apps.app_limits(&tenant, &app)),
    }))
}

/// `PATCH /v1/apps/{name}`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateApp {
    /// The app's own sandbox limits, each at most the tenant's; replaces the previous set.
    #[schema(value_type = Object)]
    pub sandbox: SandboxOverrides,
}

/// Set an app's own sandbox limits (each at most the tenant profile's).
#[utoipa::path(patch, path = "/v1/apps/{name}", tag = "apps",
    security(("tenant_token" = [])),
    params(("name" = String, Path, description = "App name")),
    request_body = UpdateApp,
    responses((status = 200, body = AppView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_app(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(name): Path<String>,
    Json(update): Json<UpdateApp>,
) -> Result<Json<AppView>, ApiError> {
    let app = tenant_apps::set_sandbox(
        &state.apps,
        &state.platform,
        &tenant,
        &name,
        &update.sandbox,
    )
    .await?;
    Ok(Json(AppView::new(
        &app,
        state.apps.app_limits(&tenant, &app),
    )))
}

/// Delete an app and all its versions.
#[utoipa::path(delete, path = "/v1/apps/{name}", tag = "apps",
    security(("tenant_token" = [])),
    params(("name" = String, Path, description = "App name")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_app(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    tenant_apps::delete(&state.platform, &tenant, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An app's versions, newest first.
#[utoipa::path(get, path = "/v1/apps/{name}/versions", tag = "apps",
    security(("tenant_token" = [])),
    params(("name" = String, Path, description = "App name")),
    responses((status = 200, body = Vec<VersionView>), (status = 404, body = ErrorBody)))]
pub async fn list_versions(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(name): Path<String>,
) -> Result<Json<Vec<VersionView>>, ApiError> {
    let app = state.platform.app(&tenant.id, &name).await?;
    let versions = state.platform.list_versions(&tenant.id, &name).await?;
    Ok(Json(
        versions
            .iter()
            .map(|v| {
                let limits = state.apps.version_limits(&tenant, &app, v);
                VersionView::new(v, &limits, app.active.as_deref())
            })
            .collect(),
    ))
}

/// One version, by its id or a unique prefix of 8+ hex digits.
#[utoipa::path(get, path = "/v1/apps/{name}/versions/{version}", tag = "apps",
    security(("tenant_token" = [])),
    params(("name" = String, Path, description = "App name"), ("version" = String, Path, description = "Version id or prefix")),
    responses((status = 200, body = VersionView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn show_version(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<VersionView>, ApiError> {
    let app = state.platform.app(&tenant.id, &name).await?;
    let version = state.platform.version(&tenant.id, &name, &version).await?;
    let limits = state.apps.version_limits(&tenant, &app, &version);
    Ok(Json(VersionView::new(
        &version,
        &limits,
        app.active.as_deref(),
    )))
}

/// Delete a version that is neither active nor kept for rollback.
#[utoipa::path(delete, path = "/v1/apps/{name}/versions/{version}", tag = "apps",
    security(("tenant_token" = [])),
    params(("name" = String, Path, description = "App name"), ("version" = String, Path, description = "Version id or prefix")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_version(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path((name, version)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    tenant_apps::delete_version(&state.platform, &tenant, &name, &version).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Make a version the active one; the previous one becomes the rollback target.
#[utoipa::path(post, path = "/v1/apps/{name}/activate", tag = "apps",
    security(("tenant_token" = [])),
    params(("name" = String, Path, description = "App name")),
    request_body = Activate,
    responses((status = 200, body = AppView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn activate(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(name): Path<String>,
    Json(request): Json<Activate>,
) -> Result<Json<AppView>, ApiError> {
    let app = tenant_apps::activate(&state.platform, &tenant, &name, &request.version).await?;
    Ok(Json(AppView::new(
        &app,
        state.apps.app_limits(&tenant, &app),
    )))
}

/// Re-activate the version that was active before the current one.
#[utoipa::path(post, path = "/v1/apps/{name}/rollback", tag = "apps",
    security(("tenant_token" = [])),
    params(("name" = String, Path, description = "App name")),
    responses((status = 200, body = AppView), (status = 404, body = ErrorBody), (status = 409, description = "Nothing to roll back to", body = ErrorBody)))]
pub async fn rollback(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(name): Path<String>,
) -> Result<Json<AppView>, ApiError> {
    let app = tenant_apps::rollback(&state.platform, &tenant, &name).await?;
    Ok(Json(AppView::new(
        &app,
        state.apps.app_limits(&tenant, &app),
    )))
}

/// Run an app on a small input in the production sandbox and see its documents; nothing is
/// written anywhere. Any host can run any app: the component comes from the platform
/// database.
#[utoipa::path(post, path = "/v1/apps/{name}/dry-run", tag = "apps",
    security(("tenant_token" = [])),
    params(("name" = String, Path, description = "App name")),
    request_body = DryRunRequest,
    responses((status = 200, body = DryRunView), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn dry_run(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(name): Path<String>,
    Json(request): Json<DryRunRequest>,
) -> Result<Json<DryRunView>, ApiError> {
    let request = tenant_apps::DryRunRequest {
        input: request.input,
        params: request.params,
        version: request.version,
    };
    let max_kib = state.config.apps.dry_run_max_kib;
    let (version, run) = tenant_apps::dry_run(
        &state.apps,
        &state.platform,
        max_kib,
        &tenant,
        &name,
        request,
    )
    .await?;
    Ok(Json(DryRunView::new(&version.digest, run)))
}
