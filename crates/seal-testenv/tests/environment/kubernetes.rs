//! The kube-apiserver and kube-controller-manager: objects, CRDs, server-side apply, watches,
//! garbage collection, namespace deletion and RBAC.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::TryStreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    DeleteParams, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Api, Resource, ResourceExt};

use crate::{eventually, testenv};

const FIELD_MANAGER: &str = "seal-testenv-test";

fn secret(name: &str, key: &str, value: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            key.to_owned(),
            ByteString(value.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

#[tokio::test]
async fn a_secret_is_created_in_a_fresh_namespace_and_a_watch_sees_a_server_side_apply()
-> Result<()> {
    let env = testenv!();
    let ns = env.namespace("env-watch").await?;
    let secrets = ns.api::<Secret>();
    let created = secrets
        .create(&PostParams::default(), &secret("db", "password", "one"))
        .await?;
    let read = secrets.get("db").await?;
    assert_eq!(read.uid(), created.uid());
    assert_eq!(read.data.unwrap()["password"].0, b"one");

    let since = created.resource_version().context("no resourceVersion")?;
    let watch = secrets
        .watch(&WatchParams::default().fields("metadata.name=db"), &since)
        .await?;
    let mut watch = Box::pin(watch);

    let mut applied = secret("db", "password", "two");
    applied.metadata.labels = Some(BTreeMap::from([("app".into(), "ml-api".into())]));
    let patched = secrets
        .patch(
            "db",
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&applied),
        )
        .await?;
    assert_eq!(patched.labels()["app"], "ml-api");
    let managers: Vec<_> = patched
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(managers.iter().any(|m| m == FIELD_MANAGER), "{managers:?}");

    let event = tokio::time::timeout(Duration::from_secs(30), watch.try_next())
        .await
        .context("no watch event within 30 s")??
        .context("the watch ended")?;
    match event {
        WatchEvent::Modified(seen) => {
            assert_eq!(seen.data.unwrap()["password"].0, b"two");
        }
        other => bail!("expected Modified, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn the_sealed_secret_crd_is_accepted_and_its_objects_are_served() -> Result<()> {
    let env = testenv!();
    let client = env.kube_client().await?;
    let crd: CustomResourceDefinition = serde_yaml::from_str(&seal_api::crd_yaml())?;
    let name = crd.name_any();
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    // Server-side apply is idempotent, so parallel tests and later runs may all apply it.
    crds.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&crd),
    )
    .await?;
    eventually("the CRD is Established", Duration::from_secs(30), || {
        let crds = crds.clone();
        let name = name.clone();
        async move {
            let crd = crds.get(&name).await?;
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            Ok(established.then_some(()))
        }
    })
    .await?;

    let ns = env.namespace("env-crd").await?;
    let gvk = GroupVersionKind::gvk(
        seal_api::SealedSecret::group(&()).as_ref(),
        seal_api::SealedSecret::version(&()).as_ref(),
        seal_api::SealedSecret::kind(&()).as_ref(),
    );
    let resource = ApiResource::from_gvk(&gvk);
    let api = Api::<DynamicObject>::namespaced_with(client, ns.name(), &resource);
    let object: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": {"name": "db"},
        "spec": {"encryptedData": {"password": "AgBy3i4OJSWK+PiTySYZZA=="}},
    }))?;
    api.create(&PostParams::default(), &object).await?;
    let read = api.get("db").await?;
    assert_eq!(
        read.data["spec"]["encryptedData"]["password"],
        "AgBy3i4OJSWK+PiTySYZZA=="
    );

    // The structural schema is enforced: a string where an object belongs is refused.
    let invalid: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": {"name": "bad"},
        "spec": {"encryptedData": "not-a-map"},
    }))?;
    let refused = api.create(&PostParams::default(), &invalid).await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(s)) if s.code == 422),
        "{refused:?}"
    );
    Ok(())
}

#[tokio::test]
async fn garbage_collection_deletes_a_secret_owned_by_a_deleted_config_map() -> Result<()> {
    let env = testenv!();
    let ns = env.namespace("env-gc").await?;
    let config_maps = ns.api::<ConfigMap>();
    let owner = config_maps
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some("owner".into()),
                    ..ObjectMeta::default()
                },
                ..ConfigMap::default()
            },
        )
        .await?;
    let mut dependent = secret("owned", "k", "v");
    dependent.metadata.owner_references = Some(vec![OwnerReference {
        api_version: ConfigMap::api_version(&()).into_owned(),
        kind: ConfigMap::kind(&()).into_owned(),
        name: owner.name_any(),
        uid: owner.uid().context("no uid")?,
        ..OwnerReference::default()
    }]);
    let secrets = ns.api::<Secret>();
    secrets.create(&PostParams::default(), &dependent).await?;
    secrets
        .create(&PostParams::default(), &secret("bystander", "k", "v"))
        .await?;

    config_maps
        .delete("owner", &DeleteParams::background())
        .await?;
    eventually(
        "the owned Secret is garbage-collected",
        Duration::from_secs(60),
        || {
            let secrets = secrets.clone();
            async move { Ok(secrets.get_opt("owned").await?.is_none().then_some(())) }
        },
    )
    .await?;
    assert!(secrets.get_opt("bystander").await?.is_some());
    Ok(())
}

#[tokio::test]
async fn a_deleted_namespace_is_emptied_and_removed_by_the_controller_manager() -> Result<()> {
    let env = testenv!();
    let ns = env.namespace("env-nsdel").await?;
    ns.api::<Secret>()
        .create(&PostParams::default(), &secret("s", "k", "v"))
        .await?;
    let namespaces = Api::<Namespace>::all(ns.client());
    namespaces
        .delete(ns.name(), &DeleteParams::default())
        .await?;
    eventually(
        "the namespace is finalized and gone",
        Duration::from_secs(60),
        || {
            let namespaces = namespaces.clone();
            let name = ns.name().to_owned();
            async move { Ok(namespaces.get_opt(&name).await?.is_none().then_some(())) }
        },
    )
    .await
}

#[tokio::test]
async fn a_pod_runs_on_the_node_and_a_missing_image_is_never_asked_of_a_registry() -> Result<()> {
    let env = testenv!();
    let ns = env.namespace("env-node").await?;
    let pods = ns.api::<Pod>();
    let pod = |name: &str, image: &str, policy: &str| -> Result<Pod> {
        Ok(serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": image, "imagePullPolicy": policy}]},
        }))?)
    };
    // The environment's own image runs (nothing is pulled).
    let pause = env.var("SEAL_TESTENV_PAUSE_IMAGE");
    pods.create(&PostParams::default(), &pod("runs", pause, "Never")?)
        .await?;
    eventually("the pod runs", Duration::from_secs(60), || {
        let pods = pods.clone();
        async move {
            let phase = pods.get("runs").await?.status.and_then(|s| s.phase);
            Ok((phase.as_deref() == Some("Running")).then_some(()))
        }
    })
    .await?;
    // An image the node does not have is asked of a closed port on loopback, never of a registry
    // or a name server off the machine.
    pods.create(
        &PostParams::default(),
        &pod("pulls", "registry.example.com/app:1", "Always")?,
    )
    .await?;
    let events = ns.api::<Event>();
    let message = eventually("the pull fails", Duration::from_secs(60), || {
        let events = events.clone();
        async move {
            Ok(events
                .list(&ListParams::default().fields("involvedObject.name=pulls"))
                .await?
                .items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("Failed"))
                .and_then(|e| e.message))
        }
    })
    .await?;
    assert!(
        message.contains("http://127.0.0.1:9/v2/app/manifests/1?ns=registry.example.com"),
        "{message}"
    );
    Ok(())
}

#[tokio::test]
async fn rbac_refuses_a_service_account_until_a_role_binding_allows_it() -> Result<()> {
    let env = testenv!();
    let ns = env.namespace("env-rbac").await?;
    ns.api::<ServiceAccount>()
        .create(
            &PostParams::default(),
            &ServiceAccount {
                metadata: ObjectMeta {
                    name: Some("reader".into()),
                    ..ObjectMeta::default()
                },
                ..ServiceAccount::default()
            },
        )
        .await?;
    let user = format!("system:serviceaccount:{}:reader", ns.name());
    let as_reader = Api::<Secret>::namespaced(env.kube_client_as(&user).await?, ns.name());

    let refused = as_reader.list(&ListParams::default()).await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(s)) if s.code == 403),
        "{refused:?}"
    );

    ns.api::<Role>()
        .create(
            &PostParams::default(),
            &Role {
                metadata: ObjectMeta {
                    name: Some("secret-reader".into()),
                    ..ObjectMeta::default()
                },
                rules: Some(vec![PolicyRule {
                    api_groups: Some(vec![String::new()]),
                    resources: Some(vec!["secrets".into()]),
                    verbs: vec!["get".into(), "list".into()],
                    ..PolicyRule::default()
                }]),
            },
        )
        .await?;
    ns.api::<RoleBinding>()
        .create(
            &PostParams::default(),
            &RoleBinding {
                metadata: ObjectMeta {
                    name: Some("reader-reads-secrets".into()),
                    ..ObjectMeta::default()
                },
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "Role".into(),
                    name: "secret-reader".into(),
                },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".into(),
                    name: "reader".into(),
                    namespace: Some(ns.name().to_owned()),
                    ..Subject::default()
                }]),
            },
        )
        .await?;
    // The authorizer's informer sees the binding within moments.
    eventually(
        "the RoleBinding takes effect",
        Duration::from_secs(30),
        || {
            let as_reader = as_reader.clone();
            async move { Ok(as_reader.list(&ListParams::default()).await.ok()) }
        },
    )
    .await?;
    // Still only what the Role grants: writing stays refused.
    let write = as_reader
        .create(&PostParams::default(), &secret("x", "k", "v"))
        .await;
    assert!(
        matches!(&write, Err(kube::Error::Api(s)) if s.code == 403),
        "{write:?}"
    );
    Ok(())
}

/// A program that knows only in-cluster configuration runs as a ServiceAccount, reading the
/// credentials at the in-cluster path in a mount namespace of its own; the host's `/var/run` is
/// not touched.
#[tokio::test]
async fn a_program_runs_with_in_cluster_credentials_and_the_host_is_untouched() -> Result<()> {
    let env = testenv!();
    let host_secrets = std::path::Path::new("/var/run/secrets");
    let host_had_secrets = host_secrets.exists();
    let ns = env.namespace("in-cluster").await?;
    // A ClusterRole that may read ConfigMaps and nothing else.
    let role: k8s_openapi::api::rbac::v1::ClusterRole =
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "seal-testenv-read-configmaps"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
        }))?;
    Api::<k8s_openapi::api::rbac::v1::ClusterRole>::all(env.kube_client().await?)
        .patch(
            "seal-testenv-read-configmaps",
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&role),
        )
        .await?;
    let in_cluster = env
        .in_cluster(&ns, "probe", "seal-testenv-read-configmaps")
        .await?;
    let readable: ConfigMap =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "readable"}}))?;
    ns.api::<ConfigMap>()
        .create(&PostParams::default(), &readable)
        .await?;
    let home = std::env::temp_dir().join(seal_testenv::unique_name("in-cluster-home"));
    std::fs::create_dir_all(&home)?;
    // kubectl without a kubeconfig falls back to in-cluster configuration, as client-go does.
    let kubectl = |args: &[&str]| -> Result<std::process::Output> {
        Ok(in_cluster
            .command(std::path::Path::new(env.var("SEAL_TESTENV_KUBECTL")))
            .args(args)
            .env_remove("KUBECONFIG")
            .env("HOME", &home)
            .output()?)
    };
    let read = kubectl(&[
        "get",
        "configmap",
        "readable",
        "-n",
        ns.name(),
        "-o",
        "name",
    ])?;
    let stdout = String::from_utf8_lossy(&read.stdout);
    assert!(
        read.status.success() && stdout.trim() == "configmap/readable",
        "{stdout} {}",
        String::from_utf8_lossy(&read.stderr)
    );
    // The identity is the ServiceAccount's ("view"), not the test's administrator.
    let can = kubectl(&["auth", "can-i", "create", "secrets", "-n", ns.name()])?;
    assert_eq!(String::from_utf8_lossy(&can.stdout).trim(), "no");
    let whoami = kubectl(&[
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ])?;
    assert_eq!(
        String::from_utf8_lossy(&whoami.stdout).trim(),
        format!("system:serviceaccount:{}:probe", ns.name())
    );
    let _ = std::fs::remove_dir_all(&home);
    assert_eq!(
        host_secrets.exists(),
        host_had_secrets,
        "the host's /var/run/secrets changed"
    );
    Ok(())
}
