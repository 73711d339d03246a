//! STS credentials made here rather than by aws-config's providers: AssumeRoleWithWebIdentity
//! takes a token string as well as a file (aws-config reads only a file), and both calls go
//! through [`crate::retry`], so they are timed, classified (a refused token is `Denied`, an STS
//! outage `Unavailable`) and counted like every other call. The SDK's identity cache in front of
//! these providers calls them only when the credentials are missing or about to expire.

use std::sync::Arc;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{self, ProvideCredentials, future};
use secrecy::ExposeSecret;

use super::classify;
use crate::TokenSource;
use crate::metrics::{Call, CallCounter};
use crate::retry::{self, Fault, RetryPolicy};

/// Why STS gave no credentials, carried as the source of the SDK's `CredentialsError` so the
/// Secrets Manager call that needed them is classified by it.
#[derive(Debug)]
pub(crate) struct StsFailure {
    call: Call,
    pub fault: Fault,
    detail: String,
}

impl std::fmt::Display for StsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "STS {}: {}", self.call.as_str(), self.detail)
    }
}

impl std::error::Error for StsFailure {}

enum Method {
    AssumeRole,
    WebIdentity(TokenSource),
}

/// A credentials provider calling STS AssumeRole or AssumeRoleWithWebIdentity.
pub(crate) struct StsCredentials {
    client: aws_sdk_sts::Client,
    role_arn: String,
    session_name: String,
    method: Method,
    retry: RetryPolicy,
    calls: Arc<CallCounter>,
}

impl std::fmt::Debug for StsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StsCredentials")
            .field("role_arn", &self.role_arn)
            .finish_non_exhaustive()
    }
}

impl StsCredentials {
    /// AssumeRole, signed by `client`'s credentials.
    pub fn assume_role(
        client: aws_sdk_sts::Client,
        role_arn: String,
        session_name: String,
        retry: RetryPolicy,
        calls: Arc<CallCounter>,
    ) -> Self {
        StsCredentials {
            client,
            role_arn,
            session_name,
            method: Method::AssumeRole,
            retry,
            calls,
        }
    }

    /// AssumeRoleWithWebIdentity with the token from `token` (an unsigned call).
    pub fn web_identity(
        client: aws_sdk_sts::Client,
        role_arn: String,
        token: TokenSource,
        session_name: String,
        retry: RetryPolicy,
        calls: Arc<CallCounter>,
    ) -> Self {
        StsCredentials {
            client,
            role_arn,
            session_name,
            method: Method::WebIdentity(token),
            retry,
            calls,
        }
    }

    async fn fetch(&self) -> provider::Result {
        let (call, credentials) = match &self.method {
            Method::AssumeRole => {
                let call = Call::AssumeRole;
                let output = retry::call(&self.retry, &self.calls, call, || {
                    let request = self
                        .client
                        .assume_role()
                        .role_arn(&self.role_arn)
                        .role_session_name(&self.session_name);
                    async move { request.send().await.map_err(|e| classify(&e)) }
                })
                .await;
                (call, output.map(|o| o.credentials))
            }
            Method::WebIdentity(source) => {
                let call = Call::AssumeRoleWithWebIdentity;
                let token = source.read().await.map_err(|detail| {
                    CredentialsError::invalid_configuration(StsFailure {
                        call,
                        fault: Fault::Denied,
                        detail,
                    })
                })?;
                let output = retry::call(&self.retry, &self.calls, call, || {
                    let request = self
                        .client
                        .assume_role_with_web_identity()
                        .role_arn(&self.role_arn)
                        .role_session_name(&self.session_name)
                        .web_identity_token(token.expose_secret());
                    async move { request.send().await.map_err(|e| classify(&e)) }
                })
                .await;
                (call, output.map(|o| o.credentials))
            }
        };
        let credentials = credentials
            .map_err(|failed| {
                CredentialsError::provider_error(StsFailure {
                    call,
                    fault: failed.fault,
                    detail: failed.detail,
                })
            })?
            .ok_or_else(|| {
                CredentialsError::provider_error(StsFailure {
                    call,
                    fault: Fault::Unavailable,
                    detail: "the answer holds no credentials".into(),
                })
            })?;
        let expiry = SystemTime::try_from(credentials.expiration).ok();
        Ok(Credentials::new(
            credentials.access_key_id,
            credentials.secret_access_key,
            Some(credentials.session_token),
            expiry,
            "seal-sts",
        ))
    }
}

impl ProvideCredentials for StsCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.fetch())
    }
}
