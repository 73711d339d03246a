//! Whose power a store may use: the rule that keeps a namespace tenant from borrowing the
//! controller's.
//!
//! Anyone allowed to create a SecretStore in a namespace chooses its provider address and its
//! credentials. The controller must therefore never lend such a store anything the namespace does
//! not already have: its own ServiceAccount token, its own AWS identity (the SDK's default chain,
//! `role` assumed on top of it), or a ServiceAccount token the namespace could not have requested
//! itself. This module decides, as pure functions over the store's spec, what a store may do; the
//! store reconciler and the ExternalSecret reconciler both call it through
//! [`crate::stores::Providers`], so the rule has one home.
//!
//! Guarantees:
//! - A namespaced SecretStore never authenticates with the controller's identity: Vault Kubernetes
//!   auth names a `serviceAccountRef` or a `secretRef`, AWS names `auth.secretRef` or `auth.jwt`.
//! - A ClusterSecretStore (created by whoever may create cluster-scoped objects, that is the
//!   operator) may use the controller's identity only when the operator started the controller
//!   with `--allow-controller-identity`.
//! - Provider endpoints (`vault.server`, `aws.endpointURL`) are `https`; plain `http` only to a
//!   loopback address (traffic that never leaves the pod) unless the operator allows it
//!   (`--allow-http-endpoints`).
//! - A ServiceAccount token is requested only for a ServiceAccount annotated
//!   [`TOKEN_OPT_IN_ANNOTATION`]` = "true"` by someone who may edit ServiceAccounts there, for at
//!   most [`MAX_TOKEN_SECONDS`], and never for the API server's audience (an empty audience list
//!   means the API server's, so one is always named).
//!
//! - Nothing a store or an ExternalSecret names lies in the key namespace (where the sealing keys
//!   live): the syncer never reads there ([`check_namespace`]).
//!
//! Caveats: what a tenant does with its *own* credentials (a token from its own Secret, sent to its
//! own server) is its business; this module only stops it from spending the controller's.

use seal_api::names::TOKEN_OPT_IN_ANNOTATION;
use seal_api::secret_store::SecretStoreProvider;
use seal_providers::endpoint::Transport;

pub use seal_api::secret_store::{MAX_TOKEN_SECONDS, MIN_TOKEN_SECONDS};

/// Audiences that mean "this cluster's API server" in common distributions, on top of the issuer
/// the controller discovers at start. A token for one of them is a login to the cluster itself.
pub const WELL_KNOWN_API_AUDIENCES: &[&str] = &[
    "https://kubernetes.default.svc",
    "https://kubernetes.default.svc.cluster.local",
    "kubernetes.default.svc",
    "https://kubernetes.default",
    "kubernetes",
];

/// What the operator allows beyond the defaults (controller flags).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreTrust {
    /// ClusterSecretStores may authenticate as the controller (`--allow-controller-identity`).
    pub controller_identity: bool,
    /// Provider endpoints may be plain `http` anywhere (`--allow-http-endpoints`).
    pub http_endpoints: bool,
    /// The API server's own audiences (its issuer, found at start), refused for store tokens.
    pub api_audiences: Vec<String>,
    /// The namespace of the sealing keys, which stores and ExternalSecrets never reach into.
    pub key_namespace: String,
}

/// Why a store may not be used. Messages name fields and addresses, never a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// The store would authenticate with the controller's own identity.
    #[error(
        "{what} would use seal-controller's own identity; {}",
        if *.cluster {
            "a ClusterSecretStore may, only when the controller runs with --allow-controller-identity"
        } else {
            "a SecretStore must name its namespace's own credentials"
        }
    )]
    ControllerIdentity {
        /// The configuration that would.
        what: &'static str,
        /// Whether the store is a ClusterSecretStore.
        cluster: bool,
    },
    /// An endpoint that is not https, or plain http off loopback.
    #[error("{field} {url:?}: {why}")]
    Endpoint {
        /// The field.
        field: &'static str,
        /// The address as written (an address is configuration, not a secret).
        url: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A token lifetime outside the allowed range.
    #[error("expirationSeconds {0} is outside {MIN_TOKEN_SECONDS}..={MAX_TOKEN_SECONDS}")]
    TokenLifetime(i64),
    /// A token for the API server's own audience.
    #[error(
        "audience {0:?} is the Kubernetes API server's; a store's token must name the provider's audience"
    )]
    ApiAudience(String),
    /// A reference into the key namespace.
    #[error(
        "namespace {0} holds seal-controller's sealing keys; stores and ExternalSecrets may not read or write there"
    )]
    KeyNamespace(String),
    /// A ServiceAccount that has not opted in to token requests.
    #[error(
        "ServiceAccount {namespace}/{name} does not allow seal stores to request its tokens; annotate it {TOKEN_OPT_IN_ANNOTATION}: \"true\""
    )]
    NotOptedIn {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
}

/// Checks that an object the syncer reads or writes (an ExternalSecret, its target Secret, a
/// store's credential Secret or ServiceAccount) is not in the key namespace.
pub fn check_namespace(namespace: &str, trust: &StoreTrust) -> Result<(), TrustError> {
    if !trust.key_namespace.is_empty() && namespace == trust.key_namespace {
        return Err(TrustError::KeyNamespace(namespace.to_owned()));
    }
    Ok(())
}

/// Checks that a store of this kind may use `provider` as configured: identity and endpoints.
pub fn check_store(
    provider: &SecretStoreProvider,
    cluster: bool,
    trust: &StoreTrust,
) -> Result<(), TrustError> {
    if let Some(what) = controller_identity_use(provider)
        && (!cluster || !trust.controller_identity)
    {
        return Err(TrustError::ControllerIdentity { what, cluster });
    }
    if let Some(vault) = &provider.vault {
        check_endpoint("vault.server", &vault.server, trust)?;
        if let Some(requested) = vault
            .auth
            .jwt
            .as_ref()
            .and_then(|j| j.kubernetes_service_account_token.as_ref())
            && let Some(seconds) = requested.expiration_seconds
        {
            token_lifetime(seconds)?;
        }
    }
    if let Some(endpoint) = provider.aws.as_ref().and_then(|a| a.endpoint_url.as_ref()) {
        check_endpoint("aws.endpointURL", endpoint, trust)?;
    }
    Ok(())
}

/// Which part of `provider` would authenticate as the controller, if any.
pub fn controller_identity_use(provider: &SecretStoreProvider) -> Option<&'static str> {
    if let Some(aws) = &provider.aws {
        let own = aws
            .auth
            .as_ref()
            .is_none_or(|auth| auth.secret_ref.is_none() && auth.jwt.is_none());
        if own {
            return Some(if aws.role.is_some() {
                "aws.role without aws.auth (assumed with the controller's AWS credentials)"
            } else {
                "aws without auth (the controller's AWS credential chain)"
            });
        }
    }
    let kubernetes = provider
        .vault
        .as_ref()
        .and_then(|v| v.auth.kubernetes.as_ref());
    if let Some(kubernetes) = kubernetes
        && kubernetes.service_account_ref.is_none()
        && kubernetes.secret_ref.is_none()
    {
        return Some(
            "vault.auth.kubernetes without serviceAccountRef or secretRef (the controller's ServiceAccount token)",
        );
    }
    None
}

/// A requested token lifetime, checked.
pub fn token_lifetime(seconds: i64) -> Result<i64, TrustError> {
    if (MIN_TOKEN_SECONDS..=MAX_TOKEN_SECONDS).contains(&seconds) {
        Ok(seconds)
    } else {
        Err(TrustError::TokenLifetime(seconds))
    }
}

/// The audiences to request a store's token for: `audiences`, else `default`; never empty (the
/// API server's audience) and never one of the API server's.
pub fn token_audiences(
    audiences: Vec<String>,
    default: &str,
    trust: &StoreTrust,
) -> Result<Vec<String>, TrustError> {
    let audiences = if audiences.is_empty() {
        vec![default.to_owned()]
    } else {
        audiences
    };
    if let Some(api) = audiences
        .iter()
        .find(|a| WELL_KNOWN_API_AUDIENCES.contains(&a.as_str()) || trust.api_audiences.contains(a))
    {
        return Err(TrustError::ApiAudience(api.clone()));
    }
    Ok(audiences)
}

/// Whether a ServiceAccount's annotations opt in to token requests by stores.
pub fn opted_in(annotations: &std::collections::BTreeMap<String, String>) -> bool {
    annotations.get(TOKEN_OPT_IN_ANNOTATION).map(String::as_str) == Some("true")
}

/// `https`, or `http` to loopback, or `http` anywhere when the operator allows it.
fn check_endpoint(field: &'static str, text: &str, trust: &StoreTrust) -> Result<(), TrustError> {
    let refuse = |why| {
        Err(TrustError::Endpoint {
            field,
            url: text.to_owned(),
            why,
        })
    };
    let Ok(url) = url::Url::parse(text) else {
        return refuse("not an absolute URL");
    };
    if !url.username().is_empty() || url.password().is_some() {
        return refuse("credentials in the URL are not allowed");
    }
    match seal_providers::endpoint::transport(text) {
        Ok(Transport::Https | Transport::LoopbackHttp) => Ok(()),
        Ok(Transport::PlainHttp) if trust.http_endpoints => Ok(()),
        Ok(Transport::PlainHttp) => refuse(
            "plain http leaves the pod unencrypted; use https (or start the controller with --allow-http-endpoints)",
        ),
        Err(_) => refuse("only https (or http to loopback) is allowed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn provider(value: serde_json::Value) -> SecretStoreProvider {
        serde_json::from_value(value).expect("a provider")
    }

    fn vault_kubernetes(auth: &serde_json::Value) -> SecretStoreProvider {
        provider(json!({"vault": {"server": "https://vault.example:8200",
            "auth": {"kubernetes": auth}}}))
    }

    #[test]
    fn nothing_reaches_into_the_key_namespace() {
        let trust = StoreTrust {
            key_namespace: "seal-system".into(),
            ..StoreTrust::default()
        };
        assert_eq!(
            check_namespace("seal-system", &trust),
            Err(TrustError::KeyNamespace("seal-system".into()))
        );
        assert_eq!(check_namespace("ml-api", &trust), Ok(()));
        // Unset (a caller that has no key namespace): nothing is refused.
        assert_eq!(
            check_namespace("seal-system", &StoreTrust::default()),
            Ok(())
        );
    }

    #[test]
    fn a_namespaced_vault_store_never_logs_in_with_the_controller_token() {
        let own = vault_kubernetes(&json!({"role": "r"}));
        let allowed = StoreTrust {
            controller_identity: true,
            ..StoreTrust::default()
        };
        for trust in [&StoreTrust::default(), &allowed] {
            assert!(matches!(
                check_store(&own, false, trust),
                Err(TrustError::ControllerIdentity { cluster: false, .. })
            ));
        }
        let account = vault_kubernetes(&json!({"role": "r", "serviceAccountRef": {"name": "a"}}));
        assert_eq!(check_store(&account, false, &StoreTrust::default()), Ok(()));
    }

    #[test]
    fn a_cluster_store_uses_the_controller_identity_only_when_allowed() {
        let own = provider(json!({"aws": {"service": "SecretsManager", "region": "eu-west-1"}}));
        assert!(matches!(
            check_store(&own, true, &StoreTrust::default()),
            Err(TrustError::ControllerIdentity { cluster: true, .. })
        ));
        let allowed = StoreTrust {
            controller_identity: true,
            ..StoreTrust::default()
        };
        assert_eq!(check_store(&own, true, &allowed), Ok(()));
    }

    #[test]
    fn an_aws_role_on_the_controller_chain_is_the_controller_identity() {
        let role = provider(
            json!({"aws": {"service": "SecretsManager", "region": "eu-west-1",
            "role": "arn:aws:iam::1:role/other-team", "auth": {}}}),
        );
        assert!(controller_identity_use(&role).unwrap().contains("aws.role"));
        let own_keys = provider(
            json!({"aws": {"service": "SecretsManager", "region": "eu-west-1",
            "role": "arn:aws:iam::1:role/r", "auth": {"secretRef": {
                "accessKeyIDSecretRef": {"name": "a", "key": "id"},
                "secretAccessKeySecretRef": {"name": "a", "key": "key"}}}}}),
        );
        assert_eq!(controller_identity_use(&own_keys), None);
    }

    #[test]
    fn plain_http_is_only_for_loopback_unless_allowed() {
        let at = |server: &str| {
            provider(json!({"vault": {"server": server,
                "auth": {"tokenSecretRef": {"name": "t", "key": "token"}}}}))
        };
        let default = StoreTrust::default();
        for ok in [
            "https://vault.example:8200",
            "http://127.0.0.1:8200",
            "http://127.9.9.9",
            "http://[::1]:8200",
            "http://localhost:8200",
        ] {
            assert_eq!(check_store(&at(ok), false, &default), Ok(()), "{ok}");
        }
        for refused in [
            "http://attacker.example:8200",
            "http://10.0.0.1",
            "ftp://vault.example",
            "vault.example:8200",
            "https://user:pass@vault.example",
        ] {
            assert!(
                matches!(
                    check_store(&at(refused), false, &default),
                    Err(TrustError::Endpoint { .. })
                ),
                "{refused}"
            );
        }
        let lax = StoreTrust {
            http_endpoints: true,
            ..StoreTrust::default()
        };
        assert_eq!(
            check_store(&at("http://vault.internal:8200"), false, &lax),
            Ok(())
        );
        let aws = provider(json!({"aws": {"service": "SecretsManager", "region": "r",
            "endpointURL": "http://attacker.example", "auth": {"jwt": {"serviceAccountRef": {"name": "a"}}}}}));
        assert!(matches!(
            check_store(&aws, false, &default),
            Err(TrustError::Endpoint {
                field: "aws.endpointURL",
                ..
            })
        ));
    }

    #[test]
    fn token_lifetimes_are_bounded() {
        assert_eq!(token_lifetime(600), Ok(600));
        assert_eq!(token_lifetime(3600), Ok(3600));
        assert!(token_lifetime(31_536_000).is_err());
        assert!(token_lifetime(0).is_err());
        let long = provider(json!({"vault": {"server": "https://v", "auth": {"jwt": {
            "kubernetesServiceAccountToken": {"serviceAccountRef": {"name": "a"},
                "expirationSeconds": 31_536_000}}}}}));
        assert_eq!(
            check_store(&long, false, &StoreTrust::default()),
            Err(TrustError::TokenLifetime(31_536_000))
        );
    }

    #[test]
    fn a_store_token_never_has_the_api_server_audience() {
        let trust = StoreTrust {
            api_audiences: vec!["https://127.0.0.1:6443".into()],
            ..StoreTrust::default()
        };
        assert_eq!(
            token_audiences(vec![], "vault", &trust),
            Ok(vec!["vault".to_owned()])
        );
        assert!(matches!(
            token_audiences(vec!["https://127.0.0.1:6443".into()], "vault", &trust),
            Err(TrustError::ApiAudience(_))
        ));
        assert!(matches!(
            token_audiences(
                vec!["https://kubernetes.default.svc".into()],
                "vault",
                &trust
            ),
            Err(TrustError::ApiAudience(_))
        ));
    }

    #[test]
    fn only_the_exact_opt_in_counts() {
        let with = |value: &str| {
            std::collections::BTreeMap::from([(TOKEN_OPT_IN_ANNOTATION.to_owned(), value.into())])
        };
        assert!(opted_in(&with("true")));
        assert!(!opted_in(&with("yes")));
        assert!(!opted_in(&std::collections::BTreeMap::new()));
    }
}
