//! Failure drills in pods: what happens in clusters, done to the test environment for real. The
//! API server goes away and comes back while the controller's pods and ml-api run; OpenBao cannot
//! be reached from the cluster for a minute while ml-api's agent keeps the last good value.
//!
//! Each drill takes a server away from everything that runs, so these tests are `#[ignore]`d in
//! the workspace run and `cargo xtask test` runs them in a step of their own ("failure drills"),
//! one at a time, once every other test is done with the environment. A server is taken away with `cargo xtask testenv
//! stop` and brought back, as it was started, with `cargo xtask testenv start`.
//!
//! OpenBao's dev server keeps its data in memory: killing the process would lose the state a
//! drill checks against. The drill stops its in-cluster endpoint instead (the TLS listener behind
//! the `openbao.seal-testenv` Service), so from every pod OpenBao is down exactly as a dead server
//! is (connections refused), and its data is there when it comes back.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{ListParams, Patch, PatchParams};
use seal_testenv::{TestEnv, eventually, testenv, unique_name};
use serde_json::json;

use crate::cluster::install_crds;
use crate::pods::{
    REGISTRY_TOKEN_FILE, assert_marker_nowhere, digest, fetch_cert, install_chart,
    install_controller, install_ml_api_with_agent, name, ready_pods, restricted, seal_image,
    seal_items, workload, workload_report,
};
use crate::{ok, root, workspace_binary};

/// `cargo xtask testenv stop|start SERVER` on the running environment.
fn testenv_server(env: &TestEnv, action: &str, server: &str) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["run", "--quiet", "--locked", "-p", "xtask", "--", "testenv"])
        .args([action, server])
        .current_dir(root())
        .envs(env.vars())
        .output()?;
    ok(&output, &format!("cargo xtask testenv {action} {server}")).map(drop)
}

/// How many times the containers of `pod` have restarted.
async fn restarts(pods: &kube::Api<Pod>, pod: &str) -> Result<i32> {
    let pod = pods.get(pod).await?;
    let status = pod.status.context("status")?;
    Ok(status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .map(|c| c.restart_count)
        .sum())
}

#[tokio::test]
#[ignore = "takes the API server away: `cargo xtask test` runs it in its failure-drills step"]
async fn the_controller_and_ml_api_ride_out_an_api_server_restart() -> Result<()> {
    let helm = helm!();
    let env = testenv!();
    install_crds(env).await?;
    seal_image(env)?;
    let keys = restricted(env, "drill-keys").await?;
    let app = restricted(env, "drill-app").await?;
    let (controller, _controller) =
        install_controller(env, helm, keys.name(), app.name(), json!({}))?;
    let work = tempfile::tempdir()?;
    let seal = workspace_binary("seal-cli", "seal")?;
    let cert = work.path().join("cert.pem");
    fetch_cert(env, keys.name(), &controller, &cert)?;
    let marker = unique_name("m");
    let value = |round: &str| vec![("MODEL_REGISTRY_TOKEN", format!("{round}-{marker}"))];
    let spec = seal_items(
        &seal,
        &cert,
        app.name(),
        "ml-api-credentials",
        &value("one"),
    )?;
    let overrides = workload(json!({
        "replicaCount": 1,
        "autoscaling": {"enabled": false},
        "env": {"WORKLOAD_DIGEST_ENV": "MODEL_REGISTRY_TOKEN"},
        "secrets": {"source": "sealedSecret", "sealedSecret": {
            "certificateFingerprint": spec["certificateFingerprint"],
            "encryptedData": spec["encryptedData"],
        }},
    }));
    let _ml_api = install_chart(env, helm, "ml-api", "ml-api", app.name(), &overrides, true)?;
    let pods = app.api::<Pod>();
    let first_pods = ready_pods(&pods, "ml-api").await?;
    assert_eq!(first_pods.len(), 1, "{first_pods:?}");

    // The API server goes away for 15 s (every watch breaks, no Lease can be renewed) and comes
    // back on the same address with the same data.
    testenv_server(env, "stop", "kube-apiserver")?;
    tokio::time::sleep(Duration::from_secs(15)).await;
    testenv_server(env, "start", "kube-apiserver")?;
    let namespaces: kube::Api<Namespace> = kube::Api::all(env.kube_client().await?);
    let app_name = app.name().to_owned();
    eventually(
        "the API server serves again",
        Duration::from_secs(90),
        || {
            let namespaces = namespaces.clone();
            let app_name = app_name.clone();
            async move { Ok(namespaces.get(&app_name).await.ok().map(drop)) }
        },
    )
    .await?;

    // Each role leads again, from one of its pods.
    let leases = keys.api::<Lease>();
    let key_pods = keys.api::<Pod>();
    eventually(
        "each role has a leader among its pods",
        Duration::from_secs(120),
        || {
            let leases = leases.clone();
            let key_pods = key_pods.clone();
            async move {
                let pods: Vec<String> = key_pods
                    .list(&ListParams::default())
                    .await?
                    .items
                    .iter()
                    .map(name)
                    .collect();
                let holders: Vec<String> = leases
                    .list(&ListParams::default())
                    .await?
                    .items
                    .into_iter()
                    .filter_map(|l| l.spec?.holder_identity)
                    .filter(|h| pods.contains(h))
                    .collect();
                Ok((holders.len() == 2).then_some(()))
            }
        },
    )
    .await?;

    // The app kept its pod and its values through the outage.
    assert_eq!(ready_pods(&pods, "ml-api").await?, first_pods);
    let expect = |round: &str| json!({"MODEL_REGISTRY_TOKEN": digest(&value(round)[0].1)});
    let report = workload_report(env, app.name(), &first_pods[0]).await?;
    assert_eq!(report["env"], expect("one"));

    // And the controller still does its job: a changed value is unsealed and rolls ml-api.
    let spec = seal_items(
        &seal,
        &cert,
        app.name(),
        "ml-api-credentials",
        &value("two"),
    )?;
    app.api::<seal_api::SealedSecret>()
        .patch(
            "ml-api-credentials",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"encryptedData": spec["encryptedData"]}})),
        )
        .await?;
    let rolled = eventually(
        "ml-api rolls with the new value",
        Duration::from_secs(180),
        || {
            let pods = pods.clone();
            let old = first_pods.clone();
            async move {
                let ready = ready_pods(&pods, "ml-api").await?;
                Ok(match ready.as_slice() {
                    [pod] if !old.contains(pod) => Some(pod.clone()),
                    _ => None,
                })
            }
        },
    )
    .await?;
    let report = workload_report(env, app.name(), &rolled).await?;
    if report["env"] != expect("two") {
        // Which roll made this pod (the Secret version in its template's checksum annotation),
        // against the Secret's version now: tells a roll before the new value from a node that
        // started the pod with a stale copy of the Secret.
        let pod = pods.get(&rolled).await?;
        let secret = app
            .api::<k8s_openapi::api::core::v1::Secret>()
            .get("ml-api-credentials")
            .await?;
        panic!(
            "the rolled pod reports {} (round one: {}), expected round two; its annotations: \
             {:?}; the Secret's resourceVersion now: {:?}",
            report["env"],
            expect("one"),
            pod.metadata.annotations,
            secret.metadata.resource_version
        );
    }
    assert_marker_nowhere(env, &[keys.name(), app.name()], &marker).await?;
    Ok(())
}

#[tokio::test]
#[ignore = "takes OpenBao away for a minute: `cargo xtask test` runs it in its failure-drills step"]
async fn the_agent_keeps_the_last_good_value_while_openbao_is_down_for_a_minute() -> Result<()> {
    let helm = helm!();
    let env = testenv!();
    seal_image(env)?;
    let app = restricted(env, "drill-agent").await?;
    let vault = env.vault_client(None)?;
    let mount = env.var("SEAL_TESTENV_VAULT_KV2_MOUNT");
    let path = format!("ml/{}/registry", app.name());
    let marker = unique_name("token");
    let token = |round: &str| format!("{round}-{marker}");
    let set = |round: &str| {
        let value = std::collections::HashMap::from([("token", token(round))]);
        let vault = &vault;
        let path = path.clone();
        async move {
            vaultrs::kv2::set(vault, mount, &path, &value)
                .await
                .map(drop)
        }
    };
    set("one").await?;
    let (_ml_api, pod) = install_ml_api_with_agent(env, helm, app.name(), "sidecar", &path).await?;
    let pods = app.api::<Pod>();
    let file = |report: &serde_json::Value| report["files"][REGISTRY_TOKEN_FILE].clone();
    let report = workload_report(env, app.name(), &pod).await?;
    assert_eq!(file(&report), json!(digest(&token("one"))));
    let restarts_before = restarts(&pods, &pod).await?;

    // OpenBao is unreachable from the cluster for a minute; meanwhile its value changes (written
    // on the host side, where it still runs). The app keeps reading the last good value, and no
    // container is restarted (the agent's liveness does not depend on Vault).
    testenv_server(env, "stop", "openbao-tls")?;
    let outage = Instant::now();
    set("two").await?;
    let result = async {
        while outage.elapsed() < Duration::from_secs(60) {
            let report = workload_report(env, app.name(), &pod).await?;
            assert_eq!(
                file(&report),
                json!(digest(&token("one"))),
                "the file changed while OpenBao was down"
            );
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        anyhow::Ok(())
    }
    .await;
    testenv_server(env, "start", "openbao-tls")?;
    result?;
    assert_eq!(
        restarts(&pods, &pod).await?,
        restarts_before,
        "a container restarted during the outage"
    );

    // OpenBao is back: the agent picks up the value written during the outage.
    let expected = json!(digest(&token("two")));
    let app_name = app.name().to_owned();
    eventually(
        "the agent refreshes after the outage",
        Duration::from_secs(60),
        || {
            let pod = pod.clone();
            let expected = expected.clone();
            let app_name = app_name.clone();
            async move {
                let report = workload_report(env, &app_name, &pod).await?;
                Ok((file(&report) == expected).then_some(()))
            }
        },
    )
    .await?;
    assert_eq!(ready_pods(&pods, "ml-api").await?, [pod]);
    assert_marker_nowhere(env, &[app.name()], &marker).await?;
    Ok(())
}
