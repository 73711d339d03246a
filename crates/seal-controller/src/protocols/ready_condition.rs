//! The `Ready` condition, as every kind the controller reconciles reports its state
//! (SealedSecret, ExternalSecret, SecretStore, ClusterSecretStore): one condition of type
//! [`CONDITION_READY`], `True` or `False`, a reason from the kind's fixed set and a message in
//! words safe for status (names and reasons, never a value).
//!
//! Guarantees, for every kind alike:
//! - a reconcile that reaches the state the status already says writes nothing ([`says`]), so
//!   resyncs and restarts cost no status write;
//! - `lastTransitionTime` moves only when the condition's status does, not when its reason or
//!   message changes ([`condition`]), as `kubectl wait` and Argo CD expect;
//! - the condition carries the generation it describes, and so does the status.
//!
//! Each reconciler builds its own status object around the condition (an ExternalSecret's adds
//! `refreshTime`, a store's its capabilities) and writes it with a merge patch of `status`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
pub use seal_api::names::CONDITION_READY;

/// The state a reconcile reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed<'a> {
    /// Whether the object is in the state it asks for.
    pub ready: bool,
    /// The reason, from the kind's fixed set.
    pub reason: &'a str,
    /// The message: the same words for as long as the state holds.
    pub message: &'a str,
    /// The `metadata.generation` it describes.
    pub generation: Option<i64>,
}

impl Observed<'_> {
    fn status(&self) -> &'static str {
        if self.ready { "True" } else { "False" }
    }
}

/// The current `Ready` condition among `conditions`.
pub fn current(conditions: &[Condition]) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == CONDITION_READY)
}

/// Whether the `Ready` condition among `conditions` already says `observed` (status, reason and
/// message; the generation is [`says`]'s).
pub fn same_condition(conditions: &[Condition], observed: &Observed<'_>) -> bool {
    current(conditions).is_some_and(|c| {
        c.status == observed.status()
            && c.reason == observed.reason
            && c.message == observed.message
    })
}

/// Whether a status with `conditions` and `observed_generation` already says `observed`, so that
/// nothing needs writing.
pub fn says(
    conditions: &[Condition],
    observed_generation: Option<i64>,
    observed: &Observed<'_>,
) -> bool {
    same_condition(conditions, observed) && observed_generation == observed.generation
}

/// The `Ready` condition for `observed`: its transition time is the previous one's while the
/// status stays the same, else `now`.
pub fn condition(conditions: &[Condition], observed: &Observed<'_>, now: Timestamp) -> Condition {
    let transition = current(conditions)
        .filter(|previous| previous.status == observed.status())
        .map_or_else(
            || Time(now),
            |previous| previous.last_transition_time.clone(),
        );
    Condition {
        type_: CONDITION_READY.into(),
        status: observed.status().into(),
        reason: observed.reason.into(),
        message: observed.message.into(),
        last_transition_time: transition,
        observed_generation: observed.generation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    fn observed(ready: bool, reason: &'static str, message: &'static str) -> Observed<'static> {
        Observed {
            ready,
            reason,
            message,
            generation: Some(2),
        }
    }

    #[test]
    fn the_same_state_writes_nothing_and_any_difference_does() {
        let now = observed(true, "Unsealed", "Secret ns/db holds the unsealed items");
        let written = vec![condition(&[], &now, at(100))];
        assert!(says(&written, Some(2), &now));
        // Every field of the state counts: status, reason, message, generation.
        assert!(!says(&written, Some(1), &now));
        assert!(!says(&written, None, &now));
        let failed = observed(false, "Unsealed", now.message);
        assert!(!says(&written, Some(2), &failed));
        let other_reason = observed(true, "Other", now.message);
        assert!(!says(&written, Some(2), &other_reason));
        let other_message = observed(true, "Unsealed", "another message");
        assert!(!says(&written, Some(2), &other_message));
        assert!(!says(&[], Some(2), &now));
        // Other condition types are not the Ready condition.
        let mut other = written[0].clone();
        other.type_ = "Synced".into();
        assert!(!says(&[other], Some(2), &now));
    }

    #[test]
    fn the_transition_time_moves_only_with_the_status() {
        let first = condition(&[], &observed(false, "DecryptionFailed", "a"), at(100));
        assert_eq!(first.last_transition_time, Time(at(100)));
        assert_eq!(first.type_, CONDITION_READY);
        assert_eq!(first.status, "False");
        assert_eq!(first.observed_generation, Some(2));
        // Another failure: same status, the time stays.
        let second = condition(
            std::slice::from_ref(&first),
            &observed(false, "NotManaged", "b"),
            at(200),
        );
        assert_eq!(second.last_transition_time, Time(at(100)));
        assert_eq!(second.reason, "NotManaged");
        // Ready: the status changes, the time moves.
        let third = condition(&[second], &observed(true, "Unsealed", "c"), at(300));
        assert_eq!(third.last_transition_time, Time(at(300)));
        assert_eq!(third.status, "True");
    }
}
