//! The HTTP server under the API and the dashboard, with the limits `axum::serve` lacks:
//! a client gets [`ServeLimits::header_read_timeout`] to send a request's head (an idle
//! keep-alive connection as well, so a silent or trickling client cannot hold a connection
//! for good), a handler [`ServeLimits::request_timeout`] to answer (a slow upload of a body
//! counts), and a shutdown waits at most [`ServeLimits::shutdown_deadline`] for the requests
//! under way before it closes what is still open.

use std::pin::pin;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::task::JoinSet;

use crate::error::ApiError;

/// The server's timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Time from a connection's start, or from its previous answer, to a request's whole head.
    pub header_read_timeout: Duration,
    /// Time from a request's head to its answer's head (reading its body included).
    pub request_timeout: Duration,
    /// Time a shutdown waits for the requests under way.
    pub shutdown_deadline: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            header_read_timeout: Duration::from_millis(DEFAULT_HEADER_READ_TIMEOUT_MS),
            request_timeout: Duration::from_millis(DEFAULT_REQUEST_TIMEOUT_MS),
            shutdown_deadline: Duration::from_millis(DEFAULT_SHUTDOWN_DEADLINE_MS),
        }
    }
}

/// A local client sends its head in milliseconds; 10 s leaves room for a loaded machine.
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// The CLI gives up on an answer after 120 s; the server does not work longer than that.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 120_000;
/// A stop (SIGTERM, a service manager) is not held up longer than 10 s by any client.
pub const DEFAULT_SHUTDOWN_DEADLINE_MS: u64 = 10_000;

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting, lets the
/// requests under way finish for at most the shutdown deadline, and closes the rest.
pub async fn serve_app(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ServeLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = app.layer(axum::middleware::from_fn_with_state(
        limits.request_timeout,
        request_timeout,
    ));
    // `true` once the server stops: each connection finishes its request and closes.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut conns = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait for connections to close.
                    tracing::warn!(error = %e, "accepting an API connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        while conns.try_join_next().is_some() {}
        // Each request carries the connection's peer, as axum's `ConnectInfo` (the sign-in
        // counts failures by address: `crate::signin::client_ip`).
        let tower = TowerToHyperService::new(app.clone());
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            hyper::service::Service::call(&tower, req)
        });
        let mut stop = stop_rx.clone();
        conns.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout);
            let mut conn = pin!(builder.serve_connection(TokioIo::new(tcp), service));
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "API connection closed");
                    }
                    return;
                }
                _ = stop.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(limits.shutdown_deadline, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = conns.len(),
            deadline_ms = limits.shutdown_deadline.as_millis() as u64,
            "API connections still open at the shutdown deadline: closing them"
        );
        conns.shutdown().await;
    }
    drop(stop_tx);
    Ok(())
}

/// Answers 503 to a request its handler has not answered in time.
async fn request_timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::unavailable(format!(
            "the request took longer than {} s: try again, or ask for less",
            limit.as_secs()
        ))
        .into_response(),
    }
}
