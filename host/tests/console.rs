//! The web console as served: `/` and its files from the binary, under a strict
//! Content-Security-Policy, with no inline script and no way for the page's code to parse an
//! API value as markup; a tenant's token in a request header, never in an address.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mysimbdp_host::api::console::CONTENT_SECURITY_POLICY;
use mysimbdp_tests::prelude::*;
use reqwest::StatusCode;

const SCRIPT: &str = include_str!("../console/console.js");
const PAGE: &str = include_str!("../console/index.html");

async fn get(host: &Host, path: &str) -> reqwest::Response {
    host.http
        .get(format!("{}{path}", host.base))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_from_the_binary_under_a_strict_policy() {
    let database = database_name();
    let host = Host::start_on(&database, "console-cache").await;
    for (path, media_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/console/console.js", "text/javascript; charset=utf-8"),
        ("/console/console.css", "text/css; charset=utf-8"),
    ] {
        let response = get(&host, path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers();
        assert_eq!(headers["content-type"], media_type, "{path}");
        assert_eq!(
            headers["content-security-policy"], CONTENT_SECURITY_POLICY,
            "{path}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        let body = response.text().await.unwrap();
        assert!(!body.is_empty(), "{path}");
    }
    assert_eq!(get(&host, "/").await.text().await.unwrap(), PAGE);
    // Only the console's own files: no path walks out of them.
    for path in [
        "/console/../Cargo.toml",
        "/console/%2e%2e%2fCargo.toml",
        "/console/x.js",
    ] {
        assert_eq!(
            get(&host, path).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    // The API is where it was, with its JSON errors.
    let response = get(&host, "/v1/nothing").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    host.stop().await;
    drop_database(&database).await;
}

#[test]
fn the_page_runs_no_inline_code_and_reads_api_values_as_text() {
    // The policy forbids inline script and style and everything from elsewhere.
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'none'",
    ] {
        assert!(CONTENT_SECURITY_POLICY.contains(directive), "{directive}");
    }
    assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    // Every script of the page is a file of its own; no handler attributes, no style blocks.
    let lower = PAGE.to_lowercase();
    for (i, _) in lower.match_indices("<script") {
        let tag = &lower[i..i + lower[i..].find('>').unwrap()];
        assert!(tag.contains(" src=\"/console/"), "inline script: {tag}");
    }
    assert!(!lower.contains("<style") && !lower.contains(" style="));
    assert!(
        !regex_like_handler(&lower),
        "an on…= handler attribute in the page"
    );
    // The script never turns a string into markup or code (its comments may name them).
    let code: String = SCRIPT
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "Function(",
        "setTimeout(\"",
        "setInterval(\"",
    ] {
        assert!(!code.contains(sink), "console.js uses {sink}");
    }
    // The token travels in the Authorization header, and is kept in the tab only.
    assert!(SCRIPT.contains("Authorization: \"Bearer \" + token()"));
    assert!(
        !SCRIPT.contains("localStorage"),
        "the token outlives the tab"
    );
    assert!(!SCRIPT.contains("?token") && !SCRIPT.contains("&token"));
}

/// Whether the page has an attribute such as `onclick=` or ` onerror =`.
fn regex_like_handler(page: &str) -> bool {
    page.match_indices(" on").any(|(i, _)| {
        let rest = &page[i + 3..];
        let name_len = rest.chars().take_while(char::is_ascii_lowercase).count();
        name_len > 0 && rest[name_len..].trim_start().starts_with('=')
    })
}
