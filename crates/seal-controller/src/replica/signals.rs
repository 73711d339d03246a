//! How a replica is told to stop: SIGTERM (the kubelet) or Ctrl-C (a terminal) sets the stop
//! flag every task of the replica watches.

use tokio::sync::watch;
use tracing::info;

/// Sets `stop` on SIGTERM or Ctrl-C.
pub async fn stop_on_signal(stop: watch::Sender<bool>) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    info!("stopping");
    let _ = stop.send(true);
}
