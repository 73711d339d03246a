//! What the agent does to the app's process: `onChange` (after `run` rewrote a file: signal the
//! processes a pid file or a process name designates, or run a command), `exec` (how the
//! supervised child is restarted or signalled when its values change, and whether it inherits
//! the agent's environment) and `env` (the child's variables). Signals are named as `SIGHUP` or
//! `HUP`, in any case.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::duration::duration_field;
use super::raw::{RawExec, RawOnChange, RawSource};
use super::secrets::{Source, source};
use super::{ConfigError, error};

/// The action after a refresh changed a file (`run`).
pub enum OnChange {
    /// Send `signal` to the processes `target` names.
    Signal {
        /// Which signal.
        signal: Signal,
        /// To whom.
        target: SignalTarget,
    },
    /// Run a command (argv, no shell) and wait for it.
    Command(Vec<String>),
}

/// Which process to signal.
pub enum SignalTarget {
    /// The PID in this file (read at each change).
    PidFile(PathBuf),
    /// Every process whose name (`comm`) or program name (argv\[0\]'s file name) is this.
    ProcessName(String),
}

/// What `exec` does when the child's variables change.
#[derive(Clone, Copy)]
pub enum ExecOnChange {
    /// Stop the child (SIGTERM, then SIGKILL after the stop timeout) and start it again.
    Restart,
    /// Send it a signal (it rereads its files itself; its environment cannot change).
    Signal(Signal),
    /// Nothing.
    Ignore,
}

/// `exec` settings.
pub struct ExecSettings {
    /// What to do on change.
    pub on_change: ExecOnChange,
    /// How long a stopping child gets before SIGKILL.
    pub stop_timeout: Duration,
    /// Start the child with only the configured variables, not the agent's environment (which
    /// may hold the agent's own credentials, such as VAULT_TOKEN).
    pub clean_env: bool,
}

/// The `env` section validated: each name a variable name, each value a [`Source`] over the
/// `known` secret names.
pub(super) fn variables(
    raw: &BTreeMap<String, RawSource>,
    known: &BTreeSet<&str>,
) -> Result<Vec<(String, Source)>, ConfigError> {
    let mut vars = Vec::new();
    for (name, entry) in raw {
        let field = format!("env.{name}");
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(error(
                &field,
                "not a variable name (letters, digits and _, not starting with a digit)",
            ));
        }
        vars.push((
            name.clone(),
            source(
                &field,
                entry.secret.as_deref(),
                entry.template.as_deref(),
                known,
            )?,
        ));
    }
    Ok(vars)
}

fn signal_field(field: &str, name: &str) -> Result<Signal, ConfigError> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse::<Signal>().map_err(|_| {
        error(
            field,
            format!("{name:?} is not a signal name such as SIGHUP"),
        )
    })
}

pub(super) fn on_change(raw: &RawOnChange) -> Result<OnChange, ConfigError> {
    let targets = usize::from(raw.pid_file.is_some()) + usize::from(raw.process_name.is_some());
    match (&raw.command, targets) {
        (Some(_), 0) if raw.signal.is_none() => {}
        (Some(_), _) => {
            return Err(error(
                "onChange",
                "command excludes signal, pidFile and processName",
            ));
        }
        (None, 1) => {}
        (None, 0) => {
            return Err(error(
                "onChange",
                "needs pidFile or processName (with signal), or command",
            ));
        }
        (None, _) => {
            return Err(error(
                "onChange",
                "pidFile and processName exclude each other",
            ));
        }
    }
    if let Some(command) = &raw.command {
        if command.is_empty() || command[0].is_empty() {
            return Err(error("onChange.command", "must name a program"));
        }
        return Ok(OnChange::Command(command.clone()));
    }
    let signal = signal_field("onChange.signal", raw.signal.as_deref().unwrap_or("SIGHUP"))?;
    let target = match (&raw.pid_file, &raw.process_name) {
        (Some(p), _) => SignalTarget::PidFile(p.clone()),
        (None, Some(n)) if !n.trim().is_empty() => SignalTarget::ProcessName(n.trim().to_owned()),
        _ => return Err(error("onChange.processName", "must not be empty")),
    };
    Ok(OnChange::Signal { signal, target })
}

pub(super) fn exec_settings(raw: Option<&RawExec>) -> Result<ExecSettings, ConfigError> {
    let Some(raw) = raw else {
        return Ok(ExecSettings {
            on_change: ExecOnChange::Restart,
            stop_timeout: Duration::from_secs(10),
            clean_env: false,
        });
    };
    let on_change = match raw.on_change.as_deref().unwrap_or("restart") {
        "restart" => {
            if raw.signal.is_some() {
                return Err(error("exec.signal", "only with onChange: signal"));
            }
            ExecOnChange::Restart
        }
        "signal" => ExecOnChange::Signal(signal_field(
            "exec.signal",
            raw.signal.as_deref().unwrap_or("SIGHUP"),
        )?),
        "none" => ExecOnChange::Ignore,
        other => {
            return Err(error(
                "exec.onChange",
                format!("{other:?}: expected restart, signal or none"),
            ));
        }
    };
    Ok(ExecSettings {
        on_change,
        stop_timeout: duration_field(
            "exec.stopTimeout",
            raw.stop_timeout.as_deref(),
            Duration::from_secs(10),
        )?,
        clean_env: raw.clean_env,
    })
}
