//! An outage of the provider, with a throwaway OpenBao of the test's own (the shared one is
//! never stopped): the endpoint serves the last value (marked stale) while it is down, up to the
//! stale bound, and fresh values once it is back; `run` keeps the files it wrote.

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use seal_testenv::testenv;

use crate::harness::{Agent, free_port, get, http, metric, wait_for};

/// A throwaway OpenBao dev server (root token `root`) in its own process group, killed when
/// dropped.
struct Throwaway {
    child: Child,
    address: String,
}

impl Throwaway {
    fn start(port: u16) -> Result<Self> {
        let cache = std::env::var_os("SEAL_CACHE_DIR").map_or_else(
            || PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/seal-dev"),
            PathBuf::from,
        );
        let bao = std::fs::read_dir(&cache)?
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin/bao"))
            .find(|p| p.exists())
            .context("no OpenBao binary in the cache (cargo xtask testenv build)")?;
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

    async fn put(&self, value: &str) -> Result<()> {
        let settings = vaultrs::client::VaultClientSettingsBuilder::default()
            .address(&self.address)
            .token("root")
            .build()?;
        let client = vaultrs::client::VaultClient::new(settings)?;
        // The dev server may take a moment to mount secret/ after it listens.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let data = std::collections::HashMap::from([("pw", value)]);
            match vaultrs::kv2::set(&client, "secret", "outage", &data).await {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e.into()),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        let group = Pid::from_raw(i32::try_from(self.child.id()).expect("a pid fits i32"));
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn stale_values_are_served_during_an_outage_and_fresh_ones_after_it() -> Result<()> {
    let env = testenv!();
    let port = free_port();
    let bao = Throwaway::start(port)?;
    bao.put("before").await?;
    let mut agent = Agent::new(env);
    agent.set("VAULT_ADDR", &bao.address);
    agent.set("VAULT_TOKEN", "root");
    let config = agent.config(
        r#"
timeout: 1s
secrets: {pw: 'ref+vault://secret/data/outage#/pw'}
files: [{path: "{dir}/pw", secret: pw}]
refresh: {interval: 300ms}
server: {listen: "127.0.0.1:0", ttl: 1s, maxStale: 1h}
"#,
    );
    let running = agent.spawn(&["run", "-c", &config]);
    let address = running.address();
    let first = get(&address, "/v1/secrets/pw");
    assert_eq!((first.status, first.body.as_str()), (200, "before"));
    assert_eq!(first.header("x-seal-stale"), None);

    drop(bao);
    std::thread::sleep(Duration::from_millis(1200));
    let stale = get(&address, "/v1/secrets/pw");
    assert_eq!(
        (stale.status, stale.body.as_str()),
        (200, "before"),
        "{stale:?}"
    );
    assert_eq!(stale.header("x-seal-stale").as_deref(), Some("true"));
    // The file stays as it was while refreshes fail.
    wait_for("a failed refresh", Duration::from_secs(30), || {
        running.log().contains("refresh failed").then_some(())
    });
    assert_eq!(std::fs::read_to_string(agent.file("pw"))?, "before");
    let metrics = http(&address, "GET", "/metrics", &[])?.body;
    assert!(
        metric(
            &metrics,
            "seal_agent_cache_requests_total{route=\"secrets\",outcome=\"stale\"}"
        ) >= 1
    );
    assert!(metric(&metrics, "seal_agent_refreshes_total{result=\"error\"}") >= 1);

    // Back, with a new value: served fresh, and the file follows.
    let bao = Throwaway::start(port)?;
    bao.put("after").await?;
    wait_for("a fresh value", Duration::from_secs(30), || {
        let answer = get(&address, "/v1/secrets/pw");
        (answer.body == "after" && answer.header("x-seal-stale").is_none()).then_some(())
    });
    wait_for("the file to follow", Duration::from_secs(30), || {
        (std::fs::read_to_string(agent.file("pw")).ok()? == "after").then_some(())
    });
    Ok(())
}

#[tokio::test]
async fn past_the_stale_bound_an_outage_is_an_error() -> Result<()> {
    let env = testenv!();
    let port = free_port();
    let bao = Throwaway::start(port)?;
    bao.put("v").await?;
    let mut agent = Agent::new(env);
    agent.set("VAULT_ADDR", &bao.address);
    agent.set("VAULT_TOKEN", "root");
    let config = agent.config(
        r#"
timeout: 1s
secrets: {pw: 'ref+vault://secret/data/outage#/pw'}
server: {listen: "127.0.0.1:0", ttl: 1s, maxStale: 1s}
"#,
    );
    let running = agent.spawn(&["run", "-c", &config]);
    let address = running.address();
    assert_eq!(get(&address, "/v1/secrets/pw").status, 200);
    drop(bao);
    std::thread::sleep(Duration::from_millis(2200));
    let answer = get(&address, "/v1/secrets/pw");
    assert_eq!(answer.status, 502, "{answer:?}");
    assert!(answer.body.contains("unavailable"), "{}", answer.body);
    Ok(())
}
