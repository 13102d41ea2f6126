//! Proves stream ingestion end to end against the real RabbitMQ, MongoDB, Redis and etcd:
//! each tenant gets its own vhost and user, and cannot read or publish to another's queue;
//! documents land in each tenant's own database; poison messages reach the dead-letter queue
//! with headers saying why while the stream flows on; consumer processes SIGKILLed mid-batch
//! again and again lose and duplicate nothing; a burst scales consumers up and idleness down,
//! within the profile's bounds; a tenant over its quota is paused and loses nothing; two hosts
//! share a stream's consumers, and exactly one of them runs the monitor at a time; a tenant
//! cannot forge dead letters (the broker refuses its publishes into them, and the listing
//! shows only the platform's verdicts), and a starting host repairs vhosts provisioned under
//! the old, looser rules.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use lapin::options::{BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::AMQPValue;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use mongodb::bson::{Document, doc};
use mysimbdp_fixtures as fixtures;
use mysimbdp_tests::prelude::*;
use mysimbdp_tests::streams::{
    connect, numbered_from, publish, publish_to, stream_of, uri, wait_for_the_sensor_app,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

/// A host with fast reconciliation and monitoring, and no batch workers.
async fn host(database: &str) -> Host {
    Host::start_with(database, "stream-cache", |config| {
        config.batch.workers = 0;
        config.stream.reconcile_ms = 200;
        config.stream.monitor_interval_ms = 300;
    })
    .await
}

/// Waits until the collection holds `count` documents (and checks it does not go past).
async fn wait_documents(tenant: &str, collection: &str, count: u64, within: Duration) {
    let documents = tenant_collection(tenant, collection).await;
    wait_until(
        &format!("{tenant}/{collection} holds {count} documents"),
        within,
        async || {
            let n = documents.count_documents(doc! {}).await.unwrap();
            assert!(n <= count, "{n} documents, more than the {count} expected");
            n
        },
        |n| *n == count,
    )
    .await;
}

/// Reads a stream's dead letters (`path`) until `enough` accepts how many there are.
async fn dead_letters(
    host: &Host,
    token: &str,
    path: &str,
    within: Duration,
    enough: impl Fn(usize) -> bool,
) -> Value {
    wait_until(
        &format!("enough dead letters at {path}"),
        within,
        async || {
            let (status, letters) = host.tenant(token, Method::GET, path, None).await;
            assert_eq!(status, StatusCode::OK, "{letters}");
            letters
        },
        |letters| enough(letters.as_array().unwrap().len()),
    )
    .await
}

/// Waits until the queue of a stream's `connection` has no consumer left, as the broker
/// counts them.
async fn wait_stopped(connection: &Value) {
    let vhost = connection["vhost"].as_str().unwrap();
    let queue = connection["queue"].as_str().unwrap();
    wait_until(
        &format!("queue {queue} has no consumer"),
        Duration::from_secs(30),
        async || mysimbdp_tests::services::queue_consumers(vhost, queue).await,
        |consumers| *consumers == 0,
    )
    .await;
}

fn profile(extra: Value) -> Value {
    let mut profile = json!({ "stream": { "report_interval_secs": 1 } });
    if let (Some(base), Some(extra)) = (profile["stream"].as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    profile
}

fn readings(device: &str, count: usize) -> Vec<(String, String)> {
    (0..count)
        .map(|i| {
            (
                format!("{device}-{i}"),
                json!({
                    "device": device,
                    "ts": "2026-11-21T10:00:00Z",
                    "readings": { "temp": i, "hum": 40 }
                })
                .to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenants_are_isolated_on_the_broker_and_in_their_databases() {
    within(
        "tenants_are_isolated_on_the_broker_and_in_their_databases",
        Duration::from_secs(300),
        async {
            let database = database_name();
            let host = host(&database).await;
            let (a, b) = (mysimbdp_tests::unique("sa"), mysimbdp_tests::unique("sb"));
            let (token_a, conn_a) = stream_of(
                &host,
                &a,
                profile(json!({})),
                "sensors",
                fixtures::JSON_STREAM,
                json!({ "name": "readings", "app": "sensors", "collection": "metrics" }),
            )
            .await;
            let (token_b, conn_b) = stream_of(
                &host,
                &b,
                profile(json!({})),
                "sensors",
                fixtures::JSON_STREAM,
                json!({ "name": "b-readings", "app": "sensors", "collection": "metrics" }),
            )
            .await;
            assert_ne!(conn_a["vhost"], conn_b["vhost"]);
            assert_ne!(conn_a["user"], conn_b["user"]);
            assert_eq!(conn_a["dead_letter_queue"], "readings.dead");

            publish(&conn_a, readings("a-dev", 60)).await;
            publish(&conn_b, readings("b-dev", 40)).await;
            wait_documents(&a, "metrics", 120, Duration::from_secs(60)).await;
            wait_documents(&b, "metrics", 80, Duration::from_secs(60)).await;
            for (tenant, device) in [(&a, "a-dev"), (&b, "b-dev")] {
                let strangers = tenant_collection(tenant, "metrics")
                    .await
                    .count_documents(doc! { "device": { "$ne": device } })
                    .await
                    .unwrap();
                assert_eq!(strangers, 0, "{tenant} holds another tenant's documents");
            }

            // A's credentials do not open B's vhost at all.
            let into_b = Connection::connect_uri(
                uri(&conn_a, Some(conn_b["vhost"].as_str().unwrap())),
                ConnectionProperties::default(),
            )
            .await;
            assert!(into_b.is_err(), "tenant A entered tenant B's vhost");
            // In its own vhost, B's queue name routes nowhere, and A cannot read its live queue or
            // declare anything.
            let routed =
                publish_to(&conn_a, "b-readings", [("x".to_owned(), "{}".to_owned())]).await;
            assert_eq!(routed, 0, "a message reached a queue named like B's");
            let amqp = connect(&conn_a).await;
            let channel = amqp.create_channel().await.unwrap();
            let read = channel
                .basic_get("readings".into(), BasicGetOptions::default())
                .await;
            assert!(read.is_err(), "tenant A read its live queue directly");
            let channel = amqp.create_channel().await.unwrap();
            let declared = channel
                .queue_declare(
                    "sneaky".into(),
                    lapin::options::QueueDeclareOptions::default(),
                    lapin::types::FieldTable::default(),
                )
                .await;
            assert!(declared.is_err(), "tenant A declared a queue");
            let _ = amqp.close(200, "done".into()).await;
            // B sees nothing of A's streams through the API either.
            let (status, _) = host
                .tenant(&token_b, Method::GET, "/v1/streams/readings", None)
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            let (_, streams) = host
                .tenant(&token_b, Method::GET, "/v1/streams", None)
                .await;
            assert_eq!(streams.as_array().unwrap().len(), 1, "{streams}");

            // Reports reach the stats: every message of A counted once, latency measured.
            let stats = wait_until(
                "the stats count 60 messages",
                Duration::from_secs(30),
                async || {
                    let (status, stats) = host
                        .tenant(
                            &token_a,
                            Method::GET,
                            "/v1/streams/readings/stats?window_secs=600",
                            None,
                        )
                        .await;
                    assert_eq!(status, StatusCode::OK, "{stats}");
                    stats
                },
                |stats| stats["messages"] == 60,
            )
            .await;
            assert_eq!(stats["documents"], 120, "{stats}");
            assert_eq!(stats["dead_lettered"], 0, "{stats}");
            assert!(stats["latency_p99_ms"].as_f64().unwrap() > 0.0, "{stats}");
            assert!(stats["reports"].as_u64().unwrap() >= 1, "{stats}");
            // The rate covers the time the reports span, not the whole (mostly empty) window.
            assert!(
                stats["messages_per_sec"].as_f64().unwrap() > 60.0 / 600.0,
                "{stats}"
            );

            // A stream holding messages is not deleted by accident.
            let (status, _) = host
                .tenant(&token_a, Method::POST, "/v1/streams/readings/stop", None)
                .await;
            assert_eq!(status, StatusCode::OK);
            wait_stopped(&conn_a).await;
            publish(&conn_a, readings("a-late", 3)).await;
            let (status, refused) = host
                .tenant(&token_a, Method::DELETE, "/v1/streams/readings", None)
                .await;
            assert_eq!(status, StatusCode::CONFLICT, "{refused}");
            let (status, _) = host
                .tenant(
                    &token_a,
                    Method::DELETE,
                    "/v1/streams/readings?force=true",
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::NO_CONTENT);

            host.delete_tenant(&a).await;
            host.delete_tenant(&b).await;
            host.stop().await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_messages_are_dead_lettered_with_headers_while_the_stream_flows() {
    within(
        "poison_messages_are_dead_lettered_with_headers_while_the_stream_flows",
        Duration::from_secs(300),
        async {
            let database = database_name();
            let host = host(&database).await;
            let tenant = mysimbdp_tests::unique("sp");
            let (token, conn) = stream_of(
        &host,
        &tenant,
        profile(json!({})),
        "poison",
        fixtures::EVIL_POISON,
        json!({ "name": "events", "app": "poison", "collection": "events", "delivery_limit": 3 }),
    )
    .await;
            let mut messages: Vec<(String, String)> = (0..200)
                .map(|n| {
                    let body = match n {
                        50 => json!({ "n": n, "fail": "retry" }),
                        100 => json!({ "n": n, "fail": "panic" }),
                        150 => json!({ "n": n, "fail": "reject" }),
                        _ => json!({ "n": n }),
                    };
                    (format!("m{n}"), body.to_string())
                })
                .collect();
            messages.push(("garbage".to_owned(), "not json at all".to_owned()));
            publish(&conn, messages).await;
            wait_documents(&tenant, "events", 197, Duration::from_secs(60)).await;

            // The four bad ones are in the dead-letter queue, readable with the tenant's credentials.
            let amqp = connect(&conn).await;
            let channel = amqp.create_channel().await.unwrap();
            let mut dead = std::collections::BTreeMap::new();
            wait_until(
                "four messages are dead-lettered",
                Duration::from_secs(60),
                async || {
                    // Takes everything the dead-letter queue holds now.
                    while let Some(message) = channel
                        .basic_get("events.dead".into(), BasicGetOptions { no_ack: true })
                        .await
                        .unwrap()
                    {
                        let headers = message.delivery.properties.headers().clone().unwrap();
                        let header = |name: &str| match headers.inner().get(name) {
                            Some(AMQPValue::LongString(s)) => {
                                String::from_utf8_lossy(s.as_bytes()).into_owned()
                            }
                            Some(AMQPValue::LongLongInt(n)) => n.to_string(),
                            other => panic!("header {name}: {other:?}"),
                        };
                        assert_eq!(header("x-mysimbdp-tenant"), tenant);
                        assert_eq!(header("x-mysimbdp-stream"), "events");
                        assert_eq!(header("x-mysimbdp-app"), "poison");
                        assert_eq!(header("x-mysimbdp-app-version").len(), 64);
                        let id = message
                            .delivery
                            .properties
                            .message_id()
                            .clone()
                            .unwrap()
                            .to_string();
                        dead.insert(
                            id,
                            (
                                header("x-mysimbdp-error-class"),
                                header("x-mysimbdp-error"),
                                header("x-mysimbdp-deliveries"),
                            ),
                        );
                    }
                    dead.keys().cloned().collect::<Vec<_>>()
                },
                |ids| ids.len() >= 4,
            )
            .await;
            let _ = amqp.close(200, "done".into()).await;
            assert_eq!(dead["m50"].0, "retry", "{dead:?}");
            assert_eq!(
                dead["m50"].2, "3",
                "retried up to the delivery limit: {dead:?}"
            );
            assert!(dead["m50"].1.contains("delivery limit"), "{dead:?}");
            assert_eq!(dead["m100"].0, "panic", "{dead:?}");
            assert_eq!(dead["m150"].0, "reject", "{dead:?}");
            assert_eq!(dead["garbage"].0, "reject", "{dead:?}");
            assert!(dead["garbage"].1.contains("not valid JSON"), "{dead:?}");
            // The good messages around the poison ones all made it, each once.
            let documents = tenant_collection(&tenant, "events").await;
            for n in [49, 51, 99, 101, 149, 151, 199] {
                assert_eq!(
                    documents.count_documents(doc! { "n": n }).await.unwrap(),
                    1,
                    "message {n}"
                );
            }
            let stats = wait_until(
                "the stats count four dead letters",
                Duration::from_secs(30),
                async || {
                    host.tenant(
                        &token,
                        Method::GET,
                        "/v1/streams/events/stats?window_secs=600",
                        None,
                    )
                    .await
                    .1
                },
                |stats| stats["dead_lettered"] == 4,
            )
            .await;
            assert!(stats["retried"].as_u64().unwrap() >= 2, "{stats}");
            host.delete_tenant(&tenant).await;
            host.stop().await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumers_killed_mid_batch_lose_and_duplicate_nothing() {
    within(
        "consumers_killed_mid_batch_lose_and_duplicate_nothing",
        Duration::from_secs(300),
        async {
            let database = database_name();
            let extra =
                "[stream]\nreconcile_ms = 200\nmonitor_interval_ms = 500\nbatch_size = 50\n";
            let registry = "host_lease_secs = 2";
            let tenant = mysimbdp_tests::unique("sc");
            let first = spawn_serve_with(
                &database,
                "stream-crash-cache",
                registry,
                &format!("workers = 0\n{extra}"),
            )
            .await;
            let api = Host::remote(&first.base);
            // Slow on purpose (1 ms per message): every kill lands in the middle of some batch.
            let (token, conn) = stream_of(
                &api,
                &tenant,
                profile(json!({ "min_consumers_per_stream": 2, "max_consumers_per_stream": 2 })),
                "poison",
                fixtures::EVIL_POISON,
                json!({
                    "name": "crash", "app": "poison", "collection": "events",
                    "params": { "spin_us": "1000" }, "delivery_limit": 100
                }),
            )
            .await;
            let total = 3000;
            publish(&conn, numbered_from(0, total)).await;
            let documents = tenant_collection(&tenant, "events").await;
            let mut process = first;
            let mut kills = 0;
            for round in 0..6 {
                // Let it work a while, then kill it without warning. Not a gate: paces the
                // chaos, so each kill lands at a different point of the work.
                tokio::time::sleep(Duration::from_millis(700 + 300 * round)).await;
                let before = documents.count_documents(doc! {}).await.unwrap();
                process.child.start_kill().unwrap();
                process.child.wait().await.unwrap();
                kills += 1;
                if before >= total {
                    break;
                }
                process = spawn_serve_with(
                    &database,
                    "stream-crash-cache",
                    registry,
                    &format!("workers = 0\n{extra}"),
                )
                .await;
            }
            assert!(kills >= 3, "the stream finished before the kills began");
            let last = spawn_serve_with(
                &database,
                "stream-crash-cache",
                registry,
                &format!("workers = 0\n{extra}"),
            )
            .await;
            wait_documents(&tenant, "events", total, Duration::from_secs(180)).await;
            // Exactly one document per message: no loss, no duplicates.
            let distinct = documents.distinct("n", doc! {}).await.unwrap().len();
            assert_eq!(distinct as u64, total);
            let api = Host::remote(&last.base);
            let (_, stream) = api
                .tenant(&token, Method::GET, "/v1/streams/crash", None)
                .await;
            assert_eq!(stream["status"], "running", "{stream}");
            // Redeliveries happened (the kills), and nothing went to the dead-letter queue.
            let redelivered = documents
                .count_documents(doc! { "attempt": { "$gt": 1 } })
                .await
                .unwrap();
            assert!(redelivered > 0, "no message was ever redelivered");
            let amqp = connect(&conn).await;
            let channel = amqp.create_channel().await.unwrap();
            let dead = channel
                .basic_get("crash.dead".into(), BasicGetOptions::default())
                .await
                .unwrap();
            assert!(dead.is_none(), "a message was dead-lettered");
            let _ = amqp.close(200, "done".into()).await;
            api.delete_tenant(&tenant).await;
            last.terminate().await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_scales_consumers_up_and_idleness_down_within_bounds() {
    within(
        "a_burst_scales_consumers_up_and_idleness_down_within_bounds",
        Duration::from_secs(300),
        async {
            let database = database_name();
            let host = host(&database).await;
            let tenant = mysimbdp_tests::unique("ss");
            let (token, conn) = stream_of(
                &host,
                &tenant,
                profile(json!({
                    "min_consumers_per_stream": 1,
                    "max_consumers_per_stream": 3,
                    "autoscale": {
                        "scale_up_backlog": 200,
                        "scale_down_backlog": 10,
                        "scale_down_throughput": 5,
                        "sustain": 1,
                        "cooldown_secs": 1
                    }
                })),
                "poison",
                fixtures::EVIL_POISON,
                json!({
                    "name": "burst", "app": "poison", "collection": "events",
                    "params": { "spin_us": "2000" }
                }),
            )
            .await;
            let total = 4000u64;
            // Watch the desired count the whole time: it must stay within 1..=3. (Joined, not
            // spawned: the watch borrows the host.)
            let watcher = async {
                let (mut highest, mut lowest_after_peak) = (0u64, u64::MAX);
                wait_until(
                    "the stream scales up to 3 and back down to 1",
                    Duration::from_secs(240),
                    async || {
                        let (_, stream) = host
                            .tenant(&token, Method::GET, "/v1/streams/burst", None)
                            .await;
                        let consumers = stream["consumers"].as_u64().unwrap();
                        assert!((1..=3).contains(&consumers), "{stream}");
                        assert!(
                            stream["running_consumers"].as_u64().unwrap() <= 3,
                            "{stream}"
                        );
                        highest = highest.max(consumers);
                        if highest == 3 {
                            lowest_after_peak = lowest_after_peak.min(consumers);
                        }
                        (lowest_after_peak, stream)
                    },
                    |(lowest_after_peak, _)| *lowest_after_peak == 1,
                )
                .await;
                highest
            };
            let load = async {
                publish(&conn, numbered_from(0, total)).await;
                wait_documents(&tenant, "events", total, Duration::from_secs(180)).await;
            };
            let (highest, ()) = tokio::join!(watcher, load);
            assert_eq!(highest, 3);
            let (_, stats) = host
                .tenant(
                    &token,
                    Method::GET,
                    "/v1/streams/burst/stats?window_secs=600",
                    None,
                )
                .await;
            let events = stats["events"].as_array().unwrap();
            let ups: Vec<_> = events.iter().filter(|e| e["kind"] == "scale_up").collect();
            let downs: Vec<_> = events
                .iter()
                .filter(|e| e["kind"] == "scale_down")
                .collect();
            assert!(ups.len() >= 2, "{events:?}");
            assert!(downs.len() >= 2, "{events:?}");
            assert!(
                ups.iter()
                    .all(|e| e["reason"].as_str().unwrap().contains("backlog")
                        || e["reason"].as_str().unwrap().contains("latency")),
                "{events:?}"
            );
            assert!(
                downs
                    .iter()
                    .all(|e| e["reason"].as_str().unwrap().contains("idle")),
                "{events:?}"
            );
            // The plots' series: the same reports per step, the decisions on the same axis.
            let (status, series) = host
                .tenant(
                    &token,
                    Method::GET,
                    "/v1/streams/burst/series?window_secs=600&points=500",
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{series}");
            let points = series["points"].as_array().unwrap();
            let summed: u64 = points.iter().map(|p| p["messages"].as_u64().unwrap()).sum();
            assert_eq!(summed, stats["messages"].as_u64().unwrap(), "{series}");
            assert_eq!(
                points
                    .iter()
                    .map(|p| p["consumers"].as_u64().unwrap())
                    .max(),
                Some(3),
                "{series}"
            );
            let kinds: Vec<&str> = series["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["kind"].as_str().unwrap())
                .collect();
            assert_eq!(
                kinds.iter().position(|k| *k == "scale_up"),
                Some(0),
                "oldest first, the first decision a scale-up: {kinds:?}"
            );
            assert!(kinds.contains(&"scale_down"), "{kinds:?}");
            host.delete_tenant(&tenant).await;
            host.stop().await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_over_its_quota_is_paused_and_loses_nothing() {
    within(
        "a_tenant_over_its_quota_is_paused_and_loses_nothing",
        Duration::from_secs(300),
        async {
            let database = database_name();
            let host = host(&database).await;
            let tenant = mysimbdp_tests::unique("sq");
            let (token, conn) = stream_of(
                &host,
                &tenant,
                profile(json!({ "max_messages_per_window": 100, "window_secs": 2 })),
                "poison",
                fixtures::EVIL_POISON,
                json!({ "name": "quota", "app": "poison", "collection": "events" }),
            )
            .await;
            publish(&conn, numbered_from(0, 350)).await;
            // While paused, the queue keeps the rest.
            wait_until(
                "the stream is throttled",
                Duration::from_secs(30),
                async || {
                    host.tenant(&token, Method::GET, "/v1/streams/quota", None)
                        .await
                        .1
                },
                |stream| stream["throttled"] == true,
            )
            .await;
            wait_documents(&tenant, "events", 350, Duration::from_secs(60)).await;
            let (_, stats) = host
                .tenant(
                    &token,
                    Method::GET,
                    "/v1/streams/quota/stats?window_secs=600",
                    None,
                )
                .await;
            let events = stats["events"].as_array().unwrap();
            let throttled = events
                .iter()
                .find(|e| e["kind"] == "throttled")
                .unwrap_or_else(|| panic!("{events:?}"));
            assert!(
                throttled["reason"]
                    .as_str()
                    .unwrap()
                    .contains("100 messages"),
                "{throttled}"
            );
            assert!(events.iter().any(|e| e["kind"] == "resumed"), "{events:?}");
            // The series counts every message once the last report is in, and marks the
            // paused steps (the console shades them).
            let series = wait_until(
                "the series counts every message",
                Duration::from_secs(30),
                async || {
                    host.tenant(
                        &token,
                        Method::GET,
                        "/v1/streams/quota/series?window_secs=600",
                        None,
                    )
                    .await
                    .1
                },
                |series| {
                    series["points"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| p["messages"].as_u64().unwrap())
                        .sum::<u64>()
                        == 350
                },
            )
            .await;
            let points = series["points"].as_array().unwrap();
            assert!(points.iter().any(|p| p["throttled"] == true), "{series}");
            host.delete_tenant(&tenant).await;
            host.stop().await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_stream_requests_are_refused_with_reasons() {
    within(
        "bad_stream_requests_are_refused_with_reasons",
        Duration::from_secs(300),
        async {
            let database = database_name();
            let host = host(&database).await;
            let tenant = mysimbdp_tests::unique("sr");
            let token = host.create_tenant(&tenant, None).await;
            let (status, body) = host
                .upload(&token, "orders", read(fixtures::CSV_BATCH))
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            for (request, status, needle) in [
                (
                    json!({ "name": "Bad Name", "app": "orders" }),
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "stream name",
                ),
                (
                    json!({ "name": "s", "app": "nope" }),
                    StatusCode::NOT_FOUND,
                    "nope",
                ),
                (
                    json!({ "name": "s", "app": "orders" }),
                    StatusCode::CONFLICT,
                    "batch app",
                ),
                (
                    json!({ "name": "s", "app": "orders", "delivery_limit": 0 }),
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "delivery_limit",
                ),
                (
                    json!({ "name": "s", "app": "orders", "collection": "$x" }),
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "collection",
                ),
            ] {
                let (got, body) = host
                    .tenant(&token, Method::POST, "/v1/streams", Some(request.clone()))
                    .await;
                assert_eq!(got, status, "{request} → {body}");
                assert!(body.to_string().contains(needle), "{request} → {body}");
            }
            let (status, body) = host
                .upload(&token, "sensors", read(fixtures::JSON_STREAM))
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            let request = json!({ "name": "s", "app": "sensors" });
            let (status, _) = host
                .tenant(&token, Method::POST, "/v1/streams", Some(request.clone()))
                .await;
            assert_eq!(status, StatusCode::CREATED);
            let (status, body) = host
                .tenant(&token, Method::POST, "/v1/streams", Some(request))
                .await;
            assert_eq!(status, StatusCode::CONFLICT, "{body}");
            host.delete_tenant(&tenant).await;
            host.stop().await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumers_spread_over_hosts_and_one_host_at_a_time_runs_the_monitor() {
    within(
        "consumers_spread_over_hosts_and_one_host_at_a_time_runs_the_monitor",
        Duration::from_secs(300),
        async {
            let database = database_name();
            let first = host(&database).await;
            let second = host(&database).await;
            let tenant = mysimbdp_tests::unique("sh");
            let (_, conn) = stream_of(
                &first,
                &tenant,
                profile(json!({ "min_consumers_per_stream": 2, "max_consumers_per_stream": 2 })),
                "poison",
                fixtures::EVIL_POISON,
                json!({ "name": "shared", "app": "poison", "collection": "events" }),
            )
            .await;
            publish(&conn, numbered_from(0, 500)).await;
            wait_documents(&tenant, "events", 500, Duration::from_secs(60)).await;

            // Each host reports one consumer of the stream: the two slots went to different hosts.
            let (_, hosts) = first.admin(Method::GET, "/v1/admin/hosts", None).await;
            let ids: Vec<String> = hosts
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["id"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(ids.len(), 2, "{hosts}");
            let reports = first
                .platform_db()
                .await
                .collection::<Document>("stream_reports");
            wait_until(
                "each host reports one consumer",
                Duration::from_secs(30),
                async || {
                    let mut per_host = std::collections::BTreeMap::new();
                    let mut cursor = reports
                        .find(doc! { "tenant": &tenant, "stream": "shared" })
                        .sort(doc! { "at": 1 })
                        .await
                        .unwrap();
                    while cursor.advance().await.unwrap() {
                        let report = cursor.deserialize_current().unwrap();
                        per_host.insert(
                            report.get_str("host").unwrap().to_owned(),
                            report.get_i64("consumers").unwrap_or_else(|_| {
                                i64::from(report.get_i32("consumers").unwrap())
                            }),
                        );
                    }
                    per_host
                },
                |per_host| per_host.len() == 2 && per_host.values().all(|c| *c == 1),
            )
            .await;

            // Exactly one of them leads the monitor election; when it stops, the other takes over.
            let registry = mysimbdp_host::registry::Registry::connect(
                &mysimbdp_host::config::RegistryConfig {
                    etcd_endpoints: vec![mysimbdp_tests::ETCD_ENDPOINT.to_owned()],
                    prefix: format!("/mysimbdp-test/{database}"),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            let election = mysimbdp_host::stream::monitor::ELECTION;
            let leader = registry.leader(election).await.unwrap().expect("a leader");
            assert!(ids.contains(&leader), "{leader} is not one of {ids:?}");
            let leader_base = hosts
                .as_array()
                .unwrap()
                .iter()
                .find(|h| h["id"] == leader.as_str())
                .unwrap()["address"]
                .as_str()
                .unwrap()
                .to_owned();
            let (leaving, staying) = if leader_base == first.base {
                (first, second)
            } else {
                (second, first)
            };
            let mut leaving = leaving;
            let _ = leaving.stop.take().unwrap().send(());
            let _ = tokio::time::timeout(Duration::from_secs(10), &mut leaving.served).await;
            let now = wait_until(
                "another host leads",
                Duration::from_secs(20),
                async || registry.leader(election).await.unwrap(),
                |now| now.as_ref().is_some_and(|now| now != &leader),
            )
            .await;
            assert!(now.is_some_and(|now| ids.contains(&now)));
            staying.delete_tenant(&tenant).await;
            staying.stop().await;
        },
    )
    .await;
}

/// Runs the `mysimbdp` binary against `host` as the tenant holding `token`.
async fn cli(host: &Host, token: &str, args: &[&str]) -> std::process::Output {
    mysimbdp_tests::cli::async_command()
        .args(args)
        .env("MYSIMBDP_API", &host.base)
        .env("MYSIMBDP_TOKEN", token)
        .output()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_creates_a_stream_and_publishes_a_file_with_confirms() {
    within(
        "the_cli_creates_a_stream_and_publishes_a_file_with_confirms",
        Duration::from_secs(300),
        async {
            let database = database_name();
            let host = host(&database).await;
            let tenant = mysimbdp_tests::unique("sl");
            let token = host.create_tenant(&tenant, Some(profile(json!({})))).await;
            let (status, body) = host
                .upload(&token, "sensors", read(fixtures::JSON_STREAM))
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            let created = cli(
                &host,
                &token,
                &[
                    "stream",
                    "create",
                    "feed",
                    "--app",
                    "sensors",
                    "--collection",
                    "readings",
                    "--param",
                    "unit.temp=K",
                    "--json",
                ],
            )
            .await;
            assert!(created.status.success(), "{created:?}");
            let created: Value = serde_json::from_slice(&created.stdout).unwrap();
            assert_eq!(created["stream"]["params"]["unit.temp"], "K", "{created}");

            let file = scratch("stream-cli").join(format!("{tenant}.ndjson"));
            let mut lines: Vec<String> = readings("cli-dev", 500)
                .into_iter()
                .map(|(_, b)| b)
                .collect();
            lines.insert(250, String::new()); // blank lines are skipped
            std::fs::write(&file, lines.join("\n") + "\n").unwrap();
            let file = file.to_str().unwrap();
            let publish = ["stream", "publish", "--stream", "feed", file, "--json"];
            let published = cli(&host, &token, &publish).await;
            assert!(published.status.success(), "{published:?}");
            let summary: Value = serde_json::from_slice(&published.stdout).unwrap();
            assert_eq!(summary["confirmed"], 500, "{summary}");
            assert_eq!(summary["refused"], 0, "{summary}");
            wait_documents(&tenant, "readings", 1000, Duration::from_secs(60)).await;
            let kelvin = tenant_collection(&tenant, "readings")
                .await
                .count_documents(doc! { "metric": "temp", "unit": "K" })
                .await
                .unwrap();
            assert_eq!(kelvin, 500, "the app's parameter reached it");

            // The same file again: same message ids, so no document is written twice.
            let again = cli(&host, &token, &publish).await;
            assert!(again.status.success(), "{again:?}");
            // Both files consumed (1000 messages counted), and still 1000 documents.
            wait_until(
                "the stats count both files' messages",
                Duration::from_secs(30),
                async || {
                    host.tenant(
                        &token,
                        Method::GET,
                        "/v1/streams/feed/stats?window_secs=600",
                        None,
                    )
                    .await
                    .1
                },
                |stats| stats["messages"].as_u64() >= Some(1000),
            )
            .await;
            wait_documents(&tenant, "readings", 1000, Duration::from_secs(10)).await;

            // A stream that does not exist is a clear error, not a hang.
            let missing = cli(
                &host,
                &token,
                &["stream", "publish", "--stream", "nope", file],
            )
            .await;
            assert!(!missing.status.success());
            let stderr = String::from_utf8_lossy(&missing.stderr);
            assert!(stderr.contains("nope"), "{stderr}");
            let shown = cli(&host, &token, &["stream", "show", "feed"]).await;
            assert!(shown.status.success(), "{shown:?}");
            assert!(String::from_utf8_lossy(&shown.stdout).contains("running"));

            // The figures as text for people, and as the API's JSON for scripts.
            let window = ["stream", "stats", "feed", "--window", "600"];
            let text = cli(&host, &token, &window).await;
            assert!(text.status.success(), "{text:?}");
            let text = String::from_utf8_lossy(&text.stdout);
            assert!(text.starts_with("stream feed, last 600 s"), "{text}");
            assert!(text.contains("\n  messages       1,000 ("), "{text}");
            // The window's curve, drawn from the series of reports.
            let curve = text
                .lines()
                .find(|line| line.starts_with("  messages/s"))
                .unwrap_or_else(|| panic!("no throughput sparkline: {text}"));
            assert!(curve.contains('█'), "{text}");
            let json = cli(&host, &token, &[&window[..], &["--json"]].concat()).await;
            let json: Value = serde_json::from_slice(&json.stdout).unwrap();
            assert_eq!(json["messages"], 1000, "{json}");
            host.delete_tenant(&tenant).await;
            host.stop().await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letters_can_be_inspected_and_replayed_after_a_fix() {
    within(
        "dead_letters_can_be_inspected_and_replayed_after_a_fix",
        Duration::from_secs(300),
        async {
            let database = database_name();
            let host = host(&database).await;
            let tenant = mysimbdp_tests::unique("sd");
            // Version 1 rejects every message that asks it to; version 2 (the sensor app) does not.
            let (token, conn) = stream_of(
                &host,
                &tenant,
                profile(json!({})),
                "sensors",
                fixtures::EVIL_POISON,
                json!({ "name": "fixme", "app": "sensors", "collection": "metrics" }),
            )
            .await;
            let messages: Vec<(String, String)> = (0..5)
                .map(|i| {
                    let body = json!({
                        "device": "d-1", "ts": "2026-11-21T10:00:00Z",
                        "readings": { "temp": i }, "fail": "reject"
                    });
                    (format!("m{i}"), body.to_string())
                })
                .collect();
            publish(&conn, messages).await;
            let letters = dead_letters(
                &host,
                &token,
                "/v1/streams/fixme/dead-letters?limit=100",
                Duration::from_secs(60),
                |n| n == 5,
            )
            .await;
            let first = &letters[0];
            assert_eq!(first["class"], "reject", "{first}");
            assert!(
                first["error"].as_str().unwrap().contains("rejected"),
                "{first}"
            );
            assert_eq!(first["app_version"].as_str().unwrap().len(), 64, "{first}");
            assert!(
                first["payload"].as_str().unwrap().contains("d-1"),
                "{first}"
            );
            // Peeking left them in place.
            let (_, again) = host
                .tenant(
                    &token,
                    Method::GET,
                    "/v1/streams/fixme/dead-letters?limit=100",
                    None,
                )
                .await;
            assert_eq!(again.as_array().unwrap().len(), 5, "{again}");

            // The fix: a new active version; then the dead letters go back through the stream.
            let (status, body) = host
                .upload(&token, "sensors", read(fixtures::JSON_STREAM))
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            wait_for_the_sensor_app(&tenant, &conn).await;
            let (status, replayed) = host
                .tenant(
                    &token,
                    Method::POST,
                    "/v1/streams/fixme/dead-letters/replay",
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{replayed}");
            assert_eq!(replayed["replayed"], 5, "{replayed}");
            wait_documents(&tenant, "metrics", 5, Duration::from_secs(60)).await;
            let (_, left) = host
                .tenant(&token, Method::GET, "/v1/streams/fixme/dead-letters", None)
                .await;
            assert_eq!(left.as_array().unwrap().len(), 0, "{left}");
            host.delete_tenant(&tenant).await;
            host.stop().await;
        },
    )
    .await;
}

/// What became of one publish attempt.
#[derive(Debug)]
enum Attempt {
    /// Confirmed and routed to a queue.
    Routed,
    /// Confirmed, but returned as unroutable (mandatory).
    Returned,
    /// The broker closed the channel (access refused, a forged user id…); its message.
    Closed(String),
}

/// Publishes one message, mandatory and with confirms, on a fresh channel of `amqp`.
async fn attempt(
    amqp: &Connection,
    exchange: &str,
    routing_key: &str,
    properties: BasicProperties,
) -> Attempt {
    let channel = amqp.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let published = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            br#"{"device":"forged","ts":"2026-11-21T10:00:00Z","readings":{"temp":1}}"#,
            properties,
        )
        .await;
    let confirmed = match published {
        Ok(confirm) => tokio::time::timeout(Duration::from_secs(10), confirm)
            .await
            .expect("no confirm and no channel error within 10 s"),
        Err(e) => return Attempt::Closed(e.to_string()),
    };
    match confirmed {
        Ok(confirmation) if !confirmation.is_ack() => {
            Attempt::Closed(format!("nacked: {confirmation:?}"))
        }
        Ok(confirmation) => match confirmation.take_message() {
            None => Attempt::Routed,
            Some(_) => Attempt::Returned,
        },
        Err(e) => Attempt::Closed(e.to_string()),
    }
}

/// Headers a forger would like the listing to show as the platform's verdict.
fn forged_headers() -> lapin::types::FieldTable {
    let mut headers = lapin::types::FieldTable::default();
    let text = |s: &str| AMQPValue::LongString(s.into());
    for (name, value) in [
        ("x-mysimbdp-error-class", "out-of-fuel"),
        ("x-mysimbdp-error", "FORGED verdict"),
        ("x-mysimbdp-app-version", "FORGED"),
        ("x-mysimbdp-dead-lettered-at", "1999-01-01T00:00:00Z"),
    ] {
        headers.insert(name.into(), text(value));
    }
    headers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_cannot_forge_dead_letters() {
    within("a_tenant_cannot_forge_dead_letters", Duration::from_secs(300), async {
        let database = database_name();
        let host = host(&database).await;
        let tenant = mysimbdp_tests::unique("sf");
        let (token, conn) = stream_of(
            &host,
            &tenant,
            profile(json!({})),
            "poison",
            fixtures::EVIL_POISON,
            json!({ "name": "guarded", "app": "poison", "collection": "guarded" }),
        )
        .await;
        assert_eq!(conn["exchange"], "mysimbdp.ingest", "{conn}");
        let forged = || {
            BasicProperties::default()
                .with_message_id("forged".into())
                .with_headers(forged_headers())
        };
        let amqp = connect(&conn).await;
        // Straight into the dead-letter queue, three ways: each refused by the broker.
        let refusals = [
            ("", "guarded.dead"),
            ("mysimbdp.ingest", "guarded.dead"),
            ("mysimbdp.dead", "guarded"),
        ];
        for (exchange, routing_key) in refusals {
            let outcome = attempt(&amqp, exchange, routing_key, forged()).await;
            match (&outcome, exchange) {
                (Attempt::Returned, "mysimbdp.ingest") => {}
                (Attempt::Closed(reason), "" | "mysimbdp.dead")
                    if reason.contains("ACCESS_REFUSED") => {}
                _ => panic!("publishing to {exchange:?} with key {routing_key:?}: {outcome:?}"),
            }
        }
        // Nor may it wear the platform's mark (the administrator's user id)…
        let impersonated = forged().with_user_id("guest".into());
        let outcome = attempt(&amqp, "mysimbdp.ingest", "guarded", impersonated).await;
        assert!(
            matches!(&outcome, Attempt::Closed(reason) if reason.contains("PRECONDITION_FAILED")),
            "{outcome:?}"
        );
        // …or route the dead-letter exchange's traffic into its publishing exchange.
        let channel = amqp.create_channel().await.unwrap();
        let bound = channel
            .exchange_bind(
                "mysimbdp.ingest".into(),
                "mysimbdp.dead".into(),
                "guarded".into(),
                lapin::options::ExchangeBindOptions::default(),
                lapin::types::FieldTable::default(),
            )
            .await;
        assert!(
            bound.is_err(),
            "tenant bound mysimbdp.dead into its exchange"
        );
        // Through its stream, forged headers reach the app, and the platform's verdict
        // replaces them when the app rejects the message.
        let mut rejected = forged_headers();
        rejected.insert(
            "x-mysimbdp-tenant".into(),
            AMQPValue::LongString("someone-else".into()),
        );
        let body = json!({ "device": "d", "fail": "reject" }).to_string();
        let channel = amqp.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let confirmation = channel
            .basic_publish(
                "mysimbdp.ingest".into(),
                "guarded".into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body.as_bytes(),
                BasicProperties::default()
                    .with_message_id("rejected".into())
                    .with_headers(rejected),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(confirmation.is_ack() && confirmation.take_message().is_none());
        let _ = amqp.close(200, "done".into()).await;
        // And ordinary messages through the exchange still become documents.
        publish(&conn, numbered_from(0, 20)).await;
        wait_documents(&tenant, "guarded", 20, Duration::from_secs(60)).await;

        let letters = dead_letters(
            &host,
            &token,
            "/v1/streams/guarded/dead-letters?limit=100",
            Duration::from_secs(60),
            |n| n > 0,
        )
        .await;
        // Only the platform's verdict on the rejected message; nothing forged.
        let letters = letters.as_array().unwrap();
        assert_eq!(letters.len(), 1, "{letters:?}");
        let letter = &letters[0];
        assert_eq!(letter["message_id"], "rejected", "{letter}");
        assert_eq!(letter["class"], "reject", "{letter}");
        assert!(
            !letter["error"].as_str().unwrap().contains("FORGED"),
            "{letter}"
        );
        assert_eq!(
            letter["app_version"].as_str().unwrap().len(),
            64,
            "{letter}"
        );
        assert_ne!(
            letter["dead_lettered_at"], "1999-01-01T00:00:00Z",
            "{letter}"
        );
        // The dead letter carries the platform's tenant, not the forger's.
        let amqp = connect(&conn).await;
        let channel = amqp.create_channel().await.unwrap();
        let message = channel
            .basic_get("guarded.dead".into(), BasicGetOptions { no_ack: false })
            .await
            .unwrap()
            .unwrap();
        let headers = message.delivery.properties.headers().clone().unwrap();
        let tenant_header = headers.inner().get("x-mysimbdp-tenant").unwrap();
        assert_eq!(
            tenant_header,
            &AMQPValue::LongString(tenant.as_str().into()),
            "{headers:?}"
        );
        let _ = amqp.close(200, "done".into()).await;
        host.delete_tenant(&tenant).await;
        host.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_host_repairs_streams_provisioned_under_the_old_rules_at_start() {
    within(
        "a_host_repairs_streams_provisioned_under_the_old_rules_at_start",
        Duration::from_secs(300),
        async {
            let database = database_name();
            let first = host(&database).await;
            let tenant = mysimbdp_tests::unique("sr");
            let (_token, conn) = stream_of(
                &first,
                &tenant,
                profile(json!({})),
                "poison",
                fixtures::EVIL_POISON,
                json!({ "name": "legacy", "app": "poison", "collection": "legacy" }),
            )
            .await;
            // Put the vhost back the way older versions left it: the default exchange open to
            // the tenant, and no publishing binding.
            let vhost = conn["vhost"].as_str().unwrap();
            let call = |method: Method, path: String| {
                mysimbdp_tests::services::rabbitmq_management(method, &path)
            };
            let status = call(Method::PUT, format!("permissions/{vhost}/{vhost}"))
                .json(&json!({
                    "configure": "^$", "write": "^amq\\.default$", "read": "^.*\\.dead$"
                }))
                .send()
                .await
                .unwrap()
                .status();
            assert!(status.is_success(), "{status}");
            let status = call(
                Method::DELETE,
                format!("bindings/{vhost}/e/mysimbdp.ingest/q/legacy/legacy"),
            )
            .send()
            .await
            .unwrap()
            .status();
            assert!(status.is_success(), "{status}");
            let amqp = connect(&conn).await;
            let legacy = attempt(&amqp, "", "legacy.dead", BasicProperties::default()).await;
            assert!(matches!(legacy, Attempt::Routed), "{legacy:?}");
            let _ = amqp.close(200, "done".into()).await;

            // A host starting repairs it: the old way is refused, the new one routes.
            let second = host(&database).await;
            wait_until(
                "the publishing path is repaired",
                Duration::from_secs(30),
                async || {
                    let amqp = connect(&conn).await;
                    let old = attempt(&amqp, "", "legacy", BasicProperties::default()).await;
                    let new = attempt(
                        &amqp,
                        "mysimbdp.ingest",
                        "legacy",
                        BasicProperties::default(),
                    )
                    .await;
                    let _ = amqp.close(200, "done".into()).await;
                    (old, new)
                },
                |attempts| {
                    matches!(attempts, (Attempt::Closed(reason), Attempt::Routed)
                        if reason.contains("ACCESS_REFUSED"))
                },
            )
            .await;
            first.delete_tenant(&tenant).await;
            second.stop().await;
            first.stop().await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_document_the_coredms_cannot_store_dead_letters_only_its_message() {
    within(
        "a_document_the_coredms_cannot_store_dead_letters_only_its_message",
        Duration::from_secs(300),
        async {
            let database = database_name();
            let host = host(&database).await;
            let tenant = mysimbdp_tests::unique("sn");
            let (token, conn) = stream_of(
                &host,
                &tenant,
                profile(json!({})),
                "poison",
                fixtures::EVIL_POISON,
                json!({ "name": "nul", "app": "poison", "collection": "events" }),
            )
            .await;
            // One message's document has a NUL in a key: it passes the sandbox and cannot be
            // stored. Deterministic: never retried, only that message dead-lettered, the
            // rest of its batch written.
            let messages: Vec<(String, String)> = (0..40)
                .map(|n| {
                    let body = if n == 20 {
                        json!({ "n": n, "fail": "nul-key" })
                    } else {
                        json!({ "n": n })
                    };
                    (format!("m{n}"), body.to_string())
                })
                .collect();
            publish(&conn, messages).await;
            wait_documents(&tenant, "events", 39, Duration::from_secs(60)).await;
            let letters = dead_letters(
                &host,
                &token,
                "/v1/streams/nul/dead-letters",
                Duration::from_secs(30),
                |n| n > 0,
            )
            .await;
            assert_eq!(letters.as_array().unwrap().len(), 1, "{letters}");
            let letter = &letters[0];
            assert_eq!(letter["class"], "bad-output", "{letter}");
            assert!(
                letter["error"].as_str().unwrap().contains("NUL"),
                "{letter}"
            );
            assert_eq!(
                letter["deliveries"], 1,
                "dead-lettered at once, not retried: {letter}"
            );
            assert_eq!(
                tenant_collection(&tenant, "events")
                    .await
                    .count_documents(doc! {})
                    .await
                    .unwrap(),
                39
            );
            host.delete_tenant(&tenant).await;
            host.stop().await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hostile_document_shape_cannot_swell_a_consumers_memory() {
    within("a_hostile_document_shape_cannot_swell_a_consumers_memory", Duration::from_secs(300), async {
        let database = database_name();
        // This host consumes nothing; a `serve` process of its own does, with a 4 MiB write
        // buffer and batches of 10 messages.
        let host = Host::start_with(&database, "stream-cache", |config| {
            config.batch.workers = 0;
            config.stream.max_consumers_per_host = 0;
        })
        .await;
        let consumer = spawn_serve_with(
            &database,
            "stream-worker",
            "",
            "workers = 0\n[sink]\nwrite_buffer_mib = 4\n[stream]\nbatch_size = 10\nreconcile_ms = 200",
        )
        .await;
        let pid = consumer.child.id().unwrap();
        let tenant = mysimbdp_tests::unique("sm");
        let (_, conn) = stream_of(
            &host,
            &tenant,
            profile(json!({})),
            "poison",
            fixtures::EVIL_POISON,
            json!({ "name": "wide", "app": "poison", "collection": "wide" }),
        )
        .await;
        let before = peak_rss_mib(pid);
        // 30 messages of 11 bytes' worth of intent, each fanning out to 40 documents of
        // 32,768 small numbers: ~140 MiB of BSON per batch of 10, ~1.4 GiB as BSON trees.
        let messages: Vec<(String, String)> = (0..30)
            .map(|n| (format!("w{n}"), json!({ "n": n, "fail": "fan", "count": 40 }).to_string()))
            .collect();
        publish(&conn, messages).await;
        wait_documents(&tenant, "wide", 1200, Duration::from_secs(120)).await;
        let peak = peak_rss_mib(pid);
        let growth = peak.saturating_sub(before);
        eprintln!("consumer peak RSS {peak} MiB, {before} MiB before: +{growth} MiB");
        // The guest's memory (64 MiB cap) and its outcomes, the write buffer and the driver's
        // copy, plus a fixed margin.
        assert!(growth < 64 + 64 + 8 + 150, "the consumer grew by {growth} MiB");
        host.delete_tenant(&tenant).await;
        consumer.terminate().await;
        host.stop().await;
    })
    .await;
}
