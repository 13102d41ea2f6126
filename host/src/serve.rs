//! `mysimbdp serve`: connects the platform database, etcd, Redis and RabbitMQ, builds the
//! sandbox, the app store and the API over them, runs the batch workers and stream consumers
//! this host's roles ask for, and serves until told to stop. Shutdown: stop accepting, let in-flight requests
//! finish within `server.shutdown_grace_ms`, then return.

use crate::api::{self, AppState};
use crate::app_store::AppStore;
use crate::batch::staging::GridFsStaging;
use crate::batch::{BatchContext, JobQueue, Staging, reconciler, worker};
use crate::config::{ServeConfig, StagingBackend};
use crate::metrics::Metrics;
use crate::platform::{LogWriter, Platform};
use crate::redis_link::RedisLink;
use crate::registry::Registry;
use crate::runtime::Runtime;
use crate::sink::SinkResolver;
use crate::stream::{self, Broker, Quota, StreamContext};
use anyhow::{Context, Result};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// Ingestion log entries a host keeps while the platform database is away: those of attempts
/// that did not end their job (an ending's entry is written before the ending is recorded).
/// An entry holds at most a bounded quality report (under 64 KiB), so this bounds the backlog
/// at about 64 MiB.
const INGESTION_LOG_BACKLOG: usize = 1_000;

/// Serves the platform on `listener` until `shutdown` completes.
pub async fn run(
    config: ServeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    // rustls here has two crypto providers (MongoDB's driver brings ring): the process's
    // default must be chosen for libraries that ask for it (the Redis client's TLS).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // The certificate first: a host that cannot serve its API should not join the platform.
    let tls = config
        .server
        .tls
        .as_ref()
        .map(api::tls::acceptor)
        .transpose()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let services = Services::connect(&config).await?;
    let address = listener
        .local_addr()
        .context("reading the listener's address")?;
    let host = crate::registry::this_process(format!("{scheme}://{address}"), roles(&config))?;
    let grace = Duration::from_millis(config.server.shutdown_grace_ms);
    let lease = Duration::from_secs(config.registry.host_lease_secs);
    let workers = config.batch.workers;
    let incoming_max_age = Duration::from_secs(config.batch.incoming_max_age_secs);
    let connection_limits = api::connections::ConnectionLimits {
        max_connections: config.server.max_connections,
        header_timeout: Duration::from_millis(config.server.header_timeout_ms),
    };
    let (state, batch, streams) = assemble(config, services, &host.id);
    let registry = state.registry.clone();
    let router = api::router(state);
    let membership = registry
        .join(host, lease)
        .await
        .context("registering this host in etcd")?;
    tracing::info!(host = %membership.host().id, "mysimbdp listening on {scheme}://{address}");
    let (stop_background, background_stop) = watch::channel(false);
    let background = Background::spawn(
        batch,
        streams,
        &membership.host().id,
        workers,
        lease,
        incoming_max_age,
        background_stop,
    );
    serve_until(listener, router, connection_limits, tls, shutdown, grace).await;
    let _ = stop_background.send(true);
    background.finish(grace).await;
    membership.leave().await;
    tracing::info!("stopped");
    Ok(())
}

/// The state of the API over handles that reach their services on first use: building it
/// connects to nothing, so the router's own behaviour (auth, errors, routing, the OpenAPI
/// document) can be tested with every service stopped. `run` never uses it: it connects
/// first and fails fast.
pub async fn offline_state(config: ServeConfig) -> Result<AppState> {
    let services = Services::lazy(&config).await?;
    let host = crate::registry::this_process("http://127.0.0.1:0".to_owned(), roles(&config))?;
    let (state, _, _) = assemble(config, services, &host.id);
    Ok(state)
}

/// The handles to the platform's services, each shared by whoever needs it.
struct Services {
    platform: Platform,
    apps: Arc<AppStore>,
    registry: Registry,
    sinks: Arc<SinkResolver>,
    queue: JobQueue,
    staging: Staging,
    broker: Broker,
    quota: Quota,
}

impl Services {
    /// Connects to every service and checks it answers: an unreachable one fails startup
    /// with what to fix.
    async fn connect(config: &ServeConfig) -> Result<Self> {
        let platform = Platform::connect(&config.platform).await?;
        let apps = app_store(config, &platform)?;
        let registry = Registry::connect(&config.registry)
            .await
            .context("connecting to the service registry (registry.etcd_endpoints)")?;
        let sinks = SinkResolver::start(registry.clone(), &config.sink);
        // One link (one self-healing connection) for the job queue and the stream quotas.
        let redis = RedisLink::from_config(&config.redis)?;
        redis
            .connection()
            .await
            .context("connecting to Redis for the batch job queue and stream quotas (redis.url)")?;
        let queue = JobQueue::over(
            redis.clone(),
            &config.redis.namespace,
            Duration::from_secs(config.batch.visibility_secs),
            config.batch.tenant_concurrency,
        );
        let staging = staging(config, &platform)?;
        if let Staging::GridFs(gridfs) = &staging {
            gridfs
                .ensure_indexes()
                .await
                .context("creating the GridFS staging bucket's indexes")?;
        }
        let broker = Broker::new(&config.stream)?;
        broker.check().await.with_context(|| {
            format!(
                "reaching RabbitMQ's management API at {} (stream.management_url; enable it \
                 with `rabbitmq-plugins enable rabbitmq_management`)",
                config.stream.management_url
            )
        })?;
        platform
            .ensure_stream_indexes(Duration::from_secs(
                u64::from(config.stream.report_retention_days) * 86_400,
            ))
            .await
            .context("creating the stream collections' indexes")?;
        let quota = Quota::over(redis, &config.redis.namespace);
        Ok(Self {
            platform,
            apps,
            registry,
            sinks,
            queue,
            staging,
            broker,
            quota,
        })
    }

    /// The same handles, none of which reaches its service before it is used.
    async fn lazy(config: &ServeConfig) -> Result<Self> {
        let platform = Platform::lazy(&config.platform).await?;
        let apps = app_store(config, &platform)?;
        let staging = staging(config, &platform)?;
        let registry = Registry::lazy(&config.registry).await?;
        let sinks = SinkResolver::start(registry.clone(), &config.sink);
        let redis = RedisLink::from_config(&config.redis)?;
        Ok(Self {
            platform,
            apps,
            registry,
            sinks,
            queue: JobQueue::over(
                redis.clone(),
                &config.redis.namespace,
                Duration::from_secs(config.batch.visibility_secs),
                config.batch.tenant_concurrency,
            ),
            staging,
            broker: Broker::new(&config.stream)?,
            quota: Quota::over(redis, &config.redis.namespace),
        })
    }
}

/// The staging area in the backend the config names.
fn staging(config: &ServeConfig, platform: &Platform) -> Result<Staging> {
    Ok(match config.batch.staging {
        StagingBackend::Local => Staging::local(config.batch.staging_dir())?,
        StagingBackend::Gridfs => Staging::GridFs(
            GridFsStaging::new(platform.database())
                .with_max_age(Duration::from_secs(config.batch.incoming_max_age_secs)),
        ),
    })
}

/// The app store over a fresh sandbox runtime.
fn app_store(config: &ServeConfig, platform: &Platform) -> Result<Arc<AppStore>> {
    let runtime =
        Arc::new(Runtime::new(config.sandbox.clone()).context("starting the sandbox runtime")?);
    Ok(Arc::new(AppStore::new(
        runtime,
        platform.clone(),
        config.apps.clone(),
        config.sandbox.clone(),
    )))
}

/// The roles this host announces in etcd.
fn roles(config: &ServeConfig) -> Vec<String> {
    let mut roles = vec!["api".to_owned()];
    if config.batch.workers > 0 {
        roles.push("batch".to_owned());
    }
    if config.stream.max_consumers_per_host > 0 {
        roles.push(stream::CONSUMER_ROLE.to_owned());
    }
    roles
}

/// The API's state and the batch and stream contexts the background tasks run on, over one
/// set of handles and one metrics registry.
fn assemble(
    config: ServeConfig,
    services: Services,
    host: &str,
) -> (AppState, Arc<BatchContext>, Arc<StreamContext>) {
    let metrics = Arc::new(Metrics::new());
    let streams = Arc::new(StreamContext {
        broker: services.broker,
        quota: services.quota,
        outbox: stream::Outbox::new(services.platform.clone()),
        platform: services.platform.clone(),
        apps: services.apps.clone(),
        sinks: services.sinks.clone(),
        registry: services.registry.clone(),
        config: config.stream.clone(),
        metrics: metrics.clone(),
        host: host.to_owned(),
    });
    let batch = Arc::new(BatchContext {
        queue: services.queue,
        staging: services.staging,
        platform: services.platform.clone(),
        apps: services.apps.clone(),
        sinks: services.sinks.clone(),
        config: config.batch.clone(),
        metrics: metrics.clone(),
        log: LogWriter::start(services.platform.clone(), INGESTION_LOG_BACKLOG),
    });
    let state = AppState::new(
        services.platform,
        services.apps,
        Arc::new(config),
        metrics,
        services.registry,
        services.sinks,
        batch.clone(),
        streams.clone(),
    );
    (state, batch, streams)
}

/// The batch workers and their reconciler, the stream consumers' manager, the stream monitor
/// and the sweep of partial uploads (every host runs it: any host takes uploads).
struct Background {
    workers: Vec<JoinHandle<()>>,
    reconciler: Option<JoinHandle<()>>,
    sweeper: JoinHandle<()>,
    consumers: JoinHandle<()>,
    monitor: JoinHandle<()>,
}

impl Background {
    /// Starts them; they stop when `stop` turns true.
    fn spawn(
        batch: Arc<BatchContext>,
        streams: Arc<StreamContext>,
        host: &str,
        workers: usize,
        lease: Duration,
        incoming_max_age: Duration,
        stop: watch::Receiver<bool>,
    ) -> Self {
        // Hosts that run jobs also keep the queue in line with the jobs' records.
        let reconciler = (workers > 0).then(|| {
            tokio::spawn(reconciler::run(
                batch.platform.clone(),
                batch.queue.clone(),
                Duration::from_secs(batch.config.reconcile_secs),
                stop.clone(),
            ))
        });
        Self {
            reconciler,
            sweeper: tokio::spawn(
                batch
                    .staging
                    .clone()
                    .sweep_periodically(incoming_max_age, stop.clone()),
            ),
            workers: worker::spawn(batch, host, workers, stop.clone()),
            consumers: tokio::spawn(stream::manager::run(streams.clone(), stop.clone())),
            monitor: tokio::spawn(stream::monitor::run(streams, lease, stop)),
        }
    }

    /// Waits, at most `grace`, for them to stop. Workers finish the job they hold (or the
    /// grace runs out: the job is reaped and run again elsewhere, which the deterministic ids
    /// make harmless). Consumers finish their batch; what they hold unacknowledged goes back
    /// to the queue.
    async fn finish(self, grace: Duration) {
        // The reconciler and the sweep hold nothing worth waiting for.
        if let Some(reconciler) = self.reconciler {
            reconciler.abort();
        }
        self.sweeper.abort();
        let finishing = futures_util::future::join_all(self.workers);
        let streams_done = futures_util::future::join(self.consumers, self.monitor);
        if tokio::time::timeout(grace, futures_util::future::join(finishing, streams_done))
            .await
            .is_err()
        {
            tracing::warn!(
                "workers or consumers still busy after the grace period; their jobs and \
                 messages will be retried"
            );
        }
    }
}

/// Serves `router` until `shutdown` completes, then lets in-flight requests finish within
/// `grace`.
async fn serve_until(
    listener: TcpListener,
    router: axum::Router,
    limits: api::connections::ConnectionLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) {
    let (stopping_tx, stopping_rx) = oneshot::channel::<()>();
    let server = api::connections::serve(listener, router, limits, tls, async move {
        shutdown.await;
        tracing::info!("shutting down: no new connections, finishing in-flight requests");
        let _ = stopping_tx.send(());
    });
    let grace_expired = async move {
        if stopping_rx.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = server => {},
        () = grace_expired => {
            tracing::warn!(?grace, "shutdown grace period over; dropping requests still in flight");
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
