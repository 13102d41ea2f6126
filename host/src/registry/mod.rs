//! Service discovery and membership in etcd.
//!
//! Key layout (every key under the configured prefix, default `/mysimbdp/v1`):
//!
//! ```text
//! <prefix>/tenants/<tenant>/services/<kind>/<id>   ServiceInfo JSON (published, no lease)
//! <prefix>/hosts/<host id>                         HostInfo JSON, under the host's lease
//! <prefix>/elections/<name>/<lease>                a candidate in an election (see election.rs)
//! ```
//!
//! Service entries are configuration: they stay until removed. Host entries live as long as
//! their host keeps its lease alive; a killed host's entry disappears when the lease expires.

mod election;
mod service;

pub use election::Leadership;

pub use service::{
    Endpoints, SERVICE_SCHEMA, ServiceError, ServiceInfo, ServiceKind, ServiceStatus, read_secret,
};

use crate::config::RegistryConfig;
use anyhow::{Context, Result, anyhow};
use etcd_client::{Client, ConnectOptions, GetOptions, PutOptions, WatchOptions, WatchStream};
use mongodb::bson::DateTime;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long one etcd request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

// A host as registered is also an API answer (`/v1/admin/hosts`): it lives in the API
// types crate.
pub use mysimbdp_api::HostInfo;

/// This process, listening on `address`.
pub fn this_process(address: String, roles: Vec<String>) -> Result<HostInfo> {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".to_owned());
    let mut random = [0u8; 4];
    getrandom::fill(&mut random).context("reading the OS's random source")?;
    let pid = std::process::id();
    Ok(HostInfo {
        id: format!("{hostname}-{pid}-{}", hex::encode(random)),
        roles,
        address,
        started_at: now(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        pid,
        hostname,
    })
}

fn now() -> String {
    DateTime::now().try_to_rfc3339_string().unwrap_or_default()
}

/// The platform's view of etcd. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    client: Client,
    prefix: String,
}

async fn timed<T>(
    what: &str,
    call: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T> {
    tokio::time::timeout(REQUEST_TIMEOUT, call)
        .await
        .map_err(|_| anyhow!("etcd did not answer {what} within {REQUEST_TIMEOUT:?}"))?
        .with_context(|| format!("etcd {what}"))
}

impl Registry {
    /// Connects to etcd and checks it answers.
    pub async fn connect(config: &RegistryConfig) -> Result<Self> {
        let registry = Self::lazy(config).await?;
        let mut client = registry.client.clone();
        timed("status", client.status())
            .await
            .with_context(|| format!("etcd at {:?} does not answer", config.etcd_endpoints))?;
        Ok(registry)
    }

    /// A registry whose channel reaches etcd on first use: nothing is checked. For tests that
    /// never touch etcd; `connect` is what a running platform uses.
    pub async fn lazy(config: &RegistryConfig) -> Result<Self> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(10), REQUEST_TIMEOUT);
        if let Some(ca) = &config.ca_cert {
            let pem = std::fs::read(ca)
                .with_context(|| format!("reading registry.ca_cert {}", ca.display()))?;
            options = options.with_tls(
                etcd_client::TlsOptions::new()
                    .ca_certificate(etcd_client::Certificate::from_pem(pem)),
            );
        }
        let client = tokio::time::timeout(
            REQUEST_TIMEOUT,
            Client::connect(&config.etcd_endpoints, Some(options)),
        )
        .await
        .map_err(|_| {
            anyhow!(
                "connecting to etcd at {:?} timed out",
                config.etcd_endpoints
            )
        })?
        .with_context(|| format!("connecting to etcd at {:?}", config.etcd_endpoints))?;
        Ok(Self {
            client,
            prefix: config.prefix.trim_end_matches('/').to_owned(),
        })
    }

    /// Whether etcd answers now (readiness).
    pub async fn ping(&self) -> Result<()> {
        let mut client = self.client.clone();
        timed("status", client.status()).await.map(drop)
    }

    /// `<prefix>/tenants/<tenant>/services/<kind>/<id>`
    pub fn service_key(&self, tenant: &str, kind: ServiceKind, id: &str) -> String {
        format!("{}/tenants/{tenant}/services/{kind}/{id}", self.prefix)
    }

    /// The prefix of every tenant's services.
    pub fn tenants_prefix(&self) -> String {
        format!("{}/tenants/", self.prefix)
    }

    /// The tenant whose services a key belongs to.
    pub fn tenant_of_key<'k>(&self, key: &'k str) -> Option<&'k str> {
        let prefix = self.tenants_prefix();
        key.strip_prefix(prefix.as_str())?.split('/').next()
    }

    fn host_key(&self, id: &str) -> String {
        format!("{}/hosts/{id}", self.prefix)
    }

    /// Publishes (creates or replaces) an entry, keeping its first `created_at`.
    pub async fn publish(&self, mut info: ServiceInfo) -> Result<ServiceInfo> {
        let existing = self.get(&info.tenant, info.kind, &info.id).await?;
        let now = now();
        info.created_at = existing
            .and_then(|e| e.created_at)
            .or_else(|| Some(now.clone()));
        info.updated_at = Some(now);
        let key = self.service_key(&info.tenant, info.kind, &info.id);
        let value = serde_json::to_string(&info)?;
        let mut client = self.client.clone();
        timed("put", client.put(key, value, None)).await?;
        Ok(info)
    }

    /// One entry.
    pub async fn get(
        &self,
        tenant: &str,
        kind: ServiceKind,
        id: &str,
    ) -> Result<Option<ServiceInfo>> {
        let key = self.service_key(tenant, kind, id);
        let mut client = self.client.clone();
        let response = timed("get", client.get(key.clone(), None)).await?;
        response
            .kvs()
            .first()
            .map(|kv| {
                serde_json::from_slice(kv.value())
                    .with_context(|| format!("the entry at {key} is not service information"))
            })
            .transpose()
    }

    /// The entries of a tenant (and kind), or of every tenant; unreadable entries are logged
    /// and skipped.
    pub async fn list(
        &self,
        tenant: Option<&str>,
        kind: Option<ServiceKind>,
    ) -> Result<Vec<ServiceInfo>> {
        let prefix = match (tenant, kind) {
            (Some(t), Some(k)) => format!("{}/tenants/{t}/services/{k}/", self.prefix),
            (Some(t), None) => format!("{}/tenants/{t}/services/", self.prefix),
            (None, _) => self.tenants_prefix(),
        };
        let mut client = self.client.clone();
        let response = timed(
            "get",
            client.get(prefix, Some(GetOptions::new().with_prefix())),
        )
        .await?;
        let mut entries = Vec::new();
        for kv in response.kvs() {
            match serde_json::from_slice::<ServiceInfo>(kv.value()) {
                Ok(info) if kind.is_none_or(|k| k == info.kind) => entries.push(info),
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    key = %String::from_utf8_lossy(kv.key()), error = %e,
                    "skipping an unreadable registry entry"
                ),
            }
        }
        Ok(entries)
    }

    /// Removes an entry; false if there was none.
    pub async fn remove(&self, tenant: &str, kind: ServiceKind, id: &str) -> Result<bool> {
        let mut client = self.client.clone();
        let response = timed(
            "delete",
            client.delete(self.service_key(tenant, kind, id), None),
        )
        .await?;
        Ok(response.deleted() > 0)
    }

    /// Watches every tenant's services (for cache invalidation).
    pub async fn watch_services(&self) -> Result<WatchStream> {
        let mut client = self.client.clone();
        timed(
            "watch",
            client.watch(
                self.tenants_prefix(),
                Some(WatchOptions::new().with_prefix()),
            ),
        )
        .await
    }

    /// The live hosts.
    pub async fn hosts(&self) -> Result<Vec<HostInfo>> {
        let mut client = self.client.clone();
        let response = timed(
            "get",
            client.get(
                format!("{}/hosts/", self.prefix),
                Some(GetOptions::new().with_prefix()),
            ),
        )
        .await?;
        Ok(response
            .kvs()
            .iter()
            .filter_map(|kv| serde_json::from_slice(kv.value()).ok())
            .collect())
    }

    /// Registers this host under a lease of `ttl` and keeps it alive until the returned
    /// membership is left or dropped.
    pub async fn join(&self, host: HostInfo, ttl: Duration) -> Result<Membership> {
        let ttl_secs = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let key = self.host_key(&host.id);
        let value = serde_json::to_string(&host)?;
        let lease = Arc::new(AtomicI64::new(self.register(&key, &value, ttl_secs).await?));
        let registry = self.clone();
        let current = lease.clone();
        let keeper = tokio::spawn(async move {
            registry.keep_alive(key, value, ttl_secs, current).await;
        });
        tracing::info!(host = %host.id, ?ttl, "joined the platform's hosts in etcd");
        Ok(Membership {
            registry: self.clone(),
            lease,
            keeper,
            host,
        })
    }

    async fn register(&self, key: &str, value: &str, ttl_secs: i64) -> Result<i64> {
        let mut client = self.client.clone();
        let lease = timed("lease grant", client.lease_grant(ttl_secs, None))
            .await?
            .id();
        timed(
            "put",
            client.put(key, value, Some(PutOptions::new().with_lease(lease))),
        )
        .await?;
        Ok(lease)
    }

    /// Keeps `lease` alive, refreshing it every `period`, until that fails (etcd unreachable,
    /// or the lease already expired). Used by membership and by elections.
    async fn hold_lease(&self, lease: i64, period: Duration) -> Result<std::convert::Infallible> {
        let mut client = self.client.clone();
        let (mut keeper, mut stream) =
            timed("lease keep-alive", client.lease_keep_alive(lease)).await?;
        loop {
            timed("lease keep-alive", keeper.keep_alive()).await?;
            match timed("lease keep-alive", stream.message()).await? {
                Some(response) if response.ttl() > 0 => {}
                _ => return Err(anyhow!("the lease expired")),
            }
            tokio::time::sleep(period).await;
        }
    }

    /// Refreshes the lease at a third of its TTL; if it was lost (etcd restarted, a long
    /// pause), registers again under a new one.
    async fn keep_alive(&self, key: String, value: String, ttl_secs: i64, lease: Arc<AtomicI64>) {
        let period = Duration::from_millis((ttl_secs as u64 * 1000 / 3).max(200));
        loop {
            let current = lease.load(Ordering::Relaxed);
            let Err(e) = self.hold_lease(current, period).await;
            tracing::warn!(error = %format!("{e:#}"), "host lease lost; registering again");
            tokio::time::sleep(period).await;
            match self.register(&key, &value, ttl_secs).await {
                Ok(new) => lease.store(new, Ordering::Relaxed),
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot register in etcd"),
            }
        }
    }
}

/// This host's registration; leaving revokes the lease so the entry goes at once.
pub struct Membership {
    registry: Registry,
    lease: Arc<AtomicI64>,
    keeper: JoinHandle<()>,
    host: HostInfo,
}

impl Membership {
    /// This host.
    pub fn host(&self) -> &HostInfo {
        &self.host
    }

    /// Stops keeping the lease and revokes it.
    pub async fn leave(self) {
        self.keeper.abort();
        let lease = self.lease.load(Ordering::Relaxed);
        let mut client = self.registry.client.clone();
        match timed("lease revoke", client.lease_revoke(lease)).await {
            Ok(_) => tracing::info!(host = %self.host.id, "left the platform's hosts in etcd"),
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "could not revoke the host lease"),
        }
    }
}
