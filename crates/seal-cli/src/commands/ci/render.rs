//! `seal render FILE...`: every `ref+` reference in string values of YAML or JSON documents
//! (helmfile and Helm values, manifests) replaced by its value, structure and key order kept,
//! as `vals eval` does. A string that is exactly a reference becomes the value; a reference
//! inside a longer string (ended by `+` or whitespace) is replaced in place. Keys are never
//! resolved.
//!
//! Types follow vals v0.46's: a string that is exactly one reference with a `#/` fragment takes
//! the type of what the fragment picks (a boolean, a map, a list; a number from an AWS secret,
//! which vals parses as YAML, but a string from Vault, whose numbers vals reads as JSON number
//! text) ([`vals_typed`]); any other value is a string. `--exclude-secret` leaves `secretref+` references as they are, for output meant to
//! be reviewed.
//!
//! Every reference of every input is resolved in one batch before anything is written, and the
//! outputs follow the CLI's rules: stdout, `-w FILE` (atomic, mode 0600: it holds secrets) or
//! `--in-place` (each file atomically, and mode 0600 too: a file that held references now holds
//! values). YAML comments and anchors do not
//! survive (the documents are parsed and written again), and neither does JSON's formatting.

use std::fmt::Write as _;
use std::path::PathBuf;

use seal_providers::reference::{Backend, Found};
use serde::Deserialize as _;
use serde_yaml::Value;
use zeroize::{Zeroize as _, Zeroizing};

use super::{Batch, ProviderArgs, block_on, find};
use crate::OutputFormat;
use crate::failure::{Failure, Outcome};
use crate::io;

/// `seal render` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// YAML (several documents allowed) or JSON files; stdin if none or `-`.
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,

    /// Leave secretref+ references unresolved.
    #[arg(long)]
    exclude_secret: bool,

    /// Write every document to FILE atomically (mode 0600) instead of stdout.
    #[arg(
        short = 'w',
        long = "write",
        value_name = "FILE",
        conflicts_with = "in_place"
    )]
    write: Option<PathBuf>,

    /// Rewrite each file in place (atomically, mode 0600: it holds values now).
    #[arg(long)]
    in_place: bool,

    /// Output format (default: the first input's).
    #[arg(
        short = 'o',
        long = "format",
        alias = "output",
        value_enum,
        conflicts_with = "in_place"
    )]
    format: Option<OutputFormat>,

    #[command(flatten)]
    providers: ProviderArgs,
}

/// One parsed input.
struct Parsed {
    name: String,
    path: Option<PathBuf>,
    format: OutputFormat,
    docs: Vec<Value>,
}

/// Runs `seal render`.
pub fn run(args: &Args) -> Outcome {
    if args.in_place && (args.files.is_empty() || args.files.iter().any(|f| f.as_os_str() == "-")) {
        return Err(Failure::input("--in-place needs file arguments, not stdin"));
    }
    let mut inputs = io::read_inputs(&args.files)?
        .into_iter()
        .map(|input| parse(&input.name, input.path, &input.text))
        .collect::<Outcome<Vec<_>>>()?;

    // Every string's references, in walk order, found before anything is fetched.
    let mut batch = Batch::default();
    let mut found: Vec<Vec<Found>> = Vec::new();
    for input in &mut inputs {
        for (n, doc) in input.docs.iter_mut().enumerate() {
            let place = format!("{}: document {}", input.name, n + 1);
            walk(doc, &mut String::new(), &mut |path, text| {
                let refs: Vec<Found> = find(text, &format!("{place}, {}", shown(path)))?
                    .into_iter()
                    .filter(|f| !(args.exclude_secret && f.reference.is_secretref()))
                    .collect();
                batch.add(refs.iter().map(|f| &f.reference));
                found.push(refs);
                Ok(None)
            })?;
        }
    }
    let resolved = block_on(batch.resolve(&args.providers))?;
    let mut next = found.iter();
    for input in &mut inputs {
        for doc in &mut input.docs {
            walk(doc, &mut String::new(), &mut |_, text| {
                let refs = next
                    .next()
                    .expect("invariant: the same walk visits the same strings");
                if let [only] = refs.as_slice()
                    && only.span == (0..text.len())
                    && only.reference.property().is_some()
                    && let Some(json) = resolved.value(&only.reference).json()
                {
                    return Ok(Some(vals_typed(json, only.reference.backend())));
                }
                if !refs.is_empty() {
                    *text = resolved.substitute(text, refs, |_| false)?.to_string();
                }
                Ok(None)
            })?;
        }
    }

    // Everything is serialized before the first write, so an error writes nothing.
    let outputs: Vec<(Option<PathBuf>, Zeroizing<String>)> = if args.in_place {
        inputs
            .iter()
            .map(|input| Ok((input.path.clone(), write(&input.docs, input.format)?)))
            .collect::<Outcome<_>>()?
    } else {
        let format = args.format.unwrap_or(inputs[0].format);
        vec![(None, write(inputs.iter().flat_map(|i| &i.docs), format)?)]
    };
    for input in &mut inputs {
        for doc in &mut input.docs {
            walk(doc, &mut String::new(), &mut |_, text| {
                text.zeroize();
                Ok(None)
            })?;
        }
    }
    if args.in_place {
        for (path, text) in &outputs {
            let path = path
                .as_ref()
                .expect("invariant: --in-place inputs are files");
            io::write_private(path, text.as_bytes())?;
        }
        return Ok(());
    }
    let text = &outputs[0].1;
    match &args.write {
        Some(path) => io::write_private(path, text.as_bytes()),
        None => io::print(text),
    }
}

fn parse(name: &str, path: Option<PathBuf>, text: &str) -> Outcome<Parsed> {
    let json = text.trim_start().starts_with(['{', '[']);
    let mut docs = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value = Value::deserialize(document).map_err(|e| Failure::input(e).at(name))?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(Parsed {
        name: name.to_owned(),
        path,
        format: if json {
            OutputFormat::Json
        } else {
            OutputFormat::Yaml
        },
        docs,
    })
}

/// Calls `visit` with the path (`.a.b[0]`) and text of every string value, in document order;
/// a value `visit` returns takes the string's place.
fn walk(
    value: &mut Value,
    path: &mut String,
    visit: &mut dyn FnMut(&str, &mut String) -> Outcome<Option<Value>>,
) -> Outcome {
    let len = path.len();
    match value {
        Value::String(text) => {
            if let Some(replacement) = visit(path, text)? {
                text.zeroize();
                *value = replacement;
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let _ = write!(path, "[{i}]");
                walk(item, path, visit)?;
                path.truncate(len);
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                match key {
                    Value::String(key) => {
                        let _ = write!(path, ".{key}");
                    }
                    _ => path.push_str(".?"),
                }
                walk(item, path, visit)?;
                path.truncate(len);
            }
        }
        Value::Tagged(tagged) => walk(&mut tagged.value, path, visit)?,
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

/// What `vals eval` puts in place of a string that is exactly one reference picking `json` (a
/// property that is not a string) with its fragment: the value itself, except that numbers
/// from Vault are strings (vals reads Vault's JSON keeping numbers as their text).
fn vals_typed(json: &str, backend: Backend) -> Value {
    fn numbers_as_text(value: serde_json::Value) -> serde_json::Value {
        use serde_json::Value as J;
        match value {
            J::Number(n) => J::String(n.to_string()),
            J::Array(items) => J::Array(items.into_iter().map(numbers_as_text).collect()),
            J::Object(map) => J::Object(
                map.into_iter()
                    .map(|(k, v)| (k, numbers_as_text(v)))
                    .collect(),
            ),
            other => other,
        }
    }
    let mut parsed: serde_json::Value =
        serde_json::from_str(json).expect("invariant: json() is JSON text");
    if backend == Backend::Vault {
        parsed = numbers_as_text(parsed);
    }
    let typed = serde_yaml::to_value(&parsed).expect("invariant: JSON is representable in YAML");
    super::env::scrub(&mut parsed);
    typed
}

fn shown(path: &str) -> &str {
    if path.is_empty() { "." } else { path }
}

/// Documents as a YAML stream or as JSON documents one after another.
fn write<'a>(
    docs: impl IntoIterator<Item = &'a Value>,
    format: OutputFormat,
) -> Outcome<Zeroizing<String>> {
    let mut out = Zeroizing::new(String::new());
    for (i, doc) in docs.into_iter().enumerate() {
        let text = Zeroizing::new(match format {
            OutputFormat::Yaml => serde_yaml::to_string(doc)
                .map_err(|e| Failure::input(format!("cannot write YAML: {e}")))?,
            OutputFormat::Json => serde_json::to_string_pretty(doc)
                .map_err(|e| Failure::input(format!("cannot write JSON: {e}")))?,
        });
        if format == OutputFormat::Yaml && i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&text);
        if format == OutputFormat::Json {
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_follow_vals() {
        let yaml = |json: &str, backend| serde_yaml::to_string(&vals_typed(json, backend)).unwrap();
        assert_eq!(yaml("true", Backend::Vault), "true\n");
        assert_eq!(yaml("5432", Backend::AwsSecrets), "5432\n");
        assert_eq!(yaml("5432", Backend::Vault), "'5432'\n");
        assert_eq!(
            yaml(r#"{"a":1.5,"b":[2,"x"],"c":false}"#, Backend::Vault),
            "a: '1.5'\nb:\n- '2'\n- x\nc: false\n"
        );
        assert_eq!(
            yaml(r#"{"a":1.5,"b":[2,"x"]}"#, Backend::AwsSecrets),
            "a: 1.5\nb:\n- 2\n- x\n"
        );
    }
}
