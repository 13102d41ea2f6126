//! `/v1/data/{collection}`: data as a service for third-party ingestion programs. Writes
//! (one JSON object, a JSON array, or an NDJSON stream) and reads (filter, projection, limit,
//! cursor paging) in the calling tenant's own database, resolved like every other sink; under
//! the tenant's daily quota, and logged in the ingestion log like every other ingestion.

use super::auth::Tenant;
use super::error::{Json, Path, Query, Written};
use super::{ApiError, AppState, ErrorBody};
use crate::daas::query;
use crate::documents::derived_id;
use crate::names;
use crate::platform::{LogEntry, TenantRecord};
use crate::sink::{Sink, SinkError};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use futures_util::{StreamExt, TryStreamExt};
use mongodb::bson::{Bson, DateTime, Document, RawDocumentBuf, doc};
use mongodb::error::ErrorKind;
use mysimbdp_api::{Page, Rejected, WriteResult};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::time::Duration;
use utoipa::IntoParams;

/// Rejections listed in one answer (the count is always complete).
const MAX_LISTED_REJECTIONS: usize = 100;
/// Characters an `Idempotency-Key` may have.
const MAX_IDEMPOTENCY_KEY: usize = 200;
/// What a read may take beyond its `maxTimeMS` on the client side (network, cursor) before
/// the host gives up on it too.
const READ_GRACE: Duration = Duration::from_secs(2);
/// MongoDB's error code for an operation stopped by its `maxTimeMS`.
const MAX_TIME_EXPIRED: i32 = 50;

/// Query of a read.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadQuery {
    /// A MongoDB filter as JSON, e.g. `{"product":"widget","total":{"$gte":10}}`. Allowed
    /// operators: `$eq $ne $gt $gte $lt $lte $in $nin $and $or $nor $not $exists $type $all
    /// $elemMatch $size $regex $options $mod`; anything else is refused.
    pub filter: Option<String>,
    /// A projection as JSON, e.g. `{"product":1,"total":1}`: 0/1 or true/false per field,
    /// nested projections, `$slice` and `$elemMatch`; no computed fields.
    pub projection: Option<String>,
    /// Documents per page (default 100, at most the profile's `daas.max_read_limit`).
    #[param(minimum = 1)]
    pub limit: Option<u64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The tenant's sink cannot be used: 503, with a message that names no server detail.
fn sink_error(error: SinkError) -> ApiError {
    let message = match &error {
        SinkError::Missing { .. } => error.to_string(),
        SinkError::Unreachable(cause) => {
            tracing::error!(error = %cause, "the tenant's coredms is unreachable");
            "the tenant's coredms is unreachable; retry later".to_owned()
        }
    };
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "sink_unavailable", message)
}

/// Refuses a collection name MongoDB or another driver could not use (422, field `collection`).
pub(super) fn check_collection(name: &str) -> Result<(), ApiError> {
    names::collection_name(name)
        .map_err(|e| ApiError::invalid_field("invalid_name", "collection".into(), e.to_string()))
}

/// The request's `Idempotency-Key`, checked, or a fresh random one.
fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(ApiError::internal)?;
        return Ok(hex::encode(bytes));
    };
    value
        .to_str()
        .ok()
        .filter(|key| (1..=MAX_IDEMPOTENCY_KEY).contains(&key.len()))
        .filter(|key| key.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} visible ASCII characters"
            ))
        })
}

/// Write documents: a JSON object, a JSON array of objects, or an NDJSON stream
/// (`Content-Type: application/x-ndjson`, read as it arrives). Documents without `_id` get
/// one derived from the `Idempotency-Key` (or a key the host picks and returns) and their
/// position, so the same body sent again with the same key writes nothing twice. Refused
/// documents are listed with reasons; the rest are written.
///
/// A JSON body is all or nothing for what refuses the request as a whole (size, document
/// count, syntax, quota): nothing is written. An NDJSON body is written as it arrives: a
/// refusal or failure part-way answers with `error.written`, saying exactly how far it got.
#[utoipa::path(post, path = "/v1/data/{collection}", tag = "data",
    security(("tenant_token" = [])),
    params(
        ("collection" = String, Path, description = "Collection in the tenant's database",
            pattern = r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$", max_length = 120),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes ids, and so the write, repeatable (1-200 visible ASCII characters)"),
    ),
    request_body(description = "Documents", content(
        (Object = "application/json"),
        (String = "application/x-ndjson"),
    )),
    responses(
        (status = 200, body = WriteResult, headers(("Idempotency-Key" = String, description = "The key the ids derive from"))),
        (status = 400, description = "Malformed body, or an NDJSON body cut off (`error.written` says how far it got)", body = ErrorBody),
        (status = 413, description = "Too many bytes or documents (`error.written` for NDJSON)", body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, description = "A bad collection name, or nothing in the body could be written", body = ErrorBody),
        (status = 429, description = "The daily quota is used up", body = ErrorBody),
        (status = 503, description = "The tenant's coredms is unreachable or not published", body = ErrorBody),
    ))]
pub async fn write(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(collection): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(HeaderMap, Json<WriteResult>), ApiError> {
    check_collection(&collection)?;
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
    let idempotency_key = idempotency_key(&headers)?;
    let started = DateTime::now();
    let sink = state.sinks.resolve(&tenant).await.map_err(sink_error)?;
    let mut writer = Writer {
        state: &state,
        tenant: &tenant,
        sink: &sink,
        collection: &collection,
        result: WriteResult {
            collection: collection.clone(),
            inserted: 0,
            duplicates: 0,
            rejected_count: 0,
            rejected: Vec::new(),
            idempotency_key: idempotency_key.clone(),
            sink: sink.target.clone(),
        },
        batch: Vec::new(),
        batch_bytes: 0,
        received: 0,
        seen: 0,
        through: None,
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
    let through = writer.through;
    let received = writer.received;
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
        bytes: received as i64,
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
    if let Err(error) = outcome {
        return Err(error.with_written(Written {
            inserted: result.inserted,
            duplicates: result.duplicates,
            rejected: result.rejected_count,
            through,
            idempotency_key,
        }));
    }
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
        )
        .with_written(Written {
            rejected: result.rejected_count,
            through,
            idempotency_key,
            ..Written::default()
        }));
    }
    let mut response_headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(&result.idempotency_key) {
        response_headers.insert("idempotency-key", value);
    }
    Ok((response_headers, Json(result)))
}

/// Accumulates documents into `insert_many` batches (bounded by count and bytes), within
/// the quota, and keeps the account of what is settled.
struct Writer<'a> {
    state: &'a AppState,
    tenant: &'a TenantRecord,
    sink: &'a Sink,
    collection: &'a str,
    result: WriteResult,
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

impl Writer<'_> {
    /// A JSON body: read whole (it is bounded by `max_bytes`), checked whole — syntax and
    /// document count — and counted against the quota before anything is written.
    async fn json(&mut self, body: Body, max_bytes: u64) -> Result<(), ApiError> {
        let bytes = axum::body::to_bytes(body, usize::try_from(max_bytes).unwrap_or(usize::MAX))
            .await
            .map_err(|e| {
                if std::error::Error::source(&e)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                {
                    ApiError::too_large(format!("a write is limited to {max_bytes} bytes"))
                } else {
                    ApiError::body(&e)
                }
            })?;
        self.received = bytes.len() as u64;
        let not_json = |e: serde_json::Error| {
            ApiError::bad_request(format!(
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
                return Err(ApiError::bad_request(
                    "the body is neither a JSON object nor an array of objects; nothing was \
                     written",
                ));
            }
        };
        let max_documents = self.tenant.profile.daas.max_documents_per_request;
        if documents.len() as u64 > max_documents {
            return Err(ApiError::too_large(format!(
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
    async fn ndjson(&mut self, body: Body, max_bytes: u64) -> Result<(), ApiError> {
        let mut stream = body.into_data_stream();
        let mut pending: Vec<u8> = Vec::new();
        let mut line_number = 0u64;
        loop {
            let chunk = stream.next().await;
            let done = chunk.is_none();
            if let Some(chunk) = chunk {
                let chunk = chunk.map_err(|e| ApiError::body(&e))?;
                self.received += chunk.len() as u64;
                if self.received > max_bytes {
                    return Err(ApiError::too_large(format!(
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

    async fn line(&mut self, number: u64, line: &[u8]) -> Result<(), ApiError> {
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
        self.result.rejected_count += 1;
        if self.result.rejected.len() < MAX_LISTED_REJECTIONS {
            self.result.rejected.push(Rejected { at, reason });
        }
    }

    /// Adds the document at position `at`: refused with a reason if it cannot be stored as
    /// it is, otherwise batched; writes a full batch.
    async fn add(&mut self, at: u64, json: &[u8]) -> Result<(), ApiError> {
        self.seen += 1;
        let max_documents = self.tenant.profile.daas.max_documents_per_request;
        if self.seen > max_documents {
            return Err(ApiError::too_large(format!(
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
            || self.batch_bytes >= self.state.sinks.write_buffer_bytes()
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
        let key = &self.result.idempotency_key;
        crate::documents::to_stored(json, None, || {
            derived_id(tenant, &format!("daas:{key}"), at)
        })
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
                     ({} bytes used today)",
                    exceeded.limit / (1024 * 1024),
                    exceeded.used,
                ),
            )),
        }
    }

    /// Writes the batch: quota first (unless reserved up front), then an unordered
    /// `insert_many`; duplicates are success, other per-document errors are rejections.
    async fn flush(&mut self) -> Result<(), ApiError> {
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
                self.result.inserted += outcome.inserted;
                self.result.duplicates += outcome.duplicates;
                for (index, reason) in outcome.refused {
                    let at = positions.get(index).copied().unwrap_or_default();
                    self.reject(at, reason);
                }
                self.through = Some(last);
            }
            Err(e) => {
                tracing::error!(tenant = %self.tenant.id, coredms = %self.sink.target.coredms, error = %e, "a daas write failed");
                self.state.sinks.forget(&self.tenant.id);
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "sink_unavailable",
                    "the tenant's coredms failed during the write; retry with the \
                     Idempotency-Key in error.written: documents already written are not \
                     written twice",
                ));
            }
        }
        Ok(())
    }
}

/// Read documents in `_id` order, a page at a time. The filter and the projection may use
/// only the allowed operators (see the parameters); a query is stopped after the profile's
/// `daas.max_query_ms` and refused with 422 `query_timeout`.
#[utoipa::path(get, path = "/v1/data/{collection}", tag = "data",
    security(("tenant_token" = [])),
    params(("collection" = String, Path, description = "Collection in the tenant's database",
        pattern = r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$", max_length = 120), ReadQuery),
    responses(
        (status = 200, body = Page),
        (status = 400, description = "A bad filter, projection, limit or cursor, or an operator that is not allowed", body = ErrorBody),
        (status = 422, description = "A bad collection name, or the query ran past `daas.max_query_ms`", body = ErrorBody),
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
    query::screen_filter(&filter).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let projection = match &query.projection {
        Some(text) => {
            let projection = json_document("projection", text)?;
            query::screen_projection(&projection)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            Some(projection)
        }
        None => None,
    };
    if let Some(cursor) = &query.cursor {
        let after = decode_cursor(cursor)?;
        filter = doc! { "$and": [filter, { "_id": { "$gt": after } }] };
        // The cursor is the client's too: what it decodes to is screened like the rest.
        query::screen_filter(&filter)
            .map_err(|_| ApiError::bad_request("cursor is not one this API returned"))?;
    }
    let sink = state.sinks.resolve(&tenant).await.map_err(sink_error)?;
    let max_time = Duration::from_millis(tenant.profile.daas.max_query_ms);
    let documents_collection = sink.database.collection::<Document>(&collection);
    let mut find = documents_collection
        .find(filter)
        .sort(doc! { "_id": 1 })
        .limit(i64::try_from(limit).unwrap_or(i64::MAX))
        .max_time(max_time);
    if let Some(projection) = projection {
        find = find.projection(projection);
    }
    let too_slow = || {
        ApiError::invalid_field(
            "query_timeout",
            String::new(),
            format!(
                "the query ran longer than {} ms (daas.max_query_ms) and was stopped; narrow \
                 the filter, or use a field with an index",
                max_time.as_millis()
            ),
        )
    };
    // MongoDB stops the query at `maxTimeMS`; the host's own bound is there for a server
    // that does not answer at all.
    let documents: Vec<Document> = tokio::time::timeout(max_time + READ_GRACE, async {
        let cursor = find.await?;
        cursor.try_collect::<Vec<Document>>().await
    })
    .await
    .map_err(|_| too_slow())?
    .map_err(|e: mongodb::error::Error| match e.kind.as_ref() {
        ErrorKind::Command(c) if c.code == MAX_TIME_EXPIRED => too_slow(),
        // The server's own words about the query (unknown field type, bad regex…), without
        // the raw reply around them.
        ErrorKind::Command(c) => {
            ApiError::bad_request(format!("the query was refused: {}", c.message))
        }
        _ => {
            tracing::error!(tenant = %tenant.id, coredms = %sink.target.coredms, error = %e, "a daas read failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "sink_unavailable",
                "the tenant's coredms did not answer the read; retry later",
            )
        }
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
}
