//! Turning what went wrong into this crate's errors. [`classify`] sorts a vaultrs error into a
//! retry [`Fault`] (not found, denied, throttled, unavailable, ...) with a short description, so
//! the retry loop knows what to retry and callers get a typed [`Error`]. The description never
//! comes from a response body, which may hold secret data.
//!
//! [`Inner::at`] and [`Inner::invalid`] name the store and key an error is about.

use rustify::errors::ClientError as RestError;
use vaultrs::error::ClientError;

use super::Inner;
use crate::ProviderKind;
use crate::error::{Error, Location};
use crate::retry::{Failure, Fault};

impl Inner {
    /// Where an error happened: this store, `key`.
    pub(super) fn at(&self, key: &str) -> Location {
        Location::new(ProviderKind::Vault, &self.store, key)
    }

    /// An [`Error::InvalidConfig`] for this store.
    pub(super) fn invalid(&self, detail: impl Into<String>) -> Error {
        invalid_config(&self.store, detail)
    }
}

/// An [`Error::InvalidConfig`] for the Vault store `store`.
pub(super) fn invalid_config(store: &str, detail: impl Into<String>) -> Error {
    Error::InvalidConfig {
        provider: ProviderKind::Vault,
        store: store.to_owned(),
        detail: detail.into(),
    }
}

/// The class and description of a vaultrs error. Descriptions come from status codes, Vault's
/// `errors` list and transport errors; never from a response body, which rustify keeps in some
/// variants and which may hold secret data. A `400` at login is a refused credential.
pub(super) fn classify(error: &ClientError, login: bool) -> Failure {
    match error {
        ClientError::APIError { code, errors } => {
            let fault = match code {
                404 => Fault::NotFound,
                401 | 403 => Fault::Denied,
                400 if login => Fault::Denied,
                429 => Fault::Throttled,
                412 => Fault::Unavailable,
                c if *c >= 500 => Fault::Unavailable,
                _ => Fault::BadRequest,
            };
            let detail = if errors.is_empty() {
                format!("HTTP {code}")
            } else {
                format!("HTTP {code}: {}", errors.join("; ").replace('\n', " "))
            };
            Failure::new(fault, detail)
        }
        ClientError::RestClientError { source } => match source {
            RestError::RequestError { .. } => {
                let timeout = crate::find_source::<reqwest::Error>(source)
                    .is_some_and(reqwest::Error::is_timeout);
                let fault = if timeout {
                    Fault::Timeout
                } else {
                    Fault::Unavailable
                };
                Failure::new(fault, crate::chain(source))
            }
            RestError::ServerResponseError { code, .. } => {
                let fault = match *code {
                    404 => Fault::NotFound,
                    401 | 403 => Fault::Denied,
                    429 => Fault::Throttled,
                    c if c >= 500 => Fault::Unavailable,
                    _ => Fault::BadRequest,
                };
                Failure::new(fault, format!("HTTP {code}"))
            }
            _ => Failure::new(Fault::Unavailable, "unparseable response"),
        },
        ClientError::JsonParseError { .. } => {
            Failure::new(Fault::BadRequest, "unexpected response shape")
        }
        other => Failure::new(Fault::BadRequest, other.to_string()),
    }
}
