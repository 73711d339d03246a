//! AWS Secrets Manager, through `aws-sdk-secretsmanager` with the SDK's own retries turned off:
//! [`crate::retry`] times, retries and counts every attempt, so the call counter is exact.
//!
//! Versions follow ESO: none (or `AWSCURRENT`) is the current version, `uuid/<id>` is a
//! VersionId, anything else a staging label such as `AWSPREVIOUS`. Credentials come from the
//! SDK's default chain (environment, IRSA, Pod Identity, ...), from static keys the controller
//! read from a Kubernetes Secret, or from a web identity token (IRSA by hand: a ServiceAccount
//! token and a role); any of them can then assume a role. STS calls are made here too (see
//! [`sts`]), so they are timed, classified and counted like the rest; the SDK's identity cache
//! makes them only when credentials are about to expire.
//!
//! Cost: [`SecretProvider::get_many`] and [`SecretProvider::find`] read current versions 20 per
//! BatchGetSecretValue; BatchGetSecretValue has no version parameter, so other versions are read
//! one GetSecretValue each.

mod sts;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::http::HttpResponse;
use aws_sdk_secretsmanager::config::{Credentials, Region};
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::primitives::Blob;
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
use futures_util::StreamExt as _;
use secrecy::{ExposeSecret, SecretString};

use crate::error::{Error, Location};
use crate::metrics::{Call, CallCounter};
use crate::retry::{self, Failure, Fault, RetryPolicy};
use crate::value::SecretValue;
use crate::{
    FindQuery, ProviderKind, SecretProvider, SecretRef, TokenSource, distinct_keys, resolve_refs,
};

/// BatchGetSecretValue takes at most this many secret ids per call.
const BATCH_SIZE: usize = 20;

/// How a Secrets Manager client authenticates.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum AwsAuth {
    /// The SDK's default chain: environment, web identity from `AWS_WEB_IDENTITY_TOKEN_FILE`
    /// (IRSA), container credentials (Pod Identity), profiles, instance metadata.
    DefaultChain,
    /// Static keys, e.g. read by the controller from a Kubernetes Secret.
    Static {
        /// The access key id.
        access_key_id: String,
        /// The secret access key.
        secret_access_key: SecretString,
        /// The session token, for temporary credentials.
        session_token: Option<SecretString>,
    },
    /// STS AssumeRoleWithWebIdentity with a token (a ServiceAccount token for IRSA).
    WebIdentity {
        /// The role to assume.
        role_arn: String,
        /// The OIDC token, or the file the kubelet keeps it in.
        token: TokenSource,
    },
}

/// Where and how an [`AwsProvider`] talks to Secrets Manager.
#[derive(Clone, Debug)]
pub struct AwsConfig {
    region: String,
    endpoint: Option<String>,
    auth: AwsAuth,
    role: Option<String>,
    session_name: String,
    retry: RetryPolicy,
    calls: Option<Arc<CallCounter>>,
}

impl AwsConfig {
    /// Secrets Manager in `region`, with the default credential chain and retry policy.
    pub fn new(region: impl Into<String>) -> Self {
        AwsConfig {
            region: region.into(),
            endpoint: None,
            auth: AwsAuth::DefaultChain,
            role: None,
            session_name: "seal".into(),
            retry: RetryPolicy::default(),
            calls: None,
        }
    }

    /// Sends every call (Secrets Manager and STS) to `url` instead of AWS's endpoints.
    #[must_use]
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// Authenticates with `auth`.
    #[must_use]
    pub fn auth(mut self, auth: AwsAuth) -> Self {
        self.auth = auth;
        self
    }

    /// Assumes `role_arn` (STS AssumeRole) with the credentials of [`AwsConfig::auth`].
    #[must_use]
    pub fn assume_role(mut self, role_arn: impl Into<String>) -> Self {
        self.role = Some(role_arn.into());
        self
    }

    /// The STS session name for assumed roles (default `seal`), seen in CloudTrail.
    #[must_use]
    pub fn session_name(mut self, name: impl Into<String>) -> Self {
        self.session_name = name.into();
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

    async fn sdk_config(
        &self,
        credentials: Option<SharedCredentialsProvider>,
        signed: bool,
    ) -> aws_config::SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .retry_config(RetryConfig::disabled());
        if let Some(endpoint) = &self.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        match credentials {
            Some(credentials) => loader = loader.credentials_provider(credentials),
            None if !signed => loader = loader.no_credentials(),
            None => {}
        }
        loader.load().await
    }
}

/// A secret version as GetSecretValue describes it: its value and metadata, each field as the
/// service gave it (absent stays absent).
pub struct AwsSecret {
    /// The secret's ARN.
    pub arn: Option<String>,
    /// The secret's name.
    pub name: Option<String>,
    /// The version's id.
    pub version_id: Option<String>,
    /// The version's stages (`AWSCURRENT`, ...).
    pub version_stages: Option<Vec<String>>,
    /// When the version was created, in seconds since the epoch.
    pub created_date: Option<f64>,
    /// The value (SecretString or SecretBinary).
    pub value: SecretValue,
}

/// How Secrets Manager itself answered a failed call: its HTTP status, error code and message
/// (which name the secret or version, never a value), for a caller that relays the answer as
/// the AWS Secrets Manager Agent does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsServiceError {
    /// The HTTP status of the service's answer.
    pub status: u16,
    /// The error code (`ResourceNotFoundException`, ...), when the answer had one.
    pub code: Option<String>,
    /// The error message, when the answer had one.
    pub message: Option<String>,
}

/// A failed [`AwsProvider::get_secret`]: the error, and the service's own answer when the last
/// attempt got one (none for a timeout, an unreachable endpoint or missing credentials).
#[derive(Clone, Debug)]
pub struct AwsGetError {
    /// The error, classified as every provider error is.
    pub error: Error,
    /// The service's answer to the last attempt (boxed: it is rare, and the error is moved
    /// around often).
    pub service: Option<Box<AwsServiceError>>,
}

/// AWS Secrets Manager as a [`SecretProvider`].
pub struct AwsProvider {
    client: Client,
    store: String,
    retry: RetryPolicy,
    calls: Arc<CallCounter>,
}

impl AwsProvider {
    /// A client for `config`. Makes no call: credentials are fetched at the first request.
    ///
    /// Errors: [`Error::InvalidConfig`] for an empty region or an endpoint that is not a URL.
    pub async fn new(config: AwsConfig) -> Result<Self, Error> {
        crate::ensure_crypto_provider();
        let store = match &config.endpoint {
            Some(endpoint) => format!("{} at {endpoint}", config.region),
            None => config.region.clone(),
        };
        let invalid = |detail: &str| Error::InvalidConfig {
            provider: ProviderKind::Aws,
            store: store.clone(),
            detail: detail.into(),
        };
        if config.region.trim().is_empty() {
            return Err(invalid("no region"));
        }
        if let Some(endpoint) = &config.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(invalid("the endpoint is not an http(s) URL"));
        }
        let calls = config.calls.clone().unwrap_or_default();
        // One attempt per STS call: the Secrets Manager call that needed the credentials is
        // retried as a whole, which retries STS too.
        let sts_retry = RetryPolicy {
            max_attempts: 1,
            ..config.retry.clone()
        };
        let base = match &config.auth {
            AwsAuth::DefaultChain => None,
            AwsAuth::Static {
                access_key_id,
                secret_access_key,
                session_token,
            } => Some(SharedCredentialsProvider::new(Credentials::new(
                access_key_id,
                secret_access_key.expose_secret(),
                session_token.as_ref().map(|t| t.expose_secret().to_owned()),
                None,
                "seal-static",
            ))),
            AwsAuth::WebIdentity { role_arn, token } => {
                let unsigned = config.sdk_config(None, false).await;
                Some(SharedCredentialsProvider::new(
                    sts::StsCredentials::web_identity(
                        aws_sdk_sts::Client::new(&unsigned),
                        role_arn.clone(),
                        token.clone(),
                        config.session_name.clone(),
                        sts_retry.clone(),
                        calls.clone(),
                    ),
                ))
            }
        };
        let credentials = match &config.role {
            None => base,
            Some(role) => {
                let signer = config.sdk_config(base, true).await;
                Some(SharedCredentialsProvider::new(
                    sts::StsCredentials::assume_role(
                        aws_sdk_sts::Client::new(&signer),
                        role.clone(),
                        config.session_name.clone(),
                        sts_retry,
                        calls.clone(),
                    ),
                ))
            }
        };
        let sdk = config.sdk_config(credentials, true).await;
        Ok(AwsProvider {
            client: Client::new(&sdk),
            store,
            retry: config.retry,
            calls,
        })
    }

    fn at(&self, key: &str) -> Location {
        Location::new(ProviderKind::Aws, &self.store, key)
    }

    /// One GetSecretValue with its metadata, for callers that must answer in the GetSecretValue
    /// shape (seal-agent's AWS Secrets Manager Agent-compatible endpoint). `stage` and
    /// `version_id` are passed as given (both `None`: AWSCURRENT). Retried and counted as
    /// [`SecretProvider::get`] is; a failure carries the service's answer to the last attempt.
    ///
    /// Errors: those of [`SecretProvider::get`].
    pub async fn get_secret(
        &self,
        key: &str,
        stage: Option<&str>,
        version_id: Option<&str>,
    ) -> Result<AwsSecret, AwsGetError> {
        // The service's answer to the latest attempt, if it got one.
        let last = Mutex::new(None);
        let output = retry::call(&self.retry, &self.calls, Call::GetSecretValue, || {
            let request = self
                .client
                .get_secret_value()
                .secret_id(key)
                .set_version_stage(stage.map(str::to_owned))
                .set_version_id(version_id.map(str::to_owned));
            let last = &last;
            *last.lock().unwrap_or_else(PoisonError::into_inner) = None;
            async move {
                request.send().await.map_err(|e| {
                    *last.lock().unwrap_or_else(PoisonError::into_inner) = service_error(&e);
                    classify(&e)
                })
            }
        })
        .await
        .map_err(|failed| AwsGetError {
            error: failed.into_error(self.at(key)),
            service: last.lock().unwrap_or_else(PoisonError::into_inner).take(),
        })?;
        let value =
            value_of(output.secret_string, output.secret_binary).ok_or_else(|| AwsGetError {
                error: no_value(self.at(key)),
                service: None,
            })?;
        Ok(AwsSecret {
            arn: output.arn,
            name: output.name,
            version_id: output.version_id,
            version_stages: output.version_stages,
            created_date: output.created_date.map(|d| d.as_secs_f64()),
            value,
        })
    }

    /// The current values of `ids`, 20 per BatchGetSecretValue; ids the batch answers neither
    /// with a value nor an error (a partial ARN, say) are read one by one.
    async fn batch_current(&self, ids: &[String]) -> HashMap<String, Result<SecretValue, Error>> {
        let mut found = HashMap::new();
        let mut leftovers = Vec::new();
        for chunk in ids.chunks(BATCH_SIZE) {
            let answer = retry::call(&self.retry, &self.calls, Call::BatchGetSecretValue, || {
                let request = self
                    .client
                    .batch_get_secret_value()
                    .set_secret_id_list(Some(chunk.to_vec()));
                async move { request.send().await.map_err(|e| classify(&e)) }
            })
            .await;
            let output = match answer {
                Ok(output) => output,
                Err(failed) => {
                    for id in chunk {
                        found.insert(id.clone(), Err(failed.clone().into_error(self.at(id))));
                    }
                    continue;
                }
            };
            for entry in output.secret_values.unwrap_or_default() {
                let Some(id) = chunk.iter().find(|id| {
                    entry.name.as_deref() == Some(id.as_str())
                        || entry.arn.as_deref() == Some(id.as_str())
                }) else {
                    continue;
                };
                let value = value_of(entry.secret_string, entry.secret_binary)
                    .ok_or_else(|| no_value(self.at(id)));
                found.insert(id.clone(), value);
            }
            for error in output.errors.unwrap_or_default() {
                let Some(id) = error.secret_id else { continue };
                let fault =
                    classify_code(error.error_code.as_deref(), error.message.as_deref(), 400);
                let detail = format!(
                    "{}: {}",
                    error.error_code.as_deref().unwrap_or("error"),
                    error.message.as_deref().unwrap_or("no message")
                );
                let at = self.at(&id);
                found.insert(id, Err(Error::from_fault(at, fault, 1, detail)));
            }
            leftovers.extend(chunk.iter().filter(|id| !found.contains_key(*id)).cloned());
        }
        for id in leftovers {
            let value = self.get(&id, None).await;
            found.insert(id, value);
        }
        found
    }
}

impl SecretProvider for AwsProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Aws
    }

    async fn get(&self, key: &str, version: Option<&str>) -> Result<SecretValue, Error> {
        let (stage, version_id) = version_selector(version);
        let output = retry::call(&self.retry, &self.calls, Call::GetSecretValue, || {
            let request = self
                .client
                .get_secret_value()
                .secret_id(key)
                .set_version_stage(stage.clone())
                .set_version_id(version_id.clone());
            async move { request.send().await.map_err(|e| classify(&e)) }
        })
        .await
        .map_err(|failed| failed.into_error(self.at(key)))?;
        value_of(output.secret_string, output.secret_binary).ok_or_else(|| no_value(self.at(key)))
    }

    async fn get_many(&self, refs: &[SecretRef]) -> Vec<Result<SecretValue, Error>> {
        let keys = distinct_keys(refs);
        let (current, versioned): (Vec<_>, Vec<_>) = keys
            .into_iter()
            .partition(|(_, version)| version_selector(version.as_deref()) == (None, None));
        let mut current_ids: Vec<String> = current.iter().map(|(k, _)| k.clone()).collect();
        current_ids.dedup();
        let batch = self.batch_current(&current_ids).await;
        let mut fetched: HashMap<_, _> = current
            .into_iter()
            .map(|(key, version)| {
                let value = batch[&key].clone();
                ((key, version), value)
            })
            .collect();
        let singles: Vec<_> = futures_util::stream::iter(versioned)
            .map(|(key, version)| async move {
                let value = self.get(&key, version.as_deref()).await;
                ((key, version), value)
            })
            .buffer_unordered(8)
            .collect()
            .await;
        fetched.extend(singles);
        resolve_refs(ProviderKind::Aws, &self.store, refs, &fetched)
    }

    async fn find(&self, query: &FindQuery) -> Result<Vec<(String, SecretValue)>, Error> {
        let at = self.at(&describe_find(query));
        let name_regexp = query
            .name_regexp
            .as_deref()
            .map(regex::Regex::new)
            .transpose()
            .map_err(|e| Error::InvalidConfig {
                provider: ProviderKind::Aws,
                store: self.store.clone(),
                detail: format!("find: invalid name regexp: {e}"),
            })?;
        let mut filters = Vec::new();
        if let Some(path) = &query.path {
            filters.push(filter(FilterNameStringType::Name, path));
        }
        for (key, value) in &query.tags {
            filters.push(filter(FilterNameStringType::TagKey, key));
            filters.push(filter(FilterNameStringType::TagValue, value));
        }
        let mut names = Vec::new();
        let mut next_token = None;
        loop {
            let page = retry::call(&self.retry, &self.calls, Call::ListSecrets, || {
                let request = self
                    .client
                    .list_secrets()
                    .set_filters((!filters.is_empty()).then(|| filters.clone()))
                    .max_results(100)
                    .set_next_token(next_token.clone());
                async move { request.send().await.map_err(|e| classify(&e)) }
            })
            .await
            .map_err(|failed| failed.into_error(at.clone()))?;
            for secret in page.secret_list.unwrap_or_default() {
                let Some(name) = secret.name else { continue };
                // The server's filters are broader (prefix match ignoring case, tag key and
                // value matched separately): check exactly here.
                let tags: HashMap<_, _> = secret
                    .tags
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|t| Some((t.key?, t.value.unwrap_or_default())))
                    .collect();
                let wanted = query
                    .path
                    .as_ref()
                    .is_none_or(|p| name.starts_with(p.as_str()))
                    && name_regexp.as_ref().is_none_or(|re| re.is_match(&name))
                    && query.tags.iter().all(|(k, v)| tags.get(k) == Some(v));
                if wanted {
                    names.push(name);
                    if names.len() > query.limit {
                        return Err(Error::TooMany {
                            at,
                            limit: query.limit,
                        });
                    }
                }
            }
            next_token = page.next_token;
            if next_token.is_none() {
                break;
            }
        }
        names.sort();
        names.dedup();
        let mut values = self.batch_current(&names).await;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            match values.remove(&name) {
                Some(Ok(value)) => out.push((name, value)),
                // Deleted between the listing and the read: it is not there any more.
                Some(Err(Error::NotFound { .. })) | None => {}
                Some(Err(e)) => return Err(e),
            }
        }
        Ok(out)
    }

    fn calls(&self) -> &Arc<CallCounter> {
        &self.calls
    }
}

/// ESO's version semantics: `(stage, version id)`. None and `AWSCURRENT` are the default.
fn version_selector(version: Option<&str>) -> (Option<String>, Option<String>) {
    match version.map(str::trim) {
        None | Some("" | "AWSCURRENT") => (None, None),
        Some(v) => match v.strip_prefix("uuid/") {
            Some(id) => (None, Some(id.to_owned())),
            None => (Some(v.to_owned()), None),
        },
    }
}

fn value_of(text: Option<String>, binary: Option<Blob>) -> Option<SecretValue> {
    text.map(SecretValue::from_string)
        .or_else(|| binary.map(|b| SecretValue::from_bytes(b.into_inner())))
}

fn no_value(at: Location) -> Error {
    Error::InvalidValue {
        at,
        detail: "the version holds neither SecretString nor SecretBinary".into(),
    }
}

fn filter(key: FilterNameStringType, value: &str) -> Filter {
    Filter::builder().key(key).values(value).build()
}

fn describe_find(query: &FindQuery) -> String {
    let mut parts = Vec::new();
    if let Some(path) = &query.path {
        parts.push(format!("path \"{path}\""));
    }
    if let Some(re) = &query.name_regexp {
        parts.push(format!("name ~ \"{re}\""));
    }
    if !query.tags.is_empty() {
        let tags: Vec<_> = query.tags.keys().map(String::as_str).collect();
        parts.push(format!("tags {}", tags.join(",")));
    }
    if parts.is_empty() {
        "find (everything)".into()
    } else {
        format!("find {}", parts.join(" "))
    }
}

/// The class and description of a failed SDK call. The description is built from error codes,
/// messages and the error chain's `Display`s, never from `Debug` (which could print a raw
/// response) and never from a response body.
pub(crate) fn classify<E>(error: &SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if let Some(sts) = crate::find_source::<sts::StsFailure>(error) {
        return Failure::new(sts.fault, sts.to_string());
    }
    if let Some(credentials) = crate::find_source::<CredentialsError>(error) {
        let fault = match credentials {
            CredentialsError::ProviderTimedOut(_) => Fault::Timeout,
            CredentialsError::CredentialsNotLoaded(_)
            | CredentialsError::InvalidConfiguration(_) => Fault::Denied,
            _ => Fault::Unavailable,
        };
        return Failure::new(
            fault,
            format!("no credentials: {}", crate::chain(credentials)),
        );
    }
    match error {
        SdkError::ServiceError(service) => {
            let code = service.err().code();
            let fault = classify_code(
                code,
                service.err().message(),
                service.raw().status().as_u16(),
            );
            Failure::new(
                fault,
                format!(
                    "{}: {}",
                    code.unwrap_or("error"),
                    service.err().message().unwrap_or("no message")
                ),
            )
        }
        SdkError::TimeoutError(_) => Failure::new(Fault::Timeout, "timed out"),
        SdkError::DispatchFailure(failure) if failure.is_timeout() => {
            Failure::new(Fault::Timeout, crate::chain(error))
        }
        SdkError::DispatchFailure(failure) if failure.is_user() => {
            Failure::new(Fault::BadRequest, crate::chain(error))
        }
        SdkError::ConstructionFailure(_) => Failure::new(Fault::BadRequest, crate::chain(error)),
        // A response that could not be parsed: its chain could quote the body, so say no more.
        SdkError::ResponseError(_) => Failure::new(Fault::Unavailable, "unparseable response"),
        _ => Failure::new(Fault::Unavailable, crate::chain(error)),
    }
}

/// The service's own answer in a failed SDK call, if the call got one.
fn service_error<E>(error: &SdkError<E, HttpResponse>) -> Option<Box<AwsServiceError>>
where
    E: ProvideErrorMetadata,
{
    match error {
        SdkError::ServiceError(service) => Some(Box::new(AwsServiceError {
            status: service.raw().status().as_u16(),
            code: service.err().code().map(str::to_owned),
            message: service.err().message().map(str::to_owned),
        })),
        _ => None,
    }
}

/// The class of an AWS error code (also used for BatchGetSecretValue's per-secret errors, which
/// have no status). A secret scheduled for deletion answers InvalidRequestException; like ESO,
/// this counts it as not found, so the caller's deletion policy applies.
pub(crate) fn classify_code(code: Option<&str>, message: Option<&str>, status: u16) -> Fault {
    let marked_deleted =
        message.is_some_and(|m| m.contains("marked for deletion") || m.contains("marked deleted"));
    match code {
        Some("ResourceNotFoundException") => Fault::NotFound,
        Some("InvalidRequestException") if marked_deleted => Fault::NotFound,
        Some(
            "AccessDeniedException"
            | "AccessDenied"
            | "UnrecognizedClientException"
            | "InvalidClientTokenId"
            | "InvalidSignatureException"
            | "SignatureDoesNotMatch"
            | "IncompleteSignature"
            | "MissingAuthenticationToken"
            | "ExpiredTokenException"
            | "ExpiredToken"
            | "InvalidIdentityToken"
            | "IDPRejectedClaim"
            | "DecryptionFailure",
        ) => Fault::Denied,
        Some(
            "ThrottlingException"
            | "Throttling"
            | "TooManyRequestsException"
            | "RequestLimitExceeded"
            | "LimitExceededException",
        ) => Fault::Throttled,
        Some(
            "InternalServiceError"
            | "InternalServiceErrorException"
            | "InternalFailure"
            | "ServiceUnavailable"
            | "IDPCommunicationError",
        ) => Fault::Unavailable,
        _ if status == 429 => Fault::Throttled,
        _ if status >= 500 => Fault::Unavailable,
        _ if status == 401 || status == 403 => Fault::Denied,
        _ if status == 404 => Fault::NotFound,
        _ => Fault::BadRequest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_follow_eso() {
        assert_eq!(version_selector(None), (None, None));
        assert_eq!(version_selector(Some("AWSCURRENT")), (None, None));
        assert_eq!(
            version_selector(Some("AWSPREVIOUS")),
            (Some("AWSPREVIOUS".into()), None)
        );
        assert_eq!(
            version_selector(Some("uuid/0123-abcd")),
            (None, Some("0123-abcd".into()))
        );
    }

    #[test]
    fn error_codes_map_to_what_callers_do() {
        let code = |code, status| classify_code(Some(code), None, status);
        assert_eq!(code("ResourceNotFoundException", 400), Fault::NotFound);
        assert_eq!(code("AccessDeniedException", 400), Fault::Denied);
        assert_eq!(code("ExpiredTokenException", 400), Fault::Denied);
        assert_eq!(code("ThrottlingException", 400), Fault::Throttled);
        assert_eq!(code("InternalServiceError", 500), Fault::Unavailable);
        assert_eq!(code("InvalidRequestException", 400), Fault::BadRequest);
        assert_eq!(code("InvalidParameterException", 400), Fault::BadRequest);
        assert_eq!(classify_code(None, None, 503), Fault::Unavailable);
        assert_eq!(classify_code(None, None, 429), Fault::Throttled);
        assert_eq!(classify_code(None, None, 403), Fault::Denied);
    }

    #[test]
    fn a_secret_marked_for_deletion_is_not_found() {
        // AWS's wording, then moto's.
        for message in [
            "You can't perform this operation on the secret because it was marked for deletion.",
            "You tried to perform the operation on a secret that's currently marked deleted.",
        ] {
            assert_eq!(
                classify_code(Some("InvalidRequestException"), Some(message), 400),
                Fault::NotFound
            );
        }
    }
}
