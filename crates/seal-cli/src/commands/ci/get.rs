//! `seal get REF...`: the values of references, one per line in the order given (the raw bytes
//! of each value and a newline), or with `-o json` one JSON document per line: a value that is a
//! JSON object or array as itself (compact), any other value as a JSON string.

use std::io::Write as _;

use seal_providers::reference::{Reference, parse};
use serde_json::Value;
use zeroize::Zeroizing;

use super::{Batch, ProviderArgs, block_on, env};
use crate::failure::{Failure, Outcome};

/// Output of `seal get`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GetFormat {
    /// Each value as it is, then a newline.
    #[default]
    Text,
    /// Each value as one line of JSON.
    Json,
}

/// `seal get` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// References, e.g. ref+vault://secret/ml/db#/password.
    #[arg(value_name = "REF", required = true)]
    refs: Vec<String>,

    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    output: GetFormat,

    #[command(flatten)]
    providers: ProviderArgs,
}

/// Runs `seal get`.
pub fn run(args: &Args) -> Outcome {
    let refs: Vec<Reference> = args
        .refs
        .iter()
        .enumerate()
        .map(|(i, text)| parse(text).map_err(|e| Failure::input(e).at(format!("REF {}", i + 1))))
        .collect::<Outcome<_>>()?;
    let mut batch = Batch::default();
    batch.add(&refs);
    let resolved = block_on(batch.resolve(&args.providers))?;
    let mut out = Zeroizing::new(Vec::new());
    for reference in &refs {
        let value = resolved.value(reference);
        match args.output {
            GetFormat::Text => out.extend_from_slice(value.expose_bytes()),
            GetFormat::Json => out.extend_from_slice(json_line(value.expose_bytes()).as_bytes()),
        }
        out.push(b'\n');
    }
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&out).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failure::io(format!("<stdout>: cannot write: {e}")))
        }
        _ => Ok(()),
    }
}

/// One value as compact JSON: structure kept for objects and arrays, a string otherwise.
fn json_line(bytes: &[u8]) -> Zeroizing<String> {
    let mut value = match serde_json::from_slice::<Value>(bytes) {
        Ok(value) if value.is_object() || value.is_array() => value,
        Ok(mut scalar) => {
            env::scrub(&mut scalar);
            Value::String(String::from_utf8_lossy(bytes).into_owned())
        }
        Err(_) => Value::String(String::from_utf8_lossy(bytes).into_owned()),
    };
    let text = Zeroizing::new(value.to_string());
    env::scrub(&mut value);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keeps_structure_and_quotes_everything_else() {
        assert_eq!(
            json_line(br#"{"b":1,"a":"x"}"#).as_str(),
            r#"{"b":1,"a":"x"}"#
        );
        assert_eq!(json_line(b"[1,2]").as_str(), "[1,2]");
        assert_eq!(json_line(b"42").as_str(), r#""42""#);
        assert_eq!(json_line(b"line1\n\"q\"").as_str(), r#""line1\n\"q\"""#);
    }
}
