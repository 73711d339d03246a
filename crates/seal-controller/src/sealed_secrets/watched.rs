//! What the SealedSecret reconciler keeps of each seal.dev SealedSecret between reconciles: the
//! object without its ciphertext.
//!
//! The controller caches every SealedSecret it watches, and the ciphertext is most of each object
//! (an RSA-4096 block per item, base64: about 700 bytes an item). It is needed only to decrypt,
//! which happens when an object is new or changed, or its Secret was edited; every other
//! reconcile (the events the controller's own writes cause, a key reload, a restart, a failover)
//! is decided from what is kept here:
//! - the identity (name, namespace, uid, generation, resourceVersion) and the status;
//! - the spec without the ciphertext: the template, the scope, the rollout targets and the
//!   *names* of the sealed items (the values are emptied);
//! - the [`SpecDigest`] of the whole spec as the API server sent it, which the Secret's record
//!   ([`super::provenance`]) is checked against.
//!
//! Everything else of the object's metadata is dropped as it arrives: `managedFields` (with
//! server-side apply about a third of each object), and the annotations, among them kubectl's
//! `last-applied-configuration`, which holds the whole object, ciphertext included.
//!
//! The cached form is built for size, not reuse: the item names as one boxed slice rather than a
//! map with emptied values, and the template and status boxed (most objects have no template).
//! At 10,000 objects that is what lets the controller's memory grow by less than the objects
//! themselves (`cargo xtask bench controller`).
//!
//! A [`Watched`] deserializes from a SealedSecret (the watch reads it straight into this shape).
//! [`Watched::without_ciphertext`] rebuilds the SealedSecret it stands for, with every item's value
//! empty, named so that no caller takes it for one to decrypt: decrypting takes the SealedSecret
//! read afresh ([`Watched::fetch`]); a stripped one would fail every item.

use std::borrow::Cow;

use kube::api::ObjectMeta;
use kube::core::NamespaceResourceScope;
use kube::{Resource, ResourceExt};
use seal_api::SealedSecret;
use seal_api::sealed_secret::{SealedSecretSpec, SealedSecretStatus, SecretTemplate};
use seal_api::unsealing::item_names;
use serde::Deserialize;

use super::provenance::{Source, SpecDigest};

/// A seal.dev SealedSecret as the reconciler caches it: without its ciphertext (see the module
/// doc).
#[derive(Clone, Debug, Deserialize)]
#[serde(from = "SealedSecret")]
pub struct Watched {
    /// Its identity: name, namespace, uid, generation, resourceVersion, deletion timestamp.
    metadata: ObjectMeta,
    /// The names of its sealed items.
    items: Box<[Box<str>]>,
    template: Option<Box<SecretTemplate>>,
    status: Option<Box<SealedSecretStatus>>,
    /// The digest of the spec it arrived with.
    spec_digest: SpecDigest,
}

impl From<SealedSecret> for Watched {
    fn from(sealed: SealedSecret) -> Self {
        let spec_digest = SpecDigest::of(&sealed.spec);
        let meta = sealed.metadata;
        Self {
            metadata: ObjectMeta {
                name: meta.name,
                namespace: meta.namespace,
                uid: meta.uid,
                generation: meta.generation,
                resource_version: meta.resource_version,
                deletion_timestamp: meta.deletion_timestamp,
                ..ObjectMeta::default()
            },
            items: sealed
                .spec
                .encrypted_data
                .into_keys()
                .map(String::into_boxed_str)
                .collect(),
            template: sealed.spec.template.map(Box::new),
            status: sealed.status.map(Box::new),
            spec_digest,
        }
    }
}

impl Watched {
    /// The SealedSecret this stands for, with every item's value empty: its identity, status,
    /// template and item names. Enough to decide ownership, shape and status; never to decrypt.
    pub fn without_ciphertext(&self) -> SealedSecret {
        SealedSecret {
            metadata: self.metadata.clone(),
            spec: SealedSecretSpec {
                encrypted_data: self
                    .items
                    .iter()
                    .map(|name| (name.to_string(), String::new()))
                    .collect(),
                template: self.template.as_deref().cloned(),
                ..SealedSecretSpec::default()
            },
            status: self.status.as_deref().cloned(),
        }
    }

    /// What the Secret's record is checked against: this object, by its spec's digest.
    pub fn source(&self) -> Source<'_> {
        let items = item_names(self.items.iter().map(|n| &**n), self.template.as_deref());
        Source::new(&self.metadata, items, self.spec_digest)
    }

    /// The object as it is now, ciphertext included: `None` when it is gone.
    ///
    /// # Errors
    /// The API server could not be asked.
    pub async fn fetch(&self, client: kube::Client) -> Result<Option<SealedSecret>, kube::Error> {
        kube::Api::<SealedSecret>::namespaced(client, &self.namespace().unwrap_or_default())
            .get_opt(&self.name_any())
            .await
    }
}

impl Resource for Watched {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        SealedSecret::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        SealedSecret::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        SealedSecret::version(dt)
    }

    fn api_version(dt: &()) -> Cow<'_, str> {
        SealedSecret::api_version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        SealedSecret::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
    use seal_api::sealed_secret::{SealedSecretSpec, SecretTemplate};

    fn arrived() -> SealedSecret {
        let mut sealed = SealedSecret::new(
            "db",
            SealedSecretSpec {
                encrypted_data: BTreeMap::from([
                    ("password".into(), "AgBciphertext1".into()),
                    ("user".into(), "AgBciphertext2".into()),
                ]),
                template: Some(SecretTemplate {
                    type_: Some("kubernetes.io/basic-auth".into()),
                    ..SecretTemplate::default()
                }),
                ..SealedSecretSpec::default()
            },
        );
        sealed.metadata = ObjectMeta {
            name: Some("db".into()),
            namespace: Some("ml".into()),
            uid: Some("u1".into()),
            generation: Some(3),
            resource_version: Some("42".into()),
            annotations: Some(BTreeMap::from([(
                "kubectl.kubernetes.io/last-applied-configuration".into(),
                "{\"spec\":{\"encryptedData\":{\"password\":\"AgBciphertext1\"}}}".into(),
            )])),
            managed_fields: Some(vec![ManagedFieldsEntry::default()]),
            ..ObjectMeta::default()
        };
        sealed
    }

    #[test]
    fn the_cache_keeps_no_ciphertext_but_the_names_identity_and_template() {
        let sealed = arrived();
        let watched = Watched::from(sealed.clone());
        let kept = watched.without_ciphertext();
        let cached = serde_json::to_string(&kept).unwrap();
        assert!(!cached.contains("AgBciphertext"), "{cached}");
        assert_eq!(
            kept.spec.encrypted_data.keys().collect::<Vec<_>>(),
            ["password", "user"]
        );
        assert_eq!(kept.spec.template, sealed.spec.template);
        assert_eq!(watched.uid().as_deref(), Some("u1"));
        assert_eq!(watched.meta().generation, Some(3));
        assert_eq!(watched.resource_version().as_deref(), Some("42"));
        assert!(watched.meta().annotations.is_none());
        assert!(watched.meta().managed_fields.is_none());
        // The record is checked against the spec it arrived with, not the stripped one.
        assert_eq!(watched.spec_digest, SpecDigest::of(&sealed.spec));
        assert_ne!(watched.spec_digest, SpecDigest::of(&kept.spec));
    }

    #[test]
    fn the_watch_reads_a_sealed_secret_straight_into_the_cached_shape() {
        let json = serde_json::to_value(arrived()).unwrap();
        let watched: Watched = serde_json::from_value(json).unwrap();
        assert_eq!(watched.spec_digest, SpecDigest::of(&arrived().spec));
        let kept = watched.without_ciphertext();
        assert!(kept.spec.encrypted_data.values().all(String::is_empty));
        assert_eq!(kept.spec.encrypted_data.len(), 2);
        assert_eq!(Watched::plural(&()), SealedSecret::plural(&()));
        assert_eq!(Watched::api_version(&()), SealedSecret::api_version(&()));
    }
}
