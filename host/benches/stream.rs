//! Stream ingestion end to end, against the real services, side by side in one run:
//!
//! - **platform**: a real `mysimbdp serve` process with one consumer; the tenant's stream
//!   (a quorum queue in its own vhost) is loaded with N sensor readings while stopped, then
//!   started: the consumer takes batches (`batch_size` 100, `linger_ms` 20, the default
//!   prefetch), runs the json-stream sample app in a fresh sandbox per batch and converts its
//!   documents to BSON, while up to `sink.writes_in_flight` earlier batches are written with
//!   unordered `insert_many` (deterministic ids, write concern majority) and multi-acked in
//!   delivery order after their write. Timed from the start request until the last document
//!   is in MongoDB.
//! - **native**: a Rust consumer doing the same work the same way: its own quorum queue with
//!   the same arguments, loaded with the same messages; the same prefetch, batch size and
//!   linger; the same transform (json-stream's own `transform.rs`, compiled natively), `_id`
//!   derivation, BSON conversion and `BulkWriter`; the same multiple ack after the write, in
//!   order; and the same stages (one batch transformed and converted to BSON while as many
//!   earlier ones are written).
//! - **limit**: what the coredms itself takes for the same documents: each round's documents
//!   (the same transform, ids and BSON) prepared before the clock starts, then written by the
//!   same `BulkWriter` in the same batches (one batch of messages' documents per insert, as
//!   many inserts at once as one consumer keeps in flight) with no broker and no parsing.
//!
//! - **tls**: the platform again, with every broker hop over TLS: the tenant publishes over
//!   `amqps://` and the host consumes over `amqps://` and provisions over the management API's
//!   HTTPS (the services script's listeners on 5671 and 15671, verified against its CA). Its
//!   throughput against the platform's is the cost of TLS; the rounds' publishing times with
//!   confirms, over each, are the tenants' side of it.
//!
//! Rounds alternate which side goes first (MongoDB checkpoints and the broker's log work
//! otherwise favour one side); the verdict is the ratio of total times. Latency is per
//! message, from delivery to the completed write (the platform's from its consumer's report
//! of the round, the native one computed the same way over every message).
//!
//! `cargo bench -p mysimbdp-host --bench stream [-- ROUNDS [MESSAGES [PREFETCH]]]` (default 6
//! rounds of 100000, the platform's default prefetch). Needs `scripts/services up`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../sample-apps/json-stream/src/transform.rs"]
#[allow(dead_code)]
mod transform;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use mysimbdp_fixtures as fixtures;
use mysimbdp_host::documents::IdScheme;
use mysimbdp_host::profile::WriteConcern;
use mysimbdp_host::sink::{BulkWriter, Sink, stored_document};
use mysimbdp_tests::poll::{wait_until, wait_until_every};
use mysimbdp_tests::process::{BENCH_OPERATOR as OPERATOR, serve_bench, vm_hwm_kib};
use mysimbdp_tests::services::{
    AMQPS_URL, PUBLIC_AMQPS_URL, RABBITMQ_MANAGEMENT_HTTPS_URL, mongo, queue_consumers, services_ca,
};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

const BATCH: usize = 100;
/// Stream batches one consumer writes at once (the platform's `sink.writes_in_flight`).
const WRITES: usize = mysimbdp_host::config::DEFAULT_WRITES_IN_FLIGHT;
/// The prefetch of both consumers: the third number on the command line, or the platform's
/// default.
static PREFETCH: std::sync::OnceLock<u16> = std::sync::OnceLock::new();

fn prefetch() -> u16 {
    *PREFETCH.get_or_init(|| mysimbdp_host::config::DEFAULT_PREFETCH)
}
/// The write buffer of one batch, as the platform's consumer shares the sink's.
const BATCH_WRITE_BYTES: usize =
    mysimbdp_host::config::DEFAULT_WRITE_BUFFER_MIB as usize * 1024 * 1024 / (WRITES + 1);
const LINGER: Duration = Duration::from_millis(20);
const INSERT_BATCH: usize = 1000;
const DELIVERY_LIMIT: i64 = 5;

/// The writer of one batch of messages' documents, as the platform's consumer makes it.
fn batch_writer(sink: Arc<Sink>) -> BulkWriter {
    BulkWriter::new(
        sink,
        "metrics".to_owned(),
        WriteConcern::Majority,
        INSERT_BATCH,
        BATCH_WRITE_BYTES,
    )
}

struct Measured {
    /// How long the round's messages took to publish with confirms (the platform's sides).
    loaded: Duration,
    messages: u64,
    documents: u64,
    elapsed: Duration,
    latency_avg_ms: f64,
    latency_p99_ms: f64,
}

fn messages(round: u64, count: u64) -> impl Iterator<Item = (String, Vec<u8>)> {
    (0..count).map(move |i| {
        let body = json!({
            "device": format!("d-{}", i % 100),
            "ts": "2026-11-21T10:00:00Z",
            "site": "hel",
            "readings": { "temp": 20.0 + (i % 50) as f64 / 10.0, "hum": 40 + i % 20 }
        });
        (format!("r{round}-m{i}"), serde_json::to_vec(&body).unwrap())
    })
}

#[tokio::main]
async fn main() {
    let numbers: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rounds = numbers.first().copied().unwrap_or(6).max(1);
    let count = numbers.get(1).copied().unwrap_or(100_000);
    if let Some(&n) = numbers.get(2) {
        PREFETCH.set(u16::try_from(n).unwrap()).unwrap();
    }
    let prefetch = prefetch();
    let run = mysimbdp_tests::unique("sbench").replace('-', "_");
    println!(
        "stream ingestion bench: {rounds} rounds of {count} sensor readings (2 documents each), \
         batch {BATCH}, prefetch {prefetch}, {WRITES} writes in flight, linger {} ms, one \
         consumer",
        LINGER.as_millis()
    );
    let mut platform = Platform::start(&run, false).await;
    let mut secure = Platform::start(&format!("{run}_tls"), true).await;
    let mut native = Native::start(&run).await;
    let limit = Limit::start(&run).await;
    println!();
    println!(
        "{:<6} {:<10} {:>9} {:>10} {:>8} {:>11} {:>12} {:>9} {:>9}",
        "round",
        "pipeline",
        "messages",
        "documents",
        "seconds",
        "messages/s",
        "documents/s",
        "avg ms",
        "p99 ms"
    );
    let (mut platform_total, mut native_total) = (Duration::ZERO, Duration::ZERO);
    let (mut limit_total, mut secure_total) = (Duration::ZERO, Duration::ZERO);
    let (mut platform_loaded, mut secure_loaded) = (Duration::ZERO, Duration::ZERO);
    let (mut platform_p99, mut native_p99, mut secure_p99) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (p, t, n) = if round % 2 == 0 {
            let p = platform.round(round, count).await;
            let t = secure.round(round, count).await;
            (p, t, native.round(round, count).await)
        } else {
            let n = native.round(round, count).await;
            let t = secure.round(round, count).await;
            (platform.round(round, count).await, t, n)
        };
        let l = limit.round(round, count).await;
        assert_eq!(p.documents, count * 2, "the platform lost documents");
        assert_eq!(
            t.documents,
            count * 2,
            "the platform over TLS lost documents"
        );
        assert_eq!(n.documents, count * 2, "the native consumer lost documents");
        assert_eq!(l.documents, count * 2, "the limit side lost documents");
        for (name, m) in [("platform", &p), ("tls", &t), ("native", &n), ("limit", &l)] {
            let secs = m.elapsed.as_secs_f64();
            println!(
                "{round:<6} {name:<10} {:>9} {:>10} {:>8.2} {:>11.0} {:>12.0} {:>9.1} {:>9.1}",
                m.messages,
                m.documents,
                secs,
                m.messages as f64 / secs,
                m.documents as f64 / secs,
                m.latency_avg_ms,
                m.latency_p99_ms,
            );
        }
        platform_total += p.elapsed;
        secure_total += t.elapsed;
        platform_loaded += p.loaded;
        secure_loaded += t.loaded;
        secure_p99.push(t.latency_p99_ms);
        native_total += n.elapsed;
        limit_total += l.elapsed;
        platform_p99.push(p.latency_p99_ms);
        native_p99.push(n.latency_p99_ms);
    }
    let total = (rounds * count) as f64;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!();
    println!(
        "platform: {:.0} messages/s, p99 {:.1} ms (median of rounds), peak RSS {:.1} MiB (serve)",
        total / platform_total.as_secs_f64(),
        median(platform_p99),
        vm_hwm_kib(platform.pid) as f64 / 1024.0
    );
    println!(
        "tls:      {:.0} messages/s, p99 {:.1} ms (median of rounds), peak RSS {:.1} MiB (serve)",
        total / secure_total.as_secs_f64(),
        median(secure_p99),
        vm_hwm_kib(secure.pid) as f64 / 1024.0
    );
    println!(
        "native:   {:.0} messages/s, p99 {:.1} ms (median of rounds), peak RSS {:.1} MiB",
        total / native_total.as_secs_f64(),
        median(native_p99),
        vm_hwm_kib(std::process::id()) as f64 / 1024.0
    );
    println!(
        "limit:    {:.0} messages/s ({:.0} documents/s)",
        total / limit_total.as_secs_f64(),
        2.0 * total / limit_total.as_secs_f64()
    );
    println!(
        "platform / native throughput: {:.3}x",
        native_total.as_secs_f64() / platform_total.as_secs_f64()
    );
    println!(
        "platform / limit throughput: {:.3}x",
        limit_total.as_secs_f64() / platform_total.as_secs_f64()
    );
    println!(
        "platform over TLS / platform throughput: {:.3}x (consuming); tenants publishing with \
         confirms: {:.0} messages/s over amqps:// against {:.0} over amqp:// ({:.3}x)",
        platform_total.as_secs_f64() / secure_total.as_secs_f64(),
        total / secure_loaded.as_secs_f64(),
        total / platform_loaded.as_secs_f64(),
        platform_loaded.as_secs_f64() / secure_loaded.as_secs_f64()
    );
    platform.finish().await;
    secure.finish().await;
    native.finish().await;
    let mongo = mongo().await;
    for database in [
        format!("tenant_{run}"),
        format!("native_{run}"),
        format!("limit_{run}"),
        format!("tenant_{run}_tls"),
        format!("{run}_tls"),
        run.clone(),
    ] {
        mongo.database(&database).drop().await.unwrap();
    }
}

/// Publishes every message through `exchange` with confirms, 1000 in flight.
async fn load(connection: &Connection, exchange: &str, queue: &str, round: u64, count: u64) {
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut pending = VecDeque::new();
    for (id, body) in messages(round, count) {
        let confirm = channel
            .basic_publish(
                exchange.into(),
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
    let _ = channel.close(200, "loaded".into()).await;
}

async fn stored(collection: &mongodb::Collection<mongodb::bson::Document>) -> u64 {
    collection.estimated_document_count().await.unwrap()
}

/// A real `serve` with one consumer of the tenant's stream: over plain AMQP, or over TLS on
/// every broker hop (the host's consumer and management calls, the tenant's publishing),
/// verified against the services script's CA.
struct Platform {
    child: tokio::process::Child,
    pid: u32,
    base: String,
    http: reqwest::Client,
    token: String,
    tenant: String,
    amqp: Connection,
    metrics: mongodb::Collection<mongodb::bson::Document>,
    reports: mongodb::Collection<mongodb::bson::Document>,
}

impl Platform {
    async fn start(run: &str, tls: bool) -> Self {
        let ca = services_ca();
        let broker = if tls {
            format!(
                "amqp_url = \"{AMQPS_URL}\"\nmanagement_url = \"{RABBITMQ_MANAGEMENT_HTTPS_URL}\"\n\
                 public_amqp_url = \"{PUBLIC_AMQPS_URL}\"\nca_cert = {ca:?}\n"
            )
        } else {
            String::new()
        };
        let (child, base) = serve_bench(
            run,
            &format!(
                "[platform]\ndatabase = \"{run}\"\n[registry]\nprefix = \"/mysimbdp-bench/{run}\"\n\
                 [redis]\nnamespace = \"{run}\"\n[batch]\nworkers = 0\n\
                 [stream]\nbatch_size = {BATCH}\nprefetch = {}\nlinger_ms = {}\n\
                 reconcile_ms = 200\n{broker}",
                prefetch(),
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
                    "min_consumers_per_stream": 1, "max_consumers_per_stream": 1, "report_interval_secs": 3600,
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
        let pid = child.id().unwrap();
        let mut platform = Self {
            child,
            pid,
            base,
            http,
            token,
            tenant,
            amqp: Connection::connect(mysimbdp_tests::AMQP_URL, ConnectionProperties::default())
                .await
                .unwrap(),
            metrics: mongo()
                .await
                .database(&format!("tenant_{run}"))
                .collection("metrics"),
            reports: mongo().await.database(run).collection("stream_reports"),
        };
        let response = platform
            .call(reqwest::Method::PUT, "/v1/apps/sensors")
            .body(std::fs::read(fixtures::JSON_STREAM).unwrap())
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
        let created: Value = platform
            .call(reqwest::Method::POST, "/v1/streams")
            .json(&json!({ "name": "bench", "app": "sensors", "collection": "metrics" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        platform.switch("stop").await;
        let connection = &created["connection"];
        // Stopped before it is loaded: nothing consumes the round's messages early.
        let (vhost, queue) = (
            connection["vhost"].as_str().unwrap(),
            connection["queue"].as_str().unwrap(),
        );
        wait_until(
            "the stopped stream has no consumer",
            Duration::from_secs(60),
            async || queue_consumers(vhost, queue).await,
            |consumers| *consumers == 0,
        )
        .await;
        let mut uri: AMQPUri = connection["url"].as_str().unwrap().parse().unwrap();
        uri.authority.userinfo.username = connection["user"].as_str().unwrap().to_owned();
        uri.authority.userinfo.password = connection["password"].as_str().unwrap().to_owned();
        platform.amqp = mysimbdp_client::stream::connect_broker(uri, tls.then_some(ca.as_path()))
            .await
            .unwrap();
        platform
    }

    fn call(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    async fn switch(&self, to: &str) {
        let response = self
            .call(reqwest::Method::POST, &format!("/v1/streams/bench/{to}"))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }

    /// Loads the stopped stream, starts it, and times it until the round's documents are in.
    async fn round(&mut self, round: u64, count: u64) -> Measured {
        // As the tenant: only its publishing exchange is open to it.
        let loading = Instant::now();
        load(&self.amqp, "mysimbdp.ingest", "bench", round, count).await;
        let loaded = loading.elapsed();
        let before = stored(&self.metrics).await;
        let reports = self
            .reports
            .count_documents(mongodb::bson::doc! {})
            .await
            .unwrap();
        let started = Instant::now();
        self.switch("start").await;
        // Observed often: the wait is what is timed.
        wait_until_every(
            Duration::from_millis(20),
            "the round's documents are stored",
            Duration::from_secs(3600),
            async || stored(&self.metrics).await,
            |stored| *stored >= before + count * 2,
        )
        .await;
        let elapsed = started.elapsed();
        let documents = stored(&self.metrics).await - before;
        // Stopping writes the consumer's report of the round.
        self.switch("stop").await;
        let (_, report) = wait_until(
            "the round's report is written",
            Duration::from_secs(60),
            async || {
                let latest = self
                    .reports
                    .find_one(mongodb::bson::doc! {})
                    .sort(mongodb::bson::doc! { "at": -1 })
                    .await
                    .unwrap();
                let count = self
                    .reports
                    .count_documents(mongodb::bson::doc! {})
                    .await
                    .unwrap();
                (count, latest)
            },
            |(count, latest)| *count > reports && latest.is_some(),
        )
        .await;
        let report = report.unwrap();
        Measured {
            loaded,
            messages: report.get_i64("messages").unwrap() as u64,
            documents,
            elapsed,
            latency_avg_ms: report.get_f64("latency_avg_ms").unwrap(),
            latency_p99_ms: report.get_f64("latency_p99_ms").unwrap(),
        }
    }

    async fn finish(mut self) {
        let _ = self.amqp.close(200, "done".into()).await;
        self.http
            .delete(format!("{}/v1/admin/tenants/{}", self.base, self.tenant))
            .bearer_auth(OPERATOR)
            .send()
            .await
            .unwrap();
        self.child.start_kill().unwrap();
        let _ = self.child.wait().await;
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
struct Native {
    amqp: Connection,
    queue: String,
    run: String,
    sink: Arc<Sink>,
}

impl Native {
    async fn start(run: &str) -> Self {
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
        let database = mongo().await.database(&format!("native_{run}"));
        Self {
            amqp,
            queue,
            run: run.to_owned(),
            sink: Arc::new(Sink::direct(database)),
        }
    }

    async fn round(&mut self, round: u64, count: u64) -> Measured {
        load(&self.amqp, "", &self.queue, round, count).await;
        let channel = self.amqp.create_channel().await.unwrap();
        channel
            .basic_qos(prefetch(), BasicQosOptions::default())
            .await
            .unwrap();
        let started = Instant::now();
        let mut deliveries = channel
            .basic_consume(
                self.queue.as_str().into(),
                "native".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        // The same two stages as the platform's consumer: one task collects a batch and
        // transforms it while the other writes and acknowledges the previous one.
        let (ready, mut transformed) = tokio::sync::mpsc::channel::<
            Vec<(
                lapin::message::Delivery,
                Instant,
                Vec<mongodb::bson::RawDocumentBuf>,
            )>,
        >(1);
        let run = self.run.as_str();
        let reader = async move {
            let mut taken = 0u64;
            while taken < count {
                let first = deliveries.next().await.unwrap().unwrap();
                let mut batch = vec![(first, Instant::now())];
                let deadline = tokio::time::Instant::now() + LINGER;
                while batch.len() < BATCH {
                    match tokio::time::timeout_at(deadline, deliveries.next()).await {
                        Ok(delivery) => batch.push((delivery.unwrap().unwrap(), Instant::now())),
                        Err(_) => break,
                    }
                }
                taken += batch.len() as u64;
                let batch = batch
                    .into_iter()
                    .map(|(delivery, at)| {
                        let id = delivery
                            .properties
                            .message_id()
                            .clone()
                            .unwrap()
                            .to_string();
                        let ids = IdScheme::CURRENT.message_ids(run, "bench", &id);
                        let documents = transform(&delivery.data)
                            .unwrap()
                            .iter()
                            .enumerate()
                            .map(|(n, json)| stored_document(&ids, n as u64, json, None).unwrap())
                            .collect();
                        (delivery, at, documents)
                    })
                    .collect();
                ready.send(batch).await.unwrap();
            }
        };
        let writer = async {
            let mut latencies = Vec::with_capacity(count as usize);
            let (mut settled, mut documents) = (0u64, 0u64);
            // Up to WRITES batches written at once, acknowledged in delivery order.
            let mut in_flight = futures_util::stream::FuturesOrdered::new();
            let mut reading = true;
            loop {
                tokio::select! {
                    next = transformed.recv(), if reading && in_flight.len() < WRITES => {
                        let Some(batch) = next else {
                            reading = false;
                            continue;
                        };
                        let sink = self.sink.clone();
                        in_flight.push_back(async move {
                            let mut writer = batch_writer(sink);
                            let mut index = 0u64;
                            let last = batch.last().unwrap().0.delivery_tag;
                            let mut received = Vec::with_capacity(batch.len());
                            for (_, at, stored) in batch {
                                received.push(at);
                                for document in stored {
                                    writer.push(index, document).await.unwrap();
                                    index += 1;
                                }
                            }
                            writer.flush().await.unwrap();
                            (last, received, writer.inserted + writer.duplicates, Instant::now())
                        });
                    }
                    Some((last, received, written_documents, written)) = in_flight.next(),
                        if !in_flight.is_empty() => {
                        documents += written_documents;
                        channel
                            .basic_ack(last, BasicAckOptions { multiple: true })
                            .await
                            .unwrap();
                        for at in &received {
                            latencies.push(written.duration_since(*at).as_micros() as u64);
                        }
                        settled += received.len() as u64;
                    }
                    else => break,
                }
            }
            (latencies, settled, documents)
        };
        let ((), (mut latencies, settled, documents)) = tokio::join!(reader, writer);
        let elapsed = started.elapsed();
        let _ = channel.close(200, "round done".into()).await;
        latencies.sort_unstable();
        let n = latencies.len();
        Measured {
            loaded: Duration::ZERO,
            messages: settled,
            documents,
            elapsed,
            latency_avg_ms: latencies.iter().sum::<u64>() as f64 / n as f64 / 1000.0,
            latency_p99_ms: latencies[((n * 99).div_ceil(100)).saturating_sub(1)] as f64 / 1000.0,
        }
    }

    async fn finish(self) {
        let channel = self.amqp.create_channel().await.unwrap();
        channel
            .queue_delete(self.queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap();
        let _ = self.amqp.close(200, "done".into()).await;
    }
}

/// The coredms's own limit for the same documents, batched as one consumer writes them.
struct Limit {
    run: String,
    sink: Arc<Sink>,
}

impl Limit {
    async fn start(run: &str) -> Self {
        let database = mongo().await.database(&format!("limit_{run}"));
        Self {
            run: run.to_owned(),
            sink: Arc::new(Sink::direct(database)),
        }
    }

    async fn round(&self, round: u64, count: u64) -> Measured {
        // Prepared before the clock starts: per batch of messages, their documents as stored.
        let mut batches = Vec::new();
        let mut batch = Vec::with_capacity(BATCH * 2);
        for (i, (id, body)) in messages(round, count).enumerate() {
            let ids = IdScheme::CURRENT.message_ids(&self.run, "bench", &id);
            for (n, json) in transform(&body).unwrap().iter().enumerate() {
                batch.push(stored_document(&ids, n as u64, json, None).unwrap());
            }
            if (i + 1) % BATCH == 0 {
                batches.push(std::mem::replace(&mut batch, Vec::with_capacity(BATCH * 2)));
            }
        }
        if !batch.is_empty() {
            batches.push(batch);
        }
        let started = Instant::now();
        // WRITES batches written at once, as one consumer writes them.
        let documents: u64 = futures_util::stream::iter(batches)
            .map(|batch| {
                let sink = self.sink.clone();
                async move {
                    let mut writer = batch_writer(sink);
                    for (index, document) in batch.into_iter().enumerate() {
                        writer.push(index as u64, document).await.unwrap();
                    }
                    writer.flush().await.unwrap();
                    writer.inserted + writer.duplicates
                }
            })
            .buffered(WRITES)
            .fold(0, |total, n| async move { total + n })
            .await;
        Measured {
            loaded: Duration::ZERO,
            messages: count,
            documents,
            elapsed: started.elapsed(),
            latency_avg_ms: 0.0,
            latency_p99_ms: 0.0,
        }
    }
}
