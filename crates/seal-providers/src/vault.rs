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
//! segment may be written or not (see [`path`]). The value of a KV secret is its data as a JSON
//! object, from which [`SecretValue::property`] picks keys. `version` is a KV v2 version number.

mod path;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use futures_util::StreamExt as _;
use rustify::errors::ClientError as RestError;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::time::Instant;
use vaultrs::api::AuthInfo;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;
use zeroize::Zeroize;

use crate::error::{Error, Location};
use crate::metrics::{Call, CallCounter};
use crate::retry::{self, Failed, Failure, Fault, RetryPolicy};
use crate::value::SecretValue;
use crate::{
    FindQuery, ProviderKind, SecretProvider, SecretRef, TokenSource, distinct_keys, resolve_refs,
};

/// Folders a find may list before it gives up, and how deep it may go.
const FIND_MAX_FOLDERS: usize = 1000;
const FIND_MAX_DEPTH: usize = 16;
/// Reads in flight at once for `get_many` and `find`.
const CONCURRENCY: usize = 8;

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

struct Inner {
    address: String,
    namespace: Option<String>,
    http: reqwest::Client,
    mount: Option<String>,
    kv: KvVersion,
    auth: VaultAuth,
    retry: RetryPolicy,
    calls: Arc<CallCounter>,
    store: String,
    session: RwLock<Option<Arc<Session>>>,
    /// Held while a renewal or login is under way, so concurrent callers wait for one instead
    /// of each logging in.
    refreshing: tokio::sync::Mutex<()>,
    generation: AtomicU64,
    /// Wakes the renewal task when a new session is stored.
    changed: Arc<tokio::sync::Notify>,
    renewer: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
}

/// A vaultrs client holding a token, wiped when the last user lets go of it.
struct TokenClient(VaultClient);

impl Drop for TokenClient {
    fn drop(&mut self) {
        self.0.settings.token.zeroize();
        self.0.middle.token.zeroize();
    }
}

/// A token and what is known of its lease.
struct Session {
    client: Arc<TokenClient>,
    /// Increases with every login, so a caller that saw a revoked token can tell whether
    /// someone has replaced it already.
    generation: u64,
    obtained: Instant,
    /// `None`: the token does not expire.
    ttl: Option<Duration>,
    renewable: bool,
    /// The TTL the login granted; a renewal granting much less means the max TTL is near.
    login_ttl: Option<Duration>,
}

impl Session {
    fn renew_at(&self) -> Option<Instant> {
        self.ttl.map(|ttl| self.obtained + ttl * 2 / 3)
    }

    fn due(&self, now: Instant) -> bool {
        self.renew_at().is_some_and(|at| now >= at)
    }

    fn expired(&self, now: Instant) -> bool {
        self.ttl.is_some_and(|ttl| now >= self.obtained + ttl)
    }
}

/// A login, with the credential read (from its file, if it has one).
enum LoginRequest<'a> {
    AppRole {
        mount: &'a str,
        role_id: &'a str,
        secret_id: &'a SecretString,
    },
    Kubernetes {
        mount: &'a str,
        role: &'a str,
        jwt: SecretString,
    },
    Jwt {
        mount: &'a str,
        role: Option<&'a str>,
        jwt: SecretString,
    },
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
        let invalid = |detail: String| Error::InvalidConfig {
            provider: ProviderKind::Vault,
            store: store.clone(),
            detail,
        };
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
        let fetched: HashMap<_, _> = futures_util::stream::iter(distinct_keys(refs))
            .map(|(key, version)| async move {
                let value = self.inner.read(&key, version.as_deref()).await;
                ((key, version), value)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        resolve_refs(ProviderKind::Vault, &self.inner.store, refs, &fetched)
    }

    async fn find(&self, query: &FindQuery) -> Result<Vec<(String, SecretValue)>, Error> {
        self.inner.find(query).await
    }

    fn calls(&self) -> &Arc<CallCounter> {
        &self.inner.calls
    }
}

impl Inner {
    fn at(&self, key: &str) -> Location {
        Location::new(ProviderKind::Vault, &self.store, key)
    }

    fn invalid(&self, detail: impl Into<String>) -> Error {
        Error::InvalidConfig {
            provider: ProviderKind::Vault,
            store: self.store.clone(),
            detail: detail.into(),
        }
    }

    /// The value of one KV secret: its data as a JSON object.
    async fn read(
        self: &Arc<Self>,
        key: &str,
        version: Option<&str>,
    ) -> Result<SecretValue, Error> {
        let at = self.at(key);
        let kv = path::split(self.mount.as_deref(), key, self.kv, false).map_err(|detail| {
            Error::InvalidRequest {
                at: at.clone(),
                detail: detail.into(),
            }
        })?;
        let version = match (self.kv, version.map(str::trim)) {
            (_, None | Some("")) => None,
            (KvVersion::V2, Some(v)) => {
                Some(v.parse::<u64>().map_err(|_| Error::InvalidRequest {
                    at: at.clone(),
                    detail: "a KV v2 version is a positive number".into(),
                })?)
            }
            (KvVersion::V1, Some(_)) => {
                return Err(Error::InvalidRequest {
                    at,
                    detail: "KV v1 keeps no versions".into(),
                });
            }
        };
        self.read_kv(&at, &kv, version).await
    }

    /// [`Inner::read`] of a path already split.
    async fn read_kv(
        self: &Arc<Self>,
        at: &Location,
        kv: &path::KvPath,
        version: Option<u64>,
    ) -> Result<SecretValue, Error> {
        let engine = self.kv;
        let data: Value = self
            .call(Call::VaultRead, at, |client| async move {
                match (engine, version) {
                    (KvVersion::V1, _) => vaultrs::kv1::get(&client.0, &kv.mount, &kv.path).await,
                    (KvVersion::V2, None) => {
                        vaultrs::kv2::read(&client.0, &kv.mount, &kv.path).await
                    }
                    (KvVersion::V2, Some(n)) => {
                        vaultrs::kv2::read_version(&client.0, &kv.mount, &kv.path, n).await
                    }
                }
            })
            .await?;
        Ok(crate::property::secret_json(data))
    }

    /// Every secret path below `folder` (relative to the mount), listed breadth first.
    async fn list_tree(
        self: &Arc<Self>,
        at: &Location,
        mount: &str,
        folder: &str,
    ) -> Result<Vec<String>, Error> {
        let engine = self.kv;
        let mut queue = VecDeque::from([(folder.to_owned(), 0usize)]);
        let mut secrets = Vec::new();
        let mut listed = 0;
        while let Some((dir, depth)) = queue.pop_front() {
            listed += 1;
            if listed > FIND_MAX_FOLDERS {
                return Err(Error::InvalidRequest {
                    at: at.clone(),
                    detail: format!(
                        "more than {FIND_MAX_FOLDERS} folders to list; narrow the path"
                    ),
                });
            }
            let keys = self
                .call(Call::VaultList, at, |client| {
                    let dir = &dir;
                    async move {
                        match engine {
                            KvVersion::V1 => vaultrs::kv1::list(&client.0, mount, dir)
                                .await
                                .map(|r| r.data.keys),
                            KvVersion::V2 => vaultrs::kv2::list(&client.0, mount, dir).await,
                        }
                    }
                })
                .await;
            let keys = match keys {
                Ok(keys) => keys,
                // An empty folder (or a path that is a secret, not a folder) lists as 404.
                Err(Error::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            for key in keys {
                let full = if dir.is_empty() {
                    key.clone()
                } else {
                    format!("{dir}/{key}")
                };
                match full.strip_suffix('/') {
                    Some(sub) if depth < FIND_MAX_DEPTH => {
                        queue.push_back((sub.to_owned(), depth + 1));
                    }
                    Some(_) => {
                        return Err(Error::InvalidRequest {
                            at: at.clone(),
                            detail: format!(
                                "the tree is deeper than {FIND_MAX_DEPTH} folders; narrow the path"
                            ),
                        });
                    }
                    None => secrets.push(full),
                }
            }
        }
        Ok(secrets)
    }

    async fn find(
        self: &Arc<Self>,
        query: &FindQuery,
    ) -> Result<Vec<(String, SecretValue)>, Error> {
        let folder = query.path.as_deref().unwrap_or("");
        let at = self.at(&format!("find under \"{folder}\""));
        let name_regexp = query
            .name_regexp
            .as_deref()
            .map(regex::Regex::new)
            .transpose()
            .map_err(|e| self.invalid(format!("find: invalid name regexp: {e}")))?;
        if !query.tags.is_empty() && self.kv == KvVersion::V1 {
            return Err(self.invalid("find: tags are KV v2 custom metadata; KV v1 has none"));
        }
        let kv = path::split(self.mount.as_deref(), folder, self.kv, true)
            .map_err(|detail| self.invalid(format!("find: {detail}")))?;
        let mut names: Vec<String> = self
            .list_tree(&at, &kv.mount, &kv.path)
            .await?
            .into_iter()
            .filter(|name| name_regexp.as_ref().is_none_or(|re| re.is_match(name)))
            .collect();
        if !query.tags.is_empty() {
            let tagged: Vec<Option<String>> = futures_util::stream::iter(names)
                .map(|name| {
                    let (at, kv) = (&at, &kv);
                    async move {
                        let metadata = self
                            .call(Call::VaultReadMetadata, at, |client| {
                                let name = &name;
                                async move {
                                    vaultrs::kv2::read_metadata(&client.0, &kv.mount, name).await
                                }
                            })
                            .await?;
                        let custom = metadata.custom_metadata.unwrap_or_default();
                        let wanted = query.tags.iter().all(|(k, v)| custom.get(k) == Some(v));
                        Ok::<_, Error>(wanted.then_some(name))
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<Result<_, _>>()?;
            names = tagged.into_iter().flatten().collect();
        }
        if names.len() > query.limit {
            return Err(Error::TooMany {
                at,
                limit: query.limit,
            });
        }
        let mut found: Vec<(String, SecretValue)> = Vec::with_capacity(names.len());
        let reads: Vec<_> = futures_util::stream::iter(names)
            .map(|name| {
                let secret = path::KvPath {
                    mount: kv.mount.clone(),
                    path: name,
                };
                let at = self.at(&format!("{}/{}", secret.mount, secret.path));
                async move {
                    let value = self.read_kv(&at, &secret, None).await;
                    (secret.path, value)
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for (name, value) in reads {
            match value {
                Ok(value) => found.push((name, value)),
                // Deleted between the listing and the read: it is not there any more.
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }

    /// Runs `op` with the session's client under the retry policy. A `403` is checked with a
    /// lookup-self: if the token is dead, the provider logs in again and `op` runs once more.
    async fn call<T, F, Fut>(self: &Arc<Self>, call: Call, at: &Location, op: F) -> Result<T, Error>
    where
        F: Fn(Arc<TokenClient>) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let session = self.session(at).await?;
        let op = &op;
        let attempt = |session: Arc<Session>| {
            retry::call(&self.retry, &self.calls, call, move || {
                let running = op(session.client.clone());
                async move { running.await.map_err(|e| classify(&e, false)) }
            })
        };
        match attempt(session.clone()).await {
            Err(failed)
                if failed.fault == Fault::Denied
                    && self.auth.can_login()
                    && self.token_is_dead(&session).await =>
            {
                let fresh = self.refresh(Some(session.generation), at).await?;
                attempt(fresh).await.map_err(|f| f.into_error(at.clone()))
            }
            other => other.map_err(|f| f.into_error(at.clone())),
        }
    }

    fn current(&self) -> Option<Arc<Session>> {
        self.session
            .read()
            .expect("invariant: no panic while the session lock is held")
            .clone()
    }

    /// The session to use now: the current one unless its renewal is due, then a renewed or new
    /// one. When renewal and login both fail but the current token has not expired, the
    /// current one is used.
    async fn session(self: &Arc<Self>, at: &Location) -> Result<Arc<Session>, Error> {
        let current = self.current();
        match &current {
            Some(s) if !s.due(Instant::now()) => Ok(s.clone()),
            _ => match self.refresh(None, at).await {
                Ok(fresh) => Ok(fresh),
                Err(e) => match current {
                    Some(s) if !s.expired(Instant::now()) => Ok(s),
                    _ => Err(e),
                },
            },
        }
    }

    /// Renews the current token if it is due (or logs in if it cannot be renewed). With
    /// `revoked`, the session of that generation is known dead: log in unless someone already
    /// replaced it.
    async fn refresh(
        self: &Arc<Self>,
        revoked: Option<u64>,
        at: &Location,
    ) -> Result<Arc<Session>, Error> {
        let _one_at_a_time = self.refreshing.lock().await;
        let now = Instant::now();
        let current = self.current();
        if let Some(s) = &current {
            let replaced = revoked.is_some_and(|g| g != s.generation);
            if replaced || (revoked.is_none() && !s.due(now)) {
                return Ok(s.clone());
            }
        }
        let renewed = match &current {
            Some(s) if revoked.is_none() && s.renewable && !s.expired(now) => self.renew(s).await,
            _ => None,
        };
        let next = Arc::new(match renewed {
            Some(renewed) => renewed,
            None => self.login(at).await?,
        });
        *self
            .session
            .write()
            .expect("invariant: no panic while the session lock is held") = Some(next.clone());
        self.ensure_renewer();
        self.changed.notify_one();
        Ok(next)
    }

    /// The session after a renew-self, or `None` when a login should replace it: renewal failed,
    /// or it granted less than a third of the login's TTL (the max TTL is near).
    async fn renew(&self, session: &Arc<Session>) -> Option<Session> {
        let client = session.client.clone();
        let renewed: Result<AuthInfo, Failed> =
            retry::call(&self.retry, &self.calls, Call::VaultRenewSelf, || {
                let client = client.clone();
                async move {
                    vaultrs::token::renew_self(&client.0, None)
                        .await
                        .map_err(|e| classify(&e, true))
                }
            })
            .await;
        let mut info = renewed.ok()?;
        info.client_token.zeroize();
        let ttl = Duration::from_secs(info.lease_duration);
        let exhausted = session.login_ttl.is_some_and(|login| ttl < login / 3);
        if ttl.is_zero() || (exhausted && self.auth.can_login()) {
            return None;
        }
        Some(Session {
            client,
            generation: session.generation,
            obtained: Instant::now(),
            ttl: Some(ttl),
            renewable: info.renewable,
            login_ttl: session.login_ttl,
        })
    }

    /// True when Vault says the session's token is no longer valid.
    async fn token_is_dead(&self, session: &Session) -> bool {
        let client = session.client.clone();
        let lookup = retry::call(&self.retry, &self.calls, Call::VaultLookupSelf, || {
            let client = client.clone();
            async move {
                vaultrs::token::lookup_self(&client.0)
                    .await
                    .map(|mut info| info.id.zeroize())
                    .map_err(|e| classify(&e, true))
            }
        })
        .await;
        matches!(
            lookup,
            Err(Failed {
                fault: Fault::Denied,
                ..
            })
        )
    }

    /// A vaultrs client for `token` on the shared HTTP client. Every setting is explicit, so
    /// nothing comes from `VAULT_*` environment variables.
    fn client(&self, token: &str) -> Result<TokenClient, Error> {
        let settings = VaultClientSettingsBuilder::default()
            .address(&self.address)
            .token(token)
            .ca_certs(Vec::new())
            .identity(None)
            .verify(true)
            .namespace(self.namespace.clone())
            .build()
            .map_err(|e| self.invalid(format!("invalid client settings: {e}")))?;
        let mut client = VaultClient::new(settings)
            .map_err(|e| self.invalid(format!("cannot build the client: {e}")))?;
        client.http.http = self.http.clone();
        Ok(TokenClient(client))
    }

    /// The session of a given token, its TTL and renewability learnt with a lookup-self.
    async fn given_token(
        &self,
        token: &SecretString,
        generation: u64,
        at: Location,
    ) -> Result<Session, Error> {
        let client = Arc::new(self.client(token.expose_secret())?);
        let mut lookup = retry::call(&self.retry, &self.calls, Call::VaultLookupSelf, || {
            let client = client.clone();
            async move {
                vaultrs::token::lookup_self(&client.0)
                    .await
                    .map_err(|e| classify(&e, true))
            }
        })
        .await
        .map_err(|f| f.into_error(at))?;
        lookup.id.zeroize();
        let ttl = (lookup.ttl > 0).then(|| Duration::from_secs(lookup.ttl));
        Ok(Session {
            client,
            generation,
            obtained: Instant::now(),
            ttl,
            renewable: lookup.renewable.unwrap_or(false),
            login_ttl: ttl,
        })
    }

    /// A new session: a login, or for a given token a lookup-self to learn its TTL.
    async fn login(&self, at: &Location) -> Result<Session, Error> {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let login_at = Location {
            key: format!("login for {}", at.key),
            ..at.clone()
        };
        let request = match &self.auth {
            VaultAuth::Token(token) => {
                return self.given_token(token, generation, login_at).await;
            }
            VaultAuth::AppRole {
                mount,
                role_id,
                secret_id,
            } => LoginRequest::AppRole {
                mount,
                role_id,
                secret_id,
            },
            VaultAuth::Kubernetes { mount, role, jwt } => LoginRequest::Kubernetes {
                mount,
                role,
                jwt: jwt.read().await.map_err(|e| self.invalid(e))?,
            },
            VaultAuth::Jwt { mount, role, jwt } => LoginRequest::Jwt {
                mount,
                role: role.as_deref(),
                jwt: jwt.read().await.map_err(|e| self.invalid(e))?,
            },
        };
        let anonymous = self.client("")?;
        let mut info: AuthInfo = retry::call(&self.retry, &self.calls, Call::VaultLogin, || {
            let (anonymous, request) = (&anonymous.0, &request);
            async move {
                match request {
                    LoginRequest::AppRole {
                        mount,
                        role_id,
                        secret_id,
                    } => {
                        vaultrs::auth::approle::login(
                            anonymous,
                            mount,
                            role_id,
                            secret_id.expose_secret(),
                        )
                        .await
                    }
                    LoginRequest::Kubernetes { mount, role, jwt } => {
                        vaultrs::auth::kubernetes::login(
                            anonymous,
                            mount,
                            role,
                            jwt.expose_secret(),
                        )
                        .await
                    }
                    LoginRequest::Jwt { mount, role, jwt } => {
                        vaultrs::auth::oidc::login(
                            anonymous,
                            mount,
                            jwt.expose_secret(),
                            role.map(str::to_owned),
                        )
                        .await
                    }
                }
                .map_err(|e| classify(&e, true))
            }
        })
        .await
        .map_err(|f| f.into_error(login_at))?;
        let client = Arc::new(self.client(&info.client_token)?);
        info.client_token.zeroize();
        let ttl = (info.lease_duration > 0).then(|| Duration::from_secs(info.lease_duration));
        Ok(Session {
            client,
            generation,
            obtained: Instant::now(),
            ttl,
            renewable: info.renewable,
            login_ttl: ttl,
        })
    }

    /// Starts the renewal task once. It holds the provider only weakly, and the provider
    /// aborts it when dropped.
    fn ensure_renewer(self: &Arc<Self>) {
        let mut renewer = self
            .renewer
            .lock()
            .expect("invariant: no panic while the renewer lock is held");
        if renewer.is_none() {
            let task = tokio::spawn(renew_in_background(
                Arc::downgrade(self),
                self.changed.clone(),
            ));
            *renewer = Some(task.abort_handle());
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.renewer.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}

/// Renews the provider's token at two thirds of its TTL, whether or not anyone reads secrets,
/// so an idle store keeps its token instead of logging in again at its next use. Stops when the
/// provider is gone.
async fn renew_in_background(provider: Weak<Inner>, changed: Arc<tokio::sync::Notify>) {
    loop {
        let due = {
            let Some(inner) = provider.upgrade() else {
                return;
            };
            inner.current().and_then(|s| s.renew_at())
        };
        let Some(at) = due else {
            changed.notified().await;
            continue;
        };
        tokio::select! {
            () = tokio::time::sleep_until(at) => {}
            () = changed.notified() => continue,
        }
        let Some(inner) = provider.upgrade() else {
            return;
        };
        let at = inner.at("background renewal");
        if inner.refresh(None, &at).await.is_err() {
            // Vault is unreachable or refuses the login: try again shortly; callers still use
            // the current token until it expires.
            let pause = inner.retry.max_delay;
            drop(inner);
            tokio::time::sleep(pause).await;
        }
    }
}

/// The class and description of a vaultrs error. Descriptions come from status codes, Vault's
/// `errors` list and transport errors; never from a response body, which rustify keeps in some
/// variants and which may hold secret data. A `400` at login is a refused credential.
fn classify(error: &ClientError, login: bool) -> Failure {
    match error {
        ClientError::APIError { code, errors } => {
            let fault = match code {
                404 => Fault::NotFound,
                401 | 403 => Fault::Denied,
                400 if login => Fault::Denied,
                429 => Fault::Throttled,
                412 => Fault::Unavailable,
                c if *c >= 500 => Fault::Unavailable,
                _ => Fault::BadRequest,
            };
            let detail = if errors.is_empty() {
                format!("HTTP {code}")
            } else {
                format!("HTTP {code}: {}", errors.join("; ").replace('\n', " "))
            };
            Failure::new(fault, detail)
        }
        ClientError::RestClientError { source } => match source {
            RestError::RequestError { .. } => {
                let timeout = crate::find_source::<reqwest::Error>(source)
                    .is_some_and(reqwest::Error::is_timeout);
                let fault = if timeout {
                    Fault::Timeout
                } else {
                    Fault::Unavailable
                };
                Failure::new(fault, crate::chain(source))
            }
            RestError::ServerResponseError { code, .. } => {
                let fault = match *code {
                    404 => Fault::NotFound,
                    401 | 403 => Fault::Denied,
                    429 => Fault::Throttled,
                    c if c >= 500 => Fault::Unavailable,
                    _ => Fault::BadRequest,
                };
                Failure::new(fault, format!("HTTP {code}"))
            }
            _ => Failure::new(Fault::Unavailable, "unparseable response"),
        },
        ClientError::JsonParseError { .. } => {
            Failure::new(Fault::BadRequest, "unexpected response shape")
        }
        other => Failure::new(Fault::BadRequest, other.to_string()),
    }
}
