//! What the controller benchmarks share: running a seal-controller binary against the test
//! environment, waiting until it is ready, and reading its CPU time and memory from `/proc`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use seal_testenv::TestEnv;

/// CPU time (user + system, every thread) a process has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = procfs::process::Process::new(i32::try_from(pid)?)?.stat()?;
    #[allow(clippy::cast_precision_loss)]
    Ok((stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64)
}

/// Whose CPU time a run reports: the controller, the test servers it talks to, and this bench.
pub fn cpu_sample(env: &TestEnv, controller: u32) -> Result<Vec<(&'static str, f64)>> {
    let pids = std::fs::read_to_string(Path::new(env.var("SEAL_TESTENV_DIR")).join("pids"))?;
    // `NAME PGID START` per server: the process group's leader is the server itself.
    let server = |name: &str| -> Result<u32> {
        pids.lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .with_context(|| format!("no {name} in the test environment's pids"))
    };
    Ok(vec![
        ("controller", cpu_seconds(controller)?),
        ("kube-apiserver", cpu_seconds(server("kube-apiserver ")?)?),
        ("etcd", cpu_seconds(server("etcd ")?)?),
        (
            "kube-controller-manager",
            cpu_seconds(server("kube-controller-manager ")?)?,
        ),
        ("moto", cpu_seconds(server("moto ")?)?),
        ("bench", cpu_seconds(std::process::id())?),
    ])
}

/// CPU seconds spent by each process between two [`cpu_sample`]s, as `name 1.2, ...`.
pub fn cpu_spent(before: &[(&'static str, f64)], after: &[(&'static str, f64)]) -> String {
    after
        .iter()
        .zip(before)
        .map(|((who, after), (_, before))| format!("{who} {:.1}", after - before))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A running controller, killed when dropped.
pub struct Running {
    pub child: Child,
    _log: tempfile::NamedTempFile,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    /// Starts `command` with its stderr in a temporary log and waits until `GET ready_path` on
    /// `port` answers 200.
    pub async fn start(mut command: Command, port: u16, ready_path: &str) -> Result<Self> {
        let log = tempfile::NamedTempFile::new()?;
        let child = command
            .stdout(Stdio::null())
            .stderr(log.reopen()?)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {}",
                    Path::new(command.get_program()).display()
                )
            })?;
        let mut running = Self { child, _log: log };
        running.wait_ready(port, ready_path).await?;
        Ok(running)
    }

    async fn wait_ready(&mut self, port: u16, path: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("the controller exited: {status}");
            }
            if http_get(port, path).is_some_and(|answer| {
                answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
            }) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("not ready within 120 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The controller's `/proc/PID/status`.
    fn status(&self) -> Result<procfs::process::Status> {
        Ok(procfs::process::Process::new(i32::try_from(self.child.id())?)?.status()?)
    }

    /// The peak resident set so far (`VmHWM`), in MiB.
    pub fn peak_rss_mib(&self) -> Result<f64> {
        mib(self.status()?.vmhwm, "VmHWM")
    }

    /// Peak RSS, and what the resident set is made of now: heap and stacks (`RssAnon`) and
    /// pages of the binary and libraries (`RssFile`).
    pub fn memory_report(&self) -> Result<String> {
        let status = self.status()?;
        Ok(format!(
            "peak RSS {:.1} MiB (now: anonymous {:.1} MiB, file-backed {:.1} MiB)",
            mib(status.vmhwm, "VmHWM")?,
            mib(status.rssanon, "RssAnon")?,
            mib(status.rssfile, "RssFile")?
        ))
    }
}

/// The whole answer to `GET path` on 127.0.0.1:`port` over HTTP/1.0, if there is one.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The seal-controller command line a benchmark runs: the release binary, the test environment's
/// kubeconfig, keys in `key_namespace`, HTTP on `port` and metrics on `metrics_port`, plus
/// `SEAL_BENCH_CONTROLLER_ARGS`.
pub fn seal_controller(
    binary: &Path,
    env: &TestEnv,
    key_namespace: &str,
    port: u16,
    metrics_port: u16,
) -> Command {
    let mut command = Command::new(binary);
    command
        .args(["--key-namespace", key_namespace])
        .args(["--listen-addr", &format!("127.0.0.1:{port}")])
        .args([
            "--listen-metrics-addr",
            &format!("127.0.0.1:{metrics_port}"),
        ])
        .args(
            std::env::var("SEAL_BENCH_CONTROLLER_ARGS")
                .unwrap_or_default()
                .split_whitespace(),
        )
        .env("KUBECONFIG", env.kubeconfig())
        .env("RUST_LOG", "warn");
    command
}

/// A `/proc/PID/status` figure (KiB) in MiB; `field` names it when the kernel does not show it.
fn mib(kib: Option<u64>, field: &str) -> Result<f64> {
    #[allow(clippy::cast_precision_loss)]
    Ok(kib.with_context(|| format!("no {field} in /proc/PID/status"))? as f64 / 1024.0)
}
