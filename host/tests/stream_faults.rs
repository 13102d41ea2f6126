//! Streams under the platform's own faults, against real services: a Redis of the test's own
//! killed under load (restarted empty, and from its append-only file), the broker's
//! connections force-closed again and again, and a MongoDB of the test's own (platform
//! database and coredms) killed under load. In each, every message's document lands exactly
//! once, nothing is dead-lettered, and the platform's outage spends no delivery attempt (the
//! test app stores each message's delivery count in its document).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mongodb::bson::{Document, doc};
use mysimbdp_fixtures as fixtures;
use mysimbdp_tests::faults::{OwnedMongo, OwnedRedis};
use mysimbdp_tests::prelude::*;
use mysimbdp_tests::services::queue_consumers;
use mysimbdp_tests::streams::{force_close_connections, numbered_from, publish};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The `[batch]` and `[stream]` keys of the tests' hosts: no batch workers, quick placement,
/// small batches (so a slow app still settles often).
const SERVE_TABLES: &str = "workers = 0\n[stream]\nreconcile_ms = 200\nmonitor_interval_ms = 500\n\
                            batch_size = 20\nprefetch = 100\n";

/// A tenant with one consumer per stream and 1 s reports, the poison app (slow on purpose:
/// `spin_us` per message) and stream `faults` into collection `events`; returns the token
/// and the connection details.
async fn slow_stream(api: &Host, tenant: &str, spin_us: u32) -> (String, Value) {
    let profile = json!({ "stream": {
        "report_interval_secs": 1,
        "min_consumers_per_stream": 1,
        "max_consumers_per_stream": 1,
    }});
    let token = api.create_tenant(tenant, Some(profile)).await;
    let (status, body) = api
        .upload(&token, "poison", read(fixtures::EVIL_POISON))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, created) = api
        .tenant(
            &token,
            Method::POST,
            "/v1/streams",
            Some(json!({
                "name": "faults", "app": "poison", "collection": "events",
                "params": { "spin_us": spin_us.to_string() }, "delivery_limit": 100
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    (token, created["connection"].clone())
}

/// Documents in `collection`.
async fn count(collection: &mongodb::Collection<Document>) -> u64 {
    collection.count_documents(doc! {}).await.unwrap()
}

/// Waits until `collection` holds exactly `total` documents, one per message (never more),
/// and checks that none came from a redelivery when `first_deliveries_only`.
async fn assert_exactly_once(
    collection: &mongodb::Collection<Document>,
    total: u64,
    within: Duration,
) -> u64 {
    wait_until(
        &format!("{total} documents"),
        within,
        async || {
            let n = count(collection).await;
            assert!(n <= total, "{n} documents, more than the {total} expected");
            n
        },
        |n| *n == total,
    )
    .await;
    let distinct = collection.distinct("n", doc! {}).await.unwrap().len() as u64;
    assert_eq!(distinct, total, "one document per message");
    collection
        .count_documents(doc! { "attempt": { "$gt": 1 } })
        .await
        .unwrap()
}

/// The stream's stats over the last hour.
async fn stats(api: &Host, token: &str) -> Value {
    let (status, stats) = api
        .tenant(
            token,
            Method::GET,
            "/v1/streams/faults/stats?window_secs=3600",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    stats
}

/// Lines of a `serve`'s log holding `text`.
fn log_lines(process: &Process, text: &str) -> usize {
    process
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(text))
        .count()
}

const REDIS_DOWN: &str = "the stream quota's shared counter (Redis) is unreachable";
const REDIS_BACK: &str = "the stream quota's shared counter (Redis) answers again";

/// Kills the host's Redis in the middle of a stream and brings it back (empty, or from its
/// append-only file) ~10 s later: consumption goes on meanwhile (the quota counts locally),
/// every message's document lands once, none is redelivered or dead-lettered.
async fn redis_outage(aof: bool) {
    let database = database_name();
    let mut redis = OwnedRedis::start(aof).await;
    let endpoints = Endpoints {
        redis_url: redis.url(),
        ..Endpoints::shared()
    };
    let process = spawn_serve_at(
        &endpoints,
        &database,
        "stream-faults-cache",
        "",
        SERVE_TABLES,
    )
    .await;
    let api = Host::remote(&process.base);
    let tenant = mysimbdp_tests::unique("rq");
    let (token, conn) = slow_stream(&api, &tenant, 3000).await;
    let total = 5000;
    publish(&conn, numbered_from(0, total)).await;
    let documents = tenant_collection(&tenant, "events").await;
    let vhost = conn["vhost"].as_str().unwrap().to_owned();
    let queue = conn["queue"].as_str().unwrap().to_owned();

    let at_kill = wait_until(
        "the stream is well under way",
        Duration::from_secs(60),
        async || count(&documents).await,
        |n| *n >= 800,
    )
    .await;
    redis.kill().await;
    let killed = Instant::now();
    // Consumption goes on without Redis, and the consumer never leaves the queue.
    let mut fewest_consumers = u32::MAX;
    let resumed = wait_until(
        "documents keep coming while Redis is down",
        Duration::from_secs(30),
        async || {
            fewest_consumers = fewest_consumers.min(queue_consumers(&vhost, &queue).await);
            count(&documents).await
        },
        |n| *n >= at_kill + 500,
    )
    .await;
    let progress_after = killed.elapsed();
    // Pacing the fault, not a gate: Redis stays down about 10 s in all.
    while killed.elapsed() < Duration::from_secs(10) {
        fewest_consumers = fewest_consumers.min(queue_consumers(&vhost, &queue).await);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let at_restart = count(&documents).await;
    if aof {
        redis.restart().await;
    } else {
        redis.restart_empty().await;
    }
    let restarted = Instant::now();
    wait_until(
        "the host counts in Redis again",
        Duration::from_secs(20),
        async || log_lines(&process, REDIS_BACK),
        |n| *n >= 1,
    )
    .await;
    let shared_again = restarted.elapsed();
    let redelivered = assert_exactly_once(&documents, total, Duration::from_secs(90)).await;
    println!(
        "redis outage (aof: {aof}): {at_kill} documents at the kill, {} more {progress_after:?} \
         after it, {at_restart} at the restart ~10 s later; the shared counter was used again \
         {shared_again:?} after the restart; fewest consumers seen: {fewest_consumers}",
        resumed - at_kill
    );
    assert_eq!(redelivered, 0, "the outage spent delivery attempts");
    assert!(fewest_consumers >= 1, "the consumer left the queue");
    assert_eq!(log_lines(&process, REDIS_DOWN), 1, "one warning when down");
    assert_eq!(log_lines(&process, REDIS_BACK), 1, "one when back");
    let metrics = api
        .http
        .get(format!("{}/metrics", api.base))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let degraded = metrics
        .lines()
        .find(|l| {
            l.starts_with("mysimbdp_stream_quota_degraded_admissions_total") && l.contains(&tenant)
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(degraded > 0, "no degraded admission counted");
    let stats = wait_until(
        "the stats count every message",
        Duration::from_secs(20),
        async || stats(&api, &token).await,
        |s| s["messages"] == total,
    )
    .await;
    assert_eq!(stats["dead_lettered"], 0, "{stats}");
    assert_eq!(stats["dead_letters_queued"], 0, "{stats}");
    api.delete_tenant(&tenant).await;
    process.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_outage_neither_stops_a_stream_nor_spends_deliveries() {
    within(
        "a_redis_outage_neither_stops_a_stream_nor_spends_deliveries",
        Duration::from_secs(150),
        redis_outage(false),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_outage_with_aof_neither_stops_a_stream_nor_spends_deliveries() {
    within(
        "a_redis_outage_with_aof_neither_stops_a_stream_nor_spends_deliveries",
        Duration::from_secs(150),
        redis_outage(true),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forced_broker_closes_resume_quickly_every_time() {
    within(
        "forced_broker_closes_resume_quickly_every_time",
        Duration::from_secs(150),
        async {
            let database = database_name();
            let process =
                spawn_serve_with(&database, "stream-faults-cache", "", SERVE_TABLES).await;
            let api = Host::remote(&process.base);
            let tenant = mysimbdp_tests::unique("fc");
            let (token, conn) = slow_stream(&api, &tenant, 2000).await;
            // Published in steps, topped up before each close, so however fast this machine
            // consumes, every close lands while the stream has work.
            const STEP: u64 = 2_000;
            let mut total = STEP;
            publish(&conn, numbered_from(0, total)).await;
            let documents = tenant_collection(&tenant, "events").await;
            let vhost = conn["vhost"].as_str().unwrap().to_owned();
            let queue = conn["queue"].as_str().unwrap().to_owned();
            wait_until(
                "the stream is under way",
                Duration::from_secs(60),
                async || count(&documents).await,
                |n| *n >= 200,
            )
            .await;
            let mut resumes = Vec::new();
            for round in 0..10 {
                // Wait until the consumer is connected (the management API lists it).
                wait_until(
                    "the consumer is connected",
                    Duration::from_secs(10),
                    async || queue_consumers(&vhost, &queue).await,
                    |n| *n >= 1,
                )
                .await;
                if count(&documents).await + STEP / 2 >= total {
                    publish(&conn, numbered_from(total, STEP)).await;
                    total += STEP;
                }
                let closed = wait_until(
                    "the management API lists the consumer's connection",
                    Duration::from_secs(10),
                    async || force_close_connections(&vhost, "guest").await,
                    |n| *n >= 1,
                )
                .await;
                let at = Instant::now();
                let after_close = count(&documents).await;
                // Resumed: the consumer is back on the queue and has written more than the two
                // batches (of 20) it may have had in hand when its connection went.
                wait_until(
                    &format!("consumption resumes after forced close {round}"),
                    Duration::from_secs(10),
                    async || {
                        (
                            queue_consumers(&vhost, &queue).await,
                            count(&documents).await,
                        )
                    },
                    |(consumers, n)| *consumers >= 1 && *n >= (after_close + 3 * 20).min(total),
                )
                .await;
                let resumed = at.elapsed();
                println!(
                    "forced close {round}: {closed} connection(s) closed, resumed in {resumed:?}"
                );
                resumes.push(resumed);
            }
            let worst = resumes.iter().max().unwrap();
            assert!(
                *worst < Duration::from_secs(5),
                "a resume took {worst:?}: {resumes:?}"
            );
            assert_exactly_once(&documents, total, Duration::from_secs(90)).await;
            let stats = stats(&api, &token).await;
            assert_eq!(stats["dead_letters_queued"], 0, "{stats}");
            assert_eq!(stats["dead_lettered"], 0, "{stats}");
            api.delete_tenant(&tenant).await;
            process.terminate().await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mongodb_outage_loses_nothing_and_the_stats_count_every_message() {
    within(
        "a_mongodb_outage_loses_nothing_and_the_stats_count_every_message",
        Duration::from_secs(150),
        async {
            let database = database_name();
            let mut mongo = OwnedMongo::start().await;
            let endpoints = Endpoints {
                mongodb_uri: mongo.uri(),
                ..Endpoints::shared()
            };
            // The coredms is the same mongod (`spawn_serve_at` makes it the shared coredms):
            // its outage is the platform database's too.
            let process = spawn_serve_at(
                &endpoints,
                &database,
                "stream-faults-cache",
                "",
                SERVE_TABLES,
            )
            .await;
            let api = Host::remote(&process.base);
            let tenant = mysimbdp_tests::unique("mo");
            let (token, conn) = slow_stream(&api, &tenant, 2000).await;
            let total = 5000;
            publish(&conn, numbered_from(0, total)).await;
            let client = mongo.client().await;
            let documents = client
                .database(&tenant_database(&tenant))
                .collection::<Document>("events");
            let at_kill = wait_until(
                "the stream is well under way",
                Duration::from_secs(60),
                async || count(&documents).await,
                |n| *n >= 800,
            )
            .await;
            mongo.kill().await;
            // Pacing the fault, not a gate: mongod stays down about 10 s.
            tokio::time::sleep(Duration::from_secs(10)).await;
            mongo.restart().await;
            let restarted = Instant::now();
            let client = mongo.client().await;
            let documents = client
                .database(&tenant_database(&tenant))
                .collection::<Document>("events");
            let resumed = wait_until(
                "documents come again",
                Duration::from_secs(30),
                async || count(&documents).await,
                |n| *n > at_kill,
            )
            .await;
            println!(
                "mongodb outage: {at_kill} documents at the kill; writing again {:?} after the \
                 restart ({resumed} documents)",
                restarted.elapsed()
            );
            let redelivered = assert_exactly_once(&documents, total, Duration::from_secs(90)).await;
            assert_eq!(redelivered, 0, "the outage spent delivery attempts");
            // The reports written during the outage were kept and stored afterwards.
            let stats = wait_until(
                "the stats count every message",
                Duration::from_secs(30),
                async || stats(&api, &token).await,
                |s| s["messages"].as_u64().unwrap_or(0) >= total,
            )
            .await;
            assert_eq!(stats["messages"], total, "{stats}");
            assert_eq!(stats["documents"], total, "{stats}");
            assert_eq!(stats["dead_lettered"], 0, "{stats}");
            assert_eq!(stats["dead_letters_queued"], 0, "{stats}");
            assert!(stats.get("incomplete").is_none(), "{stats}");
            api.delete_tenant(&tenant).await;
            process.terminate().await;
        },
    )
    .await;
}
