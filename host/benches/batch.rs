//! Batch ingestion end to end, against the real services, side by side in one run:
//!
//! - **platform**: a real `mysimbdp serve` process; the orders CSV is uploaded over HTTP
//!   (multipart, streamed to staging), becomes a Redis job, and a worker streams it through the
//!   CSV sample app in the sandbox into MongoDB (`insert_many` batches of the profile's 1000,
//!   deterministic ids). Timed from the first byte uploaded to the job done.
//! - **native**: the same file read in the same 256 KiB chunks, the same CSV parse and
//!   transform (the app's own `transform.rs`, compiled natively), the same JSON documents,
//!   `_id` derivation and BSON conversion, and the same `BulkWriter` (1000 per `insert_many`)
//!   fed through a channel by a separate task, as the worker's writer is.
//!
//! Reports documents/s, MB/s and peak RSS (VmHWM) of each: the platform's is the `serve`
//! process's, the native one this process's.
//!
//! `cargo bench -p mysimbdp-host --bench batch [-- SIZE_MIB]` (default 1024 MiB). Needs
//! `scripts/services up`. Writes the CSV under target/bench/ (a bad row every 1000).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../sample-apps/csv-batch/src/transform.rs"]
#[allow(dead_code)]
mod transform;

use mysimbdp_fixtures as fixtures;
use mysimbdp_host::profile::WriteConcern;
use mysimbdp_host::sink::{BulkWriter, Sink, stored_document};
use mysimbdp_tests::files::bench_dir;
use mysimbdp_tests::poll::wait_until;
use mysimbdp_tests::process::{BENCH_OPERATOR as OPERATOR, serve_bench, vm_hwm_kib};
use mysimbdp_tests::services::mongo;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const INSERT_BATCH: usize = 1000;

struct Measured {
    documents: u64,
    elapsed: Duration,
    peak_rss_kib: u64,
}

#[tokio::main]
async fn main() {
    let size_mib: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1024);
    let dir = bench_dir();
    let path = dir.join(format!("orders-{size_mib}m.csv"));
    let expected = {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let expected = fixtures::orders::write(&mut out, size_mib << 20, 1000).unwrap();
        std::io::Write::flush(&mut out).unwrap();
        expected
    };
    let bytes = expected.bytes;
    println!(
        "batch ingestion bench: {} MiB of orders CSV, {} rows, {} documents expected",
        bytes >> 20,
        expected.rows,
        expected.good
    );
    let run = mysimbdp_tests::unique("bench").replace('-', "_");

    let platform = platform(&run, &path, bytes).await;
    assert_eq!(
        platform.documents, expected.good,
        "the platform lost or duplicated documents"
    );
    let native = native(&run, &path).await;
    assert_eq!(
        native.documents, expected.good,
        "the native pipeline lost documents"
    );

    println!();
    println!(
        "{:<10} {:>12} {:>10} {:>12} {:>9} {:>14}",
        "pipeline", "documents", "seconds", "documents/s", "MB/s", "peak RSS MiB"
    );
    for (name, m) in [("platform", &platform), ("native", &native)] {
        let secs = m.elapsed.as_secs_f64();
        println!(
            "{name:<10} {:>12} {:>10.1} {:>12.0} {:>9.1} {:>14.1}",
            m.documents,
            secs,
            m.documents as f64 / secs,
            bytes as f64 / 1e6 / secs,
            m.peak_rss_kib as f64 / 1024.0
        );
    }
    println!(
        "platform / native throughput: {:.3}x",
        native.elapsed.as_secs_f64() / platform.elapsed.as_secs_f64()
    );
    for database in [
        format!("tenant_{run}"),
        format!("native_{run}"),
        run.clone(),
    ] {
        mongo().await.database(&database).drop().await.unwrap();
    }
    let _ = std::fs::remove_dir_all(dir.join(format!("staging-{run}")));
}

/// Uploads the file to a real `serve` and waits for its job.
async fn platform(run: &str, path: &Path, bytes: u64) -> Measured {
    let dir = bench_dir();
    let (mut child, base) = serve_bench(
        run,
        &format!(
            "[platform]\ndatabase = \"{run}\"\n[registry]\nprefix = \"/mysimbdp-bench/{run}\"\n\
             [redis]\nnamespace = \"{run}\"\n[batch]\nworkers = 1\nstaging_dir = {:?}\n",
            dir.join(format!("staging-{run}"))
        ),
        false,
    )
    .await;
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{base}/v1/admin/tenants"))
        .bearer_auth(OPERATOR)
        .json(&json!({ "id": run.replace('_', "-"), "profile": {
            "batch": { "max_file_mib": 65536, "max_mib_per_day": 1048576 },
            "sink": { "insert_batch": INSERT_BATCH } } }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    let response = http
        .put(format!("{base}/v1/apps/orders"))
        .bearer_auth(&token)
        .body(std::fs::read(fixtures::CSV_BATCH).unwrap())
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());

    let started = Instant::now();
    let file = tokio::fs::File::open(path).await.unwrap();
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
        file,
        256 * 1024,
    ));
    let form = reqwest::multipart::Form::new()
        .text("app", "orders")
        .text("param", "currency=EUR")
        .part(
            "file",
            reqwest::multipart::Part::stream_with_length(body, bytes)
                .file_name("orders.csv")
                .mime_str("text/csv")
                .unwrap(),
        );
    let queued: Value = http
        .post(format!("{base}/v1/batch/files"))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job = queued["files"][0]["job"]
        .as_str()
        .expect("queued")
        .to_owned();
    let uploaded = started.elapsed();
    let finished = wait_until(
        "the job is done",
        Duration::from_secs(3600),
        async || {
            let job: Value = http
                .get(format!("{base}/v1/batch/jobs/{job}"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if matches!(job["status"].as_str(), Some("failed" | "dead")) {
                panic!("the job failed: {job}");
            }
            job
        },
        |job| job["status"] == "done",
    )
    .await;
    let elapsed = started.elapsed();
    let peak_rss_kib = vm_hwm_kib(child.id().unwrap());
    println!(
        "platform: upload to staging {:.1} s, job done after {:.1} s in all",
        uploaded.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    child.start_kill().unwrap();
    let _ = child.wait().await;
    Measured {
        documents: finished["documents"].as_u64().unwrap(),
        elapsed,
        peak_rss_kib,
    }
}

/// The same work without the platform: read, parse, transform, convert, insert_many.
async fn native(run: &str, path: &Path) -> Measured {
    let database = mongo().await.database(&format!("native_{run}"));
    let sink = Arc::new(Sink::direct(database));
    let (sender, mut batches) = tokio::sync::mpsc::channel::<Vec<(u64, String)>>(4);
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        let mut writer = BulkWriter::new(
            sink,
            "documents".to_owned(),
            WriteConcern::Majority,
            INSERT_BATCH,
            mysimbdp_host::config::DEFAULT_WRITE_BUFFER_MIB as usize * 1024 * 1024,
        );
        while let Some(batch) = batches.recv().await {
            for (index, json) in batch {
                let stored = stored_document("native", "orders.csv", index, &json, None).unwrap();
                writer.push(index, stored).await.unwrap();
            }
        }
        writer.flush().await.unwrap();
        writer.inserted
    });
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path).unwrap();
        let reader = BufReader::with_capacity(256 * 1024, file);
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .buffer_capacity(256 * 1024)
            .from_reader(Chunked(reader));
        let columns = transform::Columns::from_header(reader.headers().unwrap()).unwrap();
        let mut record = csv::StringRecord::new();
        let mut batch = Vec::with_capacity(2048);
        let mut index = 0u64;
        while reader.read_record(&mut record).unwrap() {
            if let Ok(order) = transform::transform(&columns, &record, "EUR") {
                batch.push((index, serde_json::to_string(&order).unwrap()));
                index += 1;
                if batch.len() == 2048 {
                    sender
                        .blocking_send(std::mem::replace(&mut batch, Vec::with_capacity(2048)))
                        .unwrap();
                }
            }
        }
        if !batch.is_empty() {
            sender.blocking_send(batch).unwrap();
        }
    })
    .await
    .unwrap();
    let documents = writer.await.unwrap();
    Measured {
        documents,
        elapsed: started.elapsed(),
        peak_rss_kib: vm_hwm_kib(std::process::id()),
    }
}

/// Reads at most 256 KiB at a time, as the sandbox's input does.
struct Chunked<R>(R);

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(256 * 1024);
        self.0.read(&mut buf[..n])
    }
}
