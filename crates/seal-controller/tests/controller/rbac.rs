//! The shipped RBAC (`deploy/rbac/seal-controller.yaml`) is enough: the unsealer runs under
//! exactly its ServiceAccount's rights (an impersonating kubeconfig) and does all of its work
//! (key, unseal, status, Event, leader Lease, key backup) without one refusal, and the same
//! identity may list and watch what it watches in every namespace. And it is not more
//! than that: the same identity cannot delete SealedSecrets, read ConfigMaps elsewhere, list Pods,
//! read ExternalSecrets or request tokens; the syncer's cannot read SealedSecrets or the key
//! backup.

use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use futures::TryStreamExt;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::{Api, Client};
use seal_api::manifest::{self, Object};
use seal_api::{ExternalSecret, SealedSecret};

use seal_api::names::{BACKUP_CONFIGMAP, SEALED_SECRET_UID_LABEL};
use seal_core::{Certificate, KeySize, PrivateKey};
use seal_testenv::{TestEnv, eventually, testenv, unique_name};
use serde_json::Value;

use crate::support::{ControllerProcess, first_key, install_crds, item, sealed};

const LIMIT: Duration = Duration::from_secs(60);

/// Applies the shipped RBAC (the unsealer `seal-controller` and the syncer `seal-syncer`) for a
/// controller in `namespace`, with the cluster-wide objects prefixed `cluster_name` so that runs
/// sharing one API server do not meet.
pub(crate) async fn apply_shipped_rbac(
    env: &TestEnv,
    namespace: &str,
    cluster_name: &str,
) -> Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/rbac/seal-controller.yaml");
    let text = std::fs::read_to_string(&path)?.replace("seal-system", namespace);
    let client = env.kube_client().await?;
    let apply = PatchParams::apply("seal-rbac-test").force();
    let cluster_wide = |name: &Value| {
        Value::from(format!(
            "{cluster_name}-{}",
            name.as_str().unwrap_or_default()
        ))
    };
    for located in manifest::parse(&text)? {
        let Object::Other {
            kind, mut value, ..
        } = located.object
        else {
            anyhow::bail!("unexpected object at line {}", located.line);
        };
        let name = value["metadata"]["name"]
            .as_str()
            .context("a name")?
            .to_owned();
        match kind.as_str() {
            "ServiceAccount" => {
                let account: ServiceAccount = serde_json::from_value(value)?;
                Api::<ServiceAccount>::namespaced(client.clone(), namespace)
                    .patch(&name, &apply, &Patch::Apply(&account))
                    .await?;
            }
            "ClusterRole" => {
                value["metadata"]["name"] = cluster_wide(&value["metadata"]["name"]);
                let role: ClusterRole = serde_json::from_value(value)?;
                Api::<ClusterRole>::all(client.clone())
                    .patch(
                        &role.metadata.name.clone().unwrap_or_default(),
                        &apply,
                        &Patch::Apply(&role),
                    )
                    .await?;
            }
            "ClusterRoleBinding" => {
                value["metadata"]["name"] = cluster_wide(&value["metadata"]["name"]);
                value["roleRef"]["name"] = cluster_wide(&value["roleRef"]["name"]);
                let binding: ClusterRoleBinding = serde_json::from_value(value)?;
                Api::<ClusterRoleBinding>::all(client.clone())
                    .patch(
                        &binding.metadata.name.clone().unwrap_or_default(),
                        &apply,
                        &Patch::Apply(&binding),
                    )
                    .await?;
            }
            "Role" => {
                let role: Role = serde_json::from_value(value)?;
                Api::<Role>::namespaced(client.clone(), namespace)
                    .patch(&name, &apply, &Patch::Apply(&role))
                    .await?;
            }
            "RoleBinding" => {
                let binding: RoleBinding = serde_json::from_value(value)?;
                Api::<RoleBinding>::namespaced(client.clone(), namespace)
                    .patch(&name, &apply, &Patch::Apply(&binding))
                    .await?;
            }
            other => anyhow::bail!("the RBAC file holds a {other}"),
        }
    }
    Ok(())
}

/// Whether a watch with `params` is allowed: a refusal is either the response or its first event.
async fn watch_allowed<K>(api: Api<K>, params: &WatchParams) -> Result<()>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let events = api.watch(params, "0").await?;
    let mut events = std::pin::pin!(events);
    if let Some(WatchEvent::Error(status)) = events.try_next().await? {
        anyhow::bail!("refused: {status:?}");
    }
    Ok(())
}

fn forbidden<T>(result: Result<T, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(status)) if status.code == 403)
}

#[tokio::test]
async fn the_shipped_rbac_is_enough_and_no_more() -> Result<()> {
    let env = testenv!();
    install_crds(env).await?;
    let keys = env.namespace("rbac-keys").await?;
    let app = env.namespace("rbac-app").await?;
    apply_shipped_rbac(env, keys.name(), &unique_name("seal-controller-test")).await?;
    let work = tempfile::tempdir()?;
    let kubeconfig = work.path().join("kubeconfig");
    env.service_account_kubeconfig(keys.name(), "seal-controller", &kubeconfig)?;
    let recovery = PrivateKey::generate(KeySize::Rsa2048)?;
    let recovery_cert = work.path().join("recovery.crt");
    std::fs::write(
        &recovery_cert,
        Certificate::self_signed(&recovery, SystemTime::now(), Duration::from_secs(3600))?.to_pem(),
    )?;

    let controller = ControllerProcess::start_with(
        &kubeconfig,
        keys.name(),
        "seal-controller-0",
        // Its own namespace only: a controller of every namespace would write its failures into
        // the status of every other test's SealedSecret on this API server. Its right to watch
        // every namespace, which the chart's default uses, is checked directly below.
        &[
            "--role",
            "unsealer",
            "--namespaces",
            app.name(),
            "--backup-cert",
            recovery_cert.to_str().context("utf-8")?,
        ],
    )
    .await?;
    let certificate = first_key(&keys).await?;
    app.api::<SealedSecret>()
        .create(
            &PostParams::default(),
            &sealed(
                &certificate,
                app.name(),
                "db",
                &[("password", "rbac-value")],
            )?,
        )
        .await?;
    let secrets = app.api::<Secret>();
    eventually("the Secret is unsealed", LIMIT, || {
        let secrets = secrets.clone();
        async move {
            let secret = secrets.get_opt("db").await?;
            Ok(secret.filter(|s| item(s, "password").as_deref() == Some(b"rbac-value".as_slice())))
        }
    })
    .await?;
    let api = app.api::<SealedSecret>();
    eventually("the status says Ready", LIMIT, || {
        let api = api.clone();
        async move {
            let sealed = api.get("db").await?;
            let ready = sealed.status.is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            });
            Ok(ready.then_some(()))
        }
    })
    .await?;
    let events = app.api::<Event>();
    eventually("an Event was recorded", LIMIT, || {
        let events = events.clone();
        async move {
            Ok(events
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .next())
        }
    })
    .await?;
    let configmaps = keys.api::<ConfigMap>();
    eventually("the keys are backed up", LIMIT, || {
        let configmaps = configmaps.clone();
        async move { Ok(configmaps.get_opt(BACKUP_CONFIGMAP).await?) }
    })
    .await?;
    let lease = keys.api::<Lease>().get("seal-controller").await?;
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("seal-controller-0")
    );
    let log = controller.log();
    assert!(
        !log.contains("forbidden") && !log.contains("Forbidden"),
        "a request was refused:\n{log}"
    );

    let user = format!("system:serviceaccount:{}:seal-controller", keys.name());
    let limited: Client = env.kube_client_as(&user).await?;
    // Enough for every namespace too: what the controller lists and watches without
    // `--namespaces`.
    let everywhere = WatchParams::default().timeout(1);
    Api::<SealedSecret>::all(limited.clone())
        .list(&ListParams::default().limit(1))
        .await
        .context("listing SealedSecrets in every namespace")?;
    watch_allowed(Api::<SealedSecret>::all(limited.clone()), &everywhere)
        .await
        .context("watching SealedSecrets in every namespace")?;
    let produced = ListParams::default()
        .labels(SEALED_SECRET_UID_LABEL)
        .limit(1);
    Api::<Secret>::all(limited.clone())
        .list(&produced)
        .await
        .context("listing produced Secrets in every namespace")?;
    let labelled = everywhere.clone().labels(SEALED_SECRET_UID_LABEL);
    watch_allowed(Api::<Secret>::all(limited.clone()), &labelled)
        .await
        .context("watching produced Secrets in every namespace")?;

    // No more than needed.
    assert!(forbidden(
        Api::<ConfigMap>::namespaced(limited.clone(), app.name())
            .list(&ListParams::default())
            .await
    ));
    assert!(forbidden(
        Api::<Pod>::all(limited.clone())
            .list(&ListParams::default())
            .await
    ));
    assert!(forbidden(
        Api::<SealedSecret>::namespaced(limited.clone(), app.name())
            .delete("db", &DeleteParams::default())
            .await
    ));
    // The unsealer talks to no provider: no store, no ExternalSecret, no token of anyone's.
    assert!(forbidden(
        Api::<ExternalSecret>::all(limited.clone())
            .list(&ListParams::default())
            .await
    ));
    let request: TokenRequest = serde_json::from_value(serde_json::json!({"spec": {}}))?;
    assert!(forbidden(
        Api::<ServiceAccount>::namespaced(limited, keys.name())
            .create_token_request("seal-syncer", &PostParams::default(), &request)
            .await
    ));
    // And the syncer has no right over SealedSecrets or the key backup.
    let syncer = format!("system:serviceaccount:{}:seal-syncer", keys.name());
    let syncer: Client = env.kube_client_as(&syncer).await?;
    assert!(forbidden(
        Api::<SealedSecret>::all(syncer.clone())
            .list(&ListParams::default())
            .await
    ));
    assert!(
        watch_allowed(Api::<SealedSecret>::all(syncer.clone()), &everywhere)
            .await
            .is_err()
    );
    assert!(forbidden(
        Api::<ConfigMap>::namespaced(syncer, keys.name())
            .get(BACKUP_CONFIGMAP)
            .await
    ));
    Ok(())
}
