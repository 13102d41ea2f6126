//! Stream quotas: the messages and bytes a tenant's streams may consume per window (profile
//! `[stream]`), counted in Redis so every host draws on one count. A batch that would go over
//! waits, unacknowledged, for the next window: the broker keeps the rest of the queue, so
//! nothing is lost and no delivery attempt is spent.

use crate::redis_link::RedisLink;
use anyhow::{Context, Result};
use redis::Script;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// Whether a batch may be consumed now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Counted; go ahead.
    Granted,
    /// Over the quota until the window ends.
    Wait {
        /// How long until the next window.
        wait: Duration,
        /// The figures, for the report.
        reason: String,
    },
}

/// Per-tenant stream quota counters in Redis.
#[derive(Clone)]
pub struct Quota {
    redis: RedisLink,
    prefix: String,
}

impl Quota {
    /// Connects to Redis; `namespace` separates deployments (as the batch queue's does).
    pub async fn connect(url: &str, namespace: &str) -> Result<Self> {
        let quota = Self::lazy(url, namespace)?;
        quota.redis.connection().await?;
        Ok(quota)
    }

    /// Quotas over a connection opened on first use: building them reaches nothing.
    pub fn lazy(url: &str, namespace: &str) -> Result<Self> {
        Ok(Self {
            redis: RedisLink::new(url)?,
            prefix: format!("{{{namespace}}}:stream-quota:"),
        })
    }

    /// Counts `messages` and `bytes` against the tenant's current window, or says how long
    /// to wait.
    pub async fn admit(
        &self,
        tenant: &str,
        messages: u64,
        bytes: u64,
        limits: Limits,
    ) -> Result<Admission> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let window = limits.window.as_millis().max(1) as u64;
        let index = now.as_millis() as u64 / window;
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
        let wait = Duration::from_millis((index + 1) * window - now.as_millis() as u64);
        Ok(Admission::Wait {
            wait,
            reason: format!(
                "over the quota of this window ({} s): {used_messages} of {} messages, {} of {} \
                 MiB consumed; paused for {} ms",
                limits.window.as_secs(),
                limits.messages,
                used_bytes / (1024 * 1024),
                limits.bytes / (1024 * 1024),
                wait.as_millis()
            ),
        })
    }
}
