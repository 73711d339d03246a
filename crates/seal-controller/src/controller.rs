//! The control loop: watch SealedSecrets, unseal each into its Secret ([`crate::unseal`]), record the
//! outcome in its status, and keep the sealing keys current ([`crate::keys`]).
//!
//! - SealedSecrets are watched in every namespace or in a configured list; Secrets only through the
//!   label the controller puts on the Secrets it produced, and only their metadata, so a deleted or
//!   edited Secret is put back, memory does not grow with the cluster's other Secrets, and no
//!   plaintext is held between reconciles. That metadata is kept in a store, which tells a
//!   reconcile caused by the controller's own writes that nothing is left to do without a request.
//! - Keys are held parsed in memory (a freshly parsed RSA key's first decryption costs ~40 ms) and
//!   reloaded whenever a key Secret changes, which also re-runs every SealedSecret, so one that
//!   failed for want of a key unseals as soon as the key is added.
//! - A new key is made on first start and whenever the renewal policy says one is due, or when a
//!   key Secret carries a renewal request newer than the newest key (`seal keys renew`).
//! - Every unsealer replica serves the certificate API and metrics ([`crate::http`]) and follows the keys;
//!   with leader election (the default) only the holder of the `seal-controller` Lease in the key
//!   namespace reconciles and makes keys. A replica that loses the Lease stops and exits, so that a
//!   fresh start rejoins the election with no work in flight; SIGTERM releases the Lease so that
//!   another replica takes over at once.
//! - A process has a [`Role`]: the unsealer holds the keys, serves the certificate API and
//!   reconciles SealedSecrets; the syncer reconciles ExternalSecrets and SecretStores
//!   ([`crate::external`], [`crate::stores`]) under its own Lease (`<name>-syncer`), never loads a
//!   key and never reads the key namespace; `all` does both in one process. Run apart, the process
//!   that calls addresses tenants choose has none of the rights that guard the keys.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use kube_lease_manager::LeaseManagerBuilder;
use seal_api::SealedSecret;
use seal_api::names::{
    BACKUP_CONFIGMAP, BITNAMI_KEY_LABEL, SEALED_SECRET_UID_LABEL, SEALING_KEY_LABEL,
};
use seal_api::produced::ProducedPolicy;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::backup::write_backup;
use crate::http::{RateLimiter, RsaBudget, api_router, metrics_router};
use crate::keys::{KeySet, KeyStore, RenewalPolicy};
use crate::metrics::Metrics;
use crate::unseal::{Reason, decrypt, write_status, write_unsealed};

/// What one controller process does. The unsealer holds the sealing keys; the syncer talks to
/// the providers that stores name. Run apart (the chart's default), each has only its own
/// ServiceAccount's rights, so a tenant's store that reaches a hostile address never reaches a
/// process that can read the keys, and a cluster that only unseals runs no syncer at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Both jobs in one process, under one Lease (a single-process install, development).
    All,
    /// SealedSecrets, the sealing keys and the certificate API.
    Unsealer,
    /// ExternalSecrets and SecretStores; never reads the key namespace.
    Syncer,
}

impl Role {
    /// Whether this process holds the keys and unseals.
    pub fn unseals(self) -> bool {
        matches!(self, Role::All | Role::Unsealer)
    }

    /// Whether this process syncs ExternalSecrets.
    pub fn syncs(self) -> bool {
        matches!(self, Role::All | Role::Syncer)
    }

    /// The Lease the replicas of this role elect a leader on, from the configured base name: a
    /// syncer elects apart from the unsealers, so that each role has one leader.
    pub fn lease_name(self, base: &str) -> String {
        match self {
            Role::All | Role::Unsealer => base.to_owned(),
            Role::Syncer => format!("{base}-syncer"),
        }
    }
}

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// What this process does.
    pub role: Role,
    /// The controller's own namespace, where the key Secrets and the leader Lease live.
    pub key_namespace: String,
    /// Namespaces whose SealedSecrets are unsealed; empty means all.
    pub watch_namespaces: Vec<String>,
    /// When to make new keys.
    pub renewal: RenewalPolicy,
    /// Whether Bitnami's key Secrets (in `key_namespace`) decrypt too.
    pub import_bitnami_keys: bool,
    /// How many SealedSecrets are reconciled at once.
    pub concurrency: u16,
    /// Address of the certificate API.
    pub listen_addr: SocketAddr,
    /// Address of the metrics endpoint.
    pub metrics_addr: SocketAddr,
    /// Sustained `verify`/`rotate` requests per second per client.
    pub rate_limit: f64,
    /// `verify`/`rotate` requests a client may make at once.
    pub rate_limit_burst: u32,
    /// Leader election; `None` runs as the only replica.
    pub leader_election: Option<LeaderElection>,
    /// The offline recovery certificate every key is backed up to (`--backup-cert`).
    pub backup_certificate: Option<seal_core::Certificate>,
    /// What stores may do beyond the defaults ([`crate::store_trust`]).
    pub store_trust: crate::store_trust::StoreTrust,
    /// What produced Secrets may carry (`--deny-secret-types`).
    pub produced_policy: ProducedPolicy,
}

/// Leader election on a coordination.k8s.io Lease in the key namespace.
#[derive(Debug, Clone)]
pub struct LeaderElection {
    /// The Lease's name.
    pub lease_name: String,
    /// This replica's name in the Lease (the pod name in a cluster).
    pub identity: String,
    /// How long a Lease holds without renewal; a dead leader is replaced after at most this long.
    pub lease_duration: Duration,
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
    /// The decryption task did not finish (it panicked or the runtime is stopping).
    #[error("the decryption task did not finish")]
    Decrypt,
    /// The reconcile panicked ([`crate::contained`]).
    #[error(transparent)]
    Panicked(#[from] crate::contained::Panicked),
}

/// What every task of one replica shares: the current keys, the metrics, the rate limiter.
pub struct Shared {
    keys: watch::Sender<Arc<KeySet>>,
    /// The replica's metrics.
    pub metrics: Metrics,
    /// The limit on `verify` and `rotate` per client.
    pub rate_limiter: RateLimiter,
    /// What `verify` and `rotate` may spend over every client.
    pub rsa_budget: RsaBudget,
    /// What produced Secrets may carry.
    pub produced_policy: ProducedPolicy,
}

impl Shared {
    /// The keys as last loaded.
    pub fn keys(&self) -> Arc<KeySet> {
        Arc::clone(&self.keys.borrow())
    }
}

/// What one reconcile loop (one per watched namespace, or one for all) shares.
struct Context {
    client: Client,
    shared: Arc<Shared>,
    recorder: Recorder,
    settled: Arc<Settled>,
    /// The metadata of the Secrets this controller produced, as last seen by the watch.
    produced: Store<PartialObjectMeta<Secret>>,
}

/// What the leader last made of each unsealed SealedSecret (by uid): its generation and the
/// resourceVersion of the Secret that holds it. The events the controller's own writes cause (the
/// Secret it wrote, the status it set) and key reloads then cost a look into the watched metadata
/// (or, when the watch has not caught up yet, one GET) instead of an RSA operation per item and a
/// second write. Bounded: emptied when it outgrows [`SETTLED_LIMIT`]
/// (entries of deleted SealedSecrets are otherwise never looked at again).
#[derive(Default)]
struct Settled(std::sync::Mutex<std::collections::HashMap<String, (Option<i64>, String)>>);

/// Entries [`Settled`] holds before it starts over.
const SETTLED_LIMIT: usize = 200_000;

impl Settled {
    fn get(&self, uid: &str) -> Option<(Option<i64>, String)> {
        self.lock().get(uid).cloned()
    }

    fn record(&self, uid: String, generation: Option<i64>, secret_version: Option<String>) {
        let mut map = self.lock();
        match secret_version {
            Some(version) => {
                if map.len() >= SETTLED_LIMIT {
                    map.clear();
                }
                map.insert(uid, (generation, version));
            }
            None => {
                map.remove(&uid);
            }
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (Option<i64>, String)>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Runs until the process is told to stop (SIGTERM or Ctrl-C), or until it loses the leader Lease
/// (an error, so that the process exits and is restarted into the election).
pub async fn run(client: Client, settings: Settings) -> anyhow::Result<()> {
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(stop_on_signal(stop.clone()));

    info!(role = ?settings.role, "starting");
    let store = KeyStore::new(
        client.clone(),
        &settings.key_namespace,
        settings.import_bitnami_keys,
    );
    // A syncer never reads the key namespace: it starts, and stays, with no keys.
    let keys = if settings.role.unseals() {
        let keys = store.load().await?;
        report_keys(&keys);
        keys
    } else {
        KeySet::empty()
    };
    let shared = Arc::new(Shared {
        keys: watch::Sender::new(Arc::new(keys)),
        metrics: Metrics::new(),
        rate_limiter: RateLimiter::new(settings.rate_limit, settings.rate_limit_burst),
        rsa_budget: RsaBudget::default(),
        produced_policy: settings.produced_policy.clone(),
    });
    serve_http(&settings, &shared, &stopped).await?;
    if settings.role.unseals() {
        tokio::spawn(watch_keys(
            client.clone(),
            store.clone(),
            settings.clone(),
            Arc::clone(&shared),
        ));
    }

    let Some(election) = settings.leader_election.clone() else {
        shared.metrics.set_leader(true);
        return lead(client, &settings, store, shared, stopped).await;
    };
    let duration = election.lease_duration.as_secs().max(2);
    let lease_name = settings.role.lease_name(&election.lease_name);
    let manager = LeaseManagerBuilder::new(client.clone(), &lease_name)
        .with_namespace(&settings.key_namespace)
        .with_identity(&election.identity)
        .with_duration(duration)
        .with_grace((duration / 3).max(1))
        .build()
        .await
        .with_context(|| {
            format!(
                "cannot use Lease {}/{lease_name} for leader election",
                settings.key_namespace
            )
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
        info!("stopped");
        return Ok(());
    }
    info!(identity = %election.identity, "leading");
    shared.metrics.set_leader(true);
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
    let result = lead(client, &settings, store, Arc::clone(&shared), stopped).await;
    shared.metrics.set_leader(false);
    // Dropping the last receiver makes the election task release the Lease.
    watch_for_loss.abort();
    let _ = watch_for_loss.await;
    drop(leading);
    let _ = election_task.await;
    result?;
    if lost.load(Ordering::SeqCst) {
        anyhow::bail!("lost the leader Lease; exiting to rejoin the election");
    }
    Ok(())
}

/// Sets `stop` on SIGTERM or Ctrl-C.
async fn stop_on_signal(stop: watch::Sender<bool>) {
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

/// Serves this role's HTTP: the certificate API (an unsealer) or the probes (a syncer), and the
/// metrics.
async fn serve_http(
    settings: &Settings,
    shared: &Arc<Shared>,
    stopped: &watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (what, router) = if settings.role.unseals() {
        ("certificate API", api_router(Arc::clone(shared)))
    } else {
        ("probes", probes_router())
    };
    serve(what, settings.listen_addr, router, stopped.clone()).await?;
    serve(
        "metrics",
        settings.metrics_addr,
        metrics_router(Arc::clone(shared)),
        stopped.clone(),
    )
    .await
}

/// Binds `addr` now (so a port in use fails the start) and serves `router` until `stopped`.
async fn serve(
    what: &'static str,
    addr: SocketAddr,
    router: axum::Router,
    stopped: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for the {what}"))?;
    info!(address = %listener.local_addr()?, "serving the {what}");
    tokio::spawn(crate::http::serve(listener, router, stopped));
    Ok(())
}

/// The leader's work: make a key if one is due, keep renewing, and reconcile every SealedSecret
/// until `stopped`.
async fn lead(
    client: Client,
    settings: &Settings,
    store: KeyStore,
    shared: Arc<Shared>,
    stopped: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut background = Vec::new();
    if settings.role.unseals() {
        let (keys, created) = store.ensure(&settings.renewal, SystemTime::now()).await?;
        if let Some(created) = created {
            info!(secret = %created.secret_name, fingerprint = %created.fingerprint, "created a sealing key");
            report_keys(&keys);
        }
        shared.keys.send_replace(Arc::new(keys));
        background.push(tokio::spawn(renew_keys(
            store,
            settings.renewal,
            shared.keys.subscribe(),
        )));
        if let Some(recovery) = settings.backup_certificate.clone() {
            background.push(tokio::spawn(back_up_keys(
                client.clone(),
                settings.key_namespace.clone(),
                recovery,
                shared.keys.subscribe(),
            )));
        }
    }
    let reporter = Reporter {
        controller: "seal-controller".into(),
        instance: std::env::var("POD_NAME")
            .ok()
            .filter(|name| !name.is_empty()),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let settled = Arc::new(Settled::default());

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
    let unsealing = settings
        .role
        .unseals()
        .then_some(namespaces)
        .into_iter()
        .flatten();
    let controllers = unsealing.map(|namespace| {
        unseal_loop(
            namespace.as_deref(),
            &client,
            &shared,
            &recorder,
            &settled,
            settings.concurrency,
            stopped.clone(),
        )
    });
    let external = async {
        if settings.role.syncs() {
            crate::external::run(
                client.clone(),
                settings,
                recorder.clone(),
                Arc::clone(&shared),
                stopped.clone(),
            )
            .await;
        }
    };
    futures::future::join(futures::future::join_all(controllers), external).await;
    for task in background {
        task.abort();
    }
    info!("stopped reconciling");
    Ok(())
}

/// Unseals the SealedSecrets of `namespace` (every namespace when `None`) until `stopped`.
fn unseal_loop(
    namespace: Option<&str>,
    client: &Client,
    shared: &Arc<Shared>,
    recorder: &Recorder,
    settled: &Arc<Settled>,
    concurrency: u16,
    stopped: watch::Receiver<bool>,
) -> impl Future<Output = ()> + use<> {
    // Produced Secrets are watched as metadata only: no plaintext crosses the watch.
    let (sealed, secrets): (Api<SealedSecret>, Api<PartialObjectMeta<Secret>>) = match &namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    // Every change of the keys re-runs every SealedSecret.
    let mut key_changes = shared.keys.subscribe();
    key_changes.mark_unchanged();
    let rerun = futures::stream::unfold(key_changes, |mut changes| async move {
        changes.changed().await.ok().map(|()| ((), changes))
    });
    let mut stopped = stopped;
    let (produced, writer) = reflector::store();
    let produced_changes = reflector(
        writer,
        watcher(
            secrets,
            watcher::Config::default().labels(SEALED_SECRET_UID_LABEL),
        )
        .default_backoff()
        // The store needs names and resourceVersions; managedFields are most of the rest.
        .modify(|secret| secret.managed_fields_mut().clear()),
    )
    .touched_objects();
    let context = Arc::new(Context {
        client: client.clone(),
        shared: Arc::clone(shared),
        recorder: recorder.clone(),
        settled: Arc::clone(settled),
        produced,
    });
    // The controller's own cache of SealedSecrets, also without managedFields: with
    // server-side apply they list every item and are about a third of each object.
    let (cached, writer) = reflector::store();
    let sealed_changes = reflector(
        writer,
        watcher(sealed, watcher::Config::default())
            .default_backoff()
            .modify(|sealed| sealed.managed_fields_mut().clear()),
    );
    Controller::for_stream(sealed_changes.applied_objects(), cached)
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
        .run(reconcile_contained, error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                warn!(%error, "reconcile failed");
            }
        })
}

/// [`reconcile`], with a panic contained ([`crate::contained`]) and said in the SealedSecret's
/// status, so that the object's owner sees it failed and every other object goes on.
async fn reconcile_contained(
    sealed: Arc<SealedSecret>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let result = crate::contained::contain(reconcile(Arc::clone(&sealed), Arc::clone(&ctx))).await;
    if let Err(ReconcileError::Panicked(panicked)) = &result {
        let outcome = crate::unseal::Outcome::failed(Reason::InternalError, panicked.to_string());
        if let Err(error) = write_status(ctx.client.clone(), &sealed, &outcome).await {
            warn!(%error, "cannot say in the status that the reconcile panicked");
        }
    }
    result
}

async fn reconcile(sealed: Arc<SealedSecret>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let uid = sealed.uid().unwrap_or_default();
    if let Some((generation, version)) = ctx.settled.get(&uid)
        && generation == sealed.metadata.generation
        && produced_is_at(&ctx, &sealed, &version).await?
    {
        ctx.shared
            .metrics
            .reconciled(Reason::Unsealed, started.elapsed());
        return Ok(Action::await_change());
    }
    let keys = ctx.shared.keys();
    let decrypted = {
        let sealed = Arc::clone(&sealed);
        let shared = Arc::clone(&ctx.shared);
        tokio::task::spawn_blocking(move || decrypt(&sealed, keys.ring(), &shared.produced_policy))
            .await
            .map_err(|_| ReconcileError::Decrypt)?
    };
    let outcome = match decrypted {
        Ok(desired) => write_unsealed(ctx.client.clone(), &sealed, desired).await,
        Err(failed) => failed,
    };
    let namespace = sealed.namespace().unwrap_or_default();
    let name = sealed.name_any();
    if outcome.reason == Reason::Unsealed {
        if outcome.wrote {
            info!(%namespace, %name, "unsealed");
            if let Some(version) = &outcome.secret_version
                && !sealed.spec.rollout_restart_targets.is_empty()
            {
                crate::rollout::restart(
                    &ctx.client,
                    &ctx.recorder,
                    &sealed.object_ref(&()),
                    &namespace,
                    &sealed.spec.rollout_restart_targets,
                    &name,
                    version,
                )
                .await;
            }
        }
    } else {
        warn!(%namespace, %name, reason = outcome.reason.as_str(), message = %outcome.note, "not unsealed");
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
            note: Some(outcome.note.clone()),
            action: "Unseal".into(),
            secondary: None,
        };
        if let Err(error) = ctx.recorder.publish(&event, &sealed.object_ref(&())).await {
            warn!(%error, "cannot publish an Event");
        }
    }
    let settled = (outcome.reason == Reason::Unsealed)
        .then(|| outcome.secret_version.clone())
        .flatten();
    ctx.settled.record(uid, sealed.metadata.generation, settled);
    ctx.shared
        .metrics
        .reconciled(outcome.reason, started.elapsed());
    Ok(match outcome.reason {
        Reason::UpdateFailed => Action::requeue(Duration::from_secs(30)),
        _ => Action::await_change(),
    })
}

/// Whether the Secret `sealed` produced is still at `version`, the one the controller wrote: seen
/// in the watched metadata, or, when the watch has not caught up with that write yet (or the Secret
/// changed), asked of the API server.
async fn produced_is_at(
    ctx: &Context,
    sealed: &SealedSecret,
    version: &str,
) -> Result<bool, ReconcileError> {
    let namespace = sealed.namespace().unwrap_or_default();
    let name = sealed.name_any();
    let watched = ctx.produced.get(&ObjectRef::new(&name).within(&namespace));
    if watched.is_some_and(|secret| secret.metadata.resource_version.as_deref() == Some(version)) {
        return Ok(true);
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let current = secrets
        .get_metadata_opt(&name)
        .await
        .map_err(ReconcileError::Secret)?;
    Ok(current
        .and_then(|secret| secret.metadata.resource_version)
        .as_deref()
        == Some(version))
}

fn error_policy(_: Arc<SealedSecret>, error: &ReconcileError, _: Arc<Context>) -> Action {
    match error {
        // The same input panics again: do not spin on it.
        ReconcileError::Panicked(_) => Action::requeue(Duration::from_secs(300)),
        _ => Action::requeue(Duration::from_secs(10)),
    }
}

/// Reloads the keys on every change to a key Secret and publishes them when they differ (other
/// keys, or a new renewal request), which re-runs every SealedSecret on the leader.
async fn watch_keys(client: Client, store: KeyStore, settings: Settings, shared: Arc<Shared>) {
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
                let current = shared.keys();
                let different = keys.renewal_requested() != current.renewal_requested()
                    || keys
                        .keys()
                        .iter()
                        .map(|k| k.fingerprint)
                        .ne(current.keys().iter().map(|k| k.fingerprint));
                if different {
                    report_keys(&keys);
                    shared.keys.send_replace(Arc::new(keys));
                }
            }
            Err(error) => warn!(%error, "reloading keys"),
        }
    }
}

/// Makes a new key whenever one is due: checked when the keys change, hourly, and at the due time.
async fn renew_keys(
    store: KeyStore,
    policy: RenewalPolicy,
    mut changes: watch::Receiver<Arc<KeySet>>,
) {
    loop {
        let wait = {
            let keys = changes.borrow_and_update();
            let now = SystemTime::now();
            let until = |at: SystemTime| at.duration_since(now).unwrap_or_default();
            let by_age = match (keys.newest(), policy.period) {
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

/// Keeps the key backup current: written at once and after every change of the keys.
async fn back_up_keys(
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

/// A syncer's probes: it has no certificate to serve, and is ready once it serves.
fn probes_router() -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ok\n" }))
}
