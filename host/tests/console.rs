//! The web console as served: `/` and its files from the binary, under a strict
//! Content-Security-Policy, with no inline script and no way for the page's code to parse an
//! API value as markup; a tenant's token in a request header, never in an address.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use fantoccini::Locator;
use mongodb::bson::doc;
use mysimbdp_fixtures as fixtures;
use mysimbdp_host::api::console::CONTENT_SECURITY_POLICY;
use mysimbdp_tests::batch::{upload_orders, wait_job_ended};
use mysimbdp_tests::browser::Browser;
use mysimbdp_tests::prelude::*;
use mysimbdp_tests::streams::{publish, wait_for_the_sensor_app};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::Path;
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

/// A signed-in console in a real browser, and what the tests do with it.
struct Console {
    browser: Browser,
    base: String,
}

impl Console {
    async fn open(host: &Host) -> Self {
        let browser = Browser::start().await;
        browser
            .client
            .goto(&format!("{}/", host.base))
            .await
            .unwrap();
        Self {
            browser,
            base: host.base.clone(),
        }
    }

    async fn run(&self, script: &str, args: Vec<Value>) -> Value {
        self.browser.client.execute(script, args).await.unwrap()
    }

    /// The text of the first element matching `css` ("" when there is none).
    async fn text(&self, css: &str) -> String {
        match self.browser.client.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Waits until the text of `css` passes `ok`; returns it.
    async fn wait_text(&self, what: &str, css: &str, ok: impl Fn(&str) -> bool) -> String {
        wait_until(
            what,
            Duration::from_secs(90),
            async || self.text(css).await,
            |text| ok(text),
        )
        .await
    }

    /// Opens a view as a person following a link would (the address's fragment).
    async fn view(&self, fragment: &str) {
        self.run("location.hash = arguments[0];", vec![json!(fragment)])
            .await;
    }

    /// Clicks what `locator` finds; tables are redrawn every 2 s, so an element found just
    /// before a redraw is found again.
    async fn click(&self, locator: Locator<'_>) {
        let _clicked = wait_until(
            "clicking",
            Duration::from_secs(30),
            async || match self.browser.client.find(locator).await {
                Ok(element) => element.click().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
            Result::is_ok,
        )
        .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.browser.client.find(Locator::Css(css)).await.unwrap();
        element.clear().await.unwrap();
        element.send_keys(text).await.unwrap();
    }

    /// Chooses local files for file input `css` (one path per line).
    async fn choose(&self, css: &str, paths: &[&Path]) {
        let element = self.browser.client.find(Locator::Css(css)).await.unwrap();
        let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        element.send_keys(&paths.join("\n")).await.unwrap();
    }

    async fn sign_in(&self, role: &str, token: &str) {
        self.click(Locator::Css(&format!("input[name=role][value={role}]")))
            .await;
        self.type_into("#token", token).await;
        self.click(Locator::Css("#sign-in-form button")).await;
        self.wait_text("signed in", "#who", |who| !who.is_empty())
            .await;
    }

    async fn sign_out(&self) {
        self.click(Locator::Css("#sign-out")).await;
    }

    /// The view as a person sees it, kept under target/tmp/console (docs/ has copies).
    async fn screenshot(&self, name: &str) {
        let png = self.browser.client.screenshot().await.unwrap();
        std::fs::write(scratch("console").join(format!("{name}.png")), png).unwrap();
    }

    /// Whether any markup from the platform's data ran or became an element.
    async fn assert_nothing_ran(&self) {
        let clean = self
            .run(
                "return window.__pwned === undefined && document.images.length === 0 \
                 && document.querySelectorAll('main script, main img').length === 0;",
                vec![],
            )
            .await;
        assert_eq!(clean, Value::Bool(true), "markup from the API ran");
        let url = self.browser.client.current_url().await.unwrap();
        assert!(
            !url.as_str().contains("msbt_"),
            "a token in the address: {url}"
        );
        assert!(url.as_str().starts_with(&self.base));
    }

    /// Calls the API from the page as the console does, with the token of the session.
    async fn call_as_console(&self, path: &str) -> (u16, Value) {
        let answer = self
            .browser
            .client
            .execute_async(
                "const [path, done] = arguments;
                 fetch(path, { headers: { Authorization: 'Bearer ' + sessionStorage.getItem('mysimbdp.token') } })
                   .then(async (r) => done([r.status, await r.json().catch(() => null)]))
                   .catch((e) => done([0, String(e)]));",
                vec![json!(path)],
            )
            .await
            .unwrap();
        (answer[0].as_u64().unwrap() as u16, answer[1].clone())
    }

    async fn close(self) {
        self.browser.close().await;
    }
}

/// Points drawn in console plot `id`.
async fn points(console: &Console, id: &str) -> u64 {
    console
        .run(
            "return Number(document.getElementById(arguments[0]).dataset.points || 0);",
            vec![json!(id)],
        )
        .await
        .as_u64()
        .unwrap_or(0)
}

/// The tenant's whole round in the console, in a real Chromium: uploads an app with a progress
/// bar, uploads files and watches their jobs end without reloading (a reason carrying markup
/// shows as text), replays the failed one, dry-runs the app; opens a stream while messages
/// flow and sees its plots drawn from real reports; inspects dead letters whose bodies carry
/// markup, uploads a fixed version and replays them into documents; reads them back in the
/// data browser; reads its usage. Another tenant's session sees none of it, in the page or by
/// calling what the page calls. Screenshots of each view go to target/tmp/console.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_drives_its_work_from_the_console_in_a_real_browser() {
    let database = database_name();
    let host = Host::start_on(&database, "console-cache").await;
    let a = unique("con-a");
    let b = unique("con-b");
    // Reports every second, so the plots have points within the test.
    let profile = json!({ "stream": { "report_interval_secs": 1 } });
    let token_a = host.create_tenant(&a, Some(profile.clone())).await;
    let token_b = host.create_tenant(&b, Some(profile)).await;
    let files = scratch("console").join(&a);
    std::fs::create_dir_all(&files).unwrap();

    let console = Console::open(&host).await;
    console.sign_in("tenant", &token_a).await;

    // An app, uploaded from the page.
    console.view("apps").await;
    console.type_into("#app-name", "orders").await;
    let wasm = Path::new(fixtures::CSV_BATCH);
    console.choose("#app-file", &[wasm]).await;
    console.click(Locator::Css("#app-upload-form button")).await;
    console
        .wait_text("the upload is answered", "#app-upload-result", |t| {
            t.contains("new version")
        })
        .await;
    let progress = console
        .run(
            "const p = document.getElementById('app-progress'); return [p.value, p.max];",
            vec![],
        )
        .await;
    assert_eq!(progress[0], progress[1], "the bar ends full: {progress}");
    assert!(
        progress[1].as_f64().unwrap() >= std::fs::metadata(wasm).unwrap().len() as f64,
        "the bar counted the component's bytes: {progress}"
    );
    console
        .wait_text("the app is listed", "#apps tbody", |t| {
            t.contains("orders") && t.contains("batch")
        })
        .await;
    console
        .wait_text("its versions are shown", "#versions tbody", |t| {
            t.contains("(active)")
        })
        .await;
    console.screenshot("apps").await;

    // A dry run on a pasted sample whose values carry markup.
    let (good, _) = orders_csv();
    let sample: String = good.lines().take(3).collect::<Vec<_>>().join("\n")
        + "\n9,c-9,<img src=x onerror=window.__pwned=4>,1,1.5,2026-11-21T10:00:00Z\n";
    console.type_into("#dry-input", &sample).await;
    console
        .type_into("#dry-params", "note=<script>window.__pwned=5</script>")
        .await;
    console.click(Locator::Css("#dry-run-form button")).await;
    console
        .wait_text("the dry run is answered", "#dry-result", |t| {
            t.contains("documents")
        })
        .await;
    let documents = console.text("#dry-documents").await;
    assert!(
        documents.contains("<img src=x onerror=window.__pwned=4>"),
        "{documents}"
    );

    // Files uploaded from the page: their jobs end on the page, without a reload.
    console.view("jobs").await;
    let evil_header = "<img src=x onerror=window.__pwned=1>";
    let evil = format!("{evil_header},<script>window.__pwned=2</script>\n1,2\n");
    std::fs::write(files.join("good.csv"), &good).unwrap();
    std::fs::write(files.join("evil.csv"), &evil).unwrap();
    console
        .wait_text("the app is offered", "#job-app", |t| t.contains("orders"))
        .await;
    console
        .choose(
            "#job-files",
            &[&files.join("good.csv"), &files.join("evil.csv")],
        )
        .await;
    console.click(Locator::Css("#job-upload-form button")).await;
    let queued = console
        .wait_text("the files are queued", "#job-upload-result", |t| {
            t.starts_with("queued")
        })
        .await;
    let shown = console
        .wait_text("both jobs ended on the page", "#jobs tbody", |t| {
            t.contains("good.csv") && t.contains("done") && t.contains("failed")
        })
        .await;
    assert!(
        shown.contains(evil_header),
        "the reason shows as text: {shown}"
    );
    assert!(
        shown.contains("<script>window.__pwned=2</script>"),
        "{shown}"
    );
    assert!(queued.contains("evil.csv as "), "{queued}");
    console.screenshot("jobs").await;
    // The failed job: its class and reason, and a replay.
    console
        .click(Locator::XPath(
            "//table[@id='jobs']//tr[td[contains(., 'evil.csv')]]//a",
        ))
        .await;
    let fields = console
        .wait_text("the job's details", "#job-fields", |t| {
            t.contains("failure class")
        })
        .await;
    assert!(
        fields.contains("evil.csv") && fields.contains(evil_header),
        "{fields}"
    );
    console.click(Locator::Css("#job-replay")).await;
    console
        .wait_text("the replay is answered", "#job-action-result", |t| {
            t.contains("queued again")
        })
        .await;
    console.assert_nothing_ran().await;

    // A stream whose app rejects some messages, opened while messages flow.
    let (status, body) = host
        .upload(&token_a, "sensors", read(fixtures::EVIL_POISON))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let stream_params = json!({ "note": "<img src=x onerror=window.__pwned=6>" });
    let (status, created) = host
        .tenant(
            &token_a,
            Method::POST,
            "/v1/streams",
            Some(json!({ "name": "fixme", "app": "sensors", "collection": "metrics", "params": stream_params })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let connection = created["connection"].clone();
    console.view("streams").await;
    console
        .wait_text("the stream's params show as text", "#streams tbody", |t| {
            t.contains("note=<img src=x onerror=window.__pwned=6>")
        })
        .await;
    console.view("stream/fixme").await;
    let flowing = {
        let connection = connection.clone();
        tokio::spawn(async move {
            for round in 0..20u64 {
                let messages = (0..50u64).map(|i| {
                    let n = round * 50 + i;
                    (format!("m{n}"), json!({ "n": n }).to_string())
                });
                publish(&connection, messages).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    // The last minute, where one-second reports make one point each.
    console
        .browser
        .client
        .find(Locator::Css("#window"))
        .await
        .unwrap()
        .select_by_value("60")
        .await
        .unwrap();
    wait_until(
        "the throughput plot draws points from the reports",
        Duration::from_secs(60),
        async || points(&console, "chart-rate").await,
        |n| *n >= 5,
    )
    .await;
    assert!(points(&console, "chart-latency").await >= 2);
    assert!(points(&console, "chart-consumers").await >= 1);
    flowing.await.unwrap();
    let poison: Vec<(String, String)> = (0..3)
        .map(|i| {
            let body = json!({
                "device": "d-1", "site": "<script>window.__pwned=7</script>",
                "ts": "2026-11-21T10:00:00Z", "readings": { "temp": i }, "fail": "reject",
            });
            (format!("bad-{i}"), body.to_string())
        })
        .collect();
    publish(&connection, poison).await;
    console.screenshot("stream").await;

    // The dead letters: inspected (bodies as text), then replayed after the fix.
    let letters = wait_until(
        "the dead letters are shown",
        Duration::from_secs(60),
        async || {
            console.click(Locator::Css("#dl-inspect")).await;
            console.text("#dead-letters tbody").await
        },
        |t| t.matches("bad-").count() == 3,
    )
    .await;
    assert!(
        letters.contains("<script>window.__pwned=7</script>") && letters.contains("reject"),
        "{letters}"
    );
    console
        .run(
            "document.getElementById('dead-letters').scrollIntoView();",
            vec![],
        )
        .await;
    console.screenshot("dead-letters").await;
    console.view("apps").await;
    console.type_into("#app-name", "sensors").await;
    console
        .choose("#app-file", &[Path::new(fixtures::JSON_STREAM)])
        .await;
    console.click(Locator::Css("#app-upload-form button")).await;
    console
        .wait_text("the fix is uploaded", "#app-upload-result", |t| {
            t.contains("new version") && t.contains("sensors") && t.contains("(active)")
        })
        .await;
    wait_for_the_sensor_app(&a, &connection).await;
    console.view("stream/fixme").await;
    console
        .wait_text("the stream view is up", "#stream-name", |t| t == "fixme")
        .await;
    console.click(Locator::Css("#dl-replay")).await;
    console
        .wait_text("the replay is answered", "#dl-result", |t| {
            t.contains("3 dead letter(s) sent back")
        })
        .await;
    let metrics = tenant_collection(&a, "metrics").await;
    wait_until(
        "the replayed letters become documents",
        Duration::from_secs(60),
        async || {
            metrics
                .count_documents(
                    doc! { "device": "d-1", "site": "<script>window.__pwned=7</script>" },
                )
                .await
                .unwrap()
        },
        |n| *n == 3,
    )
    .await;

    // The documents in the data browser, markup as text.
    console.view("data").await;
    console.type_into("#data-collection", "metrics").await;
    console
        .type_into("#data-filter", r#"{"device":"d-1"}"#)
        .await;
    console
        .click(Locator::Css("#data-form button[type=submit]"))
        .await;
    let page = console
        .wait_text("the documents are shown", "#documents tbody", |t| {
            t.contains("d-1")
        })
        .await;
    assert!(page.contains("<script>window.__pwned=7</script>"), "{page}");
    console.screenshot("data").await;

    // Usage against the quotas.
    console.view("usage").await;
    let quotas = console
        .wait_text("the usage is shown", "#quotas tbody", |t| {
            t.contains("batch uploads today")
        })
        .await;
    assert!(quotas.contains("stream messages"), "{quotas}");
    // What the view reads: the bytes staged today, exactly.
    let (status, usage) = host.tenant(&token_a, Method::GET, "/v1/usage", None).await;
    assert_eq!(status, StatusCode::OK, "{usage}");
    assert_eq!(
        usage["batch"]["used"].as_u64(),
        Some((good.len() + evil.len()) as u64),
        "{usage}"
    );
    assert_eq!(
        (usage["apps"].as_u64(), usage["streams"].as_u64()),
        (Some(2), Some(1))
    );
    assert!(
        !quotas.contains("batch uploads today (")
            || quotas.contains("KiB")
            || quotas.contains(" B")
    );
    console.screenshot("usage").await;
    console.assert_nothing_ran().await;

    // Another tenant: nothing of the first, in the page or through what the page calls.
    let job = console_job(&host, &token_a).await;
    console.sign_out().await;
    console.sign_in("tenant", &token_b).await;
    console.view("jobs").await;
    let jobs_b = console
        .wait_text("the second tenant's jobs", "#jobs tbody", |t| {
            t.contains("no batch jobs yet")
        })
        .await;
    assert!(!jobs_b.contains("good.csv"));
    console.view("apps").await;
    console
        .wait_text("the second tenant's apps", "#apps tbody", |t| {
            t.contains("no apps yet")
        })
        .await;
    console.view("streams").await;
    console
        .wait_text("the second tenant's streams", "#streams tbody", |t| {
            t.contains("no streams yet")
        })
        .await;
    for path in [
        "/v1/apps/orders".to_owned(),
        "/v1/apps/sensors/versions".to_owned(),
        "/v1/streams/fixme".to_owned(),
        "/v1/streams/fixme/series?window_secs=900".to_owned(),
        "/v1/streams/fixme/dead-letters".to_owned(),
        format!("/v1/batch/jobs/{job}"),
    ] {
        let (status, body) = console.call_as_console(&path).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (status, page) = console.call_as_console("/v1/data/metrics").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["documents"], json!([]), "another tenant's documents");
    let (status, usage) = console.call_as_console("/v1/usage").await;
    assert_eq!((status, usage["tenant"].as_str()), (200, Some(b.as_str())));
    console.assert_nothing_ran().await;

    console.close().await;
    host.delete_tenant(&a).await;
    host.delete_tenant(&b).await;
    drop_database(&tenant_database(&a)).await;
    drop_database(&tenant_database(&b)).await;
    host.stop().await;
    drop_database(&database).await;
}

/// One of the tenant's job ids, through the API.
async fn console_job(host: &Host, token: &str) -> String {
    let (status, jobs) = host
        .tenant(token, Method::GET, "/v1/batch/jobs", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{jobs}");
    jobs[0]["id"].as_str().unwrap().to_owned()
}

/// The operator's console: tenants created, suspended and resumed from the page, their profile
/// history, the live hosts, the platform's plots drawn from real work, and usage per tenant. A
/// tenant's token does not open the operator's views.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_runs_the_platform_from_the_console() {
    let database = database_name();
    let host = Host::start_on(&database, "console-cache").await;
    let worker = unique("con-op");
    let token = host.create_tenant(&worker, None).await;
    let (status, body) = host
        .upload(&token, "orders", read(fixtures::CSV_BATCH))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (good, _) = orders_csv();
    let jobs = upload_orders(&host, &token, "op-", vec![good.into_bytes()]).await;

    let console = Console::open(&host).await;
    // A tenant's token is not the operator's.
    console
        .click(Locator::Css("input[name=role][value=operator]"))
        .await;
    console.type_into("#token", &token).await;
    console.click(Locator::Css("#sign-in-form button")).await;
    console
        .wait_text("a tenant's token is refused", "#sign-in-error", |t| {
            t.contains("sign-in failed")
        })
        .await;

    console.sign_in("operator", OPERATOR).await;
    console.view("tenants").await;
    let created = unique("con-new");
    console.type_into("#tenant-id", &created).await;
    console
        .click(Locator::Css("#tenant-create-form button"))
        .await;
    let answer = console
        .wait_text("the tenant is created", "#tenant-created", |t| {
            t.contains("msbt_")
        })
        .await;
    assert!(answer.contains(&created), "{answer}");
    console
        .wait_text("the tenants are listed", "#tenants tbody", |t| {
            t.contains(&created) && t.contains(&worker)
        })
        .await;
    let row = format!("//table[@id='tenants']//tr[td[contains(., '{created}')]]");
    console
        .click(Locator::XPath(&format!("{row}//button")))
        .await;
    console
        .wait_text("the tenant is suspended", "#tenants tbody", |t| {
            t.contains("suspended from the console")
        })
        .await;
    let (_, shown) = host
        .admin(Method::GET, &format!("/v1/admin/tenants/{created}"), None)
        .await;
    assert_eq!(shown["status"], "suspended", "{shown}");
    console
        .click(Locator::XPath(&format!("{row}//button")))
        .await;
    wait_until(
        "the tenant is resumed",
        Duration::from_secs(30),
        async || {
            host.admin(Method::GET, &format!("/v1/admin/tenants/{created}"), None)
                .await
                .1["status"]
                .clone()
        },
        |status| status == "active",
    )
    .await;
    console.click(Locator::XPath(&format!("{row}//a"))).await;
    console
        .wait_text("its profile history", "#profiles tbody", |t| {
            t.contains("v1")
        })
        .await;
    console.screenshot("operator-tenants").await;

    console.view("hosts").await;
    let hosts = console
        .wait_text("the live hosts", "#hosts tbody", |t| t.contains("api"))
        .await;
    assert!(hosts.contains("batch"), "{hosts}");

    // The platform's plots, once the job has ended.
    let job = wait_job_ended(&host, &token, &jobs[0], Duration::from_secs(60)).await;
    assert_eq!(job["status"], "done", "{job}");
    console.view("platform").await;
    wait_until(
        "the platform's batch plot draws the job",
        Duration::from_secs(30),
        async || points(&console, "chart-platform-batch").await,
        |n| *n >= 1,
    )
    .await;
    let usage = console
        .wait_text("usage per tenant", "#tenant-usage tbody", |t| {
            t.contains(&worker)
        })
        .await;
    assert!(usage.contains("1 / 0"), "one file done: {usage}");
    console.screenshot("operator-platform").await;
    console.assert_nothing_ran().await;

    console.close().await;
    for tenant in [&worker, &created] {
        host.delete_tenant(tenant).await;
        drop_database(&tenant_database(tenant)).await;
    }
    host.stop().await;
    drop_database(&database).await;
}
