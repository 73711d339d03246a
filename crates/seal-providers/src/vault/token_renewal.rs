//! Keeping the provider's token alive, so it logs in once and not on every use (Vault Agent's
//! auto-auth behaviour; ESO logs in on every reconcile). When two thirds of the token's TTL have
//! passed it is renewed with renew-self. A fresh login replaces it only when renewal fails, the
//! token is not renewable or has expired, a renewal no longer extends it (its max TTL is near),
//! or a caller found it revoked.
//!
//! Renewal runs in a background task started at the first login and stopped when the provider
//! is dropped, so an idle store keeps its token. As a fallback it also runs on the first use
//! after the renewal point. The decisions are pure functions of times and TTLs ([`Lease`],
//! [`next_step`], [`renewal_extends`]), so they are unit-tested without a Vault.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;
use vaultrs::api::AuthInfo;
use zeroize::Zeroize;

use super::Inner;
use super::errors::classify;
use super::session::Session;
use crate::error::{Error, Location};
use crate::metrics::Call;
use crate::retry::{self, Failed};

/// What is known of a token's lease: all the renewal decisions need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Lease {
    /// When the token was obtained or last renewed.
    pub(super) obtained: Instant,
    /// `None`: the token does not expire.
    pub(super) ttl: Option<Duration>,
    pub(super) renewable: bool,
    /// The TTL the login granted; a renewal granting much less means the max TTL is near.
    pub(super) login_ttl: Option<Duration>,
}

impl Lease {
    /// The lease of a token just obtained with a TTL of `ttl_secs` (0: it does not expire).
    pub(super) fn granted(ttl_secs: u64, renewable: bool) -> Lease {
        let ttl = (ttl_secs > 0).then(|| Duration::from_secs(ttl_secs));
        Lease {
            obtained: Instant::now(),
            ttl,
            renewable,
            login_ttl: ttl,
        }
    }

    /// When renewal is due: two thirds into the TTL; never for a token that does not expire.
    pub(super) fn renew_at(&self) -> Option<Instant> {
        self.ttl.map(|ttl| self.obtained + ttl * 2 / 3)
    }

    /// True once the renewal point has passed.
    pub(super) fn due(&self, now: Instant) -> bool {
        self.renew_at().is_some_and(|at| now >= at)
    }

    /// True once the whole TTL has passed.
    pub(super) fn expired(&self, now: Instant) -> bool {
        self.ttl.is_some_and(|ttl| now >= self.obtained + ttl)
    }
}

/// What [`Inner::refresh`] does with the current session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Keep it: renewal is not due, or someone already replaced the revoked token.
    Keep,
    /// Renew it with renew-self (and log in if that does not extend it).
    Renew,
    /// Log in for a new token.
    Login,
}

/// The step for the current session (its generation and lease; `None`: there is none yet) at
/// `now`. `revoked` is the generation of a session a caller found dead.
pub(super) fn next_step(
    current: Option<(u64, &Lease)>,
    revoked: Option<u64>,
    now: Instant,
) -> Step {
    let Some((generation, lease)) = current else {
        return Step::Login;
    };
    match revoked {
        Some(dead) if dead != generation => Step::Keep,
        None if !lease.due(now) => Step::Keep,
        None if lease.renewable && !lease.expired(now) => Step::Renew,
        // Revoked, or due and not renewable, or expired.
        Some(_) | None => Step::Login,
    }
}

/// True when a renewal that granted `granted` should be kept; false when a login should replace
/// it: it granted nothing, or less than a third of the login's TTL (the max TTL is near) and a
/// login is possible. A given token (`can_login` false) is kept to the end.
pub(super) fn renewal_extends(
    granted: Duration,
    login_ttl: Option<Duration>,
    can_login: bool,
) -> bool {
    let exhausted = login_ttl.is_some_and(|login| granted < login / 3);
    !(granted.is_zero() || (exhausted && can_login))
}

impl Inner {
    /// Renews the current token if it is due (or logs in if it cannot be renewed). With
    /// `revoked`, the session of that generation is known dead: log in unless someone already
    /// replaced it.
    pub(super) async fn refresh(
        self: &Arc<Self>,
        revoked: Option<u64>,
        at: &Location,
    ) -> Result<Arc<Session>, Error> {
        let _one_at_a_time = self.refreshing.lock().await;
        let now = Instant::now();
        let current = self.current();
        let step = next_step(
            current.as_ref().map(|s| (s.generation, &s.lease)),
            revoked,
            now,
        );
        let renewed = match (step, &current) {
            (Step::Keep, Some(s)) => return Ok(s.clone()),
            (Step::Renew, Some(s)) => self.renew(s).await,
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
    /// or [`renewal_extends`] says the renewal is not worth keeping.
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
        if !renewal_extends(ttl, session.lease.login_ttl, self.auth.can_login()) {
            return None;
        }
        Some(Session {
            client,
            generation: session.generation,
            lease: Lease {
                obtained: Instant::now(),
                ttl: Some(ttl),
                renewable: info.renewable,
                login_ttl: session.lease.login_ttl,
            },
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

/// Stops the renewal task with the provider.
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
            inner.current().and_then(|s| s.lease.renew_at())
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

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn lease(obtained: Instant, ttl: Option<Duration>, renewable: bool) -> Lease {
        Lease {
            obtained,
            ttl,
            renewable,
            login_ttl: ttl,
        }
    }

    #[test]
    fn renewal_is_due_at_two_thirds_of_the_ttl() {
        let t0 = Instant::now();
        let l = lease(t0, Some(90 * MINUTE), true);
        assert_eq!(l.renew_at(), Some(t0 + 60 * MINUTE));
        assert!(!l.due(t0 + Duration::from_millis(3_599_999)));
        assert!(l.due(t0 + 60 * MINUTE));
        assert!(!l.expired(t0 + Duration::from_millis(5_399_999)));
        assert!(l.expired(t0 + 90 * MINUTE));
    }

    #[test]
    fn a_token_without_ttl_is_never_due_nor_expired() {
        let t0 = Instant::now();
        let l = lease(t0, None, false);
        let later = t0 + 10_000 * MINUTE;
        assert_eq!(l.renew_at(), None);
        assert!(!l.due(later));
        assert!(!l.expired(later));
        assert_eq!(next_step(Some((1, &l)), None, later), Step::Keep);
    }

    #[test]
    fn a_granted_ttl_of_zero_means_the_token_does_not_expire() {
        let forever = Lease::granted(0, false);
        assert_eq!((forever.ttl, forever.login_ttl), (None, None));
        let hour = Lease::granted(3600, true);
        assert_eq!(
            (hour.ttl, hour.login_ttl),
            (Some(60 * MINUTE), Some(60 * MINUTE))
        );
        assert!(hour.renewable);
    }

    #[test]
    fn no_session_means_a_login() {
        let now = Instant::now();
        assert_eq!(next_step(None, None, now), Step::Login);
        assert_eq!(next_step(None, Some(3), now), Step::Login);
    }

    #[test]
    fn a_token_is_kept_until_renewal_is_due() {
        let t0 = Instant::now();
        let l = lease(t0, Some(30 * MINUTE), true);
        assert_eq!(next_step(Some((1, &l)), None, t0), Step::Keep);
        assert_eq!(next_step(Some((1, &l)), None, t0 + 19 * MINUTE), Step::Keep);
        assert_eq!(
            next_step(Some((1, &l)), None, t0 + 20 * MINUTE),
            Step::Renew
        );
    }

    #[test]
    fn a_due_token_is_renewed_only_if_renewable_and_alive() {
        let t0 = Instant::now();
        let renewable = lease(t0, Some(30 * MINUTE), true);
        let fixed = lease(t0, Some(30 * MINUTE), false);
        let due = t0 + 25 * MINUTE;
        let expired = t0 + 30 * MINUTE;
        assert_eq!(next_step(Some((1, &renewable)), None, due), Step::Renew);
        assert_eq!(next_step(Some((1, &fixed)), None, due), Step::Login);
        assert_eq!(next_step(Some((1, &renewable)), None, expired), Step::Login);
    }

    #[test]
    fn a_revoked_token_is_replaced_once() {
        let t0 = Instant::now();
        let l = lease(t0, Some(30 * MINUTE), true);
        // The caller's token is the current one: log in, even long before renewal is due.
        assert_eq!(next_step(Some((4, &l)), Some(4), t0), Step::Login);
        // Someone already replaced it: keep the new one.
        assert_eq!(next_step(Some((5, &l)), Some(4), t0), Step::Keep);
        assert_eq!(
            next_step(Some((5, &l)), Some(4), t0 + 25 * MINUTE),
            Step::Keep
        );
    }

    #[test]
    fn a_renewal_is_kept_while_it_extends_the_token() {
        let login = Some(60 * MINUTE);
        assert!(renewal_extends(60 * MINUTE, login, true));
        assert!(renewal_extends(20 * MINUTE, login, true));
        assert!(renewal_extends(Duration::from_secs(1), None, true));
    }

    #[test]
    fn a_renewal_near_the_max_ttl_leads_to_a_login() {
        let login = Some(60 * MINUTE);
        let short = Duration::from_secs(20 * 60 - 1);
        assert!(!renewal_extends(short, login, true));
        // A given token cannot be replaced: keep what the renewal granted.
        assert!(renewal_extends(short, login, false));
    }

    #[test]
    fn a_renewal_granting_nothing_leads_to_a_login() {
        assert!(!renewal_extends(Duration::ZERO, Some(60 * MINUTE), true));
        assert!(!renewal_extends(Duration::ZERO, Some(60 * MINUTE), false));
        assert!(!renewal_extends(Duration::ZERO, None, true));
    }
}
