//! The HTTP API (axum): routes, shared state, the OpenAPI document, and the layers every
//! request goes through (request ids, tracing, metrics, panics caught as JSON 500s).
//!
//! `/v1/admin/…` takes the operator's token, `/v1/…` a tenant's; both as `Bearer`.

mod admin;
mod apps;
mod auth;
mod batch;
pub mod connections;
mod data;
pub mod error;
mod meta;
pub mod metrics;
mod streams;
mod timeouts;
mod views;

pub use error::{ApiError, ErrorBody};
pub use metrics::Metrics;

use crate::app_store::AppStore;
use crate::batch::BatchContext;
use crate::config::ServeConfig;
use crate::platform::Platform;
use crate::registry::Registry;
use crate::sink::SinkResolver;
use crate::stream::StreamContext;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request, StatusCode};
use std::sync::{Arc, OnceLock};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Everything handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The platform database.
    pub platform: Platform,
    /// App admission and loading.
    pub apps: Arc<AppStore>,
    /// The operator's configuration.
    pub config: Arc<ServeConfig>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Service discovery and membership.
    pub registry: Registry,
    /// Tenants' sinks, resolved through the registry.
    pub sinks: Arc<SinkResolver>,
    /// Batch ingestion: staging and the job queue.
    pub batch: Arc<BatchContext>,
    /// Stream ingestion: the broker, quotas, the stream records.
    pub streams: Arc<StreamContext>,
    /// The OpenAPI document, set once the router is built.
    openapi: Arc<OnceLock<serde_json::Value>>,
}

impl AppState {
    /// State over the platform's parts (each one a shared handle `serve` built).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        platform: Platform,
        apps: Arc<AppStore>,
        config: Arc<ServeConfig>,
        metrics: Arc<Metrics>,
        registry: Registry,
        sinks: Arc<SinkResolver>,
        batch: Arc<BatchContext>,
        streams: Arc<StreamContext>,
    ) -> Self {
        Self {
            platform,
            apps,
            config,
            metrics,
            registry,
            sinks,
            batch,
            streams,
            openapi: Arc::default(),
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "mysimbdp",
        description = "Multi-tenant ingestion platform running tenants' WebAssembly apps. \
            `/v1/admin/…` takes the operator's token, the rest of `/v1/…` a tenant's token, both \
            as `Authorization: Bearer <token>`. Every error has the shape of `ErrorBody`."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "admin", description = "Tenants and their profiles (operator token)"),
        (name = "tenant", description = "The calling tenant"),
        (name = "apps", description = "The calling tenant's apps and their versions"),
        (name = "data", description = "Data as a service: the calling tenant's documents"),
        (name = "batch", description = "Batch ingestion: file uploads and jobs"),
        (name = "streams", description = "Stream ingestion: streams, their broker endpoint, stats"),
        (name = "meta", description = "Health, metrics and published documents (no token)"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, description) in [
            (
                "operator_token",
                "The operator's token (server.operator_token)",
            ),
            ("tenant_token", "A tenant's API token (msbt_…)"),
        ] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(description))
                        .build(),
                ),
            );
        }
    }
}

/// The API's router over `state`, with every layer.
pub fn router(state: AppState) -> Router {
    let max_json = state.config.server.max_json_kib * 1024;
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(admin::create_tenant, admin::list_tenants))
        .routes(routes!(admin::show_tenant, admin::delete_tenant))
        .routes(routes!(admin::suspend_tenant))
        .routes(routes!(admin::resume_tenant))
        .routes(routes!(admin::rotate_token))
        .routes(routes!(admin::set_profile))
        .routes(routes!(admin::profile_versions))
        .routes(routes!(admin::hosts))
        .routes(routes!(data::write, data::read))
        .routes({
            // Uploads stream to staging under the profile's own size limits, not the JSON cap.
            let (schemas, paths, method_router) = routes!(batch::upload);
            (
                schemas,
                paths,
                method_router.layer(DefaultBodyLimit::disable()),
            )
        })
        .routes(routes!(batch::job))
        .routes(routes!(batch::jobs))
        .routes(routes!(batch::stats))
        .routes(routes!(admin::stats))
        .routes(routes!(batch::replay))
        .routes(routes!(apps::me))
        .routes(routes!(apps::list_apps))
        .routes(routes!(
            apps::upload,
            apps::show_app,
            apps::update_app,
            apps::delete_app
        ))
        .routes(routes!(apps::list_versions))
        .routes(routes!(apps::show_version, apps::delete_version))
        .routes(routes!(apps::activate))
        .routes(routes!(apps::rollback))
        .routes(routes!(apps::dry_run))
        .routes(routes!(streams::create, streams::list))
        .routes(routes!(streams::show, streams::delete))
        .routes(routes!(streams::connection))
        .routes(routes!(streams::start))
        .routes(routes!(streams::stop))
        .routes(routes!(streams::stats))
        .routes(routes!(streams::rotate_credentials))
        .routes(routes!(streams::dead_letters))
        .routes(routes!(streams::replay))
        .routes(routes!(meta::health))
        .routes(routes!(meta::ready))
        .routes(routes!(meta::metrics))
        .routes(routes!(meta::openapi))
        .routes(routes!(meta::profile_schema))
        .split_for_parts();
    let _ = state
        .openapi
        .set(serde_json::to_value(&openapi).unwrap_or_default());
    let request_id = HeaderName::from_static("x-request-id");
    router
        .route_layer(axum::middleware::from_fn_with_state(
            timeouts::RequestTimeouts::new(&state.config.server),
            timeouts::bound,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            metrics::track,
        ))
        .fallback(|| async { ApiError::not_found("no such endpoint; see /v1/openapi.json") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method; see /v1/openapi.json",
            )
        })
        .layer(DefaultBodyLimit::max(max_json))
        .with_state(state)
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::internal(
                "a request handler panicked",
            ))
        }))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let id = request
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!(
                    "request",
                    method = %request.method(),
                    path = %request.uri().path(),
                    request_id = %id,
                    tenant = tracing::field::Empty,
                )
            }),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}
