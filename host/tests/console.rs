//! The web console as served: `/` and its files from the binary, under a strict
//! Content-Security-Policy, with no inline script and no way for the page's code to parse an
//! API value as markup; a tenant's token in a request header, never in an address.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use fantoccini::Locator;
use mysimbdp_fixtures as fixtures;
use mysimbdp_host::api::console::CONTENT_SECURITY_POLICY;
use mysimbdp_tests::batch::upload_orders;
use mysimbdp_tests::browser::Browser;
use mysimbdp_tests::prelude::*;
use reqwest::StatusCode;
use std::time::Duration;

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

/// The text of the rows of console table `id`.
async fn table_text(browser: &Browser, id: &str) -> String {
    match browser
        .client
        .find(Locator::Css(&format!("#{id} tbody")))
        .await
    {
        Ok(body) => body.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn sign_in(browser: &Browser, token: &str) {
    let input = browser.client.find(Locator::Css("#token")).await.unwrap();
    input.send_keys(token).await.unwrap();
    browser
        .client
        .find(Locator::Css("#sign-in-form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// A tenant signs in, uploads files and watches their jobs end without reloading; a job whose
/// error carries markup (the CSV app quotes the file's header in its reason) shows it as text
/// and runs nothing; another tenant's session sees none of it; the token never enters the
/// address bar.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_watches_its_jobs_in_a_real_browser_and_markup_stays_text() {
    let database = database_name();
    let host = Host::start_on(&database, "console-cache").await;
    let a = unique("con-a");
    let b = unique("con-b");
    let token_a = host.create_tenant(&a, None).await;
    let token_b = host.create_tenant(&b, None).await;
    let (status, body) = host
        .upload(&token_a, "orders", read(fixtures::CSV_BATCH))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let browser = Browser::start().await;
    browser
        .client
        .goto(&format!("{}/", host.base))
        .await
        .unwrap();
    sign_in(&browser, &token_a).await;
    wait_until(
        "the console shows the tenant's app",
        Duration::from_secs(30),
        async || {
            let page = browser
                .client
                .execute("return document.body.innerText;", vec![])
                .await
                .unwrap();
            (table_text(&browser, "apps").await, page)
        },
        |(text, _)| text.contains("orders") && text.contains("batch"),
    )
    .await;

    // Files uploaded while the page is open: it shows their jobs end, without a reload.
    let marker = "<img src=x onerror=window.__pwned=1>";
    let evil = format!("{marker},<script>window.__pwned=2</script>\n1,2\n").into_bytes();
    let (good, _) = orders_csv();
    let jobs = upload_orders(&host, &token_a, "console-", vec![good.into_bytes(), evil]).await;
    let shown = wait_until(
        "both jobs ended on the page",
        Duration::from_secs(120),
        async || table_text(&browser, "jobs").await,
        |text| {
            text.contains(&jobs[0])
                && text.contains(&jobs[1])
                && text.contains("done")
                && text.contains("failed")
        },
    )
    .await;
    assert!(shown.contains(marker), "the reason shows as text: {shown}");
    // The view as a person sees it (docs/console.png is a copy of one).
    let png = browser.client.screenshot().await.unwrap();
    std::fs::write(scratch("console").join("tenant.png"), png).unwrap();
    assert!(
        shown.contains("<script>window.__pwned=2</script>"),
        "{shown}"
    );
    let pwned = browser
        .client
        .execute(
            "return window.__pwned === undefined && document.images.length === 0;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        pwned,
        serde_json::Value::Bool(true),
        "markup from a job ran"
    );
    let url = browser.client.current_url().await.unwrap();
    assert!(
        !url.as_str().contains(&token_a),
        "the token is in the address: {url}"
    );

    // Another tenant's session: none of the first tenant's apps or jobs.
    browser
        .client
        .find(Locator::Css("#sign-out"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    sign_in(&browser, &token_b).await;
    let jobs_b = wait_until(
        "the second tenant's console is up",
        Duration::from_secs(30),
        async || table_text(&browser, "jobs").await,
        |text| text.contains("no batch jobs yet"),
    )
    .await;
    assert!(!jobs_b.contains(&jobs[0]) && !jobs_b.contains(&jobs[1]));
    assert!(!table_text(&browser, "apps").await.contains("orders"));

    browser.close().await;
    host.delete_tenant(&a).await;
    host.delete_tenant(&b).await;
    drop_database(&tenant_database(&a)).await;
    drop_database(&tenant_database(&b)).await;
    host.stop().await;
    drop_database(&database).await;
}
