//! The move from Bitnami's controller as a platform team makes it (`examples/from-bitnami/`), with
//! Bitnami's controller v0.40.0 itself, run as in its pod ([`seal_testenv::InCluster`]): it makes
//! its key and unseals 100 SealedSecrets that kubeseal v0.40.0 sealed with its certificate;
//! seal-controller starts with Bitnami's keys and objects; Bitnami's controller stops. Every
//! Secret keeps its resourceVersion, a new object kubeseal sealed with the old certificate
//! unseals, and deleting a SealedSecret still deletes its Secret.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams, PostParams};
use seal_api::bitnami::BitnamiSealedSecret;
use seal_testenv::{InCluster, TestNamespace, eventually, testenv, unique_name};

use crate::support::{ControllerProcess, PeerProcess, metric};

/// How many SealedSecrets Bitnami's controller unseals before the move.
const OBJECTS: usize = 100;
const LIMIT: Duration = Duration::from_secs(120);

/// Starts Bitnami's controller as in its pod, its keys in `keys`, watching `app` only (other
/// tests' objects are not its business: one it cannot read stops its whole watch); it listens
/// on loopback ports of its own.
fn start_bitnami(
    in_cluster: &InCluster,
    binary: &Path,
    keys: &str,
    app: &str,
) -> Result<PeerProcess> {
    let port =
        |listener: std::net::TcpListener| -> Result<u16> { Ok(listener.local_addr()?.port()) };
    let api = port(std::net::TcpListener::bind("127.0.0.1:0")?)?;
    let metrics = port(std::net::TcpListener::bind("127.0.0.1:0")?)?;
    PeerProcess::spawn(
        in_cluster
            .command(binary)
            // Its client-side limit of 5 requests per second would make 100 objects take minutes.
            .arg("--kubeclient-qps=-1")
            .args(["--all-namespaces=false", "--additional-namespaces", app])
            .args(["--listen-addr", &format!("127.0.0.1:{api}")])
            .args(["--listen-metrics-addr", &format!("127.0.0.1:{metrics}")])
            .env("POD_NAMESPACE", keys),
        "Bitnami's controller",
    )
}

/// kubeseal v0.40.0 sealing Secret `name` (one item `token` = `value`) in `ns` with `cert`.
fn kubeseal(
    kubeseal: &Path,
    cert: &Path,
    ns: &str,
    name: &str,
    value: &str,
) -> Result<BitnamiSealedSecret> {
    use std::io::Write as _;
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\nstringData: {{token: {value}}}\n"
    );
    let mut child = Command::new(kubeseal)
        .arg("--cert")
        .arg(cert)
        .args(["-o", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("kubeseal's stdin")?
        .write_all(secret.as_bytes())?;
    let output = child.wait_with_output()?;
    ensure!(
        output.status.success(),
        "kubeseal: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// The resourceVersion of every Secret in `ns`, by name.
async fn versions(ns: &TestNamespace) -> Result<BTreeMap<String, String>> {
    Ok(ns
        .api::<Secret>()
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|s| (s.name_any(), s.resource_version().unwrap_or_default()))
        .collect())
}

/// How many of the Bitnami objects in `ns` say `Synced: True` for their current generation.
async fn synced(ns: &TestNamespace) -> Result<usize> {
    let objects = ns
        .api::<BitnamiSealedSecret>()
        .list(&ListParams::default())
        .await?;
    Ok(objects
        .items
        .iter()
        .filter(|o| {
            o.status.as_ref().is_some_and(|s| {
                s.observed_generation == o.metadata.generation
                    && s.conditions
                        .iter()
                        .any(|c| c.type_ == "Synced" && c.status == "True")
            })
        })
        .count())
}

#[tokio::test]
async fn a_cluster_moves_from_bitnamis_controller_without_a_secret_written() -> Result<()> {
    let env = testenv!();
    let Some(bitnami) = seal_testenv::peer(
        "SEAL_BITNAMI_CONTROLLER",
        "Bitnami's sealed-secrets controller v0.40.0",
    ) else {
        return Ok(());
    };
    let Some(kubeseal_binary) = seal_testenv::peer("SEAL_KUBESEAL", "kubeseal v0.40.0") else {
        return Ok(());
    };
    let (keys, app) = crate::bitnami::namespaces(env, "from-bitnami").await?;

    // Bitnami's controller, as in its pod; it makes its key in `keys`.
    let in_cluster = env
        .in_cluster(&keys, "sealed-secrets-controller", "cluster-admin")
        .await?;
    let mut theirs = start_bitnami(&in_cluster, &bitnami, keys.name(), app.name())?;
    let key_secrets = keys.api::<Secret>();
    let certificate = eventually("Bitnami's controller makes its key", LIMIT, || {
        let key_secrets = key_secrets.clone();
        async move {
            let listed = key_secrets
                .list(&ListParams::default().labels("sealedsecrets.bitnami.com/sealed-secrets-key"))
                .await?;
            Ok(listed
                .items
                .into_iter()
                .find_map(|s| s.data.and_then(|d| d.get("tls.crt").map(|c| c.0.clone()))))
        }
    })
    .await?;
    let dir = tempfile::tempdir()?;
    let cert = dir.path().join("bitnami.crt");
    std::fs::write(&cert, &certificate)?;

    // 100 SealedSecrets sealed by kubeseal with that certificate; Bitnami's controller unseals them.
    let objects = app.api::<BitnamiSealedSecret>();
    for i in 0..OBJECTS {
        let sealed = kubeseal(
            &kubeseal_binary,
            &cert,
            app.name(),
            &format!("app-{i}"),
            &unique_name("value"),
        )?;
        objects.create(&PostParams::default(), &sealed).await?;
    }
    let unsealed = eventually(
        "Bitnami's controller unseals every object",
        LIMIT,
        || async {
            Ok(
                (versions(&app).await?.len() >= OBJECTS && synced(&app).await? == OBJECTS)
                    .then_some(()),
            )
        },
    )
    .await;
    if let Err(error) = unsealed {
        bail!(
            "{error}: {} Secrets, {} Synced; Bitnami's log:\n{}",
            versions(&app).await?.len(),
            synced(&app).await?,
            theirs.log_tail()
        );
    }
    let before = versions(&app).await?;

    // seal-controller with Bitnami's keys and objects; once it has seen every one, Bitnami's
    // controller stops.
    let ours = ControllerProcess::start(
        env,
        keys.name(),
        &[
            "--namespaces",
            app.name(),
            "--role",
            "unsealer",
            "--import-bitnami-keys",
            "--seal-with-bitnami-key",
            "--bitnami-sealed-secrets",
        ],
    )
    .await?;
    eventually(
        "seal-controller has every object up to date",
        LIMIT,
        || async {
            let settled = metric(&ours.scrape()?, "seal_controller_sealedsecrets_settled");
            #[allow(clippy::cast_precision_loss)]
            Ok(settled.filter(|n| *n >= OBJECTS as f64).map(drop))
        },
    )
    .await?;
    // The certificate seal serves is Bitnami's, so `kubeseal --fetch-cert` gives the one users
    // already have.
    let (code, served) = crate::support::get(&format!("{}/v1/cert.pem", ours.api))?;
    ensure!(code == 200, "/v1/cert.pem answered {code}");
    let served = seal_core::Certificate::from_pem(served.as_bytes())?.fingerprint();
    let bitnamis = seal_core::Certificate::from_pem(&certificate)?.fingerprint();
    ensure!(
        served == bitnamis,
        "seal-controller serves {served}, Bitnami's key is {bitnamis}"
    );
    theirs.stop();

    // Nothing was written: every Secret is as Bitnami's controller left it.
    let after = versions(&app).await?;
    ensure!(
        after == before,
        "Secrets changed: before {before:?}, after {after:?}"
    );
    ensure!(synced(&app).await? == OBJECTS, "not every object is Synced");

    // An object kubeseal sealed with the old certificate unseals.
    let value = unique_name("new-value");
    let new = kubeseal(&kubeseal_binary, &cert, app.name(), "app-new", &value)?;
    objects.create(&PostParams::default(), &new).await?;
    let secrets = app.api::<Secret>();
    let unsealed = eventually(
        "seal-controller unseals a new kubeseal object",
        LIMIT,
        || {
            let secrets = secrets.clone();
            async move { Ok(secrets.get_opt("app-new").await?) }
        },
    )
    .await?;
    let token = unsealed
        .data
        .as_ref()
        .and_then(|d| d.get("token"))
        .context("no token")?;
    ensure!(
        token.0 == value.as_bytes(),
        "the new Secret holds another value"
    );

    // Deleting a SealedSecret still deletes its Secret (its owner reference is Bitnami's shape).
    objects.delete("app-0", &DeleteParams::foreground()).await?;
    eventually("app-0's Secret goes with its SealedSecret", LIMIT, || {
        let secrets = secrets.clone();
        async move { Ok(secrets.get_opt("app-0").await?.is_none().then_some(())) }
    })
    .await?;
    if versions(&app).await?.len() != OBJECTS {
        bail!("expected {OBJECTS} Secrets after one deletion and one addition");
    }
    drop(in_cluster);
    Ok(())
}
