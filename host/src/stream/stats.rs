//! What one host's consumers of one stream did since the last report: counts, and latency
//! samples (delivery to completed write) for the mean and p99.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// Latency samples kept per interval; beyond it, new samples overwrite old ones spread over
/// the buffer, which keeps the percentile honest without unbounded memory.
const MAX_SAMPLES: usize = 50_000;

/// Counts of one interval.
#[derive(Debug, Default, Clone)]
pub struct Interval {
    /// Messages settled.
    pub messages: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Documents written (duplicates of a redelivery included).
    pub documents: u64,
    /// Messages dead-lettered.
    pub dead_lettered: u64,
    /// Messages requeued.
    pub retried: u64,
    /// Infrastructure errors.
    pub errors: u64,
    /// Latency samples in µs.
    latencies_us: Vec<u64>,
    seen: u64,
}

impl Interval {
    /// Adds one latency sample.
    pub fn latency(&mut self, micros: u64) {
        self.seen += 1;
        if self.latencies_us.len() < MAX_SAMPLES {
            self.latencies_us.push(micros);
        } else {
            let slot = (self.seen.wrapping_mul(2_654_435_761) % MAX_SAMPLES as u64) as usize;
            self.latencies_us[slot] = micros;
        }
    }

    /// Mean and p99 latency in ms (0 without samples).
    pub fn latency_ms(&mut self) -> (f64, f64) {
        if self.latencies_us.is_empty() {
            return (0.0, 0.0);
        }
        self.latencies_us.sort_unstable();
        let n = self.latencies_us.len();
        let mean = self.latencies_us.iter().sum::<u64>() as f64 / n as f64;
        let p99 = self.latencies_us[((n * 99).div_ceil(100)).saturating_sub(1).min(n - 1)];
        (mean / 1000.0, p99 as f64 / 1000.0)
    }
}

/// Shared by the consumers of one stream on this host and its reporter.
#[derive(Debug, Default)]
pub struct StreamShared {
    counters: Mutex<Interval>,
    /// Consumers of the stream running on this host.
    pub consumers: AtomicU32,
    /// Whether consumption is paused over the quota.
    pub throttled: AtomicBool,
}

impl StreamShared {
    /// Updates the current interval.
    pub fn record(&self, update: impl FnOnce(&mut Interval)) {
        if let Ok(mut counters) = self.counters.lock() {
            update(&mut counters);
        }
    }

    /// Ends the interval: returns its counts and starts a new one.
    pub fn take(&self) -> Interval {
        self.counters
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
    }

    /// Sets the throttled flag; true when it changed.
    pub fn set_throttled(&self, throttled: bool) -> bool {
        self.throttled.swap(throttled, Ordering::Relaxed) != throttled
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn p99_is_the_99th_percentile_sample() {
        let mut interval = Interval::default();
        for i in 1..=1000 {
            interval.latency(i * 1000);
        }
        let (mean, p99) = interval.latency_ms();
        assert!((mean - 500.5).abs() < 1e-9, "{mean}");
        assert_eq!(p99, 990.0);
        assert_eq!(Interval::default().latency_ms(), (0.0, 0.0));
    }

    #[test]
    fn samples_stay_bounded() {
        let mut interval = Interval::default();
        for i in 0..(MAX_SAMPLES as u64 * 3) {
            interval.latency(i);
        }
        assert_eq!(interval.latencies_us.len(), MAX_SAMPLES);
    }
}
