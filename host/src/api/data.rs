//! `/v1/data/{collection}`: data as a service for third-party ingestion programs. Writes
//! (one JSON object, a JSON array, or an NDJSON stream) and reads (filter, projection, limit,
//! cursor paging) in the calling tenant's own database, resolved like every other sink; under
//! the tenant's daily quota, and logged in the ingestion log like every other ingestion.

use super::auth::Tenant;
use super::error::{Json, Path, Query};
use super::{ApiError, AppState, ErrorBody};
use crate::documents::derived_id;
use crate::platform::{LogEntry, TenantRecord};
use crate::sink::{Sink, SinkError, SinkTarget};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use futures_util::{StreamExt, TryStreamExt};
use mongodb::bson::{self, Bson, DateTime, Document, doc};
use mongodb::error::ErrorKind;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};

/// Query operators that run code on the server: refused in filters.
const FORBIDDEN_OPERATORS: [&str; 3] = ["$where", "$function", "$accumulator"];
/// A read may run this long on the coredms.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Rejections listed in one answer (the count is always complete).
const MAX_LISTED_REJECTIONS: usize = 100;

/// One refused document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rejected {
    /// Its position: index in the array, or line number (from 1) of an NDJSON stream.
    pub at: u64,
    /// Why.
    pub reason: String,
}

/// The result of a write.
#[derive(Debug, Serialize, ToSchema)]
pub struct WriteResult {
    /// The collection written.
    pub collection: String,
    /// Documents written now.
    pub inserted: u64,
    /// Documents whose `_id` was already there (a retried request): success in effect.
    pub duplicates: u64,
    /// Documents refused; the others were written.
    pub rejected_count: u64,
    /// The first refused documents, with reasons.
    pub rejected: Vec<Rejected>,
    /// Where they went.
    pub sink: SinkTarget,
}

/// Query of a read.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadQuery {
    /// A MongoDB filter as JSON, e.g. `{"product":"widget"}` (no `$where`/`$function`).
    pub filter: Option<String>,
    /// A projection as JSON, e.g. `{"product":1,"total":1}`.
    pub projection: Option<String>,
    /// Documents per page (default 100, at most the profile's `daas.max_read_limit`).
    pub limit: Option<u64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of documents, in `_id` order.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page {
    /// The documents, as relaxed extended JSON.
    #[schema(value_type = Vec<Object>)]
    pub documents: Vec<serde_json::Value>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

fn sink_error(error: SinkError) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "sink_unavailable",
        error.to_string(),
    )
}

pub(super) fn check_collection(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 120
        && !name.starts_with("system.")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            "invalid_name",
            "collection".into(),
            format!(
                "collection {name:?} is not allowed: 1-120 of letters, digits, '_', '-', '.', \
                 not starting with 'system.'"
            ),
        ))
    }
}

/// Write documents: a JSON object, a JSON array of objects, or an NDJSON stream
/// (`Content-Type: application/x-ndjson`, read as it arrives). Documents without `_id` get
/// one; with an `Idempotency-Key` header the ids derive from it, so a retried request writes
/// nothing twice. Refused documents are listed with reasons; the rest are written.
#[utoipa::path(post, path = "/v1/data/{collection}", tag = "data",
    security(("tenant_token" = [])),
    params(
        ("collection" = String, Path, description = "Collection in the tenant's database"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes ids, and so the write, repeatable"),
    ),
    request_body(description = "Documents", content(
        (Object = "application/json"),
        (String = "application/x-ndjson"),
    )),
    responses(
        (status = 200, body = WriteResult),
        (status = 400, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, description = "Nothing in the body could be written", body = ErrorBody),
        (status = 429, description = "The daily quota is used up", body = ErrorBody),
        (status = 503, description = "The tenant's coredms is unreachable or not published", body = ErrorBody),
    ))]
pub async fn write(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(collection): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<WriteResult>, ApiError> {
    check_collection(&collection)?;
    let started = DateTime::now();
    let sink = state.sinks.resolve(&tenant).await.map_err(sink_error)?;
    let limits = &tenant.profile.daas;
    let max_bytes = limits.max_request_mib * 1024 * 1024;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_bytes) {
        return Err(ApiError::too_large(format!(
            "a write is limited to {} MiB (daas.max_request_mib)",
            limits.max_request_mib
        )));
    }
    let idempotency = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let ndjson = match content_type.split(';').next().map(str::trim) {
        Some("application/json") => false,
        Some("application/x-ndjson" | "application/jsonl" | "application/json-seq") => true,
        _ => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("write application/json or application/x-ndjson, not {content_type:?}"),
            ));
        }
    };
    let mut writer = Writer {
        state: &state,
        tenant: &tenant,
        sink: &sink,
        collection: &collection,
        idempotency,
        result: WriteResult {
            collection: collection.clone(),
            inserted: 0,
            duplicates: 0,
            rejected_count: 0,
            rejected: Vec::new(),
            sink: sink.target.clone(),
        },
        batch: Vec::new(),
        batch_bytes: 0,
        received: 0,
        seen: 0,
        reserved: false,
    };
    let outcome = if ndjson {
        writer.ndjson(body, max_bytes).await
    } else {
        writer.json(body, max_bytes).await
    };
    let outcome = match outcome {
        Ok(()) => writer.flush().await,
        Err(e) => Err(e),
    };
    let result = writer.result;
    let status = match (&outcome, result.rejected_count) {
        (Ok(()), 0) => "ok",
        (Ok(()), _) => "partial",
        (Err(_), _) if result.inserted > 0 => "partial",
        (Err(_), _) => "failed",
    };
    let entry = LogEntry {
        tenant: tenant.id.clone(),
        source: "daas".to_owned(),
        collection: collection.clone(),
        database: sink.target.database.clone(),
        coredms: sink
            .target
            .service_id
            .clone()
            .unwrap_or_else(|| "shared".to_owned()),
        documents: result.inserted as i64,
        duplicates: result.duplicates as i64,
        rejected: result.rejected_count as i64,
        bytes: writer.received as i64,
        started_at: started,
        ended_at: DateTime::now(),
        status: status.to_owned(),
        error: outcome.as_ref().err().map(|e| e.message().to_owned()),
        job: None,
    };
    if let Err(e) = state.platform.log_ingestion(&entry).await {
        tracing::error!(tenant = %tenant.id, error = %e, "could not write the ingestion log");
    }
    state
        .metrics
        .daas_documents(&tenant.id, result.inserted, result.rejected_count);
    outcome?;
    if result.inserted + result.duplicates == 0 && result.rejected_count > 0 {
        let first = result
            .rejected
            .first()
            .map(|r| format!(" (first, at {}: {})", r.at, r.reason))
            .unwrap_or_default();
        return Err(ApiError::invalid_field(
            "invalid_documents",
            String::new(),
            format!(
                "none of the {} documents could be written{first}",
                result.rejected_count
            ),
        ));
    }
    Ok(Json(result))
}

/// Accumulates documents into `insert_many` batches, within the quota.
struct Writer<'a> {
    state: &'a AppState,
    tenant: &'a TenantRecord,
    sink: &'a Sink,
    collection: &'a str,
    idempotency: Option<String>,
    result: WriteResult,
    batch: Vec<(u64, Document)>,
    batch_bytes: u64,
    received: u64,
    seen: u64,
    /// The whole request's bytes were counted against the quota up front (a JSON body, whose
    /// size is known before anything is written: all or nothing).
    reserved: bool,
}

impl Writer<'_> {
    async fn json(&mut self, body: Body, max_bytes: u64) -> Result<(), ApiError> {
        let bytes = axum::body::to_bytes(body, usize::try_from(max_bytes).unwrap_or(usize::MAX))
            .await
            .map_err(|e| {
                if std::error::Error::source(&e)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                {
                    ApiError::too_large(format!("a write is limited to {max_bytes} bytes"))
                } else {
                    ApiError::bad_request(format!("reading the body: {e}"))
                }
            })?;
        self.received = bytes.len() as u64;
        self.reserve(self.received).await?;
        self.reserved = true;
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::bad_request(format!(
                "the body is not JSON ({e}); send an object, an array of objects, or NDJSON \
                 with Content-Type: application/x-ndjson"
            ))
        })?;
        let documents = match value {
            serde_json::Value::Array(items) => items,
            object @ serde_json::Value::Object(_) => vec![object],
            _ => {
                return Err(ApiError::bad_request(
                    "the body is neither a JSON object nor an array of objects",
                ));
            }
        };
        for (i, document) in documents.into_iter().enumerate() {
            let size = document.to_string().len() as u64;
            self.add(i as u64, document, size).await?;
        }
        Ok(())
    }

    async fn ndjson(&mut self, body: Body, max_bytes: u64) -> Result<(), ApiError> {
        let mut stream = body.into_data_stream();
        let mut pending: Vec<u8> = Vec::new();
        let mut line_number = 0u64;
        loop {
            let chunk = stream.next().await;
            let done = chunk.is_none();
            if let Some(chunk) = chunk {
                let chunk =
                    chunk.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
                self.received += chunk.len() as u64;
                if self.received > max_bytes {
                    return Err(ApiError::too_large(format!(
                        "a write is limited to {} MiB (daas.max_request_mib); {} documents were \
                         written before the limit",
                        max_bytes / (1024 * 1024),
                        self.result.inserted
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

    async fn line(&mut self, number: u64, line: &[u8]) -> Result<(), ApiError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        match serde_json::from_slice::<serde_json::Value>(line) {
            Ok(value) => self.add(number, value, line.len() as u64).await,
            Err(e) => {
                self.reject(number, format!("not JSON: {e}"));
                Ok(())
            }
        }
    }

    fn reject(&mut self, at: u64, reason: String) {
        self.result.rejected_count += 1;
        if self.result.rejected.len() < MAX_LISTED_REJECTIONS {
            self.result.rejected.push(Rejected { at, reason });
        }
    }

    async fn add(&mut self, at: u64, value: serde_json::Value, size: u64) -> Result<(), ApiError> {
        self.seen += 1;
        let max_documents = self.tenant.profile.daas.max_documents_per_request;
        if self.seen > max_documents {
            return Err(ApiError::too_large(format!(
                "a write carries at most {max_documents} documents (daas.max_documents_per_request)"
            )));
        }
        if !value.is_object() {
            self.reject(at, "not a JSON object".to_owned());
            return Ok(());
        }
        let mut document = match bson::to_document(&value) {
            Ok(document) => document,
            Err(e) => {
                self.reject(at, format!("cannot be stored: {e}"));
                return Ok(());
            }
        };
        if let Some(key) = document.keys().find(|k| k.starts_with('$')) {
            let reason = format!("field {key:?} starts with '$'");
            self.reject(at, reason);
            return Ok(());
        }
        if !document.contains_key("_id")
            && let Some(key) = &self.idempotency
        {
            let id = derived_id(&self.tenant.id, &format!("daas:{key}"), at);
            document.insert("_id", id);
        }
        self.batch.push((at, document));
        self.batch_bytes += size;
        if self.batch.len() >= self.tenant.profile.sink.insert_batch {
            self.flush().await?;
        }
        Ok(())
    }

    /// Counts `bytes` against the tenant's daily quota, or refuses.
    async fn reserve(&mut self, bytes: u64) -> Result<(), ApiError> {
        let limit = self.tenant.profile.daas.max_mib_per_day * 1024 * 1024;
        let reserved = self
            .state
            .platform
            .reserve_daily(&self.tenant.id, "daas", bytes, limit)
            .await?;
        match reserved {
            Ok(_) => Ok(()),
            Err(exceeded) => Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "quota_exceeded",
                format!(
                    "this write of {bytes} bytes would pass the daily daas quota of {} MiB \
                     ({} bytes used today); {} documents of this request were written before",
                    exceeded.limit / (1024 * 1024),
                    exceeded.used,
                    self.result.inserted
                ),
            )),
        }
    }

    /// Writes the batch: quota first (unless reserved up front), then an unordered `insert_many`; duplicates are
    /// success, other per-document errors are rejections.
    async fn flush(&mut self) -> Result<(), ApiError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        if !self.reserved {
            self.reserve(self.batch_bytes).await?;
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        let positions: Vec<u64> = batch.iter().map(|(at, _)| *at).collect();
        let documents: Vec<Document> = batch.into_iter().map(|(_, d)| d).collect();
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
                self.result.inserted += outcome.inserted;
                self.result.duplicates += outcome.duplicates;
                for (index, reason) in outcome.refused {
                    let at = positions.get(index).copied().unwrap_or_default();
                    self.reject(at, reason);
                }
            }
            Err(e) => {
                self.state.sinks.forget(&self.tenant.id);
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "sink_unavailable",
                    format!(
                        "writing to the {} coredms failed ({e}); {} documents of this request \
                         were written before; retry (with an Idempotency-Key nothing is \
                         written twice)",
                        self.sink.target.coredms, self.result.inserted
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Read documents in `_id` order, a page at a time.
#[utoipa::path(get, path = "/v1/data/{collection}", tag = "data",
    security(("tenant_token" = [])),
    params(("collection" = String, Path, description = "Collection in the tenant's database"), ReadQuery),
    responses(
        (status = 200, body = Page),
        (status = 400, description = "A bad filter, projection or cursor", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn read(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(collection): Path<String>,
    Query(query): Query<ReadQuery>,
) -> Result<Json<Page>, ApiError> {
    check_collection(&collection)?;
    let max = tenant.profile.daas.max_read_limit;
    let limit = query.limit.unwrap_or(100.min(max));
    if !(1..=max).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit = {limit}: it must be 1..={max} (daas.max_read_limit)"
        )));
    }
    let mut filter = match &query.filter {
        Some(text) => json_document("filter", text)?,
        None => Document::new(),
    };
    if let Some(operator) = forbidden_operator(&Bson::Document(filter.clone())) {
        return Err(ApiError::bad_request(format!(
            "filter uses {operator}, which runs code on the server: not allowed"
        )));
    }
    if let Some(cursor) = &query.cursor {
        let after = decode_cursor(cursor)?;
        filter = doc! { "$and": [filter, { "_id": { "$gt": after } }] };
    }
    let projection = match &query.projection {
        Some(text) => Some(json_document("projection", text)?),
        None => None,
    };
    let sink = state.sinks.resolve(&tenant).await.map_err(sink_error)?;
    let documents_collection = sink.database.collection::<Document>(&collection);
    let mut find = documents_collection
        .find(filter)
        .sort(doc! { "_id": 1 })
        .limit(i64::try_from(limit).unwrap_or(i64::MAX))
        .max_time(READ_TIMEOUT);
    if let Some(projection) = projection {
        find = find.projection(projection);
    }
    let documents: Vec<Document> = async {
        let cursor = find.await?;
        cursor.try_collect::<Vec<Document>>().await
    }
    .await
    .map_err(|e: mongodb::error::Error| match e.kind.as_ref() {
        ErrorKind::Command(c) if c.code != 50 => {
            ApiError::bad_request(format!("the query was refused: {}", c.message))
        }
        _ => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "sink_unavailable",
            format!(
                "reading from the {} coredms failed: {e}",
                sink.target.coredms
            ),
        ),
    })?;
    let next_cursor = if documents.len() as u64 == limit {
        documents
            .last()
            .and_then(|d| d.get("_id"))
            .map(encode_cursor)
    } else {
        None
    };
    Ok(Json(Page {
        documents: documents
            .into_iter()
            .map(|d| Bson::Document(d).into_relaxed_extjson())
            .collect(),
        next_cursor,
    }))
}

fn json_document(what: &str, text: &str) -> Result<Document, ApiError> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("{what} is not JSON: {e}")))?;
    let bson = Bson::try_from(value)
        .map_err(|e| ApiError::bad_request(format!("{what} cannot be used: {e}")))?;
    match bson {
        Bson::Document(document) => Ok(document),
        _ => Err(ApiError::bad_request(format!(
            "{what} is not a JSON object"
        ))),
    }
}

fn forbidden_operator(value: &Bson) -> Option<&'static str> {
    match value {
        Bson::Document(document) => document.iter().find_map(|(key, value)| {
            FORBIDDEN_OPERATORS
                .iter()
                .find(|op| *op == key)
                .copied()
                .or_else(|| forbidden_operator(value))
        }),
        Bson::Array(items) => items.iter().find_map(forbidden_operator),
        _ => None,
    }
}

/// Cursors are the last `_id`, as canonical extended JSON in URL-safe hex: opaque to clients,
/// exact for every `_id` type.
fn encode_cursor(id: &Bson) -> String {
    hex::encode(id.clone().into_canonical_extjson().to_string())
}

fn decode_cursor(cursor: &str) -> Result<Bson, ApiError> {
    let bad = || ApiError::bad_request("cursor is not one this API returned");
    let text = hex::decode(cursor).map_err(|_| bad())?;
    let value: serde_json::Value = serde_json::from_slice(&text).map_err(|_| bad())?;
    Bson::try_from(value).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::oid::ObjectId;

    #[test]
    fn cursors_round_trip_every_id_type() {
        for id in [
            Bson::ObjectId(ObjectId::new()),
            Bson::String("a b/c".into()),
            Bson::Int64(42),
        ] {
            assert_eq!(decode_cursor(&encode_cursor(&id)).unwrap(), id);
        }
        assert!(decode_cursor("zz").is_err());
    }

    #[test]
    fn code_running_operators_are_found_anywhere() {
        let filter = doc! { "$or": [{ "a": 1 }, { "$where": "sleep(1000)" }] };
        assert_eq!(forbidden_operator(&Bson::Document(filter)), Some("$where"));
        let filter = doc! { "a": { "$gt": 1 } };
        assert_eq!(forbidden_operator(&Bson::Document(filter)), None);
    }

    #[test]
    fn collection_names() {
        check_collection("orders").unwrap();
        check_collection("orders.2026").unwrap();
        for bad in ["", "system.users", "a$b", "a b", &"x".repeat(121)] {
            assert!(check_collection(bad).is_err(), "{bad}");
        }
    }
}
