//! Timeouts and retries for every remote call: each attempt is bounded by a timeout, transient
//! failures (connection errors, timeouts, 5xx, throttling) are retried with exponential backoff
//! and full jitter, permanent ones (not found, denied, bad request) return at once. Every attempt
//! is counted in the [`CallCounter`], so retries show in the cost.
//!
//! Full jitter (a delay drawn uniformly from zero to the exponential cap) is what spreads a fleet
//! of controllers and sidecars apart after a shared outage, instead of having them retry in
//! lockstep; see the AWS Architecture Blog's "Exponential Backoff And Jitter".

use std::future::Future;
use std::time::Duration;

use crate::error::{Error, Location};
use crate::metrics::{Call, CallCounter, CallStatus};

/// How long one attempt may take and how often a transient failure is retried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The limit for one attempt (connection, request and response). Default 10 s.
    pub timeout: Duration,
    /// Attempts in all, the first included; at least 1. Default 4.
    pub max_attempts: u32,
    /// The backoff cap before the second attempt; it doubles for each further one. Default 200 ms.
    pub base_delay: Duration,
    /// The largest backoff cap. Default 5 s.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            timeout: Duration::from_secs(10),
            max_attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The most the wait before attempt `attempt + 1` may be: `base_delay * 2^(attempt - 1)`,
    /// at most `max_delay`.
    fn backoff_cap(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// A wait drawn uniformly from zero to [`RetryPolicy::backoff_cap`] (full jitter).
    fn backoff(&self, attempt: u32) -> Duration {
        let cap = u64::try_from(self.backoff_cap(attempt).as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(0..=cap))
    }
}

/// Why one attempt failed, as far as retrying is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    NotFound,
    Denied,
    BadRequest,
    Throttled,
    Unavailable,
    Timeout,
}

impl Fault {
    fn status(self) -> CallStatus {
        match self {
            Fault::NotFound => CallStatus::NotFound,
            Fault::Denied => CallStatus::Denied,
            Fault::BadRequest => CallStatus::BadRequest,
            Fault::Throttled => CallStatus::Throttled,
            Fault::Unavailable => CallStatus::Unavailable,
            Fault::Timeout => CallStatus::Timeout,
        }
    }

    fn is_transient(self) -> bool {
        matches!(self, Fault::Throttled | Fault::Unavailable | Fault::Timeout)
    }
}

/// One failed attempt: its class and the backend's words (never a value).
#[derive(Debug)]
pub(crate) struct Failure {
    pub fault: Fault,
    pub detail: String,
}

impl Failure {
    pub fn new(fault: Fault, detail: impl Into<String>) -> Self {
        Failure {
            fault,
            detail: detail.into(),
        }
    }
}

/// A call that failed for good: the last attempt's failure and how many attempts were made.
#[derive(Clone, Debug)]
pub(crate) struct Failed {
    pub fault: Fault,
    pub detail: String,
    pub attempts: u32,
}

impl Failed {
    pub fn into_error(self, at: Location) -> Error {
        Error::from_fault(at, self.fault, self.attempts, self.detail)
    }
}

/// Runs `op` under `policy`, recording every attempt as `call` in `counter`.
pub(crate) async fn call<T, F, Fut>(
    policy: &RetryPolicy,
    counter: &CallCounter,
    call: Call,
    mut op: F,
) -> Result<T, Failed>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let outcome = tokio::time::timeout(policy.timeout, op())
            .await
            .unwrap_or_else(|_| {
                Err(Failure::new(
                    Fault::Timeout,
                    format!("no answer within {} ms", policy.timeout.as_millis()),
                ))
            });
        match outcome {
            Ok(value) => {
                counter.record(call, CallStatus::Success);
                return Ok(value);
            }
            Err(failure) => {
                counter.record(call, failure.fault.status());
                if !failure.fault.is_transient() || attempt >= policy.max_attempts.max(1) {
                    return Err(Failed {
                        fault: failure.fault,
                        detail: failure.detail,
                        attempts: attempt,
                    });
                }
                tokio::time::sleep(policy.backoff(attempt)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_cap_doubles_from_base_and_stops_at_max() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(700),
            ..RetryPolicy::default()
        };
        let caps: Vec<_> = (1..=6).map(|a| policy.backoff_cap(a).as_millis()).collect();
        assert_eq!(caps, [100, 200, 400, 700, 700, 700]);
        assert_eq!(policy.backoff_cap(200), Duration::from_millis(700));
    }

    #[test]
    fn backoff_is_jittered_within_the_cap() {
        let policy = RetryPolicy::default();
        let waits: Vec<_> = (0..200).map(|_| policy.backoff(3)).collect();
        assert!(waits.iter().all(|w| *w <= policy.backoff_cap(3)));
        // 200 draws from [0, 800 ms] are not all equal unless the jitter is broken.
        assert!(waits.iter().any(|w| *w != waits[0]));
    }
}
