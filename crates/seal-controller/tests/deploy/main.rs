//! What `deploy/` and `examples/` ship, checked with the real tools: every chart linted and
//! rendered with every environment's values (as helmfile would), its RBAC and CRDs held equal to
//! the generated and tested ones, every rendered object accepted by the test API server
//! (server-side dry-run), and the controller chart installed with `helm install`, after which the
//! controller binary runs under exactly the chart's ServiceAccount; and, in pods on the test
//! environment's node, the chart as it runs in a cluster (`pods.rs`).
//!
//! helm and helmfile are built into the cache by `cargo xtask test` (`xtask/src/peers/helm.rs`);
//! these tests find them through `SEAL_HELM` and `SEAL_HELMFILE` or at those cache paths, and fail
//! when one is missing under `CI=true`, `SEAL_REQUIRE_PEERS=1` or `SEAL_REQUIRE_TESTENV=1`
//! (elsewhere they print `SKIPPED`).

// Each test is one scenario read top to bottom.
#![allow(clippy::too_many_lines)]

/// The helm binary, or `return Ok(())` from the calling test after printing `SKIPPED` (it panics
/// instead when helm is required).
macro_rules! helm {
    () => {
        match $crate::Helm::get() {
            Some(helm) => helm,
            None => return Ok(()),
        }
    };
}

/// The helmfile binary, or `return Ok(())` from the calling test after printing `SKIPPED` (it
/// panics instead when helmfile is required).
macro_rules! helmfile {
    () => {
        match $crate::find_helmfile() {
            Some(helmfile) => helmfile,
            None => {
                assert!(
                    !$crate::required(),
                    "helmfile is required here but not installed; run the tests with `cargo xtask test`"
                );
                eprintln!("SKIPPED: helmfile is not installed (`cargo xtask peers` installs it)");
                return Ok(());
            }
        }
    };
}

mod charts;
mod cluster;
mod drills;
mod environments;
mod examples;
mod pods;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// helm's version, as installed by xtask.
const HELM_VERSION: &str = "v3.22.0";

/// Held by every test that uses the helmfile environments' own namespaces (`seal-system`, `ml`):
/// the dry-run of every environment's objects, and each environment applied in pods.
pub(crate) static FIXED_NAMESPACES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The environments of `deploy/helmfile`.
pub(crate) const ENVIRONMENTS: [&str; 3] = ["dev", "staging", "prod"];

/// The workspace root.
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("invariant: the workspace root exists")
}

pub(crate) fn required() -> bool {
    ["CI", "SEAL_REQUIRE_PEERS", "SEAL_REQUIRE_TESTENV"]
        .iter()
        .any(|name| std::env::var(name).is_ok_and(|v| v == "1" || v == "true"))
}

/// helm with its own empty configuration and cache directories, so neither the user's
/// repositories nor plugins change what it does.
pub(crate) struct Helm {
    binary: PathBuf,
    home: tempfile::TempDir,
}

impl Helm {
    /// The installed helm (see the module docs).
    pub(crate) fn get() -> Option<&'static Self> {
        static HELM: OnceLock<Option<Helm>> = OnceLock::new();
        HELM.get_or_init(|| {
            let binary = find_helm();
            if binary.is_none() {
                assert!(
                    !required(),
                    "helm {HELM_VERSION} is required here but not installed; run the tests with `cargo xtask test`"
                );
                eprintln!(
                    "SKIPPED: helm {HELM_VERSION} is not installed (`cargo xtask peers` installs it)"
                );
            }
            Some(Self {
                binary: binary?,
                home: tempfile::tempdir().expect("invariant: a temp dir can be made"),
            })
        })
        .as_ref()
    }

    /// The helm binary.
    pub(crate) fn binary(&self) -> &Path {
        &self.binary
    }

    /// A helm command with the isolated directories set.
    pub(crate) fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        self.isolate(&mut command);
        command
    }

    /// Gives `command` (helm, or helmfile running helm) helm's isolated directories and no
    /// KUBECONFIG.
    pub(crate) fn isolate(&self, command: &mut Command) {
        for (name, dir) in [
            ("HELM_CACHE_HOME", "cache"),
            ("HELM_CONFIG_HOME", "config"),
            ("HELM_DATA_HOME", "data"),
        ] {
            command.env(name, self.home.path().join(dir));
        }
        command.env_remove("KUBECONFIG");
    }

    /// Runs helm with `args`; its stdout, or an error with its stderr.
    pub(crate) fn run(&self, args: &[&str]) -> Result<String> {
        let output = self.command().args(args).output()?;
        ok(&output, &format!("helm {}", args.join(" ")))
    }

    /// `helm template RELEASE CHART -n NAMESPACE -f VALUES...`: the rendered objects, `helm test`
    /// hooks included.
    pub(crate) fn template(
        &self,
        release: &str,
        chart: &Path,
        namespace: &str,
        values: &[PathBuf],
        extra: &[&str],
    ) -> Result<Vec<Value>> {
        let mut args = vec![
            "template".to_owned(),
            release.to_owned(),
            path_str(chart)?.to_owned(),
            "--namespace".to_owned(),
            namespace.to_owned(),
        ];
        for file in values {
            args.push("--values".to_owned());
            args.push(path_str(file)?.to_owned());
        }
        args.extend(extra.iter().map(|&s| s.to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        documents(&self.run(&args)?)
    }
}

fn find_helm() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SEAL_HELM") {
        return Some(PathBuf::from(path));
    }
    let binary = cache_dir()?.join(format!("helm-{HELM_VERSION}/helm"));
    binary.is_file().then_some(binary)
}

/// helmfile v1.8.0 when installed (`SEAL_HELMFILE`, else the cache path of deploy/README.md's
/// build command). Optional: its cold build takes about 30 minutes on two cores, too long for
/// every CI machine, and what it renders is what [`releases`] with `helm template` renders (a test
/// compares the two where it is installed).
pub(crate) fn find_helmfile() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SEAL_HELMFILE") {
        return Some(PathBuf::from(path));
    }
    let binary = cache_dir()?.join("helmfile-v1.8.0/helmfile");
    binary.is_file().then_some(binary)
}

fn cache_dir() -> Option<PathBuf> {
    Some(if let Some(dir) = std::env::var_os("SEAL_CACHE_DIR") {
        PathBuf::from(dir)
    } else if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME") {
        PathBuf::from(xdg).join("seal-dev")
    } else {
        PathBuf::from(std::env::var_os("HOME")?).join(".cache/seal-dev")
    })
}

/// Path as UTF-8, or an error naming it.
pub(crate) fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

/// stdout of a finished command, or an error with its stderr.
pub(crate) fn ok(output: &Output, what: &str) -> Result<String> {
    if !output.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout.clone())?)
}

/// Every non-empty document of a multi-document YAML text, as JSON values.
pub(crate) fn documents(text: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value: Value = serde::Deserialize::deserialize(document)?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}

/// The objects of `kind` among `objects`.
pub(crate) fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// One release of a helmfile: what `helmfile template` renders for it.
pub(crate) struct Release {
    /// The release name.
    pub(crate) name: String,
    /// Its namespace.
    pub(crate) namespace: String,
    /// The chart's directory.
    pub(crate) chart: PathBuf,
    /// The values files, in order.
    pub(crate) values: Vec<PathBuf>,
    /// Its labels (`service`, for `--selector`).
    pub(crate) labels: serde_json::Map<String, Value>,
}

/// The releases of `deploy/helmfile/deployments/ENV/helmfile.yaml`, with the chart and values
/// paths resolved against the helmfile's directory as helmfile resolves them.
pub(crate) fn releases(environment: &str) -> Result<Vec<Release>> {
    let dir = root().join("deploy/helmfile/deployments").join(environment);
    let text = std::fs::read_to_string(dir.join("helmfile.yaml"))?;
    let helmfile: Value = serde_yaml::from_str(&text)?;
    let mut out = Vec::new();
    for release in helmfile["releases"]
        .as_array()
        .context("a helmfile has releases")?
    {
        let field = |name: &str| {
            release[name]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("a release without {name}: {release}"))
        };
        let values = release["values"]
            .as_array()
            .context("values")?
            .iter()
            .map(|v| Ok(dir.join(v.as_str().context("a values file path")?)))
            .collect::<Result<Vec<_>>>()?;
        out.push(Release {
            name: field("name")?,
            namespace: field("namespace")?,
            chart: dir.join(field("chart")?).canonicalize()?,
            values,
            labels: release["labels"].as_object().cloned().unwrap_or_default(),
        });
    }
    Ok(out)
}

/// A binary of this workspace, built on first use (a no-op when `cargo test --workspace` already
/// built it): `seal` (package seal-cli) or `seal-agent`. With `SEAL_TEST_PREBUILT=1` the binary
/// beside seal-controller's is used as it is (for a tree whose lock file is being changed).
pub(crate) fn workspace_binary(package: &str, binary: &str) -> Result<PathBuf> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let path = Path::new(env!("CARGO_BIN_EXE_seal-controller")).with_file_name(binary);
    if std::env::var("SEAL_TEST_PREBUILT").is_ok_and(|v| v == "1") {
        return Ok(path);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build", "--quiet", "--locked", "-p", package, "--bin", binary,
        ])
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("building {binary} failed ({status})");
    }
    Ok(path)
}
