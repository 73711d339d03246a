//! Turning one SealedSecret into its Secret: decrypt every item (nothing is written if any fails),
//! decide whether the existing Secret may be written ([`crate::protocols::ownership`]), and write
//! it with server-side apply, skipping the write when nothing would change.
//!
//! A produced Secret carries the label [`SEALED_SECRET_UID_LABEL`] with the SealedSecret's uid
//! (and, unless the template asks otherwise, an owner reference, so garbage collection deletes it
//! with the SealedSecret), and the record of what it was unsealed from
//! ([`super::provenance`]). [`already_unsealed`] uses that record to recognise, with no RSA
//! work, a Secret that already holds what its SealedSecret produces.
//!
//! An immutable Secret whose values must change, or a Secret whose type must change, is deleted and
//! created again (Kubernetes allows no other way); nothing is deleted for a Secret the controller
//! may only add items to.
//!
//! A `bitnami.com` SealedSecret ([`super::flavour`]) is decrypted the same way and written by
//! [`write_bitnami`] in the shape Bitnami's controller gives it: the template's labels,
//! annotations and type, the items, and Bitnami's owner reference, replaced wholesale (or merged,
//! for a Secret annotated Bitnami's `patch`), and not written at all when the Secret already is
//! that.
//!
//! The [`Outcome`] says what happened in words safe for status, Events and logs: item names and
//! reasons, never a value, and every decryption failure reads the same.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Client, ResourceExt};
use seal_api::SealedSecret;
use seal_api::bitnami::BitnamiSealedSecret;
use seal_api::names::{
    BITNAMI_SKIP_OWNER_ANNOTATION, SEALED_SECRET_UID_LABEL, SKIP_OWNER_ANNOTATION,
    UNSEALED_FROM_ANNOTATION,
};
use seal_api::produced::ProducedPolicy;
pub use seal_api::sealed_secret::Reason;
use seal_api::unsealing::{KeyRing, UnsealError, produced_skeleton, unseal_to_secret};

use super::flavour::Flavour;
use super::provenance::{RecordKeys, Source};
use super::watched::Watched;
use crate::protocols::applied::{Items, already_applied};
use crate::protocols::ownership::{self, Decision, Request, field_manager};
use crate::protocols::redaction::api_refusal;

/// What reconciling one SealedSecret did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The condition's reason.
    pub reason: Reason,
    /// The state, for the status: the same words for as long as the state holds, so that a
    /// reconcile that changes nothing writes nothing. Names items, never values.
    pub message: String,
    /// What this reconcile did, for the Event and the log (a write, a replacement, a failure).
    pub note: String,
    /// Whether the Secret's items or shape were written (a rollout follows); a write of the
    /// record alone is not one.
    pub wrote: bool,
    /// The Secret's resourceVersion once it holds the unsealed items.
    pub secret_version: Option<String>,
}

impl Outcome {
    /// A failure: `message` is both the state and the note.
    pub fn failed(reason: Reason, message: String) -> Self {
        Self {
            reason,
            note: message.clone(),
            message,
            wrote: false,
            secret_version: None,
        }
    }

    fn up_to_date(secret: &Secret, note: &str) -> Self {
        let namespace = secret.namespace().unwrap_or_default();
        let name = secret.name_any();
        Self {
            reason: Reason::Unsealed,
            message: unsealed(&namespace, &name),
            note: format!("Secret {namespace}/{name} {note}"),
            wrote: false,
            secret_version: secret.resource_version(),
        }
    }
}

/// Unseals `sealed` with `ring` and writes its Secret if it may and must: the whole job of one
/// reconcile, without the reconciler's memory.
pub async fn unseal_into_secret(
    client: Client,
    sealed: &SealedSecret,
    ring: &KeyRing,
    policy: &ProducedPolicy,
) -> Outcome {
    let api: Api<Secret> = Api::namespaced(client, &sealed.namespace().unwrap_or_default());
    let existing = match api.get_opt(&sealed.name_any()).await {
        Ok(existing) => existing,
        Err(error) => return Outcome::failed(Reason::UpdateFailed, api_refusal(&error)),
    };
    let records = RecordKeys::derive(ring.ordered(None), None);
    match decrypt(sealed, ring, policy) {
        Ok(desired) => write_unsealed(&api, sealed, existing.as_ref(), desired, &records).await,
        Err(failed) => failed,
    }
}

/// The Secret `sealed` stands for, or the failure in words safe for status. This is the CPU-bound
/// half (an RSA private-key operation per item), which the controller runs off its async workers.
/// A template that `policy` refuses fails first, before any RSA work.
pub fn decrypt(
    sealed: &SealedSecret,
    ring: &KeyRing,
    policy: &ProducedPolicy,
) -> Result<Secret, Outcome> {
    let template = sealed.spec.template.as_ref();
    policy
        .check(
            template
                .and_then(|t| t.metadata.as_ref())
                .and_then(|m| m.labels.as_ref()),
            template.and_then(|t| t.type_.as_deref()),
        )
        .map_err(|error| Outcome::failed(Reason::DeniedByPolicy, error.to_string()))?;
    unseal_to_secret(sealed, ring).map_err(|error| match error {
        UnsealError::Template { item, error } => Outcome::failed(
            Reason::InvalidTemplate,
            format!("template.data {item:?}: {error}"),
        ),
        // One text for every failure: which key was tried or why it failed is not said.
        UnsealError::Item { item, .. } => Outcome::failed(
            Reason::DecryptionFailed,
            format!("item {item:?} cannot be decrypted with any of the controller's keys"),
        ),
        error => Outcome::failed(Reason::DecryptionFailed, error.to_string()),
    })
}

/// The outcome when `existing` already is what the cached SealedSecret `watched` produces, known
/// without its ciphertext and without decrypting: it may be written by this SealedSecret, its
/// metadata is what the template says, and its record ([`super::provenance`]) proves its items.
/// `None` means "read the object whole, decrypt and see".
pub fn already_unsealed(
    watched: &Watched,
    existing: Option<&Secret>,
    records: &RecordKeys,
) -> Option<Outcome> {
    let existing = existing?;
    let sealed = &watched.without_ciphertext();
    let items_only = access(sealed, Some(existing), Flavour::Seal).ok()?;
    let mut skeleton = produced_skeleton(sealed);
    shape(sealed, &mut skeleton, items_only);
    let empty = BTreeMap::new();
    let proven = already_applied(existing, &skeleton, Items::AtLeast)
        && records.verify_secret(
            &watched.source(),
            existing.annotations(),
            existing.data.as_ref().unwrap_or(&empty),
        );
    proven.then(|| Outcome::up_to_date(existing, "is up to date (its record verifies)"))
}

/// Writes `desired`, the decrypted Secret of `sealed`, over `existing` if it may and must, with
/// the record of what it was unsealed from.
pub async fn write_unsealed(
    api: &Api<Secret>,
    sealed: &SealedSecret,
    existing: Option<&Secret>,
    mut desired: Secret,
    records: &RecordKeys,
) -> Outcome {
    let items_only = match access(sealed, existing, Flavour::Seal) {
        Ok(items_only) => items_only,
        Err(refused) => return refused,
    };
    shape(sealed, &mut desired, items_only);
    // A Secret inherited from the Bitnami object of this name first gets this object's owner
    // reference in place of Bitnami's (server-side apply cannot remove a reference another
    // manager wrote, and two controlling references are refused); its values are then compared
    // as for any Secret, so equal values are not written again.
    let adopted;
    let existing = match existing {
        Some(secret) if inherited(sealed, secret) => {
            match adopt(api, sealed, secret, &desired).await {
                Ok(secret) => {
                    adopted = secret;
                    Some(&adopted)
                }
                Err(failed) => return failed,
            }
        }
        other => other,
    };
    let source = Source::of(sealed);
    let record = records.record(&source, desired.data.as_ref().unwrap_or(&BTreeMap::new()));
    if let Some(existing) = existing
        && already_applied(existing, &desired, Items::AtLeast)
    {
        let empty = BTreeMap::new();
        let recorded = records.verify_secret(
            &source,
            existing.annotations(),
            existing.data.as_ref().unwrap_or(&empty),
        );
        if recorded || record.is_none() {
            return Outcome::up_to_date(existing, "is up to date");
        }
        // The items are right and the record is missing (a Secret from before records), edited,
        // or made with a key that is gone: write the record alone, which is no change of values.
        return write_record(api, existing, record.as_deref().unwrap_or_default()).await;
    }
    if let Some(record) = record {
        desired
            .annotations_mut()
            .insert(UNSEALED_FROM_ANNOTATION.to_owned(), record);
    }
    desired.metadata.namespace = sealed.namespace();
    let manager = field_manager(items_only, &sealed.uid().unwrap_or_default());
    write_secret(api, existing, &desired, items_only, &manager).await
}

/// Whether `existing` is the Secret of the Bitnami object of `sealed`'s name, inherited rather
/// than made by `sealed`.
fn inherited(sealed: &SealedSecret, existing: &Secret) -> bool {
    let uid = sealed.uid().unwrap_or_default();
    let producer = Flavour::Seal.producer(sealed, &uid);
    ownership::controlled_by_predecessor(&existing.metadata, &producer)
        && !ownership::made_by(&existing.metadata, &producer)
}

/// Gives `existing`, inherited from the Bitnami object of `sealed`'s name, the uid label and the
/// owner references of `desired` in place of Bitnami's controlling one: metadata only, refused if
/// the Secret changed since it was read.
async fn adopt(
    api: &Api<Secret>,
    sealed: &SealedSecret,
    existing: &Secret,
    desired: &Secret,
) -> Result<Secret, Outcome> {
    let uid = sealed.uid().unwrap_or_default();
    let producer = Flavour::Seal.producer(sealed, &uid);
    let patch =
        ownership::takeover_patch(&existing.metadata, &producer, desired.owner_references())
            .expect("invariant: adopt is called only for a Secret its predecessor controls");
    let params = PatchParams {
        field_manager: Some(ownership::FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    api.patch(&existing.name_any(), &params, &Patch::Merge(&patch))
        .await
        .map_err(|error| Outcome::failed(Reason::UpdateFailed, api_refusal(&error)))
}

/// Whether `sealed` (of `flavour`) may write `existing`: `Ok(true)` to add its items only,
/// `Ok(false)` to write the whole Secret, or the `NotManaged` outcome.
fn access(
    sealed: &SealedSecret,
    existing: Option<&Secret>,
    flavour: Flavour,
) -> Result<bool, Outcome> {
    let uid = sealed.uid().unwrap_or_default();
    let producer = flavour.producer(sealed, &uid);
    match ownership::decide(
        existing.map(|e| &e.metadata),
        &producer,
        Request::WholeUnlessPatch,
    ) {
        Decision::Create | Decision::Whole => Ok(false),
        Decision::ItemsOnly => Ok(true),
        Decision::Missing | Decision::Refuse => {
            let namespace = sealed.namespace().unwrap_or_default();
            let name = sealed.name_any();
            Err(Outcome::failed(
                Reason::NotManaged,
                format!(
                    "Secret {namespace}/{name} exists and was not made by this SealedSecret; annotate it {}: \"true\" to let the controller take it over, or {}: \"true\" to add the sealed items",
                    producer.opt_ins.managed, producer.opt_ins.patch,
                ),
            ))
        }
    }
}

/// Gives the Secret `sealed` produces what the controller adds to the template's: the uid label,
/// and the owner reference unless the template skips it or only items are added; a Secret that
/// only gets items keeps its owner's type, immutability and annotations.
fn shape(sealed: &SealedSecret, desired: &mut Secret, items_only: bool) {
    let uid = sealed.uid().unwrap_or_default();
    desired
        .labels_mut()
        .insert(SEALED_SECRET_UID_LABEL.to_owned(), uid.clone());
    let skip_owner = desired
        .annotations()
        .get(SKIP_OWNER_ANNOTATION)
        .is_some_and(|v| v == "true");
    if !skip_owner && !items_only {
        desired.metadata.owner_references = Some(vec![ownership::owner_reference(sealed)]);
    }
    if items_only {
        desired.type_ = None;
        desired.immutable = None;
        desired.metadata.annotations = None;
    }
}

/// Writes only the record annotation of `existing`, whose items are already right; refused if
/// the Secret changed since it was read.
async fn write_record(api: &Api<Secret>, existing: &Secret, record: &str) -> Outcome {
    let patch = serde_json::json!({
        "metadata": {
            "resourceVersion": existing.resource_version(),
            "annotations": {UNSEALED_FROM_ANNOTATION: record},
        }
    });
    let params = PatchParams {
        field_manager: Some(ownership::FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    match api
        .patch(&existing.name_any(), &params, &Patch::Merge(&patch))
        .await
    {
        Ok(written) => Outcome::up_to_date(&written, "is up to date; its record was written"),
        Err(error) => Outcome::failed(Reason::UpdateFailed, api_refusal(&error)),
    }
}

/// Deletes `existing`, which cannot be changed in place (immutable, or of another type), so that
/// the Secret can be created again: the only way Kubernetes allows, and what a person would do
/// (pods that mounted it keep the old values until they restart). Refused for a Secret the object
/// may only add items to, which is someone else's to replace; the deletion is refused if the
/// Secret was replaced meanwhile (its uid).
async fn delete_to_replace(
    api: &Api<Secret>,
    existing: &Secret,
    items_only: bool,
) -> Result<(), Outcome> {
    let namespace = existing.namespace().unwrap_or_default();
    let name = existing.name_any();
    if items_only {
        return Err(Outcome::failed(
            Reason::UpdateFailed,
            format!(
                "Secret {namespace}/{name} is immutable or of another type; items cannot be added to it"
            ),
        ));
    }
    let delete = DeleteParams {
        preconditions: Some(Preconditions {
            uid: existing.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    api.delete(&name, &delete)
        .await
        .map(drop)
        .map_err(|error| Outcome::failed(Reason::UpdateFailed, api_refusal(&error)))
}

/// Writes `desired` with server-side apply under `manager`, first deleting `existing` when it
/// cannot be changed in place (immutable, or of another type).
async fn write_secret(
    api: &Api<Secret>,
    existing: Option<&Secret>,
    desired: &Secret,
    items_only: bool,
    manager: &str,
) -> Outcome {
    let namespace = desired.namespace().unwrap_or_default();
    let name = desired.name_any();
    // An immutable Secret cannot change, nor can any Secret's type: replaced ([`delete_to_replace`]).
    let mut replaced = false;
    let must_replace = |e: &&Secret| {
        e.immutable == Some(true) || (desired.type_.is_some() && desired.type_ != e.type_)
    };
    if let Some(existing) = existing.filter(must_replace) {
        if let Err(refused) = delete_to_replace(api, existing, items_only).await {
            return refused;
        }
        replaced = true;
    }
    match api
        .patch(
            &name,
            &PatchParams::apply(manager).force(),
            &Patch::Apply(desired),
        )
        .await
    {
        Ok(written) => Outcome {
            reason: Reason::Unsealed,
            message: unsealed(&namespace, &name),
            note: if replaced {
                format!("Secret {namespace}/{name} was replaced (immutable, or its type changed)")
            } else {
                format!("Secret {namespace}/{name} written")
            },
            wrote: true,
            secret_version: written.resource_version(),
        },
        Err(error) => Outcome::failed(Reason::UpdateFailed, api_refusal(&error)),
    }
}

/// Writes `desired`, the decrypted Secret of the `bitnami.com` SealedSecret `object` (converted
/// to `sealed`), over `existing` as Bitnami's controller would, if it may and must: nothing is
/// written when the Secret already is what Bitnami's controller would leave.
///
/// # Panics
/// Never: the JSON patch it sends is built here from `add` and `test` operations.
pub async fn write_bitnami(
    api: &Api<Secret>,
    object: &BitnamiSealedSecret,
    sealed: &SealedSecret,
    existing: Option<&Secret>,
    desired: Secret,
) -> Outcome {
    let items_only = match access(sealed, existing, Flavour::Bitnami) {
        Ok(items_only) => items_only,
        Err(refused) => return refused,
    };
    let owner = (!opted_in_template(&desired, BITNAMI_SKIP_OWNER_ANNOTATION))
        .then(|| ownership::bitnami_owner_reference(object));
    let target = bitnami_target(existing, desired, owner, items_only);
    let namespace = sealed.namespace().unwrap_or_default();
    let name = sealed.name_any();
    let params = PostParams {
        field_manager: Some(ownership::FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    let written = match existing {
        Some(existing) if same_as_bitnami(existing, &target) => {
            return Outcome::up_to_date(existing, "is up to date");
        }
        // Immutable with other values, or of another type: replaced, as for seal's objects.
        Some(existing)
            if (existing.immutable == Some(true) && existing.data != target.data)
                || existing.type_ != target.type_ =>
        {
            if let Err(refused) = delete_to_replace(api, existing, items_only).await {
                return refused;
            }
            let mut fresh = target;
            fresh.metadata.resource_version = None;
            fresh.metadata.uid = None;
            api.create(&params, &fresh).await
        }
        Some(existing) => {
            // Bitnami's controller replaces these wholesale with an update; a JSON patch does the
            // same under the `patch` right the controller already has, and only if the Secret is
            // still the one read.
            let patch = serde_json::json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": existing.resource_version()},
                {"op": "add", "path": "/metadata/labels", "value": target.labels()},
                {"op": "add", "path": "/metadata/annotations", "value": target.annotations()},
                {"op": "add", "path": "/metadata/ownerReferences", "value": target.owner_references()},
                {"op": "add", "path": "/data", "value": target.data.clone().unwrap_or_default()},
            ]);
            let patch = serde_json::from_value(patch)
                .expect("invariant: a JSON patch of add and test operations");
            let params = PatchParams {
                field_manager: Some(ownership::FIELD_MANAGER.to_owned()),
                ..PatchParams::default()
            };
            api.patch(&name, &params, &Patch::<()>::Json(patch)).await
        }
        None => api.create(&params, &target).await,
    };
    match written {
        Ok(written) => Outcome {
            reason: Reason::Unsealed,
            message: unsealed(&namespace, &name),
            note: format!("Secret {namespace}/{name} written"),
            wrote: true,
            secret_version: written.resource_version(),
        },
        Err(error) => Outcome::failed(Reason::UpdateFailed, api_refusal(&error)),
    }
}

/// Whether the template of `desired` (its annotations) sets `annotation` to `"true"`.
fn opted_in_template(desired: &Secret, annotation: &str) -> bool {
    desired
        .annotations()
        .get(annotation)
        .is_some_and(|v| v == "true")
}

/// What Bitnami's controller leaves for `desired` (the template's metadata, type and items) over
/// `existing`: without a Secret, `desired` with `owner`; a Secret it may add items to gets the
/// items, labels and annotations added (and `owner` too when its owner also annotated it
/// `managed`); any other gets its items, labels, annotations and owner references replaced. The
/// type is always the template's.
fn bitnami_target(
    existing: Option<&Secret>,
    desired: Secret,
    owner: Option<OwnerReference>,
    items_only: bool,
) -> Secret {
    let owners = owner.map(|o| vec![o]);
    let Some(existing) = existing else {
        let mut created = desired;
        created.metadata.owner_references = owners;
        return created;
    };
    let mut target = existing.clone();
    target.metadata.managed_fields = None;
    if items_only {
        target
            .data
            .get_or_insert_with(BTreeMap::new)
            .extend(desired.data.unwrap_or_default());
        target
            .labels_mut()
            .extend(desired.metadata.labels.unwrap_or_default());
        target
            .annotations_mut()
            .extend(desired.metadata.annotations.unwrap_or_default());
        if ownership::opted_in(&existing.metadata, ownership::OptIns::BITNAMI.managed) {
            target.metadata.owner_references = owners;
        }
    } else {
        target.data = desired.data;
        target.metadata.labels = desired.metadata.labels;
        target.metadata.annotations = desired.metadata.annotations;
        target.metadata.owner_references = owners;
    }
    target.type_ = desired.type_;
    target
}

/// Whether `existing` already is `target` in everything Bitnami's controller compares and writes:
/// items, labels, annotations, owner references and type (an absent map is an empty one).
fn same_as_bitnami(existing: &Secret, target: &Secret) -> bool {
    fn or_empty<T: Clone + Default>(value: Option<&T>) -> T {
        value.cloned().unwrap_or_default()
    }
    or_empty(existing.data.as_ref()) == or_empty(target.data.as_ref())
        && existing.labels() == target.labels()
        && existing.annotations() == target.annotations()
        && existing.owner_references() == target.owner_references()
        && existing.type_ == target.type_
}

/// The status message of an unsealed SealedSecret.
fn unsealed(namespace: &str, name: &str) -> String {
    format!("Secret {namespace}/{name} holds the unsealed items")
}

/// Records `outcome` in the SealedSecret's status: `observedGeneration` and the `Ready` condition
/// ([`crate::protocols::ready_condition`]). Nothing is written when the status already says the
/// same. Returns whether it wrote.
pub async fn write_status(
    client: Client,
    sealed: &SealedSecret,
    outcome: &Outcome,
) -> Result<bool, kube::Error> {
    use crate::protocols::ready_condition::{self, Observed};
    let observed = Observed {
        ready: outcome.reason == Reason::Unsealed,
        reason: outcome.reason.as_str(),
        message: &outcome.message,
        generation: sealed.metadata.generation,
    };
    let status = sealed.status.clone().unwrap_or_default();
    if ready_condition::says(&status.conditions, status.observed_generation, &observed) {
        return Ok(false);
    }
    let condition = ready_condition::condition(
        &status.conditions,
        &observed,
        k8s_openapi::jiff::Timestamp::now(),
    );
    let patch = serde_json::json!({
        "status": {"observedGeneration": observed.generation, "conditions": [condition]}
    });
    let api: Api<SealedSecret> = Api::namespaced(client, &sealed.namespace().unwrap_or_default());
    api.patch_status(
        &sealed.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use seal_api::bitnami::BITNAMI_API_VERSION;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn secret(
        labels: &[(&str, &str)],
        annotations: &[(&str, &str)],
        items: &[(&str, &str)],
        owner: Option<&str>,
    ) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some("db".into()),
                labels: Some(map(labels)),
                annotations: Some(map(annotations)),
                owner_references: owner.map(|uid| vec![reference(uid)]),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".into()),
            data: Some(
                items
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    fn reference(uid: &str) -> OwnerReference {
        OwnerReference {
            api_version: BITNAMI_API_VERSION.into(),
            kind: "SealedSecret".into(),
            name: "db".into(),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: None,
        }
    }

    #[test]
    fn a_secret_bitnami_made_with_the_same_values_is_not_written() {
        let desired = secret(&[("app", "ml")], &[("a", "1")], &[("p", "v")], None);
        let existing = secret(&[("app", "ml")], &[("a", "1")], &[("p", "v")], Some("u1"));
        let target = bitnami_target(
            Some(&existing),
            desired.clone(),
            Some(reference("u1")),
            false,
        );
        assert!(same_as_bitnami(&existing, &target));
        // Every field Bitnami's controller writes counts.
        let differing = [
            secret(
                &[("app", "ml")],
                &[("a", "1")],
                &[("p", "other")],
                Some("u1"),
            ),
            secret(
                &[("app", "ml")],
                &[("a", "1")],
                &[("p", "v"), ("x", "y")],
                Some("u1"),
            ),
            secret(
                &[("app", "ml"), ("seal", "x")],
                &[("a", "1")],
                &[("p", "v")],
                Some("u1"),
            ),
            secret(
                &[("app", "ml")],
                &[("a", "1"), ("seal", "x")],
                &[("p", "v")],
                Some("u1"),
            ),
            secret(&[("app", "ml")], &[("a", "1")], &[("p", "v")], Some("u2")),
            secret(&[("app", "ml")], &[("a", "1")], &[("p", "v")], None),
        ];
        for existing in differing {
            let target = bitnami_target(
                Some(&existing),
                desired.clone(),
                Some(reference("u1")),
                false,
            );
            assert!(!same_as_bitnami(&existing, &target), "{existing:?}");
            // What is written is exactly the template's, with Bitnami's owner reference.
            assert_eq!(target.labels(), desired.labels());
            assert_eq!(target.annotations(), desired.annotations());
            assert_eq!(target.data, desired.data);
            assert_eq!(target.owner_references(), &[reference("u1")]);
        }
        let mut other_type = existing.clone();
        other_type.type_ = Some("kubernetes.io/tls".into());
        let target = bitnami_target(Some(&other_type), desired, Some(reference("u1")), false);
        assert!(!same_as_bitnami(&other_type, &target));
    }

    #[test]
    fn absent_and_empty_maps_are_the_same() {
        let mut existing = secret(&[], &[], &[], Some("u1"));
        existing.metadata.labels = None;
        existing.metadata.annotations = None;
        existing.data = None;
        let target = bitnami_target(
            Some(&existing),
            secret(&[], &[], &[], None),
            Some(reference("u1")),
            false,
        );
        assert!(same_as_bitnami(&existing, &target));
    }

    #[test]
    fn skipping_the_owner_reference_removes_it_as_bitnami_does() {
        let existing = secret(&[], &[], &[("p", "v")], Some("u1"));
        let target = bitnami_target(
            Some(&existing),
            secret(&[], &[], &[("p", "v")], None),
            None,
            false,
        );
        assert!(target.owner_references().is_empty());
        assert!(!same_as_bitnami(&existing, &target));
    }

    #[test]
    fn a_patched_secret_gets_items_labels_and_annotations_added_and_keeps_the_rest() {
        let existing = secret(
            &[("keep", "1")],
            &[(seal_api::names::BITNAMI_PATCH_ANNOTATION, "true")],
            &[("own", "x"), ("p", "old")],
            Some("other"),
        );
        let desired = secret(&[("app", "ml")], &[("a", "1")], &[("p", "v")], None);
        let target = bitnami_target(
            Some(&existing),
            desired.clone(),
            Some(reference("u1")),
            true,
        );
        assert_eq!(item(&target, "own"), Some("x"));
        assert_eq!(item(&target, "p"), Some("v"));
        assert_eq!(target.labels().len(), 2);
        assert_eq!(target.annotations().len(), 2);
        // Not `managed` too: the owner references stay the Secret owner's.
        assert_eq!(target.owner_references()[0].uid, "other");
        let mut managed = existing.clone();
        managed.annotations_mut().insert(
            seal_api::names::BITNAMI_MANAGED_ANNOTATION.into(),
            "true".into(),
        );
        let target = bitnami_target(Some(&managed), desired, Some(reference("u1")), true);
        assert_eq!(target.owner_references(), &[reference("u1")]);
    }

    #[test]
    fn a_new_secret_is_the_template_with_the_owner_reference() {
        let desired = secret(&[("app", "ml")], &[], &[("p", "v")], None);
        let created = bitnami_target(None, desired.clone(), Some(reference("u1")), false);
        assert_eq!(created.data, desired.data);
        assert_eq!(created.owner_references(), &[reference("u1")]);
        assert!(!created.labels().contains_key(SEALED_SECRET_UID_LABEL));
        assert!(!created.annotations().contains_key(UNSEALED_FROM_ANNOTATION));
    }

    fn item<'a>(secret: &'a Secret, name: &str) -> Option<&'a str> {
        std::str::from_utf8(&secret.data.as_ref()?.get(name)?.0).ok()
    }
}
