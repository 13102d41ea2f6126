//! The OpenAPI document describes what the server does: every operation it lists, driven live
//! with a good request and with bad ones (no token, a token of the other kind, unknown names,
//! malformed bodies and queries), answers only statuses the document lists for that operation,
//! with bodies that validate against the documented schemas.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mysimbdp_fixtures as fixtures;
use mysimbdp_tests::prelude::*;
use reqwest::multipart::{Form, Part};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// A request body.
enum Body {
    None,
    Json(Value),
    /// Raw bytes with a content type.
    Raw(&'static str, Vec<u8>),
    Form(Form),
}

/// Sends requests and checks each answer against the document; failures are collected so
/// that one run lists them all.
struct Checker<'a> {
    host: &'a Host,
    doc: Value,
    /// `(method, path template)` → the statuses seen.
    seen: BTreeMap<(String, String), BTreeSet<u16>>,
    requests: usize,
    failures: Vec<String>,
}

impl<'a> Checker<'a> {
    async fn new(host: &'a Host) -> Self {
        let doc: Value = host
            .http
            .get(format!("{}/v1/openapi.json", host.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Self {
            host,
            doc,
            seen: BTreeMap::new(),
            requests: 0,
            failures: Vec::new(),
        }
    }

    /// Every `(method, path template)` of the document.
    fn operations(&self) -> Vec<(String, String)> {
        let mut operations = Vec::new();
        for (path, item) in self.doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                operations.push((method.clone(), path.clone()));
            }
        }
        operations
    }

    fn operation(&self, method: &str, template: &str) -> &Value {
        &self.doc["paths"][template][method]
    }

    /// Sends `method template` with `params` substituted, `query` appended, and checks the
    /// answer against the document. Returns the status and the JSON body (Null otherwise).
    async fn send(
        &mut self,
        method: &str,
        template: &str,
        params: &[(&str, &str)],
        query: &str,
        token: Option<&str>,
        body: Body,
    ) -> (StatusCode, Value) {
        let mut path = template.to_owned();
        for (name, value) in params {
            path = path.replace(&format!("{{{name}}}"), value);
        }
        assert!(!path.contains('{'), "{template}: a parameter is missing");
        let method_ = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
        let mut request = self.host.request(method_, &format!("{path}{query}"), token);
        request = match body {
            Body::None => request,
            Body::Json(value) => request.json(&value),
            Body::Raw(content_type, bytes) => {
                request.header("content-type", content_type).body(bytes)
            }
            Body::Form(form) => request.multipart(form),
        };
        let response = request.send().await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or_default().trim().to_owned());
        let text = response.text().await.unwrap();
        let json = serde_json::from_str::<Value>(&text).unwrap_or(Value::Null);
        self.requests += 1;
        self.seen
            .entry((method.to_owned(), template.to_owned()))
            .or_default()
            .insert(status.as_u16());
        let at = format!("{} {path}{query} → {status}", method.to_ascii_uppercase());
        self.check(
            method,
            template,
            &at,
            status,
            content_type.as_deref(),
            &text,
        );
        (status, json)
    }

    fn check(
        &mut self,
        method: &str,
        template: &str,
        at: &str,
        status: StatusCode,
        content_type: Option<&str>,
        text: &str,
    ) {
        let operation = self.operation(method, template).clone();
        if operation.is_null() {
            self.failures
                .push(format!("{at}: the operation is not documented"));
            return;
        }
        let responses = &operation["responses"];
        let response = match (
            responses.get(status.as_u16().to_string()),
            responses.get("default"),
        ) {
            (Some(r), _) | (None, Some(r)) => r,
            (None, None) => {
                self.failures.push(format!(
                    "{at}: status {} is not documented for this operation (body {text:?})",
                    status.as_u16()
                ));
                return;
            }
        };
        let Some(content) = response["content"].as_object().filter(|c| !c.is_empty()) else {
            return;
        };
        let Some(content_type) = content_type else {
            if !text.is_empty() {
                self.failures
                    .push(format!("{at}: a body without a content type: {text:?}"));
            }
            return;
        };
        let Some(media) = content.get(content_type) else {
            self.failures.push(format!(
                "{at}: content type {content_type} is not documented (documented: {:?})",
                content.keys().collect::<Vec<_>>()
            ));
            return;
        };
        if content_type != "application/json" || media["schema"].is_null() {
            return;
        }
        let instance: Value = match serde_json::from_str(text) {
            Ok(instance) => instance,
            Err(e) => {
                self.failures
                    .push(format!("{at}: the body is not JSON ({e}): {text:?}"));
                return;
            }
        };
        // The documented schema, with the document's components beside it so its `$ref`s
        // into `#/components/schemas` resolve locally (OpenAPI 3.1 is JSON Schema 2020-12).
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.doc["components"],
            "allOf": [media["schema"]],
        });
        let validator = jsonschema::validator_for(&schema)
            .unwrap_or_else(|e| panic!("{at}: the documented schema does not compile: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if !errors.is_empty() {
            self.failures.push(format!(
                "{at}: the body does not match the documented schema: {errors:?}; body {text}"
            ));
        }
    }

    /// Sends and requires `expected`, besides checking against the document.
    #[allow(clippy::too_many_arguments)]
    async fn expect(
        &mut self,
        expected: u16,
        method: &str,
        template: &str,
        params: &[(&str, &str)],
        query: &str,
        token: Option<&str>,
        body: Body,
    ) -> Value {
        let (status, json) = self
            .send(method, template, params, query, token, body)
            .await;
        assert_eq!(
            status.as_u16(),
            expected,
            "{} {template}{query}: {json}",
            method.to_ascii_uppercase()
        );
        json
    }
}

fn csv_form(app: &str) -> Form {
    let (csv, _) = orders_csv();
    Form::new().text("app", app.to_owned()).part(
        "file",
        Part::bytes(csv.into_bytes())
            .file_name("orders.csv")
            .mime_str("text/csv")
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn every_operation_answers_as_documented() {
    let host = Host::start_with(&database_name(), "openapi-cache", |config| {
        config.stream.reconcile_ms = 200;
    })
    .await;
    let tenant_id = mysimbdp_tests::unique("oa");
    let victim_id = mysimbdp_tests::unique("oav");
    let mut c = Checker::new(&host).await;
    let op = Some(OPERATOR);

    // The operator: tenants.
    let created = c
        .expect(
            201,
            "post",
            "/v1/admin/tenants",
            &[],
            "",
            op,
            Body::Json(json!({ "id": tenant_id })),
        )
        .await;
    let token = created["token"].as_str().unwrap().to_owned();
    let tk = Some(token.as_str());
    c.expect(
        201,
        "post",
        "/v1/admin/tenants",
        &[],
        "",
        op,
        Body::Json(json!({ "id": victim_id })),
    )
    .await;
    for (expected, body) in [
        (409, json!({ "id": tenant_id })),
        (422, json!({ "id": "Not A Name" })),
        (422, json!({ "id": "x" })),
        (422, json!({ "id": "ok-id", "profile": { "nope": 1 } })),
        (422, json!({ "nope": 1 })),
    ] {
        c.expect(
            expected,
            "post",
            "/v1/admin/tenants",
            &[],
            "",
            op,
            Body::Json(body),
        )
        .await;
    }
    c.expect(
        400,
        "post",
        "/v1/admin/tenants",
        &[],
        "",
        op,
        Body::Raw("application/json", b"{\"id\":".to_vec()),
    )
    .await;
    c.expect(
        415,
        "post",
        "/v1/admin/tenants",
        &[],
        "",
        op,
        Body::Raw("text/plain", b"{}".to_vec()),
    )
    .await;
    c.expect(200, "get", "/v1/admin/tenants", &[], "", op, Body::None)
        .await;
    let v = [("id", victim_id.as_str())];
    c.expect(200, "get", "/v1/admin/tenants/{id}", &v, "", op, Body::None)
        .await;
    let suspend = "/v1/admin/tenants/{id}/suspend";
    c.expect(200, "post", suspend, &v, "", op, Body::None).await;
    c.expect(200, "post", suspend, &v, "", op, Body::Json(Value::Null))
        .await;
    c.expect(
        200,
        "post",
        suspend,
        &v,
        "",
        op,
        Body::Json(json!({ "reason": "unpaid" })),
    )
    .await;
    c.expect(
        400,
        "post",
        suspend,
        &v,
        "",
        op,
        Body::Json(json!({ "why": 1 })),
    )
    .await;
    c.expect(
        200,
        "post",
        "/v1/admin/tenants/{id}/resume",
        &v,
        "",
        op,
        Body::None,
    )
    .await;
    c.expect(
        200,
        "post",
        "/v1/admin/tenants/{id}/token",
        &v,
        "",
        op,
        Body::None,
    )
    .await;
    let profile = "/v1/admin/tenants/{id}/profile";
    c.expect(200, "put", profile, &v, "", op, Body::Json(json!({})))
        .await;
    c.expect(
        200,
        "put",
        profile,
        &v,
        "",
        op,
        Body::Raw(
            "application/toml",
            b"[batch]\nmax_files_per_request = 3\n".to_vec(),
        ),
    )
    .await;
    c.expect(
        422,
        "put",
        profile,
        &v,
        "",
        op,
        Body::Json(json!({ "nope": true })),
    )
    .await;
    c.expect(
        415,
        "put",
        profile,
        &v,
        "",
        op,
        Body::Raw("text/plain", b"{}".to_vec()),
    )
    .await;
    c.expect(
        200,
        "get",
        "/v1/admin/tenants/{id}/profile/versions",
        &v,
        "",
        op,
        Body::None,
    )
    .await;
    c.expect(200, "get", "/v1/admin/hosts", &[], "", op, Body::None)
        .await;
    c.expect(200, "get", "/v1/admin/stats", &[], "", op, Body::None)
        .await;

    // The tenant: apps.
    c.expect(200, "get", "/v1/tenant", &[], "", tk, Body::None)
        .await;
    let app = "/v1/apps/{name}";
    let orders = [("name", "orders")];
    let uploaded = c
        .expect(
            201,
            "put",
            app,
            &orders,
            "",
            tk,
            Body::Raw("application/wasm", read(fixtures::CSV_BATCH)),
        )
        .await;
    let version = uploaded["version"]["version"]
        .as_str()
        .unwrap_or_else(|| panic!("an uploaded version has an id: {uploaded}"))
        .to_owned();
    c.expect(
        200,
        "put",
        app,
        &orders,
        "?activate=true",
        tk,
        Body::Raw("application/wasm", read(fixtures::CSV_BATCH)),
    )
    .await;
    c.expect(
        415,
        "put",
        app,
        &orders,
        "",
        tk,
        Body::Raw("text/plain", b"x".to_vec()),
    )
    .await;
    c.expect(
        400,
        "put",
        app,
        &orders,
        "",
        tk,
        Body::Raw("application/wasm", Vec::new()),
    )
    .await;
    c.expect(
        422,
        "put",
        app,
        &orders,
        "",
        tk,
        Body::Raw("application/wasm", b"not a component".to_vec()),
    )
    .await;
    c.expect(
        400,
        "put",
        app,
        &orders,
        "?activate=maybe",
        tk,
        Body::Raw("application/wasm", read(fixtures::CSV_BATCH)),
    )
    .await;
    c.expect(200, "get", "/v1/apps", &[], "", tk, Body::None)
        .await;
    c.expect(200, "get", app, &orders, "", tk, Body::None).await;
    c.expect(
        200,
        "patch",
        app,
        &orders,
        "",
        tk,
        Body::Json(json!({ "sandbox": {} })),
    )
    .await;
    c.expect(
        422,
        "patch",
        app,
        &orders,
        "",
        tk,
        Body::Json(json!({ "sandbox": { "fuel": "lots" } })),
    )
    .await;
    c.expect(
        200,
        "get",
        "/v1/apps/{name}/versions",
        &orders,
        "",
        tk,
        Body::None,
    )
    .await;
    let orders_version = [("name", "orders"), ("version", version.as_str())];
    c.expect(
        200,
        "get",
        "/v1/apps/{name}/versions/{version}",
        &orders_version,
        "",
        tk,
        Body::None,
    )
    .await;
    c.expect(
        200,
        "post",
        "/v1/apps/{name}/activate",
        &orders,
        "",
        tk,
        Body::Json(json!({ "version": version })),
    )
    .await;
    c.expect(
        409,
        "post",
        "/v1/apps/{name}/rollback",
        &orders,
        "",
        tk,
        Body::None,
    )
    .await;
    let (csv, _) = orders_csv();
    let sample: String = csv.lines().take(5).map(|l| format!("{l}\n")).collect();
    c.expect(
        200,
        "post",
        "/v1/apps/{name}/dry-run",
        &orders,
        "",
        tk,
        Body::Json(json!({ "input": sample })),
    )
    .await;

    // The tenant: batch.
    let queued = c
        .expect(
            202,
            "post",
            "/v1/batch/files",
            &[],
            "",
            tk,
            Body::Form(csv_form("orders")),
        )
        .await;
    let job = queued["files"][0]["job"].as_str().unwrap().to_owned();
    c.expect(
        404,
        "post",
        "/v1/batch/files",
        &[],
        "",
        tk,
        Body::Form(csv_form("nope")),
    )
    .await;
    c.expect(
        400,
        "post",
        "/v1/batch/files",
        &[],
        "",
        tk,
        Body::Form(Form::new().text("nope", "x")),
    )
    .await;
    c.expect(
        400,
        "post",
        "/v1/batch/files",
        &[],
        "",
        tk,
        Body::Json(json!({})),
    )
    .await;
    c.expect(200, "get", "/v1/batch/jobs", &[], "", tk, Body::None)
        .await;
    c.expect(
        200,
        "get",
        "/v1/batch/jobs",
        &[],
        "?status=done&limit=1000",
        tk,
        Body::None,
    )
    .await;
    for query in ["?limit=0", "?limit=1001", "?status=nope", "?limit=x"] {
        c.expect(400, "get", "/v1/batch/jobs", &[], query, tk, Body::None)
            .await;
    }
    let j = [("id", job.as_str())];
    c.expect(200, "get", "/v1/batch/jobs/{id}", &j, "", tk, Body::None)
        .await;
    c.send("post", "/v1/batch/jobs/{id}/replay", &j, "", tk, Body::None)
        .await;
    c.expect(200, "get", "/v1/stats", &[], "", tk, Body::None)
        .await;

    // The tenant: data as a service.
    let data = "/v1/data/{collection}";
    let col = [("collection", "orders")];
    c.expect(
        200,
        "post",
        data,
        &col,
        "",
        tk,
        Body::Json(json!({ "a": 1 })),
    )
    .await;
    c.send(
        "post",
        data,
        &col,
        "",
        tk,
        Body::Raw("application/x-ndjson", b"{\"a\":2}\nnope\n".to_vec()),
    )
    .await;
    c.send(
        "post",
        data,
        &col,
        "",
        tk,
        Body::Raw("text/plain", b"{}".to_vec()),
    )
    .await;
    c.expect(200, "get", data, &col, "?limit=5", tk, Body::None)
        .await;
    for query in [
        "?filter=nope",
        "?limit=x",
        "?filter=%7B%22%24where%22%3A1%7D",
    ] {
        c.send("get", data, &col, query, tk, Body::None).await;
    }

    // The tenant: streams.
    c.expect(
        201,
        "put",
        app,
        &[("name", "sensors")],
        "",
        tk,
        Body::Raw("application/wasm", read(fixtures::JSON_STREAM)),
    )
    .await;
    let new_stream = json!({ "name": "readings", "app": "sensors", "collection": "readings" });
    c.expect(
        201,
        "post",
        "/v1/streams",
        &[],
        "",
        tk,
        Body::Json(new_stream.clone()),
    )
    .await;
    for (expected, body) in [
        (409, new_stream),
        (409, json!({ "name": "other", "app": "orders" })),
        (404, json!({ "name": "other", "app": "nope" })),
        (422, json!({ "name": "Bad Name", "app": "sensors" })),
        (
            422,
            json!({ "name": "other", "app": "sensors", "delivery_limit": 0 }),
        ),
        (422, json!({ "name": "other" })),
    ] {
        c.expect(
            expected,
            "post",
            "/v1/streams",
            &[],
            "",
            tk,
            Body::Json(body),
        )
        .await;
    }
    c.expect(200, "get", "/v1/streams", &[], "", tk, Body::None)
        .await;
    let s = [("name", "readings")];
    c.expect(200, "get", "/v1/streams/{name}", &s, "", tk, Body::None)
        .await;
    c.expect(
        200,
        "get",
        "/v1/streams/{name}/connection",
        &s,
        "",
        tk,
        Body::None,
    )
    .await;
    let stats = "/v1/streams/{name}/stats";
    c.expect(200, "get", stats, &s, "?window_secs=86400", tk, Body::None)
        .await;
    for query in ["?window_secs=0", "?window_secs=86401", "?window_secs=x"] {
        c.expect(400, "get", stats, &s, query, tk, Body::None).await;
    }
    let series = "/v1/streams/{name}/series";
    c.expect(200, "get", series, &s, "", tk, Body::None).await;
    c.expect(
        200,
        "get",
        series,
        &s,
        "?window_secs=60&points=500",
        tk,
        Body::None,
    )
    .await;
    for query in [
        "?window_secs=59",
        "?window_secs=86401",
        "?points=9",
        "?points=501",
    ] {
        c.expect(400, "get", series, &s, query, tk, Body::None)
            .await;
    }
    c.expect(200, "get", "/v1/usage", &[], "", tk, Body::None)
        .await;
    c.expect(200, "get", "/v1/admin/usage", &[], "", op, Body::None)
        .await;
    let platform = "/v1/admin/series";
    c.expect(
        200,
        "get",
        platform,
        &[],
        "?window_secs=3600",
        op,
        Body::None,
    )
    .await;
    c.expect(400, "get", platform, &[], "?points=0", op, Body::None)
        .await;
    let peek = "/v1/streams/{name}/dead-letters";
    c.expect(200, "get", peek, &s, "?limit=100", tk, Body::None)
        .await;
    for query in ["?limit=0", "?limit=101"] {
        c.expect(400, "get", peek, &s, query, tk, Body::None).await;
    }
    let replay = "/v1/streams/{name}/dead-letters/replay";
    c.expect(200, "post", replay, &s, "", tk, Body::None).await;
    c.expect(400, "post", replay, &s, "?limit=0", tk, Body::None)
        .await;
    c.expect(
        200,
        "post",
        "/v1/streams/{name}/stop",
        &s,
        "",
        tk,
        Body::None,
    )
    .await;
    c.expect(
        200,
        "post",
        "/v1/streams/{name}/start",
        &s,
        "",
        tk,
        Body::None,
    )
    .await;
    c.expect(
        200,
        "post",
        "/v1/streams/credentials/rotate",
        &[],
        "",
        tk,
        Body::None,
    )
    .await;
    c.expect(
        400,
        "delete",
        "/v1/streams/{name}",
        &s,
        "?force=maybe",
        tk,
        Body::None,
    )
    .await;

    // The meta endpoints.
    for path in [
        "/healthz",
        "/readyz",
        "/v1/openapi.json",
        "/v1/schemas/tenant-profile.json",
    ] {
        c.expect(200, "get", path, &[], "", None, Body::None).await;
    }
    c.send("get", "/metrics", &[], "", op, Body::None).await;

    // Every operation, with bad credentials and with unknown names, bad bodies and queries:
    // only unknown names, so nothing above is destroyed.
    let unknown: [(&str, &str); 4] = [
        ("id", "no-such-tenant"),
        ("name", "nope"),
        ("version", "0123456789abcdef"),
        ("collection", "nope"),
    ];
    for (method, template) in c.operations() {
        let params: Vec<(&str, &str)> = unknown
            .iter()
            .map(
                |&(name, value)| match (name, template.starts_with("/v1/batch/jobs/")) {
                    ("id", true) => ("id", "0123456789abcdef01234567"),
                    _ => (name, value),
                },
            )
            .collect();
        let secured = c.operation(&method, &template)["security"]
            .as_array()
            .is_some_and(|s| !s.is_empty());
        let operator_only = template.starts_with("/v1/admin") || template == "/metrics";
        let (right, wrong) = if operator_only { (op, tk) } else { (tk, op) };
        if secured {
            let (status, _) = c
                .send(&method, &template, &params, "", None, Body::None)
                .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {template}");
            let (status, _) = c
                .send(
                    &method,
                    &template,
                    &params,
                    "",
                    Some("msbt_nope"),
                    Body::None,
                )
                .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {template}");
            let (status, _) = c
                .send(&method, &template, &params, "", wrong, Body::None)
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {template}");
        }
        // A wasm upload under an unknown name would create the app: skip the empty body.
        for body in [
            Body::None,
            Body::Json(json!({})),
            Body::Json(json!([1, "x"])),
            Body::Raw("application/json", b"{\"x\":".to_vec()),
            Body::Raw("text/plain", b"hello".to_vec()),
        ] {
            c.send(&method, &template, &params, "", right, body).await;
        }
        for query in [
            "?limit=0",
            "?limit=-1",
            "?limit=99999999999999999999",
            "?force=maybe",
            "?window_secs=0",
            "?activate=maybe",
            "?status=nope",
            "?filter=%7B",
        ] {
            c.send(&method, &template, &params, query, right, Body::None)
                .await;
        }
        // Names the naming rules refuse, and an undecodable one.
        if template.contains('{') {
            let bad: Vec<(&str, &str)> = params.iter().map(|&(n, _)| (n, "Bad%20Name")).collect();
            c.send(&method, &template, &bad, "", right, Body::None)
                .await;
            let bad: Vec<(&str, &str)> = params.iter().map(|&(n, _)| (n, "%FF")).collect();
            c.send(&method, &template, &bad, "", right, Body::None)
                .await;
        }
    }

    // Destructive operations last.
    let stream = "/v1/streams/{name}";
    c.expect(204, "delete", stream, &s, "?force=true", tk, Body::None)
        .await;
    c.expect(
        409,
        "delete",
        "/v1/apps/{name}/versions/{version}",
        &orders_version,
        "",
        tk,
        Body::None,
    )
    .await;
    c.expect(204, "delete", app, &orders, "", tk, Body::None)
        .await;
    c.expect(
        204,
        "delete",
        "/v1/admin/tenants/{id}",
        &v,
        "",
        op,
        Body::None,
    )
    .await;
    c.expect(
        204,
        "delete",
        "/v1/admin/tenants/{id}",
        &[("id", tenant_id.as_str())],
        "",
        op,
        Body::None,
    )
    .await;

    // Every operation answered a success at least once, but those whose success needs state
    // this test does not build (a second version to roll back to or delete, a failed job).
    let needs_more_state = [
        "post /v1/apps/{name}/rollback",
        "delete /v1/apps/{name}/versions/{version}",
        "post /v1/batch/jobs/{id}/replay",
    ];
    let mut missing = Vec::new();
    for (method, template) in c.operations() {
        let seen = c.seen.get(&(method.clone(), template.clone()));
        if needs_more_state.contains(&format!("{method} {template}").as_str()) {
            assert!(seen.is_some(), "{method} {template} was never driven");
            continue;
        }
        if !seen.is_some_and(|s| s.iter().any(|status| (200..300).contains(status))) {
            missing.push(format!("{method} {template}: {seen:?}"));
        }
    }
    let failures = std::mem::take(&mut c.failures);
    let requests = c.requests;
    let operations = c.seen.len();
    drop(c);
    host.stop().await;
    assert!(
        failures.is_empty(),
        "{} answers disagree with the document:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        missing.is_empty(),
        "operations never answered a success:\n{}",
        missing.join("\n")
    );
    eprintln!("{requests} requests over {operations} operations agree with the document");
}
