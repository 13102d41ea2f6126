//! Language benchmark: the CSV and JSON sample apps in Rust, Python and JavaScript side by
//! side in one run, through the same sandbox.
//!
//! `cargo bench -p mysimbdp-host --bench languages` (optionally `-- <MiB of CSV>`, default
//! 64) builds the Python and JS samples (`scripts/build-lang-apps`, cached) and reports per
//! app: component size, compile time (into an empty cache), cached load, fresh instance,
//! and for the CSV apps records/s, fuel per record and the peak RSS of `mysimbdp app run` on
//! the same CSV; for the stream apps messages/s at batches of 100. The JS CSV app runs
//! under a 64 MiB memory cap first; when that fails the cap it needed is reported.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use mysimbdp_fixtures as fixtures;
use mysimbdp_host::config::{SandboxConfig, SandboxLimits};
use mysimbdp_host::runtime::{App, BatchInput, CallOptions, Message, OutputBatch, Runtime};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const MESSAGES: usize = 20_000;
const STREAM_BATCH: usize = 100;

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

fn limits(memory_mib: u64) -> SandboxLimits {
    SandboxLimits {
        fuel: 50_000_000_000,
        fuel_per_input_byte: 100_000,
        deadline_ms: 600_000,
        memory_mib,
        ..SandboxLimits::default()
    }
}

fn options(memory_mib: u64) -> CallOptions {
    CallOptions {
        label: "bench".to_owned(),
        params: Arc::new(BTreeMap::new()),
        limits: limits(memory_mib),
    }
}

async fn run(mib: u64) {
    let built = mysimbdp_tests::files::lang_apps();
    let apps = |kind: &str, rust: &str| -> Vec<(&'static str, PathBuf)> {
        vec![
            ("Rust", PathBuf::from(rust)),
            ("Python", built.join(format!("python-{kind}.wasm"))),
            ("JS", built.join(format!("js-{kind}.wasm"))),
        ]
    };
    let csv_apps = apps("csv-batch", fixtures::CSV_BATCH);
    let stream_apps = apps("json-stream", fixtures::JSON_STREAM);

    let cache = mysimbdp_tests::files::bench_dir().join("languages-cache");
    let _ = std::fs::remove_dir_all(&cache);
    let runtime = runtime(&cache);

    println!(
        "# mysimbdp language benchmark (wasmtime 48, {} cores)\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "## Loading: compile (into an empty cache), cached load, fresh instance (p50 of 200)\n"
    );
    println!("| app | size | compile | cached load | instantiate |");
    println!("|---|---|---|---|---|");
    let mut loaded = Vec::new();
    for (kind, list) in [("CSV", &csv_apps), ("stream", &stream_apps)] {
        for (language, path) in list {
            let wasm = std::fs::read(path).unwrap();
            let compiled = runtime.load(&wasm).await.unwrap();
            // A second runtime finds the compiled artifact on disk, as a restarted host does.
            let mut cached = Duration::MAX;
            for _ in 0..5 {
                let fresh = self::runtime(&cache);
                cached = cached.min(fresh.load(&wasm).await.unwrap().load_time);
            }
            let mut samples = Vec::new();
            for _ in 0..200 {
                samples.push(
                    runtime
                        .smoke_instantiate(&compiled, &options(256))
                        .await
                        .unwrap(),
                );
            }
            samples.sort();
            println!(
                "| {language} {kind} | {:.1} MB | {:.1} s | {:.1} ms | {:.2} ms |",
                wasm.len() as f64 / 1e6,
                compiled.load_time.as_secs_f64(),
                cached.as_secs_f64() * 1000.0,
                samples[samples.len() / 2].as_secs_f64() * 1000.0
            );
            loaded.push((kind, *language, path.clone(), compiled));
        }
    }

    println!("\n## CSV sample app on {mib} MiB of CSV (one run each)\n");
    println!(
        "| app | memory cap | records/s | MB/s | fuel/record | fuel/byte | peak RSS of app run |"
    );
    println!("|---|---|---|---|---|---|---|");
    let (csv, expected) = fixtures::orders::generate(mib << 20, 1000);
    let csv_path = mysimbdp_tests::files::bench_dir().join("languages.csv");
    std::fs::write(&csv_path, &csv).unwrap();
    let csv = Arc::new(csv);
    let mut baseline = None;
    for (_, language, path, app) in loaded.iter().filter(|(kind, ..)| *kind == "CSV") {
        let mut memory = 64;
        let (elapsed, fuel) = loop {
            match batch(&runtime, app, csv.clone(), memory).await {
                Ok((elapsed, fuel, documents)) => {
                    assert_eq!(documents, expected.good, "{language}");
                    break (elapsed, fuel);
                }
                Err(failure) if memory < 1024 => {
                    println!("<!-- {language}: {failure} at a {memory} MiB cap -->");
                    memory *= 2;
                }
                Err(failure) => panic!("{language}: {failure}"),
            }
        };
        let rate = expected.rows as f64 / elapsed.as_secs_f64();
        let rss = peak_rss_of_app_run(path, &csv_path, &cache, memory);
        println!(
            "| {language} | {memory} MiB | {:.0}{} | {:.1} | {:.0} | {:.0} | {rss} |",
            rate,
            baseline.map_or(String::new(), |b: f64| format!(" ({:.2}x Rust)", rate / b)),
            csv.len() as f64 / 1e6 / elapsed.as_secs_f64(),
            fuel as f64 / expected.rows as f64,
            fuel as f64 / csv.len() as f64,
        );
        baseline.get_or_insert(rate);
    }
    let _ = std::fs::remove_file(&csv_path);

    println!("\n## Stream sample app: {MESSAGES} messages in batches of {STREAM_BATCH}\n");
    println!("| app | messages/s | fuel per batch of {STREAM_BATCH} |");
    println!("|---|---|---|");
    let messages: Vec<Message> = (0..MESSAGES)
        .map(|i| Message {
            id: format!("m{i}"),
            payload: format!(
                r#"{{"device":"d-{}","ts":"2026-11-21T10:{:02}:00Z","site":"hel","readings":{{"temp":{}.5,"hum":{}}}}}"#,
                i % 50,
                i % 60,
                i % 30,
                i % 100
            )
            .into_bytes(),
            content_type: Some("application/json".to_owned()),
            headers: Vec::new(),
            attempt: 1,
        })
        .collect();
    for (_, language, _, app) in loaded.iter().filter(|(kind, ..)| *kind == "stream") {
        let started = Instant::now();
        let mut fuel = 0;
        for chunk in messages.chunks(STREAM_BATCH) {
            let report = runtime.run_stream(app, chunk, &options(256)).await.unwrap();
            assert!(report.outcomes.iter().all(Result::is_ok));
            fuel = fuel.max(report.usage.fuel);
        }
        println!(
            "| {language} | {:.0} | {fuel} |",
            MESSAGES as f64 / started.elapsed().as_secs_f64()
        );
    }
    let _ = std::fs::remove_dir_all(&cache);
}

fn runtime(cache: &Path) -> Runtime {
    let mut config = SandboxConfig::default();
    config.engine.cache_dir = Some(cache.to_path_buf());
    config.engine.compiler = Some(mysimbdp_tests::files::mysimbdp_binary());
    config.engine.compile_timeout_ms = 600_000;
    Runtime::new(config).unwrap()
}

async fn batch(
    runtime: &Runtime,
    app: &App,
    csv: Arc<Vec<u8>>,
    memory_mib: u64,
) -> Result<(Duration, u64, u64), String> {
    let (sink, mut batches) = mpsc::channel::<OutputBatch>(4);
    let counter = tokio::spawn(async move {
        let mut documents = 0u64;
        while let Some(batch) = batches.recv().await {
            documents += batch.documents.len() as u64;
        }
        documents
    });
    let input = BatchInput {
        name: "bench.csv".to_owned(),
        size: csv.len() as u64,
        content_type: None,
        reader: Box::new(std::io::Cursor::new(csv.to_vec())),
    };
    let started = Instant::now();
    let result = runtime
        .run_batch(app, input, &options(memory_mib), sink)
        .await;
    let elapsed = started.elapsed();
    let documents = counter.await.unwrap();
    match result {
        Ok(report) => Ok((elapsed, report.usage.fuel, documents)),
        Err(failure) => Err(format!("{:?}: {}", failure.class, failure.message)),
    }
}

/// Peak RSS (as `/usr/bin/time` reports it) of `mysimbdp app run` on the CSV, from the cache.
fn peak_rss_of_app_run(app: &Path, csv: &Path, cache: &Path, memory_mib: u64) -> String {
    let config = mysimbdp_tests::files::bench_dir().join("languages.toml");
    std::fs::write(
        &config,
        format!(
            "[sandbox.engine]\ncompile_timeout_ms = 600000\n\n[sandbox.limits]\nfuel = 50000000000\n\
             fuel_per_input_byte = 100000\ndeadline_ms = 600000\nmemory_mib = {memory_mib}\n\n\
             [sandbox.max]\nfuel = 50000000000\nfuel_per_input_byte = 100000\n\
             deadline_ms = 600000\nmemory_mib = {memory_mib}\n\n\
             [apps]\nrefused_imports = []\n"
        ),
    )
    .unwrap();
    let output = std::process::Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(mysimbdp_tests::files::mysimbdp_binary())
        .args(["app", "run"])
        .arg(app)
        .arg("--input")
        .arg(csv)
        .arg("--config")
        .arg(&config)
        .arg("--cache-dir")
        .arg(cache)
        .stdout(std::process::Stdio::null())
        .output();
    match output {
        Ok(output) if output.status.success() => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let kib: f64 = stderr
                .lines()
                .last()
                .and_then(|l| l.trim().parse().ok())
                .unwrap_or(0.0);
            format!("{:.0} MiB", kib / 1024.0)
        }
        Ok(output) => format!(
            "(app run failed: {})",
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .find(|l| l.starts_with("error"))
                .unwrap_or("")
        ),
        Err(error) => format!("(no /usr/bin/time: {error})"),
    }
}
