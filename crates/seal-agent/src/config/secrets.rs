//! The `secrets` section (name -> reference) and what a file or a variable is made of
//! ([`Source`]: one secret's value, or a template over the secrets). Names are checked here once,
//! and every `secret:` or template that `files` and `env` use must name one of them, so a typo is
//! a configuration error at start rather than a failure at the first render.

use std::collections::{BTreeMap, BTreeSet};

use seal_providers::reference::Reference;
use seal_template::Template;

use super::{ConfigError, error};

/// What a file or a variable is made of.
pub enum Source {
    /// One secret's value, as is.
    Secret(String),
    /// A template over the secrets.
    Template(Template),
}

/// The `secrets` section parsed: each name checked and its reference parsed, in name order.
pub(super) fn secrets(
    raw: &BTreeMap<String, String>,
) -> Result<Vec<(String, Reference)>, ConfigError> {
    let mut secrets = Vec::new();
    for (name, text) in raw {
        let field = format!("secrets.{name}");
        check_name(&field, name)?;
        let reference = seal_providers::reference::parse(text.trim())
            .map_err(|e| error(&field, format!("invalid reference: {e}")))?;
        secrets.push((name.clone(), reference));
    }
    Ok(secrets)
}

fn check_name(field: &str, name: &str) -> Result<(), ConfigError> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if valid {
        Ok(())
    } else {
        Err(error(field, "a secret name is letters, digits, _, - and ."))
    }
}

/// The source of `field`: exactly one of `secret` and `template`, using only `known` names.
pub(super) fn source(
    field: &str,
    secret: Option<&str>,
    template: Option<&str>,
    known: &BTreeSet<&str>,
) -> Result<Source, ConfigError> {
    match (secret, template) {
        (Some(_), Some(_)) => Err(error(field, "secret and a template exclude each other")),
        (None, None) => Err(error(field, "needs a secret or a template")),
        (Some(name), None) => {
            if known.contains(name) {
                Ok(Source::Secret(name.to_owned()))
            } else {
                Err(error(
                    format!("{field}.secret"),
                    format!("{name:?} is not in secrets"),
                ))
            }
        }
        (None, Some(text)) => {
            let template = Template::parse(text)
                .map_err(|e| error(format!("{field}.template"), e.to_string()))?;
            for name in template.value_names() {
                if !known.contains(name) {
                    return Err(error(
                        format!("{field}.template"),
                        format!("uses {name:?}, which is not in secrets"),
                    ));
                }
            }
            Ok(Source::Template(template))
        }
    }
}
