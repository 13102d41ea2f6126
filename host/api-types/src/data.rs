//! Data as a service: writes and pages of documents.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One refused document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Rejected {
    /// Its position: index in the array (from 0), or line number (from 1) of an NDJSON stream.
    pub at: u64,
    /// Why.
    pub reason: String,
}

/// The result of a write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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
    /// The key the documents' ids derive from (the request's `Idempotency-Key`, or one the
    /// host chose): the same body sent again with it writes nothing twice.
    pub idempotency_key: String,
    /// Where they went.
    pub sink: SinkTarget,
}

/// A page of documents, in `_id` order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Page {
    /// The documents, as relaxed extended JSON.
    #[schema(value_type = Vec<Object>)]
    pub documents: Vec<serde_json::Value>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

/// Which coredms a tenant resolved to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SinkTarget {
    /// `shared` or `dedicated`.
    pub coredms: String,
    /// The registry entry's id, for a dedicated coredms.
    pub service_id: Option<String>,
    /// The URI, without secrets.
    pub uri: String,
    /// The database.
    pub database: String,
}
