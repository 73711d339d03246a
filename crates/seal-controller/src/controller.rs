//! The control loop: watch SealedSecrets, unseal each into its Secret ([`crate::unseal`]), record the
//! outcome in its status, and keep the sealing keys current ([`crate::keys`]).
//!
//! - SealedSecrets are watched in every namespace or in a configured list; Secrets only through the
//!   label the controller puts on the Secrets it produced, so a deleted or edited Secret is put back
//!   and memory does not grow with the cluster's other Secrets.
//! - Keys are held parsed in memory (a freshly parsed RSA key's first decryption costs ~40 ms) and
//!   reloaded whenever a key Secret changes, which also re-runs every SealedSecret, so one that
//!   failed for want of a key unseals as soon as the key is added.
//! - A new key is made on first start and whenever the renewal policy says one is due.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use seal_api::SealedSecret;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::keys::{BITNAMI_KEY_LABEL, KeySet, KeyStore, RenewalPolicy, SEALING_KEY_LABEL};
use crate::unseal::{Reason, SEALED_SECRET_UID_LABEL, unseal_into_secret, write_status};

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The controller's own namespace, where the key Secrets live.
    pub key_namespace: String,
    /// Namespaces whose SealedSecrets are unsealed; empty means all.
    pub watch_namespaces: Vec<String>,
    /// When to make new keys.
    pub renewal: RenewalPolicy,
    /// Whether Bitnami's key Secrets (in `key_namespace`) decrypt too.
    pub import_bitnami_keys: bool,
    /// How many SealedSecrets are reconciled at once.
    pub concurrency: u16,
}

/// Why a reconcile must be retried.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReconcileError {
    /// The status could not be written.
    #[error("cannot write the status: {0}")]
    Status(#[source] kube::Error),
}

struct Context {
    client: Client,
    keys: RwLock<Arc<KeySet>>,
    recorder: Recorder,
}

impl Context {
    fn keys(&self) -> Arc<KeySet> {
        Arc::clone(
            &self
                .keys
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// Runs until the process is told to stop (SIGTERM or Ctrl-C).
pub async fn run(client: Client, settings: Settings) -> anyhow::Result<()> {
    let store = KeyStore::new(
        client.clone(),
        &settings.key_namespace,
        settings.import_bitnami_keys,
    );
    let (keys, created) = store.ensure(&settings.renewal, SystemTime::now()).await?;
    if let Some(created) = created {
        info!(secret = %created.secret_name, fingerprint = %created.fingerprint, "created a sealing key");
    }
    report_keys(&keys);
    let reporter = Reporter {
        controller: "seal-controller".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let context = Arc::new(Context {
        client: client.clone(),
        keys: RwLock::new(Arc::new(keys)),
        recorder: Recorder::new(client.clone(), reporter),
    });

    let namespaces: Vec<Option<String>> = if settings.watch_namespaces.is_empty() {
        vec![None]
    } else {
        settings
            .watch_namespaces
            .iter()
            .cloned()
            .map(Some)
            .collect()
    };
    // Every key change reloads the keys and re-runs every SealedSecret, in every namespace.
    let (reruns, rerun_streams): (Vec<_>, Vec<_>) =
        namespaces
            .iter()
            .map(|_| {
                let (tx, rx) = mpsc::channel::<()>(1);
                let stream = futures::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|()| ((), rx))
                });
                (tx, stream)
            })
            .unzip();
    tokio::spawn(watch_keys(
        client.clone(),
        store.clone(),
        settings.clone(),
        Arc::clone(&context),
        reruns,
    ));
    tokio::spawn(renew_keys(store, settings.renewal));

    let controllers = namespaces
        .into_iter()
        .zip(rerun_streams)
        .map(|(namespace, rerun)| {
            let (sealed, secrets): (Api<SealedSecret>, Api<Secret>) = match &namespace {
                Some(ns) => (
                    Api::namespaced(client.clone(), ns),
                    Api::namespaced(client.clone(), ns),
                ),
                None => (Api::all(client.clone()), Api::all(client.clone())),
            };
            Controller::new(sealed, watcher::Config::default())
                .with_config(ControllerConfig::default().concurrency(settings.concurrency))
                .watches(
                    secrets,
                    watcher::Config::default().labels(SEALED_SECRET_UID_LABEL),
                    // A produced Secret has its SealedSecret's name and namespace.
                    |secret: Secret| {
                        secret
                            .namespace()
                            .map(|ns| ObjectRef::new(&secret.name_any()).within(&ns))
                    },
                )
                .reconcile_all_on(rerun)
                .shutdown_on_signal()
                .run(reconcile, error_policy, Arc::clone(&context))
                .for_each(|result| async move {
                    if let Err(error) = result {
                        warn!(%error, "reconcile failed");
                    }
                })
        });
    futures::future::join_all(controllers).await;
    info!("stopped");
    Ok(())
}

async fn reconcile(sealed: Arc<SealedSecret>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let keys = ctx.keys();
    let outcome = unseal_into_secret(ctx.client.clone(), &sealed, keys.ring()).await;
    let namespace = sealed.namespace().unwrap_or_default();
    let name = sealed.name_any();
    if outcome.reason == Reason::Unsealed {
        if outcome.wrote {
            info!(%namespace, %name, "unsealed");
        }
    } else {
        warn!(%namespace, %name, reason = outcome.reason.as_str(), message = %outcome.message, "not unsealed");
    }
    let changed = write_status(ctx.client.clone(), &sealed, &outcome)
        .await
        .map_err(ReconcileError::Status)?;
    // One Event per write or change of state, not one per reconcile.
    if outcome.wrote || changed {
        let event = Event {
            type_: if outcome.reason == Reason::Unsealed {
                EventType::Normal
            } else {
                EventType::Warning
            },
            reason: outcome.reason.as_str().into(),
            note: Some(outcome.message.clone()),
            action: "Unseal".into(),
            secondary: None,
        };
        if let Err(error) = ctx.recorder.publish(&event, &sealed.object_ref(&())).await {
            warn!(%error, "cannot publish an Event");
        }
    }
    Ok(match outcome.reason {
        Reason::UpdateFailed => Action::requeue(Duration::from_secs(30)),
        _ => Action::await_change(),
    })
}

fn error_policy(_: Arc<SealedSecret>, _: &ReconcileError, _: Arc<Context>) -> Action {
    Action::requeue(Duration::from_secs(10))
}

/// Reloads the keys on every change to a key Secret, then asks for every SealedSecret to re-run.
async fn watch_keys(
    client: Client,
    store: KeyStore,
    settings: Settings,
    context: Arc<Context>,
    reruns: Vec<mpsc::Sender<()>>,
) {
    let api: Api<Secret> = Api::namespaced(client, &settings.key_namespace);
    let mut labels = vec![SEALING_KEY_LABEL];
    if settings.import_bitnami_keys {
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
                let different = keys.keys().iter().map(|k| k.fingerprint).ne(context
                    .keys()
                    .keys()
                    .iter()
                    .map(|k| k.fingerprint));
                if different {
                    report_keys(&keys);
                    *context
                        .keys
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
                    for rerun in &reruns {
                        // A full channel already holds a pending re-run.
                        let _ = rerun.try_send(());
                    }
                }
            }
            Err(error) => warn!(%error, "reloading keys"),
        }
    }
}

/// Makes a new key whenever one is due, checking hourly (and at the due time).
async fn renew_keys(store: KeyStore, policy: RenewalPolicy) {
    loop {
        let wait = match store.load().await {
            Ok(keys) => match (keys.newest(), policy.period) {
                (Some(newest), Some(period)) => {
                    let due = SystemTime::from(newest.certificate.not_before()) + period;
                    due.duration_since(SystemTime::now())
                        .unwrap_or_default()
                        .min(Duration::from_secs(3600))
                }
                _ => Duration::from_secs(3600),
            },
            Err(_) => Duration::from_secs(60),
        };
        tokio::time::sleep(wait).await;
        match store.ensure(&policy, SystemTime::now()).await {
            Ok((_, Some(created))) => {
                info!(secret = %created.secret_name, fingerprint = %created.fingerprint, "renewed the sealing key");
            }
            Ok((_, None)) => {}
            Err(error) => warn!(%error, "renewing the sealing key"),
        }
    }
}

fn report_keys(keys: &KeySet) {
    for (secret, reason) in keys.skipped() {
        warn!(%secret, reason, "key Secret skipped");
    }
    info!(
        keys = keys.keys().len(),
        newest = %keys.newest().map(|k| k.fingerprint.to_string()).unwrap_or_default(),
        "sealing keys loaded"
    );
}
