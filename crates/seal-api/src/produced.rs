//! What a Secret produced from a tenant's object may look like: the labels and types a
//! SealedSecret's `template` or an ExternalSecret's `target.template` may ask for.
//!
//! The controller writes Secrets with cluster-wide rights on behalf of anyone who may create a
//! SealedSecret or ExternalSecret in a namespace. Two things such a Secret must not become:
//! - **a trust marker**: labels under `seal.dev/` and `sealedsecrets.bitnami.com/` are what the
//!   controller recognises its sealing keys and its own Secrets by. A tenant who could have the
//!   controller write `seal.dev/sealing-key: active` into the key namespace would plant a key.
//! - **a credential Kubernetes acts on**: a `kubernetes.io/service-account-token` Secret is filled
//!   with a token by the token controller, a `bootstrap.kubernetes.io/token` Secret lets nodes
//!   join. Those types are denied unless the operator changes the list (`--deny-secret-types`).
//!
//! [`ProducedPolicy::check`] is the one place both reconcilers ask; it runs before any decryption
//! or provider call, so a refused object costs no RSA work and no provider traffic.

use crate::names::RESERVED_LABEL_PREFIXES;
use std::collections::BTreeMap;

/// Secret types no produced Secret may have unless the operator says otherwise.
pub const DEFAULT_DENIED_TYPES: &[&str] = &[
    "kubernetes.io/service-account-token",
    "bootstrap.kubernetes.io/token",
];

/// The operator's policy for produced Secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducedPolicy {
    /// Secret types that are refused.
    pub denied_types: Vec<String>,
}

impl Default for ProducedPolicy {
    /// [`DEFAULT_DENIED_TYPES`].
    fn default() -> Self {
        Self {
            denied_types: DEFAULT_DENIED_TYPES.iter().map(|&t| t.to_owned()).collect(),
        }
    }
}

/// Why a produced Secret is refused. Names a label key or a type, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProducedError {
    /// A reserved label.
    #[error(
        "template label {0:?} is reserved for seal-controller (prefixes seal.dev/ and sealedsecrets.bitnami.com/)"
    )]
    ReservedLabel(String),
    /// A denied Secret type.
    #[error("Secret type {0:?} is denied by the controller's policy (--deny-secret-types)")]
    DeniedType(String),
}

impl ProducedPolicy {
    /// Checks the labels and type a template asks for.
    pub fn check(
        &self,
        labels: Option<&BTreeMap<String, String>>,
        type_: Option<&str>,
    ) -> Result<(), ProducedError> {
        if let Some(label) = labels.into_iter().flatten().map(|(k, _)| k).find(|k| {
            RESERVED_LABEL_PREFIXES
                .iter()
                .any(|prefix| k.starts_with(prefix))
        }) {
            return Err(ProducedError::ReservedLabel(label.clone()));
        }
        if let Some(denied) = type_.filter(|t| self.denied_types.iter().any(|d| d == t)) {
            return Err(ProducedError::DeniedType(denied.to_owned()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(key: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(key.to_owned(), "active".to_owned())])
    }

    #[test]
    fn reserved_labels_are_refused() {
        let policy = ProducedPolicy::default();
        for key in [
            "seal.dev/sealing-key",
            "seal.dev/sealed-secret-uid",
            "sealedsecrets.bitnami.com/sealed-secrets-key",
        ] {
            assert_eq!(
                policy.check(Some(&labels(key)), None),
                Err(ProducedError::ReservedLabel(key.into()))
            );
        }
        assert_eq!(
            policy.check(Some(&labels("app.kubernetes.io/name")), None),
            Ok(())
        );
        assert_eq!(policy.check(Some(&labels("seal.dev")), None), Ok(()));
    }

    #[test]
    fn token_types_are_denied_by_default_and_the_list_is_the_operators() {
        let policy = ProducedPolicy::default();
        for denied in DEFAULT_DENIED_TYPES {
            assert!(matches!(
                policy.check(None, Some(denied)),
                Err(ProducedError::DeniedType(_))
            ));
        }
        for allowed in [
            "Opaque",
            "kubernetes.io/tls",
            "kubernetes.io/dockerconfigjson",
        ] {
            assert_eq!(policy.check(None, Some(allowed)), Ok(()));
        }
        let custom = ProducedPolicy {
            denied_types: vec!["kubernetes.io/tls".into()],
        };
        assert!(custom.check(None, Some("kubernetes.io/tls")).is_err());
        assert_eq!(
            custom.check(None, Some("kubernetes.io/service-account-token")),
            Ok(())
        );
    }
}
