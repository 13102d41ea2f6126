//! The stream policies as pure functions, so they are tested by tables rather than by runs:
//! the autoscaler's decision from what the monitor read, which host runs which consumer
//! slot of a stream, and how long a consumer waits before reconnecting. The monitor, the
//! manager and the consumer do the I/O around them.

use crate::profile::Autoscale;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// What the monitor read about a stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reading {
    /// Messages waiting.
    pub backlog: u64,
    /// Messages per second consumed, over all hosts.
    pub throughput: f64,
    /// The highest p99 latency of the latest reports, ms.
    pub p99_ms: f64,
    /// Whether any host reported the stream throttled.
    pub throttled: bool,
}

/// Consecutive checks a stream has leaned one way (kept by the monitor between checks).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pressure {
    /// Checks in a row that asked for one more consumer.
    pub up: u32,
    /// Checks in a row that allowed one fewer.
    pub down: u32,
}

/// What the autoscaler decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Leave the stream as it is.
    Hold,
    /// Move the desired consumer count to `to`, for `reason`.
    Scale {
        /// The new desired count.
        to: u32,
        /// Why, in words for the event log.
        reason: String,
    },
}

/// A stream whose desired count is outside the profile's bounds goes back inside at once.
pub fn into_bounds(current: u32, min: u32, max: u32) -> Option<Decision> {
    (!(min..=max).contains(&current)).then(|| Decision::Scale {
        to: current.clamp(min, max),
        reason: format!("the profile allows {min}..={max} consumers; the stream had {current}"),
    })
}

/// One check of a stream with `current` desired consumers within `min..=max`: up by one after
/// `sustain` checks in a row of backlog or latency pressure (never while throttled), down by
/// one after `sustain` idle checks, nothing during the cooldown. `pressure` carries the
/// counts from check to check (they keep counting during a cooldown, and start over after a
/// decision or a check that breaks the run).
pub fn autoscale(
    current: u32,
    (min, max): (u32, u32),
    scale: &Autoscale,
    reading: &Reading,
    cooling: bool,
    pressure: &mut Pressure,
) -> Decision {
    let consumers = u64::from(current.max(1));
    let per_consumer = reading.backlog / consumers;
    let up_reason = if reading.backlog == 0 || reading.throttled {
        None
    } else if current == 0 {
        Some(format!(
            "{} messages wait and no consumer runs",
            reading.backlog
        ))
    } else if per_consumer > scale.scale_up_backlog {
        Some(format!(
            "backlog {} ({per_consumer} per consumer) above {} per consumer",
            reading.backlog, scale.scale_up_backlog
        ))
    } else if reading.p99_ms > scale.scale_up_latency_ms as f64 {
        Some(format!(
            "p99 latency {:.0} ms above {} ms with {} messages waiting",
            reading.p99_ms, scale.scale_up_latency_ms, reading.backlog
        ))
    } else {
        None
    };
    let per_consumer_rate = reading.throughput / consumers as f64;
    let down = up_reason.is_none()
        && per_consumer < scale.scale_down_backlog
        && per_consumer_rate < scale.scale_down_throughput as f64
        && reading.p99_ms <= scale.scale_up_latency_ms as f64;
    pressure.up = if up_reason.is_some() {
        pressure.up + 1
    } else {
        0
    };
    pressure.down = if down { pressure.down + 1 } else { 0 };
    if cooling {
        return Decision::Hold;
    }
    if let Some(reason) = up_reason
        && pressure.up >= scale.sustain
        && current < max
    {
        *pressure = Pressure::default();
        return Decision::Scale {
            to: current + 1,
            reason: format!("{reason} for {} checks", scale.sustain),
        };
    }
    if down && pressure.down >= scale.sustain && current > min {
        *pressure = Pressure::default();
        return Decision::Scale {
            to: current - 1,
            reason: format!(
                "idle for {} checks: backlog {} ({per_consumer} per consumer, below {}), \
                 {per_consumer_rate:.1} messages/s per consumer (below {})",
                scale.sustain,
                reading.backlog,
                scale.scale_down_backlog,
                scale.scale_down_throughput
            ),
        };
    }
    Decision::Hold
}

/// The consumer slots (`0..desired`) of `stream` that host `me` runs. Slot `i` goes to host
/// `(sha256(stream) + i) mod n` of the sorted host list, so every host computes the same
/// answer and streams start on different hosts.
pub fn slots_of(stream: &str, desired: u32, hosts: &[String], me: &str) -> Vec<u32> {
    if hosts.is_empty() {
        return Vec::new();
    }
    let digest = Sha256::digest(stream.as_bytes());
    let start = u64::from_be_bytes(digest[..8].try_into().unwrap_or_default()) as usize;
    (0..desired)
        .filter(|slot| hosts[(start + *slot as usize) % hosts.len()] == me)
        .collect()
}

/// A consumer's pause before reconnecting after its session ended in an error: doubling from
/// `first` up to `max` while sessions keep failing at once, and back to `first` after a
/// healthy session (one that stayed up `healthy_after`, or settled messages). Without the
/// reset, a consumer whose broker connection is closed now and then (a broker restart, an
/// operator closing connections) would wait `max` after every close, hours apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconnect {
    first: Duration,
    max: Duration,
    healthy_after: Duration,
    next: Duration,
}

impl Reconnect {
    /// Starts at `first`.
    pub fn new(first: Duration, max: Duration, healthy_after: Duration) -> Self {
        Self {
            first,
            max,
            healthy_after,
            next: first,
        }
    }

    /// The pause after a session that lasted `lasted` and settled `settled` messages; the
    /// pause after the next failure grows unless this session was healthy.
    pub fn after_failure(&mut self, lasted: Duration, settled: u64) -> Duration {
        if lasted >= self.healthy_after || settled > 0 {
            self.next = self.first;
        }
        let pause = self.next;
        self.next = (self.next * 2).min(self.max);
        pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn reconnect_pauses_double_while_sessions_fail_at_once_and_reset_after_a_healthy_one() {
        let mut backoff = Reconnect::new(ms(250), ms(30_000), ms(10_000));
        let failing: Vec<_> = (0..9)
            .map(|_| backoff.after_failure(ms(5), 0).as_millis())
            .collect();
        assert_eq!(
            failing,
            [250, 500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]
        );
        // A session that stayed up long enough: the next close waits the first pause again.
        assert_eq!(backoff.after_failure(ms(10_000), 0), ms(250));
        assert_eq!(backoff.after_failure(ms(1), 0), ms(500));
        // So does one that settled messages, however short.
        assert_eq!(backoff.after_failure(ms(1), 0), ms(1000));
        assert_eq!(backoff.after_failure(ms(1), 1), ms(250));
        // Just short of healthy, without messages: still growing.
        assert_eq!(backoff.after_failure(ms(9_999), 0), ms(500));
    }

    fn scale() -> Autoscale {
        Autoscale {
            scale_up_backlog: 100,
            scale_up_latency_ms: 1000,
            scale_down_backlog: 10,
            scale_down_throughput: 5,
            sustain: 2,
            cooldown_secs: 30,
        }
    }

    fn reading(backlog: u64, throughput: f64, p99_ms: f64) -> Reading {
        Reading {
            backlog,
            throughput,
            p99_ms,
            throttled: false,
        }
    }

    /// Runs `checks` in a row from `current` and returns each check's decision.
    fn run(current: u32, bounds: (u32, u32), checks: &[(Reading, bool)]) -> Vec<Decision> {
        let mut pressure = Pressure::default();
        let mut current = current;
        checks
            .iter()
            .map(|(reading, cooling)| {
                let decision =
                    autoscale(current, bounds, &scale(), reading, *cooling, &mut pressure);
                if let Decision::Scale { to, .. } = &decision {
                    current = *to;
                }
                decision
            })
            .collect()
    }

    fn tos(decisions: &[Decision]) -> Vec<Option<u32>> {
        decisions
            .iter()
            .map(|d| match d {
                Decision::Hold => None,
                Decision::Scale { to, .. } => Some(*to),
            })
            .collect()
    }

    #[test]
    fn a_burst_scales_up_after_sustain_checks_one_at_a_time_within_bounds() {
        let burst = (reading(5000, 50.0, 100.0), false);
        assert_eq!(
            tos(&run(1, (1, 3), &[burst; 7])),
            [None, Some(2), None, Some(3), None, None, None]
        );
        // No consumer at all: one starts as soon as anything waits (after sustain).
        let decisions = run(0, (0, 3), &[(reading(1, 0.0, 0.0), false); 2]);
        assert_eq!(tos(&decisions), [None, Some(1)]);
        let Decision::Scale { reason, .. } = &decisions[1] else {
            unreachable!()
        };
        assert!(reason.contains("no consumer runs"), "{reason}");
    }

    #[test]
    fn latency_alone_scales_up_but_only_with_messages_waiting() {
        let slow = (reading(5, 50.0, 5000.0), false);
        assert_eq!(tos(&run(1, (1, 3), &[slow; 2])), [None, Some(2)]);
        let slow_but_empty = (reading(0, 50.0, 5000.0), false);
        assert_eq!(tos(&run(1, (1, 3), &[slow_but_empty; 4])), [None; 4]);
    }

    #[test]
    fn idleness_scales_down_to_the_minimum() {
        let idle = (reading(0, 0.0, 0.0), false);
        assert_eq!(
            tos(&run(3, (1, 3), &[idle; 6])),
            [None, Some(2), None, Some(1), None, None]
        );
    }

    #[test]
    fn hysteresis_a_broken_run_starts_over() {
        let burst = (reading(5000, 50.0, 100.0), false);
        let calm = (reading(50, 50.0, 100.0), false); // neither up nor idle
        assert_eq!(
            tos(&run(1, (1, 3), &[burst, calm, burst, calm, burst, burst])),
            [None, None, None, None, None, Some(2)]
        );
    }

    #[test]
    fn nothing_moves_during_the_cooldown_but_pressure_keeps_counting() {
        let burst = reading(5000, 50.0, 100.0);
        assert_eq!(
            tos(&run(
                1,
                (1, 3),
                &[(burst, true), (burst, true), (burst, false)]
            )),
            [None, None, Some(2)]
        );
    }

    #[test]
    fn throttled_streams_never_scale_up() {
        let mut throttled = reading(5000, 50.0, 5000.0);
        throttled.throttled = true;
        assert_eq!(tos(&run(1, (1, 3), &[(throttled, false); 4])), [None; 4]);
    }

    #[test]
    fn out_of_bounds_counts_go_back_at_once() {
        assert_eq!(into_bounds(2, 1, 3), None);
        let Some(Decision::Scale { to, reason }) = into_bounds(5, 1, 3) else {
            panic!("not moved")
        };
        assert_eq!(to, 3);
        assert!(reason.contains("1..=3"), "{reason}");
        assert!(matches!(
            into_bounds(0, 1, 3),
            Some(Decision::Scale { to: 1, .. })
        ));
    }

    fn hosts(names: &[&str]) -> Vec<String> {
        names.iter().map(|h| (*h).to_owned()).collect()
    }

    #[test]
    fn every_slot_goes_to_exactly_one_host() {
        let all = hosts(&["a", "b", "c"]);
        for stream in ["s1", "s2", "acme/readings"] {
            let mut taken: Vec<u32> = all
                .iter()
                .flat_map(|me| slots_of(stream, 7, &all, me))
                .collect();
            taken.sort_unstable();
            assert_eq!(taken, (0..7).collect::<Vec<_>>(), "{stream}");
            // Round robin from the stream's start: no host has two more than another.
            let counts: Vec<usize> = all
                .iter()
                .map(|me| slots_of(stream, 7, &all, me).len())
                .collect();
            assert!(
                counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1,
                "{counts:?}"
            );
        }
    }

    #[test]
    fn streams_start_on_different_hosts() {
        let all = hosts(&["a", "b", "c", "d"]);
        let first_hosts: std::collections::BTreeSet<&String> = (0..40)
            .map(|i| format!("stream-{i}"))
            .filter_map(|s| all.iter().find(|me| slots_of(&s, 1, &all, me) == [0]))
            .collect();
        assert!(first_hosts.len() >= 3, "{first_hosts:?}");
    }

    #[test]
    fn hosts_joining_and_leaving_redistribute_and_a_lone_host_runs_everything() {
        let one = hosts(&["a"]);
        assert_eq!(slots_of("s", 3, &one, "a"), [0, 1, 2]);
        assert!(slots_of("s", 3, &one, "b").is_empty());
        assert!(slots_of("s", 3, &[], "a").is_empty());
        let two = hosts(&["a", "b"]);
        let three = hosts(&["a", "b", "c"]);
        for set in [&two, &three] {
            let total: usize = set.iter().map(|me| slots_of("s", 4, set, me).len()).sum();
            assert_eq!(total, 4);
        }
        // Zero desired consumers: nobody runs one.
        assert!(
            three
                .iter()
                .all(|me| slots_of("s", 0, &three, me).is_empty())
        );
    }
}
