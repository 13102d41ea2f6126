//! Streams, where to publish to them, their figures and their dead letters.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use utoipa::ToSchema;

/// Whether a stream's consumers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StreamStatus {
    /// Consumers run (unless the tenant is suspended or over its quota).
    Running,
    /// No consumers; messages wait in the queue.
    Stopped,
}

impl StreamStatus {
    /// The status's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Stopped => "stopped",
        }
    }
}

impl fmt::Display for StreamStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// `POST /v1/streams`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateStream {
    /// The stream's name (its id): 1-64 lowercase letters, digits, '-' and '_', starting with
    /// a letter.
    #[schema(pattern = "^[a-z][a-z0-9_-]*$", min_length = 1, max_length = 64)]
    pub name: String,
    /// The stream app consuming it (its active version, followed as it changes).
    #[schema(pattern = "^[a-z][a-z0-9_-]*$", min_length = 1, max_length = 64)]
    pub app: String,
    /// The app's parameters.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// The collection documents land in (default: the profile's `sink.collection`): 1-120
    /// letters, digits, '_' and '-' in dot-separated segments, not starting with `system.`.
    #[schema(
        pattern = "^[A-Za-z_][A-Za-z0-9_-]*(\\.[A-Za-z0-9_-]+)*$",
        min_length = 1,
        max_length = 120
    )]
    pub collection: Option<String>,
    /// Deliveries of a message before it is dead-lettered (default `stream.delivery_limit`).
    #[schema(minimum = 1, maximum = 1000)]
    pub delivery_limit: Option<u32>,
}

/// Where and how the tenant publishes to a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConnectionView {
    /// The AMQP URL without credentials, vhost included.
    pub url: String,
    /// The tenant's vhost.
    pub vhost: String,
    /// The tenant's broker user.
    pub user: String,
    /// Its password.
    pub password: String,
    /// Publish to this exchange (`mysimbdp.ingest`, direct), with routing key = `queue`. It
    /// is the only thing the tenant's user may publish to; use `mandatory` and publisher
    /// confirms to learn of a message that routed nowhere.
    // Empty from a server older than the publishing exchange (whose tenants publish through
    // the default exchange); the document still lists it as required.
    #[serde(default)]
    #[schema(required = true)]
    pub exchange: String,
    /// The stream's queue: the routing key to publish with.
    pub queue: String,
    /// Dead letters land here; the tenant's user may read it, not publish to it.
    pub dead_letter_queue: String,
}

/// A stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StreamView {
    /// Its name (id).
    pub name: String,
    /// The app.
    pub app: String,
    /// The app's active version (what consumers run now).
    pub version: Option<String>,
    /// Parameters.
    pub params: BTreeMap<String, String>,
    /// Where documents land.
    pub collection: String,
    /// `running` or `stopped`.
    pub status: StreamStatus,
    /// Consumers the stream should have now (moved by the monitor within min/max).
    pub consumers: u32,
    /// Consumers reported running in the last report interval, over all hosts.
    pub running_consumers: u32,
    /// Whether consumption is paused over the tenant's quota (latest reports).
    pub throttled: bool,
    /// Deliveries before dead-lettering.
    pub delivery_limit: u32,
    /// The queue.
    pub queue: String,
    /// The dead-letter queue.
    pub dead_letter_queue: String,
    /// The vhost.
    pub vhost: String,
    /// Created.
    pub created_at: String,
}

/// A newly created stream and where to publish.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreatedStream {
    /// The stream.
    pub stream: StreamView,
    /// How to publish to it.
    pub connection: ConnectionView,
}

/// A stream's figures over a window, from its consumers' reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StreamStats {
    /// The stream.
    pub stream: String,
    /// The window, in seconds.
    pub window_secs: u64,
    /// Reports in the window.
    pub reports: usize,
    /// Messages settled.
    pub messages: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Documents written.
    pub documents: u64,
    /// Messages per second over the time the reports cover (at most the window).
    pub messages_per_sec: f64,
    /// Messages the platform dead-lettered in the window (its verdicts: reject, limits, bad
    /// output, retries exhausted), from the consumers' reports.
    pub dead_lettered: u64,
    /// Messages in the stream's dead-letter queue now, as the broker counts them: the
    /// platform's dead letters not yet replayed *and* those the broker moved there itself (a
    /// message over the stream's delivery limit), which no consumer report counts. `None`
    /// when the broker could not be asked.
    #[serde(default)]
    pub dead_letters_queued: Option<u64>,
    /// Messages requeued.
    pub retried: u64,
    /// Infrastructure errors met by consumers.
    pub errors: u64,
    /// Mean ingestion latency (delivery to completed write), weighted by messages, ms.
    pub latency_avg_ms: f64,
    /// The highest per-report p99 latency in the window, ms.
    pub latency_p99_ms: f64,
    /// Messages waiting (latest report).
    pub queue_depth: u64,
    /// Consumers running (latest report of each host).
    pub running_consumers: u32,
    /// Consumers wanted.
    pub desired_consumers: u32,
    /// Whether consumption is paused over the quota.
    pub throttled: bool,
    /// The monitor's latest decisions and throttling changes, newest first.
    pub events: Vec<EventView>,
    /// Stretches of time in the window whose figures are not where they belong: a host kept
    /// its reports while the platform database was away, ran past its buffer, and folded the
    /// reports it could not keep into the first one it stored afterwards. Totals over a window
    /// holding both the stretch and that report are right; a window cutting through them is
    /// not. Empty when every report was stored on time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incomplete: Vec<IncompleteWindow>,
}

/// A stretch of time whose stream figures one host could not store in time (see
/// [`StreamStats::incomplete`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IncompleteWindow {
    /// The host whose figures these are.
    pub host: String,
    /// The start of the stretch (RFC 3339).
    pub from: String,
    /// Its end (RFC 3339).
    pub to: String,
    /// Where its figures went: the time of the report that carries them (RFC 3339).
    pub folded_into: String,
    /// Reports folded into that one.
    pub reports: u64,
    /// Messages those reports counted (included in the carrying report's figures).
    pub messages: u64,
    /// Stream events (throttling changes) of the stretch that were dropped, not kept.
    pub events_dropped: u64,
}

/// A decision or a throttling change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    /// When (RFC 3339).
    pub at: String,
    /// `scale_up`, `scale_down`, `throttled`, `resumed`.
    pub kind: String,
    /// Consumers before.
    pub from: Option<u32>,
    /// Consumers after.
    pub to: Option<u32>,
    /// Why.
    pub reason: String,
    /// Which host decided.
    pub host: String,
}

/// How many dead letters went back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Replayed {
    /// Messages moved from the dead-letter queue back to the stream's queue.
    pub replayed: u64,
}

/// A dead letter as shown to its tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeadLetter {
    /// The message's id.
    pub message_id: Option<String>,
    /// The failure class (`x-mysimbdp-error-class`), or `delivery-limit` when the broker
    /// dead-lettered it itself.
    // Text, not a `FailureClass`: `delivery-limit` is the broker's verdict, not an app's.
    pub class: Option<String>,
    /// Why (`x-mysimbdp-error`).
    pub error: Option<String>,
    /// Deliveries it had.
    pub deliveries: Option<i64>,
    /// The app version that failed it.
    pub app_version: Option<String>,
    /// When it was dead-lettered.
    pub dead_lettered_at: Option<String>,
    /// Its body (as text when it is UTF-8, else base64), truncated to 4 KiB.
    pub payload: String,
    /// Whether the body is base64.
    pub base64: bool,
}

/// A stream's figures over time, for plotting: one point per step of the window that holds
/// reports (a step without any is a gap, not a zero), and the monitor's decisions and
/// throttling changes of the same window on the same time axis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StreamSeries {
    /// The stream.
    pub stream: String,
    /// The window, in seconds.
    pub window_secs: u64,
    /// The width of one point, in seconds (never shorter than the reports' interval, so
    /// each point holds whole reports).
    pub step_secs: u64,
    /// The window's start (RFC 3339).
    pub from: String,
    /// Its end: now (RFC 3339).
    pub to: String,
    /// Oldest first.
    pub points: Vec<SeriesPoint>,
    /// Decisions and throttling changes in the window, oldest first.
    pub events: Vec<EventView>,
}

/// What a stream's consumers did in one step, over every host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SeriesPoint {
    /// The step's start (RFC 3339).
    pub at: String,
    /// Seconds from the series' `from` to the step's start (a multiple of `step_secs`).
    pub offset_secs: u64,
    /// Messages settled in the step.
    pub messages: u64,
    /// Those messages over the time the step covers (the last step: up to now).
    pub messages_per_sec: f64,
    /// Documents written.
    pub documents: u64,
    /// Messages dead-lettered.
    pub dead_lettered: u64,
    /// Infrastructure errors.
    pub errors: u64,
    /// Mean latency, weighted by messages, ms.
    pub latency_avg_ms: f64,
    /// The highest p99 latency any host reported in the step, ms.
    pub latency_p99_ms: f64,
    /// Messages waiting: the highest depth reported in the step.
    pub queue_depth: u64,
    /// Consumers running: each host's latest count in the step, summed.
    pub consumers: u32,
    /// Whether any host was paused over the quota in the step.
    pub throttled: bool,
}
