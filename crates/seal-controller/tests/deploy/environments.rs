//! `deploy/helmfile`'s dev environment applied for real, in pods on the test environment's node,
//! the way a platform team brings up a new cluster: `helmfile sync` of the controller, the
//! cluster's certificate fetched through the API server's service proxy and pinned in `.seal.yaml`,
//! ml-api's credentials sealed with `seal --env dev` as deploy/README.md says, and `helmfile sync`
//! of the whole environment.
//!
//! The test works on a copy of `deploy/` whose dev values get only what this machine needs: the
//! images built here, the in-cluster addresses of OpenBao (TLS with the cluster's CA, OpenBao's
//! Kubernetes role), the workload image's process name for the agent's signal, and two replicas per
//! controller role so that leader election is exercised (dev runs one). The controller is confined
//! to namespace `ml` so it leaves the other tests' objects alone. The namespaces `seal-system` and
//! `ml` are created first with Pod Security `restricted` enforced, as a platform team provisions
//! namespaces; helmfile's `createNamespace` then finds them.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{ListParams, PostParams};
use seal_testenv::{TestEnv, eventually, testenv, unique_name};
use serde_json::{Value, json};

use crate::cluster::install_crds;
use crate::pods::{
    IMAGE_REPOSITORY, IMAGE_TAG, WORKLOAD_REPOSITORY, assert_marker_nowhere, digest, fetch_cert,
    merge, ready_pods, seal_image, workload_report,
};
use crate::{Helm, ok, root, workspace_binary};

/// The dev environment's namespaces (`deploy/helmfile/deployments/dev/helmfile.yaml`).
const KEYS_NAMESPACE: &str = "seal-system";
const APP_NAMESPACE: &str = "ml";

/// The items of ml-api's dev credentials (`values/dev/ml-api.sealed.yaml`).
const ML_API_ITEMS: [&str; 2] = ["DATABASE_URL", "MODEL_REGISTRY_TOKEN"];

/// The files ml-batch's agent writes in dev (`values/dev/ml-batch.yaml`).
const ML_BATCH_FILES: [&str; 2] = ["/secrets/broker-url", "/secrets/database-url"];

/// A copy of `deploy/` and helmfile run on its dev environment; `helmfile destroy` and the
/// namespaces' deletion when dropped.
struct DevEnvironment<'a> {
    helm: &'a Helm,
    helmfile: PathBuf,
    copy: tempfile::TempDir,
    kubeconfig: PathBuf,
    kubectl: PathBuf,
}

impl DevEnvironment<'_> {
    /// The copy's `deploy/helmfile` directory.
    fn dir(&self) -> PathBuf {
        self.copy.path().join("deploy/helmfile")
    }

    /// Merges `patch` into the copy's values file `values/dev/<file>`.
    fn override_values(&self, file: &str, patch: Value) -> Result<()> {
        let values_file = self.dir().join("values/dev").join(file);
        let mut values: Value = serde_yaml::from_str(&std::fs::read_to_string(&values_file)?)?;
        merge(&mut values, patch);
        std::fs::write(&values_file, serde_yaml::to_string(&values)?)?;
        Ok(())
    }

    /// `helmfile --file deployments/dev/helmfile.yaml [--selector S] ARGS...`: its stdout.
    fn helmfile(&self, selector: Option<&str>, args: &[&str]) -> Result<String> {
        let mut command = Command::new(&self.helmfile);
        self.helm.isolate(&mut command);
        command
            .env("KUBECONFIG", &self.kubeconfig)
            .arg("--helm-binary")
            .arg(self.helm.binary())
            .arg("--file")
            .arg(self.dir().join("deployments/dev/helmfile.yaml"));
        if let Some(selector) = selector {
            command.args(["--selector", selector]);
        }
        let output = command.args(args).output()?;
        ok(&output, &format!("helmfile {}", args.join(" ")))
    }
}

impl Drop for DevEnvironment<'_> {
    fn drop(&mut self) {
        let _ = self.helmfile(None, &["destroy"]);
        let _ = Command::new(&self.kubectl)
            .env("KUBECONFIG", &self.kubeconfig)
            .args(["delete", "namespace", KEYS_NAMESPACE, APP_NAMESPACE])
            .args(["--ignore-not-found", "--wait=false"])
            .output();
    }
}

/// Copies the directory `from` to `to`, recursively.
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Creates `name` with Pod Security `restricted` enforced.
async fn restricted_namespace(env: &TestEnv, name: &str) -> Result<()> {
    let api: kube::Api<Namespace> = kube::Api::all(env.kube_client().await?);
    let namespace: Namespace = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
        }},
    }))?;
    api.create(&PostParams::default(), &namespace).await?;
    Ok(())
}

#[tokio::test]
async fn the_dev_environment_comes_up_with_helmfile_in_pods() -> Result<()> {
    let helm = helm!();
    let helmfile = helmfile!();
    let env = testenv!();
    install_crds(env).await?;
    seal_image(env)?;
    let copy = tempfile::tempdir()?;
    copy_dir(&root().join("deploy"), &copy.path().join("deploy"))?;
    let dev = DevEnvironment {
        helm,
        helmfile,
        copy,
        kubeconfig: env.kubeconfig().to_owned(),
        kubectl: PathBuf::from(env.var("SEAL_TESTENV_KUBECTL")),
    };
    restricted_namespace(env, KEYS_NAMESPACE).await?;
    restricted_namespace(env, APP_NAMESPACE).await?;

    // What dev's references read: ml-batch's database and broker in OpenBao's KV v2 `secret/`.
    let marker = unique_name("marker");
    let vault = env.vault_client(None)?;
    let mount = env.var("SEAL_TESTENV_VAULT_KV2_MOUNT");
    let db = [
        ("user", format!("batch-{marker}")),
        ("password", format!("pw/{marker}")),
    ];
    let broker = format!("amqp://broker-{marker}");
    vaultrs::kv2::set(
        &vault,
        mount,
        "ml/batch/db",
        &db.iter()
            .cloned()
            .collect::<std::collections::HashMap<_, _>>(),
    )
    .await?;
    vaultrs::kv2::set(
        &vault,
        mount,
        "ml/batch/broker",
        &std::collections::HashMap::from([("url", broker.clone())]),
    )
    .await?;

    // Only what this machine needs on top of dev's values (see the module docs).
    let seal_image_values =
        json!({"repository": IMAGE_REPOSITORY, "tag": IMAGE_TAG, "pullPolicy": "Never"});
    let workload_image =
        json!({"repository": WORKLOAD_REPOSITORY, "tag": IMAGE_TAG, "pullPolicy": "Never"});
    let vault_in_cluster = env.var("SEAL_TESTENV_VAULT_IN_CLUSTER");
    let cluster_ca = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
    dev.override_values(
        "seal-controller.yaml",
        json!({
            "image": seal_image_values,
            "replicaCount": 2,
            "namespaces": [APP_NAMESPACE],
            "syncer": {
                "replicaCount": 2,
                "caBundle": {"configMap": "kube-root-ca.crt", "key": "ca.crt"},
            },
            "clusterSecretStores": {"vault-ml": {"provider": {"vault": {"server": vault_in_cluster}}}},
        }),
    )?;
    dev.override_values(
        "ml-api.yaml",
        json!({
            "image": workload_image,
            "env": {"WORKLOAD_DIGEST_ENV": ML_API_ITEMS.join(",")},
        }),
    )?;
    dev.override_values(
        "ml-batch.yaml",
        json!({
            "image": workload_image,
            "worker": {"args": ["serve"]},
            "env": {"WORKLOAD_DIGEST_FILES": ML_BATCH_FILES.join(",")},
            "secrets": {"agent": {
                "image": seal_image_values,
                "config": {
                    "vault": {
                        "address": vault_in_cluster,
                        "allowHttp": false,
                        "caFile": cluster_ca,
                        "auth": {"role": env.var("SEAL_TESTENV_KUBERNETES_ROLE")},
                    },
                    "onChange": {"processName": "workload"},
                },
            }},
        }),
    )?;

    // 1. The controller first: ml-api's values are sealed with its certificate.
    dev.helmfile(Some("service=seal-controller"), &["sync"])?;
    let client = env.kube_client().await?;
    let keys_pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), KEYS_NAMESPACE);
    let controller_pods = ready_pods(&keys_pods, "seal-controller").await?;
    assert_eq!(
        controller_pods.len(),
        4,
        "two unsealer and two syncer pods: {controller_pods:?}"
    );
    let accounts: BTreeSet<String> = keys_pods
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter_map(|p| p.spec.as_ref()?.service_account_name.clone())
        .collect();
    assert_eq!(
        accounts.len(),
        2,
        "one ServiceAccount per role: {accounts:?}"
    );
    let leases: kube::Api<Lease> = kube::Api::namespaced(client.clone(), KEYS_NAMESPACE);
    let holders = eventually("each role has a leader", Duration::from_secs(60), || {
        let leases = leases.clone();
        async move {
            let holders: Vec<String> = leases
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .filter_map(|l| l.spec?.holder_identity)
                .collect();
            Ok((holders.len() == 2).then_some(holders))
        }
    })
    .await?;
    for holder in &holders {
        assert!(
            controller_pods.contains(holder),
            "the leader {holder} is not one of the pods {controller_pods:?}"
        );
    }
    dev.helmfile(Some("service=seal-controller"), &["test"])?;

    // 2. The developer's side (deploy/README.md, "Seal ml-api's credentials"): the certificate
    // through the service proxy, its fingerprint pinned in .seal.yaml, `seal --env dev`.
    let seal = workspace_binary("seal-cli", "seal")?;
    let cert = dev.dir().join("certs/dev.pem");
    fetch_cert(env, KEYS_NAMESPACE, "seal-controller", &cert)?;
    let info = ok(
        &Command::new(&seal)
            .args(["cert", "info", "--format", "json"])
            .arg(&cert)
            .output()?,
        "seal cert info",
    )?;
    let fingerprint = serde_json::from_str::<Value>(&info)?["fingerprint"].clone();
    let config_path = dev.dir().join(".seal.yaml");
    let mut config: Value = serde_yaml::from_str(&std::fs::read_to_string(&config_path)?)?;
    config["environments"]["dev"]["fingerprint"] = fingerprint;
    std::fs::write(&config_path, serde_yaml::to_string(&config)?)?;
    let values: Vec<(&str, String)> = ML_API_ITEMS
        .iter()
        .map(|item| (*item, format!("{item}-{marker}")))
        .collect();
    let secret = dev.copy.path().join("ml-api.yaml");
    let mut text = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: ml-api-credentials, namespace: {APP_NAMESPACE}}}\nstringData:\n"
    );
    for (key, value) in &values {
        writeln!(text, "  {key}: {value}")?;
    }
    std::fs::write(&secret, text)?;
    let sealed = ok(
        &Command::new(&seal)
            .args(["--env", "dev", "--format", "json"])
            .arg(&secret)
            .current_dir(dev.dir())
            .output()?,
        "seal --env dev",
    )?;
    std::fs::remove_file(&secret)?;
    let spec = serde_json::from_str::<Value>(&sealed)?["spec"].clone();
    dev.override_values(
        "ml-api.sealed.yaml",
        json!({"secrets": {"sealedSecret": {
            "certificateFingerprint": spec["certificateFingerprint"],
            "encryptedData": spec["encryptedData"],
        }}}),
    )?;

    // 3. The whole environment.
    dev.helmfile(None, &["sync"])?;
    let ml_pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), APP_NAMESPACE);

    // ml-api started with the unsealed values in its environment (digests only).
    let api_pods = ready_pods(&ml_pods, "ml-api").await?;
    assert_eq!(api_pods.len(), 1, "{api_pods:?}");
    let report = workload_report(env, APP_NAMESPACE, &api_pods[0]).await?;
    let expected: serde_json::Map<String, Value> = values
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(digest(v))))
        .collect();
    assert_eq!(
        report["env"],
        Value::Object(expected),
        "ml-api got other values"
    );

    // ml-batch's worker reads the files its agent wrote from OpenBao (dev's template included).
    let batch_pods = ready_pods(&ml_pods, "ml-batch").await?;
    assert_eq!(batch_pods.len(), 1, "{batch_pods:?}");
    let report = workload_report(env, APP_NAMESPACE, &batch_pods[0]).await?;
    let database_url =
        format!("postgres://batch-{marker}:pw%2F{marker}@postgres.dev.internal:5432/ml");
    assert_eq!(
        report["files"],
        json!({
            "/secrets/broker-url": digest(&broker),
            "/secrets/database-url": digest(&database_url),
        }),
        "ml-batch got other files"
    );

    // Every pod of the environment ran under Pod Security `restricted` (enforced on both
    // namespaces, so admission refused anything else), and no value is anywhere it must not be.
    for namespace in [KEYS_NAMESPACE, APP_NAMESPACE] {
        let labels = kube::Api::<Namespace>::all(client.clone())
            .get(namespace)
            .await?
            .metadata
            .labels
            .unwrap_or_default();
        assert_eq!(
            labels
                .get("pod-security.kubernetes.io/enforce")
                .map(String::as_str),
            Some("restricted"),
            "{namespace}"
        );
    }
    assert_marker_nowhere(env, &[KEYS_NAMESPACE, APP_NAMESPACE], &marker).await?;
    Ok(())
}
