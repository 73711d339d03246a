//! Helm v3.22.0 and helmfile v1.8.0 for the deploy tests (`crates/seal-controller/tests/deploy`):
//! built from the Go module proxy through the wrapper modules in `xtask/go/helm` and
//! `xtask/go/helmfile` (their go.mod and go.sum are committed; helmfile's carries its three
//! k8s.io replace lines) into the cache, keyed by version, like kubeseal. The tests find them at
//! the same cache paths (or through `SEAL_HELM`, `SEAL_HELMFILE`).
//!
//! helmfile's first build is the slowest step of a fresh machine's set-up (31 minutes on two
//! cores, measured); it is cached after that. It is built anyway: the deploy tests compare
//! `helmfile template` with `helm template` per release, and CI must not skip that.
//!
//! vals, which helmfile resolves `ref+` references with, is built from helmfile's wrapper module
//! too: its `cmd/vals` at exactly the vals version helmfile v1.8.0 pins (v0.46.1), with every
//! other module of helmfile's graph, so the differential tests of `seal get` and `seal render`
//! (`crates/seal-cli/tests/ci/vals.rs`) compare seal with the vals helmfile users run. Its build
//! reuses helmfile's compiled packages (seconds once helmfile is built). The tests find it
//! through `SEAL_VALS`.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::go::{GoBuild, reports_version};

/// Helm's version, also the wrapper module's requirement.
pub const HELM_VERSION: &str = "v3.22.0";
/// helmfile's version, also its wrapper module's requirement.
pub const HELMFILE_VERSION: &str = "v1.8.0";

/// The vals version helmfile v1.8.0 requires: its go.mod pins it, and a test checks the two agree.
pub const VALS_VERSION: &str = "v0.46.1";

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
        expected: "about 5 minutes on two cores",
    }
    .ensure(|binary| reports_version(binary, &["--version"], HELMFILE_VERSION))
}

/// Builds vals (helmfile's module graph) unless the cache has it; returns its path.
pub fn ensure_vals(cache: &Path) -> Result<PathBuf> {
    GoBuild {
        output: &cache.join(format!("vals-{VALS_VERSION}/vals")),
        package: "github.com/helmfile/vals/cmd/vals",
        module: "helmfile",
        ldflags: &format!("-X main.version={VALS_VERSION}"),
        expected: "a minute once helmfile is built",
    }
    .ensure(|binary| reports_version(binary, &["version"], VALS_VERSION))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// vals is helmfile's: the version stamped into it is the one helmfile's module graph holds.
    #[test]
    fn vals_version_is_the_one_helmfile_pins() {
        let go_mod = std::fs::read_to_string(
            crate::peers::workspace_root().join("xtask/go/helmfile/go.mod"),
        )
        .unwrap();
        let pinned: Vec<&str> = go_mod
            .lines()
            .filter_map(|line| line.trim().strip_prefix("github.com/helmfile/vals "))
            .collect();
        assert_eq!(pinned.len(), 1, "{pinned:?}");
        assert!(
            pinned[0].starts_with(&format!("{VALS_VERSION} ")) || pinned[0] == VALS_VERSION,
            "helmfile's go.mod pins vals {}, VALS_VERSION is {VALS_VERSION}",
            pinned[0]
        );
        assert!(go_mod.contains(&format!("github.com/helmfile/helmfile {HELMFILE_VERSION}")));
    }
}
