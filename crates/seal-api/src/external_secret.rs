//! `ExternalSecret`: a Secret kept in sync with values read through a [`SecretStore`] or
//! [`ClusterSecretStore`], with ESO's field names and enum spellings (external-secrets.io/v1) so an
//! ESO manifest for the AWS or Vault provider converts by changing its apiVersion.
//!
//! What seal keeps of ESO: `secretStoreRef`, `refreshInterval`, `refreshPolicy`, `target` (name,
//! creation and deletion policy, immutability, template with metadata, merge policy and data),
//! `data[].remoteRef` and `dataFrom[]` `extract` / `find` with `rewrite[].regexp`. What it leaves
//! out is refused by the schema rather than ignored: generators and per-item stores (`sourceRef`),
//! `templateFrom`, template engines other than v2, metadata policies and conversion strategies.
//! seal adds one field, `spec.rolloutRestartTargets` (see [`crate::rollout`]).
//!
//! As for the stores, ESO's defaults (refresh every hour, `Owner`, `Retain`, `Replace`, no
//! decoding) live in accessors, not in the schema, so the API server never adds fields a GitOps
//! tool would report as drift. [`ExternalSecret::validate`] and the CRD's CEL rules check what the
//! schema cannot (a parseable refresh interval, `extract` xor `find`, compatible policies,
//! templates that parse in seal's template language).
//!
//! [`SecretStore`]: crate::secret_store::SecretStore
//! [`ClusterSecretStore`]: crate::secret_store::ClusterSecretStore

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::rollout::RolloutRestartTarget;
use crate::validation::{ValidationError, exactly_one, non_empty};
use seal_core::duration::{DurationError, parse_kubernetes_duration};

/// Reasons of an ExternalSecret's `Ready` condition, as ESO spells them.
pub mod reason {
    /// The Secret holds what the provider returned.
    pub const SECRET_SYNCED: &str = "SecretSynced";
    /// Reading or writing failed; the message says which item and why (never a value).
    pub const SECRET_SYNCED_ERROR: &str = "SecretSyncedError";
    /// The Secret was deleted as `deletionPolicy: Delete` asks, because the remote values are gone.
    pub const SECRET_DELETED: &str = "SecretDeleted";
    /// The target Secret does not exist (with `creationPolicy: None` or `Merge`, seal never makes it).
    pub const SECRET_MISSING: &str = "SecretMissing";
}

pub use crate::names::CONDITION_READY;

/// ESO's default refresh interval, used when `refreshInterval` is omitted.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(3600);

/// The shortest refresh interval other than `0s`: anything shorter is a busy loop against the
/// provider and the API server that one manifest could start.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// A Secret kept in sync with values from AWS Secrets Manager or Vault.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "seal.dev",
    version = "v1alpha1",
    kind = "ExternalSecret",
    namespaced,
    status = "ExternalSecretStatus",
    shortname = "es",
    category = "seal",
    derive = "PartialEq",
    doc = "A Secret kept in sync with values read from AWS Secrets Manager or Vault through a SecretStore or ClusterSecretStore, with ESO's field names.",
    printcolumn = r#"{"name":"Store","type":"string","jsonPath":".spec.secretStoreRef.name"}"#,
    printcolumn = r#"{"name":"Refresh Interval","type":"string","jsonPath":".spec.refreshInterval"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.data) && size(self.data) > 0) || (has(self.dataFrom) && size(self.dataFrom) > 0)",
    "message": "either data or dataFrom must be set"
}, {
    "rule": "!has(self.refreshInterval) || duration(self.refreshInterval) == duration('0s') || duration(self.refreshInterval) >= duration('1s')",
    "message": "refreshInterval must be 0s (read once) or at least 1s"
}]))]
pub struct ExternalSecretSpec {
    /// The store to read through.
    pub secret_store_ref: SecretStoreRef,
    /// How often to read again, as a duration (`1h`, `15m`, `0s`); default `1h`; `0s` reads once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = seal_core::duration::DURATION_PATTERN))]
    pub refresh_interval: Option<String>,
    /// When to read again: `Periodic` (default), `OnChange` (when the spec changes) or
    /// `CreatedOnce`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_policy: Option<RefreshPolicy>,
    /// The Secret to write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<ExternalSecretTarget>,
    /// Items, each one remote value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<ExternalSecretData>,
    /// Items in bulk: every key of a remote JSON secret, or every secret a search finds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub data_from: Vec<ExternalSecretDataFromRemoteRef>,
    /// seal's addition, absent from ESO: workloads in this namespace whose pods are restarted
    /// (through a checksum annotation on their pod template) when the Secret's data changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub rollout_restart_targets: Vec<RolloutRestartTarget>,
}

/// Which store to read through.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretStoreRef {
    /// The store's name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// `SecretStore` (default, in this namespace) or `ClusterSecretStore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<SecretStoreKind>,
}

/// The kind of store an ExternalSecret refers to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SecretStoreKind {
    /// A SecretStore in the ExternalSecret's namespace.
    #[default]
    SecretStore,
    /// A ClusterSecretStore.
    ClusterSecretStore,
}

/// When an ExternalSecret reads its values again.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RefreshPolicy {
    /// Once, when the Secret is created; never updated afterwards.
    CreatedOnce,
    /// Every `refreshInterval` (ESO's default).
    #[default]
    Periodic,
    /// Only when the ExternalSecret's spec changes.
    OnChange,
}

/// The Secret an ExternalSecret writes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!(has(self.deletionPolicy) && self.deletionPolicy == 'Delete' && has(self.creationPolicy) && self.creationPolicy == 'Merge')",
        "message": "deletionPolicy Delete needs a Secret this ExternalSecret owns; it cannot be used with creationPolicy Merge"
    },
    {
        "rule": "!(has(self.deletionPolicy) && self.deletionPolicy == 'Merge' && has(self.creationPolicy) && self.creationPolicy == 'None')",
        "message": "deletionPolicy Merge cannot be used with creationPolicy None: there is no Secret to merge with"
    }
]))]
pub struct ExternalSecretTarget {
    /// The Secret's name; default the ExternalSecret's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Who owns the Secret: `Owner` (default), `Orphan`, `Merge` or `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_policy: Option<CreationPolicy>,
    /// What happens to the Secret when the remote values are gone: `Retain` (default), `Delete`
    /// or `Merge`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
    /// Whether the Secret is immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
    /// The Secret's type, metadata and templated items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<ExternalSecretTemplate>,
}

/// ESO's creation policies.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CreationPolicy {
    /// The controller makes the Secret and owns it (owner reference; deleted with the
    /// ExternalSecret).
    #[default]
    Owner,
    /// The controller makes the Secret but does not own it (kept when the ExternalSecret goes).
    Orphan,
    /// The controller merges its items into an existing Secret, never making one.
    Merge,
    /// The controller writes nothing (useful with templates read by other means).
    None,
}

/// ESO's deletion policies: what happens to the Secret when the provider no longer has the values.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep the Secret as it is.
    #[default]
    Retain,
    /// Delete the Secret.
    Delete,
    /// Remove this ExternalSecret's items from the Secret, keep the rest.
    Merge,
}

/// The shape of the produced Secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretTemplate {
    /// The Secret's `type`; default `Opaque`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Labels and annotations of the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<ExternalSecretTemplateMetadata>,
    /// `Replace` (default): the Secret holds only the templated items when there are any.
    /// `Merge`: templated items are added to the fetched ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_policy: Option<TemplateMergePolicy>,
    /// Items rendered from templates over the fetched values, in seal's template language (the
    /// part of ESO's v2 Go templates that reads and transforms values; see `seal-template`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
}

/// Labels and annotations of the produced Secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretTemplateMetadata {
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// How templated items combine with fetched ones.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum TemplateMergePolicy {
    /// Only templated items (ESO's default).
    #[default]
    Replace,
    /// Fetched items plus templated items (a templated item wins).
    Merge,
}

/// One item: `secretKey` in the Secret, from one remote value.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretData {
    /// The item's name in the Secret.
    #[schemars(regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub secret_key: String,
    /// Where the value comes from.
    pub remote_ref: ExternalSecretDataRemoteRef,
}

/// A remote value.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretDataRemoteRef {
    /// AWS: the secret's name or ARN. Vault: the path below the store's mount.
    #[schemars(length(min = 1))]
    pub key: String,
    /// AWS: a JSON path into SecretString (a literal dotted key first). Vault: a key of the KV
    /// data. Omitted: the whole secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<String>,
    /// AWS: a version stage (default `AWSCURRENT`), or `uuid/<VersionId>`. Vault KV v2: a version
    /// number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// How to decode the value: `None` (default), `Base64`, `Base64URL` or `Auto` (base64 if it
    /// decodes, else as is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoding_strategy: Option<DecodingStrategy>,
}

/// ESO's decoding strategies.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DecodingStrategy {
    /// Base64 (standard or URL alphabet) when the value decodes as such, else the value as is.
    Auto,
    /// Standard base64.
    Base64,
    /// URL-safe base64.
    #[serde(rename = "Base64URL")]
    Base64Url,
    /// The value as is (ESO's default).
    #[default]
    None,
}

/// Items in bulk: exactly one of `extract` and `find`, with optional key rewrites.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.extract) ? 1 : 0) + (has(self.find) ? 1 : 0) == 1",
    "message": "exactly one of extract or find must be set"
}]))]
pub struct ExternalSecretDataFromRemoteRef {
    /// Every key of one remote JSON secret becomes an item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract: Option<ExternalSecretDataRemoteRef>,
    /// Every remote secret matching the search becomes an item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub find: Option<ExternalSecretFind>,
    /// Rewrites of the item names, applied in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rewrite: Vec<ExternalSecretRewrite>,
}

/// A search for remote secrets.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretFind {
    /// Only secrets below this path (Vault) or with this name prefix (AWS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Only secrets whose name matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<FindName>,
    /// Only secrets with all these tags (AWS) or custom metadata (Vault KV v2).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// How to decode each value; see [`ExternalSecretDataRemoteRef::decoding_strategy`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoding_strategy: Option<DecodingStrategy>,
}

/// A name filter.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct FindName {
    /// A regular expression the name must match.
    #[schemars(length(min = 1))]
    pub regexp: String,
}

/// One rewrite of item names.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct ExternalSecretRewrite {
    /// Replace what a regular expression matches.
    pub regexp: ExternalSecretRewriteRegexp,
}

/// A regular-expression rewrite: every match of `source` is replaced by `target` (`$1` refers to
/// a group).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct ExternalSecretRewriteRegexp {
    /// The regular expression.
    pub source: String,
    /// The replacement.
    pub target: String,
}

/// Observed state, written by the controller.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the values were last read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_time: Option<Time>,
    /// The ExternalSecret's `metadata.resourceVersion` at the last sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_resource_version: Option<String>,
    /// The Secret written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<SecretBinding>,
    /// `Ready` with a reason from [`reason`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The Secret an ExternalSecret writes (a `LocalObjectReference`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct SecretBinding {
    /// The Secret's name.
    pub name: String,
}

impl ExternalSecretSpec {
    /// The refresh interval: `refreshInterval` parsed, else [`DEFAULT_REFRESH_INTERVAL`].
    /// [`Duration::ZERO`] means "read once, never refresh".
    ///
    /// Errors: what [`parse_kubernetes_duration`] refuses, and an interval shorter than
    /// [`MIN_REFRESH_INTERVAL`] other than zero (the CRD's CEL rule refuses it too; this check
    /// holds for objects stored before that rule).
    pub fn refresh_interval(&self) -> Result<Duration, DurationError> {
        let interval = self
            .refresh_interval
            .as_deref()
            .map_or(Ok(DEFAULT_REFRESH_INTERVAL), parse_kubernetes_duration)?;
        if !interval.is_zero() && interval < MIN_REFRESH_INTERVAL {
            return Err(DurationError::TooShort {
                input: self.refresh_interval.clone().unwrap_or_default(),
                minimum: "1s",
            });
        }
        Ok(interval)
    }

    /// The refresh policy, `Periodic` unless set.
    pub fn refresh_policy(&self) -> RefreshPolicy {
        self.refresh_policy.unwrap_or_default()
    }

    /// The target, with every field at ESO's default when `target` is omitted.
    pub fn target(&self) -> ExternalSecretTarget {
        self.target.clone().unwrap_or_default()
    }
}

impl SecretStoreRef {
    /// The store's kind, `SecretStore` unless set.
    pub fn store_kind(&self) -> SecretStoreKind {
        self.kind.unwrap_or_default()
    }
}

impl ExternalSecretTarget {
    /// The Secret's name: `name`, else `default` (the ExternalSecret's name).
    pub fn secret_name<'a>(&'a self, default: &'a str) -> &'a str {
        self.name.as_deref().unwrap_or(default)
    }

    /// The creation policy, `Owner` unless set.
    pub fn creation_policy(&self) -> CreationPolicy {
        self.creation_policy.unwrap_or_default()
    }

    /// The deletion policy, `Retain` unless set.
    pub fn deletion_policy(&self) -> DeletionPolicy {
        self.deletion_policy.unwrap_or_default()
    }
}

impl ExternalSecretTemplate {
    /// The merge policy, `Replace` unless set.
    pub fn merge_policy(&self) -> TemplateMergePolicy {
        self.merge_policy.unwrap_or_default()
    }
}

impl ExternalSecretDataRemoteRef {
    /// The decoding strategy, `None` unless set.
    pub fn decoding_strategy(&self) -> DecodingStrategy {
        self.decoding_strategy.unwrap_or_default()
    }
}

impl ExternalSecret {
    /// Checks what the schema cannot, in the order a reader meets the fields, and returns the
    /// first problem. Mirrors the CRD's CEL rules and adds what CEL cannot check: the refresh
    /// interval parses and every template parses in seal's template language.
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.spec.validate()
    }
}

impl ExternalSecretSpec {
    /// See [`ExternalSecret::validate`]; paths start at `spec`.
    pub fn validate(&self) -> Result<(), ValidationError> {
        non_empty("spec.secretStoreRef.name", &self.secret_store_ref.name)?;
        self.refresh_interval()
            .map_err(|source| ValidationError::Duration {
                field: "spec.refreshInterval".into(),
                source,
            })?;
        if let Some(target) = &self.target {
            target.validate()?;
        }
        if self.data.is_empty() && self.data_from.is_empty() {
            return Err(ValidationError::Invalid {
                field: "spec".into(),
                message: "either data or dataFrom must be set".into(),
            });
        }
        for (i, item) in self.data.iter().enumerate() {
            let at = format!("spec.data[{i}]");
            if !is_secret_key(&item.secret_key) {
                return Err(ValidationError::Invalid {
                    field: format!("{at}.secretKey"),
                    message: "must be a Secret item name (letters, digits, '-', '_', '.')".into(),
                });
            }
            non_empty(format!("{at}.remoteRef.key"), &item.remote_ref.key)?;
        }
        for (i, item) in self.data_from.iter().enumerate() {
            let at = format!("spec.dataFrom[{i}]");
            exactly_one(
                &at,
                "extract, find",
                &[item.extract.is_some(), item.find.is_some()],
            )?;
            if let Some(extract) = &item.extract {
                non_empty(format!("{at}.extract.key"), &extract.key)?;
            }
            if let Some(name) = item.find.as_ref().and_then(|f| f.name.as_ref()) {
                non_empty(format!("{at}.find.name.regexp"), &name.regexp)?;
            }
            for (j, rewrite) in item.rewrite.iter().enumerate() {
                non_empty(
                    format!("{at}.rewrite[{j}].regexp.source"),
                    &rewrite.regexp.source,
                )?;
            }
        }
        for (i, target) in self.rollout_restart_targets.iter().enumerate() {
            non_empty(
                format!("spec.rolloutRestartTargets[{i}].name"),
                &target.name,
            )?;
        }
        Ok(())
    }
}

impl ExternalSecretTarget {
    fn validate(&self) -> Result<(), ValidationError> {
        let policies = (self.creation_policy(), self.deletion_policy());
        if policies == (CreationPolicy::Merge, DeletionPolicy::Delete) {
            return Err(ValidationError::Invalid {
                field: "spec.target.deletionPolicy".into(),
                message: "Delete needs a Secret this ExternalSecret owns; it cannot be used with creationPolicy Merge".into(),
            });
        }
        if policies == (CreationPolicy::None, DeletionPolicy::Merge) {
            return Err(ValidationError::Invalid {
                field: "spec.target.deletionPolicy".into(),
                message: "Merge cannot be used with creationPolicy None: there is no Secret to merge with".into(),
            });
        }
        for (item, source) in self.template.iter().flat_map(|t| &t.data) {
            seal_template::Template::parse(source).map_err(|e| ValidationError::Template {
                field: format!("spec.target.template.data.{item}"),
                message: e.to_string(),
            })?;
        }
        Ok(())
    }
}

/// ESO's rule for item names, `^[-._a-zA-Z0-9]+$`.
fn is_secret_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::WorkloadKind;

    /// ESO's documented AWS example (external-secrets.io/v1 with the apiVersion changed), every
    /// field seal keeps.
    const AWS_EXAMPLE: &str = r"
apiVersion: seal.dev/v1alpha1
kind: ExternalSecret
metadata: {name: ml-batch-db, namespace: ml-batch}
spec:
  refreshInterval: 15m
  refreshPolicy: Periodic
  secretStoreRef: {name: aws-store, kind: SecretStore}
  target:
    name: ml-batch-db
    creationPolicy: Owner
    deletionPolicy: Retain
    immutable: false
    template:
      type: Opaque
      metadata:
        labels: {app.kubernetes.io/name: ml-batch}
        annotations: {team: ml}
      mergePolicy: Merge
      data:
        DATABASE_URL: 'postgres://{{ .username }}:{{ .password | urlquery }}@db:5432/ml'
  data:
  - secretKey: username
    remoteRef: {key: ml/db, property: username, version: AWSCURRENT}
  - secretKey: password
    remoteRef: {key: ml/db, property: password, decodingStrategy: None}
  - secretKey: tls.crt
    remoteRef: {key: ml/tls, version: uuid/0f5ec0d6-1e6e-4a1b-9c1c-3f4e5a6b7c8d, decodingStrategy: Base64}
  dataFrom:
  - extract: {key: ml/batch-config, decodingStrategy: Auto}
  - find:
      path: ml/
      name: {regexp: '^ml/batch-.*'}
      tags: {team: ml}
    rewrite:
    - regexp: {source: 'ml/batch-(.*)', target: '$1'}
  rolloutRestartTargets:
  - {kind: Deployment, name: ml-batch-worker}
  - {kind: StatefulSet, name: ml-batch-queue}
";

    /// ESO's documented Vault example against a ClusterSecretStore.
    const VAULT_EXAMPLE: &str = r#"
apiVersion: seal.dev/v1alpha1
kind: ExternalSecret
metadata: {name: ml-api-db, namespace: ml-api}
spec:
  refreshInterval: 1h
  secretStoreRef: {name: vault-backend, kind: ClusterSecretStore}
  target:
    creationPolicy: Merge
    deletionPolicy: Merge
  data:
  - secretKey: password
    remoteRef: {key: ml/db, property: password, version: "3"}
  dataFrom:
  - extract: {key: ml/api, decodingStrategy: Base64URL}
"#;

    fn parse(text: &str) -> ExternalSecret {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn aws_example_round_trips_field_for_field() {
        let es = parse(AWS_EXAMPLE);
        es.validate().unwrap();
        assert_eq!(
            es.spec.refresh_interval().unwrap(),
            Duration::from_secs(900)
        );
        assert_eq!(
            es.spec.data[2].remote_ref.decoding_strategy(),
            DecodingStrategy::Base64
        );
        assert_eq!(
            es.spec.rollout_restart_targets[1].kind,
            WorkloadKind::StatefulSet
        );
        let original: serde_json::Value = serde_yaml::from_str(AWS_EXAMPLE).unwrap();
        assert_eq!(serde_json::to_value(&es).unwrap(), original);
    }

    #[test]
    fn vault_example_round_trips_field_for_field() {
        let es = parse(VAULT_EXAMPLE);
        es.validate().unwrap();
        assert_eq!(
            es.spec.secret_store_ref.store_kind(),
            SecretStoreKind::ClusterSecretStore
        );
        assert_eq!(
            es.spec.data_from[0]
                .extract
                .as_ref()
                .unwrap()
                .decoding_strategy,
            Some(DecodingStrategy::Base64Url)
        );
        let original: serde_json::Value = serde_yaml::from_str(VAULT_EXAMPLE).unwrap();
        assert_eq!(serde_json::to_value(&es).unwrap(), original);
    }

    #[test]
    fn omitted_fields_take_esos_defaults_without_being_written() {
        let text = "apiVersion: seal.dev/v1alpha1\nkind: ExternalSecret\nmetadata: {name: db, namespace: n}\nspec:\n  secretStoreRef: {name: s}\n  data: [{secretKey: a, remoteRef: {key: k}}]\n";
        let es = parse(text);
        es.validate().unwrap();
        assert_eq!(
            es.spec.refresh_interval().unwrap(),
            Duration::from_secs(3600)
        );
        assert_eq!(es.spec.refresh_policy(), RefreshPolicy::Periodic);
        assert_eq!(
            es.spec.secret_store_ref.store_kind(),
            SecretStoreKind::SecretStore
        );
        let target = es.spec.target();
        assert_eq!(target.secret_name("db"), "db");
        assert_eq!(target.creation_policy(), CreationPolicy::Owner);
        assert_eq!(target.deletion_policy(), DeletionPolicy::Retain);
        assert_eq!(
            ExternalSecretTemplate::default().merge_policy(),
            TemplateMergePolicy::Replace
        );
        assert_eq!(
            es.spec.data[0].remote_ref.decoding_strategy(),
            DecodingStrategy::None
        );
        let original: serde_json::Value = serde_yaml::from_str(text).unwrap();
        assert_eq!(serde_json::to_value(&es).unwrap(), original);
    }

    #[test]
    fn a_refresh_interval_under_a_second_is_refused() {
        let mut es = parse(
            "apiVersion: seal.dev/v1alpha1\nkind: ExternalSecret\nmetadata: {name: db, namespace: n}\nspec:\n  secretStoreRef: {name: s}\n  data: [{secretKey: a, remoteRef: {key: k}}]\n",
        );
        for short in ["5ms", "999ms", "1ns"] {
            es.spec.refresh_interval = Some(short.into());
            assert!(
                matches!(
                    es.spec.refresh_interval(),
                    Err(DurationError::TooShort { .. })
                ),
                "{short}"
            );
            assert!(es.validate().is_err(), "{short}");
        }
        es.spec.refresh_interval = Some("1s".into());
        assert_eq!(es.spec.refresh_interval().unwrap(), Duration::from_secs(1));
    }

    #[test]
    fn zero_refresh_interval_means_read_once() {
        let mut es = parse(VAULT_EXAMPLE);
        es.spec.refresh_interval = Some("0s".into());
        assert_eq!(es.spec.refresh_interval().unwrap(), Duration::ZERO);
    }

    #[test]
    fn enum_spellings_are_esos_exactly() {
        let spell = |v: serde_json::Value| v.as_str().unwrap().to_owned();
        let spelled: Vec<String> = [
            serde_json::to_value(RefreshPolicy::CreatedOnce),
            serde_json::to_value(RefreshPolicy::OnChange),
            serde_json::to_value(CreationPolicy::None),
            serde_json::to_value(CreationPolicy::Orphan),
            serde_json::to_value(DeletionPolicy::Delete),
            serde_json::to_value(TemplateMergePolicy::Merge),
            serde_json::to_value(DecodingStrategy::Base64Url),
            serde_json::to_value(DecodingStrategy::Auto),
            serde_json::to_value(SecretStoreKind::ClusterSecretStore),
        ]
        .into_iter()
        .map(|v| spell(v.unwrap()))
        .collect();
        assert_eq!(
            spelled,
            [
                "CreatedOnce",
                "OnChange",
                "None",
                "Orphan",
                "Delete",
                "Merge",
                "Base64URL",
                "Auto",
                "ClusterSecretStore"
            ]
        );
        for bad in [
            AWS_EXAMPLE.replace("creationPolicy: Owner", "creationPolicy: owner"),
            AWS_EXAMPLE.replace("decodingStrategy: Base64}", "decodingStrategy: Base64Url}"),
            AWS_EXAMPLE.replace("kind: Deployment", "kind: DaemonSet"),
            AWS_EXAMPLE.replace("refreshPolicy: Periodic", "refreshPolicy: Always"),
        ] {
            assert!(
                serde_yaml::from_str::<ExternalSecret>(&bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn validation_names_the_field_at_fault() {
        type Break = Box<dyn Fn(&mut ExternalSecretSpec)>;
        let cases: Vec<(Break, &str)> = vec![
            (
                Box::new(|s| s.refresh_interval = Some("1d".into())),
                r#"spec.refreshInterval: "1d": a Kubernetes field takes no days (write hours, e.g. 24h)"#,
            ),
            (
                Box::new(|s| s.refresh_interval = Some("-5m".into())),
                r#"spec.refreshInterval: "-5m": negative durations are not allowed (0s means no refresh)"#,
            ),
            (
                Box::new(|s| {
                    s.data.clear();
                    s.data_from.clear();
                }),
                "spec: either data or dataFrom must be set",
            ),
            (
                Box::new(|s| s.data[0].secret_key = "a/b".into()),
                "spec.data[0].secretKey: must be a Secret item name (letters, digits, '-', '_', '.')",
            ),
            (
                Box::new(|s| {
                    let find = s.data_from[1].find.clone();
                    s.data_from[0].find = find;
                }),
                "spec.dataFrom[0]: exactly one of extract, find must be set, found 2",
            ),
            (
                Box::new(|s| s.data_from[0].extract = None),
                "spec.dataFrom[0]: exactly one of extract, find must be set, found 0",
            ),
            (
                Box::new(|s| {
                    let target = s.target.as_mut().unwrap();
                    target.creation_policy = Some(CreationPolicy::Merge);
                    target.deletion_policy = Some(DeletionPolicy::Delete);
                }),
                "spec.target.deletionPolicy: Delete needs a Secret this ExternalSecret owns; it cannot be used with creationPolicy Merge",
            ),
            (
                Box::new(|s| {
                    let target = s.target.as_mut().unwrap();
                    target.creation_policy = Some(CreationPolicy::None);
                    target.deletion_policy = Some(DeletionPolicy::Merge);
                }),
                "spec.target.deletionPolicy: Merge cannot be used with creationPolicy None: there is no Secret to merge with",
            ),
            (
                Box::new(|s| s.secret_store_ref.name.clear()),
                "spec.secretStoreRef.name: must not be empty",
            ),
        ];
        for (break_it, message) in cases {
            let mut es = parse(AWS_EXAMPLE);
            break_it(&mut es.spec);
            assert_eq!(es.validate().unwrap_err().to_string(), message);
        }
    }

    #[test]
    fn templates_must_parse_in_seals_language() {
        let mut es = parse(AWS_EXAMPLE);
        es.spec
            .target
            .as_mut()
            .unwrap()
            .template
            .as_mut()
            .unwrap()
            .data
            .insert("bad".into(), "{{ .password | sha256sum }}".into());
        let err = es.validate().unwrap_err();
        assert_eq!(err.field(), "spec.target.template.data.bad");
        assert!(matches!(err, ValidationError::Template { .. }), "{err}");
    }

    #[test]
    fn secret_key_rule_is_esos() {
        for good in ["a", "A-b_c.d", "tls.crt", "..", "0"] {
            assert!(is_secret_key(good), "{good}");
        }
        for bad in ["", "a/b", "a b", "ä", "a:b"] {
            assert!(!is_secret_key(bad), "{bad}");
        }
    }
}
