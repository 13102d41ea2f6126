//! Proves the batch job queue against the real Redis: fair across tenants, capped per tenant,
//! jobs of a dead worker reaped after the visibility timeout, stale settles fenced off,
//! bounded retries into a replayable dead-letter list, and many concurrent workers taking
//! every job exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mysimbdp_host::batch::{JobQueue, JobSpec, Outcome};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

fn spec(tenant: &str, file: &str) -> JobSpec {
    JobSpec {
        tenant: tenant.to_owned(),
        app: "orders".to_owned(),
        version: "0".repeat(64),
        file: file.to_owned(),
        name: format!("{file}.csv"),
        size: 1,
        content_type: Some("text/csv".to_owned()),
        params: BTreeMap::new(),
        ids: Default::default(),
    }
}

async fn queue(visibility: Duration, cap: u32) -> JobQueue {
    JobQueue::connect(
        mysimbdp_tests::REDIS_URL,
        &mysimbdp_tests::unique("queue-test"),
        visibility,
        cap,
    )
    .await
    .expect("Redis is reachable (run scripts/services up)")
}

#[tokio::test]
async fn one_tenants_thousand_files_do_not_starve_anothers_one() {
    let queue = queue(Duration::from_secs(60), 100).await;
    for i in 0..1000 {
        queue
            .enqueue(&spec("big", &format!("f{i}")), 3)
            .await
            .unwrap();
    }
    queue.enqueue(&spec("small", "only"), 3).await.unwrap();
    let first = queue.claim("w").await.unwrap().unwrap();
    let second = queue.claim("w").await.unwrap().unwrap();
    let tenants: HashSet<_> = [first.spec.tenant, second.spec.tenant].into();
    assert_eq!(
        tenants,
        HashSet::from(["big".to_owned(), "small".to_owned()])
    );
    // Within a tenant, first in, first out.
    assert_eq!(queue.claim("w").await.unwrap().unwrap().spec.file, "f1");
}

#[tokio::test]
async fn a_tenant_runs_at_most_its_cap_at_once() {
    let queue = queue(Duration::from_secs(60), 100).await;
    queue.set_cap("capped", 2).await.unwrap();
    for i in 0..5 {
        queue
            .enqueue(&spec("capped", &format!("c{i}")), 3)
            .await
            .unwrap();
    }
    let a = queue.claim("w").await.unwrap().unwrap();
    let _b = queue.claim("w").await.unwrap().unwrap();
    assert_eq!(
        queue.claim("w").await.unwrap(),
        None,
        "a third job ran past the cap"
    );
    assert!(queue.settle(&a, &Outcome::Done).await.unwrap());
    let c = queue.claim("w").await.unwrap().unwrap();
    assert_eq!(c.spec.file, "c2");
}

#[tokio::test]
async fn a_dead_workers_job_is_reaped_and_its_late_settle_is_refused() {
    let queue = queue(Duration::from_millis(300), 10).await;
    let id = queue.enqueue(&spec("t", "crash"), 5).await.unwrap();
    let lost = queue.claim("dies").await.unwrap().unwrap();
    assert_eq!((lost.id.as_str(), lost.attempt), (id.as_str(), 1));
    assert_eq!(
        queue.tick().await.unwrap(),
        (0, 0),
        "reaped before its deadline"
    );
    let reaped = mysimbdp_tests::poll::wait_until(
        "the lost job's visibility timeout runs out",
        Duration::from_secs(5),
        async || queue.tick().await.unwrap(),
        |ticked| *ticked != (0, 0),
    )
    .await;
    assert_eq!(reaped, (1, 0));
    let state = queue.job(&id).await.unwrap().unwrap();
    assert_eq!(state.status, "queued");
    assert!(state.error.unwrap().contains("visibility timeout"));

    let again = queue.claim("lives").await.unwrap().unwrap();
    assert_eq!(again.attempt, 2);
    assert!(
        !queue.heartbeat(&lost).await.unwrap(),
        "the dead worker's heartbeat counted"
    );
    assert!(
        !queue.settle(&lost, &Outcome::Done).await.unwrap(),
        "a stale settle counted"
    );
    assert!(queue.heartbeat(&again).await.unwrap());
    assert!(queue.settle(&again, &Outcome::Done).await.unwrap());
    assert_eq!(queue.job(&id).await.unwrap().unwrap().status, "done");
    assert_eq!(queue.claim("lives").await.unwrap(), None);
}

#[tokio::test]
async fn heartbeats_keep_a_long_job() {
    let queue = queue(Duration::from_millis(300), 10).await;
    queue.enqueue(&spec("t", "long"), 3).await.unwrap();
    let claim = queue.claim("w").await.unwrap().unwrap();
    for _ in 0..6 {
        // Not a gate: the beats span 600 ms, twice the visibility timeout, which is the point.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(queue.heartbeat(&claim).await.unwrap());
        assert_eq!(queue.tick().await.unwrap().0, 0);
    }
    assert!(queue.settle(&claim, &Outcome::Done).await.unwrap());
}

#[tokio::test]
async fn retries_are_bounded_then_dead_lettered_and_replayable() {
    let queue = queue(Duration::from_secs(60), 10).await;
    let id = queue.enqueue(&spec("t", "flaky"), 2).await.unwrap();
    let retry = Outcome::Retry {
        reason: "MongoDB unavailable".to_owned(),
        backoff: Duration::ZERO,
    };
    let first = queue.claim("w").await.unwrap().unwrap();
    assert!(queue.settle(&first, &retry).await.unwrap());
    assert_eq!(queue.job(&id).await.unwrap().unwrap().status, "retrying");
    assert_eq!(
        queue.claim("w").await.unwrap(),
        None,
        "retried before it was due"
    );
    assert_eq!(queue.tick().await.unwrap(), (0, 1));
    let second = queue.claim("w").await.unwrap().unwrap();
    assert_eq!(second.attempt, 2);
    assert!(queue.settle(&second, &retry).await.unwrap());
    let state = queue.job(&id).await.unwrap().unwrap();
    assert_eq!(
        (state.status.as_str(), state.error.as_deref()),
        ("dead", Some("MongoDB unavailable"))
    );
    assert_eq!(queue.dead("t").await.unwrap(), std::slice::from_ref(&id));
    assert_eq!(queue.tick().await.unwrap(), (0, 0));
    assert_eq!(queue.claim("w").await.unwrap(), None);

    assert!(queue.replay(&id).await.unwrap());
    assert!(queue.dead("t").await.unwrap().is_empty());
    let replayed = queue.claim("w").await.unwrap().unwrap();
    assert_eq!((replayed.id, replayed.attempt), (id, 1));
}

#[tokio::test]
async fn a_failure_for_good_is_never_retried() {
    let queue = queue(Duration::from_secs(60), 10).await;
    let id = queue.enqueue(&spec("t", "poison"), 5).await.unwrap();
    let claim = queue.claim("w").await.unwrap().unwrap();
    assert!(
        queue
            .settle(
                &claim,
                &Outcome::Fail {
                    reason: "reject: not a CSV file".to_owned()
                }
            )
            .await
            .unwrap()
    );
    assert_eq!(queue.tick().await.unwrap(), (0, 0));
    assert_eq!(queue.claim("w").await.unwrap(), None);
    assert_eq!(queue.job(&id).await.unwrap().unwrap().status, "failed");
    assert!(
        queue.replay(&id).await.unwrap(),
        "a quarantined job can be replayed too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_workers_take_every_job_exactly_once() {
    let queue = queue(Duration::from_secs(60), 1000).await;
    let mut expected = HashSet::new();
    for i in 0..300 {
        let tenant = format!("t{}", i % 3);
        expected.insert(
            queue
                .enqueue(&spec(&tenant, &format!("f{i}")), 3)
                .await
                .unwrap(),
        );
    }
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let queue = queue.clone();
            tokio::spawn(async move {
                let mut taken = Vec::new();
                while let Some(claim) = queue.claim(&format!("w{w}")).await.unwrap() {
                    assert!(queue.settle(&claim, &Outcome::Done).await.unwrap());
                    taken.push(claim.id);
                }
                taken
            })
        })
        .collect();
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().cloned().collect();
    assert_eq!(all.len(), 300, "a job was taken twice");
    assert_eq!(unique, expected);
}

#[tokio::test]
async fn a_deferred_job_keeps_its_attempts() {
    let queue = queue(Duration::from_secs(60), 10).await;
    let id = queue.enqueue(&spec("t", "paused"), 1).await.unwrap();
    let claim = queue.claim("w").await.unwrap().unwrap();
    let defer = Outcome::Defer {
        reason: "tenant suspended".to_owned(),
        backoff: Duration::ZERO,
    };
    assert!(queue.settle(&claim, &defer).await.unwrap());
    assert_eq!(queue.job(&id).await.unwrap().unwrap().status, "paused");
    assert_eq!(queue.tick().await.unwrap(), (0, 1));
    let again = queue.claim("w").await.unwrap().unwrap();
    assert_eq!(again.attempt, 1, "a deferral used up the only attempt");
}
