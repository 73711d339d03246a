//! `cargo xtask testenv build | up | down | status | env | run | stop | start`: the real servers the
//! tests talk to (`stop` and `start` take one server away and bring it back, for failure drills).
//!
//! - [`binaries`]: building and installing them once into the cache.
//! - [`pki`]: the test cluster's certificates and ServiceAccount signing key.
//! - [`servers`]: starting them on loopback, waiting until ready, stopping them.
//!
//! [`run_against`] is what `cargo xtask test` uses: one command with the environment's variables,
//! the environment brought down afterwards whatever happens, Ctrl-C included.

mod binaries;
mod failures;
mod host;
mod node;
mod pause;
mod pki;
mod servers;

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::{command_line, interrupt};
pub use binaries::Binaries;
pub use servers::{Environment, Options};

const USAGE: &str = "usage: cargo xtask testenv build | up [--no-node] | down | status | env | run -- COMMAND [ARGS...] | stop SERVER | start SERVER";

/// Runs one `testenv` subcommand.
pub fn command(args: &[String]) -> Result<ExitCode> {
    match args.first().map(String::as_str) {
        Some("build") => Binaries::ensure()?.report()?,
        Some("up") => {
            interrupt::install()?;
            let mut options = Options::from_env();
            if args.iter().any(|a| a == "--no-node") {
                options.node = false;
            }
            let env = Environment::up(&Binaries::ensure()?, options)?;
            print!("{}", env.status()?);
        }
        Some("down") => {
            if let Some(env) = Environment::current() {
                env.down()?;
            } else {
                eprintln!("no test environment is running");
            }
        }
        // Failure drills: take one server away, and bring it back as it was.
        Some(action @ ("stop" | "start")) => {
            let name = args.get(1).context(USAGE)?;
            let env = Environment::current()
                .context("no test environment is running; `cargo xtask testenv up` first")?;
            if action == "stop" {
                env.stop_server(name)?;
            } else {
                env.start_server(name)?;
            }
        }
        Some("status") => match Environment::current() {
            Some(env) => print!("{}", env.status()?),
            None => bail!("no test environment is running"),
        },
        Some("env") => match Environment::current() {
            Some(env) => {
                for (key, value) in env.vars()? {
                    println!("export {key}={value}");
                }
            }
            None => bail!("no test environment is running; `cargo xtask testenv up` first"),
        },
        Some("run") => {
            let rest = &args[1..];
            let program = match rest.first().map(String::as_str) {
                Some("--") => &rest[1..],
                _ => rest,
            };
            let Some((program, program_args)) = program.split_first() else {
                bail!("{USAGE}");
            };
            let mut command = Command::new(program);
            command.args(program_args);
            return run_against(&mut command);
        }
        // For the lifecycle tests: the host's state now, and what changed since a saved one.
        Some("host-snapshot") => {
            println!("{}", serde_json::to_string(&host::Snapshot::capture()?)?);
        }
        Some("host-diff") => {
            let file = args.get(1).context("usage: testenv host-diff SNAPSHOT")?;
            let before: host::Snapshot = serde_json::from_str(&std::fs::read_to_string(file)?)?;
            let differences = host::Snapshot::capture()?.differences(&before);
            for line in &differences {
                println!("{line}");
            }
            if !differences.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
        _ => bail!("{USAGE}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Installs the Debian packages a node needs (containerd, runc, nftables, ...) unless the
/// environment runs without one (`SEAL_TESTENV_NODE=0`). `up` does this too; the test command
/// calls it first because the lifecycle tests read the host's firewall tables before any `up`.
pub fn ensure_node_packages() -> Result<()> {
    if Options::from_env().node {
        crate::debian::ensure_packages(node::PACKAGES)?;
    }
    Ok(())
}

/// Runs `command` with the environment's variables and returns its exit code.
///
/// A running environment (`testenv up`) is reused and left running; otherwise one is started for
/// this command and brought down afterwards: when the command succeeds, fails, or when xtask gets
/// Ctrl-C, SIGTERM or SIGHUP. The command runs in its own process group, so a signal reaches all of
/// it (cargo and the test binaries it started), and is killed if it outlives a grace period.
///
/// Its output is forwarded as it comes; when it fails, the server logs' tails follow, and then,
/// last, the lines of its output that named the failures (see [`failures`]), so that the end of
/// the output says which test failed and why.
pub fn run_against(command: &mut Command) -> Result<ExitCode> {
    run_side_by_side(std::slice::from_mut(command))
}

/// As [`run_against`], with `commands` run at the same time against the one environment (test
/// runs that mostly wait on the servers). The first one's output is forwarded as it comes; each
/// other's is held and printed whole when it ends, so that the lines of two test runs never
/// interleave. The exit code is the first failing command's, or success.
pub fn run_side_by_side(commands: &mut [Command]) -> Result<ExitCode> {
    interrupt::install()?;
    let binaries = Binaries::ensure()?;
    let (env, started_here) = match Environment::current() {
        Some(env) if env.is_running() => {
            eprintln!(
                "==> using the running test environment in {}",
                env.dir().display()
            );
            (env, false)
        }
        _ => (Environment::up(&binaries, Options::from_env())?, true),
    };
    let failures = failures::Failures::default();
    let outcomes: Vec<Result<ExitStatus>> = std::thread::scope(|runs| {
        let (env, failures) = (&env, &failures);
        let handles: Vec<_> = commands
            .iter_mut()
            .enumerate()
            .map(|(i, command)| {
                let output = if i == 0 { Output::Live } else { Output::Held };
                runs.spawn(move || run_child(env, command, failures, output))
            })
            .collect();
        handles
            .into_iter()
            .map(|run| {
                run.join()
                    .unwrap_or_else(|_| bail!("a command's runner panicked"))
            })
            .collect()
    });
    let failed = !outcomes
        .iter()
        .all(|outcome| outcome.as_ref().is_ok_and(ExitStatus::success));
    if failed {
        // The directory goes with the environment, so a failure's evidence is printed now.
        eprint!("{}", env.log_tails(25));
    }
    if started_here {
        eprintln!("==> stopping the test environment");
        env.down()?;
    }
    if failed {
        eprint!("{}", failures.summary());
    }
    let statuses = outcomes.into_iter().collect::<Result<Vec<_>>>()?;
    if let Some(signal) = interrupt::received() {
        if started_here {
            eprintln!("==> interrupted by signal {signal}; the test environment is down");
        } else {
            eprintln!(
                "==> interrupted by signal {signal}; the running test environment is left up \
                 (`cargo xtask testenv down` stops it)"
            );
        }
        return Ok(ExitCode::from(interrupt::exit_code(signal)));
    }
    Ok(first_failure(&statuses).map_or(ExitCode::SUCCESS, exit_code))
}

/// Of commands run side by side, the first (in the order given) that failed: its status is the
/// run's.
fn first_failure(statuses: &[ExitStatus]) -> Option<ExitStatus> {
    statuses.iter().copied().find(|status| !status.success())
}

/// An environment brought up for several commands (each run with [`run_against`], which reuses
/// it), brought down when dropped; or, when one was already running, that one, left running.
pub struct Session(Option<Environment>);

impl Session {
    /// Reuses the running environment, or brings one up.
    pub fn start() -> Result<Self> {
        if Environment::current().is_some_and(|env| env.is_running()) {
            return Ok(Self(None));
        }
        let env = Environment::up(&Binaries::ensure()?, Options::from_env())?;
        Ok(Self(Some(env)))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(env) = self.0.take() {
            eprintln!("==> stopping the test environment");
            if let Err(error) = env.down() {
                eprintln!("==> the test environment did not come down cleanly: {error:#}");
            }
        }
    }
}

/// How long a command may take to stop after it was signalled.
const GRACE: Duration = Duration::from_secs(10);

/// Where a command's output goes: forwarded as it comes, or held and printed whole at its end.
#[derive(Clone, Copy)]
enum Output {
    Live,
    Held,
}

/// A buffer both of a held command's streams write whole lines into.
#[derive(Clone, Default)]
struct Held(Arc<Mutex<Vec<u8>>>);

impl Write for Held {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn run_child(
    env: &Environment,
    command: &mut Command,
    failures: &failures::Failures,
    output: Output,
) -> Result<ExitStatus> {
    if let Some(signal) = interrupt::received() {
        bail!("interrupted by signal {signal} before {command:?} started");
    }
    let mut child = command
        .envs(env.vars()?)
        .env("SEAL_REQUIRE_TESTENV", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    let held = Held::default();
    let (out, err) = (child.stdout.take(), child.stderr.take());
    let forwarders = match output {
        Output::Live => [
            out.map(|out| failures.forward(out, std::io::stdout())),
            err.map(|err| failures.forward(err, std::io::stderr())),
        ],
        Output::Held => {
            eprintln!(
                "==> {} runs alongside; its output follows when it ends",
                command_line(command)
            );
            [
                out.map(|out| failures.forward(out, held.clone())),
                err.map(|err| failures.forward(err, held.clone())),
            ]
        }
    };
    let status = wait_or_stop(&mut child, command);
    // The pipes close when the group is gone, and what was still in them is printed first; a
    // process that left the group and still holds them is not waited for.
    let deadline = Instant::now() + Duration::from_secs(5);
    while forwarders.iter().flatten().any(|f| !f.is_finished()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Output::Held = output {
        let text = std::mem::take(&mut *held.0.lock().unwrap_or_else(PoisonError::into_inner));
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "==> the output of {}:", command_line(command));
        let _ = stderr.write_all(&text);
    }
    status
}

/// Waits for `child`, passing on Ctrl-C, SIGTERM or SIGHUP to its process group and killing the
/// group if it outlives the grace period.
fn wait_or_stop(child: &mut std::process::Child, command: &Command) -> Result<ExitStatus> {
    let group = Pid::from_raw(i32::try_from(child.id()).context("pid out of range")?);
    let mut signalled_at: Option<Instant> = None;
    loop {
        if let Some(status) = child.try_wait()? {
            // Whatever the command left in its group goes too.
            let _ = killpg(group, Signal::SIGKILL);
            return Ok(status);
        }
        match (interrupt::received(), signalled_at) {
            (Some(signal), None) => {
                let signal = Signal::try_from(signal).unwrap_or(Signal::SIGTERM);
                let _ = killpg(group, signal);
                signalled_at = Some(Instant::now());
            }
            (Some(_), Some(at)) if at.elapsed() > GRACE => {
                eprintln!(
                    "==> {command:?} still running {} s after the signal; killing it",
                    GRACE.as_secs()
                );
                let _ = killpg(group, Signal::SIGKILL);
                // Wait for the exit without signalling again.
                signalled_at = Some(Instant::now() + GRACE * 100);
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn exit_code(status: ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        (None, Some(signal)) => ExitCode::from(interrupt::exit_code(signal)),
        (None, None) => ExitCode::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    #[test]
    fn side_by_side_runs_fail_with_the_first_failure_in_their_order() {
        let (ok, two, three) = (
            ExitStatus::from_raw(0),
            ExitStatus::from_raw(2 << 8),
            ExitStatus::from_raw(3 << 8),
        );
        assert_eq!(first_failure(&[ok, ok]), None);
        assert_eq!(first_failure(&[ok, three, two]), Some(three));
        assert_eq!(first_failure(&[two, ok]), Some(two));
        assert_eq!(first_failure(&[]), None);
    }
}
