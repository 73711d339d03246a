//! Accepting connections. The endpoint's listener takes loopback peers only (unless
//! `dangerAllowNonLoopback`), sets IP TTL 1 on every socket so answers cannot be routed off the
//! host, answers connections past `maxConnections` with 429 and closes them, and bounds each
//! connection by `headerTimeout` (per request) and `connectionTimeout` (in all). The metrics
//! listener ([`serve_metrics`]) serves `/metrics` and `/ping` only, and nothing else, to a
//! scraper outside the pod.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use seal_providers::CallCounter;
use tokio::net::TcpListener;

use super::Server;
use super::response::{metrics_text, plain};
use crate::metrics::Metrics;

/// Decrements the open-connection count when a connection ends.
struct Open(Arc<Server>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Server {
    /// Serves connections from `listener` until the process ends.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            if !peer.ip().is_loopback() && !self.settings.danger_allow_non_loopback {
                // Unreachable while bound to loopback; a second line of defence.
                continue;
            }
            let _ = stream.set_ttl(1);
            let _ = stream.set_nodelay(true);
            let open = self.active.fetch_add(1, Ordering::Relaxed);
            let guard = Open(self.clone());
            let over = open >= self.settings.max_connections;
            if over {
                self.metrics.connection_rejected();
            }
            let server = self.clone();
            let (header_timeout, lifetime) = (
                self.settings.header_timeout,
                self.settings.connection_timeout,
            );
            tokio::spawn(async move {
                let _guard = guard;
                let service = hyper::service::service_fn(move |request| {
                    let server = server.clone();
                    async move { Ok::<_, Infallible>(server.handle(&request, over).await) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .keep_alive(!over)
                    .serve_connection(TokioIo::new(stream), service);
                let _ = tokio::time::timeout(lifetime, connection).await;
            });
        }
    }
}

/// Serves `/metrics` and `/ping` only (GET; anything else 404 or 405), on a listener of its own
/// that may face the pod network: it serves no secret, and no label holds a secret's name.
pub async fn serve_metrics(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    calls: Vec<Arc<CallCounter>>,
) {
    let calls = Arc::new(calls);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let (metrics, calls) = (metrics.clone(), calls.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let (metrics, calls) = (metrics.clone(), calls.clone());
                async move {
                    let response = if request.method() == Method::GET {
                        match request.uri().path() {
                            "/metrics" => {
                                let counters: Vec<&CallCounter> =
                                    calls.iter().map(AsRef::as_ref).collect();
                                metrics_text(metrics.render(&counters))
                            }
                            "/ping" => plain(StatusCode::OK, "healthy"),
                            _ => plain(StatusCode::NOT_FOUND, "Not found"),
                        }
                    } else {
                        plain(StatusCode::METHOD_NOT_ALLOWED, "Not allowed")
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(5))
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(60), connection).await;
        });
    }
}
