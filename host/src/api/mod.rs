//! The HTTP API (axum): routes, shared state, the OpenAPI document, and the layers every
//! request goes through (request ids, tracing, metrics, panics caught as JSON 500s).
//!
//! `/v1/admin/…` takes the operator's token, `/v1/…` a tenant's; both as `Bearer`. `/` and
//! `/console/…` serve the web console's embedded files ([`console`]).

mod admin;
mod apps;
mod auth;
mod batch;
pub mod connections;
pub mod console;
mod data;
pub mod error;
mod meta;
mod metrics;
pub(crate) mod streams;
mod timeouts;
pub mod tls;
mod views;

pub use error::{ApiError, ErrorBody};

use crate::app_store::AppStore;
use crate::batch::BatchContext;
use crate::config::ServeConfig;
use crate::metrics::Metrics;
use crate::platform::Platform;
use crate::readiness::Probes;
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
    /// Readiness probes of the backing services.
    pub readiness: Arc<Probes>,
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
        let readiness = Arc::new(Probes::new(
            &config,
            platform.clone(),
            registry.clone(),
            streams.clone(),
        ));
        Self {
            readiness,
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
    // The operations are listed here as well as in `router()` so that `ErrorResponses` sees
    // them: the router's own copies are merged in afterwards and keep these (first wins).
    paths(
        admin::create_tenant, admin::list_tenants, admin::show_tenant, admin::delete_tenant,
        admin::suspend_tenant, admin::resume_tenant, admin::rotate_token, admin::set_profile,
        admin::profile_versions, admin::hosts, admin::stats, admin::usage, admin::series,
        data::write, data::read,
        batch::upload, batch::job, batch::jobs, batch::stats, batch::replay,
        apps::me, apps::usage, apps::list_apps, apps::upload, apps::show_app, apps::update_app,
        apps::delete_app, apps::list_versions, apps::show_version, apps::delete_version,
        apps::activate, apps::rollback, apps::dry_run,
        streams::create, streams::list, streams::show, streams::delete, streams::connection,
        streams::start, streams::stop, streams::stats, streams::series, streams::rotate_credentials,
        streams::dead_letters, streams::replay,
        meta::health, meta::ready, meta::metrics, meta::openapi, meta::profile_schema,
    ),
    components(schemas(ErrorBody, mysimbdp_api::Readiness, mysimbdp_api::ServiceCheck)),
    modifiers(&BearerAuth, &NameRules, &ErrorResponses),
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

/// The names in paths, as `crate::names` checks them: `(path prefix, parameter, rule,
/// whether a name breaking the rule is refused with 422 rather than simply not found)`.
const PATH_NAMES: [(&str, &str, NameRule, bool); 5] = [
    ("/v1/admin/tenants/", "id", names_doc::TENANT, false),
    ("/v1/apps/", "name", names_doc::APP, false),
    ("/v1/streams/", "name", names_doc::STREAM, false),
    // Data operations create collections on first write, so they check the name first.
    ("/v1/data/", "collection", names_doc::COLLECTION, true),
    ("/v1/batch/jobs/", "id", names_doc::JOB, false),
];

/// A naming rule as the document states it.
#[derive(Clone, Copy)]
struct NameRule {
    pattern: &'static str,
    min: usize,
    max: usize,
}

/// The rules of `crate::names` in JSON Schema terms; body fields carry the same literals in
/// their `#[schema]` attributes (the derive takes literals only).
mod names_doc {
    use super::NameRule;

    pub const TENANT: NameRule = NameRule {
        pattern: "^[a-z][a-z0-9-]*$",
        min: 2,
        max: 32,
    };
    pub const APP: NameRule = NameRule {
        pattern: "^[a-z][a-z0-9_-]*$",
        min: 1,
        max: 64,
    };
    pub const STREAM: NameRule = APP;
    /// MongoDB's rules, tightened: dot-separated non-empty segments; `system.` is refused too.
    pub const COLLECTION: NameRule = NameRule {
        pattern: "^[A-Za-z_][A-Za-z0-9_-]*(\\.[A-Za-z0-9_-]+)*$",
        min: 1,
        max: 120,
    };
    /// Job ids are 24 hex digits; anything else is simply not found.
    pub const JOB: NameRule = NameRule {
        pattern: "^[0-9a-f]{24}$",
        min: 24,
        max: 24,
    };
}

/// Puts the naming rules on the path parameters that name tenants, apps, streams,
/// collections and jobs, so clients and fuzzers know what the server accepts.
struct NameRules;

impl utoipa::Modify for NameRules {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        use utoipa::openapi::schema::{Object, Schema, Type};
        for (path, item) in openapi.paths.paths.iter_mut() {
            for operation in operations(item) {
                let mut refused = false;
                for parameter in operation.parameters.iter_mut().flatten() {
                    let utoipa::openapi::RefOr::T(parameter) = parameter else {
                        continue;
                    };
                    if !matches!(parameter.parameter_in, ParameterIn::Path) {
                        continue;
                    }
                    let rule = PATH_NAMES.iter().find(|(prefix, name, _, _)| {
                        path.starts_with(prefix)
                            && *name == parameter.name
                            && path[prefix.len()..].starts_with(&format!("{{{name}}}"))
                    });
                    let mut schema = Object::with_type(Type::String);
                    if let Some((_, _, rule, checked)) = rule {
                        schema.pattern = Some(rule.pattern.to_owned());
                        schema.min_length = Some(rule.min);
                        schema.max_length = Some(rule.max);
                        if *checked {
                            refused = true;
                        }
                    } else {
                        // Any other path segment (a version id or prefix) is non-empty.
                        schema.min_length = Some(1);
                    }
                    parameter.schema = Some(utoipa::openapi::RefOr::T(Schema::Object(schema)));
                }
                if refused {
                    operation
                        .responses
                        .responses
                        .entry("422".to_owned())
                        .or_insert_with(|| {
                            utoipa::openapi::RefOr::T(error_response(
                                "A name that breaks its naming rule",
                            ))
                        });
                }
            }
        }
    }
}

/// Every operation of a path item.
fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
        &mut item.head,
        &mut item.options,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// Documents the answers the server's shared machinery gives on every operation, so that a
/// generated client knows every status it can see (an operation's own, more specific
/// descriptions are kept):
/// - token-taking operations: 401 (no or unknown token), 403 (the other kind of token, a
///   suspended tenant), and, since the token is looked up in the platform database, 503 (a
///   platform service unavailable) and 408 (the request took too long);
/// - operations with path or query parameters: 400 (undecodable or malformed) and 404 (a
///   path that matches no endpoint, or names nothing);
/// - operations with a body: 400 (malformed), 413 (too large), and for JSON bodies 415 (not
///   `application/json`) and 422 (JSON of the wrong shape), as the JSON extractor answers.
struct ErrorResponses;

impl utoipa::Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        for item in openapi.paths.paths.values_mut() {
            for operation in operations(item) {
                let mut add: Vec<(u16, &str)> = Vec::new();
                if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    add.extend([
                        (401, "No token, or an unknown one"),
                        (
                            403,
                            "The other kind of token (operator or tenant), or a suspended tenant",
                        ),
                        (408, "The request took longer than the server allows"),
                        (
                            503,
                            "A platform service (database, queue, broker, registry) is \
                             unavailable; retry later",
                        ),
                    ]);
                }
                let parameters: Vec<ParameterIn> = operation
                    .parameters
                    .iter()
                    .flatten()
                    .filter_map(|p| match p {
                        utoipa::openapi::RefOr::T(p) => Some(p.parameter_in.clone()),
                        utoipa::openapi::RefOr::Ref(_) => None,
                    })
                    .collect();
                if parameters
                    .iter()
                    .any(|p| matches!(p, ParameterIn::Path | ParameterIn::Query))
                {
                    add.push((400, "A malformed parameter"));
                }
                if parameters.iter().any(|p| matches!(p, ParameterIn::Path)) {
                    add.push((404, "Nothing by that name, or no such endpoint"));
                }
                if let Some(utoipa::openapi::RefOr::T(body)) = &operation.request_body {
                    add.extend([(400, "A malformed body"), (413, "The body is too large")]);
                    if body.content.contains_key("application/json") {
                        add.extend([
                            (415, "The body is not application/json"),
                            (422, "The body does not have the documented shape"),
                        ]);
                    }
                }
                // OpenAPI requires a description on every response; the status's reason
                // phrase stands in where an annotation gave none.
                for (status, response) in operation.responses.responses.iter_mut() {
                    if let utoipa::openapi::RefOr::T(response) = response
                        && response.description.is_empty()
                    {
                        response.description = status
                            .parse::<u16>()
                            .ok()
                            .and_then(|s| StatusCode::from_u16(s).ok())
                            .and_then(|s| s.canonical_reason())
                            .unwrap_or("Response")
                            .to_owned();
                    }
                }
                for (status, description) in add {
                    let status = status.to_string();
                    if operation.responses.responses.contains_key(&status) {
                        continue;
                    }
                    operation.responses.responses.insert(
                        status,
                        utoipa::openapi::RefOr::T(error_response(description)),
                    );
                }
            }
        }
    }
}

/// An error answer: `ErrorBody` as JSON.
fn error_response(description: &str) -> utoipa::openapi::Response {
    utoipa::openapi::ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            utoipa::openapi::ContentBuilder::new()
                .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
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
        .routes(routes!(admin::usage))
        .routes(routes!(admin::series))
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
        .routes(routes!(apps::usage))
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
        .routes(routes!(streams::series))
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
        .merge(console::router())
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
