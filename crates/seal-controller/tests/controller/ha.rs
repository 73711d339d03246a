//! Two controller processes sharing one Lease: only the leader works; when it is killed mid-work
//! (SIGKILL, no chance to release), the other takes over once the Lease expires, and every Secret
//! ends up written exactly once: none lost, none written twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use futures::TryStreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::ListParams;
use kube::runtime::{WatchStreamExt, watcher};
use seal_api::SealedSecret;

use seal_api::names::SEALED_SECRET_UID_LABEL;
use seal_testenv::{TestNamespace, eventually, testenv};

use crate::support::{
    ControllerProcess, count_produced, create_many, first_key, install_crds, item, metric,
};

const OBJECTS: usize = 300;
const LEASE_SECONDS: u64 = 4;

async fn holder(keys: &TestNamespace) -> Result<Option<String>> {
    let lease = keys.api::<Lease>().get_opt("seal-controller").await?;
    Ok(lease.and_then(|l| l.spec?.holder_identity))
}

#[tokio::test]
async fn the_standby_takes_over_a_killed_leader_without_lost_or_repeated_writes() -> Result<()> {
    let env = testenv!();
    install_crds(env).await?;
    let keys = env.namespace("ha-keys").await?;
    let app = env.namespace("ha-app").await?;
    let lease = format!("{LEASE_SECONDS}s");
    let args = [
        "--namespaces",
        app.name(),
        "--leader-elect-lease-duration",
        &lease,
    ];
    let mut leader = ControllerProcess::start_as(env, keys.name(), "replica-a", &args).await?;
    let certificate = first_key(&keys).await?;
    eventually("replica-a leads", Duration::from_secs(30), || {
        let keys = keys.clone();
        async move { Ok((holder(&keys).await?.as_deref() == Some("replica-a")).then_some(())) }
    })
    .await?;
    let standby = ControllerProcess::start_as(env, keys.name(), "replica-b", &args).await?;

    // Every version of every produced Secret, as a watch sees them.
    let versions: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>> = Arc::default();
    let recorder = tokio::spawn({
        let versions = Arc::clone(&versions);
        let api = app.api::<Secret>();
        async move {
            let config = watcher::Config::default().labels(SEALED_SECRET_UID_LABEL);
            let mut secrets = std::pin::pin!(watcher(api, config).applied_objects());
            while let Ok(Some(secret)) = secrets.try_next().await {
                versions
                    .lock()
                    .unwrap()
                    .entry(secret.name_any())
                    .or_default()
                    .insert(secret.resource_version().unwrap_or_default());
            }
        }
    });

    let api = app.api::<SealedSecret>();
    create_many(&app, &certificate, "s", OBJECTS).await?;
    assert_eq!(
        metric(&standby.scrape()?, "seal_controller_leader"),
        Some(0.0),
        "the standby must not work"
    );
    eventually("the leader has started", Duration::from_secs(60), || {
        let app = app.clone();
        async move { Ok((count_produced(&app).await? >= 20).then_some(())) }
    })
    .await?;
    let written_before = count_produced(&app).await?;
    leader.kill()?;
    let killed = Instant::now();
    eventually("replica-b leads", Duration::from_secs(30), || {
        let url = standby.scrape();
        async move { Ok((metric(&url?, "seal_controller_leader") == Some(1.0)).then_some(())) }
    })
    .await?;
    let takeover = killed.elapsed();
    eprintln!(
        "killed the leader after {written_before} of {OBJECTS} Secrets; the standby led {:.1} s later (lease {LEASE_SECONDS} s)",
        takeover.as_secs_f64()
    );
    assert!(
        written_before < OBJECTS,
        "the leader finished before it was killed"
    );
    // The Lease runs out at most LEASE_SECONDS after the kill; the standby then waits up to 1 s
    // (jitter against a racing third replica) before taking it.
    assert!(
        takeover <= Duration::from_secs(LEASE_SECONDS) + Duration::from_millis(1500),
        "takeover took {takeover:?}"
    );
    assert_eq!(holder(&keys).await?.as_deref(), Some("replica-b"));

    eventually("every Secret is written", Duration::from_secs(120), || {
        let app = app.clone();
        async move { Ok((count_produced(&app).await? == OBJECTS).then_some(())) }
    })
    .await?;
    let secrets = app.api::<Secret>().list(&ListParams::default()).await?;
    for i in 0..OBJECTS {
        let secret = secrets
            .items
            .iter()
            .find(|s| s.name_any() == format!("s{i}"))
            .unwrap_or_else(|| panic!("s{i} is missing"));
        assert_eq!(item(secret, "v"), Some(format!("s-value-{i}").into_bytes()));
    }
    eventually(
        "every SealedSecret is Ready",
        Duration::from_secs(60),
        || {
            let api = api.clone();
            async move {
                let list = api.list(&ListParams::default()).await?;
                let ready = list.items.iter().all(|s| {
                    s.status.as_ref().is_some_and(|st| {
                        st.conditions
                            .iter()
                            .any(|c| c.type_ == "Ready" && c.status == "True")
                    })
                });
                Ok(ready.then_some(()))
            }
        },
    )
    .await?;
    // Let the watch catch up with the last writes, then look for any Secret written twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    recorder.abort();
    let versions = versions.lock().unwrap();
    assert_eq!(versions.len(), OBJECTS);
    let rewritten: Vec<_> = versions.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(
        rewritten.is_empty(),
        "written more than once: {rewritten:?}"
    );
    assert!(standby.log().contains("leading"));
    Ok(())
}
