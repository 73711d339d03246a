//! The `files` section: where each file goes, what it holds, and its mode and owner. A path is
//! written by one entry only; a template comes inline or from `templateFile` (read once, here);
//! the mode is octal permission bits the owner can read (default 0400); the owner is numeric
//! (`UID`, `UID:GID`, `:GID`), since the agent's image has no user database.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::raw::{RawFile, RawMode, RawOwner};
use super::secrets::{Source, source};
use super::{ConfigError, error};

/// One file to write.
pub struct FileSpec {
    /// Where.
    pub path: PathBuf,
    /// Its content.
    pub source: Source,
    /// Its permission bits (default 0400).
    pub mode: u32,
    /// Its owner and group, when they are to be set.
    pub owner: Option<(Option<u32>, Option<u32>)>,
}

/// The `files` section validated; `known` are the secret names.
pub(super) fn files(raw: &[RawFile], known: &BTreeSet<&str>) -> Result<Vec<FileSpec>, ConfigError> {
    let mut files = Vec::new();
    let mut paths = BTreeSet::new();
    for (i, file) in raw.iter().enumerate() {
        let field = format!("files[{i}]");
        if file.path.as_os_str().is_empty() {
            return Err(error(format!("{field}.path"), "must not be empty"));
        }
        if file.path.file_name().is_none() {
            return Err(error(format!("{field}.path"), "must name a file"));
        }
        if !paths.insert(file.path.clone()) {
            return Err(error(
                format!("{field}.path"),
                format!("{} is written by an earlier entry too", file.path.display()),
            ));
        }
        let template = match (&file.template, &file.template_file) {
            (Some(_), Some(_)) => {
                return Err(error(
                    &field,
                    "template and templateFile exclude each other",
                ));
            }
            (Some(t), None) => Some(t.clone()),
            (None, Some(p)) => Some(std::fs::read_to_string(p).map_err(|e| {
                error(
                    format!("{field}.templateFile"),
                    format!("cannot read {}: {e}", p.display()),
                )
            })?),
            (None, None) => None,
        };
        let source = source(&field, file.secret.as_deref(), template.as_deref(), known)?;
        let mode = match &file.mode {
            None => 0o400,
            Some(mode) => parse_mode(mode).map_err(|d| error(format!("{field}.mode"), d))?,
        };
        let owner = file
            .owner
            .as_ref()
            .map(|o| parse_owner(o).map_err(|d| error(format!("{field}.owner"), d)))
            .transpose()?;
        files.push(FileSpec {
            path: file.path.clone(),
            source,
            mode,
            owner,
        });
    }
    Ok(files)
}

/// A mode as octal digits: `"0400"`, `"440"`, or a YAML number whose digits are read as octal
/// (YAML 1.2 reads `0400` as the decimal 400).
fn parse_mode(mode: &RawMode) -> Result<u32, String> {
    let digits = match mode {
        RawMode::Number(n) => n.to_string(),
        RawMode::Text(t) => t.trim().trim_start_matches("0o").to_owned(),
    };
    let mode = u32::from_str_radix(&digits, 8)
        .map_err(|_| format!("{digits:?} is not an octal mode such as \"0400\""))?;
    if mode > 0o777 {
        return Err(format!(
            "{digits:?}: only permission bits (at most 0777) may be set"
        ));
    }
    if mode & 0o400 == 0 {
        return Err("the owner must be able to read the file (0400 at least)".into());
    }
    Ok(mode)
}

/// `UID`, `UID:GID` or `:GID`, numeric (the agent's image has no user database).
fn parse_owner(owner: &RawOwner) -> Result<(Option<u32>, Option<u32>), String> {
    let text = match owner {
        RawOwner::Number(n) => n.to_string(),
        RawOwner::Text(t) => t.trim().to_owned(),
    };
    let id = |s: &str| -> Result<Option<u32>, String> {
        if s.is_empty() {
            Ok(None)
        } else {
            s.parse()
                .map(Some)
                .map_err(|_| format!("{text:?} is not UID, UID:GID or :GID (numbers)"))
        }
    };
    let (uid, gid) = match text.split_once(':') {
        Some((u, g)) => (id(u)?, id(g)?),
        None => (id(&text)?, None),
    };
    if uid.is_none() && gid.is_none() {
        return Err("empty".into());
    }
    Ok((uid, gid))
}
