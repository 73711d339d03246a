//! A restart in the middle of a bulk apply: 1,000 SealedSecrets, the controller killed once part of
//! them are unsealed, a new process started; everything converges, nothing is lost.

use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::ListParams;
use seal_testenv::{eventually, testenv};

use crate::support::{
    ControllerProcess, count_produced, create_many, first_key, install_crds, item,
};

const OBJECTS: usize = 1000;

#[tokio::test]
async fn a_restart_mid_bulk_converges_with_nothing_lost() -> Result<()> {
    let env = testenv!();
    install_crds(env).await?;
    let keys = env.namespace("bulk-keys").await?;
    let app = env.namespace("bulk-app").await?;
    let args = [
        "--namespaces",
        app.name(),
        "--leader-elect-lease-duration",
        "3s",
    ];
    let mut first = ControllerProcess::start_as(env, keys.name(), "first", &args).await?;
    let certificate = first_key(&keys).await?;

    create_many(&app, &certificate, "b", OBJECTS).await?;
    eventually(
        "part of the bulk is unsealed",
        Duration::from_secs(120),
        || {
            let app = app.clone();
            async move { Ok((count_produced(&app).await? >= 100).then_some(())) }
        },
    )
    .await?;
    first.kill()?;
    let before = count_produced(&app).await?;
    eprintln!("killed the controller with {before} of {OBJECTS} Secrets written");
    assert!(
        before < OBJECTS,
        "the first process finished before it was killed"
    );

    let _second = ControllerProcess::start_as(env, keys.name(), "second", &args).await?;
    eventually("every Secret is written", Duration::from_secs(300), || {
        let app = app.clone();
        async move { Ok((count_produced(&app).await? == OBJECTS).then_some(())) }
    })
    .await?;
    let secrets = app.api::<Secret>().list(&ListParams::default()).await?;
    let mut found = 0;
    for secret in &secrets.items {
        if let Some(i) = secret.name_any().strip_prefix('b') {
            assert_eq!(item(secret, "v"), Some(format!("b-value-{i}").into_bytes()));
            found += 1;
        }
    }
    assert_eq!(found, OBJECTS);
    assert_eq!(
        keys.api::<Secret>()
            .list_metadata(&ListParams::default().labels("seal.dev/sealing-key"))
            .await?
            .items
            .len(),
        1,
        "the restart made another key"
    );
    Ok(())
}
