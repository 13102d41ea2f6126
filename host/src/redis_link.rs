//! A Redis connection opened on first use, shared after, and re-established by itself after
//! Redis goes away: the batch queue and the stream quotas hold one, so that building them
//! reaches nothing (tests of the router need no Redis) while `serve` still checks Redis at
//! startup by asking for the connection once.
//!
//! Redis restarting (or failing over) must not need a host restart: the connection is a
//! [`ConnectionManager`], which reconnects in the background after a failed call, and every
//! call is bounded in time so an unreachable Redis answers an error instead of hanging.
//!
//! `rediss://` URLs speak TLS (rustls), verifying the server against `redis.ca_cert` or the
//! system's roots.

use crate::config::RedisConfig;
use anyhow::{Context, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// How long one call may wait for Redis's answer.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest pause between the manager's reconnection attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);

/// A lazily opened, self-healing Redis connection. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct RedisLink {
    client: redis::Client,
    url: String,
    connection: Arc<OnceCell<ConnectionManager>>,
}

impl RedisLink {
    /// A link to `url`, checked for syntax only.
    pub fn new(url: &str) -> Result<Self> {
        let client = redis::Client::open(url).with_context(|| format!("Redis URL {url:?}"))?;
        Ok(Self::over(client, url))
    }

    /// The link `[redis]` describes: `rediss://` verifies the server's certificate against
    /// `ca_cert` when it is set, else against the system's roots.
    pub fn from_config(config: &RedisConfig) -> Result<Self> {
        let Some(ca) = &config.ca_cert else {
            return Self::new(&config.url);
        };
        let pem =
            std::fs::read(ca).with_context(|| format!("reading redis.ca_cert {}", ca.display()))?;
        let certificates = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        };
        let client = redis::Client::build_with_tls(config.url.as_str(), certificates)
            .with_context(|| format!("Redis URL {:?} with redis.ca_cert", config.url))?;
        Ok(Self::over(client, &config.url))
    }

    fn over(client: redis::Client, url: &str) -> Self {
        Self {
            client,
            url: url.to_owned(),
            connection: Arc::default(),
        }
    }

    /// The connection, opened now if it never was. A failed first attempt is not remembered:
    /// the next call tries again. Once opened, the manager re-establishes it after failures;
    /// a call made while Redis is away fails (within [`RESPONSE_TIMEOUT`]) and the next one
    /// after Redis is back succeeds.
    pub async fn connection(&self) -> Result<ConnectionManager> {
        self.connection
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_max_delay(MAX_RECONNECT_DELAY);
                ConnectionManager::new_with_config(self.client.clone(), config)
                    .await
                    .with_context(|| format!("connecting to Redis at {}", self.url))
            })
            .await
            .cloned()
    }
}
