//! From references to outputs: fetching every configured secret in one all-or-nothing
//! resolution, rendering each file and variable from the values, and writing files atomically.
//!
//! Order of work, so that a failure writes nothing: every value is fetched, then every output
//! is rendered into zeroizing buffers, and only then is the first file written. Each file is
//! written as a temporary file in the same directory (mode and owner set on the open file before
//! any reader can see it, content synced), then renamed over the old one: a reader sees the old
//! file or the new one, never a part. The renames start only once every changed file is staged,
//! so a failure on one file writes none. A file whose content is unchanged is not rewritten, so a
//! refresh that finds nothing new touches nothing and signals nobody. The comparison opens only a
//! regular file, never through a link, never waiting, and reads no more than the new content's
//! size ([`read_regular`], also the PID file's reader): a FIFO or a link to `/dev/zero` planted
//! at an output path cannot hang the agent, and is replaced by the rename, never written through.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use seal_core::SecretBytes;
use seal_providers::reference::Reference;
use seal_providers::reference::resolve::{ResolveError, Resolver};
use zeroize::Zeroizing;

use crate::config::{Config, FileSpec, Source};

/// The values of the configured secrets, by name.
pub type Values = BTreeMap<String, SecretBytes>;

/// Fetches the configured secrets. One resolver for the agent's life: providers (and a Vault
/// session, renewed in the background) are built once and reused by every refresh.
pub struct Fetcher {
    resolver: Resolver,
    names: Vec<String>,
    refs: Vec<Reference>,
}

impl Fetcher {
    /// A fetcher for `config`'s secrets.
    pub fn new(config: &Config) -> Self {
        Fetcher {
            resolver: Resolver::new(config.defaults.clone()),
            names: config.secrets.iter().map(|(n, _)| n.clone()).collect(),
            refs: config.secrets.iter().map(|(_, r)| r.clone()).collect(),
        }
    }

    /// The resolver, shared with the endpoint (one provider set, one call counter).
    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    /// The reference named `name`.
    pub fn reference(&self, name: &str) -> Option<&Reference> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| &self.refs[i])
    }

    /// Every secret's value, or the first failure (its message names the reference, never a
    /// value).
    pub async fn fetch(&self) -> Result<Values, ResolveError> {
        if self.refs.is_empty() {
            return Ok(Values::new());
        }
        let values = self.resolver.resolve(&self.refs).await?;
        Ok(self
            .names
            .iter()
            .cloned()
            .zip(
                values
                    .into_iter()
                    .map(|v| SecretBytes::new(v.expose_bytes().to_vec())),
            )
            .collect())
    }
}

/// Every output rendered, not yet written.
pub struct Rendered {
    /// Each file's content, in configuration order.
    pub files: Vec<Zeroizing<Vec<u8>>>,
    /// Each variable, in configuration order.
    pub env: Vec<(String, Zeroizing<String>)>,
}

impl PartialEq for Rendered {
    fn eq(&self, other: &Self) -> bool {
        self.files == other.files
            && self.env.len() == other.env.len()
            && self
                .env
                .iter()
                .zip(&other.env)
                .all(|(a, b)| a.0 == b.0 && a.1.as_bytes() == b.1.as_bytes())
    }
}

/// Renders every file and variable. Errors name the output and the template position, never
/// a value.
pub fn render(config: &Config, values: &Values) -> anyhow::Result<Rendered> {
    let mut files = Vec::with_capacity(config.files.len());
    for file in &config.files {
        let content = render_source(&file.source, values)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.path.display()))?;
        files.push(content);
    }
    let mut env = Vec::with_capacity(config.env.len());
    for (name, source) in &config.env {
        let bytes =
            render_source(source, values).map_err(|e| anyhow::anyhow!("env.{name}: {e}"))?;
        if bytes.contains(&0) {
            anyhow::bail!("env.{name}: the value holds a NUL byte and cannot be a variable");
        }
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| anyhow::anyhow!("env.{name}: the value is not UTF-8 text"))?;
        env.push((name.clone(), Zeroizing::new(text.to_owned())));
    }
    Ok(Rendered { files, env })
}

fn render_source(source: &Source, values: &Values) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    match source {
        Source::Secret(name) => Ok(Zeroizing::new(
            values
                .get(name)
                .expect("invariant: config validation checked every secret name")
                .expose()
                .to_vec(),
        )),
        Source::Template(template) => {
            let out = template.render(values)?;
            Ok(Zeroizing::new(out.expose().to_vec()))
        }
    }
}

/// Writes every file whose content differs from what is on disk; returns the paths written.
/// Errors name the file.
///
/// Two phases, so that a failure writes nothing: every changed file is first staged as a
/// complete temporary file beside its target (content, owner and mode set, synced); only when
/// all are staged are they renamed into place. A failure while staging (a missing directory, a
/// full volume, a refused chown) deletes the staged files and leaves every target as it was.
pub fn write_changed(files: &[FileSpec], rendered: &Rendered) -> anyhow::Result<Vec<PathBuf>> {
    let mut staged = Vec::new();
    for (spec, content) in files.iter().zip(&rendered.files) {
        if unchanged(&spec.path, content) {
            continue;
        }
        let file = stage(spec, content)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", spec.path.display()))?;
        staged.push((spec, file));
    }
    let mut written = Vec::with_capacity(staged.len());
    for (spec, file) in staged {
        file.persist(&spec.path)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {}", spec.path.display(), e.error))?;
        // The rename is durable once the directory is synced; a failure here loses nothing.
        if let Ok(dir) = std::fs::File::open(directory(&spec.path)) {
            let _ = dir.sync_all();
        }
        written.push(spec.path.clone());
    }
    Ok(written)
}

/// Whether `path` is a regular file holding exactly `content`. The comparison never follows a
/// symlink, never opens a FIFO or device and never reads more than `content`'s length plus one
/// byte ([`read_regular`]): whatever else is at the path (a link to `/dev/zero`, a FIFO nobody
/// writes) counts as changed, and the rename that follows replaces the entry itself.
fn unchanged(path: &Path, content: &[u8]) -> bool {
    matches!(
        read_regular(path, content.len(), Links::Refuse),
        Ok(Some(old)) if old.as_slice() == content
    )
}

/// Whether [`read_regular`] may follow a symlink at the path itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Links {
    /// A link counts as "not a regular file" (outputs: the agent's own files, never links).
    Refuse,
    /// A link to a regular file is read (a PID file the app may have linked).
    Follow,
}

/// The content of the regular file at `path` if it holds at most `limit` bytes; `None` when the
/// path holds anything else (a FIFO, a device, a directory, a link under [`Links::Refuse`], a
/// larger file).
///
/// Guarantees: a FIFO or device is never opened when the entry is one at the time of the check
/// (`lstat`/`stat` first), and if it is swapped in between, opening cannot block
/// (`O_NONBLOCK`) and nothing is read from it (`fstat` on the open file decides). Under
/// [`Links::Refuse`] the open uses `O_NOFOLLOW`, so a link swapped in is not followed either. At
/// most `limit + 1` bytes are read, whatever the file claims. The agent runs on one thread: a
/// read that blocked would stop the endpoint, `/ping` and SIGTERM handling with it.
///
/// Errors: reading a regular file failed.
pub(crate) fn read_regular(
    path: &Path,
    limit: usize,
    links: Links,
) -> std::io::Result<Option<Zeroizing<Vec<u8>>>> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;

    let entry = match links {
        Links::Refuse => std::fs::symlink_metadata(path),
        Links::Follow => std::fs::metadata(path),
    };
    match entry {
        Ok(entry) if entry.file_type().is_file() => {}
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut flags = nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY;
    if links == Links::Refuse {
        flags |= nix::libc::O_NOFOLLOW;
    }
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
    {
        Ok(file) => file,
        // ELOOP: a link swapped in under O_NOFOLLOW; gone: swapped out.
        Err(e)
            if e.raw_os_error() == Some(nix::libc::ELOOP)
                || e.kind() == std::io::ErrorKind::NotFound =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let metadata = file.metadata()?;
    if !metadata.file_type().is_file() || metadata.len() > limit as u64 {
        return Ok(None);
    }
    // Sized to the file (at most `limit`), so a read of the expected content never reallocates
    // and leaves no unzeroized copy behind.
    let expected = usize::try_from(metadata.len()).unwrap_or(limit);
    let mut content = Zeroizing::new(Vec::with_capacity(expected + 1));
    file.take(limit as u64 + 1).read_to_end(&mut content)?;
    Ok((content.len() <= limit).then_some(content))
}

fn directory(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// `content` as a temporary file in `spec.path`'s directory, owner and mode set, synced: ready
/// to be renamed over the target. Deleted if dropped unrenamed.
fn stage(spec: &FileSpec, content: &[u8]) -> std::io::Result<tempfile::NamedTempFile> {
    // Created 0600 by tempfile; the mode and owner are set before the rename publishes it.
    let mut file = tempfile::Builder::new()
        .prefix(".seal-agent-")
        .tempfile_in(directory(&spec.path))?;
    file.write_all(content)?;
    if let Some((uid, gid)) = spec.owner {
        std::os::unix::fs::fchown(file.as_file(), uid, gid)?;
    }
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(spec.mode))?;
    file.as_file().sync_all()?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use std::os::unix::fs::MetadataExt as _;

    /// A FIFO at `path` (no writer ever opens it).
    fn mkfifo(path: &Path) {
        let made = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(made.success(), "mkfifo {}", path.display());
    }

    fn spec(path: PathBuf, mode: u32) -> FileSpec {
        FileSpec {
            path,
            source: Source::Secret("a".into()),
            mode,
            owner: None,
        }
    }

    fn rendered(content: &[u8]) -> Rendered {
        Rendered {
            files: vec![Zeroizing::new(content.to_vec())],
            env: Vec::new(),
        }
    }

    #[test]
    fn files_are_written_with_their_mode_and_rewritten_only_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let files = [spec(dir.path().join("f"), 0o400)];
        let written = write_changed(&files, &rendered(b"one")).unwrap();
        assert_eq!(written.len(), 1);
        let meta = std::fs::metadata(&files[0].path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o400);
        assert!(write_changed(&files, &rendered(b"one")).unwrap().is_empty());
        assert_eq!(write_changed(&files, &rendered(b"two")).unwrap().len(), 1);
        assert_eq!(std::fs::read(&files[0].path).unwrap(), b"two");
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_fifo_or_a_link_at_the_path_is_replaced_never_read_or_followed() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        let to_zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &to_zero).unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"other file").unwrap();
        let to_victim = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &to_victim).unwrap();
        let paths = [fifo.clone(), to_zero.clone(), to_victim.clone()];
        let content = Rendered {
            files: vec![
                Zeroizing::new(b"value".to_vec()),
                Zeroizing::new(b"value".to_vec()),
                Zeroizing::new(b"value".to_vec()),
            ],
            env: Vec::new(),
        };
        // Run apart, so that a hang fails the test instead of stopping it.
        let (done, finished) = std::sync::mpsc::channel();
        let worker = std::thread::spawn(move || {
            let files: Vec<FileSpec> = paths.into_iter().map(|p| spec(p, 0o600)).collect();
            let _ = done.send(write_changed(&files, &content).map_err(|e| e.to_string()));
        });
        let written = finished
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("write_changed hung on a FIFO or /dev/zero")
            .unwrap();
        worker.join().unwrap();
        assert_eq!(written.len(), 3);
        for path in [&fifo, &to_zero, &to_victim] {
            let metadata = std::fs::symlink_metadata(path).unwrap();
            assert!(metadata.file_type().is_file(), "{}", path.display());
            assert_eq!(std::fs::read(path).unwrap(), b"value");
        }
        assert_eq!(
            std::fs::read(&victim).unwrap(),
            b"other file",
            "written through the link"
        );
    }

    #[test]
    fn the_comparison_reads_only_a_regular_file_of_the_same_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"value").unwrap();
        assert!(unchanged(&path, b"value"));
        assert!(!unchanged(&path, b"valu"));
        assert!(!unchanged(&path, b"value!"));
        assert!(!unchanged(&dir.path().join("missing"), b""));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(!unchanged(&link, b"value"), "a link is followed");
    }

    #[test]
    fn read_regular_refuses_anything_but_a_bounded_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"12345").unwrap();
        let read = |path: &Path, limit, links| {
            read_regular(path, limit, links)
                .unwrap()
                .map(|c| c.to_vec())
        };
        assert_eq!(read(&file, 5, Links::Refuse), Some(b"12345".to_vec()));
        assert_eq!(read(&file, 4, Links::Refuse), None, "larger than the limit");
        assert_eq!(read(&dir.path().join("missing"), 5, Links::Refuse), None);
        assert_eq!(read(dir.path(), 5, Links::Follow), None, "a directory");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(read(&link, 5, Links::Refuse), None);
        assert_eq!(read(&link, 5, Links::Follow), Some(b"12345".to_vec()));
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        assert_eq!(read(&zero, 5, Links::Follow), None, "a device, even linked");
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        assert_eq!(read(&fifo, 5, Links::Follow), None);
    }

    #[test]
    fn a_failure_on_one_file_writes_none() {
        let dir = tempfile::tempdir().unwrap();
        let files = [
            spec(dir.path().join("first"), 0o400),
            spec(dir.path().join("missing/second"), 0o400),
        ];
        let both = Rendered {
            files: vec![Zeroizing::new(b"1".to_vec()), Zeroizing::new(b"2".to_vec())],
            env: Vec::new(),
        };
        let e = write_changed(&files, &both).unwrap_err().to_string();
        assert!(e.contains("missing/second"), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_the_file() {
        let files = [spec(PathBuf::from("/nonexistent-seal/x"), 0o400)];
        let e = write_changed(&files, &rendered(b"v"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent-seal/x"), "{e}");
    }

    #[test]
    fn templates_render_and_errors_hold_no_value() {
        let env = |n: &str| (n == "SEAL_AGENT_TOKEN").then(|| "t".to_owned());
        let config = config::parse(
            "secrets: {u: ref+vault://s/data/a#/u, p: ref+vault://s/data/a#/p}\n\
             files: [{path: /x, template: 'db://{{ .u }}:{{ .p | urlquery }}@h'}]\n\
             env: {P: {secret: p}, B: {template: '{{ .p | b64dec }}'}}",
            &env,
        )
        .unwrap();
        let mut values = Values::new();
        values.insert("u".into(), SecretBytes::new(b"me".to_vec()));
        values.insert("p".into(), SecretBytes::new(b"MARKER a/b".to_vec()));
        let e = render(&config, &values).err().unwrap().to_string();
        assert!(e.starts_with("env.B"), "{e}");
        assert!(!e.contains("MARKER"), "{e}");
        values.insert("p".into(), SecretBytes::new(b"YQ==".to_vec()));
        let out = render(&config, &values).unwrap();
        assert_eq!(out.files[0].as_slice(), b"db://me:YQ%3D%3D@h");
        assert_eq!(out.env[1].1.as_str(), "YQ==");
        assert_eq!(out.env[0].1.as_str(), "a");
    }
}
