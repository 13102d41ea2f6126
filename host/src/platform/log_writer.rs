//! The batch ingestion log, written in the background: entries wait in a bounded queue and
//! are retried while the platform database is away, so attempts that ended during a MongoDB
//! outage still appear in the log (and in every figure computed from it) once it is back.
//! Entries past the bound are dropped with an error log and counted in [`LogWriter::dropped`]:
//! an outage long enough to fill it loses log lines, never jobs (their durable records and the
//! documents are written on their own paths).

use super::{LogEntry, Platform};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// The first pause after a failed write; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest pause between two tries of one entry.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A handle to the background writer. Cheap to clone.
#[derive(Clone)]
pub struct LogWriter {
    entries: mpsc::Sender<LogEntry>,
    dropped: Arc<AtomicU64>,
}

impl LogWriter {
    /// Starts the writer over `platform`, holding at most `capacity` entries not yet written.
    pub fn start(platform: Platform, capacity: usize) -> Self {
        let (entries, pending) = mpsc::channel(capacity.max(1));
        tokio::spawn(write_all(platform, pending));
        Self {
            entries,
            dropped: Arc::default(),
        }
    }

    /// Queues `entry` to be written, in order with the others.
    pub fn write(&self, entry: LogEntry) {
        if let Err(e) = self.entries.try_send(entry) {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::error!(
                error = %e,
                dropped,
                "the ingestion log's queue is full (the platform database has been away long); \
                 an entry is dropped"
            );
        }
    }

    /// Entries dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Writes each entry until it is written, pausing with back-off while MongoDB fails; it ends
/// when every handle is gone and the queue is drained.
async fn write_all(platform: Platform, mut pending: mpsc::Receiver<LogEntry>) {
    while let Some(entry) = pending.recv().await {
        let mut backoff = FIRST_BACKOFF;
        let mut failing = false;
        loop {
            match platform.log_ingestion(&entry).await {
                Ok(()) => break,
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "cannot write the ingestion log; keeping the entries and retrying");
                        failing = true;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        if failing {
            tracing::info!("the ingestion log is written again");
        }
    }
}
