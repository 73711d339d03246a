//! The produced-Secret watch: how a reconciler learns that a Secret it made was changed or
//! deleted, without holding any plaintext or the cluster's other Secrets.
//!
//! Every reconciler that produces Secrets watches them the same way:
//! - only Secrets carrying its kind's uid label (the API server filters by label selector, and by
//!   an optional field selector, such as the syncer's "not in the key namespace"), so memory does
//!   not grow with the cluster's unrelated Secrets;
//! - as metadata only (`PartialObjectMeta`): no value ever crosses the watch;
//! - keeping only what its reconciler asks of the watch ([`Kept`]): the SealedSecret reconciler
//!   only asks whether a Secret is still at the version it wrote, so it keeps each Secret's
//!   resourceVersion by namespace and name (about 150 bytes a Secret); the ExternalSecret
//!   reconciler decides ownership from the watched metadata, so it keeps all of it but
//!   `managedFields`.
//!
//! A `bitnami.com` SealedSecret's Secret carries no seal label (Bitnami's shape has none, and
//! Bitnami's controller would remove one), so [`watch_owned`] watches every Secret's metadata in
//! the namespace and keeps only those whose owner references name the given kind: the API
//! server still sends every Secret's metadata, as it does to Bitnami's own Secret informer, but
//! the store holds only the kept ones. A Secret that loses its owner reference leaves the store and
//! triggers nothing; its object is reconciled again at its next change or key reload.
//!
//! [`ProducedSecrets::metadata`] then answers "is the Secret still the one I wrote?" from the
//! watch when it has caught up with that write, and from the API server when it has not, so a
//! lagging watch is never taken for somebody else's change.

use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, ResourceExt};

/// The watched metadata of the Secrets one reconciler produced, and a client to ask the API
/// server when the watch lags.
#[derive(Clone)]
pub struct ProducedSecrets {
    known: Known,
    client: Client,
}

/// How much of each produced Secret's metadata a watch keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kept {
    /// The resourceVersion, by namespace and name: enough for [`ProducedSecrets::is_at`];
    /// [`ProducedSecrets::metadata`] then always asks the API server.
    Version,
    /// All of it but `managedFields`: [`ProducedSecrets::metadata`] answers from the watch.
    Metadata,
}

/// What a watch keeps, by [`Kept`].
#[derive(Clone)]
enum Known {
    Version(Arc<Mutex<Versions>>),
    Metadata(Store<PartialObjectMeta<Secret>>),
}

/// The resourceVersion of each watched Secret by `namespace/name`, kept as a reflector keeps its
/// store: a relist (`Init` .. `InitDone`) fills a new map that replaces the old one when complete.
#[derive(Default)]
struct Versions {
    current: HashMap<Box<str>, Box<str>>,
    relisting: Option<HashMap<Box<str>, Box<str>>>,
}

impl Versions {
    fn apply(&mut self, event: &watcher::Event<PartialObjectMeta<Secret>>) {
        let entry = |secret: &PartialObjectMeta<Secret>| {
            let version = secret
                .metadata
                .resource_version
                .as_deref()
                .unwrap_or_default();
            (key_of(secret), Box::from(version))
        };
        match event {
            watcher::Event::Apply(secret) => {
                let (key, version) = entry(secret);
                self.current.insert(key, version);
            }
            watcher::Event::Delete(secret) => {
                self.current.remove(&key_of(secret));
            }
            watcher::Event::Init => self.relisting = Some(HashMap::new()),
            watcher::Event::InitApply(secret) => {
                let (key, version) = entry(secret);
                self.relisting.get_or_insert_default().insert(key, version);
            }
            watcher::Event::InitDone => {
                if let Some(listed) = self.relisting.take() {
                    self.current = listed;
                }
            }
        }
    }

    fn get(&self, namespace: &str, name: &str) -> Option<&str> {
        self.current
            .get(key(namespace, name).as_str())
            .map(|v| &**v)
    }
}

fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

fn key_of(secret: &PartialObjectMeta<Secret>) -> Box<str> {
    key(
        secret.metadata.namespace.as_deref().unwrap_or_default(),
        secret.metadata.name.as_deref().unwrap_or_default(),
    )
    .into_boxed_str()
}

/// The Secrets labelled `uid_label` in `namespace` (every namespace when `None`), restricted by
/// `fields` when given, keeping `kept` of each: their store, and the stream of their changes that
/// drives the store (it must be polled, normally as a controller's `watches_stream`).
pub fn watch(
    client: &Client,
    namespace: Option<&str>,
    uid_label: &'static str,
    fields: Option<&str>,
    kept: Kept,
) -> (
    ProducedSecrets,
    impl Stream<Item = Result<PartialObjectMeta<Secret>, watcher::Error>> + Send + use<>,
) {
    let mut config = watcher::Config::default().labels(uid_label);
    if let Some(fields) = fields {
        config = config.fields(fields);
    }
    reflect(client, namespace, config, kept, |_| true)
}

/// The Secrets in `namespace` (every namespace when `None`) with an owner reference of
/// `api_version` and `kind`, found by watching every Secret's metadata and keeping only those
/// (with [`Kept::Version`] and their owner references): their store, and the stream of their
/// changes, as [`watch`].
pub fn watch_owned(
    client: &Client,
    namespace: Option<&str>,
    api_version: &'static str,
    kind: &'static str,
) -> (
    ProducedSecrets,
    impl Stream<Item = Result<PartialObjectMeta<Secret>, watcher::Error>> + Send + use<>,
) {
    reflect(
        client,
        namespace,
        watcher::Config::default(),
        Kept::Version,
        move |secret: &PartialObjectMeta<Secret>| owned_by(secret, api_version, kind),
    )
}

/// Whether `secret` has an owner reference of `api_version` and `kind`.
fn owned_by(secret: &PartialObjectMeta<Secret>, api_version: &str, kind: &str) -> bool {
    secret
        .owner_references()
        .iter()
        .any(|owner| owner.api_version == api_version && owner.kind == kind)
}

/// The watch of the Secrets `config` selects in `namespace`, of which only those `keep` accepts
/// are kept (`kept` of each) and reported.
fn reflect<F>(
    client: &Client,
    namespace: Option<&str>,
    config: watcher::Config,
    kept: Kept,
    keep: F,
) -> (
    ProducedSecrets,
    impl Stream<Item = Result<PartialObjectMeta<Secret>, watcher::Error>> + Send + use<F>,
)
where
    F: Fn(&PartialObjectMeta<Secret>) -> bool + Clone + Send + 'static,
{
    let api: Api<PartialObjectMeta<Secret>> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let keeps = keep.clone();
    let events = watcher(api, config)
        .default_backoff()
        .modify(|secret| secret.managed_fields_mut().clear())
        // A Secret not kept is never known; one that stops being kept is forgotten.
        .filter_map(move |event| {
            let event = event.map(|event| match event {
                watcher::Event::InitApply(secret) if !keeps(&secret) => None,
                watcher::Event::Apply(secret) if !keeps(&secret) => {
                    Some(watcher::Event::Delete(secret))
                }
                event => Some(event),
            });
            std::future::ready(event.transpose())
        });
    let (known, events) = match kept {
        Kept::Metadata => {
            let (store, writer) = reflector::store();
            (Known::Metadata(store), reflector(writer, events).boxed())
        }
        Kept::Version => {
            let versions = Arc::new(Mutex::new(Versions::default()));
            let writer = Arc::clone(&versions);
            let events = events.inspect_ok(move |event| {
                writer
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .apply(event);
            });
            (Known::Version(versions), events.boxed())
        }
    };
    let changes = events
        .touched_objects()
        .try_filter(move |secret| std::future::ready(keep(secret)));
    let produced = ProducedSecrets {
        known,
        client: client.clone(),
    };
    (produced, changes)
}

impl ProducedSecrets {
    /// The metadata of Secret `namespace/name`: from the watch when it keeps all of it
    /// ([`Kept::Metadata`]) and has the Secret at `expected` (the resourceVersion this reconciler
    /// last wrote), or has it at all when nothing is expected; else from the API server.
    ///
    /// # Errors
    /// The API server could not be asked.
    pub async fn metadata(
        &self,
        namespace: &str,
        name: &str,
        expected: Option<&str>,
    ) -> Result<Option<PartialObjectMeta<Secret>>, kube::Error> {
        if let Known::Metadata(store) = &self.known
            && let Some(watched) = store.get(&ObjectRef::new(name).within(namespace))
            && at(watched.metadata.resource_version.as_deref(), expected)
        {
            return Ok(Some((*watched).clone()));
        }
        Api::<Secret>::namespaced(self.client.clone(), namespace)
            .get_metadata_opt(name)
            .await
    }

    /// The resourceVersion the watch has of Secret `namespace/name`.
    fn watched_version(&self, namespace: &str, name: &str) -> Option<String> {
        match &self.known {
            Known::Version(versions) => versions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(namespace, name)
                .map(str::to_owned),
            Known::Metadata(store) => store
                .get(&ObjectRef::new(name).within(namespace))
                .and_then(|watched| watched.metadata.resource_version.clone()),
        }
    }

    /// Whether Secret `namespace/name` is still at `version`, the one this reconciler wrote.
    ///
    /// # Errors
    /// The API server could not be asked.
    pub async fn is_at(
        &self,
        namespace: &str,
        name: &str,
        version: &str,
    ) -> Result<bool, kube::Error> {
        if self.watched_version(namespace, name).as_deref() == Some(version) {
            return Ok(true);
        }
        let current = Api::<Secret>::namespaced(self.client.clone(), namespace)
            .get_metadata_opt(name)
            .await?;
        Ok(current
            .and_then(|secret| secret.metadata.resource_version)
            .as_deref()
            == Some(version))
    }
}

/// Whether a watched Secret at `watched` can answer for one expected at `expected`.
fn at(watched: Option<&str>, expected: Option<&str>) -> bool {
    expected.is_none() || watched == expected
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watch_answers_only_once_it_has_the_expected_write() {
        assert!(at(Some("7"), Some("7")));
        assert!(!at(Some("6"), Some("7")));
        assert!(!at(None, Some("7")));
        assert!(at(Some("6"), None));
        assert!(at(None, None));
    }

    #[test]
    fn versions_follow_the_watch_and_a_relist_replaces_them_whole() {
        use kube::api::ObjectMeta;
        use kube::core::PartialObjectMetaExt;
        let secret = |name: &str, version: &str| {
            ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ml".into()),
                resource_version: Some(version.into()),
                ..ObjectMeta::default()
            }
            .into_response_partial::<Secret>()
        };
        let mut versions = Versions::default();
        versions.apply(&watcher::Event::Init);
        versions.apply(&watcher::Event::InitApply(secret("a", "1")));
        versions.apply(&watcher::Event::InitApply(secret("b", "2")));
        // Until the list is complete, nothing is known.
        assert_eq!(versions.get("ml", "a"), None);
        versions.apply(&watcher::Event::InitDone);
        assert_eq!(versions.get("ml", "a"), Some("1"));
        assert_eq!(versions.get("other", "a"), None);
        versions.apply(&watcher::Event::Apply(secret("a", "5")));
        versions.apply(&watcher::Event::Delete(secret("b", "2")));
        assert_eq!(versions.get("ml", "a"), Some("5"));
        assert_eq!(versions.get("ml", "b"), None);
        // A relist keeps answering from the old map until it is done, then replaces it.
        versions.apply(&watcher::Event::Init);
        versions.apply(&watcher::Event::InitApply(secret("c", "9")));
        assert_eq!(versions.get("ml", "a"), Some("5"));
        versions.apply(&watcher::Event::InitDone);
        assert_eq!(versions.get("ml", "a"), None);
        assert_eq!(versions.get("ml", "c"), Some("9"));
    }

    #[test]
    fn only_secrets_owned_by_the_kind_are_kept() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
        let with_owner = |api_version: &str, kind: &str| {
            let mut secret = PartialObjectMeta::<Secret>::default();
            secret.metadata.owner_references = Some(vec![OwnerReference {
                api_version: api_version.into(),
                kind: kind.into(),
                ..OwnerReference::default()
            }]);
            secret
        };
        let wanted = ("bitnami.com/v1alpha1", "SealedSecret");
        assert!(owned_by(
            &with_owner(wanted.0, wanted.1),
            wanted.0,
            wanted.1
        ));
        assert!(!owned_by(
            &with_owner("seal.dev/v1alpha1", wanted.1),
            wanted.0,
            wanted.1
        ));
        assert!(!owned_by(
            &with_owner(wanted.0, "Other"),
            wanted.0,
            wanted.1
        ));
        assert!(!owned_by(&PartialObjectMeta::default(), wanted.0, wanted.1));
    }
}
