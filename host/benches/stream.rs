//! Stream ingestion end to end, against the real services, side by side in one run:
//!
//! - **platform**: a real `mysimbdp serve` process with one consumer; the tenant's stream
//!   (a quorum queue in its own vhost) is loaded with N sensor readings while stopped, then
//!   started: the consumer takes batches (`batch_size` 100, `linger_ms` 20, prefetch 200),
//!   runs the json-stream sample app in a fresh sandbox per batch, writes its documents with
//!   unordered `insert_many` (deterministic ids, write concern majority) and multi-acks after
//!   the write. Timed from the start request until the last document is in MongoDB.
//! - **native**: a Rust consumer doing the same work the same way: its own quorum queue with
//!   the same arguments, loaded with the same messages; the same prefetch, batch size and
//!   linger; the same transform (json-stream's own `transform.rs`, compiled natively), `_id`
//!   derivation, BSON conversion and `BulkWriter`; the same multiple ack after the write.
//!
//! Latency is per message, from delivery to the completed write (the platform's from its
//! consumer report, the native one computed the same way over every message).
//!
//! `cargo bench -p mysimbdp-host --bench stream [-- MESSAGES]` (default 200000). Needs
//! `scripts/services up`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[path = "../../sample-apps/json-stream/src/transform.rs"]
#[allow(dead_code)]
mod transform;

use common::{OPERATOR, mongo, vm_hwm_kib};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use mysimbdp_fixtures as fixtures;
use mysimbdp_host::profile::WriteConcern;
use mysimbdp_host::sink::{BulkWriter, Sink, stored_document};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

const BATCH: usize = 100;
const PREFETCH: u16 = 200;
const LINGER: Duration = Duration::from_millis(20);
const INSERT_BATCH: usize = 1000;
const DELIVERY_LIMIT: i64 = 5;

struct Measured {
    messages: u64,
    documents: u64,
    elapsed: Duration,
    latency_avg_ms: f64,
    latency_p99_ms: f64,
    peak_rss_kib: u64,
}

fn messages(count: u64) -> impl Iterator<Item = (String, Vec<u8>)> {
    (0..count).map(|i| {
        let body = json!({
            "device": format!("d-{}", i % 100),
            "ts": "2026-11-21T10:00:00Z",
            "site": "hel",
            "readings": { "temp": 20.0 + (i % 50) as f64 / 10.0, "hum": 40 + i % 20 }
        });
        (format!("m{i}"), serde_json::to_vec(&body).unwrap())
    })
}

#[tokio::main]
async fn main() {
    let count: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);
    let run = mysimbdp_tests::unique("sbench").replace('-', "_");
    println!(
        "stream ingestion bench: {count} sensor readings (2 documents each), batch {BATCH}, \
         prefetch {PREFETCH}, linger {} ms, one consumer",
        LINGER.as_millis()
    );
    let platform = platform(&run, count).await;
    assert_eq!(platform.documents, count * 2, "the platform lost documents");
    let native = native(&run, count).await;
    assert_eq!(
        native.documents,
        count * 2,
        "the native consumer lost documents"
    );

    println!();
    println!(
        "{:<10} {:>9} {:>10} {:>8} {:>11} {:>12} {:>9} {:>9} {:>9}",
        "pipeline",
        "messages",
        "documents",
        "seconds",
        "messages/s",
        "documents/s",
        "avg ms",
        "p99 ms",
        "RSS MiB"
    );
    for (name, m) in [("platform", &platform), ("native", &native)] {
        let secs = m.elapsed.as_secs_f64();
        println!(
            "{name:<10} {:>9} {:>10} {:>8.1} {:>11.0} {:>12.0} {:>9.1} {:>9.1} {:>9.1}",
            m.messages,
            m.documents,
            secs,
            m.messages as f64 / secs,
            m.documents as f64 / secs,
            m.latency_avg_ms,
            m.latency_p99_ms,
            m.peak_rss_kib as f64 / 1024.0
        );
    }
    println!(
        "platform / native throughput: {:.3}x",
        native.elapsed.as_secs_f64() / platform.elapsed.as_secs_f64()
    );
    let mongo = mongo().await;
    for database in [
        format!("tenant_{run}"),
        format!("native_{run}"),
        run.clone(),
    ] {
        mongo.database(&database).drop().await.unwrap();
    }
}

/// Publishes every message with confirms, 1000 in flight.
async fn load(channel: &Channel, queue: &str, count: u64) {
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut pending = VecDeque::new();
    for (id, body) in messages(count) {
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default()
                    .with_message_id(id.into())
                    .with_content_type("application/json".into())
                    .with_delivery_mode(2),
            )
            .await
            .unwrap();
        pending.push_back(confirm);
        if pending.len() >= 1000 {
            assert!(pending.pop_front().unwrap().await.unwrap().is_ack());
        }
    }
    for confirm in pending {
        assert!(confirm.await.unwrap().is_ack());
    }
}

async fn stored(collection: &mongodb::Collection<mongodb::bson::Document>) -> u64 {
    collection.estimated_document_count().await.unwrap()
}

/// A real `serve` with one consumer of the tenant's stream.
async fn platform(run: &str, count: u64) -> Measured {
    let (mut child, base) = common::serve(
        run,
        &format!(
            "[platform]\ndatabase = \"{run}\"\n[registry]\nprefix = \"/mysimbdp-bench/{run}\"\n\
             [batch]\nnamespace = \"{run}\"\nworkers = 0\n\
             [stream]\nbatch_size = {BATCH}\nprefetch = {PREFETCH}\nlinger_ms = {}\n\
             reconcile_ms = 200\n",
            LINGER.as_millis()
        ),
        true,
    )
    .await;
    let http = reqwest::Client::new();
    let tenant = run.replace('_', "-");
    let created: Value = http
        .post(format!("{base}/v1/admin/tenants"))
        .bearer_auth(OPERATOR)
        .json(&json!({ "id": tenant, "profile": {
            "stream": {
                "min_consumers": 1, "max_consumers": 1, "report_interval_secs": 3600,
                "max_messages_per_window": 1_000_000_000_000u64,
                "max_mib_per_window": 1_000_000_000u64
            },
            "sink": { "insert_batch": INSERT_BATCH } } }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    let call = |method: reqwest::Method, path: &str| {
        http.request(method, format!("{base}{path}"))
            .bearer_auth(&token)
    };
    let response = call(reqwest::Method::PUT, "/v1/apps/sensors")
        .body(std::fs::read(fixtures::JSON_STREAM).unwrap())
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let created: Value = call(reqwest::Method::POST, "/v1/streams")
        .json(&json!({ "name": "bench", "app": "sensors", "collection": "metrics" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let connection = &created["connection"];
    let stopped = call(reqwest::Method::POST, "/v1/streams/bench/stop")
        .send()
        .await
        .unwrap();
    assert!(stopped.status().is_success());
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut uri: AMQPUri = connection["url"].as_str().unwrap().parse().unwrap();
    uri.authority.userinfo.username = connection["user"].as_str().unwrap().to_owned();
    uri.authority.userinfo.password = connection["password"].as_str().unwrap().to_owned();
    let amqp = Connection::connect_uri(uri, ConnectionProperties::default())
        .await
        .unwrap();
    let loading = Instant::now();
    load(&amqp.create_channel().await.unwrap(), "bench", count).await;
    println!(
        "platform: {count} messages queued in {:.1} s",
        loading.elapsed().as_secs_f64()
    );
    let metrics = mongo()
        .await
        .database(&format!("tenant_{run}"))
        .collection::<mongodb::bson::Document>("metrics");

    let started = Instant::now();
    let response = call(reqwest::Method::POST, "/v1/streams/bench/start")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    while stored(&metrics).await < count * 2 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    let peak_rss_kib = vm_hwm_kib(child.id().unwrap());
    // Stopping writes the consumer's final report, which covers the whole run.
    call(reqwest::Method::POST, "/v1/streams/bench/stop")
        .send()
        .await
        .unwrap();
    let stats = loop {
        let stats: Value = call(
            reqwest::Method::GET,
            "/v1/streams/bench/stats?window_secs=86400",
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        if stats["messages"].as_u64() == Some(count) {
            break stats;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = amqp.close(200, "done".into()).await;
    http.delete(format!("{base}/v1/admin/tenants/{tenant}"))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap();
    child.start_kill().unwrap();
    let _ = child.wait().await;
    Measured {
        messages: count,
        documents: stored(&metrics).await,
        elapsed,
        latency_avg_ms: stats["latency_avg_ms"].as_f64().unwrap(),
        latency_p99_ms: stats["latency_p99_ms"].as_f64().unwrap(),
        peak_rss_kib,
    }
}

/// json-stream's transform, natively: one JSON document per metric.
fn transform(payload: &[u8]) -> Result<Vec<String>, String> {
    let reading: transform::Reading = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    let metrics = transform::metrics(&reading, |m| transform::default_unit(m).to_owned())?;
    metrics
        .iter()
        .map(|m| serde_json::to_string(m).map_err(|e| e.to_string()))
        .collect()
}

/// The same consumer without the platform.
async fn native(run: &str, count: u64) -> Measured {
    let queue = format!("native-{run}");
    let amqp = Connection::connect(mysimbdp_tests::AMQP_URL, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = amqp.create_channel().await.unwrap();
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    arguments.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(DELIVERY_LIMIT),
    );
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            arguments,
        )
        .await
        .unwrap();
    load(&amqp.create_channel().await.unwrap(), &queue, count).await;
    let database = mongo().await.database(&format!("native_{run}"));
    let sink = Arc::new(Sink::direct(database));
    let consumer_channel = amqp.create_channel().await.unwrap();
    consumer_channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await
        .unwrap();

    let started = Instant::now();
    let mut deliveries = consumer_channel
        .basic_consume(
            queue.as_str().into(),
            "native".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut latencies = Vec::with_capacity(count as usize);
    let (mut settled, mut documents) = (0u64, 0u64);
    while settled < count {
        let first = deliveries.next().await.unwrap().unwrap();
        let mut batch = vec![(first, Instant::now())];
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, deliveries.next()).await {
                Ok(delivery) => batch.push((delivery.unwrap().unwrap(), Instant::now())),
                Err(_) => break,
            }
        }
        let mut writer = BulkWriter::new(
            sink.clone(),
            "metrics".to_owned(),
            WriteConcern::Majority,
            INSERT_BATCH,
        );
        let mut index = 0u64;
        for (delivery, _) in &batch {
            let id = delivery
                .properties
                .message_id()
                .clone()
                .unwrap()
                .to_string();
            let source = format!("stream/bench/{id}");
            for (n, json) in transform(&delivery.data).unwrap().iter().enumerate() {
                let stored = stored_document(run, &source, n as u64, json, None).unwrap();
                writer.push(index, stored).await.unwrap();
                index += 1;
            }
        }
        writer.flush().await.unwrap();
        let written = Instant::now();
        documents += writer.inserted + writer.duplicates;
        let last = batch.last().unwrap().0.delivery_tag;
        consumer_channel
            .basic_ack(last, BasicAckOptions { multiple: true })
            .await
            .unwrap();
        for (_, at) in &batch {
            latencies.push(written.duration_since(*at).as_micros() as u64);
        }
        settled += batch.len() as u64;
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let n = latencies.len();
    let avg = latencies.iter().sum::<u64>() as f64 / n as f64 / 1000.0;
    let p99 = latencies[((n * 99).div_ceil(100)).saturating_sub(1)] as f64 / 1000.0;
    channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    let _ = amqp.close(200, "done".into()).await;
    Measured {
        messages: count,
        documents,
        elapsed,
        latency_avg_ms: avg,
        latency_p99_ms: p99,
        peak_rss_kib: vm_hwm_kib(std::process::id()),
    }
}
