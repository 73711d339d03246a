//! Picking one property out of a secret's value, the way the tools users come from do it:
//!
//! - ESO (`remoteRef.property`, AWS and Vault): the value is JSON; a property naming a top-level
//!   key literally wins (`"db.password"` as one key), otherwise it is a dotted path (`db.password`,
//!   `hosts.0`; `\.` escapes a dot inside a segment), as gjson reads it. Strings come out bare,
//!   numbers and booleans as their JSON text, `null` as the empty string, objects and arrays as
//!   compact JSON.
//! - vals (`#/db/password`): a JSON pointer-like path (`~1` is `/`, `~0` is `~`) into the value
//!   read as JSON, or as YAML when it is not JSON.
//!
//! The parsed document is wiped (every string zeroized) before it is dropped. Errors say what is
//! missing or malformed, never what is there.

use serde_json::Value;
use zeroize::Zeroize;

use crate::value::SecretValue;

/// Why a property could not be picked. Carries no part of the value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PropertyError {
    /// The value is not a JSON document (nor YAML, for the `#/` form).
    #[error("the value is not JSON, so it has no properties")]
    NotJson,
    /// The document has nothing at this path.
    #[error("the value has no such property")]
    Missing,
    /// The property itself is malformed (an empty segment).
    #[error("malformed property path: {0}")]
    InvalidPath(&'static str),
}

/// The property `property` of the JSON (or, for `#/...`, YAML) document `document`.
pub fn pick_property(document: &[u8], property: &str) -> Result<SecretValue, PropertyError> {
    if let Some(pointer) = property.strip_prefix('#') {
        let segments = pointer_segments(pointer)?;
        let doc = Scrubbed::parse(document, true)?;
        return walk(&doc.0, segments.iter().map(String::as_str)).map(render);
    }
    if property.is_empty() {
        return Err(PropertyError::InvalidPath("empty"));
    }
    let doc = Scrubbed::parse(document, false)?;
    if let Some(found) = doc.0.as_object().and_then(|o| o.get(property)) {
        return Ok(render(found));
    }
    let segments = dotted_segments(property)?;
    walk(&doc.0, segments.iter().map(String::as_str)).map(render)
}

/// `a.b\.c` → `["a", "b.c"]`.
fn dotted_segments(path: &str) -> Result<Vec<String>, PropertyError> {
    let mut segments = vec![String::new()];
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped) => segments
                    .last_mut()
                    .expect("invariant: never empty")
                    .push(escaped),
                None => return Err(PropertyError::InvalidPath("trailing backslash")),
            },
            '.' => segments.push(String::new()),
            c => segments.last_mut().expect("invariant: never empty").push(c),
        }
    }
    if segments.iter().any(String::is_empty) {
        return Err(PropertyError::InvalidPath("empty segment"));
    }
    Ok(segments)
}

/// `/a/b~1c` → `["a", "b/c"]`; `""` and `"/"` → `[]` (the whole document).
fn pointer_segments(pointer: &str) -> Result<Vec<String>, PropertyError> {
    let Some(rest) = pointer.strip_prefix('/') else {
        return if pointer.is_empty() {
            Ok(Vec::new())
        } else {
            Err(PropertyError::InvalidPath("expected #/ before the path"))
        };
    };
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    rest.split('/')
        .map(|s| {
            if s.is_empty() {
                Err(PropertyError::InvalidPath("empty segment"))
            } else {
                Ok(s.replace("~1", "/").replace("~0", "~"))
            }
        })
        .collect()
}

fn walk<'a, 'b>(
    mut at: &'a Value,
    segments: impl Iterator<Item = &'b str>,
) -> Result<&'a Value, PropertyError> {
    for segment in segments {
        at = match at {
            Value::Object(map) => map.get(segment),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        }
        .ok_or(PropertyError::Missing)?;
    }
    Ok(at)
}

fn render(value: &Value) -> SecretValue {
    match value {
        Value::String(s) => SecretValue::from_text(s),
        Value::Null => SecretValue::from_text(""),
        other => SecretValue::from_json(other.to_string()),
    }
}

/// A JSON document (a Vault KV secret's data) as a text [`SecretValue`], the document wiped.
pub(crate) fn secret_json(document: Value) -> SecretValue {
    let document = Scrubbed(document);
    SecretValue::from_string(document.0.to_string())
}

/// A parsed document whose strings are zeroized when it is dropped.
struct Scrubbed(Value);

impl Scrubbed {
    fn parse(document: &[u8], yaml_too: bool) -> Result<Self, PropertyError> {
        match serde_json::from_slice(document) {
            Ok(value) => Ok(Scrubbed(value)),
            Err(_) if yaml_too => serde_yaml::from_slice(document)
                .map(Scrubbed)
                .map_err(|_| PropertyError::NotJson),
            Err(_) => Err(PropertyError::NotJson),
        }
    }
}

impl Drop for Scrubbed {
    fn drop(&mut self) {
        fn scrub(value: &mut Value) {
            match value {
                Value::String(s) => s.zeroize(),
                Value::Array(items) => items.iter_mut().for_each(scrub),
                Value::Object(map) => map.values_mut().for_each(scrub),
                Value::Null | Value::Bool(_) | Value::Number(_) => {}
            }
        }
        scrub(&mut self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(document: &str, property: &str) -> Result<String, PropertyError> {
        pick_property(document.as_bytes(), property)
            .map(|v| v.expose_str().expect("text").to_owned())
    }

    const DOC: &str = r#"{
        "username": "etl",
        "db.password": "literal-wins",
        "db": {"password": "nested", "port": 5432, "tls": true, "ca": null,
               "a.b": "escaped", "list": ["x", {"y": "z"}]},
        "hosts": ["h0", "h1"]
    }"#;

    #[test]
    fn top_level_key_is_returned_bare() {
        assert_eq!(pick(DOC, "username").unwrap(), "etl");
    }

    #[test]
    fn literal_dotted_key_wins_over_the_path() {
        assert_eq!(pick(DOC, "db.password").unwrap(), "literal-wins");
    }

    #[test]
    fn dotted_path_walks_objects_and_arrays() {
        assert_eq!(
            pick(r#"{"db":{"password":"nested"}}"#, "db.password").unwrap(),
            "nested"
        );
        assert_eq!(pick(DOC, "hosts.1").unwrap(), "h1");
        assert_eq!(pick(DOC, "db.list.1.y").unwrap(), "z");
        assert_eq!(pick(DOC, r"db.a\.b").unwrap(), "escaped");
    }

    #[test]
    fn scalars_render_as_json_text_and_null_as_empty() {
        assert_eq!(pick(DOC, "db.port").unwrap(), "5432");
        assert_eq!(pick(DOC, "db.tls").unwrap(), "true");
        assert_eq!(pick(DOC, "db.ca").unwrap(), "");
    }

    #[test]
    fn values_that_are_not_strings_are_marked_as_json() {
        let json = |property: &str| {
            pick_property(DOC.as_bytes(), property)
                .unwrap()
                .json()
                .map(str::to_owned)
        };
        assert_eq!(json("#/db/port").as_deref(), Some("5432"));
        assert_eq!(json("#/db/tls").as_deref(), Some("true"));
        assert_eq!(json("#/hosts").as_deref(), Some(r#"["h0","h1"]"#));
        assert_eq!(json("#/db/password"), None);
        assert_eq!(json("#/db/ca"), None);
    }

    #[test]
    fn objects_and_arrays_render_as_compact_json() {
        assert_eq!(pick(DOC, "hosts").unwrap(), r#"["h0","h1"]"#);
        assert_eq!(pick(DOC, "db.list.1").unwrap(), r#"{"y":"z"}"#);
    }

    #[test]
    fn pointer_form_walks_slashes_with_escapes() {
        assert_eq!(pick(DOC, "#/db/password").unwrap(), "nested");
        assert_eq!(pick(DOC, "#/hosts/0").unwrap(), "h0");
        assert_eq!(pick(r#"{"a/b":{"c~d":"v"}}"#, "#/a~1b/c~0d").unwrap(), "v");
        // The pointer form never reads a dotted key as a path.
        assert_eq!(pick(DOC, "#/db.password").unwrap(), "literal-wins");
    }

    #[test]
    fn pointer_form_reads_yaml_too() {
        assert_eq!(
            pick("db:\n  password: from-yaml\n", "#/db/password").unwrap(),
            "from-yaml"
        );
        assert_eq!(
            pick("db:\n  password: x\n", "db.password"),
            Err(PropertyError::NotJson)
        );
    }

    #[test]
    fn bare_hash_returns_the_whole_document() {
        assert_eq!(pick(r#"{"a":1}"#, "#/").unwrap(), r#"{"a":1}"#);
        assert_eq!(pick(r#""s""#, "#").unwrap(), "s");
    }

    #[test]
    fn missing_properties_and_non_json_values_are_errors() {
        assert_eq!(pick(DOC, "nope"), Err(PropertyError::Missing));
        assert_eq!(pick(DOC, "db.password.deeper"), Err(PropertyError::Missing));
        assert_eq!(pick(DOC, "hosts.9"), Err(PropertyError::Missing));
        assert_eq!(pick(DOC, "#/nope"), Err(PropertyError::Missing));
        assert_eq!(pick("hunter2", "password"), Err(PropertyError::NotJson));
    }

    #[test]
    fn malformed_paths_are_errors() {
        assert!(matches!(pick(DOC, ""), Err(PropertyError::InvalidPath(_))));
        assert!(matches!(
            pick(DOC, "db..x"),
            Err(PropertyError::InvalidPath(_))
        ));
        assert!(matches!(
            pick(DOC, "#/db//x"),
            Err(PropertyError::InvalidPath(_))
        ));
        assert!(matches!(
            pick(DOC, "#db"),
            Err(PropertyError::InvalidPath(_))
        ));
        assert!(matches!(
            pick(DOC, "db\\"),
            Err(PropertyError::InvalidPath(_))
        ));
    }

    #[test]
    fn errors_never_contain_the_value() {
        let secret = r#"{"password":"MARKER-4711"}"#;
        for property in ["nope", "password.x", "#/x", "a..b"] {
            let error = pick(secret, property).unwrap_err();
            assert!(!format!("{error} {error:?}").contains("MARKER-4711"));
        }
    }
}
