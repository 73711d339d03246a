//! ExternalSecrets against the real API server, moto and OpenBao, with the controller binary as a
//! process: stores, sync, refresh, force-sync, policies, templates, rollout restarts, an outage,
//! and a marker value never seen in the log, Events, status or metrics.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use seal_api::{ClusterSecretStore, ExternalSecret, SecretStore};
use seal_controller::protocols::rollout::checksum_annotation;
use seal_testenv::{TestEnv, TestNamespace, eventually, secret_from_pairs, testenv, unique_name};
use serde_json::json;

use crate::support::{ControllerProcess, item};

/// Installs every seal CRD.
pub(crate) async fn install_all_crds(env: &TestEnv) -> Result<()> {
    for crd in seal_api::crds() {
        env.apply_crd(&crd).await?;
    }
    Ok(())
}

/// Creates `object` (JSON of a `K`) in `ns`.
pub(crate) async fn create<K>(ns: &TestNamespace, object: serde_json::Value) -> Result<()>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let object: K = serde_json::from_value(object)?;
    ns.api::<K>()
        .create(&PostParams::default(), &object)
        .await?;
    Ok(())
}

/// The ExternalSecret's Ready condition: (status, reason, message).
pub(crate) async fn ready(
    ns: &TestNamespace,
    name: &str,
) -> Result<Option<(String, String, String)>> {
    let es = ns.api::<ExternalSecret>().get(name).await?;
    Ok(es
        .status
        .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"))
        .map(|c| (c.status, c.reason, c.message)))
}

/// Waits until the ExternalSecret's Ready reason is `reason`; returns its message.
pub(crate) async fn wait_reason(ns: &TestNamespace, name: &str, reason: &str) -> Result<String> {
    let what = format!("ExternalSecret {name} reports {reason}");
    eventually(&what, Duration::from_secs(60), || async move {
        Ok(ready(ns, name)
            .await?
            .filter(|(_, r, _)| r == reason)
            .map(|(_, _, m)| m))
    })
    .await
}

/// Waits until Secret `name` has `key` = `value`; returns the Secret.
pub(crate) async fn wait_item(
    ns: &TestNamespace,
    name: &str,
    key: &str,
    value: &str,
) -> Result<Secret> {
    let what = format!("Secret {name} has {key} as expected");
    wait_secret(ns, name, &what, |s| {
        item(s, key).as_deref() == Some(value.as_bytes())
    })
    .await
}

/// Waits until Secret `name` exists and `holds`; `what` names the wait in a timeout; returns the
/// Secret.
pub(crate) async fn wait_secret(
    ns: &TestNamespace,
    name: &str,
    what: &str,
    holds: impl Fn(&Secret) -> bool,
) -> Result<Secret> {
    let holds = &holds;
    eventually(what, Duration::from_secs(60), || async move {
        let secret = ns.api::<Secret>().get_opt(name).await?;
        Ok(secret.filter(|s| holds(s)))
    })
    .await
}

/// Waits for `count` more refreshes of the ExternalSecret (its refreshTime moving).
pub(crate) async fn wait_refreshes(ns: &TestNamespace, name: &str, count: usize) -> Result<()> {
    for _ in 0..count {
        let before = ns
            .api::<ExternalSecret>()
            .get(name)
            .await?
            .status
            .and_then(|s| s.refresh_time);
        eventually(
            "the ExternalSecret refreshes",
            Duration::from_secs(30),
            || {
                let before = before.clone();
                async move {
                    let now = ns
                        .api::<ExternalSecret>()
                        .get(name)
                        .await?
                        .status
                        .and_then(|s| s.refresh_time);
                    Ok((now != before).then_some(()))
                }
            },
        )
        .await?;
    }
    Ok(())
}

/// The sum of a metric's samples whose line contains every one of `parts`.
pub(crate) fn metric_sum(scrape: &str, name: &str, parts: &[&str]) -> f64 {
    scrape
        .lines()
        .filter(|l| l.starts_with(name) && parts.iter().all(|p| l.contains(p)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Every Event in `ns`, as JSON text.
pub(crate) async fn events_text(ns: &TestNamespace) -> Result<String> {
    let events = ns
        .api::<k8s_openapi::api::events::v1::Event>()
        .list(&kube::api::ListParams::default())
        .await?;
    Ok(serde_json::to_string(&events.items)?)
}

/// An ExternalSecret `name` reading through SecretStore `store`, refreshed every 2 s, with the
/// fields of `spec` added to its spec.
pub(crate) fn external_secret(
    name: &str,
    store: &str,
    spec: serde_json::Value,
) -> serde_json::Value {
    let mut object = json!({
        "apiVersion": "seal.dev/v1alpha1", "kind": "ExternalSecret", "metadata": {"name": name},
        "spec": {"secretStoreRef": {"name": store}, "refreshInterval": "2s"},
    });
    if let serde_json::Value::Object(fields) = spec {
        for (k, v) in fields {
            object["spec"][k] = v;
        }
    }
    object
}

/// Waits until the `Ready` condition of store `K` `name` has `reason`; returns its message.
pub(crate) async fn wait_store_reason<K>(
    api: &kube::Api<K>,
    name: &str,
    reason: &str,
) -> Result<String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + StoreStatus,
{
    let what = format!("store {name} reports {reason}");
    eventually(&what, Duration::from_secs(60), || async move {
        let store = api.get(name).await?;
        Ok(store
            .status_conditions()
            .into_iter()
            .find(|c| c.type_ == "Ready" && c.reason == reason)
            .map(|c| c.message))
    })
    .await
}

/// The status conditions of either kind of store.
pub(crate) trait StoreStatus {
    /// The store's conditions, none before the controller wrote a status.
    fn status_conditions(self) -> Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>;
}

impl StoreStatus for SecretStore {
    fn status_conditions(self) -> Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
        self.status.map(|s| s.conditions).unwrap_or_default()
    }
}

impl StoreStatus for ClusterSecretStore {
    fn status_conditions(self) -> Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
        self.status.map(|s| s.conditions).unwrap_or_default()
    }
}

/// A Deployment or StatefulSet (`kind`) `name` with one container and the label `app: name`. Its
/// pods are never scheduled (a scheduling gate nobody lifts): only the pod template matters here,
/// and the node would otherwise try to pull the image.
pub(crate) fn workload(kind: &str, name: &str) -> serde_json::Value {
    let mut spec = json!({
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {
                "containers": [{"name": "app", "image": "example.invalid/app"}],
                "schedulingGates": [{"name": "seal.dev/not-a-real-pod"}],
            },
        },
    });
    if kind == "StatefulSet" {
        spec["serviceName"] = json!(name);
    }
    json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}, "spec": spec})
}

/// Creates the [`workload`] Deployment `name` in `ns`.
pub(crate) async fn unscheduled_deployment(ns: &TestNamespace, name: &str) -> Result<()> {
    let deployment: Deployment = serde_json::from_value(workload("Deployment", name))?;
    ns.api::<Deployment>()
        .create(&PostParams::default(), &deployment)
        .await?;
    Ok(())
}

/// A SecretStore `name` for moto at `endpoint`, with the keys of [`aws_credentials`].
pub(crate) fn aws_store(env: &TestEnv, name: &str, endpoint: &str) -> serde_json::Value {
    json!({
        "apiVersion": "seal.dev/v1alpha1", "kind": "SecretStore",
        "metadata": {"name": name},
        "spec": {"provider": {"aws": {
            "service": "SecretsManager", "region": env.var("AWS_REGION"), "endpointURL": endpoint,
            "auth": {"secretRef": {
                "accessKeyIDSecretRef": {"name": "aws-creds", "key": "id"},
                "secretAccessKeySecretRef": {"name": "aws-creds", "key": "key"},
            }},
        }}},
    })
}

/// The Secret `aws-creds` with moto's test keys, in `ns`.
pub(crate) async fn aws_credentials(env: &TestEnv, ns: &TestNamespace) -> Result<()> {
    ns.api::<Secret>()
        .create(
            &PostParams::default(),
            &secret_from_pairs(
                "aws-creds",
                ns.name(),
                &[
                    ("id", env.var("AWS_ACCESS_KEY_ID")),
                    ("key", env.var("AWS_SECRET_ACCESS_KEY")),
                ],
            ),
        )
        .await?;
    Ok(())
}

#[tokio::test]
async fn aws_sync_refresh_force_sync_and_rollout_never_leak_the_value() -> Result<()> {
    let env = testenv!();
    install_all_crds(env).await?;
    let keys = env.namespace("es-aws-keys").await?;
    let app = env.namespace("es-aws").await?;
    let sm = env.secretsmanager().await;
    let secret_id = unique_name("es-aws-db");
    let marker = unique_name("MARKER-one");
    let marker2 = unique_name("MARKER-two");
    sm.create_secret()
        .name(&secret_id)
        .secret_string(json!({"user": "app", "password": marker}).to_string())
        .send()
        .await?;
    aws_credentials(env, &app).await?;
    create::<SecretStore>(&app, aws_store(env, "aws", env.var("AWS_ENDPOINT_URL"))).await?;
    unscheduled_deployment(&app, "web").await?;
    let es = |name: &str, interval: &str| {
        json!({
            "apiVersion": "seal.dev/v1alpha1", "kind": "ExternalSecret",
            "metadata": {"name": name},
            "spec": {
                "secretStoreRef": {"name": "aws"},
                "refreshInterval": interval,
                "data": [
                    {"secretKey": "user", "remoteRef": {"key": secret_id, "property": "user"}},
                    {"secretKey": "password", "remoteRef": {"key": secret_id, "property": "password"}},
                ],
            },
        })
    };
    let mut periodic = es("db", "2s");
    periodic["spec"]["rolloutRestartTargets"] = json!([
        {"kind": "Deployment", "name": "web"},
        {"kind": "Deployment", "name": "missing"},
    ]);
    create::<ExternalSecret>(&app, periodic).await?;
    create::<ExternalSecret>(&app, es("db-forced", "1h")).await?;

    let controller = ControllerProcess::start(
        env,
        keys.name(),
        &["--namespaces", app.name(), "--leader-elect=false"],
    )
    .await?;

    wait_store_reason(&app.api::<SecretStore>(), "aws", "Valid").await?;
    let first = wait_item(&app, "db", "password", &marker).await?;
    assert_eq!(item(&first, "user").as_deref(), Some(&b"app"[..]));
    wait_item(&app, "db-forced", "password", &marker).await?;
    assert_eq!(
        first.owner_references().first().map(|o| o.kind.as_str()),
        Some("ExternalSecret")
    );

    // Refreshes that read the same values write nothing and restart nothing.
    wait_refreshes(&app, "db", 2).await?;
    let unchanged = app.api::<Secret>().get("db").await?;
    assert_eq!(unchanged.resource_version(), first.resource_version());
    let annotation = checksum_annotation("db");
    let template_annotation = |d: &Deployment| {
        d.spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(&annotation).cloned())
    };
    assert_eq!(
        template_annotation(&app.api::<Deployment>().get("web").await?),
        None
    );

    // At most one provider call per sync: the two properties of one secret cost one call.
    let scrape = controller.scrape()?;
    let syncs = metric_sum(
        &scrape,
        "seal_controller_externalsecret_sync_calls_total",
        &[],
    );
    let calls = metric_sum(
        &scrape,
        "seal_controller_provider_api_calls_total",
        &["SecretValue"],
    );
    assert!(syncs >= 4.0, "syncs: {syncs}\n{scrape}");
    assert!(calls <= syncs, "calls {calls} > syncs {syncs}\n{scrape}");

    // A value rotated upstream is picked up on refresh, and rolls the Deployment once.
    sm.put_secret_value()
        .secret_id(&secret_id)
        .secret_string(json!({"user": "app", "password": marker2}).to_string())
        .send()
        .await?;
    wait_item(&app, "db", "password", &marker2).await?;
    let checksum = eventually(
        "the Deployment is annotated",
        Duration::from_secs(30),
        || async {
            Ok(template_annotation(
                &app.api::<Deployment>().get("web").await?,
            ))
        },
    )
    .await?;
    wait_refreshes(&app, "db", 2).await?;
    assert_eq!(
        template_annotation(&app.api::<Deployment>().get("web").await?),
        Some(checksum),
        "an unchanged refresh changed the checksum"
    );
    eventually(
        "a Warning names the missing target",
        Duration::from_secs(30),
        || async {
            Ok(events_text(&app)
                .await?
                .contains("Deployment")
                .then_some(()))
        },
    )
    .await?;

    // The hourly one keeps the old value until forced.
    let forced = app.api::<Secret>().get("db-forced").await?;
    assert_eq!(
        item(&forced, "password").as_deref(),
        Some(marker.as_bytes())
    );
    app.api::<ExternalSecret>()
        .patch(
            "db-forced",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"seal.dev/force-sync": "1"}}})),
        )
        .await?;
    wait_item(&app, "db-forced", "password", &marker2).await?;

    // No value anywhere but in the Secrets.
    let status = serde_json::to_string(
        &app.api::<ExternalSecret>()
            .list(&kube::api::ListParams::default())
            .await?
            .items,
    )?;
    let outputs = [
        ("log", controller.log()),
        ("Events", events_text(&app).await?),
        ("status", status),
        ("metrics", controller.scrape()?),
    ];
    for (what, text) in outputs {
        for value in [&marker, &marker2] {
            assert!(!text.contains(value.as_str()), "the value is in the {what}");
        }
    }

    // A restarted controller knows nothing of its last writes: it compares the Secrets
    // themselves and writes nothing. No digest of the values is in their metadata.
    let before = app.api::<Secret>().get("db").await?;
    assert!(
        !before.annotations().contains_key("seal.dev/data-hash"),
        "{:?}",
        before.annotations()
    );
    // Every write of a Secret is an `Updated` Event; a write that changes nothing leaves the
    // resourceVersion as it was, but not the Events.
    let updates = |events: &str| events.matches("\"reason\":\"Updated\"").count();
    let updated_before = updates(&events_text(&app).await?);
    drop(controller);
    let _restarted = ControllerProcess::start(
        env,
        keys.name(),
        &["--namespaces", app.name(), "--leader-elect=false"],
    )
    .await?;
    wait_refreshes(&app, "db", 2).await?;
    let after = app.api::<Secret>().get("db").await?;
    assert_eq!(after.resource_version(), before.resource_version());
    assert_eq!(
        updates(&events_text(&app).await?),
        updated_before,
        "the restarted controller wrote a Secret that already held its values"
    );
    Ok(())
}

#[tokio::test]
async fn openbao_token_and_approle_stores_templates_and_policies() -> Result<()> {
    let env = testenv!();
    install_all_crds(env).await?;
    let keys = env.namespace("es-bao-keys").await?;
    let app = env.namespace("es-bao").await?;
    let root = env.vault_client(None)?;
    let path = unique_name("es-bao");
    let data = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<std::collections::HashMap<_, _>>()
    };
    vaultrs::kv2::set(
        &root,
        "secret",
        &path,
        &data(&[("user", "u"), ("password", "p1")]),
    )
    .await?;
    vaultrs::kv2::set(
        &root,
        "secret",
        &format!("{path}-gone"),
        &data(&[("v", "x")]),
    )
    .await?;
    vaultrs::kv1::set(
        &root,
        "kv",
        &path,
        &[("token", "t1"), ("region", "eu")].into(),
    )
    .await?;
    app.api::<Secret>()
        .create(
            &PostParams::default(),
            &secret_from_pairs(
                "vault",
                app.name(),
                &[
                    ("token", env.var("VAULT_TOKEN")),
                    ("secret-id", env.var("SEAL_TESTENV_APPROLE_SECRET_ID")),
                ],
            ),
        )
        .await?;
    create::<SecretStore>(&app, json!({
        "apiVersion": "seal.dev/v1alpha1", "kind": "SecretStore", "metadata": {"name": "kv2"},
        "spec": {"provider": {"vault": {"server": env.vault_addr(), "path": "secret", "version": "v2",
            "auth": {"tokenSecretRef": {"name": "vault", "key": "token"}}}}},
    })).await?;
    create::<SecretStore>(&app, json!({
        "apiVersion": "seal.dev/v1alpha1", "kind": "SecretStore", "metadata": {"name": "kv1"},
        "spec": {"provider": {"vault": {"server": env.vault_addr(), "path": "kv", "version": "v1",
            "auth": {"appRole": {"roleId": env.var("SEAL_TESTENV_APPROLE_ROLE_ID"),
                "secretRef": {"name": "vault", "key": "secret-id"}}}}}},
    })).await?;
    let css_name = unique_name("es-bao-elsewhere");
    let css: ClusterSecretStore = serde_json::from_value(json!({
        "apiVersion": "seal.dev/v1alpha1", "kind": "ClusterSecretStore", "metadata": {"name": css_name},
        "spec": {
            "conditions": [{"namespaces": ["somewhere-else"]}],
            "provider": {"vault": {"server": env.vault_addr(), "path": "secret",
                "auth": {"tokenSecretRef": {"name": "vault", "key": "token", "namespace": app.name()}}}},
        },
    }))?;
    kube::Api::<ClusterSecretStore>::all(app.client())
        .create(&PostParams::default(), &css)
        .await?;
    let es = external_secret;
    let password =
        json!([{"secretKey": "password", "remoteRef": {"key": path, "property": "password"}}]);
    create::<ExternalSecret>(
        &app,
        es(
            "templated",
            "kv2",
            json!({
                "data": password,
                "dataFrom": [{"extract": {"key": path}}],
                "target": {"template": {
                    "type": "Opaque", "mergePolicy": "Merge",
                    "metadata": {"labels": {"team": "ml"}},
                    "data": {"dsn": "postgres://{{ .user }}:{{ .password }}@db/app"},
                }},
            }),
        ),
    )
    .await?;
    create::<ExternalSecret>(&app, es("approle", "kv1", json!({
        "dataFrom": [{"extract": {"key": path}, "rewrite": [{"regexp": {"source": "^(.*)$", "target": "app_$1"}}]}],
        "target": {"creationPolicy": "Orphan"},
    }))).await?;
    create::<ExternalSecret>(
        &app,
        es(
            "none",
            "kv2",
            json!({
                "data": password, "target": {"creationPolicy": "None"},
            }),
        ),
    )
    .await?;
    create::<ExternalSecret>(
        &app,
        es(
            "merge",
            "kv2",
            json!({
                "data": password, "target": {"name": "existing", "creationPolicy": "Merge"},
            }),
        ),
    )
    .await?;
    create::<ExternalSecret>(&app, es("gone", "kv2", json!({
        "data": [{"secretKey": "v", "remoteRef": {"key": format!("{path}-gone"), "property": "v"}}],
        "target": {"deletionPolicy": "Delete"},
    }))).await?;
    let mut refused = es("refused", &css_name, json!({"data": password}));
    refused["spec"]["secretStoreRef"]["kind"] = json!("ClusterSecretStore");
    create::<ExternalSecret>(&app, refused).await?;

    let controller = ControllerProcess::start(
        env,
        keys.name(),
        &["--namespaces", app.name(), "--leader-elect=false"],
    )
    .await?;

    // KV v2 with a token, template over data and dataFrom, merged, with labels.
    let templated = wait_item(&app, "templated", "dsn", "postgres://u:p1@db/app").await?;
    assert_eq!(item(&templated, "user").as_deref(), Some(&b"u"[..]));
    assert_eq!(
        templated.labels().get("team").map(String::as_str),
        Some("ml")
    );
    // KV v1 with AppRole, keys rewritten, no owner.
    let approle = wait_item(&app, "approle", "app_token", "t1").await?;
    assert!(approle.owner_references().is_empty());
    // None writes nothing; Merge waits for the Secret, refuses it until its owner opts in with
    // seal.dev/patch (as for SealedSecrets), then adds its items.
    wait_reason(&app, "none", "SecretSynced").await?;
    assert!(app.api::<Secret>().get_opt("none").await?.is_none());
    wait_reason(&app, "merge", "SecretMissing").await?;
    app.api::<Secret>()
        .create(
            &PostParams::default(),
            &secret_from_pairs("existing", app.name(), &[("mine", "kept")]),
        )
        .await?;
    let message = wait_reason(&app, "merge", "SecretSyncedError").await?;
    assert!(message.contains("seal.dev/patch"), "{message}");
    assert!(item(&app.api::<Secret>().get("existing").await?, "password").is_none());
    app.api::<Secret>()
        .patch(
            "existing",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"seal.dev/patch": "true"}}})),
        )
        .await?;
    let merged = wait_item(&app, "existing", "password", "p1").await?;
    assert_eq!(item(&merged, "mine").as_deref(), Some(&b"kept"[..]));
    // A ClusterSecretStore refused in this namespace.
    let message = wait_reason(&app, "refused", "SecretSyncedError").await?;
    assert!(message.contains("does not allow namespace"), "{message}");

    // A new KV version is picked up on refresh.
    vaultrs::kv2::set(
        &root,
        "secret",
        &path,
        &data(&[("user", "u"), ("password", "p2")]),
    )
    .await?;
    wait_item(&app, "templated", "dsn", "postgres://u:p2@db/app").await?;

    // The key deleted upstream: deletionPolicy Delete deletes the Secret.
    wait_item(&app, "gone", "v", "x").await?;
    vaultrs::kv2::delete_metadata(&root, "secret", &format!("{path}-gone")).await?;
    wait_reason(&app, "gone", "SecretDeleted").await?;
    eventually("the Secret is deleted", Duration::from_secs(30), || async {
        Ok(app
            .api::<Secret>()
            .get_opt("gone")
            .await?
            .is_none()
            .then_some(()))
    })
    .await?;

    // AppRole logged in once for all those refreshes (the provider is cached per store).
    wait_refreshes(&app, "approle", 2).await?;
    let scrape = controller.scrape()?;
    let calls = |call: &str| {
        metric_sum(
            &scrape,
            "seal_controller_provider_api_calls_total",
            &[&format!("call=\"{call}\"")],
        )
    };
    // One AppRole login, and one provider per store however many ExternalSecrets use it.
    assert!((calls("login") - 1.0).abs() < 0.5, "{scrape}");
    let log = controller.log();
    for store in ["name=kv1", "name=kv2"] {
        let built = log
            .lines()
            .filter(|l| {
                l.contains("built a provider") && l.contains(app.name()) && l.ends_with(store)
            })
            .count();
        assert_eq!(built, 1, "{store} built {built} times");
    }

    kube::Api::<ClusterSecretStore>::all(app.client())
        .delete(&css_name, &DeleteParams::default())
        .await?;
    Ok(())
}

/// A moto server of this test's own on a free loopback port, killed when dropped.
struct OwnMoto {
    child: std::process::Child,
    port: u16,
}

impl OwnMoto {
    fn start(port: Option<u16>) -> Result<Self> {
        let port = match port {
            Some(port) => port,
            None => std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port(),
        };
        let home = std::env::var("HOME")?;
        let venv = std::fs::read_dir(format!("{home}/.cache/seal-dev"))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("venv-openbao-"))
            })
            .context("no moto venv in ~/.cache/seal-dev")?;
        let child = std::process::Command::new(venv.join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        Ok(Self { child, port })
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn client(&self, env: &TestEnv) -> aws_sdk_secretsmanager::Client {
        let config = aws_sdk_secretsmanager::config::Builder::from(&env.aws_config().await)
            .endpoint_url(self.endpoint())
            .build();
        aws_sdk_secretsmanager::Client::from_conf(config)
    }

    async fn put(&self, env: &TestEnv, id: &str, value: &str) -> Result<()> {
        let client = self.client(env).await;
        eventually("moto answers", Duration::from_secs(30), || {
            let client = client.clone();
            async move {
                Ok(client
                    .create_secret()
                    .name(id)
                    .secret_string(value)
                    .send()
                    .await
                    .ok()
                    .map(drop))
            }
        })
        .await
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnMoto {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn an_outage_keeps_the_secret_and_recovers_by_itself() -> Result<()> {
    let env = testenv!();
    install_all_crds(env).await?;
    let keys = env.namespace("es-outage-keys").await?;
    let app = env.namespace("es-outage").await?;
    let mut moto = OwnMoto::start(None)?;
    moto.put(env, "outage", "before").await?;
    aws_credentials(env, &app).await?;
    create::<SecretStore>(&app, aws_store(env, "aws", &moto.endpoint())).await?;
    create::<ExternalSecret>(&app, json!({
        "apiVersion": "seal.dev/v1alpha1", "kind": "ExternalSecret", "metadata": {"name": "outage"},
        "spec": {"secretStoreRef": {"name": "aws"}, "refreshInterval": "2s",
            "data": [{"secretKey": "v", "remoteRef": {"key": "outage"}}]},
    })).await?;
    let _controller = ControllerProcess::start(
        env,
        keys.name(),
        &["--namespaces", app.name(), "--leader-elect=false"],
    )
    .await?;
    let before = wait_item(&app, "outage", "v", "before").await?;

    moto.stop();
    let message = wait_reason(&app, "outage", "SecretSyncedError").await?;
    assert!(message.contains("unavailable"), "{message}");
    let kept = app.api::<Secret>().get("outage").await?;
    assert_eq!(kept.resource_version(), before.resource_version());

    // moto forgets everything when it stops: the restarted one holds a new value.
    let port = moto.port;
    let moto = OwnMoto::start(Some(port))?;
    moto.put(env, "outage", "after").await?;
    let timeout = Duration::from_secs(120);
    eventually("the ExternalSecret recovers", timeout, || async {
        let secret = app.api::<Secret>().get("outage").await?;
        let synced = ready(&app, "outage")
            .await?
            .is_some_and(|(s, _, _)| s == "True");
        Ok((synced && item(&secret, "v").as_deref() == Some(&b"after"[..])).then_some(()))
    })
    .await?;
    if app.api::<Secret>().get_opt("outage").await?.is_none() {
        bail!("the Secret was deleted during the outage");
    }
    Ok(())
}
