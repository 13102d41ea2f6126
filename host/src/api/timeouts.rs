//! Time bounds per request: a body may pause at most `server.body_idle_timeout_ms` between
//! chunks, and the whole request (reading the body included) may take at most
//! `server.request_timeout_ms`. Upload routes — app components, batch files, daas writes —
//! carry large bodies and get their own, generous bounds. Either bound answers 408 in the
//! usual error shape; the unread rest of the body makes the server close the connection.

use super::ApiError;
use crate::config::ServerConfig;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Duration;
use tower_http::timeout::TimeoutBody;

/// The routes that take large bodies, by method and route template.
const UPLOAD_ROUTES: &[(Method, &str)] = &[
    (Method::PUT, "/v1/apps/{name}"),
    (Method::POST, "/v1/batch/files"),
    (Method::POST, "/v1/data/{collection}"),
];

/// The bounds of one kind of route.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    body_idle: Duration,
    whole: Duration,
}

/// The request bounds of every route, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct RequestTimeouts {
    ordinary: Bounds,
    upload: Bounds,
}

impl RequestTimeouts {
    /// The bounds the operator configured.
    pub fn new(config: &ServerConfig) -> Arc<Self> {
        Arc::new(Self {
            ordinary: Bounds {
                body_idle: Duration::from_millis(config.body_idle_timeout_ms),
                whole: Duration::from_millis(config.request_timeout_ms),
            },
            upload: Bounds {
                body_idle: Duration::from_millis(config.upload_body_idle_timeout_ms),
                whole: Duration::from_millis(config.upload_timeout_ms),
            },
        })
    }

    fn for_route(&self, method: &Method, route: Option<&str>) -> Bounds {
        let upload = route.is_some_and(|route| {
            UPLOAD_ROUTES
                .iter()
                .any(|(m, r)| m == method && *r == route)
        });
        if upload { self.upload } else { self.ordinary }
    }
}

/// Middleware: applies the route's bounds to the body and to the whole request.
pub async fn bound(
    State(timeouts): State<Arc<RequestTimeouts>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let bounds = timeouts.for_route(request.method(), route.as_deref());
    let request = request.map(|body| Body::new(TimeoutBody::new(bounds.body_idle, body)));
    match tokio::time::timeout(bounds.whole, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request took longer than {} ms (server.request_timeout_ms, or \
                 server.upload_timeout_ms for uploads)",
                bounds.whole.as_millis()
            ),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_get_their_own_bounds() {
        let config = ServerConfig {
            request_timeout_ms: 1_000,
            upload_timeout_ms: 9_000,
            ..ServerConfig::default()
        };
        let timeouts = RequestTimeouts::new(&config);
        let whole = |method: Method, route: &str| timeouts.for_route(&method, Some(route)).whole;
        assert_eq!(
            whole(Method::PUT, "/v1/apps/{name}"),
            Duration::from_secs(9)
        );
        assert_eq!(
            whole(Method::POST, "/v1/batch/files"),
            Duration::from_secs(9)
        );
        assert_eq!(
            whole(Method::GET, "/v1/apps/{name}"),
            Duration::from_secs(1)
        );
        assert_eq!(
            timeouts.for_route(&Method::GET, None).whole,
            Duration::from_secs(1)
        );
    }
}
