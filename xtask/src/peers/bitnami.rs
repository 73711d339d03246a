//! Bitnami's sealed-secrets controller v0.40.0 (the server side kubeseal talks to), an interop
//! peer: the migration tests run it beside seal-controller on the same objects, and `cargo xtask
//! bench controller` measures it. Built from the Go module proxy through the wrapper module in
//! `xtask/go/sealed-secrets-controller` (its go.mod and go.sum are committed), exactly as kubeseal
//! is built, once into the cache, keyed by version.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::go::GoBuild;

/// The sealed-secrets controller's version, also the wrapper module's requirement.
pub const SEALED_SECRETS_CONTROLLER_VERSION: &str = "v0.40.0";

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
pub fn controller_version(binary: &Path) -> Result<String> {
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
