//! Faults of etcd and Redis against real `serve` processes on services the tests own (killed
//! and restarted here; the shared ones are never touched): cached sinks keep serving while
//! etcd is down, `/readyz` names the service that is missing, and partial uploads of dead
//! requests are swept from the staging area.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mongodb::bson::{Document, doc};
use mysimbdp_host::config::RegistryConfig;
use mysimbdp_host::registry::{Registry, ServiceInfo};
use mysimbdp_tests::faults::{OwnedEtcd, OwnedRedis};
use mysimbdp_tests::prelude::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant, SystemTime};

/// Documents written per phase (before, during and after the outage).
const WRITES: u64 = 10;

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

/// Writes `WRITES` documents for `token`, each answered 200 into the dedicated coredms.
async fn write_phase(host: &Host, token: &str, phase: &str) {
    for n in 0..WRITES {
        let (status, body) = host
            .tenant(
                token,
                Method::POST,
                "/v1/data/events",
                Some(json!({ "phase": phase, "n": n })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{phase} #{n}: {body}");
        assert_eq!(body["sink"]["coredms"], "dedicated", "{phase} #{n}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_sinks_keep_serving_while_etcd_is_down() {
    let database = database_name();
    let mut etcd = OwnedEtcd::start().await;
    let endpoints = Endpoints {
        etcd_endpoint: etcd.endpoint(),
        ..Endpoints::shared()
    };
    let serve = spawn_serve_at(&endpoints, &database, "faults-etcd-sinks", "", "").await;
    let host = Host::remote(&serve.base);
    host.wait_ready().await;

    // One tenant on a dedicated coredms found through the registry (profile `auto`), one on
    // the shared coredms that has never written (its sink was never resolved).
    let seen_id = unique("etcd-seen");
    let unseen_id = unique("etcd-unseen");
    let seen = host.create_tenant(&seen_id, None).await;
    let unseen = host.create_tenant(&unseen_id, None).await;
    let dedicated_db = format!("{database}_dedicated");
    let registry = Registry::connect(&RegistryConfig {
        etcd_endpoints: vec![etcd.endpoint()],
        prefix: format!("/mysimbdp-test/{database}"),
        ..RegistryConfig::default()
    })
    .await
    .unwrap();
    let entry: ServiceInfo = serde_json::from_value(json!({
        "schema": "mysimbdp.service/v1",
        "tenant": seen_id,
        "kind": "coredms",
        "id": "main",
        "protocol": "mongodb",
        "endpoints": { "uri": mysimbdp_tests::MONGODB2_URI, "database": dedicated_db },
    }))
    .unwrap();
    registry.publish(entry).await.unwrap();
    write_phase(&host, &seen, "before").await;

    // etcd goes; the host notices (its watch breaks) and keeps writing where it did.
    etcd.kill().await;
    let log = serve.log.clone();
    wait_until(
        "the host notices the registry watch broke",
        Duration::from_secs(20),
        async || {
            log.lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("the registry watch broke"))
        },
        |broke| *broke,
    )
    .await;
    write_phase(&host, &seen, "during").await;
    // A tenant whose sink this host never resolved cannot be resolved without etcd: a
    // transient refusal, nothing written.
    let (status, body) = host
        .tenant(
            &unseen,
            Method::POST,
            "/v1/data/events",
            Some(json!({ "phase": "during" })),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "sink_unavailable", "{body}");

    // etcd is back: writes go on, and the tenant never seen resolves now.
    etcd.restart().await;
    host.wait_ready().await;
    write_phase(&host, &seen, "after").await;
    let (status, body) = host
        .tenant(
            &unseen,
            Method::POST,
            "/v1/data/events",
            Some(json!({ "phase": "after" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["sink"]["coredms"], "shared", "{body}");

    let uri = mysimbdp_tests::MONGODB2_URI;
    for phase in ["before", "during", "after"] {
        assert_eq!(
            count(uri, &dedicated_db, doc! { "phase": phase }).await,
            WRITES,
            "{phase}"
        );
    }
    assert_eq!(
        count(
            mysimbdp_tests::MONGODB_URI,
            &tenant_database(&unseen_id),
            doc! {}
        )
        .await,
        1
    );
    assert_eq!(
        count(
            mysimbdp_tests::MONGODB_URI,
            &tenant_database(&seen_id),
            doc! {}
        )
        .await,
        0,
        "nothing went to the shared coredms"
    );

    serve.terminate().await;
    mongodb::Client::with_uri_str(uri)
        .await
        .unwrap()
        .database(&dedicated_db)
        .drop()
        .await
        .unwrap();
    for db in [
        database.clone(),
        tenant_database(&seen_id),
        tenant_database(&unseen_id),
    ] {
        drop_database(&db).await;
    }
}

/// `/readyz`'s status and body.
async fn readyz(base: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .get(format!("{base}/readyz"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// The services the body says did not answer.
fn missing(body: &Value) -> Vec<String> {
    body["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["ok"] == false)
        .map(|s| s["service"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until `/readyz` answers `status` with exactly `missing_now` missing; returns how
/// long that took.
async fn wait_readiness(base: &str, status: StatusCode, missing_now: &[&str]) -> Duration {
    let started = Instant::now();
    let (_, body) = wait_until(
        &format!("/readyz answers {status} missing {missing_now:?}"),
        Duration::from_secs(15),
        async || readyz(base).await,
        |(s, body)| *s == status && missing(body) == missing_now,
    )
    .await;
    if let Some(service) = missing_now.first() {
        let entry = body["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["service"] == *service)
            .unwrap();
        assert!(
            entry["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
    }
    assert_eq!(body["ready"], missing_now.is_empty(), "{body}");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_names_the_missing_service() {
    let database = database_name();
    let mut redis = OwnedRedis::start(false).await;
    let mut etcd = OwnedEtcd::start().await;
    let endpoints = Endpoints {
        redis_url: redis.url(),
        etcd_endpoint: etcd.endpoint(),
        ..Endpoints::shared()
    };
    let serve = spawn_serve_at(&endpoints, &database, "faults-readiness", "", "").await;
    let base = serve.base.clone();
    wait_readiness(&base, StatusCode::OK, &[]).await;
    let (_, body) = readyz(&base).await;
    let services: Vec<&str> = body["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service"].as_str().unwrap())
        .collect();
    assert_eq!(services, ["mongodb", "redis", "rabbitmq", "etcd"], "{body}");

    redis.kill().await;
    let noticed = wait_readiness(&base, StatusCode::SERVICE_UNAVAILABLE, &["redis"]).await;
    eprintln!("redis down: /readyz said 503 after {noticed:?}");
    // Liveness does not depend on any service.
    let live = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    redis.restart().await;
    let back = wait_readiness(&base, StatusCode::OK, &[]).await;
    eprintln!("redis back: /readyz said 200 after {back:?}");

    etcd.kill().await;
    let noticed = wait_readiness(&base, StatusCode::SERVICE_UNAVAILABLE, &["etcd"]).await;
    eprintln!("etcd down: /readyz said 503 after {noticed:?}");
    etcd.restart().await;
    let back = wait_readiness(&base, StatusCode::OK, &[]).await;
    eprintln!("etcd back: /readyz said 200 after {back:?}");

    serve.terminate().await;
    drop_database(&database).await;
}

/// A log line without its ANSI colours.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Sets a file's last write time.
fn set_mtime(path: &std::path::Path, at: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(at)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_partial_uploads_are_swept() {
    let database = database_name();
    let incoming = scratch("staging")
        .join(&database)
        .join("acme")
        .join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    let (old, fresh, later) = (
        incoming.join("old"),
        incoming.join("fresh"),
        incoming.join("later"),
    );
    for path in [&old, &fresh] {
        std::fs::write(path, b"partial").unwrap();
    }
    set_mtime(&old, an_hour_ago);

    // A 30 s age (swept every 7.5 s); the upload idle timeout must stay below it.
    let serve = spawn_serve_with(
        &database,
        "faults-sweep",
        "",
        "incoming_max_age_secs = 30\n[server]\nupload_body_idle_timeout_ms = 10000\n",
    )
    .await;
    // The first sweep runs as the host starts.
    wait_until(
        "the old partial upload is swept at start",
        Duration::from_secs(10),
        async || old.exists(),
        |exists| !exists,
    )
    .await;
    assert!(fresh.exists(), "a fresh partial upload was removed");

    // Later ones are found by the periodic sweep.
    std::fs::write(&later, b"partial").unwrap();
    set_mtime(&later, an_hour_ago);
    wait_until(
        "a later old partial upload is swept",
        Duration::from_secs(15),
        async || later.exists(),
        |exists| !exists,
    )
    .await;
    assert!(fresh.exists(), "a fresh partial upload was removed");
    let swept: Vec<String> = serve
        .log
        .lock()
        .unwrap()
        .iter()
        .map(|l| plain(l))
        .filter(|l| l.contains("removed partial uploads"))
        .collect();
    assert_eq!(swept.len(), 2, "{swept:?}");
    assert!(swept.iter().all(|l| l.contains("removed=1")), "{swept:?}");

    serve.terminate().await;
    std::fs::remove_dir_all(scratch("staging").join(&database)).unwrap();
    drop_database(&database).await;
}
