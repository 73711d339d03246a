//! The one error type of every provider, typed by what the caller should do about it: a key that
//! is really gone ([`Error::NotFound`]) follows the ExternalSecret's deletion policy, an outage
//! ([`Error::Unavailable`]) keeps the last good value and retries later, a refusal
//! ([`Error::Denied`]) or a bad store ([`Error::InvalidConfig`]) needs a human.
//!
//! Every message names the provider, the store (region and endpoint, or Vault address) and the
//! key; none carries a secret value. Details come from the backend's own error messages, which
//! describe the failure (status codes, "permission denied", connection errors), never the data.

use crate::ProviderKind;
use crate::retry::Fault;

/// Where an error happened: the provider, the store and the key (or the operation, for calls
/// that have no single key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The backend.
    pub provider: ProviderKind,
    /// The store: `us-east-1` or `us-east-1 at http://endpoint` for AWS, the address (and
    /// namespace) for Vault.
    pub store: String,
    /// The key, path or operation (`login`, `find under "ml/"`).
    pub key: String,
}

impl Location {
    pub(crate) fn new(provider: ProviderKind, store: &str, key: &str) -> Self {
        Location {
            provider,
            store: store.to_owned(),
            key: key.to_owned(),
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.provider, self.store, self.key)
    }
}

/// A provider error. `Clone`, so one failed fetch can answer every reference that wanted it.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key, or the version asked for, does not exist.
    #[error("{at}: not found ({detail})")]
    NotFound {
        /// Where.
        at: Location,
        /// The backend's words.
        detail: String,
    },
    /// The credentials were refused, or may not read this key.
    #[error("{at}: access denied ({detail})")]
    Denied {
        /// Where.
        at: Location,
        /// The backend's words.
        detail: String,
    },
    /// The backend could not be reached or kept failing transiently (connection refused,
    /// timeout, 5xx, throttling) for every attempt the retry policy allowed.
    #[error("{at}: unavailable after {attempts} attempt(s) ({detail})")]
    Unavailable {
        /// Where.
        at: Location,
        /// How many attempts were made.
        attempts: u32,
        /// The last attempt's failure.
        detail: String,
    },
    /// The backend refused the request itself (a malformed version id, a secret marked for
    /// deletion, ...): retrying the same request cannot succeed.
    #[error("{at}: invalid request ({detail})")]
    InvalidRequest {
        /// Where.
        at: Location,
        /// The backend's words.
        detail: String,
    },
    /// The value exists but is not what was asked for: the property is missing, the value is not
    /// JSON, or the version holds no value.
    #[error("{at}: {detail}")]
    InvalidValue {
        /// Where.
        at: Location,
        /// What is wrong with it (never the value).
        detail: String,
    },
    /// The provider's configuration cannot work (a bad address, CA bundle, regexp, path, ...).
    #[error("{provider} store {store}: invalid configuration: {detail}")]
    InvalidConfig {
        /// The backend.
        provider: ProviderKind,
        /// The store, as far as it is known.
        store: String,
        /// What is wrong.
        detail: String,
    },
    /// A find matched more secrets than its limit allows.
    #[error("{at}: more than {limit} secrets match; narrow the query or raise its limit")]
    TooMany {
        /// Where.
        at: Location,
        /// The limit.
        limit: usize,
    },
}

impl Error {
    /// True when trying again later may succeed ([`Error::Unavailable`]).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }

    /// A label from a fixed set, for metrics and status reasons.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "not_found",
            Error::Denied { .. } => "denied",
            Error::Unavailable { .. } => "unavailable",
            Error::InvalidRequest { .. } => "invalid_request",
            Error::InvalidValue { .. } => "invalid_value",
            Error::InvalidConfig { .. } => "invalid_config",
            Error::TooMany { .. } => "too_many",
        }
    }

    /// The error for a call that failed with `fault` after `attempts` attempts.
    pub(crate) fn from_fault(at: Location, fault: Fault, attempts: u32, detail: String) -> Self {
        match fault {
            Fault::NotFound => Error::NotFound { at, detail },
            Fault::Denied => Error::Denied { at, detail },
            Fault::BadRequest => Error::InvalidRequest { at, detail },
            Fault::Throttled | Fault::Unavailable | Fault::Timeout => Error::Unavailable {
                at,
                attempts,
                detail,
            },
        }
    }
}
