//! Every failure exits non-zero naming the reference and leaves nothing behind: a missing path,
//! a missing key, a denied read, an unreachable server, and a server stopped mid-run (a
//! throwaway OpenBao of the test's own; the shared one is never stopped). With one good
//! reference among bad ones, nothing is printed, written or appended to `$GITHUB_ENV`.

use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use seal_testenv::testenv;

use crate::harness::{Ci, aws_secret, vault_kv2};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

#[tokio::test]
async fn missing_paths_and_keys_fail_naming_the_reference_and_write_nothing() -> Result<()> {
    let env = testenv!();
    let mut ci = Ci::new(env);
    let good = aws_secret(env, r#"{"k":"v"}"#).await?;
    let v2 = vault_kv2(env, &[("k", "v")]).await?;
    let github_env = ci.write("github_env", "");
    ci.set("GITHUB_ENV", &github_env);
    let cases = [
        (
            "ref+vault://secret/data/ci/no-such-secret#/k".to_owned(),
            "vault",
        ),
        (format!("ref+vault://{v2}#/no-such-key"), "no such property"),
        (
            "ref+awssecrets://ci/no-such-secret#/k".to_owned(),
            "not found",
        ),
        (
            format!("ref+awssecrets://{good}#/no-such-key"),
            "no such property",
        ),
    ];
    for (bad, needle) in &cases {
        let file = ci.write(
            "env.yaml",
            &format!("GOOD: ref+awssecrets://{good}#/k\nBAD: {bad}\n"),
        );
        for format in ["dotenv", "github"] {
            let mut args = vec!["env", "-f", &file, "--format", format];
            if format == "dotenv" {
                args.extend(["-w", "out.env"]);
            }
            let run = ci.seal(&args);
            run.fails(2, bad);
            assert!(run.stderr.contains(needle), "{}", run.stderr);
            assert!(!ci.file("out.env").exists());
            assert_eq!(ci.read("github_env"), "");
        }
        ci.seal(&["get", bad]).fails(2, bad);
    }
    Ok(())
}

#[tokio::test]
async fn a_denied_read_fails_with_exit_2() -> Result<()> {
    let env = testenv!();
    let mut ci = Ci::new(env);
    ci.unset("VAULT_TOKEN");
    ci.set("SEAL_VAULT_AUTH_METHOD", "approle");
    ci.set("VAULT_ROLE_ID", env.var("SEAL_TESTENV_APPROLE_ROLE_ID"));
    ci.set("VAULT_SECRET_ID", env.var("SEAL_TESTENV_APPROLE_SECRET_ID"));
    // The seal-read policy reads secret/ and kv/, not the policies themselves.
    ci.seal(&["get", "ref+vault://sys/policy/seal-read"])
        .fails(2, "ref+vault://sys/policy/seal-read: vault");
    let run = ci.seal(&["get", "ref+vault://sys/policy/seal-read"]);
    assert!(run.stderr.contains("access denied"), "{}", run.stderr);
    // A token Vault does not know.
    let mut ci = Ci::new(env);
    ci.set("VAULT_TOKEN", "hvs.not-a-token");
    ci.seal(&["get", "ref+vault://secret/data/ci/x#/k"])
        .fails(2, "access denied");
    Ok(())
}

#[tokio::test]
async fn unreachable_servers_fail_with_exit_3() -> Result<()> {
    let env = testenv!();
    let mut ci = Ci::new(env);
    let closed = format!("http://127.0.0.1:{}", free_port());
    ci.set("VAULT_ADDR", &closed);
    ci.set("AWS_ENDPOINT_URL", &closed);
    for reference in [
        "ref+vault://secret/data/ci/x#/k",
        "ref+awssecrets://ci/x#/k",
    ] {
        let run = ci.seal(&["get", "--timeout", "1s", reference]);
        run.fails(3, reference);
        assert!(
            run.stderr.contains("unavailable after 4 attempt(s)"),
            "{}",
            run.stderr
        );
    }
    Ok(())
}

/// A throwaway OpenBao dev server in its own process group, killed when dropped.
struct Throwaway {
    child: Child,
    address: String,
    port: u16,
}

impl Throwaway {
    fn start() -> Result<Self> {
        let cache = std::env::var_os("SEAL_CACHE_DIR").map_or_else(
            || PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/seal-dev"),
            PathBuf::from,
        );
        let bao = std::fs::read_dir(&cache)?
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin/bao"))
            .find(|p| p.exists())
            .context("no OpenBao binary in the cache (cargo xtask testenv build)")?;
        let port = free_port();
        let child = Command::new(bao)
            .args([
                "server",
                "-dev",
                "-dev-root-token-id=root",
                &format!("-dev-listen-address=127.0.0.1:{port}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        let server = Throwaway {
            child,
            address: format!("http://127.0.0.1:{port}"),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("the throwaway OpenBao is not listening after 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    fn signal(&self, signal: Signal) {
        let group = Pid::from_raw(i32::try_from(self.child.id()).expect("a pid fits i32"));
        let _ = killpg(group, signal);
    }

    /// True once a TCP connection to the server is established (seal's request in flight).
    fn has_client(&self) -> bool {
        let port = format!(":{:04X} ", self.port);
        std::fs::read_to_string("/proc/net/tcp").is_ok_and(|table| {
            table.lines().any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                // local_address rem_address st: a client's socket has the server as remote.
                fields.len() > 3 && format!("{} ", fields[2]).ends_with(&port) && fields[3] == "01"
            })
        })
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_server_stopped_mid_run_fails_the_run_and_nothing_is_written() -> Result<()> {
    let env = testenv!();
    let server = Throwaway::start()?;
    let settings = vaultrs::client::VaultClientSettingsBuilder::default()
        .address(&server.address)
        .token("root")
        .build()?;
    let root = vaultrs::client::VaultClient::new(settings)?;
    // The dev server mounts KV v2 at secret/ once it is up; retry until it answers.
    let deadline = Instant::now() + Duration::from_secs(30);
    while vaultrs::kv2::set(
        &root,
        "secret",
        "ci/db",
        &[("k", "v")]
            .into_iter()
            .collect::<std::collections::HashMap<_, _>>(),
    )
    .await
    .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the throwaway OpenBao never accepted a write"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let good = aws_secret(env, "aws-ok").await?;
    let mut ci = Ci::new(env);
    ci.set("VAULT_ADDR", &server.address);
    ci.set("VAULT_TOKEN", "root");
    let file = ci.write(
        "env.yaml",
        &format!("GOOD: ref+awssecrets://{good}\nDB: ref+vault://secret/data/ci/db#/k\n"),
    );
    // It works while the server runs.
    assert_eq!(ci.seal(&["env", "-f", &file]).ok(), "GOOD=aws-ok\nDB=v\n");

    // Frozen: seal connects and waits; then the server dies under it.
    server.signal(Signal::SIGSTOP);
    let seal = ci
        .command(&["env", "-f", &file, "-w", "out.env", "--timeout", "20s"])
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server.has_client() {
        assert!(Instant::now() < deadline, "seal never connected");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(server);
    let output = seal.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("ref+vault://secret/data/ci/db#/k") && stderr.contains("unavailable"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
    assert!(!ci.file("out.env").exists());
    Ok(())
}

/// Finding 8: a reference in a values file (which a pull request can change) names another
/// Vault address. The CI's token goes nowhere: the reference is refused before any connection,
/// with the flag that would allow it, and nothing is printed. Plain http off loopback is refused
/// for the configured address too.
#[tokio::test]
async fn a_reference_cannot_send_the_ci_token_to_another_address() -> Result<()> {
    use std::io::Read as _;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let env = testenv!();
    let mut ci = Ci::new(env);
    let v2 = vault_kv2(env, &[("k", "v")]).await?;
    // The attacker's server: counts connections, reads what arrives.
    let trap = TcpListener::bind("127.0.0.1:0")?;
    let trap_address = format!("http://{}", trap.local_addr()?);
    let heard = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&heard);
    std::thread::spawn(move || {
        for stream in trap.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut stream = stream;
            let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
            let _ = stream.read(&mut [0; 4096]);
        }
    });
    let planted = format!("ref+vault://{v2}?address={trap_address}#/k");
    let run = ci.seal(&["get", &planted]);
    run.fails(2, "--allow-reference-address");
    assert!(
        !run.stderr.contains(env.var("VAULT_TOKEN")),
        "the token is in stderr"
    );
    assert_eq!(heard.load(Ordering::SeqCst), 0, "the trap was reached");
    // The same reference naming the configured address works.
    let same = format!("ref+vault://{v2}?address={}#/k", env.var("VAULT_ADDR"));
    assert_eq!(ci.seal(&["get", &same]).ok(), "v\n");
    // Allowed on purpose, it goes there (and so the trap hears it).
    let run = ci.seal(&[
        "get",
        "--allow-reference-address",
        "--timeout",
        "2s",
        &planted,
    ]);
    assert_ne!(run.status, 0);
    assert!(
        heard.load(Ordering::SeqCst) > 0,
        "the allowed address was not tried"
    );
    // Plain http to a host that is not loopback: refused even as the configured address.
    ci.set("VAULT_ADDR", "http://vault.example.invalid:8200");
    ci.seal(&["get", &format!("ref+vault://{v2}#/k")])
        .fails(2, "--allow-http-vault");
    Ok(())
}
