//! The controller chart for real, in pods on the test environment's node: the project's image
//! (`cargo xtask image`, the Dockerfile's runtime stage), `helm install --wait` into a namespace
//! that enforces Pod Security `restricted`, both roles in pods of their own under ServiceAccounts
//! of their own, leader election between two replicas, probes, `helm test`, the certificate
//! through the API server's service proxy to the pods (for `seal` and for kubeseal), and a
//! SealedSecret unsealed by the controller in its pod. No value is ever printed or logged.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::api::{ListParams, LogParams, Patch, PatchParams};
use seal_testenv::{TestEnv, eventually, testenv, unique_name};
use serde_json::json;

use crate::cluster::Installed;
use crate::cluster::install_crds;
use crate::{ok, path_str, root, workspace_binary};

/// The image every pod of these tests runs.
pub(crate) const IMAGE_REPOSITORY: &str = "localhost/seal";
pub(crate) const IMAGE_TAG: &str = "dev";
/// The project's stand-in workload (`xtask/go/workload`): reports digests, never values.
pub(crate) const WORKLOAD_REPOSITORY: &str = "localhost/seal-workload";

/// Builds the image from this workspace's binaries and imports it into the node, once per test
/// process (`cargo xtask image --import`).
pub(crate) fn seal_image(env: &TestEnv) -> Result<()> {
    static IMPORTED: OnceLock<Result<(), String>> = OnceLock::new();
    IMPORTED
        .get_or_init(|| {
            let node = env.vars().find(|(k, _)| *k == "SEAL_TESTENV_NODE");
            if node.is_none() {
                return Err(
                    "these tests run pods, and the test environment has no node \
                            (it was started with SEAL_TESTENV_NODE=0)"
                        .to_owned(),
                );
            }
            let build = || -> Result<()> {
                for (package, binary) in [
                    ("seal-cli", "seal"),
                    ("seal-controller", "seal-controller"),
                    ("seal-agent", "seal-agent"),
                ] {
                    workspace_binary(package, binary)?;
                }
                let binaries = workspace_binary("seal-cli", "seal")?
                    .parent()
                    .context("the binaries' directory")?
                    .to_owned();
                let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
                let output = Command::new(cargo)
                    .args(["run", "--quiet", "--locked", "-p", "xtask", "--", "image"])
                    .arg("--binaries")
                    .arg(&binaries)
                    .arg("--import")
                    .current_dir(root())
                    .envs(env.vars())
                    .output()?;
                ok(&output, "cargo xtask image --import").map(drop)
            };
            build().map_err(|e| format!("{e:#}"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// A namespace of the test that enforces Pod Security `restricted`.
pub(crate) async fn restricted(env: &TestEnv, prefix: &str) -> Result<seal_testenv::TestNamespace> {
    let namespace = env.namespace(prefix).await?;
    let api: kube::Api<Namespace> = kube::Api::all(env.kube_client().await?);
    api.patch(
        namespace.name(),
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
        }}})),
    )
    .await?;
    Ok(namespace)
}

#[tokio::test]
async fn the_controller_chart_runs_in_pods_under_restricted_pod_security() -> Result<()> {
    let helm = helm!();
    let env = testenv!();
    install_crds(env).await?;
    seal_image(env)?;
    let keys = restricted(env, "pods-keys").await?;
    let app = restricted(env, "pods-app").await?;
    let kubeconfig = path_str(env.kubeconfig())?.to_owned();
    let (release, _installed) = install_controller(env, helm, keys.name(), app.name(), json!({}))?;

    // Two unsealer and two syncer pods, Ready, each role under its own ServiceAccount.
    let pods = keys.api::<Pod>().list(&ListParams::default()).await?;
    let running: Vec<&Pod> = pods
        .items
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .collect();
    assert_eq!(running.len(), 4, "{:?}", names(&pods.items));
    for pod in &running {
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        assert!(ready, "{} is not Ready", name(pod));
    }
    let accounts: BTreeSet<String> = running
        .iter()
        .filter_map(|p| p.spec.as_ref()?.service_account_name.clone())
        .collect();
    assert_eq!(
        accounts.len(),
        2,
        "one ServiceAccount per role: {accounts:?}"
    );

    // Each role elected one leader among its own two pods.
    let pod_names: BTreeSet<String> = running.iter().map(|p| name(p)).collect();
    let leases = keys.api::<Lease>().list(&ListParams::default()).await?;
    let holders: Vec<String> = leases
        .items
        .iter()
        .filter_map(|l| l.spec.as_ref()?.holder_identity.clone())
        .collect();
    assert_eq!(holders.len(), 2, "{holders:?}");
    for holder in &holders {
        assert!(
            pod_names.contains(holder),
            "{holder} is not one of {pod_names:?}"
        );
    }

    // helm test: the certificate API answers through the Service, from a pod, by DNS name.
    helm.run(&[
        "test",
        &release,
        "--namespace",
        keys.name(),
        "--kubeconfig",
        &kubeconfig,
        "--timeout",
        "120s",
    ])?;

    // The certificate through the API server's service proxy to the pods: seal and kubeseal.
    let seal = workspace_binary("seal-cli", "seal")?;
    let fetched = ok(
        &Command::new(&seal)
            .args(["cert", "fetch", "--controller-namespace", keys.name()])
            .args(["--controller-name", &release, "--controller-port", "http"])
            .env("KUBECONFIG", &kubeconfig)
            .output()?,
        "seal cert fetch",
    )?;
    assert!(
        fetched.starts_with("-----BEGIN CERTIFICATE-----"),
        "{fetched}"
    );
    if let Some(kubeseal) = std::env::var_os("SEAL_KUBESEAL") {
        let theirs = ok(
            &Command::new(&kubeseal)
                .args(["--fetch-cert", "--controller-namespace", keys.name()])
                .args(["--controller-name", &release])
                .env("KUBECONFIG", &kubeconfig)
                .output()?,
            "kubeseal --fetch-cert",
        )?;
        assert_eq!(
            theirs.trim(),
            fetched.trim(),
            "kubeseal gets the same certificate"
        );
        kubeseal_validates_and_re_encrypts(
            env,
            std::path::Path::new(&kubeseal),
            keys.name(),
            &release,
            app.name(),
        )?;
    } else if crate::required() {
        bail!("kubeseal is required here (SEAL_KUBESEAL)");
    }

    // seal --controller seals; the controller in its pod unseals into the app's namespace.
    let marker = format!("marker-{}", unique_name("plain"));
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: creds, namespace: {}}}\nstringData: {{token: {marker}}}\n",
        app.name()
    );
    let sealed = piped(
        env,
        &seal,
        &[
            "--controller",
            "--controller-namespace",
            keys.name(),
            "--controller-name",
            &release,
            "--controller-port",
            "http",
            "--format",
            "yaml",
        ],
        &secret,
        "seal --controller",
    )?;
    assert!(!sealed.contains(&marker));
    kubectl_apply(env, &sealed, "kubectl apply")?;
    let secrets = app.api::<Secret>();
    let unsealed = eventually("the pod unseals", Duration::from_secs(90), || {
        let secrets = secrets.clone();
        async move { Ok(secrets.get_opt("creds").await?) }
    })
    .await?;
    let value = unsealed
        .data
        .as_ref()
        .and_then(|d| d.get("token"))
        .context("the Secret has no token")?;
    assert!(value.0 == marker.as_bytes(), "the unsealed value differs");

    // The plaintext is in no pod's log.
    assert_marker_nowhere(env, &[keys.name(), app.name()], &marker).await?;
    Ok(())
}

/// kubeseal v0.40.0's other controller modes, unchanged, through the API server's service proxy
/// to the controller's pods: a SealedSecret kubeseal sealed (Bitnami's format) validates, one with
/// an altered item does not, and `--re-encrypt` gives new ciphertext that validates.
fn kubeseal_validates_and_re_encrypts(
    env: &TestEnv,
    kubeseal: &std::path::Path,
    controller_namespace: &str,
    controller_name: &str,
    namespace: &str,
) -> Result<()> {
    let controller = [
        "--controller-namespace",
        controller_namespace,
        "--controller-name",
        controller_name,
    ];
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: kubeseal-made, namespace: {namespace}}}\nstringData: {{token: {}}}\n",
        unique_name("value")
    );
    let sealed = piped(
        env,
        kubeseal,
        &[&controller[..], &["-o", "json"]].concat(),
        &secret,
        "kubeseal (sealing with the controller's certificate)",
    )?;
    let validate = [&controller[..], &["--validate"]].concat();
    piped(env, kubeseal, &validate, &sealed, "kubeseal --validate")?;

    // One character of the item changed: the controller cannot open it, and kubeseal says so.
    let mut altered: serde_json::Value = serde_json::from_str(&sealed)?;
    let item = altered["spec"]["encryptedData"]["token"]
        .as_str()
        .context("kubeseal wrote no encryptedData.token")?
        .to_owned();
    let flipped = if item.ends_with('A') { 'B' } else { 'A' };
    altered["spec"]["encryptedData"]["token"] =
        format!("{}{flipped}", &item[..item.len() - 1]).into();
    assert!(
        piped(
            env,
            kubeseal,
            &validate,
            &altered.to_string(),
            "kubeseal --validate"
        )
        .is_err(),
        "kubeseal --validate accepted an altered item"
    );

    let re_encrypted = piped(
        env,
        kubeseal,
        &[&controller[..], &["--re-encrypt", "-o", "json"]].concat(),
        &sealed,
        "kubeseal --re-encrypt",
    )?;
    let re_encrypted_value: serde_json::Value = serde_json::from_str(&re_encrypted)?;
    assert_eq!(re_encrypted_value["apiVersion"], "bitnami.com/v1alpha1");
    let new_item = re_encrypted_value["spec"]["encryptedData"]["token"]
        .as_str()
        .context("kubeseal --re-encrypt wrote no encryptedData.token")?;
    assert_ne!(new_item, item, "--re-encrypt returned the same ciphertext");
    piped(
        env,
        kubeseal,
        &validate,
        &re_encrypted,
        "kubeseal --validate (re-encrypted)",
    )?;
    Ok(())
}

/// `helm install --wait` of the controller chart with the project's image into `keys`, unsealing
/// in `app` only (other tests' namespaces are not its business), with `extra` values on top.
/// Returns the release, which is also its Service's name, and the guard that uninstalls it.
pub(crate) fn install_controller<'a>(
    env: &TestEnv,
    helm: &'a crate::Helm,
    keys: &str,
    app: &str,
    extra: serde_json::Value,
) -> Result<(String, Installed<'a>)> {
    // Containing the chart's name, the release is the full name of its objects (the Service).
    let release = unique_name("seal-controller");
    let mut values = json!({
        "image": {"repository": IMAGE_REPOSITORY, "tag": IMAGE_TAG, "pullPolicy": "Never"},
        "namespaces": [app],
        "keys": {"size": 2048},
    });
    merge(&mut values, extra);
    let installed = install_chart(env, helm, "seal-controller", &release, keys, &values, true)?;
    Ok((release, installed))
}

/// Values that run a chart's app as the project's workload image with small resources, with
/// `values` on top.
pub(crate) fn workload(values: serde_json::Value) -> serde_json::Value {
    let mut base = json!({
        "image": {"repository": WORKLOAD_REPOSITORY, "tag": IMAGE_TAG, "pullPolicy": "Never"},
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
    });
    merge(&mut base, values);
    base
}

/// `patch` merged into `base` (objects key by key, anything else replaced).
pub(crate) fn merge(base: &mut serde_json::Value, patch: serde_json::Value) {
    match (base, patch) {
        (serde_json::Value::Object(base), serde_json::Value::Object(patch)) => {
            for (key, value) in patch {
                merge(base.entry(key).or_insert(serde_json::Value::Null), value);
            }
        }
        (base, patch) => *base = patch,
    }
}

/// Runs `program` with `args` and the test environment's admin kubeconfig, `input` on its stdin:
/// its stdout, or an error naming `what` with its stderr.
fn piped(
    env: &TestEnv,
    program: &std::path::Path,
    args: &[&str],
    input: &str,
    what: &str,
) -> Result<String> {
    use std::io::Write as _;
    let mut child = Command::new(program)
        .args(args)
        .env("KUBECONFIG", env.kubeconfig())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(input.as_bytes())?;
    ok(&child.wait_with_output()?, what)
}

/// `kubectl apply --server-side -f -` of `manifest`.
fn kubectl_apply(env: &TestEnv, manifest: &str, what: &str) -> Result<()> {
    let kubectl = std::path::Path::new(env.var("SEAL_TESTENV_KUBECTL"));
    piped(
        env,
        kubectl,
        &["apply", "--server-side", "-f", "-"],
        manifest,
        what,
    )
    .map(drop)
}

/// `helm install` of the chart `deploy/charts/<chart>` as `release` in `namespace` with
/// `values` (and `--wait` when asked); the guard uninstalls it.
pub(crate) fn install_chart<'a>(
    env: &TestEnv,
    helm: &'a crate::Helm,
    chart: &str,
    release: &str,
    namespace: &str,
    values: &serde_json::Value,
    wait: bool,
) -> Result<Installed<'a>> {
    let kubeconfig = path_str(env.kubeconfig())?.to_owned();
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), values.to_string())?;
    let chart = root().join("deploy/charts").join(chart);
    let mut args = vec![
        "install",
        release,
        path_str(&chart)?,
        "--namespace",
        namespace,
        "--kubeconfig",
        &kubeconfig,
        "--values",
        path_str(file.path())?,
    ];
    if wait {
        args.extend(["--wait", "--timeout", "180s"]);
    }
    helm.run(&args)?;
    Ok(Installed {
        helm,
        release: release.to_owned(),
        namespace: namespace.to_owned(),
        kubeconfig,
    })
}

/// The controller's certificate through the API server's service proxy, written to `path`.
pub(crate) fn fetch_cert(
    env: &TestEnv,
    namespace: &str,
    release: &str,
    path: &std::path::Path,
) -> Result<()> {
    let seal = workspace_binary("seal-cli", "seal")?;
    ok(
        &Command::new(&seal)
            .args(["cert", "fetch", "--controller-namespace", namespace])
            .args([
                "--controller-name",
                release,
                "--controller-port",
                "http",
                "-w",
            ])
            .arg(path)
            .env("KUBECONFIG", env.kubeconfig())
            .output()?,
        "seal cert fetch",
    )
    .map(drop)
}

/// Fails when `marker` is anywhere a value must never be, in any of `namespaces`: the log of any
/// container of any pod, any Event, the status of any SealedSecret or ExternalSecret, and what
/// every pod's metrics port (a container port named `*metrics`) serves.
pub(crate) async fn assert_marker_nowhere(
    env: &TestEnv,
    namespaces: &[&str],
    marker: &str,
) -> Result<()> {
    use k8s_openapi::api::core::v1::Event;
    // The seal kinds are listed below, whether or not this test used them.
    install_crds(env).await?;
    let client = env.kube_client().await?;
    for &namespace in namespaces {
        let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), namespace);
        for pod in pods.list(&ListParams::default()).await?.items {
            let spec = pod.spec.as_ref().context("spec")?;
            let containers: Vec<_> = spec
                .init_containers
                .iter()
                .flatten()
                .chain(&spec.containers)
                .collect();
            for container in &containers {
                let params = LogParams {
                    container: Some(container.name.clone()),
                    ..LogParams::default()
                };
                let log = pods.logs(&name(&pod), &params).await.unwrap_or_default();
                assert!(
                    !log.contains(marker),
                    "{namespace}/{}/{} logged a value",
                    name(&pod),
                    container.name
                );
            }
            let metrics_ports = containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .filter(|p| p.name.as_deref().is_some_and(|n| n.ends_with("metrics")));
            for port in metrics_ports {
                let request = http::Request::get(format!(
                    "/api/v1/namespaces/{namespace}/pods/{}:{}/proxy/metrics",
                    name(&pod),
                    port.container_port
                ))
                .body(Vec::new())?;
                let metrics = client.request_text(request).await.with_context(|| {
                    format!(
                        "the metrics of {namespace}/{} (port {})",
                        name(&pod),
                        port.container_port
                    )
                })?;
                assert!(
                    !metrics.contains(marker),
                    "{namespace}/{} has a value in its metrics",
                    name(&pod)
                );
            }
        }
        let events: kube::Api<Event> = kube::Api::namespaced(client.clone(), namespace);
        for event in events.list(&ListParams::default()).await?.items {
            assert!(
                !serde_json::to_string(&event)?.contains(marker),
                "an Event in {namespace} carries a value: {:?}",
                event.reason
            );
        }
        let sealed: kube::Api<seal_api::SealedSecret> =
            kube::Api::namespaced(client.clone(), namespace);
        for object in sealed.list(&ListParams::default()).await?.items {
            assert!(
                !serde_json::to_string(&object.status)?.contains(marker),
                "the status of a SealedSecret in {namespace} carries a value"
            );
        }
        let external: kube::Api<seal_api::ExternalSecret> =
            kube::Api::namespaced(client.clone(), namespace);
        for object in external.list(&ListParams::default()).await?.items {
            assert!(
                !serde_json::to_string(&object.status)?.contains(marker),
                "the status of an ExternalSecret in {namespace} carries a value"
            );
        }
    }
    Ok(())
}

pub(crate) fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

fn names(pods: &[Pod]) -> Vec<String> {
    pods.iter().map(name).collect()
}

/// Where the ml-api tests have the chart mount the Secret's keys as files (`secrets.mountPath`).
const CREDENTIALS_DIR: &str = "/etc/ml-api/credentials";

/// The ml-api items, as `seal` would get them from a developer.
const ML_API_ITEMS: [&str; 3] = ["DATABASE_URL", "BROKER_URL", "MODEL_REGISTRY_TOKEN"];

/// SHA-256 of `value`, hex: what the workload reports instead of a value.
pub(crate) fn digest(value: &str) -> String {
    use std::fmt::Write as _;
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value.as_bytes())
        .as_ref()
        .iter()
        .fold(String::new(), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// Seals `items` for Secret `name` in `namespace` with the certificate in `cert`: the
/// SealedSecret's `spec` as `seal` writes it.
pub(crate) fn seal_items(
    seal: &std::path::Path,
    cert: &std::path::Path,
    namespace: &str,
    name: &str,
    items: &[(&str, String)],
) -> Result<serde_json::Value> {
    use std::io::Write as _;
    let mut secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {namespace}}}\nstringData:\n"
    );
    for (key, value) in items {
        use std::fmt::Write as _;
        writeln!(secret, "  {key}: {value}")?;
    }
    let mut child = Command::new(seal)
        .arg("--cert")
        .arg(cert)
        .args(["--format", "json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(secret.as_bytes())?;
    let sealed: serde_json::Value =
        serde_json::from_str(&ok(&child.wait_with_output()?, "seal --cert")?)?;
    Ok(sealed["spec"].clone())
}

/// What the workload pod `pod` reports (through the API server's pod proxy).
pub(crate) async fn workload_report(
    env: &TestEnv,
    namespace: &str,
    pod: &str,
) -> Result<serde_json::Value> {
    let client = env.kube_client().await?;
    let request = http::Request::get(format!(
        "/api/v1/namespaces/{namespace}/pods/{pod}:8080/proxy/report"
    ))
    .body(Vec::new())?;
    let text = client.request_text(request).await?;
    Ok(serde_json::from_str(&text)?)
}

/// The names of the Running, Ready pods of Deployment `app` (by the chart's instance label).
pub(crate) async fn ready_pods(api: &kube::Api<Pod>, instance: &str) -> Result<Vec<String>> {
    let pods = api
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={instance}")))
        .await?;
    Ok(pods
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .map(name)
        .collect())
}

#[tokio::test]
async fn ml_api_gets_its_sealed_credentials_and_rolls_when_they_change() -> Result<()> {
    // One scenario read top to bottom, as a platform team lives it.
    use k8s_openapi::api::apps::v1::Deployment;

    let helm = helm!();
    let env = testenv!();
    install_crds(env).await?;
    seal_image(env)?;
    let keys = restricted(env, "ml-keys").await?;
    let app = restricted(env, "ml-app").await?;
    let (controller, _controller) =
        install_controller(env, helm, keys.name(), app.name(), json!({}))?;

    // The developer's side: the certificate from the pods, the credentials sealed with it.
    let work = tempfile::tempdir()?;
    let seal = workspace_binary("seal-cli", "seal")?;
    let cert = work.path().join("cert.pem");
    fetch_cert(env, keys.name(), &controller, &cert)?;
    let marker = unique_name("m");
    let values = |round: &str| -> Vec<(&str, String)> {
        ML_API_ITEMS
            .iter()
            .map(|item| (*item, format!("{item}-{round}-{marker}")))
            .collect()
    };
    let first = values("one");
    let spec = seal_items(&seal, &cert, app.name(), "ml-api-credentials", &first)?;

    // The chart, installed as a platform team would: the SealedSecret beside the Deployment.
    let release = "ml-api";
    let overrides = workload(json!({
        "replicaCount": 1,
        "autoscaling": {"enabled": false},
        "env": {
            "WORKLOAD_DIGEST_ENV": ML_API_ITEMS.join(","),
            "WORKLOAD_DIGEST_FILES": ML_API_ITEMS.map(|item| format!("{CREDENTIALS_DIR}/{item}")).join(","),
        },
        "secrets": {
            "source": "sealedSecret",
            "mountPath": CREDENTIALS_DIR,
            "sealedSecret": {
                "certificateFingerprint": spec["certificateFingerprint"],
                "encryptedData": spec["encryptedData"],
            },
        },
    }));
    let _ml_api = install_chart(env, helm, "ml-api", release, app.name(), &overrides, true)?;

    // The pod started with the unsealed values in its environment (digests only).
    let pods = app.api::<Pod>();
    let expect = |values: &[(&str, String)]| -> serde_json::Value {
        values
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(digest(v))))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let expect_files = |values: &[(&str, String)]| -> serde_json::Value {
        values
            .iter()
            .map(|(k, v)| (format!("{CREDENTIALS_DIR}/{k}"), json!(digest(v))))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let first_pods = ready_pods(&pods, release).await?;
    assert_eq!(first_pods.len(), 1, "{first_pods:?}");
    let report = workload_report(env, app.name(), &first_pods[0]).await?;
    assert_eq!(report["env"], expect(&first), "the app got other values");
    assert_eq!(
        report["files"],
        expect_files(&first),
        "the app got other files"
    );

    // An unchanged re-apply rolls nothing: the controller looks again, writes nothing.
    let deployments = app.api::<Deployment>();
    let generation = |d: Deployment| d.metadata.generation.unwrap_or_default();
    let before = generation(deployments.get("ml-api").await?);
    let sealed_secrets = app.api::<seal_api::SealedSecret>();
    let secrets = app.api::<Secret>();
    let secret_version = secrets
        .get("ml-api-credentials")
        .await?
        .metadata
        .resource_version;
    // The leader counts every SealedSecret it looks at: once its count moves past the touch, it
    // has looked at the touched object (the only one it manages) and decided.
    let leader = unsealer_leader(&keys.api::<Lease>())
        .await?
        .context("the unsealer has a leader")?;
    let looked_before = unseal_requests(env, keys.name(), &leader).await?;
    sealed_secrets
        .patch(
            "ml-api-credentials",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"test/touched": "1"}}})),
        )
        .await?;
    eventually(
        "the controller looks at the touched object",
        Duration::from_secs(60),
        || {
            let leader = leader.clone();
            let namespace = keys.name().to_owned();
            async move {
                let looked = unseal_requests(env, &namespace, &leader).await?;
                Ok((looked > looked_before).then_some(()))
            }
        },
    )
    .await?;
    assert_eq!(generation(deployments.get("ml-api").await?), before);
    assert_eq!(
        secrets
            .get("ml-api-credentials")
            .await?
            .metadata
            .resource_version,
        secret_version,
        "the Secret was rewritten"
    );

    // A changed value (kubectl apply of the re-sealed object): the controller updates the Secret
    // and restarts the Deployment; the new pod has the new values, the old one is gone.
    let second = values("two");
    let spec = seal_items(&seal, &cert, app.name(), "ml-api-credentials", &second)?;
    sealed_secrets
        .patch(
            "ml-api-credentials",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"encryptedData": spec["encryptedData"]}})),
        )
        .await?;
    let rolled = eventually("the Deployment rolls", Duration::from_secs(180), || {
        let pods = pods.clone();
        let old = first_pods.clone();
        async move {
            let ready = ready_pods(&pods, release).await?;
            let all = pods
                .list(&ListParams::default().labels("app.kubernetes.io/instance=ml-api"))
                .await?;
            let old_gone = all.items.iter().all(|p| !old.contains(&name(p)));
            Ok((old_gone && ready.len() == 1).then(|| ready[0].clone()))
        }
    })
    .await?;
    let report = workload_report(env, app.name(), &rolled).await?;
    assert_eq!(
        report["env"],
        expect(&second),
        "the new pod got other values"
    );
    assert_eq!(
        report["files"],
        expect_files(&second),
        "the new pod got other files"
    );
    assert!(generation(deployments.get("ml-api").await?) > before);

    // A SealedSecret sealed for another cluster (the repository's example certificate): a clear
    // status, the app's Secret left as it was, nothing rolled.
    let rolled_generation = generation(deployments.get("ml-api").await?);
    let secret_version = secrets
        .get("ml-api-credentials")
        .await?
        .metadata
        .resource_version;
    let wrong = seal_items(
        &seal,
        &root().join("keys.example/tls.crt"),
        app.name(),
        "ml-api-credentials",
        &values("three"),
    )?;
    sealed_secrets
        .patch(
            "ml-api-credentials",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {
                "encryptedData": wrong["encryptedData"],
                "certificateFingerprint": wrong["certificateFingerprint"],
            }})),
        )
        .await?;
    let message = eventually("the status says why", Duration::from_secs(60), || {
        let api = sealed_secrets.clone();
        async move {
            let object = api.get("ml-api-credentials").await?;
            Ok(object.status.and_then(|s| {
                s.conditions
                    .into_iter()
                    .find(|c| c.type_ == "Ready" && c.reason == "DecryptionFailed")
                    .map(|c| c.message)
            }))
        }
    })
    .await?;
    assert!(!message.contains(&marker), "{message}");
    assert_eq!(
        secrets
            .get("ml-api-credentials")
            .await?
            .metadata
            .resource_version,
        secret_version,
        "the app's Secret was touched"
    );
    assert_eq!(
        generation(deployments.get("ml-api").await?),
        rolled_generation
    );
    let report = workload_report(env, app.name(), &rolled).await?;
    assert_eq!(report["env"], expect(&second), "the app lost its values");
    assert_eq!(
        report["files"],
        expect_files(&second),
        "the app lost its files"
    );

    // No value in any log of the controller's or the app's pods.
    assert_marker_nowhere(env, &[keys.name(), app.name()], &marker).await?;
    Ok(())
}

/// The file ml-api's agent writes the model-registry token to.
pub(crate) const REGISTRY_TOKEN_FILE: &str = "/secrets/registry-token";

/// `helm install --wait` of ml-api with the seal-agent as `form` (`sidecar` or `native`) in
/// `namespace`: the model-registry token from OpenBao's KV v2 at `path` (field `token`) into
/// [`REGISTRY_TOKEN_FILE`] through Vault's Kubernetes auth with the pod's own token, refreshed
/// every 2 s, the app signalled on change. Returns the guard and the Ready pod's name.
pub(crate) async fn install_ml_api_with_agent<'a>(
    env: &TestEnv,
    helm: &'a crate::Helm,
    namespace: &str,
    form: &str,
    path: &str,
) -> Result<(Installed<'a>, String)> {
    let mount = env.var("SEAL_TESTENV_VAULT_KV2_MOUNT");
    let overrides = workload(json!({
        "replicaCount": 1,
        "autoscaling": {"enabled": false},
        "env": {"WORKLOAD_DIGEST_FILES": REGISTRY_TOKEN_FILE},
        "secrets": {
            "source": "agent",
            "agent": {
                "image": {"repository": IMAGE_REPOSITORY, "tag": IMAGE_TAG, "pullPolicy": "Never"},
                "nativeSidecar": form == "native",
                "config": {
                    "vault": {
                        "address": env.var("SEAL_TESTENV_VAULT_IN_CLUSTER"),
                        "caFile": "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
                        "auth": {"method": "kubernetes", "role": env.var("SEAL_TESTENV_KUBERNETES_ROLE")},
                    },
                    "secrets": {"registry_token": format!("ref+vault://{mount}/data/{path}#/token")},
                    "files": [{"path": REGISTRY_TOKEN_FILE, "secret": "registry_token"}],
                    "refresh": {"interval": "2s"},
                    "onChange": {"signal": "SIGHUP", "processName": "workload"},
                },
            },
        },
    }));
    let release = "ml-api";
    let installed = install_chart(env, helm, "ml-api", release, namespace, &overrides, true)?;
    let pods: kube::Api<Pod> = kube::Api::namespaced(env.kube_client().await?, namespace);
    let ready = ready_pods(&pods, release).await?;
    let [pod] = ready.as_slice() else {
        bail!("one Ready ml-api pod, found {ready:?}");
    };
    Ok((installed, pod.clone()))
}

/// ml-api with the seal-agent sidecar, as `form` (`sidecar` or `native`): the model-registry token
/// from OpenBao through Vault's Kubernetes auth with the pod's own token (OpenBao checks it with a
/// TokenReview), fetched by the init container before the app starts, then refreshed into the
/// memory volume with the app signalled over the shared process namespace.
async fn ml_api_with_the_agent(form: &str) -> Result<()> {
    let helm = helm!();
    let env = testenv!();
    seal_image(env)?;
    let app = restricted(env, &format!("agent-{form}")).await?;
    let vault = env.vault_client(None)?;
    let path = format!("ml/{}/registry", app.name());
    let marker = unique_name("token");
    let token = |round: &str| format!("{round}-{marker}");
    vaultrs::kv2::set(
        &vault,
        env.var("SEAL_TESTENV_VAULT_KV2_MOUNT"),
        &path,
        &std::collections::HashMap::from([("token", token("one"))]),
    )
    .await?;

    let (_ml_api, ready) = install_ml_api_with_agent(env, helm, app.name(), form, &path).await?;
    let pod = app.api::<Pod>().get(&ready).await?;
    let spec = pod.spec.as_ref().context("spec")?;
    let init: Vec<(String, Option<String>)> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| (c.name.clone(), c.restart_policy.clone()))
        .collect();
    let containers: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    if form == "native" {
        assert_eq!(
            init,
            [
                ("seal-agent-init".to_owned(), None),
                ("seal-agent".to_owned(), Some("Always".to_owned()))
            ]
        );
        assert_eq!(containers, ["ml-api"]);
    } else {
        assert_eq!(init, [("seal-agent-init".to_owned(), None)]);
        assert_eq!(containers, ["ml-api", "seal-agent"]);
    }

    // The file was there when the app started: the first report already has it.
    let report = workload_report(env, app.name(), &ready).await?;
    assert_eq!(
        report["files"][REGISTRY_TOKEN_FILE],
        json!(digest(&token("one")))
    );
    // A new value in OpenBao: the agent rewrites the file and signals the app.
    vaultrs::kv2::set(
        &vault,
        env.var("SEAL_TESTENV_VAULT_KV2_MOUNT"),
        &path,
        &std::collections::HashMap::from([("token", token("two"))]),
    )
    .await?;
    let expected = json!(digest(&token("two")));
    let report = eventually(
        "the agent refreshes the file",
        Duration::from_secs(60),
        || {
            let pod = ready.clone();
            let expected = expected.clone();
            let namespace = app.name().to_owned();
            async move {
                let report = workload_report(env, &namespace, &pod).await?;
                Ok((report["files"][REGISTRY_TOKEN_FILE] == expected).then_some(report))
            }
        },
    )
    .await?;
    assert!(
        report["reloads"].as_i64().unwrap_or(0) >= 1,
        "the app was not signalled: {report}"
    );
    assert_marker_nowhere(env, &[app.name()], &marker).await?;
    Ok(())
}

#[tokio::test]
async fn ml_api_gets_its_token_from_openbao_through_the_agent_sidecar() -> Result<()> {
    ml_api_with_the_agent("sidecar").await
}

#[tokio::test]
async fn ml_api_gets_its_token_from_openbao_through_the_native_sidecar() -> Result<()> {
    ml_api_with_the_agent("native").await
}

/// ml-batch's CronJob with the agent as a native sidecar: a Job made from it fetches the token
/// (init container), runs the worker once beside the refreshing agent, and completes when the
/// worker exits (the native sidecar is stopped after it, so it never keeps the Job running).
#[tokio::test]
async fn an_ml_batch_job_with_the_native_sidecar_completes() -> Result<()> {
    use k8s_openapi::api::batch::v1::Job;

    let helm = helm!();
    let env = testenv!();
    seal_image(env)?;
    let app = restricted(env, "batch-job").await?;
    let kubeconfig = path_str(env.kubeconfig())?.to_owned();
    let vault = env.vault_client(None)?;
    let mount = env.var("SEAL_TESTENV_VAULT_KV2_MOUNT");
    let path = format!("ml/{}/broker", app.name());
    let marker = unique_name("url");
    vaultrs::kv2::set(
        &vault,
        mount,
        &path,
        &std::collections::HashMap::from([("url", marker.clone())]),
    )
    .await?;
    let overrides = workload(json!({
        "worker": {"enabled": false},
        "cronJob": {"enabled": true, "schedule": "0 0 1 1 *", "args": ["report"]},
        "env": {"WORKLOAD_DIGEST_FILES": "/secrets/broker-url"},
        "secrets": {
            "source": "agent",
            "agent": {
                "image": {"repository": IMAGE_REPOSITORY, "tag": IMAGE_TAG, "pullPolicy": "Never"},
                "nativeSidecar": true,
                "config": {
                    "vault": {
                        "address": env.var("SEAL_TESTENV_VAULT_IN_CLUSTER"),
                        "caFile": "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
                        "auth": {"method": "kubernetes", "role": env.var("SEAL_TESTENV_KUBERNETES_ROLE")},
                    },
                    "secrets": {"broker_url": format!("ref+vault://{mount}/data/{path}#/url")},
                    "files": [{"path": "/secrets/broker-url", "secret": "broker_url"}],
                    "refresh": {"interval": "5s"},
                },
            },
        },
    }));
    let release = "ml-batch";
    let _ml_batch = install_chart(
        env,
        helm,
        "ml-batch",
        release,
        app.name(),
        &overrides,
        false,
    )?;
    ok(
        &Command::new(env.var("SEAL_TESTENV_KUBECTL"))
            .args([
                "create",
                "job",
                "run-once",
                "--from=cronjob/ml-batch",
                "-n",
                app.name(),
            ])
            .env("KUBECONFIG", &kubeconfig)
            .output()?,
        "kubectl create job --from=cronjob/ml-batch",
    )?;
    let jobs = app.api::<Job>();
    eventually("the Job completes", Duration::from_secs(120), || {
        let jobs = jobs.clone();
        async move {
            let job = jobs.get("run-once").await?;
            let conditions = job.status.and_then(|s| s.conditions).unwrap_or_default();
            if let Some(failed) = conditions
                .iter()
                .find(|c| c.type_ == "Failed" && c.status == "True")
            {
                bail!("the Job failed: {:?}", failed.message);
            }
            Ok(conditions
                .iter()
                .any(|c| c.type_ == "Complete" && c.status == "True")
                .then_some(()))
        }
    })
    .await?;

    // The worker read the file the init container wrote (its report: a digest, not the value).
    let pods = app.api::<Pod>();
    let pod = pods
        .list(&ListParams::default().labels("job-name=run-once"))
        .await?
        .items
        .into_iter()
        .next()
        .context("the Job's pod")?;
    let log = pods
        .logs(
            &name(&pod),
            &LogParams {
                container: Some("ml-batch".to_owned()),
                ..LogParams::default()
            },
        )
        .await?;
    let report: serde_json::Value = serde_json::from_str(log.trim())?;
    assert_eq!(
        report["files"]["/secrets/broker-url"],
        json!(digest(&marker))
    );
    assert!(!log.contains(&marker));
    Ok(())
}

/// ml-batch's credentials from AWS Secrets Manager (moto, over TLS at its in-cluster Service)
/// through an ExternalSecret the syncer in its pod syncs; the worker starts with them in its
/// environment. The syncer trusts the cluster's CA through `syncer.caBundle` (the chart mounts
/// `kube-root-ca.crt`).
#[tokio::test]
async fn ml_batch_gets_its_credentials_from_moto_through_the_syncer_pod() -> Result<()> {
    let helm = helm!();
    let env = testenv!();
    install_crds(env).await?;
    seal_image(env)?;
    let keys = restricted(env, "batch-keys").await?;
    let app = restricted(env, "batch-app").await?;
    let (_, _controller) = install_controller(
        env,
        helm,
        keys.name(),
        app.name(),
        json!({
            "replicaCount": 1,
            "syncer": {"replicaCount": 1, "caBundle": {"configMap": "kube-root-ca.crt"}},
        }),
    )?;

    // The provider's side: two secrets in moto.
    let marker = unique_name("v");
    let aws = env.secretsmanager().await;
    let db = format!("{}/db", app.name());
    let broker = format!("{}/broker", app.name());
    for (name, value) in [
        (&db, format!("db-{marker}")),
        (&broker, format!("amqp-{marker}")),
    ] {
        aws.create_secret()
            .name(name)
            .secret_string(json!({"url": value}).to_string())
            .send()
            .await?;
    }
    // The namespace's own credentials and store (a namespaced store never uses the syncer's).
    let manifest = format!(
        "apiVersion: v1
kind: Secret
metadata: {{name: aws-credentials, namespace: {ns}}}
stringData: {{id: testing, key: testing}}
---
apiVersion: seal.dev/v1alpha1
kind: SecretStore
metadata: {{name: aws-ml, namespace: {ns}}}
spec:
  provider:
    aws:
      service: SecretsManager
      region: {region}
      endpointURL: {endpoint}
      auth:
        secretRef:
          accessKeyIDSecretRef: {{name: aws-credentials, key: id}}
          secretAccessKeySecretRef: {{name: aws-credentials, key: key}}
",
        ns = app.name(),
        region = env.var("AWS_REGION"),
        endpoint = env.var("SEAL_TESTENV_AWS_IN_CLUSTER"),
    );
    kubectl_apply(env, &manifest, "kubectl apply (store)")?;

    let overrides = workload(json!({
        "worker": {"enabled": true, "replicaCount": 1, "args": ["serve"]},
        "env": {"WORKLOAD_DIGEST_ENV": "DATABASE_URL,BROKER_URL"},
        "secrets": {
            "source": "externalSecret",
            "externalSecret": {
                "refreshInterval": "1h",
                "secretStoreRef": {"name": "aws-ml", "kind": "SecretStore"},
                "data": [
                    {"secretKey": "DATABASE_URL", "remoteRef": {"key": db, "property": "url"}},
                    {"secretKey": "BROKER_URL", "remoteRef": {"key": broker, "property": "url"}},
                ],
            },
        },
    }));
    let _ml_batch = install_chart(
        env,
        helm,
        "ml-batch",
        "ml-batch",
        app.name(),
        &overrides,
        false,
    )?;

    // The worker waits for its Secret (envFrom), then starts with the values.
    let pods = app.api::<Pod>();
    let worker = eventually("the worker is Ready", Duration::from_secs(120), || {
        let pods = pods.clone();
        async move { Ok(ready_pods(&pods, "ml-batch").await?.into_iter().next()) }
    })
    .await?;
    let report = workload_report(env, app.name(), &worker).await?;
    assert_eq!(
        report["env"],
        json!({
            "DATABASE_URL": digest(&format!("db-{marker}")),
            "BROKER_URL": digest(&format!("amqp-{marker}")),
        })
    );
    assert_marker_nowhere(env, &[keys.name(), app.name()], &marker).await?;
    Ok(())
}

/// The leader's pod deleted while it unseals 500 SealedSecrets: the other replica takes the Lease
/// and finishes; every Secret exists with its value, and none was written twice (a watch started
/// before the bulk sees each Secret added once and never modified).
#[tokio::test]
async fn the_other_replica_finishes_a_bulk_when_the_leader_pod_is_deleted() -> Result<()> {
    use futures::StreamExt as _;
    use kube::runtime::watcher;

    const COUNT: usize = 500;
    let helm = helm!();
    let env = testenv!();
    install_crds(env).await?;
    seal_image(env)?;
    let keys = restricted(env, "bulk-keys").await?;
    let app = restricted(env, "bulk-app").await?;
    let (release, _controller) = install_controller(env, helm, keys.name(), app.name(), json!({}))?;

    let work = tempfile::tempdir()?;
    let seal = workspace_binary("seal-cli", "seal")?;
    let cert = work.path().join("cert.pem");
    fetch_cert(env, keys.name(), &release, &cert)?;
    let marker = unique_name("bulk");
    let mut secrets_yaml = String::new();
    for i in 0..COUNT {
        use std::fmt::Write as _;
        writeln!(
            secrets_yaml,
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: s{i}, namespace: {}}}\nstringData: {{v: {marker}-{i}}}",
            app.name()
        )?;
    }
    let input = work.path().join("secrets.yaml");
    std::fs::write(&input, secrets_yaml)?;
    let sealed = work.path().join("sealed.yaml");
    let output = Command::new(&seal)
        .arg("--cert")
        .arg(&cert)
        .arg(&input)
        .output()?;
    std::fs::write(&sealed, ok(&output, "seal (500 Secrets)")?)?;

    // Every Secret event of the app's namespace from now on.
    let secrets = app.api::<Secret>();
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, bool)>::new()));
    let recorder = {
        let events = events.clone();
        let stream = watcher::watcher(secrets.clone(), watcher::Config::default());
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            let mut seen = BTreeSet::new();
            while let Some(Ok(event)) = stream.next().await {
                if let watcher::Event::Apply(secret) = event {
                    let name = secret.metadata.name.clone().unwrap_or_default();
                    let again = !seen.insert(name.clone());
                    events
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push((name, again));
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The bulk arrives while the leader works through it: a controller that keeps pace with
    // kubectl would otherwise be done before its pod could go.
    let manifest = std::fs::read_to_string(&sealed)?;
    let applying = tokio::task::spawn_blocking(move || {
        kubectl_apply(env, &manifest, "kubectl apply (500 SealedSecrets)")
    });

    // Once the leader is under way, its pod goes.
    let leases = keys.api::<Lease>();
    let leader = unsealer_leader(&leases).await?.context("no leader")?;
    eventually("the leader is under way", Duration::from_secs(120), || {
        let events = events.clone();
        async move {
            let n = events
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .len();
            Ok((n >= 20).then_some(()))
        }
    })
    .await?;
    keys.api::<Pod>()
        .delete(&leader, &kube::api::DeleteParams::default())
        .await?;
    let at_deletion = events
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .len();
    assert!(
        at_deletion < COUNT,
        "the leader had finished before its pod was deleted"
    );
    eprintln!("the leader's pod deleted after {at_deletion} of {COUNT} Secrets");
    applying.await??;

    // The other replica (or the leader's replacement) finishes.
    let all = eventually("every Secret exists", Duration::from_secs(300), || {
        let secrets = secrets.clone();
        async move {
            let list = secrets.list(&ListParams::default()).await?;
            Ok((list.items.len() >= COUNT).then_some(list.items))
        }
    })
    .await?;
    for secret in &all {
        let name = secret.metadata.name.clone().unwrap_or_default();
        let i = name.trim_start_matches('s');
        let value = secret
            .data
            .as_ref()
            .and_then(|d| d.get("v"))
            .with_context(|| format!("{name} has no value"))?;
        assert!(
            value.0 == format!("{marker}-{i}").as_bytes(),
            "{name} holds another value"
        );
    }
    // Another pod holds the Lease.
    eventually("another pod leads", Duration::from_secs(60), || {
        let leases = leases.clone();
        let leader = leader.clone();
        async move {
            Ok(unsealer_leader(&leases)
                .await?
                .filter(|holder| *holder != leader))
        }
    })
    .await?;
    // Let a late duplicate write show up before judging.
    tokio::time::sleep(Duration::from_secs(3)).await;
    recorder.abort();
    let events = events
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let twice: Vec<&String> = events
        .iter()
        .filter(|(_, again)| *again)
        .map(|(n, _)| n)
        .collect();
    assert!(twice.is_empty(), "written more than once: {twice:?}");
    Ok(())
}

/// The unsealer's leader: the holder of the Lease that is not the syncer's.
/// `seal_controller_unseal_requests_total` of the controller pod `pod` (its metrics port,
/// through the API server's pod proxy): how many SealedSecrets it has reconciled.
async fn unseal_requests(env: &TestEnv, namespace: &str, pod: &str) -> Result<u64> {
    let client = env.kube_client().await?;
    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), namespace);
    let port = pods
        .get(pod)
        .await?
        .spec
        .context("spec")?
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some("metrics"))
        .context("a metrics port")?
        .container_port;
    let request = http::Request::get(format!(
        "/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy/metrics"
    ))
    .body(Vec::new())?;
    let metrics = client.request_text(request).await?;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("seal_controller_unseal_requests_total "))
        .context("seal_controller_unseal_requests_total")?
        .trim()
        .parse()
        .context("a count")
}

async fn unsealer_leader(leases: &kube::Api<Lease>) -> Result<Option<String>> {
    Ok(leases
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .find(|l| {
            !l.metadata
                .name
                .as_deref()
                .unwrap_or("")
                .ends_with("-syncer")
        })
        .and_then(|l| l.spec?.holder_identity))
}
