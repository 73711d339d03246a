//! What the providers cost: one atomic counter per (call, status), every label from a fixed set,
//! so the controller can export `provider_api_calls_total{provider,call,status}` (and the CLI can
//! print a summary) without the cardinality ever depending on keys, paths or error text.
//!
//! One [`CallCounter`] is shared by `Arc`: hand the same one to every provider of a process and
//! it counts them all; read it at scrape time with [`CallCounter::snapshot`]. Each attempt counts,
//! retries included, because each attempt is what the backend bills and throttles.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::ProviderKind;

/// A remote call a provider makes; the `call` metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Call {
    /// Secrets Manager GetSecretValue.
    GetSecretValue,
    /// Secrets Manager BatchGetSecretValue (up to 20 secrets).
    BatchGetSecretValue,
    /// Secrets Manager ListSecrets (one page).
    ListSecrets,
    /// STS AssumeRole (only when the identity cache needs fresh credentials).
    AssumeRole,
    /// STS AssumeRoleWithWebIdentity (only when the identity cache needs fresh credentials).
    AssumeRoleWithWebIdentity,
    /// Vault: read a KV secret (v1 or v2).
    VaultRead,
    /// Vault: list a KV folder.
    VaultList,
    /// Vault: read KV v2 metadata (custom metadata for tags).
    VaultReadMetadata,
    /// Vault: ask which mount a path is under and its KV version (once per mount).
    VaultMount,
    /// Vault: log in (AppRole, Kubernetes, JWT).
    VaultLogin,
    /// Vault: renew the client's own token.
    VaultRenewSelf,
    /// Vault: look up the client's own token (its TTL, or whether it was revoked).
    VaultLookupSelf,
}

impl Call {
    /// Every call, in label order.
    pub const ALL: [Call; 12] = [
        Call::GetSecretValue,
        Call::BatchGetSecretValue,
        Call::ListSecrets,
        Call::AssumeRole,
        Call::AssumeRoleWithWebIdentity,
        Call::VaultRead,
        Call::VaultList,
        Call::VaultReadMetadata,
        Call::VaultMount,
        Call::VaultLogin,
        Call::VaultRenewSelf,
        Call::VaultLookupSelf,
    ];

    /// The backend this call goes to: the `provider` label.
    pub fn provider(self) -> ProviderKind {
        match self {
            Call::GetSecretValue
            | Call::BatchGetSecretValue
            | Call::ListSecrets
            | Call::AssumeRole
            | Call::AssumeRoleWithWebIdentity => ProviderKind::Aws,
            Call::VaultRead
            | Call::VaultList
            | Call::VaultReadMetadata
            | Call::VaultMount
            | Call::VaultLogin
            | Call::VaultRenewSelf
            | Call::VaultLookupSelf => ProviderKind::Vault,
        }
    }

    /// The `call` label: AWS API names as AWS spells them, Vault operations in snake case.
    pub fn as_str(self) -> &'static str {
        match self {
            Call::GetSecretValue => "GetSecretValue",
            Call::BatchGetSecretValue => "BatchGetSecretValue",
            Call::ListSecrets => "ListSecrets",
            Call::AssumeRole => "AssumeRole",
            Call::AssumeRoleWithWebIdentity => "AssumeRoleWithWebIdentity",
            Call::VaultRead => "read",
            Call::VaultList => "list",
            Call::VaultReadMetadata => "read_metadata",
            Call::VaultMount => "mount",
            Call::VaultLogin => "login",
            Call::VaultRenewSelf => "renew_self",
            Call::VaultLookupSelf => "lookup_self",
        }
    }

    fn index(self) -> usize {
        Call::ALL
            .iter()
            .position(|c| *c == self)
            .expect("invariant: ALL lists every call")
    }
}

/// How a call ended; the `status` metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum CallStatus {
    /// It succeeded.
    Success,
    /// The key or version does not exist.
    NotFound,
    /// Authentication or authorization failed.
    Denied,
    /// The backend rejected the request as malformed or not allowed in its state.
    BadRequest,
    /// The backend throttled the call (429, ThrottlingException).
    Throttled,
    /// Connection failure or a 5xx.
    Unavailable,
    /// No answer within the timeout.
    Timeout,
}

impl CallStatus {
    /// Every status, in label order.
    pub const ALL: [CallStatus; 7] = [
        CallStatus::Success,
        CallStatus::NotFound,
        CallStatus::Denied,
        CallStatus::BadRequest,
        CallStatus::Throttled,
        CallStatus::Unavailable,
        CallStatus::Timeout,
    ];

    /// The `status` label.
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Success => "success",
            CallStatus::NotFound => "not_found",
            CallStatus::Denied => "denied",
            CallStatus::BadRequest => "bad_request",
            CallStatus::Throttled => "throttled",
            CallStatus::Unavailable => "unavailable",
            CallStatus::Timeout => "timeout",
        }
    }

    fn index(self) -> usize {
        CallStatus::ALL
            .iter()
            .position(|s| *s == self)
            .expect("invariant: ALL lists every status")
    }
}

/// One non-zero counter of a [`CallCounter::snapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallCount {
    /// The `provider` label.
    pub provider: ProviderKind,
    /// The `call` label.
    pub call: Call,
    /// The `status` label.
    pub status: CallStatus,
    /// How many, since the counter was made.
    pub count: u64,
}

/// Counters of remote calls by (call, status); the provider follows from the call. Lock-free.
pub struct CallCounter {
    counts: [[AtomicU64; CallStatus::ALL.len()]; Call::ALL.len()],
}

impl CallCounter {
    /// All counters at zero.
    pub fn new() -> Self {
        CallCounter {
            counts: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }

    /// Records one call.
    pub fn record(&self, call: Call, status: CallStatus) {
        self.counts[call.index()][status.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Calls of `call` that ended with `status`.
    pub fn count(&self, call: Call, status: CallStatus) -> u64 {
        self.counts[call.index()][status.index()].load(Ordering::Relaxed)
    }

    /// Calls of `call` whatever their status.
    pub fn total(&self, call: Call) -> u64 {
        CallStatus::ALL.iter().map(|s| self.count(call, *s)).sum()
    }

    /// Every non-zero counter, in label order.
    pub fn snapshot(&self) -> Vec<CallCount> {
        Call::ALL
            .iter()
            .flat_map(|call| {
                CallStatus::ALL.iter().map(|status| CallCount {
                    provider: call.provider(),
                    call: *call,
                    status: *status,
                    count: self.count(*call, *status),
                })
            })
            .filter(|c| c.count > 0)
            .collect()
    }
}

impl Default for CallCounter {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for CallCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.snapshot()).finish()
    }
}
