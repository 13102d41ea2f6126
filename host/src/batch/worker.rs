//! Batch workers: each takes a job from the queue, streams the staged file through the
//! tenant's pinned app version in the sandbox, writes the documents into the tenant's coredms
//! with deterministic ids (a replay never duplicates), and settles the job by failure class:
//! done → the file is deleted or archived; reject or a limit violation → failed, the file
//! quarantined with the reason; retry or an infrastructure error → retried with backoff, then
//! dead-lettered. Every attempt is logged in the ingestion log.

use super::queue::{Claim, JobQueue, Outcome};
use super::staging::Staging;
use crate::api::Metrics;
use crate::app_store::{AdmitError, AppStore};
use crate::config::BatchConfig;
use crate::platform::{JobRecord, LogEntry, Platform, StoreError, TenantStatus};
use crate::profile::AfterSuccess;
use crate::runtime::{BatchInput, CallOptions, FailureClass, OutputBatch, Quality, Usage};
use crate::sink::{BulkWriter, Refusal, SinkResolver, SinkTarget, WriteError, stored_document};
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
    while !*stop.borrow() {
        if let Err(e) = context.queue.tick().await {
            tracing::warn!(worker = %name, error = %format!("{e:#}"), "reaping failed");
        }
        match context.queue.claim(&name).await {
            Ok(Some(claim)) => execute(&context, &name, claim).await,
            Ok(None) => {
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = stop.changed() => {}
                }
            }
            Err(e) => {
                tracing::warn!(worker = %name, error = %format!("{e:#}"), "cannot claim a job");
                tokio::time::sleep(POLL * 5).await;
            }
        }
    }
    tracing::info!(worker = %name, "batch worker stopped");
}

async fn execute(context: &BatchContext, worker: &str, claim: Claim) {
    let started = DateTime::now();
    let (lost_tx, mut lost) = watch::channel(false);
    let heartbeat = {
        let queue = context.queue.clone();
        let claim = claim.clone();
        let period =
            Duration::from_secs(context.config.visibility_secs).max(Duration::from_secs(1)) / 3;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                if !matches!(queue.heartbeat(&claim).await, Ok(true)) {
                    let _ = lost_tx.send(true);
                    return;
                }
            }
        })
    };
    let mut place = None;
    let ended = tokio::select! {
        ended = attempt(context, &claim, &mut place) => Some(ended),
        _ = lost.changed() => None,
    };
    heartbeat.abort();
    let Some(ended) = ended else {
        tracing::warn!(%worker, job = %claim.id, "the job was taken from this worker (missed heartbeats); abandoning it");
        return;
    };
    settle(context, worker, &claim, ended, started, place).await;
}

/// Where an attempt wrote: the collection and the resolved coredms.
type Place = Option<(String, SinkTarget)>;

async fn attempt(context: &BatchContext, claim: &Claim, place: &mut Place) -> Ended {
    let spec = &claim.spec;
    let infra = |what: &str, e: &dyn std::fmt::Display| Ended::Transient {
        reason: format!("{what}: {e}"),
        written: Written::default(),
    };
    let fail = |message: String| Ended::Failed {
        class: FailureClass::HostError,
        message,
        usage: Usage::default(),
        written: Written::default(),
    };
    let tenant = match context.platform.tenant(&spec.tenant).await {
        Ok(tenant) => tenant,
        Err(StoreError::NotFound(_)) => {
            return fail(format!("tenant {:?} no longer exists", spec.tenant));
        }
        Err(e) => return infra("the platform database", &e),
    };
    if tenant.status == TenantStatus::Suspended {
        return Ended::Deferred {
            reason: "the tenant is suspended: its work is paused".to_owned(),
        };
    }
    let record = match context.platform.app(&tenant.id, &spec.app).await {
        Ok(record) => record,
        Err(StoreError::NotFound(_)) => {
            return fail(format!("app {:?} no longer exists", spec.app));
        }
        Err(e) => return infra("the platform database", &e),
    };
    let version = match context
        .platform
        .version(&tenant.id, &spec.app, &spec.version)
        .await
    {
        Ok(version) => version,
        Err(StoreError::NotFound(_)) => {
            return fail(format!(
                "version {} of app {:?} no longer exists",
                spec.version, spec.app
            ));
        }
        Err(e) => return infra("the platform database", &e),
    };
    let app = match context.apps.load(&version).await {
        Ok(app) => app,
        Err(AdmitError::Refused(failure)) => return fail(failure.message),
        Err(AdmitError::Store(e)) => return infra("loading the app", &e),
    };
    let sink = match context.sinks.resolve(&tenant).await {
        Ok(sink) => sink,
        Err(e) => return infra("the tenant's coredms", &e),
    };
    *place = Some((tenant.profile.sink.collection.clone(), sink.target.clone()));
    let file = match context.staging.open(&tenant.id, &spec.file).await {
        Ok(file) => file,
        Err(e) => return fail(format!("the staged file is gone: {e:#}")),
    };
    let input = BatchInput {
        name: spec.name.clone(),
        size: spec.size,
        content_type: spec.content_type.clone(),
        reader: Box::new(file),
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
        limits: context.apps.app_limits(&tenant, &record),
    };
    // The writer turns each emitted batch into BSON with deterministic ids and writes it
    // while the app goes on. The channel holds one batch: with the one being converted and
    // the writer's byte-bounded buffer, that bounds what a job holds; a slow sink slows the
    // app down. A document that cannot be stored as emitted is refused alone: its neighbours
    // land.
    let (sender, mut batches) = mpsc::channel::<OutputBatch>(1);
    let mut writer = BulkWriter::new(
        sink.clone(),
        tenant.profile.sink.collection.clone(),
        tenant.profile.sink.write_concern,
        tenant.profile.sink.insert_batch,
        context.sinks.write_buffer_bytes(),
    );
    let source = spec.file.clone();
    let tenant_id = tenant.id.clone();
    let writer = tokio::spawn(async move {
        let mut result = Ok(());
        'batches: while let Some(batch) = batches.recv().await {
            for (i, document) in batch.documents.into_iter().enumerate() {
                let index = batch.first_index + i as u64;
                match stored_document(
                    &tenant_id,
                    &source,
                    index,
                    &document.json,
                    document.id.as_deref(),
                ) {
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
    });
    let ran = context
        .apps
        .runtime()
        .run_batch(&app, input, &options, sender)
        .await;
    let written = match writer.await {
        Ok((written, Ok(()))) => written,
        Ok((written, Err(WriteError::Infra(e)))) => {
            context.sinks.forget(&tenant.id);
            return Ended::Transient {
                reason: format!("writing to the tenant's coredms: {e}"),
                written,
            };
        }
        Err(e) => return infra("the document writer", &e),
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

async fn settle(
    context: &BatchContext,
    worker: &str,
    claim: &Claim,
    ended: Ended,
    started: DateTime,
    place: Place,
) {
    let spec = &claim.spec;
    let staging = &context.staging;
    let backoff = (Duration::from_millis(context.config.retry_backoff_ms)
        * 2u32.saturating_pow(claim.attempt.saturating_sub(1)))
    .min(MAX_BACKOFF);
    let (outcome, status, class, error, usage, quality, written) = match ended {
        Ended::Done {
            usage,
            quality,
            written,
        } => {
            let after = context
                .platform
                .tenant(&spec.tenant)
                .await
                .map(|t| t.profile.batch.after_success)
                .unwrap_or_default();
            let moved = match after {
                AfterSuccess::Delete => staging.remove(&spec.tenant, &spec.file).await,
                AfterSuccess::Archive => staging.archive(&spec.tenant, &spec.file).await,
            };
            if let Err(e) = moved {
                tracing::warn!(job = %claim.id, error = %format!("{e:#}"), "the ingested file could not be cleaned up");
            }
            (
                Outcome::Done,
                JobStatus::Done,
                None,
                None,
                usage,
                Some(quality),
                written,
            )
        }
        Ended::Failed {
            class,
            message,
            usage,
            written,
        } => {
            let reason = format!("{class}: {message}");
            if let Err(e) = staging.quarantine(&spec.tenant, &spec.file, &reason).await {
                tracing::warn!(job = %claim.id, error = %format!("{e:#}"), "the file could not be quarantined");
            }
            (
                Outcome::Fail {
                    reason: reason.clone(),
                },
                JobStatus::Failed,
                Some(class),
                Some(reason),
                usage,
                None,
                written,
            )
        }
        Ended::Transient { reason, written } => (
            Outcome::Retry {
                reason: reason.clone(),
                backoff,
            },
            JobStatus::Retrying,
            Some(FailureClass::Retry),
            Some(reason),
            Usage::default(),
            None,
            written,
        ),
        Ended::Deferred { reason } => (
            Outcome::Defer {
                reason: reason.clone(),
                backoff: SUSPENDED_BACKOFF,
            },
            JobStatus::Paused,
            None,
            Some(reason),
            Usage::default(),
            None,
            Written::default(),
        ),
    };
    // Settle first: the log then says how the job really ended (a last retry is `dead`).
    let mut status = status;
    match context.queue.settle(claim, &outcome).await {
        Ok(true) => {
            let dead = matches!(outcome, Outcome::Retry { .. })
                && matches!(
                    context.queue.job(&claim.id).await,
                    Ok(Some(ref job)) if job.status == JobStatus::Dead
                );
            if dead {
                status = JobStatus::Dead;
            }
            tracing::info!(
                %worker,
                job = %claim.id,
                %status,
                documents = written.inserted,
                error = %error.as_deref().unwrap_or_default(),
                "batch job settled"
            );
        }
        Ok(false) => {
            tracing::warn!(%worker, job = %claim.id, "the job was no longer this worker's to settle");
        }
        Err(e) => {
            tracing::error!(%worker, job = %claim.id, error = %format!("{e:#}"), "settling failed; the job will be reaped and run again");
        }
    }
    context
        .metrics
        .batch_job(&spec.tenant, status, written.inserted, spec.size);
    let (collection, target) = place.unzip();
    let entry = LogEntry {
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
        error: error.or_else(|| written.refusal_note()),
        job: Some(JobRecord {
            id: claim.id.clone(),
            attempt: i64::from(claim.attempt),
            file: spec.name.clone(),
            app: spec.app.clone(),
            version: spec.version.clone(),
            fuel: usage.fuel as i64,
            error_class: class,
            quality,
        }),
    };
    if let Err(e) = context.platform.log_ingestion(&entry).await {
        tracing::error!(job = %claim.id, error = %e, "could not write the ingestion log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::bindings::Violation;

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
