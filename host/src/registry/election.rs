//! Leader elections in etcd (its election API): one host at a time holds an election, under a
//! lease it keeps alive; when the host dies or stalls the lease expires and the next
//! candidate in line takes over. Keys: `<prefix>/elections/<name>/…`.

use super::{Registry, timed};
use anyhow::{Result, anyhow};
use etcd_client::{LeaderKey, ResignOptions};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Leadership of one election, until resigned or lost.
pub struct Leadership {
    registry: Registry,
    lease: i64,
    key: LeaderKey,
    lost: watch::Receiver<bool>,
    keeper: JoinHandle<()>,
}

impl Registry {
    /// Campaigns in election `name` with `value` (the host's id) and returns once this host
    /// leads. Waits as long as another host leads.
    pub async fn campaign(&self, name: &str, value: &str, ttl: Duration) -> Result<Leadership> {
        let mut client = self.client.clone();
        let ttl_secs = ttl.as_secs().max(2) as i64;
        let lease = timed("lease grant", client.lease_grant(ttl_secs, None))
            .await?
            .id();
        let (lost_tx, mut lost) = watch::channel(false);
        let keeper = {
            let registry = self.clone();
            tokio::spawn(async move {
                let Err(e) = registry
                    .hold_lease(lease, Duration::from_secs(ttl_secs as u64) / 3)
                    .await;
                tracing::warn!(error = %format!("{e:#}"), "election lease lost");
                let _ = lost_tx.send(true);
            })
        };
        let election = format!("{}/elections/{name}", self.prefix);
        let campaign = client.campaign(election, value, lease);
        let elected = tokio::select! {
            elected = campaign => elected.map_err(|e| anyhow!("etcd campaign: {e}")),
            _ = lost.changed() => Err(anyhow!("the election lease expired while campaigning")),
        };
        let key = elected.and_then(|response| {
            response
                .leader()
                .cloned()
                .ok_or_else(|| anyhow!("etcd elected this host without a leader key"))
        });
        match key {
            Ok(key) => Ok(Leadership {
                registry: self.clone(),
                lease,
                key,
                lost,
                keeper,
            }),
            Err(e) => {
                keeper.abort();
                let _ = timed("lease revoke", client.lease_revoke(lease)).await;
                Err(e)
            }
        }
    }

    /// The current leader's value in election `name`, if any.
    pub async fn leader(&self, name: &str) -> Result<Option<String>> {
        let mut client = self.client.clone();
        let election = format!("{}/elections/{name}", self.prefix);
        match timed("election leader", client.leader(election)).await {
            Ok(response) => Ok(response
                .kv()
                .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())),
            // etcd answers "election: no leader" as an error.
            Err(e) if format!("{e:#}").contains("no leader") => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Leadership {
    /// Turns true when leadership is lost (the lease could not be kept alive).
    pub fn lost(&self) -> watch::Receiver<bool> {
        self.lost.clone()
    }

    /// Gives leadership up at once, so the next candidate does not wait for the lease.
    pub async fn resign(self) {
        self.keeper.abort();
        let mut client = self.registry.client.clone();
        let options = ResignOptions::new().with_leader(self.key);
        if let Err(e) = timed("resign", client.resign(Some(options))).await {
            tracing::warn!(error = %format!("{e:#}"), "could not resign the election");
        }
        let _ = timed("lease revoke", client.lease_revoke(self.lease)).await;
    }
}
