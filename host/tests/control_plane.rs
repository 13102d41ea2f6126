//! Proves the tenant control plane against the real MongoDB: tenant lifecycle, auth and
//! isolation, app admission (every evil and malformed component refused, nothing stored),
//! versions, activation and rollback, dry runs, the OpenAPI document, metrics, graceful
//! shutdown, the CLI, and two `serve` processes sharing one platform database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures_util::StreamExt;
use mongodb::bson::doc;
use mysimbdp_fixtures as fixtures;
use mysimbdp_tests::prelude::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_lifecycle() {
    let host = Host::start().await;
    let acme = include_str!("../../config/tenants/acme.toml");
    let acme: Value = toml::from_str(acme).unwrap();
    let token = host.create_tenant("acme", Some(acme)).await;
    assert!(token.starts_with("msbt_"));

    // The id is taken; bad ids and bad profiles are refused with the field.
    let (status, body) = host
        .admin(
            Method::POST,
            "/v1/admin/tenants",
            Some(json!({ "id": "acme" })),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = host
        .admin(
            Method::POST,
            "/v1/admin/tenants",
            Some(json!({ "id": "Bad_Id" })),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("id")),
        "{body}"
    );
    let (status, body) = host
        .admin(
            Method::POST,
            "/v1/admin/tenants",
            Some(json!({ "id": "initech", "profile": { "stream": { "min_consumers_per_stream": 9, "max_consumers_per_stream": 2 } } })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body["error"]["field"], "profile.stream.min_consumers_per_stream",
        "{body}"
    );
    let (status, body) = host
        .admin(
            Method::POST,
            "/v1/admin/tenants",
            Some(json!({ "id": "initech", "profile": { "sandbox": { "memory_mib": 4096 } } })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("operator's maximum"),
        "{body}"
    );
    let (status, _) = host
        .admin(Method::GET, "/v1/admin/tenants/initech", None)
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "refused tenants are not created"
    );

    // Listed and shown; the token hash never leaves the platform.
    let (status, list) = host.admin(Method::GET, "/v1/admin/tenants", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert!(!list.to_string().contains("token_hash"), "{list}");
    let (_, shown) = host
        .admin(Method::GET, "/v1/admin/tenants/acme", None)
        .await;
    assert_eq!(shown["status"], "active");
    assert_eq!(shown["profile"]["sink"]["collection"], "orders");
    assert_eq!(shown["database"], "tenant_acme");
    let stored = host
        .platform_db()
        .await
        .collection::<mongodb::bson::Document>("tenants")
        .find_one(doc! { "_id": "acme" })
        .await
        .unwrap()
        .unwrap();
    assert!(
        !stored.to_string().contains(&token),
        "the token itself is never stored"
    );

    // A new profile version (TOML) takes effect at once; the history keeps both.
    let version_and_memory = |me: &Value| {
        (
            me["profile_version"].as_i64(),
            me["limits"]["memory_mib"].as_u64(),
        )
    };
    let (_, me) = host.tenant(&token, Method::GET, "/v1/tenant", None).await;
    assert_eq!(version_and_memory(&me), (Some(1), Some(32)));
    let (status, body) = host
        .put_profile(
            "acme",
            "[sandbox]\nmemory_mib = 16\n[stream]\nmax_consumers_per_stream = 2\n",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, me) = host.tenant(&token, Method::GET, "/v1/tenant", None).await;
    assert_eq!(version_and_memory(&me), (Some(2), Some(16)));
    let (status, body) = host
        .put_profile("acme", "[stream]\nmax_consumers_per_stream = \"many\"\n")
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["error"]["field"], "stream.max_consumers_per_stream",
        "{body}"
    );
    let (_, history) = host
        .admin(Method::GET, "/v1/admin/tenants/acme/profile/versions", None)
        .await;
    let versions: Vec<i64> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [2, 1], "a refused profile makes no version");

    // Suspended: refused with the reason; resumed: served again.
    let (status, _) = host
        .admin(
            Method::POST,
            "/v1/admin/tenants/acme/suspend",
            Some(json!({ "reason": "unpaid invoice" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = host.tenant(&token, Method::GET, "/v1/apps", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("tenant_suspended"))
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unpaid invoice"),
        "{body}"
    );
    let (status, body) = host
        .upload(&token, "orders", b"refused before it is read".to_vec())
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    host.admin(Method::POST, "/v1/admin/tenants/acme/resume", None)
        .await;
    let (status, _) = host.tenant(&token, Method::GET, "/v1/apps", None).await;
    assert_eq!(status, StatusCode::OK);

    // Rotation: the old token dies at once, the new one works.
    let (_, rotated) = host
        .admin(Method::POST, "/v1/admin/tenants/acme/token", None)
        .await;
    let new_token = rotated["token"].as_str().unwrap();
    assert_ne!(new_token, token);
    let (status, _) = host.tenant(&token, Method::GET, "/v1/tenant", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = host
        .tenant(new_token, Method::GET, "/v1/tenant", None)
        .await;
    assert_eq!(status, StatusCode::OK);

    // Deleted with its apps and profiles.
    let (status, _) = host
        .upload(new_token, "orders", read(fixtures::CSV_BATCH))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = host
        .admin(Method::DELETE, "/v1/admin/tenants/acme", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = host
        .admin(Method::GET, "/v1/admin/tenants/acme", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = host
        .tenant(new_token, Method::GET, "/v1/tenant", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let db = host.platform_db().await;
    for collection in [
        "profile_versions",
        "apps",
        "app_versions",
        "components.files",
        "components.chunks",
    ] {
        let left = db
            .collection::<mongodb::bson::Document>(collection)
            .count_documents(doc! {})
            .await
            .unwrap();
        assert_eq!(
            left, 0,
            "{collection} still holds the deleted tenant's data"
        );
    }
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_and_isolation() {
    let host = Host::start().await;
    let a = host.create_tenant("tenant-a", None).await;
    let b = host.create_tenant("tenant-b", None).await;
    let (status, uploaded) = host.upload(&a, "orders", read(fixtures::CSV_BATCH)).await;
    assert_eq!(status, StatusCode::CREATED, "{uploaded}");
    let version = uploaded["version"]["version"].as_str().unwrap().to_owned();

    // No token, a malformed header, a wrong token: 401 with a challenge.
    let response = host
        .request(Method::GET, "/v1/apps", None)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let response = host
        .request(Method::GET, "/v1/apps", None)
        .header("authorization", format!("Basic {a}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    for wrong in ["msbt_0000", "nonsense", &format!("{a}x")] {
        let (status, _) = host.tenant(wrong, Method::GET, "/v1/apps", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{wrong}");
        let (status, _) = host
            .tenant(wrong, Method::GET, "/v1/admin/tenants", None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{wrong}");
    }
    // The wrong kind of token: 403.
    let (status, body) = host
        .tenant(&a, Method::GET, "/v1/admin/tenants", None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("operator_only"))
    );
    let (status, body) = host.tenant(OPERATOR, Method::GET, "/v1/apps", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("tenant_only"))
    );

    // Tenant B sees nothing of A's, and cannot touch it: 404, as if it did not exist.
    let (_, list) = host.tenant(&b, Method::GET, "/v1/apps", None).await;
    assert_eq!(list, json!([]));
    let short = &version[..12];
    for (method, path, body) in [
        (Method::GET, "/v1/apps/orders".to_owned(), None),
        (Method::GET, "/v1/apps/orders/versions".to_owned(), None),
        (
            Method::GET,
            format!("/v1/apps/orders/versions/{version}"),
            None,
        ),
        (
            Method::POST,
            "/v1/apps/orders/activate".to_owned(),
            Some(json!({ "version": version })),
        ),
        (Method::POST, "/v1/apps/orders/rollback".to_owned(), None),
        (
            Method::POST,
            "/v1/apps/orders/dry-run".to_owned(),
            Some(json!({ "input": "x" })),
        ),
        (
            Method::PATCH,
            "/v1/apps/orders".to_owned(),
            Some(json!({ "sandbox": {} })),
        ),
        (
            Method::DELETE,
            format!("/v1/apps/orders/versions/{short}"),
            None,
        ),
        (Method::DELETE, "/v1/apps/orders".to_owned(), None),
    ] {
        let (status, answer) = host.tenant(&b, method.clone(), &path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
        assert!(!answer.to_string().contains("tenant-a"), "{answer}");
        assert!(
            answer.get("app").is_none() && answer.get("active").is_none(),
            "{answer}"
        );
    }
    // B's own app of the same name is B's: A's is untouched.
    let (status, _) = host.upload(&b, "orders", read(fixtures::EVIL_FLAKY)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, mine) = host.tenant(&a, Method::GET, "/v1/apps/orders", None).await;
    assert_eq!(mine["app"]["active"], version.as_str());
    assert_eq!(mine["versions"].as_array().unwrap().len(), 1, "{mine}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evil_and_malformed_components_are_refused_and_nothing_is_stored() {
    let host = Host::start().await;
    let token = host.create_tenant("mallory", None).await;
    // (fixture, the failure class the refusal names)
    let evil = [
        (fixtures::EVIL_LOOP, "out-of-fuel"),
        (fixtures::EVIL_MEMBOMB, "memory-limit"),
        (fixtures::EVIL_RECURSION, "stack-overflow"),
        (fixtures::EVIL_FLOOD, "output-limit"),
        (fixtures::EVIL_PANIC, "panic"),
        (fixtures::EVIL_EXIT, "panic"),
        (fixtures::EVIL_HOSTCALLS, "host-call-limit"),
        (fixtures::EVIL_RESOURCES, "resource-limit"),
        (fixtures::EVIL_BAD_OUTPUT, "bad-output"),
        (fixtures::EVIL_SLEEP, "deadline"),
        (fixtures::EVIL_UNKNOWN_IMPORT, "invalid-component"),
        (fixtures::EVIL_WRONG_WORLD, "invalid-component"),
        (fixtures::CORE_MODULE, "invalid-component"),
    ];
    for (path, class) in evil {
        let (status, body) = host.upload(&token, "app", read(path)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {body}");
        assert_eq!(body["error"]["class"], class, "{path}: {body}");
    }
    // The WASI imports policy: an app linking wasi:sockets and wasi:filesystem (as language
    // runtimes do) is admitted, because the sandbox puts nothing behind them; its attempts
    // to leave fail at run time (`sandbox.rs`, `evil_escape`).
    let (status, body) = host
        .upload(&token, "escape", read(fixtures::EVIL_ESCAPE))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(
        body["version"]["imports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i.as_str().unwrap().starts_with("wasi:sockets/")),
        "{body}"
    );
    let (status, body) = host
        .tenant(&token, Method::DELETE, "/v1/apps/escape", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    // Malformed: garbage, a truncated component, an empty body, the wrong media type, a bad
    // name, and a body over the cap (refused from its Content-Length, before reading).
    let csv = read(fixtures::CSV_BATCH);
    let (status, body) = host.upload(&token, "app", b"\0asm garbage".to_vec()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_component")),
        "{body}"
    );
    let (status, body) = host
        .upload(&token, "app", csv[..csv.len() / 2].to_vec())
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _) = host.upload(&token, "app", Vec::new()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = host
        .call(
            host.request(Method::PUT, "/v1/apps/app", Some(&token))
                .header("content-type", "application/json")
                .body(b"{}".to_vec()),
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, body) = host
        .upload(&token, "Bad.Name", b"refused by name".to_vec())
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("name"))
    );
    // Only the headers are sent: the refusal must come before any byte of the body is read.
    let head = format!(
        "PUT /v1/apps/app HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {token}\r\n\
         content-type: application/wasm\r\ncontent-length: {}\r\n\r\n",
        51 * 1024 * 1024
    );
    let mut stream = tokio::net::TcpStream::connect(host.base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let received = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("answered without waiting for the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..received]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("limited to 50 MiB"), "{answer}");

    // Nothing of any of it was stored.
    let (_, apps) = host.tenant(&token, Method::GET, "/v1/apps", None).await;
    assert_eq!(apps, json!([]));
    let db = host.platform_db().await;
    for collection in [
        "apps",
        "app_versions",
        "components.files",
        "components.chunks",
    ] {
        let count = db
            .collection::<mongodb::bson::Document>(collection)
            .count_documents(doc! {})
            .await
            .unwrap();
        assert_eq!(count, 0, "{collection} holds something of a refused upload");
    }
    // An app whose only answer is `retry` is honest, not evil: admitted. So is a stream app.
    let (status, body) = host
        .upload(&token, "flaky", read(fixtures::EVIL_FLAKY))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = host
        .upload(&token, "events", read(fixtures::JSON_STREAM))
        .await;
    assert_eq!(
        (status, body["version"]["kind"].as_str()),
        (StatusCode::CREATED, Some("stream")),
        "{body}"
    );
    // The metrics count both outcomes.
    let metrics = host
        .http
        .get(format!("{}/metrics", host.base))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("mysimbdp_app_uploads_total{outcome=\"refused\"}"),
        "{metrics}"
    );
    assert!(
        // The escape app (admitted by the WASI policy) and the two sample apps.
        metrics.contains("mysimbdp_app_uploads_total{outcome=\"admitted\"} 3"),
        "{metrics}"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_activate_rollback_and_dry_run() {
    let host = Host::start().await;
    let token = host.create_tenant("initech", None).await;
    let (status, first) = host
        .upload(&token, "orders", read(fixtures::CSV_BATCH))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let v1 = first["version"]["version"].as_str().unwrap().to_owned();
    assert_eq!(v1.len(), 64);
    assert_eq!(
        (
            first["app"]["active"].as_str(),
            first["app"]["kind"].as_str()
        ),
        (Some(v1.as_str()), Some("batch"))
    );

    // Same bytes again: the same immutable version, not a new one.
    let (status, again) = host
        .upload(&token, "orders", read(fixtures::CSV_BATCH))
        .await;
    assert_eq!(
        (status, again["created"].as_bool()),
        (StatusCode::OK, Some(false))
    );
    assert_eq!(again["version"]["version"], v1.as_str());

    // A second version, stored but not activated; then activated by a prefix.
    let response = host
        .request(Method::PUT, "/v1/apps/orders?activate=false", Some(&token))
        .body(read(fixtures::EVIL_FLAKY))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let second: Value = response.json().await.unwrap();
    let v2 = second["version"]["version"].as_str().unwrap().to_owned();
    assert_eq!(second["app"]["active"], v1.as_str());
    let (status, app) = host
        .tenant(
            &token,
            Method::POST,
            "/v1/apps/orders/activate",
            Some(json!({ "version": &v2[..10] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{app}");
    assert_eq!(
        (app["active"].as_str(), app["previous"].as_str()),
        (Some(v2.as_str()), Some(v1.as_str()))
    );

    // The other kind under the same name is refused.
    let (status, body) = host
        .upload(&token, "orders", read(fixtures::JSON_STREAM))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // The active version and the rollback target cannot be deleted.
    let (status, _) = host
        .tenant(
            &token,
            Method::DELETE,
            &format!("/v1/apps/orders/versions/{v2}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Dry runs: v2 (active) only ever says retry; roll back in one call; v1 ingests.
    let (csv, expected) = orders_csv();
    let (_, run) = host
        .tenant(
            &token,
            Method::POST,
            "/v1/apps/orders/dry-run",
            Some(json!({ "input": csv })),
        )
        .await;
    assert_eq!(
        (run["ok"].as_bool(), run["failure"]["class"].as_str()),
        (Some(false), Some("retry")),
        "{run}"
    );
    let (status, app) = host
        .tenant(&token, Method::POST, "/v1/apps/orders/rollback", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{app}");
    assert_eq!(
        (app["active"].as_str(), app["previous"].as_str()),
        (Some(v1.as_str()), None)
    );
    let (status, body) = host
        .tenant(&token, Method::POST, "/v1/apps/orders/rollback", None)
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "nothing left to roll back to: {body}"
    );
    let (status, run) = host
        .tenant(
            &token,
            Method::POST,
            "/v1/apps/orders/dry-run",
            Some(json!({ "input": csv })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(run["ok"], true, "{run}");
    assert_eq!(run["version"], v1.as_str());
    assert_eq!(
        run["documents_total"].as_u64(),
        Some(expected.good),
        "{run}"
    );
    assert_eq!(
        run["quality"]["records_bad"].as_u64(),
        Some(expected.bad),
        "{run}"
    );
    assert_eq!(
        run["documents"].as_array().unwrap().len(),
        100,
        "capped at apps.dry_run_max_documents"
    );
    assert!(
        run["documents"][0]["order_id"].is_number()
            && run["documents"][0]["_id"]
                .as_str()
                .is_some_and(|id| id.len() == 33 && id.ends_with("-0000000000000000")),
        "{}",
        run["documents"][0]
    );
    let (status, run) = host
        .tenant(
            &token,
            Method::POST,
            "/v1/apps/orders/dry-run",
            Some(json!({ "input": csv, "version": v2 })),
        )
        .await;
    assert_eq!(
        (status, run["failure"]["class"].as_str()),
        (StatusCode::OK, Some("retry"))
    );

    // Per-app limits: within the tenant's, or refused.
    let (status, body) = host
        .tenant(
            &token,
            Method::PATCH,
            "/v1/apps/orders",
            Some(json!({ "sandbox": { "memory_mib": 100000 } })),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("sandbox")),
        "{body}"
    );
    let (status, app) = host
        .tenant(
            &token,
            Method::PATCH,
            "/v1/apps/orders",
            Some(
                json!({ "sandbox": { "memory_mib": 16, "fuel": 1000, "fuel_per_input_byte": 0 } }),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{app}");
    assert_eq!(app["limits"]["memory_mib"], 16);
    let (_, run) = host
        .tenant(
            &token,
            Method::POST,
            "/v1/apps/orders/dry-run",
            Some(json!({ "input": csv })),
        )
        .await;
    assert_eq!(
        run["failure"]["class"], "out-of-fuel",
        "the app's own limits apply: {run}"
    );

    // Listing, versions, deleting.
    let (_, versions) = host
        .tenant(&token, Method::GET, "/v1/apps/orders/versions", None)
        .await;
    let listed: Vec<(&str, bool)> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_str().unwrap(),
                v["active"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, [(v2.as_str(), false), (v1.as_str(), true)]);
    let (status, _) = host
        .tenant(
            &token,
            Method::DELETE,
            &format!("/v1/apps/orders/versions/{v2}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = host
        .tenant(
            &token,
            Method::GET,
            &format!("/v1/apps/orders/versions/{v2}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = host
        .tenant(&token, Method::DELETE, "/v1/apps/orders", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = host
        .tenant(&token, Method::GET, "/v1/apps/orders", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_lists_every_endpoint_and_parses() {
    let host = Host::start().await;
    let text = host
        .http
        .get(format!("{}/v1/openapi.json", host.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let spec = oas3::from_json(&text).expect("the OpenAPI document parses as OpenAPI 3.1");
    assert!(spec.openapi.starts_with("3.1"), "{}", spec.openapi);
    let paths = spec.paths.expect("paths");
    let endpoints = [
        ("post", "/v1/admin/tenants"),
        ("get", "/v1/admin/tenants"),
        ("get", "/v1/admin/tenants/{id}"),
        ("delete", "/v1/admin/tenants/{id}"),
        ("post", "/v1/admin/tenants/{id}/suspend"),
        ("post", "/v1/admin/tenants/{id}/resume"),
        ("post", "/v1/admin/tenants/{id}/token"),
        ("put", "/v1/admin/tenants/{id}/profile"),
        ("get", "/v1/admin/tenants/{id}/profile/versions"),
        ("get", "/v1/admin/hosts"),
        ("get", "/v1/admin/usage"),
        ("get", "/v1/admin/series"),
        ("post", "/v1/batch/files"),
        ("get", "/v1/batch/jobs/{id}"),
        ("post", "/v1/batch/jobs/{id}/replay"),
        ("get", "/v1/batch/jobs"),
        ("get", "/v1/stats"),
        ("get", "/v1/admin/stats"),
        ("post", "/v1/data/{collection}"),
        ("get", "/v1/data/{collection}"),
        ("get", "/v1/tenant"),
        ("get", "/v1/usage"),
        ("get", "/v1/apps"),
        ("put", "/v1/apps/{name}"),
        ("get", "/v1/apps/{name}"),
        ("patch", "/v1/apps/{name}"),
        ("delete", "/v1/apps/{name}"),
        ("get", "/v1/apps/{name}/versions"),
        ("get", "/v1/apps/{name}/versions/{version}"),
        ("delete", "/v1/apps/{name}/versions/{version}"),
        ("post", "/v1/apps/{name}/activate"),
        ("post", "/v1/apps/{name}/rollback"),
        ("post", "/v1/apps/{name}/dry-run"),
        ("post", "/v1/streams"),
        ("get", "/v1/streams"),
        ("get", "/v1/streams/{name}"),
        ("delete", "/v1/streams/{name}"),
        ("get", "/v1/streams/{name}/connection"),
        ("post", "/v1/streams/{name}/start"),
        ("post", "/v1/streams/{name}/stop"),
        ("get", "/v1/streams/{name}/stats"),
        ("get", "/v1/streams/{name}/series"),
        ("post", "/v1/streams/credentials/rotate"),
        ("get", "/v1/streams/{name}/dead-letters"),
        ("post", "/v1/streams/{name}/dead-letters/replay"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
        ("get", "/v1/openapi.json"),
        ("get", "/v1/schemas/tenant-profile.json"),
    ];
    let listed: usize = paths
        .values()
        .map(|item| item.methods().into_iter().count())
        .sum();
    assert_eq!(
        listed,
        endpoints.len(),
        "the document lists endpoints this test does not know"
    );
    for (method, path) in endpoints {
        let item = paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not in the document"));
        let found = item
            .methods()
            .into_iter()
            .any(|(m, _)| m.as_str().eq_ignore_ascii_case(method));
        assert!(found, "{method} {path} is not in the document");
        // Each one answers (a 404 here would mean the document lists a route the API lacks).
        let concrete = path
            .replace("{id}", "nobody")
            .replace("{name}", "nothing")
            .replace("{version}", "00000000")
            .replace("{collection}", "nothing");
        let response = host
            .request(
                method.to_uppercase().parse().unwrap(),
                &concrete,
                Some(OPERATOR),
            )
            .send()
            .await
            .unwrap();
        assert_ne!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        if !path.contains('{') {
            assert_ne!(response.status(), StatusCode::NOT_FOUND, "{method} {path}");
        }
    }
    // Unknown routes and methods answer in the same error shape.
    let (status, _) = host
        .call(host.request(Method::GET, "/v1/nothing", None))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = host
        .call(host.request(Method::POST, "/v1/tenant", None))
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    // A malformed JSON body too.
    let (status, body) = host
        .call(
            host.request(Method::POST, "/v1/admin/tenants", Some(OPERATOR))
                .header("content-type", "application/json")
                .body("{"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // The profile schema is published, and is the one in docs/.
    let schema: Value = host
        .http
        .get(format!("{}/v1/schemas/tenant-profile.json", host.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let published: Value =
        serde_json::from_str(include_str!("../../docs/tenant-profile.schema.json")).unwrap();
    assert_eq!(schema, published);

    // Request metrics are labelled by route template, never by raw path.
    let metrics = host
        .http
        .get(format!("{}/metrics", host.base))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("route=\"/v1/apps/{name}/versions/{version}\""),
        "{metrics}"
    );
    assert!(!metrics.contains("nothing"), "{metrics}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_requests_finish() {
    let host = Host::start().await;
    let token = host.create_tenant("slowpoke", None).await;
    let wasm = read(fixtures::CSV_BATCH);
    let chunks: Vec<Vec<u8>> = wasm
        .chunks(wasm.len() / 8 + 1)
        .map(<[u8]>::to_vec)
        .collect();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = sent.clone();
    let body = futures_util::stream::iter(chunks).then(move |chunk| {
        let counted = counted.clone();
        async move {
            // Not a gate: a slow client, so the upload is still in flight at the shutdown.
            tokio::time::sleep(Duration::from_millis(150)).await;
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, std::io::Error>(chunk)
        }
    });
    let upload = host
        .request(Method::PUT, "/v1/apps/slow", Some(&token))
        .header("content-type", "application/wasm")
        .body(reqwest::Body::wrap_stream(body))
        .send();
    let upload = tokio::spawn(upload);
    wait_until(
        "the upload is under way",
        Duration::from_secs(10),
        async || sent.load(std::sync::atomic::Ordering::SeqCst),
        |sent| *sent >= 2,
    )
    .await;
    let base = host.base.clone();
    host.stop().await;
    let response = upload.await.unwrap().unwrap();
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "the in-flight upload finished"
    );
    let refused = reqwest::Client::new()
        .get(format!("{base}/healthz"))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "the stopped host still accepts connections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_processes_share_one_platform() {
    let database = database_name();
    let cache_a = mysimbdp_tests::unique("cache-a");
    let cache_b = mysimbdp_tests::unique("cache-b");
    let (a, b) = tokio::join!(
        spawn_serve(&database, &cache_a),
        spawn_serve(&database, &cache_b)
    );
    let http = reqwest::Client::new();

    let created: Value = http
        .post(format!("{}/v1/admin/tenants", a.base))
        .bearer_auth(OPERATOR)
        .json(&json!({ "id": "shared" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    let response = http
        .put(format!("{}/v1/apps/orders", a.base))
        .bearer_auth(&token)
        .body(read(fixtures::CSV_BATCH))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let uploaded: Value = response.json().await.unwrap();
    let version = uploaded["version"]["version"].as_str().unwrap();
    let artifact = |cache: &str| {
        std::fs::read_dir(scratch(cache))
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().starts_with(version))
    };
    assert!(artifact(&cache_a) && !artifact(&cache_b));

    // Host B runs the app uploaded through A: it reads the component from MongoDB and
    // compiles it into its own cache.
    let (csv, expected) = orders_csv();
    let run: Value = http
        .post(format!("{}/v1/apps/orders/dry-run", b.base))
        .bearer_auth(&token)
        .json(&json!({ "input": csv }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(run["ok"], true, "{run}");
    assert_eq!(
        run["documents_total"].as_u64(),
        Some(expected.good),
        "{run}"
    );
    assert!(artifact(&cache_b), "B compiled the component it fetched");

    // A profile set through B is in effect on A at once, without restarting anything.
    let response = http
        .put(format!("{}/v1/admin/tenants/shared/profile", b.base))
        .bearer_auth(OPERATOR)
        .json(&json!({ "sandbox": { "fuel": 1000, "fuel_per_input_byte": 0 } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let run: Value = http
        .post(format!("{}/v1/apps/orders/dry-run", a.base))
        .bearer_auth(&token)
        .json(&json!({ "input": csv }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(run["failure"]["class"], "out-of-fuel", "{run}");

    // A suspension through A is in effect on B.
    http.post(format!("{}/v1/admin/tenants/shared/suspend", a.base))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap();
    let response = http
        .get(format!("{}/v1/apps", b.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    tokio::join!(a.terminate(), b.terminate());
    clear_registry(&database).await;
    mongodb::Client::with_uri_str(mysimbdp_tests::MONGODB_URI)
        .await
        .unwrap()
        .database(&database)
        .drop()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_manages_tenants_and_apps() {
    let host = Host::start().await;
    let cli = |args: &[&str]| {
        let mut command = mysimbdp_tests::cli::command();
        command
            .args(args)
            .env("MYSIMBDP_API", &host.base)
            .env("MYSIMBDP_OPERATOR_TOKEN", OPERATOR)
            .env_remove("MYSIMBDP_TOKEN");
        command
    };
    let run =
        |mut command: std::process::Command| mysimbdp_tests::cli::text(&command.output().unwrap());
    let globex = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/tenants/globex.json");
    let (code, out, err) = tokio::task::spawn_blocking({
        let command = cli(&["tenant", "create", "globex", "--profile", globex, "--json"]);
        move || run(command)
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created["tenant"]["database"], "globex_events");
    let token = created["token"].as_str().unwrap().to_owned();

    let (csv, expected) = orders_csv();
    let csv_path = scratch("cli").join(mysimbdp_tests::unique("orders") + ".csv");
    std::fs::write(&csv_path, csv).unwrap();
    let with_token = |args: &[&str]| {
        let mut command = cli(args);
        command.env("MYSIMBDP_TOKEN", &token);
        command
    };
    let commands = [
        (
            with_token(&["app", "upload", "orders", fixtures::CSV_BATCH]),
            0,
            "uploaded orders batch app version",
        ),
        (
            with_token(&[
                "app",
                "upload",
                "orders",
                fixtures::EVIL_FLAKY,
                "--no-activate",
            ]),
            0,
            "activate the new one with",
        ),
        (with_token(&["app", "list"]), 0, "orders"),
        (
            with_token(&[
                "app",
                "dry-run",
                "orders",
                "--input",
                csv_path.to_str().unwrap(),
            ]),
            0,
            "\"order_id\":1",
        ),
        (
            with_token(&[
                "app",
                "dry-run",
                "orders",
                "--input",
                csv_path.to_str().unwrap(),
            ]),
            0,
            &format!("{} documents", expected.good),
        ),
        (
            with_token(&["app", "upload", "orders", fixtures::EVIL_LOOP]),
            1,
            "422 app_refused [out-of-fuel]",
        ),
        (
            with_token(&["app", "rollback", "orders"]),
            1,
            "409 conflict",
        ),
        (
            cli(&["app", "list", "--token", "msbt_wrong"]),
            1,
            "401 unauthorized",
        ),
        (
            cli(&["tenant", "suspend", "globex", "--reason", "audit"]),
            0,
            "suspended globex",
        ),
        (
            with_token(&["app", "list"]),
            1,
            "403 tenant_suspended: tenant \"globex\" is suspended: audit",
        ),
        (cli(&["tenant", "resume", "globex"]), 0, "resumed globex"),
        (cli(&["tenant", "list"]), 0, "globex"),
        (cli(&["tenant", "delete", "globex"]), 1, "add --yes"),
    ];
    for (command, expected_code, expected_text) in commands {
        let description = format!("{:?}", command.get_args().collect::<Vec<_>>());
        let (code, out, err) = tokio::task::spawn_blocking(move || run(command))
            .await
            .unwrap();
        assert_eq!(code, Some(expected_code), "{description}\n{out}\n{err}");
        assert!(
            out.contains(expected_text) || err.contains(expected_text),
            "{description}: {expected_text:?} not in\n{out}\n{err}"
        );
    }
    // Activate the second version by prefix, then roll back to the first.
    let (_, versions) = host
        .tenant(&token, Method::GET, "/v1/apps/orders/versions", None)
        .await;
    let second = versions[0]["version"].as_str().unwrap().to_owned();
    let first = versions[1]["version"].as_str().unwrap().to_owned();
    for (args, active) in [
        (vec!["app", "activate", "orders", &second[..12]], &second),
        (vec!["app", "rollback", "orders"], &first),
    ] {
        let command = with_token(&args);
        let (code, out, err) = tokio::task::spawn_blocking(move || run(command))
            .await
            .unwrap();
        assert_eq!(code, Some(0), "{err}");
        assert!(out.contains(&format!("active {active}")), "{out}");
    }
    let (code, _, err) = tokio::task::spawn_blocking({
        let command = cli(&["app", "list", "--api", "http://127.0.0.1:9", "--token", "x"]);
        move || run(command)
    })
    .await
    .unwrap();
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot reach the mysimbdp API"), "{err}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_bad_config_naming_the_key() {
    let file = scratch("configs").join(mysimbdp_tests::unique("bad") + ".toml");
    for (text, named) in [
        (
            "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace = 5\n",
            "shutdown_grace",
        ),
        ("[sandbox.limits]\nmemory_mib = 4096\n", "memory_mib"),
        (
            "[registry]\nhost_lease_secs = 0\n",
            "registry.host_lease_secs",
        ),
    ] {
        std::fs::write(&file, text).unwrap();
        let output = mysimbdp_tests::cli::async_command()
            .args(["serve", "--config", file.to_str().unwrap()])
            .env("MYSIMBDP_OPERATOR_TOKEN", OPERATOR)
            .env("MYSIMBDP_PLAIN_HTTP", "true")
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(named), "{named} not named in: {stderr}");
    }
    // Neither a certificate nor the operator's word for plain HTTP: refused, saying both ways.
    std::fs::write(&file, "[server]\nlisten = \"127.0.0.1:0\"\n").unwrap();
    let output = mysimbdp_tests::cli::async_command()
        .args(["serve", "--config", file.to_str().unwrap()])
        .env("MYSIMBDP_OPERATOR_TOKEN", OPERATOR)
        .env_remove("MYSIMBDP_PLAIN_HTTP")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("[server.tls]") && stderr.contains("server.plain_http"),
        "{stderr}"
    );
    // No operator token: refused before anything is started.
    let output = mysimbdp_tests::cli::async_command()
        .arg("serve")
        .env_remove("MYSIMBDP_OPERATOR_TOKEN")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("MYSIMBDP_OPERATOR_TOKEN"), "{stderr}");
}
