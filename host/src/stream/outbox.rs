//! Stream reports and events on their way to the platform database. Consumers and the
//! reporters hand them over without waiting; one task per host stores them in the order they
//! came, and keeps them while the database is away, so figures written during an outage are
//! stored when it returns instead of lost.
//!
//! What is kept is bounded, by count ([`MAX_ITEMS`]) and by bytes ([`MAX_BYTES`]). Past the
//! bound nothing new is queued: a report that does not fit is folded into the next report of
//! the same stream that does (its counts added, and the folded stretch of time recorded in
//! that report's `folded`, which the stats answer shows as an incomplete window), so the
//! totals stay right and only their place in time is lost; an event that does not fit is
//! dropped and counted in the same record. What is folded waits in memory one record per
//! stream, whatever the outage's length.
//!
//! Every item gets its `_id` when it is queued, so storing it again after an answer that was
//! lost (the write landed, the reply did not) is a no-op rather than a duplicate report.

use crate::platform::{Folded, Platform, StreamEvent, StreamReport};
use mongodb::bson::DateTime;
use mongodb::bson::oid::ObjectId;
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// Reports and events kept at most while the platform database is away.
pub const MAX_ITEMS: usize = 10_000;
/// Their bytes (as BSON) at most.
pub const MAX_BYTES: usize = 16 * 1024 * 1024;
/// How often the keeper tries again while the database is away.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// How long the last attempt at shutdown may take.
const LAST_FLUSH: Duration = Duration::from_secs(5);

/// One thing to store.
#[derive(Debug, Clone)]
pub enum Item {
    /// A consumer report.
    Report(StreamReport),
    /// A stream event.
    Event(StreamEvent),
}

impl Item {
    fn stream(&self) -> (String, String) {
        match self {
            Self::Report(r) => (r.tenant.clone(), r.stream.clone()),
            Self::Event(e) => (e.tenant.clone(), e.stream.clone()),
        }
    }

    fn size(&self) -> usize {
        let bytes = match self {
            Self::Report(r) => mongodb::bson::to_vec(r),
            Self::Event(e) => mongodb::bson::to_vec(e),
        };
        bytes.map(|b| b.len()).unwrap_or(1024)
    }
}

/// What could not be kept for one stream, waiting for the next report that fits.
#[derive(Debug, Clone)]
struct Fold {
    counts: StreamReport,
    folded: Folded,
}

/// The queue and the folds: the bookkeeping, without I/O.
#[derive(Debug)]
pub struct Pending {
    queue: VecDeque<(ObjectId, Item, usize)>,
    bytes: usize,
    folds: HashMap<(String, String), Fold>,
    max_items: usize,
    max_bytes: usize,
}

impl Pending {
    /// An empty queue with these bounds.
    pub fn new(max_items: usize, max_bytes: usize) -> Self {
        Self {
            queue: VecDeque::new(),
            bytes: 0,
            folds: HashMap::new(),
            max_items,
            max_bytes,
        }
    }

    /// Queues `item`, or folds it when it does not fit (see the module doc).
    pub fn push(&mut self, mut item: Item) {
        let key = item.stream();
        if let Item::Report(report) = &mut item
            && let Some(fold) = self.folds.get(&key)
        {
            report.absorb(&fold.counts);
            report.folded = Some(fold.folded.clone());
        }
        let size = item.size();
        if self.queue.len() < self.max_items && self.bytes + size <= self.max_bytes {
            if matches!(item, Item::Report(_)) {
                self.folds.remove(&key);
            }
            self.bytes += size;
            self.queue.push_back((ObjectId::new(), item, size));
            return;
        }
        match item {
            Item::Report(mut report) => {
                // Undo what the fold added above: the fold keeps the counts itself.
                let fold = self.folds.remove(&key);
                report.folded = None;
                let at = report.at.unwrap_or_else(DateTime::now);
                let start = DateTime::from_millis(
                    at.timestamp_millis() - i64::try_from(report.interval_ms).unwrap_or(0),
                );
                let mut fold = match fold {
                    Some(fold) => fold,
                    None => Fold {
                        counts: StreamReport::default(),
                        folded: Folded {
                            from: start,
                            to: at,
                            reports: 0,
                            messages: 0,
                            events_dropped: 0,
                        },
                    },
                };
                // `report` already holds the fold's counts: it becomes the fold's counts.
                fold.folded.reports += 1;
                fold.folded.messages = report.messages;
                fold.folded.to = at;
                fold.counts = report;
                self.folds.insert(key, fold);
            }
            Item::Event(event) => {
                let fold = self.folds.entry(key).or_insert_with(|| Fold {
                    counts: StreamReport::default(),
                    folded: Folded {
                        from: event.at,
                        to: event.at,
                        reports: 0,
                        messages: 0,
                        events_dropped: 0,
                    },
                });
                fold.folded.events_dropped += 1;
                fold.folded.to = event.at;
            }
        }
    }

    /// The oldest item, to store next.
    pub fn front(&self) -> Option<(ObjectId, Item)> {
        self.queue.front().map(|(id, item, _)| (*id, item.clone()))
    }

    /// Forgets the oldest item once it is stored.
    pub fn pop(&mut self) {
        if let Some((_, _, size)) = self.queue.pop_front() {
            self.bytes -= size;
        }
    }

    /// Items queued.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// The host's stream figures on their way to the platform database.
pub struct Outbox {
    platform: Platform,
    pending: Mutex<Pending>,
    wake: Notify,
}

impl Outbox {
    /// An outbox storing into `platform`; nothing is stored until [`Outbox::run`] runs.
    pub fn new(platform: Platform) -> Self {
        Self::bounded(platform, MAX_ITEMS, MAX_BYTES)
    }

    /// The same with other bounds.
    pub fn bounded(platform: Platform, max_items: usize, max_bytes: usize) -> Self {
        Self {
            platform,
            pending: Mutex::new(Pending::new(max_items, max_bytes)),
            wake: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        // The queue stays consistent between statements: a panic elsewhere leaves it usable.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands over a report.
    pub fn report(&self, report: StreamReport) {
        self.lock().push(Item::Report(report));
        self.wake.notify_one();
    }

    /// Hands over an event.
    pub fn event(&self, event: StreamEvent) {
        self.lock().push(Item::Event(event));
        self.wake.notify_one();
    }

    /// Stores what comes, in order, until `stop`; then tries once more, briefly.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) {
        let mut failing = false;
        while !*stop.borrow() {
            failing = self.flush(failing).await;
            let pause = if failing {
                RETRY_EVERY
            } else {
                Duration::from_secs(3600)
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.wake.notified() => {}
                _ = stop.changed() => {}
            }
        }
        let _ = tokio::time::timeout(LAST_FLUSH, self.flush(failing)).await;
        let left = self.lock().len();
        if left > 0 {
            tracing::warn!(
                left,
                "stream reports and events not stored at shutdown (the platform database is away)"
            );
        }
    }

    /// Stores queued items in order until the queue is empty (false) or a store fails
    /// (true). Logs once when storing starts failing and once when it works again.
    async fn flush(&self, mut failing: bool) -> bool {
        loop {
            let Some((id, item)) = self.lock().front() else {
                return false;
            };
            let stored = match &item {
                Item::Report(report) => self.platform.insert_report(id, report).await,
                Item::Event(event) => self.platform.insert_event(id, event).await,
            };
            match stored {
                Ok(()) => {
                    let left = {
                        let mut pending = self.lock();
                        pending.pop();
                        pending.len()
                    };
                    if failing {
                        failing = false;
                        tracing::warn!(
                            left,
                            "storing stream reports and events again; the ones kept meanwhile follow"
                        );
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(
                            error = %e,
                            "cannot store stream reports and events; keeping them (bounded) until the platform database answers"
                        );
                    }
                    return true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn report(n: u64, at_ms: i64) -> Item {
        Item::Report(StreamReport {
            tenant: "t".into(),
            stream: "s".into(),
            host: "h".into(),
            at: Some(DateTime::from_millis(at_ms)),
            interval_ms: 1000,
            messages: n,
            documents: n,
            ..Default::default()
        })
    }

    fn event(at_ms: i64) -> Item {
        Item::Event(StreamEvent {
            tenant: "t".into(),
            stream: "s".into(),
            at: DateTime::from_millis(at_ms),
            kind: "throttled".into(),
            from: None,
            to: None,
            reason: String::new(),
            host: "h".into(),
        })
    }

    fn messages(item: &Item) -> u64 {
        match item {
            Item::Report(r) => r.messages,
            Item::Event(_) => 0,
        }
    }

    #[test]
    fn items_come_out_in_order() {
        let mut pending = Pending::new(10, MAX_BYTES);
        pending.push(report(1, 1000));
        pending.push(event(1500));
        pending.push(report(2, 2000));
        let mut out = Vec::new();
        while let Some((_, item)) = pending.front() {
            out.push(item);
            pending.pop();
        }
        assert_eq!(out.len(), 3);
        assert_eq!(messages(&out[0]), 1);
        assert!(matches!(out[1], Item::Event(_)));
        assert_eq!(messages(&out[2]), 2);
        assert!(pending.is_empty());
        assert_eq!(pending.bytes, 0);
    }

    #[test]
    fn past_the_bound_reports_fold_into_the_next_that_fits_and_events_are_counted() {
        let mut pending = Pending::new(2, MAX_BYTES);
        pending.push(report(1, 1000));
        pending.push(report(2, 2000));
        // Full: these two reports and an event cannot be kept as such.
        pending.push(report(3, 3000));
        pending.push(event(3500));
        pending.push(report(4, 4000));
        assert_eq!(pending.len(), 2);
        // The database answers: the first two are stored.
        pending.pop();
        pending.pop();
        pending.push(report(5, 5000));
        let (_, Item::Report(carrier)) = pending.front().unwrap() else {
            panic!("a report");
        };
        // Its counts include the folded reports'; the stretch is recorded.
        assert_eq!(carrier.messages, 3 + 4 + 5);
        assert_eq!(carrier.documents, 3 + 4 + 5);
        let folded = carrier.folded.unwrap();
        assert_eq!(folded.reports, 2);
        assert_eq!(folded.messages, 3 + 4);
        assert_eq!(folded.events_dropped, 1);
        assert_eq!(folded.from, DateTime::from_millis(2000));
        assert_eq!(folded.to, DateTime::from_millis(4000));
        // Nothing is folded any more: the next report is plain.
        pending.pop();
        pending.push(report(6, 6000));
        let (_, Item::Report(plain)) = pending.front().unwrap() else {
            panic!("a report");
        };
        assert_eq!(plain.messages, 6);
        assert!(plain.folded.is_none());
    }

    #[test]
    fn the_byte_bound_holds_too() {
        let size = report(1, 1000).size();
        let mut pending = Pending::new(1000, size * 3);
        for n in 0..10 {
            pending.push(report(1, 1000 + n));
        }
        assert_eq!(pending.len(), 3);
        assert!(pending.bytes <= size * 3);
    }
}
