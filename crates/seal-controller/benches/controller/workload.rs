//! The workload both contenders get: SealedSecrets of 3 items sealed to the newest key, in the
//! contender's flavour, created 16 at a time; Secrets counted from a watch; and the clean-up that
//! keeps one run from seeing another's objects.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DynamicObject, ListParams, PostParams};
use kube::core::PartialObjectMeta;
use seal_api::bitnami::to_bitnami;
use seal_api::sealing::{SealOptions, seal_secret};
use seal_testenv::{TestEnv, TestNamespace, secret_from_pairs};

use crate::UNRELATED;
use crate::contenders::{Contender, Keys};

/// `count` SealedSecrets `app-{i}` of 3 items in `namespace`, in the contender's flavour.
pub fn sealed_objects(
    contender: Contender,
    keys: &Keys,
    namespace: &str,
    count: usize,
) -> Result<Vec<serde_json::Value>> {
    (0..count)
        .map(|i| {
            let secret = secret_from_pairs(
                &format!("app-{i}"),
                namespace,
                &[
                    (
                        "DATABASE_URL",
                        &format!("postgres://app:{i:08}@db:5432/app"),
                    ),
                    ("BROKER_URL", &format!("amqp://app:{i:08}@mq:5672/app")),
                    ("API_TOKEN", &format!("token-{i:032}")),
                ],
            );
            let sealed = seal_secret(
                &secret,
                &SealOptions {
                    certificate: keys.newest(),
                    scope: None,
                    namespace: None,
                    name: None,
                    allow_empty_data: false,
                },
            )?;
            Ok(match contender {
                Contender::Seal => serde_json::to_value(&sealed)?,
                Contender::Bitnami => serde_json::to_value(to_bitnami(&sealed))?,
            })
        })
        .collect()
}

/// The contender's SealedSecrets in `ns`, as dynamic objects.
pub fn sealed_api(contender: Contender, ns: &TestNamespace) -> Api<DynamicObject> {
    let group = match contender {
        Contender::Seal => "seal.dev",
        Contender::Bitnami => "bitnami.com",
    };
    let resource = kube::api::ApiResource {
        group: group.into(),
        version: "v1alpha1".into(),
        api_version: format!("{group}/v1alpha1"),
        kind: "SealedSecret".into(),
        plural: "sealedsecrets".into(),
    };
    Api::namespaced_with(ns.client(), ns.name(), &resource)
}

/// Creates `objects` through `api`, 16 at a time.
pub async fn create(api: &Api<DynamicObject>, objects: Vec<serde_json::Value>) -> Result<()> {
    futures::stream::iter(objects)
        .map(|object| {
            let api = api.clone();
            async move {
                let object: DynamicObject = serde_json::from_value(object)?;
                anyhow::Ok(api.create(&PostParams::default(), &object).await?)
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// How many of the SealedSecrets of `api` say `Ready: True` (seal) or `Synced: True` (Bitnami)
/// for their current generation.
pub async fn count_ready(api: &Api<DynamicObject>, condition: &str) -> Result<usize> {
    let mut ready = 0;
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api.list(&params).await?;
        ready += page
            .items
            .iter()
            .filter(|object| {
                let generation = object.metadata.generation;
                let status = &object.data["status"];
                let current = status["observedGeneration"]
                    .as_i64()
                    .is_none_or(|g| Some(g) == generation);
                current
                    && status["conditions"].as_array().is_some_and(|conditions| {
                        conditions
                            .iter()
                            .any(|c| c["type"] == condition && c["status"] == "True")
                    })
            })
            .count();
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(ready),
        }
    }
}

/// Counts the distinct Secrets a watch of `secrets` has seen, into `present`; the first count is
/// sent once the watch is established, so nothing created after that is missed.
pub async fn count_secrets(
    secrets: Api<PartialObjectMeta<Secret>>,
    present: tokio::sync::watch::Sender<Option<usize>>,
) {
    let mut seen = std::collections::HashSet::new();
    let events = kube::runtime::watcher(secrets, kube::runtime::watcher::Config::default());
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        match event {
            Ok(kube::runtime::watcher::Event::InitDone) => {
                present.send_replace(Some(seen.len()));
            }
            Ok(
                kube::runtime::watcher::Event::Apply(secret)
                | kube::runtime::watcher::Event::InitApply(secret),
            ) => {
                seen.insert(secret.metadata.name.unwrap_or_default());
                present.send_replace(Some(seen.len()));
            }
            Ok(_) => {}
            Err(error) => eprintln!("  watching Secrets: {error}"),
        }
    }
}

/// Deletes the SealedSecrets of `api` and waits until they and their Secrets are gone.
pub async fn clear(api: &Api<DynamicObject>, secrets: &Api<Secret>) -> Result<()> {
    api.delete_collection(&kube::api::DeleteParams::default(), &ListParams::default())
        .await?;
    // No controller runs any more: deleting the Secrets here is what the garbage collector would
    // do, without waiting minutes for it to get through 10,000 owner references.
    secrets
        .delete_collection(&kube::api::DeleteParams::default(), &ListParams::default())
        .await?;
    let deadline = Instant::now() + Duration::from_secs(1800);
    while !secrets
        .list_metadata(&ListParams::default())
        .await?
        .items
        .is_empty()
        || !api
            .list_metadata(&ListParams::default())
            .await?
            .items
            .is_empty()
    {
        if Instant::now() > deadline {
            bail!("this run's objects were not gone within 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// Creates [`UNRELATED`] Secrets of 1 KiB elsewhere in the cluster.
pub async fn unrelated_secrets(env: &TestEnv) -> Result<()> {
    let ns = env.namespace("bench-unrelated").await?;
    let api = ns.api::<Secret>();
    let filler = "x".repeat(1024);
    futures::stream::iter(0..UNRELATED)
        .map(|i| {
            let api = api.clone();
            let secret =
                secret_from_pairs(&format!("unrelated-{i}"), ns.name(), &[("blob", &filler)]);
            async move { anyhow::Ok(api.create(&PostParams::default(), &secret).await?) }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}
