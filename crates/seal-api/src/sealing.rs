//! Secret → SealedSecret, following kubeseal's rules, and adding items to an existing SealedSecret.
//!
//! The produced SealedSecret takes the Secret's name and namespace; its template takes the Secret's
//! metadata minus what only a server sets (uid, resourceVersion, generation, timestamps, selfLink,
//! managedFields, ownerReferences) and minus the `kubectl.kubernetes.io/last-applied-configuration`
//! annotation (which holds the plaintext), plus the Secret's `type` and `immutable`. Every item of
//! `data` and `stringData` is sealed on its own; `stringData` is sealed as UTF-8 and wins over `data`
//! on the same key, as the API server would merge them.

use crate::names::{CLUSTER_WIDE_ANNOTATION, NAMESPACE_WIDE_ANNOTATION};
use crate::names::{PLAINTEXT_ALLOWED_ANNOTATION, SCOPE_ANNOTATION};
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use seal_core::{Certificate, Scope, ScopeError, SecretBytes, envelope};

use crate::bitnami::strip_server_fields;
use crate::sealed_secret::{SealedSecret, SealedSecretSpec, SecretTemplate, TemplateMetadata};
use crate::unsealing::{KeyRing, UnsealError, unseal_items};

/// How to seal.
#[derive(Debug, Clone, Copy)]
pub struct SealOptions<'a> {
    /// The certificate to seal to.
    pub certificate: &'a Certificate,
    /// The scope; `None` takes it from the Secret's annotations, else strict.
    pub scope: Option<Scope>,
    /// The namespace to seal for; an error if the Secret names another.
    pub namespace: Option<&'a str>,
    /// The name to seal for; an error if the Secret names another.
    pub name: Option<&'a str>,
    /// Seal a Secret with no items instead of refusing it.
    pub allow_empty_data: bool,
}

/// Why a Secret could not be sealed. Messages name fields and items, never values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The scope needs a name or namespace that neither the Secret nor the options give.
    #[error("{0}: set it in the Secret's metadata or pass it on the command line")]
    Scope(#[from] ScopeError),
    /// The options name a different namespace than the Secret.
    #[error("namespace {given:?} given, but the Secret's metadata says {in_secret:?}")]
    NamespaceConflict {
        /// From the options.
        given: String,
        /// From the Secret.
        in_secret: String,
    },
    /// The options name a different name than the Secret.
    #[error("name {given:?} given, but the Secret's metadata says {in_secret:?}")]
    NameConflict {
        /// From the options.
        given: String,
        /// From the Secret.
        in_secret: String,
    },
    /// The Secret has no items.
    #[error("the Secret has no data or stringData; pass --allow-empty-data if that is intended")]
    EmptyData,
    /// An annotation names an unknown scope.
    #[error("annotation {SCOPE_ANNOTATION}: {0}")]
    ScopeAnnotation(ScopeError),
    /// The existing SealedSecret was sealed with a different certificate.
    #[error(
        "it was sealed with certificate {recorded}, not {given}; re-seal all items or run `seal re-encrypt` first"
    )]
    CertificateMismatch {
        /// Short fingerprint recorded in the SealedSecret.
        recorded: String,
        /// Short fingerprint of the certificate given.
        given: String,
    },
    /// The cryptographic library failed.
    #[error("sealing failed in the cryptographic library")]
    Crypto,
}

/// The items of a Secret as plaintext: `data` decoded, then `stringData` on top.
pub fn secret_items(secret: &Secret) -> BTreeMap<String, SecretBytes> {
    let mut items: BTreeMap<String, SecretBytes> = secret
        .data
        .iter()
        .flatten()
        .map(|(key, value)| (key.clone(), SecretBytes::new(value.0.clone())))
        .collect();
    for (key, value) in secret.string_data.iter().flatten() {
        items.insert(key.clone(), SecretBytes::new(value.as_bytes().to_vec()));
    }
    items
}

/// Seals a Secret into a new SealedSecret.
pub fn seal_secret(secret: &Secret, options: &SealOptions<'_>) -> Result<SealedSecret, SealError> {
    let namespace = merge_field(
        options.namespace,
        secret.metadata.namespace.as_deref(),
        |given, in_secret| SealError::NamespaceConflict { given, in_secret },
    )?;
    let name = merge_field(
        options.name,
        secret.metadata.name.as_deref(),
        |given, in_secret| SealError::NameConflict { given, in_secret },
    )?;
    let scope = match options.scope {
        Some(scope) => scope,
        None => scope_from_annotations(secret)?,
    };
    let label = scope.label(namespace.as_deref(), name.as_deref())?;
    let items = secret_items(secret);
    if items.is_empty() && !options.allow_empty_data {
        return Err(SealError::EmptyData);
    }
    let key = options.certificate.public_key();
    let encrypted_data = items
        .iter()
        .map(|(item, value)| {
            envelope::seal_base64(key, &label, value.expose())
                .map(|sealed| (item.clone(), sealed))
                .map_err(|_| SealError::Crypto)
        })
        .collect::<Result<BTreeMap<_, _>, _>>()?;

    let mut template_meta = secret.metadata.clone();
    strip_server_fields(&mut template_meta);
    template_meta.name.clone_from(&name);
    template_meta.namespace.clone_from(&namespace);
    if let Some(annotations) = template_meta.annotations.as_mut() {
        annotations.remove(SCOPE_ANNOTATION);
        annotations.remove(PLAINTEXT_ALLOWED_ANNOTATION);
        if annotations.is_empty() {
            template_meta.annotations = None;
        }
    }
    let mut sealed = SealedSecret::new(
        name.as_deref().unwrap_or_default(),
        SealedSecretSpec {
            scope: scope.into(),
            certificate_fingerprint: Some(options.certificate.fingerprint().to_string()),
            encrypted_data,
            template: Some(SecretTemplate {
                metadata: Some(template_metadata(template_meta)),
                type_: secret.type_.clone(),
                immutable: secret.immutable,
                data: None,
            }),
            rollout_restart_targets: Vec::new(),
        },
    );
    sealed.metadata.name = name;
    sealed.metadata.namespace = namespace;
    Ok(sealed)
}

/// Seals `items` into an existing SealedSecret under its own scope, name and namespace, replacing
/// items of the same name and keeping every other item's ciphertext.
///
/// Errors: [`SealError::CertificateMismatch`] when the SealedSecret records a different
/// certificate (mixing keys in one object would make its fingerprint a lie).
pub fn seal_items_into(
    target: &mut SealedSecret,
    items: &BTreeMap<String, SecretBytes>,
    certificate: &Certificate,
) -> Result<(), SealError> {
    let given = certificate.fingerprint();
    if let Some(recorded) = &target.spec.certificate_fingerprint
        && recorded.parse().ok() != Some(given)
    {
        return Err(SealError::CertificateMismatch {
            recorded: recorded.chars().take(12).collect(),
            given: given.short(),
        });
    }
    let label = target.label()?;
    for (item, value) in items {
        let sealed = envelope::seal_base64(certificate.public_key(), &label, value.expose())
            .map_err(|_| SealError::Crypto)?;
        target.spec.encrypted_data.insert(item.clone(), sealed);
    }
    if target.spec.certificate_fingerprint.is_none()
        && target.spec.encrypted_data.len() == items.len()
    {
        target.spec.certificate_fingerprint = Some(given.to_string());
    }
    Ok(())
}

/// Why a SealedSecret could not be sealed again for another certificate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResealError {
    /// An item does not open with the keys given (or the scope is incomplete).
    #[error(transparent)]
    Open(#[from] UnsealError),
    /// The cryptographic library failed.
    #[error("sealing failed in the cryptographic library")]
    Crypto,
}

/// `sealed` with every item opened with `ring` and sealed again for `certificate`, under the
/// SealedSecret's own scope, name and namespace (never anything its template says), recording the
/// new certificate's fingerprint. Metadata and template are kept as they are.
pub fn reseal(
    sealed: &SealedSecret,
    ring: &KeyRing,
    certificate: &Certificate,
) -> Result<SealedSecret, ResealError> {
    let items = unseal_items(sealed, ring)?;
    let label = sealed.label().map_err(UnsealError::from)?;
    let mut resealed = sealed.clone();
    for (item, value) in &items {
        let ciphertext = envelope::seal_base64(certificate.public_key(), &label, value.expose())
            .map_err(|_| ResealError::Crypto)?;
        resealed
            .spec
            .encrypted_data
            .insert(item.clone(), ciphertext);
    }
    resealed.spec.certificate_fingerprint = Some(certificate.fingerprint().to_string());
    Ok(resealed)
}

fn merge_field(
    given: Option<&str>,
    in_secret: Option<&str>,
    conflict: impl FnOnce(String, String) -> SealError,
) -> Result<Option<String>, SealError> {
    let given = given.filter(|s| !s.is_empty());
    let in_secret = in_secret.filter(|s| !s.is_empty());
    match (given, in_secret) {
        (Some(g), Some(s)) if g != s => Err(conflict(g.to_owned(), s.to_owned())),
        (Some(v), _) | (None, Some(v)) => Ok(Some(v.to_owned())),
        (None, None) => Ok(None),
    }
}

fn scope_from_annotations(secret: &Secret) -> Result<Scope, SealError> {
    let Some(annotations) = secret.metadata.annotations.as_ref() else {
        return Ok(Scope::Strict);
    };
    if let Some(name) = annotations.get(SCOPE_ANNOTATION) {
        return name.parse().map_err(SealError::ScopeAnnotation);
    }
    let set = |key: &str| annotations.get(key).is_some_and(|v| v == "true");
    Ok(if set(CLUSTER_WIDE_ANNOTATION) {
        Scope::ClusterWide
    } else if set(NAMESPACE_WIDE_ANNOTATION) {
        Scope::NamespaceWide
    } else {
        Scope::Strict
    })
}

fn template_metadata(
    meta: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> TemplateMetadata {
    let mut other = BTreeMap::new();
    if let Some(finalizers) = meta.finalizers {
        other.insert("finalizers".into(), serde_json::json!(finalizers));
    }
    if let Some(generate_name) = meta.generate_name {
        other.insert("generateName".into(), serde_json::json!(generate_name));
    }
    TemplateMetadata {
        name: meta.name,
        namespace: meta.namespace,
        labels: meta.labels,
        annotations: meta.annotations,
        other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn secret() -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some("ml-api-db".into()),
                namespace: Some("ml-prod".into()),
                uid: Some("123".into()),
                resource_version: Some("9".into()),
                annotations: Some(BTreeMap::from([(
                    crate::LAST_APPLIED_ANNOTATION.to_string(),
                    "{\"stringData\":{\"password\":\"hunter2\"}}".to_string(),
                )])),
                labels: Some(BTreeMap::from([("app".to_string(), "ml-api".to_string())])),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([
                ("user".to_string(), ByteString(b"ml".to_vec())),
                ("password".to_string(), ByteString(b"old".to_vec())),
            ])),
            string_data: Some(BTreeMap::from([(
                "password".to_string(),
                "hunter2".to_string(),
            )])),
            type_: Some("Opaque".into()),
            ..Secret::default()
        }
    }

    #[test]
    fn string_data_wins_over_data() {
        let items = secret_items(&secret());
        assert_eq!(items["password"].expose(), b"hunter2");
        assert_eq!(items["user"].expose(), b"ml");
    }

    #[test]
    fn name_and_namespace_conflicts_are_errors() {
        assert!(matches!(
            merge_field(Some("a"), Some("b"), |given, in_secret| {
                SealError::NameConflict { given, in_secret }
            }),
            Err(SealError::NameConflict { .. })
        ));
        assert_eq!(
            merge_field(Some("a"), None, |_, _| SealError::EmptyData).unwrap(),
            Some("a".into())
        );
        assert_eq!(
            merge_field(None, Some("b"), |_, _| SealError::EmptyData).unwrap(),
            Some("b".into())
        );
    }

    #[test]
    fn template_metadata_drops_server_fields_and_last_applied() {
        let mut meta = secret().metadata;
        strip_server_fields(&mut meta);
        let template = template_metadata(meta);
        assert_eq!(template.labels.unwrap()["app"], "ml-api");
        assert!(template.annotations.is_none());
        assert!(template.other.is_empty());
    }

    #[test]
    fn scope_annotations_choose_the_scope() {
        let mut s = secret();
        assert_eq!(scope_from_annotations(&s).unwrap(), Scope::Strict);
        s.metadata.annotations = Some(BTreeMap::from([(
            NAMESPACE_WIDE_ANNOTATION.to_string(),
            "true".to_string(),
        )]));
        assert_eq!(scope_from_annotations(&s).unwrap(), Scope::NamespaceWide);
        s.metadata.annotations = Some(BTreeMap::from([(
            SCOPE_ANNOTATION.to_string(),
            "cluster-wide".to_string(),
        )]));
        assert_eq!(scope_from_annotations(&s).unwrap(), Scope::ClusterWide);
        s.metadata.annotations = Some(BTreeMap::from([(
            SCOPE_ANNOTATION.to_string(),
            "galaxy".to_string(),
        )]));
        assert!(matches!(
            scope_from_annotations(&s),
            Err(SealError::ScopeAnnotation(_))
        ));
    }
}
