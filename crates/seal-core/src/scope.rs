//! Scopes: where a sealed value may be unsealed, expressed as the RSA-OAEP label.
//!
//! The label binds a ciphertext to a place. A value sealed `strict` for `ml-prod/ml-api-db` opens only
//! in a SealedSecret named `ml-api-db` in namespace `ml-prod`; `namespace-wide` lets it be renamed
//! within the namespace; `cluster-wide` lets it move anywhere in the cluster. The controller derives
//! the label from the SealedSecret's own name and namespace, never from anything the author can put in
//! the template. Item names are not bound: within one SealedSecret, ciphertexts can be swapped between
//! items (SECURITY.md spells out what that means).

use std::fmt;
use std::str::FromStr;

/// Where a sealed value may be unsealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scope {
    /// Bound to one namespace and one name (label `"<namespace>/<name>"`). The default.
    #[default]
    Strict,
    /// Bound to one namespace, any name (label `"<namespace>"`).
    NamespaceWide,
    /// Not bound at all (empty label).
    ClusterWide,
}

/// A scope needs a namespace or a name that the caller did not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// `strict` and `namespace-wide` need the namespace the value will live in.
    #[error("scope {scope} needs a namespace")]
    MissingNamespace {
        /// The scope that needed it.
        scope: Scope,
    },
    /// `strict` needs the name of the SealedSecret the value will live in.
    #[error("scope {scope} needs a name")]
    MissingName {
        /// The scope that needed it.
        scope: Scope,
    },
    /// The text is not one of `strict`, `namespace-wide`, `cluster-wide`.
    #[error("unknown scope {0:?} (expected strict, namespace-wide or cluster-wide)")]
    Unknown(String),
}

/// The OAEP label of one scope at one place: the bytes that bind a ciphertext.
#[derive(Clone, PartialEq, Eq)]
pub struct Label(Vec<u8>);

impl Label {
    /// The raw label bytes as fed to RSA-OAEP (empty for cluster-wide).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Label({:?})", String::from_utf8_lossy(&self.0))
    }
}

impl Scope {
    /// All scopes, strictest first.
    pub const ALL: [Scope; 3] = [Scope::Strict, Scope::NamespaceWide, Scope::ClusterWide];

    /// The name used on the command line and in `spec.scope`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Strict => "strict",
            Scope::NamespaceWide => "namespace-wide",
            Scope::ClusterWide => "cluster-wide",
        }
    }

    /// Whether sealing in this scope needs the namespace.
    pub fn needs_namespace(self) -> bool {
        !matches!(self, Scope::ClusterWide)
    }

    /// Whether sealing in this scope needs the name.
    pub fn needs_name(self) -> bool {
        matches!(self, Scope::Strict)
    }

    /// The OAEP label for a value living in `namespace`/`name` under this scope.
    ///
    /// Errors: [`ScopeError::MissingNamespace`] or [`ScopeError::MissingName`] when the scope needs one
    /// that is `None` or empty. Fields the scope does not need are ignored.
    pub fn label(self, namespace: Option<&str>, name: Option<&str>) -> Result<Label, ScopeError> {
        let namespace = namespace.filter(|s| !s.is_empty());
        let name = name.filter(|s| !s.is_empty());
        match self {
            Scope::ClusterWide => Ok(Label(Vec::new())),
            Scope::NamespaceWide => {
                let ns = namespace.ok_or(ScopeError::MissingNamespace { scope: self })?;
                Ok(Label(ns.as_bytes().to_vec()))
            }
            Scope::Strict => {
                let ns = namespace.ok_or(ScopeError::MissingNamespace { scope: self })?;
                let name = name.ok_or(ScopeError::MissingName { scope: self })?;
                Ok(Label(format!("{ns}/{name}").into_bytes()))
            }
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| ScopeError::Unknown(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_label_joins_namespace_and_name_with_a_slash() {
        let label = Scope::Strict
            .label(Some("ml-prod"), Some("ml-api-db"))
            .unwrap();
        assert_eq!(label.as_bytes(), b"ml-prod/ml-api-db");
    }

    #[test]
    fn namespace_wide_label_is_the_namespace_and_ignores_the_name() {
        let label = Scope::NamespaceWide
            .label(Some("ml-prod"), Some("x"))
            .unwrap();
        assert_eq!(label.as_bytes(), b"ml-prod");
    }

    #[test]
    fn cluster_wide_label_is_empty_and_needs_nothing() {
        assert!(
            Scope::ClusterWide
                .label(None, None)
                .unwrap()
                .as_bytes()
                .is_empty()
        );
    }

    #[test]
    fn strict_without_name_or_namespace_is_an_error() {
        assert_eq!(
            Scope::Strict.label(Some("ns"), None),
            Err(ScopeError::MissingName {
                scope: Scope::Strict
            })
        );
        assert_eq!(
            Scope::Strict.label(Some(""), Some("n")),
            Err(ScopeError::MissingNamespace {
                scope: Scope::Strict
            })
        );
        assert_eq!(
            Scope::NamespaceWide.label(None, Some("n")),
            Err(ScopeError::MissingNamespace {
                scope: Scope::NamespaceWide
            })
        );
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>().unwrap(), scope);
        }
        assert!(matches!(
            "Strict".parse::<Scope>(),
            Err(ScopeError::Unknown(_))
        ));
    }
}
