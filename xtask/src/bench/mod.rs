//! `cargo xtask bench ...`: every benchmark, one file per job, and what they share.
//!
//! | command | home | what it compares |
//! |---|---|---|
//! | `bench seal` | [`seal`] | `seal` against kubeseal, offline: wall time and peak RSS |
//! | `bench controller`, `bench external` | [`cluster`] | seal-controller against Bitnami's controller; ExternalSecrets from moto (the programs are `crates/seal-controller/benches/`) |
//! | `bench ci` | [`ci`] | one `seal env` against 200 `seal get` calls |
//! | `bench agent` | [`agent`] | seal-agent's endpoint against the AWS Secrets Manager Agent |
//! | `bench peers` | [`peers`] | installs the benchmarks' peers |

pub mod agent;
pub mod ci;
pub mod cluster;
pub mod peers;
pub mod seal;

use std::process::Command;

use anyhow::Result;

use crate::peers::workspace_root;
use crate::{cargo, run};

/// `label-PID-SECONDS`: a name for what a benchmark creates in the shared OpenBao or moto, unlike
/// any earlier run's.
pub fn unique_name(label: &str) -> Result<String> {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    Ok(format!("{label}-{}-{seconds}", std::process::id()))
}

/// Builds `program` (seal-controller or seal-agent: package and binary share the name) as
/// shipped, with the `small` profile (see the workspace Cargo.toml); returns its path.
pub fn build_shipped(program: &str) -> Result<std::path::PathBuf> {
    eprintln!("==> building {program} (profile small, as shipped)");
    run(Command::new(cargo())
        .args(["build", "--profile", "small", "--locked", "-p", program])
        .args(["--bin", program])
        .current_dir(workspace_root()))?;
    Ok(workspace_root().join("target/small").join(program))
}
