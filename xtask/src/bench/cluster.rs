//! `bench controller` and `bench external`: seal-controller as shipped, measured by the
//! benchmark programs of its crate (`crates/seal-controller/benches/`), which run against the
//! test environment this command brings up around them.

use std::process::Command;

use anyhow::{Result, bail};

use super::build_shipped;
use crate::cargo;
use crate::peers::{cache_dir, workspace_root};

/// `bench external`: 1,000 ExternalSecrets synced from moto by seal-controller as shipped
/// (`crates/seal-controller/benches/external.rs` says what is measured).
pub fn external(args: &[String]) -> Result<std::process::ExitCode> {
    if !args.is_empty() {
        bail!("usage: cargo xtask bench external");
    }
    let mut bench = seal_controller_bench("external")?;
    crate::testenv::run_against(&mut bench)
}

/// `bench controller`: seal-controller against Bitnami's controller on the test environment's API
/// server (`crates/seal-controller/benches/controller/main.rs` says what is measured).
pub fn controller(args: &[String]) -> Result<std::process::ExitCode> {
    let mut seal_only = false;
    let mut scale = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--seal-only" => seal_only = true,
            "--scale" => scale = rest.next().filter(|n| n.parse::<usize>().is_ok()).cloned(),
            _ => bail!("usage: cargo xtask bench controller [--seal-only] [--scale N]"),
        }
        if arg == "--scale" && scale.is_none() {
            bail!("--scale needs a number of SealedSecrets");
        }
    }
    let bitnami = crate::peers::bitnami::ensure_sealed_secrets_controller(&cache_dir()?)?;
    let mut bench = seal_controller_bench("controller")?;
    bench.env("SEAL_BENCH_BITNAMI", bitnami);
    if seal_only {
        bench.env("SEAL_BENCH_SEAL_ONLY", "1");
    }
    if let Some(scale) = scale {
        bench.env("SEAL_BENCH_SCALE", scale);
    }
    crate::testenv::run_against(&mut bench)
}

/// `cargo bench` of the seal-controller bench `name`, with `SEAL_BENCH_CONTROLLER` set to the
/// controller as shipped (built first).
fn seal_controller_bench(name: &str) -> Result<Command> {
    let controller = build_shipped("seal-controller")?;
    let mut bench = Command::new(cargo());
    bench
        .args([
            "bench",
            "--locked",
            "-p",
            "seal-controller",
            "--bench",
            name,
        ])
        .current_dir(workspace_root())
        .env("SEAL_BENCH_CONTROLLER", controller);
    Ok(bench)
}
