//! `cargo xtask demo`: the main job end to end on one machine. A local control plane from the test
//! environment, `seal-controller` running against it, `examples/ml-api/secret.yaml` sealed with the
//! certificate the controller serves, the SealedSecret applied, and the result shown: the Secret's
//! item names (never its values) and the SealedSecret's status.
//!
//! `demo` builds the binaries and hands over to `__demo` inside [`crate::testenv::run_against`],
//! which reuses a running environment or starts one and stops it afterwards.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::peers::workspace_root;
use crate::testenv::{Binaries, run_against};

/// The example the demo seals, and the objects it becomes.
const EXAMPLE: &str = "examples/ml-api/secret.yaml";
const NAMESPACE: &str = "ml-prod";
const NAME: &str = "ml-api-credentials";
const CONTROLLER_NAMESPACE: &str = "seal-system";

/// `cargo xtask demo`.
pub fn demo() -> Result<ExitCode> {
    eprintln!("==> building seal and seal-controller");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--locked",
            "-p",
            "seal-cli",
            "-p",
            "seal-controller",
        ])
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
    let kubectl = Binaries::ensure()?.kubectl;
    let kubectl = |args: &[&str]| run(&kubectl, args, &root);

    step("installing the CRD and the namespaces");
    kubectl(&["apply", "--server-side", "-f", "deploy/crds/"])?;
    kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/sealedsecrets.seal.dev",
    ])?;
    for namespace in [CONTROLLER_NAMESPACE, NAMESPACE] {
        let manifest = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {namespace}\n");
        apply(&kubectl, &manifest)?;
    }

    let port = free_port()?;
    let api = format!("http://127.0.0.1:{port}");
    step(&format!(
        "starting seal-controller (certificate API on {api})"
    ));
    let log = tempfile::NamedTempFile::new()?;
    let controller = Controller(
        Command::new(bin.join("seal-controller"))
            .args(["--key-namespace", CONTROLLER_NAMESPACE])
            .args(["--listen-addr", &format!("127.0.0.1:{port}")])
            .args(["--listen-metrics-addr", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(log.reopen()?)
            .spawn()
            .context("cannot start seal-controller")?,
    );
    let seal = bin.join("seal");
    let fetched = wait_for(
        "the controller's certificate",
        Duration::from_secs(60),
        || {
            let out = Command::new(&seal)
                .args(["cert", "fetch", "--controller-url", &api])
                .output()?;
            Ok(out
                .status
                .success()
                .then(|| String::from_utf8_lossy(&out.stderr).trim().to_owned()))
        },
    )
    .inspect_err(|_| {
        eprint!(
            "{}",
            std::fs::read_to_string(log.path()).unwrap_or_default()
        );
    })?;
    println!("    {fetched}");

    step(&format!("seal --controller {EXAMPLE}"));
    let sealed = output(
        &seal,
        &["--controller", "--controller-url", &api, EXAMPLE],
        &root,
    )?;
    println!("{}", indent(&sealed));
    step("kubectl apply -f - (the SealedSecret)");
    apply(&kubectl, &sealed)?;

    let names_template = "{{range $k, $v := .data}}{{$k}}{{\"\\n\"}}{{end}}";
    let names = wait_for("the Secret", Duration::from_secs(60), || {
        let out = Command::new(Binaries::ensure()?.kubectl)
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
        &Binaries::ensure()?.kubectl,
        &[
            "get",
            "sealedsecret",
            NAME,
            "-n",
            NAMESPACE,
            "-o",
            "jsonpath={.status.observedGeneration}{\" \"}{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{end}",
        ],
        &root,
    )?;
    step(&format!(
        "SealedSecret {NAMESPACE}/{NAME}: status (observedGeneration, Ready)"
    ));
    println!("{}", indent(&status));
    drop(controller);
    step("done: the controller stopped; the environment goes down unless `testenv up` started it");
    Ok(ExitCode::SUCCESS)
}

/// The controller process, stopped when dropped.
struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
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
