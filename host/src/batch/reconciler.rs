//! The reconciler: makes the job queue in Redis agree with the jobs' durable records in the
//! platform database. Redis is an index that can lose data (restarted empty, or failed over
//! without its last second of writes); the records cannot. Every host with workers runs it at
//! start and then periodically; the queue operations it uses are idempotent, so hosts running
//! it at once, or a worker racing it, never queue a job twice.
//!
//! For each job whose record has not ended:
//! - the queue has no such job → it is queued again, keeping the attempts recorded (a worker
//!   still running it is fenced: its claim's token is gone with the lost hash);
//! - the queue has it dead-lettered or failed while the record says `queued` with no attempts
//!   → a replay was recorded but not queued: it is queued now;
//! - the queue has it ended otherwise (a worker died on its last attempt and was reaped) → the
//!   record takes the queue's ending;
//! - the queue has it alive → nothing to do.

use super::queue::JobQueue;
use crate::platform::{BatchJob, Platform};
use anyhow::{Context, Result};
use mysimbdp_api::JobStatus;
use std::time::Duration;
use tokio::sync::watch;

/// Records looked at per page.
const PAGE: usize = 500;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reconciled {
    /// Unfinished jobs looked at.
    pub checked: u64,
    /// Jobs the queue had lost, queued again.
    pub restored: u64,
    /// Recorded replays queued now.
    pub replayed: u64,
    /// Records that took the queue's ending.
    pub ended: u64,
}

/// One pass over every unfinished job.
pub async fn reconcile(platform: &Platform, queue: &JobQueue) -> Result<Reconciled> {
    let mut done = Reconciled::default();
    let mut after: Option<String> = None;
    loop {
        let page = platform
            .unfinished_jobs(after.as_deref(), PAGE)
            .await
            .context("reading unfinished batch jobs")?;
        let Some(last) = page.last() else {
            return Ok(done);
        };
        after = Some(last.id.clone());
        for job in &page {
            done.checked += 1;
            match reconcile_job(platform, queue, job).await? {
                Action::None => {}
                Action::Restored => done.restored += 1,
                Action::Replayed => done.replayed += 1,
                Action::Ended => done.ended += 1,
            }
        }
    }
}

/// What the reconciler did with one job.
enum Action {
    None,
    Restored,
    Replayed,
    Ended,
}

async fn reconcile_job(platform: &Platform, queue: &JobQueue, job: &BatchJob) -> Result<Action> {
    let queued = queue.job(&job.id).await?;
    let Some(queued) = queued else {
        let put = queue
            .put(&job.id, &job.spec, job.max_attempts, job.attempts, false)
            .await?;
        return Ok(if put { Action::Restored } else { Action::None });
    };
    if !queued.status.is_terminal() {
        return Ok(Action::None);
    }
    if job.status == JobStatus::Queued && job.attempts == 0 && queued.status.is_replayable() {
        let put = queue
            .put(&job.id, &job.spec, job.max_attempts, 0, true)
            .await?;
        return Ok(if put { Action::Replayed } else { Action::None });
    }
    let adopted = platform
        .adopt_ending(job, queued.status, queued.error.as_deref())
        .await
        .context("recording a job's ending")?;
    Ok(if adopted { Action::Ended } else { Action::None })
}

/// Runs [`reconcile`] now and every `period` until `stop` turns true.
pub async fn run(
    platform: Platform,
    queue: JobQueue,
    period: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut failing = false;
    while !*stop.borrow() {
        match reconcile(&platform, &queue).await {
            Ok(done) => {
                if failing {
                    tracing::info!("batch reconciliation works again");
                    failing = false;
                }
                if done.restored + done.replayed + done.ended > 0 {
                    tracing::warn!(
                        checked = done.checked,
                        restored = done.restored,
                        replayed = done.replayed,
                        ended = done.ended,
                        "the job queue had lost jobs or endings; reconciled with their records"
                    );
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %format!("{e:#}"), "batch reconciliation failed; will retry");
                    failing = true;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => {}
        }
    }
}
