//! `mysimbdp app check` and `mysimbdp app run`: an app developer's local loop, in the same
//! sandbox and with the same limits as production.

use super::{CheckArgs, RunArgs};
use crate::app_store::{admission_probe, sample_probe};
use crate::documents::{IdScheme, to_stored, with_id};
use crate::runtime::{
    App, AppKind, BatchInput, BatchReport, CallOptions, Failure, FailureClass, Message,
    OutputBatch, Quality, Runtime, Usage,
};
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

// Exit code of a run whose app failed: the same as the remote commands'.
use mysimbdp_client::EXIT_APP_FAILED;

/// `app check`: one line (or JSON object) saying what the component is, or why it is refused.
/// It admits exactly as an upload does — the same checks, refused imports included, the same
/// admission probe under the same limits (`--preset`), and the sample probe given
/// `--sample` — so it refuses what an upload refuses, with the same reason.
pub(super) async fn check(args: CheckArgs) -> Result<ExitCode> {
    let (config, apps) = args.sandbox.configs()?;
    let limits = config.limits.clone();
    let runtime = Runtime::new(config)?;
    let wasm = std::fs::read(&args.file).with_context(|| format!("reading {:?}", args.file))?;
    let sample = match &args.sample {
        Some(path) => {
            let sample = std::fs::read(path).with_context(|| format!("reading {path:?}"))?;
            let max = apps.probe_sample_max_kib.saturating_mul(1024);
            if sample.len() > max {
                anyhow::bail!(
                    "the sample {path:?} is {} bytes, above the platform's cap of {max} bytes \
                     (apps.probe_sample_max_kib)",
                    sample.len()
                );
            }
            Some(sample)
        }
        None => None,
    };
    let admitted = async {
        let app = runtime.admit(&wasm, &apps.refused_imports).await?;
        let name = args.file.display().to_string();
        admission_probe(&runtime, &apps, &app, "local", &name, &limits).await?;
        if let Some(sample) = &sample {
            sample_probe(&runtime, &app, "local", &name, &limits, sample).await?;
        }
        Ok::<_, Failure>(app)
    }
    .await;
    match admitted {
        Ok(app) => {
            if args.json {
                println!("{}", serde_json::to_string(&CheckReport::from(&app))?);
            } else {
                println!(
                    "ok: {} app ({}@{}), {} bytes, sha256:{}\n  imports: {}\n  exports: {}",
                    app.kind,
                    app.kind.world(),
                    app.contract.as_str(),
                    app.size,
                    app.digest,
                    app.imports.join(", "),
                    app.exports.join(", ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            eprintln!(
                "error: {}: {}",
                args.file.display(),
                one_line(&failure.message)
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

#[derive(Serialize)]
struct CheckReport<'a> {
    kind: AppKind,
    world: String,
    /// The `mysimbdp:ingest` version it was built against.
    contract: &'static str,
    size: usize,
    digest: &'a str,
    imports: &'a [String],
    exports: &'a [String],
}

impl<'a> From<&'a App> for CheckReport<'a> {
    fn from(app: &'a App) -> Self {
        Self {
            kind: app.kind,
            world: format!("{}@{}", app.kind.world(), app.contract.as_str()),
            contract: app.contract.as_str(),
            size: app.size,
            digest: &app.digest,
            imports: &app.imports,
            exports: &app.exports,
        }
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `app run`: documents to stdout as JSON lines with their `_id`, a summary to stderr.
pub(super) async fn run(args: RunArgs) -> Result<ExitCode> {
    let runtime = Runtime::new(args.sandbox.config()?)?;
    let wasm = std::fs::read(&args.file).with_context(|| format!("reading {:?}", args.file))?;
    let app = match runtime.load(&wasm).await {
        Ok(app) => app,
        Err(failure) => {
            eprintln!(
                "error: {}: {}",
                args.file.display(),
                one_line(&failure.message)
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let options = CallOptions {
        label: format!("{}/{}", args.tenant, args.file.display()),
        params: Arc::new(args.params.iter().cloned().collect::<BTreeMap<_, _>>()),
        limits: runtime.config().limits.clone(),
    };
    let mut summary = Summary::new(&app, &args);
    match app.kind {
        AppKind::Batch => run_batch(&runtime, &app, &args, &options, &mut summary).await?,
        AppKind::Stream => run_stream(&runtime, &app, &args, &options, &mut summary).await?,
    }
    summary.peak_rss_mib = peak_rss_mib();
    summary.print(args.summary_json)?;
    Ok(if summary.failure.is_some() {
        ExitCode::from(EXIT_APP_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

async fn run_batch(
    runtime: &Runtime,
    app: &App,
    args: &RunArgs,
    options: &CallOptions,
    summary: &mut Summary,
) -> Result<()> {
    let content_type = args
        .content_type
        .clone()
        .or_else(|| guess_content_type(&args.input));
    let input = BatchInput::open(&args.input, content_type).await?;
    summary.input_bytes = input.size;
    let (sink, batches) = mpsc::channel::<OutputBatch>(4);
    let tenant = args.tenant.clone();
    let source = input.name.clone();
    // Parsing and printing are CPU work: keep them on a blocking thread, off the executor.
    let writer = tokio::task::spawn_blocking(move || write_batches(batches, &tenant, &source));
    let result = runtime.run_batch(app, input, options, sink).await;
    let written = writer.await.context("the document writer crashed")?;
    match (result, written) {
        (Ok(report), Ok(())) => {
            summary.quality = Some(report.quality);
            summary.record(report.usage);
        }
        (Err(failure), Ok(())) => summary.fail(failure),
        // A document the writer refused stops the sink; that, not "sink stopped", is the cause.
        (Ok(BatchReport { usage, .. }), Err(bad)) => {
            summary.record(usage);
            summary.fail(bad);
        }
        (Err(failure), Err(bad)) => {
            summary.record(*failure.usage);
            summary.fail(bad);
        }
    }
    Ok(())
}

fn write_batches(
    mut batches: mpsc::Receiver<OutputBatch>,
    tenant: &str,
    source: &str,
) -> Result<(), Failure> {
    let ids = IdScheme::CURRENT.ids(tenant, source);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    while let Some(batch) = batches.blocking_recv() {
        for (offset, document) in batch.documents.iter().enumerate() {
            let index = batch.first_index + offset as u64;
            // The sink's rule decides (one rule for every path); the text keeps the app's own.
            let text = to_stored(&document.json, document.id.as_deref(), || ids.id(index))
                .and_then(|_| with_id(&document.json, document.id.as_deref(), || ids.id(index)))
                .map_err(|reason| {
                    Failure::new(
                        FailureClass::BadOutput,
                        format!("document {index}: {reason}"),
                    )
                })?;
            print_line(&mut out, &text)?;
        }
    }
    out.flush().map_err(io_failure)
}

fn print_line(out: &mut impl Write, text: &str) -> Result<(), Failure> {
    out.write_all(text.as_bytes()).map_err(io_failure)?;
    out.write_all(b"\n").map_err(io_failure)
}

fn io_failure(error: std::io::Error) -> Failure {
    Failure::new(FailureClass::HostError, format!("writing stdout: {error}"))
}

async fn run_stream(
    runtime: &Runtime,
    app: &App,
    args: &RunArgs,
    options: &CallOptions,
    summary: &mut Summary,
) -> Result<()> {
    let file =
        std::fs::File::open(&args.input).with_context(|| format!("opening {:?}", args.input))?;
    summary.input_bytes = file.metadata()?.len();
    let source = args
        .input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut lines = std::io::BufReader::new(file).lines().enumerate();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    loop {
        let mut messages = Vec::with_capacity(args.batch_size);
        for (number, line) in lines.by_ref() {
            let line = line.with_context(|| format!("reading {:?}", args.input))?;
            if line.trim().is_empty() {
                continue;
            }
            messages.push(Message {
                id: format!("{source}:{}", number + 1),
                payload: line.into_bytes(),
                content_type: args.content_type.clone(),
                headers: Vec::new(),
                attempt: 1,
            });
            if messages.len() == args.batch_size.max(1) {
                break;
            }
        }
        if messages.is_empty() {
            break;
        }
        let report = match runtime.run_stream(app, &messages, options).await {
            Ok(report) => report,
            Err(failure) => {
                summary.fail(failure);
                break;
            }
        };
        for (message, outcome) in messages.iter().zip(report.outcomes) {
            let id = &message.id;
            summary.messages += 1;
            match outcome {
                Ok(documents) => {
                    let ids = IdScheme::CURRENT.ids(&args.tenant, id);
                    for (index, document) in documents.iter().enumerate() {
                        let derived = || ids.id(index as u64);
                        let text = to_stored(&document.json, document.id.as_deref(), derived)
                            .and_then(|_| with_id(&document.json, document.id.as_deref(), derived));
                        match text {
                            Ok(text) => print_line(&mut out, &text)?,
                            Err(reason) => {
                                summary.message_failed(id, FailureClass::BadOutput, &reason);
                            }
                        }
                    }
                }
                Err(failure) => summary.message_failed(id, failure.class, &failure.message),
            }
        }
        summary.record(report.usage);
    }
    out.flush()?;
    Ok(())
}

fn guess_content_type(path: &std::path::Path) -> Option<String> {
    let extension = path.extension()?.to_str()?.to_ascii_lowercase();
    let known = match extension.as_str() {
        "csv" => "text/csv",
        "json" => "application/json",
        "jsonl" | "ndjson" => "application/x-ndjson",
        "txt" => "text/plain",
        _ => return None,
    };
    Some(known.to_owned())
}

/// The process's peak resident set size, from /proc (Linux).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// What `app run` reports on stderr.
#[derive(Serialize)]
struct Summary {
    app: String,
    kind: AppKind,
    digest: String,
    origin: crate::runtime::Origin,
    load_ms: f64,
    input: String,
    input_bytes: u64,
    status: &'static str,
    failure: Option<FailureReport>,
    documents: u64,
    output_bytes: u64,
    fuel: u64,
    host_calls: u64,
    logs_dropped: u64,
    duration_ms: f64,
    peak_rss_mib: Option<f64>,
    quality: Option<Quality>,
    messages: u64,
    failed_messages: BTreeMap<FailureClass, u64>,
}

#[derive(Serialize)]
struct FailureReport {
    class: FailureClass,
    message: String,
    stderr: String,
}

impl Summary {
    fn new(app: &App, args: &RunArgs) -> Self {
        Self {
            app: args.file.display().to_string(),
            kind: app.kind,
            digest: app.digest.clone(),
            origin: app.origin,
            load_ms: ms(app.load_time),
            input: args.input.display().to_string(),
            input_bytes: 0,
            status: "ok",
            failure: None,
            documents: 0,
            output_bytes: 0,
            fuel: 0,
            host_calls: 0,
            logs_dropped: 0,
            duration_ms: 0.0,
            peak_rss_mib: None,
            quality: None,
            messages: 0,
            failed_messages: BTreeMap::new(),
        }
    }

    fn record(&mut self, usage: Usage) {
        self.documents += usage.documents;
        self.output_bytes += usage.output_bytes;
        self.fuel += usage.fuel;
        self.host_calls += usage.host_calls;
        self.logs_dropped += usage.logs_dropped;
        self.duration_ms += ms(usage.duration);
    }

    /// Marks the run failed and counts what the failed call used.
    fn fail(&mut self, failure: Failure) {
        self.status = "failed";
        self.failure = Some(FailureReport {
            class: failure.class,
            message: failure.message,
            stderr: failure.usage.stderr.clone(),
        });
        self.record(*failure.usage);
    }

    fn message_failed(&mut self, id: &str, class: FailureClass, reason: &str) {
        *self.failed_messages.entry(class).or_default() += 1;
        eprintln!("message {id}: {class}: {}", one_line(reason));
    }

    fn print(&self, json: bool) -> Result<()> {
        if json {
            eprintln!("{}", serde_json::to_string(self)?);
            return Ok(());
        }
        let origin = match self.origin {
            crate::runtime::Origin::Cached => "from cache",
            crate::runtime::Origin::Compiled => "compiled",
        };
        eprintln!(
            "app {} ({} app, sha256:{}…, {origin} in {:.1} ms)",
            self.app,
            self.kind,
            &self.digest[..12],
            self.load_ms
        );
        let seconds = self.duration_ms / 1000.0;
        eprintln!(
            "{}: {} documents ({:.1} MiB JSON) from {} ({:.1} MiB) in {:.2} s: {:.0} documents/s, {:.1} MiB/s in",
            self.status,
            self.documents,
            self.output_bytes as f64 / 1048576.0,
            self.input,
            self.input_bytes as f64 / 1048576.0,
            seconds,
            self.documents as f64 / seconds.max(1e-9),
            self.input_bytes as f64 / 1048576.0 / seconds.max(1e-9),
        );
        eprintln!(
            "fuel {}, host calls {}, logs dropped {}, peak RSS {}",
            self.fuel,
            self.host_calls,
            self.logs_dropped,
            self.peak_rss_mib
                .map_or("unknown".to_owned(), |m| format!("{m:.1} MiB"))
        );
        if let Some(quality) = &self.quality {
            eprintln!(
                "quality: {} records, {} bad",
                quality.records_in, quality.records_bad
            );
            for v in &quality.violations {
                eprintln!(
                    "  {}: {} (e.g. {})",
                    v.rule,
                    v.count,
                    v.example.as_deref().unwrap_or("-")
                );
            }
        }
        if self.messages > 0 {
            let failed: u64 = self.failed_messages.values().sum();
            let by_class: Vec<String> = self
                .failed_messages
                .iter()
                .map(|(class, n)| format!("{class} {n}"))
                .collect();
            eprintln!(
                "messages: {}, ok {}, failed {failed} ({})",
                self.messages,
                self.messages - failed,
                by_class.join(", ")
            );
        }
        if let Some(failure) = &self.failure {
            eprintln!("failure: {}: {}", failure.class, failure.message);
            if !failure.stderr.trim().is_empty() {
                eprintln!("app stderr:\n{}", failure.stderr.trim_end());
            }
        }
        Ok(())
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
