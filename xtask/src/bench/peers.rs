//! The peers the benchmarks run: the Bitnami sealed-secrets controller v0.40.0 (the server side
//! kubeseal talks to), built from the Go module proxy through the wrapper module in
//! `xtask/go/sealed-secrets-controller` (its go.mod and go.sum are committed), exactly as kubeseal
//! is built in [`crate::peers`], and the AWS Secrets Manager Agent, which is also an interop peer
//! of the tests and is built by [`crate::peers::aws_agent`].
//!
//! The controller is installed only by `cargo xtask bench peers` and the bench commands, never by
//! `cargo xtask test`: it takes minutes to build and nothing but a benchmark needs it. Like the
//! interop peers, it is built once into the cache, keyed by version, and reused.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::go::GoBuild;
use crate::peers::aws_agent::{
    SECRETSMANAGER_AGENT_CRATE, ensure_secretsmanager_agent, install_root, installed_crate_version,
};
use crate::peers::cache_dir;

/// The sealed-secrets controller's version, also the wrapper module's requirement.
pub const SEALED_SECRETS_CONTROLLER_VERSION: &str = "v0.40.0";

/// Where the benchmarks' peers are.
pub struct BenchPeers {
    /// The sealed-secrets controller binary (`controller`, v0.40.0), as a benchmark would run it in
    /// place of the in-cluster controller.
    pub sealed_secrets_controller: PathBuf,
    /// The AWS Secrets Manager Agent binary (`aws_secretsmanager_agent`), a local HTTP service that
    /// reads secrets from Secrets Manager and caches them in memory; takes `--config <file>`.
    pub secretsmanager_agent: PathBuf,
}

impl BenchPeers {
    /// Builds what is missing and returns the paths.
    pub fn ensure() -> Result<Self> {
        let cache = cache_dir()?;
        Ok(Self {
            sealed_secrets_controller: ensure_sealed_secrets_controller(&cache)?,
            secretsmanager_agent: ensure_secretsmanager_agent(&cache)?,
        })
    }

    /// Prints each peer's version and path, the versions as the installed peers report them.
    pub fn report(&self) -> Result<()> {
        println!(
            "sealed-secrets controller {}: {}",
            controller_version(&self.sealed_secrets_controller)?,
            self.sealed_secrets_controller.display()
        );
        println!(
            "{SECRETSMANAGER_AGENT_CRATE} {}: {}",
            installed_crate_version(&install_root(&self.secretsmanager_agent)?)?,
            self.secretsmanager_agent.display()
        );
        Ok(())
    }
}

/// Builds the sealed-secrets controller unless the cache has it.
pub fn ensure_sealed_secrets_controller(cache: &Path) -> Result<PathBuf> {
    GoBuild {
        output: &cache.join(format!(
            "sealed-secrets-controller-{SEALED_SECRETS_CONTROLLER_VERSION}/controller"
        )),
        package: "github.com/bitnami/sealed-secrets/cmd/controller",
        module: "sealed-secrets-controller",
        ldflags: "",
        expected: "about 3 minutes",
    }
    .ensure(|binary| {
        let version = controller_version(binary)?;
        if version != SEALED_SECRETS_CONTROLLER_VERSION {
            bail!(
                "built sealed-secrets controller reports {version:?}, expected {SEALED_SECRETS_CONTROLLER_VERSION}"
            );
        }
        Ok(())
    })
}

/// The version the controller binary reports (`controller version: v0.40.0`).
fn controller_version(binary: &Path) -> Result<String> {
    let output = Command::new(binary)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout.trim().strip_prefix("controller version: ") {
        Some(version) if output.status.success() => Ok(version.to_owned()),
        _ => bail!(
            "{} --version printed {stdout:?} ({})",
            binary.display(),
            output.status
        ),
    }
}
