//! Data as a service: what third-party programs may ask of a tenant's database. The HTTP
//! handlers in `api::data` parse and authorize; the rules and the work live here.
//!
//! - [`query`]: the operators a tenant's filter and projection may use.
//! - [`writer`]: writes (JSON all or nothing, NDJSON as it arrives), ids from the
//!   idempotency key, the quota, the ingestion log.
//! - [`reader`]: reads, a page at a time in `_id` order, bounded in time.

pub mod query;
pub mod reader;
pub mod writer;

use crate::names;
use crate::platform::StoreError;
use crate::sink::SinkError;

/// Why a daas write or read was refused or failed. Its `Display` is what the client is told
/// (and what the ingestion log keeps): it never carries a server's own words about a failure.
#[derive(Debug, thiserror::Error)]
pub enum DaasError {
    /// A collection name MongoDB or another driver could not use.
    #[error("{0}")]
    InvalidCollection(String),
    /// A malformed request: the body's syntax, a bad parameter, a refused query.
    #[error("{0}")]
    Malformed(String),
    /// Too many bytes or documents.
    #[error("{0}")]
    TooLarge(String),
    /// The request body could not be read to its end.
    #[error(transparent)]
    Body(#[from] BodyError),
    /// The daily quota would be passed.
    #[error("{0}")]
    QuotaExceeded(String),
    /// None of the documents could be written.
    #[error("none of the {count} documents could be written{first}")]
    NothingWritten {
        /// Documents refused.
        count: u64,
        /// The first refusal, as ` (first, at N: reason)`, or empty.
        first: String,
    },
    /// The query ran past `daas.max_query_ms`.
    #[error(
        "the query ran longer than {0} ms (daas.max_query_ms) and was stopped; narrow the \
         filter, or use a field with an index"
    )]
    QueryTimeout(u128),
    /// The tenant's sink could not be resolved.
    #[error("{}", sink_message(.0))]
    Sink(#[source] SinkError),
    /// The tenant's coredms failed during a write (the cause is logged where it happened).
    #[error(
        "the tenant's coredms failed during the write; retry with the Idempotency-Key in \
         error.written: documents already written are not written twice"
    )]
    WriteFailed,
    /// The tenant's coredms did not answer a read (the cause is logged where it happened).
    #[error("the tenant's coredms did not answer the read; retry later")]
    ReadFailed,
    /// The platform database refused or failed.
    #[error("{}", store_message(.0))]
    Store(#[from] StoreError),
    /// The host could not do its own part (the OS's random source for a key).
    #[error("internal error; the cause is in the host's log")]
    Host(#[source] anyhow::Error),
}

/// What a client is told of a sink it cannot use: nothing of the server's own words.
fn sink_message(error: &SinkError) -> String {
    match error {
        SinkError::Missing { .. } => error.to_string(),
        SinkError::Unreachable(_) => "the tenant's coredms is unreachable; retry later".to_owned(),
    }
}

/// What a client is told of a platform database error (the API's words for them).
fn store_message(error: &StoreError) -> String {
    match error {
        StoreError::NotFound(message) | StoreError::Conflict(message) => message.clone(),
        StoreError::Database(_) => {
            "a platform service (database or queue) is unavailable; retry later".to_owned()
        }
        StoreError::Other(_) => "internal error; the cause is in the host's log".to_owned(),
    }
}

/// A request body that could not be read: too slow (the body idle timeout) or cut off by the
/// client.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BodyError {
    /// The body stopped arriving within the idle timeout.
    #[error(
        "the request body stopped arriving (server.body_idle_timeout_ms, or \
         server.upload_body_idle_timeout_ms for uploads)"
    )]
    TimedOut,
    /// The body ended early or broke; the words are the transport's.
    #[error("the request body could not be read to its end: {0}")]
    Incomplete(String),
}

/// Refuses a collection name MongoDB or another driver could not use.
pub fn check_collection(name: &str) -> Result<(), DaasError> {
    names::collection_name(name).map_err(|e| DaasError::InvalidCollection(e.to_string()))
}
