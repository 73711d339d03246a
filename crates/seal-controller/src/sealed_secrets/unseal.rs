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
//! The [`Outcome`] says what happened in words safe for status, Events and logs: item names and
//! reasons, never a value, and every decryption failure reads the same.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Client, ResourceExt};
use seal_api::SealedSecret;
use seal_api::names::{
    MANAGED_ANNOTATION, PATCH_ANNOTATION, SEALED_SECRET_UID_LABEL, SKIP_OWNER_ANNOTATION,
    UNSEALED_FROM_ANNOTATION,
};
use seal_api::produced::ProducedPolicy;
pub use seal_api::sealed_secret::Reason;
use seal_api::unsealing::{KeyRing, UnsealError, produced_skeleton, unseal_to_secret};

use super::provenance::RecordKeys;
use crate::protocols::applied::{Items, already_applied};
use crate::protocols::ownership::{self, Decision, Producer, Request, field_manager};
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

/// The outcome when `existing` already is what `sealed` produces, known without decrypting: it
/// may be written by this SealedSecret, its metadata is what the template says, and its record
/// ([`super::provenance`]) proves its items. `None` means "decrypt and see".
pub fn already_unsealed(
    sealed: &SealedSecret,
    existing: Option<&Secret>,
    records: &RecordKeys,
) -> Option<Outcome> {
    let existing = existing?;
    let items_only = access(sealed, Some(existing)).ok()?;
    let mut skeleton = produced_skeleton(sealed);
    shape(sealed, &mut skeleton, items_only);
    let empty = BTreeMap::new();
    let proven = already_applied(existing, &skeleton, Items::AtLeast)
        && records.verify_secret(
            sealed,
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
    let items_only = match access(sealed, existing) {
        Ok(items_only) => items_only,
        Err(refused) => return refused,
    };
    shape(sealed, &mut desired, items_only);
    let record = records.record(sealed, desired.data.as_ref().unwrap_or(&BTreeMap::new()));
    if let Some(existing) = existing
        && already_applied(existing, &desired, Items::AtLeast)
    {
        let empty = BTreeMap::new();
        let recorded = records.verify_secret(
            sealed,
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

/// Whether `sealed` may write `existing`: `Ok(true)` to add its items only, `Ok(false)` to write
/// the whole Secret, or the `NotManaged` outcome.
fn access(sealed: &SealedSecret, existing: Option<&Secret>) -> Result<bool, Outcome> {
    let uid = sealed.uid().unwrap_or_default();
    let producer = Producer {
        uid_label: SEALED_SECRET_UID_LABEL,
        uid: &uid,
        predecessor: None,
    };
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
                    "Secret {namespace}/{name} exists and was not made by this SealedSecret; annotate it {MANAGED_ANNOTATION}: \"true\" to let the controller take it over, or {PATCH_ANNOTATION}: \"true\" to add the sealed items"
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
    // An immutable Secret cannot change, nor can any Secret's type: the controller replaces one it
    // may write, as a person would (pods that mounted it keep the old values until they restart).
    let mut replaced = false;
    let must_replace = |e: &&Secret| {
        e.immutable == Some(true) || (desired.type_.is_some() && desired.type_ != e.type_)
    };
    if let Some(existing) = existing.filter(must_replace) {
        if items_only {
            return Outcome::failed(
                Reason::UpdateFailed,
                format!(
                    "Secret {namespace}/{name} is immutable or of another type; items cannot be added to it"
                ),
            );
        }
        let delete = DeleteParams {
            preconditions: Some(Preconditions {
                uid: existing.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        if let Err(error) = api.delete(&name, &delete).await {
            return Outcome::failed(Reason::UpdateFailed, api_refusal(&error));
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
