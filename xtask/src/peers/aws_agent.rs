//! The AWS Secrets Manager Agent 2.1.0 (`aws_secretsmanager_agent`), an interop peer: the
//! seal-agent tests run it beside seal-agent against the same moto and diff the answers
//! (`crates/seal-agent/tests/agent/differential.rs`, which finds it through `SEAL_AWS_AGENT`), and
//! `cargo xtask bench agent` measures it. Installed from crates.io with `cargo install --locked`
//! at the pinned version, once per [`AgentProfile`], into the cache; the build goes to a
//! `.partial` root renamed into place only once verified, so an interrupted build is redone rather
//! than trusted.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::{cargo, run};

/// The AWS Secrets Manager Agent's crates.io version (its latest release when pinned).
pub const SECRETSMANAGER_AGENT_VERSION: &str = "2.1.0";
/// The AWS Secrets Manager Agent's crate, which is also the name of the binary it installs.
pub const SECRETSMANAGER_AGENT_CRATE: &str = "aws_secretsmanager_agent";

/// How the agent is compiled. Each profile has a cache entry of its own, so that neither build
/// replaces the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentProfile {
    /// For the tests, which only need the agent to answer as the shipped one does: cargo's dev
    /// profile (`--debug`, no optimisation) without debug info, debug assertions or overflow
    /// checks, so that the code that runs is the release build's, only unoptimised. Entry
    /// `aws-secretsmanager-agent-2.1.0-dev`.
    Test,
    /// For `cargo xtask bench agent`, which compares speed and memory: the release profile, as
    /// upstream ships it. Entry `aws-secretsmanager-agent-2.1.0`.
    Release,
}

impl AgentProfile {
    /// The cache entry's name (the install root), keyed by version and profile.
    fn entry(self) -> String {
        match self {
            Self::Test => format!("aws-secretsmanager-agent-{SECRETSMANAGER_AGENT_VERSION}-dev"),
            Self::Release => format!("aws-secretsmanager-agent-{SECRETSMANAGER_AGENT_VERSION}"),
        }
    }

    /// What `cargo install` is told on top of `--locked --version`.
    fn cargo_args(self) -> &'static [&'static str] {
        match self {
            Self::Test => &[
                "--debug",
                "--config",
                "profile.dev.debug=false",
                "--config",
                "profile.dev.debug-assertions=false",
                "--config",
                "profile.dev.overflow-checks=false",
            ],
            Self::Release => &[],
        }
    }

    /// How long a cold build takes on two cores, for the first run's message (measured
    /// 2026-12-04 with the crates already downloaded, on two cores shared with other builds: 201
    /// CPU-seconds for the test build, 464 for the release build; see the README).
    fn expected(self) -> &'static str {
        match self {
            Self::Test => "about 4 minutes on 2 cores",
            Self::Release => "about 8 minutes on 2 cores",
        }
    }
}

/// Installs the AWS Secrets Manager Agent from crates.io, compiled with `profile`, unless the
/// cache has it.
///
/// `cargo install` runs in the cache, outside the workspace, so the workspace's `.cargo/config.toml`
/// does not apply, and without its `[env]` variables that `cargo xtask` inherited (the AWS-LC seeding
/// tweak made for `seal`): the agent is built as upstream ships it. The pinned toolchain still
/// applies, as rustup passes it down in `RUSTUP_TOOLCHAIN`. The build's target directory lives in
/// the `.partial` root, so an interrupted build resumes; it is deleted before the root is renamed
/// into place.
pub fn ensure_secretsmanager_agent(cache: &Path, profile: AgentProfile) -> Result<PathBuf> {
    let root = cache.join(profile.entry());
    let binary = root.join("bin").join(SECRETSMANAGER_AGENT_CRATE);
    if binary.is_file() {
        return Ok(binary);
    }
    eprintln!(
        "==> building {SECRETSMANAGER_AGENT_CRATE} {SECRETSMANAGER_AGENT_VERSION} ({profile:?} profile) from crates.io into {} (first run only; {})",
        root.display(),
        profile.expected()
    );
    let started = Instant::now();
    let partial = cache.join(format!("{}.partial", profile.entry()));
    std::fs::create_dir_all(&partial)?;
    run(Command::new(cargo())
        .args([
            "install",
            "--locked",
            "--version",
            SECRETSMANAGER_AGENT_VERSION,
        ])
        .args(profile.cargo_args())
        .arg("--root")
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
        "==> built {SECRETSMANAGER_AGENT_CRATE} ({profile:?} profile) in {:.0?}",
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
pub fn install_root(binary: &Path) -> Result<PathBuf> {
    binary
        .parent()
        .and_then(Path::parent)
        .map(Path::to_owned)
        .with_context(|| format!("{} is not in a bin directory", binary.display()))
}

/// The version of the agent crate `cargo install` recorded in `root/.crates.toml`, whose keys are
/// package ids such as `"aws_secretsmanager_agent 2.1.0 (registry+https://…)"`.
pub fn installed_crate_version(root: &Path) -> Result<String> {
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
