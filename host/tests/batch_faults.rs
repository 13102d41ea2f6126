//! Batch ingestion when a backing service fails, against services the tests own (a Redis and
//! a MongoDB of their own, killed and restarted by the test): Redis restarted empty or from
//! its append-only file under load loses no accepted upload, uploads keep being accepted
//! while Redis is away, a job that finishes during the outage ends `done`; a MongoDB outage
//! spends none of a job's attempts. Every document lands exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mongodb::bson::{Document, doc};
use mysimbdp_fixtures as fixtures;
use mysimbdp_tests::batch::{ended, jobs, orders_files, upload_orders};
use mysimbdp_tests::faults::{OwnedMongo, OwnedRedis};
use mysimbdp_tests::prelude::*;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Waits until every job ended and its last attempt is logged; the jobs.
async fn wait_ended(host: &Host, token: &str, ids: &[String], within: Duration) -> Vec<Value> {
    wait_until(
        "every job ended, its attempt logged",
        within,
        async || jobs(host, token, ids).await,
        |all| all.iter().all(|j| ended(j) && !j["documents"].is_null()),
    )
    .await
}

/// Waits (from a service's restart, now) until every job ended; checks each is `done` and
/// prints how long it took after `fault`.
async fn every_job_done(host: &Host, token: &str, ids: &[String], fault: &str) {
    let restarted = Instant::now();
    let ended = wait_ended(host, token, ids, Duration::from_secs(180)).await;
    eprintln!(
        "{fault}: every job ended {:.1} s after the restart",
        restarted.elapsed().as_secs_f64()
    );
    for job in &ended {
        assert_eq!(job["status"], "done", "{job}");
    }
}

/// Waits until at least one of the jobs is running.
async fn wait_running(host: &Host, token: &str, ids: &[String]) {
    wait_until(
        "a job is running",
        Duration::from_secs(60),
        async || jobs(host, token, ids).await,
        |all| all.iter().any(|j| j["status"] == "running"),
    )
    .await;
}

async fn count(client: &mongodb::Client, tenant: &str) -> u64 {
    client
        .database(&tenant_database(tenant))
        .collection::<Document>("documents")
        .count_documents(doc! {})
        .await
        .unwrap()
}

/// A host with one worker on `redis` and the shared MongoDB, reconciling every second.
async fn host_on_redis(database: &str, redis: &OwnedRedis) -> Host {
    let url = redis.url();
    Host::start_with(database, "batch-faults-cache", move |config| {
        config.redis.url = url;
        config.batch.workers = 1;
        config.batch.reconcile_secs = 1;
        config.batch.visibility_secs = 3;
    })
    .await
}

/// Redis loses everything (no persistence, as the default service runs it) while jobs are
/// queued and one runs, and uploads arrive while it is down: the reconciler puts every
/// unfinished job back from its record, each ends `done`, every document lands once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_loses_no_accepted_upload() {
    let mut redis = OwnedRedis::start(false).await;
    let database = database_name();
    let host = host_on_redis(&database, &redis).await;
    let tenant = unique("re");
    let token = host.create_tenant(&tenant, None).await;
    host.upload(&token, "orders", read(fixtures::CSV_BATCH))
        .await;
    let (before, mut expected) = orders_files(5, 512 * 1024);
    let mut ids = upload_orders(&host, &token, "before", before).await;
    wait_running(&host, &token, &ids).await;

    redis.kill().await;
    // Accepted while Redis is away: the records are written, the queue catches up later.
    let (during, more) = orders_files(2, 256 * 1024);
    expected += more;
    ids.extend(upload_orders(&host, &token, "during", during).await);
    // Every job is still visible, from its record.
    assert_eq!(jobs(&host, &token, &ids).await.len(), ids.len());

    redis.restart_empty().await;
    every_job_done(&host, &token, &ids, "redis restarted empty").await;
    let client = mysimbdp_tests::services::mongo().await;
    assert_eq!(
        count(&client, &tenant).await,
        expected,
        "lost or duplicated documents"
    );
    drop_database(&tenant_database(&tenant)).await;
    host.stop().await;
}

/// Redis killed while a job runs and restarted from its append-only file: the job that
/// finished during the outage ends `done` with all its documents (its ending was recorded
/// before the queue was told), nothing is lost or run into a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_from_its_aof_finishes_what_ran_during_the_outage() {
    let mut redis = OwnedRedis::start(true).await;
    let database = database_name();
    let host = host_on_redis(&database, &redis).await;
    let tenant = unique("ra");
    let token = host.create_tenant(&tenant, None).await;
    host.upload(&token, "orders", read(fixtures::CSV_BATCH))
        .await;
    let (files, expected) = orders_files(4, 512 * 1024);
    let ids = upload_orders(&host, &token, "aof", files).await;
    wait_running(&host, &token, &ids).await;

    redis.kill().await;
    // The running job finishes against MongoDB while Redis is away.
    let client = mysimbdp_tests::services::mongo().await;
    let records = client
        .database(&database)
        .collection::<Document>("batch_jobs");
    wait_until(
        "a job recorded its ending while Redis is down",
        Duration::from_secs(60),
        async || {
            records
                .count_documents(doc! { "status": "done" })
                .await
                .unwrap()
        },
        |done| *done >= 1,
    )
    .await;
    redis.restart().await;
    every_job_done(&host, &token, &ids, "redis restarted from its AOF").await;
    assert_eq!(
        count(&client, &tenant).await,
        expected,
        "lost or duplicated documents"
    );
    drop_database(&tenant_database(&tenant)).await;
    host.stop().await;
}

/// The platform database and the coredms (one MongoDB of the test's own) go away for a while
/// under load, with one attempt per job allowed: had the outage spent an attempt, a job would
/// be dead. Every job ends `done`, every document lands once, every attempt is logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mongodb_outage_spends_no_attempt_and_loses_no_log() {
    let mut mongo = OwnedMongo::start().await;
    let database = database_name();
    let uri = mongo.uri();
    let host = Host::start_with(&database, "batch-faults-cache", move |config| {
        config.platform.mongodb_uri = uri.clone();
        config.sink.mongodb_uri = uri;
        config.batch.workers = 1;
        config.batch.max_attempts = 1;
        config.batch.reconcile_secs = 1;
    })
    .await;
    let tenant = unique("mo");
    let token = host.create_tenant(&tenant, None).await;
    host.upload(&token, "orders", read(fixtures::CSV_BATCH))
        .await;
    let (files, expected) = orders_files(4, 512 * 1024);
    let ids = upload_orders(&host, &token, "mongo", files).await;
    wait_running(&host, &token, &ids).await;

    mongo.kill().await;
    // Not a gate: the outage's length, long enough for the worker to hit it.
    tokio::time::sleep(Duration::from_secs(8)).await;
    mongo.restart().await;
    every_job_done(&host, &token, &ids, "mongod restarted").await;
    let client = mongo.client().await;
    assert_eq!(
        count(&client, &tenant).await,
        expected,
        "lost or duplicated documents"
    );
    let logged = client
        .database(&database)
        .collection::<Document>("ingestion_log")
        .count_documents(doc! { "tenant": &tenant, "status": "done" })
        .await
        .unwrap();
    assert_eq!(logged, ids.len() as u64, "an attempt's log entry was lost");
    host.stop().await;
}
