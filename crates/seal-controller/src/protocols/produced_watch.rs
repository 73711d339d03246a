//! The produced-Secret watch: how a reconciler learns that a Secret it made was changed or
//! deleted, without holding any plaintext or the cluster's other Secrets.
//!
//! Every reconciler that produces Secrets watches them the same way:
//! - only Secrets carrying its kind's uid label (the API server filters by label selector, and by
//!   an optional field selector, such as the syncer's "not in the key namespace"), so memory does
//!   not grow with the cluster's unrelated Secrets;
//! - as metadata only (`PartialObjectMeta`): no value ever crosses the watch;
//! - keeping only what its reconciler asks of the watch ([`Kept`]): the SealedSecret reconciler
//!   only asks whether a Secret is still at the version it wrote, so it keeps name, namespace
//!   and resourceVersion (a few hundred bytes a Secret); the ExternalSecret reconciler decides
//!   ownership from the watched metadata, so it keeps all of it but `managedFields`.
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
use kube::api::ObjectMeta;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, ResourceExt};

/// The watched metadata of the Secrets one reconciler produced, and a client to ask the API
/// server when the watch lags.
#[derive(Clone)]
pub struct ProducedSecrets {
    store: Store<PartialObjectMeta<Secret>>,
    kept: Kept,
    client: Client,
}

/// How much of each produced Secret's metadata a watch keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kept {
    /// Name, namespace and resourceVersion: enough for [`ProducedSecrets::is_at`];
    /// [`ProducedSecrets::metadata`] then always asks the API server.
    Version,
    /// All of it but `managedFields`: [`ProducedSecrets::metadata`] answers from the watch.
    Metadata,
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
    reflect(client, namespace, config, kept, false, |_| true)
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
        true,
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
/// are stored and reported, each reduced to `kept` ([`slim`]), with its owner references when
/// `with_owners` (which `keep` then reads).
fn reflect<F>(
    client: &Client,
    namespace: Option<&str>,
    config: watcher::Config,
    kept: Kept,
    with_owners: bool,
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
    let (store, writer) = reflector::store();
    let changes = reflector(
        writer,
        watcher(api, config)
            .default_backoff()
            .modify(move |secret| slim(secret, kept, with_owners))
            // A Secret not kept never enters the store; one that stops being kept leaves it.
            .filter_map(move |event| {
                let event = event.map(|event| match event {
                    watcher::Event::InitApply(secret) if !keeps(&secret) => None,
                    watcher::Event::Apply(secret) if !keeps(&secret) => {
                        Some(watcher::Event::Delete(secret))
                    }
                    event => Some(event),
                });
                std::future::ready(event.transpose())
            }),
    )
    .touched_objects()
    .try_filter(move |secret| std::future::ready(keep(secret)));
    let produced = ProducedSecrets {
        store,
        kept,
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
        if self.kept == Kept::Metadata
            && let Some(watched) = self.watched(namespace, name, expected)
        {
            return Ok(Some(watched));
        }
        Api::<Secret>::namespaced(self.client.clone(), namespace)
            .get_metadata_opt(name)
            .await
    }

    /// The watched Secret `namespace/name`, as kept, if the watch has it at `expected`.
    fn watched(
        &self,
        namespace: &str,
        name: &str,
        expected: Option<&str>,
    ) -> Option<PartialObjectMeta<Secret>> {
        self.store
            .get(&ObjectRef::new(name).within(namespace))
            .filter(|watched| at(watched.metadata.resource_version.as_deref(), expected))
            .map(|watched| (*watched).clone())
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
        let current = match self.watched(namespace, name, Some(version)) {
            Some(watched) => Some(watched),
            None => {
                Api::<Secret>::namespaced(self.client.clone(), namespace)
                    .get_metadata_opt(name)
                    .await?
            }
        };
        Ok(current
            .and_then(|secret| secret.metadata.resource_version)
            .as_deref()
            == Some(version))
    }
}

/// Reduces a watched Secret's metadata to `kept`: without `managedFields`, and for
/// [`Kept::Version`] to its name, namespace and resourceVersion, and its owner references when
/// `with_owners`.
fn slim(secret: &mut PartialObjectMeta<Secret>, kept: Kept, with_owners: bool) {
    secret.types = None;
    if kept == Kept::Metadata {
        secret.metadata.managed_fields = None;
        return;
    }
    let meta = std::mem::take(&mut secret.metadata);
    secret.metadata = ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        resource_version: meta.resource_version,
        owner_references: meta.owner_references.filter(|_| with_owners),
        ..ObjectMeta::default()
    };
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
    fn only_what_the_reconciler_asks_is_kept() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
        use kube::core::PartialObjectMetaExt;
        use std::collections::BTreeMap;
        let watched = || {
            ObjectMeta {
                name: Some("db".into()),
                namespace: Some("ml".into()),
                resource_version: Some("7".into()),
                uid: Some("u".into()),
                labels: Some(BTreeMap::from([("l".into(), "v".into())])),
                annotations: Some(BTreeMap::from([("a".into(), "v".into())])),
                owner_references: Some(vec![OwnerReference::default()]),
                ..ObjectMeta::default()
            }
            .into_response_partial::<Secret>()
        };
        let mut secret = watched();
        slim(&mut secret, Kept::Version, false);
        let expected = ObjectMeta {
            name: Some("db".into()),
            namespace: Some("ml".into()),
            resource_version: Some("7".into()),
            ..ObjectMeta::default()
        };
        assert_eq!(secret.metadata, expected);
        let mut secret = watched();
        slim(&mut secret, Kept::Version, true);
        assert_eq!(secret.metadata.owner_references.map(|o| o.len()), Some(1));
        assert!(secret.metadata.labels.is_none() && secret.metadata.annotations.is_none());
        let mut secret = watched();
        slim(&mut secret, Kept::Metadata, false);
        let mut all = watched();
        all.metadata.managed_fields = None;
        assert_eq!(secret.metadata, all.metadata);
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
