//! Reading inputs and writing outputs, with the CLI's guarantees: stdin when no file is named (or
//! `-`), whole inputs read before any work starts, and outputs written atomically (a temporary file
//! in the same directory, renamed over the target) only after all work succeeded, so a failure
//! writes nothing and a reader never sees half a file.

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
    temp.persist(path)
        .map_err(|e| cannot_write(path, &e.error))?;
    Ok(())
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
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = tempfile::Builder::new()
        .prefix(&format!(".{file_name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| cannot_write(path, &e))?;
    temp.as_file()
        .write_all(content)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| cannot_write(path, &e))?;
    Ok(temp)
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
