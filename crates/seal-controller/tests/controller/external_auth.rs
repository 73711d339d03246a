//! Vault stores that log in with a ServiceAccount token the controller requests itself (the
//! TokenRequest API), against the real API server and OpenBao: Kubernetes auth (OpenBao checks the
//! token with a TokenReview) and JWT auth (OpenBao checks the token's signature with the API
//! server's ServiceAccount public key), each logging in once however often it refreshes; and
//! Kubernetes auth with a token kept in a Secret; an AWS store whose ServiceAccount's token is
//! exchanged with STS (ESO's IRSA `auth.jwt`). And the shipped RBAC is enough for all of that and
//! an ExternalSecret's whole sync.

use std::collections::HashMap;

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{DeleteParams, PostParams};
use seal_api::{ClusterSecretStore, ExternalSecret, SecretStore};

use seal_api::names::TOKEN_OPT_IN_ANNOTATION;
use seal_testenv::{TestEnv, TestNamespace, secret_from_pairs, testenv, unique_name};
use serde_json::json;

use crate::external::{
    create, events_text, external_secret, install_all_crds, metric_sum, wait_item, wait_reason,
    wait_refreshes, wait_store_reason,
};
use crate::rbac::apply_shipped_rbac;
use crate::support::ControllerProcess;

/// Writes `body` to Vault's `path` (`/v1/{path}`) with the root token.
fn vault_write(env: &TestEnv, path: &str, body: &serde_json::Value) -> Result<()> {
    let (code, _, answer) = crate::support::post_with_header(
        &format!("{}/v1/{path}", env.vault_addr()),
        ("X-Vault-Token", env.var("VAULT_TOKEN")),
        &body.to_string(),
    )?;
    if !(200..300).contains(&code) {
        bail!("Vault refused the write to {path} ({code}): {answer}");
    }
    Ok(())
}

/// A JWT auth mount of its own that trusts the API server's ServiceAccount tokens, with a role
/// `reader` for ServiceAccount `ns/account` and audience `vault` (what the controller requests
/// when the store names no audience). Returns the mount path.
fn jwt_mount_for_service_accounts(
    env: &TestEnv,
    ns: &TestNamespace,
    account: &str,
) -> Result<String> {
    let mount = unique_name("jwt-sa");
    let public_key = std::fs::read_to_string(format!("{}/sa.pub", env.var("SEAL_TESTENV_DIR")))?;
    vault_write(env, &format!("sys/auth/{mount}"), &json!({"type": "jwt"}))?;
    vault_write(
        env,
        &format!("auth/{mount}/config"),
        &json!({"jwt_validation_pubkeys": [public_key]}),
    )?;
    vault_write(
        env,
        &format!("auth/{mount}/role/reader"),
        &json!({
            "role_type": "jwt",
            "bound_audiences": ["vault"],
            "user_claim": "sub",
            "bound_subject": format!("system:serviceaccount:{}:{account}", ns.name()),
            "token_policies": [env.var("SEAL_TESTENV_VAULT_POLICY")],
        }),
    )?;
    Ok(mount)
}

/// A ServiceAccount `name` in `ns` that lets stores request its tokens, annotated with IAM role
/// `role` when there is one (ESO's `eks.amazonaws.com/role-arn`).
pub(crate) async fn service_account(
    ns: &TestNamespace,
    name: &str,
    role: Option<&str>,
) -> Result<()> {
    let mut account = json!({"metadata": {"name": name, "annotations": {}}});
    account["metadata"]["annotations"][TOKEN_OPT_IN_ANNOTATION] = json!("true");
    if let Some(role) = role {
        account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] = json!(role);
    }
    let account: ServiceAccount = serde_json::from_value(account)?;
    ns.api::<ServiceAccount>()
        .create(&PostParams::default(), &account)
        .await?;
    Ok(())
}

/// A SecretStore `name` for moto with AWS `auth.jwt` as ServiceAccount `account`.
fn aws_jwt_store(env: &TestEnv, name: &str, account: &str) -> serde_json::Value {
    json!({
        "apiVersion": "seal.dev/v1alpha1", "kind": "SecretStore", "metadata": {"name": name},
        "spec": {"provider": {"aws": {
            "service": "SecretsManager", "region": env.var("AWS_REGION"),
            "endpointURL": env.var("AWS_ENDPOINT_URL"),
            "auth": {"jwt": {"serviceAccountRef": {"name": account}}},
        }}},
    })
}

/// Puts `pairs` at KV v2 `secret/{path}`.
pub(crate) async fn kv2_put(env: &TestEnv, path: &str, pairs: &[(&str, &str)]) -> Result<()> {
    let data: HashMap<&str, &str> = pairs.iter().copied().collect();
    vaultrs::kv2::set(&env.vault_client(None)?, "secret", path, &data).await?;
    Ok(())
}

#[tokio::test]
async fn vault_kubernetes_and_jwt_stores_log_in_once_with_requested_service_account_tokens()
-> Result<()> {
    let env = testenv!();
    install_all_crds(env).await?;
    let keys = env.namespace("es-sa-keys").await?;
    let app = env.namespace("es-sa").await?;
    let path = unique_name("es-sa");
    kv2_put(env, &path, &[("password", "from-vault")]).await?;
    service_account(&app, "reader", None).await?;
    let jwt_mount = jwt_mount_for_service_accounts(env, &app, "reader")?;
    // A token of the account kept in a Secret, for a store that names the Secret.
    let request: TokenRequest = serde_json::from_value(
        json!({"spec": {"expirationSeconds": 3600, "audiences": ["vault"]}}),
    )?;
    let issued = app
        .api::<ServiceAccount>()
        .create_token_request("reader", &PostParams::default(), &request)
        .await?;
    let token = issued
        .status
        .and_then(|s| s.token)
        .context("no token in the TokenRequest")?;
    app.api::<Secret>()
        .create(
            &PostParams::default(),
            &secret_from_pairs("reader-token", app.name(), &[("token", &token)]),
        )
        .await?;

    let vault = |auth: serde_json::Value| json!({"vault": {"server": env.vault_addr(), "path": "secret", "auth": auth}});
    let kubernetes_with = |source: &str, reference: serde_json::Value| {
        let mut auth = json!({"role": env.var("SEAL_TESTENV_KUBERNETES_STORE_ROLE")});
        auth[source] = reference;
        vault(json!({ "kubernetes": auth }))
    };
    let kubernetes = |account: &str| kubernetes_with("serviceAccountRef", json!({"name": account}));
    let store = |name: &str, provider: serde_json::Value| {
        json!({
            "apiVersion": "seal.dev/v1alpha1", "kind": "SecretStore", "metadata": {"name": name},
            "spec": {"provider": provider},
        })
    };
    create::<SecretStore>(&app, store("kubernetes", kubernetes("reader"))).await?;
    create::<SecretStore>(&app, store("no-account", kubernetes("nobody"))).await?;
    create::<SecretStore>(
        &app,
        store(
            "token-secret",
            kubernetes_with("secretRef", json!({"name": "reader-token", "key": "token"})),
        ),
    )
    .await?;
    create::<SecretStore>(
        &app,
        store(
            "jwt",
            vault(json!({"jwt": {
                "path": jwt_mount, "role": "reader",
                "kubernetesServiceAccountToken": {"serviceAccountRef": {"name": "reader"}},
            }})),
        ),
    )
    .await?;
    // A ClusterSecretStore whose reference names no namespace: the ExternalSecret's account.
    let css_name = unique_name("es-sa-cluster");
    let css: ClusterSecretStore = serde_json::from_value(json!({
        "apiVersion": "seal.dev/v1alpha1", "kind": "ClusterSecretStore",
        "metadata": {"name": css_name},
        "spec": {"provider": kubernetes("reader")},
    }))?;
    let cluster_stores = kube::Api::<ClusterSecretStore>::all(app.client());
    cluster_stores.create(&PostParams::default(), &css).await?;

    let password = json!({"data": [
        {"secretKey": "password", "remoteRef": {"key": path, "property": "password"}},
    ]});
    create::<ExternalSecret>(
        &app,
        external_secret("kubernetes", "kubernetes", password.clone()),
    )
    .await?;
    create::<ExternalSecret>(&app, external_secret("jwt", "jwt", password.clone())).await?;
    create::<ExternalSecret>(
        &app,
        external_secret("token-secret", "token-secret", password.clone()),
    )
    .await?;
    let mut cluster = external_secret("cluster", &css_name, password);
    cluster["spec"]["secretStoreRef"]["kind"] = json!("ClusterSecretStore");
    create::<ExternalSecret>(&app, cluster).await?;

    let controller = ControllerProcess::start(
        env,
        keys.name(),
        &["--namespaces", app.name(), "--leader-elect=false"],
    )
    .await?;

    let stores = app.api::<SecretStore>();
    wait_store_reason(&stores, "kubernetes", "Valid").await?;
    wait_store_reason(&stores, "jwt", "Valid").await?;
    wait_store_reason(&stores, "token-secret", "Valid").await?;
    // A ServiceAccount that does not exist: the store says which one, and is not Ready.
    let message = wait_store_reason(&stores, "no-account", "InvalidProviderConfig").await?;
    assert!(
        message.contains(&format!("ServiceAccount {}/nobody", app.name())),
        "{message}"
    );
    for name in ["kubernetes", "jwt", "token-secret", "cluster"] {
        wait_item(&app, name, "password", "from-vault").await?;
    }

    // Refreshes reuse each store's Vault token: one login per store that logged in (Kubernetes
    // twice, JWT, and the ClusterSecretStore for this namespace), none per refresh.
    for name in ["kubernetes", "jwt", "token-secret", "cluster"] {
        wait_refreshes(&app, name, 2).await?;
    }
    let scrape = controller.scrape()?;
    let logins = metric_sum(
        &scrape,
        "seal_controller_provider_api_calls_total",
        &["call=\"login\"", "status=\"success\""],
    );
    assert!((logins - 4.0).abs() < 0.5, "{logins} logins\n{scrape}");

    // No token anywhere: every JWT starts with the base64 of `{"`, `eyJ`.
    let status =
        serde_json::to_string(&stores.list(&kube::api::ListParams::default()).await?.items)?;
    let outputs = [
        ("log", controller.log()),
        ("Events", events_text(&app).await?),
        ("store status", status),
        ("metrics", scrape),
    ];
    for (what, text) in outputs {
        assert!(!text.contains("eyJ"), "a token is in the {what}");
    }

    cluster_stores
        .delete(&css_name, &DeleteParams::default())
        .await?;
    Ok(())
}

#[tokio::test]
async fn the_shipped_rbac_lets_kubernetes_and_aws_jwt_stores_request_their_tokens() -> Result<()> {
    let env = testenv!();
    install_all_crds(env).await?;
    let keys = env.namespace("es-rbac-keys").await?;
    let app = env.namespace("es-rbac").await?;
    apply_shipped_rbac(env, keys.name(), &unique_name("seal-controller-es")).await?;
    let work = tempfile::tempdir()?;
    let kubeconfig = work.path().join("kubeconfig");
    env.service_account_kubeconfig(keys.name(), "seal-syncer", &kubeconfig)?;
    let path = unique_name("es-rbac");
    kv2_put(env, &path, &[("password", "under-rbac")]).await?;
    env.secretsmanager()
        .await
        .create_secret()
        .name(&path)
        .secret_string("aws-under-rbac")
        .send()
        .await?;
    service_account(
        &app,
        "reader",
        Some("arn:aws:iam::123456789012:role/reader"),
    )
    .await?;
    create::<SecretStore>(&app, aws_jwt_store(env, "irsa", "reader")).await?;
    create::<SecretStore>(&app, json!({
        "apiVersion": "seal.dev/v1alpha1", "kind": "SecretStore", "metadata": {"name": "kubernetes"},
        "spec": {"provider": {"vault": {"server": env.vault_addr(), "path": "secret",
            "auth": {"kubernetes": {"role": env.var("SEAL_TESTENV_KUBERNETES_STORE_ROLE"),
                "serviceAccountRef": {"name": "reader"}}}}}},
    }))
    .await?;
    create::<ExternalSecret>(
        &app,
        external_secret(
            "db",
            "kubernetes",
            json!({"data": [{"secretKey": "password", "remoteRef": {"key": path, "property": "password"}}]}),
        ),
    )
    .await?;
    create::<ExternalSecret>(
        &app,
        external_secret(
            "aws",
            "irsa",
            json!({"data": [{"secretKey": "v", "remoteRef": {"key": path}}]}),
        ),
    )
    .await?;

    // The controller as the shipped ServiceAccount: the ServiceAccount read, the TokenRequests,
    // the store and ExternalSecret status, the Secrets and their Events all go through without one
    // refusal.
    let controller = ControllerProcess::start_with(
        &kubeconfig,
        keys.name(),
        "seal-syncer-0",
        &["--role", "syncer", "--namespaces", app.name()],
    )
    .await?;
    wait_store_reason(&app.api::<SecretStore>(), "kubernetes", "Valid").await?;
    wait_store_reason(&app.api::<SecretStore>(), "irsa", "Valid").await?;
    wait_item(&app, "db", "password", "under-rbac").await?;
    wait_item(&app, "aws", "v", "aws-under-rbac").await?;
    wait_reason(&app, "db", "SecretSynced").await?;
    let log = controller.log();
    assert!(!log.contains("Forbidden"), "a refusal:\n{log}");
    Ok(())
}

#[tokio::test]
async fn aws_jwt_store_exchanges_a_requested_token_for_the_annotated_role_once() -> Result<()> {
    let env = testenv!();
    install_all_crds(env).await?;
    let keys = env.namespace("es-irsa-keys").await?;
    let app = env.namespace("es-irsa").await?;
    let secret_id = unique_name("es-irsa");
    env.secretsmanager()
        .await
        .create_secret()
        .name(&secret_id)
        .secret_string("through-web-identity")
        .send()
        .await?;
    service_account(
        &app,
        "reader",
        Some("arn:aws:iam::123456789012:role/ml-batch"),
    )
    .await?;
    service_account(&app, "no-role", None).await?;
    create::<SecretStore>(&app, aws_jwt_store(env, "irsa", "reader")).await?;
    create::<SecretStore>(&app, aws_jwt_store(env, "no-role", "no-role")).await?;
    create::<ExternalSecret>(
        &app,
        external_secret(
            "db",
            "irsa",
            json!({"data": [{"secretKey": "v", "remoteRef": {"key": secret_id}}]}),
        ),
    )
    .await?;
    let controller = ControllerProcess::start(
        env,
        keys.name(),
        &["--namespaces", app.name(), "--leader-elect=false"],
    )
    .await?;

    let stores = app.api::<SecretStore>();
    wait_store_reason(&stores, "irsa", "Valid").await?;
    let message = wait_store_reason(&stores, "no-role", "InvalidProviderConfig").await?;
    assert!(
        message.contains(&format!("ServiceAccount {}/no-role", app.name()))
            && message.contains("eks.amazonaws.com/role-arn"),
        "{message}"
    );
    wait_item(&app, "db", "v", "through-web-identity").await?;

    // The store probe and every refresh share one set of STS credentials.
    wait_refreshes(&app, "db", 2).await?;
    let scrape = controller.scrape()?;
    let exchanges = metric_sum(
        &scrape,
        "seal_controller_provider_api_calls_total",
        &["call=\"AssumeRoleWithWebIdentity\"", "status=\"success\""],
    );
    assert!(
        (exchanges - 1.0).abs() < 0.5,
        "{exchanges} exchanges\n{scrape}"
    );
    Ok(())
}
