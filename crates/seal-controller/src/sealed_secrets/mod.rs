//! The SealedSecret reconciler: watch SealedSecrets, unseal each into its Secret ([`unseal`]),
//! record the outcome in its status, and put back a produced Secret that was edited or deleted.
//!
//! With [`Config::bitnami`] it also reconciles Bitnami's `bitnami.com/v1alpha1` SealedSecrets in
//! place of Bitnami's controller: the same reconcile, in their flavour ([`flavour`]: Bitnami's
//! Secret shape and `Synced` status). Their produced Secrets carry no seal label, so they are
//! watched by owner reference ([`crate::protocols::produced_watch::watch_owned`]). Without
//! Bitnami's CRD in the cluster this is said once in the log and everything else goes on. A
//! Bitnami object's Secret has no record, so the third step below is where a restart leaves it:
//! converting it to seal.dev gives it RSA-free restarts.
//!
//! - SealedSecrets are watched in every namespace or in a configured list, and a seal.dev object
//!   is cached without its ciphertext ([`watched`]); produced Secrets through
//!   [`crate::protocols::produced_watch`] (by label, metadata only), so no plaintext is held
//!   between reconciles and memory grows by less than the objects' own size, not with the
//!   cluster's other Secrets.
//! - Every change of the keys re-runs every SealedSecret, so one that failed for want of a key
//!   unseals as soon as the key is added.
//! - What each reconcile costs, cheapest first:
//!   1. the leader remembers, per SealedSecret, the generation it unsealed and the resourceVersion
//!      of the Secret it left ([`crate::protocols::bounded_memory`]): the events its own writes
//!      cause and key reloads cost a look into the watched metadata;
//!   2. otherwise (a restart, a failover, an edited Secret) one GET of the Secret, whose record
//!      of what it was unsealed from ([`provenance`]) proves, with no RSA work, that it already
//!      holds what the SealedSecret produces;
//!   3. otherwise one GET of the SealedSecret (the cache holds no ciphertext), the decryption
//!      (an RSA private-key operation per item, off the async workers) and, if anything differs,
//!      a write.

pub mod flavour;
pub mod provenance;
pub mod unseal;
pub mod watched;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use seal_api::bitnami::{BITNAMI_API_VERSION, BitnamiSealedSecret};
use seal_api::names::SEALED_SECRET_UID_LABEL;
use seal_api::produced::ProducedPolicy;
use tokio::sync::watch;
use tracing::{info, warn};

use self::flavour::Object;
use self::provenance::RecordKeys;
use self::unseal::{Outcome, Reason, already_unsealed, decrypt, write_bitnami, write_unsealed};
use self::watched::Watched;
use crate::keys::{CurrentKeys, KeySet};
use crate::metrics::Metrics;
use crate::protocols::bounded_memory::BoundedMemory;
use crate::protocols::contained::{Panicked, contain_and_report};
use crate::protocols::events::Events;
use crate::protocols::produced_watch::{self, Kept, ProducedSecrets};
use crate::protocols::redaction::api_refusal;

/// What the SealedSecret reconciler is told.
#[derive(Debug, Clone)]
pub struct Config {
    /// Namespaces whose SealedSecrets are unsealed; empty means all.
    pub namespaces: Vec<String>,
    /// How many SealedSecrets are reconciled at once.
    pub concurrency: u16,
    /// What produced Secrets may carry (`--deny-secret-types`).
    pub produced_policy: ProducedPolicy,
    /// Whether `bitnami.com/v1alpha1` SealedSecrets are reconciled too
    /// (`--bitnami-sealed-secrets`).
    pub bitnami: bool,
}

/// Why a reconcile must be retried.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReconcileError {
    /// The status could not be written.
    #[error("cannot write the status: {0}")]
    Status(#[source] kube::Error),
    /// The produced Secret could not be read.
    #[error("cannot read the Secret: {0}")]
    Secret(#[source] kube::Error),
    /// The SealedSecret could not be read whole (to decrypt it).
    #[error("cannot read the SealedSecret: {0}")]
    Object(#[source] kube::Error),
    /// The decryption task did not finish (it panicked or the runtime is stopping).
    #[error("the decryption task did not finish")]
    Decrypt,
    /// The reconcile panicked ([`crate::protocols::contained`]).
    #[error(transparent)]
    Panicked(#[from] Panicked),
}

/// What the leader last made of one SealedSecret: the generation it unsealed and the
/// resourceVersion of the Secret that holds it.
type Settled = (Option<i64>, String);

/// The record keys, with the key set they were derived from.
type DerivedRecords = Option<(Arc<KeySet>, Arc<RecordKeys>)>;

/// What one reconcile loop (one per watched namespace, or one for all) shares.
struct Context {
    client: Client,
    keys: CurrentKeys,
    metrics: Arc<Metrics>,
    policy: ProducedPolicy,
    events: Events,
    settled: Arc<BoundedMemory<Settled>>,
    produced: ProducedSecrets,
    /// The record keys of the key set they were derived from, rebuilt when the keys change.
    records: Arc<Mutex<DerivedRecords>>,
}

impl Context {
    /// The current keys and their record keys.
    fn keys(&self) -> (Arc<KeySet>, Arc<RecordKeys>) {
        let keys = self.keys.get();
        let mut cached = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((derived_from, records)) = cached.as_ref()
            && Arc::ptr_eq(derived_from, &keys)
        {
            return (keys, Arc::clone(records));
        }
        let records = Arc::new(RecordKeys::derive(
            keys.ring().ordered(None),
            keys.newest().map(|k| k.fingerprint),
        ));
        *cached = Some((Arc::clone(&keys), Arc::clone(&records)));
        (keys, records)
    }
}

/// Unseals the SealedSecrets `config` names until `stopped`: one loop per listed namespace, or
/// one for all, and as many for Bitnami's SealedSecrets when [`Config::bitnami`] is set and their
/// CRD is installed.
pub async fn run(
    client: Client,
    config: &Config,
    keys: CurrentKeys,
    metrics: Arc<Metrics>,
    events: Events,
    stopped: watch::Receiver<bool>,
) {
    let namespaces: Vec<Option<String>> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        config.namespaces.iter().cloned().map(Some).collect()
    };
    let bitnami = config.bitnami && bitnami_crd_installed(&client).await;
    let settled = Arc::new(BoundedMemory::default());
    let records = Arc::new(Mutex::new(None));
    let context = |produced| {
        Arc::new(Context {
            client: client.clone(),
            keys: keys.clone(),
            metrics: Arc::clone(&metrics),
            policy: config.produced_policy.clone(),
            events: events.clone(),
            settled: Arc::clone(&settled),
            produced,
            records: Arc::clone(&records),
        })
    };
    let mut loops = Vec::new();
    for namespace in namespaces {
        let (produced, produced_changes) = produced_watch::watch(
            &client,
            namespace.as_deref(),
            SEALED_SECRET_UID_LABEL,
            None,
            Kept::Version,
        );
        loops.push(
            reconcile_loop(
                api_in::<Watched>(&client, namespace.as_deref()),
                produced_changes,
                &keys,
                config.concurrency,
                stopped.clone(),
                |sealed, ctx| reconcile_contained(Object::Seal(sealed), ctx),
                context(produced),
            )
            .boxed(),
        );
        if bitnami {
            let (produced, produced_changes) = produced_watch::watch_owned(
                &client,
                namespace.as_deref(),
                BITNAMI_API_VERSION,
                "SealedSecret",
            );
            loops.push(
                reconcile_loop(
                    api_in::<BitnamiSealedSecret>(&client, namespace.as_deref()),
                    produced_changes,
                    &keys,
                    config.concurrency,
                    stopped.clone(),
                    |object, ctx| reconcile_contained(Object::Bitnami(object), ctx),
                    context(produced),
                )
                .boxed(),
            );
        }
    }
    futures::future::join_all(loops).await;
}

/// Whether Bitnami's SealedSecret CRD is served; says so in the log when it is not.
async fn bitnami_crd_installed(client: &Client) -> bool {
    let api: Api<BitnamiSealedSecret> = Api::all(client.clone());
    match api
        .list_metadata(&kube::api::ListParams::default().limit(1))
        .await
    {
        Ok(_) => {
            info!("reconciling bitnami.com/v1alpha1 SealedSecrets too (--bitnami-sealed-secrets)");
            true
        }
        Err(error) => {
            warn!(
                error = %api_refusal(&error),
                "--bitnami-sealed-secrets is set but bitnami.com/v1alpha1 SealedSecrets cannot be listed (is Bitnami's CRD installed?); they are not reconciled until the controller restarts with the CRD in place, everything else goes on"
            );
            false
        }
    }
}

/// All `K` in `namespace`, or in every namespace.
fn api_in<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// One kube-runtime controller over the objects of `api`, fed also by `produced_changes` (a
/// produced Secret has its object's name and namespace) and by every change of the keys.
fn reconcile_loop<K, F, Fut>(
    api: Api<K>,
    produced_changes: impl futures::Stream<Item = Result<PartialObjectMeta<Secret>, watcher::Error>>
    + Send
    + 'static,
    keys: &CurrentKeys,
    concurrency: u16,
    mut stopped: watch::Receiver<bool>,
    reconcile: F,
    context: Arc<Context>,
) -> impl std::future::Future<Output = ()> + Send
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    F: FnMut(Arc<K>, Arc<Context>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<Action, ReconcileError>> + Send + 'static,
{
    // Every change of the keys re-runs every SealedSecret.
    let mut key_changes = keys.follow();
    key_changes.mark_unchanged();
    let rerun = futures::stream::unfold(key_changes, |mut changes| async move {
        changes.changed().await.ok().map(|()| ((), changes))
    });
    // The controller's own cache of SealedSecrets, without managedFields: with server-side
    // apply they list every item and are about a third of each object.
    let (cached, writer) = reflector::store();
    let changes = reflector(
        writer,
        watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(|object| object.managed_fields_mut().clear()),
    );
    Controller::for_stream(changes.applied_objects(), cached)
        .with_config(ControllerConfig::default().concurrency(concurrency))
        // A produced Secret has its SealedSecret's name and namespace.
        .watches_stream(produced_changes, |secret: PartialObjectMeta<Secret>| {
            secret
                .namespace()
                .map(|ns| ObjectRef::new(&secret.name_any()).within(&ns))
        })
        .reconcile_all_on(rerun)
        .graceful_shutdown_on(async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        })
        .run(reconcile, |_, error, _| error_policy(error), context)
        .for_each(|result| async move {
            if let Err(error) = result {
                warn!(%error, "reconcile failed");
            }
        })
}

/// [`reconcile`], with a panic contained ([`crate::protocols::contained`]) and said in the
/// SealedSecret's status, so that the object's owner sees it failed and every other object goes on.
async fn reconcile_contained(object: Object, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let work = reconcile(object.clone(), Arc::clone(&ctx));
    let report = |panicked: Panicked| async move {
        let outcome = Outcome::failed(Reason::InternalError, panicked.to_string());
        object
            .write_status(ctx.client.clone(), &outcome)
            .await
            .map_err(|error| error.to_string())
    };
    contain_and_report(work, report).await
}

async fn reconcile(object: Object, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let meta = object.meta();
    let uid = meta.uid.clone().unwrap_or_default();
    if let Some((settled_generation, version)) = ctx.settled.get(&uid)
        && settled_generation == meta.generation
        && ctx
            .produced
            .is_at(
                meta.namespace.as_deref().unwrap_or_default(),
                meta.name.as_deref().unwrap_or_default(),
                &version,
            )
            .await
            .map_err(ReconcileError::Secret)?
    {
        ctx.metrics.reconciled(Reason::Unsealed, started.elapsed());
        return Ok(Action::await_change());
    }
    let Some((object, outcome)) = unseal_or_prove(&ctx, object).await? else {
        // Deleted since it was scheduled: garbage collection takes its Secret.
        ctx.settled.forget(&uid);
        return Ok(Action::await_change());
    };
    // The outcome is about `object` as it was read, which may be newer than the one scheduled.
    let meta = object.meta();
    let uid = meta.uid.clone().unwrap_or_default();
    let namespace = meta.namespace.clone().unwrap_or_default();
    let name = meta.name.clone().unwrap_or_default();
    if outcome.reason == Reason::Unsealed {
        if outcome.wrote {
            info!(%namespace, %name, flavour = ?object.flavour(), "unsealed");
        }
    } else {
        warn!(%namespace, %name, flavour = ?object.flavour(), reason = outcome.reason.as_str(), message = %outcome.note, "not unsealed");
    }
    let changed = object
        .write_status(ctx.client.clone(), &outcome)
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
            note: Some(outcome.note.clone()),
            action: "Unseal".into(),
            secondary: None,
        };
        if let Err(error) = ctx.events.publish(&event, &object.object_ref()).await {
            warn!(%error, "cannot publish an Event");
        }
    }
    match (outcome.reason, outcome.secret_version) {
        (Reason::Unsealed, Some(version)) => ctx.settled.remember(&uid, (meta.generation, version)),
        _ => ctx.settled.forget(&uid),
    }
    ctx.metrics.set_settled(ctx.settled.len());
    ctx.metrics.reconciled(outcome.reason, started.elapsed());
    Ok(match outcome.reason {
        Reason::UpdateFailed => Action::requeue(Duration::from_secs(30)),
        _ => Action::await_change(),
    })
}

/// Reads the produced Secret of `object` and either proves from its record that it is up to
/// date (a seal.dev object; a Bitnami object's Secret has no record), or reads the object whole,
/// decrypts it, writes what differs in the object's flavour, and restarts its rollout targets
/// after a write. Returns the outcome with the object it is about (as read), or `None` when the
/// object is gone.
async fn unseal_or_prove(
    ctx: &Context,
    object: Object,
) -> Result<Option<(Object, Outcome)>, ReconcileError> {
    let meta = object.meta();
    let namespace = meta.namespace.clone().unwrap_or_default();
    let name = meta.name.clone().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let existing = match secrets.get_opt(&name).await {
        Ok(existing) => existing,
        Err(error) => {
            let failed = Outcome::failed(Reason::UpdateFailed, api_refusal(&error));
            return Ok(Some((object, failed)));
        }
    };
    let (keys, records) = ctx.keys();
    if let Object::Seal(watched) = &object
        && let Some(proven) = already_unsealed(watched, existing.as_ref(), &records)
    {
        return Ok(Some((object, proven)));
    }
    let Some((object, sealed)) = object
        .whole(ctx.client.clone())
        .await
        .map_err(ReconcileError::Object)?
    else {
        return Ok(None);
    };
    let sealed = match sealed {
        Ok(sealed) => sealed,
        Err(refused) => return Ok(Some((object, refused))),
    };
    let decrypted = {
        let sealed = Arc::clone(&sealed);
        let policy = ctx.policy.clone();
        tokio::task::spawn_blocking(move || decrypt(&sealed, keys.ring(), &policy))
            .await
            .map_err(|_| ReconcileError::Decrypt)?
    };
    let desired = match decrypted {
        Ok(desired) => desired,
        Err(failed) => return Ok(Some((object, failed))),
    };
    let outcome = match &object {
        Object::Seal(_) => {
            write_unsealed(&secrets, &sealed, existing.as_ref(), desired, &records).await
        }
        Object::Bitnami(bitnami) => {
            write_bitnami(&secrets, bitnami, &sealed, existing.as_ref(), desired).await
        }
    };
    if outcome.wrote
        && let Some(version) = &outcome.secret_version
        && !sealed.spec.rollout_restart_targets.is_empty()
    {
        crate::protocols::rollout::restart(
            &ctx.client,
            &ctx.events,
            &object.object_ref(),
            &namespace,
            &sealed.spec.rollout_restart_targets,
            &name,
            version,
        )
        .await;
    }
    Ok(Some((object, outcome)))
}

fn error_policy(error: &ReconcileError) -> Action {
    match error {
        // The same input panics again: do not spin on it.
        ReconcileError::Panicked(_) => Action::requeue(Duration::from_secs(300)),
        _ => Action::requeue(Duration::from_secs(10)),
    }
}
