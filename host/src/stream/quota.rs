//! Stream quotas: the messages and bytes a tenant's streams may consume per window (profile
//! `[stream]`), counted in Redis so every host draws on one count. A batch that would go over
//! waits, unacknowledged, for the next window: the broker keeps the rest of the queue, so
//! nothing is lost and no delivery attempt is spent.
//!
//! **While Redis is unreachable** the quota fails open, but bounded: each host admits against
//! a counter of its own, with the same limits and window, so a tenant consumes at most
//! (hosts × quota) per window until Redis answers again. Stopping consumption instead would
//! turn a Redis outage into a stream outage, and holding batches until Redis answers would
//! keep every consumer's prefetch hostage to it. The host logs one warning when the shared
//! counter becomes unreachable and one when it answers again; meanwhile it asks Redis (a
//! `PING`, off the batch path) at most once per [`PROBE_EVERY`], and batches admitted by the
//! local counter are counted in `mysimbdp_stream_quota_degraded_admissions`. When Redis
//! answers, admission goes back to the shared counter at once (what the hosts counted locally
//! is not carried over: the shared window starts from what Redis holds).

use crate::redis_link::RedisLink;
use anyhow::{Context, Result};
use redis::Script;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often a host asks an unreachable Redis whether it is back.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How long a probe may wait for Redis's answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a batch waits for the shared counter before it is counted locally: far above a
/// healthy round trip, far below the connection's own response timeout (5 s), which a batch
/// would otherwise wait out when Redis vanishes mid-call.
const SHARED_TIMEOUT: Duration = Duration::from_secs(1);

/// Adds a batch to the window's count unless that would go over a limit. An empty window
/// admits any batch, so a single batch larger than the quota cannot stall the stream.
static ADMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local key, m, b = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local max_m, max_b, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local used_m = tonumber(redis.call('HGET', key, 'm') or '0')
local used_b = tonumber(redis.call('HGET', key, 'b') or '0')
if (used_m > 0 or used_b > 0) and (used_m + m > max_m or used_b + b > max_b) then
  return {0, used_m, used_b}
end
redis.call('HINCRBY', key, 'm', m)
redis.call('HINCRBY', key, 'b', b)
redis.call('EXPIRE', key, ttl)
return {1, used_m + m, used_b + b}
",
    )
});

/// The window's limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Messages per window.
    pub messages: u64,
    /// Bytes per window.
    pub bytes: u64,
    /// The window.
    pub window: Duration,
}

impl Limits {
    /// A tenant's stream quota, from its profile.
    pub fn of(profile: &crate::profile::StreamConstraints) -> Self {
        Self {
            messages: profile.max_messages_per_window,
            bytes: profile.max_mib_per_window.saturating_mul(1024 * 1024),
            window: Duration::from_secs(profile.window_secs),
        }
    }
}

/// Whether a batch may be consumed now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Counted in the shared counter; go ahead.
    Granted,
    /// Counted in this host's own counter (the shared one is unreachable); go ahead.
    GrantedLocally,
    /// Over the quota until the window ends.
    Wait {
        /// How long until the next window.
        wait: Duration,
        /// The figures, for the report.
        reason: String,
    },
}

/// Per-tenant stream quota counters in Redis, with this host's own counters while Redis is
/// unreachable.
#[derive(Clone)]
pub struct Quota {
    redis: RedisLink,
    prefix: String,
    fallback: Arc<Mutex<Fallback>>,
}

/// What the host keeps while the shared counter is unreachable.
#[derive(Default)]
struct Fallback {
    /// Since when Redis has not answered; `None` while it does.
    unreachable_since: Option<Instant>,
    /// When the last probe started.
    probed_at: Option<Instant>,
    /// A probe is under way.
    probing: bool,
    /// This host's counts.
    windows: LocalWindows,
}

/// Per-tenant counts of the current window, kept in the host: the same rule as the shared
/// counter's script, including that an empty window admits any batch.
#[derive(Debug, Default)]
pub struct LocalWindows {
    /// (tenant, window length in ms) → (window index, messages, bytes).
    counts: HashMap<(String, u64), (u64, u64, u64)>,
}

impl LocalWindows {
    /// Counts a batch at `now_ms` (since the epoch) unless it would go over; otherwise the
    /// messages and bytes used so far in the window.
    pub fn admit(
        &mut self,
        tenant: &str,
        now_ms: u64,
        messages: u64,
        bytes: u64,
        limits: Limits,
    ) -> Result<(), (u64, u64)> {
        let window = limits.window.as_millis().max(1) as u64;
        let index = now_ms / window;
        // Only the current window matters: older ones are dropped as tenants come by.
        self.counts.retain(|(_, w), (i, _, _)| *i == now_ms / *w);
        let entry = self
            .counts
            .entry((tenant.to_owned(), window))
            .or_insert((index, 0, 0));
        let (_, used_m, used_b) = *entry;
        if (used_m > 0 || used_b > 0)
            && (used_m + messages > limits.messages || used_b + bytes > limits.bytes)
        {
            return Err((used_m, used_b));
        }
        *entry = (index, used_m + messages, used_b + bytes);
        Ok(())
    }
}

impl Quota {
    /// Quotas over `redis` (shared with other users of the link); `namespace` separates
    /// deployments, as the batch queue's does.
    pub fn over(redis: RedisLink, namespace: &str) -> Self {
        Self {
            redis,
            prefix: format!("{{{namespace}}}:stream-quota:"),
            fallback: Arc::default(),
        }
    }

    /// Counts `messages` and `bytes` against the tenant's current window, or says how long
    /// to wait: in Redis, or in this host's own counter while Redis is unreachable (see the
    /// module doc). Never fails: a Redis outage must not stop a stream.
    pub async fn admit(
        &self,
        tenant: &str,
        messages: u64,
        bytes: u64,
        limits: Limits,
    ) -> Admission {
        let degraded = self.lock().unreachable_since.is_some();
        if !degraded {
            let shared = tokio::time::timeout(
                SHARED_TIMEOUT,
                self.admit_shared(tenant, messages, bytes, limits),
            )
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {SHARED_TIMEOUT:?}")));
            match shared {
                Ok(admission) => return admission,
                Err(e) => {
                    let mut fallback = self.lock();
                    if fallback.unreachable_since.is_none() {
                        fallback.unreachable_since = Some(Instant::now());
                        fallback.probed_at = Some(Instant::now());
                        tracing::warn!(
                            error = %format!("{e:#}"),
                            "the stream quota's shared counter (Redis) is unreachable; each host \
                             now admits stream batches against its own counter with the same \
                             limits until Redis answers"
                        );
                    }
                }
            }
        } else {
            self.probe();
        }
        self.admit_locally(tenant, messages, bytes, limits)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Fallback> {
        // A panic while holding this lock leaves plain counters behind: still usable.
        self.fallback
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Asks Redis, in the background and at most once per [`PROBE_EVERY`], whether it is back.
    fn probe(&self) {
        {
            let mut fallback = self.lock();
            if fallback.probing
                || fallback
                    .probed_at
                    .is_some_and(|at| at.elapsed() < PROBE_EVERY)
            {
                return;
            }
            fallback.probing = true;
            fallback.probed_at = Some(Instant::now());
        }
        let quota = self.clone();
        tokio::spawn(async move {
            let answered = tokio::time::timeout(PROBE_TIMEOUT, async {
                let mut connection = quota.redis.connection().await?;
                redis::cmd("PING")
                    .query_async::<String>(&mut connection)
                    .await
                    .context("PING")
            })
            .await;
            let mut fallback = quota.lock();
            fallback.probing = false;
            if let Ok(Ok(_)) = answered {
                let down = fallback
                    .unreachable_since
                    .take()
                    .map(|since| since.elapsed())
                    .unwrap_or_default();
                fallback.windows = LocalWindows::default();
                tracing::warn!(
                    unreachable_for = ?down,
                    "the stream quota's shared counter (Redis) answers again; stream batches \
                     are admitted against it again"
                );
            }
        });
    }

    fn admit_locally(&self, tenant: &str, messages: u64, bytes: u64, limits: Limits) -> Admission {
        let now = now_ms();
        let verdict = self
            .lock()
            .windows
            .admit(tenant, now, messages, bytes, limits);
        match verdict {
            Ok(()) => Admission::GrantedLocally,
            Err((used_m, used_b)) => {
                let wait = until_next_window(now, limits);
                Admission::Wait {
                    wait,
                    reason: format!(
                        "{} (counted by this host alone: the shared counter is unreachable)",
                        over(limits, used_m, used_b, wait)
                    ),
                }
            }
        }
    }

    /// What the tenant consumed in its current window, as the shared counter says:
    /// `(messages, bytes)`.
    pub async fn used(&self, tenant: &str, limits: Limits) -> Result<(u64, u64)> {
        let window = limits.window.as_millis().max(1) as u64;
        let key = format!("{}{tenant}:{}:{}", self.prefix, window, now_ms() / window);
        let read = async {
            let (messages, bytes): (Option<u64>, Option<u64>) = redis::cmd("HMGET")
                .arg(&key)
                .arg("m")
                .arg("b")
                .query_async(&mut self.redis.connection().await?)
                .await
                .context("reading the stream quota's counter")?;
            Ok((messages.unwrap_or(0), bytes.unwrap_or(0)))
        };
        tokio::time::timeout(SHARED_TIMEOUT, read)
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {SHARED_TIMEOUT:?}")))
    }

    async fn admit_shared(
        &self,
        tenant: &str,
        messages: u64,
        bytes: u64,
        limits: Limits,
    ) -> Result<Admission> {
        let now = now_ms();
        let window = limits.window.as_millis().max(1) as u64;
        let index = now / window;
        let key = format!("{}{tenant}:{}:{index}", self.prefix, window);
        let (granted, used_messages, used_bytes): (i64, u64, u64) = ADMIT
            .arg(&key)
            .arg(messages)
            .arg(bytes)
            .arg(limits.messages)
            .arg(limits.bytes)
            .arg((window / 1000).max(1) * 2)
            .invoke_async(&mut self.redis.connection().await?)
            .await
            .context("counting stream consumption in Redis")?;
        if granted == 1 {
            return Ok(Admission::Granted);
        }
        let wait = until_next_window(now, limits);
        Ok(Admission::Wait {
            wait,
            reason: over(limits, used_messages, used_bytes, wait),
        })
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

fn until_next_window(now_ms: u64, limits: Limits) -> Duration {
    let window = limits.window.as_millis().max(1) as u64;
    Duration::from_millis((now_ms / window + 1) * window - now_ms)
}

fn over(limits: Limits, used_messages: u64, used_bytes: u64, wait: Duration) -> String {
    format!(
        "over the quota of this window ({} s): {used_messages} of {} messages, {} of {} MiB \
         consumed; paused for {} ms",
        limits.window.as_secs(),
        limits.messages,
        used_bytes / (1024 * 1024),
        limits.bytes / (1024 * 1024),
        wait.as_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            messages: 10,
            bytes: 1000,
            window: Duration::from_secs(1),
        }
    }

    #[test]
    fn the_local_counter_follows_the_shared_rule_per_tenant_and_window() {
        let mut windows = LocalWindows::default();
        // An empty window admits any batch, even one above the quota.
        assert_eq!(windows.admit("a", 5_000, 50, 10, limits()), Ok(()));
        assert_eq!(windows.admit("a", 5_100, 1, 1, limits()), Err((50, 10)));
        // Another tenant has its own count.
        assert_eq!(windows.admit("b", 5_100, 6, 100, limits()), Ok(()));
        assert_eq!(windows.admit("b", 5_200, 4, 100, limits()), Ok(()));
        assert_eq!(windows.admit("b", 5_300, 1, 1, limits()), Err((10, 200)));
        // Bytes count too.
        assert_eq!(windows.admit("c", 5_300, 1, 900, limits()), Ok(()));
        assert_eq!(windows.admit("c", 5_400, 1, 101, limits()), Err((1, 900)));
        // The next window starts from nothing, and old windows are forgotten.
        assert_eq!(windows.admit("b", 6_000, 10, 1000, limits()), Ok(()));
        assert_eq!(windows.counts.len(), 1);
        assert_eq!(
            until_next_window(6_250, limits()),
            Duration::from_millis(750)
        );
    }
}
