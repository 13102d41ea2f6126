//! Figures over time, summed by MongoDB into steps: a stream's reports (for its plots), and
//! every tenant's reports and batch endings (for the operator's). The database does the
//! grouping, so a day's window costs one answer of at most a few hundred rows, whatever the
//! number of hosts and reports behind it.

use super::{Platform, StoreResult};
use futures_util::TryStreamExt;
use mongodb::Collection;
use mongodb::bson::{Bson, DateTime, Document, doc};
use std::time::Duration;

/// How a series over a window is cut into steps: about the points asked for, never narrower
/// than `min_step_secs` (a stream's report interval: a narrower step would show a report's
/// messages as a spike followed by empty steps), aligned to multiples of the step so that
/// refreshing a plot does not move its points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesSteps {
    /// The step, whole seconds (at least one).
    pub step_secs: u64,
    /// The step, ms.
    pub step_ms: i64,
    /// The start of the first whole step in the window, ms since the epoch: a step cut by
    /// the window's start would undercount.
    pub since_ms: i64,
    /// The window's end, ms since the epoch.
    pub now_ms: i64,
}

impl SeriesSteps {
    /// The steps of the last `window_secs`, now.
    pub fn now(window_secs: u64, points: u64, min_step_secs: u64) -> Self {
        Self::at(
            DateTime::now().timestamp_millis(),
            window_secs,
            points,
            min_step_secs,
        )
    }

    /// The steps of the `window_secs` before `now_ms`.
    pub fn at(now_ms: i64, window_secs: u64, points: u64, min_step_secs: u64) -> Self {
        let step_secs = window_secs
            .div_ceil(points.max(1))
            .max(min_step_secs)
            .max(1);
        let step_ms = step_secs as i64 * 1000;
        let since_ms = (now_ms - window_secs as i64 * 1000).div_euclid(step_ms) * step_ms + step_ms;
        Self {
            step_secs,
            step_ms,
            since_ms,
            now_ms,
        }
    }

    /// The step.
    pub fn step(&self) -> Duration {
        Duration::from_secs(self.step_secs)
    }

    /// The start of the first whole step.
    pub fn since(&self) -> DateTime {
        DateTime::from_millis(self.since_ms)
    }
}

/// One step of stream reports, summed over hosts (and streams, for the platform's).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportStep {
    /// The step's start, ms since the epoch (a multiple of the step).
    pub start_ms: i64,
    /// Messages settled.
    pub messages: u64,
    /// Documents written.
    pub documents: u64,
    /// Messages dead-lettered.
    pub dead_lettered: u64,
    /// Infrastructure errors.
    pub errors: u64,
    /// Mean latency weighted by messages, ms.
    pub latency_avg_ms: f64,
    /// Highest p99 reported, ms.
    pub latency_p99_ms: f64,
    /// Highest queue depth reported.
    pub queue_depth: u64,
    /// Each host's latest consumer count in the step, summed.
    pub consumers: u32,
    /// Whether any host was throttled in the step.
    pub throttled: bool,
    /// Reports summed.
    pub reports: u64,
}

/// One step of batch endings over every tenant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchStep {
    /// The step's start, ms since the epoch.
    pub start_ms: i64,
    /// Files that ended `done`.
    pub done: u64,
    /// Files that ended `failed` or `dead`.
    pub failed: u64,
    /// Documents written.
    pub documents: u64,
}

/// The `$group` key of a step: the report time floored to a multiple of the step.
fn step_of(field: &str, step_ms: i64) -> Document {
    doc! { "$multiply": [
        { "$floor": { "$divide": [{ "$toLong": format!("${field}") }, step_ms] } },
        step_ms,
    ] }
}

impl Platform {
    /// Stream reports since `since` in steps of `step`: of one stream (`Some((tenant,
    /// stream))`) or of every stream. Oldest first; steps without reports are absent.
    pub async fn report_steps(
        &self,
        scope: Option<(&str, &str)>,
        since: DateTime,
        step: Duration,
    ) -> StoreResult<Vec<ReportStep>> {
        let step_ms = step.as_millis().max(1) as i64;
        let mut filter = doc! { "at": { "$gte": since } };
        if let Some((tenant, stream)) = scope {
            filter.insert("tenant", tenant);
            filter.insert("stream", stream);
        }
        let pipeline = [
            doc! { "$match": filter },
            doc! { "$sort": { "at": 1 } },
            // Per step and reporting consumer set first: a host's consumer count is a level,
            // so its latest in the step counts, not the sum of its reports.
            doc! { "$group": {
                "_id": { "step": step_of("at", step_ms), "host": "$host", "tenant": "$tenant", "stream": "$stream" },
                "reports": { "$sum": 1 },
                "messages": { "$sum": "$messages" },
                "documents": { "$sum": "$documents" },
                "dead_lettered": { "$sum": "$dead_lettered" },
                "errors": { "$sum": "$errors" },
                "latency": { "$sum": { "$multiply": ["$latency_avg_ms", "$messages"] } },
                "p99": { "$max": "$latency_p99_ms" },
                "depth": { "$max": "$queue_depth" },
                "consumers": { "$last": "$consumers" },
                "throttled": { "$max": "$throttled" },
            } },
            doc! { "$group": {
                "_id": "$_id.step",
                "reports": { "$sum": "$reports" },
                "messages": { "$sum": "$messages" },
                "documents": { "$sum": "$documents" },
                "dead_lettered": { "$sum": "$dead_lettered" },
                "errors": { "$sum": "$errors" },
                "latency": { "$sum": "$latency" },
                "p99": { "$max": "$p99" },
                "depth": { "$max": "$depth" },
                "consumers": { "$sum": "$consumers" },
                "throttled": { "$max": "$throttled" },
            } },
            doc! { "$sort": { "_id": 1 } },
        ];
        let reports = self.database.collection::<Document>("stream_reports");
        steps(&reports, pipeline, |row| {
            let messages = count(row, "messages");
            ReportStep {
                start_ms: number(row, "_id") as i64,
                messages,
                documents: count(row, "documents"),
                dead_lettered: count(row, "dead_lettered"),
                errors: count(row, "errors"),
                latency_avg_ms: if messages == 0 {
                    0.0
                } else {
                    number(row, "latency") / messages as f64
                },
                latency_p99_ms: number(row, "p99"),
                queue_depth: count(row, "depth"),
                consumers: u32::try_from(count(row, "consumers")).unwrap_or(u32::MAX),
                throttled: row.get_bool("throttled").unwrap_or(false),
                reports: count(row, "reports"),
            }
        })
        .await
    }

    /// Batch endings of every tenant since `since`, in steps of `step`, oldest first.
    pub async fn batch_steps(
        &self,
        since: DateTime,
        step: Duration,
    ) -> StoreResult<Vec<BatchStep>> {
        let step_ms = step.as_millis().max(1) as i64;
        let pipeline = [
            doc! { "$match": { "source": "batch", "ended_at": { "$gte": since } } },
            doc! { "$group": {
                "_id": step_of("ended_at", step_ms),
                "done": { "$sum": { "$cond": [{ "$eq": ["$status", "done"] }, 1, 0] } },
                "failed": { "$sum": { "$cond": [{ "$in": ["$status", ["failed", "dead"]] }, 1, 0] } },
                "documents": { "$sum": "$documents" },
            } },
            doc! { "$sort": { "_id": 1 } },
        ];
        steps(&self.log.clone_with_type(), pipeline, |row| BatchStep {
            start_ms: number(row, "_id") as i64,
            done: count(row, "done"),
            failed: count(row, "failed"),
            documents: count(row, "documents"),
        })
        .await
    }
}

/// Runs a pipeline whose rows are steps, and reads each row as one.
async fn steps<T>(
    collection: &Collection<Document>,
    pipeline: impl IntoIterator<Item = Document>,
    step: impl Fn(&Document) -> T,
) -> StoreResult<Vec<T>> {
    let rows: Vec<Document> = collection.aggregate(pipeline).await?.try_collect().await?;
    Ok(rows.iter().map(step).collect())
}

/// A numeric field whatever BSON type the sum came back as; 0 when absent.
fn number(row: &Document, key: &str) -> f64 {
    match row.get(key) {
        Some(Bson::Int32(n)) => f64::from(*n),
        Some(Bson::Int64(n)) => *n as f64,
        Some(Bson::Double(n)) => *n,
        _ => 0.0,
    }
}

/// A non-negative count (a negative or fractional sum cannot come from the reports; it is
/// clamped rather than trusted).
pub(super) fn count(row: &Document, key: &str) -> u64 {
    number(row, key).max(0.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_about_the_points_asked_for_and_aligned_to_multiples_of_the_step() {
        let now_ms = 1_700_000_123_456;
        let steps = SeriesSteps::at(now_ms, 3600, 60, 5);
        assert_eq!((steps.step_secs, steps.step_ms), (60, 60_000));
        assert_eq!(steps.since_ms % steps.step_ms, 0);
        // The first whole step in the window.
        let start_ms = now_ms - 3_600_000;
        assert!(steps.since_ms > start_ms && steps.since_ms <= start_ms + steps.step_ms);
        assert_eq!(steps.now_ms, now_ms);
        assert_eq!(steps.step(), Duration::from_secs(60));
        assert_eq!(steps.since(), DateTime::from_millis(steps.since_ms));
    }

    #[test]
    fn a_step_is_never_narrower_than_the_floor_nor_a_second() {
        assert_eq!(SeriesSteps::at(0, 900, 300, 5).step_secs, 5);
        assert_eq!(SeriesSteps::at(0, 900, 30, 5).step_secs, 30);
        assert_eq!(SeriesSteps::at(0, 10, 100, 0).step_secs, 1);
        assert_eq!(SeriesSteps::at(0, 0, 0, 0).step_secs, 1);
    }
}
