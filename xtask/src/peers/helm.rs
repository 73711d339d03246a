//! Helm v3.22.0 and helmfile v1.8.0 for the deploy tests (`crates/seal-controller/tests/deploy`):
//! built from the Go module proxy through the wrapper modules in `xtask/go/helm` and
//! `xtask/go/helmfile` (their go.mod and go.sum are committed; helmfile's carries its three
//! k8s.io replace lines) into the cache, keyed by version, like kubeseal. The tests find them at
//! the same cache paths (or through `SEAL_HELM`, `SEAL_HELMFILE`).
//!
//! helmfile's first build is the slowest step of a fresh machine's set-up (31 minutes on two
//! cores, measured); it is cached after that. It is built anyway: the deploy tests compare
//! `helmfile template` with `helm template` per release, and CI must not skip that.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::go::{GoBuild, reports_version};

/// Helm's version, also the wrapper module's requirement.
pub const HELM_VERSION: &str = "v3.22.0";
/// helmfile's version, also its wrapper module's requirement.
pub const HELMFILE_VERSION: &str = "v1.8.0";

/// Builds helm unless the cache has it; returns its path.
pub fn ensure_helm(cache: &Path) -> Result<PathBuf> {
    GoBuild {
        output: &cache.join(format!("helm-{HELM_VERSION}/helm")),
        package: "helm.sh/helm/v3/cmd/helm",
        module: "helm",
        ldflags: &format!("-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}"),
        expected: "a few minutes",
    }
    .ensure(|binary| reports_version(binary, &["version", "--short"], HELM_VERSION))
}

/// Builds helmfile unless the cache has it; returns its path.
pub fn ensure_helmfile(cache: &Path) -> Result<PathBuf> {
    GoBuild {
        output: &cache.join(format!("helmfile-{HELMFILE_VERSION}/helmfile")),
        package: "github.com/helmfile/helmfile",
        module: "helmfile",
        ldflags: "",
        expected: "about 30 minutes on two cores",
    }
    .ensure(|binary| reports_version(binary, &["--version"], HELMFILE_VERSION))
}
