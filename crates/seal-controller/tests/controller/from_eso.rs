//! Moving from the External Secrets Operator: a Secret ESO made for its ExternalSecret is taken
//! over, without an annotation, by the seal ExternalSecret that `seal convert` made from it. The
//! values are not rewritten, ESO's owner reference goes, and deleting ESO's object afterwards
//! leaves the Secret where it is.
//!
//! ESO's controller does not run here: the Secret is made in the shape ESO gives it (its
//! `managed` label, its data-hash annotation, its controlling owner reference to a stored ESO
//! ExternalSecret), under a stand-in CRD of ESO's group and kind.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use seal_api::{ExternalSecret, SecretStore};
use seal_controller::protocols::rollout::checksum_annotation;
use seal_testenv::{eventually, testenv, unique_name};
use serde_json::json;

use crate::external::{
    aws_credentials, aws_store, create, events_text, install_all_crds, unscheduled_deployment,
    wait_reason,
};
use crate::support::ControllerProcess;

/// ESO's ExternalSecret kind with any content: enough to own a Secret.
fn eso_crd() -> Result<CustomResourceDefinition> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "externalsecrets.external-secrets.io"},
        "spec": {
            "group": "external-secrets.io", "scope": "Namespaced",
            "names": {
                "kind": "ExternalSecret", "listKind": "ExternalSecretList",
                "plural": "externalsecrets", "singular": "externalsecret",
            },
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object", "x-kubernetes-preserve-unknown-fields": true,
                }},
            }],
        },
    }))?)
}

#[tokio::test]
async fn a_secret_eso_made_is_taken_over_by_the_converted_external_secret() -> Result<()> {
    let env = testenv!();
    install_all_crds(env).await?;
    env.apply_crd(&eso_crd()?).await?;
    let keys = env.namespace("from-eso-keys").await?;
    let app = env.namespace("from-eso").await?;
    let secret_id = unique_name("from-eso-db");
    let password = unique_name("MARKER-eso");
    env.secretsmanager()
        .await
        .create_secret()
        .name(&secret_id)
        .secret_string(json!({"user": "app", "password": password}).to_string())
        .send()
        .await?;
    aws_credentials(env, &app).await?;
    create::<SecretStore>(&app, aws_store(env, "aws", env.var("AWS_ENDPOINT_URL"))).await?;

    // ESO's ExternalSecret as it is in git, stored, and the Secret ESO's controller made from it.
    let manifest = json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
        "metadata": {"name": "db", "namespace": app.name()},
        "spec": {
            "refreshInterval": "1h",
            "secretStoreRef": {"kind": "SecretStore", "name": "aws"},
            "target": {"name": "db", "creationPolicy": "Owner", "deletionPolicy": "Retain"},
            "data": [
                {"secretKey": "user", "remoteRef": {"key": secret_id, "property": "user"}},
                {"secretKey": "password", "remoteRef": {"key": secret_id, "property": "password"}},
            ],
        },
    });
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "external-secrets.io",
        "v1",
        "ExternalSecret",
    ));
    let esos: Api<DynamicObject> =
        Api::namespaced_with(env.kube_client().await?, app.name(), &resource);
    let eso = esos
        .create(
            &PostParams::default(),
            &serde_json::from_value(manifest.clone())?,
        )
        .await?;
    let data = BTreeMap::from([
        ("user".to_owned(), ByteString(b"app".to_vec())),
        (
            "password".to_owned(),
            ByteString(password.as_bytes().to_vec()),
        ),
    ]);
    let made = app
        .api::<Secret>()
        .create(
            &PostParams::default(),
            &Secret {
                metadata: ObjectMeta {
                    name: Some("db".into()),
                    labels: Some(BTreeMap::from([(
                        "reconcile.external-secrets.io/managed".to_owned(),
                        "true".to_owned(),
                    )])),
                    annotations: Some(BTreeMap::from([(
                        "reconcile.external-secrets.io/data-hash".to_owned(),
                        "0f4e6b0d1e2c3a4b5c6d7e8f90a1b2c3".to_owned(),
                    )])),
                    owner_references: Some(vec![OwnerReference {
                        api_version: "external-secrets.io/v1".into(),
                        kind: "ExternalSecret".into(),
                        name: "db".into(),
                        uid: eso.uid().context("ESO's object has no uid")?,
                        controller: Some(true),
                        block_owner_deletion: Some(true),
                    }]),
                    ..ObjectMeta::default()
                },
                data: Some(data.clone()),
                type_: Some("Opaque".into()),
                ..Secret::default()
            },
        )
        .await?;

    // A workload that rolls when the values change; they will not.
    unscheduled_deployment(&app, "web").await?;

    // `seal convert`'s output, with a rollout target added, applied beside ESO's: the controller
    // takes the Secret over.
    let mut converted = seal_api::eso::from_eso(&manifest)?;
    converted["spec"]["rolloutRestartTargets"] = json!([{"kind": "Deployment", "name": "web"}]);
    create::<ExternalSecret>(&app, converted).await?;
    let controller = ControllerProcess::start(
        env,
        keys.name(),
        &["--namespaces", app.name(), "--leader-elect=false"],
    )
    .await?;
    wait_reason(&app, "db", "SecretSynced").await?;
    let taken = app.api::<Secret>().get("db").await?;
    assert_eq!(taken.data, Some(data), "the values are what ESO wrote");
    let owners = taken.owner_references();
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!(
        (owners[0].api_version.as_str(), owners[0].kind.as_str()),
        ("seal.dev/v1alpha1", "ExternalSecret")
    );
    assert_eq!(owners[0].controller, Some(true));
    assert_ne!(taken.resource_version(), made.resource_version());
    let template = app
        .api::<Deployment>()
        .get("web")
        .await?
        .spec
        .template
        .metadata;
    let annotations = template.and_then(|m| m.annotations).unwrap_or_default();
    assert!(
        !annotations.contains_key(&checksum_annotation("db")),
        "the takeover kept the values, so nothing rolls: {annotations:?}"
    );

    // ESO's object goes, in the foreground: the garbage collector deletes whatever still
    // depends on it before the object itself is gone. The Secret no longer does.
    esos.delete("db", &DeleteParams::foreground()).await?;
    eventually(
        "ESO's ExternalSecret is gone",
        Duration::from_secs(60),
        || {
            let esos = esos.clone();
            async move { Ok(esos.get_opt("db").await?.is_none().then_some(())) }
        },
    )
    .await?;
    let Some(kept) = app.api::<Secret>().get_opt("db").await? else {
        bail!("the Secret went with ESO's ExternalSecret");
    };
    assert_eq!(kept.uid(), made.uid(), "the same Secret, never recreated");

    // The value is in the Secret only: not in the log, the Events, the status or the metrics.
    let status = serde_json::to_string(&app.api::<ExternalSecret>().get("db").await?.status)?;
    for (what, text) in [
        ("log", controller.log()),
        ("Events", events_text(&app).await?),
        ("status", status),
        ("metrics", controller.scrape()?),
    ] {
        assert!(!text.contains(&password), "the value is in the {what}");
    }
    Ok(())
}
