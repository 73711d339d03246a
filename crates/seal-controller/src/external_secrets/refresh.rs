//! When an ExternalSecret is due for a read from its provider, and when to look at it next:
//! pure decisions over what the reconciler knows, so every case is enumerated in unit tests.
//!
//! - `refreshPolicy: Periodic` (the default) reads on the first reconcile, when the spec changes
//!   (generation), when `seal.dev/force-sync` takes a new value, when the produced Secret is
//!   deleted or changed by someone else, after a failed sync (with the caller's backoff), and every
//!   `refreshInterval` (0 turns the periodic read off).
//! - `OnChange` reads for all of these except the interval.
//! - `CreatedOnce` reads until the Secret exists and never again (nor when it is edited).
//!
//! Any other event (the reconciler's own status write, its own Secret write seen by the watch)
//! costs no provider call. The next look is at the next refresh plus a per-object [`jitter`] of
//! up to a tenth of the interval (at most a minute), so that objects created together do not
//! refresh together.

use std::time::Duration;

use seal_api::external_secret::RefreshPolicy;

/// What the reconciler knows about one ExternalSecret when deciding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    /// The object's `refreshPolicy`.
    pub policy: RefreshPolicy,
    /// The object's `refreshInterval` (zero: no periodic read).
    pub interval: Duration,
    /// How long ago the values were last read; `None` if never.
    pub since_refresh: Option<Duration>,
    /// The spec changed since the last sync (generation).
    pub spec_changed: bool,
    /// `seal.dev/force-sync` has a value not yet acted on.
    pub forced: bool,
    /// The object writes a Secret (`creationPolicy` is not `None`).
    pub writes_secret: bool,
    /// A Secret of the target's name exists.
    pub secret_exists: bool,
    /// The Secret is the one this controller last wrote (always true when none is written).
    pub secret_intact: bool,
    /// The last sync failed.
    pub failing: bool,
}

/// Why a read is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Never read yet.
    First,
    /// The spec changed.
    SpecChanged,
    /// A new `force-sync` value.
    Forced,
    /// The produced Secret was deleted or changed by someone else.
    SecretChanged,
    /// The refresh interval has passed.
    Interval,
    /// The last sync failed.
    Retry,
    /// `CreatedOnce` and the Secret does not exist.
    SecretMissing,
}

/// Whether a read is due, and why; `None` when it is not.
pub fn due(known: &Known) -> Option<Why> {
    if known.since_refresh.is_none() {
        return Some(Why::First);
    }
    if known.policy == RefreshPolicy::CreatedOnce {
        return (known.writes_secret && !known.secret_exists).then_some(Why::SecretMissing);
    }
    let interval_passed = known.policy == RefreshPolicy::Periodic
        && !known.interval.is_zero()
        && known
            .since_refresh
            .is_some_and(|since| since >= known.interval);
    [
        (known.spec_changed, Why::SpecChanged),
        (known.forced, Why::Forced),
        (!known.secret_intact, Why::SecretChanged),
        (interval_passed, Why::Interval),
        (known.failing, Why::Retry),
    ]
    .into_iter()
    .find_map(|(holds, why)| holds.then_some(why))
}

/// How long until the next periodic read of the object `uid`, last read `since_refresh` ago;
/// `None` when only a change brings it back (not `Periodic`, or no interval).
pub fn next_look(
    policy: RefreshPolicy,
    interval: Duration,
    uid: &str,
    since_refresh: Option<Duration>,
) -> Option<Duration> {
    if policy != RefreshPolicy::Periodic || interval.is_zero() {
        return None;
    }
    let remaining = interval.saturating_sub(since_refresh.unwrap_or_default());
    Some(remaining + jitter(uid, interval))
}

/// The wait after `failures` failed syncs in a row: 5 s, doubling, at most 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(6);
    Duration::from_secs(5 << exponent).min(Duration::from_secs(300))
}

/// A delay in `[0, min(interval / 10, 60 s))` that is the same for one object every time and
/// spreads objects of one interval apart. Total: no interval, however short, divides by zero.
pub fn jitter(uid: &str, interval: Duration) -> Duration {
    let span = (interval / 10).min(Duration::from_secs(60));
    let span_nanos = u64::try_from(span.as_nanos()).unwrap_or(u64::MAX);
    let seed = uid
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    Duration::from_nanos(seed.checked_rem(span_nanos).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    /// Read 10 minutes ago, interval an hour, nothing changed: not due under any policy.
    fn quiet(policy: RefreshPolicy) -> Known {
        Known {
            policy,
            interval: HOUR,
            since_refresh: Some(Duration::from_secs(600)),
            spec_changed: false,
            forced: false,
            writes_secret: true,
            secret_exists: true,
            secret_intact: true,
            failing: false,
        }
    }

    #[test]
    fn nothing_changed_is_never_due() {
        for policy in [
            RefreshPolicy::Periodic,
            RefreshPolicy::OnChange,
            RefreshPolicy::CreatedOnce,
        ] {
            assert_eq!(due(&quiet(policy)), None, "{policy:?}");
        }
    }

    /// Each cause alone, under each policy: (cause, Periodic, OnChange, CreatedOnce).
    #[test]
    fn each_cause_under_each_policy() {
        type Cause = fn(&mut Known);
        let cases: [(&str, Cause, [Option<Why>; 3]); 7] = [
            (
                "never read",
                |k| k.since_refresh = None,
                [Some(Why::First); 3],
            ),
            (
                "spec changed",
                |k| k.spec_changed = true,
                [Some(Why::SpecChanged), Some(Why::SpecChanged), None],
            ),
            (
                "forced",
                |k| k.forced = true,
                [Some(Why::Forced), Some(Why::Forced), None],
            ),
            (
                "secret edited",
                |k| k.secret_intact = false,
                [Some(Why::SecretChanged), Some(Why::SecretChanged), None],
            ),
            (
                "secret deleted",
                |k| {
                    k.secret_exists = false;
                    k.secret_intact = false;
                },
                [
                    Some(Why::SecretChanged),
                    Some(Why::SecretChanged),
                    Some(Why::SecretMissing),
                ],
            ),
            (
                "interval passed",
                |k| k.since_refresh = Some(HOUR),
                [Some(Why::Interval), None, None],
            ),
            (
                "failing",
                |k| k.failing = true,
                [Some(Why::Retry), Some(Why::Retry), None],
            ),
        ];
        let policies = [
            RefreshPolicy::Periodic,
            RefreshPolicy::OnChange,
            RefreshPolicy::CreatedOnce,
        ];
        for (name, cause, expected) in cases {
            for (policy, want) in policies.into_iter().zip(expected) {
                let mut known = quiet(policy);
                cause(&mut known);
                assert_eq!(due(&known), want, "{name} under {policy:?}");
            }
        }
    }

    #[test]
    fn an_interval_of_zero_never_refreshes_and_created_once_without_a_secret_to_write_reads_once() {
        let mut known = quiet(RefreshPolicy::Periodic);
        known.interval = Duration::ZERO;
        known.since_refresh = Some(10 * HOUR);
        assert_eq!(due(&known), None);
        let mut none = quiet(RefreshPolicy::CreatedOnce);
        none.writes_secret = false;
        none.secret_exists = false;
        assert_eq!(due(&none), None);
    }

    #[test]
    fn the_next_look_is_the_rest_of_the_interval_plus_the_objects_jitter() {
        let ten_minutes = Some(Duration::from_secs(600));
        let next = next_look(RefreshPolicy::Periodic, HOUR, "uid", ten_minutes).unwrap();
        assert_eq!(next, Duration::from_secs(3000) + jitter("uid", HOUR));
        assert_eq!(
            next_look(RefreshPolicy::OnChange, HOUR, "uid", ten_minutes),
            None
        );
        assert_eq!(
            next_look(RefreshPolicy::CreatedOnce, HOUR, "uid", ten_minutes),
            None
        );
        assert_eq!(
            next_look(RefreshPolicy::Periodic, Duration::ZERO, "uid", None),
            None
        );
        // Overdue: at once, plus the jitter.
        let overdue = next_look(RefreshPolicy::Periodic, HOUR, "uid", Some(2 * HOUR)).unwrap();
        assert_eq!(overdue, jitter("uid", HOUR));
    }

    #[test]
    fn backoff_doubles_from_five_seconds_to_five_minutes() {
        let waits: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff(0).as_secs(), 5);
    }

    #[test]
    fn jitter_is_total_and_within_a_tenth_of_the_interval() {
        for nanos in [
            1,
            9,
            10,
            11,
            5_000_000,
            9_999_999,
            10_000_000,
            1_000_000_000,
        ] {
            let interval = Duration::from_nanos(nanos);
            for uid in ["", "a", "3f1c0b6e-uid"] {
                let jitter = jitter(uid, interval);
                assert!(jitter <= interval / 10, "{nanos} ns {uid:?}: {jitter:?}");
            }
        }
        assert!(jitter("x", Duration::from_secs(86_400)) < Duration::from_secs(60));
        assert_ne!(jitter("a", HOUR), jitter("b", HOUR));
    }
}
