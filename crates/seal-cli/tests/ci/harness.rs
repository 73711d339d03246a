//! Running `seal` with exactly the environment a test gives it, and seeding secrets into the
//! test environment's OpenBao (KV v2 at `secret/`, KV v1 at `kv/`) and moto.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Result;
use seal_testenv::{TestEnv, unique_name};

/// A value with everything that is hard to quote: both quotes, `=`, `$`, a backslash, unicode
/// and line breaks (a trailing one included).
pub const TRICKY: &str = "l1 'q' \"dq\" a=b $HOME \\x\nünï €\n";

/// What one run did.
#[derive(Debug)]
pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.status, 0, "expected success, stderr:\n{}", self.stderr);
        &self.stdout
    }

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
        assert!(
            self.stdout.is_empty(),
            "stdout on failure:\n{}",
            self.stdout
        );
    }
}

/// A scratch directory (also `HOME`, so no `~/.vault-token` or `~/.aws` of the machine is read)
/// and the environment `seal` runs with.
pub struct Ci {
    pub dir: tempfile::TempDir,
    pub vars: Vec<(String, String)>,
}

impl Ci {
    /// Vault with the root token, moto with the test credentials.
    pub fn new(env: &TestEnv) -> Self {
        let mut ci = Self::bare();
        for name in [
            "VAULT_ADDR",
            "VAULT_TOKEN",
            "AWS_ENDPOINT_URL",
            "AWS_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        ] {
            ci.set(name, env.var(name));
        }
        ci
    }

    /// Only PATH and HOME.
    pub fn bare() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().display().to_string();
        let vars = vec![
            ("PATH".to_owned(), std::env::var("PATH").unwrap_or_default()),
            ("HOME".to_owned(), home),
            ("AWS_EC2_METADATA_DISABLED".to_owned(), "true".to_owned()),
        ];
        Ci { dir, vars }
    }

    pub fn set(&mut self, name: &str, value: &str) {
        self.unset(name);
        self.vars.push((name.to_owned(), value.to_owned()));
    }

    pub fn unset(&mut self, name: &str) {
        self.vars.retain(|(n, _)| n != name);
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, rel: &str) -> PathBuf {
        self.path().join(rel)
    }

    pub fn write(&self, rel: &str, content: &str) -> String {
        let path = self.file(rel);
        std::fs::write(&path, content).unwrap();
        path.display().to_string()
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.file(rel)).unwrap()
    }

    /// The command, not started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_seal"));
        command
            .args(args)
            .current_dir(self.path())
            .env_clear()
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Runs `seal` to the end.
    pub fn seal(&self, args: &[&str]) -> Run {
        let output = self.command(args).output().unwrap();
        Run {
            status: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// Writes a KV v2 secret under `secret/` and returns its vals path (`secret/data/...`).
pub async fn vault_kv2(env: &TestEnv, data: &[(&str, &str)]) -> Result<String> {
    let path = format!("ci/{}", unique_name("app"));
    let data: HashMap<&str, &str> = data.iter().copied().collect();
    vaultrs::kv2::set(&env.vault_client(None)?, "secret", &path, &data).await?;
    Ok(format!("secret/data/{path}"))
}

/// Writes a KV v1 secret under `kv/` and returns its path (`kv/...`).
pub async fn vault_kv1(env: &TestEnv, data: &[(&str, &str)]) -> Result<String> {
    let path = format!("ci/{}", unique_name("app"));
    let data: HashMap<&str, &str> = data.iter().copied().collect();
    vaultrs::kv1::set(&env.vault_client(None)?, "kv", &path, &data).await?;
    Ok(format!("kv/{path}"))
}

/// Creates a Secrets Manager secret holding `text` and returns its name.
pub async fn aws_secret(env: &TestEnv, text: &str) -> Result<String> {
    let name = format!("ci/{}", unique_name("app"));
    env.secretsmanager()
        .await
        .create_secret()
        .name(&name)
        .secret_string(text)
        .send()
        .await?;
    Ok(name)
}

/// `text` as a JSON string literal.
pub fn json_str(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

/// Writes `input` to `program`'s stdin and returns its stdout (for cross-checking an output
/// with another reader of the format).
pub fn pipe(program: &str, args: &[&str], input: &str) -> String {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{program} failed");
    String::from_utf8(output.stdout).unwrap()
}
