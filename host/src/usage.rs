//! What tenants have used against their profiles' quotas, and the whole platform's work over
//! time: what the console's usage and operator views show.

use crate::platform::{Platform, StoreResult, TenantRecord, today};
use crate::stream::quota::{Limits, Quota};
use mongodb::bson::DateTime;
use mysimbdp_api::{PlatformPoint, PlatformSeries, QuotaUsage, Used};
use std::collections::BTreeMap;
use std::time::Duration;

const MIB: u64 = 1024 * 1024;

/// One tenant's use of its quotas now.
pub async fn of_tenant(
    platform: &Platform,
    quota: &Quota,
    tenant: &TenantRecord,
) -> StoreResult<QuotaUsage> {
    let daily = platform.daily_usage(Some(&tenant.id)).await?;
    assemble(platform, quota, tenant, &daily).await
}

/// Every tenant's use of its quotas now, in tenant order.
pub async fn of_all(platform: &Platform, quota: &Quota) -> StoreResult<Vec<QuotaUsage>> {
    let daily = platform.daily_usage(None).await?;
    let tenants = platform.list_tenants().await?;
    let mut usage = Vec::with_capacity(tenants.len());
    for tenant in &tenants {
        usage.push(assemble(platform, quota, tenant, &daily).await?);
    }
    Ok(usage)
}

async fn assemble(
    platform: &Platform,
    quota: &Quota,
    tenant: &TenantRecord,
    daily: &BTreeMap<(String, String), u64>,
) -> StoreResult<QuotaUsage> {
    let profile = &tenant.profile;
    let used = |channel: &str| {
        daily
            .get(&(tenant.id.clone(), channel.to_owned()))
            .copied()
            .unwrap_or(0)
    };
    let limits = Limits::of(&profile.stream);
    // The shared counter may be away (Redis down): the rest of the answer still stands.
    let stream = match quota.used(&tenant.id, limits).await {
        Ok(used) => Some(used),
        Err(e) => {
            tracing::warn!(tenant = %tenant.id, error = %format!("{e:#}"), "cannot read the stream quota's counter");
            None
        }
    };
    let (apps, streams) = tokio::try_join!(
        platform.list_apps(&tenant.id),
        platform.list_streams(&tenant.id)
    )?;
    Ok(QuotaUsage {
        tenant: tenant.id.clone(),
        day: today(),
        batch: Used {
            used: used("batch"),
            limit: profile.batch.max_mib_per_day.saturating_mul(MIB),
        },
        daas: Used {
            used: used("daas"),
            limit: profile.daas.max_mib_per_day.saturating_mul(MIB),
        },
        stream_messages: stream.map(|(messages, _)| Used {
            used: messages,
            limit: limits.messages,
        }),
        stream_bytes: stream.map(|(_, bytes)| Used {
            used: bytes,
            limit: limits.bytes,
        }),
        stream_window_secs: profile.stream.window_secs,
        streams: streams.len() as u64,
        apps: apps.len() as u64,
    })
}

/// The platform's stream and batch work over the last `window_secs`, in about `points`
/// steps aligned to multiples of the step.
pub async fn platform_series(
    platform: &Platform,
    window_secs: u64,
    points: u64,
) -> StoreResult<PlatformSeries> {
    let step_secs = window_secs.div_ceil(points.max(1)).max(1);
    let step_ms = step_secs as i64 * 1000;
    let step = Duration::from_secs(step_secs);
    let now_ms = DateTime::now().timestamp_millis();
    let since_ms = (now_ms - window_secs as i64 * 1000).div_euclid(step_ms) * step_ms + step_ms;
    let since = DateTime::from_millis(since_ms);
    let (reports, batches) = tokio::try_join!(
        platform.report_steps(None, since, step),
        platform.batch_steps(since, step)
    )?;
    let mut points: BTreeMap<i64, PlatformPoint> = BTreeMap::new();
    let time = |ms: i64| {
        DateTime::from_millis(ms)
            .try_to_rfc3339_string()
            .unwrap_or_default()
    };
    for report in reports {
        let covered_ms = (now_ms - report.start_ms).clamp(1, step_ms);
        let point = points.entry(report.start_ms).or_default();
        point.stream_reports = report.reports;
        point.stream_messages_per_sec = report.messages as f64 * 1000.0 / covered_ms as f64;
        point.stream_dead_lettered = report.dead_lettered;
        point.stream_errors = report.errors;
        point.documents += report.documents;
    }
    for batch in batches {
        let point = points.entry(batch.start_ms).or_default();
        point.batch_done = batch.done;
        point.batch_failed = batch.failed;
        point.documents += batch.documents;
    }
    Ok(PlatformSeries {
        window_secs,
        step_secs,
        from: time(since_ms),
        to: time(now_ms),
        points: points
            .into_iter()
            .map(|(start, point)| PlatformPoint {
                at: time(start),
                ..point
            })
            .collect(),
    })
}
