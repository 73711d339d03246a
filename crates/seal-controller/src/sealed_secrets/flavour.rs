//! The two APIs a SealedSecret comes by, and what differs between them: seal's own
//! (`seal.dev/v1alpha1`) and Bitnami's (`bitnami.com/v1alpha1`, with `--bitnami-sealed-secrets`).
//!
//! Both are reconciled by the same code ([`super::unseal`]: decrypt, the ownership rule, the
//! write); an [`Object`] says which API its object came by, and the flavour decides the rest:
//! - **what is decrypted**: a Bitnami object is converted with [`seal_api::bitnami::from_bitnami`]
//!   (its scope from Bitnami's annotations) and keeps its own template, so the Secret gets the
//!   template's annotations under Bitnami's names; Bitnami's deprecated whole-Secret `spec.data` is
//!   refused ([`Reason::Unsupported`]);
//! - **who may write a Secret** ([`Flavour::producer`]): each flavour honours its own opt-in
//!   annotations, and a seal.dev object inherits the Secret of the Bitnami object of its name;
//! - **the Secret's shape**: seal's label, owner reference and record for a seal.dev object;
//!   exactly what Bitnami's controller writes for a Bitnami object (no seal label, no record),
//!   since Bitnami's controller replaces a Secret's labels and annotations wholesale, and the two
//!   would otherwise rewrite each other forever;
//! - **the status**: `Ready` for a seal.dev object, Bitnami's `Synced` for a Bitnami object
//!   ([`crate::protocols::ready_condition`]).

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use seal_api::SealedSecret;
use seal_api::bitnami::{BitnamiSealedSecret, from_bitnami};
use seal_api::names::SEALED_SECRET_UID_LABEL;

use super::unseal::{Outcome, Reason, write_status};
use super::watched::Watched;
use crate::protocols::ownership::{OptIns, Predecessor, Producer};
use crate::protocols::ready_condition;

/// Which API a SealedSecret came by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// `seal.dev/v1alpha1`.
    Seal,
    /// `bitnami.com/v1alpha1`.
    Bitnami,
}

impl Flavour {
    /// The producer `sealed` (of this flavour, with `uid`) is to the ownership rule.
    pub fn producer<'a>(self, sealed: &'a SealedSecret, uid: &'a str) -> Producer<'a> {
        match self {
            Flavour::Seal => Producer {
                uid_label: SEALED_SECRET_UID_LABEL,
                uid,
                opt_ins: OptIns::SEAL,
                predecessor: sealed
                    .metadata
                    .name
                    .as_deref()
                    .map(Predecessor::bitnami_sealed_secret),
            },
            // Bitnami's controller recognises its Secrets by owner reference alone.
            Flavour::Bitnami => Producer {
                uid_label: SEALED_SECRET_UID_LABEL,
                uid,
                opt_ins: OptIns::BITNAMI,
                predecessor: None,
            },
        }
    }
}

/// One object to reconcile, as the reconciler caches it.
#[derive(Clone)]
pub enum Object {
    /// A seal.dev SealedSecret, without its ciphertext ([`Watched`]).
    Seal(Arc<Watched>),
    /// A bitnami.com SealedSecret.
    Bitnami(Arc<BitnamiSealedSecret>),
}

impl Object {
    /// Its flavour.
    pub fn flavour(&self) -> Flavour {
        match self {
            Object::Seal(_) => Flavour::Seal,
            Object::Bitnami(_) => Flavour::Bitnami,
        }
    }

    /// Its metadata.
    pub fn meta(&self) -> &kube::api::ObjectMeta {
        match self {
            Object::Seal(sealed) => sealed.meta(),
            Object::Bitnami(bitnami) => bitnami.meta(),
        }
    }

    /// A reference to it, for Events.
    pub fn object_ref(&self) -> ObjectReference {
        match self {
            Object::Seal(sealed) => sealed.object_ref(&()),
            Object::Bitnami(bitnami) => bitnami.object_ref(&()),
        }
    }

    /// The object as it is now, with the SealedSecret to decrypt for it or why there is none;
    /// `None` when it is gone. A seal.dev object is read afresh (the cache holds no ciphertext).
    ///
    /// # Errors
    /// The API server could not be asked.
    pub async fn whole(
        &self,
        client: Client,
    ) -> Result<Option<(Object, Result<Arc<SealedSecret>, Outcome>)>, kube::Error> {
        Ok(match self {
            Object::Seal(watched) => watched.fetch(client).await?.map(|sealed| {
                let cached = Object::Seal(Arc::new(Watched::from(sealed.clone())));
                (cached, Ok(Arc::new(sealed)))
            }),
            Object::Bitnami(bitnami) => Some((self.clone(), as_sealed(bitnami).map(Arc::new))),
        })
    }

    /// Records `outcome` in its status, in its flavour's shape. Returns whether it wrote.
    ///
    /// # Errors
    /// The API server refused the status write.
    pub async fn write_status(
        &self,
        client: Client,
        outcome: &Outcome,
    ) -> Result<bool, kube::Error> {
        match self {
            Object::Seal(watched) => {
                write_status(client, &watched.without_ciphertext(), outcome).await
            }
            Object::Bitnami(bitnami) => write_synced(client, bitnami, outcome).await,
        }
    }
}

/// `bitnami` as the seal.dev SealedSecret that is decrypted for it: its own metadata (uid,
/// generation) and its own template, so that the Secret is shaped as Bitnami's controller shapes
/// it.
fn as_sealed(bitnami: &BitnamiSealedSecret) -> Result<SealedSecret, Outcome> {
    let mut sealed = from_bitnami(bitnami)
        .map_err(|error| Outcome::failed(Reason::Unsupported, error.to_string()))?;
    sealed.metadata = bitnami.metadata.clone();
    sealed.spec.template.clone_from(&bitnami.spec.template);
    Ok(sealed)
}

/// Writes Bitnami's `Synced` condition for `outcome` when Bitnami's rule asks for a write
/// ([`ready_condition::synced`]). Returns whether it wrote.
async fn write_synced(
    client: Client,
    bitnami: &BitnamiSealedSecret,
    outcome: &Outcome,
) -> Result<bool, kube::Error> {
    let failure = (outcome.reason != Reason::Unsealed).then_some(outcome.message.as_str());
    let Some(status) = ready_condition::synced(
        bitnami.status.as_ref(),
        failure,
        bitnami.metadata.generation,
        k8s_openapi::jiff::Timestamp::now(),
    ) else {
        return Ok(false);
    };
    let api: Api<BitnamiSealedSecret> =
        Api::namespaced(client, &bitnami.namespace().unwrap_or_default());
    // A merge patch replaces the conditions list as a whole, which is what Bitnami's update does.
    let patch = serde_json::json!({ "status": status });
    api.patch_status(
        &bitnami.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use seal_api::bitnami::to_bitnami;
    use seal_api::names::BITNAMI_SKIP_OWNER_ANNOTATION;
    use seal_api::sealed_secret::{
        SealedSecretSpec, SealingScope, SecretTemplate, TemplateMetadata,
    };
    use std::collections::BTreeMap;

    fn bitnami() -> BitnamiSealedSecret {
        let mut sealed = SealedSecret::new(
            "db",
            SealedSecretSpec {
                scope: SealingScope::NamespaceWide,
                encrypted_data: BTreeMap::from([("password".into(), "AgB".into())]),
                template: Some(SecretTemplate {
                    metadata: Some(TemplateMetadata {
                        annotations: Some(BTreeMap::from([(
                            seal_api::names::SKIP_OWNER_ANNOTATION.into(),
                            "true".into(),
                        )])),
                        ..TemplateMetadata::default()
                    }),
                    ..SecretTemplate::default()
                }),
                ..SealedSecretSpec::default()
            },
        );
        sealed.metadata.namespace = Some("ml".into());
        let mut bitnami = to_bitnami(&sealed);
        bitnami.metadata.uid = Some("u1".into());
        bitnami.metadata.generation = Some(4);
        bitnami
    }

    #[test]
    fn a_bitnami_object_keeps_its_identity_scope_and_template() {
        let object = bitnami();
        let sealed = as_sealed(&object).unwrap();
        assert_eq!(sealed.spec.scope, SealingScope::NamespaceWide);
        assert_eq!(sealed.metadata.uid.as_deref(), Some("u1"));
        assert_eq!(sealed.metadata.generation, Some(4));
        let annotations = sealed
            .spec
            .template
            .and_then(|t| t.metadata)
            .and_then(|m| m.annotations)
            .unwrap();
        assert!(annotations.contains_key(BITNAMI_SKIP_OWNER_ANNOTATION));
    }

    #[test]
    fn bitnamis_whole_secret_data_is_unsupported_with_the_reason() {
        let mut object = bitnami();
        object.spec.data = Some("AgB".into());
        let refused = as_sealed(&object).unwrap_err();
        assert_eq!(refused.reason, Reason::Unsupported);
        assert!(refused.message.contains("spec.data"), "{}", refused.message);
    }

    #[test]
    fn only_a_seal_object_inherits_and_each_honours_its_own_opt_ins() {
        let sealed = as_sealed(&bitnami()).unwrap();
        let seal = Flavour::Seal.producer(&sealed, "u1");
        assert_eq!(
            seal.predecessor,
            Some(Predecessor::bitnami_sealed_secret("db"))
        );
        assert_eq!(seal.opt_ins, OptIns::SEAL);
        let theirs = Flavour::Bitnami.producer(&sealed, "u1");
        assert_eq!(theirs.predecessor, None);
        assert_eq!(theirs.opt_ins, OptIns::BITNAMI);
    }
}
