//! Reading and writing manifest streams: YAML (one or many documents) or JSON (one object or a stream),
//! with `v1` `List`s flattened, each object classified as a Secret, a seal SealedSecret, a Bitnami
//! SealedSecret or something else, and remembered with the line it starts on.
//!
//! Errors quote no content. A serde message can carry the offending value (`invalid value: string
//! "hunter2"`), and the value may be a plaintext secret, so every quoted span in a message is replaced
//! before it leaves this module.

use k8s_openapi::api::core::v1::Secret;
use serde::Serialize;
use serde_json::Value;

use crate::bitnami::{BITNAMI_API_VERSION, BitnamiSealedSecret};
use crate::sealed_secret::{API_VERSION, SealedSecret};

/// The serialization of a manifest stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// YAML, documents separated by `---`.
    #[default]
    Yaml,
    /// JSON; several objects are written as a `v1` `List`.
    Json,
}

impl Format {
    /// JSON when the first non-blank character opens a JSON value, YAML otherwise.
    pub fn detect(text: &str) -> Self {
        match text.trim_start().chars().next() {
            Some('{' | '[') => Format::Json,
            _ => Format::Yaml,
        }
    }
}

/// One object of a stream, classified.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Object {
    /// A `v1` Secret.
    Secret(Box<Secret>),
    /// A `seal.dev/v1alpha1` SealedSecret.
    SealedSecret(Box<SealedSecret>),
    /// A `bitnami.com/v1alpha1` SealedSecret.
    Bitnami(Box<BitnamiSealedSecret>),
    /// Anything else, kept as parsed.
    Other {
        /// Its `apiVersion`, or empty.
        api_version: String,
        /// Its `kind`, or empty.
        kind: String,
        /// The object as parsed.
        value: Value,
    },
}

impl Object {
    /// `kind` as a user would name it in a message.
    pub fn describe(&self) -> String {
        match self {
            Object::Secret(_) => "Secret".into(),
            Object::SealedSecret(_) => "SealedSecret (seal.dev/v1alpha1)".into(),
            Object::Bitnami(_) => "SealedSecret (bitnami.com/v1alpha1)".into(),
            Object::Other { kind, .. } if kind.is_empty() => "an object without a kind".into(),
            Object::Other { kind, .. } => kind.clone(),
        }
    }
}

/// An object with where it came from.
#[derive(Debug, Clone)]
pub struct Located {
    /// 1-based line where its document starts.
    pub line: usize,
    /// The object.
    pub object: Object,
}

/// A stream could not be read. Messages say where and what, and quote no content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ManifestError {
    /// 1-based line of the problem (or of the document holding it).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Parses a YAML or JSON stream into its objects, `List`s flattened, empty documents skipped.
pub fn parse(text: &str) -> Result<Vec<Located>, ManifestError> {
    let mut out = Vec::new();
    match Format::detect(text) {
        Format::Json => {
            let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
            let mut start = 0;
            while let Some(next) = stream.next() {
                let line = line_of_offset(text, start + leading_whitespace(&text[start..]));
                let value = next.map_err(|e| ManifestError {
                    line: e.line(),
                    message: format!("not valid JSON: {}", redact(&e.to_string())),
                })?;
                start = stream.byte_offset();
                classify_into(value, line, &mut out)?;
            }
        }
        Format::Yaml => {
            for (line, document) in yaml_documents(text) {
                let value: Value = serde_yaml::from_str(document).map_err(|e| ManifestError {
                    line: line + e.location().map_or(0, |l| l.line().saturating_sub(1)),
                    message: format!("not valid YAML: {}", yaml_message(&e)),
                })?;
                if !value.is_null() {
                    classify_into(value, line, &mut out)?;
                }
            }
        }
    }
    Ok(out)
}

/// Classifies one already-parsed object (flattening a `List`).
fn classify_into(value: Value, line: usize, out: &mut Vec<Located>) -> Result<(), ManifestError> {
    let field = |name: &str| {
        value
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    let invalid = |what: &str, e: &serde_json::Error| ManifestError {
        line,
        message: format!("invalid {what}: {}", redact(&e.to_string())),
    };
    let object = match (api_version.as_str(), kind.as_str()) {
        ("v1" | "", "List" | "SecretList") => {
            let Value::Object(mut map) = value else {
                unreachable!("a value with a kind field is an object")
            };
            let items = match map.remove("items") {
                Some(Value::Array(items)) => items,
                None | Some(Value::Null) => Vec::new(),
                Some(_) => {
                    return Err(ManifestError {
                        line,
                        message: "List.items is not a list".into(),
                    });
                }
            };
            for item in items {
                classify_into(item, line, out)?;
            }
            return Ok(());
        }
        ("v1" | "", "Secret") => Object::Secret(Box::new(
            serde_json::from_value(value).map_err(|e| invalid("Secret", &e))?,
        )),
        (API_VERSION, "SealedSecret") => Object::SealedSecret(Box::new(
            serde_json::from_value(value).map_err(|e| invalid("SealedSecret", &e))?,
        )),
        (BITNAMI_API_VERSION, "SealedSecret") => Object::Bitnami(Box::new(
            serde_json::from_value(value).map_err(|e| invalid("SealedSecret", &e))?,
        )),
        _ => Object::Other {
            api_version,
            kind,
            value,
        },
    };
    out.push(Located { line, object });
    Ok(())
}

/// Splits a YAML stream at `---` lines, keeping each document's 1-based starting line. Documents
/// are parsed one by one so that every error knows its line.
fn yaml_documents(text: &str) -> Vec<(usize, &str)> {
    let mut documents = Vec::new();
    let mut start_byte = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        let separator = bare == "---" || bare.starts_with("--- ") || bare == "...";
        if separator {
            documents.push((start_line, &text[start_byte..offset]));
            start_byte = offset + line.len();
            start_line = index + 2;
        }
        offset += line.len();
    }
    documents.push((start_line, &text[start_byte..]));
    documents
}

fn leading_whitespace(text: &str) -> usize {
    text.len() - text.trim_start().len()
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |before| before.matches('\n').count())
        + 1
}

/// serde_yaml's message without its trailing location (which is relative to the document).
///
/// serde_yaml may prefix the message with the path of keys above the problem, and a mis-indented
/// line can turn a value into a key; only the problem itself, after the last `": "`, is kept.
fn yaml_message(e: &serde_yaml::Error) -> String {
    let text = e.to_string();
    let text = text.split(" at line ").next().unwrap_or(&text);
    let problem = text.rsplit(": ").next().unwrap_or(text);
    redact(problem)
}

/// Replaces every double- or back-quoted span with `"…"`, so no value from the input is echoed.
///
/// serde writes strings in double quotes with `Debug` escapes, so inside a double-quoted span a
/// backslash escapes the next character (`"a\"b"` is one span).
pub fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        if c == '"' || c == '`' {
            let close = c;
            out.push(close);
            out.push('…');
            while let Some(inner) = chars.next() {
                if inner == '\\' && close == '"' {
                    chars.next();
                } else if inner == close {
                    break;
                }
            }
            out.push(close);
        } else {
            out.push(c);
        }
    }
    out
}

/// Serializes objects as a stream: YAML documents separated by `---`, or JSON (one object as is,
/// several as a `v1` `List`). The result ends with a newline.
///
/// # Panics
/// Never: any JSON value has a YAML form.
pub fn write<T: Serialize>(objects: &[T], format: Format) -> Result<String, serde_json::Error> {
    match format {
        Format::Json => {
            let mut text = if let [one] = objects {
                serde_json::to_string_pretty(one)?
            } else {
                let items = objects
                    .iter()
                    .map(serde_json::to_value)
                    .collect::<Result<Vec<_>, _>>()?;
                serde_json::to_string_pretty(&serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "List",
                    "items": items,
                }))?
            };
            text.push('\n');
            Ok(text)
        }
        Format::Yaml => {
            let mut text = String::new();
            for object in objects {
                append_yaml(&mut text, object)?;
            }
            Ok(text)
        }
    }
}

/// Appends one object to a YAML stream, with a `---` separator unless it is the first. Lets a caller
/// render documents one at a time instead of holding them all.
///
/// # Panics
/// Never: any JSON value has a YAML form.
pub fn append_yaml<T: Serialize>(stream: &mut String, object: &T) -> Result<(), serde_json::Error> {
    // Through serde_json::Value so that key order and field names are exactly the JSON ones.
    let value = serde_json::to_value(object)?;
    if !stream.is_empty() {
        stream.push_str("---\n");
    }
    stream.push_str(
        &serde_yaml::to_string(&value)
            .expect("invariant: a serde_json::Value always serializes to YAML"),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_stream_with_list_and_other_kinds_is_classified_with_lines() {
        let text = "# leading comment\napiVersion: v1\nkind: Secret\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Secret, metadata: {name: b}}\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: c}}\n";
        let objects = parse(text).unwrap();
        let summary: Vec<_> = objects
            .iter()
            .map(|o| (o.line, o.object.describe()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (1, "Secret".to_string()),
                (7, "Secret".to_string()),
                (7, "ConfigMap".to_string())
            ]
        );
    }

    #[test]
    fn json_stream_of_two_objects_is_read_with_lines() {
        let text = "{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{\"name\":\"a\"}}\n\n{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{\"name\":\"b\"}}";
        let lines: Vec<_> = parse(text).unwrap().iter().map(|o| o.line).collect();
        assert_eq!(lines, vec![1, 3]);
    }

    #[test]
    fn invalid_secret_reports_its_line_and_never_the_value() {
        let text = "kind: ConfigMap\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: x}\ndata:\n  password: 'hunter2!!'\n";
        let err = parse(text).unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.message.starts_with("invalid Secret"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn yaml_syntax_error_points_at_the_line_in_the_whole_file() {
        let text = "kind: ConfigMap\n---\nkind: Secret\ndata: [unclosed\n";
        let err = parse(text).unwrap_err();
        assert!(err.line >= 4, "{err}");
        assert!(err.message.starts_with("not valid YAML"), "{err}");
    }

    #[test]
    fn redact_replaces_quoted_spans() {
        assert_eq!(
            redact(r#"invalid value: string "s3cret", expected `base64`"#),
            r#"invalid value: string "…", expected `…`"#
        );
    }

    #[test]
    fn escaped_quotes_do_not_end_a_redacted_span() {
        // fuzz/regressions/manifest_parse/escaped-quote-min, found by the manifest_parse fuzz target:
        // serde quoted the value as "n{\"cnQn3entpF2n1ent" and the escaped quote ended the span, so
        // the rest of the value was printed.
        let text = "-:\nkind: Secret\nmetadata: n{\"cnQn3entpF2n1ent";
        let err = parse(text).unwrap_err();
        assert!(err.message.starts_with("invalid Secret"), "{err}");
        assert!(!err.message.contains("cnQn3ent"), "{err}");
        assert_eq!(
            redact(r#"invalid type: string "a\"b\\", expected `x`"#),
            r#"invalid type: string "…", expected `…`"#
        );
    }

    #[test]
    fn writes_yaml_documents_and_json_lists() {
        let objects = vec![serde_json::json!({"a": 1}), serde_json::json!({"b": 2})];
        assert_eq!(write(&objects, Format::Yaml).unwrap(), "a: 1\n---\nb: 2\n");
        let json: Value = serde_json::from_str(&write(&objects, Format::Json).unwrap()).unwrap();
        assert_eq!(json["kind"], "List");
        assert_eq!(json["items"][1]["b"], 2);
    }
}
