//! The charts against the test API server: every environment's rendered objects accepted by a
//! server-side dry-run, and the controller chart installed with `helm install`, after which the
//! controller binary runs out of cluster as the chart's ServiceAccount (an impersonating
//! kubeconfig) with the chart's own arguments: it unseals and syncs, and what it must not do is
//! refused.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::discovery::{Scope, pinned_kind};
use kube::{Api, Client};
use seal_api::SealedSecret;
use seal_testenv::{TestEnv, eventually, testenv, unique_name};
use serde_json::{Value, json};

use crate::{ENVIRONMENTS, documents, of_kind, ok, path_str, releases, root};

pub(crate) const LIMIT: Duration = Duration::from_secs(60);

/// The seal.dev CRDs (as the chart carries them) and the fixtures standing in for KEDA's and the
/// Prometheus Operator's CRDs (group, kind and version as theirs, open schema).
pub(crate) async fn install_crds(env: &TestEnv) -> Result<()> {
    let mut files: Vec<_> = std::fs::read_dir(root().join("deploy/charts/seal-controller/crds"))?
        .map(|e| Ok(e?.path()))
        .collect::<Result<_>>()?;
    files.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/deploy/fixtures/crds.yaml"));
    for file in files {
        for document in documents(&std::fs::read_to_string(&file)?)? {
            let crd: CustomResourceDefinition = serde_json::from_value(document)?;
            env.apply_crd(&crd).await?;
        }
    }
    Ok(())
}

/// The API of `object`'s kind, in its namespace when it is namespaced.
pub(crate) async fn api_for(client: &Client, object: &Value) -> Result<Api<DynamicObject>> {
    let api_version = object["apiVersion"].as_str().context("apiVersion")?;
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let kind = object["kind"].as_str().context("kind")?;
    let (resource, capabilities) =
        pinned_kind(client, &GroupVersionKind::gvk(group, version, kind)).await?;
    Ok(if capabilities.scope == Scope::Namespaced {
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .context("a namespaced object without a namespace")?;
        Api::namespaced_with(client.clone(), namespace, &resource)
    } else {
        Api::all_with(client.clone(), &resource)
    })
}

#[tokio::test]
async fn every_rendered_object_of_every_environment_passes_server_side_dry_run() -> Result<()> {
    let helm = helm!();
    let env = testenv!();
    let _namespaces = crate::FIXED_NAMESPACES.lock().await;
    install_crds(env).await?;
    let client = env.kube_client().await?;
    // The helmfiles' namespaces (a dry-run needs them to exist; nothing is written into them).
    for namespace in ["seal-system", "ml"] {
        let object: Namespace = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}
        }))?;
        Api::<Namespace>::all(client.clone())
            .patch(
                namespace,
                &PatchParams::apply("seal-deploy-test"),
                &Patch::Apply(&object),
            )
            .await?;
    }
    let dry_run = PatchParams::apply("seal-deploy-test").force().dry_run();
    let mut errors = Vec::new();
    let mut applied = 0;
    for environment in ENVIRONMENTS {
        for release in releases(environment)? {
            let objects = helm.template(
                &release.name,
                &release.chart,
                &release.namespace,
                &release.values,
                &[],
            )?;
            for object in objects {
                let name = object["metadata"]["name"]
                    .as_str()
                    .context("name")?
                    .to_owned();
                let what = format!("{environment} {} {} {name}", release.name, object["kind"]);
                let result = async {
                    let api = api_for(&client, &object).await?;
                    let object: DynamicObject = serde_json::from_value(object)?;
                    api.patch(&name, &dry_run, &Patch::Apply(&object)).await?;
                    anyhow::Ok(())
                }
                .await;
                match result {
                    Ok(()) => applied += 1,
                    Err(e) => errors.push(format!("{what}: {e:#}")),
                }
            }
        }
    }
    assert!(
        errors.is_empty(),
        "refused by the API server:\n{}",
        errors.join("\n")
    );
    assert!(applied > 40, "only {applied} objects applied");
    Ok(())
}

/// The controller binary, killed when dropped.
pub(crate) struct Controller {
    child: Child,
    log: tempfile::NamedTempFile,
}

impl Controller {
    /// Starts the binary with `args` and the environment the chart's Deployment gives it; returns
    /// once it serves the certificate API (or a syncer its probes), with that address.
    pub(crate) async fn start(
        args: &[String],
        kubeconfig: &Path,
        namespace: &str,
    ) -> Result<(Self, String)> {
        let log = tempfile::NamedTempFile::new()?;
        let controller = Self {
            child: Command::new(env!("CARGO_BIN_EXE_seal-controller"))
                .args(args)
                .env("KUBECONFIG", kubeconfig)
                .env("POD_NAMESPACE", namespace)
                .env("POD_NAME", format!("{namespace}-0"))
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log.reopen()?)
                .spawn()?,
            log,
        };
        let mut controller = controller;
        let api = eventually("the controller listens", LIMIT, || {
            let log = controller.log();
            let exited = controller.child.try_wait().ok().flatten();
            async move {
                if let Some(status) = exited {
                    bail!("the controller exited ({status}):\n{log}");
                }
                // An unsealer serves the certificate API, a syncer only its probes.
                Ok(address(&log, "serving the certificate API")
                    .or_else(|| address(&log, "serving the probes")))
            }
        })
        .await?;
        Ok((controller, api))
    }

    /// Everything it logged so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

/// The PEM certificate the controller at `api` serves, once it has a key.
pub(crate) async fn served_certificate(api: &str) -> Result<String> {
    eventually("the certificate is served", LIMIT, || {
        let url = format!("http://{api}/v1/cert.pem");
        async move {
            let (code, body) = http_get(&url)?;
            Ok((code == 200).then_some(body))
        }
    })
    .await
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `address=HOST:PORT` on the log line carrying `message`.
fn address(log: &str, message: &str) -> Option<String> {
    let line = log.lines().find(|line| line.contains(message))?;
    let rest = &line[line.find("address=")? + "address=".len()..];
    Some(rest.split_whitespace().next()?.to_owned())
}

fn forbidden<T>(result: Result<T, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(status)) if status.code == 403)
}

fn http_get(url: &str) -> Result<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut response = agent.get(url).call()?;
    Ok((
        response.status().as_u16(),
        response.body_mut().read_to_string()?,
    ))
}

/// Uninstalls the release when dropped (its ClusterRoles and bindings outlive the namespaces).
pub(crate) struct Installed<'a> {
    pub(crate) helm: &'a crate::Helm,
    pub(crate) release: String,
    pub(crate) namespace: String,
    pub(crate) kubeconfig: String,
}

impl Drop for Installed<'_> {
    fn drop(&mut self) {
        let _ = self.helm.run(&[
            "uninstall",
            &self.release,
            "--namespace",
            &self.namespace,
            "--kubeconfig",
            &self.kubeconfig,
        ]);
    }
}

/// Runs the binary as the chart's `deployment` would run it (its arguments, as its ServiceAccount),
/// out of cluster: loopback and random ports, text logs to find the addresses, the backup
/// certificate from `backup_cert`. Returns the process, its address and its ServiceAccount.
async fn start_deployment(
    env: &TestEnv,
    deployment: &Value,
    work: &Path,
    namespace: &str,
    backup_cert: &Path,
) -> Result<(Controller, String, String)> {
    let pod = &deployment["spec"]["template"]["spec"];
    let account = pod["serviceAccountName"]
        .as_str()
        .context("serviceAccountName")?
        .to_owned();
    let kubeconfig = work.join(format!("{account}.kubeconfig"));
    env.service_account_kubeconfig(namespace, &account, &kubeconfig)?;
    let container = &pod["containers"][0];
    assert_eq!(container["command"], json!(["seal-controller"]));
    let mut args = Vec::new();
    for arg in container["args"].as_array().context("args")? {
        let arg = arg.as_str().context("an argument")?;
        args.push(match arg.split_once('=') {
            Some(("--listen-addr" | "--listen-metrics-addr", _)) => {
                format!("{}=127.0.0.1:0", arg.split_once('=').map_or("", |p| p.0))
            }
            Some(("--log-format", _)) => "--log-format=text".to_owned(),
            Some(("--backup-cert", _)) => format!("--backup-cert={}", path_str(backup_cert)?),
            _ => arg.to_owned(),
        });
    }
    let (process, address) = Controller::start(&args, &kubeconfig, namespace).await?;
    Ok((process, address, account))
}

#[tokio::test]
async fn the_installed_controller_chart_is_enough_for_the_controller_and_no_more() -> Result<()> {
    let helm = helm!();
    let env = testenv!();
    install_crds(env).await?;
    let keys = env.namespace("deploy-keys").await?;
    let app = env.namespace("deploy-app").await?;
    let other = env.namespace("deploy-other").await?;
    let work = tempfile::tempdir()?;
    let seal = crate::workspace_binary("seal-cli", "seal")?;
    let recovery = work.path().join("recovery");
    ok(
        &Command::new(&seal)
            .args(["keygen", "--bits", "2048", "--out"])
            .arg(&recovery)
            .output()?,
        "seal keygen",
    )?;

    // helm install, as deploy/README.md says, for one namespace.
    let release = unique_name("seal-controller");
    let kubeconfig = path_str(env.kubeconfig())?.to_owned();
    let chart = root().join("deploy/charts/seal-controller");
    let notes = helm.run(&[
        "install",
        &release,
        path_str(&chart)?,
        "--namespace",
        keys.name(),
        "--kubeconfig",
        &kubeconfig,
        "--set",
        &format!("namespaces={{{}}}", app.name()),
        "--set",
        "keys.size=2048",
        "--set-file",
        &format!(
            "keys.backupCertificate={}",
            path_str(&recovery.join("tls.crt"))?
        ),
    ])?;
    let _installed = Installed {
        helm,
        release: release.clone(),
        namespace: keys.name().to_owned(),
        kubeconfig: kubeconfig.clone(),
    };
    let hooks = documents(&helm.run(&[
        "get",
        "hooks",
        &release,
        "--namespace",
        keys.name(),
        "--kubeconfig",
        &kubeconfig,
    ])?)?;
    let manifest = documents(&helm.run(&[
        "get",
        "manifest",
        &release,
        "--namespace",
        keys.name(),
        "--kubeconfig",
        &kubeconfig,
    ])?)?;

    // NOTES.txt names the Service that exists, its namespace and its port.
    let service = of_kind(&manifest, "Service")
        .into_iter()
        .find(|s| s["spec"]["ports"][0]["name"] == "http")
        .context("the certificate Service")?;
    let command = format!(
        "seal cert fetch --controller-namespace {} --controller-name {} --controller-port http",
        keys.name(),
        service["metadata"]["name"].as_str().context("name")?
    );
    assert!(
        notes.contains(&command),
        "NOTES do not say `{command}`:\n{notes}"
    );

    // Each role's binary with its Deployment's arguments, as its own ServiceAccount.
    let backup_cert = recovery.join("tls.crt");
    let deployment = |name: &str| {
        of_kind(&manifest, "Deployment")
            .into_iter()
            .find(|d| d["metadata"]["name"] == name)
            .with_context(|| format!("the Deployment {name}"))
    };
    let unsealer = deployment(&release)?;
    let syncer = deployment(&format!("{release}-syncer"))?;
    let (controller, api, account) =
        start_deployment(env, unsealer, work.path(), keys.name(), &backup_cert).await?;
    let (syncer, _, syncer_account) =
        start_deployment(env, syncer, work.path(), keys.name(), &backup_cert).await?;
    assert_ne!(account, syncer_account, "the roles share a ServiceAccount");
    for (process, role) in [(&controller, "Unsealer"), (&syncer, "Syncer")] {
        assert!(process.log().contains(&format!("role={role}")), "{role}");
    }
    let certificate = served_certificate(&api).await?;

    // `helm test`: its pod's command, pointed at this controller instead of the Service, fetches
    // the certificate (no kubelet runs the pod itself here).
    let test_pod = of_kind(&hooks, "Pod")
        .into_iter()
        .find(|p| p["metadata"]["annotations"]["helm.sh/hook"] == "test")
        .context("the helm test pod")?;
    let command: Vec<String> = test_pod["spec"]["containers"][0]["command"]
        .as_array()
        .context("command")?
        .iter()
        .map(|a| {
            let arg = a.as_str().unwrap_or_default();
            if arg.starts_with("http://") {
                format!("http://{api}")
            } else {
                arg.to_owned()
            }
        })
        .collect();
    assert_eq!(command[..3], ["seal", "cert", "fetch"], "{command:?}");
    let fetched = ok(
        &Command::new(&seal).args(&command[1..]).output()?,
        "the helm test command",
    )?;
    assert_eq!(fetched.trim(), certificate.trim());
    let cert_file = work.path().join("cert.pem");
    std::fs::write(&cert_file, &certificate)?;

    // Unseal: a Secret sealed with `seal --cert` from the served certificate.
    let plain = work.path().join("secret.yaml");
    std::fs::write(
        &plain,
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: {}\nstringData:\n  password: deploy-chart-value\n",
            app.name()
        ),
    )?;
    let sealed = ok(
        &Command::new(&seal)
            .arg("--cert")
            .arg(&cert_file)
            .arg(&plain)
            .output()?,
        "seal --cert",
    )?;
    let sealed: SealedSecret = serde_yaml::from_str(&sealed)?;
    app.api::<SealedSecret>()
        .create(&PostParams::default(), &sealed)
        .await?;
    let secrets = app.api::<Secret>();
    eventually("the SealedSecret is unsealed", LIMIT, || {
        let secrets = secrets.clone();
        async move {
            let secret = secrets.get_opt("db").await?;
            Ok(secret.filter(|s| {
                s.data
                    .as_ref()
                    .and_then(|d| d.get("password"))
                    .is_some_and(|v| v.0 == b"deploy-chart-value")
            }))
        }
    })
    .await?;

    // Sync: an ExternalSecret from moto through a SecretStore in the managed namespace.
    let remote = unique_name("deploy/db");
    env.secretsmanager()
        .await
        .create_secret()
        .name(&remote)
        .secret_string(r#"{"url":"postgres://deploy-sync-value"}"#)
        .send()
        .await?;
    let admin = env.kube_client().await?;
    let apply = PatchParams::apply("seal-deploy-test");
    for object in [
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "aws-creds", "namespace": app.name()},
            "stringData": {"id": env.var("AWS_ACCESS_KEY_ID"), "key": env.var("AWS_SECRET_ACCESS_KEY")}}),
        json!({"apiVersion": "seal.dev/v1alpha1", "kind": "SecretStore",
            "metadata": {"name": "aws", "namespace": app.name()},
            "spec": {"provider": {"aws": {
                "service": "SecretsManager", "region": env.var("AWS_REGION"),
                "endpointURL": env.var("AWS_ENDPOINT_URL"),
                "auth": {"secretRef": {
                    "accessKeyIDSecretRef": {"name": "aws-creds", "key": "id"},
                    "secretAccessKeySecretRef": {"name": "aws-creds", "key": "key"}}}}}}}),
        json!({"apiVersion": "seal.dev/v1alpha1", "kind": "ExternalSecret",
            "metadata": {"name": "batch", "namespace": app.name()},
            "spec": {"refreshInterval": "1h", "secretStoreRef": {"name": "aws", "kind": "SecretStore"},
                "target": {"name": "batch"},
                "data": [{"secretKey": "DATABASE_URL", "remoteRef": {"key": remote, "property": "url"}}]}}),
    ] {
        let api = api_for(&admin, &object).await?;
        let name = object["metadata"]["name"]
            .as_str()
            .context("name")?
            .to_owned();
        let object: DynamicObject = serde_json::from_value(object)?;
        api.patch(&name, &apply, &Patch::Apply(&object)).await?;
    }
    eventually("the ExternalSecret is synced", LIMIT, || {
        let secrets = secrets.clone();
        async move {
            let secret = secrets.get_opt("batch").await?;
            Ok(secret.filter(|s| {
                s.data
                    .as_ref()
                    .and_then(|d| d.get("DATABASE_URL"))
                    .is_some_and(|v| v.0 == b"postgres://deploy-sync-value")
            }))
        }
    })
    .await?;
    // The keys are backed up to the chart's recovery certificate.
    let configmaps = keys.api::<ConfigMap>();
    eventually("the keys are backed up", LIMIT, || {
        let configmaps = configmaps.clone();
        async move { Ok(configmaps.get_opt("seal-key-backup").await?) }
    })
    .await?;
    for log in [controller.log(), syncer.log()] {
        assert!(
            !log.contains("forbidden") && !log.contains("Forbidden"),
            "a request was refused:\n{log}"
        );
        assert!(!log.contains("deploy-chart-value") && !log.contains("deploy-sync-value"));
    }

    // The syncer has no right over the key namespace's Secrets.
    let syncer_user = format!("system:serviceaccount:{}:{syncer_account}", keys.name());
    let syncer_client = env.kube_client_as(&syncer_user).await?;
    assert!(forbidden(
        Api::<Secret>::namespaced(syncer_client, keys.name())
            .list(&ListParams::default())
            .await
    ));

    // And no more: not another namespace's Secrets, not the CRDs, not Pods.
    let user = format!("system:serviceaccount:{}:{account}", keys.name());
    let limited = env.kube_client_as(&user).await?;
    assert!(forbidden(
        Api::<Secret>::namespaced(limited.clone(), other.name())
            .list(&ListParams::default())
            .await
    ));
    assert!(forbidden(
        Api::<Secret>::namespaced(limited.clone(), other.name())
            .get("anything")
            .await
    ));
    assert!(forbidden(
        Api::<Secret>::all(limited.clone())
            .list(&ListParams::default())
            .await
    ));
    assert!(forbidden(
        Api::<CustomResourceDefinition>::all(limited.clone())
            .delete("sealedsecrets.seal.dev", &DeleteParams::default())
            .await
    ));
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nope"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))?;
    for namespace in [app.name(), keys.name()] {
        assert!(forbidden(
            Api::<Pod>::namespaced(limited.clone(), namespace)
                .create(&PostParams::default(), &pod)
                .await
        ));
    }
    assert!(forbidden(
        Api::<SealedSecret>::namespaced(limited, app.name())
            .delete("db", &DeleteParams::default())
            .await
    ));
    Ok(())
}
