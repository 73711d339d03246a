//! The `seal-controller` binary as a process against the real API server: it makes a key on first
//! start, unseals a SealedSecret sealed with that key's certificate (with a Normal Event), puts
//! back a deleted Secret, follows an update, counts it in its metrics, and never logs a value.

use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use seal_api::SealedSecret;
use seal_testenv::{eventually, testenv};

use crate::support::{ControllerProcess, first_key, install_crds, item, metric, sealed};

const MARKER: &str = "process-marker-51c9";
const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn the_controller_process_unseals_restores_and_follows_updates() -> Result<()> {
    let env = testenv!();
    install_crds(env).await?;
    let keys_ns = env.namespace("ctl-keys").await?;
    let app_ns = env.namespace("ctl-app").await?;
    let mut running =
        ControllerProcess::start(env, keys_ns.name(), &["--namespaces", app_ns.name()]).await?;
    let certificate = first_key(&keys_ns).await?;

    let sealed_api = app_ns.api::<SealedSecret>();
    let secrets = app_ns.api::<Secret>();
    sealed_api
        .create(
            &PostParams::default(),
            &sealed(&certificate, app_ns.name(), "db", &[("password", MARKER)])?,
        )
        .await?;
    let wait_for = |expected: &'static str| {
        let secrets = secrets.clone();
        eventually("the Secret holds the sealed value", LIMIT, move || {
            let secrets = secrets.clone();
            async move {
                let secret = secrets.get_opt("db").await?;
                Ok(secret.filter(|s| item(s, "password").as_deref() == Some(expected.as_bytes())))
            }
        })
    };
    wait_for(MARKER).await?;

    secrets.delete("db", &DeleteParams::default()).await?;
    wait_for(MARKER).await?;

    let update = sealed(
        &certificate,
        app_ns.name(),
        "db",
        &[("password", "rotated-value")],
    )?;
    let patch = serde_json::json!({"spec": {"encryptedData": update.spec.encrypted_data}});
    sealed_api
        .patch("db", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    wait_for("rotated-value").await?;

    let status = eventually("the status is Ready", LIMIT, || {
        let sealed_api = sealed_api.clone();
        async move {
            let sealed = sealed_api.get("db").await?;
            let ready = sealed.status.as_ref().is_some_and(|s| {
                s.observed_generation == sealed.metadata.generation
                    && s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
            });
            Ok(ready.then_some(sealed.status))
        }
    })
    .await?;
    let status = serde_json::to_string(&status.expect("a status"))?;
    assert!(status.contains("holds the unsealed items"), "{status}");
    assert!(!status.contains(MARKER) && !status.contains("rotated-value"));

    let events = app_ns.api::<k8s_openapi::api::events::v1::Event>();
    let unsealed = eventually("an Unsealed Event", LIMIT, || {
        let events = events.clone();
        async move {
            let list = events.list(&ListParams::default()).await?;
            Ok(list
                .items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("Unsealed")))
        }
    })
    .await?;
    assert_eq!(unsealed.type_.as_deref(), Some("Normal"));
    assert!(!serde_json::to_string(&unsealed)?.contains(MARKER));

    let scrape = running.scrape()?;
    assert!(
        metric(&scrape, "seal_controller_unseal_requests_total").is_some_and(|n| n >= 3.0),
        "{scrape}"
    );
    assert_eq!(
        metric(&scrape, "seal_controller_keys"),
        Some(1.0),
        "{scrape}"
    );
    assert_eq!(
        metric(&scrape, "seal_controller_leader"),
        Some(1.0),
        "{scrape}"
    );
    assert!(
        scrape.contains("seal_controller_reconcile_duration_seconds_count"),
        "{scrape}"
    );
    assert!(
        !scrape.contains(MARKER) && !scrape.contains("rotated-value"),
        "a value reached the metrics"
    );

    let log = running.log();
    assert!(log.contains("unsealed"), "{log}");
    assert!(!log.contains(MARKER), "a value reached the log");
    assert!(!log.contains("rotated-value"), "a value reached the log");

    // SIGTERM: a clean exit that hands the Lease back at once.
    assert!(running.terminate()?.success(), "{}", running.log());
    let lease = keys_ns
        .api::<k8s_openapi::api::coordination::v1::Lease>()
        .get("seal-controller")
        .await?;
    assert_eq!(lease.spec.and_then(|s| s.holder_identity), None);
    Ok(())
}
