//! The web console's files, embedded in the binary and served by every `serve` at `/` (the
//! API stays under `/v1`): nothing is fetched from elsewhere at run time. The page is static;
//! it reads the tenant's figures from the same `/v1` API the CLI uses, with the token the
//! person pastes (kept in the tab's session storage, sent in the `Authorization` header).
//!
//! Every response carries a strict Content-Security-Policy: scripts, styles and connections
//! only from this origin, no inline script or style, no frames, no forms posting anywhere,
//! so a tenant-controlled string that slipped into the page as markup still could not run.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The policy of every console response.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// The console's files: name under `/console/`, media type, contents.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/console.js"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("../../console/console.css"),
    ),
];

/// The page itself.
const INDEX: &str = include_str!("../../console/index.html");

/// The console's routes: `/` and `/console/{file}`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/console/{file}", get(asset))
}

async fn index() -> Response {
    with_headers("text/html; charset=utf-8", INDEX)
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, ..)| *name == file) {
        Some((_, media_type, contents)) => with_headers(media_type, contents),
        None => (StatusCode::NOT_FOUND, "no such console file").into_response(),
    }
}

/// A console file with its media type and the headers that keep it to itself.
fn with_headers(media_type: &'static str, contents: &'static str) -> Response {
    let mut response = contents.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // A new binary serves new files: the browser asks again rather than trusting its copy.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
