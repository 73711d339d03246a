//! OpenBao: KV v1 and v2, and the three logins the providers use (AppRole, JWT, Kubernetes through
//! a real TokenReview), each ending in a read the `seal-read` policy allows.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use seal_testenv::{TestEnv, unique_name};
use serde_json::json;
use vaultrs::client::VaultClient;
use vaultrs::error::ClientError;

use crate::{eventually, testenv};

type Data = BTreeMap<String, String>;

fn data(pairs: &[(&str, &str)]) -> Data {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Writes a KV v2 secret as root and returns its path.
async fn seed(env: &TestEnv, value: &str) -> Result<String> {
    let path = format!("ml-api/{}", unique_name("db"));
    let root = env.vault_client(None)?;
    vaultrs::kv2::set(
        &root,
        env.var("SEAL_TESTENV_VAULT_KV2_MOUNT"),
        &path,
        &data(&[("password", value)]),
    )
    .await?;
    Ok(path)
}

/// Reads the seeded secret with a token from a login, proving the login's policy.
async fn read_with(env: &TestEnv, token: &str, path: &str) -> Result<String> {
    let client = env.vault_client(Some(token))?;
    let read: Data =
        vaultrs::kv2::read(&client, env.var("SEAL_TESTENV_VAULT_KV2_MOUNT"), path).await?;
    read.get("password").cloned().context("no password")
}

fn is_denied(result: &Result<impl std::fmt::Debug, ClientError>) -> bool {
    matches!(result, Err(ClientError::APIError { code, .. }) if *code == 400 || *code == 403)
}

#[tokio::test]
async fn kv_v2_keeps_versions_and_kv_v1_stores_plainly() -> Result<()> {
    let env = testenv!();
    let root = env.vault_client(None)?;
    let mount = env.var("SEAL_TESTENV_VAULT_KV2_MOUNT");
    let path = unique_name("versions");
    vaultrs::kv2::set(&root, mount, &path, &data(&[("password", "first")])).await?;
    vaultrs::kv2::set(&root, mount, &path, &data(&[("password", "second")])).await?;

    let latest: Data = vaultrs::kv2::read(&root, mount, &path).await?;
    let first: Data = vaultrs::kv2::read_version(&root, mount, &path, 1).await?;
    let metadata = vaultrs::kv2::read_metadata(&root, mount, &path).await?;
    assert_eq!(latest["password"], "second");
    assert_eq!(first["password"], "first");
    assert_eq!(metadata.current_version, 2);

    let kv1 = env.var("SEAL_TESTENV_VAULT_KV1_MOUNT");
    let path = unique_name("plain");
    vaultrs::kv1::set(&root, kv1, &path, &[("token", "abc")].into()).await?;
    let read: Data = vaultrs::kv1::get(&root, kv1, &path).await?;
    assert_eq!(read["token"], "abc");
    Ok(())
}

#[tokio::test]
async fn approle_login_reads_but_cannot_write() -> Result<()> {
    let env = testenv!();
    let path = seed(env, "from-approle").await?;
    let anonymous = env.vault_client(Some(""))?;
    let login = vaultrs::auth::approle::login(
        &anonymous,
        "approle",
        env.var("SEAL_TESTENV_APPROLE_ROLE_ID"),
        env.var("SEAL_TESTENV_APPROLE_SECRET_ID"),
    )
    .await?;
    assert!(login.policies.iter().any(|p| p == "seal-read"));
    assert_eq!(
        read_with(env, &login.client_token, &path).await?,
        "from-approle"
    );

    let client: VaultClient = env.vault_client(Some(&login.client_token))?;
    let write = vaultrs::kv2::set(
        &client,
        env.var("SEAL_TESTENV_VAULT_KV2_MOUNT"),
        &path,
        &data(&[("password", "overwritten")]),
    )
    .await;
    assert!(is_denied(&write), "{write:?}");

    let wrong = vaultrs::auth::approle::login(
        &anonymous,
        "approle",
        env.var("SEAL_TESTENV_APPROLE_ROLE_ID"),
        "not-the-secret-id",
    )
    .await;
    assert!(is_denied(&wrong), "{wrong:?}");
    Ok(())
}

#[tokio::test]
async fn jwt_login_accepts_a_token_signed_by_the_test_key_for_the_right_audience() -> Result<()> {
    let env = testenv!();
    let path = seed(env, "from-jwt").await?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = |audience: &str| {
        json!({
            "iss": "https://ci.example.test",
            "sub": "repo:seal/ml-api:ref:refs/heads/main",
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + 300,
        })
    };
    let anonymous = env.vault_client(Some(""))?;
    let role = Some(env.var("SEAL_TESTENV_JWT_ROLE").to_owned());

    let jwt = env.sign_jwt(&claims(env.var("SEAL_TESTENV_JWT_AUDIENCE")))?;
    let login = vaultrs::auth::oidc::login(&anonymous, "jwt", &jwt, role.clone()).await?;
    assert_eq!(
        read_with(env, &login.client_token, &path).await?,
        "from-jwt"
    );

    let wrong_audience = env.sign_jwt(&claims("someone-else"))?;
    let refused =
        vaultrs::auth::oidc::login(&anonymous, "jwt", &wrong_audience, role.clone()).await;
    assert!(is_denied(&refused), "{refused:?}");

    // A valid token with its signature bytes changed is refused too.
    let (signed, signature) = jwt.rsplit_once('.').context("no signature")?;
    let mut flipped = signature.as_bytes().to_vec();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{signed}.{}", String::from_utf8(flipped)?);
    let refused = vaultrs::auth::oidc::login(&anonymous, "jwt", &tampered, role).await;
    assert!(is_denied(&refused), "{refused:?}");
    Ok(())
}

#[tokio::test]
async fn kubernetes_login_checks_a_token_request_token_through_token_review() -> Result<()> {
    let env = testenv!();
    let path = seed(env, "from-kubernetes").await?;
    let ns = env.namespace("env-vault-k8s").await?;
    let accounts = ns.api::<ServiceAccount>();
    accounts
        .create(
            &PostParams::default(),
            &ServiceAccount {
                metadata: ObjectMeta {
                    name: Some("ml-api".into()),
                    ..ObjectMeta::default()
                },
                ..ServiceAccount::default()
            },
        )
        .await?;
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(600),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let issued: TokenRequest = accounts
        .create_subresource("token", "ml-api", &PostParams::default(), &request)
        .await?;
    let jwt = issued
        .status
        .and_then(|s| s.token)
        .context("no token in the TokenRequest")?;

    let anonymous = env.vault_client(Some(""))?;
    let role = env.var("SEAL_TESTENV_KUBERNETES_ROLE");
    let login = vaultrs::auth::kubernetes::login(&anonymous, "kubernetes", role, &jwt).await?;
    assert_eq!(
        login
            .metadata
            .as_ref()
            .and_then(|m| m.get("service_account_name"))
            .map(String::as_str),
        Some("ml-api")
    );
    assert_eq!(
        read_with(env, &login.client_token, &path).await?,
        "from-kubernetes"
    );

    // Once the ServiceAccount is deleted (and the apiserver's cache knows), TokenReview rejects
    // its token, and so does OpenBao.
    accounts.delete("ml-api", &DeleteParams::default()).await?;
    eventually(
        "the deleted ServiceAccount's token is refused",
        Duration::from_secs(30),
        || {
            let anonymous = &anonymous;
            let jwt = &jwt;
            async move {
                let login =
                    vaultrs::auth::kubernetes::login(anonymous, "kubernetes", role, jwt).await;
                Ok(is_denied(&login).then_some(()))
            }
        },
    )
    .await?;
    let garbage =
        vaultrs::auth::kubernetes::login(&anonymous, "kubernetes", role, "not.a.jwt").await;
    assert!(is_denied(&garbage), "{garbage:?}");
    Ok(())
}
