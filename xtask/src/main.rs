//! Project automation, run as `cargo xtask <command>`:
//!
//! - `test`: install what the tests talk to (kubeseal, kubesealpy, vals, the AWS Secrets
//!   Manager Agent, Bitnami's and ESO's controllers; the test environment's servers) while
//!   `cargo fmt --check`, `cargo clippy -D warnings` and the build of the test binaries run beside
//!   the installs; then run the test environment's lifecycle tests (each brings up its own node,
//!   so they run alone), every test of the workspace against a test environment started for the
//!   run and stopped after it, with the peers and the environment required, and then, in the same
//!   environment once the rest is done, the failure drills in pods (each takes a server away).
//!   Every step runs; the exit code is non-zero if any failed, and `128 + signal` when
//!   interrupted. This is the README's test command and what `.ci/run` runs.
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
///
/// On a new machine the installs are most of the time (Go builds of the servers and peers): they
/// run in lanes beside the lint steps and the build of the test binaries, so that one lane's idle
/// moments (a module download, a single-threaded link, a pip install) are another's CPU time.
fn test(extra: &[String]) -> Result<ExitCode> {
    interrupt::install()?;
    let mut failed = Vec::new();
    let peers = std::thread::scope(|lanes| -> Result<peers::Peers> {
        let servers = lanes.spawn(testenv::Binaries::ensure);
        let node = lanes.spawn(testenv::ensure_node_packages);
        let peers = lanes.spawn(peers::Peers::ensure);
        for (name, args) in BUILD_STEPS {
            if !step(name, &mut [cargo_command(args)])? {
                failed.push(name);
            }
            if let Some(signal) = interrupt::received() {
                bail!("interrupted by signal {signal}");
            }
        }
        let (servers, node, peers) = (joined(servers), joined(node), joined(peers));
        servers?;
        node?;
        peers
    });
    let peers = match peers {
        Ok(peers) => peers,
        Err(error) => match interrupt::received() {
            Some(signal) => {
                eprintln!("==> interrupted by signal {signal}; stopping");
                return Ok(ExitCode::from(interrupt::exit_code(signal)));
            }
            None => return Err(error),
        },
    };
    // One environment for the tests and then the drills, brought up after the lifecycle tests
    // (one node per host) and down when this returns, interrupted or not.
    let mut environment: Option<testenv::Session> = None;
    let steps = [
        ("environment lifecycle", vec![cargo_command(LIFECYCLE)]),
        ("tests", test_runs(extra)?),
        ("failure drills", vec![cargo_command(DRILLS)]),
    ];
    for (name, mut commands) in steps {
        for command in &mut commands {
            command
                .env("SEAL_KUBESEAL", &peers.kubeseal)
                .env("SEAL_PYTHON", &peers.python)
                .env("SEAL_AWS_AGENT", &peers.aws_agent)
                .env("SEAL_VALS", &peers.vals)
                .env("SEAL_BITNAMI_CONTROLLER", &peers.bitnami_controller)
                .env("SEAL_ESO_CONTROLLER", &peers.eso_controller)
                .env("SEAL_REQUIRE_PEERS", "1");
        }
        let ok = if name == "environment lifecycle" {
            step(name, &mut commands)?
        } else {
            if environment.is_none() {
                environment = Some(testenv::Session::start()?);
            }
            timed(name, &mut commands, |commands| {
                Ok(testenv::run_side_by_side(commands)? == ExitCode::SUCCESS)
            })?
        };
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

/// What an install lane returned (every lane is waited for before any error is returned).
fn joined<T>(lane: std::thread::ScopedJoinHandle<'_, Result<T>>) -> Result<T> {
    lane.join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("an install lane panicked")))
}

/// The steps that need nothing installed: they run while the install lanes do. The last builds
/// every test binary of the `tests` step (the same arguments, so the same features), so that
/// step only runs them.
const BUILD_STEPS: [(&str, &[&str]); 3] = [
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
    (
        "build the tests",
        &["test", "--workspace", "--locked", "--no-run"],
    ),
];

/// The environment's lifecycle tests: each brings up and tears down a whole environment, node
/// included, and checks the host is as it was; one node per host, so before the shared
/// environment. Like every step here it selects from the whole workspace (`--workspace`), so that
/// it runs the test binaries the build step made: a single package's features would differ and
/// rebuild part of the dependencies.
const LIFECYCLE: &[&str] = &["test", "--workspace", "--locked", "--test", "lifecycle"];

/// The failure drills: each takes a server away from everything running (an API server restart,
/// OpenBao down for a minute), so one at a time, after every other test is done with the
/// environment.
const DRILLS: &[&str] = &[
    "test",
    "--workspace",
    "--locked",
    "--test",
    "deploy",
    "--",
    "--ignored",
    "--test-threads=1",
    "drills::",
];

/// The integration test target run beside all the others: its tests wait on pods most of the time,
/// and alone it is as long as all the rest together.
const ALONGSIDE: &str = "deploy";

/// The `tests` step: every test of the workspace. With `extra` arguments, one `cargo test` with
/// them. Without, the same tests as three runs side by side (see
/// [`testenv::run_side_by_side`]): the [`ALONGSIDE`] target, every other target, and the doc
/// tests (which cargo will not run together with other targets). The targets are read from
/// `cargo metadata`, so a new test target is in the second run without a change here.
fn test_runs(extra: &[String]) -> Result<Vec<Command>> {
    let all = ["test", "--workspace", "--locked", "--no-fail-fast"];
    if !extra.is_empty() {
        let mut command = cargo_command(&all);
        command.args(extra);
        return Ok(vec![command]);
    }
    let output = Command::new(cargo())
        .args(["metadata", "--no-deps", "--format-version", "1", "--locked"])
        .output()
        .context("cannot run cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let others = other_test_targets(&metadata, ALONGSIDE);
    let mut rest = cargo_command(&all);
    rest.args(["--lib", "--bins", "--examples"]);
    for target in &others {
        rest.args(["--test", target]);
    }
    let mut alongside = cargo_command(&all);
    alongside.args(["--test", ALONGSIDE]);
    let mut doc = cargo_command(&all);
    doc.arg("--doc");
    Ok(vec![rest, alongside, doc])
}

/// The integration test targets of the workspace that `cargo test` runs (not `test = false`),
/// other than `except`, from `cargo metadata --no-deps` output.
fn other_test_targets(metadata: &serde_json::Value, except: &str) -> Vec<String> {
    let mut names: Vec<String> = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|package| package["targets"].as_array().into_iter().flatten())
        .filter(|target| {
            target["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "test"))
                && target["test"] != false
                && target["name"] != except
        })
        .filter_map(|target| target["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names.dedup();
    names
}

fn cargo_command(args: &[&str]) -> Command {
    let mut command = Command::new(cargo());
    command.args(args);
    command
}

/// Runs the commands of the step `name` one after another; whether all passed.
fn step(name: &str, commands: &mut [Command]) -> Result<bool> {
    timed(name, commands, |commands| {
        let mut passed = true;
        for command in commands {
            passed &= command
                .status()
                .with_context(|| format!("cannot run {}", command_line(command)))?
                .success();
        }
        Ok(passed)
    })
}

/// Says the command lines, runs `run`, and says how the step `name` ended and how long it took.
fn timed(
    name: &str,
    commands: &mut [Command],
    run: impl FnOnce(&mut [Command]) -> Result<bool>,
) -> Result<bool> {
    for command in commands.iter() {
        eprintln!("==> {}", command_line(command));
    }
    let started = Instant::now();
    let ok = run(commands)?;
    eprintln!(
        "==> {name}: {} in {:.0?}",
        if ok { "ok" } else { "FAILED" },
        started.elapsed()
    );
    Ok(ok)
}

/// A command as a person would type it: the program's file name, then the arguments.
pub fn command_line(command: &Command) -> String {
    let program = std::path::Path::new(command.get_program());
    let mut line = program
        .file_name()
        .unwrap_or(program.as_os_str())
        .to_string_lossy()
        .into_owned();
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_test_target_but_the_one_run_alongside_and_those_cargo_test_skips() {
        let metadata = serde_json::json!({"packages": [
            {"targets": [
                {"kind": ["lib"], "name": "seal_core", "test": true},
                {"kind": ["test"], "name": "vectors", "test": true},
                {"kind": ["bench"], "name": "controller", "test": false},
            ]},
            {"targets": [
                {"kind": ["test"], "name": "deploy", "test": true},
                {"kind": ["test"], "name": "controller", "test": true},
                {"kind": ["bin"], "name": "seal-controller", "test": true},
            ]},
            {"targets": [{"kind": ["test"], "name": "lifecycle", "test": false}]},
        ]});
        assert_eq!(
            other_test_targets(&metadata, "deploy"),
            ["controller", "vectors"]
        );
    }
}
