//! The Kubernetes protocols every reconciler shares, each written once with the guarantees it
//! gives:
//!
//! | protocol | home |
//! |---|---|
//! | whose a Secret is; whether the controller may take it over (also from the peer's object it replaces) or add items to it | [`ownership`] |
//! | whether a Secret already holds what a write would give it | [`applied`] |
//! | the `Ready` condition (and Bitnami's `Synced`), its transition time, and "the status already says this" | [`ready_condition`] |
//! | what of an API error may reach a status, an Event or a log | [`redaction`] |
//! | watching the Secrets a reconciler produced, as metadata only (by label, or by owner kind) | [`produced_watch`] |
//! | what the leader remembers of each object, in bounded memory | [`bounded_memory`] |
//! | one object's panic fails that object only | [`contained`] |
//! | publishing an Event, remembering none | [`events`] |
//! | rolling the workloads that use a changed Secret | [`rollout`] |
//!
//! Nothing here knows a reconciler: the reconcilers ([`crate::sealed_secrets`],
//! [`crate::external_secrets`], [`crate::stores`]) depend on these modules, never the other way.

pub mod applied;
pub mod bounded_memory;
pub mod contained;
pub mod events;
pub mod ownership;
pub mod produced_watch;
pub mod ready_condition;
pub mod redaction;
pub mod rollout;
