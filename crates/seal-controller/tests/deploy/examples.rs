//! The walk-throughs of `examples/`, each run as a user would follow it, with only what must point
//! at the test environment changed (addresses, roles, paths).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Patch, PatchParams, PostParams};
use seal_api::SealedSecret;
use seal_testenv::{TestNamespace, eventually, testenv, unique_name};
use serde_json::{Value, json};

use crate::cluster::{LIMIT, api_for, install_crds};
use crate::pods::{
    IMAGE_REPOSITORY, IMAGE_TAG, assert_marker_nowhere, digest, fetch_cert, install_chart,
    install_controller, merge, ready_pods, restricted, seal_image, workload, workload_report,
};
use crate::{ENVIRONMENTS, documents, ok, path_str, root};

fn example(path: &str) -> PathBuf {
    root().join("examples").join(path)
}

fn seal() -> Result<PathBuf> {
    crate::workspace_binary("seal-cli", "seal")
}

#[test]
fn example_sealed_environments_seal_for_their_own_certificate() -> Result<()> {
    let seal = seal()?;
    let helmfile = root().join("deploy/helmfile");
    let work = tempfile::tempdir()?;
    for environment in ["staging", "prod"] {
        // `seal --env ENV` in deploy/helmfile, as the README says.
        let sealed = ok(
            &Command::new(&seal)
                .args(["--env", environment])
                .arg(example("sealed-environments/secret.yaml"))
                .current_dir(&helmfile)
                .env_remove("SEAL_CERT")
                .env_remove("SEAL_ENV")
                .env_remove("SEAL_CONFIG")
                .output()?,
            "seal --env",
        )?;
        assert!(!sealed.contains("not-a-real-password"));
        let file = work.path().join(format!("{environment}.yaml"));
        std::fs::write(&file, &sealed)?;
        for certificate in ENVIRONMENTS {
            let verified = Command::new(&seal)
                .arg("verify")
                .arg("--cert")
                .arg(helmfile.join(format!("certs/{certificate}.pem")))
                .arg(&file)
                .output()?;
            assert_eq!(
                verified.status.success(),
                certificate == environment,
                "sealed for {environment}, verified with {certificate}"
            );
        }
    }
    Ok(())
}

#[test]
fn example_pre_commit_hook_refuses_plaintext() -> Result<()> {
    let seal = seal()?;
    let config: Value = serde_yaml::from_str(&std::fs::read_to_string(example(
        "pre-commit/.pre-commit-config.yaml",
    ))?)?;
    let hook = &config["repos"][0]["hooks"][0];
    let entry: Vec<&str> = hook["entry"]
        .as_str()
        .context("entry")?
        .split_whitespace()
        .collect();
    assert_eq!(entry[0], "seal");
    let files = regex::Regex::new(hook["files"].as_str().context("files")?)?;
    let work = tempfile::tempdir()?;
    let plain = work.path().join("secret.yaml");
    std::fs::write(
        &plain,
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: hunter2\n",
    )?;
    // What pre-commit passes the hook: the staged files matching `files`.
    let run = |file: &Path| -> Result<Option<i32>> {
        assert!(files.is_match(path_str(file)?), "{}", file.display());
        Ok(Command::new(&seal)
            .args(&entry[1..])
            .arg(file)
            .output()?
            .status
            .code())
    };
    assert_eq!(run(&plain)?, Some(1), "a plaintext Secret is refused");
    assert_eq!(run(&example("ml-api/secret.sealed.yaml"))?, Some(0));
    // And the examples and the helmfile values hold no plaintext Secret themselves.
    let status = Command::new(&seal)
        .args(&entry[1..])
        .arg(root().join("examples"))
        .arg(root().join("deploy"))
        .status()?;
    assert!(
        status.success(),
        "seal scan found plaintext in examples/ or deploy/"
    );
    Ok(())
}

#[tokio::test]
async fn example_sidecar_values_run_in_an_ml_api_pod() -> Result<()> {
    let helm = helm!();
    let env = testenv!();
    seal_image(env)?;
    let namespace = restricted(env, "ex-sidecar").await?;

    // The values in OpenBao, under a prefix of this run.
    let prefix = unique_name("deploy");
    let marker = unique_name("registry");
    let vault = env.vault_client(Some(env.var("VAULT_TOKEN")))?;
    vaultrs::kv2::set(
        &vault,
        "secret",
        &format!("{prefix}/ml/api/db"),
        &json!({"user": "ml_api", "password": "p@ss/word"}),
    )
    .await?;
    vaultrs::kv2::set(
        &vault,
        "secret",
        &format!("{prefix}/ml/api/registry"),
        &json!({ "token": marker }),
    )
    .await?;

    // `helm install ml-api deploy/charts/ml-api -f examples/ml-api-sidecar/values.yaml`, with only
    // what must point at this machine changed: the images, Vault's in-cluster address and CA, the
    // role, the paths, the app's process name.
    let mut values: Value = serde_yaml::from_str(&std::fs::read_to_string(example(
        "ml-api-sidecar/values.yaml",
    ))?)?;
    let config = &mut values["secrets"]["agent"]["config"];
    for reference in config["secrets"]
        .as_object_mut()
        .context("secrets")?
        .values_mut()
    {
        let text = reference.as_str().context("a reference")?;
        // The example reads `secret/ml/...` (KV v2, found from the mount as vals does); this
        // test's copy lives under its own prefix.
        let moved = text.replace(
            "ref+vault://secret/ml/",
            &format!("ref+vault://secret/{prefix}/ml/"),
        );
        anyhow::ensure!(
            moved != text,
            "the example's reference {text} is not under secret/ml/"
        );
        *reference = json!(moved);
    }
    let files: Vec<String> = config["files"]
        .as_array()
        .context("files")?
        .iter()
        .map(|f| f["path"].as_str().map(str::to_owned).context("path"))
        .collect::<Result<_>>()?;
    merge(
        &mut values,
        workload(json!({
            "replicaCount": 1,
            "autoscaling": {"enabled": false},
            "env": {"WORKLOAD_DIGEST_FILES": files.join(",")},
            "secrets": {"agent": {
                "image": {"repository": IMAGE_REPOSITORY, "tag": IMAGE_TAG, "pullPolicy": "Never"},
                "config": {
                    "vault": {
                        "address": env.var("SEAL_TESTENV_VAULT_IN_CLUSTER"),
                        "caFile": "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
                        "auth": {"role": env.var("SEAL_TESTENV_KUBERNETES_ROLE")},
                    },
                    "onChange": {"processName": "workload"},
                },
            }},
        })),
    );
    let _ml_api = install_chart(
        env,
        helm,
        "ml-api",
        "ml-api",
        namespace.name(),
        &values,
        true,
    )?;
    let pods = ready_pods(&namespace.api::<Pod>(), "ml-api").await?;
    let [pod] = pods.as_slice() else {
        anyhow::bail!("one Ready ml-api pod, found {pods:?}");
    };
    let report = workload_report(env, namespace.name(), pod).await?;
    assert_eq!(
        report["files"],
        json!({
            "/secrets/database-url": digest("postgres://ml_api:p%40ss%2Fword@postgres.ml.svc:5432/ml"),
            "/secrets/model-registry-token": digest(&marker),
        })
    );
    assert_marker_nowhere(env, &[namespace.name()], &marker).await?;
    Ok(())
}

/// The documents of an example file, moved into `namespace`.
fn example_objects(path: &str, namespace: &str) -> Result<Vec<Value>> {
    let mut objects = documents(&std::fs::read_to_string(example(path))?)?;
    for object in &mut objects {
        object["metadata"]["namespace"] = json!(namespace);
    }
    Ok(objects)
}

async fn apply(client: &kube::Client, object: &Value) -> Result<()> {
    let api = api_for(client, object).await?;
    let name = object["metadata"]["name"]
        .as_str()
        .context("name")?
        .to_owned();
    let object: kube::api::DynamicObject = serde_json::from_value(object.clone())?;
    api.patch(
        &name,
        &PatchParams::apply("seal-deploy-test"),
        &Patch::Apply(&object),
    )
    .await?;
    Ok(())
}

/// The controller chart in pods (one replica per role) with its keys in `keys`, for namespace
/// `app`, the syncer trusting the cluster's CA (the in-cluster OpenBao and moto), `extra` values on
/// top. Returns the release and the guard that uninstalls it.
fn controller<'a>(
    env: &seal_testenv::TestEnv,
    helm: &'a crate::Helm,
    keys: &str,
    app: &str,
    extra: Value,
) -> Result<(String, crate::cluster::Installed<'a>)> {
    let mut values = json!({
        "replicaCount": 1,
        "syncer": {"replicaCount": 1, "caBundle": {"configMap": "kube-root-ca.crt"}},
    });
    merge(&mut values, extra);
    install_controller(env, helm, keys, app, values)
}

async fn wait_for_item(
    namespace: &TestNamespace,
    name: &str,
    key: &str,
    value: &str,
) -> Result<()> {
    let secrets = namespace.api::<Secret>();
    eventually(&format!("Secret {name} holds {key}"), LIMIT, || {
        let secrets = secrets.clone();
        async move {
            let secret = secrets.get_opt(name).await?;
            Ok(secret
                .filter(|s| {
                    s.data
                        .as_ref()
                        .and_then(|d| d.get(key))
                        .is_some_and(|v| v.0 == value.as_bytes())
                })
                .map(|_| ()))
        }
    })
    .await
}

#[tokio::test]
async fn examples_ml_batch_aws_and_vault_kubernetes_sync_in_pods() -> Result<()> {
    let helm = helm!();
    let env = testenv!();
    install_crds(env).await?;
    seal_image(env)?;
    let keys = restricted(env, "ex-keys").await?;
    let ml = restricted(env, "ex-ml").await?;
    let client = env.kube_client().await?;
    let (_, _controller) = controller(env, helm, keys.name(), ml.name(), json!({}))?;

    // AWS: the two secrets in moto, the store's credentials, then the example's files.
    let prefix = unique_name("deploy");
    let aws = env.secretsmanager().await;
    for (name, url) in [
        ("db", "postgres://batch-aws-value"),
        ("broker", "amqp://broker-aws-value"),
    ] {
        aws.create_secret()
            .name(format!("{prefix}/ml/batch/{name}"))
            .secret_string(json!({ "url": url }).to_string())
            .send()
            .await?;
    }
    apply(
        &client,
        &json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "aws-credentials", "namespace": ml.name()},
            "stringData": {"id": env.var("AWS_ACCESS_KEY_ID"), "key": env.var("AWS_SECRET_ACCESS_KEY")}}),
    )
    .await?;
    for mut object in example_objects("ml-batch-aws/secretstore.yaml", ml.name())? {
        object["spec"]["provider"]["aws"]["region"] = json!(env.var("AWS_REGION"));
        object["spec"]["provider"]["aws"]["endpointURL"] =
            json!(env.var("SEAL_TESTENV_AWS_IN_CLUSTER"));
        apply(&client, &object).await?;
    }
    for mut object in example_objects("ml-batch-aws/externalsecret.yaml", ml.name())? {
        for item in object["spec"]["data"].as_array_mut().context("data")? {
            let key = item["remoteRef"]["key"].as_str().context("key")?.to_owned();
            item["remoteRef"]["key"] = json!(format!("{prefix}/{key}"));
        }
        apply(&client, &object).await?;
    }
    wait_for_item(
        &ml,
        "ml-batch-credentials",
        "DATABASE_URL",
        "postgres://batch-aws-value",
    )
    .await?;
    wait_for_item(
        &ml,
        "ml-batch-credentials",
        "BROKER_URL",
        "amqp://broker-aws-value",
    )
    .await?;

    // Vault with Kubernetes auth: the value in OpenBao, then the example's files.
    let vault = env.vault_client(Some(env.var("VAULT_TOKEN")))?;
    vaultrs::kv2::set(
        &vault,
        "secret",
        &format!("{prefix}/ml/batch/registry"),
        &json!({"MODEL_REGISTRY_TOKEN": "registry-vault-value"}),
    )
    .await?;
    for mut object in example_objects("vault-kubernetes/secretstore.yaml", ml.name())? {
        if object["kind"] == "SecretStore" {
            let vault = &mut object["spec"]["provider"]["vault"];
            vault["server"] = json!(env.var("SEAL_TESTENV_VAULT_IN_CLUSTER"));
            vault["auth"]["kubernetes"]["role"] =
                json!(env.var("SEAL_TESTENV_KUBERNETES_STORE_ROLE"));
        }
        apply(&client, &object).await?;
    }
    for mut object in example_objects("vault-kubernetes/externalsecret.yaml", ml.name())? {
        object["spec"]["dataFrom"][0]["extract"]["key"] =
            json!(format!("{prefix}/ml/batch/registry"));
        apply(&client, &object).await?;
    }
    wait_for_item(
        &ml,
        "ml-batch-registry",
        "MODEL_REGISTRY_TOKEN",
        "registry-vault-value",
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn example_key_backup_restores_into_a_new_controller_in_pods() -> Result<()> {
    let helm = helm!();
    let env = testenv!();
    install_crds(env).await?;
    seal_image(env)?;
    let seal = seal()?;
    let work = tempfile::tempdir()?;
    let recovery = work.path().join("recovery");
    ok(
        &Command::new(&seal)
            .args(["keygen", "--bits", "2048", "--out"])
            .arg(&recovery)
            .output()?,
        "seal keygen",
    )?;
    let old = restricted(env, "ex-old-keys").await?;
    let app = restricted(env, "ex-restore-app").await?;
    // `--set-file keys.backupCertificate=recovery/tls.crt`
    let backup_certificate = std::fs::read_to_string(recovery.join("tls.crt"))?;
    let (first, installed) = controller(
        env,
        helm,
        old.name(),
        app.name(),
        json!({"keys": {"backupCertificate": backup_certificate}}),
    )?;
    let old_cert = work.path().join("old.pem");
    fetch_cert(env, old.name(), &first, &old_cert)?;
    let configmaps = old.api::<ConfigMap>();
    let backup = eventually("the keys are backed up", LIMIT, || {
        let configmaps = configmaps.clone();
        async move { Ok(configmaps.get_opt("seal-key-backup").await?) }
    })
    .await?;
    drop(installed);
    // `kubectl get configmap seal-key-backup -o yaml > keys-backup.yaml`
    let backup_file = work.path().join("keys-backup.yaml");
    std::fs::write(&backup_file, serde_yaml::to_string(&backup)?)?;

    // The new cluster: keys first, then the controller.
    let new = restricted(env, "ex-new-keys").await?;
    ok(
        &Command::new(&seal)
            .args(["keys", "restore", "--yes", "--key"])
            .arg(recovery.join("tls.key"))
            .args(["--controller-namespace", new.name()])
            .arg(&backup_file)
            .env("KUBECONFIG", env.kubeconfig())
            .output()?,
        "seal keys restore",
    )?;
    let (second, _second) = controller(env, helm, new.name(), app.name(), json!({}))?;
    let cert_file = work.path().join("cert.pem");
    fetch_cert(env, new.name(), &second, &cert_file)?;
    assert_eq!(
        std::fs::read_to_string(&cert_file)?,
        std::fs::read_to_string(&old_cert)?,
        "the old key is served"
    );
    let plain = work.path().join("secret.yaml");
    std::fs::write(
        &plain,
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: {}\nstringData:\n  password: restored-value\n",
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
    wait_for_item(&app, "db", "password", "restored-value").await?;
    Ok(())
}
