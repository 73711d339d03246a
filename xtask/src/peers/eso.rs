//! The External Secrets Operator's controller v0.16.2, an interop peer: the migration test runs it
//! on ESO's own CRDs against the test environment's OpenBao, then moves its Secrets to
//! seal-controller. Built from the Go module proxy through the wrapper module in
//! `xtask/go/external-secrets` (its go.mod and go.sum are committed), once into the cache, keyed
//! by version; ESO's CRD bundle from the same module goes beside the binary as `crds.yaml`, so the
//! test finds both through `SEAL_ESO_CONTROLLER`.
//!
//! v0.16.2 is the newest release the Go module proxy serves whole here (it serves
//! `external-secrets.io/v1`, the stored version, and `v1beta1`). It has no build tags that leave
//! providers out: its ExternalSecret and SecretStore controllers import every provider, so every
//! cloud SDK is compiled, which is what makes this the longest of the peers' builds. The binary
//! has no version flag; the version is read from its Go build information.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::go::GoBuild;
use crate::peers::workspace_root;

/// ESO's version, also the wrapper module's requirement.
pub const ESO_VERSION: &str = "v0.16.2";
/// ESO's module, whose root package is the controller's `main`.
const ESO_MODULE: &str = "github.com/external-secrets/external-secrets";
/// The wrapper module's directory under `xtask/go/`.
const WRAPPER: &str = "external-secrets";

/// Builds ESO's controller unless the cache has it, and puts ESO's CRDs beside it
/// (`crds.yaml`); returns the binary.
pub fn ensure_eso_controller(cache: &Path) -> Result<PathBuf> {
    let binary = GoBuild {
        output: &cache.join(format!("external-secrets-{ESO_VERSION}/external-secrets")),
        package: ESO_MODULE,
        module: WRAPPER,
        ldflags: "",
        expected: "about 8 minutes: every provider's SDK is compiled",
    }
    .ensure(|binary| {
        let version = built_version(binary)?;
        if version != ESO_VERSION {
            bail!("built ESO controller is {ESO_MODULE} {version:?}, expected {ESO_VERSION}");
        }
        Ok(())
    })?;
    let crds = crds_path(&binary);
    if !crds.is_file() {
        let bundle = module_dir()?.join("deploy/crds/bundle.yaml");
        let partial = crds.with_extension("partial");
        std::fs::copy(&bundle, &partial)
            .with_context(|| format!("cannot copy ESO's CRDs from {}", bundle.display()))?;
        std::fs::rename(&partial, &crds)?;
    }
    Ok(binary)
}

/// Where ESO's CRD bundle is kept beside the controller `binary`.
pub fn crds_path(binary: &Path) -> PathBuf {
    binary.with_file_name("crds.yaml")
}

/// The version of ESO's module that `binary` was built from, as its Go build information records
/// it (`go version -m`: the main package's module is the line
/// `mod github.com/external-secrets/external-secrets v0.16.2 h1:...`).
pub fn built_version(binary: &Path) -> Result<String> {
    let output = Command::new("go")
        .args(["version", "-m"])
        .arg(binary)
        .env("GOTOOLCHAIN", "local")
        .output()
        .context("reading a Go binary's build information needs Go")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        (fields.next() == Some("mod") && fields.next() == Some(ESO_MODULE))
            .then(|| fields.next())
            .flatten()
    });
    match version {
        Some(version) if output.status.success() => Ok(version.to_owned()),
        _ => bail!(
            "`go version -m {}` names no main module {ESO_MODULE} ({}): {:?}",
            binary.display(),
            output.status,
            text.lines().take(3).collect::<Vec<_>>()
        ),
    }
}

/// ESO's module in the Go module cache, downloaded if missing (go.sum pins its hash).
fn module_dir() -> Result<PathBuf> {
    let output = Command::new("go")
        .args(["mod", "download", "-json", ESO_MODULE])
        .current_dir(workspace_root().join("xtask/go").join(WRAPPER))
        .env("GOTOOLCHAIN", "local")
        .env("GOSUMDB", "off")
        .output()
        .context("finding ESO's module needs Go and the Go module proxy")?;
    if !output.status.success() {
        bail!(
            "go mod download {ESO_MODULE} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let module: serde_json::Value = serde_json::from_slice(&output.stdout)
        .context("go mod download -json printed something else than JSON")?;
    module["Dir"]
        .as_str()
        .map(PathBuf::from)
        .context("go mod download -json named no directory")
}
