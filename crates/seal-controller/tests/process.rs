//! The `seal-controller` binary as a process against the real API server: it makes a key on first
//! start, unseals a SealedSecret sealed with that key's certificate (with a Normal Event), puts
//! back a deleted Secret, follows an update, and never logs a value.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use seal_api::SealedSecret;
use seal_api::sealing::{SealOptions, seal_secret};
use seal_controller::keys::SEALING_KEY_LABEL;
use seal_core::Certificate;
use seal_testenv::{TestNamespace, testenv};

const MARKER: &str = "process-marker-51c9";

/// The controller process, killed when dropped; its log goes to a file read at the end.
struct Running {
    child: Child,
    log: tempfile::NamedTempFile,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

async fn eventually<T, F, Fut>(what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("{what}: not within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn sealed_for(
    certificate: &Certificate,
    ns: &TestNamespace,
    items: &[(&str, &str)],
) -> Result<SealedSecret> {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("db".into()),
            namespace: Some(ns.name().into()),
            ..ObjectMeta::default()
        },
        string_data: Some(
            items
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Secret::default()
    };
    Ok(seal_secret(
        &secret,
        &SealOptions {
            certificate,
            scope: None,
            namespace: None,
            name: None,
            allow_empty_data: false,
        },
    )?)
}

fn item(secret: &Secret, name: &str) -> Option<Vec<u8>> {
    Some(secret.data.as_ref()?.get(name)?.0.clone())
}

#[tokio::test]
async fn the_controller_process_unseals_restores_and_follows_updates() -> Result<()> {
    let env = testenv!();
    let crd: CustomResourceDefinition = serde_yaml::from_str(&seal_api::crd_yaml())?;
    env.apply_crd(&crd).await?;
    let keys_ns = env.namespace("ctl-keys").await?;
    let app_ns = env.namespace("ctl-app").await?;

    let log = tempfile::NamedTempFile::new()?;
    let child = Command::new(env!("CARGO_BIN_EXE_seal-controller"))
        .args(["--key-namespace", keys_ns.name()])
        .args(["--namespaces", app_ns.name()])
        .args(["--key-size", "2048"])
        .env("KUBECONFIG", env.kubeconfig())
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(log.reopen()?)
        .spawn()?;
    let running = Running { child, log };

    let key_secrets = keys_ns.api::<Secret>();
    let key = eventually("the controller makes a key", || {
        let key_secrets = key_secrets.clone();
        async move {
            let list = key_secrets
                .list(&ListParams::default().labels(SEALING_KEY_LABEL))
                .await?;
            Ok(list.items.into_iter().next())
        }
    })
    .await?;
    let certificate = Certificate::from_pem(&item(&key, "tls.crt").context("no tls.crt")?)?;

    let sealed_api = app_ns.api::<SealedSecret>();
    let secrets = app_ns.api::<Secret>();
    sealed_api
        .create(
            &PostParams::default(),
            &sealed_for(&certificate, &app_ns, &[("password", MARKER)])?,
        )
        .await?;
    let wait_for = |expected: &'static str| {
        let secrets = secrets.clone();
        eventually("the Secret holds the sealed value", move || {
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

    let update = sealed_for(&certificate, &app_ns, &[("password", "rotated-value")])?;
    let patch = serde_json::json!({"spec": {"encryptedData": update.spec.encrypted_data}});
    sealed_api
        .patch("db", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    wait_for("rotated-value").await?;

    let status = eventually("the status is Ready", || {
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
    assert!(status.is_some());

    let events = app_ns.api::<k8s_openapi::api::events::v1::Event>();
    let unsealed = eventually("an Unsealed Event", || {
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

    let log = running.log();
    assert!(log.contains("unsealed"), "{log}");
    assert!(!log.contains(MARKER), "a value reached the log");
    assert!(!log.contains("rotated-value"), "a value reached the log");
    Ok(())
}
