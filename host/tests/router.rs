//! The router answers what needs no service — auth refusals, the OpenAPI document, unknown
//! paths and wrong methods, all in the API's one error shape — with every backing service
//! unreachable: its state is built over handles that connect on first use, and the addresses
//! below lead nowhere.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use mysimbdp_host::config::ServeConfig;
use serde_json::Value;
use std::time::Duration;
use tower::ServiceExt;

const OPERATOR: &str = "router-test-operator-token-0123456789";
/// Nothing listens on port 1: a service reached by mistake fails the test instead of passing.
const NOWHERE: &str = "127.0.0.1:1";
/// Every answer here needs no service, so it comes at once; a lookup that went out anyway
/// would wait on a connection, and this bound says so.
const PROMPT: Duration = Duration::from_secs(5);

fn config() -> ServeConfig {
    let mut config = ServeConfig::default();
    config.server.operator_token = OPERATOR.to_owned();
    config.server.plain_http = true;
    config.platform.mongodb_uri = format!("mongodb://{NOWHERE}/?serverSelectionTimeoutMS=20000");
    config.platform.database = "router_test".to_owned();
    config.sink.mongodb_uri = format!("mongodb://{NOWHERE}/");
    config.registry.etcd_endpoints = vec![format!("http://{NOWHERE}")];
    config.redis.url = format!("redis://{NOWHERE}/");
    config.stream.amqp_url = format!("amqp://guest:guest@{NOWHERE}/%2f");
    config.stream.management_url = format!("http://{NOWHERE}");
    let scratch = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("router-test");
    config.sandbox.engine.cache_dir = Some(scratch.join("cache"));
    config.batch.staging_dir = Some(scratch.join("staging"));
    config.validate().unwrap();
    config
}

/// Sends one request through a router over unreachable services: the status and the body
/// as JSON.
async fn send(method: Method, path: &str, authorization: Option<&str>) -> (StatusCode, Value) {
    let state = mysimbdp_host::serve::offline_state(config()).await.unwrap();
    let router = mysimbdp_host::api::router(state);
    let mut request = Request::builder().method(method).uri(path);
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    let response =
        tokio::time::timeout(PROMPT, router.oneshot(request.body(Body::empty()).unwrap()))
            .await
            .expect("the router answers without any service")
            .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{path}: the body is not JSON ({e}): {bytes:?}"));
    (status, body)
}

/// The body has the API's error shape with `status` and `code`.
fn assert_error(body: &Value, status: StatusCode, code: &str) {
    let error = &body["error"];
    assert_eq!(error["status"], status.as_u16(), "{body}");
    assert_eq!(error["code"], code, "{body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn a_request_without_a_token_is_unauthorized() {
    for path in ["/v1/admin/tenants", "/v1/streams"] {
        let (status, body) = send(Method::GET, path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
        assert_error(&body, StatusCode::UNAUTHORIZED, "unauthorized");
    }
}

#[tokio::test]
async fn a_token_of_another_scheme_is_unauthorized() {
    for value in [
        format!("Basic {OPERATOR}"),
        OPERATOR.to_owned(),
        "Bearer ".to_owned(),
    ] {
        let (status, body) = send(Method::GET, "/v1/admin/tenants", Some(&value)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{value:?}: {body}");
        assert_error(&body, StatusCode::UNAUTHORIZED, "unauthorized");
    }
}

#[tokio::test]
async fn a_wrong_operator_token_is_unauthorized() {
    let (status, body) = send(
        Method::GET,
        "/v1/admin/tenants",
        Some("Bearer not-the-operator-token"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_error(&body, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn the_operator_token_on_a_tenant_route_is_forbidden() {
    let (status, body) = send(
        Method::GET,
        "/v1/streams",
        Some(&format!("Bearer {OPERATOR}")),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_error(&body, StatusCode::FORBIDDEN, "tenant_only");
}

#[tokio::test]
async fn the_openapi_document_is_served() {
    let (status, document) = send(Method::GET, "/v1/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let spec = oas3::from_json(document.to_string()).expect("the document parses as OpenAPI 3.1");
    assert_eq!(spec.info.title, "mysimbdp");
    assert!(document["paths"]["/v1/streams"].is_object(), "{document}");
}

#[tokio::test]
async fn an_unknown_path_is_not_found() {
    let (status, body) = send(Method::GET, "/v1/no-such-thing", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_error(&body, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn a_wrong_method_is_not_allowed() {
    let (status, body) = send(Method::PATCH, "/v1/openapi.json", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    assert_error(&body, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

#[tokio::test]
async fn readiness_names_every_unreachable_service_promptly() {
    let (status, body) = send(Method::GET, "/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["ready"], false, "{body}");
    let services = body["services"].as_array().unwrap();
    let named: Vec<&str> = services
        .iter()
        .map(|s| s["service"].as_str().unwrap())
        .collect();
    assert_eq!(named, ["mongodb", "redis", "rabbitmq", "etcd"], "{body}");
    for service in services {
        assert_eq!(service["ok"], false, "{body}");
        assert!(
            service["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
        // Each probe is cut at its bound (1.5 s), whatever the service's own timeouts.
        assert!(service["millis"].as_u64().unwrap() <= 2_000, "{body}");
    }
}

#[tokio::test]
async fn liveness_needs_no_service() {
    let state = mysimbdp_host::serve::offline_state(config()).await.unwrap();
    let router = mysimbdp_host::api::router(state);
    let response = tokio::time::timeout(
        PROMPT,
        router.oneshot(Request::get("/healthz").body(Body::empty()).unwrap()),
    )
    .await
    .expect("liveness answers at once")
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
