//! Whether a Secret already holds what a write would give it, so that the write is skipped: the
//! comparison both reconcilers make before a server-side apply (a SealedSecret after decrypting,
//! an ExternalSecret after reading its provider). Comparing the Secret itself, rather than a
//! digest written next to it, keeps every digest of values out of the Secret's metadata, which
//! far more people may read than its data.
//!
//! Guarantees, for a `desired` Secret against the `existing` one:
//! - every label and annotation `desired` sets has the same value, and other writers' labels and
//!   annotations are not compared;
//! - every owner reference `desired` sets is present (by uid);
//! - the type and immutability match where `desired` sets them;
//! - every item `desired` sets has the same bytes, and with [`Items::Exactly`] (a Secret the
//!   writer owns whole) no other item is there, so an item the object no longer produces is
//!   removed by the next write; with [`Items::AtLeast`] (items added to someone else's Secret, or
//!   a `desired` that carries no items at all) other items are the owner's.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

/// How the items of a Secret are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Items {
    /// The Secret holds exactly the items `desired` sets.
    Exactly,
    /// The Secret holds at least the items `desired` sets.
    AtLeast,
}

/// Whether `existing` already has everything `desired` sets, so an apply would change nothing.
pub fn already_applied(existing: &Secret, desired: &Secret, items: Items) -> bool {
    let contains = |have: Option<&BTreeMap<String, String>>,
                    want: Option<&BTreeMap<String, String>>| {
        want.into_iter()
            .flatten()
            .all(|(k, v)| have.and_then(|h| h.get(k)) == Some(v))
    };
    let empty = BTreeMap::new();
    let have = existing.data.as_ref().unwrap_or(&empty);
    let want = desired.data.as_ref().unwrap_or(&empty);
    let data_matches = want
        .iter()
        .all(|(item, value)| have.get(item) == Some(value))
        && (items == Items::AtLeast || have.len() == want.len());
    let owners_match = desired
        .metadata
        .owner_references
        .as_ref()
        .is_none_or(|want| {
            want.iter()
                .all(|w| existing.owner_references().iter().any(|o| o.uid == w.uid))
        });
    data_matches
        && owners_match
        && contains(
            existing.metadata.labels.as_ref(),
            desired.metadata.labels.as_ref(),
        )
        && contains(
            existing.metadata.annotations.as_ref(),
            desired.metadata.annotations.as_ref(),
        )
        && (desired.type_.is_none() || desired.type_ == existing.type_)
        && (desired.immutable.is_none() || desired.immutable == existing.immutable)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    use super::*;

    fn secret(items: &[(&str, &str)], labels: &[(&str, &str)]) -> Secret {
        Secret {
            metadata: ObjectMeta {
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            data: Some(
                items
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            type_: Some("Opaque".into()),
            ..Secret::default()
        }
    }

    #[test]
    fn items_compare_by_bytes_and_exactly_means_no_other_item() {
        let desired = secret(&[("a", "1")], &[]);
        for (existing, exactly, at_least) in [
            (secret(&[("a", "1")], &[]), true, true),
            (secret(&[("a", "2")], &[]), false, false),
            (secret(&[], &[]), false, false),
            // An item the object no longer produces, or someone else's.
            (secret(&[("a", "1"), ("b", "1")], &[]), false, true),
        ] {
            assert_eq!(
                already_applied(&existing, &desired, Items::Exactly),
                exactly,
                "{existing:?}"
            );
            assert_eq!(
                already_applied(&existing, &desired, Items::AtLeast),
                at_least,
                "{existing:?}"
            );
        }
        // A desired Secret without items compares the rest only.
        let skeleton = Secret {
            data: None,
            ..desired.clone()
        };
        assert!(already_applied(
            &secret(&[("a", "9")], &[]),
            &skeleton,
            Items::AtLeast
        ));
    }

    #[test]
    fn metadata_is_compared_where_desired_sets_it() {
        let desired = secret(&[("a", "1")], &[("app", "web")]);
        assert!(already_applied(
            &secret(&[("a", "1")], &[("app", "web"), ("team", "ml")]),
            &desired,
            Items::Exactly
        ));
        assert!(!already_applied(
            &secret(&[("a", "1")], &[("app", "api")]),
            &desired,
            Items::Exactly
        ));
        let mut typed = desired.clone();
        typed.type_ = Some("kubernetes.io/tls".into());
        assert!(!already_applied(
            &secret(&[("a", "1")], &[("app", "web")]),
            &typed,
            Items::Exactly
        ));
        let mut immutable = desired.clone();
        immutable.immutable = Some(true);
        assert!(!already_applied(
            &secret(&[("a", "1")], &[("app", "web")]),
            &immutable,
            Items::Exactly
        ));
        let mut owned = desired;
        owned.metadata.owner_references = Some(vec![OwnerReference {
            uid: "u1".into(),
            ..OwnerReference::default()
        }]);
        let mut existing = secret(&[("a", "1")], &[("app", "web")]);
        assert!(!already_applied(&existing, &owned, Items::Exactly));
        existing.metadata.owner_references = owned.metadata.owner_references.clone();
        assert!(already_applied(&existing, &owned, Items::Exactly));
    }
}
