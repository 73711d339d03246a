//! Turning one SealedSecret into its Secret: decrypt every item (nothing is written if any fails),
//! decide whether the existing Secret may be written, and write it with server-side apply under
//! one field manager, skipping the write when nothing would change.
//!
//! Ownership: a Secret this controller produced carries the label [`SEALED_SECRET_UID_LABEL`] with
//! the SealedSecret's uid (and, unless the template asks otherwise, an owner reference, so garbage
//! collection deletes it with the SealedSecret). Any other existing Secret is left alone unless it
//! is annotated [`MANAGED_ANNOTATION`] (take it over) or [`PATCH_ANNOTATION`] (add the sealed items
//! and keep the others). The label is also what the controller watches Secrets by, so its memory
//! does not grow with the cluster's unrelated Secrets.
//!
//! An immutable Secret whose values must change, or a Secret whose type must change, is deleted and
//! created again (Kubernetes allows no other way); nothing is deleted for a Secret the controller
//! may only patch.
//!
//! The [`Outcome`] says what happened in words safe for status, Events and logs: item names and
//! reasons, never a value, and every decryption failure reads the same.

use seal_api::names::{MANAGED_ANNOTATION, PATCH_ANNOTATION, SEALED_SECRET_UID_LABEL};
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Client, Resource, ResourceExt};
use seal_api::SealedSecret;

use seal_api::names::SKIP_OWNER_ANNOTATION;
use seal_api::produced::ProducedPolicy;
use seal_api::unsealing::{KeyRing, UnsealError, unseal_to_secret};

/// The field manager of the writes this controller makes to objects it owns.
pub const FIELD_MANAGER: &str = "seal-controller";

/// The field manager of a write to a produced Secret: [`FIELD_MANAGER`] when the object owns the
/// Secret; for a merge into a Secret someone else owns (`seal.dev/patch`, `creationPolicy:
/// Merge`), one per merging object (`seal-controller/<uid>`). Server-side apply removes the
/// fields a manager applied before and no longer applies, so under one shared manager two objects
/// merging into one Secret would remove each other's items at every write.
pub fn field_manager(merge: bool, uid: &str) -> String {
    if merge && !uid.is_empty() {
        format!("{FIELD_MANAGER}/{uid}")
    } else {
        FIELD_MANAGER.to_owned()
    }
}

/// Why a SealedSecret is or is not unsealed: the `Ready` condition's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The Secret holds the unsealed items.
    Unsealed,
    /// An item is malformed or no key opens it.
    DecryptionFailed,
    /// A Secret of that name exists and is not this controller's to write.
    NotManaged,
    /// A `template.data` entry does not parse or render.
    InvalidTemplate,
    /// The API server refused the write.
    UpdateFailed,
    /// The template asks for a reserved label or a denied type ([`ProducedPolicy`]).
    DeniedByPolicy,
    /// The reconcile panicked: a bug, contained to this object ([`crate::contained`]).
    InternalError,
}

impl Reason {
    /// Every reason that means the Secret was not written as asked.
    pub const FAILURES: [Reason; 6] = [
        Self::DecryptionFailed,
        Self::NotManaged,
        Self::InvalidTemplate,
        Self::UpdateFailed,
        Self::DeniedByPolicy,
        Self::InternalError,
    ];

    /// The reason as the condition and the Event spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unsealed => "Unsealed",
            Self::DecryptionFailed => "DecryptionFailed",
            Self::NotManaged => "NotManaged",
            Self::InvalidTemplate => "InvalidTemplate",
            Self::UpdateFailed => "UpdateFailed",
            Self::DeniedByPolicy => "DeniedByPolicy",
            Self::InternalError => "InternalError",
        }
    }
}

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
    /// Whether the Secret was written.
    pub wrote: bool,
    /// The Secret's resourceVersion once it holds the unsealed items.
    pub secret_version: Option<String>,
}

impl Outcome {
    pub(crate) fn failed(reason: Reason, message: String) -> Self {
        Self {
            reason,
            note: message.clone(),
            message,
            wrote: false,
            secret_version: None,
        }
    }
}

/// Unseals `sealed` with `ring` and writes its Secret if it may and must.
pub async fn unseal_into_secret(
    client: Client,
    sealed: &SealedSecret,
    ring: &KeyRing,
    policy: &ProducedPolicy,
) -> Outcome {
    match decrypt(sealed, ring, policy) {
        Ok(desired) => write_unsealed(client, sealed, desired).await,
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

/// Writes `desired`, the decrypted Secret of `sealed`, if it may and must.
pub async fn write_unsealed(client: Client, sealed: &SealedSecret, mut desired: Secret) -> Outcome {
    let namespace = sealed.namespace().unwrap_or_default();
    let name = sealed.name_any();
    let uid = sealed.uid().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(client, &namespace);
    let existing = match api.get_opt(&name).await {
        Ok(existing) => existing,
        Err(error) => return Outcome::failed(Reason::UpdateFailed, api_failure(&error)),
    };
    let patch_only = existing
        .as_ref()
        .is_some_and(|e| annotated(e, PATCH_ANNOTATION));
    if let Some(existing) = &existing {
        let ours = existing.labels().get(SEALED_SECRET_UID_LABEL) == Some(&uid)
            || existing.owner_references().iter().any(|o| o.uid == uid);
        if !ours && !patch_only && !annotated(existing, MANAGED_ANNOTATION) {
            return Outcome::failed(
                Reason::NotManaged,
                format!(
                    "Secret {namespace}/{name} exists and was not made by this SealedSecret; annotate it {MANAGED_ANNOTATION}: \"true\" to let the controller take it over, or {PATCH_ANNOTATION}: \"true\" to add the sealed items"
                ),
            );
        }
    }

    desired
        .labels_mut()
        .insert(SEALED_SECRET_UID_LABEL.to_owned(), uid.clone());
    let skip_owner = desired
        .annotations()
        .get(SKIP_OWNER_ANNOTATION)
        .is_some_and(|v| v == "true");
    if !skip_owner && !patch_only {
        desired.metadata.owner_references = Some(vec![owner_reference(sealed, &uid)]);
    }
    if patch_only {
        // Only the items: the Secret's type, metadata and other items stay its owner's.
        desired.type_ = None;
        desired.immutable = None;
        desired.metadata.annotations = None;
    }
    if existing
        .as_ref()
        .is_some_and(|e| already_applied(e, &desired))
    {
        return Outcome {
            reason: Reason::Unsealed,
            message: unsealed(&namespace, &name),
            note: format!("Secret {namespace}/{name} is up to date"),
            wrote: false,
            secret_version: existing.as_ref().and_then(ResourceExt::resource_version),
        };
    }
    desired.metadata.namespace = Some(namespace.clone());
    let manager = field_manager(patch_only, &uid);
    write_secret(&api, existing.as_ref(), &desired, patch_only, &manager).await
}

/// Writes `desired` with server-side apply under `manager`, first deleting `existing` when it cannot be changed in
/// place (immutable, or of another type).
async fn write_secret(
    api: &Api<Secret>,
    existing: Option<&Secret>,
    desired: &Secret,
    patch_only: bool,
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
        if patch_only {
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
            return Outcome::failed(Reason::UpdateFailed, api_failure(&error));
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
        Err(error) => Outcome::failed(Reason::UpdateFailed, api_failure(&error)),
    }
}

/// The status message of an unsealed SealedSecret.
fn unsealed(namespace: &str, name: &str) -> String {
    format!("Secret {namespace}/{name} holds the unsealed items")
}

fn annotated(secret: &Secret, annotation: &str) -> bool {
    secret
        .annotations()
        .get(annotation)
        .is_some_and(|v| v == "true")
}

fn owner_reference(sealed: &SealedSecret, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: SealedSecret::api_version(&()).into_owned(),
        kind: SealedSecret::kind(&()).into_owned(),
        name: sealed.name_any(),
        uid: uid.to_owned(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether `existing` already has everything `desired` sets, so an apply would change nothing.
fn already_applied(existing: &Secret, desired: &Secret) -> bool {
    let contains = |have: Option<&BTreeMap<String, String>>,
                    want: Option<&BTreeMap<String, String>>| {
        want.into_iter()
            .flatten()
            .all(|(k, v)| have.and_then(|h| h.get(k)) == Some(v))
    };
    let data_matches = desired
        .data
        .iter()
        .flatten()
        .all(|(item, value)| existing.data.as_ref().and_then(|d| d.get(item)) == Some(value));
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

/// The API server's refusal as status text: its reason and code only. Its message may quote the
/// object it refused, which here holds plaintext.
fn api_failure(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!(
            "the API server refused the Secret: {} ({})",
            status.reason, status.code
        ),
        _ => "the API server could not be reached".to_owned(),
    }
}

/// Records `outcome` in the SealedSecret's status: `observedGeneration` and the `Ready` condition.
/// Nothing is written when the status already says the same; the transition time changes only
/// when the condition's status does.
pub async fn write_status(
    client: Client,
    sealed: &SealedSecret,
    outcome: &Outcome,
) -> Result<bool, kube::Error> {
    let generation = sealed.metadata.generation;
    let ready = if outcome.reason == Reason::Unsealed {
        "True"
    } else {
        "False"
    };
    let previous = sealed
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
    if let Some(previous) = previous
        && previous.status == ready
        && previous.reason == outcome.reason.as_str()
        && previous.message == outcome.message
        && sealed.status.as_ref().and_then(|s| s.observed_generation) == generation
    {
        return Ok(false);
    }
    let transition = previous.filter(|p| p.status == ready).map_or_else(
        || Time(Timestamp::now()),
        |p| p.last_transition_time.clone(),
    );
    let condition = Condition {
        type_: "Ready".into(),
        status: ready.into(),
        reason: outcome.reason.as_str().into(),
        message: outcome.message.clone(),
        last_transition_time: transition,
        observed_generation: generation,
    };
    let patch = serde_json::json!({
        "status": {"observedGeneration": generation, "conditions": [condition]}
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

    #[test]
    fn each_merging_object_writes_under_its_own_field_manager() {
        assert_eq!(field_manager(false, "u1"), FIELD_MANAGER);
        assert_eq!(field_manager(true, "u1"), "seal-controller/u1");
        assert_ne!(field_manager(true, "u1"), field_manager(true, "u2"));
        assert_eq!(field_manager(true, ""), FIELD_MANAGER);
        // A uid is 36 characters: the name stays far below the API server's limit of 128.
        assert!(field_manager(true, &"u".repeat(36)).len() <= 128);
    }
}
