//! The provider's Vault token, from login to replacement. A [`Session`] is one token and its
//! lease. It comes from a login (AppRole, Kubernetes or JWT/OIDC) or, for a token given as is,
//! from a lookup-self that learns its TTL. Every Vault call runs through [`Inner::call`], which
//! hands it the current session.
//!
//! A `403` may mean the token died or the policy refuses; only the first warrants a new login.
//! So a `403` is checked with a lookup-self ([`Inner::token_is_dead`]): if the token is dead,
//! the provider logs in again and retries once; if not, the refusal stands, and a missing
//! policy cannot cause a login storm. When renewal is due, [`super::token_renewal`] decides
//! between renewing and logging in.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;
use vaultrs::api::AuthInfo;
use vaultrs::api::token::responses::LookupTokenResponse;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;
use zeroize::Zeroize;

use super::errors::classify;
use super::token_renewal::Lease;
use super::{Inner, VaultAuth};
use crate::error::{Error, Location};
use crate::metrics::Call;
use crate::retry::{self, Failed, Fault};

/// A vaultrs client holding a token, wiped when the last user lets go of it.
pub(super) struct TokenClient(pub(super) VaultClient);

impl Drop for TokenClient {
    fn drop(&mut self) {
        self.0.settings.token.zeroize();
        self.0.middle.token.zeroize();
    }
}

/// A token and what is known of its lease.
pub(super) struct Session {
    pub(super) client: Arc<TokenClient>,
    /// Increases with every login, so a caller that saw a revoked token can tell whether
    /// someone has replaced it already.
    pub(super) generation: u64,
    pub(super) lease: Lease,
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

impl Inner {
    /// Runs `op` with the session's client under the retry policy. A `403` is checked with a
    /// lookup-self: if the token is dead, the provider logs in again and `op` runs once more.
    pub(super) async fn call<T, F, Fut>(
        self: &Arc<Self>,
        call: Call,
        at: &Location,
        op: F,
    ) -> Result<T, Error>
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

    /// The session stored now, if any.
    pub(super) fn current(&self) -> Option<Arc<Session>> {
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
            Some(s) if !s.lease.due(Instant::now()) => Ok(s.clone()),
            _ => match self.refresh(None, at).await {
                Ok(fresh) => Ok(fresh),
                Err(e) => match current {
                    Some(s) if !s.lease.expired(Instant::now()) => Ok(s),
                    _ => Err(e),
                },
            },
        }
    }

    /// True when Vault says the session's token is no longer valid.
    async fn token_is_dead(&self, session: &Session) -> bool {
        match self.lookup_self(&session.client).await {
            Ok(mut info) => {
                info.id.zeroize();
                false
            }
            Err(failed) => failed.fault == Fault::Denied,
        }
    }

    /// A lookup-self with `client`'s token, under the retry policy.
    async fn lookup_self(&self, client: &Arc<TokenClient>) -> Result<LookupTokenResponse, Failed> {
        retry::call(&self.retry, &self.calls, Call::VaultLookupSelf, || {
            let client = client.clone();
            async move {
                vaultrs::token::lookup_self(&client.0)
                    .await
                    .map_err(|e| classify(&e, true))
            }
        })
        .await
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
        let mut lookup = self
            .lookup_self(&client)
            .await
            .map_err(|f| f.into_error(at))?;
        lookup.id.zeroize();
        Ok(Session {
            client,
            generation,
            lease: Lease::granted(lookup.ttl, lookup.renewable.unwrap_or(false)),
        })
    }

    /// A new session: a login, or for a given token a lookup-self to learn its TTL.
    pub(super) async fn login(&self, at: &Location) -> Result<Session, Error> {
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
        Ok(Session {
            client,
            generation,
            lease: Lease::granted(info.lease_duration, info.renewable),
        })
    }
}
