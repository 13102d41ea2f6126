//! Proves batch ingestion end to end against the real Redis and MongoDB: two tenants ingesting
//! concurrently see only their own documents and jobs; the profile's constraints refuse
//! uploads with reasons and leave nothing behind; a rejected file is quarantined, a flaky
//! app's job dead-lettered after its attempts and replayable; and workers killed with SIGKILL
//! mid-job, again and again, still end with every job done exactly once in effect.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mongodb::bson::{Document, doc};
use mysimbdp_fixtures as fixtures;
use mysimbdp_tests::batch::ENDED;
use mysimbdp_tests::prelude::*;
use reqwest::multipart::{Form, Part};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

fn csv(bytes: u64, bad_every: u64) -> (Vec<u8>, fixtures::orders::Expected) {
    fixtures::orders::generate(bytes, bad_every)
}

fn form(app: &str, files: Vec<(String, Vec<u8>, &str)>) -> Form {
    let mut form = Form::new()
        .text("app", app.to_owned())
        .text("param", "currency=EUR");
    for (name, bytes, content_type) in files {
        form = form.part(
            "file",
            Part::bytes(bytes)
                .file_name(name)
                .mime_str(content_type)
                .unwrap(),
        );
    }
    form
}

async fn upload(host: &Host, token: &str, form: Form) -> (StatusCode, Value) {
    host.call(
        host.request(Method::POST, "/v1/batch/files", Some(token))
            .multipart(form),
    )
    .await
}

/// Uploads `lines` as `name` for the `shapes` app (the evil-unstorable fixture) and returns
/// its job once settled.
async fn shapes_job(host: &Host, token: &str, name: &str, lines: Vec<u8>) -> Value {
    let (status, queued) = upload(
        host,
        token,
        form("shapes", vec![(name.to_owned(), lines, "text/csv")]),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let jobs = job_ids(&queued);
    let mut settled = wait_for(host, token, &jobs, &ENDED).await;
    settled.remove(0)
}

/// Waits until every job has one of `statuses` and its attempt's log (the worker settles the
/// job first, then logs what it wrote: `documents` stays null in between); returns the jobs.
async fn wait_for(host: &Host, token: &str, jobs: &[String], statuses: &[&str]) -> Vec<Value> {
    wait_until(
        &format!("every job is one of {statuses:?}, its attempt logged"),
        Duration::from_secs(120),
        async || mysimbdp_tests::batch::jobs(host, token, jobs).await,
        |all| {
            all.iter().all(|j| {
                statuses.contains(&j["status"].as_str().unwrap()) && !j["documents"].is_null()
            })
        },
    )
    .await
}

fn job_ids(queued: &Value) -> Vec<String> {
    queued["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["job"].as_str().unwrap().to_owned())
        .collect()
}

async fn documents(database: &str, collection: &str) -> u64 {
    mongodb::Client::with_uri_str(mysimbdp_tests::MONGODB_URI)
        .await
        .unwrap()
        .database(database)
        .collection::<Document>(collection)
        .count_documents(doc! {})
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tenants_ingest_concurrently_and_see_only_their_own() {
    let host = Host::start().await;
    let (a_id, b_id) = (mysimbdp_tests::unique("ba"), mysimbdp_tests::unique("bb"));
    let a = host.create_tenant(&a_id, None).await;
    let b = host
        .create_tenant(&b_id, Some(json!({ "sink": { "collection": "orders" } })))
        .await;
    let (status, _) = host.upload(&a, "orders", read(fixtures::CSV_BATCH)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = host.upload(&b, "sales", read(fixtures::CSV_BATCH)).await;
    assert_eq!(status, StatusCode::CREATED);

    let (a_files, b_files): (Vec<_>, Vec<_>) = (
        (0..3).map(|i| csv(64 * 1024 + i * 1000, 10)).collect(),
        (0..2).map(|i| csv(96 * 1024 + i * 1000, 7)).collect(),
    );
    let expected_a: u64 = a_files.iter().map(|(_, e)| e.good).sum();
    let expected_b: u64 = b_files.iter().map(|(_, e)| e.good).sum();
    let a_form = form(
        "orders",
        a_files
            .into_iter()
            .enumerate()
            .map(|(i, (bytes, _))| (format!("a{i}.csv"), bytes, "text/csv"))
            .collect(),
    );
    let b_form = form(
        "sales",
        b_files
            .into_iter()
            .enumerate()
            .map(|(i, (bytes, _))| (format!("b{i}.csv"), bytes, "text/csv"))
            .collect(),
    );
    let ((status_a, queued_a), (status_b, queued_b)) =
        tokio::join!(upload(&host, &a, a_form), upload(&host, &b, b_form));
    assert_eq!(status_a, StatusCode::ACCEPTED, "{queued_a}");
    assert_eq!(status_b, StatusCode::ACCEPTED, "{queued_b}");
    let (jobs_a, jobs_b) = (job_ids(&queued_a), job_ids(&queued_b));
    assert_eq!((jobs_a.len(), jobs_b.len()), (3, 2));

    let done_a = wait_for(&host, &a, &jobs_a, &ENDED).await;
    let done_b = wait_for(&host, &b, &jobs_b, &ENDED).await;
    for job in done_a.iter().chain(&done_b) {
        assert_eq!(job["status"], "done", "{job}");
        assert!(job["quality"]["records_bad"].as_u64().unwrap() > 0, "{job}");
    }
    assert_eq!(
        documents(&tenant_database(&a_id), "documents").await,
        expected_a
    );
    assert_eq!(
        documents(&tenant_database(&b_id), "orders").await,
        expected_b
    );
    assert_eq!(documents(&tenant_database(&b_id), "documents").await, 0);

    // Statistics and listings: each tenant its own, the operator all.
    let (_, stats) = host.tenant(&a, Method::GET, "/v1/stats", None).await;
    assert_eq!(
        (
            stats["files"].as_u64(),
            stats["documents"].as_u64(),
            stats["success_rate"].as_f64()
        ),
        (Some(3), Some(expected_a), Some(1.0)),
        "{stats}"
    );
    assert!(
        stats["p95_duration_ms"].as_f64().unwrap()
            >= stats["avg_duration_ms"].as_f64().unwrap() * 0.5,
        "{stats}"
    );
    let (_, all) = host.admin(Method::GET, "/v1/admin/stats", None).await;
    assert_eq!(all[&b_id]["documents"].as_u64(), Some(expected_b), "{all}");
    let (_, listed) = host
        .tenant(&b, Method::GET, "/v1/batch/jobs?status=done", None)
        .await;
    let mut listed: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    let mut mine = jobs_b.clone();
    mine.sort();
    assert_eq!(listed, mine);
    let (status, _) = host
        .tenant(&b, Method::GET, "/v1/batch/jobs?status=sideways", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let metrics = host
        .http
        .get(format!("{}/metrics", host.base))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "mysimbdp_batch_documents_total{{tenant=\"{a_id}\"}} {expected_a}"
        )),
        "{metrics}"
    );

    // Each sees only its own jobs and documents.
    let (status, _) = host
        .tenant(
            &b,
            Method::GET,
            &format!("/v1/batch/jobs/{}", jobs_a[0]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, page) = host
        .tenant(&b, Method::GET, "/v1/data/documents", None)
        .await;
    assert_eq!(page["documents"], json!([]));
    let (_, page) = host
        .tenant(&a, Method::GET, "/v1/data/documents?limit=1", None)
        .await;
    assert_eq!(page["documents"][0]["currency"], "EUR", "{page}");
    for id in [&a_id, &b_id] {
        drop_database(&tenant_database(id)).await;
    }
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constraints_refuse_uploads_with_reasons_and_leave_nothing() {
    let database = database_name();
    let host = Host::start_with(&database, "batch-cache", |config| config.batch.workers = 0).await;
    let id = mysimbdp_tests::unique("bc");
    let profile = json!({ "batch": {
        "max_files_per_request": 2, "max_file_mib": 1,
        "allowed_content_types": ["text/csv"], "max_mib_per_day": 2 } });
    let token = host.create_tenant(&id, Some(profile)).await;
    host.upload(&token, "orders", read(fixtures::CSV_BATCH))
        .await;
    let staged = scratch("staging").join(&database).join(&id).join("staged");
    let small = || csv(100 * 1024, 0).0;

    let cases = [
        (
            form(
                "orders",
                (0..3)
                    .map(|i| (format!("f{i}.csv"), small(), "text/csv"))
                    .collect(),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "at most 2 files",
        ),
        (
            form(
                "orders",
                vec![("big.csv".into(), csv(1536 * 1024, 0).0, "text/csv")],
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than 1 MiB",
        ),
        (
            form(
                "orders",
                vec![
                    ("ok.csv".into(), small(), "text/csv"),
                    ("data.json".into(), b"{}".to_vec(), "application/json"),
                ],
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "application/json is not allowed",
        ),
        (
            form("nothing", vec![("ok.csv".into(), small(), "text/csv")]),
            StatusCode::NOT_FOUND,
            "no app",
        ),
    ];
    for (form, expected, reason) in cases {
        let (status, body) = upload(&host, &token, form).await;
        assert_eq!(status, expected, "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(reason),
            "{body}"
        );
        let left = std::fs::read_dir(&staged).map(|d| d.count()).unwrap_or(0);
        assert_eq!(left, 0, "a refused upload left files in staging");
    }
    // The daily budget: 2 MiB; 0.9 MiB twice fits, a third does not.
    let near_mib = || csv(900 * 1024, 0).0;
    for _ in 0..2 {
        let (status, body) = upload(
            &host,
            &token,
            form("orders", vec![("day.csv".into(), near_mib(), "text/csv")]),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let (status, body) = upload(
        &host,
        &token,
        form("orders", vec![("day.csv".into(), near_mib(), "text/csv")]),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("quota_exceeded")),
        "{body}"
    );
    let left = std::fs::read_dir(&staged).unwrap().count();
    assert_eq!(left, 2, "only the accepted files are staged");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_file_is_quarantined_and_a_flaky_job_dead_lettered_then_replayed() {
    let database = database_name();
    let host = Host::start_with(&database, "batch-cache", |config| {
        config.batch.max_attempts = 2
    })
    .await;
    let id = mysimbdp_tests::unique("bq");
    let token = host.create_tenant(&id, None).await;
    host.upload(&token, "orders", read(fixtures::CSV_BATCH))
        .await;
    host.upload(&token, "flaky", read(fixtures::EVIL_FLAKY))
        .await;

    let (_, queued) = upload(
        &host,
        &token,
        form(
            "orders",
            vec![(
                "headless.csv".into(),
                b"1,2,3\n4,5,6\n".to_vec(),
                "text/csv",
            )],
        ),
    )
    .await;
    let rejected = job_ids(&queued);
    let jobs = wait_for(&host, &token, &rejected, &ENDED).await;
    assert_eq!(
        (jobs[0]["status"].as_str(), jobs[0]["error_class"].as_str()),
        (Some("failed"), Some("reject")),
        "{}",
        jobs[0]
    );
    assert_eq!(jobs[0]["attempts"], 1, "a reject is never retried");
    let quarantine = scratch("staging")
        .join(&database)
        .join(&id)
        .join("quarantine");
    let reasons: Vec<String> = std::fs::read_dir(&quarantine)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".reason"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert_eq!(reasons.len(), 1);
    assert!(reasons[0].starts_with("reject:"), "{reasons:?}");

    let (_, queued) = upload(
        &host,
        &token,
        form(
            "flaky",
            vec![("any.csv".into(), csv(10 * 1024, 0).0, "text/csv")],
        ),
    )
    .await;
    let flaky = job_ids(&queued);
    let jobs = wait_for(&host, &token, &flaky, &ENDED).await;
    assert_eq!(
        (jobs[0]["status"].as_str(), jobs[0]["attempts"].as_u64()),
        (Some("dead"), Some(2)),
        "{}",
        jobs[0]
    );
    assert!(
        jobs[0]["error"]
            .as_str()
            .unwrap()
            .contains("upstream reference data"),
        "{}",
        jobs[0]
    );

    // The statistics count the quarantined file and the dead job as unsuccessful.
    let (_, stats) = host.tenant(&token, Method::GET, "/v1/stats", None).await;
    assert_eq!(
        (
            stats["done"].as_u64(),
            stats["failed"].as_u64(),
            stats["dead"].as_u64(),
            stats["success_rate"].as_f64()
        ),
        (Some(0), Some(1), Some(1), Some(0.0)),
        "{stats}"
    );

    // A replay runs the job again with fresh attempts (this app dies again).
    let (status, replayed) = host
        .tenant(
            &token,
            Method::POST,
            &format!("/v1/batch/jobs/{}/replay", flaky[0]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{replayed}");
    let jobs = wait_for(&host, &token, &flaky, &["dead"]).await;
    assert_eq!(jobs[0]["attempts"], 2);
    let (status, _) = host
        .tenant(
            &token,
            Method::POST,
            &format!("/v1/batch/jobs/{}/replay", rejected[0]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "a quarantined file can be replayed");
    wait_for(&host, &token, &rejected, &["failed"]).await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_killed_mid_job_again_and_again_lose_and_duplicate_nothing() {
    let database = database_name();
    // This host takes uploads only; a separate worker process does the work and is killed.
    let host = Host::start_with(&database, "batch-cache", |config| {
        // Every kill costs the job in hand an attempt: leave room for all of them.
        config.batch.workers = 0;
        config.batch.max_attempts = 20;
    })
    .await;
    let id = mysimbdp_tests::unique("bk");
    let token = host.create_tenant(&id, None).await;
    host.upload(&token, "orders", read(fixtures::CSV_BATCH))
        .await;
    let files: Vec<_> = (0..4).map(|i| csv(1024 * 1024 + i * 7919, 13)).collect();
    let expected: u64 = files.iter().map(|(_, e)| e.good).sum();
    let (status, queued) = upload(
        &host,
        &token,
        form(
            "orders",
            files
                .into_iter()
                .enumerate()
                .map(|(i, (b, _))| (format!("k{i}.csv"), b, "text/csv"))
                .collect(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let jobs = job_ids(&queued);

    // Short leases and visibility, so a killed worker's job is taken over quickly.
    let (registry_extra, batch_extra) = ("host_lease_secs = 2", "visibility_secs = 2");
    for round in 0..6u64 {
        let mut worker =
            spawn_serve_with(&database, "batch-worker", registry_extra, batch_extra).await;
        // Not a gate: paces the chaos, so each kill lands at a different point of the work.
        tokio::time::sleep(Duration::from_millis(700 + 311 * round)).await;
        worker.child.start_kill().unwrap();
        worker.child.wait().await.unwrap();
    }
    let finisher = spawn_serve_with(&database, "batch-worker", registry_extra, batch_extra).await;
    let settled = wait_for(&host, &token, &jobs, &ENDED).await;
    for job in &settled {
        assert_eq!(job["status"], "done", "{job}");
    }
    let attempts: Vec<u64> = settled
        .iter()
        .map(|j| j["attempts"].as_u64().unwrap())
        .collect();
    eprintln!("attempts per job: {attempts:?}");
    assert!(
        attempts.iter().any(|&a| a > 1),
        "no worker was killed mid-job: {attempts:?}"
    );
    assert_eq!(
        documents(&tenant_database(&id), "documents").await,
        expected,
        "lost or duplicated documents"
    );
    finisher.terminate().await;
    drop_database(&tenant_database(&id)).await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_uploads_files_and_waits_for_their_jobs() {
    let host = Host::start().await;
    let id = mysimbdp_tests::unique("bcli");
    let token = host.create_tenant(&id, None).await;
    host.upload(&token, "orders", read(fixtures::CSV_BATCH))
        .await;
    let (bytes, expected) = csv(200 * 1024, 9);
    let file = scratch("cli").join(format!("{id}.csv"));
    std::fs::write(&file, bytes).unwrap();
    let run = |args: Vec<String>| {
        let base = host.base.clone();
        let token = token.clone();
        tokio::task::spawn_blocking(move || {
            let output = mysimbdp_tests::cli::command()
                .args(&args)
                .env("MYSIMBDP_API", base)
                .env("MYSIMBDP_TOKEN", token)
                .output()
                .unwrap();
            mysimbdp_tests::cli::text(&output)
        })
    };
    let args = [
        "batch",
        "upload",
        "--app",
        "orders",
        "--wait",
        file.to_str().unwrap(),
    ];
    let (code, out, err) = run(args.map(String::from).to_vec()).await.unwrap();
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(&format!(
            "done after 1 attempt(s), {} documents",
            expected.good
        )),
        "{out}"
    );
    let (code, out, _) = run(["batch", "jobs", "--status", "done"]
        .map(String::from)
        .to_vec())
    .await
    .unwrap();
    assert_eq!(code, Some(0));
    assert!(out.contains(&format!("{id}.csv")), "{out}");
    let args = [
        "batch",
        "upload",
        "--app",
        "nothing",
        file.to_str().unwrap(),
    ];
    let (code, _, err) = run(args.map(String::from).to_vec()).await.unwrap();
    assert_eq!(code, Some(1));
    assert!(err.contains("404 not_found"), "{err}");
    drop_database(&tenant_database(&id)).await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_that_cannot_be_stored_as_emitted_are_refused_alone() {
    let database = database_name();
    let host = Host::start_on(&database, "batch-cache").await;
    let id = mysimbdp_tests::unique("bu");
    let token = host.create_tenant(&id, None).await;
    let (status, body) = host
        .upload(&token, "shapes", read(fixtures::EVIL_UNSTORABLE))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let lines = b"first\nnul-key\nnull-id\nnull-id\ndollar\nextended\nviolations\nlast\n".to_vec();
    // Deterministic faults of single documents: one attempt, the job done, the good
    // documents landed, the refused ones counted with the first reason.
    let job = &shapes_job(&host, &token, "shapes.csv", lines).await;
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(job["attempts"], 1, "{job}");
    assert_eq!(job["documents"], 3, "{job}");
    assert_eq!(job["rejected"], 4, "{job}");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("document 1") && error.contains("NUL"),
        "{job}"
    );
    // 2,100 broken rules with long examples: the job record keeps a bounded report.
    let quality = &job["quality"];
    assert_eq!(quality["records_bad"], 2100, "{quality}");
    assert_eq!(quality["violations"].as_array().unwrap().len(), 100);
    assert_eq!(quality["violations_dropped"], 2000);
    let stored = mongodb::Client::with_uri_str(mysimbdp_tests::MONGODB_URI)
        .await
        .unwrap()
        .database(&tenant_database(&id))
        .collection::<Document>("documents");
    assert_eq!(stored.count_documents(doc! {}).await.unwrap(), 3);
    // Exactly as emitted: extended-JSON keys are data, nothing dropped. (Read as raw BSON:
    // the driver's own `Document` would reinterpret the keys on the way back.)
    let extended = stored
        .clone_with_type::<mongodb::bson::RawDocumentBuf>()
        .find_one(doc! { "p.note": "keep me" })
        .await
        .unwrap()
        .expect("the extended-JSON document is stored");
    let p = extended.get_document("p").unwrap();
    let keys: Vec<(&str, &str)> = p
        .into_iter()
        .map(|e| {
            let (k, v) = e.unwrap();
            (k, v.as_str().unwrap())
        })
        .collect();
    assert_eq!(keys, [("note", "keep me"), ("$numberLong", "5")]);

    // A job that fails part-way (out of fuel while fanning out) reports what it wrote: the
    // job record and the collection agree.
    let job = &shapes_job(&host, &token, "fan.csv", b"fan:5000\n".to_vec()).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error_class"], "out-of-fuel", "{job}");
    let landed = stored
        .count_documents(doc! { "wide": { "$exists": true } })
        .await
        .unwrap();
    assert!(landed > 0, "{job}");
    assert_eq!(job["documents"].as_u64(), Some(landed), "{job}");
    drop_database(&tenant_database(&id)).await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_document_shape_cannot_swell_the_hosts_memory() {
    let database = database_name();
    let host = Host::start_with(&database, "batch-cache", |config| {
        config.batch.workers = 0;
    })
    .await;
    let id = mysimbdp_tests::unique("bm");
    let token = host.create_tenant(&id, None).await;
    let (status, body) = host
        .upload(&token, "shapes", read(fixtures::EVIL_UNSTORABLE))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // 600 documents of 64 KiB JSON, each 32,768 small numbers: ~3.5 MiB apiece as a BSON
    // document tree, ~350 KiB as BSON bytes. A worker of its own, with a 4 MiB write buffer.
    let worker = spawn_serve_with(
        &database,
        "batch-worker",
        "",
        "workers = 1\n[sink]\nwrite_buffer_mib = 4",
    )
    .await;
    let pid = worker.child.id().unwrap();
    let before = peak_rss_mib(pid);
    let job = shapes_job(&host, &token, "wide.csv", b"fan:600\n".to_vec()).await;
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(job["documents"], 600, "{job}");
    let peak = peak_rss_mib(pid);
    // The bound: the guest's memory cap (64 MiB), one emitted batch in the channel and one
    // being converted (2 MiB each from the SDK), the write buffer (4 MiB) and the driver's
    // copy of it, plus a fixed margin for allocator slack. Before the byte bound this job
    // took the host past 2 GiB.
    let growth = peak.saturating_sub(before);
    eprintln!("serve peak RSS {peak} MiB, {before} MiB before the job: +{growth} MiB");
    assert!(growth < 64 + 4 + 4 + 8 + 150, "serve grew by {growth} MiB");
    worker.terminate().await;
    drop_database(&tenant_database(&id)).await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_cannot_forge_records_in_the_hosts_log() {
    let database = database_name();
    let host = Host::start_with(&database, "batch-cache", |config| {
        config.batch.workers = 0;
    })
    .await;
    let id = mysimbdp_tests::unique("bl");
    let token = host.create_tenant(&id, None).await;
    let (status, body) = host
        .upload(&token, "shapes", read(fixtures::EVIL_UNSTORABLE))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let worker = spawn_serve_with(&database, "batch-worker", "", "workers = 1").await;
    // The app logs a line and rejects its input with a text that carries a newline and a
    // forged "batch job settled" record behind it.
    let job = shapes_job(&host, &token, "forge.csv", b"forge\n".to_vec()).await;
    assert_eq!(job["status"], "failed", "{job}");
    let log = worker.log.lock().unwrap().clone();
    let carrying: Vec<&String> = log.iter().filter(|l| l.contains("forged=1")).collect();
    assert!(
        !carrying.is_empty(),
        "the app's text never reached the log: {log:#?}"
    );
    for line in &log {
        assert!(
            !line.starts_with("2026-01-01T00:00:00"),
            "a forged record stands on a line of its own: {line}"
        );
    }
    for line in carrying {
        assert!(line.contains("ok\\n2026-01-01"), "{line}");
    }
    worker.terminate().await;
    host.stop().await;
}
