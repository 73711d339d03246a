//! The tenant's moves: each finding of the trust-boundaries review, played as the attacker played
//! it. The tenant is a user whose Role allows only seal's kinds in one namespace (impersonated
//! through the API server, so its rights are the API server's to check, not ours). Each test
//! asserts the move is refused with a clear status, that nothing reached the address the tenant
//! chose, and that the controller keeps working.

use std::io::Read as _;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::PostParams;
use kube::{Api, Client};
use seal_api::{ExternalSecret, SealedSecret, SecretStore};

use seal_api::names::SEALING_KEY_LABEL;
use seal_testenv::{TestEnv, TestNamespace, eventually, testenv};
use serde_json::{Value, json};

use crate::external::{aws_credentials, events_text, install_all_crds, wait_store_reason};
use crate::support::{ControllerProcess, first_key, get, item, sealed};

const LIMIT: Duration = Duration::from_secs(60);

/// A client for a tenant who may manage seal's kinds in `ns` and nothing else.
async fn tenant(env: &TestEnv, ns: &TestNamespace) -> Result<Client> {
    let user = format!("tenant-of-{}", ns.name());
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "seal-tenant"},
        "rules": [{"apiGroups": ["seal.dev"],
            "resources": ["sealedsecrets", "externalsecrets", "secretstores"],
            "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}],
    }))?;
    ns.api::<Role>()
        .create(&PostParams::default(), &role)
        .await?;
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "seal-tenant"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "seal-tenant"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }))?;
    ns.api::<RoleBinding>()
        .create(&PostParams::default(), &binding)
        .await?;
    env.kube_client_as(&user).await
}

/// Creates `object` in `ns` as `client`.
async fn create_as<K>(client: &Client, ns: &TestNamespace, object: Value) -> Result<()>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let object: K = serde_json::from_value(object)?;
    Api::<K>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &object)
        .await?;
    Ok(())
}

/// The tenant's server: counts the connections it is offered, and reads what they send.
struct Trap {
    address: String,
    connections: Arc<AtomicUsize>,
}

impl Trap {
    fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let address = format!("http://{}", listener.local_addr()?);
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&connections);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                counted.fetch_add(1, Ordering::SeqCst);
                let mut stream = stream;
                let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                let _ = stream.read(&mut [0; 4096]);
            }
        });
        Ok(Self {
            address,
            connections,
        })
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

fn store(name: &str, provider: &Value) -> Value {
    json!({"apiVersion": "seal.dev/v1alpha1", "kind": "SecretStore",
        "metadata": {"name": name}, "spec": {"provider": provider}})
}

/// Findings 1, 2 and 7: a namespaced store may not spend the controller's identity (its token,
/// its AWS chain, a role on top of it), nor a ServiceAccount token the namespace could not request
/// itself (no opt-in, a year long, for the API server's audience). Each is refused before any
/// connection, and the tenant's server hears nothing.
#[tokio::test]
async fn a_tenant_store_never_borrows_the_controllers_identity() -> Result<()> {
    let env = testenv!();
    install_all_crds(env).await?;
    let keys = env.namespace("tenant-id-keys").await?;
    let app = env.namespace("tenant-id").await?;
    let client = tenant(env, &app).await?;
    let trap = Trap::start()?;
    // An account of the namespace that has not opted in, and one that has.
    for (name, opted) in [("plain", false), ("opted", true)] {
        let mut account = json!({"metadata": {"name": name}});
        if opted {
            account["metadata"]["annotations"] = json!({"seal.dev/allow-store-tokens": "true"});
        }
        let account: ServiceAccount = serde_json::from_value(account)?;
        app.api::<ServiceAccount>()
            .create(&PostParams::default(), &account)
            .await?;
    }
    aws_credentials(env, &app).await?;

    let vault =
        |auth: Value| json!({"vault": {"server": trap.address, "path": "secret", "auth": auth}});
    let aws = |auth: Option<Value>| {
        let mut provider = json!({"aws": {"service": "SecretsManager",
            "region": env.var("AWS_REGION"), "endpointURL": trap.address}});
        if let Some(auth) = auth {
            provider["aws"]["auth"] = auth;
        }
        provider
    };
    let refused = [
        // 1: Vault Kubernetes auth with neither serviceAccountRef nor secretRef.
        (
            "own-token",
            vault(json!({"kubernetes": {"role": "r"}})),
            "own identity",
        ),
        // 2: AWS with auth omitted, and with only a role over the default chain.
        ("own-aws", aws(None), "own identity"),
        (
            "own-aws-role",
            aws(Some(
                json!({"role": "arn:aws:iam::123456789012:role/other-team"}),
            )),
            "own identity",
        ),
        // 7: a token of an account that did not opt in; for the API's audience.
        (
            "not-opted",
            vault(json!({"kubernetes": {"role": "r", "serviceAccountRef": {"name": "plain"}}})),
            "seal.dev/allow-store-tokens",
        ),
        (
            "api-audience",
            vault(json!({"kubernetes": {"role": "r", "serviceAccountRef": {
                "name": "opted", "audiences": ["https://kubernetes.default.svc.cluster.local"]}}})),
            "API server",
        ),
    ];
    for (name, provider, _) in &refused {
        create_as::<SecretStore>(&client, &app, store(name, provider)).await?;
    }
    // 7: a year-long token is refused by the API server itself (the CRD's bounds).
    let year_long = vault(
        json!({"jwt": {"role": "r", "kubernetesServiceAccountToken": {
        "serviceAccountRef": {"name": "opted"}, "expirationSeconds": 31_536_000}}}),
    );
    let error = create_as::<SecretStore>(&client, &app, store("year-long", &year_long))
        .await
        .expect_err("a year-long token");
    assert!(
        format!("{error:#}").contains("expirationSeconds"),
        "{error:#}"
    );
    // A store with the namespace's own credentials, at the same server, is the tenant's business:
    // it is tried (and the trap hears it), which proves the trap would have heard the others.
    let own = aws(Some(json!({"secretRef": {
        "accessKeyIDSecretRef": {"name": "aws-creds", "key": "id"},
        "secretAccessKeySecretRef": {"name": "aws-creds", "key": "key"}}})));

    let controller = ControllerProcess::start(
        env,
        keys.name(),
        &["--namespaces", app.name(), "--leader-elect=false"],
    )
    .await?;
    let stores = app.api::<SecretStore>();
    for (name, _, says) in &refused {
        let message = wait_store_reason(&stores, name, "InvalidProviderConfig").await?;
        assert!(message.contains(says), "{name}: {message}");
    }
    assert_eq!(
        trap.connections(),
        0,
        "a refused store reached the tenant's server"
    );
    create_as::<SecretStore>(&client, &app, store("own", &own)).await?;
    eventually("the tenant's own store is tried", LIMIT, || async {
        Ok((trap.connections() > 0).then_some(()))
    })
    .await?;

    // Nothing of the controller's own token anywhere the tenant can read.
    let status =
        serde_json::to_string(&stores.list(&kube::api::ListParams::default()).await?.items)?;
    for (what, text) in [
        ("store status", status),
        ("Events", events_text(&app).await?),
        ("log", controller.log()),
    ] {
        assert!(!text.contains("eyJ"), "a token is in the {what}");
    }
    Ok(())
}

/// Finding 3: a refreshInterval under a second is refused by the API server (the CRD's rule), so
/// no object can make the controller divide by zero; and the controller keeps serving.
#[tokio::test]
async fn a_tenant_cannot_set_a_refresh_interval_that_stops_the_controller() -> Result<()> {
    let env = testenv!();
    install_all_crds(env).await?;
    let app = env.namespace("tenant-interval").await?;
    let client = tenant(env, &app).await?;
    for interval in ["5ms", "999ms", "1ns"] {
        let object = json!({"apiVersion": "seal.dev/v1alpha1", "kind": "ExternalSecret",
            "metadata": {"name": "fast"},
            "spec": {"refreshInterval": interval, "secretStoreRef": {"name": "s"},
                "data": [{"secretKey": "k", "remoteRef": {"key": "k"}}]}});
        let error = create_as::<ExternalSecret>(&client, &app, object)
            .await
            .expect_err(interval);
        assert!(
            format!("{error:#}").contains("refreshInterval"),
            "{interval}: {error:#}"
        );
    }
    // The boundary is allowed, and so is 0 (never refresh).
    for (name, interval) in [("one-second", "1s"), ("never", "0s")] {
        let object = json!({"apiVersion": "seal.dev/v1alpha1", "kind": "ExternalSecret",
            "metadata": {"name": name},
            "spec": {"refreshInterval": interval, "secretStoreRef": {"name": "s"},
                "data": [{"secretKey": "k", "remoteRef": {"key": "k"}}]}});
        create_as::<ExternalSecret>(&client, &app, object).await?;
    }
    Ok(())
}

/// Findings 6 and 10: a tenant who may create SealedSecrets in the key namespace (but not read
/// Secrets there) plants a "key" through a template's labels, and has the controller make a
/// ServiceAccount token Secret. Both are refused before any decryption, no Secret is written, the
/// served certificate stays the controller's own, and an honest SealedSecret still unseals.
#[tokio::test]
async fn a_tenant_cannot_plant_a_key_or_make_a_denied_secret_type() -> Result<()> {
    let env = testenv!();
    install_all_crds(env).await?;
    let keys = env.namespace("tenant-keys").await?;
    let client = tenant(env, &keys).await?;
    let controller = ControllerProcess::start(
        env,
        keys.name(),
        &["--namespaces", keys.name(), "--leader-elect=false"],
    )
    .await?;
    let certificate = first_key(&keys).await?;
    // The key Secret exists a moment before the controller serves it.
    let cert_url = format!("{}/v1/cert.pem", controller.api);
    let served_before = eventually("the certificate is served", LIMIT, || {
        let url = cert_url.clone();
        async move {
            let (code, body) = get(&url)?;
            Ok((code == 200).then_some(body))
        }
    })
    .await?;

    let with_template = |name: &str, template: Value| -> Result<Value> {
        let mut object = serde_json::to_value(sealed(
            &certificate,
            keys.name(),
            name,
            &[("tls.key", "tenant-made-key")],
        )?)?;
        let metadata = &mut object["spec"]["template"]["metadata"];
        if let Some(labels) = template.get("labels") {
            metadata["labels"] = labels.clone();
        }
        if let Some(kind) = template.get("type") {
            object["spec"]["template"]["type"] = kind.clone();
        }
        Ok(object)
    };
    let moves = [
        (
            "planted-key",
            json!({"labels": {SEALING_KEY_LABEL: "active"}}),
            SEALING_KEY_LABEL,
        ),
        (
            "bitnami-key",
            json!({"labels": {"sealedsecrets.bitnami.com/sealed-secrets-key": "active"}}),
            "sealedsecrets.bitnami.com/",
        ),
        (
            "sa-token",
            json!({"type": "kubernetes.io/service-account-token"}),
            "kubernetes.io/service-account-token",
        ),
        (
            "bootstrap",
            json!({"type": "bootstrap.kubernetes.io/token"}),
            "bootstrap.kubernetes.io/token",
        ),
    ];
    for (name, template, _) in &moves {
        create_as::<SealedSecret>(&client, &keys, with_template(name, template.clone())?).await?;
    }
    create_as::<SealedSecret>(&client, &keys, with_template("honest", json!({}))?).await?;

    let secrets = keys.api::<Secret>();
    eventually("the honest SealedSecret unseals", LIMIT, || {
        let secrets = secrets.clone();
        async move {
            Ok(secrets
                .get_opt("honest")
                .await?
                .filter(|s| item(s, "tls.key").as_deref() == Some(b"tenant-made-key".as_slice())))
        }
    })
    .await?;
    let sealed_api = keys.api::<SealedSecret>();
    for (name, _, says) in &moves {
        let message = eventually(&format!("{name} is refused"), LIMIT, || {
            let api = sealed_api.clone();
            async move {
                let object = api.get(name).await?;
                Ok(object.status.and_then(|s| {
                    s.conditions
                        .into_iter()
                        .find(|c| c.type_ == "Ready" && c.reason == "DeniedByPolicy")
                        .map(|c| c.message)
                }))
            }
        })
        .await?;
        assert!(message.contains(says), "{name}: {message}");
        assert!(
            secrets.get_opt(name).await?.is_none(),
            "{name}: a Secret was written"
        );
    }
    // Still the controller's one key, served and trusted.
    let (_, served_after) = get(&format!("{}/v1/cert.pem", controller.api))?;
    assert_eq!(served_before, served_after);
    let log = controller.log();
    assert!(
        !log.contains("tenant-made-key"),
        "a plaintext is in the log"
    );
    Ok(())
}

/// Finding 4: templates that grow without bound (a chain of `b64enc`) or nest deeper than any
/// stack (prefix calls) cost the controller nothing beyond their budgets: each SealedSecret
/// fails on its own with a status that names the limit, and the controller keeps unsealing.
#[tokio::test]
async fn a_tenant_template_cannot_exhaust_the_controller() -> Result<()> {
    let env = testenv!();
    install_all_crds(env).await?;
    let keys = env.namespace("tenant-tpl-keys").await?;
    let app = env.namespace("tenant-tpl").await?;
    let client = tenant(env, &app).await?;
    let controller = ControllerProcess::start(
        env,
        keys.name(),
        &["--namespaces", app.name(), "--leader-elect=false"],
    )
    .await?;
    let certificate = first_key(&keys).await?;
    let seed = "s".repeat(16 * 1024);
    let with_template = |name: &str, template: &str| -> Result<Value> {
        let mut object = serde_json::to_value(sealed(
            &certificate,
            app.name(),
            name,
            &[("seed", seed.as_str())],
        )?)?;
        object["spec"]["template"]["data"] = json!({"big": template});
        Ok(object)
    };
    let chain = format!("{{{{ .seed{} }}}}", " | b64enc".repeat(16));
    let nest = format!("{{{{ {}.seed }}}}", "b64enc ".repeat(9000));
    for (name, template) in [("chain", &chain), ("nest", &nest)] {
        create_as::<SealedSecret>(&client, &app, with_template(name, template)?).await?;
    }
    create_as::<SealedSecret>(
        &client,
        &app,
        with_template("honest", "{{ .seed | trim }}")?,
    )
    .await?;

    let secrets = app.api::<Secret>();
    let seed_len = seed.len();
    eventually("the honest SealedSecret unseals", LIMIT, || {
        let secrets = secrets.clone();
        async move {
            Ok(secrets
                .get_opt("honest")
                .await?
                .filter(|s| item(s, "big").is_some_and(|v| v.len() == seed_len)))
        }
    })
    .await?;
    let api = app.api::<SealedSecret>();
    for name in ["chain", "nest"] {
        let message = eventually(&format!("{name} fails on its own"), LIMIT, || {
            let api = api.clone();
            async move {
                let object = api.get(name).await?;
                Ok(object.status.and_then(|s| {
                    s.conditions
                        .into_iter()
                        .find(|c| c.type_ == "Ready" && c.status == "False")
                        .map(|c| c.message)
                }))
            }
        })
        .await?;
        assert!(message.contains("exceeds the limit"), "{name}: {message}");
        assert!(
            !message.contains(&seed[..64]),
            "{name}: a value in the status"
        );
        assert!(secrets.get_opt(name).await?.is_none(), "{name}: a Secret");
    }
    // Still serving, and its memory stayed far below what the chain would have taken (16 KiB
    // grown by a third sixteen times is 1.6 MB per step at the end, 3.3 GB in the review).
    let (code, _) = get(&format!("{}/healthz", controller.api))?;
    assert_eq!(code, 200);
    Ok(())
}

/// The syncer never reads the key namespace: an ExternalSecret there is not synced, and a
/// ClusterSecretStore whose credentials live there is refused, even for the operator.
#[tokio::test]
async fn the_syncer_never_reaches_into_the_key_namespace() -> Result<()> {
    let env = testenv!();
    install_all_crds(env).await?;
    let keys = env.namespace("tenant-syncer-keys").await?;
    let app = env.namespace("tenant-syncer").await?;
    aws_credentials(env, &keys).await?;
    aws_credentials(env, &app).await?;
    let trap = Trap::start()?;
    let credentials = |namespace: &str| {
        json!({"secretRef": {
            "accessKeyIDSecretRef": {"name": "aws-creds", "key": "id", "namespace": namespace},
            "secretAccessKeySecretRef": {"name": "aws-creds", "key": "key", "namespace": namespace}}})
    };
    let cluster_store = seal_testenv::unique_name("keys-creds");
    let css: seal_api::ClusterSecretStore = serde_json::from_value(json!({
        "apiVersion": "seal.dev/v1alpha1", "kind": "ClusterSecretStore",
        "metadata": {"name": cluster_store},
        // Not the trap: other tests' controllers, which share the API server and have other key
        // namespaces, may reconcile this cluster-scoped store; port 9 refuses them harmlessly.
        "spec": {"provider": {"aws": {"service": "SecretsManager", "region": env.var("AWS_REGION"),
            "endpointURL": "http://127.0.0.1:9", "auth": credentials(keys.name())}}},
    }))?;
    let cluster_stores = Api::<seal_api::ClusterSecretStore>::all(env.kube_client().await?);
    cluster_stores.create(&PostParams::default(), &css).await?;
    // An ExternalSecret in the key namespace, through a store there.
    let mut in_keys = crate::external::aws_store(env, "aws", &trap.address);
    in_keys["metadata"]["namespace"] = json!(keys.name());
    crate::external::create::<SecretStore>(&keys, in_keys).await?;
    crate::external::create::<ExternalSecret>(
        &keys,
        crate::external::external_secret(
            "planted",
            "aws",
            json!({"data": [{"secretKey": "k", "remoteRef": {"key": "k"}}]}),
        ),
    )
    .await?;

    // Listing the key namespace does not make the syncer watch it. (A list keeps this syncer
    // away from the other tests' objects; the watch of every namespace leaves the key namespace
    // out with a field selector, the same rule.)
    let namespaces = format!("{},{}", keys.name(), app.name());
    let controller = ControllerProcess::start(
        env,
        keys.name(),
        &[
            "--role",
            "syncer",
            "--leader-elect=false",
            "--namespaces",
            &namespaces,
        ],
    )
    .await?;
    let message =
        wait_store_reason(&cluster_stores, &cluster_store, "InvalidProviderConfig").await?;
    assert!(message.contains("sealing keys"), "{message}");
    // The store in the key namespace is refused too (its credentials are there); the
    // ExternalSecret there is never even watched, so it gets no status at all.
    let message =
        wait_store_reason(&keys.api::<SecretStore>(), "aws", "InvalidProviderConfig").await?;
    assert!(message.contains("sealing keys"), "{message}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let planted = keys.api::<ExternalSecret>().get("planted").await?;
    assert!(
        planted.status.is_none(),
        "the syncer reconciled an ExternalSecret in the key namespace"
    );
    assert!(keys.api::<Secret>().get_opt("planted").await?.is_none());
    assert_eq!(trap.connections(), 0);
    // And it holds no key: no certificate API, no key Secret made.
    let log = controller.log();
    assert!(log.contains("serving the probes"), "{log}");
    assert!(log.contains("not syncing ExternalSecrets there"), "{log}");
    let made = keys
        .api::<Secret>()
        .list(&kube::api::ListParams::default().labels(SEALING_KEY_LABEL))
        .await?;
    assert!(made.items.is_empty(), "the syncer made a key");
    cluster_stores
        .delete(&cluster_store, &kube::api::DeleteParams::default())
        .await?;
    Ok(())
}
