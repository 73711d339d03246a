//! The move from the External Secrets Operator as a platform team makes it (`examples/from-eso/`),
//! with ESO's controller v0.16.2 itself, on ESO's own CRDs, run as in its pod
//! ([`seal_testenv::InCluster`]): from `external-secrets.io/v1beta1` manifests it makes two Secrets
//! from OpenBao (Vault provider, token auth). The manifests go through `seal convert --in-place`
//! and `kubectl apply`, and seal-controller takes each Secret over without rewriting its values
//! (nothing rolls):
//! - `db` while ESO still runs, as when a cluster moves one namespace at a time: ESO then finds
//!   another controller on the Secret, says so on its object, and writes nothing;
//! - `api` after ESO stopped, the order the runbook gives for a whole cluster.
//!
//! Then ESO's objects are deleted: the Secrets stay, and new values in OpenBao reach them through
//! seal, rolling the Deployment that names them. The values are in no log, Event, status or
//! metric of seal's.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams};
use seal_api::ExternalSecret;
use seal_api::eso::ESO_DATA_HASH_ANNOTATION;
use seal_controller::protocols::rollout::checksum_annotation;
use seal_testenv::{
    InCluster, TestEnv, TestNamespace, eventually, secret_from_pairs, testenv, unique_name,
};
use serde::Deserialize as _;

use crate::external::{events_text, install_all_crds, unscheduled_deployment, wait_reason};
use crate::support::{ControllerProcess, PeerProcess, Ran, item, run, seal_binary};

const LIMIT: Duration = Duration::from_secs(90);
/// ESO's label on every Secret it writes, by which it watches them.
const ESO_MANAGED_LABEL: &str = "reconcile.external-secrets.io/managed";

/// Starts ESO's controller as in its pod, watching `app` only (other tests' namespaces are
/// not its business), without its metrics server.
fn start_eso(in_cluster: &InCluster, binary: &Path, app: &str) -> Result<PeerProcess> {
    PeerProcess::spawn(
        in_cluster
            .command(binary)
            .args(["--namespace", app, "--metrics-addr", "0"])
            // In its pod it has no kubeconfig: only the ServiceAccount.
            .env_remove("KUBECONFIG"),
        "ESO's controller",
    )
}

/// Installs every CRD of ESO's bundle (`crds.yaml` beside its binary).
async fn install_eso_crds(env: &TestEnv, binary: &Path) -> Result<()> {
    let path = binary.with_file_name("crds.yaml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("ESO's CRDs are missing at {}", path.display()))?;
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_yaml::Value::deserialize(document)?;
        if value.is_null() {
            continue;
        }
        let crd: CustomResourceDefinition = serde_yaml::from_value(value)?;
        env.apply_crd(&crd).await?;
    }
    Ok(())
}

/// ESO's ExternalSecrets in `ns`, as the API server serves them.
fn eso_external_secrets(ns: &TestNamespace) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "external-secrets.io",
        "v1",
        "ExternalSecret",
    ));
    Api::namespaced_with(ns.client(), ns.name(), &resource)
}

/// The `Ready` condition of ESO's ExternalSecret `name`: (status, reason, message).
async fn eso_ready(ns: &TestNamespace, name: &str) -> Result<Option<(String, String, String)>> {
    let object = eso_external_secrets(ns).get(name).await?;
    let conditions = object.data["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    Ok(conditions.iter().find(|c| c["type"] == "Ready").map(|c| {
        let field = |name: &str| c[name].as_str().unwrap_or_default().to_owned();
        (field("status"), field("reason"), field("message"))
    }))
}

/// kubectl of the test environment, as the admin.
fn kubectl(env: &TestEnv, dir: &Path, args: &[&str]) -> Result<Ran> {
    let ran = run(
        Path::new(env.var("SEAL_TESTENV_KUBECTL")),
        args,
        &[("KUBECONFIG", env.kubeconfig().as_os_str())],
        dir,
    )?;
    ensure!(
        ran.code == 0,
        "kubectl {}: exit {}\n{}",
        args.join(" "),
        ran.code,
        ran.stderr
    );
    Ok(ran)
}

/// `seal convert --in-place FILES` in `dir`.
fn seal_convert(dir: &Path, files: &[&str]) -> Result<()> {
    let seal = seal_binary()?;
    let ran = run(
        &seal,
        &[&["convert", "--in-place"][..], files].concat(),
        &[],
        dir,
    )?;
    ensure!(
        ran.code == 0,
        "seal convert: exit {}\n{}",
        ran.code,
        ran.stderr
    );
    Ok(())
}

/// Writes the manifests as they are in git, for ESO: the store reads OpenBao's KV v2 with a token
/// from a Secret; `db` and `api` read `path`, every 10 s.
fn write_eso_manifests(env: &TestEnv, dir: &Path, ns: &str, path: &str) -> Result<()> {
    let vault = env.vault_addr();
    std::fs::write(
        dir.join("store.yaml"),
        format!(
            "apiVersion: external-secrets.io/v1beta1
kind: SecretStore
metadata: {{name: openbao, namespace: {ns}}}
spec:
  provider:
    vault:
      server: {vault}
      path: secret
      version: v2
      auth:
        tokenSecretRef: {{name: openbao-token, key: token}}
"
        ),
    )?;
    std::fs::write(
        dir.join("db.yaml"),
        format!(
            "apiVersion: external-secrets.io/v1beta1
kind: ExternalSecret
metadata: {{name: db, namespace: {ns}, labels: {{team: ml}}}}
spec:
  refreshInterval: 10s
  secretStoreRef: {{kind: SecretStore, name: openbao}}
  target: {{name: db, creationPolicy: Owner}}
  data:
    - {{secretKey: user, remoteRef: {{key: {path}, property: user}}}}
    - {{secretKey: password, remoteRef: {{key: {path}, property: password}}}}
"
        ),
    )?;
    std::fs::write(
        dir.join("api.yaml"),
        format!(
            "apiVersion: external-secrets.io/v1beta1
kind: ExternalSecret
metadata: {{name: api, namespace: {ns}}}
spec:
  refreshInterval: 10s
  secretStoreRef: {{kind: SecretStore, name: openbao}}
  target: {{creationPolicy: Owner}}
  data:
    - {{secretKey: token, remoteRef: {{key: {path}, property: token}}}}
"
        ),
    )?;
    Ok(())
}

/// Adds seal's `rolloutRestartTargets` (Deployment `web`) to the converted ExternalSecret in
/// `file`, as a user does once the manifest is seal's.
fn add_rollout_target(file: &Path) -> Result<()> {
    let mut object: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(file)?)?;
    ensure!(
        object["apiVersion"].as_str() == Some("seal.dev/v1alpha1"),
        "{} was not converted: {object:?}",
        file.display()
    );
    object["spec"]["rolloutRestartTargets"] =
        serde_yaml::from_str("[{kind: Deployment, name: web}]")?;
    std::fs::write(file, serde_yaml::to_string(&object)?)?;
    Ok(())
}

/// The values OpenBao holds at `path`.
async fn put_values(env: &TestEnv, path: &str, password: &str, token: &str) -> Result<()> {
    let values = std::collections::HashMap::from([
        ("user", "app"),
        ("password", password),
        ("token", token),
    ]);
    vaultrs::kv2::set(&env.vault_client(None)?, "secret", path, &values).await?;
    Ok(())
}

/// The pod template annotations of Deployment `web`, where a rollout restart shows.
async fn web_annotations(app: &TestNamespace) -> Result<BTreeMap<String, String>> {
    let deployment = app.api::<Deployment>().get("web").await?;
    Ok(deployment
        .spec
        .template
        .metadata
        .and_then(|m| m.annotations)
        .unwrap_or_default())
}

/// Asserts that seal's ExternalSecret `name` took `before`, the Secret ESO made, over: the same
/// Secret and values, seal's owner reference alone, ESO's hash of the values gone, and no rollout.
async fn assert_taken_over(app: &TestNamespace, name: &str, before: &Secret) -> Result<Secret> {
    let seal_uid = app
        .api::<ExternalSecret>()
        .get(name)
        .await?
        .uid()
        .context("seal's ExternalSecret has no uid")?;
    let taken = app.api::<Secret>().get(name).await?;
    assert_eq!(taken.uid(), before.uid(), "{name}: the same Secret");
    assert_eq!(taken.data, before.data, "{name}: the values are ESO's");
    let owners: Vec<_> = taken
        .owner_references()
        .iter()
        .map(|o| (o.api_version.as_str(), o.kind.as_str(), o.uid.as_str()))
        .collect();
    assert_eq!(
        owners,
        [("seal.dev/v1alpha1", "ExternalSecret", seal_uid.as_str())],
        "{name}: seal's reference replaced ESO's"
    );
    assert!(
        !taken.annotations().contains_key(ESO_DATA_HASH_ANNOTATION),
        "{name}: ESO's hash of the values is gone: {:?}",
        taken.annotations()
    );
    let template = web_annotations(app).await?;
    assert!(
        !template.contains_key(&checksum_annotation(name)),
        "{name}: the takeover kept the values, so nothing rolls: {template:?}"
    );
    Ok(taken)
}

#[tokio::test]
async fn a_cluster_moves_from_esos_controller_without_a_value_rewritten() -> Result<()> {
    let env = testenv!();
    let Some(eso_binary) = seal_testenv::peer(
        "SEAL_ESO_CONTROLLER",
        "the External Secrets Operator's controller v0.16.2",
    ) else {
        return Ok(());
    };
    install_all_crds(env).await?;
    install_eso_crds(env, &eso_binary).await?;
    let operator = env.namespace("from-eso-operator").await?;
    let keys = env.namespace("from-eso-keys").await?;
    let app = env.namespace("from-eso").await?;
    let secrets = app.api::<Secret>();

    // OpenBao holds the values; the store's token is in a Secret, as ESO's manifests expect.
    let path = unique_name("from-eso");
    let (password, token) = (unique_name("MARKER-eso-pw"), unique_name("MARKER-eso-tok"));
    put_values(env, &path, &password, &token).await?;
    secrets
        .create(
            &kube::api::PostParams::default(),
            &secret_from_pairs(
                "openbao-token",
                app.name(),
                &[("token", env.var("VAULT_TOKEN"))],
            ),
        )
        .await?;
    unscheduled_deployment(&app, "web").await?;

    // ESO's manifests, applied; ESO's controller, as in its pod, makes the Secrets.
    let repo = tempfile::tempdir()?;
    let dir = repo.path();
    write_eso_manifests(env, dir, app.name(), &path)?;
    kubectl(env, dir, &["apply", "-f", "."])?;
    let in_cluster = env
        .in_cluster(&operator, "external-secrets", "cluster-admin")
        .await?;
    let mut eso = start_eso(&in_cluster, &eso_binary, app.name())?;
    for name in ["db", "api"] {
        let app = &app;
        let synced = eventually("ESO syncs its ExternalSecret", LIMIT, || async move {
            Ok(eso_ready(app, name)
                .await?
                .filter(|(status, _, _)| status == "True")
                .map(drop))
        })
        .await;
        if let Err(error) = synced {
            bail!("{name}: {error}; ESO's log:\n{}", eso.log_tail());
        }
    }
    let made_db = secrets.get("db").await?;
    let made_api = secrets.get("api").await?;
    assert_eq!(
        item(&made_db, "password").as_deref(),
        Some(password.as_bytes())
    );
    assert_eq!(item(&made_api, "token").as_deref(), Some(token.as_bytes()));
    // What ESO's controller writes, which the takeover relies on: a controlling reference to
    // its ExternalSecret (in its stored version, whatever version the manifest was in).
    for made in [&made_db, &made_api] {
        let owners = made.owner_references();
        assert_eq!(owners.len(), 1, "{owners:?}");
        assert_eq!(
            (
                owners[0].api_version.as_str(),
                owners[0].kind.as_str(),
                owners[0].name.as_str(),
                owners[0].controller
            ),
            (
                "external-secrets.io/v1",
                "ExternalSecret",
                made.name_any().as_str(),
                Some(true)
            )
        );
        assert!(made.annotations().contains_key(ESO_DATA_HASH_ANNOTATION));
        assert_eq!(
            made.labels().get(ESO_MANAGED_LABEL).map(String::as_str),
            Some("true")
        );
    }
    // Without a template ESO copies its ExternalSecret's own labels and annotations onto the
    // Secret (kubectl's last-applied-configuration included); seal writes only the template's.
    assert_eq!(made_db.labels().get("team").map(String::as_str), Some("ml"));
    assert!(
        made_db
            .annotations()
            .contains_key("kubectl.kubernetes.io/last-applied-configuration")
    );

    // seal-controller runs; the store and `db` are converted and applied while ESO still runs.
    let controller = ControllerProcess::start(
        env,
        keys.name(),
        &["--namespaces", app.name(), "--leader-elect=false"],
    )
    .await?;
    seal_convert(dir, &["store.yaml", "db.yaml"])?;
    add_rollout_target(&dir.join("db.yaml"))?;
    kubectl(env, dir, &["apply", "-f", "store.yaml", "-f", "db.yaml"])?;
    wait_reason(&app, "db", "SecretSynced").await?;
    let taken_db = assert_taken_over(&app, "db", &made_db).await?;
    // What ESO copied stays as ESO left it.
    assert_eq!(
        taken_db.labels().get("team").map(String::as_str),
        Some("ml")
    );

    // ESO, still running, finds seal's controller on the Secret: it says so on its object and
    // writes nothing (no reference of its own back, no values).
    let refused = eventually(
        "ESO reports that it cannot own db's Secret",
        LIMIT,
        || async {
            Ok(eso_ready(&app, "db")
                .await?
                .filter(|(status, reason, _)| status == "False" && reason == "SecretSyncedError")
                .map(|(_, _, message)| message))
        },
    )
    .await;
    let refused = match refused {
        Ok(message) => message,
        Err(error) => bail!("{error}; ESO's log:\n{}", eso.log_tail()),
    };
    assert_eq!(refused, "failed to take ownership of target secret");
    let after_eso = secrets.get("db").await?;
    assert_eq!(
        after_eso.resource_version(),
        taken_db.resource_version(),
        "ESO wrote db's Secret after the takeover"
    );

    // The runbook's order for the rest: stop ESO, convert, apply.
    eso.stop();
    seal_convert(dir, &["api.yaml"])?;
    add_rollout_target(&dir.join("api.yaml"))?;
    kubectl(env, dir, &["apply", "-f", "api.yaml"])?;
    wait_reason(&app, "api", "SecretSynced").await?;
    assert_taken_over(&app, "api", &made_api).await?;

    // ESO's objects go; its ExternalSecrets own nothing any more, so the Secrets stay.
    kubectl(
        env,
        dir,
        &[
            "delete",
            "-n",
            app.name(),
            "externalsecrets.external-secrets.io,secretstores.external-secrets.io",
            "--all",
            "--wait",
        ],
    )?;
    let esos = eso_external_secrets(&app);
    ensure!(
        esos.list(&ListParams::default()).await?.items.is_empty(),
        "ESO's ExternalSecrets are still there"
    );
    for made in [&made_db, &made_api] {
        let kept = secrets.get_opt(&made.name_any()).await?;
        assert_eq!(
            kept.and_then(|s| s.uid()),
            made.uid(),
            "{}: the Secret stays, never recreated",
            made.name_any()
        );
    }

    // New values in OpenBao reach the Secrets through seal, and the Deployment rolls.
    let (new_password, new_token) = (
        unique_name("MARKER-seal-pw"),
        unique_name("MARKER-seal-tok"),
    );
    put_values(env, &path, &new_password, &new_token).await?;
    for (name, key, value) in [
        ("db", "password", &new_password),
        ("api", "token", &new_token),
    ] {
        let secrets = secrets.clone();
        eventually("seal syncs the new value", LIMIT, || {
            let secrets = secrets.clone();
            async move {
                let secret = secrets.get(name).await?;
                Ok((item(&secret, key).as_deref() == Some(value.as_bytes())).then_some(()))
            }
        })
        .await?;
    }
    let rolled = eventually("the Deployment rolls for both Secrets", LIMIT, || async {
        let template = web_annotations(&app).await?;
        Ok((template.contains_key(&checksum_annotation("db"))
            && template.contains_key(&checksum_annotation("api")))
        .then_some(()))
    })
    .await;
    rolled?;

    // The values are in the Secrets only: not in seal's log, the Events, the status or the
    // metrics.
    let mut status = String::new();
    for name in ["db", "api"] {
        status += &serde_json::to_string(&app.api::<ExternalSecret>().get(name).await?.status)?;
    }
    let outputs = [
        ("log", controller.log()),
        ("Events", events_text(&app).await?),
        ("status", status),
        ("metrics", controller.scrape()?),
    ];
    for marker in [&password, &token, &new_password, &new_token] {
        for (what, text) in &outputs {
            assert!(!text.contains(marker.as_str()), "a value is in the {what}");
        }
    }

    drop(controller);
    drop(eso);
    drop(in_cluster);
    clean_up(env, &[&operator, &keys, &app], "external-secrets").await
}

/// Deletes the test's namespaces and the ClusterRoleBinding [`TestEnv::in_cluster`] made for
/// `account` in the first of them.
async fn clean_up(env: &TestEnv, namespaces: &[&TestNamespace], account: &str) -> Result<()> {
    let client = env.kube_client().await?;
    let binding = format!("{account}-{}", namespaces[0].name());
    Api::<ClusterRoleBinding>::all(client.clone())
        .delete(&binding, &DeleteParams::default())
        .await?;
    let all = Api::<Namespace>::all(client);
    for ns in namespaces {
        all.delete(ns.name(), &DeleteParams::default()).await?;
    }
    Ok(())
}
