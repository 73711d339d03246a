//! Helm v3.22.0 for the deploy tests (`crates/seal-controller/tests/deploy`): built from the Go
//! module proxy through the wrapper module in `xtask/go/helm` (its go.mod and go.sum are committed)
//! into the cache, keyed by version, like kubeseal. The tests find it at the same cache path (or
//! through `SEAL_HELM`).
//!
//! helmfile v1.8.0 builds through its own wrapper module (`xtask/go/helmfile`, with helmfile's
//! three k8s.io replace lines), but is not installed here: its cold build took 31 minutes on two
//! cores, too much for every fresh CI machine. The deploy tests compare `helmfile template` with
//! their `helm template` per release when it is installed (deploy/README.md has the command).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

use crate::go::GoBuild;

/// Helm's version, also the wrapper module's requirement.
pub const HELM_VERSION: &str = "v3.22.0";

/// Builds helm unless the cache has it; returns its path.
pub fn ensure_helm(cache: &Path) -> Result<PathBuf> {
    GoBuild {
        output: &cache.join(format!("helm-{HELM_VERSION}/helm")),
        package: "helm.sh/helm/v3/cmd/helm",
        module: "helm",
        ldflags: &format!("-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}"),
        expected: "a few minutes",
    }
    .ensure(|binary| {
        let output = Command::new(binary).args(["version", "--short"]).output()?;
        let version = String::from_utf8_lossy(&output.stdout);
        if !version.contains(HELM_VERSION) {
            bail!("built helm reports {version:?}, expected {HELM_VERSION}");
        }
        Ok(())
    })
}
