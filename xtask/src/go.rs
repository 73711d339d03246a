//! Building Go programs from the Go module proxy through the wrapper modules in `xtask/go/<module>`:
//! each commits its go.mod and go.sum, so every build resolves exactly the same modules. Builds run
//! with the installed toolchain only (`GOTOOLCHAIN=local`), without the checksum database (it is not
//! reachable here; go.sum pins every module's hash instead) and without cgo (static binaries), and
//! without the symbol table and DWARF (`-s -w`): nothing here debugs them, and writing the DWARF is
//! a good part of each single-threaded link.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::peers::workspace_root;

/// How often a running build says it is still running.
const HEARTBEAT: Duration = Duration::from_secs(60);

/// One binary to build.
pub struct GoBuild<'a> {
    /// Where the binary goes (in the cache, in a directory named after the version).
    pub output: &'a Path,
    /// The package to build, e.g. `k8s.io/kubernetes/cmd/kube-apiserver`.
    pub package: &'a str,
    /// The wrapper module's directory under `xtask/go/`.
    pub module: &'a str,
    /// Linker flags (`-X` version stamps), or empty.
    pub ldflags: &'a str,
    /// How long the first build takes, for the progress line.
    pub expected: &'a str,
}

impl GoBuild<'_> {
    /// Builds unless the output exists. The build goes to a `.partial` file that `check` must
    /// accept (it runs the binary, e.g. for its version) before it is renamed into place, so a
    /// failed or interrupted build is never mistaken for a finished one.
    pub fn ensure(&self, check: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
        if self.output.is_file() {
            return Ok(self.output.to_owned());
        }
        let dir = self
            .output
            .parent()
            .expect("invariant: outputs live in a cache directory");
        std::fs::create_dir_all(dir)?;
        eprintln!(
            "==> building {} from the Go module proxy into {} (first run only; {})",
            self.package,
            dir.display(),
            self.expected
        );
        let started = Instant::now();
        let partial = self.output.with_extension("partial");
        let needs = || {
            format!(
                "building {} needs Go 1.26 and the Go module proxy",
                self.package
            )
        };
        let ldflags = format!("-s -w {}", self.ldflags);
        let mut child = Command::new("go")
            .args(["build", "-trimpath", "-ldflags", &ldflags, "-o"])
            .arg(&partial)
            .arg(self.package)
            .current_dir(workspace_root().join("xtask/go").join(self.module))
            .env("GOTOOLCHAIN", "local")
            .env("GOSUMDB", "off")
            .env("CGO_ENABLED", "0")
            .spawn()
            .with_context(needs)?;
        // go build is silent while it compiles; a line a minute shows it has not hung.
        let mut reported = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if reported.elapsed() >= HEARTBEAT {
                eprintln!(
                    "==> still building {} ({} min so far)",
                    self.package,
                    started.elapsed().as_secs() / 60
                );
                reported = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        if !status.success() {
            return Err(anyhow!("go build {} failed with {status}", self.package))
                .with_context(needs);
        }
        check(&partial)?;
        std::fs::rename(&partial, self.output)?;
        eprintln!("==> built {} in {:.0?}", self.package, started.elapsed());
        Ok(self.output.to_owned())
    }
}

/// A check for [`GoBuild::ensure`]: `binary ARGS` must print `version` on its standard output.
pub fn reports_version(binary: &Path, args: &[&str], version: &str) -> Result<()> {
    let output = Command::new(binary)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !text.contains(version) {
        bail!("{} reports {text:?}, expected {version}", binary.display());
    }
    Ok(())
}
