//! The daas writer: documents from a request body into the tenant's collection. A JSON body
//! (one object or an array of objects) is all or nothing for what refuses the request as a
//! whole — size, document count, syntax, quota — and is counted against the quota before
//! anything is written. An NDJSON body is written batch by batch as it arrives; a refusal or
//! failure part-way reports exactly how far it got. Documents without `_id` get one derived
//! from the idempotency key and their position, so the same body sent again with the same key
//! writes nothing twice. Every write is logged in the ingestion log and counted.

use super::{BodyError, DaasError};
use crate::documents::derived_id;
use crate::metrics::Metrics;
use crate::platform::{LogEntry, Platform, TenantRecord};
use crate::sink::{Sink, SinkResolver, SinkTarget};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use mongodb::bson::{DateTime, RawDocumentBuf};
use serde_json::value::RawValue;

/// Rejections listed in one answer (the count is always complete).
const MAX_LISTED_REJECTIONS: usize = 100;
/// Characters an idempotency key may have.
pub const MAX_IDEMPOTENCY_KEY: usize = 200;

/// What a write needs of the platform.
#[derive(Clone, Copy)]
pub struct Daas<'a> {
    /// The platform database: the quota and the ingestion log.
    pub platform: &'a Platform,
    /// Tenants' sinks.
    pub sinks: &'a SinkResolver,
    /// Where writes are counted.
    pub metrics: &'a Metrics,
}

/// How the body carries its documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object or an array of objects: all or nothing.
    Json,
    /// One object per line, written as it arrives.
    Ndjson,
}

/// One refused document.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// Its position: index in the array (from 0), or line number (from 1) of an NDJSON body.
    pub at: u64,
    /// Why.
    pub reason: String,
}

/// What a write did.
#[derive(Debug, Clone)]
pub struct Report {
    /// The collection written.
    pub collection: String,
    /// Documents written now.
    pub inserted: u64,
    /// Documents whose `_id` was already there (a retried request): success in effect.
    pub duplicates: u64,
    /// Documents refused; the others were written.
    pub rejected_count: u64,
    /// The first refused documents, with reasons.
    pub rejected: Vec<Rejection>,
    /// The key the documents' ids derive from.
    pub idempotency_key: String,
    /// Where they went.
    pub sink: SinkTarget,
}

/// How far a refused or failed write got: every document up to and including position
/// `through` is settled; nothing after it was written, except, after a failed write to the
/// coredms, possibly part of the batch that was in flight.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Documents written.
    pub inserted: u64,
    /// Documents whose `_id` was already there.
    pub duplicates: u64,
    /// Documents refused.
    pub rejected: u64,
    /// The last settled position, if any is.
    pub through: Option<u64>,
    /// The key the ids derive from: retry with it.
    pub idempotency_key: String,
}

/// A write refused or failed: why, and, once documents started to flow, how far it got.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct Refused {
    /// Why.
    #[source]
    pub error: DaasError,
    /// How far it got (absent when it stopped before reading the body). Boxed: it keeps
    /// every `Result<_, Refused>` small.
    pub written: Option<Box<Progress>>,
}

impl From<DaasError> for Refused {
    fn from(error: DaasError) -> Self {
        Self {
            error,
            written: None,
        }
    }
}

/// The request's idempotency key, checked (1-200 visible ASCII characters), or a fresh
/// random one.
pub fn idempotency_key(given: Option<&[u8]>) -> Result<String, DaasError> {
    let Some(given) = given else {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| DaasError::Host(e.into()))?;
        return Ok(hex::encode(bytes));
    };
    std::str::from_utf8(given)
        .ok()
        .filter(|key| (1..=MAX_IDEMPOTENCY_KEY).contains(&key.len()))
        .filter(|key| key.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .ok_or_else(|| {
            DaasError::Malformed(format!(
                "Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} visible ASCII characters"
            ))
        })
}

/// Writes the documents of `body` into `collection` of the tenant's database, at most
/// `max_bytes` of it, and logs the write. The collection name is the caller's to check
/// first.
pub async fn write<S>(
    daas: Daas<'_>,
    tenant: &TenantRecord,
    collection: &str,
    format: Format,
    idempotency_key: Option<&[u8]>,
    body: S,
    max_bytes: u64,
) -> Result<Report, Refused>
where
    S: Stream<Item = Result<Bytes, BodyError>> + Unpin,
{
    let idempotency_key = self::idempotency_key(idempotency_key)?;
    let started = DateTime::now();
    let sink = daas.sinks.resolve(tenant).await.map_err(DaasError::Sink)?;
    let mut writer = Writer::new(daas, tenant, &sink, collection, idempotency_key);
    let outcome = match format {
        Format::Ndjson => writer.ndjson(body, max_bytes).await,
        Format::Json => writer.json(body, max_bytes).await,
    };
    let outcome = match outcome {
        Ok(()) => writer.flush().await,
        Err(e) => Err(e),
    };
    let through = writer.through;
    let received = writer.received;
    let report = writer.report;
    log(
        daas,
        tenant,
        &sink,
        &report,
        received,
        started,
        outcome.as_ref().err(),
    )
    .await;
    verdict(report, outcome, through)
}

/// How a write ended for the client: the report, the error with how far it got, or — when
/// every document was refused — a refusal of the whole.
fn verdict(
    report: Report,
    outcome: Result<(), DaasError>,
    through: Option<u64>,
) -> Result<Report, Refused> {
    let idempotency_key = report.idempotency_key.clone();
    if let Err(error) = outcome {
        return Err(Refused {
            error,
            written: Some(Box::new(Progress {
                inserted: report.inserted,
                duplicates: report.duplicates,
                rejected: report.rejected_count,
                through,
                idempotency_key,
            })),
        });
    }
    if report.inserted + report.duplicates == 0 && report.rejected_count > 0 {
        let first = report
            .rejected
            .first()
            .map(|r| format!(" (first, at {}: {})", r.at, r.reason))
            .unwrap_or_default();
        return Err(Refused {
            error: DaasError::NothingWritten {
                count: report.rejected_count,
                first,
            },
            written: Some(Box::new(Progress {
                rejected: report.rejected_count,
                through,
                idempotency_key,
                ..Progress::default()
            })),
        });
    }
    Ok(report)
}

/// Records the write in the ingestion log and the metrics, however it ended.
async fn log(
    daas: Daas<'_>,
    tenant: &TenantRecord,
    sink: &Sink,
    report: &Report,
    received: u64,
    started: DateTime,
    error: Option<&DaasError>,
) {
    let status = match (error, report.rejected_count) {
        (None, 0) => "ok",
        (None, _) => "partial",
        (Some(_), _) if report.inserted > 0 => "partial",
        (Some(_), _) => "failed",
    };
    let entry = LogEntry {
        tenant: tenant.id.clone(),
        source: "daas".to_owned(),
        collection: report.collection.clone(),
        database: sink.target.database.clone(),
        coredms: sink
            .target
            .service_id
            .clone()
            .unwrap_or_else(|| "shared".to_owned()),
        documents: report.inserted as i64,
        duplicates: report.duplicates as i64,
        rejected: report.rejected_count as i64,
        bytes: received as i64,
        started_at: started,
        ended_at: DateTime::now(),
        status: status.to_owned(),
        error: error.map(ToString::to_string),
        job: None,
    };
    if let Err(e) = daas.platform.log_ingestion(&entry).await {
        tracing::error!(tenant = %tenant.id, error = %e, "could not write the ingestion log");
    }
    daas.metrics
        .daas_documents(&tenant.id, report.inserted, report.rejected_count);
}

/// Accumulates documents into `insert_many` batches (bounded by count and bytes), within
/// the quota, and keeps the account of what is settled.
struct Writer<'a> {
    daas: Daas<'a>,
    tenant: &'a TenantRecord,
    sink: &'a Sink,
    collection: &'a str,
    report: Report,
    batch: Vec<(u64, RawDocumentBuf)>,
    batch_bytes: usize,
    received: u64,
    seen: u64,
    /// The last position whose document is settled (written, duplicate or refused).
    through: Option<u64>,
    /// The whole request's bytes were counted against the quota up front (a JSON body, whose
    /// size is known before anything is written: all or nothing).
    reserved: bool,
}

impl<'a> Writer<'a> {
    fn new(
        daas: Daas<'a>,
        tenant: &'a TenantRecord,
        sink: &'a Sink,
        collection: &'a str,
        idempotency_key: String,
    ) -> Self {
        Self {
            daas,
            tenant,
            sink,
            collection,
            report: Report {
                collection: collection.to_owned(),
                inserted: 0,
                duplicates: 0,
                rejected_count: 0,
                rejected: Vec::new(),
                idempotency_key,
                sink: sink.target.clone(),
            },
            batch: Vec::new(),
            batch_bytes: 0,
            received: 0,
            seen: 0,
            through: None,
            reserved: false,
        }
    }

    /// A JSON body: read whole (it is bounded by `max_bytes`), checked whole — syntax and
    /// document count — and counted against the quota before anything is written.
    async fn json<S>(&mut self, mut body: S, max_bytes: u64) -> Result<(), DaasError>
    where
        S: Stream<Item = Result<Bytes, BodyError>> + Unpin,
    {
        let mut bytes = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            if (bytes.len() + chunk.len()) as u64 > max_bytes {
                return Err(DaasError::TooLarge(format!(
                    "a write is limited to {max_bytes} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        self.received = bytes.len() as u64;
        let not_json = |e: serde_json::Error| {
            DaasError::Malformed(format!(
                "the body is not JSON ({e}); send an object, an array of objects, or NDJSON \
                 with Content-Type: application/x-ndjson; nothing was written"
            ))
        };
        // Raw slices of the body: the syntax of the whole body is checked and the documents
        // counted without building any of them.
        let documents: Vec<&RawValue> = match bytes.trim_ascii_start().first() {
            Some(b'[') => serde_json::from_slice(&bytes).map_err(not_json)?,
            Some(b'{') => vec![serde_json::from_slice(&bytes).map_err(not_json)?],
            _ => {
                return Err(DaasError::Malformed(
                    "the body is neither a JSON object nor an array of objects; nothing was \
                     written"
                        .to_owned(),
                ));
            }
        };
        let max_documents = self.tenant.profile.daas.max_documents_per_request;
        if documents.len() as u64 > max_documents {
            return Err(DaasError::TooLarge(format!(
                "the body carries {} documents; a write carries at most {max_documents} \
                 (daas.max_documents_per_request); nothing was written",
                documents.len()
            )));
        }
        self.reserve(self.received).await?;
        self.reserved = true;
        for (i, document) in documents.into_iter().enumerate() {
            self.add(i as u64, document.get().as_bytes()).await?;
        }
        Ok(())
    }

    /// An NDJSON body, written batch by batch as it arrives.
    async fn ndjson<S>(&mut self, mut body: S, max_bytes: u64) -> Result<(), DaasError>
    where
        S: Stream<Item = Result<Bytes, BodyError>> + Unpin,
    {
        let mut pending: Vec<u8> = Vec::new();
        let mut line_number = 0u64;
        loop {
            let chunk = body.next().await;
            let done = chunk.is_none();
            if let Some(chunk) = chunk {
                let chunk = chunk?;
                self.received += chunk.len() as u64;
                if self.received > max_bytes {
                    return Err(DaasError::TooLarge(format!(
                        "a write is limited to {} MiB (daas.max_request_mib)",
                        max_bytes / (1024 * 1024),
                    )));
                }
                pending.extend_from_slice(&chunk);
            }
            let mut start = 0;
            while let Some(end) = pending[start..].iter().position(|&b| b == b'\n') {
                line_number += 1;
                let line = &pending[start..start + end];
                start += end + 1;
                self.line(line_number, line).await?;
            }
            pending.drain(..start);
            if done {
                if !pending.is_empty() {
                    line_number += 1;
                    let line = std::mem::take(&mut pending);
                    self.line(line_number, &line).await?;
                }
                return Ok(());
            }
        }
    }

    async fn line(&mut self, number: u64, line: &[u8]) -> Result<(), DaasError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            if self.batch.is_empty() {
                self.through = Some(number);
            }
            return Ok(());
        }
        self.add(number, line).await
    }

    fn reject(&mut self, at: u64, reason: String) {
        self.report.rejected_count += 1;
        if self.report.rejected.len() < MAX_LISTED_REJECTIONS {
            self.report.rejected.push(Rejection { at, reason });
        }
    }

    /// Adds the document at position `at`: refused with a reason if it cannot be stored as
    /// it is, otherwise batched; writes a full batch.
    async fn add(&mut self, at: u64, json: &[u8]) -> Result<(), DaasError> {
        self.seen += 1;
        let max_documents = self.tenant.profile.daas.max_documents_per_request;
        if self.seen > max_documents {
            return Err(DaasError::TooLarge(format!(
                "a write carries at most {max_documents} documents \
                 (daas.max_documents_per_request); line {at} is one too many"
            )));
        }
        match self.storable(at, json) {
            Ok(document) => {
                self.batch_bytes += document.as_bytes().len();
                self.batch.push((at, document));
            }
            Err(reason) => {
                self.reject(at, reason);
                if self.batch.is_empty() {
                    self.through = Some(at);
                }
                return Ok(());
            }
        }
        if self.batch.len() >= self.tenant.profile.sink.insert_batch
            || self.batch_bytes >= self.daas.sinks.write_buffer_bytes()
        {
            self.flush().await?;
        }
        Ok(())
    }

    /// The document as it will be stored, or why it cannot be, by the rule every write path
    /// follows ([`crate::documents::to_stored`]).
    fn storable(&self, at: u64, json: &[u8]) -> Result<RawDocumentBuf, String> {
        let json = std::str::from_utf8(json).map_err(|e| format!("not JSON: {e}"))?;
        let tenant = &self.tenant.id;
        let key = &self.report.idempotency_key;
        crate::documents::to_stored(json, None, || {
            derived_id(tenant, &format!("daas:{key}"), at)
        })
    }

    /// Counts `bytes` against the tenant's daily quota, or refuses.
    async fn reserve(&mut self, bytes: u64) -> Result<(), DaasError> {
        let limit = self.tenant.profile.daas.max_mib_per_day * 1024 * 1024;
        let reserved = self
            .daas
            .platform
            .reserve_daily(&self.tenant.id, "daas", bytes, limit)
            .await?;
        match reserved {
            Ok(_) => Ok(()),
            Err(exceeded) => Err(DaasError::QuotaExceeded(format!(
                "this write of {bytes} bytes would pass the daily daas quota of {} MiB \
                 ({} bytes used today)",
                exceeded.limit / (1024 * 1024),
                exceeded.used,
            ))),
        }
    }

    /// Writes the batch: quota first (unless reserved up front), then an unordered
    /// `insert_many`; duplicates are success, other per-document errors are rejections.
    async fn flush(&mut self) -> Result<(), DaasError> {
        let Some(last) = self.batch.last().map(|(at, _)| *at) else {
            return Ok(());
        };
        if !self.reserved {
            self.reserve(self.batch_bytes as u64).await?;
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        let (positions, documents): (Vec<u64>, Vec<RawDocumentBuf>) = batch.into_iter().unzip();
        let written = self
            .sink
            .insert(
                self.collection,
                documents,
                self.tenant.profile.sink.write_concern,
            )
            .await;
        match written {
            Ok(outcome) => {
                self.report.inserted += outcome.inserted;
                self.report.duplicates += outcome.duplicates;
                for (index, reason) in outcome.refused {
                    let at = positions.get(index).copied().unwrap_or_default();
                    self.reject(at, reason);
                }
                self.through = Some(last);
            }
            Err(e) => {
                tracing::error!(tenant = %self.tenant.id, coredms = %self.sink.target.coredms, error = %e, "a daas write failed");
                self.daas.sinks.forget(&self.tenant.id);
                return Err(DaasError::WriteFailed);
            }
        }
        Ok(())
    }
}
