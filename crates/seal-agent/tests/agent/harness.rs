//! Running `seal-agent` with exactly the environment a test gives it, seeding secrets into the
//! test environment's OpenBao (KV v2 at `secret/`) and moto, and a minimal HTTP/1.1 client that
//! can also misbehave (partial headers, idle connections) for the endpoint's rules.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use seal_testenv::{TestEnv, unique_name};

/// The endpoint token the tests use.
pub const TOKEN: &str = "test-token-0123456789";

/// What one finished run did.
#[derive(Debug)]
pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn ok(&self) {
        assert_eq!(self.status, 0, "expected success, stderr:\n{}", self.stderr);
    }

    #[track_caller]
    pub fn fails(&self, code: i32, needle: &str) {
        assert_eq!(self.status, code, "exit code; stderr:\n{}", self.stderr);
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
    }
}

/// A scratch directory (also `HOME`) and the environment the agent runs with.
pub struct Agent {
    pub dir: tempfile::TempDir,
    pub vars: Vec<(String, String)>,
}

impl Agent {
    /// OpenBao with the root token, moto with the test credentials, the endpoint token.
    pub fn new(env: &TestEnv) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut vars = vec![
            ("PATH".to_owned(), std::env::var("PATH").unwrap_or_default()),
            ("HOME".to_owned(), dir.path().display().to_string()),
            ("AWS_EC2_METADATA_DISABLED".to_owned(), "true".to_owned()),
            ("SEAL_AGENT_TOKEN".to_owned(), TOKEN.to_owned()),
        ];
        for name in [
            "VAULT_ADDR",
            "VAULT_TOKEN",
            "AWS_ENDPOINT_URL",
            "AWS_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        ] {
            vars.push((name.to_owned(), env.var(name).to_owned()));
        }
        Agent { dir, vars }
    }

    pub fn set(&mut self, name: &str, value: &str) {
        self.vars.retain(|(n, _)| n != name);
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

    /// Writes the configuration; `{dir}` in it becomes the scratch directory.
    pub fn config(&self, text: &str) -> String {
        let path = self.file("config.yaml");
        std::fs::write(
            &path,
            text.replace("{dir}", &self.path().display().to_string()),
        )
        .unwrap();
        path.display().to_string()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_seal-agent"));
        command
            .args(args)
            .current_dir(self.path())
            .env_clear()
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        command
    }

    /// Runs the agent to the end.
    pub fn run(&self, args: &[&str]) -> Run {
        let output = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        Run {
            status: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Starts the agent in the background, its stderr (the log) going to a file.
    pub fn spawn(&self, args: &[&str]) -> Running {
        let log = self.file(&format!("{}.log", unique_name("agent")));
        let child = self
            .command(args)
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
            ))
            .spawn()
            .unwrap();
        Running { child, log }
    }
}

/// A running agent, killed when dropped.
pub struct Running {
    pub child: Child,
    pub log: PathBuf,
}

impl Running {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The endpoint's address, from the start-up log line (the tests listen on port 0).
    pub fn address(&self) -> String {
        self.listening("endpoint")
    }

    /// The address of the `what` listener (`endpoint`, `metrics`), from its start-up log line.
    pub fn listening(&self, what: &str) -> String {
        let needle = format!("{what} listening on ");
        wait_for(&needle, Duration::from_secs(30), || {
            let log = self.log();
            log.lines()
                .find_map(|l| l.split(&needle).nth(1))
                .map(|a| a.trim().to_owned())
        })
    }

    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap())
    }

    /// Waits for the agent to exit; its code, or 128 + signal.
    pub fn wait(&mut self, limit: Duration) -> i32 {
        use std::os::unix::process::ExitStatusExt as _;
        let status = wait_for("the agent to exit", limit, || {
            self.child.try_wait().unwrap()
        });
        status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port free when asked.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Polls `check` every 50 ms until it returns `Some`, panicking with `what` after `limit`.
#[track_caller]
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not after {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes a KV v2 secret under `secret/agent/...` and returns its vals path.
pub async fn vault_kv2(env: &TestEnv, data: &[(&str, &str)]) -> Result<String> {
    let path = format!("agent/{}", unique_name("app"));
    vault_put(env, &format!("secret/data/{path}"), data).await?;
    Ok(format!("secret/data/{path}"))
}

/// Writes a new version of the KV v2 secret at vals path `path`.
pub async fn vault_put(env: &TestEnv, path: &str, data: &[(&str, &str)]) -> Result<()> {
    let rest = path
        .strip_prefix("secret/data/")
        .expect("a secret/data/ path");
    let data: HashMap<&str, &str> = data.iter().copied().collect();
    vaultrs::kv2::set(&env.vault_client(None)?, "secret", rest, &data).await?;
    Ok(())
}

/// Creates a Secrets Manager secret holding `text` and returns its name.
pub async fn aws_secret(env: &TestEnv, text: &str) -> Result<String> {
    let name = format!("agent/{}", unique_name("app"));
    env.secretsmanager()
        .await
        .create_secret()
        .name(&name)
        .secret_string(text)
        .send()
        .await?;
    Ok(name)
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// One request on a fresh connection (`Connection: close`), headers as given.
pub fn http(address: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Result<Answer> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    for (name, value) in headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    if method == "POST" {
        request.push_str("Content-Length: 0\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_answer(&raw)
}

pub fn parse_answer(raw: &[u8]) -> Result<Answer> {
    let text = String::from_utf8_lossy(raw).into_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("no HTTP answer: {text:?}");
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok(Answer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    })
}

/// A GET with the token.
pub fn get(address: &str, path: &str) -> Answer {
    http(
        address,
        "GET",
        path,
        &[("X-Aws-Parameters-Secrets-Token", TOKEN)],
    )
    .unwrap()
}

/// The value of one metric line (exact name and labels), 0 when absent.
pub fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

/// `text` as a JSON string literal.
pub fn json_str(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}
