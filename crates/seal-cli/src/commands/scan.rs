//! `seal scan`: the pre-commit guard. It finds plaintext `kind: Secret` manifests carrying `data` or
//! `stringData` in YAML and JSON files and prints `file:line: <name>` for each; it exits 1 when it
//! finds any. Files that do not parse (Helm templates, say) are searched line by line instead, so a
//! template cannot hide a Secret. A fixture that is meant to be plaintext opts out with the
//! annotation `seal.dev/plaintext-allowed: "true"`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use seal_api::manifest::{self, Object};
use seal_api::names::PLAINTEXT_ALLOWED_ANNOTATION as ALLOW_ANNOTATION;

use crate::failure::{Failure, Outcome};
use crate::io;

/// Directories never descended into.
const SKIPPED_DIRS: [&str; 5] = [".git", "target", "node_modules", ".terraform", "vendor"];

/// `seal scan` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Files and directories to scan (directories recursively: *.yaml, *.yml, *.json);
    /// default the working directory.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

/// One finding.
struct Finding {
    line: usize,
    name: String,
}

/// Runs `seal scan`.
pub fn run(args: &Args) -> Outcome {
    let roots = if args.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.paths.clone()
    };
    let mut files = Vec::new();
    for root in &roots {
        collect(root, true, &mut files)?;
    }
    let mut report = String::new();
    let mut count = 0;
    for file in &files {
        let bytes = io::read_bytes(file)?;
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        for finding in scan_text(&text) {
            count += 1;
            let _ = writeln!(
                report,
                "{}:{}: {}",
                file.display(),
                finding.line,
                finding.name
            );
        }
    }
    io::print(&report)?;
    if count > 0 {
        return Err(
            Failure::found(format!("{count} plaintext Secret(s) found")).hint(
                "seal them (`seal --env ENV -w FILE.sealed.yaml FILE`) and delete the plaintext",
            ),
        );
    }
    Ok(())
}

/// The manifest files under `path`. A path named on the command line is followed wherever it
/// points; a symlink met while walking is not (git stores the link, not what it points to), so a
/// link loop or a link out of the tree cannot make the walk endless or leave the tree.
fn collect(path: &Path, explicit: bool, out: &mut Vec<PathBuf>) -> Outcome {
    let describe =
        |e: &std::io::Error| Failure::io(format!("{}: {}", path.display(), io::io_reason(e)));
    if !explicit
        && std::fs::symlink_metadata(path)
            .map_err(|e| describe(&e))?
            .is_symlink()
    {
        return Ok(());
    }
    let metadata = std::fs::metadata(path).map_err(|e| describe(&e))?;
    if metadata.is_dir() {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !explicit && (SKIPPED_DIRS.contains(&name) || (name.starts_with('.') && name.len() > 1))
        {
            return Ok(());
        }
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .map_err(|e| describe(&e))?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .collect();
        entries.sort();
        for entry in entries {
            collect(&entry, false, out)?;
        }
    } else if explicit || has_manifest_extension(path) {
        out.push(path.to_owned());
    }
    Ok(())
}

fn has_manifest_extension(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// Findings in one file's text: parsed when it parses, line by line when it does not.
fn scan_text(text: &str) -> Vec<Finding> {
    match manifest::parse(text) {
        Ok(objects) => objects
            .into_iter()
            .filter_map(|located| match located.object {
                Object::Secret(secret) if carries_values(&secret) && !allowed(&secret) => {
                    Some(Finding {
                        line: located.line,
                        name: secret.metadata.name.unwrap_or_else(|| "<unnamed>".into()),
                    })
                }
                _ => None,
            })
            .collect(),
        Err(_) => scan_lines(text),
    }
}

fn carries_values(secret: &k8s_openapi::api::core::v1::Secret) -> bool {
    secret.data.as_ref().is_some_and(|d| !d.is_empty())
        || secret.string_data.as_ref().is_some_and(|d| !d.is_empty())
}

fn allowed(secret: &k8s_openapi::api::core::v1::Secret) -> bool {
    secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ALLOW_ANNOTATION))
        .is_some_and(|v| v == "true")
}

/// The fallback for files that do not parse: per `---` document, a top-level `kind: Secret` line and
/// a top-level `data:` or `stringData:` key that is not empty.
fn scan_lines(text: &str) -> Vec<Finding> {
    let mut findings = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut start = 0;
    while start < lines.len() {
        let end = (start..lines.len())
            .find(|&i| i > start && is_separator(lines[i]))
            .unwrap_or(lines.len());
        let doc = &lines[start..end];
        let kind_secret = doc
            .iter()
            .any(|l| top_level_value(l, "kind").is_some_and(|v| v == "Secret"));
        let has_values = doc.iter().enumerate().any(|(i, l)| {
            ["data", "stringData"]
                .iter()
                .any(|key| match top_level_value(l, key) {
                    Some("") => doc
                        .get(i + 1)
                        .is_some_and(|next| next.starts_with(' ') && !next.trim().is_empty()),
                    Some(inline) => !matches!(inline, "{}" | "null" | "~"),
                    None => false,
                })
        });
        let allowed = doc
            .iter()
            .any(|l| l.contains(ALLOW_ANNOTATION) && l.contains("true"));
        if kind_secret && has_values && !allowed {
            let name = doc
                .iter()
                .find_map(|l| {
                    l.trim_start()
                        .strip_prefix("name:")
                        .map(|n| n.trim().trim_matches(['"', '\'']).to_owned())
                })
                .unwrap_or_else(|| "<unnamed>".into());
            let line = doc
                .iter()
                .position(|l| top_level_value(l, "kind").is_some())
                .unwrap_or(0);
            findings.push(Finding {
                line: start + line + 1,
                name,
            });
        }
        start = end;
    }
    findings
}

fn is_separator(line: &str) -> bool {
    line == "---" || line.starts_with("--- ")
}

/// The value of a top-level `key:` line, unquoted and without a trailing comment.
fn top_level_value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(key)?.strip_prefix(':')?;
    let rest = rest.split(" #").next().unwrap_or(rest);
    Some(rest.trim().trim_matches(['"', '\'']))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walk_does_not_follow_links_so_a_loop_ends() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("deploy")).unwrap();
        std::fs::write(tree.join("deploy/secret.yaml"), "kind: Secret\n").unwrap();
        // A loop back to the top, a link out of the tree, and a dangling link.
        std::os::unix::fs::symlink(&tree, tree.join("deploy/loop")).unwrap();
        std::fs::write(dir.path().join("outside.yaml"), "kind: Secret\n").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside.yaml"), tree.join("out.yaml")).unwrap();
        std::os::unix::fs::symlink(tree.join("gone"), tree.join("dangling.yaml")).unwrap();
        let mut found = Vec::new();
        collect(&tree, true, &mut found).unwrap();
        assert_eq!(found, vec![tree.join("deploy/secret.yaml")]);
        // Named on the command line, a link is followed.
        let mut named = Vec::new();
        collect(&tree.join("out.yaml"), true, &mut named).unwrap();
        assert_eq!(named, vec![tree.join("out.yaml")]);
    }

    #[test]
    fn finds_secrets_with_values_and_skips_empty_and_allowed_ones() {
        let text = "apiVersion: v1\nkind: Secret\nmetadata: {name: a}\nstringData: {x: y}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: empty}\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: fixture\n  annotations: {seal.dev/plaintext-allowed: \"true\"}\ndata: {x: eQ==}\n";
        let found: Vec<_> = scan_text(text)
            .into_iter()
            .map(|f| (f.line, f.name))
            .collect();
        assert_eq!(found, vec![(1, "a".to_string())]);
    }

    #[test]
    fn templates_that_do_not_parse_are_searched_line_by_line() {
        let text = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {{ .Release.Name }}-db\nstringData:\n  password: {{ .Values.password }}\n---\nkind: Secret\ndata: {}\n";
        let found: Vec<_> = scan_text(text)
            .into_iter()
            .map(|f| (f.line, f.name))
            .collect();
        assert_eq!(found, vec![(2, "{{ .Release.Name }}-db".to_string())]);
    }
}
