//! Failures and the exit codes they map to: the CLI's contract with scripts.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | a check found something (`verify` failed, `scan` found plaintext) |
//! | 2 | bad usage or bad input (flags, manifests, keys, certificates, wrong key) |
//! | 3 | I/O or network error (unreadable input, unwritable output, unreachable URL) |
//!
//! Every failure prints one line, `error: <what and where>`, and optionally a `hint:` line. Messages
//! name files, documents and items, never values.

use std::fmt;
use std::process::ExitCode;

/// Which exit code a failure maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// 1: a check found something.
    Found,
    /// 2: bad usage or bad input.
    Input,
    /// 3: I/O or network.
    Io,
}

impl Class {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Class::Found => 1,
            Class::Input => 2,
            Class::Io => 3,
        }
    }
}

/// A failure with its class, message and optional hint.
#[derive(Debug)]
pub struct Failure {
    class: Class,
    message: String,
    hint: Option<String>,
}

/// Result of a command.
pub type Outcome<T = ()> = Result<T, Failure>;

impl Failure {
    /// Bad usage or bad input (exit 2).
    pub fn input(message: impl fmt::Display) -> Self {
        Self {
            class: Class::Input,
            message: message.to_string(),
            hint: None,
        }
    }

    /// I/O or network error (exit 3).
    pub fn io(message: impl fmt::Display) -> Self {
        Self {
            class: Class::Io,
            message: message.to_string(),
            hint: None,
        }
    }

    /// A check found something (exit 1); details were already printed.
    pub fn found(message: impl fmt::Display) -> Self {
        Self {
            class: Class::Found,
            message: message.to_string(),
            hint: None,
        }
    }

    /// Adds a hint line.
    #[must_use]
    pub fn hint(mut self, hint: impl fmt::Display) -> Self {
        self.hint = Some(hint.to_string());
        self
    }

    /// Prefixes the message with where it happened (`file`, `file:line`, ...).
    #[must_use]
    pub fn at(mut self, place: impl fmt::Display) -> Self {
        self.message = format!("{place}: {}", self.message);
        self
    }

    /// Prints the failure to stderr and returns its exit code.
    pub fn report(&self) -> ExitCode {
        eprintln!("error: {}", self.message);
        if let Some(hint) = &self.hint {
            eprintln!("hint: {hint}");
        }
        ExitCode::from(self.class.code())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
