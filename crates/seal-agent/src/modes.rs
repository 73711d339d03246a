//! The three modes: `init` (fetch once, write, exit), `run` (the sidecar: refresh, rewrite,
//! notify, and the optional endpoint) and `exec` (supervise the app as a child with the values
//! in its environment).
//!
//! Failures: `init` and `exec` fail before writing or starting anything when a secret cannot be
//! fetched or rendered. `run` and `exec` keep the last good files and child when a refresh fails,
//! log the error (which names the reference, never a value) and try again, sooner at first
//! (1 s, doubling up to the refresh interval).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use seal_providers::reference::resolve::ResolveError;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::config::{self, Config, ConfigError, ExecOnChange, OnChange, SignalTarget};
use crate::endpoint::Server;
use crate::metrics::Metrics;
use crate::output::{Fetcher, Links, Rendered, read_regular, render, write_changed};

/// Reads the configuration from `path`, with the process's environment.
fn load(path: &Path) -> Result<Config, ConfigError> {
    config::load(path, &seal_providers::environment::process)
}

fn fetch_error(e: &ResolveError) -> anyhow::Error {
    if e.others > 0 {
        anyhow!("{e} (and {} more reference(s) failed)", e.others)
    } else {
        anyhow!("{e}")
    }
}

/// Fetches, renders and writes changed files once. Returns the rendered outputs and the files
/// written.
async fn refresh(
    config: &Config,
    fetcher: &Fetcher,
    metrics: &Metrics,
) -> anyhow::Result<(Rendered, Vec<PathBuf>)> {
    let result = async {
        let values = fetcher.fetch().await.map_err(|e| fetch_error(&e))?;
        let rendered = render(config, &values)?;
        let written = write_changed(&config.files, &rendered)?;
        Ok((rendered, written))
    }
    .await;
    match &result {
        Ok((_, written)) => {
            metrics.refresh("success");
            metrics.files_written(written.len());
        }
        Err(_) => metrics.refresh("error"),
    }
    result
}

/// `seal-agent init`.
pub async fn init(path: &Path) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    if config.files.is_empty() {
        return Err(ConfigError {
            field: "files".into(),
            detail: "init has nothing to write: the list is empty".into(),
        }
        .into());
    }
    tracing::info!("init: {}", config::describe(&config));
    let fetcher = Fetcher::new(&config);
    let (_, written) = refresh(&config, &fetcher, &Metrics::default()).await?;
    tracing::info!(
        written = written.len(),
        unchanged = config.files.len() - written.len(),
        "init: files in place"
    );
    Ok(ExitCode::SUCCESS)
}

/// Starts the endpoint and the metrics listener when configured; listeners are bound before
/// this returns, so a port in use fails the start.
async fn start_server(
    config: &mut Config,
    fetcher: &Arc<Fetcher>,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<()> {
    let mut counters = vec![fetcher.resolver().calls().clone()];
    let server = start_endpoint(config, fetcher, metrics).await?;
    if let Some(server) = &server {
        counters.push(server.aws_calls().clone());
    }
    if let Some(listen) = config.metrics_listen {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow!("cannot listen on {listen} (metrics.listen): {e}"))?;
        tracing::info!(
            "metrics listening on {}",
            listener
                .local_addr()
                .map_or_else(|_| "?".into(), |a| a.to_string())
        );
        tokio::spawn(crate::endpoint::serve_metrics(
            listener,
            metrics.clone(),
            counters,
        ));
    }
    Ok(())
}

/// Starts the endpoint when configured (see [`start_server`]).
async fn start_endpoint(
    config: &mut Config,
    fetcher: &Arc<Fetcher>,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Option<Arc<Server>>> {
    let Some(settings) = config.server.take() else {
        return Ok(None);
    };
    let server = Arc::new(
        Server::new(
            settings,
            config.defaults.retry.clone(),
            fetcher.clone(),
            metrics.clone(),
        )
        .await,
    );
    let listener = server.bind().await?;
    tracing::info!(
        "endpoint listening on {}",
        listener
            .local_addr()
            .map_or_else(|_| "?".into(), |a| a.to_string())
    );
    tokio::spawn(server.clone().serve(listener));
    Ok(Some(server))
}

/// The wait after the `failures`-th failed refresh in a row: 1 s doubling, at most `interval`.
fn retry_wait(failures: u32, interval: Duration) -> Duration {
    Duration::from_secs(1u64 << failures.min(16).saturating_sub(1)).min(interval)
}

/// `seal-agent run`.
pub async fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let mut config = load(path)?;
    if config.files.is_empty() && config.server.is_none() && config.metrics_listen.is_none() {
        return Err(ConfigError {
            field: "files".into(),
            detail: "run has nothing to do: no files and no server".into(),
        }
        .into());
    }
    tracing::info!("run: {}", config::describe(&config));
    if !config.env.is_empty() {
        tracing::warn!("env is only used by exec; run ignores it");
    }
    let metrics = Arc::new(Metrics::default());
    let fetcher = Arc::new(Fetcher::new(&config));
    start_server(&mut config, &fetcher, &metrics).await?;
    let mut term = signal(SignalKind::terminate()).context("cannot handle signals")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle signals")?;
    let refresher = async {
        if config.files.is_empty() {
            return std::future::pending::<()>().await;
        }
        let mut failures = 0;
        loop {
            match refresh(&config, &fetcher, &metrics).await {
                Ok((_, written)) => {
                    failures = 0;
                    if !written.is_empty() {
                        tracing::info!(files = ?written, "files changed");
                        if let Some(action) = &config.on_change {
                            on_change(action).await;
                        }
                    }
                    tokio::time::sleep(config.refresh.next_wait()).await;
                }
                Err(e) => {
                    failures += 1;
                    tracing::error!("refresh failed, keeping the current files: {e:#}");
                    tokio::time::sleep(retry_wait(failures, config.refresh.interval)).await;
                }
            }
        }
    };
    tokio::select! {
        () = refresher => {}
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the on-change action of `run`. Failures are logged, never fatal: the files are written
/// already.
async fn on_change(action: &OnChange) {
    match action {
        OnChange::Signal { signal, target } => {
            let pids = match target {
                SignalTarget::PidFile(file) => match read_pid(file) {
                    Ok(pid) => vec![pid],
                    Err(e) => {
                        tracing::warn!("cannot signal: {e:#}");
                        return;
                    }
                },
                SignalTarget::ProcessName(name) => processes_named(name),
            };
            if pids.is_empty() {
                tracing::warn!("cannot signal: no process to signal");
            }
            for pid in pids {
                match kill(pid, *signal) {
                    Ok(()) => tracing::info!(pid = pid.as_raw(), %signal, "signalled"),
                    Err(e) => tracing::warn!(pid = pid.as_raw(), %signal, "cannot signal: {e}"),
                }
            }
        }
        OnChange::Command(argv) => {
            let status = tokio::process::Command::new(&argv[0])
                .args(&argv[1..])
                .stdin(std::process::Stdio::null())
                .status()
                .await;
            match status {
                Ok(s) if s.success() => tracing::info!(command = %argv[0], "on-change command ran"),
                Ok(s) => tracing::warn!(command = %argv[0], "on-change command failed: {s}"),
                Err(e) => {
                    tracing::warn!(command = %argv[0], "cannot run the on-change command: {e}");
                }
            }
        }
    }
}

/// The PID in `file`: a regular file (a link to one is followed) of at most [`PID_FILE_LIMIT`]
/// bytes. The app may write its PID file in a volume it shares with the agent, so whatever it
/// plants there (a FIFO, a link to `/dev/zero`) is refused without waiting ([`read_regular`]).
fn read_pid(file: &Path) -> anyhow::Result<Pid> {
    let text = read_regular(file, PID_FILE_LIMIT, Links::Follow)
        .with_context(|| format!("cannot read the PID file {}", file.display()))?
        .ok_or_else(|| {
            anyhow!(
                "{}: not a regular file of at most {PID_FILE_LIMIT} bytes",
                file.display()
            )
        })?;
    let pid: i32 = std::str::from_utf8(&text)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| anyhow!("{}: not a PID", file.display()))?;
    Ok(Pid::from_raw(pid))
}

/// The largest PID file read: a PID and some whitespace.
const PID_FILE_LIMIT: usize = 64;

/// Every other process whose `comm` or argv\[0\] file name is `name` (a shared process namespace
/// makes the app's processes visible in /proc).
fn processes_named(name: &str) -> Vec<Pid> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        let program = Path::new(std::str::from_utf8(argv0).unwrap_or_default())
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if comm.trim_end() == name || program == name {
            pids.extend(i32::try_from(pid).ok().map(Pid::from_raw));
        }
    }
    pids
}

/// `seal-agent exec`.
pub async fn exec(path: &Path, command: &[OsString]) -> anyhow::Result<ExitCode> {
    let mut config = load(path)?;
    tracing::info!("exec: {}", config::describe(&config));
    let metrics = Arc::new(Metrics::default());
    let fetcher = Arc::new(Fetcher::new(&config));
    let (first, _) = refresh(&config, &fetcher, &metrics).await?;
    start_server(&mut config, &fetcher, &metrics).await?;
    let config = Arc::new(config);

    // Handlers before the spawn: a signal right after it must reach the child.
    let handle = |kind| signal(kind).context("cannot handle signals");
    let mut int = handle(SignalKind::interrupt())?;
    let mut term = handle(SignalKind::terminate())?;
    let mut hup = handle(SignalKind::hangup())?;
    let mut quit = handle(SignalKind::quit())?;
    let mut usr1 = handle(SignalKind::user_defined1())?;
    let mut usr2 = handle(SignalKind::user_defined2())?;

    let mut child = spawn(command, &first, config.exec.clean_env)?;
    let mut current = first;
    let (sender, mut receiver) = mpsc::channel::<Rendered>(1);
    let refresher = {
        let (config, fetcher, metrics) = (config.clone(), fetcher.clone(), metrics.clone());
        tokio::spawn(async move {
            let mut failures = 0;
            loop {
                let wait = if failures == 0 {
                    config.refresh.next_wait()
                } else {
                    retry_wait(failures, config.refresh.interval)
                };
                tokio::time::sleep(wait).await;
                match refresh(&config, &fetcher, &metrics).await {
                    Ok((rendered, written)) => {
                        failures = 0;
                        if !written.is_empty() {
                            tracing::info!(files = ?written, "files changed");
                        }
                        if sender.send(rendered).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        tracing::error!("refresh failed, keeping the current child: {e:#}");
                    }
                }
            }
        })
    };

    let status = loop {
        let forwarded = tokio::select! {
            status = child.wait() => break status.context("cannot wait for the child")?,
            _ = int.recv() => Signal::SIGINT,
            _ = term.recv() => Signal::SIGTERM,
            _ = hup.recv() => Signal::SIGHUP,
            _ = quit.recv() => Signal::SIGQUIT,
            _ = usr1.recv() => Signal::SIGUSR1,
            _ = usr2.recv() => Signal::SIGUSR2,
            Some(rendered) = receiver.recv() => {
                let env_changed = rendered.env.len() != current.env.len()
                    || rendered.env.iter().zip(&current.env).any(|(a, b)| a.1.as_bytes() != b.1.as_bytes());
                let files_changed = rendered.files != current.files;
                if env_changed || files_changed {
                    match config.exec.on_change {
                        ExecOnChange::Restart => {
                            tracing::info!("values changed: restarting the child");
                            stop(&mut child, config.exec.stop_timeout).await;
                            child = spawn(command, &rendered, config.exec.clean_env)?;
                        }
                        ExecOnChange::Signal(signal) => {
                            tracing::info!(%signal, "values changed: signalling the child");
                            if let Some(pid) = child_pid(&child) {
                                let _ = kill(pid, signal);
                            }
                        }
                        ExecOnChange::Ignore => {}
                    }
                }
                current = rendered;
                continue;
            }
        };
        if let Some(pid) = child_pid(&child) {
            // The child may have exited already; its status arrives on the next turn.
            let _ = kill(pid, forwarded);
        }
    };
    refresher.abort();
    Ok(exit_code(status))
}

/// Starts the child with the rendered variables, on top of the agent's environment unless
/// `clean_env` (then `PATH` is not passed either; the program is still looked up in the agent's).
fn spawn(
    command: &[OsString],
    rendered: &Rendered,
    clean_env: bool,
) -> anyhow::Result<tokio::process::Child> {
    let (program, args) = command
        .split_first()
        .expect("invariant: clap requires a command");
    let mut cmd = tokio::process::Command::new(program);
    if clean_env {
        cmd.env_clear();
    }
    cmd.args(args)
        .envs(rendered.env.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot run {}", program.to_string_lossy()))?;
    tracing::info!(pid = child.id(), "child started");
    Ok(child)
}

fn child_pid(child: &tokio::process::Child) -> Option<Pid> {
    child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw)
}

/// SIGTERM, then SIGKILL after `timeout`; waits for the exit either way.
async fn stop(child: &mut tokio::process::Child, timeout: Duration) {
    if let Some(pid) = child_pid(child) {
        let _ = kill(pid, Signal::SIGTERM);
    }
    if tokio::time::timeout(timeout, child.wait()).await.is_err() {
        tracing::warn!("the child did not stop in {timeout:?}: killing it");
        let _ = child.kill().await;
    }
}

/// The child's code, or 128 + the signal that ended it, as a shell reports it.
fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt as _;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FIFO at `path` (no writer ever opens it).
    fn mkfifo(path: &Path) {
        let made = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(made.success(), "mkfifo {}", path.display());
    }

    #[test]
    fn retries_back_off_up_to_the_interval() {
        let interval = Duration::from_secs(10);
        assert_eq!(retry_wait(1, interval), Duration::from_secs(1));
        assert_eq!(retry_wait(2, interval), Duration::from_secs(2));
        assert_eq!(retry_wait(4, interval), Duration::from_secs(8));
        assert_eq!(retry_wait(9, interval), interval);
    }

    #[test]
    fn a_pid_file_is_read_only_when_it_is_a_small_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("app.pid");
        std::fs::write(&file, "4242\n").unwrap();
        assert_eq!(read_pid(&file).unwrap(), Pid::from_raw(4242));
        let link = dir.path().join("linked.pid");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(
            read_pid(&link).unwrap(),
            Pid::from_raw(4242),
            "a link is followed"
        );

        // What an app could plant in the volume it shares: each is refused at once.
        let fifo = dir.path().join("fifo.pid");
        mkfifo(&fifo);
        let zero = dir.path().join("zero.pid");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let large = dir.path().join("large.pid");
        std::fs::write(&large, "1".repeat(PID_FILE_LIMIT + 1)).unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let refused = [fifo, zero, large].map(|f| read_pid(&f).unwrap_err().to_string());
            let _ = done.send(refused);
        });
        let refused = finished
            .recv_timeout(Duration::from_secs(30))
            .expect("read_pid waited on a FIFO or /dev/zero");
        for message in refused {
            assert!(message.contains("not a regular file"), "{message}");
        }
        std::fs::write(&file, "0").unwrap();
        assert!(
            read_pid(&file)
                .unwrap_err()
                .to_string()
                .contains("not a PID")
        );
    }

    #[test]
    fn processes_are_found_by_name() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
        // Until the child has exec'd, it still carries the test binary's name.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !processes_named("sleep").contains(&pid) {
            assert!(std::time::Instant::now() < deadline, "sleep not found");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!processes_named("no-such-process-xyz").contains(&pid));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
