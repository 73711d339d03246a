//! The interop peers: kubeseal v0.40.0, built from the Go module proxy through the wrapper module in
//! `xtask/go/kubeseal` (its go.mod and go.sum are committed), kubesealpy from PyPI in a virtualenv,
//! the AWS Secrets Manager Agent 2.1.0 from crates.io (see `aws_agent.rs`: the tests' build is
//! unoptimised, the benchmark's is not), Bitnami's sealed-secrets controller v0.40.0 (see
//! `bitnami.rs`) and the External Secrets Operator's controller v0.16.2 with its CRDs (see
//! `eso.rs`). Each is installed once into the cache, keyed by version, and reused. Helm and
//! helmfile, which the deploy tests drive, and vals, which the CLI's differential tests run, are
//! installed the same way (see `helm.rs`).

pub mod aws_agent;
pub mod bitnami;
pub mod eso;
pub mod helm;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use self::aws_agent::AgentProfile;
use crate::go::{GoBuild, reports_version};
use crate::run;

/// kubeseal's version, also the wrapper module's requirement.
pub const KUBESEAL_VERSION: &str = "v0.40.0";
/// kubesealpy's version.
pub const KUBESEALPY_VERSION: &str = "1.0.1";

/// Where the peers are.
pub struct Peers {
    /// The kubeseal binary.
    pub kubeseal: PathBuf,
    /// A Python interpreter with kubesealpy installed.
    pub python: PathBuf,
    /// The AWS Secrets Manager Agent binary, `aws_secretsmanager_agent` 2.1.0, in the tests'
    /// (unoptimised) build.
    pub aws_agent: PathBuf,
    /// vals, at the version helmfile pins.
    pub vals: PathBuf,
    /// Bitnami's sealed-secrets controller v0.40.0.
    pub bitnami_controller: PathBuf,
    /// The External Secrets Operator's controller v0.16.2, its CRDs beside it.
    pub eso_controller: PathBuf,
}

impl Peers {
    /// Installs what is missing and returns the paths.
    pub fn ensure() -> Result<Self> {
        let cache = cache_dir()?;
        // The deploy tests find helm and helmfile at their cache paths; they are only installed
        // here.
        helm::ensure_helm(&cache)?;
        helm::ensure_helmfile(&cache)?;
        Ok(Self {
            kubeseal: ensure_kubeseal(&cache)?,
            python: ensure_kubesealpy(&cache)?,
            aws_agent: aws_agent::ensure_secretsmanager_agent(&cache, AgentProfile::Test)?,
            vals: helm::ensure_vals(&cache)?,
            bitnami_controller: bitnami::ensure_sealed_secrets_controller(&cache)?,
            eso_controller: eso::ensure_eso_controller(&cache)?,
        })
    }
}

/// The cache directory, created if missing.
pub fn cache_dir() -> Result<PathBuf> {
    let dir = if let Some(dir) = std::env::var_os("SEAL_CACHE_DIR") {
        PathBuf::from(dir)
    } else if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME") {
        PathBuf::from(xdg).join("seal-dev")
    } else {
        let home = std::env::var_os("HOME").context("HOME is not set; set SEAL_CACHE_DIR")?;
        PathBuf::from(home).join(".cache/seal-dev")
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// The workspace root (xtask's parent).
pub fn workspace_root() -> PathBuf {
    // At run time first: `cargo run` names the package being run, and a target directory shared
    // between clones may hold an xtask compiled in another one.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .parent()
        .expect("invariant: xtask lives in the workspace")
        .to_owned()
}

/// Builds kubeseal unless the cache has it.
pub fn ensure_kubeseal(cache: &Path) -> Result<PathBuf> {
    GoBuild {
        output: &cache.join(format!("kubeseal-{KUBESEAL_VERSION}/kubeseal")),
        package: "github.com/bitnami/sealed-secrets/cmd/kubeseal",
        module: "kubeseal",
        ldflags: "",
        expected: "about a minute",
    }
    .ensure(|binary| reports_version(binary, &["--version"], KUBESEAL_VERSION))
}

/// Creates the virtualenv with kubesealpy unless the cache has it; returns its Python.
pub fn ensure_kubesealpy(cache: &Path) -> Result<PathBuf> {
    let venv = ensure_venv(
        &cache.join(format!("venv-kubesealpy-{KUBESEALPY_VERSION}")),
        &[format!("kubesealpy=={KUBESEALPY_VERSION}")],
    )?;
    Ok(venv.join("bin/python"))
}

/// A virtualenv at `venv` with exactly these pinned `packages`, created unless a previous run
/// finished it (marked by `.installed`, written last, so an interrupted install is redone).
pub fn ensure_venv(venv: &Path, packages: &[String]) -> Result<PathBuf> {
    let done = venv.join(".installed");
    if done.is_file() {
        return Ok(venv.to_owned());
    }
    eprintln!(
        "==> installing {} from PyPI into {} (first run only)",
        packages.join(", "),
        venv.display()
    );
    if venv.exists() {
        std::fs::remove_dir_all(venv)?;
    }
    run(Command::new("python3").args(["-m", "venv"]).arg(venv))
        .context("creating a virtualenv needs python3 with venv")?;
    run(Command::new(venv.join("bin/python"))
        .args(["-m", "pip", "install", "--quiet"])
        .args(packages))?;
    std::fs::write(&done, packages.join("\n") + "\n")?;
    Ok(venv.to_owned())
}
