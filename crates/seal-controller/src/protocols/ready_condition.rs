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
//!
//! A `bitnami.com/v1alpha1` SealedSecret reports instead as Bitnami's controller does, so that
//! Argo CD's health check and `kubectl get sealedsecrets` read it as before ([`synced`]): one
//! condition of type [`CONDITION_SYNCED`], `True` with an empty message or `False` with the
//! failure, `lastUpdateTime` and `lastTransitionTime`, and no reason. Its rule is Bitnami's
//! (`updateSealedSecretStatus`): the status is written only when the condition's status changes or
//! `observedGeneration` differs, so a failure that turns into another failure keeps its first
//! message, and two controllers writing this status see each other's write as no change.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use seal_api::bitnami::{BitnamiCondition, BitnamiStatus};
pub use seal_api::names::CONDITION_READY;

/// The condition type of Bitnami's SealedSecret status.
pub const CONDITION_SYNCED: &str = "Synced";

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

/// The status a `bitnami.com` SealedSecret at `generation` should have after a reconcile that
/// `failure` describes (`None`: synced), or `None` when `previous` needs no write: its `Synced`
/// condition has the same status and its `observedGeneration` is `generation`. Other condition
/// types are kept as they are.
pub fn synced(
    previous: Option<&BitnamiStatus>,
    failure: Option<&str>,
    generation: Option<i64>,
    now: Timestamp,
) -> Option<BitnamiStatus> {
    let status = if failure.is_none() { "True" } else { "False" };
    let mut next = previous.cloned().unwrap_or_default();
    let at = next
        .conditions
        .iter()
        .position(|c| c.type_ == CONDITION_SYNCED)
        .unwrap_or_else(|| {
            next.conditions.push(BitnamiCondition {
                type_: CONDITION_SYNCED.into(),
                ..BitnamiCondition::default()
            });
            next.conditions.len() - 1
        });
    let condition = &mut next.conditions[at];
    let changed = condition.status != status;
    if !changed && next.observed_generation == generation {
        return None;
    }
    condition.last_update_time = Some(Time(now));
    if changed {
        condition.status = status.into();
        condition.last_transition_time = Some(Time(now));
    }
    condition.message = failure.map(str::to_owned);
    next.observed_generation = generation;
    Some(next)
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

    fn written(failure: Option<&str>, generation: i64, seconds: i64) -> BitnamiStatus {
        synced(None, failure, Some(generation), at(seconds)).unwrap()
    }

    #[test]
    fn synced_is_bitnamis_shape() {
        let ok = written(None, 1, 100);
        let condition = &ok.conditions[0];
        assert_eq!(
            (condition.type_.as_str(), condition.status.as_str()),
            ("Synced", "True")
        );
        assert_eq!(condition.message, None, "empty on success");
        assert_eq!(condition.reason, None, "Bitnami sets no reason");
        assert_eq!(condition.last_update_time, Some(Time(at(100))));
        assert_eq!(condition.last_transition_time, Some(Time(at(100))));
        assert_eq!(ok.observed_generation, Some(1));
        let failed = written(Some("item \"a\" cannot be decrypted"), 1, 100);
        assert_eq!(failed.conditions[0].status, "False");
        assert_eq!(
            failed.conditions[0].message.as_deref(),
            Some("item \"a\" cannot be decrypted")
        );
    }

    /// Bitnami's rule: write when the status flips or the generation differs, and only then.
    #[test]
    fn synced_is_written_only_when_the_status_or_the_generation_changes() {
        let ok = written(None, 1, 100);
        // The same state, later: nothing to write.
        assert_eq!(synced(Some(&ok), None, Some(1), at(200)), None);
        // A new generation, same status: written, the transition time stays.
        let next = synced(Some(&ok), None, Some(2), at(200)).unwrap();
        assert_eq!(next.observed_generation, Some(2));
        assert_eq!(next.conditions[0].last_update_time, Some(Time(at(200))));
        assert_eq!(next.conditions[0].last_transition_time, Some(Time(at(100))));
        // A failure: the status flips, both times move.
        let failed = synced(Some(&next), Some("no"), Some(2), at(300)).unwrap();
        assert_eq!(failed.conditions[0].status, "False");
        assert_eq!(
            failed.conditions[0].last_transition_time,
            Some(Time(at(300)))
        );
        // Another failure at the same generation: not written, the first message stays.
        assert_eq!(synced(Some(&failed), Some("other"), Some(2), at(400)), None);
        // Back to synced: the message is emptied.
        let healed = synced(Some(&failed), None, Some(2), at(500)).unwrap();
        assert_eq!(healed.conditions[0].message, None);
        assert_eq!(healed.conditions.len(), 1);
    }

    #[test]
    fn other_condition_types_are_kept() {
        let mut previous = written(None, 1, 100);
        previous.conditions.insert(
            0,
            BitnamiCondition {
                type_: "Other".into(),
                status: "True".into(),
                ..BitnamiCondition::default()
            },
        );
        let next = synced(Some(&previous), Some("no"), Some(1), at(200)).unwrap();
        assert_eq!(next.conditions.len(), 2);
        assert_eq!(next.conditions[0].type_, "Other");
        assert_eq!(next.conditions[1].status, "False");
    }
}
