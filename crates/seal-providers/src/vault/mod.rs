//! Vault and OpenBao KV (v1 and v2) through `vaultrs`, with one token per provider that lives
//! as long as it can: logged in once, renewed (renew-self) when two thirds of its TTL have
//! passed, and replaced by a fresh login only when renewal fails, the token is not renewable,
//! renewal no longer extends it (its max TTL is near), or Vault says it was revoked. This is
//! Vault Agent's auto-auth behaviour, and what ESO lacks (it logs in on every reconcile).
//!
//! Renewal happens in a background task tied to the provider (it stops when the provider is
//! dropped) and, as a fallback, on the first use after the renewal point. A `403` is checked with
//! a lookup-self: when the token itself is dead the provider logs in again and retries once;
//! when the token is fine the `403` is a real refusal ([`Error::Denied`]) and no login follows,
//! so a missing policy cannot cause a login storm.
//!
//! Keys are `<mount>/<path>` (vals) or a path below the store's mount (ESO); KV v2's `/data/`
//! segment may be written or not (see [`path`]). For references the mount and its KV version
//! are asked of Vault, as vals does ([`VaultConfig::kv_from_mount`]). The value of a KV secret is its data as a JSON
//! object, from which [`SecretValue::property`] picks keys. `version` is a KV v2 version number.
//!
//! | job | home |
//! |---|---|
//! | configuration ([`VaultConfig`], [`VaultAuth`], [`KvVersion`]), [`VaultProvider`] | this file |
//! | reading KV v1/v2: one secret, several, listing folders, find; asking a key's mount | [`kv`] |
//! | a key into a mount and a path (KV v2's `/data/`), the mount Vault names | [`path`] |
//! | logging in (AppRole, Kubernetes, JWT), a given token, a `403`: dead token? | [`session`] |
//! | renewing the token (renew-self at 2/3 of its TTL), the background renewer | [`token_renewal`] |
//! | a vaultrs error into a retry fault and an [`Error`] | [`errors`] |

mod errors;
mod kv;
mod path;
mod session;
mod token_renewal;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};

use secrecy::SecretString;

use self::session::Session;
use crate::error::Error;
use crate::metrics::CallCounter;
use crate::retry::RetryPolicy;
use crate::value::SecretValue;
use crate::{FindQuery, ProviderKind, SecretProvider, SecretRef, TokenSource};

/// The KV secrets engine version of the store's mount.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum KvVersion {
    /// KV v1: no versions, no metadata.
    V1,
    /// KV v2 (the default, as in ESO).
    #[default]
    V2,
}

/// How a Vault provider gets its token. Mount paths default as Vault's do (`approle`,
/// `kubernetes`, `jwt`) in the constructors.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum VaultAuth {
    /// A token given as is. It is renewed when renewable, but cannot be replaced: once it
    /// expires or is revoked, calls fail with [`Error::Denied`].
    Token(SecretString),
    /// AppRole login.
    AppRole {
        /// The auth mount path (`approle`).
        mount: String,
        /// The role id.
        role_id: String,
        /// The secret id.
        secret_id: SecretString,
    },
    /// Kubernetes login with a ServiceAccount token, checked by Vault with a TokenReview.
    Kubernetes {
        /// The auth mount path (`kubernetes`).
        mount: String,
        /// The Vault role.
        role: String,
        /// The ServiceAccount token, or its projected file.
        jwt: TokenSource,
    },
    /// JWT/OIDC login with a token (a CI system's OIDC token, or a ServiceAccount token).
    Jwt {
        /// The auth mount path (`jwt`).
        mount: String,
        /// The Vault role; `None` uses the mount's default role.
        role: Option<String>,
        /// The token, or its file.
        jwt: TokenSource,
    },
}

impl VaultAuth {
    /// AppRole at the default mount `approle`.
    pub fn app_role(role_id: impl Into<String>, secret_id: SecretString) -> Self {
        VaultAuth::AppRole {
            mount: "approle".into(),
            role_id: role_id.into(),
            secret_id,
        }
    }

    /// Kubernetes at the default mount `kubernetes`.
    pub fn kubernetes(role: impl Into<String>, jwt: TokenSource) -> Self {
        VaultAuth::Kubernetes {
            mount: "kubernetes".into(),
            role: role.into(),
            jwt,
        }
    }

    /// JWT at the default mount `jwt`.
    pub fn jwt(role: Option<String>, jwt: TokenSource) -> Self {
        VaultAuth::Jwt {
            mount: "jwt".into(),
            role,
            jwt,
        }
    }

    /// True when a new token can be had by logging in (every method but a given token).
    fn can_login(&self) -> bool {
        !matches!(self, VaultAuth::Token(_))
    }
}

/// Where and how a [`VaultProvider`] talks to Vault.
#[derive(Clone, Debug)]
pub struct VaultConfig {
    address: String,
    namespace: Option<String>,
    ca_bundle: Option<String>,
    mount: Option<String>,
    kv_version: KvVersion,
    kv_from_mount: bool,
    auth: VaultAuth,
    retry: RetryPolicy,
    calls: Option<Arc<CallCounter>>,
}

impl VaultConfig {
    /// Vault at `address` (`https://vault.example:8200`), KV v2, authenticating with `auth`.
    pub fn new(address: impl Into<String>, auth: VaultAuth) -> Self {
        VaultConfig {
            address: address.into(),
            namespace: None,
            ca_bundle: None,
            mount: None,
            kv_version: KvVersion::V2,
            kv_from_mount: false,
            auth,
            retry: RetryPolicy::default(),
            calls: None,
        }
    }

    /// The Vault Enterprise / OpenBao namespace (`X-Vault-Namespace`).
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Trusts exactly the CA certificates in this PEM bundle for an https address, instead of
    /// the system's.
    #[must_use]
    pub fn ca_bundle(mut self, pem: impl Into<String>) -> Self {
        self.ca_bundle = Some(pem.into());
        self
    }

    /// The KV mount keys are relative to (ESO's `provider.vault.path`); without it, a key's first
    /// segment is its mount.
    #[must_use]
    pub fn mount(mut self, mount: impl Into<String>) -> Self {
        self.mount = Some(mount.into());
        self
    }

    /// The KV engine version (default v2).
    #[must_use]
    pub fn kv_version(mut self, version: KvVersion) -> Self {
        self.kv_version = version;
        self
    }

    /// Reads each key at the mount Vault names for it, with that mount's KV version
    /// (`sys/internal/ui/mounts/<key>`, asked once per mount), instead of the configured mount
    /// and version: how vals reads `ref+vault://` paths.
    #[must_use]
    pub fn kv_from_mount(mut self) -> Self {
        self.kv_from_mount = true;
        self
    }

    /// Times and retries calls with `policy`.
    #[must_use]
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Counts calls in `calls` (shared with other providers) instead of a counter of its own.
    #[must_use]
    pub fn calls(mut self, calls: Arc<CallCounter>) -> Self {
        self.calls = Some(calls);
        self
    }
}

/// Vault or OpenBao KV as a [`SecretProvider`].
pub struct VaultProvider {
    inner: Arc<Inner>,
}

/// The provider's state, shared with its background renewal task (which holds it weakly). Its
/// methods live in the file of their job: [`kv`], [`session`], [`token_renewal`] (which also
/// stops the renewal task when this is dropped), [`errors`].
struct Inner {
    address: String,
    namespace: Option<String>,
    http: reqwest::Client,
    mount: Option<String>,
    kv: KvVersion,
    /// Ask Vault for each key's mount ([`VaultConfig::kv_from_mount`]).
    kv_from_mount: bool,
    /// The mounts Vault named so far, for [`VaultConfig::kv_from_mount`].
    mounts: tokio::sync::Mutex<Vec<path::Mount>>,
    auth: VaultAuth,
    retry: RetryPolicy,
    calls: Arc<CallCounter>,
    store: String,
    /// The current token; `None` before the first login.
    session: RwLock<Option<Arc<Session>>>,
    /// Held while a renewal or login is under way, so concurrent callers wait for one instead
    /// of each logging in.
    refreshing: tokio::sync::Mutex<()>,
    /// Counts logins; each session carries the number of the login that made it.
    generation: AtomicU64,
    /// Wakes the renewal task when a new session is stored.
    changed: Arc<tokio::sync::Notify>,
    /// The background renewal task, once the first login has started it.
    renewer: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
}

impl VaultProvider {
    /// A provider for `config`. Makes no call: it logs in at the first request.
    ///
    /// Errors: [`Error::InvalidConfig`] for an address that is not an http(s) URL or a CA bundle
    /// with no certificate.
    pub fn new(config: VaultConfig) -> Result<Self, Error> {
        crate::ensure_crypto_provider();
        let store = match &config.namespace {
            Some(ns) => format!("{} (namespace {ns})", config.address),
            None => config.address.clone(),
        };
        let invalid = |detail: String| errors::invalid_config(&store, detail);
        let url = reqwest::Url::parse(&config.address)
            .map_err(|e| invalid(format!("the address is not a URL: {e}")))?;
        let mut http = reqwest::Client::builder()
            .tls_backend_rustls()
            .connect_timeout(config.retry.timeout);
        match (url.scheme(), &config.ca_bundle) {
            // No TLS: skip loading the system's roots (as vaultrs does; reqwest#2988).
            ("http", _) => http = http.tls_certs_only(Vec::new()),
            ("https", Some(pem)) => {
                let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                    .map_err(|e| invalid(format!("the CA bundle is not PEM: {e}")))?;
                if certs.is_empty() {
                    return Err(invalid("the CA bundle holds no certificate".into()));
                }
                http = http.tls_certs_only(certs);
            }
            ("https", None) => {}
            (other, _) => return Err(invalid(format!("unsupported scheme {other}"))),
        }
        let http = http
            .build()
            .map_err(|e| invalid(format!("cannot build the HTTP client: {e}")))?;
        Ok(VaultProvider {
            inner: Arc::new(Inner {
                address: config.address,
                namespace: config.namespace,
                http,
                mount: config.mount,
                kv: config.kv_version,
                kv_from_mount: config.kv_from_mount,
                mounts: tokio::sync::Mutex::new(Vec::new()),
                auth: config.auth,
                retry: config.retry,
                calls: config.calls.unwrap_or_default(),
                store,
                session: RwLock::new(None),
                refreshing: tokio::sync::Mutex::new(()),
                generation: AtomicU64::new(0),
                changed: Arc::new(tokio::sync::Notify::new()),
                renewer: std::sync::Mutex::new(None),
            }),
        })
    }
}

impl SecretProvider for VaultProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Vault
    }

    async fn get(&self, key: &str, version: Option<&str>) -> Result<SecretValue, Error> {
        self.inner.read(key, version).await
    }

    async fn get_many(&self, refs: &[SecretRef]) -> Vec<Result<SecretValue, Error>> {
        self.inner.read_many(refs).await
    }

    async fn find(&self, query: &FindQuery) -> Result<Vec<(String, SecretValue)>, Error> {
        self.inner.find(query).await
    }

    fn calls(&self) -> &Arc<CallCounter> {
        &self.inner.calls
    }
}
