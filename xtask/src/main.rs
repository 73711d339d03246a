//! Project automation, run as `cargo xtask <command>`:
//!
//! - `test`: install what the tests talk to (kubeseal, kubesealpy, vals, the AWS Secrets
//!   Manager Agent, Bitnami's and ESO's controllers; the test environment's servers), then run
//!   `cargo fmt --check`, `cargo clippy -D warnings`, the test environment's lifecycle tests (each
//!   brings up its own node, so they run alone), every test of the workspace against a test
//!   environment started for the run and stopped after it, with the peers and the environment
//!   required, and then, in the same environment once the rest is done, the failure drills in pods
//!   (each takes a server away). Every step runs; the exit code is non-zero if any failed, and
//!   `128 + signal` when interrupted. This is the README's test command and what `.ci/run` runs.
//! - `demo`: the main job end to end on one machine (see `demo.rs`).
//! - `peers`: only install the interop peers (and helm and helmfile for the deploy tests, vals for
//!   the CLI's differential tests) and print where the peers are, as the variables the tests read
//!   (`SEAL_KUBESEAL`, `SEAL_PYTHON`, `SEAL_AWS_AGENT`, `SEAL_VALS`, `SEAL_BITNAMI_CONTROLLER`,
//!   `SEAL_ESO_CONTROLLER`).
//! - `bench seal`: whole-process comparison of `seal` and kubeseal, offline with the same certificate.
//! - `bench controller`: seal-controller against Bitnami's controller on the test API server.
//! - `bench external`: 1,000 ExternalSecrets synced from moto (see `benches/external.rs`).
//! - `bench ci`: one `seal env` against 200 `seal get` calls on the test environment (see `bench/ci.rs`).
//! - `bench agent`: seal-agent's endpoint against the AWS Secrets Manager Agent, cached GETs from
//!   moto at concurrency 1, 16 and 64, and RSS (see `bench/agent.rs`).
//! - `bench peers`: install the benchmarks' peers (the Bitnami controller, which tests never
//!   install, and the AWS Secrets Manager Agent, also an interop peer).
//! - `testenv build | up | down | status | env | run`: the real test environment (see `testenv/`).
//! - `image [--binaries DIR] [--import]`: the project's image from the Dockerfile's runtime stage,
//!   built here by podman (see `image.rs`); `--import` puts it on the test environment's node.
//!
//! Everything is built or installed once into a cache outside the work tree, keyed by version
//! (`$SEAL_CACHE_DIR`, else `$XDG_CACHE_HOME/seal-dev`, else `~/.cache/seal-dev`).

mod bench;
mod debian;
mod demo;
mod go;
mod image;
mod interrupt;
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
            println!("SEAL_AWS_AGENT={}", p.aws_agent.display());
            println!("SEAL_VALS={}", p.vals.display());
            println!("SEAL_BITNAMI_CONTROLLER={}", p.bitnami_controller.display());
            println!("SEAL_ESO_CONTROLLER={}", p.eso_controller.display());
            ExitCode::SUCCESS
        }),
        Some("bench") => match args.get(1).map(String::as_str) {
            Some("seal") => bench::seal::seal(&args[2..]).map(|()| ExitCode::SUCCESS),
            Some("controller") => bench::cluster::controller(&args[2..]),
            Some("external") => bench::cluster::external(&args[2..]),
            Some("ci") => bench::ci::ci(&args[2..]).map(|()| ExitCode::SUCCESS),
            Some("agent") => bench::agent::agent(&args[2..]).map(|()| ExitCode::SUCCESS),
            Some("peers") => bench::peers::BenchPeers::ensure()
                .and_then(|p| p.report())
                .map(|()| ExitCode::SUCCESS),
            _ => Err(anyhow::anyhow!(
                "usage: cargo xtask bench seal [--runs-small N] [--runs-large N] | bench controller [--seal-only] [--scale N] | bench external | bench ci [--debug] | bench agent [--duration SECS] [--threads N] | bench peers"
            )),
        },
        Some("testenv") => testenv::command(&args[1..]),
        Some("image") => image::command(&args[1..]).map(|()| ExitCode::SUCCESS),
        Some("demo") => demo::demo(),
        Some("__demo") => demo::steps(),
        Some("__measure") => bench::seal::measure_child(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>

  test [CARGO TEST ARGS...]   lint, start the test environment, run every test, stop it
  demo                        the main job end to end: control plane, controller, seal, unseal
  peers                       install the interop peers (kubeseal, kubesealpy, vals, the AWS
                              agent, Bitnami's and ESO's controllers) and print their paths
  bench seal                  seal vs kubeseal: wall time and peak RSS
  bench controller            seal-controller vs Bitnami's controller: 1,000 and 10,000 SealedSecrets,
                              RSS, restart and failover cost
  bench external              1,000 ExternalSecrets from moto: converge time, calls, writes, RSS
  bench ci [--debug]          seal env vs 200 seal get: wall time and provider calls
  bench agent                 seal-agent vs the AWS Secrets Manager Agent: cached GETs, RSS
  bench peers                 install the benchmarks' peers (Bitnami controller, AWS agent)
  testenv build               build the test servers into the cache (first time: ~25 min)
  testenv up | down | status  start, stop or inspect the test environment (Kubernetes, OpenBao, moto)
  testenv env                 print its variables: eval \"$(cargo xtask testenv env)\"
  image [--import]            build the image (Dockerfile's runtime stage) from target/debug;
                              --import puts it on the test environment's node
  testenv run -- CMD [ARGS]   run CMD against it (started and stopped around CMD unless already up)"
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
///
/// Installs what is missing first (the interop peers and the test environment's servers), then runs
/// `cargo fmt --check`, `cargo clippy -D warnings`, and `cargo test --workspace` against a test
/// environment brought up for the run and down after it, even on Ctrl-C (see
/// [`testenv::run_against`]).
fn test(extra: &[String]) -> Result<ExitCode> {
    interrupt::install()?;
    let peers = peers::Peers::ensure()?;
    testenv::Binaries::ensure()?;
    testenv::ensure_node_packages()?;
    let mut failed = Vec::new();
    let steps: [(&str, &[&str]); 5] = [
        ("format", &["fmt", "--all", "--check"]),
        (
            "clippy",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ],
        ),
        // Each of these brings up and tears down a whole environment, node included, and checks
        // the host is as it was: one node per host, so before the shared environment.
        (
            "environment lifecycle",
            &["test", "-p", "xtask", "--test", "lifecycle", "--locked"],
        ),
        (
            "tests",
            &["test", "--workspace", "--locked", "--no-fail-fast"],
        ),
        // Each drill takes a server away from everything running (an API server restart, OpenBao
        // down for a minute): one at a time, after every other test is done with the environment.
        (
            "failure drills",
            &[
                "test",
                "-p",
                "seal-controller",
                "--test",
                "deploy",
                "--locked",
                "--",
                "--ignored",
                "--test-threads=1",
                "drills::",
            ],
        ),
    ];
    // One environment for the tests and then the drills, brought up after the lifecycle tests
    // (one node per host) and down when this returns, interrupted or not.
    let mut environment: Option<testenv::Session> = None;
    for (name, args) in steps {
        let mut command = Command::new(cargo());
        command
            .args(args)
            .env("SEAL_KUBESEAL", &peers.kubeseal)
            .env("SEAL_PYTHON", &peers.python)
            .env("SEAL_AWS_AGENT", &peers.aws_agent)
            .env("SEAL_VALS", &peers.vals)
            .env("SEAL_BITNAMI_CONTROLLER", &peers.bitnami_controller)
            .env("SEAL_ESO_CONTROLLER", &peers.eso_controller)
            .env("SEAL_REQUIRE_PEERS", "1");
        if name == "tests" {
            command.args(extra);
        }
        eprintln!("==> cargo {}", command_line(&command));
        let started = Instant::now();
        let code = if matches!(name, "tests" | "failure drills") {
            if environment.is_none() {
                environment = Some(testenv::Session::start()?);
            }
            testenv::run_against(&mut command)?
        } else {
            let status = command
                .status()
                .with_context(|| format!("cannot run cargo {}", args.join(" ")))?;
            if status.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        };
        let ok = code == ExitCode::SUCCESS;
        eprintln!(
            "==> {name}: {} in {:.0?}",
            if ok { "ok" } else { "FAILED" },
            started.elapsed()
        );
        if !ok {
            failed.push(name);
        }
        if let Some(signal) = interrupt::received() {
            eprintln!("==> interrupted by signal {signal}; stopping");
            return Ok(ExitCode::from(interrupt::exit_code(signal)));
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

fn command_line(command: &Command) -> String {
    command
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
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
