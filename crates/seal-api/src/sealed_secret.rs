//! The `SealedSecret` custom resource (`seal.dev/v1alpha1`).
//!
//! It keeps Bitnami's spec field names (`encryptedData`, `template`) so a manifest converts by
//! changing its apiVersion, with two additions that Bitnami records in annotations or not at all:
//! `spec.scope`, explicit instead of two annotations that can contradict each other, and
//! `spec.certificateFingerprint`, the SHA-256 of the certificate the items were sealed with, which
//! lets the controller try the right key first and lets `seal verify` prove offline that a file was
//! sealed for the intended cluster.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of seal's resources.
pub const GROUP: &str = "seal.dev";
/// `apiVersion` of seal's SealedSecret.
pub const API_VERSION: &str = "seal.dev/v1alpha1";

/// Where the items of a SealedSecret may be unsealed. Serialized as `strict`, `namespace-wide` or
/// `cluster-wide`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SealingScope {
    /// Only this name in this namespace.
    #[default]
    Strict,
    /// Any name in this namespace.
    NamespaceWide,
    /// Anywhere in the cluster.
    ClusterWide,
}

impl From<SealingScope> for seal_core::Scope {
    fn from(scope: SealingScope) -> Self {
        match scope {
            SealingScope::Strict => seal_core::Scope::Strict,
            SealingScope::NamespaceWide => seal_core::Scope::NamespaceWide,
            SealingScope::ClusterWide => seal_core::Scope::ClusterWide,
        }
    }
}

impl From<seal_core::Scope> for SealingScope {
    fn from(scope: seal_core::Scope) -> Self {
        match scope {
            seal_core::Scope::Strict => SealingScope::Strict,
            seal_core::Scope::NamespaceWide => SealingScope::NamespaceWide,
            seal_core::Scope::ClusterWide => SealingScope::ClusterWide,
        }
    }
}

/// A Kubernetes Secret sealed for one cluster: safe to commit, opened only by that cluster's
/// controller.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "seal.dev",
    version = "v1alpha1",
    kind = "SealedSecret",
    namespaced,
    status = "SealedSecretStatus",
    shortname = "sealed",
    category = "seal",
    derive = "PartialEq",
    doc = "A Secret sealed with a cluster's public key: safe to keep in git, unsealed only by that cluster's seal-controller.",
    printcolumn = r#"{"name":"Scope","type":"string","jsonPath":".spec.scope"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SealedSecretSpec {
    /// Where the items may be unsealed; the OAEP label is derived from it and from this object's own
    /// name and namespace.
    #[serde(default)]
    pub scope: SealingScope,
    /// Lowercase hex SHA-256 of the SubjectPublicKeyInfo of the certificate every item was sealed
    /// with. Absent on manifests converted from Bitnami's format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub certificate_fingerprint: Option<String>,
    /// Item name to base64 sealed value; each item is sealed on its own.
    #[serde(default)]
    pub encrypted_data: BTreeMap<String, String>,
    /// Shape of the Secret to produce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<SecretTemplate>,
    /// Workloads in this namespace whose pods are restarted (through a checksum annotation on
    /// their pod template) when the unsealed Secret's data changes. Not in Bitnami's format:
    /// `seal convert --to bitnami` refuses a SealedSecret that sets it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub rollout_restart_targets: Vec<crate::rollout::RolloutRestartTarget>,
}

/// What the produced Secret looks like besides its sealed items.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretTemplate {
    /// Labels, annotations and other metadata copied to the Secret (its name and namespace are always
    /// the SealedSecret's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,
    /// The Secret's `type` (default `Opaque`).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Whether the Secret is immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
    /// Items rendered from templates over the unsealed values; a sealed item of the same name wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<BTreeMap<String, String>>,
}

/// Metadata for the produced Secret. Fields other than these are kept as they are.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct TemplateMetadata {
    /// Ignored by the controller (the SealedSecret's name is used); kept for kubeseal parity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Ignored by the controller (the SealedSecret's namespace is used); kept for kubeseal parity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels of the produced Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations of the produced Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Any other metadata field, kept as written.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// Observed state, written by the controller.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SealedSecretStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Kubernetes-style conditions; `Ready` says whether the Secret matches this SealedSecret.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Why a SealedSecret is or is not unsealed: the reason of its `Ready` condition and of the
/// controller's Events, as users and alerts read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The Secret holds the unsealed items.
    Unsealed,
    /// An item is malformed or no key opens it.
    DecryptionFailed,
    /// A Secret of that name exists and is not the controller's to write.
    NotManaged,
    /// A `template.data` entry does not parse or render.
    InvalidTemplate,
    /// The API server refused the write.
    UpdateFailed,
    /// The template asks for a reserved label or a denied type.
    DeniedByPolicy,
    /// The reconcile panicked: a bug, contained to this object.
    InternalError,
    /// The object uses a feature seal does not carry (Bitnami's deprecated whole-Secret
    /// `spec.data`).
    Unsupported,
}

impl Reason {
    /// Every reason that means the Secret was not written as asked.
    pub const FAILURES: [Reason; 7] = [
        Self::DecryptionFailed,
        Self::NotManaged,
        Self::InvalidTemplate,
        Self::UpdateFailed,
        Self::DeniedByPolicy,
        Self::InternalError,
        Self::Unsupported,
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
            Self::Unsupported => "Unsupported",
        }
    }
}

impl SealedSecret {
    /// The scope as seal-core understands it.
    pub fn scope(&self) -> seal_core::Scope {
        self.spec.scope.into()
    }

    /// The OAEP label this object's items must have been sealed under.
    pub fn label(&self) -> Result<seal_core::Label, seal_core::ScopeError> {
        self.scope().label(
            self.metadata.namespace.as_deref(),
            self.metadata.name.as_deref(),
        )
    }

    /// The recorded certificate fingerprint, if present and well-formed.
    pub fn fingerprint(&self) -> Option<seal_core::Fingerprint> {
        self.spec.certificate_fingerprint.as_deref()?.parse().ok()
    }
}
