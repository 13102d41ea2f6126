//! The chaos test: mixed batch and stream load on three `serve` processes over a Redis, a
//! MongoDB and an etcd the test owns (and the shared RabbitMQ), while worker hosts are
//! SIGKILLed at random moments and each backing service fails in turn: Redis restarted
//! empty, MongoDB down, etcd down, the platform's broker connections force-closed. It ends
//! with every batch and stream document exactly once, every batch job `done`, nothing
//! dead-lettered, and prints the time the stream took to resume after each fault (the seed
//! of the random moments too, to replay a run).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use lapin::options::BasicGetOptions;
use mongodb::bson::{Document, doc};
use mysimbdp_fixtures as fixtures;
use mysimbdp_tests::batch::{orders_files, upload_orders, wait_jobs_ended};
use mysimbdp_tests::faults::{OwnedEtcd, OwnedMongo, OwnedRedis};
use mysimbdp_tests::prelude::*;
use mysimbdp_tests::streams::{
    Flow, assert_each_numbered_once, connect, force_close_connections, stream_of,
};
use reqwest::StatusCode;
use serde_json::json;
use std::time::{Duration, Instant};

/// Config of every host: one batch worker, quick takeover and reconciliation.
const REGISTRY: &str = "host_lease_secs = 2";
const BATCH: &str = "workers = 1\nvisibility_secs = 3\nreconcile_secs = 1\nmax_attempts = 10\n\
                     [stream]\nreconcile_ms = 200\nmonitor_interval_ms = 500\nbatch_size = 50\n";
/// Messages per publish, and the pause between two.
const CHUNK: u64 = 200;
const PACE: Duration = Duration::from_millis(250);

/// A small, seeded pseudo-random source (xorshift): which host dies and when.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The platform under test and the tenant's load.
struct Rig {
    endpoints: Endpoints,
    database: String,
    hosts: Vec<Process>,
    api: Host,
    token: String,
    tenant: String,
    /// The stream's vhost and queue on the broker.
    vhost: String,
    queue: String,
    mongo: mongodb::Client,
    jobs: Vec<String>,
    expected_batch: u64,
}

impl Rig {
    async fn spawn_host(&self) -> Process {
        spawn_serve_at(
            &self.endpoints,
            &self.database,
            "chaos-cache",
            REGISTRY,
            BATCH,
        )
        .await
    }

    /// SIGKILLs worker host `i` (not the front one, which serves the API) and starts another.
    async fn kill_host(&mut self, i: usize) {
        let host = &mut self.hosts[i];
        host.child.start_kill().unwrap();
        host.child.wait().await.unwrap();
        self.hosts[i] = self.spawn_host().await;
    }

    /// Stream documents in the coredms now; `None` while it does not answer.
    async fn stream_documents(&self) -> Option<u64> {
        self.mongo
            .database(&tenant_database(&self.tenant))
            .collection::<Document>("events")
            .count_documents(doc! {})
            .await
            .ok()
    }

    /// How long after now the stream consumes again: its queue has a consumer, and documents
    /// grow after that (what grows before may be batches in flight when the fault struck).
    async fn resumed(&self) -> Duration {
        let started = Instant::now();
        wait_until(
            "the stream's queue has a consumer again",
            Duration::from_secs(120),
            async || mysimbdp_tests::services::queue_consumers(&self.vhost, &self.queue).await,
            |consumers| *consumers >= 1,
        )
        .await;
        let before = wait_until(
            "the coredms answers",
            Duration::from_secs(60),
            async || self.stream_documents().await,
            Option::is_some,
        )
        .await
        .unwrap();
        wait_until(
            "the stream writes again",
            Duration::from_secs(120),
            async || self.stream_documents().await,
            |now| now.is_some_and(|n| n > before),
        )
        .await;
        started.elapsed()
    }

    async fn upload(&mut self, prefix: &str, count: u64) {
        let (files, expected) = orders_files(count, 256 * 1024);
        self.expected_batch += expected;
        let jobs = upload_orders(&self.api, &self.token, prefix, files).await;
        self.jobs.extend(jobs);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_document_once_through_host_kills_and_each_services_outage() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("chaos seed: {seed}");
    let mut dice = Dice(seed);
    let mut redis = OwnedRedis::start(false).await;
    let mut mongo = OwnedMongo::start().await;
    let mut etcd = OwnedEtcd::start().await;
    let endpoints = Endpoints {
        mongodb_uri: mongo.uri(),
        redis_url: redis.url(),
        etcd_endpoint: etcd.endpoint(),
    };
    let database = database_name();
    let front = spawn_serve_at(&endpoints, &database, "chaos-cache", REGISTRY, BATCH).await;
    let api = Host::remote(&front.base);
    let tenant = unique("chaos");
    let (token, connection) = stream_of(
        &api,
        &tenant,
        json!({ "stream": {
            "report_interval_secs": 1,
            "min_consumers_per_stream": 2,
            "max_consumers_per_stream": 2,
        } }),
        "poison",
        fixtures::EVIL_POISON,
        // Each host kill and forced close returns a consumer's unacknowledged messages with
        // one more delivery counted (the broker's rule); the limit leaves room for them all.
        json!({
            "name": "chaos", "app": "poison", "collection": "events",
            "params": { "spin_us": "200" }, "delivery_limit": 20
        }),
    )
    .await;
    let (status, body) = api
        .upload(&token, "orders", read(fixtures::CSV_BATCH))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut rig = Rig {
        endpoints: endpoints.clone(),
        database: database.clone(),
        hosts: Vec::new(),
        api,
        token,
        tenant: tenant.clone(),
        vhost: connection["vhost"].as_str().unwrap().to_owned(),
        queue: connection["queue"].as_str().unwrap().to_owned(),
        mongo: mongo.client().await,
        jobs: Vec::new(),
        expected_batch: 0,
    };
    for _ in 0..2 {
        let host = rig.spawn_host().await;
        rig.hosts.push(host);
    }

    // The stream's load: a chunk of numbered messages every PACE until told to stop.
    let flow = Flow::start(&connection, CHUNK, PACE);
    rig.upload("start", 4).await;
    let mut table: Vec<(String, Duration)> = Vec::new();

    let victim = dice.below(2) as usize;
    // Not a gate: a random moment of the work to kill at.
    tokio::time::sleep(Duration::from_millis(500 + dice.below(2000))).await;
    rig.kill_host(victim).await;
    table.push((format!("SIGKILL of host {victim}"), rig.resumed().await));

    redis.kill().await;
    rig.upload("redis-down", 2).await;
    // Not a gate: the outage's length.
    tokio::time::sleep(Duration::from_secs(6)).await;
    redis.restart_empty().await;
    table.push((
        "Redis down 6 s, restarted empty".into(),
        rig.resumed().await,
    ));

    let victim = dice.below(2) as usize;
    tokio::time::sleep(Duration::from_millis(dice.below(2000))).await;
    rig.kill_host(victim).await;
    table.push((format!("SIGKILL of host {victim}"), rig.resumed().await));

    mongo.kill().await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    mongo.restart().await;
    table.push(("MongoDB down 8 s".into(), rig.resumed().await));
    rig.upload("after-mongo", 2).await;

    etcd.kill().await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    etcd.restart().await;
    table.push(("etcd down 8 s".into(), rig.resumed().await));

    for round in 0..3 {
        // The management API lists a new connection after a few seconds: retry until it
        // closed some.
        let closed = wait_until(
            "the platform's broker connections are listed and closed",
            Duration::from_secs(30),
            async || force_close_connections(&rig.vhost, "guest").await,
            |closed| *closed >= 1,
        )
        .await;
        table.push((
            format!("broker connections force-closed ({closed}), round {round}"),
            rig.resumed().await,
        ));
    }

    let victim = dice.below(2) as usize;
    tokio::time::sleep(Duration::from_millis(dice.below(2000))).await;
    rig.kill_host(victim).await;
    table.push((format!("SIGKILL of host {victim}"), rig.resumed().await));

    let total = flow.stop().await;

    // Every message's document once, every batch job done with its documents once.
    let events = rig
        .mongo
        .database(&tenant_database(&tenant))
        .collection::<Document>("events");
    assert_each_numbered_once(&events, total).await;
    let ended = wait_jobs_ended(&rig.api, &rig.token, &rig.jobs, Duration::from_secs(240)).await;
    assert!(ended.iter().all(|job| job["status"] == "done"), "{ended:?}");
    let batch_documents = rig
        .mongo
        .database(&tenant_database(&tenant))
        .collection::<Document>("documents")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(
        batch_documents, rig.expected_batch,
        "lost or duplicated batch documents"
    );
    let amqp = connect(&connection).await;
    let channel = amqp.create_channel().await.unwrap();
    let dead = channel
        .basic_get("chaos.dead".into(), BasicGetOptions::default())
        .await
        .unwrap();
    assert!(dead.is_none(), "a message was dead-lettered");
    let _ = amqp.close(200, "done".into()).await;

    eprintln!(
        "chaos: {total} messages, {} batch jobs ({} documents): 0 lost, 0 duplicated, 0 dead-lettered",
        rig.jobs.len(),
        rig.expected_batch
    );
    eprintln!("| fault | stream writing again after |");
    eprintln!("| --- | --- |");
    for (fault, resumed) in &table {
        eprintln!("| {fault} | {:.2} s |", resumed.as_secs_f64());
    }
    // The tenant's vhost and user live on the shared broker: remove them.
    rig.api.delete_tenant(&tenant).await;
    for host in rig.hosts.drain(..) {
        host.terminate().await;
    }
    front.terminate().await;
}
