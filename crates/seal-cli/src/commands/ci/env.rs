//! `seal env -f FILE`: a file mapping variable names to references (`DB_PASSWORD:
//! ref+vault://secret/ml/db#/password`; literals and references inside longer strings work
//! too) resolved and printed for a shell, a dotenv file, a GitHub Actions step or a GitLab job.
//! `seal exec` reads the same file ([`load`]).
//!
//! The formats, byte for byte:
//! - `dotenv`: `NAME=value` when the value is plain ASCII (`[A-Za-z0-9_./:@%+,=-]`),
//!   `NAME='value'` when it has no `'` and no line break, else `NAME="..."` with `\\`, `\"`,
//!   `\n` and `\r` escaped: what python-dotenv, godotenv and Docker Compose read back.
//! - `shell`: `export NAME='value'`, every `'` written `'\''`; line breaks stay inside the quotes.
//! - `json`: one object, names in file order, pretty-printed.
//! - `github`: first `::add-mask::LINE` on stdout for every non-blank line of every value (so
//!   the runner masks them before anything could print them; literals in the file are not
//!   masked), and of every reference's own value when it sits inside a longer one (the password
//!   of `postgres://u:ref+vault://...+@db` is masked wherever it shows, not only inside that
//!   URL), then one append to `$GITHUB_ENV`:
//!   `NAME=value`, or `NAME<<ghadelimiter_RANDOM` ... for multi-line values, with a delimiter
//!   the value does not contain (the toolkit's own format).
//! - `gitlab`: a dotenv report, `NAME=value` a line as GitLab reads it (no quoting); a
//!   multi-line value, or a report over GitLab's 5 KB limit, is refused.
//!
//! `--flatten` turns a value that is a JSON object into one variable per key, named as
//! aws-actions/aws-secretsmanager-get-secrets names them: `NAME_KEY`, nested keys joined with
//! `_`, every character outside `[A-Za-z0-9_]` replaced by `_`, a leading digit prefixed with
//! `_`, upper-cased; arrays stay compact JSON. A name already in the environment is refused
//! unless `--overwrite`, as the AWS action does, so a secret never silently replaces `PATH`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;
use zeroize::{Zeroize as _, Zeroizing};

use super::{Batch, ProviderArgs, block_on, find};
use crate::failure::{Failure, Outcome};
use crate::io;

/// GitLab refuses dotenv reports larger than this.
const GITLAB_DOTENV_LIMIT: usize = 5 * 1024;

/// Output of `seal env`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EnvFormat {
    /// NAME=value lines, quoted where needed.
    #[default]
    Dotenv,
    /// export NAME='value' lines for eval or source.
    Shell,
    /// One JSON object.
    Json,
    /// ::add-mask:: lines on stdout, the variables appended to $GITHUB_ENV.
    Github,
    /// A GitLab dotenv report (no multi-line values).
    Gitlab,
}

/// The env file and what to do with its variables; shared by `seal env` and `seal exec`.
#[derive(clap::Args, Debug)]
pub struct VarsArgs {
    /// YAML or JSON file mapping NAME to a reference (or a string with references).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: PathBuf,

    /// Expand values that are JSON objects into NAME_KEY variables (AWS action naming).
    #[arg(long)]
    flatten: bool,

    /// Replace variables already set in the environment instead of refusing.
    #[arg(long)]
    overwrite: bool,
}

/// `seal env` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    vars: VarsArgs,

    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: EnvFormat,

    /// Write to FILE atomically (mode 0600) instead of stdout; not with --format github.
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    write: Option<PathBuf>,

    #[command(flatten)]
    providers: ProviderArgs,
}

/// One resolved variable.
pub struct Var {
    /// Its name, a valid environment variable name.
    pub name: String,
    /// Its value.
    pub value: Zeroizing<String>,
    /// True when the value came from a reference (literals are not masked).
    pub secret: bool,
    /// The values of the references inside a longer value, masked on their own as well.
    pub parts: Vec<Zeroizing<String>>,
}

/// Runs `seal env`.
pub fn run(args: &Args) -> Outcome {
    if args.write.is_some() && args.format == EnvFormat::Github {
        return Err(Failure::input(
            "-w does not apply to --format github, which appends to $GITHUB_ENV",
        ));
    }
    let vars = block_on(load(&args.vars, &args.providers, true))?;
    let text = match args.format {
        EnvFormat::Github => return github(&vars),
        EnvFormat::Dotenv => dotenv(&vars),
        EnvFormat::Shell => shell(&vars),
        EnvFormat::Json => json(&vars),
        EnvFormat::Gitlab => gitlab(&vars)?,
    };
    match &args.write {
        Some(path) => io::write_private(path, text.as_bytes()),
        None => io::print(&text),
    }
}

/// The env file's variables resolved, flattened if asked, checked against the environment when
/// `inherit` (the values join the current environment).
pub async fn load(args: &VarsArgs, providers: &ProviderArgs, inherit: bool) -> Outcome<Vec<Var>> {
    let entries = read_env_file(&args.file)?;
    let name = args.file.display().to_string();
    let mut batch = Batch::default();
    let mut found = Vec::with_capacity(entries.len());
    for (key, text) in &entries {
        let refs = find(text, &format!("{name}: {key}"))?;
        batch.add(refs.iter().map(|f| &f.reference));
        found.push(refs);
    }
    let resolved = batch.resolve(providers).await?;
    let mut vars = Vec::with_capacity(entries.len());
    for ((key, text), refs) in entries.iter().zip(&found) {
        let value = resolved.substitute(text, refs, |_| false)?;
        if args.flatten
            && let Some(flat) = flatten(key, &value)
        {
            vars.extend(flat);
            continue;
        }
        let parts = refs
            .iter()
            .map(|f| {
                resolved
                    .text(&f.reference)
                    .map(|t| Zeroizing::new(t.to_owned()))
            })
            .collect::<Outcome<_>>()?;
        vars.push(Var {
            name: key.clone(),
            value,
            secret: !refs.is_empty(),
            parts,
        });
    }
    for (i, var) in vars.iter().enumerate() {
        if vars[..i].iter().any(|v| v.name == var.name) {
            return Err(Failure::input(format!(
                "{name}: variable {} is produced twice (flattening JSON keys)",
                var.name
            )));
        }
        if var.value.contains('\0') {
            return Err(Failure::input(format!(
                "{name}: {}: the value holds a NUL byte, which no environment variable can",
                var.name
            )));
        }
        if inherit && !args.overwrite && std::env::var_os(&var.name).is_some() {
            return Err(Failure::input(format!(
                "{}: already set in the environment; refusing to overwrite it",
                var.name
            ))
            .hint("pass --overwrite to replace it"));
        }
    }
    Ok(vars)
}

/// The `NAME: value` entries of an env file, in order.
fn read_env_file(path: &Path) -> Outcome<Vec<(String, String)>> {
    let input = io::read_input(path)?;
    let document: serde_yaml::Value =
        serde_yaml::from_str(&input.text).map_err(|e| Failure::input(e).at(&input.name))?;
    let serde_yaml::Value::Mapping(map) = document else {
        return Err(Failure::input(format!(
            "{}: expected a map of NAME: ref+... entries",
            input.name
        )));
    };
    let mut entries = Vec::with_capacity(map.len());
    for (key, value) in map {
        let Some(key) = key.as_str().map(str::to_owned) else {
            return Err(Failure::input(format!(
                "{}: every name must be a string",
                input.name
            )));
        };
        if !is_env_name(&key) {
            return Err(Failure::input(format!(
                "{}: {key:?} is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)",
                input.name
            )));
        }
        let text = match value {
            serde_yaml::Value::String(text) => text,
            serde_yaml::Value::Number(n) => n.to_string(),
            serde_yaml::Value::Bool(b) => b.to_string(),
            _ => {
                return Err(Failure::input(format!(
                    "{}: {key}: expected a reference or a string",
                    input.name
                )));
            }
        };
        entries.push((key, text));
    }
    Ok(entries)
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// aws-secretsmanager-get-secrets' naming: `[^A-Za-z0-9_]` to `_`, `_` before a leading digit,
/// upper case.
pub fn env_name(raw: &str) -> String {
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

/// The variables of a value that is a JSON object, else `None`.
fn flatten(name: &str, value: &str) -> Option<Vec<Var>> {
    let mut document: Value = serde_json::from_str(value).ok()?;
    let vars = if document.is_object() {
        let mut vars = Vec::new();
        flatten_into(&mut vars, name, &document);
        Some(vars)
    } else {
        None
    };
    scrub(&mut document);
    vars
}

fn flatten_into(vars: &mut Vec<Var>, name: &str, value: &Value) {
    let leaf = |text: Zeroizing<String>| Var {
        name: env_name(name),
        value: text,
        secret: true,
        parts: Vec::new(),
    };
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                flatten_into(vars, &format!("{name}_{key}"), item);
            }
        }
        Value::String(text) => vars.push(leaf(Zeroizing::new(text.clone()))),
        Value::Null => vars.push(leaf(Zeroizing::new(String::new()))),
        other => vars.push(leaf(Zeroizing::new(other.to_string()))),
    }
}

/// Zeroizes every string of a parsed document before it is dropped.
pub fn scrub(value: &mut Value) {
    match value {
        Value::String(text) => text.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(scrub),
        Value::Object(map) => map.values_mut().for_each(scrub),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn dotenv(vars: &[Var]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::new());
    for var in vars {
        let value = var.value.as_str();
        out.push_str(&var.name);
        out.push('=');
        let plain = value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:@%+,=-".contains(c));
        if plain {
            out.push_str(value);
        } else if !value.contains(['\'', '\n', '\r']) {
            out.push('\'');
            out.push_str(value);
            out.push('\'');
        } else {
            out.push('"');
            for c in value.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        out.push('\n');
    }
    out
}

fn shell(vars: &[Var]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::new());
    for var in vars {
        out.push_str("export ");
        out.push_str(&var.name);
        out.push_str("='");
        for c in var.value.chars() {
            match c {
                '\'' => out.push_str(r"'\''"),
                c => out.push(c),
            }
        }
        out.push_str("'\n");
    }
    out
}

fn json(vars: &[Var]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::from("{"));
    for (i, var) in vars.iter().enumerate() {
        out.push_str(if i == 0 { "\n  " } else { ",\n  " });
        out.push_str(&Value::String(var.name.clone()).to_string());
        out.push_str(": ");
        let mut value = Value::String(var.value.to_string());
        out.push_str(&Zeroizing::new(value.to_string()));
        scrub(&mut value);
    }
    out.push_str(if vars.is_empty() { "}\n" } else { "\n}\n" });
    out
}

fn gitlab(vars: &[Var]) -> Outcome<Zeroizing<String>> {
    let mut out = Zeroizing::new(String::new());
    for var in vars {
        if var.value.contains(['\n', '\r']) {
            return Err(Failure::input(format!(
                "{}: the value has several lines, which GitLab dotenv reports cannot hold",
                var.name
            ))
            .hint("use --format shell in the job's script, or store the value base64-encoded"));
        }
        out.push_str(&var.name);
        out.push('=');
        out.push_str(&var.value);
        out.push('\n');
    }
    if out.len() > GITLAB_DOTENV_LIMIT {
        return Err(Failure::input(format!(
            "the dotenv report would be {} bytes; GitLab accepts at most {GITLAB_DOTENV_LIMIT}",
            out.len()
        )));
    }
    Ok(out)
}

/// The `::add-mask::` commands for every non-blank line of every value from a reference, and
/// of each reference's own value inside it; each line once.
fn github_masks(vars: &[Var]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::new());
    let mut masked: Vec<&str> = Vec::new();
    let texts = vars
        .iter()
        .filter(|v| v.secret)
        .flat_map(|v| std::iter::once(&v.value).chain(&v.parts));
    for text in texts {
        for line in text.split(['\n', '\r']) {
            if line.trim().is_empty() || masked.contains(&line) {
                continue;
            }
            masked.push(line);
            out.push_str("::add-mask::");
            // The workflow-command escaping of the toolkit's escapeData.
            out.push_str(&line.replace('%', "%25"));
            out.push('\n');
        }
    }
    out
}

/// The `$GITHUB_ENV` lines for `vars`, heredoc-delimited with `delimiter` where multi-line.
fn github_env(vars: &[Var], delimiter: &str) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::new());
    for var in vars {
        out.push_str(&var.name);
        if var.value.contains(['\n', '\r']) {
            for part in [
                "<<",
                delimiter,
                "\n",
                var.value.as_str(),
                "\n",
                delimiter,
                "\n",
            ] {
                out.push_str(part);
            }
        } else {
            out.push('=');
            out.push_str(&var.value);
            out.push('\n');
        }
    }
    out
}

/// A `ghadelimiter_<random>` line that no value contains.
fn delimiter(vars: &[Var]) -> String {
    loop {
        let candidate = format!("ghadelimiter_{:032x}", fastrand::u128(..));
        if !vars.iter().any(|v| v.value.contains(&candidate)) {
            return candidate;
        }
    }
}

/// Masks on stdout, then one append of every variable to `$GITHUB_ENV`.
fn github(vars: &[Var]) -> Outcome {
    let Some(target) = std::env::var_os("GITHUB_ENV").filter(|v| !v.is_empty()) else {
        return Err(
            Failure::input("--format github appends to $GITHUB_ENV, which is not set")
                .hint("run it in a GitHub Actions step, or use --format dotenv|shell|json"),
        );
    };
    let target = PathBuf::from(target);
    io::print(&github_masks(vars))?;
    let text = github_env(vars, &delimiter(vars));
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&target)
        .map_err(|e| {
            Failure::io(format!(
                "{}: cannot open $GITHUB_ENV: {}",
                target.display(),
                io::io_reason(&e)
            ))
        })?;
    // One write of the whole text: the runner never reads half of the variables.
    file.write_all(text.as_bytes())
        .and_then(|()| file.flush())
        .map_err(|e| {
            Failure::io(format!(
                "{}: cannot write $GITHUB_ENV: {}",
                target.display(),
                io::io_reason(&e)
            ))
        })?;
    let names: Vec<&str> = vars.iter().map(|v| v.name.as_str()).collect();
    eprintln!(
        "seal: exported {} variable(s) to $GITHUB_ENV: {}",
        vars.len(),
        names.join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<Var> {
        pairs
            .iter()
            .map(|(n, v)| Var {
                name: (*n).to_owned(),
                value: Zeroizing::new((*v).to_owned()),
                secret: true,
                parts: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn names_follow_the_aws_action() {
        assert_eq!(env_name("db_pass-word.x"), "DB_PASS_WORD_X");
        assert_eq!(env_name("1st"), "_1ST");
        assert_eq!(env_name("ünï"), "_N_");
    }

    #[test]
    fn flattening_joins_nested_keys_and_keeps_arrays_as_json() {
        let flat = flatten(
            "DB",
            r#"{"user":"u","tls":{"ca-file":"x"},"n":1,"h":["a"],"z":null}"#,
        )
        .unwrap();
        let got: Vec<_> = flat
            .iter()
            .map(|v| (v.name.as_str(), v.value.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("DB_USER", "u"),
                ("DB_TLS_CA_FILE", "x"),
                ("DB_N", "1"),
                ("DB_H", r#"["a"]"#),
                ("DB_Z", "")
            ]
        );
        assert!(flatten("X", "plain").is_none());
        assert!(flatten("X", "[1]").is_none());
    }

    #[test]
    fn dotenv_quotes_only_what_needs_it() {
        let out = dotenv(&vars(&[
            ("A", "plain-1.2:x=y"),
            ("B", "has space $HOME"),
            ("C", "it's\nmulti \"q\" \\"),
            ("D", ""),
        ]));
        assert_eq!(
            out.as_str(),
            "A=plain-1.2:x=y\nB='has space $HOME'\nC=\"it's\\nmulti \\\"q\\\" \\\\\"\nD=\n"
        );
    }

    #[test]
    fn shell_quotes_single_quotes() {
        let out = shell(&vars(&[("A", "it's\nok")]));
        assert_eq!(out.as_str(), "export A='it'\\''s\nok'\n");
    }

    #[test]
    fn github_env_uses_a_heredoc_for_multi_line_values() {
        let out = github_env(&vars(&[("A", "x=1"), ("B", "l1\nl2\n")]), "D");
        assert_eq!(out.as_str(), "A=x=1\nB<<D\nl1\nl2\n\nD\n");
        let masks = github_masks(&vars(&[("A", "x%1"), ("B", "l1\n\n l2 \n")]));
        assert_eq!(
            masks.as_str(),
            "::add-mask::x%251\n::add-mask::l1\n::add-mask:: l2 \n"
        );
    }

    #[test]
    fn github_masks_an_interpolated_secret_on_its_own_once() {
        let url = "postgres://u:pw@db";
        let mut all = vars(&[("URL", url), ("AGAIN", url), ("LIT", "x")]);
        all[0].parts = vec![Zeroizing::new("pw".to_owned())];
        all[1].parts = vec![Zeroizing::new("pw".to_owned())];
        all[2].secret = false;
        assert_eq!(
            github_masks(&all).as_str(),
            "::add-mask::postgres://u:pw@db\n::add-mask::pw\n"
        );
    }

    #[test]
    fn gitlab_refuses_multi_line_values_and_oversized_reports() {
        assert!(gitlab(&vars(&[("A", "a\nb")])).is_err());
        let big = "x".repeat(GITLAB_DOTENV_LIMIT);
        assert!(gitlab(&vars(&[("A", &big)])).is_err());
        assert_eq!(
            gitlab(&vars(&[("A", "a b='c'")])).unwrap().as_str(),
            "A=a b='c'\n"
        );
    }
}
