//! Resolving many references at once, at the lowest cost and all or nothing: the engine behind
//! `seal get`, `seal env`, `seal render` and `seal exec`.
//!
//! References are grouped by the provider they need (Vault address, namespace, auth, mount and KV
//! version; AWS region, endpoint, profile and role), one provider is built per group, and each
//! group is read with one [`SecretProvider::get_many`]: every distinct secret is fetched once
//! however many properties are wanted from it, AWS reads 20 secrets per BatchGetSecretValue, and
//! the groups run concurrently. Every remote call is bounded by the [`RetryPolicy`]'s timeout.
//! One failed reference fails the whole resolution ([`ResolveError`] names the first one in input
//! order and counts the others), so a caller never acts on part of a set.
//!
//! What the reference does not say comes from [`Defaults`], which the CLI fills from flags and
//! the usual environment variables (`VAULT_ADDR`, `VAULT_TOKEN`, `AWS_REGION`, ...); this module
//! reads no environment itself, except the variable a reference names with `token_env=` (vals'
//! parameter) and through the AWS SDK's default credential chain.
//!
//! KV version: as vals v0.46 does, the Vault provider asks Vault which mount a path is under and
//! that mount's KV version, and reads KV v2 mounts through their `/data/` API path itself, so
//! `secret/ml/db` and the older `secret/data/ml/db` name the same secret (see
//! `crate::vault`'s `path` module for where seal differs from vals there).

use std::collections::HashMap;
use std::sync::Arc;

use aws_credential_types::provider::ProvideCredentials as _;
use secrecy::SecretString;

use super::{Backend, Param, Reference};
use crate::endpoint::Transport;
use crate::{
    AwsAuth, AwsConfig, AwsProvider, CallCounter, Error, Provider, ProviderKind, RetryPolicy,
    SecretProvider, SecretRef, SecretValue, TokenSource, VaultAuth, VaultConfig, VaultProvider,
};

/// A Vault auth method.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VaultAuthMethod {
    /// A token (the default).
    #[default]
    Token,
    /// AppRole: role id and secret id.
    AppRole,
    /// JWT/OIDC: a CI system's OIDC token and a role.
    Jwt,
    /// Kubernetes: a ServiceAccount token and a role.
    Kubernetes,
}

impl std::str::FromStr for VaultAuthMethod {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "token" => Ok(VaultAuthMethod::Token),
            "approle" => Ok(VaultAuthMethod::AppRole),
            "jwt" => Ok(VaultAuthMethod::Jwt),
            "kubernetes" => Ok(VaultAuthMethod::Kubernetes),
            other => Err(format!(
                "unknown Vault auth method {other:?} (token, approle, jwt, kubernetes)"
            )),
        }
    }
}

/// Vault settings for references that do not carry them.
#[derive(Clone, Debug, Default)]
pub struct VaultDefaults {
    /// The address (`VAULT_ADDR`).
    pub address: Option<String>,
    /// The namespace (`VAULT_NAMESPACE`).
    pub namespace: Option<String>,
    /// A PEM CA bundle to trust instead of the system's (`VAULT_CACERT`'s content).
    pub ca_bundle: Option<String>,
    /// The auth method when a reference names none (default: token).
    pub auth_method: Option<VaultAuthMethod>,
    /// The auth mount path (default: `approle`, `jwt` or `kubernetes`).
    pub auth_mount: Option<String>,
    /// The token for the token method.
    pub token: Option<TokenSource>,
    /// The JWT or Kubernetes role.
    pub role: Option<String>,
    /// The AppRole role id.
    pub role_id: Option<String>,
    /// The AppRole secret id.
    pub secret_id: Option<SecretString>,
    /// The OIDC token for the JWT method.
    pub jwt: Option<TokenSource>,
    /// The ServiceAccount token for the Kubernetes method (default: the pod's).
    pub kubernetes_token: Option<TokenSource>,
    /// Let a reference's `?address=` name another server than `address` (which then receives
    /// the credentials above).
    pub allow_reference_address: bool,
    /// Let credentials go over plain http to an address that is not loopback.
    pub allow_http: bool,
}

/// Whether the credentials of `defaults` may be sent to `address`, the Vault address a
/// reference resolves to: only the configured address unless the caller allowed others (a
/// values file a pull request can change must not send the CI's token elsewhere), and over plain
/// http only to a loopback address unless allowed.
///
/// Errors: the message names the address (configuration, never a credential) and the setting
/// that would allow it.
pub fn check_vault_address(address: &str, defaults: &VaultDefaults) -> Result<(), String> {
    let same = |configured: &str| configured.trim_end_matches('/') == address.trim_end_matches('/');
    if !defaults.allow_reference_address && !defaults.address.as_deref().is_some_and(same) {
        return Err(format!(
            "?address={address} is not the configured Vault address ({}); credentials go only to \
             the configured address (VAULT_ADDR, --vault-addr, the agent's vault.address) unless \
             other addresses are allowed (--allow-reference-address)",
            defaults.address.as_deref().unwrap_or("none")
        ));
    }
    match crate::endpoint::transport(address)? {
        Transport::Https | Transport::LoopbackHttp => Ok(()),
        Transport::PlainHttp if defaults.allow_http => Ok(()),
        Transport::PlainHttp => Err(format!(
            "Vault address {address} is plain http to a host that is not loopback: credentials \
             would cross the network unencrypted; use https or allow it (--allow-http-vault, the \
             agent's vault.allowHttp)"
        )),
    }
}

/// AWS settings for references that do not carry them.
#[derive(Clone, Debug, Default)]
pub struct AwsDefaults {
    /// The region (`AWS_REGION`, `AWS_DEFAULT_REGION`).
    pub region: Option<String>,
    /// An endpoint for every call (`AWS_ENDPOINT_URL`), e.g. a local test server.
    pub endpoint: Option<String>,
    /// A role to assume for every reference without `role_arn`.
    pub role_arn: Option<String>,
}

/// What references do not say, and how calls are timed.
#[derive(Clone, Debug, Default)]
pub struct Defaults {
    /// Vault.
    pub vault: VaultDefaults,
    /// AWS.
    pub aws: AwsDefaults,
    /// Timeout and retries of every call.
    pub retry: RetryPolicy,
}

/// The first reference that could not be resolved, and how many others failed too.
#[derive(Debug, thiserror::Error)]
#[error("{reference}: {cause}")]
pub struct ResolveError {
    /// The reference, as its redacted `Display`.
    pub reference: String,
    /// Why.
    pub cause: Error,
    /// How many other references failed.
    pub others: usize,
}

/// Resolves sets of references with one [`CallCounter`] for all its providers.
///
/// Providers are built at the first reference that needs them and kept for the resolver's
/// life, so a long-lived resolver (seal-agent refreshing every few minutes) reuses one Vault
/// session, renewed in the background, instead of logging in at every resolution.
pub struct Resolver {
    defaults: Defaults,
    calls: Arc<CallCounter>,
    providers: tokio::sync::Mutex<HashMap<GroupKey, Arc<Provider>>>,
}

/// Which provider a reference needs; references with equal keys share one. Holds an AppRole
/// secret id given in a reference, so it has no `Debug`.
#[derive(Clone, PartialEq, Eq, Hash)]
enum GroupKey {
    Vault {
        address: String,
        namespace: Option<String>,
        method: VaultAuthMethod,
        role: Option<String>,
        role_id: Option<String>,
        secret_id: Option<String>,
        token_file: Option<String>,
        token_env: Option<String>,
    },
    Aws {
        region: Option<String>,
        role_arn: Option<String>,
        profile: Option<String>,
    },
}

impl Resolver {
    /// A resolver with `defaults`.
    pub fn new(defaults: Defaults) -> Self {
        Resolver {
            defaults,
            calls: Arc::new(CallCounter::new()),
            providers: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Every call made so far, by every provider this resolver built.
    pub fn calls(&self) -> &Arc<CallCounter> {
        &self.calls
    }

    /// The value of every reference, in order; all of them or an error.
    ///
    /// Errors: the first failing reference in `refs` order with its provider error
    /// ([`Error::NotFound`], [`Error::Denied`], [`Error::Unavailable`], [`Error::InvalidValue`]
    /// for a missing property, [`Error::InvalidConfig`] for missing settings such as no Vault
    /// address or token), and the number of other failures.
    pub async fn resolve(&self, refs: &[Reference]) -> Result<Vec<SecretValue>, ResolveError> {
        let mut groups: Vec<(GroupKey, Vec<usize>)> = Vec::new();
        let mut index: HashMap<GroupKey, usize> = HashMap::new();
        for (i, reference) in refs.iter().enumerate() {
            let key = self.group_key(reference);
            let group = *index.entry(key.clone()).or_insert_with(|| {
                groups.push((key, Vec::new()));
                groups.len() - 1
            });
            groups[group].1.push(i);
        }
        let reads = groups.iter().map(|(key, members)| async move {
            let wanted: Vec<SecretRef> = members.iter().map(|&i| secret_ref(&refs[i])).collect();
            let results = match self.cached_provider(key, &refs[members[0]]).await {
                Ok(provider) => provider.get_many(&wanted).await,
                Err(e) => members.iter().map(|_| Err(e.clone())).collect(),
            };
            (members, results)
        });
        let mut results: Vec<(usize, Result<SecretValue, Error>)> =
            futures_util::future::join_all(reads)
                .await
                .into_iter()
                .flat_map(|(members, results)| members.iter().copied().zip(results))
                .collect();
        results.sort_by_key(|(i, _)| *i);
        let mut values = Vec::with_capacity(refs.len());
        let mut first: Option<(usize, Error)> = None;
        let mut others = 0;
        for (i, result) in results {
            match result {
                Ok(value) => values.push(value),
                Err(e) if first.is_none() => first = Some((i, e)),
                Err(_) => others += 1,
            }
        }
        match first {
            None => Ok(values),
            Some((i, cause)) => Err(ResolveError {
                reference: refs[i].to_string(),
                cause,
                others,
            }),
        }
    }

    fn group_key(&self, reference: &Reference) -> GroupKey {
        let param = |p| reference.param(p).map(str::to_owned);
        match reference.backend() {
            Backend::Vault => {
                let vault = &self.defaults.vault;
                GroupKey::Vault {
                    address: param(Param::Address)
                        .or_else(|| vault.address.clone())
                        .unwrap_or_default(),
                    namespace: param(Param::Namespace).or_else(|| vault.namespace.clone()),
                    method: reference
                        .param(Param::AuthMethod)
                        .and_then(|m| m.parse().ok())
                        .or(vault.auth_method)
                        .unwrap_or_default(),
                    role: param(Param::Role),
                    role_id: param(Param::RoleId),
                    secret_id: param(Param::SecretId),
                    token_file: param(Param::TokenFile),
                    token_env: param(Param::TokenEnv),
                }
            }
            Backend::AwsSecrets => GroupKey::Aws {
                region: param(Param::Region),
                role_arn: param(Param::RoleArn).or_else(|| self.defaults.aws.role_arn.clone()),
                profile: param(Param::Profile),
            },
        }
    }

    /// The provider for one group, built at its first use and kept; a failed build is not
    /// kept, so the next resolution tries again.
    async fn cached_provider(
        &self,
        key: &GroupKey,
        example: &Reference,
    ) -> Result<Arc<Provider>, Error> {
        let mut providers = self.providers.lock().await;
        if let Some(provider) = providers.get(key) {
            return Ok(provider.clone());
        }
        let provider = Arc::new(self.provider(key, example).await?);
        providers.insert(key.clone(), provider.clone());
        Ok(provider)
    }

    /// The provider for one group; `example` is one of its references (for its parameters).
    async fn provider(&self, key: &GroupKey, example: &Reference) -> Result<Provider, Error> {
        match key {
            GroupKey::Vault {
                address,
                namespace,
                method,
                ..
            } => {
                let invalid = |detail: &str| Error::InvalidConfig {
                    provider: ProviderKind::Vault,
                    store: address.clone(),
                    detail: detail.to_owned(),
                };
                if address.is_empty() {
                    return Err(invalid(
                        "no Vault address: set VAULT_ADDR or add ?address= to the reference",
                    ));
                }
                check_vault_address(address, &self.defaults.vault).map_err(|d| invalid(&d))?;
                let auth = self
                    .vault_auth(*method, example)
                    .await
                    .map_err(|d| invalid(&d))?;
                let mut config = VaultConfig::new(address.clone(), auth)
                    .kv_from_mount()
                    .retry(self.defaults.retry.clone())
                    .calls(self.calls.clone());
                if let Some(namespace) = namespace {
                    config = config.namespace(namespace.clone());
                }
                if let Some(ca) = &self.defaults.vault.ca_bundle {
                    config = config.ca_bundle(ca.clone());
                }
                VaultProvider::new(config).map(Provider::Vault)
            }
            GroupKey::Aws {
                region,
                role_arn,
                profile,
            } => {
                let aws = &self.defaults.aws;
                let region = match region.clone().or_else(|| aws.region.clone()) {
                    Some(region) => Some(region),
                    None => profile_region(profile.as_deref()).await,
                };
                let store = region.clone().unwrap_or_default();
                let invalid = |detail: String| Error::InvalidConfig {
                    provider: ProviderKind::Aws,
                    store: store.clone(),
                    detail,
                };
                let Some(region) = region else {
                    return Err(invalid(
                        "no AWS region: set AWS_REGION or add ?region= to the reference".into(),
                    ));
                };
                let mut config = AwsConfig::new(region)
                    .retry(self.defaults.retry.clone())
                    .calls(self.calls.clone());
                if let Some(endpoint) = &aws.endpoint {
                    config = config.endpoint(endpoint.clone());
                }
                if let Some(profile) = profile {
                    config = config.auth(profile_keys(profile).await.map_err(invalid)?);
                }
                if let Some(role) = role_arn {
                    config = config.assume_role(role.clone());
                }
                AwsProvider::new(config).await.map(Provider::Aws)
            }
        }
    }

    /// The Vault auth for `method`, from the reference's parameters, else the defaults.
    async fn vault_auth(
        &self,
        method: VaultAuthMethod,
        reference: &Reference,
    ) -> Result<VaultAuth, String> {
        let vault = &self.defaults.vault;
        let mount = |default: &str| vault.auth_mount.clone().unwrap_or_else(|| default.into());
        let role = reference
            .param(Param::Role)
            .map(str::to_owned)
            .or_else(|| vault.role.clone());
        match method {
            VaultAuthMethod::Token => {
                let source = token_source(reference, &|name| std::env::var(name).ok())?
                    .or_else(|| vault.token.clone())
                    .ok_or(
                        "no Vault token: set VAULT_TOKEN, log in (~/.vault-token) or name a token \
                         file",
                    )?;
                Ok(VaultAuth::Token(source.read().await?))
            }
            VaultAuthMethod::AppRole => {
                let role_id = reference
                    .param(Param::RoleId)
                    .map(str::to_owned)
                    .or_else(|| vault.role_id.clone())
                    .ok_or("AppRole needs a role id (role_id= or VAULT_ROLE_ID)")?;
                let secret_id = match reference.param(Param::SecretId) {
                    Some(id) => SecretString::from(id),
                    None => vault
                        .secret_id
                        .clone()
                        .ok_or("AppRole needs a secret id (VAULT_SECRET_ID or secret_id=)")?,
                };
                Ok(VaultAuth::AppRole {
                    mount: mount("approle"),
                    role_id,
                    secret_id,
                })
            }
            VaultAuthMethod::Jwt => Ok(VaultAuth::Jwt {
                mount: mount("jwt"),
                role,
                jwt: vault
                    .jwt
                    .clone()
                    .ok_or("JWT auth needs the CI's OIDC token (SEAL_VAULT_JWT or a JWT file)")?,
            }),
            VaultAuthMethod::Kubernetes => Ok(VaultAuth::Kubernetes {
                mount: mount("kubernetes"),
                role: kubernetes_role(reference, vault.role.as_deref()).ok_or(
                    "Kubernetes auth needs a role (role=, role_id= as in vals, or a role flag)",
                )?,
                jwt: vault.kubernetes_token.clone().unwrap_or_else(|| {
                    TokenSource::File(crate::environment::SERVICE_ACCOUNT_TOKEN.into())
                }),
            }),
        }
    }
}

/// The Kubernetes login's role: the reference's `role=`, else its `role_id=` (vals v0.46 sends
/// `role_id` as the Kubernetes role), else the configured one.
fn kubernetes_role(reference: &Reference, configured: Option<&str>) -> Option<String> {
    reference
        .param(Param::Role)
        .or_else(|| reference.param(Param::RoleId))
        .or(configured)
        .map(str::to_owned)
}

/// The token a reference names, as vals v0.46 reads it: `token_file=` (wins when both are
/// given, as vals sets it last), else the variable `token_env=` names, which must be set; `None`
/// when it names neither. `env` looks a variable up.
fn token_source(
    reference: &Reference,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<TokenSource>, String> {
    if let Some(file) = reference.param(Param::TokenFile) {
        return Ok(Some(TokenSource::File(file.into())));
    }
    let Some(name) = reference.param(Param::TokenEnv) else {
        return Ok(None);
    };
    match env(name) {
        Some(token) if !token.is_empty() => Ok(Some(TokenSource::Value(SecretString::from(token)))),
        _ => Err(format!(
            "token_env={name}: the variable is not set (vals reads the Vault token from it)"
        )),
    }
}

/// What the provider is asked for: the path, the version and the fragment as a property. A
/// Vault reference without a fragment names a key by its last segment, as vals v0.46 reads it
/// (`secret/ml/db/password` is the key `password` of `secret/ml/db`); an AWS one is the whole
/// secret.
fn secret_ref(reference: &Reference) -> SecretRef {
    let (path, property) = match (reference.backend(), reference.property()) {
        (Backend::Vault, None) => match reference.path().trim_end_matches('/').rsplit_once('/') {
            Some((secret, key)) => (
                secret.to_owned(),
                Some(format!("#/{}", key.replace('~', "~0"))),
            ),
            // Nothing but a mount: read as given, which fails naming what is missing.
            None => (reference.path().to_owned(), None),
        },
        (_, property) => (reference.path().to_owned(), property),
    };
    let mut wanted = SecretRef::new(path);
    let version = match reference.backend() {
        Backend::Vault => reference.param(Param::Version).map(str::to_owned),
        Backend::AwsSecrets => reference
            .param(Param::VersionStage)
            .map(str::to_owned)
            .or_else(|| {
                reference
                    .param(Param::VersionId)
                    .map(|id| format!("uuid/{id}"))
            }),
    };
    if let Some(version) = version {
        wanted = wanted.version(version);
    }
    if let Some(property) = property {
        wanted = wanted.property(property);
    }
    wanted
}

/// The region of `profile` (or of `AWS_PROFILE`/`default`) in the shared config files.
async fn profile_region(profile: Option<&str>) -> Option<String> {
    use aws_config::meta::region::ProvideRegion as _;
    let mut provider = aws_config::profile::ProfileFileRegionProvider::builder();
    if let Some(profile) = profile {
        provider = provider.profile_name(profile);
    }
    provider.build().region().await.map(|r| r.to_string())
}

/// The credentials of a named profile, loaded once: a CLI run is shorter than their lifetime.
async fn profile_keys(profile: &str) -> Result<AwsAuth, String> {
    let credentials = aws_config::profile::ProfileFileCredentialsProvider::builder()
        .profile_name(profile)
        .build()
        .provide_credentials()
        .await
        .map_err(|e| format!("profile {profile:?}: {}", crate::chain(&e)))?;
    Ok(AwsAuth::Static {
        access_key_id: credentials.access_key_id().to_owned(),
        secret_access_key: SecretString::from(credentials.secret_access_key()),
        session_token: credentials.session_token().map(SecretString::from),
    })
}

#[cfg(test)]
mod address_tests {
    use super::*;

    fn defaults(address: Option<&str>, other: bool, http: bool) -> VaultDefaults {
        VaultDefaults {
            address: address.map(str::to_owned),
            allow_reference_address: other,
            allow_http: http,
            ..VaultDefaults::default()
        }
    }

    #[test]
    fn credentials_go_only_to_the_configured_address_unless_allowed() {
        let configured = defaults(Some("https://vault.corp:8200/"), false, false);
        assert_eq!(
            check_vault_address("https://vault.corp:8200", &configured),
            Ok(())
        );
        let refused = check_vault_address("https://evil.example", &configured).unwrap_err();
        assert!(refused.contains("--allow-reference-address"), "{refused}");
        // No configured address: a reference's address is another address too.
        assert!(check_vault_address("https://v:8200", &defaults(None, false, false)).is_err());
        let allowed = defaults(Some("https://vault.corp:8200"), true, false);
        assert_eq!(
            check_vault_address("https://evil.example", &allowed),
            Ok(())
        );
    }

    #[test]
    fn plain_http_only_to_loopback_unless_allowed() {
        for loopback in [
            "http://127.0.0.1:8200",
            "http://127.1.2.3:8200",
            "http://[::1]:8200",
            "http://localhost:8200/",
        ] {
            assert_eq!(
                check_vault_address(loopback, &defaults(Some(loopback), false, false)),
                Ok(()),
                "{loopback}"
            );
        }
        for remote in [
            "http://vault.vault.svc:8200",
            "http://10.0.0.1",
            "http://127.0.0.1.evil.example",
            "http://user@evil.example",
        ] {
            let refused =
                check_vault_address(remote, &defaults(Some(remote), false, false)).unwrap_err();
            assert!(
                refused.contains("--allow-http-vault"),
                "{remote}: {refused}"
            );
            assert_eq!(
                check_vault_address(remote, &defaults(Some(remote), false, true)),
                Ok(())
            );
        }
        assert!(check_vault_address("ftp://v", &defaults(Some("ftp://v"), false, false)).is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::parse;

    #[test]
    fn the_kubernetes_role_is_role_then_role_id_as_in_vals_then_the_flag() {
        let role = |text: &str, flag| kubernetes_role(&parse(text).unwrap(), flag);
        let k = "ref+vault://s/x?auth_method=kubernetes";
        assert_eq!(
            role(&format!("{k}&role=r&role_id=i"), Some("f")).as_deref(),
            Some("r")
        );
        assert_eq!(
            role(&format!("{k}&role_id=i"), Some("f")).as_deref(),
            Some("i")
        );
        assert_eq!(role(k, Some("f")).as_deref(), Some("f"));
        assert_eq!(role(k, None), None);
    }

    #[test]
    fn a_reference_names_its_token_as_vals_reads_it() {
        use secrecy::ExposeSecret as _;
        let env = |name: &str| (name == "CI_VAULT").then(|| "tok.env".to_owned());
        let source = |text: &str| token_source(&parse(text).unwrap(), &env);
        let shown = |s: Option<TokenSource>| match s {
            Some(TokenSource::File(p)) => format!("file:{}", p.display()),
            Some(TokenSource::Value(v)) => v.expose_secret().to_owned(),
            Some(TokenSource::Fetched(_)) => "fetched".into(),
            None => "none".into(),
        };
        assert_eq!(shown(source("ref+vault://s/x").unwrap()), "none");
        assert_eq!(
            shown(source("ref+vault://s/x?token_env=CI_VAULT").unwrap()),
            "tok.env"
        );
        assert_eq!(
            shown(source("ref+vault://s/x?token_file=/run/t").unwrap()),
            "file:/run/t"
        );
        assert_eq!(
            shown(source("ref+vault://s/x?token_env=CI_VAULT&token_file=/run/t").unwrap()),
            "file:/run/t"
        );
        let unset = source("ref+vault://s/x?token_env=NOPE").unwrap_err();
        assert!(
            unset.contains("token_env=NOPE") && unset.contains("not set"),
            "{unset}"
        );
    }

    #[test]
    fn a_vault_reference_without_a_fragment_names_a_key_by_its_last_segment() {
        let wanted = |text: &str| {
            let w = secret_ref(&parse(text).unwrap());
            (w.key, w.property, w.version)
        };
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            wanted("ref+vault://secret/ml/db/password"),
            ("secret/ml/db".into(), some("#/password"), None)
        );
        assert_eq!(
            wanted("ref+vault://secret/ml/db/a~b/?version=2"),
            ("secret/ml/db".into(), some("#/a~0b"), some("2"))
        );
        // A fragment, or the AWS backend: the path is the secret.
        assert_eq!(
            wanted("ref+vault://secret/ml/db#/password"),
            ("secret/ml/db".into(), some("#/password"), None)
        );
        assert_eq!(
            wanted("ref+awssecrets://ml/db"),
            ("ml/db".into(), None, None)
        );
        assert_eq!(wanted("ref+vault://secret"), ("secret".into(), None, None));
    }

    #[test]
    fn aws_versions_become_eso_versions() {
        let wanted = secret_ref(&parse("ref+awssecrets://a?version_id=123#/k").unwrap());
        assert_eq!(wanted.version.as_deref(), Some("uuid/123"));
        assert_eq!(wanted.property.as_deref(), Some("#/k"));
        let wanted = secret_ref(&parse("ref+awssecrets://a?version_stage=AWSPREVIOUS").unwrap());
        assert_eq!(wanted.version.as_deref(), Some("AWSPREVIOUS"));
        assert_eq!(wanted.property, None);
    }

    #[test]
    fn references_with_the_same_settings_share_a_provider() {
        let resolver = Resolver::new(Defaults::default());
        let key = |text: &str| resolver.group_key(&parse(text).unwrap());
        assert!(key("ref+vault://secret/data/a#/x") == key("ref+vault://secret/b#/y"));
        // One provider for every mount: it asks Vault for each mount's KV version.
        assert!(key("ref+vault://secret/a") == key("ref+vault://kv/a"));
        assert!(key("ref+vault://kv/a") != key("ref+vault://kv/a?token_env=T"));
        assert!(key("ref+vault://kv/a") != key("ref+vault://kv/a?token_file=/t"));
        assert!(key("ref+awssecrets://a") == key("ref+awssecrets://b#/k"));
        assert!(key("ref+awssecrets://a") != key("ref+awssecrets://a?region=eu-west-1"));
    }
}
