//! `cargo xtask bench ci`: what resolving a CI job's secrets costs, on the running test
//! environment (`cargo xtask testenv up`). 200 references, 100 to OpenBao (KV v2) and 100 to
//! moto, over 50 + 50 distinct secrets with two properties each (`user`, `password`), resolved
//! (a) by one `seal env` and (b) by 200 single `seal get` calls, as a job calling a CLI per value
//! would. It prints the wall time of each and the provider calls each made, and checks the
//! targets: (a) at least 10 times faster than (b), and at most one read per distinct secret.
//!
//! Calls are counted by seal itself: with `SEAL_DEBUG_CALLS=1` every run prints its provider
//! call counter on stderr (`seal: calls: vault:read:success=50 ...`; every attempt counts,
//! retries included, logins and token lookups too), and the bench adds them up. moto and the
//! OpenBao dev server expose no per-request counter to read from the server's side.
//!
//! `--debug` times `target/debug/seal` instead of building the release binary; `--runs N` runs
//! (a) N times (median; default 5).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::peers::workspace_root;
use crate::testenv::{Binaries, Environment};
use crate::{cargo, run};

/// Distinct secrets per provider; each is referenced twice.
const SECRETS: usize = 50;

/// Builds `seal` (release unless `debug`) and returns the binary's path.
fn build_seal(debug: bool) -> Result<std::path::PathBuf> {
    if debug {
        run(Command::new(cargo())
            .args(["build", "-p", "seal-cli"])
            .current_dir(workspace_root()))?;
        return Ok(workspace_root().join("target/debug/seal"));
    }
    eprintln!("==> building seal (release)");
    run(Command::new(cargo())
        .args(["build", "--release", "--locked", "-p", "seal-cli"])
        .current_dir(workspace_root()))?;
    Ok(workspace_root().join("target/release/seal"))
}

/// Runs the benchmark and prints the figures; fails if a target is not met.
pub fn ci(args: &[String]) -> Result<()> {
    let debug = args.iter().any(|a| a == "--debug");
    let runs: usize = match args.iter().position(|a| a == "--runs") {
        Some(i) => args.get(i + 1).context("--runs needs a number")?.parse()?,
        None => 5,
    };
    let env = Environment::current()
        .context("no test environment is running; start one with `cargo xtask testenv up`")?;
    let vars: BTreeMap<String, String> = env.vars()?.into_iter().collect();
    let seal = build_seal(debug)?;

    let work = std::env::temp_dir().join(format!("seal-bench-ci-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let prefix = super::unique_name("bench-ci")?;
    eprintln!("==> seeding {SECRETS} OpenBao and {SECRETS} moto secrets under {prefix}/");
    seed(&vars, &prefix)?;
    let refs = references(&prefix);
    let mut env_file = String::new();
    for (i, reference) in refs.iter().enumerate() {
        writeln!(env_file, "VAR_{i:03}: {reference}")?;
    }
    let env_path = work.join("env.yaml");
    std::fs::write(&env_path, env_file)?;

    let seal_run = |args: &[&str]| -> Result<(f64, Calls, String)> {
        let started = Instant::now();
        let output = Command::new(&seal)
            .args(args)
            .envs(&vars)
            .env("SEAL_DEBUG_CALLS", "1")
            .stdin(Stdio::null())
            .output()?;
        let wall_ms = started.elapsed().as_secs_f64() * 1e3;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            bail!("seal {} failed: {stderr}", args.join(" "));
        }
        Ok((
            wall_ms,
            Calls::parse(&stderr)?,
            String::from_utf8(output.stdout)?,
        ))
    };

    eprintln!(
        "==> (a) one seal env with {} references, {runs} runs",
        refs.len()
    );
    let env_arg = env_path.display().to_string();
    let mut batch_walls = Vec::new();
    let mut env_calls = Calls::default();
    for _ in 0..runs {
        let (wall, calls, stdout) = seal_run(&["env", "-f", &env_arg, "--format", "json"])?;
        let resolved = stdout.matches("\"VAR_").count();
        if resolved != refs.len() {
            bail!(
                "seal env printed {resolved} variables, expected {}",
                refs.len()
            );
        }
        batch_walls.push(wall);
        env_calls = calls;
    }
    eprintln!("==> (b) {} single seal get calls", refs.len());
    let mut single_wall = 0.0;
    let mut single_calls = Calls::default();
    for reference in &refs {
        let (wall, calls, stdout) = seal_run(&["get", reference])?;
        if stdout.trim().is_empty() {
            bail!("seal get {reference} printed nothing");
        }
        single_wall += wall;
        single_calls.add(&calls);
    }
    let _ = std::fs::remove_dir_all(&work);

    batch_walls.sort_by(f64::total_cmp);
    let env_wall = batch_walls[batch_walls.len() / 2];
    let met = report(
        debug,
        runs,
        env_wall,
        single_wall,
        &env_calls,
        &single_calls,
    )?;
    if !met {
        bail!("a target was not met");
    }
    Ok(())
}

/// Prints the table; true when both targets are met.
fn report(
    debug: bool,
    runs: usize,
    env_wall: f64,
    single_wall: f64,
    env_calls: &Calls,
    single_calls: &Calls,
) -> Result<bool> {
    let speedup = single_wall / env_wall;
    let mut report = String::new();
    writeln!(
        report,
        "\nresolving {} references ({SECRETS} OpenBao + {SECRETS} moto secrets, 2 properties each), {} binary",
        2 * 2 * SECRETS,
        if debug { "debug" } else { "release" }
    )?;
    writeln!(
        report,
        "{:<32} {:>10} {:>8} {:>12} {:>10} {:>8} {:>8}",
        "run", "wall ms", "calls", "vault reads", "aws batch", "aws get", "auth"
    )?;
    for (name, wall, calls) in [
        ("(a) 1 x seal env", env_wall, env_calls),
        ("(b) 200 x seal get", single_wall, single_calls),
    ] {
        writeln!(
            report,
            "{name:<32} {wall:>10.0} {:>8} {:>12} {:>10} {:>8} {:>8}",
            calls.total(),
            calls.get("vault:read"),
            calls.get("aws:BatchGetSecretValue"),
            calls.get("aws:GetSecretValue"),
            calls.get("vault:lookup_self") + calls.get("vault:login"),
        )?;
    }
    let reads_a = env_calls.get("vault:read")
        + env_calls.get("aws:BatchGetSecretValue")
        + env_calls.get("aws:GetSecretValue");
    writeln!(
        report,
        "speedup {speedup:.1}x (target >= 10x); (a) read {} distinct secrets with {reads_a} calls (target <= {}); (a) median of {runs}",
        2 * SECRETS,
        2 * SECRETS
    )?;
    print!("{report}");
    let one_read_per_secret = env_calls.get("vault:read") == SECRETS as u64
        && env_calls.get("aws:BatchGetSecretValue") + env_calls.get("aws:GetSecretValue")
            <= SECRETS as u64;
    Ok(speedup >= 10.0 && one_read_per_secret)
}

/// 100 Vault and 100 AWS references: `user` and `password` of each secret.
fn references(prefix: &str) -> Vec<String> {
    let mut refs = Vec::new();
    for i in 0..SECRETS {
        for key in ["user", "password"] {
            refs.push(format!("ref+vault://secret/data/{prefix}/s{i:02}#/{key}"));
        }
    }
    for i in 0..SECRETS {
        for key in ["user", "password"] {
            refs.push(format!("ref+awssecrets://{prefix}/s{i:02}#/{key}"));
        }
    }
    refs
}

/// Writes the secrets with the test environment's Python (boto3 for moto, urllib for OpenBao).
fn seed(vars: &BTreeMap<String, String>, prefix: &str) -> Result<()> {
    let python = Binaries::ensure()?.python();
    let script = format!(
        r#"
import json, os, urllib.request, boto3
addr, token = os.environ["VAULT_ADDR"], os.environ["VAULT_TOKEN"]
sm = boto3.client("secretsmanager", endpoint_url=os.environ["AWS_ENDPOINT_URL"],
                  region_name=os.environ["AWS_REGION"],
                  aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                  aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"])
for i in range({SECRETS}):
    name = "{prefix}/s%02d" % i
    data = {{"user": "user-%d" % i, "password": "password-%d" % i}}
    request = urllib.request.Request(addr + "/v1/secret/data/" + name, method="POST",
        data=json.dumps({{"data": data}}).encode(),
        headers={{"X-Vault-Token": token, "Content-Type": "application/json"}})
    urllib.request.urlopen(request).read()
    sm.create_secret(Name=name, SecretString=json.dumps(data))
"#
    );
    run(Command::new(&python)
        .args(["-c", &script])
        .envs(vars)
        .current_dir(Path::new("/")))
}

/// Provider calls by `provider:call`, summed over statuses.
#[derive(Default)]
struct Calls(BTreeMap<String, u64>);

impl Calls {
    /// Reads the `seal: calls: provider:call:status=N ...` line.
    fn parse(stderr: &str) -> Result<Self> {
        let line = stderr
            .lines()
            .find_map(|l| l.strip_prefix("seal: calls:"))
            .context("no call summary on stderr (SEAL_DEBUG_CALLS)")?;
        let mut calls = Calls::default();
        for entry in line.split_whitespace() {
            let (label, count) = entry.rsplit_once('=').context("malformed call summary")?;
            let (call, _status) = label.rsplit_once(':').context("malformed call summary")?;
            *calls.0.entry(call.to_owned()).or_default() += count.parse::<u64>()?;
        }
        Ok(calls)
    }

    fn add(&mut self, other: &Calls) {
        for (call, count) in &other.0 {
            *self.0.entry(call.clone()).or_default() += count;
        }
    }

    fn get(&self, call: &str) -> u64 {
        self.0.get(call).copied().unwrap_or(0)
    }

    fn total(&self) -> u64 {
        self.0.values().sum()
    }
}
