//! Benchmark-only peers: the programs future benchmarks compare `seal` against, beyond kubeseal.
//!
//! - The Bitnami sealed-secrets controller v0.40.0 (the server side kubeseal talks to), built from
//!   the Go module proxy through the wrapper module in `xtask/go/sealed-secrets-controller` (its
//!   go.mod and go.sum are committed), exactly as kubeseal is built in [`crate::peers`].
//! - The AWS Secrets Manager Agent from crates.io, installed with `cargo install --locked` at a pinned
//!   version.
//!
//! They are installed only by `cargo xtask bench peers` and future bench commands, never by
//! `cargo xtask test` or any test: they take minutes to build and nothing but a benchmark needs them.
//! Like the interop peers, each is built once into the cache, keyed by version, and reused; a build
//! goes to a `.partial` path that is renamed into place only once verified, so an interrupted build
//! is redone rather than trusted.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::go::GoBuild;
use crate::peers::cache_dir;
use crate::{cargo, run};

/// The sealed-secrets controller's version, also the wrapper module's requirement.
pub const SEALED_SECRETS_CONTROLLER_VERSION: &str = "v0.40.0";
/// The AWS Secrets Manager Agent's crates.io version (its latest release when pinned).
pub const SECRETSMANAGER_AGENT_VERSION: &str = "2.1.0";
/// The AWS Secrets Manager Agent's crate, which is also the name of the binary it installs.
const SECRETSMANAGER_AGENT_CRATE: &str = "aws_secretsmanager_agent";

/// Where the benchmark-only peers are.
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

/// Installs the AWS Secrets Manager Agent from crates.io unless the cache has it.
///
/// `cargo install` runs in the cache, outside the workspace, so the workspace's `.cargo/config.toml`
/// does not apply, and without its `[env]` variables that `cargo xtask` inherited (the AWS-LC seeding
/// tweak made for `seal`): the agent is built as upstream ships it. The pinned toolchain still
/// applies, as rustup passes it down in `RUSTUP_TOOLCHAIN`. The build's target directory lives in
/// the `.partial` root, so an interrupted build resumes; it is deleted before the root is renamed
/// into place.
fn ensure_secretsmanager_agent(cache: &Path) -> Result<PathBuf> {
    let root = cache.join(format!(
        "aws-secretsmanager-agent-{SECRETSMANAGER_AGENT_VERSION}"
    ));
    let binary = root.join("bin").join(SECRETSMANAGER_AGENT_CRATE);
    if binary.is_file() {
        return Ok(binary);
    }
    eprintln!(
        "==> building {SECRETSMANAGER_AGENT_CRATE} {SECRETSMANAGER_AGENT_VERSION} from crates.io into {} (first run only; about 12 minutes on 2 cores)",
        root.display()
    );
    let started = Instant::now();
    let partial = cache.join(format!(
        "aws-secretsmanager-agent-{SECRETSMANAGER_AGENT_VERSION}.partial"
    ));
    std::fs::create_dir_all(&partial)?;
    run(Command::new(cargo())
        .args([
            "install",
            "--locked",
            "--version",
            SECRETSMANAGER_AGENT_VERSION,
            "--root",
        ])
        .arg(&partial)
        .arg(SECRETSMANAGER_AGENT_CRATE)
        .current_dir(cache)
        .env("CARGO_TARGET_DIR", partial.join("target"))
        .env_remove("AWS_LC_SYS_NO_JITTER_ENTROPY"))
    .with_context(|| format!("installing {SECRETSMANAGER_AGENT_CRATE} needs crates.io"))?;
    let installed = installed_crate_version(&partial)?;
    if installed != SECRETSMANAGER_AGENT_VERSION {
        bail!(
            "cargo installed {SECRETSMANAGER_AGENT_CRATE} {installed}, expected {SECRETSMANAGER_AGENT_VERSION}"
        );
    }
    check_agent_starts(&partial.join("bin").join(SECRETSMANAGER_AGENT_CRATE))?;
    std::fs::remove_dir_all(partial.join("target"))?;
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    std::fs::rename(&partial, &root)?;
    eprintln!(
        "==> built {SECRETSMANAGER_AGENT_CRATE} in {:.0?}",
        started.elapsed()
    );
    Ok(binary)
}

/// Checks that the agent starts: it has no `--version`, and `--help` prints its usage to stderr
/// and exits 1 (without reading any configuration or AWS credentials).
fn check_agent_starts(binary: &Path) -> Result<()> {
    let output = Command::new(binary)
        .arg("--help")
        .output()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !stderr.contains("Usage:") {
        bail!(
            "{} --help printed {stderr:?} ({}), expected its usage",
            binary.display(),
            output.status
        );
    }
    Ok(())
}

/// The `--root` a binary was installed into by `cargo install` (the parent of its `bin`).
fn install_root(binary: &Path) -> Result<PathBuf> {
    binary
        .parent()
        .and_then(Path::parent)
        .map(Path::to_owned)
        .with_context(|| format!("{} is not in a bin directory", binary.display()))
}

/// The version of the agent crate `cargo install` recorded in `root/.crates.toml`, whose keys are
/// package ids such as `"aws_secretsmanager_agent 2.1.0 (registry+https://…)"`.
fn installed_crate_version(root: &Path) -> Result<String> {
    let manifest = root.join(".crates.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("cannot read {}", manifest.display()))?;
    let prefix = format!("\"{SECRETSMANAGER_AGENT_CRATE} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .with_context(|| {
            format!(
                "{} does not list {SECRETSMANAGER_AGENT_CRATE}",
                manifest.display()
            )
        })
}
