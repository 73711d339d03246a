//! What the controller tests share: SealedSecret fixtures and the `seal-controller` binary run as a
//! process, with the addresses it reports and its log.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::ListParams;
use seal_api::SealedSecret;
use seal_api::sealing::{SealOptions, seal_secret};

use seal_api::names::{SEALED_SECRET_UID_LABEL, SEALING_KEY_LABEL};
use seal_core::Certificate;
use seal_testenv::{TestEnv, TestNamespace, eventually, secret_from_pairs};

/// Installs seal's CRDs.
pub async fn install_crds(env: &TestEnv) -> Result<()> {
    let crd: CustomResourceDefinition = serde_yaml::from_str(&seal_api::crd_yaml())?;
    env.apply_crd(&crd).await
}

/// A strict SealedSecret `namespace/name` holding `items`, sealed to `certificate`.
pub fn sealed(
    certificate: &Certificate,
    namespace: &str,
    name: &str,
    items: &[(&str, &str)],
) -> Result<SealedSecret> {
    Ok(seal_secret(
        &secret_from_pairs(name, namespace, items),
        &SealOptions {
            certificate,
            scope: None,
            namespace: None,
            name: None,
            allow_empty_data: false,
        },
    )?)
}

/// Creates `count` SealedSecrets `{prefix}{i}` in `ns`, 16 at a time, each with the one item
/// `v` = `{prefix}-value-{i}`, sealed to `certificate`.
pub async fn create_many(
    ns: &TestNamespace,
    certificate: &Certificate,
    prefix: &str,
    count: usize,
) -> Result<()> {
    use futures::{StreamExt, TryStreamExt};
    let api = ns.api::<SealedSecret>();
    futures::stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            let object = sealed(
                certificate,
                ns.name(),
                &format!("{prefix}{i}"),
                &[("v", &format!("{prefix}-value-{i}"))],
            );
            async move {
                api.create(&kube::api::PostParams::default(), &object?)
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// How many Secrets in `ns` the controller produced.
pub async fn count_produced(ns: &TestNamespace) -> Result<usize> {
    let list = ns
        .api::<Secret>()
        .list_metadata(&ListParams::default().labels(SEALED_SECRET_UID_LABEL))
        .await?;
    Ok(list.items.len())
}

/// An item of a Secret's `data`.
pub fn item(secret: &Secret, name: &str) -> Option<Vec<u8>> {
    Some(secret.data.as_ref()?.get(name)?.0.clone())
}

/// The certificate of the first key Secret the controller makes in `keys`.
pub async fn first_key(keys: &TestNamespace) -> Result<Certificate> {
    let api = keys.api::<Secret>();
    let secret = eventually(
        "the controller makes a key",
        Duration::from_secs(60),
        || {
            let api = api.clone();
            async move {
                let list = api
                    .list(&ListParams::default().labels(SEALING_KEY_LABEL))
                    .await?;
                Ok(list.items.into_iter().next())
            }
        },
    )
    .await?;
    Ok(Certificate::from_pem(
        &item(&secret, "tls.crt").context("no tls.crt")?,
    )?)
}

/// A `seal-controller` process; killed when dropped. Its log goes to a file.
/// A peer's program (Bitnami's or ESO's controller), killed when dropped; its log in a file of
/// its own, for a failure's message.
pub struct PeerProcess {
    child: Child,
    log: tempfile::NamedTempFile,
}

impl PeerProcess {
    /// Spawns `command` (`what` names it in errors) with its stderr in the log and its stdout
    /// discarded.
    pub fn spawn(command: &mut Command, what: &str) -> Result<Self> {
        let log = tempfile::NamedTempFile::new()?;
        let child = command
            .stdout(Stdio::null())
            .stderr(log.reopen()?)
            .spawn()
            .with_context(|| format!("cannot start {what}"))?;
        Ok(Self { child, log })
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Kills it and waits for it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

pub struct ControllerProcess {
    child: Child,
    log: tempfile::NamedTempFile,
    /// `http://127.0.0.1:PORT` of the certificate API.
    pub api: String,
    /// `http://127.0.0.1:PORT` of the metrics endpoint.
    pub metrics: String,
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ControllerProcess {
    /// Starts the controller with its keys in `keys_namespace`, 2048-bit keys, both servers on
    /// loopback ports of its choosing, and `args`; returns once both servers listen.
    pub async fn start(env: &TestEnv, keys_namespace: &str, args: &[&str]) -> Result<Self> {
        Self::start_as(env, keys_namespace, "seal-controller-0", args).await
    }

    /// As [`ControllerProcess::start`], with `POD_NAME` (the leader election identity) set.
    pub async fn start_as(
        env: &TestEnv,
        keys_namespace: &str,
        pod_name: &str,
        args: &[&str],
    ) -> Result<Self> {
        Self::start_with(env.kubeconfig(), keys_namespace, pod_name, args).await
    }

    /// As [`ControllerProcess::start_as`], with the identity of `kubeconfig`.
    pub async fn start_with(
        kubeconfig: &std::path::Path,
        keys_namespace: &str,
        pod_name: &str,
        args: &[&str],
    ) -> Result<Self> {
        let log = tempfile::NamedTempFile::new()?;
        let mut command = Command::new(env!("CARGO_BIN_EXE_seal-controller"));
        command.args(["--key-namespace", keys_namespace, "--key-size", "2048"]);
        if !args.contains(&"--listen-addr") {
            command.args(["--listen-addr", "127.0.0.1:0"]);
        }
        let child = command
            .args(["--listen-metrics-addr", "127.0.0.1:0"])
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", pod_name)
            .env("RUST_LOG", "debug,hyper=info,tower=info,kube_client=info")
            .stdout(Stdio::null())
            .stderr(log.reopen()?)
            .spawn()?;
        let mut process = Self {
            child,
            log,
            api: String::new(),
            metrics: String::new(),
        };
        let (api, metrics) = eventually("the controller listens", Duration::from_secs(30), || {
            let log = process.log();
            let exited = process.child.try_wait().ok().flatten();
            async move {
                if let Some(status) = exited {
                    bail!("the controller exited ({status}):\n{log}");
                }
                // An unsealer serves the certificate API, a syncer only the probes.
                let api = address(&log, "serving the certificate API")
                    .or_else(|| address(&log, "serving the probes"));
                Ok(api.zip(address(&log, "serving the metrics")))
            }
        })
        .await?;
        process.api = format!("http://{api}");
        process.metrics = format!("http://{metrics}");
        Ok(process)
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Kills the process with SIGKILL, as a node failure would.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Sends SIGTERM and waits up to 20 s for the exit.
    pub fn terminate(&mut self) -> Result<ExitStatus> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id())?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("still running 20 s after SIGTERM:\n{}", self.log())
    }

    /// The metrics text.
    pub fn scrape(&self) -> Result<String> {
        let (code, body) = get(&format!("{}/metrics", self.metrics))?;
        if code != 200 {
            bail!("/metrics answered {code}");
        }
        Ok(body)
    }
}

/// The value of an unlabelled metric line `name VALUE`.
pub fn metric(scrape: &str, name: &str) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// `address=HOST:PORT` on the log line carrying `message`.
fn address(log: &str, message: &str) -> Option<String> {
    let line = log.lines().find(|line| line.contains(message))?;
    let rest = &line[line.find("address=")? + "address=".len()..];
    Some(rest.split_whitespace().next()?.to_owned())
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// GET `url`: status code and body.
pub fn get(url: &str) -> Result<(u16, String)> {
    let mut response = agent().get(url).call()?;
    Ok((
        response.status().as_u16(),
        response.body_mut().read_to_string()?,
    ))
}

/// POST `body` to `url`: status code, `Retry-After` if any, and body.
pub fn post(url: &str, body: &str) -> Result<(u16, Option<String>, String)> {
    respond(agent().post(url).send(body)?)
}

fn respond(
    mut response: ureq::http::Response<ureq::Body>,
) -> Result<(u16, Option<String>, String)> {
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((
        response.status().as_u16(),
        retry_after,
        response.body_mut().read_to_string()?,
    ))
}

/// POST `body` to `url` with one extra `header`: status code, `Retry-After` if any, and body.
pub fn post_with_header(
    url: &str,
    (name, value): (&str, &str),
    body: &str,
) -> Result<(u16, Option<String>, String)> {
    respond(agent().post(url).header(name, value).send(body)?)
}

/// The `seal` binary of this workspace, built on first use (a no-op when `cargo test --workspace`
/// already built it).
pub fn seal_binary() -> Result<std::path::PathBuf> {
    static BUILT: std::sync::OnceLock<Result<std::path::PathBuf, String>> =
        std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args([
                    "build", "--quiet", "--locked", "-p", "seal-cli", "--bin", "seal",
                ])
                .status()
                .map_err(|e| format!("cannot run cargo: {e}"))?;
            if !status.success() {
                return Err(format!("building seal failed ({status})"));
            }
            Ok(std::path::Path::new(env!("CARGO_BIN_EXE_seal-controller")).with_file_name("seal"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// A finished command: exit code, stdout, stderr.
pub struct Ran {
    /// The exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `program args` with `env` added, in `cwd`.
pub fn run(
    program: &std::path::Path,
    args: &[&str],
    env: &[(&str, &std::ffi::OsStr)],
    cwd: &std::path::Path,
) -> Result<Ran> {
    let output = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", program.display()))?;
    Ok(Ran {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// kubeseal v0.40.0 from `SEAL_KUBESEAL` (which `cargo xtask test` sets). Missing, it fails the
/// test where the test environment is required and skips it elsewhere.
pub fn kubeseal() -> Option<std::path::PathBuf> {
    if let Some(path) = std::env::var_os("SEAL_KUBESEAL") {
        return Some(path.into());
    }
    let required = std::env::var("SEAL_REQUIRE_TESTENV").is_ok_and(|v| v == "1")
        || std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !required,
        "SEAL_KUBESEAL is not set; `cargo xtask test` sets it"
    );
    println!("SKIPPED: SEAL_KUBESEAL is not set; run `cargo xtask peers` and export it");
    None
}
