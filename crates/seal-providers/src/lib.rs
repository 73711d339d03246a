//! Where secrets come from: AWS Secrets Manager and Vault (or OpenBao) behind one trait, shared by
//! the controller (ExternalSecret sync), the CLI (`seal get/env/render/exec`) and the sidecar.
//!
//! A provider answers four questions: the value of one key ([`SecretProvider::get`], with an
//! optional version or stage), the values of several keys at the lowest cost
//! ([`SecretProvider::get_many`]: AWS batches 20 secrets per BatchGetSecretValue, and one secret
//! wanted for several properties is fetched once), which secrets match a query
//! ([`SecretProvider::find`]: name regexp, tags, path prefix), and what all that cost
//! ([`CallCounter`], one counter per provider, call and status, from fixed sets so the
//! controller can export it as `provider_api_calls_total{provider,call,status}`).
//!
//! **Why an enum-dispatched trait.** The set of providers is closed (the SecretStore CRD names
//! exactly `aws` and `vault`), so [`Provider`] is an enum that implements [`SecretProvider`] by
//! matching. Callers get `Send` futures without `async-trait` boxing or a `dyn` vtable, the trait
//! stays the one contract both backends implement (tests and future backends can use it through
//! generics), and adding a backend is a compile error everywhere it must be handled.
//!
//! **Robustness.** Every remote call has a timeout and transient failures (connect errors,
//! timeouts, 5xx, throttling) are retried with exponential backoff and full jitter
//! ([`RetryPolicy`]); permanent ones are not. Errors are typed ([`Error::NotFound`],
//! [`Error::Denied`], [`Error::Unavailable`], ...) because callers act on them differently: a
//! deleted key follows a deletion policy, an outage keeps the last good value. Errors name the
//! provider, the store and the key, never a value.
//!
//! **Secret hygiene.** Values live in [`SecretValue`] (zeroized on drop, redacted `Debug`), Vault
//! tokens and AWS keys in `secrecy` types. Copies this crate cannot reach remain: the HTTP
//! response buffers inside reqwest/hyper and the token strings inside vaultrs' client (this crate
//! wipes the latter when a session ends).
//!
//! **TLS.** Both backends use rustls on aws-lc-rs (one TLS stack with kube's). When the process
//! has not installed a rustls `CryptoProvider` yet, building a provider installs aws-lc-rs's.
//!
//! **Runtime.** Providers run on Tokio (the AWS SDK's `rt-tokio`; the Vault provider spawns its
//! token-renewal task with `tokio::spawn` at the first login).

mod aws;
pub mod endpoint;
pub mod environment;
mod error;
mod metrics;
mod property;
pub mod reference;
mod retry;
mod value;
mod vault;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use secrecy::SecretString;

/// The default log filter of the programs that fetch through these providers: `info`, without the
/// Vault client libraries' own ERROR lines (one per refused request, a 404 included), which a
/// provider turns into its [`Error`] and its caller reports once, in its own words.
pub const DEFAULT_LOG_FILTER: &str = "info,rustify=off,vaultrs=off";

pub use aws::{AwsAuth, AwsConfig, AwsGetError, AwsProvider, AwsSecret, AwsServiceError};
pub use error::{Error, Location};
pub use metrics::{Call, CallCount, CallCounter, CallStatus};
pub use property::{PropertyError, pick_property};
pub use retry::RetryPolicy;
pub use value::SecretValue;
pub use vault::{KvVersion, VaultAuth, VaultConfig, VaultProvider};

/// Which backend a provider talks to; also the `provider` metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ProviderKind {
    /// AWS Secrets Manager.
    Aws,
    /// HashiCorp Vault or OpenBao (KV v1 and v2).
    Vault,
}

impl ProviderKind {
    /// The metric label: `aws` or `vault`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Aws => "aws",
            ProviderKind::Vault => "vault",
        }
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One item wanted from a provider, as ESO's `remoteRef`: a key, an optional version (AWS: a
/// stage such as `AWSPREVIOUS`, or `uuid/<VersionId>`; Vault KV v2: a version number), and an
/// optional property picked out of the value ([`pick_property`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SecretRef {
    /// The secret's name or ARN (AWS) or path (Vault).
    pub key: String,
    /// The version; `None` means the current one.
    pub version: Option<String>,
    /// A JSON path into the value; `None` means the whole value.
    pub property: Option<String>,
}

impl SecretRef {
    /// The whole current value of `key`.
    pub fn new(key: impl Into<String>) -> Self {
        SecretRef {
            key: key.into(),
            version: None,
            property: None,
        }
    }

    /// The same reference at `version`.
    #[must_use]
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// The same reference narrowed to `property`.
    #[must_use]
    pub fn property(mut self, property: impl Into<String>) -> Self {
        self.property = Some(property.into());
        self
    }
}

/// Which secrets [`SecretProvider::find`] returns: those under `path` whose name matches
/// `name_regexp` and which carry every tag in `tags` (AWS tags; Vault KV v2 custom metadata).
/// Every criterion left empty matches everything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FindQuery {
    /// A name prefix (AWS) or the folder to list recursively (Vault).
    pub path: Option<String>,
    /// A regular expression the name (AWS) or the path below the mount (Vault) must match.
    pub name_regexp: Option<String>,
    /// Tags that must all be present with exactly these values.
    pub tags: BTreeMap<String, String>,
    /// The most secrets a find may return; more is an error ([`Error::TooMany`]) rather than a
    /// silent truncation. Default 500.
    pub limit: usize,
}

impl Default for FindQuery {
    fn default() -> Self {
        FindQuery {
            path: None,
            name_regexp: None,
            tags: BTreeMap::new(),
            limit: 500,
        }
    }
}

/// A secret source. Implemented by [`AwsProvider`] and [`VaultProvider`], and by [`Provider`],
/// which dispatches to either.
///
/// Guarantees shared by every implementation: each remote call is bounded by the
/// [`RetryPolicy`]'s timeout and retried only when transient; every attempt is counted in
/// [`SecretProvider::calls`]; no error carries a secret value.
pub trait SecretProvider: Send + Sync {
    /// Which backend this is.
    fn kind(&self) -> ProviderKind;

    /// The raw value of `key` at `version` (`None`: the current one).
    ///
    /// Errors: [`Error::NotFound`] when the key or version does not exist, [`Error::Denied`] when
    /// the credentials may not read it, [`Error::Unavailable`] when the backend could not be
    /// reached after the retries, [`Error::InvalidRequest`] for a malformed key or version.
    fn get(
        &self,
        key: &str,
        version: Option<&str>,
    ) -> impl Future<Output = Result<SecretValue, Error>> + Send;

    /// Every reference resolved, in the order given, each with its own result (one missing key
    /// does not fail the others). Each distinct (key, version) is fetched once however many
    /// properties are wanted from it; AWS fetches current versions 20 per BatchGetSecretValue.
    fn get_many(
        &self,
        refs: &[SecretRef],
    ) -> impl Future<Output = Vec<Result<SecretValue, Error>>> + Send;

    /// The secrets matching `query`, with their current values, sorted by name.
    ///
    /// Errors: [`Error::InvalidConfig`] for a bad regexp or a query the backend cannot answer,
    /// [`Error::TooMany`] past `query.limit`, and those of [`SecretProvider::get`].
    fn find(
        &self,
        query: &FindQuery,
    ) -> impl Future<Output = Result<Vec<(String, SecretValue)>, Error>> + Send;

    /// The call counter this provider records every remote call in.
    fn calls(&self) -> &Arc<CallCounter>;
}

/// Either backend, chosen at run time from a SecretStore or a `ref+` URL.
pub enum Provider {
    /// AWS Secrets Manager.
    Aws(AwsProvider),
    /// Vault or OpenBao.
    Vault(VaultProvider),
}

impl SecretProvider for Provider {
    fn kind(&self) -> ProviderKind {
        match self {
            Provider::Aws(p) => p.kind(),
            Provider::Vault(p) => p.kind(),
        }
    }

    async fn get(&self, key: &str, version: Option<&str>) -> Result<SecretValue, Error> {
        match self {
            Provider::Aws(p) => p.get(key, version).await,
            Provider::Vault(p) => p.get(key, version).await,
        }
    }

    async fn get_many(&self, refs: &[SecretRef]) -> Vec<Result<SecretValue, Error>> {
        match self {
            Provider::Aws(p) => p.get_many(refs).await,
            Provider::Vault(p) => p.get_many(refs).await,
        }
    }

    async fn find(&self, query: &FindQuery) -> Result<Vec<(String, SecretValue)>, Error> {
        match self {
            Provider::Aws(p) => p.find(query).await,
            Provider::Vault(p) => p.find(query).await,
        }
    }

    fn calls(&self) -> &Arc<CallCounter> {
        match self {
            Provider::Aws(p) => p.calls(),
            Provider::Vault(p) => p.calls(),
        }
    }
}

/// Where a credential such as a ServiceAccount token or an OIDC token comes from. A file is read
/// again at every login, so a projected token that the kubelet rotates is always current; a
/// [`FetchToken`] is asked again at every login, so a short-lived token requested for the login
/// (the Kubernetes TokenRequest API) is never presented after it expired.
#[derive(Clone, Debug)]
pub enum TokenSource {
    /// The token itself.
    Value(SecretString),
    /// A file holding the token (surrounding whitespace is ignored).
    File(std::path::PathBuf),
    /// A fresh token from the caller at every login.
    Fetched(Arc<dyn FetchToken>),
}

/// Hands out a fresh token when a provider is about to log in ([`TokenSource::Fetched`]).
pub trait FetchToken: Send + Sync + std::fmt::Debug {
    /// A fresh token.
    ///
    /// Errors: a message saying what could not be obtained (which ServiceAccount, why); it is put
    /// in the provider's error as is, so it must never hold a token.
    fn fetch(
        &self,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<SecretString, String>> + Send + '_>>;
}

impl TokenSource {
    /// The token, read from its file when it has one.
    async fn read(&self) -> Result<SecretString, String> {
        match self {
            TokenSource::Value(token) => Ok(token.clone()),
            TokenSource::File(path) => {
                let mut text = tokio::fs::read_to_string(path)
                    .await
                    .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
                let token = SecretString::from(text.trim());
                zeroize::Zeroize::zeroize(&mut text);
                Ok(token)
            }
            TokenSource::Fetched(source) => source.fetch().await,
        }
    }
}

/// Installs aws-lc-rs as the process's rustls provider unless one is installed already: reqwest
/// (Vault) is built without a provider of its own and would panic at the first TLS handshake.
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another thread installing one is fine: one is installed either way.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
}

/// Resolves `refs` from values already fetched per (key, version): picks each reference's
/// property, and hands every reference of a failed fetch a copy of its error. The shared tail of
/// both backends' `get_many`.
fn resolve_refs(
    kind: ProviderKind,
    store: &str,
    refs: &[SecretRef],
    fetched: &std::collections::HashMap<(String, Option<String>), Result<SecretValue, Error>>,
) -> Vec<Result<SecretValue, Error>> {
    refs.iter()
        .map(|r| {
            let value = fetched
                .get(&(r.key.clone(), r.version.clone()))
                .expect("invariant: every distinct (key, version) was fetched")
                .as_ref()
                .map_err(Clone::clone)?;
            match &r.property {
                None => Ok(value.clone()),
                Some(property) => value.property(property).map_err(|e| Error::InvalidValue {
                    at: Location::new(kind, store, &r.key),
                    detail: format!("property \"{property}\": {e}"),
                }),
            }
        })
        .collect()
}

/// Each distinct (key, version) of `refs`, in first-seen order.
fn distinct_keys(refs: &[SecretRef]) -> Vec<(String, Option<String>)> {
    let mut seen = std::collections::HashSet::new();
    refs.iter()
        .map(|r| (r.key.clone(), r.version.clone()))
        .filter(|k| seen.insert(k.clone()))
        .collect()
}

/// `error`'s own `Display` and those of its sources, joined by `: ` (at most five, repeats
/// dropped). Only for errors whose messages describe the failure, never a response body.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(next) = source {
        if parts.len() == 5 {
            break;
        }
        parts.push(next.to_string());
        source = next.source();
    }
    parts.dedup();
    parts.join(": ")
}

/// The first error of type `T` in `error`'s source chain, `error` included.
fn find_source<'a, T: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut at: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = at {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        at = e.source();
    }
    None
}
