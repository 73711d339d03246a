//! What `validate()` on seal's ExternalSecret and store types reports: the rules a structural
//! schema cannot state (exactly one provider, exactly one auth method, parseable durations and
//! templates), checked in Rust as well as by the CRD's CEL rules, so the CLI and the controller
//! give the same answer as the API server, also for objects that never went through one.
//!
//! Every error names the field by its JSON path (`spec.provider.vault.auth`). Messages quote
//! configuration (field names, durations, template text), never a secret value: these objects
//! hold none.

use seal_core::duration::DurationError;

/// A rule the object breaks, with the path of the field that breaks it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// Exactly one of a set of fields must be set.
    #[error("{field}: exactly one of {choices} must be set, found {found}")]
    ExactlyOne {
        /// The object holding the choices.
        field: String,
        /// The choices, comma-separated.
        choices: &'static str,
        /// How many are set.
        found: usize,
    },
    /// At most one of a set of fields may be set.
    #[error("{field}: at most one of {choices} may be set, found {found}")]
    AtMostOne {
        /// The object holding the choices.
        field: String,
        /// The choices, comma-separated.
        choices: &'static str,
        /// How many are set.
        found: usize,
    },
    /// A required string is empty.
    #[error("{field}: must not be empty")]
    Empty {
        /// The field.
        field: String,
    },
    /// A duration that does not parse.
    #[error("{field}: {source}")]
    Duration {
        /// The field.
        field: String,
        /// Why.
        source: DurationError,
    },
    /// A template that does not parse in seal's template language.
    #[error("{field}: {message}")]
    Template {
        /// The field (`spec.target.template.data.<item>`).
        field: String,
        /// The parser's message (positions and template text, never values).
        message: String,
    },
    /// Any other broken rule.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl ValidationError {
    /// The JSON path of the field at fault.
    pub fn field(&self) -> &str {
        match self {
            ValidationError::ExactlyOne { field, .. }
            | ValidationError::AtMostOne { field, .. }
            | ValidationError::Empty { field }
            | ValidationError::Duration { field, .. }
            | ValidationError::Template { field, .. }
            | ValidationError::Invalid { field, .. } => field,
        }
    }
}

/// `Err(ExactlyOne)` unless exactly one of `set` is true.
pub(crate) fn exactly_one(
    field: impl Into<String>,
    choices: &'static str,
    set: &[bool],
) -> Result<(), ValidationError> {
    let found = set.iter().filter(|s| **s).count();
    if found == 1 {
        Ok(())
    } else {
        Err(ValidationError::ExactlyOne {
            field: field.into(),
            choices,
            found,
        })
    }
}

/// `Err(AtMostOne)` if more than one of `set` is true.
pub(crate) fn at_most_one(
    field: impl Into<String>,
    choices: &'static str,
    set: &[bool],
) -> Result<(), ValidationError> {
    let found = set.iter().filter(|s| **s).count();
    if found <= 1 {
        Ok(())
    } else {
        Err(ValidationError::AtMostOne {
            field: field.into(),
            choices,
            found,
        })
    }
}

/// `Err(Empty)` if `value` is empty.
pub(crate) fn non_empty(field: impl Into<String>, value: &str) -> Result<(), ValidationError> {
    if value.is_empty() {
        Err(ValidationError::Empty {
            field: field.into(),
        })
    } else {
        Ok(())
    }
}
