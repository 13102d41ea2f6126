//! Operator configuration: one TOML file (`mysimbdp serve --config`), every key with a named
//! default, unknown keys refused by name, secrets and addresses overridable from the
//! environment, everything validated at startup with the bad value in the message.

mod sandbox;

pub use sandbox::*;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Where the API listens by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The platform's MongoDB by default: the services script's single-node replica set.
pub const DEFAULT_MONGODB_URI: &str = "mongodb://127.0.0.1:27017/?replicaSet=rs0";
/// The platform database (tenants, profiles, apps), separate from tenant databases.
pub const DEFAULT_PLATFORM_DATABASE: &str = "mysimbdp";
/// How long in-flight requests get to finish after a shutdown signal.
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 30_000;
/// Connections the API serves at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Time for a request's headers to arrive (from connect, or idle after a response), in ms.
pub const DEFAULT_HEADER_TIMEOUT_MS: u64 = 10_000;
/// Longest pause between two chunks of a request body, in ms.
pub const DEFAULT_BODY_IDLE_TIMEOUT_MS: u64 = 30_000;
/// Longest a request may take, its body included, in ms.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 60_000;
/// Longest pause between two chunks of an upload's body, in ms.
pub const DEFAULT_UPLOAD_BODY_IDLE_TIMEOUT_MS: u64 = 120_000;
/// Longest an upload may take (app components, batch files, daas writes), in ms.
pub const DEFAULT_UPLOAD_TIMEOUT_MS: u64 = 3_600_000;
/// The largest JSON or TOML request body (profiles, settings).
pub const DEFAULT_MAX_JSON_KIB: usize = 256;
/// Fuel of the admission probe: enough for any honest app's start-up and an empty input.
pub const DEFAULT_PROBE_FUEL: u64 = 200_000_000;
/// Deadline of the admission probe.
pub const DEFAULT_PROBE_DEADLINE_MS: u64 = 2_000;
/// Pre-linked app versions kept in memory per host.
pub const DEFAULT_LOADED_APPS: usize = 128;
/// The largest input of a dry run.
pub const DEFAULT_DRY_RUN_MAX_KIB: usize = 192;
/// Documents a dry run returns at most.
pub const DEFAULT_DRY_RUN_MAX_DOCUMENTS: usize = 100;
/// Interfaces an uploaded app may not import, by prefix: none by default. Language runtimes
/// (componentize-py, componentize-js) link `wasi:filesystem` and `wasi:sockets` whether the
/// app uses them or not, and the sandbox satisfies them with nothing behind them (no
/// preopened directory, every socket address denied), so admitting them grants nothing. An
/// operator may still refuse prefixes; `app check` applies the same list.
pub const DEFAULT_REFUSED_IMPORTS: [&str; 0] = [];
/// The largest sample an upload may carry for its representative-input probe, in KiB: the
/// probe runs it under the version's real limits, so its size bounds the probe's cost.
pub const DEFAULT_PROBE_SAMPLE_MAX_KIB: usize = 1024;
/// etcd, as the services script starts it.
pub const DEFAULT_ETCD_ENDPOINT: &str = "127.0.0.1:2379";
/// Where the platform's keys live in etcd.
pub const DEFAULT_REGISTRY_PREFIX: &str = "/mysimbdp/v1";
/// Lease of a host's membership entry: a killed host disappears this long after.
pub const DEFAULT_HOST_LEASE_SECS: u64 = 10;
/// Redis, as the services script starts it.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/";
/// Batch worker tasks per host.
pub const DEFAULT_BATCH_WORKERS: usize = 2;
/// A job not heartbeated for this long is taken to have lost its worker.
pub const DEFAULT_VISIBILITY_SECS: u64 = 60;
/// Attempts of a job before it is dead-lettered.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Jobs of one tenant running at once across all hosts, unless its profile says otherwise.
pub const DEFAULT_TENANT_CONCURRENCY: u32 = 4;
/// First retry delay; doubled per attempt up to five minutes.
pub const DEFAULT_RETRY_BACKOFF_MS: u64 = 1000;
/// Seconds between two passes of the batch reconciler.
pub const DEFAULT_RECONCILE_SECS: u64 = 10;
/// A partial upload untouched for this long belongs to a dead request and is removed.
pub const DEFAULT_INCOMING_MAX_AGE_SECS: u64 = 900;
/// The broker, as the platform's administrator reaches it.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// RabbitMQ's management API.
pub const DEFAULT_MANAGEMENT_URL: &str = "http://127.0.0.1:15672";
/// The broker as tenants reach it.
pub const DEFAULT_PUBLIC_AMQP_URL: &str = "amqp://127.0.0.1:5672";
/// Consumers one host runs at most.
pub const DEFAULT_HOST_MAX_CONSUMERS: usize = 64;
/// AMQP prefetch per consumer: room for `sink.writes_in_flight` batches being written and
/// the one being read (measured: 200 held the consumer to one batch in flight, 32k
/// messages/s; 500 lets four through, 44k; docs/benchmarks.md).
pub const DEFAULT_PREFETCH: u16 = 500;
/// Messages per app call.
pub const DEFAULT_STREAM_BATCH: usize = 100;
/// How long a consumer waits for a batch to fill, in ms.
pub const DEFAULT_LINGER_MS: u64 = 20;
/// Deliveries of a message before it is dead-lettered.
pub const DEFAULT_DELIVERY_LIMIT: u32 = 5;
/// How often consumers are reconciled, in ms.
pub const DEFAULT_RECONCILE_MS: u64 = 1000;
/// How often the monitor checks the streams, in ms.
pub const DEFAULT_MONITOR_INTERVAL_MS: u64 = 5000;
/// Days reports and decisions are kept.
pub const DEFAULT_REPORT_RETENTION_DAYS: u32 = 7;
/// The most deliveries a stream may allow per message.
pub const MAX_DELIVERY_LIMIT: u32 = 1000;
/// The minimum operator token length.
pub const MIN_OPERATOR_TOKEN_CHARS: usize = 32;

/// An environment variable that overrides one key of the file.
#[derive(Debug, Clone, Copy)]
pub struct EnvOverride {
    /// The variable.
    pub variable: &'static str,
    /// The key it sets, as the file spells it.
    pub key: &'static str,
    /// Sets the key from the variable's value.
    pub set: fn(&mut ServeConfig, String),
}

/// Environment variables that override the file: secrets and addresses. This one table
/// drives [`ServeConfig::apply_env`], `mysimbdp serve --help` and the list atop
/// config/mysimbdp.example.toml (a test keeps that list in step).
pub const ENV_OVERRIDES: [EnvOverride; 13] = [
    EnvOverride {
        variable: "MYSIMBDP_OPERATOR_TOKEN",
        key: "server.operator_token",
        set: |c, v| c.server.operator_token = v,
    },
    EnvOverride {
        variable: "MYSIMBDP_PLAIN_HTTP",
        key: "server.plain_http",
        set: |c, v| c.server.plain_http = matches!(v.trim(), "true" | "1" | "yes"),
    },
    EnvOverride {
        variable: "MYSIMBDP_LISTEN",
        key: "server.listen",
        set: |c, v| c.server.listen = v,
    },
    EnvOverride {
        variable: "MYSIMBDP_MONGODB_URI",
        key: "platform.mongodb_uri",
        set: |c, v| c.platform.mongodb_uri = v,
    },
    EnvOverride {
        variable: "MYSIMBDP_PLATFORM_DATABASE",
        key: "platform.database",
        set: |c, v| c.platform.database = v,
    },
    EnvOverride {
        variable: "MYSIMBDP_CACHE_DIR",
        key: "sandbox.engine.cache_dir",
        set: |c, v| c.sandbox.engine.cache_dir = Some(v.into()),
    },
    EnvOverride {
        variable: "MYSIMBDP_ETCD_ENDPOINTS",
        key: "registry.etcd_endpoints (comma-separated)",
        set: |c, v| {
            c.registry.etcd_endpoints = v
                .split(',')
                .map(|e| e.trim().to_owned())
                .filter(|e| !e.is_empty())
                .collect();
        },
    },
    EnvOverride {
        variable: "MYSIMBDP_SINK_MONGODB_URI",
        key: "sink.mongodb_uri",
        set: |c, v| c.sink.mongodb_uri = v,
    },
    EnvOverride {
        variable: "MYSIMBDP_REDIS_URL",
        key: "redis.url",
        set: |c, v| c.redis.url = v,
    },
    EnvOverride {
        variable: "MYSIMBDP_STAGING_DIR",
        key: "batch.staging_dir",
        set: |c, v| c.batch.staging_dir = Some(v.into()),
    },
    EnvOverride {
        variable: "MYSIMBDP_AMQP_URL",
        key: "stream.amqp_url",
        set: |c, v| c.stream.amqp_url = v,
    },
    EnvOverride {
        variable: "MYSIMBDP_RABBITMQ_MANAGEMENT_URL",
        key: "stream.management_url",
        set: |c, v| c.stream.management_url = v,
    },
    EnvOverride {
        variable: "MYSIMBDP_PUBLIC_AMQP_URL",
        key: "stream.public_amqp_url",
        set: |c, v| c.stream.public_amqp_url = v,
    },
];

/// The overrides as `mysimbdp serve --help` lists them: one `VARIABLE  key` line each.
pub fn env_overrides_help() -> String {
    let width = ENV_OVERRIDES
        .iter()
        .map(|o| o.variable.len())
        .max()
        .unwrap_or_default();
    let mut help = String::from("Environment overrides (they win over the file):\n");
    for o in &ENV_OVERRIDES {
        help.push_str(&format!("  {:width$}  {}\n", o.variable, o.key));
    }
    help
}

/// Everything `mysimbdp serve` reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// The HTTP API.
    pub server: ServerConfig,
    /// The platform's own metadata store.
    pub platform: PlatformConfig,
    /// App admission and dry runs.
    pub apps: AppsConfig,
    /// Service discovery and membership in etcd.
    pub registry: RegistryConfig,
    /// The shared coredms tenants write to unless the registry names a dedicated one.
    pub sink: SinkConfig,
    /// Redis: the batch job queue and the stream quotas' counters.
    pub redis: RedisConfig,
    /// Batch ingestion: staging, the job queue, workers.
    pub batch: BatchConfig,
    /// Stream ingestion: the broker, consumers, reports and the monitor.
    pub stream: StreamConfig,
    /// The wasmtime engine and the default and maximum limits of app calls.
    pub sandbox: SandboxConfig,
}

/// `[server]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the API listens on.
    pub listen: String,
    /// The operator's bearer token for `/v1/admin/…` (better set through the environment).
    pub operator_token: String,
    /// Grace period for in-flight requests on shutdown, in ms.
    pub shutdown_grace_ms: u64,
    /// The largest JSON or TOML request body, in KiB.
    pub max_json_kib: usize,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Time for a request's headers to arrive, in ms, counted from connect and from the end
    /// of the previous response: a silent, half-sent or idle keep-alive connection is closed.
    pub header_timeout_ms: u64,
    /// Longest pause between two chunks of a request body, in ms (408 past it).
    pub body_idle_timeout_ms: u64,
    /// Longest a request may take, its body included, in ms (408 past it).
    pub request_timeout_ms: u64,
    /// `body_idle_timeout_ms` of the upload routes (app components, batch files, daas writes).
    pub upload_body_idle_timeout_ms: u64,
    /// `request_timeout_ms` of the upload routes.
    pub upload_timeout_ms: u64,
    /// The API's certificate: when set, the API speaks HTTPS only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
    /// Serve the API over plain HTTP (no `[server.tls]`): only when the operator says so, for
    /// local development or behind a proxy that terminates TLS.
    pub plain_http: bool,
}

/// `[server.tls]`: PEM files of the API's certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The certificate chain, the host's own certificate first.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_owned(),
            operator_token: String::new(),
            shutdown_grace_ms: DEFAULT_SHUTDOWN_GRACE_MS,
            max_json_kib: DEFAULT_MAX_JSON_KIB,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout_ms: DEFAULT_HEADER_TIMEOUT_MS,
            body_idle_timeout_ms: DEFAULT_BODY_IDLE_TIMEOUT_MS,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            upload_body_idle_timeout_ms: DEFAULT_UPLOAD_BODY_IDLE_TIMEOUT_MS,
            upload_timeout_ms: DEFAULT_UPLOAD_TIMEOUT_MS,
            tls: None,
            plain_http: false,
        }
    }
}

impl ServerConfig {
    /// Refuses an unusable address, a guessable operator token, and connection bounds that
    /// would let a client hold the server or cut every request.
    pub fn validate(&self) -> Result<()> {
        self.listen_addr()?;
        let token = &self.operator_token;
        if token.chars().count() < MIN_OPERATOR_TOKEN_CHARS {
            bail!(
                "server.operator_token is {} characters long: it must have at least \
                 {MIN_OPERATOR_TOKEN_CHARS} (set MYSIMBDP_OPERATOR_TOKEN, e.g. to `openssl rand -hex 32`)",
                token.chars().count()
            );
        }
        if self.max_json_kib == 0 {
            bail!("server.max_json_kib = 0: it must be at least 1");
        }
        if !(1..=1_000_000).contains(&self.max_connections) {
            bail!(
                "server.max_connections = {}: it must be 1..=1000000",
                self.max_connections
            );
        }
        for (key, value) in [
            ("server.header_timeout_ms", self.header_timeout_ms),
            ("server.body_idle_timeout_ms", self.body_idle_timeout_ms),
            ("server.request_timeout_ms", self.request_timeout_ms),
            (
                "server.upload_body_idle_timeout_ms",
                self.upload_body_idle_timeout_ms,
            ),
            ("server.upload_timeout_ms", self.upload_timeout_ms),
        ] {
            if !(100..=86_400_000).contains(&value) {
                bail!("{key} = {value}: it must be 100..=86400000 (100 ms to a day)");
            }
        }
        match (&self.tls, self.plain_http) {
            (None, false) => bail!(
                "the API has no certificate: set [server.tls] cert and key (PEM files), or \
                 server.plain_http = true (MYSIMBDP_PLAIN_HTTP=true) to serve plain HTTP for \
                 local development or behind a proxy that terminates TLS"
            ),
            (Some(_), true) => bail!(
                "[server.tls] and server.plain_http = true are both set: the API serves one \
                 or the other"
            ),
            _ => {}
        }
        if self.upload_timeout_ms < self.request_timeout_ms {
            bail!(
                "server.upload_timeout_ms = {} is below server.request_timeout_ms = {}: uploads \
                 are the long requests",
                self.upload_timeout_ms,
                self.request_timeout_ms
            );
        }
        Ok(())
    }

    /// The parsed listen address.
    pub fn listen_addr(&self) -> Result<SocketAddr> {
        self.listen.parse().with_context(|| {
            format!(
                "server.listen = {:?} is not an address like 127.0.0.1:8080",
                self.listen
            )
        })
    }
}

/// `[platform]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlatformConfig {
    /// MongoDB holding the platform database.
    pub mongodb_uri: String,
    /// The platform database's name.
    pub database: String,
}

impl Default for PlatformConfig {
    fn default() -> Self {
        Self {
            mongodb_uri: DEFAULT_MONGODB_URI.to_owned(),
            database: DEFAULT_PLATFORM_DATABASE.to_owned(),
        }
    }
}

impl PlatformConfig {
    /// Refuses a database name MongoDB would refuse, and a URI that is not MongoDB's.
    pub fn validate(&self) -> Result<()> {
        validate_database_name("platform.database", &self.database)?;
        validate_mongodb_uri("platform.mongodb_uri", &self.mongodb_uri)
    }
}

/// `[registry]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// etcd endpoints, `host:port`.
    pub etcd_endpoints: Vec<String>,
    /// The prefix of every key the platform writes.
    pub prefix: String,
    /// Lease of this host's membership entry, in seconds.
    pub host_lease_secs: u64,
    /// A PEM file of the CA that signed etcd's certificate: set, the endpoints are reached
    /// over TLS (https) and verified against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            etcd_endpoints: vec![DEFAULT_ETCD_ENDPOINT.to_owned()],
            prefix: DEFAULT_REGISTRY_PREFIX.to_owned(),
            host_lease_secs: DEFAULT_HOST_LEASE_SECS,
            ca_cert: None,
        }
    }
}

impl RegistryConfig {
    /// Refuses no endpoint, a prefix that would not nest, and a lease too short to renew.
    pub fn validate(&self) -> Result<()> {
        if self.etcd_endpoints.is_empty() {
            bail!("registry.etcd_endpoints is empty: name at least one etcd endpoint");
        }
        if !self.prefix.starts_with('/') || self.prefix.ends_with('/') {
            bail!(
                "registry.prefix = {:?} must start with '/' and not end with one",
                self.prefix
            );
        }
        if !(2..=3600).contains(&self.host_lease_secs) {
            bail!(
                "registry.host_lease_secs = {}: it must be 2..=3600",
                self.host_lease_secs
            );
        }
        Ok(())
    }
}

/// `[sink]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// The shared coredms: each tenant gets its own database there.
    pub mongodb_uri: String,
    /// MiB of converted (BSON) documents a batch job, a stream batch or a daas write holds
    /// before writing them: with the batch's document count, what bounds the host's memory per
    /// write whatever the documents' shape. MongoDB takes at most 48 MB per insert message.
    pub write_buffer_mib: u64,
    /// Inserts a batch job, or a stream consumer, keeps in flight at once, so the coredms
    /// writes while the host converts the next batch; they share the job's (the consumer's)
    /// `write_buffer_mib`. A consumer's batches are still acknowledged in delivery order.
    pub writes_in_flight: usize,
}

/// MiB of BSON a writer holds before it writes.
pub const DEFAULT_WRITE_BUFFER_MIB: u64 = 16;
/// Inserts in flight per batch job (measured on a 2-core host: docs/benchmarks.md).
pub const DEFAULT_WRITES_IN_FLIGHT: usize = 4;

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            mongodb_uri: DEFAULT_MONGODB_URI.to_owned(),
            write_buffer_mib: DEFAULT_WRITE_BUFFER_MIB,
            writes_in_flight: DEFAULT_WRITES_IN_FLIGHT,
        }
    }
}

impl SinkConfig {
    /// Refuses a write buffer MongoDB could not take in one insert, and a non-MongoDB URI.
    pub fn validate(&self) -> Result<()> {
        if !(1..=46).contains(&self.write_buffer_mib) {
            bail!(
                "sink.write_buffer_mib = {}: it must be 1..=46 (MongoDB takes 48 MB per insert)",
                self.write_buffer_mib
            );
        }
        if !(1..=16).contains(&self.writes_in_flight) {
            bail!(
                "sink.writes_in_flight = {}: it must be 1..=16 (each write holds a connection)",
                self.writes_in_flight
            );
        }
        validate_mongodb_uri("sink.mongodb_uri", &self.mongodb_uri)
    }
}

/// `[redis]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// Redis holding the batch job queue and the stream quotas' counters (`rediss://` for
    /// TLS).
    pub url: String,
    /// Separates deployments sharing one Redis: every key the platform writes starts with it.
    pub namespace: String,
    /// A PEM file of the CA that signed a `rediss://` server's certificate, trusted instead of
    /// the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
}

/// The namespace of a deployment's Redis keys.
pub const DEFAULT_REDIS_NAMESPACE: &str = "mysimbdp";

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: DEFAULT_REDIS_URL.to_owned(),
            namespace: DEFAULT_REDIS_NAMESPACE.to_owned(),
            ca_cert: None,
        }
    }
}

impl RedisConfig {
    /// Refuses a URL that is not Redis's and a namespace that would break key hashing.
    pub fn validate(&self) -> Result<()> {
        if !self.url.starts_with("redis://") && !self.url.starts_with("rediss://") {
            bail!(
                "redis.url = {:?} is not a redis:// URL",
                redact_uri(&self.url)
            );
        }
        if self.namespace.is_empty() || self.namespace.contains(['{', '}']) {
            bail!(
                "redis.namespace = {:?} must be non-empty, without braces",
                self.namespace
            );
        }
        if self.ca_cert.is_some() && !self.url.starts_with("rediss://") {
            bail!(
                "redis.ca_cert is set but redis.url = {:?} is not a rediss:// (TLS) URL",
                redact_uri(&self.url)
            );
        }
        Ok(())
    }
}

/// `[batch]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Deprecated spelling of `redis.url`, still read (with a warning) from older files.
    #[serde(rename = "redis_url", skip_serializing_if = "Option::is_none")]
    deprecated_redis_url: Option<String>,
    /// Deprecated spelling of `redis.namespace`, as `redis_url`.
    #[serde(rename = "namespace", skip_serializing_if = "Option::is_none")]
    deprecated_namespace: Option<String>,
    /// Where uploaded files are staged: `local` (the directory `staging_dir`, which every
    /// host running workers must share) or `gridfs` (the platform database, which they do).
    pub staging: StagingBackend,
    /// The directory of `local` staging.
    pub staging_dir: Option<std::path::PathBuf>,
    /// Worker tasks on this host (0: this host runs none).
    pub workers: usize,
    /// Seconds without a heartbeat after which a job is taken from its worker.
    pub visibility_secs: u64,
    /// Attempts before a job is dead-lettered.
    pub max_attempts: u32,
    /// Jobs of one tenant running at once, platform-wide.
    pub tenant_concurrency: u32,
    /// First retry delay in ms (doubled per attempt, at most 5 minutes).
    pub retry_backoff_ms: u64,
    /// Seconds between two passes of the reconciler, which queues again the unfinished jobs
    /// the queue lost (Redis restarted empty or failed over).
    pub reconcile_secs: u64,
    /// Seconds after its last write when a partial upload (`<staging>/<tenant>/incoming/…`)
    /// is taken to belong to a dead request and removed by the periodic sweep every host
    /// runs. Must exceed `server.upload_body_idle_timeout_ms`, so a live upload is never
    /// taken.
    pub incoming_max_age_secs: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            deprecated_redis_url: None,
            deprecated_namespace: None,
            staging: StagingBackend::default(),
            staging_dir: None,
            workers: DEFAULT_BATCH_WORKERS,
            visibility_secs: DEFAULT_VISIBILITY_SECS,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            tenant_concurrency: DEFAULT_TENANT_CONCURRENCY,
            retry_backoff_ms: DEFAULT_RETRY_BACKOFF_MS,
            reconcile_secs: DEFAULT_RECONCILE_SECS,
            incoming_max_age_secs: DEFAULT_INCOMING_MAX_AGE_SECS,
        }
    }
}

impl BatchConfig {
    /// Refuses a zero where a job needs at least one (the workers may be 0: none here).
    pub fn validate(&self) -> Result<()> {
        for (key, value) in [
            ("batch.visibility_secs", self.visibility_secs),
            ("batch.max_attempts", u64::from(self.max_attempts)),
            (
                "batch.tenant_concurrency",
                u64::from(self.tenant_concurrency),
            ),
            ("batch.retry_backoff_ms", self.retry_backoff_ms),
            ("batch.reconcile_secs", self.reconcile_secs),
            ("batch.incoming_max_age_secs", self.incoming_max_age_secs),
        ] {
            if value == 0 {
                bail!("{key} = 0: it must be at least 1");
            }
        }
        Ok(())
    }

    /// The staging directory, resolved from the environment when not set.
    pub fn staging_dir(&self) -> std::path::PathBuf {
        if let Some(dir) = &self.staging_dir {
            return dir.clone();
        }
        let base = std::env::var_os("XDG_DATA_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".local/share"))
            })
            .unwrap_or_else(std::env::temp_dir);
        base.join("mysimbdp/staging")
    }
}

/// Where the staging area keeps uploaded files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StagingBackend {
    /// A directory on this machine (`batch.staging_dir`): one host, or hosts sharing a mount.
    #[default]
    Local,
    /// GridFS in the platform database: any host's worker takes any job.
    Gridfs,
}

/// `[stream]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// The broker, with the credentials of an administrator: the host provisions tenants'
    /// vhosts with them and consumes from every tenant's vhost.
    pub amqp_url: String,
    /// RabbitMQ's management API (provisioning vhosts, users, permissions and queues).
    pub management_url: String,
    /// The broker's address as tenants reach it (no credentials, no vhost): `amqps://` for
    /// a TLS listener, whose CA tenants give `stream publish --ca-cert` if it is private.
    pub public_amqp_url: String,
    /// Prefix of every tenant's vhost and user name.
    pub vhost_prefix: String,
    /// Consumers this host runs at most, over every stream (0: it consumes nothing). Not a
    /// stream's own bound: that is the tenant profile's `stream.max_consumers_per_stream`.
    #[serde(alias = "max_consumers")]
    pub max_consumers_per_host: usize,
    /// Unacknowledged messages a consumer holds at most (AMQP prefetch).
    pub prefetch: u16,
    /// Messages handed to the app per call.
    pub batch_size: usize,
    /// How long a consumer waits for a batch to fill, in ms.
    pub linger_ms: u64,
    /// Deliveries of a message before it is dead-lettered, unless a stream sets its own.
    pub delivery_limit: u32,
    /// How often a host matches its consumers to the streams' desired counts, in ms.
    pub reconcile_ms: u64,
    /// How often the elected monitor checks every stream, in ms.
    pub monitor_interval_ms: u64,
    /// Days stream reports and monitor decisions are kept.
    pub report_retention_days: u32,
    /// A PEM file of the CA that signed the broker's certificate, for an `amqps://`
    /// `amqp_url` and an `https://` `management_url`, trusted besides the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
}

impl StreamConfig {
    /// Refuses broker URLs of the wrong scheme or with leaked credentials, an unusable vhost
    /// prefix, zeros where one is needed, and batches larger than the prefetch.
    pub fn validate(&self) -> Result<()> {
        let stream = self;
        for (key, url) in [
            ("stream.amqp_url", &stream.amqp_url),
            ("stream.public_amqp_url", &stream.public_amqp_url),
        ] {
            if !url.starts_with("amqp://") && !url.starts_with("amqps://") {
                bail!(
                    "{key} = {:?} is not an amqp:// or amqps:// URL",
                    redact_uri(url)
                );
            }
        }
        if !stream.management_url.starts_with("http://")
            && !stream.management_url.starts_with("https://")
        {
            bail!(
                "stream.management_url = {:?} is not an http:// URL",
                stream.management_url
            );
        }
        if stream.ca_cert.is_some()
            && !stream.amqp_url.starts_with("amqps://")
            && !stream.management_url.starts_with("https://")
        {
            bail!(
                "stream.ca_cert is set but neither stream.amqp_url is amqps:// nor \
                 stream.management_url https://: nothing would be verified against it"
            );
        }
        if stream.public_amqp_url.contains('@') {
            bail!("stream.public_amqp_url must not carry credentials: tenants get their own");
        }
        if stream.vhost_prefix.is_empty()
            || !stream
                .vhost_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            bail!(
                "stream.vhost_prefix = {:?} must be non-empty letters, digits, '-', '_' or '.'",
                stream.vhost_prefix
            );
        }
        for (key, value) in [
            ("stream.prefetch", u64::from(stream.prefetch)),
            ("stream.batch_size", stream.batch_size as u64),
            ("stream.delivery_limit", u64::from(stream.delivery_limit)),
            ("stream.reconcile_ms", stream.reconcile_ms),
            ("stream.monitor_interval_ms", stream.monitor_interval_ms),
            (
                "stream.report_retention_days",
                u64::from(stream.report_retention_days),
            ),
        ] {
            if value == 0 {
                bail!("{key} = 0: it must be at least 1");
            }
        }
        if stream.delivery_limit > MAX_DELIVERY_LIMIT {
            bail!(
                "stream.delivery_limit = {} is above {MAX_DELIVERY_LIMIT}",
                stream.delivery_limit
            );
        }
        if stream.batch_size > usize::from(stream.prefetch) {
            bail!(
                "stream.batch_size = {} is above stream.prefetch = {}: a batch could never fill",
                stream.batch_size,
                stream.prefetch
            );
        }
        Ok(())
    }
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            amqp_url: DEFAULT_AMQP_URL.to_owned(),
            management_url: DEFAULT_MANAGEMENT_URL.to_owned(),
            public_amqp_url: DEFAULT_PUBLIC_AMQP_URL.to_owned(),
            vhost_prefix: "mysimbdp-".to_owned(),
            max_consumers_per_host: DEFAULT_HOST_MAX_CONSUMERS,
            prefetch: DEFAULT_PREFETCH,
            batch_size: DEFAULT_STREAM_BATCH,
            linger_ms: DEFAULT_LINGER_MS,
            delivery_limit: DEFAULT_DELIVERY_LIMIT,
            reconcile_ms: DEFAULT_RECONCILE_MS,
            monitor_interval_ms: DEFAULT_MONITOR_INTERVAL_MS,
            report_retention_days: DEFAULT_REPORT_RETENTION_DAYS,
            ca_cert: None,
        }
    }
}

/// `[apps]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppsConfig {
    /// Fuel of the admission probe (instantiate, then one call on an empty input).
    pub probe_fuel: u64,
    /// Deadline of the admission probe, in ms.
    pub probe_deadline_ms: u64,
    /// Pre-linked app versions kept in memory per host.
    pub loaded_apps: usize,
    /// The largest dry-run input, in KiB.
    pub dry_run_max_kib: usize,
    /// Documents a dry run returns at most.
    pub dry_run_max_documents: usize,
    /// Import prefixes refused at upload (and by `app check`).
    pub refused_imports: Vec<String>,
    /// The largest sample an upload may carry for its representative-input probe, in KiB.
    pub probe_sample_max_kib: usize,
}

impl AppsConfig {
    /// Refuses zeros, an empty refused import (it would refuse every app), and dry-run
    /// inputs that could not fit the JSON body (`max_json_kib`, `server.max_json_kib`) that
    /// carries them.
    pub fn validate(&self, max_json_kib: usize) -> Result<()> {
        for (key, value) in [
            ("apps.probe_fuel", self.probe_fuel),
            ("apps.probe_deadline_ms", self.probe_deadline_ms),
            ("apps.loaded_apps", self.loaded_apps as u64),
            ("apps.dry_run_max_kib", self.dry_run_max_kib as u64),
            (
                "apps.dry_run_max_documents",
                self.dry_run_max_documents as u64,
            ),
            (
                "apps.probe_sample_max_kib",
                self.probe_sample_max_kib as u64,
            ),
        ] {
            if value == 0 {
                bail!("{key} = 0: it must be at least 1");
            }
        }
        if let Some(i) = self
            .refused_imports
            .iter()
            .position(|p| p.trim().is_empty())
        {
            bail!("apps.refused_imports[{i}] is empty: it would refuse every app");
        }
        if self.dry_run_max_kib >= max_json_kib {
            bail!(
                "apps.dry_run_max_kib = {} must be below server.max_json_kib = {max_json_kib}: \
                 the input travels inside a JSON body",
                self.dry_run_max_kib,
            );
        }
        Ok(())
    }
}

impl Default for AppsConfig {
    fn default() -> Self {
        Self {
            probe_fuel: DEFAULT_PROBE_FUEL,
            probe_deadline_ms: DEFAULT_PROBE_DEADLINE_MS,
            loaded_apps: DEFAULT_LOADED_APPS,
            dry_run_max_kib: DEFAULT_DRY_RUN_MAX_KIB,
            dry_run_max_documents: DEFAULT_DRY_RUN_MAX_DOCUMENTS,
            refused_imports: DEFAULT_REFUSED_IMPORTS.map(String::from).to_vec(),
            probe_sample_max_kib: DEFAULT_PROBE_SAMPLE_MAX_KIB,
        }
    }
}

impl ServeConfig {
    /// Reads a config file (or the defaults when `path` is `None`), applies the environment's
    /// overrides and validates the result.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let mut config = match path {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).with_context(|| format!("reading {path:?}"))?;
                Self::from_toml(&text).with_context(|| format!("in {path:?}"))?
            }
            None => Self::default(),
        };
        config.apply_env(|name| std::env::var(name).ok());
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML, refusing unknown keys by name, and takes the deprecated `batch.redis_url`
    /// and `batch.namespace` as `redis.url` and `redis.namespace` (with a warning; a file
    /// setting both spellings differently is refused). Does not validate.
    pub fn from_toml(text: &str) -> Result<Self> {
        let mut config: Self = toml::from_str(text)?;
        // Which keys the file itself sets: a default cannot conflict with an old spelling.
        let table: toml::Table = toml::from_str(text)?;
        let redis = table.get("redis").and_then(toml::Value::as_table);
        let set_in_file = |key: &str| redis.and_then(|r| r.get(key)).and_then(toml::Value::as_str);
        for (old_key, old, (new_key, key), new) in [
            (
                "batch.redis_url",
                config.batch.deprecated_redis_url.take(),
                ("redis.url", "url"),
                &mut config.redis.url,
            ),
            (
                "batch.namespace",
                config.batch.deprecated_namespace.take(),
                ("redis.namespace", "namespace"),
                &mut config.redis.namespace,
            ),
        ] {
            let Some(old) = old else { continue };
            if let Some(set) = set_in_file(key)
                && set != old
            {
                bail!(
                    "{old_key} = {:?} and {new_key} = {:?} disagree: {old_key} is the deprecated \
                     spelling of {new_key}; keep only {new_key}",
                    redact_uri(&old),
                    redact_uri(set)
                );
            }
            tracing::warn!(
                "{old_key} is deprecated: it is read as {new_key}; rename it in the config file"
            );
            *new = old;
        }
        Ok(config)
    }

    /// Applies the variables of [`ENV_OVERRIDES`] that `lookup` finds.
    pub fn apply_env(&mut self, lookup: impl Fn(&str) -> Option<String>) {
        for o in &ENV_OVERRIDES {
            if let Some(value) = lookup(o.variable) {
                (o.set)(self, value);
            }
        }
    }

    /// Refuses a configuration the platform cannot run with, naming the key: each section
    /// checks its own keys.
    pub fn validate(&self) -> Result<()> {
        self.sandbox.validate()?;
        self.server.validate()?;
        self.platform.validate()?;
        self.sink.validate()?;
        self.registry.validate()?;
        self.redis.validate()?;
        self.batch.validate()?;
        // A live upload keeps its file fresh at least once per body idle timeout; a sweep
        // age below that could remove an upload still streaming in.
        if self.batch.incoming_max_age_secs.saturating_mul(1000)
            <= self.server.upload_body_idle_timeout_ms
        {
            bail!(
                "batch.incoming_max_age_secs = {} is not above server.upload_body_idle_timeout_ms \
                 = {} ms: the sweep of partial uploads could remove one still arriving",
                self.batch.incoming_max_age_secs,
                self.server.upload_body_idle_timeout_ms
            );
        }
        self.stream.validate()?;
        self.apps.validate(self.server.max_json_kib)?;
        Ok(())
    }

    /// The parsed listen address.
    pub fn listen_addr(&self) -> Result<SocketAddr> {
        self.server.listen_addr()
    }
}

/// MongoDB database names: short, no characters MongoDB forbids.
fn validate_database_name(key: &str, name: &str) -> Result<()> {
    if !crate::names::is_database_name(name) {
        bail!(
            "{key} = {name:?} is not a valid MongoDB database name (1-38 characters, none of /\\. \"$)"
        );
    }
    Ok(())
}

/// MongoDB URIs: the driver's two schemes (the password never echoed).
fn validate_mongodb_uri(key: &str, uri: &str) -> Result<()> {
    if !uri.starts_with("mongodb://") && !uri.starts_with("mongodb+srv://") {
        bail!(
            "{key} = {:?} is not a mongodb:// or mongodb+srv:// URI",
            redact_uri(uri)
        );
    }
    Ok(())
}

/// A MongoDB URI with any password replaced, for error messages and logs.
pub fn redact_uri(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_owned();
    };
    match rest.split_once('@') {
        Some((credentials, host)) if !credentials.contains('/') => {
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => uri.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    fn valid() -> ServeConfig {
        let mut config = ServeConfig::default();
        config.server.operator_token = TOKEN.to_owned();
        config.server.plain_http = true;
        config
    }

    #[test]
    fn the_example_file_lists_every_default() {
        let text = include_str!("../../../config/mysimbdp.example.toml");
        let mut config = ServeConfig::from_toml(text).unwrap();
        // The example leaves the token to the environment, as operators should.
        assert_eq!(config.server.operator_token, "");
        config.server.operator_token = TOKEN.to_owned();
        // Its one departure from the defaults, said in the file: plain HTTP on one machine.
        assert!(config.server.plain_http);
        assert_eq!(config, valid());
        config.validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let error =
            ServeConfig::from_toml("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 1\n").unwrap_err();
        assert!(error.to_string().contains("lisen"), "{error}");
        let error = ServeConfig::from_toml("[sandbox.limits]\nfule = 1\n").unwrap_err();
        assert!(error.to_string().contains("fule"), "{error}");
    }

    #[test]
    fn environment_overrides_secrets_and_addresses() {
        let mut config = ServeConfig::default();
        config.apply_env(|name| match name {
            "MYSIMBDP_OPERATOR_TOKEN" => Some(TOKEN.to_owned()),
            "MYSIMBDP_MONGODB_URI" => Some("mongodb://db.internal:27017".to_owned()),
            "MYSIMBDP_CACHE_DIR" => Some("/var/cache/x".to_owned()),
            "MYSIMBDP_PLAIN_HTTP" => Some("true".to_owned()),
            _ => None,
        });
        assert_eq!(config.server.operator_token, TOKEN);
        assert!(config.server.plain_http);
        assert_eq!(config.platform.mongodb_uri, "mongodb://db.internal:27017");
        assert_eq!(config.sandbox.engine.cache_dir, Some("/var/cache/x".into()));
        assert_eq!(config.server.listen, DEFAULT_LISTEN);
        config.validate().unwrap();
    }

    #[test]
    fn plain_http_is_served_only_when_the_operator_says_so() {
        let mut config = valid();
        config.server.plain_http = false;
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.contains("[server.tls]") && error.contains("server.plain_http = true"),
            "{error}"
        );
        let mut config = valid();
        config.server.tls = Some(TlsFiles {
            cert: "/etc/mysimbdp/api.crt".into(),
            key: "/etc/mysimbdp/api.key".into(),
        });
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("both set"), "{error}");
        config.server.plain_http = false;
        config.validate().unwrap();
    }

    #[test]
    fn bad_values_are_named() {
        let mut config = valid();
        config.server.operator_token = "short".to_owned();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("server.operator_token"), "{error}");

        let mut config = valid();
        config.server.listen = "localhost".to_owned();
        let error = format!("{:#}", config.validate().unwrap_err());
        assert!(error.contains("server.listen = \"localhost\""), "{error}");

        let mut config = valid();
        config.platform.mongodb_uri = "postgres://u:secret@h/db".to_owned();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("platform.mongodb_uri"), "{error}");
        assert!(!error.contains("secret"), "the password leaked: {error}");

        let mut config = valid();
        config.platform.database = "a.b".to_owned();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("platform.database"), "{error}");
    }

    #[test]
    fn bad_stream_settings_are_named() {
        type Spoil = fn(&mut StreamConfig);
        let cases: [(Spoil, &str); 6] = [
            (|s| s.amqp_url = "http://x".to_owned(), "stream.amqp_url"),
            (
                |s| s.public_amqp_url = "amqp://guest:guest@h:5672".to_owned(),
                "stream.public_amqp_url",
            ),
            (
                |s| s.management_url = "h:15672".to_owned(),
                "stream.management_url",
            ),
            (|s| s.vhost_prefix = "a/b".to_owned(), "stream.vhost_prefix"),
            (|s| s.batch_size = 501, "stream.batch_size"),
            (|s| s.delivery_limit = 0, "stream.delivery_limit"),
        ];
        for (spoil, key) in cases {
            let mut config = valid();
            spoil(&mut config.stream);
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains(key), "{key}: {error}");
        }
    }

    #[test]
    fn tenants_may_be_told_an_amqps_address() {
        let mut config = valid();
        config.stream.public_amqp_url = "amqps://broker.example:5671".to_owned();
        config.validate().unwrap();
        config.stream.public_amqp_url = "amqps://u:p@broker.example:5671".to_owned();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("stream.public_amqp_url"), "{error}");
    }

    #[test]
    fn the_deprecated_redis_keys_are_read_as_the_redis_section() {
        let config = ServeConfig::from_toml(
            "[batch]\nredis_url = \"redis://old:6379/\"\nnamespace = \"old\"\nworkers = 1\n",
        )
        .unwrap();
        assert_eq!(config.redis.url, "redis://old:6379/");
        assert_eq!(config.redis.namespace, "old");
        assert_eq!(config.batch.workers, 1);
        // Once read, the old spelling is gone: the file's keys are the new ones.
        let shown = toml::to_string(&config).unwrap();
        assert!(!shown.contains("redis_url"), "{shown}");
        // The same value under both spellings is accepted.
        let config = ServeConfig::from_toml(
            "[redis]\nurl = \"redis://same:6379/\"\n[batch]\nredis_url = \"redis://same:6379/\"\n",
        )
        .unwrap();
        assert_eq!(config.redis.url, "redis://same:6379/");
    }

    #[test]
    fn old_and_new_redis_keys_that_disagree_are_refused() {
        for (text, keys) in [
            (
                "[redis]\nurl = \"redis://new:6379/\"\n[batch]\nredis_url = \"redis://old:6379/\"\n",
                ["batch.redis_url", "redis.url"],
            ),
            (
                "[redis]\nnamespace = \"new\"\n[batch]\nnamespace = \"old\"\n",
                ["batch.namespace", "redis.namespace"],
            ),
        ] {
            let error = ServeConfig::from_toml(text).unwrap_err().to_string();
            for key in keys {
                assert!(error.contains(key), "{key} not named: {error}");
            }
        }
    }

    #[test]
    fn the_old_per_host_consumer_cap_still_loads() {
        let config = ServeConfig::from_toml("[stream]\nmax_consumers = 3\n").unwrap();
        assert_eq!(config.stream.max_consumers_per_host, 3);
        let config = ServeConfig::from_toml("[stream]\nmax_consumers_per_host = 5\n").unwrap();
        assert_eq!(config.stream.max_consumers_per_host, 5);
        let both = "[stream]\nmax_consumers = 3\nmax_consumers_per_host = 5\n";
        let error = ServeConfig::from_toml(both).unwrap_err().to_string();
        assert!(error.contains("max_consumers"), "{error}");
    }

    #[test]
    fn every_environment_override_sets_its_key() {
        for o in &ENV_OVERRIDES {
            let value = match o.variable {
                "MYSIMBDP_LISTEN" => "10.1.2.3:9999",
                "MYSIMBDP_OPERATOR_TOKEN" => "fedcba9876543210fedcba9876543210",
                "MYSIMBDP_ETCD_ENDPOINTS" => "etcd-a:2379, etcd-b:2379",
                v if v.ends_with("MONGODB_URI") => "mongodb://elsewhere:27017",
                "MYSIMBDP_REDIS_URL" => "redis://elsewhere:6379/",
                v if v.ends_with("AMQP_URL") => "amqp://elsewhere:5672",
                "MYSIMBDP_RABBITMQ_MANAGEMENT_URL" => "http://elsewhere:15672",
                "MYSIMBDP_PLATFORM_DATABASE" => "elsewhere",
                // valid() serves plain HTTP: the variable turns it off.
                "MYSIMBDP_PLAIN_HTTP" => "false",
                _ => "/var/lib/elsewhere",
            };
            let mut config = valid();
            config.apply_env(|name| (name == o.variable).then(|| value.to_owned()));
            assert_ne!(config, valid(), "{} changed nothing", o.variable);
            // The key the table names holds the value (the file's spelling, as TOML).
            let key = o.key.split_whitespace().next().unwrap_or_default();
            let shown: toml::Value = toml::from_str(&toml::to_string(&config).unwrap()).unwrap();
            let set = key
                .split('.')
                .try_fold(&shown, |v, part| v.get(part))
                .unwrap_or_else(|| panic!("{key} not found"));
            let expected = match set {
                toml::Value::Array(items) => items
                    .iter()
                    .filter_map(toml::Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
                toml::Value::Boolean(b) => b.to_string(),
                other => other.as_str().unwrap_or_default().to_owned(),
            };
            assert_eq!(expected, value, "{} -> {key}", o.variable);
        }
        assert_eq!(
            ENV_OVERRIDES
                .iter()
                .map(|o| o.variable)
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            ENV_OVERRIDES.len(),
            "a variable is listed twice"
        );
    }

    #[test]
    fn the_example_file_and_the_help_list_every_environment_override() {
        let example = include_str!("../../../config/mysimbdp.example.toml");
        let help = env_overrides_help();
        for o in &ENV_OVERRIDES {
            let listed = example.lines().any(|l| {
                l.strip_prefix('#').is_some_and(|l| {
                    l.split_once(o.variable)
                        .is_some_and(|(_, key)| key.trim() == o.key)
                })
            });
            assert!(
                listed,
                "{} -> {} is not listed in the example file",
                o.variable, o.key
            );
            assert!(help.contains(o.variable) && help.contains(o.key), "{help}");
        }
        let listed = example
            .lines()
            .filter(|l| l.starts_with("#   MYSIMBDP_"))
            .count();
        assert_eq!(
            listed,
            ENV_OVERRIDES.len(),
            "the example lists other variables"
        );
    }

    #[test]
    fn each_section_names_its_bad_key() {
        let error = |result: Result<()>| format!("{:#}", result.unwrap_err());
        let server = ServerConfig {
            header_timeout_ms: 1,
            ..valid().server
        };
        assert!(error(server.validate()).contains("server.header_timeout_ms"));
        let platform = PlatformConfig {
            database: "a/b".to_owned(),
            ..PlatformConfig::default()
        };
        assert!(error(platform.validate()).contains("platform.database"));
        let sink = SinkConfig {
            write_buffer_mib: 0,
            ..SinkConfig::default()
        };
        assert!(error(sink.validate()).contains("sink.write_buffer_mib"));
        let sink = SinkConfig {
            writes_in_flight: 0,
            ..SinkConfig::default()
        };
        assert!(error(sink.validate()).contains("sink.writes_in_flight"));
        let registry = RegistryConfig {
            host_lease_secs: 1,
            ..RegistryConfig::default()
        };
        assert!(error(registry.validate()).contains("registry.host_lease_secs"));
        let redis = RedisConfig {
            url: "http://u:secret@redis".to_owned(),
            ..RedisConfig::default()
        };
        let message = error(redis.validate());
        assert!(message.contains("redis.url"), "{message}");
        assert!(
            !message.contains("secret"),
            "the password leaked: {message}"
        );
        let redis = RedisConfig {
            namespace: "{x}".to_owned(),
            ..RedisConfig::default()
        };
        assert!(error(redis.validate()).contains("redis.namespace"));
        let batch = BatchConfig {
            max_attempts: 0,
            ..BatchConfig::default()
        };
        assert!(error(batch.validate()).contains("batch.max_attempts"));
        let batch = BatchConfig {
            incoming_max_age_secs: 0,
            ..BatchConfig::default()
        };
        assert!(error(batch.validate()).contains("batch.incoming_max_age_secs"));
        // The sweep of partial uploads must not take one still arriving.
        let mut config = valid();
        config.batch.incoming_max_age_secs = 120;
        let message = error(config.validate());
        assert!(
            message.contains("batch.incoming_max_age_secs")
                && message.contains("server.upload_body_idle_timeout_ms"),
            "{message}"
        );
        config.batch.incoming_max_age_secs = 121;
        config.validate().unwrap();
        let stream = StreamConfig {
            reconcile_ms: 0,
            ..StreamConfig::default()
        };
        assert!(error(stream.validate()).contains("stream.reconcile_ms"));
        let apps = AppsConfig {
            dry_run_max_kib: 512,
            ..AppsConfig::default()
        };
        assert!(error(apps.validate(256)).contains("apps.dry_run_max_kib"));
        // The whole config reports the section's message as it is.
        let mut config = valid();
        config.redis.namespace = String::new();
        assert!(error(config.validate()).contains("redis.namespace"));
    }
}
