//! Serving the router over TCP, with the bounds a slow or hostile client cannot stretch:
//! at most `server.max_connections` connections at once (past that, new ones wait in the
//! kernel's backlog), and `server.header_timeout_ms` for a request's headers to arrive —
//! counted from the moment a connection opens or goes idle after a response, so a silent
//! connection, a half-sent header and an idle keep-alive connection are all closed.
//! HTTP/1.1 only: nothing needs HTTP/2 here, and it would bring its own attack surface.
//! With `[server.tls]`, every connection is TLS ([`super::tls`]); its handshake must end
//! within the header timeout too, so a client that connects and says nothing holds a slot no
//! longer over TLS than without it. A plain-HTTP request to a TLS port is a failed handshake.
//!
//! Body and whole-request time bounds are per route, in [`super::timeouts`].

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// The connection-level bounds, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time for a request's headers to arrive, from connect or from the previous response.
    pub header_timeout: Duration,
}

/// How long a failing `accept` (out of file descriptors, say) waits before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting and waits
/// for the requests in flight (idle connections are closed at once). The caller bounds that
/// wait.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let service = TowerToHyperService::new(router);
    tokio::pin!(shutdown);
    loop {
        // A slot first: while every slot is taken nothing is accepted, so the kernel's backlog
        // (not this process) holds the excess.
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        if slots.available_permits() == 0 {
            tracing::warn!(
                max = limits.max_connections,
                "every connection slot is taken (server.max_connections): new connections wait"
            );
        }
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, service, limits, watcher).await,
                Some(tls) => {
                    match tokio::time::timeout(limits.header_timeout, tls.accept(stream)).await {
                        Ok(Ok(stream)) => serve_connection(stream, service, limits, watcher).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => {
                            tracing::debug!("TLS handshake not done within the header timeout")
                        }
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Serves HTTP/1.1 on one connection (plain or TLS) until it closes or shutdown ends it.
async fn serve_connection<I>(
    io: I,
    service: TowerToHyperService<Router>,
    limits: ConnectionLimits,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
