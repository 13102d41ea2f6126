//! A Redis connection opened on first use and shared after: the batch queue and the stream
//! quotas hold one, so that building them reaches nothing (tests of the router need no
//! Redis) while `serve` still checks Redis at startup by asking for the connection once.

use anyhow::{Context, Result};
use redis::aio::MultiplexedConnection;
use std::sync::Arc;
use tokio::sync::OnceCell;

/// A lazily opened, multiplexed Redis connection. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct RedisLink {
    client: redis::Client,
    url: String,
    connection: Arc<OnceCell<MultiplexedConnection>>,
}

impl RedisLink {
    /// A link to `url`, checked for syntax only.
    pub fn new(url: &str) -> Result<Self> {
        let client = redis::Client::open(url).with_context(|| format!("Redis URL {url:?}"))?;
        Ok(Self {
            client,
            url: url.to_owned(),
            connection: Arc::default(),
        })
    }

    /// The connection, opened now if it is not yet. A failed attempt is not remembered: the
    /// next call tries again.
    pub async fn connection(&self) -> Result<MultiplexedConnection> {
        self.connection
            .get_or_try_init(|| async {
                self.client
                    .get_multiplexed_async_connection()
                    .await
                    .with_context(|| format!("connecting to Redis at {}", self.url))
            })
            .await
            .cloned()
    }
}
