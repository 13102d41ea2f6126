//! Sandbox benchmark: what running a tenant's app in wasmtime costs next to the same code
//! compiled natively, measured side by side in one run.
//!
//! `cargo bench -p mysimbdp-host --bench sandbox` (optionally `-- <MiB of CSV>`, default 64)
//! reports:
//! 1. per-record overhead of the CSV sample app (batched calls) against the very same
//!    transform compiled natively, both feeding documents in batches through a channel;
//! 2. fresh-instance time from `InstancePre` (Store + WASI context + instantiate), p50/p99;
//! 3. loading each sample app from the compile cache against compiling it.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../../sample-apps/csv-batch/src/transform.rs"]
#[allow(dead_code)]
mod transform;

use mysimbdp_fixtures as fixtures;
use mysimbdp_host::config::{SandboxConfig, SandboxLimits};
use mysimbdp_host::runtime::{BatchInput, CallOptions, OutputBatch, Runtime};
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Same batch size the SDK flushes at, so both pipelines hand over equal batches.
const BATCH: usize = 2048;
const ROUNDS: usize = 3;

fn main() {
    let mib: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(64);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(run(mib));
}

async fn run(mib: u64) {
    let cache = std::env::temp_dir().join(format!("mysimbdp-bench-{}", std::process::id()));
    let mut config = SandboxConfig::default();
    config.engine.cache_dir = Some(cache.clone());
    config.engine.compiler = Some(mysimbdp_tests::files::mysimbdp_binary());
    let runtime = Runtime::new(config).unwrap();
    let options = CallOptions {
        label: "bench".to_owned(),
        params: Arc::new(BTreeMap::new()),
        limits: SandboxLimits::default(),
    };

    println!(
        "# mysimbdp sandbox benchmark (wasmtime 48, {} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    println!("## 1. CSV sample app: sandbox vs native, {mib} MiB of CSV, best of {ROUNDS}");
    let (csv, expected) = fixtures::orders::generate(mib << 20, 1000);
    let csv = Arc::new(csv);
    let app = runtime
        .load(&std::fs::read(fixtures::CSV_BATCH).unwrap())
        .await
        .unwrap();
    let mut wasm_best = Duration::MAX;
    let mut native_best = Duration::MAX;
    for _ in 0..ROUNDS {
        let (elapsed, documents) = sandboxed(&runtime, &app, &options, csv.clone()).await;
        assert_eq!(documents, expected.good);
        wasm_best = wasm_best.min(elapsed);
        let (elapsed, documents) = native(csv.clone()).await;
        assert_eq!(documents, expected.good);
        native_best = native_best.min(elapsed);
    }
    let per_record = |d: Duration| d.as_nanos() as f64 / expected.rows as f64;
    let mb_s = |d: Duration| csv.len() as f64 / 1e6 / d.as_secs_f64();
    println!("| pipeline | time | ns/record | records/s | MB/s |");
    println!("|---|---|---|---|---|");
    for (name, d) in [("native Rust", native_best), ("wasm sandbox", wasm_best)] {
        println!(
            "| {name} | {:.3} s | {:.0} | {:.0} | {:.1} |",
            d.as_secs_f64(),
            per_record(d),
            expected.rows as f64 / d.as_secs_f64(),
            mb_s(d)
        );
    }
    println!(
        "\nsandbox overhead per record: {:.0} ns ({:.2}x native) over {} records\n",
        per_record(wasm_best) - per_record(native_best),
        wasm_best.as_secs_f64() / native_best.as_secs_f64(),
        expected.rows
    );

    println!("## 2. Fresh instance from InstancePre (Store + WASI + instantiate)");
    println!("| app | p50 | p99 | mean |");
    println!("|---|---|---|---|");
    for (name, path) in [
        ("csv-batch", fixtures::CSV_BATCH),
        ("json-stream", fixtures::JSON_STREAM),
    ] {
        let app = runtime.load(&std::fs::read(path).unwrap()).await.unwrap();
        for _ in 0..200 {
            runtime.smoke_instantiate(&app, &options).await.unwrap();
        }
        let mut samples: Vec<Duration> = Vec::with_capacity(5000);
        for _ in 0..5000 {
            samples.push(runtime.smoke_instantiate(&app, &options).await.unwrap());
        }
        samples.sort();
        let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
        println!(
            "| {name} | {:.1} µs | {:.1} µs | {:.1} µs |",
            micros(samples[samples.len() / 2]),
            micros(samples[samples.len() * 99 / 100]),
            micros(mean)
        );
    }
    println!();

    println!("## 3. Loading a component: compile vs compile cache");
    println!("| app | size | compile + cache | from cache |");
    println!("|---|---|---|---|");
    for (name, path) in [
        ("csv-batch", fixtures::CSV_BATCH),
        ("json-stream", fixtures::JSON_STREAM),
    ] {
        let wasm = std::fs::read(path).unwrap();
        let _ = std::fs::remove_dir_all(&cache);
        std::fs::create_dir_all(&cache).unwrap();
        let compiled = runtime.load(&wasm).await.unwrap();
        let mut cached = Duration::MAX;
        for _ in 0..20 {
            cached = cached.min(runtime.load(&wasm).await.unwrap().load_time);
        }
        println!(
            "| {name} | {} KiB | {:.1} ms | {:.2} ms |",
            wasm.len() / 1024,
            compiled.load_time.as_secs_f64() * 1000.0,
            cached.as_secs_f64() * 1000.0
        );
    }
    let _ = std::fs::remove_dir_all(&cache);
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Counts documents as a sink would receive them, without storing them.
fn drain(mut batches: mpsc::Receiver<OutputBatch>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut documents = 0;
        while let Some(batch) = batches.recv().await {
            documents += batch.documents.len() as u64;
        }
        documents
    })
}

async fn sandboxed(
    runtime: &Runtime,
    app: &mysimbdp_host::runtime::App,
    options: &CallOptions,
    csv: Arc<Vec<u8>>,
) -> (Duration, u64) {
    let (sink, batches) = mpsc::channel(4);
    let counter = drain(batches);
    let input = BatchInput {
        name: "bench.csv".to_owned(),
        size: csv.len() as u64,
        content_type: None,
        reader: Box::new(std::io::Cursor::new(SharedBytes(csv))),
    };
    let started = Instant::now();
    runtime.run_batch(app, input, options, sink).await.unwrap();
    let documents = counter.await.unwrap();
    (started.elapsed(), documents)
}

/// The native baseline: the same transform over the same bytes, read in the same 256 KiB
/// chunks, serialized to JSON and handed over in batches of the same size.
async fn native(csv: Arc<Vec<u8>>) -> (Duration, u64) {
    let (sink, batches) = mpsc::channel::<OutputBatch>(4);
    let counter = drain(batches);
    let started = Instant::now();
    tokio::task::spawn_blocking(move || {
        let reader = ChunkedReader {
            bytes: &csv,
            pos: 0,
        };
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .buffer_capacity(256 * 1024)
            .from_reader(reader);
        let columns = transform::Columns::from_header(reader.headers().unwrap()).unwrap();
        let mut record = csv::StringRecord::new();
        let mut documents = Vec::with_capacity(BATCH);
        let mut first_index = 0;
        while reader.read_record(&mut record).unwrap() {
            if let Ok(order) = transform::transform(&columns, &record, "EUR") {
                documents.push(mysimbdp_host::runtime::Document {
                    id: None,
                    json: serde_json::to_string(&order).unwrap(),
                });
                if documents.len() == BATCH {
                    let full = std::mem::replace(&mut documents, Vec::with_capacity(BATCH));
                    sink.blocking_send(OutputBatch {
                        first_index,
                        documents: full,
                    })
                    .unwrap();
                    first_index += BATCH as u64;
                }
            }
        }
        if !documents.is_empty() {
            sink.blocking_send(OutputBatch {
                first_index,
                documents,
            })
            .unwrap();
        }
    })
    .await
    .unwrap();
    let documents = counter.await.unwrap();
    (started.elapsed(), documents)
}

struct ChunkedReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Read for ChunkedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(256 * 1024).min(self.bytes.len() - self.pos);
        buf[..n].copy_from_slice(&self.bytes[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

struct SharedBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}
