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
//! What a reconciler asks for is a [`Request`]; [`decide`] answers it. The answers are the same
//! for both kinds except where their peers differ on purpose: a SealedSecret's target annotated
//! `patch` gets items only even when the SealedSecret made it (Bitnami's `patch`), while an
//! ExternalSecret chooses by its `creationPolicy`.
//!
//! The opt-in annotations are the producer's kind's ([`OptIns`]): `seal.dev/managed` and
//! `seal.dev/patch` for seal's kinds, Bitnami's `sealedsecrets.bitnami.com/managed` and `patch` for
//! a `bitnami.com` SealedSecret, which keep the meaning Bitnami's controller gives them.
//!
//! One takeover needs no opt-in: a Secret controlled by the peer's object that the reconciled
//! object replaces ([`Predecessor`]: the `bitnami.com` SealedSecret, or the External Secrets
//! Operator's ExternalSecret, of the same name, which `seal convert` turned into this one) is
//! this object's to take. The user asked for the move by applying the converted object; the
//! writer hands the Secret over in one write ([`takeover_patch`]): the predecessor's controlling
//! owner reference replaced by the object's own (a Secret has at most one controller), so the
//! Secret is never without a controller that a peer still running could claim back. A peer's
//! controller that finds another controller on its Secret refuses to write it (ESO's and
//! Bitnami's both do), so the two never take a Secret from each other in turn. A Bitnami object
//! never inherits a seal.dev object's Secret, so when both exist the seal.dev one wins and the
//! Bitnami one reports `NotManaged`.
//!
//! Writes go through server-side apply under [`field_manager`]: one manager for Secrets the
//! controller owns, one per merging object for items added to someone else's Secret.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use seal_api::bitnami::BITNAMI_GROUP;
use seal_api::eso::{ESO_DATA_HASH_ANNOTATION, ESO_GROUP};
use seal_api::names::{
    BITNAMI_MANAGED_ANNOTATION, BITNAMI_PATCH_ANNOTATION, MANAGED_ANNOTATION, PATCH_ANNOTATION,
};

/// The field manager of the writes the controller makes to objects it owns.
pub const FIELD_MANAGER: &str = "seal-controller";

/// The annotations by which a Secret's owner lets a kind's objects write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptIns {
    /// Take the whole Secret over.
    pub managed: &'static str,
    /// Add items only.
    pub patch: &'static str,
}

impl OptIns {
    /// seal's: `seal.dev/managed`, `seal.dev/patch`.
    pub const SEAL: OptIns = OptIns {
        managed: MANAGED_ANNOTATION,
        patch: PATCH_ANNOTATION,
    };
    /// Bitnami's: `sealedsecrets.bitnami.com/managed`, `sealedsecrets.bitnami.com/patch`.
    pub const BITNAMI: OptIns = OptIns {
        managed: BITNAMI_MANAGED_ANNOTATION,
        patch: BITNAMI_PATCH_ANNOTATION,
    };
}

/// The object a Secret is produced from: the label its kind marks produced Secrets with, its
/// uid, the opt-ins its kind honours, and the peer's object whose Secret it inherits, if its kind
/// replaces one.
#[derive(Debug, Clone, Copy)]
pub struct Producer<'a> {
    /// The kind's uid label.
    pub uid_label: &'static str,
    /// The object's uid.
    pub uid: &'a str,
    /// The annotations by which a Secret's owner opts in.
    pub opt_ins: OptIns,
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
    /// The annotation in which the peer keeps a digest of the Secret's values, removed at the
    /// takeover: a digest of a low-entropy value lets whoever reads the Secret's metadata test
    /// guesses of it, and seal writes none.
    pub value_digest: Option<&'static str>,
}

impl<'a> Predecessor<'a> {
    /// Bitnami's `bitnami.com` SealedSecret `name`, which a seal.dev SealedSecret of that name
    /// replaces.
    pub fn bitnami_sealed_secret(name: &'a str) -> Self {
        Self {
            api_group: BITNAMI_GROUP,
            kind: "SealedSecret",
            name,
            value_digest: None,
        }
    }

    /// ESO's ExternalSecret `name`, which a seal.dev ExternalSecret of that name replaces.
    pub fn eso_external_secret(name: &'a str) -> Self {
        Self {
            api_group: ESO_GROUP,
            kind: "ExternalSecret",
            name,
            value_digest: Some(ESO_DATA_HASH_ANNOTATION),
        }
    }

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
fn without_predecessor(
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

/// The one write that hands `secret` from `producer`'s predecessor to `producer`: a JSON merge
/// patch that replaces the predecessor's controlling owner reference with `owners` (the producer's
/// own, or none when it does not own its Secret), keeping every other reference, labels the
/// Secret with the producer's uid, and removes the predecessor's digest of the values. `None`
/// when no predecessor controls `secret`.
///
/// Guarantees: the patch carries the resourceVersion `secret` was read at, so it applies to
/// exactly that Secret or is refused (409) and retried from a fresh read. The Secret goes from
/// one controller to the other in that write. In two writes (remove, then add) a peer still
/// running could claim the Secret back in between, and the producer's next write would then
/// carry a second controlling reference, which the API server refuses.
pub fn takeover_patch(
    secret: &ObjectMeta,
    producer: &Producer<'_>,
    owners: &[OwnerReference],
) -> Option<serde_json::Value> {
    let predecessor = producer.predecessor?;
    let mut kept = without_predecessor(secret, producer)?;
    kept.extend(owners.iter().cloned());
    let mut patch = serde_json::json!({
        "metadata": {
            "resourceVersion": secret.resource_version,
            "ownerReferences": kept,
            "labels": {producer.uid_label: producer.uid},
        }
    });
    if let Some(digest) = predecessor.value_digest {
        patch["metadata"]["annotations"] = serde_json::json!({digest: null});
    }
    Some(patch)
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
    let ours = made_by(secret, producer) || controlled_by_predecessor(secret, producer);
    let managed = opted_in(secret, producer.opt_ins.managed);
    let patch = opted_in(secret, producer.opt_ins.patch);
    match request {
        Request::WholeUnlessPatch if patch => Decision::ItemsOnly,
        Request::WholeUnlessPatch | Request::Whole if ours || managed => Decision::Whole,
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

/// The owner reference Bitnami's controller gives the Secrets it makes: controlling, without
/// `blockOwnerDeletion`. seal writes exactly this for a `bitnami.com` SealedSecret, since Bitnami's
/// controller replaces owner references that differ from it, and the two would rewrite each other.
pub fn bitnami_owner_reference<K: Resource<DynamicType = ()>>(object: &K) -> OwnerReference {
    OwnerReference {
        block_owner_deletion: None,
        ..owner_reference(object)
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
    use seal_api::bitnami::BITNAMI_API_VERSION;
    use std::collections::BTreeMap;

    const LABEL: &str = "seal.dev/sealed-secret-uid";
    const PRODUCER: Producer<'static> = Producer {
        uid_label: LABEL,
        uid: "u1",
        opt_ins: OptIns::SEAL,
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
            uid: "",
            ..PRODUCER
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
            predecessor: Some(Predecessor::eso_external_secret("db")),
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
            // The inherited Secret is the object's own, for adding items too.
            let items = if taken {
                Decision::ItemsOnly
            } else {
                Decision::Refuse
            };
            assert_eq!(
                decide(Some(&secret), &successor, Request::Items),
                items,
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

    /// The takeover is one write from ESO's controller to seal's: ESO's reference replaced by
    /// the successor's, bystanders kept, the uid label added, ESO's hash of the values removed,
    /// and only at the resourceVersion read.
    #[test]
    fn a_takeover_replaces_the_controller_in_one_write() {
        let successor = Producer {
            predecessor: Some(Predecessor::eso_external_secret("db")),
            ..PRODUCER
        };
        // What ESO v0.16.2 writes (its reference is `v1` whatever version the object was
        // written in), beside a bystander's reference.
        let eso = OwnerReference {
            block_owner_deletion: Some(true),
            ..owner("external-secrets.io/v1", "ExternalSecret", "db", true)
        };
        let bystander = owner("v1", "ConfigMap", "keep-me", false);
        let secret = ObjectMeta {
            resource_version: Some("41".into()),
            owner_references: Some(vec![bystander.clone(), eso]),
            annotations: Some(BTreeMap::from([(
                ESO_DATA_HASH_ANNOTATION.to_owned(),
                "9f86d081884c7d659a2feaa0c55ad015".to_owned(),
            )])),
            ..ObjectMeta::default()
        };
        let ours = owner("seal.dev/v1alpha1", "ExternalSecret", "db", true);
        let patch = takeover_patch(&secret, &successor, std::slice::from_ref(&ours))
            .expect("ESO controls the Secret");
        assert_eq!(
            patch,
            serde_json::json!({"metadata": {
                "resourceVersion": "41",
                "ownerReferences": [bystander, ours],
                "labels": {LABEL: "u1"},
                "annotations": {ESO_DATA_HASH_ANNOTATION: null},
            }})
        );
        // creationPolicy Orphan: ESO's reference goes and none comes.
        let orphan = takeover_patch(&secret, &successor, &[]).expect("ESO controls the Secret");
        assert_eq!(
            orphan["metadata"]["ownerReferences"],
            serde_json::json!([owner("v1", "ConfigMap", "keep-me", false)])
        );
        // Nothing to take over: a Secret ESO does not control, or a producer with no predecessor.
        let released = ObjectMeta {
            owner_references: Some(vec![owner("v1", "ConfigMap", "keep-me", false)]),
            ..secret.clone()
        };
        assert_eq!(takeover_patch(&released, &successor, &[]), None);
        assert_eq!(takeover_patch(&secret, &PRODUCER, &[]), None);
        // Bitnami keeps no digest of the values, so no annotation is touched.
        let heir = Producer {
            predecessor: Some(Predecessor::bitnami_sealed_secret("db")),
            ..PRODUCER
        };
        let bitnami = ObjectMeta {
            owner_references: Some(vec![owner(BITNAMI_API_VERSION, "SealedSecret", "db", true)]),
            ..ObjectMeta::default()
        };
        let patch = takeover_patch(&bitnami, &heir, &[]).expect("Bitnami controls the Secret");
        assert!(patch["metadata"].get("annotations").is_none(), "{patch}");
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

    /// An owner reference to the `bitnami.com` SealedSecret `name`.
    fn bitnami_owned(name: &str, controller: Option<bool>, annotations: &[&str]) -> ObjectMeta {
        let mut meta = secret(None, None, annotations);
        meta.owner_references = Some(vec![OwnerReference {
            api_version: BITNAMI_API_VERSION.into(),
            kind: "SealedSecret".into(),
            name: name.into(),
            uid: "bitnami-uid".into(),
            controller,
            block_owner_deletion: None,
        }]);
        meta
    }

    /// The cross-flavour takeover: only the seal.dev object of the same name, only from a
    /// controlling `bitnami.com` SealedSecret reference.
    #[test]
    fn a_seal_object_inherits_only_the_secret_of_the_bitnami_object_of_its_name() {
        let heir = Producer {
            predecessor: Some(Predecessor::bitnami_sealed_secret("db")),
            ..PRODUCER
        };
        let cases = [
            (bitnami_owned("db", Some(true), &[]), true),
            (bitnami_owned("other", Some(true), &[]), false),
            (bitnami_owned("db", Some(false), &[]), false),
            (bitnami_owned("db", None, &[]), false),
            (secret(None, None, &[]), false),
        ];
        for (meta, inherited) in &cases {
            assert_eq!(
                controlled_by_predecessor(meta, &heir),
                *inherited,
                "{meta:?}"
            );
            assert_eq!(
                decide(Some(meta), &heir, Request::WholeUnlessPatch),
                if *inherited {
                    Decision::Whole
                } else {
                    Decision::Refuse
                },
                "{meta:?}"
            );
            // A producer that inherits nothing (a Bitnami object, an ExternalSecret) never does.
            assert!(!controlled_by_predecessor(meta, &PRODUCER));
        }
        // Another kind or group under the same name is not Bitnami's SealedSecret.
        let mut other_group = bitnami_owned("db", Some(true), &[]);
        other_group.owner_references.as_mut().unwrap()[0].api_version = "seal.dev/v1alpha1".into();
        assert!(!controlled_by_predecessor(&other_group, &heir));
        let mut other_kind = bitnami_owned("db", Some(true), &[]);
        other_kind.owner_references.as_mut().unwrap()[0].kind = "ExternalSecret".into();
        assert!(!controlled_by_predecessor(&other_kind, &heir));
        // Bitnami's patch still means items only.
        assert_eq!(
            decide(
                Some(&bitnami_owned("db", Some(true), &[PATCH_ANNOTATION])),
                &heir,
                Request::WholeUnlessPatch
            ),
            Decision::ItemsOnly
        );
    }

    /// Each kind honours its own opt-in annotations and not the other's.
    #[test]
    fn the_opt_ins_are_the_producers_kinds() {
        let bitnami = Producer {
            opt_ins: OptIns::BITNAMI,
            ..PRODUCER
        };
        let foreign = |annotations: &[&str]| secret(Some("u2"), Some("u2"), annotations);
        let cases: [(&[&str], Decision, Decision); 5] = [
            (&[], Decision::Refuse, Decision::Refuse),
            (&[MANAGED_ANNOTATION], Decision::Whole, Decision::Refuse),
            (&[PATCH_ANNOTATION], Decision::ItemsOnly, Decision::Refuse),
            (
                &[BITNAMI_MANAGED_ANNOTATION],
                Decision::Refuse,
                Decision::Whole,
            ),
            (
                &[BITNAMI_PATCH_ANNOTATION],
                Decision::Refuse,
                Decision::ItemsOnly,
            ),
        ];
        for (annotations, seal_decision, bitnami_decision) in cases {
            let meta = foreign(annotations);
            assert_eq!(
                decide(Some(&meta), &PRODUCER, Request::WholeUnlessPatch),
                seal_decision,
                "{annotations:?}"
            );
            assert_eq!(
                decide(Some(&meta), &bitnami, Request::WholeUnlessPatch),
                bitnami_decision,
                "{annotations:?}"
            );
        }
    }

    #[test]
    fn bitnamis_owner_reference_controls_without_blocking_deletion() {
        let mut object = k8s_openapi::api::core::v1::ConfigMap::default();
        object.metadata.name = Some("db".into());
        object.metadata.uid = Some("u1".into());
        let reference = bitnami_owner_reference(&object);
        assert_eq!(reference.controller, Some(true));
        assert_eq!(reference.block_owner_deletion, None);
        assert_eq!(reference.uid, "u1");
    }
}
