//! Serving HTTP within connection limits: every listener of a replica (the certificate API,
//! a syncer's probes, the metrics) is bound at start, so a port in use fails the start, and served
//! by [`serve`], so half-sent requests cannot pile up.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::ConnectInfo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

/// How long a client may take to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest any one connection is served (keep-alive included).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);
/// Connections served at once, per listener.
pub const MAX_CONNECTIONS: usize = 256;

/// Binds `addr` now (so a port in use fails the start) and serves `router` until `stopped`.
pub async fn bind_and_serve(
    what: &'static str,
    addr: SocketAddr,
    router: Router,
    stopped: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for the {what}"))?;
    info!(address = %listener.local_addr()?, "serving the {what}");
    tokio::spawn(serve(listener, router, stopped));
    Ok(())
}

/// Serves `router` on `listener` until `stopped`, within the connection limits: at most
/// [`MAX_CONNECTIONS`] at once, headers within [`HEADER_TIMEOUT`], each connection at most
/// [`CONNECTION_LIFETIME`]. HTTP/1.1 (what kubeseal, seal and the API server's proxy speak).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => return,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let (stream, client) = tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::debug!(%error, "accept failed");
                    continue;
                }
            },
        };
        let service = router.clone().layer(axum::Extension(ConnectInfo(client)));
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
            drop(permit);
        });
    }
}

/// A syncer's probes: it has no certificate to serve, and is ready once it serves.
pub fn probes_router() -> Router {
    use axum::routing::get;
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ok\n" }))
}
