//! Writing an ExternalSecret's Secret as its `creationPolicy` says, or deleting it as its
//! `deletionPolicy` says when the values are gone.
//!
//! - `Owner` adds an owner reference (garbage collection deletes the Secret with the
//!   ExternalSecret), `Orphan` does not, `Merge` only adds its items to an existing Secret
//!   (missing: `SecretMissing`), `None` writes no Secret. Whether an existing Secret may be
//!   written is [`crate::protocols::ownership`]'s rule; a Secret the External Secrets Operator
//!   made for its ExternalSecret of the same name is taken over (ESO's owner reference replaced
//!   by this object's in one write, ESO's hash of the values removed), its values rewritten only
//!   if they differ.
//! - The write is a server-side apply under [`field_manager`] (one per merging ExternalSecret),
//!   labelled [`EXTERNAL_SECRET_UID_LABEL`]. A refresh that would change nothing writes nothing:
//!   known from memory when this process's last write left the same content
//!   ([`super::render::content_digest`]) and the Secret is as it left it, else from the Secret
//!   itself ([`crate::protocols::applied`]). No digest of the values is written anywhere. An
//!   immutable Secret, or one of another type, that must change is replaced.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::core::PartialObjectMeta;
use kube::{Api, ResourceExt};
use seal_api::ExternalSecret;
use seal_api::external_secret::{CreationPolicy, reason};
use seal_api::names::{
    EXTERNAL_SECRET_ANNOTATION, EXTERNAL_SECRET_UID_LABEL, LEGACY_DATA_HASH_ANNOTATION,
    MANAGED_ANNOTATION, PATCH_ANNOTATION,
};
use tracing::info;

use super::render::{Produced, content_digest};
use super::{Context, Memory, Outcome};
use crate::protocols::applied::{Items, already_applied};
use crate::protocols::ownership::{
    self, Decision, OptIns, Predecessor, Producer, Request, field_manager,
};
use crate::protocols::redaction::api_refusal;

/// Writes `produced` as the creation policy says, unless the Secret already holds it.
// The policy checks, the unchanged check, the apply and its replace fallback, in order.
#[allow(clippy::too_many_lines)]
pub(super) async fn write(
    ctx: &Context,
    es: &ExternalSecret,
    secret_name: &str,
    existing: Option<&PartialObjectMeta<Secret>>,
    produced: Produced,
    memory: &mut Memory,
) -> Outcome {
    let namespace = es.namespace().unwrap_or_default();
    let uid = es.uid().unwrap_or_default();
    let target = es.spec.target();
    let policy = target.creation_policy();
    let synced = |wrote: Option<bool>, message: String| Outcome {
        reason: reason::SECRET_SYNCED,
        message,
        wrote,
        deleted: false,
        refreshed: true,
        metric: "",
    };
    if policy == CreationPolicy::None {
        return synced(
            None,
            "values read; creationPolicy None writes no Secret".into(),
        );
    }
    let es_name = es.name_any();
    let this = Producer {
        uid_label: EXTERNAL_SECRET_UID_LABEL,
        uid: &uid,
        opt_ins: OptIns::SEAL,
        // The ESO ExternalSecret that `seal convert` made this one from.
        predecessor: Some(Predecessor::eso_external_secret(&es_name)),
    };
    let request = if policy == CreationPolicy::Merge {
        Request::Items
    } else {
        Request::Whole
    };
    let ours = existing.is_some_and(|m| ownership::made_by(&m.metadata, &this));
    match ownership::decide(existing.map(|m| &m.metadata), &this, request) {
        Decision::Create | Decision::Whole | Decision::ItemsOnly => {}
        Decision::Missing => {
            return Outcome {
                reason: reason::SECRET_MISSING,
                ..Outcome::failed(
                    "secret_missing",
                    format!(
                        "Secret {namespace}/{secret_name} does not exist; creationPolicy Merge only adds items to an existing Secret"
                    ),
                )
            };
        }
        // Merge writes into someone else's Secret only with its owner's opt-in, the same as a
        // SealedSecret's patch.
        Decision::Refuse if request == Request::Items => {
            return Outcome::failed(
                "not_managed",
                format!(
                    "Secret {namespace}/{secret_name} was not made by this ExternalSecret; annotate it {PATCH_ANNOTATION}: \"true\" to let creationPolicy Merge add items to it"
                ),
            );
        }
        Decision::Refuse => {
            return Outcome::failed(
                "not_managed",
                format!(
                    "Secret {namespace}/{secret_name} exists and was not made by this ExternalSecret; annotate it {MANAGED_ANNOTATION}: \"true\" to let the controller take it over, or use creationPolicy Merge"
                ),
            );
        }
    }
    let merge = policy == CreationPolicy::Merge;
    let owner = policy == CreationPolicy::Owner;
    let immutable = target.immutable == Some(true);
    let digest = content_digest(&ctx.digest_key, &produced, immutable, owner);
    let in_sync = || synced(None, format!("Secret {namespace}/{secret_name} is in sync"));
    // This process's last write left exactly this, and nobody wrote the Secret since.
    if let Some(meta) = existing
        && (ours || merge)
        && memory.written == Some(digest)
        && meta.resource_version().is_some()
        && meta.resource_version() == memory.secret_version
    {
        return in_sync();
    }
    let mut labels = produced.labels;
    labels.insert(EXTERNAL_SECRET_UID_LABEL.into(), uid.clone());
    let mut annotations = produced.annotations;
    annotations.insert(EXTERNAL_SECRET_ANNOTATION.into(), es.name_any());
    let desired = Secret {
        metadata: ObjectMeta {
            name: Some(secret_name.to_owned()),
            namespace: Some(namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: owner.then(|| vec![ownership::owner_reference(es)]),
            ..ObjectMeta::default()
        },
        data: Some(
            produced
                .data
                .iter()
                .map(|(k, v)| (k.clone(), ByteString(v.expose().to_vec())))
                .collect(),
        ),
        type_: if merge { None } else { produced.type_ },
        immutable: (!merge && immutable).then_some(true),
        ..Secret::default()
    };
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    // No memory of it (a restart, a failover, new values): the Secret itself says whether a write
    // would change anything. A Secret still carrying the digest annotation of older versions is
    // written, which removes it.
    if let Some(meta) = existing
        && (ours || merge)
        && !meta.annotations().contains_key(LEGACY_DATA_HASH_ANNOTATION)
    {
        let items = if merge {
            Items::AtLeast
        } else {
            Items::Exactly
        };
        match api.get_opt(secret_name).await {
            Ok(Some(live)) if already_applied(&live, &desired, items) => {
                memory.secret_version = live.resource_version();
                memory.written = Some(digest);
                return in_sync();
            }
            Ok(_) => {}
            Err(error) => return Outcome::failed("kube", api_refusal(&error)),
        }
    }
    // Whether this write takes over, from ESO, a Secret that already holds these values: then it
    // changes metadata only, and nothing rolls.
    let mut values_kept = false;
    if let Some(meta) = existing
        && let Some(patch) =
            ownership::takeover_patch(&meta.metadata, &this, desired.owner_references())
    {
        let params = PatchParams {
            field_manager: Some(ownership::FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        match api.patch(secret_name, &params, &Patch::Merge(&patch)).await {
            Ok(taken) => values_kept = taken.data == desired.data,
            Err(error) => return Outcome::failed("kube", api_refusal(&error)),
        }
        info!(%namespace, name = %es_name, secret = %secret_name, "took the Secret over from ESO's ExternalSecret of the same name");
    }
    let params = PatchParams::apply(&field_manager(merge, &uid)).force();
    let mut result = api
        .patch(secret_name, &params, &Patch::Apply(&desired))
        .await;
    // An immutable Secret, or one of another type, cannot change: replace one of our own.
    if let Err(kube::Error::Api(status)) = &result
        && status.code == 422
        && !merge
        && let Some(meta) = existing
    {
        let delete = DeleteParams {
            preconditions: Some(Preconditions {
                uid: meta.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        result = match api.delete(secret_name, &delete).await {
            Ok(_) => {
                api.patch(secret_name, &params, &Patch::Apply(&desired))
                    .await
            }
            Err(error) => Err(error),
        };
    }
    match result {
        Ok(written) => {
            memory.secret_version = written.resource_version();
            memory.written = Some(digest);
            info!(%namespace, name = %es.name_any(), secret = %secret_name, "synced the Secret");
            synced(
                (!values_kept).then_some(existing.is_none()),
                format!("Secret {namespace}/{secret_name} is in sync"),
            )
        }
        Err(error) => Outcome::failed("kube", api_refusal(&error)),
    }
}

/// `deletionPolicy: Delete` with nothing left at the provider: deletes a Secret this
/// ExternalSecret made.
pub(super) async fn delete_secret(
    ctx: &Context,
    es: &ExternalSecret,
    secret_name: &str,
    existing: Option<&PartialObjectMeta<Secret>>,
    memory: &mut Memory,
) -> Outcome {
    let namespace = es.namespace().unwrap_or_default();
    let uid = es.uid().unwrap_or_default();
    let gone = Outcome {
        reason: reason::SECRET_DELETED,
        deleted: false,
        refreshed: true,
        ..Outcome::failed(
            "",
            format!(
                "the values are gone from the provider; Secret {namespace}/{secret_name} deleted (deletionPolicy Delete)"
            ),
        )
    };
    let this = Producer {
        uid_label: EXTERNAL_SECRET_UID_LABEL,
        uid: &uid,
        opt_ins: OptIns::SEAL,
        predecessor: None,
    };
    let Some(meta) = existing.filter(|m| ownership::made_by(&m.metadata, &this)) else {
        memory.secret_version = None;
        return gone;
    };
    let delete = DeleteParams {
        preconditions: Some(Preconditions {
            uid: meta.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match Api::<Secret>::namespaced(ctx.client.clone(), &namespace)
        .delete(secret_name, &delete)
        .await
    {
        Ok(_) => {
            memory.secret_version = None;
            Outcome {
                deleted: true,
                ..gone
            }
        }
        Err(kube::Error::Api(status)) if status.code == 404 => gone,
        Err(error) => Outcome::failed("kube", api_refusal(&error)),
    }
}
