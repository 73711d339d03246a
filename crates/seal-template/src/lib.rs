//! The template language that builds secret values from other secret values: a SealedSecret's
//! `template.data`, an ExternalSecret's `target.template`, and the files `seal-agent` renders (a DSN,
//! an `.env`, a JSON config).
//!
//! It is the subset of Go's `text/template` those templates use in practice, so Bitnami and ESO
//! templates keep working, and nothing more: a template can read the values it is given and
//! transform them with a few pure functions. It cannot reach the environment, files or the network,
//! loop, or define templates, so rendering a template from an untrusted manifest is safe.
//!
//! ```text
//! postgres://{{ .username | urlquery }}:{{ index . "db-password" | urlquery }}@db:5432/app
//! {"token": {{ .token | quote }}}
//! {{- /* comments, and {{- / -}} trim the whitespace beside an action, as in Go */ -}}
//! ```
//!
//! - A value: `.name` (letters, digits and `_`), or `index . "any-key.name"` for any other key.
//! - A string literal: `"text"` with `\"`, `\\`, `\n`, `\t` escapes.
//! - Functions, applied as `value | fn` or `fn value`: `b64enc`, `b64dec`, `upper`, `lower`, `trim`,
//!   `quote` (a JSON string, quotes included), `urlquery` (Go's query escaping), `toString` (no-op,
//!   for ESO templates).
//!
//! Values are bytes and stay in zeroizing buffers throughout. Errors give the position in the
//! template and the names of values, never a value.

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use seal_core::SecretBytes;
use zeroize::Zeroizing;

/// A position in a template, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Line number.
    pub line: usize,
    /// Column, in characters.
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// Why a template does not parse or render. Messages quote the template (which is not secret) and
/// value names, never values.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TemplateError {
    /// `{{` without its `}}`.
    #[error("{at}: `{{{{` is never closed by `}}}}`")]
    Unclosed {
        /// Where the action opens.
        at: Position,
    },
    /// An action that is not a value, a literal or a function applied to one.
    #[error("{at}: {message}")]
    Syntax {
        /// Where the action opens.
        at: Position,
        /// What is wrong, quoting the action.
        message: String,
    },
    /// The template reads a value that is not there.
    #[error("{at}: there is no value named {name:?}")]
    MissingValue {
        /// Where the action opens.
        at: Position,
        /// The missing name.
        name: String,
    },
    /// A text function was given bytes that are not UTF-8.
    #[error("{at}: {function} needs UTF-8 text, and its input is not")]
    NotUtf8 {
        /// Where the action opens.
        at: Position,
        /// The function.
        function: &'static str,
    },
    /// `b64dec` was given something that is not standard base64.
    #[error("{at}: b64dec: its input is not valid base64")]
    NotBase64 {
        /// Where the action opens.
        at: Position,
    },
}

/// The values a template reads, by name.
pub trait Values {
    /// The value named `name`, if any.
    fn value(&self, name: &str) -> Option<&[u8]>;
}

impl Values for BTreeMap<String, SecretBytes> {
    fn value(&self, name: &str) -> Option<&[u8]> {
        self.get(name).map(SecretBytes::expose)
    }
}

impl<S: std::hash::BuildHasher> Values for HashMap<String, SecretBytes, S> {
    fn value(&self, name: &str) -> Option<&[u8]> {
        self.get(name).map(SecretBytes::expose)
    }
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action { at: Position, pipeline: Pipeline },
}

#[derive(Debug, Clone)]
struct Pipeline {
    operand: Operand,
    /// Applied in order to the operand.
    functions: Vec<Function>,
}

#[derive(Debug, Clone)]
enum Operand {
    Value(String),
    Literal(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Function {
    B64Enc,
    B64Dec,
    Upper,
    Lower,
    Trim,
    Quote,
    UrlQuery,
    ToString,
}

impl Function {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "b64enc" => Self::B64Enc,
            "b64dec" => Self::B64Dec,
            "upper" => Self::Upper,
            "lower" => Self::Lower,
            "trim" => Self::Trim,
            "quote" => Self::Quote,
            "urlquery" => Self::UrlQuery,
            "toString" => Self::ToString,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::B64Enc => "b64enc",
            Self::B64Dec => "b64dec",
            Self::Upper => "upper",
            Self::Lower => "lower",
            Self::Trim => "trim",
            Self::Quote => "quote",
            Self::UrlQuery => "urlquery",
            Self::ToString => "toString",
        }
    }

    fn apply(self, input: &[u8], at: Position) -> Result<Zeroizing<Vec<u8>>, TemplateError> {
        let text = || {
            std::str::from_utf8(input).map_err(|_| TemplateError::NotUtf8 {
                at,
                function: self.name(),
            })
        };
        let out = match self {
            Self::B64Enc => STANDARD.encode(input).into_bytes(),
            Self::B64Dec => STANDARD
                .decode(input)
                .map_err(|_| TemplateError::NotBase64 { at })?,
            Self::Upper => text()?.to_uppercase().into_bytes(),
            Self::Lower => text()?.to_lowercase().into_bytes(),
            Self::Trim => text()?.trim().as_bytes().to_vec(),
            Self::Quote => serde_json::Value::String(text()?.to_owned())
                .to_string()
                .into_bytes(),
            Self::UrlQuery => query_escape(input).into_bytes(),
            Self::ToString => input.to_vec(),
        };
        Ok(Zeroizing::new(out))
    }
}

/// Go's `url.QueryEscape`: unreserved bytes stay, space becomes `+`, the rest `%XX`.
fn query_escape(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len());
    for &byte in input {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
    out
}

impl Template {
    /// Parses `source`.
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        let mut nodes = Vec::new();
        let mut rest = source;
        let mut offset = 0;
        let mut trim_next_text = false;
        while let Some(open) = rest.find("{{") {
            let at = position(source, offset + open);
            let after_open = &rest[open + 2..];
            let close = after_open
                .find("}}")
                .ok_or(TemplateError::Unclosed { at })?;
            let inner = &after_open[..close];
            let trim_left = inner.starts_with("- ") || inner == "-" || inner.starts_with("-\n");
            let trim_right = inner.ends_with(" -") || inner.ends_with("\n-");
            let mut text = &rest[..open];
            if trim_next_text {
                text = text.trim_start();
            }
            if trim_left {
                text = text.trim_end();
            }
            if !text.is_empty() {
                nodes.push(Node::Text(text.to_owned()));
            }
            let body = inner
                .strip_prefix('-')
                .filter(|_| trim_left)
                .unwrap_or(inner);
            let body = body
                .strip_suffix('-')
                .filter(|_| trim_right)
                .unwrap_or(body);
            if let Some(pipeline) = parse_action(body.trim(), at)? {
                nodes.push(Node::Action { at, pipeline });
            }
            trim_next_text = trim_right;
            let consumed = open + 2 + close + 2;
            offset += consumed;
            rest = &rest[consumed..];
        }
        let text = if trim_next_text {
            rest.trim_start()
        } else {
            rest
        };
        if !text.is_empty() {
            nodes.push(Node::Text(text.to_owned()));
        }
        Ok(Self { nodes })
    }

    /// The names of the values the template reads, in order of first use.
    pub fn value_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for node in &self.nodes {
            if let Node::Action {
                pipeline:
                    Pipeline {
                        operand: Operand::Value(name),
                        ..
                    },
                ..
            } = node
                && !names.contains(&name.as_str())
            {
                names.push(name);
            }
        }
        names
    }

    /// Renders the template with `values`.
    pub fn render(&self, values: &impl Values) -> Result<SecretBytes, TemplateError> {
        let mut out = Zeroizing::new(Vec::new());
        for node in &self.nodes {
            match node {
                Node::Text(text) => out.extend_from_slice(text.as_bytes()),
                Node::Action { at, pipeline } => {
                    let mut current = match &pipeline.operand {
                        Operand::Value(name) => Zeroizing::new(
                            values
                                .value(name)
                                .ok_or_else(|| TemplateError::MissingValue {
                                    at: *at,
                                    name: name.clone(),
                                })?
                                .to_vec(),
                        ),
                        Operand::Literal(text) => Zeroizing::new(text.clone().into_bytes()),
                    };
                    for function in &pipeline.functions {
                        current = function.apply(&current, *at)?;
                    }
                    out.extend_from_slice(&current);
                }
            }
        }
        Ok(SecretBytes::from(out))
    }
}

/// Parses what is between `{{` and `}}` (trim markers removed); `None` for a comment.
fn parse_action(body: &str, at: Position) -> Result<Option<Pipeline>, TemplateError> {
    let syntax = |message: String| TemplateError::Syntax { at, message };
    if let Some(comment) = body.strip_prefix("/*") {
        return if comment.ends_with("*/") {
            Ok(None)
        } else {
            Err(syntax("a comment must end with `*/` before `}}`".into()))
        };
    }
    if body.is_empty() {
        return Err(syntax("an empty action".into()));
    }
    let mut stages = split_pipeline(body).map_err(&syntax)?.into_iter();
    let first = stages
        .next()
        .expect("invariant: split yields one stage at least");
    let (operand, mut functions) = parse_term(&first).map_err(&syntax)?;
    for stage in stages {
        let name = stage.trim();
        let function = Function::from_name(name)
            .ok_or_else(|| syntax(format!("unknown function `{name}` after `|`{HINT}")))?;
        functions.push(function);
    }
    Ok(Some(Pipeline { operand, functions }))
}

const HINT: &str = " (known: b64enc, b64dec, upper, lower, trim, quote, urlquery, toString)";

/// Splits at `|` outside string literals.
fn split_pipeline(body: &str) -> Result<Vec<String>, String> {
    let mut stages = vec![String::new()];
    let mut in_string = false;
    let mut escaped = false;
    for c in body.chars() {
        let stage = stages.last_mut().expect("invariant: one stage at least");
        if in_string {
            stage.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '|' {
            stages.push(String::new());
        } else {
            if c == '"' {
                in_string = true;
            }
            stage.push(c);
        }
    }
    if in_string {
        return Err(format!("`{body}`: a string literal is never closed"));
    }
    if stages.iter().any(|s| s.trim().is_empty()) {
        return Err(format!("`{body}`: an empty stage around `|`"));
    }
    Ok(stages)
}

/// A term: `.name`, `index . "key"`, `"literal"`, or `fn term` (functions applied innermost
/// first, returned in application order).
fn parse_term(term: &str) -> Result<(Operand, Vec<Function>), String> {
    let term = term.trim();
    if let Some(name) = term.strip_prefix('.') {
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Ok((Operand::Value(name.to_owned()), Vec::new()));
        }
        return Err(format!(
            "`{term}`: a value name after `.` has only letters, digits and `_`; write `index . \"{name}\"` for other keys"
        ));
    }
    if term.starts_with('"') {
        return Ok((Operand::Literal(parse_string(term)?), Vec::new()));
    }
    let (word, argument) = term
        .split_once(char::is_whitespace)
        .ok_or_else(|| format!("`{term}` is not a value, a string or a function call"))?;
    if word == "index" {
        let argument = argument.trim_start();
        let key = argument
            .strip_prefix('.')
            .filter(|k| k.starts_with(char::is_whitespace))
            .ok_or_else(|| format!("`{term}`: index takes `.` and a quoted key"))?;
        return Ok((Operand::Value(parse_string(key.trim())?), Vec::new()));
    }
    let function =
        Function::from_name(word).ok_or_else(|| format!("unknown function `{word}`{HINT}"))?;
    let (operand, mut functions) = parse_term(argument)?;
    functions.push(function);
    Ok((operand, functions))
}

/// A double-quoted string literal, whole.
fn parse_string(literal: &str) -> Result<String, String> {
    let inner = literal
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .filter(|_| literal.len() >= 2)
        .ok_or_else(|| format!("`{literal}` is not one double-quoted string"))?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('"') => out.push('"'),
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                _ => return Err(format!("`{literal}`: unknown escape")),
            },
            '"' => return Err(format!("`{literal}` is not one double-quoted string")),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn position(source: &str, byte_offset: usize) -> Position {
    let before = &source[..byte_offset];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit_once('\n')
        .map_or(before, |(_, last)| last)
        .chars()
        .count()
        + 1;
    Position { line, column }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, SecretBytes> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), SecretBytes::new(v.as_bytes().to_vec())))
            .collect()
    }

    fn render(template: &str, pairs: &[(&str, &str)]) -> Result<String, TemplateError> {
        let rendered = Template::parse(template)?.render(&values(pairs))?;
        Ok(String::from_utf8(rendered.expose().to_vec()).unwrap())
    }

    #[test]
    fn values_by_field_and_by_index_fill_a_dsn() {
        let out = render(
            "postgres://{{ .username }}:{{ index . \"db-password\" | urlquery }}@db:5432/app",
            &[("username", "etl"), ("db-password", "p@ss word/+")],
        )
        .unwrap();
        assert_eq!(out, "postgres://etl:p%40ss+word%2F%2B@db:5432/app");
    }

    #[test]
    fn functions_apply_in_pipeline_order_and_in_call_form() {
        let pairs = [("token", "  Abc  ")];
        assert_eq!(
            render("{{ .token | trim | upper }}", &pairs).unwrap(),
            "ABC"
        );
        assert_eq!(render("{{ lower .token | trim }}", &pairs).unwrap(), "abc");
        assert_eq!(
            render("{{ .token | b64enc | b64dec | toString }}", &pairs).unwrap(),
            "  Abc  "
        );
    }

    #[test]
    fn quote_makes_a_json_string() {
        let out = render(
            "{\"password\": {{ .password | quote }}}",
            &[("password", "a\"b\\c\nd")],
        )
        .unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed["password"], "a\"b\\c\nd");
    }

    #[test]
    fn trim_markers_and_comments_behave_as_in_go() {
        let out = render(
            "A:\n  {{- .a -}}\n  :B{{/* a comment */}}\n{{- /* trimmed */ -}}\n!",
            &[("a", "x")],
        )
        .unwrap();
        assert_eq!(out, "A:x:B!");
    }

    #[test]
    fn literals_render_with_escapes() {
        assert_eq!(render(r#"{{ "a\"b" | upper }}"#, &[]).unwrap(), "A\"B");
    }

    #[test]
    fn a_missing_value_is_named_with_its_position() {
        let error = render("line one\n  {{ .absent }}", &[("present", "s3cret")]).unwrap_err();
        assert_eq!(
            error,
            TemplateError::MissingValue {
                at: Position { line: 2, column: 3 },
                name: "absent".into()
            }
        );
        assert_eq!(
            error.to_string(),
            "line 2, column 3: there is no value named \"absent\""
        );
    }

    #[test]
    fn errors_never_contain_values() {
        let secret = "s3cret-\u{fffd}-value";
        let cases = [
            "{{ .v | b64dec }}",
            "{{ .v | nosuch }}",
            "{{ .v",
            "{{ }}",
            "{{ .missing }}",
            "{{ index . v }}",
        ];
        for case in cases {
            let error = render(case, &[("v", secret)]).unwrap_err().to_string();
            assert!(!error.contains("s3cret"), "{case}: {error}");
        }
        let not_utf8 = Template::parse("{{ .v | upper }}")
            .unwrap()
            .render(&BTreeMap::from([(
                "v".to_owned(),
                SecretBytes::new(vec![0xff, b's', b'3']),
            )]))
            .unwrap_err();
        assert!(matches!(
            not_utf8,
            TemplateError::NotUtf8 {
                function: "upper",
                ..
            }
        ));
    }

    #[test]
    fn syntax_errors_say_what_is_wrong() {
        for (template, expected) in [
            ("{{ .a", "is never closed"),
            ("{{ .a-b }}", "index . \"a-b\""),
            ("{{ .a | shout }}", "unknown function `shout`"),
            ("{{ env \"HOME\" }}", "unknown function `env`"),
            ("{{ .a | }}", "empty stage"),
            ("{{ \"open }}", "never closed"),
            ("{{ /* open }}", "must end with `*/`"),
        ] {
            let error = Template::parse(template).unwrap_err().to_string();
            assert!(error.contains(expected), "{template}: {error}");
        }
    }

    #[test]
    fn value_names_lists_what_the_template_reads() {
        let template =
            Template::parse("{{ .a }}{{ index . \"b-c\" }}{{ .a | upper }}{{ \"lit\" }}").unwrap();
        assert_eq!(template.value_names(), ["a", "b-c"]);
    }

    #[test]
    fn binary_values_pass_through_untouched() {
        let bytes = vec![0u8, 0xff, 0x10, b'{'];
        let rendered = Template::parse("{{ .bin }}")
            .unwrap()
            .render(&BTreeMap::from([(
                "bin".to_owned(),
                SecretBytes::new(bytes.clone()),
            )]))
            .unwrap();
        assert_eq!(rendered.expose(), bytes);
    }

    proptest::proptest! {
        #[test]
        fn text_without_braces_renders_as_itself(text in "[^{}]*") {
            proptest::prop_assert_eq!(render(&text, &[]).unwrap(), text);
        }

        #[test]
        fn any_value_round_trips_through_b64(value in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let map = BTreeMap::from([("v".to_owned(), SecretBytes::new(value.clone()))]);
            let rendered = Template::parse("{{ .v | b64enc | b64dec }}").unwrap().render(&map).unwrap();
            proptest::prop_assert_eq!(rendered.expose(), value.as_slice());
        }

        #[test]
        fn parsing_never_panics(source in ".{0,64}") {
            let _ = Template::parse(&source);
        }
    }
}
