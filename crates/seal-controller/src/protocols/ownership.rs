//! Whose a Secret is, and whether a reconciler may write it: the one takeover rule of the
//! controller, shared by SealedSecrets and ExternalSecrets.
//!
//! A Secret was made by an object when it carries that object's uid in the object kind's label
//! ([`seal_api::names::SEALED_SECRET_UID_LABEL`], [`seal_api::names::EXTERNAL_SECRET_UID_LABEL`])
//! or an owner reference with that uid. Any other existing Secret is its owner's, and is written
//! only with the owner's opt-in on the Secret itself:
//! - [`MANAGED_ANNOTATION`] `"true"`: the controller may take the whole Secret over;
//! - [`PATCH_ANNOTATION`] `"true"`: the controller may add its items and must leave the Secret's
//!   type, metadata and other items as they are.
//!
//! One more case needs no opt-in: a Secret controlled by a peer controller's object that the
//! reconciled object replaces ([`Predecessor`]: the External Secrets Operator's ExternalSecret of
//! the same name, which `seal convert` turned into this one). The user asked for the move by
//! applying the converted object; the writer first removes the predecessor's controlling owner
//! reference ([`without_predecessor`]), since a Secret has at most one controller.
//!
//! What a reconciler asks for is a [`Request`]; [`decide`] answers it. The answers are the same
//! for both kinds except where their peers differ on purpose: a SealedSecret's target annotated
//! `patch` gets items only even when the SealedSecret made it (Bitnami's `patch`), while an
//! ExternalSecret chooses by its `creationPolicy`.
//!
//! Writes go through server-side apply under [`field_manager`]: one manager for Secrets the
//! controller owns, one per merging object for items added to someone else's Secret.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use seal_api::names::{MANAGED_ANNOTATION, PATCH_ANNOTATION};

/// The field manager of the writes the controller makes to objects it owns.
pub const FIELD_MANAGER: &str = "seal-controller";

/// The object a Secret is produced from: the label its kind marks produced Secrets with, its
/// uid, and the peer's object it replaces, if its kind replaces one.
#[derive(Debug, Clone, Copy)]
pub struct Producer<'a> {
    /// The kind's uid label.
    pub uid_label: &'static str,
    /// The object's uid.
    pub uid: &'a str,
    /// The peer controller's object of the same name this one replaces.
    pub predecessor: Option<Predecessor<'a>>,
}

/// A peer controller's object that a seal object replaces: a Secret it controls is taken over
/// without an opt-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Predecessor<'a> {
    /// The peer's API group (`external-secrets.io`), any version.
    pub api_group: &'static str,
    /// The peer's kind.
    pub kind: &'static str,
    /// The name both objects share.
    pub name: &'a str,
}

impl Predecessor<'_> {
    /// Whether `owner` is this predecessor's controlling reference.
    fn controls(&self, owner: &OwnerReference) -> bool {
        owner.controller == Some(true)
            && owner.api_version.split_once('/').map(|(group, _)| group) == Some(self.api_group)
            && owner.kind == self.kind
            && owner.name == self.name
    }
}

/// Whether `secret` is controlled by `producer`'s predecessor.
pub fn controlled_by_predecessor(secret: &ObjectMeta, producer: &Producer<'_>) -> bool {
    producer.predecessor.is_some_and(|predecessor| {
        secret
            .owner_references
            .iter()
            .flatten()
            .any(|owner| predecessor.controls(owner))
    })
}

/// The owner references `secret` keeps once `producer` takes it over from its predecessor, or
/// `None` when no predecessor controls it (nothing to remove).
pub fn without_predecessor(
    secret: &ObjectMeta,
    producer: &Producer<'_>,
) -> Option<Vec<OwnerReference>> {
    let predecessor = producer.predecessor?;
    let owners = secret.owner_references.as_deref().unwrap_or_default();
    owners
        .iter()
        .any(|owner| predecessor.controls(owner))
        .then(|| {
            owners
                .iter()
                .filter(|owner| !predecessor.controls(owner))
                .cloned()
                .collect()
        })
}

/// What a reconciler asks to do with the Secret its object names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// The whole Secret (a SealedSecret): items only when the existing Secret is annotated
    /// `patch`.
    WholeUnlessPatch,
    /// The whole Secret (an ExternalSecret's `creationPolicy: Owner` or `Orphan`).
    Whole,
    /// Items added to an existing Secret (an ExternalSecret's `creationPolicy: Merge`).
    Items,
}

/// What the reconciler may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// No Secret of that name exists: create it.
    Create,
    /// Write the whole Secret: the object made it, or its owner let the controller take it over.
    Whole,
    /// Add the object's items only; type, metadata and the other items stay the owner's.
    ItemsOnly,
    /// Items were asked for and no Secret exists to add them to.
    Missing,
    /// The Secret is someone else's and its owner did not opt in: leave it alone.
    Refuse,
}

/// Whether `secret` was made by `producer`: its uid label, or an owner reference to it.
pub fn made_by(secret: &ObjectMeta, producer: &Producer<'_>) -> bool {
    !producer.uid.is_empty()
        && (secret
            .labels
            .as_ref()
            .and_then(|labels| labels.get(producer.uid_label))
            .is_some_and(|uid| uid == producer.uid)
            || secret
                .owner_references
                .iter()
                .flatten()
                .any(|owner| owner.uid == producer.uid))
}

/// Whether the Secret's owner set `annotation` to exactly `"true"`.
pub fn opted_in(secret: &ObjectMeta, annotation: &str) -> bool {
    secret
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(annotation))
        .is_some_and(|value| value == "true")
}

/// What `producer` may do with `existing` (the Secret of its name, if any) for `request`.
pub fn decide(
    existing: Option<&ObjectMeta>,
    producer: &Producer<'_>,
    request: Request,
) -> Decision {
    let Some(secret) = existing else {
        return match request {
            Request::Items => Decision::Missing,
            Request::Whole | Request::WholeUnlessPatch => Decision::Create,
        };
    };
    let ours = made_by(secret, producer);
    let managed = opted_in(secret, MANAGED_ANNOTATION);
    let patch = opted_in(secret, PATCH_ANNOTATION);
    let succeeded = controlled_by_predecessor(secret, producer);
    match request {
        Request::WholeUnlessPatch if patch => Decision::ItemsOnly,
        Request::WholeUnlessPatch | Request::Whole if ours || managed || succeeded => {
            Decision::Whole
        }
        // `managed` lets the controller do anything with the Secret, adding items included.
        Request::Items if ours || patch || managed => Decision::ItemsOnly,
        _ => Decision::Refuse,
    }
}

/// The owner reference a produced Secret carries to the object it was made from: the
/// controlling owner, so garbage collection deletes the Secret with the object, and a foreground
/// deletion of the object waits for the Secret.
pub fn owner_reference<K: Resource<DynamicType = ()>>(object: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: object.name_any(),
        uid: object.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The field manager of a write to a produced Secret: [`FIELD_MANAGER`] for a Secret the object
/// owns; for items added to a Secret someone else owns, one per object (`seal-controller/<uid>`).
/// Server-side apply removes the fields a manager applied before and no longer applies, so under
/// one shared manager two objects adding items to one Secret would remove each other's items at
/// every write.
pub fn field_manager(items_only: bool, uid: &str) -> String {
    if items_only && !uid.is_empty() {
        format!("{FIELD_MANAGER}/{uid}")
    } else {
        FIELD_MANAGER.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use std::collections::BTreeMap;

    const LABEL: &str = "seal.dev/sealed-secret-uid";
    const PRODUCER: Producer<'static> = Producer {
        uid_label: LABEL,
        uid: "u1",
        predecessor: None,
    };

    /// A Secret's metadata: made by `uid` through the label or an owner reference, and annotated.
    fn secret(
        label_uid: Option<&str>,
        owner_uid: Option<&str>,
        annotations: &[&str],
    ) -> ObjectMeta {
        ObjectMeta {
            labels: label_uid.map(|uid| BTreeMap::from([(LABEL.to_owned(), uid.to_owned())])),
            owner_references: owner_uid.map(|uid| {
                vec![OwnerReference {
                    uid: uid.to_owned(),
                    ..OwnerReference::default()
                }]
            }),
            annotations: Some(
                annotations
                    .iter()
                    .map(|a| ((*a).to_owned(), "true".to_owned()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn made_by_means_the_uid_label_or_an_owner_reference() {
        assert!(made_by(&secret(Some("u1"), None, &[]), &PRODUCER));
        assert!(made_by(&secret(None, Some("u1"), &[]), &PRODUCER));
        assert!(!made_by(&secret(Some("u2"), Some("u3"), &[]), &PRODUCER));
        assert!(!made_by(&secret(None, None, &[]), &PRODUCER));
        // Another kind's label with the same uid is not this kind's.
        let mut other_kind = secret(None, None, &[]);
        other_kind.labels = Some(BTreeMap::from([("other".to_owned(), "u1".to_owned())]));
        assert!(!made_by(&other_kind, &PRODUCER));
        // An object without a uid (never the case for a stored object) owns nothing.
        let nobody = Producer {
            uid_label: LABEL,
            uid: "",
            predecessor: None,
        };
        assert!(!made_by(&secret(Some(""), Some(""), &[]), &nobody));
    }

    #[test]
    fn only_the_exact_opt_in_counts() {
        let mut annotated = secret(None, None, &[]);
        for (value, counts) in [("true", true), ("True", false), ("yes", false), ("", false)] {
            annotated.annotations = Some(BTreeMap::from([(
                MANAGED_ANNOTATION.to_owned(),
                value.to_owned(),
            )]));
            assert_eq!(
                opted_in(&annotated, MANAGED_ANNOTATION),
                counts,
                "{value:?}"
            );
        }
    }

    /// Every case of the rule: request x (no Secret, ours by label, ours by owner, foreign) x
    /// (no opt-in, managed, patch, both).
    #[test]
    fn decide_enumerates_every_case() {
        use Decision::{Create, ItemsOnly, Missing, Refuse, Whole};
        use Request::{Items, WholeUnlessPatch};
        let m = MANAGED_ANNOTATION;
        let p = PATCH_ANNOTATION;
        let opt_ins: [&[&str]; 4] = [&[], &[m], &[p], &[m, p]];
        // (request, ours, per opt-in) -> decision.
        let expected: [(Request, bool, [Decision; 4]); 6] = [
            (WholeUnlessPatch, true, [Whole, Whole, ItemsOnly, ItemsOnly]),
            (
                WholeUnlessPatch,
                false,
                [Refuse, Whole, ItemsOnly, ItemsOnly],
            ),
            (Request::Whole, true, [Whole, Whole, Whole, Whole]),
            (Request::Whole, false, [Refuse, Whole, Refuse, Whole]),
            (Items, true, [ItemsOnly; 4]),
            (Items, false, [Refuse, ItemsOnly, ItemsOnly, ItemsOnly]),
        ];
        for (request, ours, decisions) in expected {
            for (annotations, want) in opt_ins.iter().zip(decisions) {
                let made = if ours {
                    vec![
                        secret(Some("u1"), None, annotations),
                        secret(None, Some("u1"), annotations),
                    ]
                } else {
                    vec![secret(Some("u2"), Some("u2"), annotations)]
                };
                for existing in made {
                    assert_eq!(
                        decide(Some(&existing), &PRODUCER, request),
                        want,
                        "{request:?}, ours {ours}, {annotations:?}"
                    );
                }
            }
        }
        assert_eq!(decide(None, &PRODUCER, WholeUnlessPatch), Create);
        assert_eq!(decide(None, &PRODUCER, Request::Whole), Create);
        assert_eq!(decide(None, &PRODUCER, Items), Missing);
    }

    #[test]
    fn the_owner_reference_controls_and_blocks_deletion() {
        let mut object = k8s_openapi::api::core::v1::ConfigMap::default();
        object.metadata.name = Some("db".into());
        object.metadata.uid = Some("u1".into());
        let reference = owner_reference(&object);
        assert_eq!(
            (reference.api_version.as_str(), reference.kind.as_str()),
            ("v1", "ConfigMap")
        );
        assert_eq!(
            (reference.name.as_str(), reference.uid.as_str()),
            ("db", "u1")
        );
        assert_eq!(
            (reference.controller, reference.block_owner_deletion),
            (Some(true), Some(true))
        );
        // What decides ownership: a Secret carrying it was made by the object.
        let secret = ObjectMeta {
            owner_references: Some(vec![reference]),
            ..ObjectMeta::default()
        };
        assert!(made_by(&secret, &PRODUCER));
    }

    fn owner(api_version: &str, kind: &str, name: &str, controller: bool) -> OwnerReference {
        OwnerReference {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            name: name.to_owned(),
            uid: format!("uid-of-{name}"),
            controller: Some(controller),
            block_owner_deletion: None,
        }
    }

    /// A Secret ESO made for ExternalSecret "db": taken over by the seal object named "db" whose
    /// kind replaces ESO's; by nothing else without an opt-in.
    #[test]
    fn a_predecessor_of_the_same_name_hands_its_secret_over() {
        let successor = Producer {
            predecessor: Some(Predecessor {
                api_group: "external-secrets.io",
                kind: "ExternalSecret",
                name: "db",
            }),
            ..PRODUCER
        };
        let made_by_peer = |owners: Vec<OwnerReference>| ObjectMeta {
            owner_references: Some(owners),
            ..ObjectMeta::default()
        };
        let eso = owner("external-secrets.io/v1", "ExternalSecret", "db", true);
        let cases = [
            (vec![eso.clone()], true),
            // ESO's previous API version is the same object.
            (
                vec![owner(
                    "external-secrets.io/v1beta1",
                    "ExternalSecret",
                    "db",
                    true,
                )],
                true,
            ),
            // Another ExternalSecret's Secret, a reference that does not control, another
            // group or kind: the owner must opt in.
            (
                vec![owner(
                    "external-secrets.io/v1",
                    "ExternalSecret",
                    "other",
                    true,
                )],
                false,
            ),
            (
                vec![owner(
                    "external-secrets.io/v1",
                    "ExternalSecret",
                    "db",
                    false,
                )],
                false,
            ),
            (
                vec![owner("example.com/v1", "ExternalSecret", "db", true)],
                false,
            ),
            (
                vec![owner("external-secrets.io/v1", "PushSecret", "db", true)],
                false,
            ),
            (vec![], false),
        ];
        for (owners, taken) in cases {
            let secret = made_by_peer(owners.clone());
            let whole = if taken {
                Decision::Whole
            } else {
                Decision::Refuse
            };
            assert_eq!(
                decide(Some(&secret), &successor, Request::Whole),
                whole,
                "{owners:?}"
            );
            assert_eq!(
                decide(Some(&secret), &successor, Request::WholeUnlessPatch),
                whole,
                "{owners:?}"
            );
            // Adding items is not a takeover: it still needs the owner's opt-in.
            assert_eq!(
                decide(Some(&secret), &successor, Request::Items),
                Decision::Refuse,
                "{owners:?}"
            );
            // A producer without a predecessor takes nothing over.
            assert_eq!(
                decide(Some(&secret), &PRODUCER, Request::Whole),
                Decision::Refuse,
                "{owners:?}"
            );
        }

        // The takeover removes the predecessor's reference and keeps every other.
        let bystander = owner("v1", "ConfigMap", "keep-me", false);
        let secret = made_by_peer(vec![bystander.clone(), eso]);
        assert_eq!(
            without_predecessor(&secret, &successor),
            Some(vec![bystander.clone()])
        );
        assert_eq!(
            without_predecessor(&made_by_peer(vec![bystander]), &successor),
            None
        );
        assert_eq!(without_predecessor(&secret, &PRODUCER), None);
    }

    #[test]
    fn each_object_adding_items_writes_under_its_own_field_manager() {
        assert_eq!(field_manager(false, "u1"), FIELD_MANAGER);
        assert_eq!(field_manager(true, "u1"), "seal-controller/u1");
        assert_ne!(field_manager(true, "u1"), field_manager(true, "u2"));
        assert_eq!(field_manager(true, ""), FIELD_MANAGER);
        // A uid is 36 characters: the name stays far below the API server's limit of 128.
        assert!(field_manager(true, &"u".repeat(36)).len() <= 128);
    }
}
