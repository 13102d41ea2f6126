//! Batch workers: each takes a job from the queue, streams the staged file through the
//! tenant's pinned app version in the sandbox, writes the documents into the tenant's coredms
//! with deterministic ids (a replay never duplicates), and settles the job by failure class:
//! done → the file is deleted or archived; reject or a limit violation → failed, the file
//! quarantined with the reason; the app's retry → retried with backoff, then dead-lettered; a
//! service of the platform's unreachable (its database, the tenant's coredms, the registry) →
//! `waiting`, looked at again with backoff, no attempt spent. Every attempt is logged in the
//! ingestion log.
//!
//! A job's ending is recorded in its durable record first, then its file is moved, then the
//! queue is told: a crash or an outage between any two steps leaves a state the next attempt
//! (or the reconciler) finishes — an attempt that finds its record ended only repeats the
//! moves and the queue's settle, never the ingestion.

use super::queue::{Claim, JobQueue, JobSpec, Outcome};
use super::staging::{OpenError, Staging};
use crate::app_store::{AdmitError, AppStore};
use crate::config::{BatchConfig, SandboxLimits};
use crate::metrics::Metrics;
use crate::platform::{
    JobRecord, LogEntry, LogWriter, Platform, StoreError, TenantRecord, TenantStatus,
};
use crate::profile::AfterSuccess;
use crate::runtime::{App, BatchInput, CallOptions, FailureClass, OutputBatch, Quality, Usage};
use crate::sink::{
    BulkWriter, Refusal, Sink, SinkResolver, SinkTarget, WriteError, stored_document,
};
use mongodb::bson::{self, DateTime};
use mysimbdp_api::JobStatus;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// How long a suspended tenant's job waits before it is looked at again.
const SUSPENDED_BACKOFF: Duration = Duration::from_secs(30);
/// The longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How often an idle worker looks for work (and reaps).
const POLL: Duration = Duration::from_millis(200);
/// The first delay of a job waiting for the platform; it doubles with each wait.
const WAIT_BACKOFF: Duration = Duration::from_secs(1);
/// The longest delay of a job waiting for the platform.
const MAX_WAIT_BACKOFF: Duration = Duration::from_secs(30);
/// The first pause before settling again after Redis or MongoDB failed; it doubles.
const SETTLE_RETRY: Duration = Duration::from_millis(250);
/// The longest pause between two tries to settle.
const MAX_SETTLE_RETRY: Duration = Duration::from_secs(5);

/// What workers need.
pub struct BatchContext {
    /// The queue.
    pub queue: JobQueue,
    /// The staging area.
    pub staging: Staging,
    /// The platform database.
    pub platform: Platform,
    /// App loading.
    pub apps: Arc<AppStore>,
    /// Sink resolution.
    pub sinks: Arc<SinkResolver>,
    /// Settings.
    pub config: BatchConfig,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// The ingestion log, written in the background (kept while MongoDB is away).
    pub log: LogWriter,
}

/// How one attempt ended, before it is settled.
enum Ended {
    Done {
        usage: Usage,
        quality: bson::Document,
        written: Written,
    },
    Failed {
        class: FailureClass,
        message: String,
        usage: Usage,
        written: Written,
    },
    Transient {
        reason: String,
        written: Written,
    },
    /// A service of the platform's is unreachable: not the job's fault.
    Waiting {
        reason: String,
        written: Written,
    },
    Deferred {
        reason: String,
    },
}

/// What an attempt wrote, whatever its outcome: the job record counts what landed.
#[derive(Debug, Default, Clone)]
struct Written {
    inserted: u64,
    duplicates: u64,
    /// Documents refused as they were emitted (`bad-output`), never retried.
    refused: u64,
    /// The first refusal, for the log.
    first_refusal: Option<Refusal>,
}

impl Written {
    fn of(writer: &BulkWriter) -> Self {
        Self {
            inserted: writer.inserted,
            duplicates: writer.duplicates,
            refused: writer.refused,
            first_refusal: writer.refusals.first().cloned(),
        }
    }

    /// What the log says about refused documents, if any were.
    fn refusal_note(&self) -> Option<String> {
        self.first_refusal.as_ref().map(|first| {
            format!(
                "{} documents refused as bad-output (the others were written); the first, \
                 document {}: {}",
                self.refused, first.index, first.reason
            )
        })
    }
}

/// Starts `count` workers named after `host`; they stop taking jobs when `stop` turns true
/// and finish the job they hold.
pub fn spawn(
    context: Arc<BatchContext>,
    host: &str,
    count: usize,
    stop: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    (0..count)
        .map(|i| {
            let context = context.clone();
            let name = format!("{host}/batch-{i}");
            let stop = stop.clone();
            tokio::spawn(async move { run(context, name, stop).await })
        })
        .collect()
}

async fn run(context: Arc<BatchContext>, name: String, mut stop: watch::Receiver<bool>) {
    tracing::info!(worker = %name, "batch worker started");
    // While Redis is away every look fails: say so when it starts and when it ends, not once
    // a second.
    let mut failing = false;
    while !*stop.borrow() {
        let reaped = context.queue.tick().await;
        let looked = context.queue.claim(&name).await;
        let trouble = reaped.err().map(|e| format!("{e:#}"));
        match trouble.or_else(|| looked.as_ref().err().map(|e| format!("{e:#}"))) {
            Some(error) if !failing => {
                tracing::warn!(worker = %name, %error, "cannot reach the job queue; retrying");
                failing = true;
            }
            None if failing => {
                tracing::info!(worker = %name, "the job queue answers again");
                failing = false;
            }
            _ => {}
        }
        let Ok(claim) = looked else {
            tokio::time::sleep(POLL * 5).await;
            continue;
        };
        match claim {
            Some(claim) => execute(&context, &name, claim).await,
            None => {
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }
    tracing::info!(worker = %name, "batch worker stopped");
}

async fn execute(context: &BatchContext, worker: &str, claim: Claim) {
    let started = DateTime::now();
    let (lost_tx, lost) = watch::channel(false);
    // The heartbeat runs until the job is settled, so a settle retried through an outage
    // keeps the claim. Only the queue's "not yours" ends it: while Redis is unreachable nobody
    // can take the job, and once Redis is back (even empty) the next beat knows.
    let heartbeat = {
        let queue = context.queue.clone();
        let claim = claim.clone();
        let period =
            Duration::from_secs(context.config.visibility_secs).max(Duration::from_secs(1)) / 3;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                match queue.heartbeat(&claim).await {
                    Ok(true) => {}
                    Ok(false) => {
                        let _ = lost_tx.send(true);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(job = %claim.id, error = %format!("{e:#}"), "heartbeat failed; keeping the job");
                    }
                }
            }
        })
    };
    let mut place = None;
    let ended = match recorded_ending(context, &claim).await {
        Some(ending) => Some(ending),
        None => {
            let mut abandoned = lost.clone();
            tokio::select! {
                ended = attempt(context, &claim, &mut place) => Some(Ending::Attempt(Box::new(ended))),
                _ = abandoned.changed() => None,
            }
        }
    };
    match ended {
        Some(ending) => settle(context, worker, &claim, ending, started, place, lost).await,
        None => {
            tracing::warn!(%worker, job = %claim.id, "the job was taken from this worker (missed heartbeats, or the queue lost it); abandoning it");
        }
    }
    heartbeat.abort();
}

/// What is settled: an attempt's end, or an ending decided without running.
enum Ending {
    /// The attempt ran (or could not start).
    Attempt(Box<Ended>),
    /// An earlier attempt recorded this terminal ending but did not finish settling (it
    /// crashed, or Redis was away): only its file moves and the queue's settle are left.
    Recorded {
        status: JobStatus,
        error: Option<String>,
    },
}

/// Reads the job's durable record: ended already → that ending, nothing runs; unreadable →
/// the job waits for the platform database (running it blind could redo a finished job whose
/// file is gone); open → `None`, the attempt runs. An open job is marked `running` (best
/// effort: the record is for display until it ends).
async fn recorded_ending(context: &BatchContext, claim: &Claim) -> Option<Ending> {
    match context.platform.job_record(&claim.id).await {
        Ok(Some(job)) if job.status.is_terminal() => Some(Ending::Recorded {
            status: job.status,
            error: job.error,
        }),
        Ok(found) => {
            if found.is_some()
                && let Err(e) = context
                    .platform
                    .note_job(&claim.id, JobStatus::Running, claim.attempt, None)
                    .await
            {
                tracing::warn!(job = %claim.id, error = %e, "could not mark the job running");
            }
            None
        }
        Err(e) => Some(Ending::Attempt(Box::new(Ended::Waiting {
            reason: format!("the platform database: {e}"),
            written: Written::default(),
        }))),
    }
}

/// Where an attempt wrote: the collection and the resolved coredms.
type Place = Option<(String, SinkTarget)>;

/// What a job runs with, once everything it names has been looked up.
struct Prepared {
    tenant: TenantRecord,
    app: Arc<App>,
    limits: SandboxLimits,
    sink: Arc<Sink>,
}

/// One attempt at a job: look up what it needs, run the staged file through the app while a
/// writer stores what it emits, and say how it ended. `place` learns where it wrote as soon as
/// that is known, so even a failed attempt's log names its sink.
async fn attempt(context: &BatchContext, claim: &Claim, place: &mut Place) -> Ended {
    let spec = &claim.spec;
    let prepared = match prepare(context, spec).await {
        Ok(prepared) => prepared,
        Err(ended) => return ended,
    };
    let tenant = &prepared.tenant;
    *place = Some((
        tenant.profile.sink.collection.clone(),
        prepared.sink.target.clone(),
    ));
    let file = match context.staging.open(&tenant.id, &spec.file).await {
        Ok(file) => file,
        Err(OpenError::Gone(e)) => return host_failure(format!("the staged file is gone: {e:#}")),
        // The store (GridFS's MongoDB) is away: the job waits for it, spending no attempt.
        Err(OpenError::Store(e)) => {
            return unreachable("reading the staged file", &format!("{e:#}"));
        }
    };
    let input = BatchInput {
        name: spec.name.clone(),
        size: spec.size,
        content_type: spec.content_type.clone(),
        reader: file,
    };
    let options = CallOptions {
        label: format!(
            "{}/{}@{} job {}",
            tenant.id,
            spec.app,
            crate::app_store::short(&spec.version),
            claim.id
        ),
        params: Arc::new(spec.params.clone()),
        limits: prepared.limits.clone(),
    };
    // The channel holds one batch: with the one being converted and the writer's
    // byte-bounded buffer, that bounds what a job holds; a slow sink slows the app down.
    let (sender, batches) = mpsc::channel::<OutputBatch>(1);
    let writer = spawn_writer(context, &prepared, spec, batches);
    let ran = context
        .apps
        .runtime()
        .run_batch(&prepared.app, input, &options, sender)
        .await;
    let written = match writer.await {
        Ok((written, Ok(()))) => written,
        Ok((written, Err(WriteError::Infra(e)))) => {
            context.sinks.forget(&tenant.id);
            return Ended::Waiting {
                reason: format!("writing to the tenant's coredms: {e}"),
                written,
            };
        }
        Err(e) => return infrastructure("the document writer", &e),
    };
    match ran {
        Ok(report) => Ended::Done {
            quality: quality_record(&report.quality),
            usage: report.usage,
            written,
        },
        Err(failure) if failure.class.is_retryable() => Ended::Transient {
            reason: format!("{}: {}", failure.class, failure.message),
            written,
        },
        Err(failure) => Ended::Failed {
            class: failure.class,
            message: failure.message,
            usage: *failure.usage,
            written,
        },
    }
}

/// Looks up what the job names: its tenant (a suspended one defers it), the app and the
/// pinned version (gone ones fail it), the loaded component and the tenant's sink (trouble
/// reaching them makes the job wait for the platform).
async fn prepare(context: &BatchContext, spec: &JobSpec) -> Result<Prepared, Ended> {
    let tenant = match context.platform.tenant(&spec.tenant).await {
        Ok(tenant) => tenant,
        Err(StoreError::NotFound(_)) => {
            return Err(host_failure(format!(
                "tenant {:?} no longer exists",
                spec.tenant
            )));
        }
        Err(e) => return Err(unreachable("the platform database", &e)),
    };
    if tenant.status == TenantStatus::Suspended {
        return Err(Ended::Deferred {
            reason: "the tenant is suspended: its work is paused".to_owned(),
        });
    }
    let record = match context.platform.app(&tenant.id, &spec.app).await {
        Ok(record) => record,
        Err(StoreError::NotFound(_)) => {
            return Err(host_failure(format!("app {:?} no longer exists", spec.app)));
        }
        Err(e) => return Err(unreachable("the platform database", &e)),
    };
    let version = match context
        .platform
        .version(&tenant.id, &spec.app, &spec.version)
        .await
    {
        Ok(version) => version,
        Err(StoreError::NotFound(_)) => {
            return Err(host_failure(format!(
                "version {} of app {:?} no longer exists",
                spec.version, spec.app
            )));
        }
        Err(e) => return Err(unreachable("the platform database", &e)),
    };
    let app = match context.apps.load(&version).await {
        Ok(app) => app,
        Err(AdmitError::Refused(failure)) => return Err(host_failure(failure.message)),
        Err(AdmitError::Store(e)) => return Err(unreachable("loading the app", &e)),
    };
    let sink = match context.sinks.resolve(&tenant).await {
        Ok(sink) => sink,
        Err(e) => return Err(unreachable("the tenant's coredms", &e)),
    };
    let limits = context.apps.version_limits(&tenant, &record, &version);
    Ok(Prepared {
        tenant,
        app,
        limits,
        sink,
    })
}

/// The task that turns each emitted batch into BSON with deterministic ids and writes it while
/// the app goes on. A document that cannot be stored as emitted is refused alone: its
/// neighbours land. It answers with what it wrote and how the writing ended.
fn spawn_writer(
    context: &BatchContext,
    prepared: &Prepared,
    spec: &JobSpec,
    mut batches: mpsc::Receiver<OutputBatch>,
) -> JoinHandle<(Written, Result<(), WriteError>)> {
    let sink_settings = &prepared.tenant.profile.sink;
    let mut writer = BulkWriter::new(
        prepared.sink.clone(),
        sink_settings.collection.clone(),
        sink_settings.write_concern,
        sink_settings.insert_batch,
        context.sinks.write_buffer_bytes(),
    )
    .writes_in_flight(context.sinks.writes_in_flight());
    let ids = spec.ids.ids(&prepared.tenant.id, &spec.file);
    tokio::spawn(async move {
        let mut result = Ok(());
        'batches: while let Some(batch) = batches.recv().await {
            for (i, document) in batch.documents.into_iter().enumerate() {
                let index = batch.first_index + i as u64;
                match stored_document(&ids, index, &document.json, document.id.as_deref()) {
                    Ok(stored) => {
                        if let Err(e) = writer.push(index, stored).await {
                            result = Err(e);
                            break 'batches;
                        }
                    }
                    Err(reason) => writer.refuse(index, reason),
                }
            }
        }
        if result.is_ok() {
            result = writer.flush().await;
        }
        (Written::of(&writer), result)
    })
}

/// A failure the host declares (something the job names is gone or refused): never retried.
fn host_failure(message: String) -> Ended {
    Ended::Failed {
        class: FailureClass::HostError,
        message,
        usage: Usage::default(),
        written: Written::default(),
    }
}

/// A fault of the host's own (its document writer died): retried, spending an attempt.
fn infrastructure(what: &str, error: &dyn std::fmt::Display) -> Ended {
    Ended::Transient {
        reason: format!("{what}: {error}"),
        written: Written::default(),
    }
}

/// A service of the platform's unreachable: the job waits for it, spending no attempt.
fn unreachable(what: &str, error: &dyn std::fmt::Display) -> Ended {
    Ended::Waiting {
        reason: format!("{what}: {error}"),
        written: Written::default(),
    }
}

/// Violations a job record keeps; past this they are counted in `violations_dropped`.
const MAX_VIOLATIONS: usize = 100;
/// Bytes of an example a job record keeps (cut at a character boundary, `…` added).
const MAX_EXAMPLE_BYTES: usize = 256;

/// The app's quality report as the job record stores it, bounded whatever the app says: at
/// most [`MAX_VIOLATIONS`] rules with examples of at most [`MAX_EXAMPLE_BYTES`], counts
/// past BSON's integers saturated (never silently dropped).
fn quality_record(quality: &Quality) -> bson::Document {
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let violations: Vec<bson::Document> = quality
        .violations
        .iter()
        .take(MAX_VIOLATIONS)
        .map(|v| {
            let mut violation = bson::doc! {
                "rule": shorten(&v.rule, MAX_EXAMPLE_BYTES),
                "count": count(v.count),
            };
            if let Some(example) = &v.example {
                violation.insert("example", shorten(example, MAX_EXAMPLE_BYTES));
            }
            violation
        })
        .collect();
    bson::doc! {
        "records_in": count(quality.records_in),
        "records_bad": count(quality.records_bad),
        "violations": violations,
        "violations_dropped": count(quality.violations.len().saturating_sub(MAX_VIOLATIONS) as u64),
    }
}

/// `text` cut to at most `max` bytes at a character boundary, marked with `…` when cut.
fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// How a job is settled: what the queue is told and what the ingestion log records.
struct Settlement {
    outcome: Outcome,
    /// The job's status for the record, the log and the metrics.
    status: JobStatus,
    /// The failure class the job record keeps.
    class: Option<FailureClass>,
    error: Option<String>,
    usage: Usage,
    quality: Option<bson::Document>,
    written: Written,
}

/// Settles a job in three steps, each retried through outages of its service for as long as
/// the claim is this worker's: an ending is recorded in the durable record first (the first
/// ending recorded wins), then the staged file moves as the ending says, then the queue
/// learns it. A job that goes on (retry, wait, pause) tells the queue first, then notes its
/// progress in the record. The ingestion log and the metrics follow.
async fn settle(
    context: &BatchContext,
    worker: &str,
    claim: &Claim,
    ending: Ending,
    started: DateTime,
    place: Place,
    lost: watch::Receiver<bool>,
) {
    let (mut settlement, attempted) = match ending {
        Ending::Attempt(ended) => (settlement(context, claim, *ended), true),
        Ending::Recorded { status, error } => (recorded(status, error), false),
    };
    // What ran is logged and counted however the settling goes: the documents it wrote are
    // in the coredms either way. A wait that wrote nothing is in the job's record and the
    // queue only: an outage must not flood the log with one entry per look.
    let wrote = settlement.written.inserted + settlement.written.duplicates > 0;
    let entry = (attempted && (settlement.status != JobStatus::Waiting || wrote))
        .then(|| log_entry(claim, &settlement, started, place));
    if let Some(entry) = &entry {
        let spec = &claim.spec;
        context.metrics.batch_job(
            &spec.tenant,
            settlement.status,
            settlement.written.inserted,
            spec.size,
        );
        if !settlement.status.is_terminal() {
            context.log.write(entry.clone());
        }
    }
    if !settlement.status.is_terminal() {
        if settle_in_queue(context, worker, claim, &settlement, &lost).await
            && let Err(e) = context
                .platform
                .note_job(
                    &claim.id,
                    settlement.status,
                    claim.attempt,
                    settlement.error.as_deref(),
                )
                .await
        {
            tracing::warn!(job = %claim.id, error = %e, "could not note the job's progress in its record");
        }
        return;
    }
    // An ending's log entry is written before the ending is recorded, so a job seen ended
    // always has its last attempt's log (and a crash in between only logs a rerun too).
    if let Some(entry) = &entry
        && !log_now(context, claim, entry, &lost).await
    {
        return;
    }
    let Some(ended_as) = record_ending(context, claim, &settlement, &lost).await else {
        return;
    };
    if ended_as != settlement.status {
        // Another attempt ended the job first: that ending stands.
        tracing::info!(job = %claim.id, status = %ended_as, "the job had already ended");
        settlement = Settlement {
            written: settlement.written,
            ..recorded(ended_as, settlement.error)
        };
    }
    move_file(context, claim, &settlement).await;
    settle_in_queue(context, worker, claim, &settlement, &lost).await;
}

/// Writes an ending's log entry, retrying while the platform database is away; false when
/// the claim was lost meanwhile.
async fn log_now(
    context: &BatchContext,
    claim: &Claim,
    entry: &LogEntry,
    lost: &watch::Receiver<bool>,
) -> bool {
    let mut pause = SETTLE_RETRY;
    loop {
        match context.platform.log_ingestion(entry).await {
            Ok(()) => return true,
            Err(e) => {
                tracing::warn!(job = %claim.id, error = %e, "cannot write the ingestion log; retrying");
            }
        }
        if !pause_unless_lost(lost, &mut pause).await {
            return false;
        }
    }
}

/// What `ended` settles as. A retryable failure of the last attempt dead-letters the job.
fn settlement(context: &BatchContext, claim: &Claim, ended: Ended) -> Settlement {
    let quiet = |outcome, status, class, error: Option<String>, written| Settlement {
        outcome,
        status,
        class,
        error,
        usage: Usage::default(),
        quality: None,
        written,
    };
    match ended {
        Ended::Done {
            usage,
            quality,
            written,
        } => Settlement {
            outcome: Outcome::Done,
            status: JobStatus::Done,
            class: None,
            error: None,
            usage,
            quality: Some(quality),
            written,
        },
        Ended::Failed {
            class,
            message,
            usage,
            written,
        } => {
            let reason = format!("{class}: {message}");
            Settlement {
                outcome: Outcome::Fail {
                    reason: reason.clone(),
                },
                status: JobStatus::Failed,
                class: Some(class),
                error: Some(reason),
                usage,
                quality: None,
                written,
            }
        }
        Ended::Transient { reason, written } if claim.is_last() => quiet(
            Outcome::Dead {
                reason: reason.clone(),
            },
            JobStatus::Dead,
            Some(FailureClass::Retry),
            Some(reason),
            written,
        ),
        Ended::Transient { reason, written } => quiet(
            Outcome::Retry {
                reason: reason.clone(),
                backoff: retry_backoff(&context.config, claim.attempt),
            },
            JobStatus::Retrying,
            Some(FailureClass::Retry),
            Some(reason),
            written,
        ),
        Ended::Waiting { reason, written } => quiet(
            Outcome::Wait {
                reason: format!("waiting for the platform: {reason}"),
                backoff: WAIT_BACKOFF,
                max_backoff: MAX_WAIT_BACKOFF,
            },
            JobStatus::Waiting,
            None,
            Some(format!("waiting for the platform: {reason}")),
            written,
        ),
        Ended::Deferred { reason } => quiet(
            Outcome::Defer {
                reason: reason.clone(),
                backoff: SUSPENDED_BACKOFF,
            },
            JobStatus::Paused,
            None,
            Some(reason),
            Written::default(),
        ),
    }
}

/// The settlement of an ending already recorded (by an earlier attempt or another worker).
fn recorded(status: JobStatus, error: Option<String>) -> Settlement {
    let reason = error.clone().unwrap_or_default();
    let outcome = match status {
        JobStatus::Failed => Outcome::Fail { reason },
        JobStatus::Dead => Outcome::Dead { reason },
        _ => Outcome::Done,
    };
    Settlement {
        outcome,
        status,
        class: None,
        error,
        usage: Usage::default(),
        quality: None,
        written: Written::default(),
    }
}

/// Records a terminal ending in the job's durable record, retrying while the platform
/// database is away, and answers the ending the record holds (the first one recorded).
/// `None` when the claim was lost meanwhile: the job is someone else's now. A job without a
/// record (queued before records existed) keeps its own ending.
async fn record_ending(
    context: &BatchContext,
    claim: &Claim,
    settlement: &Settlement,
    lost: &watch::Receiver<bool>,
) -> Option<JobStatus> {
    let mut pause = SETTLE_RETRY;
    loop {
        match context
            .platform
            .finish_job(
                &claim.id,
                settlement.status,
                claim.attempt,
                settlement.error.as_deref(),
            )
            .await
        {
            Ok(ended_as) => return Some(ended_as.unwrap_or(settlement.status)),
            Err(e) => {
                tracing::warn!(job = %claim.id, error = %e, "cannot record the job's ending; retrying");
            }
        }
        if !pause_unless_lost(lost, &mut pause).await {
            return None;
        }
    }
}

/// Sleeps `pause` (then doubles it, capped); false when the claim was lost meanwhile.
async fn pause_unless_lost(lost: &watch::Receiver<bool>, pause: &mut Duration) -> bool {
    let mut lost = lost.clone();
    if *lost.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(*pause) => {}
        _ = lost.changed() => {}
    }
    *pause = (*pause * 2).min(MAX_SETTLE_RETRY);
    !*lost.borrow()
}

/// Moves the staged file of an ended job: ingested → deleted or archived as the profile says;
/// failed → quarantined with the reason; dead → left staged for a replay. A file already moved
/// (by an earlier attempt that recorded the same ending) is fine.
async fn move_file(context: &BatchContext, claim: &Claim, settlement: &Settlement) {
    let spec = &claim.spec;
    match context.staging.exists(&spec.tenant, &spec.file).await {
        Ok(true) => {}
        // Moved by an earlier attempt that recorded the same ending.
        Ok(false) => return,
        Err(e) => {
            tracing::warn!(job = %claim.id, error = %format!("{e:#}"), "the staged file could not be looked up; it stays where it is");
            return;
        }
    }
    match settlement.status {
        JobStatus::Done => {
            let after = after_success(context, claim).await;
            dispose_ingested(&context.staging, claim, after).await;
        }
        JobStatus::Failed => {
            let reason = settlement.error.as_deref().unwrap_or_default();
            if let Err(e) = context
                .staging
                .quarantine(&spec.tenant, &spec.file, reason)
                .await
            {
                tracing::warn!(job = %claim.id, error = %format!("{e:#}"), "the file could not be quarantined");
            }
        }
        _ => {}
    }
}

/// The delay before attempt `attempt + 1`: doubling from `retry_backoff_ms`, capped.
fn retry_backoff(config: &BatchConfig, attempt: u32) -> Duration {
    (Duration::from_millis(config.retry_backoff_ms)
        * 2u32.saturating_pow(attempt.saturating_sub(1)))
    .min(MAX_BACKOFF)
}

/// What the tenant's profile says to do with an ingested file, or `None` when the profile
/// cannot be read.
async fn after_success(context: &BatchContext, claim: &Claim) -> Option<AfterSuccess> {
    match context.platform.tenant(&claim.spec.tenant).await {
        Ok(tenant) => Some(tenant.profile.batch.after_success),
        Err(e) => {
            tracing::warn!(
                job = %claim.id,
                tenant = %claim.spec.tenant,
                error = %e,
                "the tenant's profile could not be read; the ingested file stays staged"
            );
            None
        }
    }
}

/// Deletes or archives the ingested file as `after` says. With no disposition (the profile
/// could not be read) the file stays staged: the profile may say archive, and a guess of
/// delete would destroy the tenant's only copy; a file left staged costs disk, not data.
async fn dispose_ingested(staging: &Staging, claim: &Claim, after: Option<AfterSuccess>) {
    let spec = &claim.spec;
    let moved = match after {
        Some(AfterSuccess::Delete) => staging.remove(&spec.tenant, &spec.file).await,
        Some(AfterSuccess::Archive) => staging.archive(&spec.tenant, &spec.file).await,
        None => return,
    };
    if let Err(e) = moved {
        tracing::warn!(job = %claim.id, error = %format!("{e:#}"), "the ingested file could not be cleaned up");
    }
}

/// Tells the queue how the attempt ended, retrying while Redis is unreachable; false when the
/// job was no longer this claim's (reaped, or lost with Redis's data: the record and the
/// reconciler take it from there).
async fn settle_in_queue(
    context: &BatchContext,
    worker: &str,
    claim: &Claim,
    settlement: &Settlement,
    lost: &watch::Receiver<bool>,
) -> bool {
    let mut pause = SETTLE_RETRY;
    loop {
        match context.queue.settle(claim, &settlement.outcome).await {
            Ok(true) => {
                tracing::info!(
                    %worker,
                    job = %claim.id,
                    status = %settlement.status,
                    documents = settlement.written.inserted,
                    error = %settlement.error.as_deref().unwrap_or_default(),
                    "batch job settled"
                );
                return true;
            }
            Ok(false) => {
                tracing::warn!(%worker, job = %claim.id, "the job was no longer this worker's to settle");
                return false;
            }
            Err(e) => {
                tracing::warn!(%worker, job = %claim.id, error = %format!("{e:#}"), "settling in the queue failed; retrying");
            }
        }
        if !pause_unless_lost(lost, &mut pause).await {
            return false;
        }
    }
}

/// The ingestion log's record of a settled attempt.
fn log_entry(claim: &Claim, settlement: &Settlement, started: DateTime, place: Place) -> LogEntry {
    let spec = &claim.spec;
    let Settlement {
        status,
        class,
        error,
        usage,
        quality,
        written,
        ..
    } = settlement;
    let (collection, target) = place.unzip();
    LogEntry {
        tenant: spec.tenant.clone(),
        source: "batch".to_owned(),
        collection: collection.unwrap_or_default(),
        database: target
            .as_ref()
            .map(|t| t.database.clone())
            .unwrap_or_default(),
        coredms: target
            .and_then(|t| t.service_id)
            .unwrap_or_else(|| "shared".to_owned()),
        documents: written.inserted as i64,
        duplicates: written.duplicates as i64,
        rejected: written.refused as i64,
        bytes: spec.size as i64,
        started_at: started,
        ended_at: DateTime::now(),
        status: status.as_str().to_owned(),
        error: error.clone().or_else(|| written.refusal_note()),
        job: Some(JobRecord {
            id: claim.id.clone(),
            attempt: i64::from(claim.attempt),
            file: spec.name.clone(),
            app: spec.app.clone(),
            version: spec.version.clone(),
            fuel: usage.fuel as i64,
            error_class: *class,
            quality: quality.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::JobSpec;
    use crate::runtime::bindings::Violation;

    fn claim_of(tenant: &str, file: &str) -> Claim {
        Claim {
            id: "0123456789abcdef01234567".to_owned(),
            attempt: 1,
            max_attempts: 3,
            token: "token".to_owned(),
            spec: JobSpec {
                tenant: tenant.to_owned(),
                app: "csv".to_owned(),
                version: "digest".to_owned(),
                file: file.to_owned(),
                name: "rows.csv".to_owned(),
                size: 4,
                content_type: None,
                params: Default::default(),
                ids: Default::default(),
            },
        }
    }

    #[tokio::test]
    async fn an_unreadable_disposition_keeps_the_ingested_file() {
        let dir = std::env::temp_dir().join(format!(
            "mysimbdp-worker-test-{}-{}",
            std::process::id(),
            DateTime::now().timestamp_millis()
        ));
        let staging = Staging::local(&dir).unwrap();
        let bytes =
            futures_util::stream::iter([Ok::<_, String>(bytes::Bytes::from_static(b"a,b\n"))]);
        let file = staging.stage("acme", bytes, 100).await.unwrap();
        let claim = claim_of("acme", &file.id);
        // The profile could not be read: whatever it says, the file stays.
        dispose_ingested(&staging, &claim, None).await;
        assert!(staging.exists("acme", &file.id).await.unwrap());
        // A readable `delete` removes it.
        dispose_ingested(&staging, &claim, Some(AfterSuccess::Delete)).await;
        assert!(!staging.exists("acme", &file.id).await.unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn quality_records_are_bounded_whatever_the_app_reports() {
        let quality = Quality {
            records_in: u64::MAX,
            records_bad: 3,
            violations: (0..2100)
                .map(|i| Violation {
                    rule: format!("rule-{i}"),
                    count: u64::MAX,
                    example: Some("é".repeat(4096)),
                })
                .collect(),
        };
        let record = quality_record(&quality);
        assert_eq!(record.get_i64("records_in").unwrap(), i64::MAX);
        assert_eq!(record.get_i64("records_bad").unwrap(), 3);
        assert_eq!(record.get_i64("violations_dropped").unwrap(), 2000);
        let violations = record.get_array("violations").unwrap();
        assert_eq!(violations.len(), MAX_VIOLATIONS);
        let first = violations[0].as_document().unwrap();
        assert_eq!(first.get_i64("count").unwrap(), i64::MAX);
        let example = first.get_str("example").unwrap();
        assert!(
            example.len() <= MAX_EXAMPLE_BYTES + "…".len(),
            "{}",
            example.len()
        );
        assert!(mongodb::bson::to_vec(&record).unwrap().len() < 64 * 1024);
    }
}
