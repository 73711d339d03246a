//! Bitnami's `bitnami.com/v1alpha1` SealedSecret, and conversion to and from seal's.
//!
//! The two formats carry the same ciphertext; conversion moves metadata around and never touches an
//! encrypted value. Bitnami records the scope as annotations on the SealedSecret (`cluster-wide` wins
//! when both are set); seal has `spec.scope`. seal's certificate fingerprint travels as the
//! annotation `seal.dev/certificate-fingerprint` on Bitnami manifests so that a round trip keeps it
//! (Bitnami's controller ignores it). The template annotation that suppresses owner references is
//! renamed between `sealedsecrets.bitnami.com/skip-set-owner-references` and
//! `seal.dev/skip-owner-references`.
//!
//! [`BitnamiSealedSecret`] is also a Kubernetes resource (`bitnami.com/v1alpha1`, `sealedsecrets`,
//! namespaced) with Bitnami's status, so that seal-controller can watch and report on Bitnami's
//! objects in place (`--bitnami-sealed-secrets`).

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::{Deserialize, Serialize};

use crate::names::{
    BITNAMI_SKIP_OWNER_ANNOTATION, CLUSTER_WIDE_ANNOTATION, FINGERPRINT_ANNOTATION,
    NAMESPACE_WIDE_ANNOTATION, SKIP_OWNER_ANNOTATION,
};
use crate::sealed_secret::{SealedSecret, SealedSecretSpec, SealingScope, SecretTemplate};

/// `apiVersion` of Bitnami's SealedSecret.
pub const BITNAMI_API_VERSION: &str = "bitnami.com/v1alpha1";
/// Bitnami's API group.
pub const BITNAMI_GROUP: &str = "bitnami.com";

/// A Bitnami SealedSecret, as kubeseal writes it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BitnamiSealedSecret {
    /// Always `bitnami.com/v1alpha1`.
    pub api_version: String,
    /// Always `SealedSecret`.
    pub kind: String,
    /// Name, namespace, and the scope annotations.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The sealed items and the template.
    pub spec: BitnamiSpec,
    /// What Bitnami's controller (or seal-controller in its place) last observed; absent in
    /// manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<BitnamiStatus>,
}

/// Bitnami's `SealedSecretStatus`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BitnamiStatus {
    /// The `metadata.generation` last observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The conditions; Bitnami's controller writes one, of type `Synced`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<BitnamiCondition>,
}

/// Bitnami's `SealedSecretCondition`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BitnamiCondition {
    /// The condition's type (`Synced`).
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// When the condition was last evaluated and written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
    /// When `status` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// A machine-readable reason (Bitnami's controller leaves it empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Empty when synced; why not otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl kube::Resource for BitnamiSealedSecret {
    type DynamicType = ();
    type Scope = kube::core::NamespaceResourceScope;

    fn kind((): &()) -> Cow<'_, str> {
        "SealedSecret".into()
    }

    fn group((): &()) -> Cow<'_, str> {
        "bitnami.com".into()
    }

    fn version((): &()) -> Cow<'_, str> {
        "v1alpha1".into()
    }

    fn plural((): &()) -> Cow<'_, str> {
        "sealedsecrets".into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Bitnami's spec.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BitnamiSpec {
    /// Item name to base64 sealed value.
    #[serde(default)]
    pub encrypted_data: BTreeMap<String, String>,
    /// Shape of the Secret to produce (same fields as seal's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<SecretTemplate>,
    /// Deprecated: the whole Secret as JSON, sealed in one blob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

/// Why a Bitnami manifest cannot become a seal one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// The manifest uses Bitnami's deprecated whole-Secret `spec.data`.
    #[error(
        "uses the deprecated spec.data (the whole Secret sealed in one value), which seal does not carry; re-seal it per item with seal or kubeseal"
    )]
    LegacyData,
}

/// seal's SealedSecret as Bitnami's. The ciphertext is unchanged.
pub fn to_bitnami(sealed: &SealedSecret) -> BitnamiSealedSecret {
    let mut metadata = sealed.metadata.clone();
    strip_server_fields(&mut metadata);
    let annotations = metadata.annotations.get_or_insert_with(BTreeMap::new);
    match sealed.spec.scope {
        SealingScope::Strict => {}
        SealingScope::NamespaceWide => {
            annotations.insert(NAMESPACE_WIDE_ANNOTATION.into(), "true".into());
        }
        SealingScope::ClusterWide => {
            annotations.insert(CLUSTER_WIDE_ANNOTATION.into(), "true".into());
        }
    }
    if let Some(fingerprint) = &sealed.spec.certificate_fingerprint {
        annotations.insert(FINGERPRINT_ANNOTATION.into(), fingerprint.clone());
    }
    if annotations.is_empty() {
        metadata.annotations = None;
    }
    let mut template = sealed.spec.template.clone();
    rename_template_annotation(
        &mut template,
        SKIP_OWNER_ANNOTATION,
        BITNAMI_SKIP_OWNER_ANNOTATION,
    );
    BitnamiSealedSecret {
        api_version: BITNAMI_API_VERSION.into(),
        kind: "SealedSecret".into(),
        metadata,
        spec: BitnamiSpec {
            encrypted_data: sealed.spec.encrypted_data.clone(),
            template,
            data: None,
        },
        status: None,
    }
}

/// Bitnami's SealedSecret as seal's. The ciphertext is unchanged.
///
/// Errors: [`ConvertError::LegacyData`] for manifests that use the deprecated `spec.data`.
pub fn from_bitnami(bitnami: &BitnamiSealedSecret) -> Result<SealedSecret, ConvertError> {
    if bitnami.spec.data.as_deref().is_some_and(|d| !d.is_empty()) {
        return Err(ConvertError::LegacyData);
    }
    let mut metadata = bitnami.metadata.clone();
    strip_server_fields(&mut metadata);
    let annotations = metadata.annotations.take().unwrap_or_default();
    let scope = bitnami_scope(&annotations);
    let mut certificate_fingerprint = None;
    let mut kept = BTreeMap::new();
    for (key, value) in annotations {
        match key.as_str() {
            NAMESPACE_WIDE_ANNOTATION | CLUSTER_WIDE_ANNOTATION => {}
            FINGERPRINT_ANNOTATION => certificate_fingerprint = Some(value),
            _ => {
                kept.insert(key, value);
            }
        }
    }
    metadata.annotations = (!kept.is_empty()).then_some(kept);
    let mut template = bitnami.spec.template.clone();
    rename_template_annotation(
        &mut template,
        BITNAMI_SKIP_OWNER_ANNOTATION,
        SKIP_OWNER_ANNOTATION,
    );
    Ok(SealedSecret {
        metadata,
        spec: SealedSecretSpec {
            scope,
            certificate_fingerprint,
            encrypted_data: bitnami.spec.encrypted_data.clone(),
            template,
            rollout_restart_targets: Vec::new(),
        },
        status: None,
    })
}

/// The scope Bitnami's annotations express: cluster-wide wins over namespace-wide, strict otherwise.
pub fn bitnami_scope(annotations: &BTreeMap<String, String>) -> SealingScope {
    let set = |key: &str| annotations.get(key).is_some_and(|v| v == "true");
    if set(CLUSTER_WIDE_ANNOTATION) {
        SealingScope::ClusterWide
    } else if set(NAMESPACE_WIDE_ANNOTATION) {
        SealingScope::NamespaceWide
    } else {
        SealingScope::Strict
    }
}

/// Empties fields only a server sets, so converted manifests stay clean for git.
pub(crate) fn strip_server_fields(metadata: &mut ObjectMeta) {
    metadata.uid = None;
    metadata.resource_version = None;
    metadata.generation = None;
    metadata.creation_timestamp = None;
    metadata.deletion_timestamp = None;
    metadata.deletion_grace_period_seconds = None;
    metadata.self_link = None;
    metadata.managed_fields = None;
    metadata.owner_references = None;
    if let Some(annotations) = metadata.annotations.as_mut() {
        annotations.remove(crate::LAST_APPLIED_ANNOTATION);
        if annotations.is_empty() {
            metadata.annotations = None;
        }
    }
}

fn rename_template_annotation(template: &mut Option<SecretTemplate>, from: &str, to: &str) {
    let Some(annotations) = template
        .as_mut()
        .and_then(|t| t.metadata.as_mut())
        .and_then(|m| m.annotations.as_mut())
    else {
        return;
    };
    if let Some(value) = annotations.remove(from) {
        annotations.insert(to.into(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sealed_secret::TemplateMetadata;

    fn sample(scope: SealingScope) -> SealedSecret {
        let mut sealed = SealedSecret::new(
            "ml-api-db",
            SealedSecretSpec {
                scope,
                certificate_fingerprint: Some("ab".repeat(32)),
                encrypted_data: BTreeMap::from([("password".into(), "AgBy...".into())]),
                template: Some(SecretTemplate {
                    metadata: Some(TemplateMetadata {
                        annotations: Some(BTreeMap::from([(
                            SKIP_OWNER_ANNOTATION.into(),
                            "true".into(),
                        )])),
                        ..TemplateMetadata::default()
                    }),
                    type_: Some("Opaque".into()),
                    ..SecretTemplate::default()
                }),
                rollout_restart_targets: Vec::new(),
            },
        );
        sealed.metadata.namespace = Some("ml-prod".into());
        sealed
    }

    #[test]
    fn every_scope_survives_a_round_trip_with_ciphertext_untouched() {
        for scope in [
            SealingScope::Strict,
            SealingScope::NamespaceWide,
            SealingScope::ClusterWide,
        ] {
            let ours = sample(scope);
            let theirs = to_bitnami(&ours);
            assert_eq!(theirs.api_version, BITNAMI_API_VERSION);
            assert_eq!(theirs.spec.encrypted_data, ours.spec.encrypted_data);
            assert_eq!(from_bitnami(&theirs).unwrap(), ours);
        }
    }

    #[test]
    fn scope_becomes_annotations_and_skip_owner_is_renamed() {
        let theirs = to_bitnami(&sample(SealingScope::NamespaceWide));
        let annotations = theirs.metadata.annotations.unwrap();
        assert_eq!(annotations[NAMESPACE_WIDE_ANNOTATION], "true");
        assert!(!annotations.contains_key(CLUSTER_WIDE_ANNOTATION));
        let template_annotations = theirs
            .spec
            .template
            .unwrap()
            .metadata
            .unwrap()
            .annotations
            .unwrap();
        assert_eq!(template_annotations[BITNAMI_SKIP_OWNER_ANNOTATION], "true");
    }

    #[test]
    fn cluster_wide_wins_when_both_annotations_are_set() {
        let annotations = BTreeMap::from([
            (NAMESPACE_WIDE_ANNOTATION.to_string(), "true".to_string()),
            (CLUSTER_WIDE_ANNOTATION.to_string(), "true".to_string()),
        ]);
        assert_eq!(bitnami_scope(&annotations), SealingScope::ClusterWide);
        assert_eq!(bitnami_scope(&BTreeMap::new()), SealingScope::Strict);
    }

    #[test]
    fn the_resource_is_bitnamis_and_an_absent_status_is_not_written() {
        use kube::Resource;
        assert_eq!(BitnamiSealedSecret::api_version(&()), BITNAMI_API_VERSION);
        assert_eq!(
            BitnamiSealedSecret::url_path(&(), Some("ml")),
            "/apis/bitnami.com/v1alpha1/namespaces/ml/sealedsecrets"
        );
        let theirs = to_bitnami(&sample(SealingScope::Strict));
        let yaml = serde_yaml::to_string(&theirs).unwrap();
        assert!(!yaml.contains("status"), "{yaml}");
        let read: BitnamiSealedSecret = serde_json::from_value(serde_json::json!({
            "apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret",
            "metadata": {"name": "db"}, "spec": {"encryptedData": {}},
            "status": {"observedGeneration": 3, "conditions": [{
                "type": "Synced", "status": "True",
                "lastUpdateTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
        }))
        .unwrap();
        let status = read.status.unwrap();
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.conditions[0].type_, "Synced");
        assert_eq!(status.conditions[0].message, None);
    }

    #[test]
    fn legacy_whole_secret_data_is_refused() {
        let mut theirs = to_bitnami(&sample(SealingScope::Strict));
        theirs.spec.data = Some("AgB...".into());
        assert_eq!(from_bitnami(&theirs), Err(ConvertError::LegacyData));
    }
}
