//! What a tenant has used against its profile's quotas, and the platform's figures over time
//! for the operator.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A tenant's use of its quotas now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QuotaUsage {
    /// The tenant.
    pub tenant: String,
    /// The UTC day the daily counters count (`YYYY-MM-DD`).
    pub day: String,
    /// Bytes staged by batch uploads today, against `batch.max_mib_per_day`.
    pub batch: Used,
    /// Bytes written through the daas API today, against `daas.max_mib_per_day`.
    pub daas: Used,
    /// Stream messages consumed in the current quota window, against
    /// `stream.max_messages_per_window`. `None` when the shared counter (Redis) could not
    /// be read.
    pub stream_messages: Option<Used>,
    /// Stream bytes consumed in the current quota window, against
    /// `stream.max_mib_per_window`; `None` as above.
    pub stream_bytes: Option<Used>,
    /// The stream quota window, in seconds.
    pub stream_window_secs: u64,
    /// Streams, against nothing: the profile bounds consumers, not streams.
    pub streams: u64,
    /// Apps.
    pub apps: u64,
}

/// An amount used against its limit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Used {
    /// Used so far.
    pub used: u64,
    /// The limit.
    pub limit: u64,
}

/// The whole platform's work over time, for the operator: stream reports and batch
/// endings of every tenant, one point per step that holds any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PlatformSeries {
    /// The window, in seconds.
    pub window_secs: u64,
    /// The width of one point, in seconds.
    pub step_secs: u64,
    /// The window's start (RFC 3339).
    pub from: String,
    /// Its end: now (RFC 3339).
    pub to: String,
    /// Oldest first.
    pub points: Vec<PlatformPoint>,
}

/// The platform's work in one step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PlatformPoint {
    /// The step's start (RFC 3339).
    pub at: String,
    /// Stream reports in the step (0: no stream figures here, not zero throughput).
    pub stream_reports: u64,
    /// Stream messages settled per second over the step.
    pub stream_messages_per_sec: f64,
    /// Stream messages dead-lettered.
    pub stream_dead_lettered: u64,
    /// Infrastructure errors met by stream consumers.
    pub stream_errors: u64,
    /// Batch files that ended `done`.
    pub batch_done: u64,
    /// Batch files that ended `failed` or `dead`.
    pub batch_failed: u64,
    /// Documents written by batch jobs and stream consumers.
    pub documents: u64,
}
