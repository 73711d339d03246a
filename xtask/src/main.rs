//! Project automation, run as `cargo xtask <command>`:
//!
//! - `test`: install the peers the tests talk to (kubeseal, kubesealpy), then run `cargo fmt
//!   --check`, `cargo clippy -D warnings` and every test of the workspace with the peers required.
//!   Every step runs; the exit code is non-zero if any failed. This is the README's test command and
//!   what `.ci/run` runs.
//! - `peers`: only install the peers and print where they are.
//! - `bench seal`: whole-process comparison of `seal` and kubeseal, offline with the same certificate.
//! - `testenv build | up | down | status | env`: the real test environment (see `testenv/`).
//!
//! Peers are built or installed once into a cache outside the work tree, keyed by version
//! (`$SEAL_CACHE_DIR`, else `$XDG_CACHE_HOME/seal-dev`, else `~/.cache/seal-dev`).

mod bench;
mod peers;
mod testenv;

use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, Result, bail};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("peers") => peers::Peers::ensure().map(|p| {
            println!("SEAL_KUBESEAL={}", p.kubeseal.display());
            println!("SEAL_PYTHON={}", p.python.display());
            ExitCode::SUCCESS
        }),
        Some("bench") => match args.get(1).map(String::as_str) {
            Some("seal") => bench::seal(&args[2..]).map(|()| ExitCode::SUCCESS),
            _ => Err(anyhow::anyhow!(
                "usage: cargo xtask bench seal [--runs-small N] [--runs-large N]"
            )),
        },
        Some("testenv") => testenv::command(&args[1..]).map(|()| ExitCode::SUCCESS),
        Some("__measure") => bench::measure_child(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n  test [CARGO TEST ARGS...]  lint and run every test (installs kubeseal and kubesealpy once)\n  peers                      install the interop peers and print their paths\n  bench seal                 seal vs kubeseal: wall time and peak RSS\n  testenv build|up|down|status|env  the real test environment (Kubernetes, etcd, OpenBao, moto)"
            );
            Ok(ExitCode::from(2))
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Lints and tests everything; returns failure if any step failed.
fn test(extra: &[String]) -> Result<ExitCode> {
    let peers = peers::Peers::ensure()?;
    let mut test_args = vec!["test", "--workspace", "--locked"];
    test_args.extend(extra.iter().map(String::as_str));
    let steps: [(&str, Vec<&str>); 3] = [
        ("format", vec!["fmt", "--all", "--check"]),
        (
            "clippy",
            vec![
                "clippy",
                "--workspace",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ],
        ),
        ("tests", test_args),
    ];
    let mut failed = Vec::new();
    for (name, args) in steps {
        eprintln!("==> cargo {}", args.join(" "));
        let started = Instant::now();
        let status = Command::new(cargo())
            .args(&args)
            .env("SEAL_KUBESEAL", &peers.kubeseal)
            .env("SEAL_PYTHON", &peers.python)
            .env("SEAL_REQUIRE_PEERS", "1")
            .status()
            .with_context(|| format!("cannot run cargo {}", args.join(" ")))?;
        eprintln!(
            "==> {name}: {} in {:.0?}",
            if status.success() { "ok" } else { "FAILED" },
            started.elapsed()
        );
        if !status.success() {
            failed.push(name);
        }
    }
    if failed.is_empty() {
        eprintln!("==> all steps passed");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("==> failed: {}", failed.join(", "));
        Ok(ExitCode::FAILURE)
    }
}

/// The cargo that runs us, so the pinned toolchain is used throughout.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Runs a command to completion, failing with its name if it fails.
pub fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot start {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}
