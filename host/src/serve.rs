//! `mysimbdp serve`: wires the platform database, the sandbox, the app store and the API
//! together and serves until told to stop. Shutdown: stop accepting, let in-flight requests
//! finish within `server.shutdown_grace_ms`, then return.

use crate::api::{self, AppState, Metrics};
use crate::app_store::AppStore;
use crate::batch::{BatchContext, JobQueue, Staging, worker};
use crate::config::ServeConfig;
use crate::platform::Platform;
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

/// Serves the platform on `listener` until `shutdown` completes.
pub async fn run(
    config: ServeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let platform = Platform::connect(&config.platform).await?;
    let runtime =
        Arc::new(Runtime::new(config.sandbox.clone()).context("starting the sandbox runtime")?);
    let apps = Arc::new(AppStore::new(
        runtime,
        platform.clone(),
        config.apps.clone(),
        config.sandbox.clone(),
    ));
    let registry = Registry::connect(&config.registry)
        .await
        .context("connecting to the service registry (registry.etcd_endpoints)")?;
    let sinks = SinkResolver::start(registry.clone(), &config.sink);
    let grace = Duration::from_millis(config.server.shutdown_grace_ms);
    let lease = Duration::from_secs(config.registry.host_lease_secs);
    let address = listener
        .local_addr()
        .context("reading the listener's address")?;
    let queue = JobQueue::connect(
        &config.batch.redis_url,
        &config.batch.namespace,
        Duration::from_secs(config.batch.visibility_secs),
        config.batch.tenant_concurrency,
    )
    .await
    .context("connecting to the batch job queue (batch.redis_url)")?;
    let staging = Staging::new(config.batch.staging_dir())?;
    let metrics = Arc::new(Metrics::new());
    let mut roles = vec!["api".to_owned()];
    if config.batch.workers > 0 {
        roles.push("batch".to_owned());
    }
    if config.stream.max_consumers > 0 {
        roles.push(stream::CONSUMER_ROLE.to_owned());
    }
    let host = crate::registry::this_process(format!("http://{address}"), roles)?;
    let broker = Broker::new(&config.stream)?;
    broker.check().await.with_context(|| {
        format!(
            "reaching RabbitMQ's management API at {} (stream.management_url; enable it with \
             `rabbitmq-plugins enable rabbitmq_management`)",
            config.stream.management_url
        )
    })?;
    platform
        .ensure_stream_indexes(Duration::from_secs(
            u64::from(config.stream.report_retention_days) * 86_400,
        ))
        .await
        .context("creating the stream collections' indexes")?;
    let quota = Quota::connect(&config.batch.redis_url, &config.batch.namespace)
        .await
        .context("connecting to Redis for stream quotas (batch.redis_url)")?;
    let streams = Arc::new(StreamContext {
        broker,
        quota,
        platform: platform.clone(),
        apps: apps.clone(),
        sinks: sinks.clone(),
        registry: registry.clone(),
        config: config.stream.clone(),
        metrics: metrics.clone(),
        host: host.id.clone(),
    });
    let batch = Arc::new(BatchContext {
        queue,
        staging,
        platform: platform.clone(),
        apps: apps.clone(),
        sinks: sinks.clone(),
        config: config.batch.clone(),
        metrics: metrics.clone(),
    });
    let workers = config.batch.workers;
    let connection_limits = api::connections::ConnectionLimits {
        max_connections: config.server.max_connections,
        header_timeout: Duration::from_millis(config.server.header_timeout_ms),
    };
    let state = AppState::new(
        platform,
        apps,
        Arc::new(config),
        metrics,
        registry.clone(),
        sinks,
        batch.clone(),
        streams.clone(),
    );
    let router = api::router(state);
    let membership = registry
        .join(host, lease)
        .await
        .context("registering this host in etcd")?;
    tracing::info!(host = %membership.host().id, "mysimbdp listening on http://{address}");
    let (stop_workers, workers_stop) = watch::channel(false);
    let worker_tasks = worker::spawn(batch, &membership.host().id, workers, workers_stop.clone());
    let consumers = tokio::spawn(stream::manager::run(streams.clone(), workers_stop.clone()));
    let monitor = tokio::spawn(stream::monitor::run(streams, lease, workers_stop));

    let (stopping_tx, stopping_rx) = oneshot::channel::<()>();
    let server = api::connections::serve(listener, router, connection_limits, async move {
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
    // Workers finish the job they hold (or the grace runs out: the job is reaped and run
    // again elsewhere, which the deterministic ids make harmless).
    // Consumers finish their batch; what they hold unacknowledged goes back to the queue.
    let _ = stop_workers.send(true);
    let finishing = futures_util::future::join_all(worker_tasks);
    let streams_done = futures_util::future::join(consumers, monitor);
    if tokio::time::timeout(grace, futures_util::future::join(finishing, streams_done))
        .await
        .is_err()
    {
        tracing::warn!(
            "workers or consumers still busy after the grace period; their jobs and messages \
             will be retried"
        );
    }
    membership.leave().await;
    tracing::info!("stopped");
    Ok(())
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
