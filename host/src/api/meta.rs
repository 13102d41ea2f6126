//! Liveness (no service touched), readiness (every backing service probed, see
//! `crate::readiness`), the OpenAPI document and the tenant profile's JSON Schema (no
//! token), and Prometheus metrics (the operator's token: they name every tenant and stream).

use super::auth::Operator;
use super::{ApiError, AppState, ErrorBody};
use crate::profile::Profile;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use mysimbdp_api::Readiness;

/// Liveness: the process serves requests.
#[utoipa::path(get, path = "/healthz", tag = "meta", responses((status = 200, description = "Alive")))]
pub async fn health() -> &'static str {
    "ok"
}

/// Readiness: every backing service this host's roles need answers (the platform MongoDB,
/// Redis, RabbitMQ, etcd), each probed within 1.5 s, all at once; the answer is reused for a
/// second. The body lists each service, what it is needed for and, if it did not answer, why.
#[utoipa::path(get, path = "/readyz", tag = "meta",
    responses(
        (status = 200, description = "Every service answered", body = Readiness),
        (status = 503, description = "A service did not answer: `services` names it and says why", body = Readiness),
    ))]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let readiness = state.readiness.check().await;
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness))
}

/// Prometheus metrics in the text exposition format. They name tenants, streams and
/// volumes, so they take the operator's token (`Authorization: Bearer` in the scrape config).
#[utoipa::path(get, path = "/metrics", tag = "meta",
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
    ))]
pub async fn metrics(
    State(state): State<AppState>,
    _operator: Operator,
) -> Result<impl IntoResponse, ApiError> {
    let text = state.metrics.encode().map_err(ApiError::internal)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    ))
}

/// This API's OpenAPI document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(state.openapi.get().cloned().unwrap_or_default())
}

/// The JSON Schema of tenant profiles.
#[utoipa::path(get, path = "/v1/schemas/tenant-profile.json", tag = "meta",
    responses((status = 200, description = "JSON Schema (draft 2020-12)", content_type = "application/schema+json")))]
pub async fn profile_schema() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/schema+json")],
        Json(Profile::json_schema()),
    )
}
