//! `deploy/helmfile`'s environments applied for real, in pods on the test environment's node, the
//! way a platform team brings up a new cluster: `helmfile sync` of the controller, the cluster's
//! certificate fetched through the API server's service proxy and pinned in `.seal.yaml`, ml-api's
//! credentials sealed with `seal --env ENV` as deploy/README.md says, and `helmfile sync` of the
//! whole environment. Dev, staging and prod each, one after the other (they share the namespaces
//! `seal-system` and `ml`, and cluster-wide names: [`crate::FIXED_NAMESPACES`]), while the rest of
//! the suite runs beside them.
//!
//! Each test works on a copy of `deploy/` whose values get only what this machine needs: the images
//! built here; small resource requests (the node has two cores; prod asks for more than that per
//! pod); two replicas per controller role in dev too, so that leader election is exercised; the
//! in-cluster addresses of OpenBao and moto with the cluster's CA; in dev, OpenBao's Kubernetes role
//! and the controller confined to `ml` (dev's controller is cluster-wide and would take other
//! tests' objects); in staging and prod, static credentials in the controller's environment in place
//! of the syncer's IRSA role, and the region of the test's moto. The namespaces are created first
//! with Pod Security `restricted` enforced, as a platform team provisions namespaces; helmfile's
//! `createNamespace` then finds them.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{ListParams, Patch, PatchParams};
use seal_testenv::{TestEnv, eventually, testenv, unique_name};
use serde_json::{Value, json};

use crate::cluster::install_crds;
use crate::pods::{
    IMAGE_REPOSITORY, IMAGE_TAG, assert_marker_nowhere, digest, fetch_cert, merge, ready_pods,
    seal_image, workload, workload_report,
};
use crate::{Helm, ok, root, workspace_binary};

/// The environments' namespaces (`deploy/helmfile/deployments/*/helmfile.yaml`).
const KEYS_NAMESPACE: &str = "seal-system";
const APP_NAMESPACE: &str = "ml";

/// The items of ml-api's credentials (`values/*/ml-api.sealed.yaml`).
const ML_API_ITEMS: [&str; 2] = ["DATABASE_URL", "MODEL_REGISTRY_TOKEN"];

/// The files ml-batch's agent writes in dev (`values/dev/ml-batch.yaml`).
const ML_BATCH_FILES: [&str; 2] = ["/secrets/broker-url", "/secrets/database-url"];

/// A copy of `deploy/` and helmfile run on one of its environments; `helmfile destroy` and the
/// namespaces' deletion (waited for: the next environment makes them again) when dropped.
struct Environment<'a> {
    name: &'static str,
    helm: &'a Helm,
    helmfile: PathBuf,
    copy: tempfile::TempDir,
    kubeconfig: PathBuf,
    kubectl: PathBuf,
}

impl Environment<'_> {
    /// The copy's `deploy/helmfile` directory.
    fn dir(&self) -> PathBuf {
        self.copy.path().join("deploy/helmfile")
    }

    /// Merges `patch` into the copy's values file `values/<environment>/<file>`.
    fn override_values(&self, file: &str, patch: Value) -> Result<()> {
        let values_file = self.dir().join("values").join(self.name).join(file);
        let mut values: Value = serde_yaml::from_str(&std::fs::read_to_string(&values_file)?)?;
        merge(&mut values, patch);
        std::fs::write(&values_file, serde_yaml::to_string(&values)?)?;
        Ok(())
    }

    /// `helmfile --file deployments/<environment>/helmfile.yaml [--selector S] ARGS...`.
    fn helmfile(&self, selector: Option<&str>, args: &[&str]) -> Result<String> {
        let mut command = Command::new(&self.helmfile);
        self.helm.isolate(&mut command);
        command
            .env("KUBECONFIG", &self.kubeconfig)
            .arg("--helm-binary")
            .arg(self.helm.binary())
            .arg("--file")
            .arg(
                self.dir()
                    .join("deployments")
                    .join(self.name)
                    .join("helmfile.yaml"),
            );
        if let Some(selector) = selector {
            command.args(["--selector", selector]);
        }
        let output = command.args(args).output()?;
        ok(
            &output,
            &format!("helmfile {} ({})", args.join(" "), self.name),
        )
    }
}

impl Drop for Environment<'_> {
    fn drop(&mut self) {
        let _ = self.helmfile(None, &["destroy"]);
        let _ = Command::new(&self.kubectl)
            .env("KUBECONFIG", &self.kubeconfig)
            .args(["delete", "namespace", KEYS_NAMESPACE, APP_NAMESPACE])
            .args(["--ignore-not-found", "--wait=true", "--timeout=180s"])
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

/// Makes `name` (or, left by the dry-run test, labels it) with Pod Security `restricted`
/// enforced.
async fn restricted_namespace(env: &TestEnv, name: &str) -> Result<()> {
    let api: kube::Api<Namespace> = kube::Api::all(env.kube_client().await?);
    let namespace: Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
        }},
    }))?;
    api.patch(
        name,
        &PatchParams::apply("seal-deploy-test-environments"),
        &Patch::Apply(&namespace),
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn the_dev_environment_comes_up_with_helmfile_in_pods() -> Result<()> {
    environment_in_pods("dev").await
}

#[tokio::test]
async fn the_staging_environment_comes_up_with_helmfile_in_pods() -> Result<()> {
    environment_in_pods("staging").await
}

#[tokio::test]
async fn the_prod_environment_comes_up_with_helmfile_in_pods() -> Result<()> {
    environment_in_pods("prod").await
}

/// What ml-batch gets in `environment`: in dev, files its agent renders from OpenBao (the
/// values are written there); elsewhere, environment variables from AWS Secrets Manager through
/// the ClusterSecretStore `aws-ml` (the values are created in moto). Returns the chart values
/// this machine needs and the report the worker must give.
async fn ml_batch_credentials(
    env: &TestEnv,
    environment: &str,
    marker: &str,
) -> Result<(Value, Value)> {
    let password = format!("pw/{marker}");
    let broker = format!("amqp://broker-{marker}");
    if environment == "dev" {
        let vault = env.vault_client(None)?;
        let mount = env.var("SEAL_TESTENV_VAULT_KV2_MOUNT");
        let db = std::collections::HashMap::from([
            ("user", format!("batch-{marker}")),
            ("password", password),
        ]);
        vaultrs::kv2::set(&vault, mount, "ml/batch/db", &db).await?;
        let url = std::collections::HashMap::from([("url", broker.clone())]);
        vaultrs::kv2::set(&vault, mount, "ml/batch/broker", &url).await?;
        let values = json!({
            "env": {"WORKLOAD_DIGEST_FILES": ML_BATCH_FILES.join(",")},
            "secrets": {"agent": {
                "image": {"repository": IMAGE_REPOSITORY, "tag": IMAGE_TAG, "pullPolicy": "Never"},
                "config": {
                    "vault": {
                        "address": env.var("SEAL_TESTENV_VAULT_IN_CLUSTER"),
                        "allowHttp": false,
                        "caFile": "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
                        "auth": {"role": env.var("SEAL_TESTENV_KUBERNETES_ROLE")},
                    },
                    "onChange": {"processName": "workload"},
                },
            }},
        });
        // dev's template: postgres://{{ .db_user | urlquery }}:{{ .db_password | urlquery }}@...
        let database_url =
            format!("postgres://batch-{marker}:pw%2F{marker}@postgres.dev.internal:5432/ml");
        let report = json!({
            "/secrets/broker-url": digest(&broker),
            "/secrets/database-url": digest(&database_url),
        });
        return Ok((values, report));
    }
    let database_url = format!("postgres://batch:{password}@db.{environment}.internal/ml");
    let aws = env.secretsmanager().await;
    for (key, url) in [("db", &database_url), ("broker", &broker)] {
        // The keys the environment's ExternalSecret names (fixed: replaced if a run left them).
        let id = format!("ml/{environment}/batch/{key}");
        let _ = aws
            .delete_secret()
            .secret_id(&id)
            .force_delete_without_recovery(true)
            .send()
            .await;
        aws.create_secret()
            .name(id)
            .secret_string(json!({ "url": url }).to_string())
            .send()
            .await?;
    }
    let values = json!({"env": {"WORKLOAD_DIGEST_ENV": "DATABASE_URL,BROKER_URL"}});
    let report = json!({"DATABASE_URL": digest(&database_url), "BROKER_URL": digest(&broker)});
    Ok((values, report))
}

/// `environment` from `deploy/helmfile` with helmfile, in pods (see the module docs).
async fn environment_in_pods(name: &'static str) -> Result<()> {
    let helm = helm!();
    let helmfile = helmfile!();
    let env = testenv!();
    let _serial = crate::FIXED_NAMESPACES.lock().await;
    install_crds(env).await?;
    seal_image(env)?;
    let copy = tempfile::tempdir()?;
    copy_dir(&root().join("deploy"), &copy.path().join("deploy"))?;
    let environment = Environment {
        name,
        helm,
        helmfile,
        copy,
        kubeconfig: env.kubeconfig().to_owned(),
        kubectl: PathBuf::from(env.var("SEAL_TESTENV_KUBECTL")),
    };
    restricted_namespace(env, KEYS_NAMESPACE).await?;
    restricted_namespace(env, APP_NAMESPACE).await?;
    let marker = unique_name("marker");
    let (batch_values, batch_report) = ml_batch_credentials(env, name, &marker).await?;

    // Only what this machine needs on top of the environment's values (see the module docs).
    let seal_image_values =
        json!({"repository": IMAGE_REPOSITORY, "tag": IMAGE_TAG, "pullPolicy": "Never"});
    let mut controller = json!({
        "image": seal_image_values,
        "replicaCount": 2,
        "syncer": {
            "replicaCount": 2,
            "caBundle": {"configMap": "kube-root-ca.crt", "key": "ca.crt"},
        },
    });
    merge(
        &mut controller,
        if name == "dev" {
            json!({
                "namespaces": [APP_NAMESPACE],
                "clusterSecretStores": {"vault-ml": {"provider": {"vault": {
                    "server": env.var("SEAL_TESTENV_VAULT_IN_CLUSTER"),
                }}}},
            })
        } else {
            json!({
                "extraEnv": [
                    {"name": "AWS_ACCESS_KEY_ID", "value": env.var("AWS_ACCESS_KEY_ID")},
                    {"name": "AWS_SECRET_ACCESS_KEY", "value": env.var("AWS_SECRET_ACCESS_KEY")},
                ],
                "clusterSecretStores": {"aws-ml": {"provider": {"aws": {
                    "region": env.var("AWS_REGION"),
                    "endpointURL": env.var("SEAL_TESTENV_AWS_IN_CLUSTER"),
                }}}},
            })
        },
    );
    environment.override_values("seal-controller.yaml", controller)?;
    environment.override_values(
        "ml-api.yaml",
        workload(json!({"env": {"WORKLOAD_DIGEST_ENV": ML_API_ITEMS.join(",")}})),
    )?;
    let mut batch = workload(json!({"worker": {"args": ["serve"]}}));
    merge(&mut batch, batch_values);
    environment.override_values("ml-batch.yaml", batch)?;

    // 1. The controller first: ml-api's values are sealed with its certificate.
    environment.helmfile(Some("service=seal-controller"), &["sync"])?;
    let client = env.kube_client().await?;
    let keys_pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), KEYS_NAMESPACE);
    let controller_pods = ready_pods(&keys_pods, "seal-controller").await?;
    assert_eq!(
        controller_pods.len(),
        4,
        "{name}: two unsealer and two syncer pods: {controller_pods:?}"
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
        "{name}: one ServiceAccount per role: {accounts:?}"
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
            "{name}: the leader {holder} is not one of the pods {controller_pods:?}"
        );
    }
    environment.helmfile(Some("service=seal-controller"), &["test"])?;

    // 2. The developer's side (deploy/README.md, "Seal ml-api's credentials"): the certificate
    // through the service proxy, its fingerprint pinned in .seal.yaml, `seal --env ENV`.
    let seal = workspace_binary("seal-cli", "seal")?;
    let cert = environment.dir().join(format!("certs/{name}.pem"));
    fetch_cert(env, KEYS_NAMESPACE, "seal-controller", &cert)?;
    let info = ok(
        &Command::new(&seal)
            .args(["cert", "info", "--format", "json"])
            .arg(&cert)
            .output()?,
        "seal cert info",
    )?;
    let fingerprint = serde_json::from_str::<Value>(&info)?["fingerprint"].clone();
    let config_path = environment.dir().join(".seal.yaml");
    let mut config: Value = serde_yaml::from_str(&std::fs::read_to_string(&config_path)?)?;
    config["environments"][name]["fingerprint"] = fingerprint;
    std::fs::write(&config_path, serde_yaml::to_string(&config)?)?;
    let values: Vec<(&str, String)> = ML_API_ITEMS
        .iter()
        .map(|item| (*item, format!("{item}-{marker}")))
        .collect();
    let secret = environment.copy.path().join("ml-api.yaml");
    let mut text = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: ml-api-credentials, namespace: {APP_NAMESPACE}}}\nstringData:\n"
    );
    for (key, value) in &values {
        writeln!(text, "  {key}: {value}")?;
    }
    std::fs::write(&secret, text)?;
    let sealed = ok(
        &Command::new(&seal)
            .args(["--env", name, "--format", "json"])
            .arg(&secret)
            .current_dir(environment.dir())
            .output()?,
        &format!("seal --env {name}"),
    )?;
    std::fs::remove_file(&secret)?;
    let spec = serde_json::from_str::<Value>(&sealed)?["spec"].clone();
    environment.override_values(
        "ml-api.sealed.yaml",
        json!({"secrets": {"sealedSecret": {
            "certificateFingerprint": spec["certificateFingerprint"],
            "encryptedData": spec["encryptedData"],
        }}}),
    )?;

    // 3. The whole environment.
    environment.helmfile(None, &["sync"])?;
    let ml_pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), APP_NAMESPACE);

    // ml-api started with the unsealed values in its environment (digests only).
    let api_pods = ready_pods(&ml_pods, "ml-api").await?;
    assert!(!api_pods.is_empty(), "{name}: no ml-api pod is Ready");
    let expected: serde_json::Map<String, Value> = values
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(digest(v))))
        .collect();
    for pod in &api_pods {
        let report = workload_report(env, APP_NAMESPACE, pod).await?;
        assert_eq!(
            report["env"],
            Value::Object(expected.clone()),
            "{name}: ml-api got other values"
        );
    }

    // ml-batch's worker got its credentials: files from its agent in dev, its environment from
    // the ExternalSecret elsewhere.
    let batch_pods = ready_pods(&ml_pods, "ml-batch").await?;
    assert_eq!(batch_pods.len(), 1, "{name}: {batch_pods:?}");
    let report = workload_report(env, APP_NAMESPACE, &batch_pods[0]).await?;
    let seen = if name == "dev" {
        &report["files"]
    } else {
        &report["env"]
    };
    assert_eq!(
        seen, &batch_report,
        "{name}: ml-batch got other credentials"
    );

    // Every pod ran under Pod Security `restricted` (enforced on both namespaces, so admission
    // refused anything else), and no value is anywhere it must not be.
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
            "{name}: {namespace}"
        );
    }
    assert_marker_nowhere(env, &[KEYS_NAMESPACE, APP_NAMESPACE], &marker).await?;
    Ok(())
}
