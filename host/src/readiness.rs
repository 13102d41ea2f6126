//! Readiness: whether every backing service this host's roles need answers. Each service is
//! probed under its own time bound, all at once; the answer is kept for a second and shared
//! by the requests that arrive meanwhile, so a flood of probes cannot hammer the services.

use crate::config::ServeConfig;
use crate::platform::Platform;
use crate::redis_link::RedisLink;
use crate::registry::Registry;
use crate::stream::StreamContext;
use mysimbdp_api::{Readiness, ServiceCheck};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one service may take to answer its probe.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long an answer is reused.
const CACHE_FOR: Duration = Duration::from_secs(1);
/// The longest reason kept per service.
const MAX_REASON: usize = 300;

/// Probes the services a host needs. One per host.
pub struct Probes {
    platform: Platform,
    registry: Registry,
    redis: Option<RedisLink>,
    streams: Arc<StreamContext>,
    /// The AMQP listener (host, port), probed when this host runs stream consumers.
    amqp: Option<(String, u16)>,
    needs: Needs,
    last: tokio::sync::Mutex<Option<(Instant, Readiness)>>,
}

/// What each service is needed for on this host, as the body says it.
struct Needs {
    redis: String,
    rabbitmq: String,
}

impl Probes {
    /// Probes over the host's handles; Redis gets a connection of its own (opened on first
    /// probe) so a probe never waits behind the queue's traffic.
    pub fn new(
        config: &ServeConfig,
        platform: Platform,
        registry: Registry,
        streams: Arc<StreamContext>,
    ) -> Self {
        let workers = config.batch.workers > 0;
        let consumers = config.stream.max_consumers_per_host > 0;
        let mut redis = vec!["api (batch jobs)"];
        if workers {
            redis.push("batch workers");
        }
        if consumers {
            redis.push("stream quotas");
        }
        let mut rabbitmq = vec!["api (streams)"];
        if consumers {
            rabbitmq.push("stream consumers");
        }
        let amqp = if consumers {
            config
                .stream
                .amqp_url
                .parse::<lapin::uri::AMQPUri>()
                .ok()
                .map(|uri| (uri.authority.host, uri.authority.port))
        } else {
            None
        };
        Self {
            platform,
            registry,
            // A URL that does not parse was refused by config validation; the probe says so.
            redis: RedisLink::from_config(&config.redis).ok(),
            streams,
            amqp,
            needs: Needs {
                redis: redis.join(", "),
                rabbitmq: rabbitmq.join(", "),
            },
            last: tokio::sync::Mutex::default(),
        }
    }

    /// The services' state: probed now, or the answer of less than a second ago. Requests
    /// arriving while a probe runs wait for it instead of starting their own.
    pub async fn check(&self) -> Readiness {
        let mut last = self.last.lock().await;
        if let Some((at, readiness)) = last.as_ref()
            && at.elapsed() < CACHE_FOR
        {
            return readiness.clone();
        }
        let readiness = self.probe().await;
        for service in readiness.services.iter().filter(|s| !s.ok) {
            tracing::warn!(
                service = %service.service,
                error = service.error.as_deref().unwrap_or_default(),
                "not ready: a service this host needs does not answer"
            );
        }
        *last = Some((Instant::now(), readiness.clone()));
        readiness
    }

    async fn probe(&self) -> Readiness {
        let (mongodb, redis, rabbitmq, etcd) = tokio::join!(
            timed("mongodb", "api (tenants, apps, figures)", async {
                self.platform.ping().await.map_err(|e| e.to_string())
            }),
            timed("redis", &self.needs.redis, self.ping_redis()),
            timed("rabbitmq", &self.needs.rabbitmq, self.ping_rabbitmq()),
            timed(
                "etcd",
                "discovery (tenants' coredms, host membership)",
                async { self.registry.ping().await.map_err(|e| format!("{e:#}")) }
            ),
        );
        let services = vec![mongodb, redis, rabbitmq, etcd];
        Readiness {
            ready: services.iter().all(|s| s.ok),
            services,
        }
    }

    async fn ping_redis(&self) -> Result<(), String> {
        let link = self
            .redis
            .as_ref()
            .ok_or_else(|| "redis.url is not a Redis URL".to_owned())?;
        let mut connection = link.connection().await.map_err(|e| format!("{e:#}"))?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    async fn ping_rabbitmq(&self) -> Result<(), String> {
        self.streams
            .broker
            .check()
            .await
            .map_err(|e| format!("the management API: {e:#}"))?;
        if let Some((host, port)) = &self.amqp {
            tokio::net::TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(|e| format!("the AMQP listener at {host}:{port}: {e}"))?;
        }
        Ok(())
    }
}

/// Runs `probe` under [`PROBE_TIMEOUT`] and says how it went.
async fn timed(
    service: &str,
    needed_for: &str,
    probe: impl Future<Output = Result<(), String>>,
) -> ServiceCheck {
    let started = Instant::now();
    let error = match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(reason(&e)),
        Err(_) => Some(format!("did not answer within {PROBE_TIMEOUT:?}")),
    };
    ServiceCheck {
        service: service.to_owned(),
        needed_for: needed_for.to_owned(),
        ok: error.is_none(),
        error,
        millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

/// An error as the (unauthenticated) readiness body shows it: passwords in URLs masked,
/// one line, bounded.
fn reason(error: &str) -> String {
    let mut shown = String::with_capacity(error.len().min(MAX_REASON));
    let mut rest = error;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        shown.push_str(before);
        let authority_end = after
            .find(|c: char| c == '/' || c == '?' || c.is_whitespace() || c == '"' || c == ')')
            .unwrap_or(after.len());
        let authority = &after[..authority_end];
        match authority.rsplit_once('@') {
            Some((credentials, host)) => {
                let user = credentials.split(':').next().unwrap_or_default();
                shown.push_str(&format!("{user}:***@{host}"));
            }
            None => shown.push_str(authority),
        }
        rest = &after[authority_end..];
    }
    shown.push_str(rest);
    let one_line: String = shown
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_REASON)
        .collect();
    one_line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_hide_passwords_and_stay_short() {
        assert_eq!(
            reason("error sending request for url (http://guest:secret@rabbit:15672/api/overview)"),
            "error sending request for url (http://guest:***@rabbit:15672/api/overview)"
        );
        assert_eq!(
            reason("connecting to redis://127.0.0.1:1/: refused"),
            "connecting to redis://127.0.0.1:1/: refused"
        );
        assert_eq!(reason("a\nb"), "a b");
        assert_eq!(reason(&"x".repeat(1000)).len(), MAX_REASON);
    }

    #[tokio::test]
    async fn a_slow_probe_is_cut_at_its_bound() {
        let check = timed("etcd", "discovery", std::future::pending()).await;
        assert!(!check.ok);
        assert_eq!(
            check.error.as_deref(),
            Some(format!("did not answer within {PROBE_TIMEOUT:?}").as_str())
        );
    }
}
