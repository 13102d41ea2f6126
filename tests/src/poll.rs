//! Waiting for a condition: tests poll what they are about to assert on instead of sleeping
//! for a guessed time, so they are as fast as the system and fail with what they last saw.

use std::fmt::Debug;
use std::time::{Duration, Instant};

/// How long to wait between two observations.
const INTERVAL: Duration = Duration::from_millis(100);

/// Observes with `observe` until `done` accepts what it saw, and returns that. After `within`
/// it panics with `what` and the last observation.
pub async fn wait_until<T: Debug>(
    what: &str,
    within: Duration,
    observe: impl AsyncFnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    wait_until_every(INTERVAL, what, within, observe, done).await
}

/// [`wait_until`], observing every `interval`: for benchmarks that time the condition.
pub async fn wait_until_every<T: Debug>(
    interval: Duration,
    what: &str,
    within: Duration,
    mut observe: impl AsyncFnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        let seen = observe().await;
        if done(&seen) {
            return seen;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {within:?} waiting until {what}; last observed: {seen:?}");
        }
        // The poll interval, not a gate: the condition is checked again after it.
        tokio::time::sleep(interval).await;
    }
}

/// Runs a test body under a time limit: a hang (a broker or a server that never answers)
/// fails with the test's name instead of stalling the whole run.
pub async fn within(name: &str, limit: Duration, body: impl std::future::Future<Output = ()>) {
    if tokio::time::timeout(limit, body).await.is_err() {
        panic!("{name} did not finish within {} s", limit.as_secs());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_first_accepted_observation() {
        let mut n = 0;
        let seen = wait_until(
            "n reaches 3",
            Duration::from_secs(5),
            async || {
                n += 1;
                n
            },
            |n| *n >= 3,
        )
        .await;
        assert_eq!(seen, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "waiting until it is never true; last observed: 7")]
    async fn panics_with_the_description_and_the_last_value() {
        wait_until(
            "it is never true",
            Duration::from_millis(50),
            async || 7,
            |_| false,
        )
        .await;
    }
}
