//! Keeping a replica's keys current: reload them when a key Secret changes (every unsealer
//! replica), and, on the leader, make a new key when one is due and keep the offline backup
//! current.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use seal_api::names::{BACKUP_CONFIGMAP, BITNAMI_KEY_LABEL, SEALING_KEY_LABEL};
use tokio::sync::watch;
use tracing::{info, warn};

use super::backup::write_backup;
use super::{CurrentKeys, KeySet, KeyStore, RenewalPolicy};

/// Reloads the keys on every change to a key Secret (seal's, and Bitnami's when `bitnami`) and
/// publishes them when they differ (other keys, or a new renewal request), which re-runs every
/// SealedSecret on the leader.
pub async fn follow_key_secrets(
    client: Client,
    store: KeyStore,
    namespace: String,
    bitnami: bool,
    current: CurrentKeys,
) {
    let api: Api<Secret> = Api::namespaced(client, &namespace);
    let mut labels = vec![SEALING_KEY_LABEL];
    if bitnami {
        labels.push(BITNAMI_KEY_LABEL);
    }
    let changes = futures::stream::select_all(labels.into_iter().map(|label| {
        watcher(api.clone(), watcher::Config::default().labels(label))
            .default_backoff()
            .touched_objects()
            .map_ok(|_| ())
            .boxed()
    }));
    let mut changes = std::pin::pin!(changes);
    while let Some(change) = changes.next().await {
        if let Err(error) = change {
            warn!(%error, "watching key Secrets");
            continue;
        }
        match store.load().await {
            Ok(keys) => {
                if differ(&keys, &current.get()) {
                    report(&keys);
                    current.publish(keys);
                }
            }
            Err(error) => warn!(%error, "reloading keys"),
        }
    }
}

/// Whether a freshly loaded set says something `current` does not: other keys, or another
/// renewal request.
fn differ(loaded: &KeySet, current: &KeySet) -> bool {
    loaded.renewal_requested() != current.renewal_requested()
        || loaded
            .keys()
            .iter()
            .map(|k| k.fingerprint)
            .ne(current.keys().iter().map(|k| k.fingerprint))
}

/// Makes a new key whenever one is due: checked when the keys change, hourly, and at the due time.
pub async fn renew(
    store: KeyStore,
    policy: RenewalPolicy,
    mut changes: watch::Receiver<Arc<KeySet>>,
) {
    loop {
        let wait = {
            let keys = changes.borrow_and_update();
            next_check(&keys, &policy, SystemTime::now())
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            next = changes.changed() => if next.is_err() { return },
        }
        match store.ensure(&policy, SystemTime::now()).await {
            Ok((_, Some(created))) => {
                info!(secret = %created.secret_name, fingerprint = %created.fingerprint, "renewed the sealing key");
            }
            Ok((_, None)) => {}
            Err(error) => {
                warn!(%error, "renewing the sealing key");
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        }
    }
}

/// How long until the renewal check is due for `keys` at `now`: when the newest key reaches the
/// policy's age, or just after a renewal request dated ahead of this clock comes due; at most an
/// hour.
fn next_check(keys: &KeySet, policy: &RenewalPolicy, now: SystemTime) -> Duration {
    let until = |at: SystemTime| at.duration_since(now).unwrap_or_default();
    let by_age = match (keys.newest_own(), policy.period) {
        (Some(newest), Some(period)) => {
            until(SystemTime::from(newest.certificate.not_before()) + period)
        }
        _ => Duration::from_secs(3600),
    };
    // A request stamped by a clock ahead of this one is acted on when its time comes.
    let by_request = keys
        .renewal_requested()
        .filter(|at| *at > now)
        .map_or(Duration::MAX, |at| until(at) + Duration::from_secs(1));
    by_age.min(by_request).min(Duration::from_secs(3600))
}

/// Keeps the key backup current: written at once and after every change of the keys.
pub async fn back_up(
    client: Client,
    namespace: String,
    recovery: seal_core::Certificate,
    mut changes: watch::Receiver<Arc<KeySet>>,
) {
    loop {
        let keys = Arc::clone(&changes.borrow_and_update());
        match write_backup(client.clone(), &namespace, &recovery, &keys).await {
            Ok(true) => info!(
                configmap = BACKUP_CONFIGMAP,
                keys = keys.keys().len(),
                recovery = %recovery.fingerprint(),
                "backed up the keys"
            ),
            Ok(false) => {}
            Err(error) => {
                warn!(%error, "backing up the keys");
                tokio::time::sleep(Duration::from_secs(30)).await;
                continue;
            }
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// Logs the loaded set: the skipped key Secrets with their reasons, the count and the newest.
pub fn report(keys: &KeySet) {
    for (secret, reason) in keys.skipped() {
        warn!(%secret, reason, "key Secret skipped");
    }
    info!(
        keys = keys.keys().len(),
        newest = %keys.newest().map(|k| k.fingerprint.to_string()).unwrap_or_default(),
        "sealing keys loaded"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_keys_or_a_period_the_check_is_hourly() {
        let policy = RenewalPolicy {
            period: None,
            ..RenewalPolicy::default()
        };
        assert_eq!(
            next_check(&KeySet::empty(), &policy, SystemTime::now()),
            Duration::from_secs(3600)
        );
        assert!(!differ(&KeySet::empty(), &KeySet::empty()));
    }
}
