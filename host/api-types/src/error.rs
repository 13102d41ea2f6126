//! The body of every error answer.

use crate::FailureClass;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// The HTTP status, repeated for clients that lose it.
    pub status: u16,
    /// A stable machine-readable code, e.g. `invalid_component`.
    pub code: String,
    /// What happened and, where possible, what to do about it.
    pub message: String,
    /// The offending field of a refused document (e.g. `stream.max_consumers_per_stream`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The failure class of a refused app (e.g. `out-of-fuel`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub class: Option<FailureClass>,
    /// For a refused or failed data write: exactly what it had written before it stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub written: Option<Written>,
}

/// How far a data write got before it was refused or failed. Every document up to and
/// including position `through` is settled (written, already there, or refused and counted);
/// nothing after it was written, except, after a 503, possibly part of the batch that was in
/// flight. Retrying with `idempotency_key` writes nothing twice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Written {
    /// Documents written by this request.
    pub inserted: u64,
    /// Documents whose `_id` was already there.
    pub duplicates: u64,
    /// Documents refused (bad JSON, not storable); the others were written.
    pub rejected: u64,
    /// The last settled position (array index, or NDJSON line from 1); absent when none is.
    pub through: Option<u64>,
    /// The key the documents' ids derive from: send it as `Idempotency-Key` when retrying.
    pub idempotency_key: String,
}
