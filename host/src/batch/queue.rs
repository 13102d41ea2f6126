//! The batch job queue in Redis: at-least-once delivery with a visibility timeout, fair
//! across tenants, capped per tenant, with bounded retries, a dead-letter list and replay.
//!
//! The queue is an index, not the record: every job's durable record lives in the platform
//! database ([`crate::platform::BatchJob`]), written before the upload is answered, and the
//! reconciler ([`super::reconciler`]) puts back any unfinished job the queue lost (Redis
//! restarted empty, or failed over without its last writes). [`JobQueue::put`] therefore
//! creates a job only if it is absent, so a job is never queued twice.
//!
//! Keys (all under one hash tag, so a Redis Cluster keeps them in one slot):
//!
//! ```text
//! <p>job:<id>        hash: tenant, spec (JSON), attempts, max_attempts, status, error, worker,
//!                    token (the claim's), waits (times it waited for the platform), times
//! <p>ready:<tenant>  list of job ids waiting, FIFO per tenant
//! <p>tenants         list of tenants with waiting jobs: the round-robin ring
//! <p>caps            hash tenant -> jobs it may run at once
//! <p>running:<tenant> set of its jobs in flight
//! <p>inflight        zset id -> visibility deadline (ms); a worker's heartbeat pushes it on
//! <p>delayed         zset id -> when a retry is due (ms)
//! <p>dead:<tenant>   list: retries exhausted (replayable)
//! <p>failed:<tenant> list: failed for good (quarantined: reject or a limit violation)
//! ```
//!
//! Every transition is one Lua script, so two workers (on any hosts) never take the same job,
//! and each heartbeat and settle is fenced by the claim's random token: a worker whose job was
//! reaped after its visibility timeout, or put back by the reconciler after Redis lost it,
//! cannot settle the job's next attempt.
//!
//! The scripts write a job's `status` as text; the names are those of
//! [`JobStatus`](mysimbdp_api::JobStatus), which [`Queue::job`] parses them back into.

use crate::redis_link::RedisLink;
use anyhow::{Context, Result};
use mysimbdp_api::JobStatus;
use redis::Script;
use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use crate::platform::JobSpec;

/// A job taken by a worker: it must heartbeat within the visibility timeout and settle it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The job id.
    pub id: String,
    /// Which attempt this is (1, 2, …).
    pub attempt: u32,
    /// Attempts the job may use: this one is its last when `attempt >= max_attempts`.
    pub max_attempts: u32,
    /// This claim's random token: the fence of heartbeats and settles.
    pub token: String,
    /// The job.
    pub spec: JobSpec,
}

impl Claim {
    /// Whether a retryable failure of this attempt dead-letters the job.
    pub fn is_last(&self) -> bool {
        self.attempt >= self.max_attempts
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done: the documents are written.
    Done,
    /// Transient: retry after `backoff`, unless the attempts are used up (then dead-lettered).
    Retry {
        /// Why.
        reason: String,
        /// When to try again.
        backoff: Duration,
    },
    /// For good: never retried, the file is quarantined.
    Fail {
        /// Why.
        reason: String,
    },
    /// Out of attempts: dead-lettered, replayable.
    Dead {
        /// Why.
        reason: String,
    },
    /// Not now, and not the job's fault (its tenant is suspended): back in the queue after
    /// `backoff` without using up an attempt.
    Defer {
        /// Why.
        reason: String,
        /// When to look again.
        backoff: Duration,
    },
    /// Not now, and not the job's fault (a service it needs is unreachable): `waiting`, back
    /// in the queue after a delay doubling from `backoff` with each wait (capped at
    /// `max_backoff`), without using up an attempt.
    Wait {
        /// Why.
        reason: String,
        /// The first delay.
        backoff: Duration,
        /// The longest delay.
        max_backoff: Duration,
    },
}

/// A job's state as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    /// The job.
    pub spec: JobSpec,
    /// Where it is in its life.
    pub status: JobStatus,
    /// Attempts so far.
    pub attempts: u32,
    /// The last error.
    pub error: Option<String>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// The ring moves the tenant it looks at to the back, so each claim starts with the tenant
/// after the one served last: one tenant's thousand files never starve another's one.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local p, worker, now, visibility, default_cap, token = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local ring = p .. 'tenants'
local n = redis.call('LLEN', ring)
for i = 1, n do
  local t = redis.call('LMOVE', ring, ring, 'LEFT', 'RIGHT')
  if not t then return false end
  local cap = tonumber(redis.call('HGET', p .. 'caps', t) or default_cap)
  local ready = p .. 'ready:' .. t
  if redis.call('SCARD', p .. 'running:' .. t) < cap then
    local id = redis.call('LPOP', ready)
    if id then
      if redis.call('LLEN', ready) == 0 then redis.call('LREM', ring, 0, t) end
      local job = p .. 'job:' .. id
      local attempt = redis.call('HINCRBY', job, 'attempts', 1)
      redis.call('HSET', job, 'status', 'running', 'worker', worker, 'token', token, 'updated', now)
      redis.call('ZADD', p .. 'inflight', now + visibility, id)
      redis.call('SADD', p .. 'running:' .. t, id)
      return {id, attempt, redis.call('HGET', job, 'spec'), tonumber(redis.call('HGET', job, 'max_attempts'))}
    end
    redis.call('LREM', ring, 0, t)
  end
end
return false
",
    )
});

static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local p, id, token, deadline = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local job = p .. 'job:' .. id
if redis.call('HGET', job, 'status') ~= 'running' or redis.call('HGET', job, 'token') ~= token then return 0 end
redis.call('ZADD', p .. 'inflight', 'XX', deadline, id)
return 1
",
    )
});

static SETTLE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local p, id, token, outcome, reason, now, backoff, max_backoff = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local job = p .. 'job:' .. id
if redis.call('HGET', job, 'status') ~= 'running' or redis.call('HGET', job, 'token') ~= token then return 0 end
local t = redis.call('HGET', job, 'tenant')
local attempt = redis.call('HGET', job, 'attempts')
redis.call('ZREM', p .. 'inflight', id)
redis.call('SREM', p .. 'running:' .. t, id)
if outcome == 'done' then
  redis.call('HSET', job, 'status', 'done', 'error', '')
elseif outcome == 'defer' then
  redis.call('HINCRBY', job, 'attempts', -1)
  redis.call('HSET', job, 'status', 'paused', 'error', reason)
  redis.call('ZADD', p .. 'delayed', now + backoff, id)
elseif outcome == 'wait' then
  redis.call('HINCRBY', job, 'attempts', -1)
  local waits = redis.call('HINCRBY', job, 'waits', 1)
  redis.call('HSET', job, 'status', 'waiting', 'error', reason)
  redis.call('ZADD', p .. 'delayed', now + math.min(backoff * 2 ^ math.min(waits - 1, 20), max_backoff), id)
elseif outcome == 'dead' then
  redis.call('HSET', job, 'status', 'dead', 'error', reason)
  redis.call('RPUSH', p .. 'dead:' .. t, id)
elseif outcome == 'retry' then
  if tonumber(attempt) >= tonumber(redis.call('HGET', job, 'max_attempts')) then
    redis.call('HSET', job, 'status', 'dead', 'error', reason)
    redis.call('RPUSH', p .. 'dead:' .. t, id)
  else
    redis.call('HSET', job, 'status', 'retrying', 'error', reason)
    redis.call('ZADD', p .. 'delayed', now + backoff, id)
  end
else
  redis.call('HSET', job, 'status', 'failed', 'error', reason)
  redis.call('RPUSH', p .. 'failed:' .. t, id)
end
redis.call('HSET', job, 'updated', now)
return 1
",
    )
});

/// Reaps jobs whose worker stopped heartbeating (it died: a retryable failure) and promotes
/// retries that are due; both go back to their tenant's queue.
static TICK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local p, now = ARGV[1], tonumber(ARGV[2])
local ring = p .. 'tenants'
local function requeue(id, front)
  local job = p .. 'job:' .. id
  local t = redis.call('HGET', job, 'tenant')
  if not t then return end
  redis.call('HSET', job, 'status', 'queued', 'updated', now)
  if front then redis.call('LPUSH', p .. 'ready:' .. t, id) else redis.call('RPUSH', p .. 'ready:' .. t, id) end
  if not redis.call('LPOS', ring, t) then redis.call('RPUSH', ring, t) end
end
local reaped, promoted = 0, 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. 'inflight', '-inf', now, 'LIMIT', 0, 100)) do
  local job = p .. 'job:' .. id
  local t = redis.call('HGET', job, 'tenant')
  redis.call('ZREM', p .. 'inflight', id)
  if t then
    redis.call('SREM', p .. 'running:' .. t, id)
    if tonumber(redis.call('HGET', job, 'attempts')) >= tonumber(redis.call('HGET', job, 'max_attempts')) then
      redis.call('HSET', job, 'status', 'dead', 'error', 'the worker stopped (visibility timeout) on the last attempt', 'updated', now)
      redis.call('RPUSH', p .. 'dead:' .. t, id)
    else
      redis.call('HSET', job, 'error', 'the worker stopped (visibility timeout)')
      requeue(id, true)
    end
    reaped = reaped + 1
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. 'delayed', '-inf', now, 'LIMIT', 0, 100)) do
  redis.call('ZREM', p .. 'delayed', id)
  requeue(id, false)
  promoted = promoted + 1
end
return {reaped, promoted}
",
    )
});

static REPLAY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local p, id, now = ARGV[1], ARGV[2], ARGV[3]
local job = p .. 'job:' .. id
local status = redis.call('HGET', job, 'status')
if status ~= 'dead' and status ~= 'failed' then return 0 end
local t = redis.call('HGET', job, 'tenant')
redis.call('LREM', p .. status .. ':' .. t, 0, id)
redis.call('HSET', job, 'status', 'queued', 'attempts', 0, 'error', '', 'updated', now)
redis.call('RPUSH', p .. 'ready:' .. t, id)
if not redis.call('LPOS', p .. 'tenants', t) then redis.call('RPUSH', p .. 'tenants', t) end
return 1
",
    )
});

/// Creates a job unless it exists; with `replay`, a job that exists dead-lettered or failed
/// (its durable record was replayed) is put back in its queue. Returns 1 when the job is
/// queued now.
static PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local p, id, tenant, spec, max_attempts, attempts, now, replay = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local job = p .. 'job:' .. id
local status = redis.call('HGET', job, 'status')
if replay == '1' and (status == 'dead' or status == 'failed') then
  redis.call('LREM', p .. status .. ':' .. tenant, 0, id)
elseif status then
  return 0
end
redis.call('HSET', job, 'tenant', tenant, 'spec', spec, 'attempts', attempts,
  'max_attempts', max_attempts, 'status', 'queued', 'error', '', 'waits', 0, 'created', now, 'updated', now)
redis.call('RPUSH', p .. 'ready:' .. tenant, id)
if not redis.call('LPOS', p .. 'tenants', tenant) then redis.call('RPUSH', p .. 'tenants', tenant) end
return 1
",
    )
});

/// A new job id: 24 hex digits from the OS's random source.
pub fn new_job_id() -> Result<String> {
    let mut random = [0u8; 12];
    getrandom::fill(&mut random).context("reading the OS's random source")?;
    Ok(hex::encode(random))
}

/// The queue. Cheap to clone; any number of workers on any hosts share one.
#[derive(Clone)]
pub struct JobQueue {
    redis: RedisLink,
    prefix: String,
    visibility: Duration,
    default_cap: u32,
}

impl JobQueue {
    /// Connects to Redis. `namespace` separates deployments (and tests) sharing one Redis.
    pub async fn connect(
        url: &str,
        namespace: &str,
        visibility: Duration,
        default_cap: u32,
    ) -> Result<Self> {
        let queue = Self::lazy(url, namespace, visibility, default_cap)?;
        queue.redis.connection().await?;
        Ok(queue)
    }

    /// The queue over a connection opened on first use: building it reaches nothing.
    pub fn lazy(
        url: &str,
        namespace: &str,
        visibility: Duration,
        default_cap: u32,
    ) -> Result<Self> {
        Ok(Self::over(
            RedisLink::new(url)?,
            namespace,
            visibility,
            default_cap,
        ))
    }

    /// The queue over `redis` (shared with other users of the link).
    pub fn over(redis: RedisLink, namespace: &str, visibility: Duration, default_cap: u32) -> Self {
        Self {
            redis,
            prefix: format!("{{{namespace}}}:batch:"),
            visibility,
            default_cap,
        }
    }

    /// Queues a new job and returns its id (for jobs without a durable record: tests).
    pub async fn enqueue(&self, spec: &JobSpec, max_attempts: u32) -> Result<String> {
        let id = new_job_id()?;
        self.put(&id, spec, max_attempts, 0, false).await?;
        Ok(id)
    }

    /// Queues job `id` unless the queue has it already (then false, nothing changes); with
    /// `replay`, one it holds dead-lettered or failed goes back in the queue. What admission,
    /// replay and the reconciler call, any number of times: a job is queued once.
    pub async fn put(
        &self,
        id: &str,
        spec: &JobSpec,
        max_attempts: u32,
        attempts: u32,
        replay: bool,
    ) -> Result<bool> {
        let spec_json = serde_json::to_string(spec)?;
        let queued: i64 = PUT
            .arg(&self.prefix)
            .arg(id)
            .arg(&spec.tenant)
            .arg(spec_json)
            .arg(max_attempts.max(1))
            .arg(attempts)
            .arg(now_ms())
            .arg(if replay { "1" } else { "0" })
            .invoke_async(&mut self.redis.connection().await?)
            .await
            .context("queueing a batch job in Redis")?;
        Ok(queued == 1)
    }

    /// Sets how many jobs a tenant may run at once across all workers.
    pub async fn set_cap(&self, tenant: &str, cap: u32) -> Result<()> {
        let _: i64 = redis::cmd("HSET")
            .arg(format!("{}caps", self.prefix))
            .arg(tenant)
            .arg(cap)
            .query_async(&mut self.redis.connection().await?)
            .await
            .context("setting a tenant's job cap in Redis")?;
        Ok(())
    }

    /// Takes the next job, fairly across tenants, within their caps.
    pub async fn claim(&self, worker: &str) -> Result<Option<Claim>> {
        let token = new_job_id()?;
        let claimed: Option<(String, u32, String, u32)> = CLAIM
            .arg(&self.prefix)
            .arg(worker)
            .arg(now_ms())
            .arg(self.visibility.as_millis() as i64)
            .arg(self.default_cap)
            .arg(&token)
            .invoke_async(&mut self.redis.connection().await?)
            .await
            .context("claiming a batch job in Redis")?;
        claimed
            .map(|(id, attempt, spec, max_attempts)| {
                let spec = serde_json::from_str(&spec)
                    .with_context(|| format!("job {id} holds an unreadable spec"))?;
                Ok(Claim {
                    id,
                    attempt,
                    max_attempts,
                    token,
                    spec,
                })
            })
            .transpose()
    }

    /// Pushes the claim's visibility deadline on; false when the job is no longer this
    /// attempt's (it was reaped): the worker must stop without settling.
    pub async fn heartbeat(&self, claim: &Claim) -> Result<bool> {
        let kept: i64 = HEARTBEAT
            .arg(&self.prefix)
            .arg(&claim.id)
            .arg(&claim.token)
            .arg(now_ms() + self.visibility.as_millis() as i64)
            .invoke_async(&mut self.redis.connection().await?)
            .await
            .context("heartbeat of a batch job in Redis")?;
        Ok(kept == 1)
    }

    /// Ends an attempt; false when it was no longer this attempt's (nothing changed).
    pub async fn settle(&self, claim: &Claim, outcome: &Outcome) -> Result<bool> {
        let (kind, reason, backoff, max_backoff) = match outcome {
            Outcome::Done => ("done", "", Duration::ZERO, Duration::ZERO),
            Outcome::Retry { reason, backoff } => ("retry", reason.as_str(), *backoff, *backoff),
            Outcome::Fail { reason } => ("fail", reason.as_str(), Duration::ZERO, Duration::ZERO),
            Outcome::Dead { reason } => ("dead", reason.as_str(), Duration::ZERO, Duration::ZERO),
            Outcome::Defer { reason, backoff } => ("defer", reason.as_str(), *backoff, *backoff),
            Outcome::Wait {
                reason,
                backoff,
                max_backoff,
            } => ("wait", reason.as_str(), *backoff, *max_backoff),
        };
        let settled: i64 = SETTLE
            .arg(&self.prefix)
            .arg(&claim.id)
            .arg(&claim.token)
            .arg(kind)
            .arg(reason)
            .arg(now_ms())
            .arg(backoff.as_millis() as i64)
            .arg(max_backoff.as_millis() as i64)
            .invoke_async(&mut self.redis.connection().await?)
            .await
            .context("settling a batch job in Redis")?;
        Ok(settled == 1)
    }

    /// Reaps expired claims and promotes due retries: `(reaped, promoted)`. Any host may run
    /// it any time; running it twice is harmless.
    pub async fn tick(&self) -> Result<(u64, u64)> {
        let (reaped, promoted): (u64, u64) = TICK
            .arg(&self.prefix)
            .arg(now_ms())
            .invoke_async(&mut self.redis.connection().await?)
            .await
            .context("reaping batch jobs in Redis")?;
        Ok((reaped, promoted))
    }

    /// Puts a dead-lettered or failed job back in its tenant's queue, attempts reset.
    pub async fn replay(&self, id: &str) -> Result<bool> {
        let replayed: i64 = REPLAY
            .arg(&self.prefix)
            .arg(id)
            .arg(now_ms())
            .invoke_async(&mut self.redis.connection().await?)
            .await
            .context("replaying a batch job in Redis")?;
        Ok(replayed == 1)
    }

    /// A job's state.
    pub async fn job(&self, id: &str) -> Result<Option<JobState>> {
        let fields: BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg(format!("{}job:{id}", self.prefix))
            .query_async(&mut self.redis.connection().await?)
            .await
            .context("reading a batch job from Redis")?;
        if fields.is_empty() {
            return Ok(None);
        }
        let spec = serde_json::from_str(fields.get("spec").map_or("", String::as_str))
            .with_context(|| format!("job {id} holds an unreadable spec"))?;
        Ok(Some(JobState {
            spec,
            status: fields
                .get("status")
                .map_or("", String::as_str)
                .parse()
                .with_context(|| format!("job {id} holds an unknown status"))?,
            attempts: fields
                .get("attempts")
                .and_then(|a| a.parse().ok())
                .unwrap_or_default(),
            error: fields.get("error").filter(|e| !e.is_empty()).cloned(),
        }))
    }

    /// The ids in a tenant's dead-letter list.
    pub async fn dead(&self, tenant: &str) -> Result<Vec<String>> {
        redis::cmd("LRANGE")
            .arg(format!("{}dead:{tenant}", self.prefix))
            .arg(0)
            .arg(-1)
            .query_async(&mut self.redis.connection().await?)
            .await
            .context("reading the dead-letter list from Redis")
    }
}
