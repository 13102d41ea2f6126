//! Proves service discovery and the daas API against the real etcd and two real MongoDB
//! servers: publishing from files, two tenants served by two coredms, a re-published entry
//! redirecting new writes without a restart, host membership appearing on start and going
//! after a SIGKILL once the lease expires, and the daas write/read API with its isolation,
//! refusals, idempotency, paging and quota.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mongodb::bson::{Document, doc};
use mysimbdp_host::config::RegistryConfig;
use mysimbdp_host::registry::Registry;
use mysimbdp_tests::prelude::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

fn registry_config(database: &str) -> RegistryConfig {
    RegistryConfig {
        etcd_endpoints: vec![mysimbdp_tests::ETCD_ENDPOINT.to_owned()],
        prefix: format!("/mysimbdp-test/{database}"),
        ..RegistryConfig::default()
    }
}

/// Runs `mysimbdp registry …` against the test's prefix.
fn registry_cli(database: &str, args: &[&str]) -> (i32, String, String) {
    let output = mysimbdp_tests::cli::command()
        .arg("registry")
        .args(args)
        .env("MYSIMBDP_ETCD_ENDPOINTS", mysimbdp_tests::ETCD_ENDPOINT)
        .env(
            "MYSIMBDP_REGISTRY_PREFIX",
            format!("/mysimbdp-test/{database}"),
        )
        .output()
        .unwrap();
    let (code, stdout, stderr) = mysimbdp_tests::cli::text(&output);
    (code.unwrap_or(-1), stdout, stderr)
}

/// Writes a coredms entry for `tenant` on `uri`/`db` to a file and publishes it.
fn publish_coredms(database: &str, tenant: &str, id: &str, uri: &str, db: &str) {
    let file = scratch("services").join(format!("{database}-{tenant}-{id}.toml"));
    std::fs::write(
        &file,
        format!(
            "schema = \"mysimbdp.service/v1\"\ntenant = \"{tenant}\"\nkind = \"coredms\"\n\
             id = \"{id}\"\nprotocol = \"mongodb\"\n[endpoints]\nuri = \"{uri}\"\n\
             database = \"{db}\"\n"
        ),
    )
    .unwrap();
    let (code, out, err) = registry_cli(database, &["publish", "--file", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
}

async fn count(uri: &str, db: &str, filter: Document) -> u64 {
    mongodb::Client::with_uri_str(uri)
        .await
        .unwrap()
        .database(db)
        .collection::<Document>("events")
        .count_documents(filter)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_entries_are_published_from_files_and_refused_by_field() {
    let database = database_name();
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/services/acme-coredms.json"
    );
    let (code, out, err) = registry_cli(&database, &["publish", "--file", example]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("/tenants/acme/services/coredms/acme-main"),
        "{out}"
    );
    let (code, out, _) = registry_cli(&database, &["get", "acme", "coredms", "acme-main"]);
    assert_eq!(code, 0);
    let entry: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(entry["secret_ref"], "env:ACME_COREDMS_PASSWORD");
    let created = entry["created_at"].as_str().unwrap().to_owned();
    assert!(!created.is_empty());

    // Re-publishing keeps created_at and moves updated_at.
    // Not a gate: lets the clock move on, so the republish has a later timestamp to show.
    tokio::time::sleep(Duration::from_millis(20)).await;
    registry_cli(&database, &["publish", "--file", example]);
    let (_, out, _) = registry_cli(&database, &["get", "acme", "coredms", "acme-main"]);
    let again: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(again["created_at"], created.as_str());
    assert_ne!(again["updated_at"], entry["updated_at"]);

    // Refused with the field and the reason: a password in the URI, an unknown key.
    let bad = scratch("services").join(format!("{database}-bad.json"));
    let mut spoiled = entry.clone();
    spoiled["endpoints"]["uri"] = json!("mongodb://ingest:hunter2@127.0.0.1:27018/");
    std::fs::write(&bad, spoiled.to_string()).unwrap();
    let (code, _, err) = registry_cli(&database, &["publish", "--file", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("endpoints.uri") && err.contains("password"),
        "{err}"
    );
    assert!(
        !err.contains("hunter2"),
        "the refusal echoes the secret: {err}"
    );
    spoiled["endpoints"]["uri"] = entry["endpoints"]["uri"].clone();
    spoiled["colour"] = json!("red");
    std::fs::write(&bad, spoiled.to_string()).unwrap();
    let (code, _, err) = registry_cli(&database, &["publish", "--file", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("colour"), "{err}");

    let (_, out, _) = registry_cli(&database, &["list", "--tenant", "acme"]);
    assert!(out.contains("acme-main") && out.contains("27018"), "{out}");
    let (code, _, _) = registry_cli(&database, &["remove", "acme", "coredms", "acme-main"]);
    assert_eq!(code, 0);
    let (code, _, err) = registry_cli(&database, &["get", "acme", "coredms", "acme-main"]);
    assert_eq!(code, 1, "{err}");
    clear_registry(&database).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_served_by_their_coredms_and_a_move_needs_no_restart() {
    let database = database_name();
    let host = Host::start_on(&database, "discovery-cache").await;
    let shared_id = mysimbdp_tests::unique("shared");
    let shared = host.create_tenant(&shared_id, None).await;
    let moved = host.create_tenant("moved-one", None).await;
    let strict = host
        .create_tenant(
            "strict-one",
            Some(json!({ "sink": { "coredms": "dedicated" } })),
        )
        .await;
    let first_db = format!("{database}_first");
    let second_db = format!("{database}_second");
    publish_coredms(
        &database,
        "moved-one",
        "main",
        mysimbdp_tests::MONGODB2_URI,
        &first_db,
    );

    let write = |token: String, marker: &'static str| {
        let host = &host;
        async move {
            host.tenant(
                &token,
                Method::POST,
                "/v1/data/events",
                Some(json!({ "marker": marker })),
            )
            .await
        }
    };
    let (status, body) = write(shared.clone(), "a").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["sink"]["coredms"], "shared");
    let (status, body) = write(moved.clone(), "b1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (
            body["sink"]["coredms"].as_str(),
            body["sink"]["service_id"].as_str()
        ),
        (Some("dedicated"), Some("main"))
    );

    // Each document is on its own server, and only there.
    let shared_db = tenant_database(&shared_id);
    let shared_db = shared_db.as_str();
    assert_eq!(
        count(
            mysimbdp_tests::MONGODB_URI,
            shared_db,
            doc! { "marker": "a" }
        )
        .await,
        1
    );
    assert_eq!(
        count(
            mysimbdp_tests::MONGODB2_URI,
            &first_db,
            doc! { "marker": "b1" }
        )
        .await,
        1
    );
    assert_eq!(
        count(
            mysimbdp_tests::MONGODB_URI,
            &tenant_database("moved-one"),
            doc! {}
        )
        .await,
        0
    );

    // Re-publish: the coredms moved to another database; new writes follow without restart.
    publish_coredms(
        &database,
        "moved-one",
        "main",
        mysimbdp_tests::MONGODB2_URI,
        &second_db,
    );
    let mut attempt = 0;
    wait_until(
        "new writes move to the re-published database",
        Duration::from_secs(15),
        async || {
            attempt += 1;
            let (status, body) = host
                .tenant(
                    &moved,
                    Method::POST,
                    "/v1/data/events",
                    Some(json!({ "marker": "b2", "attempt": attempt })),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body
        },
        |body| body["sink"]["database"] == second_db.as_str(),
    )
    .await;
    assert_eq!(
        count(
            mysimbdp_tests::MONGODB2_URI,
            &second_db,
            doc! { "attempt": attempt }
        )
        .await,
        1
    );
    assert_eq!(
        count(
            mysimbdp_tests::MONGODB2_URI,
            &first_db,
            doc! { "attempt": attempt }
        )
        .await,
        0
    );

    // A tenant that must have a dedicated coredms gets a clear error while none is published,
    // and is served once one is.
    let (status, body) = host
        .tenant(
            &strict,
            Method::POST,
            "/v1/data/events",
            Some(json!({ "x": 1 })),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no usable dedicated coredms"),
        "{body}"
    );
    // An entry that points nowhere: unreachable, said without server details (the cause goes
    // to the host's log, never to the client).
    publish_coredms(
        &database,
        "strict-one",
        "gone",
        "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300&connectTimeoutMS=300",
        "nowhere",
    );
    let (status, body) = wait_until(
        "the host sees the published entry",
        Duration::from_secs(15),
        async || {
            host.tenant(
                &strict,
                Method::POST,
                "/v1/data/events",
                Some(json!({ "x": 1 })),
            )
            .await
        },
        |(_, body)| {
            !body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("no usable dedicated coredms")
        },
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "sink_unavailable", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("unreachable"), "{body}");
    for detail in [
        "127.0.0.1:1",
        "mongodb://",
        "Kind",
        "clusterTime",
        "nowhere",
    ] {
        assert!(
            !body.to_string().contains(detail),
            "{detail} leaked: {body}"
        );
    }
    let (code, _, _) = registry_cli(&database, &["remove", "strict-one", "coredms", "gone"]);
    assert_eq!(code, 0);
    let strict_db = format!("{database}_strict");
    publish_coredms(
        &database,
        "strict-one",
        "main",
        mysimbdp_tests::MONGODB2_URI,
        &strict_db,
    );
    let (_, body) = wait_until(
        "the published coredms is used",
        Duration::from_secs(15),
        async || {
            host.tenant(
                &strict,
                Method::POST,
                "/v1/data/events",
                Some(json!({ "x": 2 })),
            )
            .await
        },
        |(status, _)| *status == StatusCode::OK,
    )
    .await;
    assert_eq!(body["sink"]["database"], strict_db.as_str());
    for (uri, db) in [
        (mysimbdp_tests::MONGODB2_URI, &first_db),
        (mysimbdp_tests::MONGODB2_URI, &second_db),
        (mysimbdp_tests::MONGODB2_URI, &strict_db),
        (mysimbdp_tests::MONGODB_URI, &shared_db.to_owned()),
    ] {
        let client = mongodb::Client::with_uri_str(uri).await.unwrap();
        client.database(db).drop().await.unwrap();
    }
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_register_and_a_killed_one_disappears_when_its_lease_expires() {
    let database = database_name();
    let extra = "host_lease_secs = 2";
    let (a, b) = tokio::join!(
        spawn_serve_with(&database, "membership-a", extra, ""),
        spawn_serve_with(&database, "membership-b", extra, "")
    );
    let http = reqwest::Client::new();
    let hosts = || async {
        let response = http
            .get(format!("{}/v1/admin/hosts", a.base))
            .bearer_auth(OPERATOR)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let hosts: Vec<Value> = response.json().await.unwrap();
        hosts
            .iter()
            .map(|h| h["address"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let live = hosts().await;
    assert!(live.contains(&a.base) && live.contains(&b.base), "{live:?}");
    let registry = Registry::connect(&registry_config(&database))
        .await
        .unwrap();
    let entry = registry
        .hosts()
        .await
        .unwrap()
        .into_iter()
        .find(|h| h.address == b.base)
        .unwrap();
    assert_eq!(
        (entry.roles.as_slice(), entry.pid),
        (
            ["api", "batch", "stream"].map(String::from).as_slice(),
            b.child.id().unwrap()
        )
    );

    // SIGKILL: no goodbye; the entry goes when the lease runs out.
    let mut b = b;
    b.child.start_kill().unwrap();
    b.child.wait().await.unwrap();
    assert!(
        hosts().await.contains(&b.base),
        "gone before its lease expired"
    );
    wait_until(
        "the killed host's lease runs out",
        Duration::from_secs(20),
        async || hosts().await,
        |hosts| !hosts.contains(&b.base),
    )
    .await;
    // A graceful stop revokes the lease at once.
    let a_base = a.base.clone();
    a.terminate().await;
    let gone = registry.hosts().await.unwrap();
    assert!(!gone.iter().any(|h| h.address == a_base), "{gone:?}");
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
async fn daas_writes_and_reads_the_tenants_own_documents() {
    let host = Host::start().await;
    let (a_id, b_id) = (
        mysimbdp_tests::unique("daas-a"),
        mysimbdp_tests::unique("daas-b"),
    );
    let a = host.create_tenant(&a_id, None).await;
    let b = host
        .create_tenant(&b_id, Some(json!({ "daas": { "max_mib_per_day": 1 } })))
        .await;

    // One object, an array, an NDJSON stream with two bad lines: the good ones are written.
    let (status, body) = host
        .tenant(&a, Method::POST, "/v1/data/orders", Some(json!({ "n": 0 })))
        .await;
    assert_eq!(
        (status, body["inserted"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{body}"
    );
    let array: Vec<Value> = (1..=20)
        .map(|n| json!({ "n": n, "kind": if n % 2 == 0 { "even" } else { "odd" } }))
        .collect();
    let (_, body) = host
        .tenant(
            &a,
            Method::POST,
            "/v1/data/orders",
            Some(Value::Array(array)),
        )
        .await;
    assert_eq!(body["inserted"], 20, "{body}");
    let ndjson = "{\"n\":21}\nnot json\n[1,2]\n\n{\"n\":22}\r\n{\"n\":23}";
    let (status, body) = host
        .call(
            host.request(Method::POST, "/v1/data/orders", Some(&a))
                .header("content-type", "application/x-ndjson")
                .body(ndjson),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["inserted"].as_u64(), body["rejected_count"].as_u64()),
        (Some(3), Some(2)),
        "{body}"
    );
    let lines: Vec<u64> = body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["at"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [2, 3], "{body}");

    // Malformed bodies: refused whole, with a reason; nothing else is lost.
    let (status, _) = host
        .call(
            host.request(Method::POST, "/v1/data/orders", Some(&a))
                .header("content-type", "application/json")
                .body("{oops"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = host
        .tenant(
            &a,
            Method::POST,
            "/v1/data/orders",
            Some(json!([1, "two", null])),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_documents")),
        "{body}"
    );
    let (status, body) = host
        .tenant(
            &a,
            Method::POST,
            "/v1/data/orders",
            Some(json!({ "$set": 1 })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _) = host
        .tenant(&a, Method::POST, "/v1/data/system.users", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // An idempotent retry writes nothing twice.
    for attempt in 0..2 {
        let (_, body) = host
            .call(
                host.request(Method::POST, "/v1/data/orders", Some(&a))
                    .header("idempotency-key", "batch-7")
                    .json(&json!([{ "n": 100 }, { "n": 101 }])),
            )
            .await;
        let expected = if attempt == 0 { (2, 0) } else { (0, 2) };
        assert_eq!(
            (
                body["inserted"].as_u64().unwrap(),
                body["duplicates"].as_u64().unwrap()
            ),
            expected,
            "{body}"
        );
    }

    // Reading back: filter, projection, cursor paging, all in _id order, nothing lost.
    let page = |query: String| {
        let host = &host;
        let a = a.clone();
        async move {
            host.tenant(&a, Method::GET, &format!("/v1/data/orders?{query}"), None)
                .await
        }
    };
    let (status, evens) = page(format!(
        "filter={}&projection={}",
        enc(r#"{"kind":"even"}"#),
        enc(r#"{"n":1,"_id":0}"#)
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{evens}");
    let mut ns: Vec<i64> = evens["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["n"].as_i64().unwrap())
        .collect();
    ns.sort();
    assert_eq!(ns, (1..=10).map(|n| n * 2).collect::<Vec<_>>());
    assert!(
        evens["documents"][0].get("kind").is_none(),
        "projection ignored: {evens}"
    );
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = match &cursor {
            Some(c) => format!("limit=10&cursor={c}"),
            None => "limit=10".to_owned(),
        };
        let (status, body) = page(query).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        pages += 1;
        seen.extend(
            body["documents"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["n"].as_i64().unwrap()),
        );
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    seen.sort();
    let mut expected: Vec<i64> = (0..=23).collect();
    expected.extend([100, 101]);
    assert_eq!(seen, expected);
    assert_eq!(pages, 3);
    let (status, body) = page(format!("filter={}", enc(r#"{"$where":"sleep(100)"}"#))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = page("limit=100000".to_owned()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = page("cursor=nonsense".to_owned()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Isolation: B's "orders" is B's own, empty; no token, no data.
    let (_, theirs) = host.tenant(&b, Method::GET, "/v1/data/orders", None).await;
    assert_eq!(theirs["documents"], json!([]));
    let (status, _) = host
        .call(host.request(Method::GET, "/v1/data/orders", None))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // B's daily quota (1 MiB): a write past it is refused; what was written stays.
    let (status, _) = host
        .tenant(
            &b,
            Method::POST,
            "/v1/data/orders",
            Some(json!({ "small": true })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let big: Vec<Value> = (0..2000)
        .map(|i| json!({ "i": i, "pad": "x".repeat(600) }))
        .collect();
    let (status, body) = host
        .tenant(&b, Method::POST, "/v1/data/orders", Some(Value::Array(big)))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("quota_exceeded")),
        "{body}"
    );
    let (_, theirs) = host
        .tenant(&b, Method::GET, "/v1/data/orders?limit=1000", None)
        .await;
    assert_eq!(theirs["documents"].as_array().unwrap().len(), 1, "{theirs}");

    // Every write is in the ingestion log, under its tenant.
    let log = host
        .platform_db()
        .await
        .collection::<Document>("ingestion_log")
        .find(doc! { "tenant": &a_id, "source": "daas" })
        .await
        .unwrap();
    let entries: Vec<Document> = futures_util::TryStreamExt::try_collect(log).await.unwrap();
    let written: i64 = entries
        .iter()
        .map(|e| e.get_i64("documents").unwrap())
        .sum();
    assert_eq!(written, 26);
    assert!(entries.iter().any(|e| e.get_str("status") == Ok("partial")));
    for tenant in [&a_id, &b_id] {
        let client = mongodb::Client::with_uri_str(mysimbdp_tests::MONGODB_URI)
            .await
            .unwrap();
        let database = tenant_database(tenant);
        client.database(&database).drop().await.unwrap();
    }
    host.stop().await;
}

/// Percent-encodes a query value.
fn enc(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
