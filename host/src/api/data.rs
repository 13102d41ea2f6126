//! `/v1/data/{collection}`: data as a service for third-party ingestion programs. Writes
//! (one JSON object, a JSON array, or an NDJSON stream) and reads (filter, projection, limit,
//! cursor paging) in the calling tenant's own database, resolved like every other sink; under
//! the tenant's daily quota, and logged in the ingestion log like every other ingestion.

use super::auth::Tenant;
use super::error::{Json, Path, Query, Written};
use super::{ApiError, AppState, ErrorBody};
use crate::daas::reader::{self, ReadRequest};
use crate::daas::writer::{self, Daas, Format, Refused, Report};
use crate::daas::{self, BodyError, DaasError};
use crate::sink::SinkError;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use futures_util::TryStreamExt;
use mongodb::bson::Bson;
use mysimbdp_api::{Page, Rejected, WriteResult};
use serde::Deserialize;
use utoipa::IntoParams;

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

/// The one place a daas error becomes an answer.
impl From<DaasError> for ApiError {
    fn from(error: DaasError) -> Self {
        let message = error.to_string();
        match error {
            DaasError::InvalidCollection(_) => {
                ApiError::invalid_field("invalid_name", "collection".into(), message)
            }
            DaasError::Malformed(_) => ApiError::bad_request(message),
            DaasError::TooLarge(_) => ApiError::too_large(message),
            DaasError::Body(BodyError::TimedOut) => {
                ApiError::new(StatusCode::REQUEST_TIMEOUT, "body_timeout", message)
            }
            DaasError::Body(BodyError::Incomplete(_)) => {
                ApiError::new(StatusCode::BAD_REQUEST, "body_incomplete", message)
            }
            DaasError::QuotaExceeded(_) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "quota_exceeded", message)
            }
            DaasError::NothingWritten { .. } => {
                ApiError::invalid_field("invalid_documents", String::new(), message)
            }
            DaasError::QueryTimeout(_) => {
                ApiError::invalid_field("query_timeout", String::new(), message)
            }
            DaasError::Sink(error) => {
                // The cause stays in the log; the tenant learns only that it is unusable.
                if let SinkError::Unreachable(cause) = &error {
                    tracing::error!(error = %cause, "the tenant's coredms is unreachable");
                }
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "sink_unavailable", message)
            }
            DaasError::WriteFailed | DaasError::ReadFailed => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "sink_unavailable", message)
            }
            DaasError::Store(e) => e.into(),
            DaasError::Host(e) => ApiError::internal(format!("{e:#}")),
        }
    }
}

impl From<Refused> for ApiError {
    fn from(refused: Refused) -> Self {
        let error = ApiError::from(refused.error);
        match refused.written {
            Some(progress) => error.with_written(Written {
                inserted: progress.inserted,
                duplicates: progress.duplicates,
                rejected: progress.rejected,
                through: progress.through,
                idempotency_key: progress.idempotency_key,
            }),
            None => error,
        }
    }
}

impl From<Report> for WriteResult {
    fn from(report: Report) -> Self {
        Self {
            collection: report.collection,
            inserted: report.inserted,
            duplicates: report.duplicates,
            rejected_count: report.rejected_count,
            rejected: report
                .rejected
                .into_iter()
                .map(|r| Rejected {
                    at: r.at,
                    reason: r.reason,
                })
                .collect(),
            idempotency_key: report.idempotency_key,
            sink: report.sink,
        }
    }
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
    daas::check_collection(&collection)?;
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
    let format = match content_type.split(';').next().map(str::trim) {
        Some("application/json") => Format::Json,
        Some("application/x-ndjson" | "application/jsonl" | "application/json-seq") => {
            Format::Ndjson
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("write application/json or application/x-ndjson, not {content_type:?}"),
            ));
        }
    };
    let daas = Daas {
        platform: &state.platform,
        sinks: &state.sinks,
        metrics: &state.metrics,
    };
    let key = headers.get("idempotency-key").map(HeaderValue::as_bytes);
    let body = body
        .into_data_stream()
        .map_err(|e| super::error::body_error(&e));
    let report = writer::write(daas, &tenant, &collection, format, key, body, max_bytes).await?;
    let mut response_headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(&report.idempotency_key) {
        response_headers.insert("idempotency-key", value);
    }
    Ok((response_headers, Json(report.into())))
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
    let request = ReadRequest {
        filter: query.filter.as_deref(),
        projection: query.projection.as_deref(),
        limit: query.limit,
        cursor: query.cursor.as_deref(),
    };
    let page = reader::read(&state.sinks, &tenant, &collection, request).await?;
    Ok(Json(Page {
        documents: page
            .documents
            .into_iter()
            .map(|d| Bson::Document(d).into_relaxed_extjson())
            .collect(),
        next_cursor: page.next_cursor,
    }))
}
