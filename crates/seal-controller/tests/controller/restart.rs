//! A restarted controller does no RSA work for Secrets that already hold what their SealedSecret
//! produces, and still puts back what was changed while it was away: an edited value, an edited
//! record, a record that is missing (a Secret made before records existed).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, ensure};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use seal_api::SealedSecret;
use seal_api::names::{SEALED_SECRET_UID_LABEL, UNSEALED_FROM_ANNOTATION};
use seal_testenv::{TestNamespace, eventually, testenv};

use crate::support::{ControllerProcess, first_key, install_crds, item, metric, sealed};

const LIMIT: Duration = Duration::from_secs(60);
const OBJECTS: usize = 5;
const ITEMS: usize = 3;

/// name -> (resourceVersion, record, item `a`) of every produced Secret in `ns`.
async fn produced(ns: &TestNamespace) -> Result<BTreeMap<String, (String, String, Vec<u8>)>> {
    let list = ns
        .api::<Secret>()
        .list(&ListParams::default().labels(SEALED_SECRET_UID_LABEL))
        .await?;
    Ok(list
        .items
        .into_iter()
        .map(|s| {
            let record = s
                .annotations()
                .get(UNSEALED_FROM_ANNOTATION)
                .cloned()
                .unwrap_or_default();
            let a = item(&s, "a").unwrap_or_default();
            (
                s.name_any(),
                (s.resource_version().unwrap_or_default(), record, a),
            )
        })
        .collect())
}

/// Waits until `process` knows `count` distinct SealedSecrets to be up to date (a count of
/// reconciles would count one object twice and miss another), then returns its RSA decryptions.
async fn decryptions_after(process: &ControllerProcess, count: usize) -> Result<f64> {
    eventually("every SealedSecret is reconciled", LIMIT, || async {
        let scrape = process.scrape()?;
        let reconciled = metric(&scrape, "seal_controller_sealedsecrets_settled").unwrap_or(0.0);
        #[allow(clippy::cast_precision_loss)]
        let done = reconciled >= count as f64;
        Ok(done.then(|| metric(&scrape, "seal_controller_rsa_decryptions_total")))
    })
    .await?
    .ok_or_else(|| anyhow::anyhow!("no seal_controller_rsa_decryptions_total"))
}

#[tokio::test]
async fn a_restart_proves_secrets_by_their_record_and_repairs_what_changed() -> Result<()> {
    let env = testenv!();
    install_crds(env).await?;
    let keys_ns = env.namespace("restart-keys").await?;
    let app_ns = env.namespace("restart-app").await?;
    let args = ["--namespaces", app_ns.name(), "--role", "unsealer"];
    let mut first = ControllerProcess::start(env, keys_ns.name(), &args).await?;
    let certificate = first_key(&keys_ns).await?;
    let sealed_api = app_ns.api::<SealedSecret>();
    for i in 0..OBJECTS {
        let items: Vec<(String, String)> = ["a", "b", "c"]
            .iter()
            .map(|k| ((*k).to_owned(), format!("{k}-value-{i}")))
            .collect();
        let pairs: Vec<(&str, &str)> = items
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        sealed_api
            .create(
                &PostParams::default(),
                &sealed(&certificate, app_ns.name(), &format!("s{i}"), &pairs)?,
            )
            .await?;
    }
    let before = eventually("every Secret is unsealed with a record", LIMIT, || async {
        let now = produced(&app_ns).await?;
        Ok(
            (now.len() == OBJECTS && now.values().all(|(_, record, _)| record.starts_with("v2:")))
                .then_some(now),
        )
    })
    .await?;
    #[allow(clippy::cast_precision_loss)]
    let all_items = (OBJECTS * ITEMS) as f64;
    let first_cost = decryptions_after(&first, OBJECTS).await?;
    ensure!(
        first_cost >= all_items,
        "first unseal decrypted only {first_cost}"
    );
    first.terminate()?;

    // While no controller runs: an edited value, an edited record, a removed record.
    let secrets: Api<Secret> = app_ns.api();
    let merge = |patch: serde_json::Value| Patch::Merge(patch);
    secrets
        .patch(
            "s0",
            &PatchParams::default(),
            &merge(serde_json::json!({"stringData": {"a": "tampered"}})),
        )
        .await?;
    let forged = format!("v2:0000000000000000:{}", "A".repeat(43));
    secrets
        .patch(
            "s1",
            &PatchParams::default(),
            &merge(serde_json::json!({"metadata": {"annotations": {UNSEALED_FROM_ANNOTATION: forged}}})),
        )
        .await?;
    secrets
        .patch(
            "s2",
            &PatchParams::default(),
            &merge(
                serde_json::json!({"metadata": {"annotations": {UNSEALED_FROM_ANNOTATION: null}}}),
            ),
        )
        .await?;
    let edited = produced(&app_ns).await?;

    let second = ControllerProcess::start(env, keys_ns.name(), &args).await?;
    let repaired = eventually("what changed is put back", LIMIT, || async {
        let now = produced(&app_ns).await?;
        let back = ["s0", "s1", "s2"]
            .iter()
            .all(|n| now[*n].1 == before[*n].1 && now[*n].2 == before[*n].2);
        Ok(back.then_some(now))
    })
    .await?;
    // Only the three changed Secrets were decrypted; the others were proven by their record.
    #[allow(clippy::cast_precision_loss)]
    let changed_items = (3 * ITEMS) as f64;
    let second_cost = decryptions_after(&second, OBJECTS).await?;
    ensure!(
        (second_cost - changed_items).abs() < f64::EPSILON,
        "the restart decrypted {second_cost} items, expected {changed_items}:\n{}",
        second.log()
    );
    for name in ["s3", "s4"] {
        ensure!(
            repaired[name].0 == edited[name].0,
            "{name} was written on restart"
        );
    }
    // s1 and s2 got their record back without a change of values: the record alone was written.
    for name in ["s1", "s2"] {
        ensure!(
            repaired[name].2 == edited[name].2,
            "{name}'s values changed"
        );
    }
    let after_repair = produced(&app_ns).await?;
    drop(second);

    // Nothing changed: a restart decrypts nothing and writes nothing.
    let third = ControllerProcess::start(env, keys_ns.name(), &args).await?;
    let third_cost = decryptions_after(&third, OBJECTS).await?;
    ensure!(
        third_cost == 0.0,
        "a restart with nothing changed decrypted {third_cost} items"
    );
    let not_ready: Vec<String> = sealed_api
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|s| {
            !s.status.as_ref().is_some_and(|st| {
                st.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
        })
        .map(|s| format!("{}: {:?}", s.name_any(), s.status))
        .collect();
    ensure!(
        not_ready.is_empty(),
        "not every SealedSecret is Ready: {not_ready:?}\n{}",
        third.log()
    );
    ensure!(
        produced(&app_ns).await? == after_repair,
        "a restart wrote a Secret"
    );
    ensure!(!third.log().contains("-value-"), "a value reached the log");
    Ok(())
}
