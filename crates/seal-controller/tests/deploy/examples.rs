//! The walk-throughs of `examples/`, each run as a user would follow it, with only what must point
//! at the test environment changed (addresses, roles, paths).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kube::api::{Patch, PatchParams, PostParams};
use seal_api::SealedSecret;
use seal_testenv::{TestNamespace, eventually, testenv, unique_name};
use serde_json::{Value, json};

use crate::charts::agent_configs;
use crate::cluster::{Controller, LIMIT, api_for, install_crds, served_certificate};
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

/// A short-lived token of ServiceAccount `name` in `namespace` (created first).
async fn service_account_token(namespace: &TestNamespace, name: &str) -> Result<String> {
    let account: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    namespace
        .api::<ServiceAccount>()
        .patch(
            name,
            &PatchParams::apply("seal-deploy-test"),
            &Patch::Apply(&account),
        )
        .await?;
    let request: TokenRequest = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 600}
    }))?;
    let issued = namespace
        .api::<ServiceAccount>()
        .create_token_request(name, &PostParams::default(), &request)
        .await?;
    issued
        .status
        .and_then(|s| s.token)
        .context("no token in the TokenRequest")
}

#[tokio::test]
async fn example_sidecar_values_fetch_from_vault() -> Result<()> {
    let helm = helm!();
    let env = testenv!();
    let agent = crate::workspace_binary("seal-agent", "seal-agent")?;
    let objects = helm.template(
        "ml-api",
        &root().join("deploy/charts/ml-api"),
        "ml",
        &[example("ml-api-sidecar/values.yaml")],
        &[],
    )?;
    let configs = agent_configs(&objects);
    assert_eq!(configs.len(), 1);
    let mut config: Value = serde_yaml::from_str(&configs[0])?;

    // The values in OpenBao, under a prefix of this run.
    let prefix = unique_name("deploy");
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
        &json!({"token": "registry-sidecar-value"}),
    )
    .await?;

    // Only what must point at the test environment changes: Vault's address, the role, the
    // ServiceAccount token's file, the paths.
    let namespace = env.namespace("deploy-sidecar").await?;
    let work = tempfile::tempdir()?;
    let token = work.path().join("token");
    std::fs::write(&token, service_account_token(&namespace, "ml-api").await?)?;
    config["vault"]["address"] = json!(env.vault_addr());
    config["vault"]["auth"]["role"] = json!(env.var("SEAL_TESTENV_KUBERNETES_ROLE"));
    config["vault"]["auth"]["tokenFile"] = json!(path_str(&token)?);
    for reference in config["secrets"]
        .as_object_mut()
        .context("secrets")?
        .values_mut()
    {
        let text = reference.as_str().context("a reference")?;
        *reference = json!(text.replace("secret/data/ml/", &format!("secret/data/{prefix}/ml/")));
    }
    let mount = work.path().join("secrets");
    std::fs::create_dir(&mount)?;
    for file in config["files"].as_array_mut().context("files")? {
        let path = file["path"].as_str().context("path")?;
        let relative = path.strip_prefix("/secrets/").context("under /secrets")?;
        file["path"] = json!(path_str(&mount.join(relative))?);
    }
    let config_file = work.path().join("config.yaml");
    std::fs::write(&config_file, serde_yaml::to_string(&config)?)?;
    ok(
        &Command::new(&agent)
            .args(["init", "-c"])
            .arg(&config_file)
            .env_remove("VAULT_TOKEN")
            .output()?,
        "seal-agent init",
    )?;
    assert_eq!(
        std::fs::read_to_string(mount.join("database-url"))?,
        "postgres://ml_api:p%40ss%2Fword@postgres.ml.svc:5432/ml"
    );
    assert_eq!(
        std::fs::read_to_string(mount.join("model-registry-token"))?,
        "registry-sidecar-value"
    );
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

/// The controller with the chart's defaults that matter here, the admin's kubeconfig, for
/// `namespaces`, its keys in `keys`.
async fn controller(
    env: &seal_testenv::TestEnv,
    keys: &str,
    namespaces: &str,
    extra: &[String],
) -> Result<(Controller, String)> {
    let mut args: Vec<String> = [
        "--listen-addr=127.0.0.1:0",
        "--listen-metrics-addr=127.0.0.1:0",
        "--key-size=2048",
        "--leader-elect=false",
        "--log-format=text",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    args.push(format!("--namespaces={namespaces}"));
    args.extend(extra.iter().cloned());
    Controller::start(&args, env.kubeconfig(), keys).await
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
async fn examples_ml_batch_aws_and_vault_kubernetes_sync() -> Result<()> {
    let env = testenv!();
    install_crds(env).await?;
    let keys = env.namespace("deploy-ex-keys").await?;
    let ml = env.namespace("deploy-ex-ml").await?;
    let client = env.kube_client().await?;
    let (_controller, _) = controller(env, keys.name(), ml.name(), &[]).await?;

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
        object["spec"]["provider"]["aws"]["endpointURL"] = json!(env.var("AWS_ENDPOINT_URL"));
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
            vault["server"] = json!(env.vault_addr());
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
async fn example_key_backup_restores_into_a_new_controller() -> Result<()> {
    let env = testenv!();
    install_crds(env).await?;
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
    let old = env.namespace("deploy-old-keys").await?;
    let app = env.namespace("deploy-restore-app").await?;
    let backup_cert = format!("--backup-cert={}", path_str(&recovery.join("tls.crt"))?);
    let (first, api) = controller(env, old.name(), app.name(), &[backup_cert]).await?;
    let certificate = served_certificate(&api).await?;
    let configmaps = old.api::<ConfigMap>();
    let backup = eventually("the keys are backed up", LIMIT, || {
        let configmaps = configmaps.clone();
        async move { Ok(configmaps.get_opt("seal-key-backup").await?) }
    })
    .await?;
    drop(first);
    // `kubectl get configmap seal-key-backup -o yaml > keys-backup.yaml`
    let backup_file = work.path().join("keys-backup.yaml");
    std::fs::write(&backup_file, serde_yaml::to_string(&backup)?)?;

    // The new cluster: keys first, then the controller.
    let new = env.namespace("deploy-new-keys").await?;
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
    let (_second, api) = controller(env, new.name(), app.name(), &[]).await?;
    assert_eq!(
        served_certificate(&api).await?,
        certificate,
        "the old key is served"
    );
    let cert_file = work.path().join("cert.pem");
    std::fs::write(&cert_file, &certificate)?;
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
