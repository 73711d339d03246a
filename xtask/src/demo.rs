//! `cargo xtask demo`: the main job end to end on one machine, in real pods. The test environment
//! (a control plane and a node), the project's image built from this checkout and put on the
//! node, the controller chart installed with helm into a namespace that enforces Pod Security
//! `restricted`, `examples/ml-api/secret.yaml` sealed with the certificate fetched from the pods
//! through the API server, the SealedSecret applied, and the result shown: the node and the pods
//! (as `kubectl get nodes,pods -A -o wide`), the Secret's item names (never its values) and the
//! SealedSecret's status.
//!
//! `demo` builds the binaries and hands over to `__demo` inside [`crate::testenv::run_against`],
//! which reuses a running environment or starts one and stops it afterwards.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::peers::{cache_dir, workspace_root};
use crate::testenv::{Binaries, Environment, run_against};

/// The example the demo seals, and the objects it becomes.
const EXAMPLE: &str = "examples/ml-api/secret.yaml";
const NAMESPACE: &str = "ml-prod";
const NAME: &str = "ml-api-credentials";
const CONTROLLER_NAMESPACE: &str = "seal-system";
const RELEASE: &str = "seal-controller";

/// `cargo xtask demo`.
pub fn demo() -> Result<ExitCode> {
    eprintln!("==> building seal, seal-controller and seal-agent");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--locked",
            "-p",
            "seal-cli",
            "-p",
            "seal-controller",
        ])
        .args(["-p", "seal-agent"])
        .current_dir(workspace_root())
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("building the binaries failed");
    }
    let me = std::env::current_exe().context("cannot find the xtask binary")?;
    run_against(Command::new(me).arg("__demo"))
}

/// `__demo`: the steps, run with the test environment's variables.
pub fn steps() -> Result<ExitCode> {
    let root = workspace_root();
    let bin = root.join("target/debug");
    let kubectl_binary = Binaries::ensure()?.kubectl;
    let kubectl = |args: &[&str]| run(&kubectl_binary, args, &root);
    let helm = crate::peers::helm::ensure_helm(&cache_dir()?)?;

    step("the project's image from this checkout (cargo xtask image), onto the node");
    let image = crate::image::build(&bin)?;
    Environment::current()
        .context("the test environment is not running")?
        .import_image(&image.archive)?;
    println!("    {}", image.reference);

    step("namespaces that enforce Pod Security `restricted`");
    for namespace in [CONTROLLER_NAMESPACE, NAMESPACE] {
        let manifest = format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {namespace}\n  labels:\n    \
             pod-security.kubernetes.io/enforce: restricted\n"
        );
        apply(&kubectl, &manifest)?;
    }

    step(&format!(
        "helm install {RELEASE} deploy/charts/seal-controller --namespace {CONTROLLER_NAMESPACE} --wait"
    ));
    let (repository, tag) = image
        .reference
        .rsplit_once(':')
        .context("the image reference has a tag")?;
    run(
        &helm,
        &[
            "upgrade",
            "--install",
            RELEASE,
            "deploy/charts/seal-controller",
            "--namespace",
            CONTROLLER_NAMESPACE,
            "--set",
            &format!("image.repository={repository}"),
            "--set",
            &format!("image.tag={tag}"),
            "--set",
            "image.pullPolicy=Never",
            "--set",
            "keys.size=3072",
            "--wait",
            "--timeout",
            "300s",
        ],
        &root,
    )?;
    step("kubectl get nodes,pods -A -o wide");
    println!(
        "{}",
        indent(&output(
            &kubectl_binary,
            &["get", "nodes,pods", "-A", "-o", "wide"],
            &root
        )?)
    );

    seal_and_show(&bin, &root, &kubectl_binary)?;

    step("cleaning up: helm uninstall and the namespaces");
    run(
        &helm,
        &[
            "uninstall",
            RELEASE,
            "--namespace",
            CONTROLLER_NAMESPACE,
            "--wait",
        ],
        &root,
    )?;
    kubectl(&[
        "delete",
        "namespace",
        NAMESPACE,
        CONTROLLER_NAMESPACE,
        "--wait=false",
    ])?;
    step("done: the environment goes down unless `testenv up` started it");
    Ok(ExitCode::SUCCESS)
}

/// Seals the example with the certificate the pods serve, applies it, and shows the Secret's item
/// names and the SealedSecret's status.
fn seal_and_show(bin: &Path, root: &Path, kubectl_binary: &PathBuf) -> Result<()> {
    let kubectl = |args: &[&str]| run(kubectl_binary, args, root);
    let seal = bin.join("seal");
    let controller = [
        "--controller-namespace",
        CONTROLLER_NAMESPACE,
        "--controller-name",
        RELEASE,
        "--controller-port",
        "http",
    ];
    step("seal cert fetch (through the API server's service proxy to the pods)");
    let fetched = wait_for(
        "the controller's certificate",
        Duration::from_secs(120),
        || {
            let out = Command::new(&seal)
                .args(["cert", "fetch"])
                .args(controller)
                .output()?;
            Ok(out
                .status
                .success()
                .then(|| String::from_utf8_lossy(&out.stderr).trim().to_owned()))
        },
    )?;
    println!("    {fetched}");

    step(&format!("seal --controller {EXAMPLE}"));
    let mut args = vec!["--controller"];
    args.extend(controller);
    args.push(EXAMPLE);
    let sealed = output(&seal, &args, root)?;
    println!("{}", indent(&sealed));
    step("kubectl apply -f - (the SealedSecret)");
    apply(&kubectl, &sealed)?;

    let names_template = "{{range $k, $v := .data}}{{$k}}{{\"\\n\"}}{{end}}";
    let names = wait_for("the Secret", Duration::from_secs(60), || {
        let out = Command::new(kubectl_binary)
            .args(["get", "secret", NAME, "-n", NAMESPACE, "-o"])
            .arg(format!("go-template={names_template}"))
            .stderr(Stdio::null())
            .output()?;
        Ok(out
            .status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned()))
    })?;
    step(&format!(
        "Secret {NAMESPACE}/{NAME}: item names (values stay in the cluster)"
    ));
    println!("{}", indent(&names));
    let status = output(
        kubectl_binary,
        &[
            "get",
            "sealedsecret",
            NAME,
            "-n",
            NAMESPACE,
            "-o",
            "jsonpath={.status.observedGeneration}{\" \"}{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{end}",
        ],
        root,
    )?;
    step(&format!(
        "SealedSecret {NAMESPACE}/{NAME}: status (observedGeneration, Ready)"
    ));
    println!("{}", indent(&status));

    Ok(())
}

fn step(what: &str) {
    println!("==> {what}");
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|line| format!("    {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn apply(kubectl: &impl Fn(&[&str]) -> Result<()>, manifest: &str) -> Result<()> {
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), manifest)?;
    let path = file.path().to_str().context("a UTF-8 temporary path")?;
    kubectl(&["apply", "--server-side", "-f", path])
}

fn run(program: &Path, args: &[&str], cwd: &Path) -> Result<()> {
    let status = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("cannot run {}", program.display()))?;
    if !status.success() {
        bail!("{} {} failed ({status})", program.display(), args.join(" "));
    }
    Ok(())
}

fn output(program: &PathBuf, args: &[&str], cwd: &Path) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .output()
        .with_context(|| format!("cannot run {}", program.display()))?;
    if !out.status.success() {
        bail!(
            "{} {} failed ({}):\n{}",
            program.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check()? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}
