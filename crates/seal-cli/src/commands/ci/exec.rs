//! `seal exec -f FILE -- CMD ARGS...`: runs a command with the env file's variables (see
//! `env.rs`) in its environment, and nothing written to disk. The child inherits seal's
//! environment unless `--clean-env` (then it gets only the variables, and `PATH` is not kept: name
//! the command by path, or add PATH to the file). SIGINT, SIGTERM, SIGHUP and SIGQUIT received by
//! seal are passed on to the child, and seal exits with the child's code, or 128 + the signal
//! that ended it, as a shell does. A command that cannot be started exits 3 naming it.
//!
//! If any reference fails, the command is not started. The values are dropped (zeroized) as soon
//! as the child is spawned; the copies the operating system keeps for the child's environment
//! are out of seal's reach.

use std::ffi::OsString;
use std::process::ExitCode;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};

use super::env::{VarsArgs, load};
use super::{ProviderArgs, block_on};
use crate::failure::{Failure, Outcome};

/// `seal exec` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    vars: VarsArgs,

    /// Start the command with only the file's variables instead of seal's environment plus them.
    #[arg(long)]
    clean_env: bool,

    /// The command and its arguments, after `--`.
    #[arg(value_name = "CMD", required = true, last = true)]
    command: Vec<OsString>,

    #[command(flatten)]
    providers: ProviderArgs,
}

/// Runs `seal exec`; returns the child's exit code.
pub fn run(args: &Args) -> Outcome<ExitCode> {
    block_on(async {
        let vars = load(&args.vars, &args.providers, !args.clean_env).await?;
        let (program, rest) = args
            .command
            .split_first()
            .expect("invariant: clap requires a command");
        let mut command = tokio::process::Command::new(program);
        command.args(rest);
        if args.clean_env {
            command.env_clear();
        }
        command.envs(vars.iter().map(|v| (v.name.as_str(), v.value.as_str())));
        // Handlers first: a signal arriving right after the spawn must reach the child.
        let handle = |kind: SignalKind| {
            signal(kind).map_err(|e| Failure::io(format!("cannot handle signals: {e}")))
        };
        let mut int = handle(SignalKind::interrupt())?;
        let mut term = handle(SignalKind::terminate())?;
        let mut hup = handle(SignalKind::hangup())?;
        let mut quit = handle(SignalKind::quit())?;
        let mut child = command.spawn().map_err(|e| {
            Failure::io(format!(
                "cannot run {}: {}",
                program.to_string_lossy(),
                crate::io::io_reason(&e)
            ))
        })?;
        drop(command);
        drop(vars);
        let pid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        let status = loop {
            let received = tokio::select! {
                status = child.wait() => break status,
                _ = int.recv() => Signal::SIGINT,
                _ = term.recv() => Signal::SIGTERM,
                _ = hup.recv() => Signal::SIGHUP,
                _ = quit.recv() => Signal::SIGQUIT,
            };
            if let Some(pid) = pid {
                // The child may have exited already; its status arrives on the next turn.
                let _ = kill(pid, received);
            }
        }
        .map_err(|e| Failure::io(format!("cannot wait for the command: {e}")))?;
        Ok(exit_code(status))
    })
}

/// The child's code, or 128 + the signal that ended it.
fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt as _;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX))
}
