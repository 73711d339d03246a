//! The ExternalSecret reconciler: read values through a store's provider ([`crate::stores`]) and
//! keep a Secret in sync with them, with ESO's semantics for the AWS and Vault providers.
//!
//! - **When it reads.** On the first reconcile, when the spec changes (generation), when the
//!   `seal.dev/force-sync` annotation takes a new value, when the produced Secret is deleted or
//!   changed by someone else, and every `refreshInterval` under `refreshPolicy: Periodic` (with a
//!   per-object jitter of up to a tenth of the interval, at most a minute, so that objects created
//!   together do not refresh together). `CreatedOnce` reads only until the Secret exists,
//!   `OnChange` only on a spec change. Any other event (its own status write, its own Secret
//!   write seen by the watch) costs no provider call.
//! - **What it reads.** `data[]` through one `get_many` (AWS batches 20 per call; several
//!   properties of one secret cost one call), `dataFrom[].extract` (a JSON object's keys) and
//!   `dataFrom[].find` (name regexp, tags, path; `/` in a name becomes `_` as in ESO), then
//!   `rewrite` regexps and `decodingStrategy`, then `target.template`.
//! - **What it writes.** The Secret, by server-side apply under [`field_manager`] (one per
//!   merging ExternalSecret, so that merges into one Secret never remove each other's items),
//!   labelled [`EXTERNAL_SECRET_UID_LABEL`] (the controller watches Secrets by that label, as metadata
//!   only) and annotated with [`DATA_HASH_ANNOTATION`], a SHA-256 of everything applied: a refresh
//!   producing the same hash writes nothing. `creationPolicy` `Owner` adds an owner reference
//!   (garbage collection deletes the Secret with the ExternalSecret), `Orphan` does not, `Merge`
//!   only adds its items to an existing Secret (missing: `SecretMissing`), `None` writes no Secret.
//!   An existing Secret it did not make is left alone unless annotated `seal.dev/managed: "true"`.
//! - **Failures.** A provider outage ([`seal_providers::Error::is_transient`]) leaves the last good
//!   Secret untouched, says `SecretSyncedError` and retries with exponential backoff (5 s to
//!   5 min), so the object recovers by itself. A key that is really gone follows
//!   `deletionPolicy`: `Retain` keeps the Secret and reports the error, `Delete` deletes the
//!   Secret when nothing remains (and writes the rest otherwise), `Merge` removes the missing items.
//! - **Hygiene.** Values exist only in zeroizing buffers between the read and the write; logs,
//!   Events, status and metric labels carry names, reasons and provider error texts (which never
//!   hold values), never a value.

use seal_api::names::{
    DATA_HASH_ANNOTATION, EXTERNAL_SECRET_ANNOTATION, EXTERNAL_SECRET_UID_LABEL,
    FORCE_SYNC_ANNOTATION,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use seal_api::external_secret::{
    CONDITION_READY, CreationPolicy, DecodingStrategy, DeletionPolicy, ExternalSecretRewrite,
    ExternalSecretTemplate, RefreshPolicy, SecretBinding, SecretStoreKind, TemplateMergePolicy,
    reason,
};
use seal_api::names::{MANAGED_ANNOTATION, PATCH_ANNOTATION};
use seal_api::{ClusterSecretStore, ExternalSecret, ExternalSecretStatus, SecretStore};
use seal_core::SecretBytes;
use seal_providers::{FindQuery, Provider, SecretProvider, SecretRef, SecretValue};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::contained::{Panicked, contain};
use crate::controller::{Settings, Shared};
use crate::rollout;
use crate::store_trust::check_namespace;
use crate::stores::{Providers, StoreId};
use crate::unseal::field_manager;

/// Memory entries kept before starting over (entries of deleted objects are never looked at).
const MEMORY_LIMIT: usize = 200_000;

/// What the reconciler shares.
struct Context {
    client: Client,
    recorder: Recorder,
    providers: Arc<Providers>,
    shared: Arc<Shared>,
    /// Metadata of the Secrets ExternalSecrets produced, as last seen by the watch.
    produced: Store<PartialObjectMeta<Secret>>,
    memory: Mutex<HashMap<String, Memory>>,
}

/// What the controller remembers of one ExternalSecret (by uid) between reconciles.
#[derive(Clone, Default)]
struct Memory {
    /// The force-sync value last acted on.
    force_sync: Option<String>,
    /// The produced Secret's resourceVersion after the last sync.
    secret_version: Option<String>,
    /// Failed syncs in a row, for the backoff.
    failures: u32,
    /// When the values were last read, and the generation last synced: what the status says
    /// too, but the status in the watch cache may lag behind this controller's own write, and a
    /// reconcile that saw the older status would read again (under `OnChange` or `CreatedOnce`
    /// a read the user did not ask for).
    refreshed_at: Option<Timestamp>,
    synced_generation: Option<i64>,
}

impl Context {
    fn memory(&self, uid: &str) -> Memory {
        self.lock().get(uid).cloned().unwrap_or_default()
    }

    fn remember(&self, uid: &str, memory: Memory) {
        let mut map = self.lock();
        if map.len() >= MEMORY_LIMIT {
            map.clear();
        }
        map.insert(uid.to_owned(), memory);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Memory>> {
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Why a reconcile must be retried (status write failures only: every other failure is recorded
/// in the status and retried on the object's own schedule).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    /// The status could not be written.
    #[error("cannot write the ExternalSecret status: {0}")]
    Write(#[source] kube::Error),
    /// The reconcile panicked ([`crate::contained`]).
    #[error(transparent)]
    Panicked(#[from] Panicked),
}

/// Runs the ExternalSecret reconciler and the store reconcilers ([`crate::stores::run`]) over
/// the namespaces of `settings` (all when none) until `stopped`. They share one provider cache,
/// so each store logs in once.
pub async fn run(
    client: Client,
    settings: &Settings,
    recorder: Recorder,
    shared: Arc<Shared>,
    stopped: watch::Receiver<bool>,
) {
    let namespaces = &settings.watch_namespaces;
    let concurrency = settings.concurrency;
    let mut trust = settings.store_trust.clone();
    trust
        .api_audiences
        .extend(crate::stores::api_audiences(&client).await);
    let providers = Arc::new(Providers::new(
        client.clone(),
        shared.metrics.provider_calls(),
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
            .filter(|ns| match check_namespace(ns, &settings.store_trust) {
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
    let outside_keys = (!settings.store_trust.key_namespace.is_empty())
        .then(|| format!("metadata.namespace!={}", settings.store_trust.key_namespace));
    let watch_config = |config: watcher::Config| match &outside_keys {
        Some(selector) => config.fields(selector),
        None => config,
    };
    let loops = scopes.into_iter().map(|namespace| {
        let (externals, secrets): (Api<ExternalSecret>, Api<PartialObjectMeta<Secret>>) =
            match &namespace {
                Some(ns) => (
                    Api::namespaced(client.clone(), ns),
                    Api::namespaced(client.clone(), ns),
                ),
                None => (Api::all(client.clone()), Api::all(client.clone())),
            };
        let (produced, writer) = reflector::store();
        let produced_changes = reflector(
            writer,
            watcher(
                secrets,
                watch_config(watcher::Config::default().labels(EXTERNAL_SECRET_UID_LABEL)),
            )
            .default_backoff(),
        )
        .touched_objects();
        let context = Arc::new(Context {
            client: client.clone(),
            recorder: recorder.clone(),
            providers: Arc::clone(&providers),
            shared: Arc::clone(&shared),
            produced,
            memory: Mutex::new(HashMap::new()),
        });
        let mut stopped = stopped.clone();
        Controller::new(externals, watch_config(watcher::Config::default()))
            .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
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
    /// The Secret was created (`Some(true)`), updated (`Some(false)`) or not written (`None`).
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

/// [`reconcile`], with a panic contained ([`crate::contained`]) and said in the ExternalSecret's
/// status, so that the object's owner sees it failed and everything else goes on.
async fn reconcile_contained(
    es: Arc<ExternalSecret>,
    ctx: Arc<Context>,
) -> Result<Action, StatusError> {
    // Boxed: a reconcile's future is large, and this one holds it across the status write.
    let result = Box::pin(contain(reconcile(Arc::clone(&es), Arc::clone(&ctx)))).await;
    if let Err(StatusError::Panicked(panicked)) = &result {
        let outcome = Outcome::failed("panicked", panicked.to_string());
        if let Err(error) = write_status(&ctx, &es, &outcome).await {
            warn!(%error, "cannot say in the status that the reconcile panicked");
        }
    }
    result
}

async fn reconcile(es: Arc<ExternalSecret>, ctx: Arc<Context>) -> Result<Action, StatusError> {
    let started = Instant::now();
    let uid = es.uid().unwrap_or_default();
    let namespace = es.namespace().unwrap_or_default();
    let name = es.name_any();
    let mut memory = ctx.memory(&uid);
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

    let existing = match secret_metadata(
        &ctx,
        &namespace,
        &secret_name,
        memory.secret_version.as_deref(),
    )
    .await
    {
        Ok(existing) => existing,
        Err(error) => {
            let outcome = Outcome::failed("kube", api_reason(&error));
            return finish(&ctx, &es, &uid, memory, outcome, interval, started).await;
        }
    };
    let secret_intact = target.creation_policy() == CreationPolicy::None
        || existing.as_ref().is_some_and(|m| {
            m.resource_version().is_some() && m.resource_version() == memory.secret_version
        });
    let spec_changed = es
        .status
        .as_ref()
        .and_then(|s| s.observed_generation)
        .max(memory.synced_generation)
        != es.metadata.generation;
    let forced = force_sync.is_some() && force_sync != memory.force_sync;
    let interval_passed = es.spec.refresh_policy() == RefreshPolicy::Periodic
        && !interval.is_zero()
        && since_refresh.is_none_or(|since| since >= interval);
    let due = match es.spec.refresh_policy() {
        RefreshPolicy::CreatedOnce => {
            last_refresh.is_none()
                || (existing.is_none() && target.creation_policy() != CreationPolicy::None)
        }
        _ => {
            last_refresh.is_none()
                || spec_changed
                || forced
                || !secret_intact
                || interval_passed
                || memory.failures > 0
        }
    };
    if !due {
        return Ok(next_refresh(&es, &uid, interval, since_refresh));
    }
    memory.force_sync = force_sync;
    let outcome = match es.validate() {
        Err(error) => Outcome::failed("invalid_spec", format!("invalid spec: {error}")),
        Ok(()) => sync(&ctx, &es, &secret_name, existing.as_ref(), &mut memory).await,
    };
    finish(&ctx, &es, &uid, memory, outcome, interval, started).await
}

/// The produced Secret's metadata: from the watch when it has the Secret at the `expected`
/// resourceVersion (the one this controller last wrote) or nothing is expected, else from the API
/// server (the watch may not have caught up with the write, and a Secret for `Merge` is not
/// labelled yet). So a lagging watch is never taken for someone else's change.
async fn secret_metadata(
    ctx: &Context,
    namespace: &str,
    name: &str,
    expected: Option<&str>,
) -> Result<Option<PartialObjectMeta<Secret>>, kube::Error> {
    if let Some(watched) = ctx.produced.get(&ObjectRef::new(name).within(namespace))
        && (expected.is_none() || watched.metadata.resource_version.as_deref() == expected)
    {
        return Ok(Some((*watched).clone()));
    }
    Api::<Secret>::namespaced(ctx.client.clone(), namespace)
        .get_metadata_opt(name)
        .await
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
    let provider = match provider_for(ctx, es).await {
        Ok(provider) => provider,
        Err(outcome) => return outcome,
    };
    ctx.shared.metrics.external_sync();
    let fetched = match fetch(&provider, es).await {
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
                return delete_secret(ctx, es, secret_name, existing, memory).await;
            }
            DeletionPolicy::Delete | DeletionPolicy::Merge => {}
        }
    }
    let produced = match render(
        es.spec.target.as_ref().and_then(|t| t.template.as_ref()),
        &mut values,
    ) {
        Ok(produced) => match ctx
            .shared
            .produced_policy
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
    let mut outcome = write(ctx, es, secret_name, existing, produced, memory).await;
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
        rollout::restart(
            &ctx.client,
            &ctx.recorder,
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

/// The provider of the ExternalSecret's store, after checking that the store exists and, for a
/// ClusterSecretStore, allows the namespace.
async fn provider_for(ctx: &Context, es: &ExternalSecret) -> Result<Arc<Provider>, Outcome> {
    let namespace = es.namespace().unwrap_or_default();
    let store_name = &es.spec.secret_store_ref.name;
    let unavailable = |error: &kube::Error| Outcome::failed("kube", api_reason(error));
    let (id, generation, provider) = match es.spec.secret_store_ref.store_kind() {
        SecretStoreKind::SecretStore => {
            let api: Api<SecretStore> = Api::namespaced(ctx.client.clone(), &namespace);
            let Some(store) = api.get_opt(store_name).await.map_err(|e| unavailable(&e))? else {
                return Err(Outcome::failed(
                    "store",
                    format!("SecretStore {namespace}/{store_name} does not exist"),
                ));
            };
            let id = StoreId {
                cluster: false,
                namespace: namespace.clone(),
                name: store_name.clone(),
                credentials_namespace: String::new(),
            };
            (id, store.metadata.generation, store.spec.provider)
        }
        SecretStoreKind::ClusterSecretStore => {
            let api: Api<ClusterSecretStore> = Api::all(ctx.client.clone());
            let Some(store) = api.get_opt(store_name).await.map_err(|e| unavailable(&e))? else {
                return Err(Outcome::failed(
                    "store",
                    format!("ClusterSecretStore {store_name} does not exist"),
                ));
            };
            if !store.spec.conditions.is_empty() {
                let labels = Api::<Namespace>::all(ctx.client.clone())
                    .get_metadata(&namespace)
                    .await
                    .map_err(|e| unavailable(&e))?
                    .metadata
                    .labels
                    .unwrap_or_default();
                if !store.allows_namespace(&namespace, &labels) {
                    return Err(Outcome::failed(
                        "store",
                        format!(
                            "ClusterSecretStore {store_name} does not allow namespace {namespace} (see its spec.conditions)"
                        ),
                    ));
                }
            }
            let id = StoreId {
                cluster: true,
                namespace: String::new(),
                name: store_name.clone(),
                credentials_namespace: namespace.clone(),
            };
            (id, store.metadata.generation, store.spec.provider)
        }
    };
    if let Err(error) = provider.validate("spec.provider") {
        return Err(Outcome::failed(
            "store",
            format!("store {store_name} is invalid: {error}"),
        ));
    }
    ctx.providers
        .get(&id, generation, &provider)
        .await
        .map_err(|error| Outcome::failed("store", format!("store {store_name}: {error}")))
}

/// Values read from the provider: by Secret key, and the keys the provider no longer has.
struct Fetched {
    values: BTreeMap<String, SecretBytes>,
    missing: Vec<String>,
}

/// Reads every `data[]` and `dataFrom[]` item. A transient failure of any item fails the whole
/// read (nothing is written from a partial read); a missing key is reported in `missing`.
// One pass over data[] then dataFrom[], in the order a reader meets them in the spec.
#[allow(clippy::too_many_lines)]
async fn fetch(provider: &Provider, es: &ExternalSecret) -> Result<Fetched, Outcome> {
    let provider_failed = |error: &seal_providers::Error| {
        Outcome::failed(
            if error.is_transient() {
                "provider_unavailable"
            } else {
                "provider_error"
            },
            if error.is_transient() {
                format!("provider unavailable, the Secret is kept as it was: {error}")
            } else {
                error.to_string()
            },
        )
    };
    let mut values = BTreeMap::new();
    let mut missing = Vec::new();
    let refs: Vec<SecretRef> = es
        .spec
        .data
        .iter()
        .map(|d| SecretRef {
            key: d.remote_ref.key.clone(),
            version: d.remote_ref.version.clone(),
            property: d.remote_ref.property.clone(),
        })
        .collect();
    let results = if refs.is_empty() {
        Vec::new()
    } else {
        provider.get_many(&refs).await
    };
    // Transient failures first: an outage must not read as deleted keys.
    if let Some(error) = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .find(|e| e.is_transient())
    {
        return Err(provider_failed(error));
    }
    for (item, result) in es.spec.data.iter().zip(results) {
        match result {
            Ok(value) => {
                let decoded = decode(item.remote_ref.decoding_strategy(), value.expose_bytes())
                    .map_err(|why| {
                        Outcome::failed("decoding", format!("data {:?}: {why}", item.secret_key))
                    })?;
                values.insert(item.secret_key.clone(), decoded);
            }
            Err(seal_providers::Error::NotFound { .. }) => missing.push(format!(
                "data {:?} ({})",
                item.secret_key, item.remote_ref.key
            )),
            Err(error) => return Err(provider_failed(&error)),
        }
    }
    for (index, from) in es.spec.data_from.iter().enumerate() {
        let mut items: Vec<(String, SecretBytes)> = Vec::new();
        if let Some(extract) = &from.extract {
            match provider.get(&extract.key, extract.version.as_deref()).await {
                Ok(value) => {
                    let value = match &extract.property {
                        Some(property) => value.property(property).map_err(|e| {
                            Outcome::failed(
                                "decoding",
                                format!("dataFrom[{index}].extract {:?}: {e}", extract.key),
                            )
                        })?,
                        None => value,
                    };
                    for (key, item) in json_object(&value).map_err(|why| {
                        Outcome::failed(
                            "decoding",
                            format!("dataFrom[{index}].extract {:?}: {why}", extract.key),
                        )
                    })? {
                        let decoded =
                            decode(extract.decoding_strategy(), item.expose()).map_err(|why| {
                                Outcome::failed(
                                    "decoding",
                                    format!("dataFrom[{index}] {key:?}: {why}"),
                                )
                            })?;
                        items.push((key, decoded));
                    }
                }
                Err(seal_providers::Error::NotFound { .. }) => {
                    missing.push(format!("dataFrom[{index}] ({})", extract.key));
                }
                Err(error) => return Err(provider_failed(&error)),
            }
        }
        if let Some(find) = &from.find {
            let query = FindQuery {
                path: find.path.clone(),
                name_regexp: find.name.as_ref().map(|n| n.regexp.clone()),
                tags: find.tags.clone(),
                ..FindQuery::default()
            };
            let found = provider
                .find(&query)
                .await
                .map_err(|e| provider_failed(&e))?;
            let strategy = find.decoding_strategy.unwrap_or_default();
            for (name, value) in found {
                let key = name.replace('/', "_");
                let decoded = decode(strategy, value.expose_bytes()).map_err(|why| {
                    Outcome::failed("decoding", format!("dataFrom[{index}] {key:?}: {why}"))
                })?;
                items.push((key, decoded));
            }
        }
        for (key, value) in items {
            let key = rewrite(&from.rewrite, key).map_err(|why| {
                Outcome::failed("invalid_spec", format!("dataFrom[{index}].rewrite: {why}"))
            })?;
            values.insert(key, value);
        }
    }
    Ok(Fetched { values, missing })
}

/// The top-level members of a JSON object value: strings as they are, anything else as JSON text.
fn json_object(value: &SecretValue) -> Result<Vec<(String, SecretBytes)>, &'static str> {
    let parsed: serde_json::Value =
        serde_json::from_slice(value.expose_bytes()).map_err(|_| "the value is not JSON")?;
    let serde_json::Value::Object(members) = parsed else {
        return Err("the value is not a JSON object");
    };
    Ok(members
        .into_iter()
        .map(|(key, member)| {
            let bytes = match member {
                serde_json::Value::String(text) => text.into_bytes(),
                other => other.to_string().into_bytes(),
            };
            (key, SecretBytes::new(bytes))
        })
        .collect())
}

/// Applies `rewrite` regexps in order to a key.
fn rewrite(rules: &[ExternalSecretRewrite], mut key: String) -> Result<String, String> {
    for rule in rules {
        let re = regex::Regex::new(&rule.regexp.source)
            .map_err(|e| format!("invalid regexp {:?}: {e}", rule.regexp.source))?;
        key = re
            .replace_all(&key, rule.regexp.target.as_str())
            .into_owned();
    }
    Ok(key)
}

/// `decodingStrategy` applied to a value.
fn decode(strategy: DecodingStrategy, bytes: &[u8]) -> Result<SecretBytes, &'static str> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    let trimmed = bytes.trim_ascii();
    match strategy {
        DecodingStrategy::None => Ok(SecretBytes::new(bytes.to_vec())),
        DecodingStrategy::Base64 => STANDARD
            .decode(trimmed)
            .map(SecretBytes::new)
            .map_err(|_| "the value is not base64"),
        DecodingStrategy::Base64Url => URL_SAFE
            .decode(trimmed)
            .map(SecretBytes::new)
            .map_err(|_| "the value is not URL-safe base64"),
        DecodingStrategy::Auto => Ok(SecretBytes::new(
            STANDARD
                .decode(trimmed)
                .or_else(|_| URL_SAFE.decode(trimmed))
                .unwrap_or_else(|_| bytes.to_vec()),
        )),
    }
}

/// What the Secret should hold: items, type and template metadata.
struct Produced {
    data: BTreeMap<String, SecretBytes>,
    type_: Option<String>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

/// Applies `template` to the fetched `values` (taking them).
fn render(
    template: Option<&ExternalSecretTemplate>,
    values: &mut BTreeMap<String, SecretBytes>,
) -> Result<Produced, String> {
    let fetched = std::mem::take(values);
    let Some(template) = template else {
        return Ok(Produced {
            data: fetched,
            type_: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        });
    };
    let mut data = BTreeMap::new();
    // One output budget for every template of this Secret (seal_template's budgets).
    let mut budget = seal_template::OutputBudget::per_secret();
    for (key, source) in &template.data {
        let parsed = seal_template::Template::parse(source)
            .map_err(|e| format!("template.data {key:?}: {e}"))?;
        let rendered = parsed
            .render_within(&fetched, &mut budget)
            .map_err(|e| format!("template.data {key:?}: {e}"))?;
        data.insert(key.clone(), rendered);
    }
    if template.data.is_empty() || template.merge_policy() == TemplateMergePolicy::Merge {
        for (key, value) in fetched {
            data.entry(key).or_insert(value);
        }
    }
    let metadata = template.metadata.clone().unwrap_or_default();
    Ok(Produced {
        data,
        type_: template.type_.clone(),
        labels: metadata.labels,
        annotations: metadata.annotations,
    })
}

/// SHA-256 (hex) of everything applied, length-prefixed so no two contents hash alike.
fn content_hash(produced: &Produced, immutable: bool, owner: bool) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut field = |bytes: &[u8]| {
        ctx.update(&(bytes.len() as u64).to_be_bytes());
        ctx.update(bytes);
    };
    field(produced.type_.as_deref().unwrap_or("").as_bytes());
    field(&[u8::from(immutable), u8::from(owner)]);
    for map in [&produced.labels, &produced.annotations] {
        field(&(map.len() as u64).to_be_bytes());
        for (k, v) in map {
            field(k.as_bytes());
            field(v.as_bytes());
        }
    }
    field(&(produced.data.len() as u64).to_be_bytes());
    for (k, v) in &produced.data {
        field(k.as_bytes());
        field(v.expose());
    }
    rollout::hex(ctx.finish().as_ref())
}

/// Writes `produced` as the creation policy says, unless the Secret already holds it.
// The policy checks, the unchanged check, the apply and its replace fallback, in order.
#[allow(clippy::too_many_lines)]
async fn write(
    ctx: &Context,
    es: &ExternalSecret,
    secret_name: &str,
    existing: Option<&PartialObjectMeta<Secret>>,
    produced: Produced,
    memory: &mut Memory,
) -> Outcome {
    let namespace = es.namespace().unwrap_or_default();
    let uid = es.uid().unwrap_or_default();
    let target = es.spec.target();
    let policy = target.creation_policy();
    let synced = |wrote: Option<bool>, message: String| Outcome {
        reason: reason::SECRET_SYNCED,
        message,
        wrote,
        deleted: false,
        refreshed: true,
        metric: "",
    };
    if policy == CreationPolicy::None {
        return synced(
            None,
            "values read; creationPolicy None writes no Secret".into(),
        );
    }
    let ours = existing.is_some_and(|m| m.labels().get(EXTERNAL_SECRET_UID_LABEL) == Some(&uid));
    match (policy, existing) {
        (CreationPolicy::Merge, None) => {
            return Outcome {
                reason: reason::SECRET_MISSING,
                ..Outcome::failed(
                    "secret_missing",
                    format!(
                        "Secret {namespace}/{secret_name} does not exist; creationPolicy Merge only adds items to an existing Secret"
                    ),
                )
            };
        }
        // Merge writes into someone else's Secret: only with its owner's opt-in, the same as a
        // SealedSecret's patch.
        (CreationPolicy::Merge, Some(meta)) if !ours && !opted_in(meta, PATCH_ANNOTATION) => {
            return Outcome::failed(
                "not_managed",
                format!(
                    "Secret {namespace}/{secret_name} was not made by this ExternalSecret; annotate it {PATCH_ANNOTATION}: \"true\" to let creationPolicy Merge add items to it"
                ),
            );
        }
        (CreationPolicy::Owner | CreationPolicy::Orphan, Some(meta))
            if !ours && !opted_in(meta, MANAGED_ANNOTATION) =>
        {
            return Outcome::failed(
                "not_managed",
                format!(
                    "Secret {namespace}/{secret_name} exists and was not made by this ExternalSecret; annotate it {MANAGED_ANNOTATION}: \"true\" to let the controller take it over, or use creationPolicy Merge"
                ),
            );
        }
        _ => {}
    }
    let merge = policy == CreationPolicy::Merge;
    let owner = policy == CreationPolicy::Owner;
    let immutable = target.immutable == Some(true);
    let hash = content_hash(&produced, immutable, owner);
    if let Some(meta) = existing
        && meta.annotations().get(DATA_HASH_ANNOTATION) == Some(&hash)
        && (ours || merge)
    {
        memory.secret_version = meta.resource_version();
        return synced(None, format!("Secret {namespace}/{secret_name} is in sync"));
    }
    let mut labels = produced.labels;
    labels.insert(EXTERNAL_SECRET_UID_LABEL.into(), uid.clone());
    let mut annotations = produced.annotations;
    annotations.insert(DATA_HASH_ANNOTATION.into(), hash);
    annotations.insert(EXTERNAL_SECRET_ANNOTATION.into(), es.name_any());
    let desired = Secret {
        metadata: ObjectMeta {
            name: Some(secret_name.to_owned()),
            namespace: Some(namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: owner.then(|| {
                vec![OwnerReference {
                    api_version: ExternalSecret::api_version(&()).into_owned(),
                    kind: ExternalSecret::kind(&()).into_owned(),
                    name: es.name_any(),
                    uid: uid.clone(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]
            }),
            ..ObjectMeta::default()
        },
        data: Some(
            produced
                .data
                .iter()
                .map(|(k, v)| (k.clone(), ByteString(v.expose().to_vec())))
                .collect(),
        ),
        type_: if merge { None } else { produced.type_ },
        immutable: (!merge && immutable).then_some(true),
        ..Secret::default()
    };
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let params = PatchParams::apply(&field_manager(merge, &uid)).force();
    let mut result = api
        .patch(secret_name, &params, &Patch::Apply(&desired))
        .await;
    // An immutable Secret, or one of another type, cannot change: replace one of our own.
    if let Err(kube::Error::Api(status)) = &result
        && status.code == 422
        && !merge
        && let Some(meta) = existing
    {
        let delete = DeleteParams {
            preconditions: Some(Preconditions {
                uid: meta.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        result = match api.delete(secret_name, &delete).await {
            Ok(_) => {
                api.patch(secret_name, &params, &Patch::Apply(&desired))
                    .await
            }
            Err(error) => Err(error),
        };
    }
    match result {
        Ok(written) => {
            memory.secret_version = written.resource_version();
            info!(%namespace, name = %es.name_any(), secret = %secret_name, "synced the Secret");
            synced(
                Some(existing.is_none()),
                format!("Secret {namespace}/{secret_name} is in sync"),
            )
        }
        Err(error) => Outcome::failed("kube", api_reason(&error)),
    }
}

/// Whether the owner of an existing Secret annotated it `annotation: "true"` (take it over:
/// [`MANAGED_ANNOTATION`]; add items to it: [`PATCH_ANNOTATION`], which `seal.dev/managed` implies).
fn opted_in(meta: &PartialObjectMeta<Secret>, annotation: &str) -> bool {
    [annotation, MANAGED_ANNOTATION]
        .iter()
        .any(|a| meta.annotations().get(*a).map(String::as_str) == Some("true"))
}

/// `deletionPolicy: Delete` with nothing left at the provider: deletes a Secret this
/// ExternalSecret made.
async fn delete_secret(
    ctx: &Context,
    es: &ExternalSecret,
    secret_name: &str,
    existing: Option<&PartialObjectMeta<Secret>>,
    memory: &mut Memory,
) -> Outcome {
    let namespace = es.namespace().unwrap_or_default();
    let uid = es.uid().unwrap_or_default();
    let gone = Outcome {
        reason: reason::SECRET_DELETED,
        deleted: false,
        refreshed: true,
        ..Outcome::failed(
            "",
            format!(
                "the values are gone from the provider; Secret {namespace}/{secret_name} deleted (deletionPolicy Delete)"
            ),
        )
    };
    let Some(meta) = existing.filter(|m| m.labels().get(EXTERNAL_SECRET_UID_LABEL) == Some(&uid))
    else {
        memory.secret_version = None;
        return gone;
    };
    let delete = DeleteParams {
        preconditions: Some(Preconditions {
            uid: meta.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match Api::<Secret>::namespaced(ctx.client.clone(), &namespace)
        .delete(secret_name, &delete)
        .await
    {
        Ok(_) => {
            memory.secret_version = None;
            Outcome {
                deleted: true,
                ..gone
            }
        }
        Err(kube::Error::Api(status)) if status.code == 404 => gone,
        Err(error) => Outcome::failed("kube", api_reason(&error)),
    }
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
        ctx.shared.metrics.external_sync_error(outcome.metric);
        warn!(%namespace, %name, reason = outcome.reason, message = %outcome.message, "ExternalSecret not synced");
    }
    let changed = write_status(ctx, es, &outcome).await?;
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
        if let Err(error) = ctx.recorder.publish(&event, &es.object_ref(&())).await {
            warn!(%error, "cannot publish an Event");
        }
    }
    let failures = memory.failures;
    ctx.remember(uid, memory);
    ctx.shared.metrics.external_reconciled(started.elapsed());
    Ok(if failures > 0 {
        let exponent = failures.saturating_sub(1).min(6);
        Action::requeue(Duration::from_secs(5 << exponent).min(Duration::from_secs(300)))
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
    if es.spec.refresh_policy() != RefreshPolicy::Periodic || interval.is_zero() {
        return Action::await_change();
    }
    let remaining = interval.saturating_sub(since_refresh.unwrap_or_default());
    Action::requeue(remaining + jitter(uid, interval))
}

/// A delay in `[0, min(interval / 10, 60 s))` that is the same for one object every time and
/// spreads objects of one interval apart. Total: no interval, however short, divides by zero.
fn jitter(uid: &str, interval: Duration) -> Duration {
    let span = (interval / 10).min(Duration::from_secs(60));
    let span_nanos = u64::try_from(span.as_nanos()).unwrap_or(u64::MAX);
    let seed = uid
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    Duration::from_nanos(seed.checked_rem(span_nanos).unwrap_or(0))
}

/// Writes status when it differs: `Ready`, `observedGeneration`, `binding`, and, after a read,
/// `refreshTime` and `syncedResourceVersion`. Returns whether the condition changed.
async fn write_status(
    ctx: &Context,
    es: &ExternalSecret,
    outcome: &Outcome,
) -> Result<bool, StatusError> {
    let generation = es.metadata.generation;
    let ready = if outcome.reason == reason::SECRET_SYNCED {
        "True"
    } else {
        "False"
    };
    let current = es.status.clone().unwrap_or_default();
    let previous = current
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_READY);
    let condition_same = previous.is_some_and(|p| {
        p.status == ready && p.reason == outcome.reason && p.message == outcome.message
    });
    if condition_same && current.observed_generation == generation && !outcome.refreshed {
        return Ok(false);
    }
    let transition = previous.filter(|p| p.status == ready).map_or_else(
        || Time(Timestamp::now()),
        |p| p.last_transition_time.clone(),
    );
    let status = ExternalSecretStatus {
        observed_generation: generation,
        refresh_time: if outcome.refreshed {
            Some(Time(Timestamp::now()))
        } else {
            current.refresh_time.clone()
        },
        synced_resource_version: if outcome.refreshed {
            es.resource_version()
        } else {
            current.synced_resource_version.clone()
        },
        binding: Some(SecretBinding {
            name: es.spec.target().secret_name(&es.name_any()).to_owned(),
        }),
        conditions: vec![Condition {
            type_: CONDITION_READY.into(),
            status: ready.into(),
            reason: outcome.reason.into(),
            message: outcome.message.clone(),
            last_transition_time: transition,
            observed_generation: generation,
        }],
    };
    Api::<ExternalSecret>::namespaced(ctx.client.clone(), &es.namespace().unwrap_or_default())
        .patch_status(
            &es.name_any(),
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "status": status })),
        )
        .await
        .map_err(StatusError::Write)?;
    Ok(!condition_same)
}

/// The API server's refusal in words safe for status: its reason and code only (its message may
/// quote the object, which can hold values).
pub(crate) fn api_reason(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!(
            "the API server refused the request: {} ({})",
            status.reason, status.code
        ),
        _ => "the API server could not be reached".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seal_api::external_secret::{ExternalSecretRewriteRegexp, ExternalSecretTemplateMetadata};

    fn bytes(map: &BTreeMap<String, SecretBytes>, key: &str) -> Option<Vec<u8>> {
        map.get(key).map(|v| v.expose().to_vec())
    }

    #[test]
    fn jitter_is_total_and_within_a_tenth_of_the_interval() {
        for nanos in [
            1,
            9,
            10,
            11,
            5_000_000,
            9_999_999,
            10_000_000,
            1_000_000_000,
        ] {
            let interval = Duration::from_nanos(nanos);
            for uid in ["", "a", "3f1c0b6e-uid"] {
                let jitter = jitter(uid, interval);
                assert!(jitter <= interval / 10, "{nanos} ns {uid:?}: {jitter:?}");
            }
        }
        assert!(jitter("x", Duration::from_secs(86_400)) < Duration::from_secs(60));
    }

    #[test]
    fn decoding_strategies_follow_eso() {
        let decoded = |s, v: &[u8]| decode(s, v).map(|b| b.expose().to_vec());
        assert_eq!(
            decoded(DecodingStrategy::None, b"aGk="),
            Ok(b"aGk=".to_vec())
        );
        assert_eq!(
            decoded(DecodingStrategy::Base64, b"aGk=\n"),
            Ok(b"hi".to_vec())
        );
        assert_eq!(
            decoded(DecodingStrategy::Base64Url, b"-_8="),
            Ok(vec![0xfb, 0xff])
        );
        assert_eq!(decoded(DecodingStrategy::Auto, b"aGk="), Ok(b"hi".to_vec()));
        assert_eq!(
            decoded(DecodingStrategy::Auto, b"not base64!"),
            Ok(b"not base64!".to_vec())
        );
        assert!(decoded(DecodingStrategy::Base64, b"not base64!").is_err());
    }

    #[test]
    fn rewrites_apply_in_order_and_bad_regexps_are_errors() {
        let rule = |source: &str, target: &str| ExternalSecretRewrite {
            regexp: ExternalSecretRewriteRegexp {
                source: source.into(),
                target: target.into(),
            },
        };
        let rules = [rule("^ml_", ""), rule("^(.*)$", "APP_$1")];
        assert_eq!(rewrite(&rules, "ml_db".into()), Ok("APP_db".into()));
        assert!(rewrite(&[rule("(", "")], "x".into()).is_err());
    }

    #[test]
    fn extract_keeps_strings_and_serialises_the_rest() {
        let value = SecretValue::from_text(r#"{"user":"u","port":5432,"tls":{"on":true}}"#);
        let members: BTreeMap<_, _> = json_object(&value).unwrap().into_iter().collect();
        assert_eq!(bytes(&members, "user"), Some(b"u".to_vec()));
        assert_eq!(bytes(&members, "port"), Some(b"5432".to_vec()));
        assert_eq!(bytes(&members, "tls"), Some(br#"{"on":true}"#.to_vec()));
        assert!(json_object(&SecretValue::from_text("[1]")).is_err());
        assert!(json_object(&SecretValue::from_text("plain")).is_err());
    }

    #[test]
    fn templates_replace_or_merge_and_set_metadata() {
        let fetched = || {
            BTreeMap::from([
                ("user".to_owned(), SecretBytes::new(b"u".to_vec())),
                ("password".to_owned(), SecretBytes::new(b"p".to_vec())),
            ])
        };
        let mut template = ExternalSecretTemplate {
            type_: Some("Opaque".into()),
            metadata: Some(ExternalSecretTemplateMetadata {
                labels: BTreeMap::from([("team".into(), "ml".into())]),
                annotations: BTreeMap::new(),
            }),
            data: BTreeMap::from([("dsn".into(), "{{ .user }}:{{ .password }}".into())]),
            ..ExternalSecretTemplate::default()
        };
        let replaced = render(Some(&template), &mut fetched()).unwrap();
        assert_eq!(bytes(&replaced.data, "dsn"), Some(b"u:p".to_vec()));
        assert_eq!(replaced.data.len(), 1);
        assert_eq!(replaced.labels.get("team").map(String::as_str), Some("ml"));
        template.merge_policy = Some(TemplateMergePolicy::Merge);
        let merged = render(Some(&template), &mut fetched()).unwrap();
        assert_eq!(merged.data.len(), 3);
        template.data = BTreeMap::from([("x".into(), "{{ .missing }}".into())]);
        let error = render(Some(&template), &mut fetched()).err().unwrap();
        assert!(error.contains("template.data \"x\""), "{error}");
    }

    #[test]
    fn the_hash_changes_with_any_applied_content_and_only_then() {
        let produced = |value: &[u8]| Produced {
            data: BTreeMap::from([("k".to_owned(), SecretBytes::new(value.to_vec()))]),
            type_: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        };
        let base = content_hash(&produced(b"v"), false, true);
        assert_eq!(base, content_hash(&produced(b"v"), false, true));
        assert_ne!(base, content_hash(&produced(b"w"), false, true));
        assert_ne!(base, content_hash(&produced(b"v"), true, true));
        assert_ne!(base, content_hash(&produced(b"v"), false, false));
        assert_eq!(base.len(), 64);
    }
}
