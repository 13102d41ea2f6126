//! Batch ingestion end to end, against the real services, side by side in one run:
//!
//! - **platform**: a real `mysimbdp serve` process; the orders CSV is uploaded over HTTP
//!   (multipart, streamed to staging), becomes a Redis job, and a worker streams it through the
//!   CSV sample app in the sandbox into MongoDB (`insert_many` batches of the profile's 1000,
//!   deterministic ids). Timed from the first byte uploaded to the job done.
//! - **native**: the same file read in the same 256 KiB chunks, the same CSV parse and
//!   transform (the app's own `transform.rs`, compiled natively), the same JSON documents,
//!   `_id` derivation and BSON conversion, and the same `BulkWriter` (1000 per `insert_many`)
//!   fed through a channel by a separate task, as the worker's writer is, with the platform's
//!   id scheme and as many inserts in flight.
//! - **limit**: what the coredms itself takes for the same documents: the native pipeline's
//!   BSON, prepared before the clock starts (read back from a file of raw BSON, no parsing),
//!   written by the same `BulkWriter` with the same ids, batches and inserts in flight.
//!
//! Each side writes into a fresh database, dropped before the next side starts, so each one
//! meets the same empty collection growing to the same size. Reports documents/s over the
//! whole run and over its second half (sampled from the collection's count, to show whether
//! the rate holds as the collection grows), MB/s and peak RSS (VmHWM): the platform's is the
//! `serve` process's, the others this process's.
//!
//! The platform side runs twice, with local and with GridFS staging (`batch.staging`), and
//! reports the cost of the shared staging.
//!
//! `cargo bench -p mysimbdp-host --bench batch [-- SIZE_MIB [WRITES_IN_FLIGHT] [--languages]]`
//! (default 1024 MiB, the config's default writes in flight). Needs `scripts/services up`.
//! Writes the CSV (a bad row every 1000) and the limit side's BSON under target/bench/. With
//! `--languages` the platform side runs again with the Python and the JavaScript CSV apps
//! (built by `scripts/build-lang-apps`, uploaded with their language's limit preset), whose
//! documents are the Rust app's byte for byte, and reports each against the Rust app's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../sample-apps/csv-batch/src/transform.rs"]
#[allow(dead_code)]
mod transform;

use mongodb::bson::RawDocumentBuf;
use mysimbdp_fixtures as fixtures;
use mysimbdp_host::documents::IdScheme;
use mysimbdp_host::profile::WriteConcern;
use mysimbdp_host::sink::{BulkWriter, Sink, stored_document};
use mysimbdp_tests::files::bench_dir;
use mysimbdp_tests::poll::wait_until;
use mysimbdp_tests::process::{BENCH_OPERATOR as OPERATOR, serve_bench, vm_hwm_kib};
use mysimbdp_tests::services::mongo;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

const INSERT_BATCH: usize = 1000;

struct Measured {
    documents: u64,
    /// Until the upload was staged (the platform's sides; the whole run for the others).
    uploaded: Duration,
    elapsed: Duration,
    /// Documents/s between half the documents written and all of them.
    second_half: f64,
    peak_rss_kib: u64,
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse::<u64>().ok());
    let size_mib = args.next().unwrap_or(1024);
    let writes = args
        .next()
        .map_or(mysimbdp_host::config::DEFAULT_WRITES_IN_FLIGHT, |w| {
            w as usize
        });
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
        "batch ingestion bench: {} MiB of orders CSV, {} rows, {} documents expected, {writes} \
         inserts in flight, ids {:?}",
        bytes >> 20,
        expected.rows,
        expected.good,
        IdScheme::CURRENT
    );
    let run = mysimbdp_tests::unique("bench").replace('-', "_");

    let rust = PathBuf::from(fixtures::CSV_BATCH);
    let mut apps = vec![
        TenantApp {
            language: "rust",
            wasm: rust.clone(),
            staging: "local",
        },
        TenantApp {
            language: "rust",
            wasm: rust,
            staging: "gridfs",
        },
    ];
    if std::env::args().any(|a| a == "--languages") {
        let built = mysimbdp_tests::files::lang_apps();
        for language in ["python", "js"] {
            apps.push(TenantApp {
                language,
                wasm: built.join(format!("{language}-csv-batch.wasm")),
                staging: "local",
            });
        }
    }
    let mut platforms = Vec::new();
    for app in &apps {
        let run = format!("{run}_{}_{}", app.language, app.staging);
        let measured = platform(&run, app, &path, bytes, writes, expected.good).await;
        assert_eq!(
            measured.documents, expected.good,
            "the platform lost or duplicated documents ({} app, {} staging)",
            app.language, app.staging
        );
        platforms.push((app, measured));
    }
    let platform = &platforms[0].1;
    let gridfs = &platforms[1].1;
    let native = native(&run, &path, writes, expected.good).await;
    assert_eq!(
        native.documents, expected.good,
        "the native pipeline lost documents"
    );
    let bson = dir.join(format!("orders-{size_mib}m-{run}.bson"));
    prepare_bson(&path, &bson);
    let limit = limit(&run, &bson, writes, expected.good).await;
    let _ = std::fs::remove_file(&bson);
    assert_eq!(
        limit.documents, expected.good,
        "the limit side lost documents"
    );

    println!();
    println!(
        "{:<18} {:>12} {:>10} {:>12} {:>14} {:>9} {:>14}",
        "pipeline", "documents", "seconds", "documents/s", "2nd half d/s", "MB/s", "peak RSS MiB"
    );
    let mut rows: Vec<(String, &Measured)> =
        platforms.iter().map(|(app, m)| (app.row(), m)).collect();
    rows.push(("native".to_owned(), &native));
    rows.push(("limit".to_owned(), &limit));
    for (name, m) in rows {
        let secs = m.elapsed.as_secs_f64();
        println!(
            "{name:<18} {:>12} {:>10.1} {:>12.0} {:>14.0} {:>9.1} {:>14.1}",
            m.documents,
            secs,
            m.documents as f64 / secs,
            m.second_half,
            bytes as f64 / 1e6 / secs,
            m.peak_rss_kib as f64 / 1024.0
        );
    }
    let ratio = |a: &Measured, b: &Measured| b.elapsed.as_secs_f64() / a.elapsed.as_secs_f64();
    println!(
        "platform / native throughput: {:.3}x",
        ratio(platform, &native)
    );
    println!(
        "platform / limit throughput: {:.3}x (second half: {:.3}x)",
        ratio(platform, &limit),
        platform.second_half / limit.second_half
    );
    println!("native / limit throughput: {:.3}x", ratio(&native, &limit));
    println!(
        "platform, GridFS staging / local staging throughput: {:.3}x (upload to staging: \
         {:.1} s against {:.1} s)",
        ratio(gridfs, platform),
        gridfs.uploaded.as_secs_f64(),
        platform.uploaded.as_secs_f64()
    );
    for (app, m) in &platforms[2..] {
        println!(
            "{} / platform (rust) throughput: {:.3}x",
            app.row(),
            ratio(m, platform)
        );
    }
    mongo().await.database(&run).drop().await.unwrap();
    let _ = std::fs::remove_dir_all(dir.join(format!("staging-{run}")));
}

/// Samples `collection`'s document count once a second until it holds `expected`, and answers
/// the rate between half of them and all of them.
fn second_half(database: &str, collection: &str, expected: u64) -> JoinHandle<f64> {
    let (database, collection) = (database.to_owned(), collection.to_owned());
    tokio::spawn(async move {
        let collection = mongo()
            .await
            .database(&database)
            .collection::<mongodb::bson::Document>(&collection);
        let mut half = None;
        loop {
            let count = collection.estimated_document_count().await.unwrap_or(0);
            let now = Instant::now();
            if half.is_none() && count >= expected / 2 {
                half = Some((now, count));
            }
            if count >= expected {
                let (at, from) = half.unwrap_or((now, count));
                let secs = now.duration_since(at).as_secs_f64().max(1e-3);
                return (count - from) as f64 / secs;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

/// Uploads the file to a real `serve` and waits for its job.
/// A tenant app the platform side runs: its name in the report, the component and the limit
/// preset it is uploaded with.
struct TenantApp {
    language: &'static str,
    wasm: PathBuf,
    /// The host's `batch.staging`.
    staging: &'static str,
}

impl TenantApp {
    /// Its row's name in the table.
    fn row(&self) -> String {
        match (self.language, self.staging) {
            ("rust", "local") => "platform".to_owned(),
            ("rust", staging) => format!("platform ({staging})"),
            (language, _) => format!("platform ({language})"),
        }
    }
}

async fn platform(
    run: &str,
    app: &TenantApp,
    path: &Path,
    bytes: u64,
    writes: usize,
    expected: u64,
) -> Measured {
    let dir = bench_dir();
    let (mut child, base) = serve_bench(
        run,
        &format!(
            "[platform]\ndatabase = \"{run}\"\n[registry]\nprefix = \"/mysimbdp-bench/{run}\"\n\
             [redis]\nnamespace = \"{run}\"\n[batch]\nworkers = 1\nstaging = \"{}\"\n\
             staging_dir = {:?}\n[sink]\nwrites_in_flight = {writes}\n",
            app.staging,
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
    // Uploaded with its language's limit preset, as a tenant would (compiled before the
    // clock starts).
    let response = http
        .put(format!("{base}/v1/apps/orders?preset={}", app.language))
        .bearer_auth(&token)
        .body(std::fs::read(&app.wasm).unwrap())
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "uploading the {} app: {}",
        app.language,
        response.text().await.unwrap_or_default()
    );

    let tenant_database = format!("tenant_{run}");
    let sampler = second_half(&tenant_database, "documents", expected);
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
        "{}: upload to staging {:.1} s, job done after {:.1} s in all",
        app.row(),
        uploaded.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    child.start_kill().unwrap();
    let _ = child.wait().await;
    let second_half = sampler.await.unwrap();
    mongo()
        .await
        .database(&tenant_database)
        .drop()
        .await
        .unwrap();
    Measured {
        documents: finished["documents"].as_u64().unwrap(),
        uploaded,
        elapsed,
        second_half,
        peak_rss_kib,
    }
}

/// The same work without the platform: read, parse, transform, convert, insert_many.
async fn native(run: &str, path: &Path, writes: usize, expected: u64) -> Measured {
    let name = format!("native_{run}");
    let database = mongo().await.database(&name);
    let sink = Arc::new(Sink::direct(database.clone()));
    let sampler = second_half(&name, "documents", expected);
    let (sender, mut batches) = tokio::sync::mpsc::channel::<Vec<(u64, String)>>(4);
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        let mut writer = writer(sink, writes);
        let ids = IdScheme::CURRENT.ids("native", "orders.csv");
        while let Some(batch) = batches.recv().await {
            for (index, json) in batch {
                let stored = stored_document(&ids, index, &json, None).unwrap();
                writer.push(index, stored).await.unwrap();
            }
        }
        writer.flush().await.unwrap();
        writer.inserted
    });
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        each_document(&path, |batch| sender.blocking_send(batch).unwrap());
    })
    .await
    .unwrap();
    let documents = writer.await.unwrap();
    let elapsed = started.elapsed();
    let second_half = sampler.await.unwrap();
    database.drop().await.unwrap();
    Measured {
        documents,
        uploaded: elapsed,
        elapsed,
        second_half,
        peak_rss_kib: vm_hwm_kib(std::process::id()),
    }
}

/// The writer every side but the platform uses: the platform's batches and inserts in flight,
/// under its default write buffer.
fn writer(sink: Arc<Sink>, writes: usize) -> BulkWriter {
    BulkWriter::new(
        sink,
        "documents".to_owned(),
        WriteConcern::Majority,
        INSERT_BATCH,
        mysimbdp_host::config::DEFAULT_WRITE_BUFFER_MIB as usize * 1024 * 1024,
    )
    .writes_in_flight(writes)
}

/// Reads, parses and transforms the CSV as the app does, handing (index, JSON) batches of
/// 2048 to `send`.
fn each_document(path: &Path, mut send: impl FnMut(Vec<(u64, String)>)) {
    let file = std::fs::File::open(path).unwrap();
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
                send(std::mem::replace(&mut batch, Vec::with_capacity(2048)));
            }
        }
    }
    if !batch.is_empty() {
        send(batch);
    }
}

/// Writes the native pipeline's documents, ids included, as raw BSON one after another: the
/// limit side's input, prepared before its clock starts.
fn prepare_bson(csv: &Path, bson: &Path) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(bson).unwrap());
    let ids = IdScheme::CURRENT.ids("limit", "orders.csv");
    each_document(csv, |batch| {
        for (index, json) in batch {
            let stored = stored_document(&ids, index, &json, None).unwrap();
            std::io::Write::write_all(&mut out, stored.as_bytes()).unwrap();
        }
    });
    std::io::Write::flush(&mut out).unwrap();
}

/// The coredms's own limit: the same documents as raw BSON, no parsing, through the same
/// writer with the same ids, batches and inserts in flight.
async fn limit(run: &str, bson: &Path, writes: usize, expected: u64) -> Measured {
    let name = format!("limit_{run}");
    let database = mongo().await.database(&name);
    let sink = Arc::new(Sink::direct(database.clone()));
    let sampler = second_half(&name, "documents", expected);
    let (sender, mut batches) = tokio::sync::mpsc::channel::<Vec<RawDocumentBuf>>(4);
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        let mut writer = writer(sink, writes);
        let mut index = 0;
        while let Some(batch) = batches.recv().await {
            for document in batch {
                writer.push(index, document).await.unwrap();
                index += 1;
            }
        }
        writer.flush().await.unwrap();
        writer.inserted
    });
    let bson = bson.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut input = BufReader::with_capacity(1 << 20, std::fs::File::open(&bson).unwrap());
        let mut batch = Vec::with_capacity(2048);
        let mut length = [0u8; 4];
        while input.read_exact(&mut length).is_ok() {
            let size = u32::from_le_bytes(length) as usize;
            let mut bytes = vec![0u8; size];
            bytes[..4].copy_from_slice(&length);
            input.read_exact(&mut bytes[4..]).unwrap();
            batch.push(RawDocumentBuf::from_bytes(bytes).unwrap());
            if batch.len() == 2048 {
                sender
                    .blocking_send(std::mem::replace(&mut batch, Vec::with_capacity(2048)))
                    .unwrap();
            }
        }
        if !batch.is_empty() {
            sender.blocking_send(batch).unwrap();
        }
    })
    .await
    .unwrap();
    let documents = writer.await.unwrap();
    let elapsed = started.elapsed();
    let second_half = sampler.await.unwrap();
    database.drop().await.unwrap();
    Measured {
        documents,
        uploaded: elapsed,
        elapsed,
        second_half,
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
