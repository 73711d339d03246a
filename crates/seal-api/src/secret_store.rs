//! `SecretStore` (namespaced) and `ClusterSecretStore` (cluster-wide): where an ExternalSecret's
//! values come from, with ESO's field names (external-secrets.io/v1) for the two providers seal
//! implements, `aws` (Secrets Manager) and `vault` (KV v1 and v2), so an ESO store converts by
//! changing its apiVersion.
//!
//! Only what seal implements is in the schema: another provider, another AWS service or an auth
//! method seal does not have is refused by the API server (and by `seal convert`) rather than
//! accepted and ignored. Exactly one provider and at most one AWS / exactly one Vault auth method
//! are enforced twice, by CEL rules in the CRD and by [`SecretStoreProvider::validate`], so the
//! controller and the CLI agree with the API server also about objects that never went through
//! one.
//!
//! Defaults are ESO's but are applied by the accessors ([`VaultProvider::kv_version`],
//! [`VaultAppRole::mount_path`], ...), not written into the schema: a schema default makes the API
//! server add fields the user never wrote, which GitOps tools then report as drift (one of ESO's
//! most reported annoyances).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validation::{ValidationError, at_most_one, exactly_one, non_empty};

/// Reasons of a store's `Ready` condition, as ESO spells them.
pub mod reason {
    /// The provider configuration is complete and the provider answered.
    pub const VALID: &str = "Valid";
    /// The configuration is incomplete or contradictory (see [`super::SecretStoreProvider::validate`]).
    pub const INVALID_PROVIDER_CONFIG: &str = "InvalidProviderConfig";
    /// The configuration is well-formed but the provider refused it (login failed, unreachable).
    pub const VALIDATION_FAILED: &str = "ValidationFailed";
}

pub use crate::names::CONDITION_READY;

/// The shortest token lifetime a store may ask for: the shortest the TokenRequest API grants.
pub const MIN_TOKEN_SECONDS: i64 = 600;
/// The longest token lifetime a store may ask for: an hour. A token only has to outlive the
/// login it is requested for.
pub const MAX_TOKEN_SECONDS: i64 = 3600;

/// A namespaced store: ExternalSecrets in its namespace may read through it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "seal.dev",
    version = "v1alpha1",
    kind = "SecretStore",
    namespaced,
    status = "SecretStoreStatus",
    shortname = "ss",
    category = "seal",
    derive = "PartialEq",
    doc = "Where ExternalSecrets in this namespace read from: AWS Secrets Manager or Vault, with ESO's field names.",
    printcolumn = r#"{"name":"Vault Server","type":"string","jsonPath":".spec.provider.vault.server"}"#,
    printcolumn = r#"{"name":"AWS Region","type":"string","jsonPath":".spec.provider.aws.region"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SecretStoreSpec {
    /// The provider and how to log in to it.
    pub provider: SecretStoreProvider,
}

/// A cluster-wide store: ExternalSecrets in any namespace its `conditions` allow may read through
/// it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "seal.dev",
    version = "v1alpha1",
    kind = "ClusterSecretStore",
    status = "SecretStoreStatus",
    shortname = "css",
    category = "seal",
    derive = "PartialEq",
    doc = "Where ExternalSecrets in any allowed namespace read from: AWS Secrets Manager or Vault, with ESO's field names.",
    printcolumn = r#"{"name":"Vault Server","type":"string","jsonPath":".spec.provider.vault.server"}"#,
    printcolumn = r#"{"name":"AWS Region","type":"string","jsonPath":".spec.provider.aws.region"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSecretStoreSpec {
    /// The provider and how to log in to it.
    pub provider: SecretStoreProvider,
    /// Which namespaces may use this store: any namespace matching any one condition. None means
    /// every namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ClusterSecretStoreCondition>,
}

/// One rule admitting namespaces to a ClusterSecretStore: a namespace listed by name, or one whose
/// labels match the selector.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSecretStoreCondition {
    /// Namespaces admitted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Namespaces admitted by their labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
}

/// The provider: exactly one of `aws` and `vault`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.aws) ? 1 : 0) + (has(self.vault) ? 1 : 0) == 1",
    "message": "exactly one provider (aws or vault) must be set"
}]))]
pub struct SecretStoreProvider {
    /// AWS Secrets Manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsProvider>,
    /// HashiCorp Vault or OpenBao, KV secrets engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<VaultProvider>,
}

/// Which provider a store uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProviderKind {
    /// `provider.aws`.
    Aws,
    /// `provider.vault`.
    Vault,
}

impl ProviderKind {
    /// The provider's field name (`aws`, `vault`).
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Aws => "aws",
            ProviderKind::Vault => "vault",
        }
    }
}

/// AWS Secrets Manager (ESO's `provider.aws` with `service: SecretsManager`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsProvider {
    /// The AWS service; seal reads Secrets Manager only.
    pub service: AwsService,
    /// The region, e.g. `eu-west-1`.
    #[schemars(length(min = 1))]
    pub region: String,
    /// ARN of a role to assume (with the credentials `auth` yields) before reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// How to get credentials; omitted, the AWS SDK's default chain (environment, IRSA web
    /// identity, EKS Pod Identity, instance profile) of the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AwsAuth>,
    /// seal's addition, absent from ESO: the Secrets Manager endpoint URL, for AWS-compatible
    /// services and local test servers (moto, LocalStack) and VPC endpoints with custom DNS. ESO
    /// only reads such an override from the controller's environment, which applies to every store
    /// at once; here it is per store. `seal convert --to eso` refuses a store that sets it.
    #[serde(
        default,
        rename = "endpointURL",
        skip_serializing_if = "Option::is_none"
    )]
    pub endpoint_url: Option<String>,
}

/// The AWS service a store reads. ESO also has `ParameterStore`, which seal does not implement.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[non_exhaustive]
pub enum AwsService {
    /// AWS Secrets Manager.
    #[default]
    SecretsManager,
}

/// How to get AWS credentials: at most one of `secretRef` and `jwt`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.secretRef) ? 1 : 0) + (has(self.jwt) ? 1 : 0) <= 1",
    "message": "at most one AWS auth method (secretRef or jwt) may be set; omit auth for the default credential chain"
}]))]
pub struct AwsAuth {
    /// Static credentials from Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<AwsAuthSecretRef>,
    /// Web identity: a token of the named ServiceAccount exchanged with STS for `role`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<AwsJwtAuth>,
}

/// Static AWS credentials, each from a key of a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct AwsAuthSecretRef {
    /// The access key id.
    #[serde(rename = "accessKeyIDSecretRef")]
    pub access_key_id_secret_ref: SecretKeySelector,
    /// The secret access key.
    #[serde(rename = "secretAccessKeySecretRef")]
    pub secret_access_key_secret_ref: SecretKeySelector,
    /// The session token, for temporary credentials.
    #[serde(
        default,
        rename = "sessionTokenSecretRef",
        skip_serializing_if = "Option::is_none"
    )]
    pub session_token_secret_ref: Option<SecretKeySelector>,
}

/// AWS web identity with a ServiceAccount token.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsJwtAuth {
    /// The ServiceAccount whose token is exchanged.
    pub service_account_ref: ServiceAccountSelector,
}

/// Vault (or OpenBao) with the KV secrets engine.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultProvider {
    /// Vault's address, e.g. `https://vault.example.com:8200`.
    #[schemars(length(min = 1))]
    pub server: String,
    /// The KV mount, e.g. `secret`. For KV v2 `/data` is added when absent, so `secret` and
    /// `secret/data` mean the same. Omitted, each `remoteRef.key` starts with the mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// KV engine version, `v1` or `v2`; default `v2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<VaultKvVersion>,
    /// Vault Enterprise / OpenBao namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Base64 of the PEM CA certificate(s) that sign Vault's TLS certificate; omitted, the system
    /// roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "byte"))]
    pub ca_bundle: Option<String>,
    /// How to log in: exactly one method.
    pub auth: VaultAuth,
}

/// KV secrets engine version.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum VaultKvVersion {
    /// KV version 1: no versions, no `/data`.
    #[serde(rename = "v1")]
    V1,
    /// KV version 2 (ESO's default).
    #[default]
    #[serde(rename = "v2")]
    V2,
}

/// How to log in to Vault: exactly one of `tokenSecretRef`, `appRole`, `kubernetes`, `jwt`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.tokenSecretRef) ? 1 : 0) + (has(self.appRole) ? 1 : 0) + (has(self.kubernetes) ? 1 : 0) + (has(self.jwt) ? 1 : 0) == 1",
    "message": "exactly one Vault auth method (tokenSecretRef, appRole, kubernetes or jwt) must be set"
}]))]
pub struct VaultAuth {
    /// A Vault token from a key of a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKeySelector>,
    /// AppRole login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_role: Option<VaultAppRole>,
    /// Kubernetes auth: a ServiceAccount token checked by Vault with a TokenReview.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<VaultKubernetesAuth>,
    /// JWT/OIDC auth with a JWT from a Secret or a ServiceAccount token requested for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<VaultJwtAuth>,
}

/// Vault AppRole login.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultAppRole {
    /// Where the AppRole method is mounted; default `approle`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The role id (not secret).
    #[schemars(length(min = 1))]
    pub role_id: String,
    /// The secret id, from a key of a Secret.
    pub secret_ref: SecretKeySelector,
}

/// Vault Kubernetes auth: at most one of `serviceAccountRef` and `secretRef`; neither, the
/// controller's own token.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!(has(self.serviceAccountRef) && has(self.secretRef))",
    "message": "at most one token source (serviceAccountRef or secretRef) may be set"
}]))]
pub struct VaultKubernetesAuth {
    /// Where the Kubernetes method is mounted; default `kubernetes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_path: Option<String>,
    /// The Vault role to log in as.
    #[schemars(length(min = 1))]
    pub role: String,
    /// The ServiceAccount whose token is requested (TokenRequest) and presented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_ref: Option<ServiceAccountSelector>,
    /// A ServiceAccount token from a key of a Secret (a `kubernetes.io/service-account-token`
    /// Secret's `token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeySelector>,
}

/// Vault JWT/OIDC auth: exactly one of `secretRef` and `kubernetesServiceAccountToken`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.secretRef) ? 1 : 0) + (has(self.kubernetesServiceAccountToken) ? 1 : 0) == 1",
    "message": "exactly one JWT source (secretRef or kubernetesServiceAccountToken) must be set"
}]))]
pub struct VaultJwtAuth {
    /// Where the JWT method is mounted; default `jwt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The Vault role; omitted, the method's default role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// A JWT from a key of a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeySelector>,
    /// A ServiceAccount token requested (TokenRequest) for the login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_service_account_token: Option<VaultKubernetesServiceAccountTokenAuth>,
}

/// A ServiceAccount token requested with the TokenRequest API for a Vault JWT login.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultKubernetesServiceAccountTokenAuth {
    /// The ServiceAccount.
    pub service_account_ref: ServiceAccountSelector,
    /// The token's audiences; omitted, `vault`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audiences: Option<Vec<String>>,
    /// The token's lifetime in seconds, 600 to 3600; omitted, 600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = MIN_TOKEN_SECONDS, max = MAX_TOKEN_SECONDS))]
    pub expiration_seconds: Option<i64>,
}

/// A key of a Secret (ESO's `SecretKeySelector`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeySelector {
    /// The Secret's name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// The key within the Secret.
    #[schemars(length(min = 1))]
    pub key: String,
    /// The Secret's namespace: only in a ClusterSecretStore (a SecretStore reads its own
    /// namespace); omitted there, the namespace of the ExternalSecret being synced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A ServiceAccount (ESO's `ServiceAccountSelector`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountSelector {
    /// The ServiceAccount's name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Its namespace: only in a ClusterSecretStore; omitted there, the ExternalSecret's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Audiences of the requested token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
}

/// Observed state of a store, written by the controller.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretStoreStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` with a reason from [`reason`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// What the store can do; seal only reads, so `ReadOnly`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<StoreCapabilities>,
}

/// ESO's store capabilities.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum StoreCapabilities {
    /// Reads only (every seal store).
    ReadOnly,
    /// Writes only (ESO's PushSecret targets).
    WriteOnly,
    /// Both.
    ReadWrite,
}

impl SecretStoreProvider {
    /// Which provider is set, `None` when none or both are (see [`Self::validate`]).
    pub fn kind(&self) -> Option<ProviderKind> {
        match (&self.aws, &self.vault) {
            (Some(_), None) => Some(ProviderKind::Aws),
            (None, Some(_)) => Some(ProviderKind::Vault),
            _ => None,
        }
    }

    /// Checks what the schema cannot: exactly one provider, the auth method choices, non-empty
    /// names. `at` is the JSON path of this object (`spec.provider`). Mirrors the CRD's CEL rules.
    pub fn validate(&self, at: &str) -> Result<(), ValidationError> {
        exactly_one(
            at,
            "aws, vault",
            &[self.aws.is_some(), self.vault.is_some()],
        )?;
        if let Some(aws) = &self.aws {
            let at = format!("{at}.aws");
            non_empty(format!("{at}.region"), &aws.region)?;
            if let Some(auth) = &aws.auth {
                let at = format!("{at}.auth");
                at_most_one(
                    &at,
                    "secretRef, jwt",
                    &[auth.secret_ref.is_some(), auth.jwt.is_some()],
                )?;
            }
        }
        if let Some(vault) = &self.vault {
            let at = format!("{at}.vault");
            non_empty(format!("{at}.server"), &vault.server)?;
            let auth = &vault.auth;
            let at = format!("{at}.auth");
            exactly_one(
                &at,
                "tokenSecretRef, appRole, kubernetes, jwt",
                &[
                    auth.token_secret_ref.is_some(),
                    auth.app_role.is_some(),
                    auth.kubernetes.is_some(),
                    auth.jwt.is_some(),
                ],
            )?;
            if let Some(app_role) = &auth.app_role {
                non_empty(format!("{at}.appRole.roleId"), &app_role.role_id)?;
            }
            if let Some(kubernetes) = &auth.kubernetes {
                non_empty(format!("{at}.kubernetes.role"), &kubernetes.role)?;
                at_most_one(
                    format!("{at}.kubernetes"),
                    "serviceAccountRef, secretRef",
                    &[
                        kubernetes.service_account_ref.is_some(),
                        kubernetes.secret_ref.is_some(),
                    ],
                )?;
            }
            if let Some(jwt) = &auth.jwt {
                exactly_one(
                    format!("{at}.jwt"),
                    "secretRef, kubernetesServiceAccountToken",
                    &[
                        jwt.secret_ref.is_some(),
                        jwt.kubernetes_service_account_token.is_some(),
                    ],
                )?;
            }
        }
        for (field, name, key) in self.references(at) {
            non_empty(format!("{field}.name"), name)?;
            if let Some(key) = key {
                non_empty(format!("{field}.key"), key)?;
            }
        }
        Ok(())
    }

    /// Every Secret and ServiceAccount this provider refers to: (JSON path, name, key for a
    /// Secret). With [`Self::reference_namespaces`] for the namespace check.
    fn references<'a>(&'a self, at: &str) -> Vec<(String, &'a str, Option<&'a str>)> {
        self.selectors(at)
            .into_iter()
            .map(|(field, selector)| match selector {
                Selector::Secret(s) => (field, s.name.as_str(), Some(s.key.as_str())),
                Selector::ServiceAccount(s) => (field, s.name.as_str(), None),
            })
            .collect()
    }

    /// Every Secret and ServiceAccount reference that names a namespace: (JSON path, namespace).
    pub fn reference_namespaces(&self, at: &str) -> Vec<(String, &str)> {
        self.selectors(at)
            .into_iter()
            .filter_map(|(field, selector)| {
                let namespace = match selector {
                    Selector::Secret(s) => s.namespace.as_deref(),
                    Selector::ServiceAccount(s) => s.namespace.as_deref(),
                }?;
                Some((format!("{field}.namespace"), namespace))
            })
            .collect()
    }

    fn selectors<'a>(&'a self, at: &str) -> Vec<(String, Selector<'a>)> {
        let mut out = Vec::new();
        if let Some(auth) = self.aws.as_ref().and_then(|a| a.auth.as_ref()) {
            let at = format!("{at}.aws.auth");
            if let Some(refs) = &auth.secret_ref {
                out.push((
                    format!("{at}.secretRef.accessKeyIDSecretRef"),
                    Selector::Secret(&refs.access_key_id_secret_ref),
                ));
                out.push((
                    format!("{at}.secretRef.secretAccessKeySecretRef"),
                    Selector::Secret(&refs.secret_access_key_secret_ref),
                ));
                if let Some(token) = &refs.session_token_secret_ref {
                    out.push((
                        format!("{at}.secretRef.sessionTokenSecretRef"),
                        Selector::Secret(token),
                    ));
                }
            }
            if let Some(jwt) = &auth.jwt {
                out.push((
                    format!("{at}.jwt.serviceAccountRef"),
                    Selector::ServiceAccount(&jwt.service_account_ref),
                ));
            }
        }
        if let Some(vault) = &self.vault {
            let at = format!("{at}.vault.auth");
            let auth = &vault.auth;
            if let Some(token) = &auth.token_secret_ref {
                out.push((format!("{at}.tokenSecretRef"), Selector::Secret(token)));
            }
            if let Some(app_role) = &auth.app_role {
                out.push((
                    format!("{at}.appRole.secretRef"),
                    Selector::Secret(&app_role.secret_ref),
                ));
            }
            if let Some(kubernetes) = &auth.kubernetes {
                if let Some(account) = &kubernetes.service_account_ref {
                    out.push((
                        format!("{at}.kubernetes.serviceAccountRef"),
                        Selector::ServiceAccount(account),
                    ));
                }
                if let Some(secret) = &kubernetes.secret_ref {
                    out.push((
                        format!("{at}.kubernetes.secretRef"),
                        Selector::Secret(secret),
                    ));
                }
            }
            if let Some(jwt) = &auth.jwt {
                if let Some(secret) = &jwt.secret_ref {
                    out.push((format!("{at}.jwt.secretRef"), Selector::Secret(secret)));
                }
                if let Some(token) = &jwt.kubernetes_service_account_token {
                    out.push((
                        format!("{at}.jwt.kubernetesServiceAccountToken.serviceAccountRef"),
                        Selector::ServiceAccount(&token.service_account_ref),
                    ));
                }
            }
        }
        out
    }
}

enum Selector<'a> {
    Secret(&'a SecretKeySelector),
    ServiceAccount(&'a ServiceAccountSelector),
}

impl VaultProvider {
    /// The KV version, `v2` unless set.
    pub fn kv_version(&self) -> VaultKvVersion {
        self.version.unwrap_or_default()
    }
}

impl VaultAppRole {
    /// Where AppRole is mounted: `path`, else `approle`.
    pub fn mount_path(&self) -> &str {
        self.path.as_deref().unwrap_or("approle")
    }
}

impl VaultKubernetesAuth {
    /// Where Kubernetes auth is mounted: `mountPath`, else `kubernetes`.
    pub fn mount_path(&self) -> &str {
        self.mount_path.as_deref().unwrap_or("kubernetes")
    }
}

impl VaultJwtAuth {
    /// Where JWT auth is mounted: `path`, else `jwt`.
    pub fn mount_path(&self) -> &str {
        self.path.as_deref().unwrap_or("jwt")
    }
}

impl SecretStore {
    /// [`SecretStoreProvider::validate`], plus: no reference names another namespace (a
    /// SecretStore may only read Secrets and ServiceAccounts of its own namespace, as in ESO).
    /// A manifest without a namespace (applied with `-n`) is not checked for that.
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.spec.provider.validate("spec.provider")?;
        let Some(own) = self.metadata.namespace.as_deref() else {
            return Ok(());
        };
        for (field, namespace) in self.spec.provider.reference_namespaces("spec.provider") {
            if own != namespace {
                return Err(ValidationError::Invalid {
                    field,
                    message: "a SecretStore may only refer to its own namespace; use a ClusterSecretStore to read another".into(),
                });
            }
        }
        Ok(())
    }
}

impl ClusterSecretStore {
    /// [`SecretStoreProvider::validate`] of the provider.
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.spec.provider.validate("spec.provider")
    }

    /// Whether an ExternalSecret in `namespace` (with those labels) may use this store: always
    /// when there are no conditions, else when any condition lists the namespace or its selector
    /// matches the labels.
    pub fn allows_namespace(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        self.spec.conditions.is_empty()
            || self.spec.conditions.iter().any(|condition| {
                condition.namespaces.iter().any(|n| n == namespace)
                    || condition
                        .namespace_selector
                        .as_ref()
                        .is_some_and(|s| selector_matches(s, labels))
            })
    }
}

/// Kubernetes label-selector semantics: every `matchLabels` pair and every expression must hold;
/// an empty selector matches everything. An unknown operator matches nothing (fail closed).
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let pairs_hold = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_hold = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    pairs_hold && expressions_hold
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(yaml: &str) -> SecretStore {
        serde_yaml::from_str(yaml).unwrap()
    }

    /// ESO's documented AWS store with static credentials, field for field.
    const AWS_STORE: &str = r"
apiVersion: seal.dev/v1alpha1
kind: SecretStore
metadata: {name: aws-store, namespace: ml-batch}
spec:
  provider:
    aws:
      service: SecretsManager
      region: eu-west-1
      role: arn:aws:iam::123456789012:role/ml-batch-reader
      auth:
        secretRef:
          accessKeyIDSecretRef: {name: awssm-secret, key: access-key}
          secretAccessKeySecretRef: {name: awssm-secret, key: secret-access-key}
          sessionTokenSecretRef: {name: awssm-secret, key: session-token}
";

    /// ESO's documented Vault store with AppRole.
    const VAULT_STORE: &str = r"
apiVersion: seal.dev/v1alpha1
kind: SecretStore
metadata: {name: vault-backend, namespace: ml-api}
spec:
  provider:
    vault:
      server: https://vault.example.com:8200
      path: secret
      version: v2
      namespace: ml
      caBundle: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t
      auth:
        appRole:
          path: approle
          roleId: db02de05-fa39-4855-059b-67221c5c2f63
          secretRef: {name: vault-secret-id, key: secret-id}
";

    #[test]
    fn aws_store_round_trips_with_esos_field_names() {
        let parsed = store(AWS_STORE);
        assert_eq!(parsed.spec.provider.kind(), Some(ProviderKind::Aws));
        let aws = parsed.spec.provider.aws.as_ref().unwrap();
        let refs = aws.auth.as_ref().unwrap().secret_ref.as_ref().unwrap();
        assert_eq!(refs.access_key_id_secret_ref.key, "access-key");
        assert_eq!(
            refs.session_token_secret_ref.as_ref().unwrap().name,
            "awssm-secret"
        );
        parsed.validate().unwrap();
        let again: serde_json::Value = serde_json::to_value(&parsed).unwrap();
        let original: serde_json::Value = serde_yaml::from_str(AWS_STORE).unwrap();
        assert_eq!(again, original);
    }

    #[test]
    fn vault_store_round_trips_and_defaults_apply_in_accessors() {
        let parsed = store(VAULT_STORE);
        let vault = parsed.spec.provider.vault.as_ref().unwrap();
        assert_eq!(vault.kv_version(), VaultKvVersion::V2);
        assert_eq!(
            vault.auth.app_role.as_ref().unwrap().mount_path(),
            "approle"
        );
        parsed.validate().unwrap();
        let original: serde_json::Value = serde_yaml::from_str(VAULT_STORE).unwrap();
        assert_eq!(serde_json::to_value(&parsed).unwrap(), original);

        let minimal = store(
            "apiVersion: seal.dev/v1alpha1\nkind: SecretStore\nmetadata: {name: v, namespace: n}\nspec: {provider: {vault: {server: 'http://v:8200', auth: {kubernetes: {role: r}}}}}",
        );
        let vault = minimal.spec.provider.vault.as_ref().unwrap();
        assert_eq!(vault.kv_version(), VaultKvVersion::V2);
        assert_eq!(
            vault.auth.kubernetes.as_ref().unwrap().mount_path(),
            "kubernetes"
        );
        minimal.validate().unwrap();
        // No defaults are written back: what the user wrote is what is stored.
        assert_eq!(
            serde_json::to_value(&minimal.spec).unwrap(),
            serde_json::json!({"provider": {"vault": {"server": "http://v:8200", "auth": {"kubernetes": {"role": "r"}}}}})
        );
    }

    #[test]
    fn every_vault_auth_method_and_jwt_source_parses() {
        for auth in [
            "{tokenSecretRef: {name: t, key: token}}",
            "{kubernetes: {mountPath: k8s, role: r, serviceAccountRef: {name: sa, audiences: [vault]}}}",
            "{kubernetes: {role: r, secretRef: {name: sa-token, key: token}}}",
            "{kubernetes: {role: r}}",
            "{jwt: {path: jwt, role: r, secretRef: {name: j, key: jwt}}}",
            "{jwt: {role: r, kubernetesServiceAccountToken: {serviceAccountRef: {name: sa}, audiences: [vault], expirationSeconds: 600}}}",
        ] {
            let text = format!(
                "apiVersion: seal.dev/v1alpha1\nkind: SecretStore\nmetadata: {{name: v, namespace: n}}\nspec: {{provider: {{vault: {{server: 'http://v', version: v1, auth: {auth}}}}}}}"
            );
            let parsed = store(&text);
            parsed.validate().unwrap();
            assert_eq!(
                parsed.spec.provider.vault.unwrap().version,
                Some(VaultKvVersion::V1)
            );
        }
    }

    #[test]
    fn two_providers_or_none_are_refused() {
        let mut both = store(AWS_STORE);
        both.spec.provider.vault = store(VAULT_STORE).spec.provider.vault;
        assert_eq!(both.spec.provider.kind(), None);
        let err = both.validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.provider: exactly one of aws, vault must be set, found 2"
        );
        let mut none = store(AWS_STORE);
        none.spec.provider.aws = None;
        assert!(matches!(
            none.validate(),
            Err(ValidationError::ExactlyOne { found: 0, .. })
        ));
    }

    #[test]
    fn auth_method_choices_are_enforced() {
        let mut vault = store(VAULT_STORE);
        let auth = &mut vault.spec.provider.vault.as_mut().unwrap().auth;
        auth.token_secret_ref = Some(SecretKeySelector {
            name: "t".into(),
            key: "token".into(),
            namespace: None,
        });
        assert_eq!(
            vault.validate().unwrap_err().to_string(),
            "spec.provider.vault.auth: exactly one of tokenSecretRef, appRole, kubernetes, jwt must be set, found 2"
        );
        let mut no_auth = store(VAULT_STORE);
        no_auth.spec.provider.vault.as_mut().unwrap().auth = VaultAuth::default();
        assert!(matches!(
            no_auth.validate(),
            Err(ValidationError::ExactlyOne { found: 0, .. })
        ));

        let mut aws = store(AWS_STORE);
        aws.spec
            .provider
            .aws
            .as_mut()
            .unwrap()
            .auth
            .as_mut()
            .unwrap()
            .jwt = Some(AwsJwtAuth {
            service_account_ref: ServiceAccountSelector {
                name: "sa".into(),
                ..ServiceAccountSelector::default()
            },
        });
        assert_eq!(
            aws.validate().unwrap_err().field(),
            "spec.provider.aws.auth"
        );
        // No AWS auth at all is the SDK's default chain, which is fine.
        let mut default_chain = store(AWS_STORE);
        default_chain.spec.provider.aws.as_mut().unwrap().auth = None;
        default_chain.validate().unwrap();

        let jwt_both: SecretStore = store(
            "apiVersion: seal.dev/v1alpha1\nkind: SecretStore\nmetadata: {name: v, namespace: n}\nspec: {provider: {vault: {server: 'http://v', auth: {jwt: {role: r, secretRef: {name: j, key: k}, kubernetesServiceAccountToken: {serviceAccountRef: {name: sa}}}}}}}",
        );
        assert_eq!(
            jwt_both.validate().unwrap_err().field(),
            "spec.provider.vault.auth.jwt"
        );
        let kubernetes_both: SecretStore = store(
            "apiVersion: seal.dev/v1alpha1\nkind: SecretStore\nmetadata: {name: v, namespace: n}\nspec: {provider: {vault: {server: 'http://v', auth: {kubernetes: {role: r, secretRef: {name: t, key: token}, serviceAccountRef: {name: sa}}}}}}",
        );
        assert_eq!(
            kubernetes_both.validate().unwrap_err().field(),
            "spec.provider.vault.auth.kubernetes"
        );
    }

    #[test]
    fn unknown_enum_spellings_are_refused_by_serde() {
        for bad in [
            AWS_STORE.replace("SecretsManager", "ParameterStore"),
            VAULT_STORE.replace("version: v2", "version: v3"),
        ] {
            assert!(serde_yaml::from_str::<SecretStore>(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_secret_store_may_not_reach_into_another_namespace() {
        let mut other = store(AWS_STORE);
        other
            .spec
            .provider
            .aws
            .as_mut()
            .unwrap()
            .auth
            .as_mut()
            .unwrap()
            .secret_ref
            .as_mut()
            .unwrap()
            .access_key_id_secret_ref
            .namespace = Some("kube-system".into());
        let err = other.validate().unwrap_err();
        assert_eq!(
            err.field(),
            "spec.provider.aws.auth.secretRef.accessKeyIDSecretRef.namespace"
        );
        // Its own namespace is fine.
        let mut own = store(AWS_STORE);
        own.spec
            .provider
            .aws
            .as_mut()
            .unwrap()
            .auth
            .as_mut()
            .unwrap()
            .secret_ref
            .as_mut()
            .unwrap()
            .access_key_id_secret_ref
            .namespace = Some("ml-batch".into());
        own.validate().unwrap();
    }

    #[test]
    fn empty_names_are_refused() {
        let mut empty = store(VAULT_STORE);
        empty
            .spec
            .provider
            .vault
            .as_mut()
            .unwrap()
            .auth
            .app_role
            .as_mut()
            .unwrap()
            .secret_ref
            .key = String::new();
        assert_eq!(
            empty.validate().unwrap_err().to_string(),
            "spec.provider.vault.auth.appRole.secretRef.key: must not be empty"
        );
    }

    #[test]
    fn cluster_store_conditions_admit_namespaces_by_name_or_labels() {
        let css: ClusterSecretStore = serde_yaml::from_str(
            r"
apiVersion: seal.dev/v1alpha1
kind: ClusterSecretStore
metadata: {name: shared}
spec:
  provider: {aws: {service: SecretsManager, region: us-east-1}}
  conditions:
  - namespaces: [ml-api]
  - namespaceSelector:
      matchLabels: {team: ml}
      matchExpressions:
      - {key: env, operator: In, values: [staging, prod]}
      - {key: quarantined, operator: DoesNotExist}
",
        )
        .unwrap();
        css.validate().unwrap();
        let labels = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>()
        };
        assert!(css.allows_namespace("ml-api", &labels(&[])));
        assert!(css.allows_namespace("ml-batch", &labels(&[("team", "ml"), ("env", "prod")])));
        assert!(!css.allows_namespace("ml-batch", &labels(&[("team", "ml"), ("env", "dev")])));
        assert!(!css.allows_namespace(
            "ml-batch",
            &labels(&[("team", "ml"), ("env", "prod"), ("quarantined", "yes")])
        ));
        assert!(!css.allows_namespace("other", &labels(&[("env", "prod")])));

        let open = ClusterSecretStore::new(
            "open",
            ClusterSecretStoreSpec {
                provider: css.spec.provider.clone(),
                conditions: Vec::new(),
            },
        );
        assert!(open.allows_namespace("anything", &BTreeMap::new()));
    }

    #[test]
    fn unknown_selector_operators_match_nothing() {
        let selector: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]
        }))
        .unwrap();
        let labels = BTreeMap::from([("a".to_owned(), "2".to_owned())]);
        assert!(!selector_matches(&selector, &labels));
        assert!(selector_matches(&LabelSelector::default(), &labels));
    }
}
