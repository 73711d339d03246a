//! Running the real `seal` binary in a scratch directory and looking at what it did.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

/// What one run of a command did.
#[derive(Debug)]
pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.status, 0, "expected success, stderr:\n{}", self.stderr);
        &self.stdout
    }

    /// Asserts the exit code and that stderr contains `needle`.
    #[track_caller]
    pub fn fails(&self, code: i32, needle: &str) {
        assert_eq!(
            self.status, code,
            "exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
    }
}

/// The workspace root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A file of the shared test vectors.
pub fn vector(rel: &str) -> PathBuf {
    repo().join("testdata/vectors").join(rel)
}

/// Runs `program` with `args` in `cwd`, feeding `stdin`.
pub fn run_program(
    program: &Path,
    args: &[&str],
    stdin: &[u8],
    cwd: &Path,
    env: &[(&str, &str)],
) -> Run {
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(cwd)
        .env_remove("SEAL_CERT")
        .env_remove("SEAL_ENV")
        .env_remove("SEAL_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    Run {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `seal`.
pub fn seal(args: &[&str], stdin: &[u8], cwd: &Path) -> Run {
    run_program(Path::new(env!("CARGO_BIN_EXE_seal")), args, stdin, cwd, &[])
}

/// Runs `seal` with extra environment.
pub fn seal_env(args: &[&str], stdin: &[u8], cwd: &Path, env: &[(&str, &str)]) -> Run {
    run_program(Path::new(env!("CARGO_BIN_EXE_seal")), args, stdin, cwd, env)
}

/// A scratch directory with a fresh key pair (`tls.key`, `tls.crt`) made by `seal keygen`.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// With a 2048-bit key pair in `name/`.
    pub fn with_keys(name: &str) -> Self {
        let scratch = Self::new();
        scratch.keygen(name);
        scratch
    }

    pub fn keygen(&self, name: &str) {
        seal(
            &["keygen", "--bits", "2048", "--out", name],
            b"",
            self.path(),
        )
        .ok();
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, rel: &str) -> PathBuf {
        self.path().join(rel)
    }

    pub fn write(&self, rel: &str, content: &str) -> PathBuf {
        let path = self.file(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, content).unwrap();
        path
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.file(rel)).unwrap()
    }

    /// Every file under the directory with its bytes: compare before and after to prove nothing
    /// was written.
    pub fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut stack = vec![self.path().to_owned()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    out.insert(path.clone(), std::fs::read(&path).unwrap());
                }
            }
        }
        out
    }

    /// An RSA-2048 certificate that expired on 2023-11-15, written to `rel`.
    pub fn expired_cert(&self, rel: &str) -> PathBuf {
        let key = seal_core::PrivateKey::generate(seal_core::KeySize::Rsa2048).unwrap();
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let cert =
            seal_core::Certificate::self_signed(&key, start, Duration::from_secs(86_400)).unwrap();
        self.write(rel, &cert.to_pem())
    }
}

impl Scratch {
    /// A certificate that starts a day from now: nobody should have it yet.
    pub fn future_cert(&self, rel: &str) -> PathBuf {
        let key = seal_core::PrivateKey::generate(seal_core::KeySize::Rsa2048).unwrap();
        let start = SystemTime::now() + Duration::from_secs(86_400);
        let cert =
            seal_core::Certificate::self_signed(&key, start, Duration::from_secs(86_400)).unwrap();
        self.write(rel, &cert.to_pem())
    }
}

/// A Secret manifest with the given items as stringData.
pub fn secret_yaml(namespace: &str, name: &str, items: &[(&str, &str)]) -> String {
    let mut text = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {namespace}\ntype: Opaque\nstringData:\n"
    );
    for (key, value) in items {
        let _ = writeln!(text, "  {key}: {value:?}");
    }
    text
}

/// A Bitnami SealedSecret holding one sealed `item`, with the scope as Bitnami's annotations.
pub fn bitnami_manifest(
    namespace: &str,
    name: &str,
    scope: &str,
    item: &str,
    sealed: &str,
) -> String {
    let annotation = match scope {
        "strict" => String::new(),
        other => format!("\n  annotations: {{sealedsecrets.bitnami.com/{other}: \"true\"}}"),
    };
    let sealed = serde_json::to_string(sealed).expect("a string serializes");
    format!(
        "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: {name}\n  namespace: {namespace}{annotation}\nspec:\n  encryptedData:\n    {item}: {sealed}\n"
    )
}

/// Parses YAML or JSON output into a JSON value (one document).
pub fn parse(text: &str) -> serde_json::Value {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("not YAML/JSON ({e}):\n{text}"))
}

/// The `data` of a Secret printed by `seal unseal`, decoded.
pub fn secret_data(secret: &serde_json::Value) -> BTreeMap<String, Vec<u8>> {
    use base64::Engine as _;
    secret["data"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                base64::engine::general_purpose::STANDARD
                    .decode(v.as_str().unwrap())
                    .unwrap(),
            )
        })
        .collect()
}

pub use seal_testenv::peer;
