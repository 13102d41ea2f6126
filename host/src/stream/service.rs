//! The stream capability as callers use it (the HTTP API today): creating a stream
//! (the broker side, then the platform record), listing and showing streams with their live
//! figures, start and stop, delete with its force rule, figures over a window, dead letters
//! and the tenant's broker credentials. Callers parse and authorize; the decisions live here
//! and fail with a typed [`StreamError`].

use super::StreamContext;
use super::broker::{DeadLetter, DeleteRefused};
use super::dead_letter_queue;
use crate::config::MAX_DELIVERY_LIMIT;
use crate::names;
use crate::platform::{
    BrokerAccount, NewStream, SeriesSteps, StoreError, StreamRecord, StreamReport, StreamStatus,
    TenantRecord,
};
use crate::runtime::AppKind;
use mongodb::bson::DateTime;
use mysimbdp_api::{EventView, IncompleteWindow, SeriesPoint, StreamSeries, StreamStats};
use std::collections::BTreeMap;
use std::time::Duration;

/// Why a stream operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// A field of the request breaks its rule.
    #[error("{message}")]
    InvalidField {
        /// A stable code (`invalid_name`, `invalid_value`).
        code: &'static str,
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The request conflicts with what exists: a taken name, an app of the wrong kind or
    /// without an active version, queues that still hold messages.
    #[error("{0}")]
    Conflict(String),
    /// The platform database refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The broker failed or is unreachable.
    #[error("the broker: {0:#}")]
    Broker(#[source] anyhow::Error),
    /// The host could not do its own part (the OS's random source for a password).
    #[error("{0:#}")]
    Host(#[source] anyhow::Error),
}

/// What a new stream is to be.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// Its name.
    pub name: String,
    /// The stream app consuming it.
    pub app: String,
    /// The app's parameters.
    pub params: BTreeMap<String, String>,
    /// The collection documents land in (`None`: the profile's).
    pub collection: Option<String>,
    /// Deliveries before dead-lettering (`None`: `stream.delivery_limit`).
    pub delivery_limit: Option<u32>,
}

/// A stream with what its record does not hold: the app's active version, where its
/// documents land, and the live figures of the last report interval.
#[derive(Debug, Clone)]
pub struct StreamDetails {
    /// The record.
    pub record: StreamRecord,
    /// The app's active version.
    pub version: Option<String>,
    /// The collection documents land in (the profile's when the stream names none).
    pub collection: String,
    /// Consumers reported running in the last interval, over all hosts.
    pub running_consumers: u32,
    /// Whether consumption is paused over the tenant's quota.
    pub throttled: bool,
}

/// A stream just created and the tenant's broker account to publish with.
#[derive(Debug, Clone)]
pub struct Created {
    /// The stream.
    pub stream: StreamDetails,
    /// The tenant's broker account.
    pub account: BrokerAccount,
}

/// How many of the monitor's events the figures carry.
const EVENTS: i64 = 20;

/// Creates a stream: provisions the tenant's vhost and user (repaired on every creation),
/// the stream's quorum queue with its delivery limit and its dead-letter queue, then writes
/// the record, running.
pub async fn create(
    context: &StreamContext,
    tenant: &TenantRecord,
    spec: StreamSpec,
) -> Result<Created, StreamError> {
    names::stream_name(&spec.name).map_err(|e| StreamError::InvalidField {
        code: "invalid_name",
        field: "name",
        message: e.to_string(),
    })?;
    if let Some(collection) = &spec.collection {
        names::collection_name(collection).map_err(|e| StreamError::InvalidField {
            code: "invalid_name",
            field: "collection",
            message: e.to_string(),
        })?;
    }
    let delivery_limit = spec.delivery_limit.unwrap_or(context.config.delivery_limit);
    if !(1..=MAX_DELIVERY_LIMIT).contains(&delivery_limit) {
        return Err(StreamError::InvalidField {
            code: "invalid_value",
            field: "delivery_limit",
            message: format!(
                "delivery_limit = {delivery_limit}: it must be 1..={MAX_DELIVERY_LIMIT}"
            ),
        });
    }
    check_app(context, tenant, &spec.app).await?;
    match context.platform.stream(&tenant.id, &spec.name).await {
        Ok(_) => {
            return Err(StreamError::Conflict(format!(
                "a stream named {:?} exists already",
                spec.name
            )));
        }
        Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let account = account(context, &tenant.id).await?;
    let broker = &context.broker;
    // Provisioning is idempotent: every creation also repairs the tenant's vhost.
    broker
        .provision_tenant(&tenant.id, &account.password)
        .await
        .map_err(StreamError::Broker)?;
    let queue = spec.name.clone();
    let dead_letters = dead_letter_queue(&queue);
    broker
        .provision_stream(&tenant.id, &queue, &dead_letters, delivery_limit)
        .await
        .map_err(StreamError::Broker)?;
    let record = context
        .platform
        .create_stream(NewStream {
            tenant: &tenant.id,
            name: &spec.name,
            app: &spec.app,
            params: spec.params,
            collection: spec.collection,
            delivery_limit,
            consumers: tenant
                .profile
                .stream
                .min_consumers_per_stream
                .max(1)
                .min(tenant.profile.stream.max_consumers_per_stream),
            vhost: account.vhost.clone(),
            queue,
            dead_letter_queue: dead_letters,
        })
        .await?;
    tracing::info!(tenant = %tenant.id, stream = %record.name, "stream created");
    let stream = details(context, tenant, record).await;
    Ok(Created { stream, account })
}

/// The app a new stream names must be a stream app with an active version.
async fn check_app(
    context: &StreamContext,
    tenant: &TenantRecord,
    name: &str,
) -> Result<(), StreamError> {
    let app = context.platform.app(&tenant.id, name).await?;
    if app.kind != AppKind::Stream {
        return Err(StreamError::Conflict(format!(
            "app {name:?} is a batch app; a stream needs a stream app"
        )));
    }
    if app.active.is_none() {
        return Err(StreamError::Conflict(format!(
            "app {name:?} has no active version"
        )));
    }
    Ok(())
}

/// The tenant's streams, each with its details.
pub async fn list(
    context: &StreamContext,
    tenant: &TenantRecord,
) -> Result<Vec<StreamDetails>, StreamError> {
    let mut streams = Vec::new();
    for stream in context.platform.list_streams(&tenant.id).await? {
        streams.push(details(context, tenant, stream).await);
    }
    Ok(streams)
}

/// One stream with its details.
pub async fn show(
    context: &StreamContext,
    tenant: &TenantRecord,
    name: &str,
) -> Result<StreamDetails, StreamError> {
    let stream = context.platform.stream(&tenant.id, name).await?;
    Ok(details(context, tenant, stream).await)
}

/// Starts or stops a stream: consumers follow on the next reconciliation (stopping ones
/// finish their batch; messages wait in the queue).
pub async fn set_status(
    context: &StreamContext,
    tenant: &TenantRecord,
    name: &str,
    status: StreamStatus,
) -> Result<StreamDetails, StreamError> {
    let stream = context
        .platform
        .set_stream_status(&tenant.id, name, status)
        .await?;
    Ok(details(context, tenant, stream).await)
}

/// Deletes a stream and its queues; refused while a queue holds messages, unless `force`
/// (they are lost).
pub async fn delete(
    context: &StreamContext,
    tenant: &TenantRecord,
    name: &str,
    force: bool,
) -> Result<(), StreamError> {
    let stream = context.platform.stream(&tenant.id, name).await?;
    context
        .broker
        .delete_stream(&tenant.id, &stream.queue, &stream.dead_letter_queue, force)
        .await
        .map_err(|e| match e {
            DeleteRefused::NotEmpty(message) => StreamError::Conflict(message),
            DeleteRefused::Broker(e) => StreamError::Broker(e),
        })?;
    context.platform.delete_stream(&tenant.id, name).await?;
    tracing::info!(tenant = %tenant.id, stream = %name, "stream deleted");
    Ok(())
}

/// The stream's record and the tenant's broker account: where and how to publish.
pub async fn connection(
    context: &StreamContext,
    tenant: &TenantRecord,
    name: &str,
) -> Result<(StreamRecord, BrokerAccount), StreamError> {
    let stream = context.platform.stream(&tenant.id, name).await?;
    let account = account(context, &tenant.id).await?;
    Ok((stream, account))
}

/// The stream's figures over the last `window_secs`, with the monitor's latest decisions.
pub async fn stats(
    context: &StreamContext,
    tenant: &TenantRecord,
    name: &str,
    window_secs: u64,
) -> Result<StreamStats, StreamError> {
    let stream = context.platform.stream(&tenant.id, name).await?;
    let reports = context
        .platform
        .recent_reports(&tenant.id, name, Duration::from_secs(window_secs))
        .await?;
    let sum = |f: fn(&StreamReport) -> u64| reports.iter().map(f).sum::<u64>();
    let messages = sum(|r| r.messages);
    let weighted: f64 = reports
        .iter()
        .map(|r| r.latency_avg_ms * r.messages as f64)
        .sum();
    let (running_consumers, throttled) = live(context, tenant, &stream).await;
    // The broker's own dead letters (delivery limit) reach the queue without any report.
    let dead_letters_queued = match context
        .broker
        .ready(&tenant.id, &stream.dead_letter_queue)
        .await
    {
        Ok(depth) => Some(depth),
        Err(e) => {
            tracing::warn!(stream = %stream.id, error = %format!("{e:#}"), "cannot read the dead-letter queue's depth");
            None
        }
    };
    let incomplete = reports
        .iter()
        .filter_map(|r| {
            let folded = r.folded.as_ref()?;
            let time = |at: DateTime| at.try_to_rfc3339_string().unwrap_or_default();
            Some(IncompleteWindow {
                host: r.host.clone(),
                from: time(folded.from),
                to: time(folded.to),
                folded_into: r.at.map(time).unwrap_or_default(),
                reports: folded.reports,
                messages: folded.messages,
                events_dropped: folded.events_dropped,
            })
        })
        .collect();
    let events = context
        .platform
        .stream_events(&tenant.id, name, EVENTS)
        .await?;
    Ok(StreamStats {
        stream: name.to_owned(),
        window_secs,
        reports: reports.len(),
        messages,
        bytes: sum(|r| r.bytes),
        documents: sum(|r| r.documents),
        messages_per_sec: messages as f64 / covered_secs(&reports, window_secs),
        dead_lettered: sum(|r| r.dead_lettered),
        dead_letters_queued,
        retried: sum(|r| r.retried),
        errors: sum(|r| r.errors),
        latency_avg_ms: if messages == 0 {
            0.0
        } else {
            weighted / messages as f64
        },
        latency_p99_ms: reports.iter().map(|r| r.latency_p99_ms).fold(0.0, f64::max),
        queue_depth: reports.last().map(|r| r.queue_depth).unwrap_or(0),
        running_consumers,
        desired_consumers: stream.consumers,
        throttled,
        events: events.into_iter().map(EventView::from).collect(),
        incomplete,
    })
}

/// Events a series carries at most (the newest of its window).
const SERIES_EVENTS: i64 = 500;

/// A stream's figures over the last `window_secs` in about `points` steps, each at least one
/// report interval wide (a narrower step would show a report's messages as a spike followed by
/// empty steps), aligned to multiples of the step so that refreshing the plot does not move
/// its points.
pub async fn series(
    context: &StreamContext,
    tenant: &TenantRecord,
    name: &str,
    window_secs: u64,
    points: u64,
) -> Result<StreamSeries, StreamError> {
    context.platform.stream(&tenant.id, name).await?;
    let window = SeriesSteps::now(
        window_secs,
        points,
        tenant.profile.stream.report_interval_secs,
    );
    let SeriesSteps {
        step_secs,
        step_ms,
        since_ms,
        now_ms,
    } = window;
    let since = window.since();
    let steps = context
        .platform
        .report_steps(
            Some((&tenant.id, name)),
            since,
            Duration::from_secs(step_secs),
        )
        .await?;
    let events = context
        .platform
        .stream_events_since(&tenant.id, name, since, SERIES_EVENTS)
        .await?;
    let time = |ms: i64| {
        DateTime::from_millis(ms)
            .try_to_rfc3339_string()
            .unwrap_or_default()
    };
    let points = steps
        .into_iter()
        .map(|step| {
            // The step still running is rated over the part of it that has passed.
            let covered_ms = (now_ms - step.start_ms).clamp(1, step_ms);
            SeriesPoint {
                at: time(step.start_ms),
                offset_secs: ((step.start_ms - since_ms).max(0) / 1000) as u64,
                messages: step.messages,
                messages_per_sec: step.messages as f64 * 1000.0 / covered_ms as f64,
                documents: step.documents,
                dead_lettered: step.dead_lettered,
                errors: step.errors,
                latency_avg_ms: step.latency_avg_ms,
                latency_p99_ms: step.latency_p99_ms,
                queue_depth: step.queue_depth,
                consumers: step.consumers,
                throttled: step.throttled,
            }
        })
        .collect();
    Ok(StreamSeries {
        stream: name.to_owned(),
        window_secs,
        step_secs,
        from: time(since_ms),
        to: time(now_ms),
        points,
        events: events.into_iter().map(EventView::from).collect(),
    })
}

/// Up to `limit` of the stream's dead letters, left in place.
pub async fn peek_dead_letters(
    context: &StreamContext,
    tenant: &TenantRecord,
    name: &str,
    limit: u32,
) -> Result<Vec<DeadLetter>, StreamError> {
    let stream = context.platform.stream(&tenant.id, name).await?;
    context
        .broker
        .peek(&tenant.id, &stream.dead_letter_queue, limit)
        .await
        .map_err(StreamError::Broker)
}

/// Sends up to `limit` dead letters back through the stream (without the dead-lettering
/// headers, with a fresh delivery count); says how many went.
pub async fn replay_dead_letters(
    context: &StreamContext,
    tenant: &TenantRecord,
    name: &str,
    limit: u64,
) -> Result<u64, StreamError> {
    let stream = context.platform.stream(&tenant.id, name).await?;
    let replayed = context
        .broker
        .replay(&tenant.id, &stream.queue, &stream.dead_letter_queue, limit)
        .await
        .map_err(StreamError::Broker)?;
    tracing::info!(tenant = %tenant.id, stream = %name, replayed, "dead letters replayed");
    Ok(replayed)
}

/// Issues the tenant a new broker password: the broker first, so the saved one always works.
pub async fn rotate_credentials(
    context: &StreamContext,
    tenant: &TenantRecord,
) -> Result<BrokerAccount, StreamError> {
    let mut account = account(context, &tenant.id).await?;
    account.password = crate::tokens::broker_password().map_err(StreamError::Host)?;
    account.issued_at = DateTime::now();
    context
        .broker
        .set_password(&tenant.id, &account.password)
        .await
        .map_err(StreamError::Broker)?;
    context.platform.save_broker_account(&account).await?;
    Ok(account)
}

/// The tenant's broker account: created (its vhost provisioned by the caller) on first use.
async fn account(context: &StreamContext, tenant: &str) -> Result<BrokerAccount, StreamError> {
    let broker = &context.broker;
    if let Some(account) = context.platform.broker_account(tenant).await? {
        return Ok(account);
    }
    let account = BrokerAccount {
        tenant: tenant.to_owned(),
        vhost: broker.vhost(tenant),
        user: broker.vhost(tenant),
        password: crate::tokens::broker_password().map_err(StreamError::Host)?,
        issued_at: DateTime::now(),
    };
    context.platform.save_broker_account(&account).await?;
    Ok(account)
}

/// A stream's details: the app's active version and the live figures (both best effort: a
/// stream is shown even when they cannot be read).
async fn details(
    context: &StreamContext,
    tenant: &TenantRecord,
    stream: StreamRecord,
) -> StreamDetails {
    let version = context
        .platform
        .app(&tenant.id, &stream.app)
        .await
        .ok()
        .and_then(|a| a.active);
    let (running_consumers, throttled) = live(context, tenant, &stream).await;
    StreamDetails {
        collection: stream
            .collection
            .clone()
            .unwrap_or_else(|| tenant.profile.sink.collection.clone()),
        record: stream,
        version,
        running_consumers,
        throttled,
    }
}

/// Live figures from the reports of the last two intervals: running consumers and throttling.
async fn live(
    context: &StreamContext,
    tenant: &TenantRecord,
    stream: &StreamRecord,
) -> (u32, bool) {
    let window = Duration::from_secs(tenant.profile.stream.report_interval_secs * 2);
    let reports = context
        .platform
        .recent_reports(&tenant.id, &stream.name, window)
        .await
        .unwrap_or_default();
    let latest = StreamReport::latest_per_host(&reports);
    (
        latest.iter().map(|r| r.consumers).sum(),
        latest.iter().any(|r| r.throttled),
    )
}

/// The seconds the reports cover: from the start of the first one's interval to the end of
/// the last one, at most the window.
fn covered_secs(reports: &[StreamReport], window_secs: u64) -> f64 {
    let window_ms = window_secs as i64 * 1000;
    let covered_ms = match (reports.first(), reports.last()) {
        (Some(first), Some(last)) => {
            let start = first.at.map(|at| at.timestamp_millis()).unwrap_or_default()
                - first.interval_ms as i64;
            let end = last.at.map(|at| at.timestamp_millis()).unwrap_or_default();
            (end - start).clamp(1, window_ms)
        }
        _ => window_ms,
    };
    covered_ms as f64 / 1000.0
}
