//! The monitor and autoscaler. Every host campaigns in the etcd election `stream-monitor`;
//! the leader checks every running stream each `stream.monitor_interval_ms` and moves its
//! desired consumer count by one within the profile's
//! `min_consumers_per_stream..=max_consumers_per_stream`:
//!
//! - up when the backlog per consumer is above `scale_up_backlog`, or the p99 latency of the
//!   latest reports above `scale_up_latency_ms` (with messages waiting), for `sustain` checks
//!   in a row; never while the tenant is throttled (more consumers would not help);
//! - down when backlog per consumer and throughput per consumer are below
//!   `scale_down_backlog` and `scale_down_throughput` for `sustain` checks in a row;
//! - never within `cooldown_secs` of the stream's last change; at once back into min/max
//!   when the profile changed under it.
//!
//! Each decision is a conditional update of the stream record (so even two leaders in a
//! split second cannot both apply theirs) and is logged with its reason in `stream_events`.
//! Hosts' managers then start or stop consumers.

use super::StreamContext;
use super::policy::{self, Decision, Pressure, Reading};
use crate::platform::{StreamEvent, StreamRecord, StreamReport, TenantStatus};
use anyhow::Result;
use mongodb::bson::DateTime;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The election's name.
pub const ELECTION: &str = "stream-monitor";

/// Campaigns, and checks the streams while leading, until `stop`.
pub async fn run(context: Arc<StreamContext>, lease: Duration, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        let campaign = context.registry.campaign(ELECTION, &context.host, lease);
        let leadership = tokio::select! {
            leadership = campaign => leadership,
            _ = stop.changed() => break,
        };
        match leadership {
            Ok(leadership) => {
                tracing::info!(host = %context.host, "this host now runs the stream monitor");
                lead(&context, leadership.lost(), &mut stop).await;
                leadership.resign().await;
                tracing::info!(host = %context.host, "this host no longer runs the stream monitor");
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "stream monitor election failed; trying again");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = stop.changed() => break,
                }
            }
        }
    }
}

async fn lead(
    context: &StreamContext,
    mut lost: watch::Receiver<bool>,
    stop: &mut watch::Receiver<bool>,
) {
    let mut pressure: HashMap<String, Pressure> = HashMap::new();
    let period = Duration::from_millis(context.config.monitor_interval_ms);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => return,
            _ = lost.changed() => return,
        }
        if *lost.borrow() || *stop.borrow() {
            return;
        }
        let streams = match context.platform.running_streams().await {
            Ok(streams) => streams,
            Err(e) => {
                tracing::warn!(error = %e, "monitor cannot list the streams");
                continue;
            }
        };
        pressure.retain(|id, _| streams.iter().any(|s| &s.id == id));
        for stream in streams {
            let entry = pressure.entry(stream.id.clone()).or_default();
            if let Err(e) = check(context, &stream, entry).await {
                tracing::warn!(stream = %stream.id, error = %format!("{e:#}"), "monitor cannot check the stream");
            }
        }
    }
}

async fn check(
    context: &StreamContext,
    stream: &StreamRecord,
    pressure: &mut Pressure,
) -> Result<()> {
    let tenant = context.platform.tenant(&stream.tenant).await?;
    if tenant.status == TenantStatus::Suspended {
        return Ok(());
    }
    let profile = &tenant.profile.stream;
    let (min, max) = (
        profile.min_consumers_per_stream,
        profile.max_consumers_per_stream,
    );
    let current = stream.consumers;
    if let Some(Decision::Scale { to, reason }) = policy::into_bounds(current, min, max) {
        return decide(context, stream, to, reason).await;
    }
    let reading = read(context, stream, profile.report_interval_secs).await?;
    let scale = &profile.autoscale;
    let cooling = stream.scaled_at.is_some_and(|at| {
        DateTime::now().timestamp_millis() - at.timestamp_millis()
            < (scale.cooldown_secs * 1000) as i64
    });
    match policy::autoscale(current, (min, max), scale, &reading, cooling, pressure) {
        Decision::Scale { to, reason } => decide(context, stream, to, reason).await,
        Decision::Hold => Ok(()),
    }
}

/// Backlog now (from the broker), throughput and latency from the reports of the last two
/// report intervals.
async fn read(context: &StreamContext, stream: &StreamRecord, report_secs: u64) -> Result<Reading> {
    let backlog = context.broker.ready(&stream.tenant, &stream.queue).await?;
    let window_ms = (report_secs * 2000).max(context.config.monitor_interval_ms * 2);
    let reports = context
        .platform
        .recent_reports(
            &stream.tenant,
            &stream.name,
            Duration::from_millis(window_ms),
        )
        .await?;
    let messages: u64 = reports.iter().map(|r| r.messages).sum();
    let latest = StreamReport::latest_per_host(&reports);
    Ok(Reading {
        backlog,
        throughput: messages as f64 * 1000.0 / window_ms as f64,
        p99_ms: latest.iter().map(|r| r.latency_p99_ms).fold(0.0, f64::max),
        throttled: latest.iter().any(|r| r.throttled),
    })
}

async fn decide(
    context: &StreamContext,
    stream: &StreamRecord,
    target: u32,
    reason: String,
) -> Result<()> {
    let from = stream.consumers;
    if !context
        .platform
        .scale_stream(&stream.id, from, target)
        .await?
    {
        // Someone else changed it since we read it: look again next time.
        return Ok(());
    }
    let kind = if target > from {
        "scale_up"
    } else {
        "scale_down"
    };
    tracing::info!(stream = %stream.id, from, to = target, %reason, "stream {kind}");
    context.outbox.event(StreamEvent {
        tenant: stream.tenant.clone(),
        stream: stream.name.clone(),
        at: DateTime::now(),
        kind: kind.to_owned(),
        from: Some(from),
        to: Some(target),
        reason,
        host: context.host.clone(),
    });
    Ok(())
}
