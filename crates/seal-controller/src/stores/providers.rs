//! Turning a store into a provider. [`Providers`] is the one place providers are built. It is shared by the store reconciler and
//! the ExternalSecret reconciler, and caches one provider per store identity (kind, namespace,
//! name, and the namespace credentials are read in for a ClusterSecretStore whose references
//! name none), rebuilt only when the store's generation or a credential Secret's resourceVersion
//! changes. That is what keeps a Vault store to one login whose token the provider renews in the
//! background, instead of a login per reconcile (one of ESO's most reported costs). Every
//! provider counts its calls in one shared [`CallCounter`], which the metrics export.
//!
//! Vault Kubernetes auth with a `serviceAccountRef` and JWT auth with a
//! `kubernetesServiceAccountToken` log in with a token of that ServiceAccount from the TokenRequest
//! API (the store's namespace; for a ClusterSecretStore the reference's, else the
//! ExternalSecret's), requested at each login of the cached provider rather than once: a login
//! happens when the store is first used and again only when the Vault token can no longer be
//! renewed, by which time a token requested earlier would have expired. Kubernetes auth with a
//! `secretRef` presents the token in that Secret (read like every credential Secret), and with
//! neither the controller's own projected token (a ClusterSecretStore only, when allowed). AWS
//! `jwt` is ESO's IRSA per store: the
//! ServiceAccount's `eks.amazonaws.com/role-arn` annotation names the role, and a token requested
//! for it (audience `sts.amazonaws.com` unless `eks.amazonaws.com/audience` says otherwise) is
//! exchanged with STS AssumeRoleWithWebIdentity whenever the credentials need renewing; the
//! ServiceAccount is read on each use of the store so that a changed annotation rebuilds the
//! provider.
//!
//! Before any of that, [`super::trust`] decides what the store may spend: whose identity,
//! which endpoints, whose tokens (only ServiceAccounts that opted in, for at most an hour, never
//! for the API server's audience), and never anything in the key namespace. A store it refuses is
//! `InvalidProviderConfig` and no connection is made.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::PostParams;
use kube::{Api, Client, Resource, ResourceExt};
use seal_api::secret_store::{
    self, SecretKeySelector, SecretStoreProvider, ServiceAccountSelector, reason,
};
use seal_providers::{
    AwsConfig, CallCounter, FetchToken, KvVersion, Provider, TokenSource, VaultConfig,
    VaultProvider,
};
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use super::trust::{self as store_trust, StoreTrust, TrustError};
use crate::protocols::redaction::api_refusal;

/// Where the kubelet projects the controller's own ServiceAccount token.
const OWN_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// Lifetime of a requested ServiceAccount token unless the store says otherwise: ESO's, and the
/// shortest the API server grants. It only has to outlive the login it is requested for.
const DEFAULT_TOKEN_SECONDS: i64 = 600;

/// Audience of a token requested for a Vault login (JWT or Kubernetes auth) when the store names
/// none (ESO's for JWT auth).
const DEFAULT_JWT_AUDIENCE: &str = "vault";

/// ESO's (and EKS's) ServiceAccount annotation naming the IAM role of AWS `auth.jwt`.
const ROLE_ARN_ANNOTATION: &str = "eks.amazonaws.com/role-arn";

/// ESO's (and EKS's) ServiceAccount annotation overriding the audience of its tokens for STS.
const AUDIENCE_ANNOTATION: &str = "eks.amazonaws.com/audience";

/// The audience STS expects of a web identity token unless the ServiceAccount says otherwise.
const DEFAULT_STS_AUDIENCE: &str = "sts.amazonaws.com";

/// Which store an ExternalSecret (or the store reconciler) means.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StoreId {
    /// `SecretStore` or `ClusterSecretStore`.
    pub cluster: bool,
    /// The SecretStore's namespace; empty for a ClusterSecretStore.
    pub namespace: String,
    /// The store's name.
    pub name: String,
    /// The namespace credential references without a namespace are read in (a
    /// ClusterSecretStore's, per ExternalSecret namespace); empty when every reference names one.
    pub credentials_namespace: String,
}

/// Why a store yields no provider. Messages name Secrets and keys, never a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The configuration is incomplete, contradictory or not supported.
    #[error("{0}")]
    InvalidConfig(String),
    /// The store would use power its creator does not have ([`super::trust`]).
    #[error("{0}")]
    Untrusted(#[from] TrustError),
    /// A referenced object (a credential Secret, a ServiceAccount) could not be read from the
    /// API server.
    #[error("cannot read {kind} {namespace}/{name}: {reason}")]
    Kube {
        /// The object's kind.
        kind: &'static str,
        /// The object's namespace.
        namespace: String,
        /// The object's name.
        name: String,
        /// The API server's reason and code.
        reason: String,
    },
}

impl StoreError {
    /// The store condition's reason for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            StoreError::InvalidConfig(_) | StoreError::Untrusted(_) => {
                reason::INVALID_PROVIDER_CONFIG
            }
            StoreError::Kube { .. } => reason::VALIDATION_FAILED,
        }
    }
}

/// The providers of every store in use, built once per store configuration and reused.
pub struct Providers {
    client: Client,
    calls: Arc<CallCounter>,
    trust: StoreTrust,
    cache: Mutex<HashMap<StoreId, (String, Arc<Provider>)>>,
    /// Held while a provider is built, so that ExternalSecrets of one store reconciled at once
    /// wait for one provider (one Vault login) instead of each building its own.
    building: tokio::sync::Mutex<()>,
}

impl Providers {
    /// An empty cache whose providers count their calls in `calls` and may do what `trust`
    /// allows.
    pub fn new(client: Client, calls: Arc<CallCounter>, trust: StoreTrust) -> Self {
        Self {
            client,
            calls,
            trust,
            cache: Mutex::new(HashMap::new()),
            building: tokio::sync::Mutex::new(()),
        }
    }

    /// The calls every provider built here made.
    pub fn calls(&self) -> &Arc<CallCounter> {
        &self.calls
    }

    /// The provider of `provider` (the spec of the store `id` at `generation`): the cached one
    /// while neither the generation nor a credential Secret changed, else a new one.
    pub async fn get(
        &self,
        id: &StoreId,
        generation: Option<i64>,
        provider: &SecretStoreProvider,
    ) -> Result<Arc<Provider>, StoreError> {
        store_trust::check_store(provider, id.cluster, &self.trust)?;
        let accounts = self.read_token_accounts(id, provider).await?;
        let credentials = self.read_credentials(id, provider).await?;
        let identity = self.read_web_identity(id, provider).await?;
        let mut fingerprint = format!("{}", generation.unwrap_or_default());
        for version in &accounts {
            let _ = write!(fingerprint, " token-account@{version}");
        }
        for (selector, version, _) in &credentials {
            let _ = write!(fingerprint, " {}/{}@{version}", selector.name, selector.key);
        }
        if let Some(identity) = &identity {
            let _ = write!(fingerprint, " serviceaccount@{}", identity.resource_version);
        }
        let cached = || {
            self.lock()
                .get(id)
                .filter(|(cached, _)| *cached == fingerprint)
                .map(|(_, built)| Arc::clone(built))
        };
        if let Some(built) = cached() {
            return Ok(built);
        }
        let _building = self.building.lock().await;
        if let Some(built) = cached() {
            return Ok(built);
        }
        let built = Arc::new(
            self.build(id, provider, &credentials, identity.as_ref())
                .await?,
        );
        info!(kind = kind(id), namespace = %id.namespace, name = %id.name, "built a provider");
        self.lock()
            .insert(id.clone(), (fingerprint, Arc::clone(&built)));
        Ok(built)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StoreId, (String, Arc<Provider>)>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every ServiceAccount the store would request tokens for, read to check that it opted in
    /// ([`seal_api::names::TOKEN_OPT_IN_ANNOTATION`]): their resourceVersions, so that a withdrawn
    /// opt-in rebuilds (and so refuses) the provider.
    async fn read_token_accounts(
        &self,
        id: &StoreId,
        provider: &SecretStoreProvider,
    ) -> Result<Vec<String>, StoreError> {
        let mut accounts = Vec::new();
        if let Some(jwt) = provider
            .aws
            .as_ref()
            .and_then(|a| a.auth.as_ref())
            .and_then(|a| a.jwt.as_ref())
        {
            accounts.push(&jwt.service_account_ref);
        }
        if let Some(vault) = &provider.vault {
            accounts.extend(
                vault
                    .auth
                    .kubernetes
                    .as_ref()
                    .and_then(|k| k.service_account_ref.as_ref()),
            );
            accounts.extend(
                vault
                    .auth
                    .jwt
                    .as_ref()
                    .and_then(|j| j.kubernetes_service_account_token.as_ref())
                    .map(|t| &t.service_account_ref),
            );
        }
        let mut versions = Vec::new();
        for account in accounts {
            let namespace = reference_namespace(
                id,
                account.namespace.as_ref(),
                "ServiceAccount",
                &account.name,
                &self.trust,
            )?;
            let found: ServiceAccount = self.get_referenced(&namespace, &account.name).await?;
            if !store_trust::opted_in(found.annotations()) {
                return Err(TrustError::NotOptedIn {
                    namespace,
                    name: account.name.clone(),
                }
                .into());
            }
            versions.push(found.resource_version().unwrap_or_default());
        }
        Ok(versions)
    }

    /// For an AWS store with `auth.jwt`: the ServiceAccount's role (ESO's annotation
    /// [`ROLE_ARN_ANNOTATION`]) and the audiences of its tokens ([`AUDIENCE_ANNOTATION`], else
    /// `sts.amazonaws.com`, plus the reference's own). `None` for any other store.
    async fn read_web_identity(
        &self,
        id: &StoreId,
        provider: &SecretStoreProvider,
    ) -> Result<Option<WebIdentity>, StoreError> {
        let Some(account) = provider
            .aws
            .as_ref()
            .and_then(|a| a.auth.as_ref())
            .and_then(|a| a.jwt.as_ref())
            .map(|j| &j.service_account_ref)
        else {
            return Ok(None);
        };
        let namespace = reference_namespace(
            id,
            account.namespace.as_ref(),
            "ServiceAccount",
            &account.name,
            &self.trust,
        )?;
        let found: ServiceAccount = self.get_referenced(&namespace, &account.name).await?;
        let annotations = found.annotations();
        let role_arn = annotations.get(ROLE_ARN_ANNOTATION).ok_or_else(|| {
            StoreError::InvalidConfig(format!(
                "ServiceAccount {namespace}/{} has no {ROLE_ARN_ANNOTATION} annotation",
                account.name
            ))
        })?;
        let mut audiences = vec![
            annotations
                .get(AUDIENCE_ANNOTATION)
                .map_or(DEFAULT_STS_AUDIENCE, String::as_str)
                .to_owned(),
        ];
        audiences.extend(account.audiences.iter().cloned());
        Ok(Some(WebIdentity {
            role_arn: role_arn.clone(),
            audiences,
            resource_version: found.resource_version().unwrap_or_default(),
        }))
    }

    /// The object `namespace/name` a store refers to (a credential Secret, a ServiceAccount); a
    /// missing one is a configuration error that names it.
    async fn get_referenced<K>(&self, namespace: &str, name: &str) -> Result<K, StoreError>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug
            + k8s_openapi::Resource,
    {
        Api::<K>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(|error| StoreError::Kube {
                kind: <K as k8s_openapi::Resource>::KIND,
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                reason: api_refusal(&error),
            })?
            .ok_or_else(|| {
                StoreError::InvalidConfig(format!(
                    "{} {namespace}/{name} does not exist",
                    K::kind(&())
                ))
            })
    }

    /// A token source that requests a token of `account` (in the namespace the store reads
    /// references in) from the TokenRequest API at every login of the provider.
    ///
    /// Errors: an audience of the API server's (an empty list defaults to `default_audience`),
    /// or a lifetime outside the bounds of [`store_trust::token_lifetime`].
    fn service_account_token(
        &self,
        id: &StoreId,
        account: &ServiceAccountSelector,
        (audiences, default_audience): (Vec<String>, &str),
        expiration_seconds: i64,
    ) -> Result<TokenSource, StoreError> {
        let audiences = store_trust::token_audiences(audiences, default_audience, &self.trust)?;
        let expiration_seconds = store_trust::token_lifetime(expiration_seconds)?;
        let namespace = reference_namespace(
            id,
            account.namespace.as_ref(),
            "ServiceAccount",
            &account.name,
            &self.trust,
        )?;
        Ok(TokenSource::Fetched(Arc::new(ServiceAccountToken {
            api: Api::namespaced(self.client.clone(), &namespace),
            namespace,
            name: account.name.clone(),
            audiences,
            expiration_seconds,
        })))
    }

    /// Every credential the store refers to: (selector, the Secret's resourceVersion, the value).
    async fn read_credentials<'a>(
        &self,
        id: &StoreId,
        provider: &'a SecretStoreProvider,
    ) -> Result<Vec<(&'a SecretKeySelector, String, SecretString)>, StoreError> {
        let mut selectors = Vec::new();
        if let Some(refs) = provider
            .aws
            .as_ref()
            .and_then(|a| a.auth.as_ref())
            .and_then(|a| a.secret_ref.as_ref())
        {
            selectors.push(&refs.access_key_id_secret_ref);
            selectors.push(&refs.secret_access_key_secret_ref);
            selectors.extend(refs.session_token_secret_ref.as_ref());
        }
        if let Some(vault) = &provider.vault {
            selectors.extend(vault.auth.token_secret_ref.as_ref());
            selectors.extend(vault.auth.app_role.as_ref().map(|a| &a.secret_ref));
            selectors.extend(
                vault
                    .auth
                    .kubernetes
                    .as_ref()
                    .and_then(|k| k.secret_ref.as_ref()),
            );
            selectors.extend(vault.auth.jwt.as_ref().and_then(|j| j.secret_ref.as_ref()));
        }
        let mut out = Vec::new();
        for selector in selectors {
            let namespace = reference_namespace(
                id,
                selector.namespace.as_ref(),
                "Secret",
                &selector.name,
                &self.trust,
            )?;
            let secret: Secret = self.get_referenced(&namespace, &selector.name).await?;
            let value = secret
                .data
                .as_ref()
                .and_then(|d| d.get(&selector.key))
                .ok_or_else(|| {
                    StoreError::InvalidConfig(format!(
                        "Secret {namespace}/{} has no key {:?}",
                        selector.name, selector.key
                    ))
                })?;
            let text = std::str::from_utf8(&value.0).map_err(|_| {
                StoreError::InvalidConfig(format!(
                    "key {:?} of Secret {namespace}/{} is not UTF-8",
                    selector.key, selector.name
                ))
            })?;
            out.push((
                selector,
                secret.resource_version().unwrap_or_default(),
                SecretString::from(text.trim()),
            ));
        }
        Ok(out)
    }

    // One branch per provider and auth method, read top to bottom; splitting it would scatter them.
    #[allow(clippy::too_many_lines)]
    async fn build(
        &self,
        id: &StoreId,
        provider: &SecretStoreProvider,
        credentials: &[(&SecretKeySelector, String, SecretString)],
        identity: Option<&WebIdentity>,
    ) -> Result<Provider, StoreError> {
        let credential = |selector: &SecretKeySelector| {
            credentials
                .iter()
                .find(|(s, _, _)| std::ptr::eq(*s, selector))
                .map(|(_, _, value)| value.clone())
                .ok_or_else(|| StoreError::InvalidConfig("a credential was not read".into()))
        };
        let invalid = |error: seal_providers::Error| StoreError::InvalidConfig(error.to_string());
        if let Some(aws) = &provider.aws {
            let mut config = AwsConfig::new(&aws.region)
                .calls(Arc::clone(&self.calls))
                .session_name(format!("seal-{}", id.name));
            if let Some(endpoint) = &aws.endpoint_url {
                config = config.endpoint(endpoint);
            }
            if let Some(role) = &aws.role {
                config = config.assume_role(role);
            }
            if let Some(auth) = &aws.auth {
                if let (Some(jwt), Some(identity)) = (&auth.jwt, identity) {
                    config = config.auth(seal_providers::AwsAuth::WebIdentity {
                        role_arn: identity.role_arn.clone(),
                        token: self.service_account_token(
                            id,
                            &jwt.service_account_ref,
                            (identity.audiences.clone(), DEFAULT_STS_AUDIENCE),
                            DEFAULT_TOKEN_SECONDS,
                        )?,
                    });
                }
                if let Some(refs) = &auth.secret_ref {
                    let access_key_id = credential(&refs.access_key_id_secret_ref)?;
                    config = config.auth(seal_providers::AwsAuth::Static {
                        access_key_id: secrecy::ExposeSecret::expose_secret(&access_key_id)
                            .to_owned(),
                        secret_access_key: credential(&refs.secret_access_key_secret_ref)?,
                        session_token: refs
                            .session_token_secret_ref
                            .as_ref()
                            .map(credential)
                            .transpose()?,
                    });
                }
            }
            return seal_providers::AwsProvider::new(config)
                .await
                .map(Provider::Aws)
                .map_err(invalid);
        }
        let Some(vault) = &provider.vault else {
            return Err(StoreError::InvalidConfig(
                "exactly one of aws, vault must be set".into(),
            ));
        };
        let auth = &vault.auth;
        let auth = if let Some(token) = &auth.token_secret_ref {
            seal_providers::VaultAuth::Token(credential(token)?)
        } else if let Some(app_role) = &auth.app_role {
            seal_providers::VaultAuth::AppRole {
                mount: app_role.mount_path().to_owned(),
                role_id: app_role.role_id.clone(),
                secret_id: credential(&app_role.secret_ref)?,
            }
        } else if let Some(kubernetes) = &auth.kubernetes {
            let jwt = match (&kubernetes.service_account_ref, &kubernetes.secret_ref) {
                // The ServiceAccount's audiences, else `vault` (ESO asks for the API server's
                // audience here; seal never does: the Vault role names `audience=vault`), for
                // 10 minutes.
                (Some(account), _) => self.service_account_token(
                    id,
                    account,
                    (account.audiences.clone(), DEFAULT_JWT_AUDIENCE),
                    DEFAULT_TOKEN_SECONDS,
                )?,
                (None, Some(secret)) => TokenSource::Value(credential(secret)?),
                // Only a ClusterSecretStore the operator allowed (checked in `get`).
                (None, None) => TokenSource::File(OWN_TOKEN.into()),
            };
            seal_providers::VaultAuth::Kubernetes {
                mount: kubernetes.mount_path().to_owned(),
                role: kubernetes.role.clone(),
                jwt,
            }
        } else if let Some(jwt) = &auth.jwt {
            let token = match (&jwt.secret_ref, &jwt.kubernetes_service_account_token) {
                (Some(secret), _) => TokenSource::Value(credential(secret)?),
                (None, Some(requested)) => {
                    // As ESO: `audiences` (default `vault`) plus the ServiceAccount's own.
                    let mut audiences = requested
                        .audiences
                        .clone()
                        .unwrap_or_else(|| vec![DEFAULT_JWT_AUDIENCE.to_owned()]);
                    audiences.extend(requested.service_account_ref.audiences.iter().cloned());
                    self.service_account_token(
                        id,
                        &requested.service_account_ref,
                        (audiences, DEFAULT_JWT_AUDIENCE),
                        requested
                            .expiration_seconds
                            .unwrap_or(DEFAULT_TOKEN_SECONDS),
                    )?
                }
                (None, None) => {
                    return Err(StoreError::InvalidConfig(
                        "vault.auth.jwt needs secretRef or kubernetesServiceAccountToken".into(),
                    ));
                }
            };
            seal_providers::VaultAuth::Jwt {
                mount: jwt.mount_path().to_owned(),
                role: jwt.role.clone(),
                jwt: token,
            }
        } else {
            return Err(StoreError::InvalidConfig(
                "exactly one Vault auth method must be set".into(),
            ));
        };
        let mut config = VaultConfig::new(&vault.server, auth)
            .calls(Arc::clone(&self.calls))
            .kv_version(match vault.kv_version() {
                secret_store::VaultKvVersion::V1 => KvVersion::V1,
                secret_store::VaultKvVersion::V2 => KvVersion::V2,
            });
        if let Some(path) = &vault.path {
            config = config.mount(path);
        }
        if let Some(namespace) = &vault.namespace {
            config = config.namespace(namespace);
        }
        if let Some(bundle) = &vault.ca_bundle {
            let pem = base64::engine::general_purpose::STANDARD
                .decode(bundle.trim())
                .ok()
                .and_then(|pem| String::from_utf8(pem).ok())
                .ok_or_else(|| {
                    StoreError::InvalidConfig("vault.caBundle is not base64 of PEM text".into())
                })?;
            config = config.ca_bundle(pem);
        }
        VaultProvider::new(config)
            .map(Provider::Vault)
            .map_err(invalid)
    }
}

/// The namespace a store's reference (`kind` `name`, naming `namespace` or not) is read in: a
/// SecretStore's own; for a ClusterSecretStore the one named, else the ExternalSecret's.
fn reference_namespace(
    id: &StoreId,
    namespace: Option<&String>,
    kind: &str,
    name: &str,
    trust: &StoreTrust,
) -> Result<String, StoreError> {
    let namespace = match (namespace, id.cluster) {
        (Some(ns), true) => ns.clone(),
        (_, false) => id.namespace.clone(),
        (None, true) => id.credentials_namespace.clone(),
    };
    if namespace.is_empty() {
        return Err(StoreError::InvalidConfig(format!(
            "{kind} {name} has no namespace"
        )));
    }
    store_trust::check_namespace(&namespace, trust)?;
    Ok(namespace)
}

/// What an AWS `auth.jwt` store logs in as, read from its ServiceAccount.
struct WebIdentity {
    role_arn: String,
    audiences: Vec<String>,
    /// The ServiceAccount's resourceVersion: a changed annotation rebuilds the provider.
    resource_version: String,
}

/// A ServiceAccount's token from the TokenRequest API, requested anew at every login of the
/// provider that holds it. The provider logs in once and renews its Vault token, so this costs
/// one TokenRequest per login, not per reconcile; and a re-login hours later never presents an
/// expired token, as a token requested once would be.
struct ServiceAccountToken {
    api: Api<ServiceAccount>,
    namespace: String,
    name: String,
    audiences: Vec<String>,
    expiration_seconds: i64,
}

impl std::fmt::Debug for ServiceAccountToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountToken")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("audiences", &self.audiences)
            .field("expiration_seconds", &self.expiration_seconds)
            .finish_non_exhaustive()
    }
}

impl FetchToken for ServiceAccountToken {
    fn fetch(
        &self,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<SecretString, String>> + Send + '_>> {
        Box::pin(async move {
            let request = TokenRequest {
                spec: Some(TokenRequestSpec {
                    // None: the API server's own audience.
                    audiences: (!self.audiences.is_empty()).then(|| self.audiences.clone()),
                    expiration_seconds: Some(self.expiration_seconds),
                    ..TokenRequestSpec::default()
                }),
                ..TokenRequest::default()
            };
            let failed = |why: String| {
                format!(
                    "cannot request a token for ServiceAccount {}/{}: {why}",
                    self.namespace, self.name
                )
            };
            let answer = self
                .api
                .create_token_request(&self.name, &PostParams::default(), &request)
                .await
                .map_err(|error| failed(api_refusal(&error)))?;
            answer
                .status
                .and_then(|status| status.token)
                .map(SecretString::from)
                .ok_or_else(|| failed("the API server returned no token".into()))
        })
    }
}

/// The API server's own audiences: the issuer it names in its OpenID discovery document, which
/// is the audience of a token requested with none. Best effort: a cluster that does not serve the
/// document still has [`store_trust::WELL_KNOWN_API_AUDIENCES`] refused.
pub async fn api_audiences(client: &Client) -> Vec<String> {
    let mut request = http::Request::new(Vec::new());
    *request.uri_mut() = http::Uri::from_static("/.well-known/openid-configuration");
    match client.request::<serde_json::Value>(request).await {
        Ok(document) => document
            .get("issuer")
            .and_then(serde_json::Value::as_str)
            .map(|issuer| vec![issuer.to_owned()])
            .unwrap_or_default(),
        Err(error) => {
            warn!(error = %api_refusal(&error), "cannot read the API server's issuer; refusing only the well-known API audiences for store tokens");
            Vec::new()
        }
    }
}

/// `SecretStore` or `ClusterSecretStore`, for logs.
pub fn kind(id: &StoreId) -> &'static str {
    if id.cluster {
        "ClusterSecretStore"
    } else {
        "SecretStore"
    }
}
