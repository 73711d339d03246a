//! Reading inputs and writing outputs, with the CLI's guarantees: stdin when no file is named (or
//! `-`), whole inputs read before any work starts, and outputs written atomically (a temporary file
//! in the same directory, renamed over the target) only after all work succeeded, so a failure
//! writes nothing and a reader never sees half a file. Several outputs of one command (one file per
//! environment) are written all or none: every temporary file first, then the renames, undone if
//! one fails.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::failure::{Failure, Outcome};

/// One input: where it came from and its text.
pub struct Input {
    /// The path as given, or `<stdin>`.
    pub name: String,
    /// The path, if it is a file.
    pub path: Option<PathBuf>,
    /// Its content.
    pub text: String,
}

/// Reads every named file (or stdin when the list is empty or an entry is `-`).
pub fn read_inputs(files: &[PathBuf]) -> Outcome<Vec<Input>> {
    if files.is_empty() {
        return Ok(vec![read_input(Path::new("-"))?]);
    }
    files.iter().map(|f| read_input(f)).collect()
}

/// Reads one file, or stdin for `-`, as UTF-8 text.
pub fn read_input(path: &Path) -> Outcome<Input> {
    let (name, path, bytes) = if path == Path::new("-") {
        let mut bytes = Vec::new();
        io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| Failure::io(format!("<stdin>: cannot read: {e}")))?;
        ("<stdin>".to_owned(), None, bytes)
    } else {
        let bytes = read_bytes(path)?;
        (path.display().to_string(), Some(path.to_owned()), bytes)
    };
    let text =
        String::from_utf8(bytes).map_err(|_| Failure::input(format!("{name}: not UTF-8 text")))?;
    Ok(Input { name, path, text })
}

/// Reads a whole file as bytes; failures are I/O errors naming the file.
pub fn read_bytes(path: &Path) -> Outcome<Vec<u8>> {
    fs::read(path).map_err(|e| {
        Failure::io(format!(
            "{}: cannot read: {}",
            path.display(),
            io_reason(&e)
        ))
    })
}

/// Replaces `path` atomically with `content`, keeping the permissions of an existing file (new files
/// get 0644).
pub fn write_atomic(path: &Path, content: &[u8]) -> Outcome {
    replace(path, content, None)
}

/// Replaces `path` atomically with `content` readable by its owner only (0600): for plaintext.
pub fn write_private(path: &Path, content: &[u8]) -> Outcome {
    replace(path, content, Some(0o600))
}

fn replace(path: &Path, content: &[u8], force_mode: Option<u32>) -> Outcome {
    let temp = prepare(path, content, force_mode)?;
    temp.persist(path)
        .map_err(|e| cannot_write(path, &e.error))?;
    Ok(())
}

/// Replaces every `(path, content)` as [`write_atomic`] does, all or none: every temporary file is
/// written and synced before the first rename, and if a rename fails the ones already done are
/// undone (an existing target gets its old file back, a new one is removed). Each target's old file
/// is kept as a hard link beside it until then (a copy where the file system has no hard links).
pub fn write_all_atomic(files: &[(PathBuf, Vec<u8>)]) -> Outcome {
    let temps = files
        .iter()
        .map(|(path, content)| prepare(path, content, None))
        .collect::<Outcome<Vec<_>>>()?;
    let backups = files
        .iter()
        .map(|(path, _)| backup(path))
        .collect::<Outcome<Vec<_>>>()?;
    let mut done = Vec::with_capacity(files.len());
    for ((temp, backup), (path, _)) in temps.into_iter().zip(backups).zip(files) {
        if let Err(e) = temp.persist(path) {
            let failure = cannot_write(path, &e.error);
            return Err(match undo(done) {
                Ok(()) => failure.hint("no file was written or changed"),
                Err(left) => {
                    failure.hint(format!("and could not restore {left}; check those files"))
                }
            });
        }
        done.push((path, backup));
    }
    Ok(())
}

/// A link to (or copy of) `path`'s current file beside it, removed when dropped; `None` when there
/// is no regular file or symlink to keep.
fn backup(path: &Path) -> Outcome<Option<tempfile::NamedTempFile<()>>> {
    match fs::symlink_metadata(path) {
        Ok(meta) if !meta.is_dir() => {}
        _ => return Ok(None),
    }
    let kept = tempfile::Builder::new()
        .prefix(&format!(".{}.", file_name(path)))
        .suffix(".old")
        .make_in(dir_of(path), |link| {
            fs::hard_link(path, link).or_else(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => Err(e),
                _ => fs::copy(path, link).map(drop),
            })
        })
        .map_err(|e| cannot_write(path, &e))?;
    Ok(Some(kept))
}

/// Undoes the renames of [`write_all_atomic`], newest first; names the files it could not restore.
fn undo(done: Vec<(&PathBuf, Option<tempfile::NamedTempFile<()>>)>) -> Result<(), String> {
    let mut left = Vec::new();
    for (path, backup) in done.into_iter().rev() {
        let restored = match backup {
            Some(old) => old.persist(path).map_err(|e| e.error),
            None => fs::remove_file(path),
        };
        if let Err(e) = restored {
            left.push(format!("{} ({})", path.display(), io_reason(&e)));
        }
    }
    if left.is_empty() {
        Ok(())
    } else {
        Err(left.join(", "))
    }
}

/// A filled temporary file beside `path`, with the permissions `path` will have: `force_mode`, else
/// those of the existing file, else 0644.
fn prepare(
    path: &Path,
    content: &[u8],
    force_mode: Option<u32>,
) -> Outcome<tempfile::NamedTempFile> {
    let existing = match force_mode {
        Some(_) => None,
        None => fs::metadata(path).ok().map(|m| m.permissions()),
    };
    let temp = filled_temp_beside(path, content)?;
    if let Some(permissions) = existing {
        fs::set_permissions(temp.path(), permissions)
            .map_err(|e| Failure::io(format!("{}: {}", path.display(), io_reason(&e))))?;
    } else {
        set_mode(temp.path(), force_mode.unwrap_or(0o644))?;
    }
    Ok(temp)
}

/// Creates `path` with `content` and `mode`, atomically, failing if it exists.
pub fn create_new(path: &Path, content: &[u8], mode: u32) -> Outcome {
    let exists = || {
        Failure::input(format!(
            "{}: already exists; refusing to overwrite",
            path.display()
        ))
    };
    if path.exists() {
        return Err(exists());
    }
    // The temporary file is created 0600 by tempfile, so a private key is never readable by others.
    let temp = filled_temp_beside(path, content)?;
    set_mode(temp.path(), mode)?;
    temp.persist_noclobber(path).map_err(|e| {
        if e.error.kind() == io::ErrorKind::AlreadyExists {
            exists()
        } else {
            cannot_write(path, &e.error)
        }
    })?;
    Ok(())
}

/// Writes to stdout. A closed pipe (`seal ... | head`) is not an error.
pub fn print(text: &str) -> Outcome {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(Failure::io(format!("<stdout>: cannot write: {e}")))
        }
        _ => Ok(()),
    }
}

/// A temporary file in `path`'s directory (so the final rename is atomic) holding `content`, synced.
fn filled_temp_beside(path: &Path, content: &[u8]) -> Outcome<tempfile::NamedTempFile> {
    let temp = tempfile::Builder::new()
        .prefix(&format!(".{}.", file_name(path)))
        .suffix(".tmp")
        .tempfile_in(dir_of(path))
        .map_err(|e| cannot_write(path, &e))?;
    temp.as_file()
        .write_all(content)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| cannot_write(path, &e))?;
    Ok(temp)
}

/// The directory `path` is in (`.` for a bare file name).
fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn cannot_write(path: &Path, e: &io::Error) -> Failure {
    Failure::io(format!(
        "{}: cannot write: {}",
        path.display(),
        io_reason(e)
    ))
}

fn set_mode(path: &Path, mode: u32) -> Outcome {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| Failure::io(format!("{}: {}", path.display(), io_reason(&e))))
}

/// The OS reason without the `(os error N)` suffix.
pub fn io_reason(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn all_files_are_written_with_the_usual_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
        fs::write(&a, "old a").unwrap();
        fs::set_permissions(&a, fs::Permissions::from_mode(0o640)).unwrap();
        write_all_atomic(&[
            (a.clone(), b"new a".to_vec()),
            (b.clone(), b"new b".to_vec()),
        ])
        .unwrap();
        assert_eq!(fs::read_to_string(&a).unwrap(), "new a");
        assert_eq!(fs::read_to_string(&b).unwrap(), "new b");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&a), mode(&b)), (0o640, 0o644));
        assert_eq!(names_in(dir.path()), ["a.yaml", "b.yaml"], "no leftovers");
    }

    #[test]
    fn a_failed_rename_undoes_the_ones_before_it() {
        // The third target is a directory: its temporary file is written, but the rename over it
        // fails, after the first two renames succeeded.
        let dir = tempfile::tempdir().unwrap();
        let existing = dir.path().join("existing.yaml");
        let new = dir.path().join("new.yaml");
        let blocked = dir.path().join("blocked.yaml");
        fs::write(&existing, "old content").unwrap();
        fs::create_dir(&blocked).unwrap();
        let failure = write_all_atomic(&[
            (existing.clone(), b"sealed 1".to_vec()),
            (new.clone(), b"sealed 2".to_vec()),
            (blocked.clone(), b"sealed 3".to_vec()),
        ])
        .unwrap_err();
        assert!(
            failure.to_string().contains("blocked.yaml: cannot write"),
            "{failure}"
        );
        assert_eq!(fs::read_to_string(&existing).unwrap(), "old content");
        assert!(!new.exists(), "a new file was left behind");
        assert!(blocked.is_dir());
        assert_eq!(
            names_in(dir.path()),
            ["blocked.yaml", "existing.yaml"],
            "no temporary or backup file left"
        );
    }

    #[test]
    fn a_failure_before_the_renames_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let existing = dir.path().join("existing.yaml");
        fs::write(&existing, "old content").unwrap();
        let missing_dir = dir.path().join("no/such/dir/x.yaml");
        let failure = write_all_atomic(&[
            (existing.clone(), b"sealed 1".to_vec()),
            (missing_dir, b"sealed 2".to_vec()),
        ])
        .unwrap_err();
        assert!(
            failure.to_string().contains("x.yaml: cannot write"),
            "{failure}"
        );
        assert_eq!(fs::read_to_string(&existing).unwrap(), "old content");
        assert_eq!(names_in(dir.path()), ["existing.yaml"]);
    }
}
