//! The ExternalSecret reconciler: read values through a store's provider ([`crate::stores`]) and
//! keep a Secret in sync with them, with ESO's semantics for the AWS and Vault providers.
//!
//! | step | home |
//! |---|---|
//! | is a read due, when to look next | [`refresh`] |
//! | the store's provider, reading `data` and `dataFrom` | [`fetch`] |
//! | `target.template`, the digest of what is applied | [`render`] |
//! | `creationPolicy`, `deletionPolicy`, the write | [`write`] |
//! | the status | [`status`] |
//!
//! - **Failures.** A provider outage ([`seal_providers::Error::is_transient`]) leaves the last good
//!   Secret untouched, says `SecretSyncedError` and retries with exponential backoff (5 s to
//!   5 min), so the object recovers by itself. A key that is really gone follows
//!   `deletionPolicy`: `Retain` keeps the Secret and reports the error, `Delete` deletes the
//!   Secret when nothing remains (and writes the rest otherwise), `Merge` removes the missing items.
//! - **Hygiene.** Values exist only in zeroizing buffers between the read and the write; logs,
//!   Events, status and metric labels carry names, reasons and provider error texts (which never
//!   hold values), never a value.

pub mod fetch;
pub mod refresh;
pub mod render;
pub mod status;
pub mod write;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use seal_api::ExternalSecret;
use seal_api::external_secret::{CreationPolicy, DeletionPolicy, reason};
use seal_api::names::{
    EXTERNAL_SECRET_ANNOTATION, EXTERNAL_SECRET_UID_LABEL, FORCE_SYNC_ANNOTATION,
};
use seal_api::produced::ProducedPolicy;
use tokio::sync::watch;
use tracing::warn;

use crate::metrics::Metrics;
use crate::protocols::bounded_memory::BoundedMemory;
use crate::protocols::contained::{Panicked, contain_and_report};
use crate::protocols::events::Events;
use crate::protocols::produced_watch::{self, ProducedSecrets};
use crate::protocols::redaction::api_refusal;
use crate::stores::providers::Providers;
use crate::stores::trust::{StoreTrust, check_namespace};

/// What the ExternalSecret reconciler is told.
#[derive(Debug, Clone)]
pub struct Config {
    /// Namespaces whose ExternalSecrets and SecretStores are reconciled; empty means all.
    pub namespaces: Vec<String>,
    /// How many ExternalSecrets are reconciled at once.
    pub concurrency: u16,
    /// What produced Secrets may carry (`--deny-secret-types`).
    pub produced_policy: ProducedPolicy,
    /// What stores may do beyond the defaults.
    pub store_trust: StoreTrust,
}

/// What the reconciler shares.
struct Context {
    client: Client,
    events: Events,
    providers: Arc<Providers>,
    metrics: Arc<Metrics>,
    policy: ProducedPolicy,
    /// Metadata of the Secrets ExternalSecrets produced, as last seen by the watch.
    produced: ProducedSecrets,
    memory: BoundedMemory<Memory>,
    /// The key of [`render::content_digest`], made at start.
    digest_key: aws_lc_rs::hmac::Key,
}

/// What the controller remembers of one ExternalSecret (by uid) between reconciles.
#[derive(Clone, Default)]
struct Memory {
    /// The force-sync value last acted on.
    force_sync: Option<String>,
    /// The produced Secret's resourceVersion after the last sync.
    secret_version: Option<String>,
    /// The digest of what the last sync left in the Secret ([`render::content_digest`]).
    written: Option<render::ContentDigest>,
    /// Failed syncs in a row, for the backoff.
    failures: u32,
    /// When the values were last read, and the generation last synced: what the status says
    /// too, but the status in the watch cache may lag behind this controller's own write, and a
    /// reconcile that saw the older status would read again (under `OnChange` or `CreatedOnce`
    /// a read the user did not ask for).
    refreshed_at: Option<Timestamp>,
    synced_generation: Option<i64>,
}

/// Why a reconcile must be retried (status write failures only: every other failure is recorded
/// in the status and retried on the object's own schedule).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    /// The status could not be written.
    #[error("cannot write the ExternalSecret status: {0}")]
    Write(#[source] kube::Error),
    /// The reconcile panicked ([`crate::protocols::contained`]).
    #[error(transparent)]
    Panicked(#[from] Panicked),
}

/// Runs the ExternalSecret reconciler and the store reconcilers ([`crate::stores::run`]) over
/// the namespaces of `config` (all when none) until `stopped`. They share one provider cache,
/// so each store logs in once.
pub async fn run(
    client: Client,
    config: &Config,
    metrics: Arc<Metrics>,
    events: Events,
    stopped: watch::Receiver<bool>,
) {
    let namespaces = &config.namespaces;
    let mut trust = config.store_trust.clone();
    trust
        .api_audiences
        .extend(crate::stores::providers::api_audiences(&client).await);
    let providers = Arc::new(Providers::new(
        client.clone(),
        metrics.provider_calls(),
        trust,
    ));
    let stores = crate::stores::run(
        client.clone(),
        namespaces,
        Arc::clone(&providers),
        stopped.clone(),
    );
    // Nothing in the key namespace is watched: a listed one is dropped, and a watch of every
    // namespace leaves it out on the API server's side.
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces
            .iter()
            .filter(|ns| match check_namespace(ns, &config.store_trust) {
                Ok(()) => true,
                Err(error) => {
                    warn!(%error, "not syncing ExternalSecrets there");
                    false
                }
            })
            .cloned()
            .map(Some)
            .collect()
    };
    let outside_keys = (!config.store_trust.key_namespace.is_empty())
        .then(|| format!("metadata.namespace!={}", config.store_trust.key_namespace));
    let watch_config = |config: watcher::Config| match &outside_keys {
        Some(selector) => config.fields(selector),
        None => config,
    };
    let digest_key = render::digest_key();
    let loops = scopes.into_iter().map(|namespace| {
        let externals: Api<ExternalSecret> = match &namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let (produced, produced_changes) = produced_watch::watch(
            &client,
            namespace.as_deref(),
            EXTERNAL_SECRET_UID_LABEL,
            outside_keys.as_deref(),
            // Ownership is decided from the watched metadata.
            produced_watch::Kept::Metadata,
        );
        let context = Arc::new(Context {
            client: client.clone(),
            events: events.clone(),
            providers: Arc::clone(&providers),
            metrics: Arc::clone(&metrics),
            policy: config.produced_policy.clone(),
            produced,
            memory: BoundedMemory::default(),
            digest_key: digest_key.clone(),
        });
        let mut stopped = stopped.clone();
        Controller::new(externals, watch_config(watcher::Config::default()))
            .with_config(
                kube::runtime::controller::Config::default().concurrency(config.concurrency),
            )
            .watches_stream(produced_changes, |secret: PartialObjectMeta<Secret>| {
                let namespace = secret.namespace()?;
                let owner = secret.annotations().get(EXTERNAL_SECRET_ANNOTATION)?;
                Some(ObjectRef::new(owner).within(&namespace))
            })
            .graceful_shutdown_on(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            })
            .run(
                reconcile_contained,
                |_, error, _| retry_after(error),
                context,
            )
            .for_each(|result| async move {
                if let Err(error) = result {
                    warn!(%error, "ExternalSecret reconcile failed");
                }
            })
    });
    futures::future::join(futures::future::join_all(loops), stores).await;
}

/// When to try again after a failed reconcile: soon after a status write failed, in a few
/// minutes after a panic (the same input panics again; it must not spin).
fn retry_after(error: &StatusError) -> Action {
    match error {
        StatusError::Panicked(_) => Action::requeue(Duration::from_secs(300)),
        _ => Action::requeue(Duration::from_secs(10)),
    }
}

/// The state a sync reached: the condition's reason and message, and what it did.
struct Outcome {
    reason: &'static str,
    message: String,
    /// The Secret's values were created (`Some(true)`), updated (`Some(false)`) or not written
    /// (`None`; taking over from ESO a Secret that already holds them writes metadata only).
    wrote: Option<bool>,
    /// The Secret was deleted (deletion policy).
    deleted: bool,
    /// The values were read (so `refreshTime` moves).
    refreshed: bool,
    /// The fixed-set label for the error metric.
    metric: &'static str,
}

impl Outcome {
    fn failed(metric: &'static str, message: String) -> Self {
        Self {
            reason: reason::SECRET_SYNCED_ERROR,
            message,
            wrote: None,
            deleted: false,
            refreshed: false,
            metric,
        }
    }
}

/// [`reconcile`], with a panic contained ([`crate::protocols::contained`]) and said in the ExternalSecret's
/// status, so that the object's owner sees it failed and everything else goes on.
async fn reconcile_contained(
    es: Arc<ExternalSecret>,
    ctx: Arc<Context>,
) -> Result<Action, StatusError> {
    let work = reconcile(Arc::clone(&es), Arc::clone(&ctx));
    let report = |panicked: Panicked| async move {
        let outcome = Outcome::failed("panicked", panicked.to_string());
        status::write_status(&ctx, &es, &outcome)
            .await
            .map_err(|error| error.to_string())
    };
    Box::pin(contain_and_report(work, report)).await
}

async fn reconcile(es: Arc<ExternalSecret>, ctx: Arc<Context>) -> Result<Action, StatusError> {
    let started = Instant::now();
    let uid = es.uid().unwrap_or_default();
    let namespace = es.namespace().unwrap_or_default();
    let name = es.name_any();
    let mut memory = ctx.memory.get(&uid).unwrap_or_default();
    let interval = es.spec.refresh_interval().unwrap_or_default();
    let target = es.spec.target();
    let secret_name = target.secret_name(&name).to_owned();
    let force_sync = es.annotations().get(FORCE_SYNC_ANNOTATION).cloned();
    let last_refresh = es
        .status
        .as_ref()
        .and_then(|s| s.refresh_time.as_ref())
        .map(|t| t.0)
        .max(memory.refreshed_at);
    let since_refresh = last_refresh
        .map(|t| Duration::try_from(Timestamp::now().duration_since(t)).unwrap_or_default());

    // From the watch when it has caught up with this controller's last write, else from the API
    // server (a Secret for `Merge` is not labelled yet).
    let existing = match ctx
        .produced
        .metadata(&namespace, &secret_name, memory.secret_version.as_deref())
        .await
    {
        Ok(existing) => existing,
        Err(error) => {
            let outcome = Outcome::failed("kube", api_refusal(&error));
            return finish(&ctx, &es, &uid, memory, outcome, interval, started).await;
        }
    };
    let writes_secret = target.creation_policy() != CreationPolicy::None;
    let known = refresh::Known {
        policy: es.spec.refresh_policy(),
        interval,
        since_refresh,
        spec_changed: es
            .status
            .as_ref()
            .and_then(|s| s.observed_generation)
            .max(memory.synced_generation)
            != es.metadata.generation,
        forced: force_sync.is_some() && force_sync != memory.force_sync,
        writes_secret,
        secret_exists: existing.is_some(),
        secret_intact: !writes_secret
            || existing.as_ref().is_some_and(|m| {
                m.resource_version().is_some() && m.resource_version() == memory.secret_version
            }),
        failing: memory.failures > 0,
    };
    if refresh::due(&known).is_none() {
        return Ok(next_refresh(&es, &uid, interval, since_refresh));
    }
    memory.force_sync = force_sync;
    let outcome = match es.validate() {
        Err(error) => Outcome::failed("invalid_spec", format!("invalid spec: {error}")),
        Ok(()) => sync(&ctx, &es, &secret_name, existing.as_ref(), &mut memory).await,
    };
    finish(&ctx, &es, &uid, memory, outcome, interval, started).await
}

/// Reads the values and writes the Secret as the policies say.
async fn sync(
    ctx: &Context,
    es: &ExternalSecret,
    secret_name: &str,
    existing: Option<&PartialObjectMeta<Secret>>,
    memory: &mut Memory,
) -> Outcome {
    let namespace = es.namespace().unwrap_or_default();
    let target = es.spec.target();
    let provider = match fetch::provider_for(ctx, es).await {
        Ok(provider) => provider,
        Err(outcome) => return outcome,
    };
    ctx.metrics.external_sync();
    let fetched = match fetch::fetch(&provider, es).await {
        Ok(fetched) => fetched,
        Err(outcome) => return outcome,
    };
    let mut values = fetched.values;
    if !fetched.missing.is_empty() {
        let missing = fetched.missing.join(", ");
        match target.deletion_policy() {
            DeletionPolicy::Retain => {
                return Outcome::failed(
                    "not_found",
                    format!(
                        "not found at the provider: {missing}; the Secret is kept (deletionPolicy Retain)"
                    ),
                );
            }
            DeletionPolicy::Delete if values.is_empty() => {
                return write::delete_secret(ctx, es, secret_name, existing, memory).await;
            }
            DeletionPolicy::Delete | DeletionPolicy::Merge => {}
        }
    }
    let produced = match render::render(
        es.spec.target.as_ref().and_then(|t| t.template.as_ref()),
        &mut values,
    ) {
        Ok(produced) => match ctx
            .policy
            .check(Some(&produced.labels), produced.type_.as_deref())
        {
            Ok(()) => Ok(produced),
            Err(error) => return Outcome::failed("denied_by_policy", error.to_string()),
        },
        Err(message) => Err(message),
    };
    let produced = match produced {
        Ok(produced) => produced,
        Err(message) => return Outcome::failed("invalid_template", message),
    };
    let mut outcome = write::write(ctx, es, secret_name, existing, produced, memory).await;
    if !fetched.missing.is_empty() && outcome.reason == reason::SECRET_SYNCED {
        outcome.message = format!(
            "{}; removed, as no longer at the provider: {}",
            outcome.message,
            fetched.missing.join(", ")
        );
    }
    outcome.refreshed = outcome.reason == reason::SECRET_SYNCED;
    if let Some(created) = outcome.wrote
        && !es.spec.rollout_restart_targets.is_empty()
        && !created
        && let Some(version) = &memory.secret_version
    {
        crate::protocols::rollout::restart(
            &ctx.client,
            &ctx.events,
            &es.object_ref(&()),
            &namespace,
            &es.spec.rollout_restart_targets,
            secret_name,
            version,
        )
        .await;
    }
    outcome
}

/// Records the outcome: status, Events, metrics, memory; and says when to come back.
async fn finish(
    ctx: &Context,
    es: &ExternalSecret,
    uid: &str,
    mut memory: Memory,
    outcome: Outcome,
    interval: Duration,
    started: Instant,
) -> Result<Action, StatusError> {
    let namespace = es.namespace().unwrap_or_default();
    let name = es.name_any();
    let ok = outcome.reason == reason::SECRET_SYNCED;
    if ok || outcome.reason == reason::SECRET_DELETED {
        memory.failures = 0;
    } else {
        memory.failures = memory.failures.saturating_add(1);
        ctx.metrics.external_sync_error(outcome.metric);
        warn!(%namespace, %name, reason = outcome.reason, message = %outcome.message, "ExternalSecret not synced");
    }
    let changed = status::write_status(ctx, es, &outcome).await?;
    memory.synced_generation = es.metadata.generation;
    if outcome.refreshed {
        memory.refreshed_at = Some(Timestamp::now());
    }
    let event = match (outcome.wrote, outcome.deleted) {
        (Some(true), _) => Some((EventType::Normal, "Created", outcome.message.clone())),
        (Some(false), _) => Some((EventType::Normal, "Updated", outcome.message.clone())),
        (None, true) => Some((EventType::Normal, "Deleted", outcome.message.clone())),
        (None, false) if changed && !ok && outcome.reason != reason::SECRET_DELETED => {
            Some((EventType::Warning, "UpdateFailed", outcome.message.clone()))
        }
        _ => None,
    };
    if let Some((type_, reason, note)) = event {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Sync".into(),
            secondary: None,
        };
        if let Err(error) = ctx.events.publish(&event, &es.object_ref(&())).await {
            warn!(%error, "cannot publish an Event");
        }
    }
    let failures = memory.failures;
    ctx.memory.remember(uid, memory);
    ctx.metrics.external_reconciled(started.elapsed());
    Ok(if failures > 0 {
        Action::requeue(refresh::backoff(failures))
    } else {
        next_refresh(es, uid, interval, Some(Duration::ZERO))
    })
}

/// When to look again: at the next refresh (with the object's jitter), or only on change.
fn next_refresh(
    es: &ExternalSecret,
    uid: &str,
    interval: Duration,
    since_refresh: Option<Duration>,
) -> Action {
    refresh::next_look(es.spec.refresh_policy(), interval, uid, since_refresh)
        .map_or_else(Action::await_change, Action::requeue)
}
