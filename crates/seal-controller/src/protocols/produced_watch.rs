//! The produced-Secret watch: how a reconciler learns that a Secret it made was changed or
//! deleted, without holding any plaintext or the cluster's other Secrets.
//!
//! Every reconciler that produces Secrets watches them the same way:
//! - only Secrets carrying its kind's uid label (the API server filters by label selector, and by
//!   an optional field selector, such as the syncer's "not in the key namespace"), so memory does
//!   not grow with the cluster's unrelated Secrets;
//! - as metadata only (`PartialObjectMeta`): no value ever crosses the watch;
//! - without `managedFields`, most of what is left of each object under server-side apply.
//!
//! [`ProducedSecrets::metadata`] then answers "is the Secret still the one I wrote?" from the
//! watch when it has caught up with that write, and from the API server when it has not, so a
//! lagging watch is never taken for somebody else's change.

use futures::Stream;
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, ResourceExt};

/// The watched metadata of the Secrets one reconciler produced, and a client to ask the API
/// server when the watch lags.
#[derive(Clone)]
pub struct ProducedSecrets {
    store: Store<PartialObjectMeta<Secret>>,
    client: Client,
}

/// The Secrets labelled `uid_label` in `namespace` (every namespace when `None`), restricted by
/// `fields` when given: their store, and the stream of their changes that drives the store (it
/// must be polled, normally as a controller's `watches_stream`).
pub fn watch(
    client: &Client,
    namespace: Option<&str>,
    uid_label: &'static str,
    fields: Option<&str>,
) -> (
    ProducedSecrets,
    impl Stream<Item = Result<PartialObjectMeta<Secret>, watcher::Error>> + Send + use<>,
) {
    let api: Api<PartialObjectMeta<Secret>> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut config = watcher::Config::default().labels(uid_label);
    if let Some(fields) = fields {
        config = config.fields(fields);
    }
    let (store, writer) = reflector::store();
    let changes = reflector(
        writer,
        watcher(api, config)
            .default_backoff()
            .modify(|secret| secret.managed_fields_mut().clear()),
    )
    .touched_objects();
    let produced = ProducedSecrets {
        store,
        client: client.clone(),
    };
    (produced, changes)
}

impl ProducedSecrets {
    /// The metadata of Secret `namespace/name`: from the watch when it has the Secret at
    /// `expected` (the resourceVersion this reconciler last wrote), or has it at all when nothing
    /// is expected; else from the API server.
    ///
    /// # Errors
    /// The API server could not be asked.
    pub async fn metadata(
        &self,
        namespace: &str,
        name: &str,
        expected: Option<&str>,
    ) -> Result<Option<PartialObjectMeta<Secret>>, kube::Error> {
        if let Some(watched) = self.store.get(&ObjectRef::new(name).within(namespace))
            && at(watched.metadata.resource_version.as_deref(), expected)
        {
            return Ok(Some((*watched).clone()));
        }
        Api::<Secret>::namespaced(self.client.clone(), namespace)
            .get_metadata_opt(name)
            .await
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
        let current = self.metadata(namespace, name, Some(version)).await?;
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
}
