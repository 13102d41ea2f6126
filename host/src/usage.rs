//! What tenants have used against their profiles' quotas, and the whole platform's work over
//! time: what the console's usage and operator views show.

use crate::platform::{Platform, SeriesSteps, StoreResult, TenantRecord, today};
use crate::stream::quota::{Limits, Quota};
use futures_util::StreamExt;
use mongodb::bson::DateTime;
use mysimbdp_api::{PlatformPoint, PlatformSeries, QuotaUsage, Used};
use std::collections::BTreeMap;

const MIB: u64 = 1024 * 1024;

/// Stream quota counters read from Redis at once at most, for the operator's view of every
/// tenant: one slow or absent Redis then costs a few timeouts, not one per tenant in a row.
const QUOTA_READS: usize = 8;

/// One tenant's use of its quotas now.
pub async fn of_tenant(
    platform: &Platform,
    quota: &Quota,
    tenant: &TenantRecord,
) -> StoreResult<QuotaUsage> {
    let counts = Counts::read(platform, Some(&tenant.id)).await?;
    Ok(assemble(quota, tenant, &counts).await)
}

/// Every tenant's use of its quotas now, in tenant order.
pub async fn of_all(platform: &Platform, quota: &Quota) -> StoreResult<Vec<QuotaUsage>> {
    let (counts, tenants) =
        tokio::try_join!(Counts::read(platform, None), platform.list_tenants())?;
    // The futures are made before they are streamed: a closure over borrowed tenants inside
    // the stream's type is one rustc cannot prove `Send` for, as a handler must be
    // (rust-lang/rust#64552, "implementation of `FnOnce` is not general enough").
    let reads: Vec<_> = tenants
        .iter()
        .map(|tenant| assemble(quota, tenant, &counts))
        .collect();
    Ok(futures_util::stream::iter(reads)
        .buffered(QUOTA_READS)
        .collect()
        .await)
}

/// What the platform database counts for the usage answer, of one tenant or of all, in one
/// query of each kind whatever the number of tenants.
struct Counts {
    /// Today's bytes per `(tenant, channel)`.
    daily: BTreeMap<(String, String), u64>,
    /// Apps per tenant.
    apps: BTreeMap<String, u64>,
    /// Streams per tenant.
    streams: BTreeMap<String, u64>,
}

impl Counts {
    async fn read(platform: &Platform, tenant: Option<&str>) -> StoreResult<Self> {
        let (daily, apps, streams) = tokio::try_join!(
            platform.daily_usage(tenant),
            platform.app_counts(tenant),
            platform.stream_counts(tenant)
        )?;
        Ok(Self {
            daily,
            apps,
            streams,
        })
    }
}

async fn assemble(quota: &Quota, tenant: &TenantRecord, counts: &Counts) -> QuotaUsage {
    let profile = &tenant.profile;
    let used = |channel: &str| {
        counts
            .daily
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
    QuotaUsage {
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
        streams: counts.streams.get(&tenant.id).copied().unwrap_or(0),
        apps: counts.apps.get(&tenant.id).copied().unwrap_or(0),
    }
}

/// The platform's stream and batch work over the last `window_secs`, in about `points`
/// steps aligned to multiples of the step.
pub async fn platform_series(
    platform: &Platform,
    window_secs: u64,
    points: u64,
) -> StoreResult<PlatformSeries> {
    // Tenants report at intervals of their own: no one interval bounds the step.
    let steps = SeriesSteps::now(window_secs, points, 1);
    let SeriesSteps {
        step_secs,
        step_ms,
        since_ms,
        now_ms,
    } = steps;
    let (reports, batches) = tokio::try_join!(
        platform.report_steps(None, steps.since(), steps.step()),
        platform.batch_steps(steps.since(), steps.step())
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
