//! Leader election on a coordination.k8s.io Lease in the key namespace: one leader per role
//! reconciles; the other replicas wait, serving. A replica that loses the Lease stops its work and
//! exits, so that a fresh start rejoins the election with no work in flight; a replica told to
//! stop releases the Lease, so another takes over at once instead of after the Lease expires.
//!
//! The election (kube-lease-manager) only looks at a held Lease again when it would expire, up to
//! a whole Lease duration later, so a waiting replica also reads the Lease every
//! [`RELEASE_POLL`] and, once it sees the Lease released, starts its election afresh: a failover
//! after a clean stop costs at most that poll, not the Lease duration.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tracing::{debug, info};

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
    let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
    info!(identity = %election.identity, lease = %lease_name, "waiting to lead");
    let (leading, election_task) = loop {
        let manager = LeaseManagerBuilder::new(client.clone(), lease_name)
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
        let mut waiting = stopped.clone();
        let restart = tokio::select! {
            biased;
            _ = waiting.wait_for(|stop| *stop) => false,
            _ = leading.wait_for(|leader| *leader) => false,
            () = released(&leases, lease_name) => true,
        };
        if !restart {
            break (leading, election_task);
        }
        // Dropping the receiver ends this election (a replica that does not hold the Lease
        // writes nothing); the next one reads the released Lease and takes it.
        debug!(lease = %lease_name, "the Lease was released; electing afresh");
        drop(leading);
        let _ = election_task.await;
    };
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

/// How often a replica waiting to lead reads the Lease to notice a release (client-go's leader
/// election retries every 2 s by default).
const RELEASE_POLL: Duration = Duration::from_secs(1);

/// Returns once the Lease `name` is read released (or absent); read errors are retried at the
/// next poll, since the election itself reports a Lease it cannot use.
async fn released(leases: &Api<Lease>, name: &str) {
    loop {
        tokio::time::sleep(RELEASE_POLL).await;
        match leases.get_opt(name).await {
            Ok(lease) if is_released(lease.as_ref()) => return,
            Ok(_) => {}
            Err(error) => debug!(%error, lease = %name, "cannot read the Lease; reading it again"),
        }
    }
}

/// Whether nobody holds `lease`: it is absent, or its holder let it go (a released Lease has no
/// holder identity).
fn is_released(lease: Option<&Lease>) -> bool {
    lease
        .and_then(|lease| lease.spec.as_ref())
        .and_then(|spec| spec.holder_identity.as_deref())
        .is_none_or(str::is_empty)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::coordination::v1::LeaseSpec;

    use super::*;

    fn lease(holder: Option<&str>) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    #[test]
    fn a_lease_is_released_when_nobody_holds_it() {
        assert!(is_released(None), "absent");
        assert!(is_released(Some(&Lease::default())), "no spec");
        assert!(is_released(Some(&lease(None))), "no holder");
        assert!(is_released(Some(&lease(Some("")))), "empty holder");
        assert!(!is_released(Some(&lease(Some("replica-a")))), "held");
    }
}
