//! Stateless hosts: three `serve` processes on one platform with GridFS staging. Files are
//! uploaded through each of them; the host that received some is SIGKILLed before any of its
//! jobs starts, while a stream flows through all three. Every file is ingested exactly once by
//! the other two, and every message's document lands once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mongodb::bson::{Document, doc};
use mysimbdp_fixtures as fixtures;
use mysimbdp_tests::batch::{self, orders_files, upload_orders, wait_jobs_ended};
use mysimbdp_tests::prelude::*;
use mysimbdp_tests::streams::{Flow, assert_each_numbered_once, stream_of};
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

/// Every host: GridFS staging, one batch worker, quick takeover of a dead host's work.
const REGISTRY: &str = "host_lease_secs = 2";
const BATCH: &str = "staging = \"gridfs\"\nworkers = 1\nvisibility_secs = 3\nreconcile_secs = 1\n\
                     tenant_concurrency = 2\n\
                     [stream]\nreconcile_ms = 200\nmonitor_interval_ms = 500\nbatch_size = 50\n";
/// Jobs of the tenant that may run at once (`tenant_concurrency` above).
const SLOTS: usize = 2;
/// Messages per publish, and the pause between two.
const CHUNK: u64 = 100;
const PACE: Duration = Duration::from_millis(200);

/// A host of the platform. The test's hosts run on one machine, but with GridFS staging
/// none reads another's disk: a file is in the platform database from its upload on.
async fn spawn_host(database: &str) -> Process {
    spawn_serve_at(
        &Endpoints::shared(),
        database,
        "multi-host-cache",
        REGISTRY,
        BATCH,
    )
    .await
}

/// The tenant's job slots in the queue, held by stand-ins as a busy tenant's running jobs
/// would hold them: while held, no job of the tenant starts on any host.
struct Slots {
    redis: redis::aio::MultiplexedConnection,
    key: String,
}

impl Slots {
    async fn of(database: &str, tenant: &str) -> Self {
        let client = redis::Client::open(mysimbdp_tests::REDIS_URL).unwrap();
        Self {
            redis: client.get_multiplexed_async_connection().await.unwrap(),
            key: format!("{{{database}}}:batch:running:{tenant}"),
        }
    }

    async fn hold(&mut self) {
        let holders: Vec<String> = (0..SLOTS).map(|i| format!("held-{i}")).collect();
        let _: i64 = redis::cmd("SADD")
            .arg(&self.key)
            .arg(&holders)
            .query_async(&mut self.redis)
            .await
            .unwrap();
    }

    async fn release(&mut self) {
        let holders: Vec<String> = (0..SLOTS).map(|i| format!("held-{i}")).collect();
        let _: i64 = redis::cmd("SREM")
            .arg(&self.key)
            .arg(&holders)
            .query_async(&mut self.redis)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn any_host_ingests_a_file_another_received_before_dying() {
    let database = database_name();
    let mut hosts = Vec::new();
    for _ in 0..3 {
        hosts.push(spawn_host(&database).await);
    }
    let apis: Vec<Host> = hosts.iter().map(|h| Host::remote(&h.base)).collect();
    let tenant = unique("multihost");
    let (token, connection) = stream_of(
        &apis[0],
        &tenant,
        json!({ "stream": {
            "report_interval_secs": 1,
            "min_consumers_per_stream": 3,
            "max_consumers_per_stream": 3,
        } }),
        "poison",
        fixtures::EVIL_POISON,
        // A SIGKILL returns the dead host's unacknowledged messages with one more delivery
        // counted: room for them.
        json!({
            "name": "flow", "app": "poison", "collection": "events", "delivery_limit": 20
        }),
    )
    .await;
    let (status, body) = apis[1]
        .upload(&token, "orders", read(fixtures::CSV_BATCH))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // The stream flows through the whole test.
    let flow = Flow::start(&connection, CHUNK, PACE);

    // Files through each host while no job may start; host 0's own then die with it.
    let mut slots = Slots::of(&database, &tenant).await;
    slots.hold().await;
    let mut jobs = Vec::new();
    let mut expected = 0;
    let mut received_by_victim = Vec::new();
    for (i, api) in apis.iter().enumerate() {
        let (files, documents) = orders_files(2, 300 * 1024);
        expected += documents;
        let ids = upload_orders(api, &token, &format!("host{i}-"), files).await;
        if i == 0 {
            received_by_victim.extend(ids.iter().cloned());
        }
        jobs.extend(ids);
    }
    for job in &received_by_victim {
        assert_eq!(
            batch::job(&apis[1], &token, job).await["status"],
            "queued",
            "job {job} started before its host was killed"
        );
    }
    // The files are in the platform database, not on a host's disk (the hosts here share a
    // machine, and so could share a directory: this is what says they do not need to).
    let platform = mysimbdp_tests::services::mongo().await.database(&database);
    let staged_files = platform.collection::<Document>("staging.files");
    let staged = doc! { "metadata.tenant": &tenant, "metadata.area": "staged" };
    assert_eq!(
        staged_files.count_documents(staged.clone()).await.unwrap(),
        jobs.len() as u64
    );
    let victim = &mut hosts[0];
    victim.child.start_kill().unwrap();
    victim.child.wait().await.unwrap();
    let published_at_kill = flow.published();
    slots.release().await;

    let survivor = &apis[1];
    let ended = wait_jobs_ended(survivor, &token, &jobs, Duration::from_secs(240)).await;
    assert!(ended.iter().all(|job| job["status"] == "done"), "{ended:?}");
    let coredms = mysimbdp_tests::services::mongo()
        .await
        .database(&tenant_database(&tenant));
    let documents = coredms
        .collection::<Document>("documents")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(documents, expected, "lost or duplicated batch documents");

    // The stream's messages, through the kill: each document once.
    wait_until(
        "the stream flowed on well past the kill",
        Duration::from_secs(60),
        async || flow.published(),
        |n| *n >= published_at_kill + 10 * CHUNK,
    )
    .await;
    let total = flow.stop().await;
    let events = coredms.collection::<Document>("events");
    assert_each_numbered_once(&events, total).await;

    // What was staged is gone once ingested (the profile deletes), on every host's behalf.
    // (A job is recorded done before its file is removed: polled.)
    wait_until(
        "the ingested files are removed from staging",
        Duration::from_secs(30),
        async || staged_files.count_documents(staged.clone()).await.unwrap(),
        |n| *n == 0,
    )
    .await;

    for host in hosts.into_iter().skip(1) {
        host.terminate().await;
    }
    drop_database(&database).await;
    drop_database(&tenant_database(&tenant)).await;
    clear_registry(&database).await;
}
