//! Leader election on a coordination.k8s.io Lease in the key namespace: one leader per role
//! reconciles; the other replicas wait, serving. A replica that loses the Lease stops its work and
//! exits, so that a fresh start rejoins the election with no work in flight; a replica told to
//! stop releases the Lease, so another takes over at once instead of after the Lease expires.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tracing::info;

/// Leader election on a Lease in the key namespace.
#[derive(Debug, Clone)]
pub struct LeaderElection {
    /// The Lease's base name; a role may add to it ([`super::Role::lease_name`]).
    pub lease_name: String,
    /// This replica's name in the Lease (the pod name in a cluster).
    pub identity: String,
    /// How long a Lease holds without renewal; a dead leader is replaced after at most this long.
    pub lease_duration: Duration,
}

/// Waits to lead on Lease `namespace/lease_name`, then runs `work` until it ends or the Lease is
/// lost (which sets `stop`). Returns `Ok(false)` when told to stop before leading, `Ok(true)` after
/// leading; an error when the Lease cannot be used or was lost.
pub async fn lead_while_elected<F, W>(
    client: Client,
    namespace: &str,
    lease_name: &str,
    election: &LeaderElection,
    stop: &watch::Sender<bool>,
    on_leading: impl FnOnce(),
    work: F,
) -> anyhow::Result<bool>
where
    F: FnOnce() -> W,
    W: Future<Output = anyhow::Result<()>>,
{
    let stopped = stop.subscribe();
    let duration = election.lease_duration.as_secs().max(2);
    let manager = LeaseManagerBuilder::new(client, lease_name)
        .with_namespace(namespace)
        .with_identity(&election.identity)
        .with_duration(duration)
        .with_grace((duration / 3).max(1))
        .build()
        .await
        .with_context(|| {
            format!("cannot use Lease {namespace}/{lease_name} for leader election")
        })?;
    let (mut leading, election_task) = manager.watch().await;
    info!(identity = %election.identity, lease = %lease_name, "waiting to lead");
    let mut waiting = stopped.clone();
    tokio::select! {
        _ = waiting.wait_for(|stop| *stop) => {}
        _ = leading.wait_for(|leader| *leader) => {}
    }
    if *stopped.borrow() {
        drop(leading);
        let _ = election_task.await;
        return Ok(false);
    }
    info!(identity = %election.identity, "leading");
    on_leading();
    let lost = Arc::new(AtomicBool::new(false));
    let watch_for_loss = tokio::spawn({
        let lost = Arc::clone(&lost);
        let stop = stop.clone();
        let mut leading = leading.clone();
        async move {
            if leading.wait_for(|leader| !*leader).await.is_ok() {
                lost.store(true, Ordering::SeqCst);
                let _ = stop.send(true);
            }
        }
    });
    let result = work().await;
    // Dropping the last receiver makes the election task release the Lease.
    watch_for_loss.abort();
    let _ = watch_for_loss.await;
    drop(leading);
    let _ = election_task.await;
    result?;
    if lost.load(Ordering::SeqCst) {
        anyhow::bail!("lost the leader Lease; exiting to rejoin the election");
    }
    Ok(true)
}
