//! Stream ingestion: tenants publish to their own queue in their own RabbitMQ vhost; every
//! host runs its share of each stream's consumers; consumers hand batches of messages to the
//! tenant's stream app in the sandbox, write the documents with unordered bulk inserts and
//! acknowledge only after the write; dead letters carry the reason in their headers.
//!
//! - [`broker`]: vhosts, users, queues (management API) and AMQP connections.
//! - [`consumer`]: one consumer: batch, run, write, settle.
//! - [`manager`]: on every host, starts and stops consumers to match each stream's desired
//!   count and this host's share of it, and reports every few seconds.
//! - [`monitor`]: on one host at a time (an etcd election), moves each stream's desired
//!   count within the profile's min/max from its backlog, latency and throughput.
//! - [`outbox`]: reports and events on their way to the platform database, kept (bounded)
//!   while it is away.
//! - [`policy`]: the pure rules (autoscaling, placement, reconnect back-off).
//! - [`quota`]: messages and bytes per window per tenant, shared by all hosts in Redis (each
//!   host's own count while Redis is unreachable).
//! - [`service`]: what the API asks of streams: create, show, start/stop, delete, stats,
//!   dead letters, credentials.

pub mod broker;
pub mod consumer;
pub mod manager;
pub mod monitor;
pub mod outbox;
pub mod policy;
pub mod quota;
pub mod service;
pub mod stats;

pub use broker::Broker;
pub use outbox::Outbox;
pub use quota::Quota;

use crate::app_store::AppStore;
use crate::config::StreamConfig;
use crate::metrics::Metrics;
use crate::platform::Platform;
use crate::registry::Registry;
use crate::sink::SinkResolver;
use std::sync::Arc;

/// The role a host announces in etcd when it runs stream consumers.
pub const CONSUMER_ROLE: &str = "stream";

/// What the stream subsystem shares.
pub struct StreamContext {
    /// The broker.
    pub broker: Broker,
    /// Quota counters.
    pub quota: Quota,
    /// Reports and events on their way to the platform database.
    pub outbox: Outbox,
    /// The platform database.
    pub platform: Platform,
    /// App loading.
    pub apps: Arc<AppStore>,
    /// Sink resolution.
    pub sinks: Arc<SinkResolver>,
    /// Membership (consumer placement) and elections (the monitor).
    pub registry: Registry,
    /// Settings.
    pub config: StreamConfig,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// This host's id.
    pub host: String,
}

/// The name of a stream's dead-letter queue.
pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}{}", broker::DEAD_LETTER_SUFFIX)
}
