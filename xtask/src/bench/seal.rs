//! `cargo xtask bench seal`: whole-process comparison of `seal` and kubeseal v0.40.0, both offline
//! with the same RSA-4096 certificate, on (a) one Secret with 10 items and (b) a stream of 1,000
//! Secrets. Each command runs a few times after a warm-up; the figures are the median wall time and
//! the median peak RSS, and their ratios against the targets (a: ≥ 3× faster, b: ≥ 2× faster, peak
//! RSS ≤ ½).
//!
//! Peak RSS is measured exactly: each run happens under a small child of xtask (`__measure`) that
//! spawns the command, waits for it and reads `getrusage(RUSAGE_CHILDREN).ru_maxrss`, which covers
//! that one command and nothing else. Both tools' outputs are checked (every Secret sealed) so a
//! fast failure cannot pass for a fast run.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::peers::{cache_dir, ensure_kubeseal, workspace_root};
use crate::{cargo, run};

struct Workload {
    name: &'static str,
    input: PathBuf,
    secrets: usize,
    runs: usize,
    target_speedup: f64,
}

struct Sample {
    wall_ms: f64,
    max_rss_kib: u64,
}

/// Runs the comparison and prints the table; fails if a target is not met.
pub fn seal(args: &[String]) -> Result<()> {
    let (runs_small, runs_large) = parse_runs(args)?;
    eprintln!("==> building seal (release)");
    run(Command::new(cargo())
        .args(["build", "--release", "--locked", "-p", "seal-cli"])
        .current_dir(workspace_root()))?;
    let seal_bin = workspace_root().join("target/release/seal");
    let kubeseal = ensure_kubeseal(&cache_dir()?)?;

    let work = std::env::temp_dir().join(format!("seal-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    run(Command::new(&seal_bin)
        .args(["keygen", "--bits", "4096", "--out"])
        .arg(work.join("keys"))
        .stdout(Stdio::null()))?;
    let cert = work.join("keys/tls.crt").display().to_string();
    let out = work.join("out.yaml").display().to_string();
    let seal_cmd: Vec<String> = [
        seal_bin.display().to_string(),
        "--cert".into(),
        cert.clone(),
        "-w".into(),
        out.clone(),
    ]
    .into();
    let kubeseal_cmd: Vec<String> = [
        kubeseal.display().to_string(),
        "--cert".into(),
        cert,
        "-o".into(),
        "yaml".into(),
        "-w".into(),
        out.clone(),
    ]
    .into();
    let workloads = [
        Workload {
            name: "(a) 1 Secret, 10 items",
            input: write_input(&work.join("one.yaml"), 1, 10)?,
            secrets: 1,
            runs: runs_small,
            target_speedup: 3.0,
        },
        Workload {
            name: "(b) 1,000 Secrets, 3 items each",
            input: write_input(&work.join("thousand.yaml"), 1000, 3)?,
            secrets: 1000,
            runs: runs_large,
            target_speedup: 2.0,
        },
    ];

    let mut report = String::new();
    writeln!(
        report,
        "\nseal vs kubeseal {}, offline, RSA-4096 certificate, {} cores",
        crate::peers::KUBESEAL_VERSION,
        cores()
    )?;
    writeln!(
        report,
        "{:<34} {:>10} {:>12} {:>10} {:>12} {:>9} {:>9}",
        "workload", "seal ms", "kubeseal ms", "seal MiB", "kubeseal MiB", "speedup", "RSS ratio"
    )?;
    let mut all_met = true;
    for workload in &workloads {
        let seal_samples = measure(&seal_cmd, &workload.input, workload.runs)?;
        check_output(Path::new(&out), workload.secrets, "seal")?;
        let kubeseal_samples = measure(&kubeseal_cmd, &workload.input, workload.runs)?;
        check_output(Path::new(&out), workload.secrets, "kubeseal")?;
        all_met &= write_row(&mut report, workload, &seal_samples, &kubeseal_samples)?;
    }
    writeln!(
        report,
        "(median of {runs_small} runs for (a), {runs_large} for (b), after one warm-up each; peak RSS = ru_maxrss)"
    )?;
    print!("{report}");
    let _ = std::fs::remove_dir_all(&work);
    if !all_met {
        bail!("a target was not met");
    }
    Ok(())
}

fn parse_runs(args: &[String]) -> Result<(usize, usize)> {
    let (mut runs_small, mut runs_large) = (21, 7);
    let mut iter = args.iter();
    while let Some(flag) = iter.next() {
        let value: usize = iter
            .next()
            .with_context(|| format!("{flag} needs a value"))?
            .parse()?;
        match flag.as_str() {
            "--runs-small" => runs_small = value,
            "--runs-large" => runs_large = value,
            other => bail!("unknown argument {other}"),
        }
    }
    Ok((runs_small, runs_large))
}

/// Appends one row; returns whether the workload met its targets.
fn write_row(
    report: &mut String,
    workload: &Workload,
    seal: &[Sample],
    kubeseal: &[Sample],
) -> Result<bool> {
    let (seal_ms, kubeseal_ms) = (median(seal, |s| s.wall_ms), median(kubeseal, |s| s.wall_ms));
    let seal_mib = median(seal, |s| kib_to_mib(s.max_rss_kib));
    let kubeseal_mib = median(kubeseal, |s| kib_to_mib(s.max_rss_kib));
    let speedup = kubeseal_ms / seal_ms;
    let rss_ratio = seal_mib / kubeseal_mib;
    let met = speedup >= workload.target_speedup && rss_ratio <= 0.5;
    writeln!(
        report,
        "{:<34} {:>10.1} {:>12.1} {:>10.1} {:>12.1} {:>8.1}x {:>9.2}  target >= {}x, <= 0.5: {}",
        workload.name,
        seal_ms,
        kubeseal_ms,
        seal_mib,
        kubeseal_mib,
        speedup,
        rss_ratio,
        workload.target_speedup,
        if met { "met" } else { "NOT met" }
    )?;
    Ok(met)
}

/// Writes a stream of `secrets` Secrets with `items` items each.
fn write_input(path: &Path, secrets: usize, items: usize) -> Result<PathBuf> {
    let mut text = String::new();
    for s in 0..secrets {
        writeln!(
            text,
            "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: ml-secret-{s}\n  namespace: ml-prod\ntype: Opaque\nstringData:"
        )?;
        for i in 0..items {
            writeln!(
                text,
                "  ITEM_{i}: \"postgres://ml_user_{s}:password-{s}-{i}-xxxxxxxxxxxx@db.ml-prod.svc:5432/ml\""
            )?;
        }
    }
    std::fs::write(path, text)?;
    Ok(path.to_owned())
}

/// One warm-up run, then `runs` measured runs.
fn measure(command: &[String], input: &Path, runs: usize) -> Result<Vec<Sample>> {
    let xtask = std::env::current_exe()?;
    (0..=runs)
        .map(|_| {
            let output = Command::new(&xtask)
                .arg("__measure")
                .arg(input)
                .args(command)
                .env("KUBECONFIG", "/dev/null")
                .output()?;
            if !output.status.success() {
                bail!(
                    "{} failed: {}",
                    command[0],
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            let text = String::from_utf8(output.stdout)?;
            let mut fields = text.split_whitespace();
            let wall_ns: f64 = fields.next().context("no wall time")?.parse()?;
            let max_rss_kib: u64 = fields.next().context("no rss")?.parse()?;
            Ok(Sample {
                wall_ms: wall_ns / 1e6,
                max_rss_kib,
            })
        })
        .collect::<Result<Vec<_>>>()
        .map(|mut samples| {
            samples.remove(0); // the warm-up
            samples
        })
}

/// `__measure INPUT CMD ARGS...`: runs the command with INPUT on stdin, prints `wall_ns max_rss_kib`.
pub fn measure_child(args: &[String]) -> Result<ExitCode> {
    let [input, program, rest @ ..] = args else {
        bail!("usage: __measure INPUT CMD [ARGS...]")
    };
    let stdin = std::fs::File::open(input)?;
    let started = Instant::now();
    let status = Command::new(program)
        .args(rest)
        .stdin(stdin)
        .stdout(Stdio::null())
        .status()?;
    let wall = started.elapsed();
    if !status.success() {
        bail!("{program} exited with {status}");
    }
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)?;
    println!("{} {}", wall.as_nanos(), usage.max_rss());
    Ok(ExitCode::SUCCESS)
}

fn check_output(path: &Path, secrets: usize, tool: &str) -> Result<()> {
    let text = std::fs::read_to_string(path)?;
    let sealed = text.matches("kind: SealedSecret").count();
    if sealed != secrets {
        bail!("{tool} wrote {sealed} SealedSecrets, expected {secrets}");
    }
    std::fs::remove_file(path)?;
    Ok(())
}

fn median(samples: &[Sample], field: impl Fn(&Sample) -> f64) -> f64 {
    let mut values: Vec<f64> = samples.iter().map(field).collect();
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[allow(clippy::cast_precision_loss)] // RSS in KiB is far below 2^52
fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}
