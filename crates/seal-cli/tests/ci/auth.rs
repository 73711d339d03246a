//! Vault logins other than a token: JWT with an OIDC token signed in the test (from a file, from
//! `SEAL_VAULT_JWT`, the role from a flag or the reference), AppRole, and Kubernetes with a real
//! ServiceAccount token checked by the API server; a token from `~/.vault-token`. None of them has
//! `VAULT_TOKEN`. On AWS: web identity from the environment (a CI job's OIDC token and role, no
//! keys) and a role to assume named in the reference.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use seal_testenv::{TestEnv, testenv};
use serde_json::json;

use crate::harness::{Ci, aws_secret, vault_kv2};

fn ci_jwt(env: &TestEnv, audience: &str) -> Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    env.sign_jwt(&json!({
        "iss": "https://token.actions.githubusercontent.com",
        "sub": "repo:seal/ml-api:ref:refs/heads/main",
        "aud": audience,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    }))
}

/// The environment of a CI job with Vault's address and nothing else of Vault's.
fn no_token(env: &TestEnv) -> Ci {
    let mut ci = Ci::new(env);
    ci.unset("VAULT_TOKEN");
    ci
}

#[tokio::test]
async fn jwt_login_with_a_signed_oidc_token() -> Result<()> {
    let env = testenv!();
    let path = vault_kv2(env, &[("password", "from-jwt")]).await?;
    let mut ci = no_token(env);
    let jwt = ci_jwt(env, env.var("SEAL_TESTENV_JWT_AUDIENCE"))?;
    let reference = format!("ref+vault://{path}#/password");

    let file = ci.write("oidc.jwt", &jwt);
    let run = ci.seal(&[
        "get",
        "--vault-auth-method",
        "jwt",
        "--vault-role",
        env.var("SEAL_TESTENV_JWT_ROLE"),
        "--vault-jwt-file",
        &file,
        &reference,
    ]);
    assert_eq!(run.ok(), "from-jwt\n");

    // The token in SEAL_VAULT_JWT, method and role in the reference.
    ci.set("SEAL_VAULT_JWT", &jwt);
    let in_query = format!(
        "ref+vault://{path}?auth_method=jwt&role={}#/password",
        env.var("SEAL_TESTENV_JWT_ROLE")
    );
    assert_eq!(ci.seal(&["get", &in_query]).ok(), "from-jwt\n");

    // A token for another audience is refused: exit 2, nothing printed.
    ci.set("SEAL_VAULT_JWT", &ci_jwt(env, "someone-else")?);
    ci.seal(&["get", &in_query]).fails(2, "access denied");
    Ok(())
}

#[tokio::test]
async fn approle_login_from_the_environment() -> Result<()> {
    let env = testenv!();
    let path = vault_kv2(env, &[("password", "from-approle")]).await?;
    let mut ci = no_token(env);
    ci.set("SEAL_VAULT_AUTH_METHOD", "approle");
    ci.set("VAULT_ROLE_ID", env.var("SEAL_TESTENV_APPROLE_ROLE_ID"));
    ci.set("VAULT_SECRET_ID", env.var("SEAL_TESTENV_APPROLE_SECRET_ID"));
    let reference = format!("ref+vault://{path}#/password");
    assert_eq!(ci.seal(&["get", &reference]).ok(), "from-approle\n");

    ci.set("VAULT_SECRET_ID", "not-the-secret-id");
    ci.seal(&["get", &reference]).fails(2, "access denied");
    Ok(())
}

#[tokio::test]
async fn token_from_the_vault_token_file_and_none_at_all() -> Result<()> {
    let env = testenv!();
    let path = vault_kv2(env, &[("k", "from-file")]).await?;
    let ci = no_token(env);
    let reference = format!("ref+vault://{path}#/k");
    ci.seal(&["get", &reference]).fails(2, "no Vault token");
    ci.write(".vault-token", &format!("{}\n", env.var("VAULT_TOKEN")));
    assert_eq!(ci.seal(&["get", &reference]).ok(), "from-file\n");
    Ok(())
}

#[tokio::test]
async fn kubernetes_login_with_a_service_account_token() -> Result<()> {
    let env = testenv!();
    let path = vault_kv2(env, &[("password", "from-kubernetes")]).await?;
    let ns = env.namespace("ci-vault-k8s").await?;
    let accounts = ns.api::<ServiceAccount>();
    let account: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "deployer"}}))?;
    accounts.create(&PostParams::default(), &account).await?;
    let request: TokenRequest =
        serde_json::from_value(json!({"spec": {"expirationSeconds": 600}}))?;
    let issued: TokenRequest = accounts
        .create_subresource("token", "deployer", &PostParams::default(), &request)
        .await?;
    let token = issued
        .status
        .and_then(|s| s.token)
        .context("no token in the TokenRequest")?;

    let mut ci = no_token(env);
    let file = ci.write("sa.token", &token);
    ci.set("SEAL_VAULT_AUTH_METHOD", "kubernetes");
    ci.set("SEAL_VAULT_KUBERNETES_TOKEN_FILE", &file);
    let reference = format!(
        "ref+vault://{path}?role={}#/password",
        env.var("SEAL_TESTENV_KUBERNETES_ROLE")
    );
    assert_eq!(ci.seal(&["get", &reference]).ok(), "from-kubernetes\n");

    // Vault asks the API server (TokenReview): a token it did not issue is refused.
    ci.write("sa.token", "not.a.token");
    ci.seal(&["get", &reference]).fails(2, "access denied");
    Ok(())
}

#[tokio::test]
async fn aws_web_identity_from_the_environment_and_role_arn_in_the_reference() -> Result<()> {
    let env = testenv!();
    let name = aws_secret(env, r#"{"password":"from-web-identity"}"#).await?;
    let reference = format!("ref+awssecrets://{name}#/password");
    // A CI job with an OIDC token and a role, and no keys.
    let mut ci = Ci::new(env);
    ci.unset("AWS_ACCESS_KEY_ID");
    ci.unset("AWS_SECRET_ACCESS_KEY");
    ci.seal(&["get", &reference]).fails(2, "no credentials");
    let token = ci.write("oidc.jwt", &ci_jwt(env, "sts.amazonaws.com")?);
    ci.set("AWS_WEB_IDENTITY_TOKEN_FILE", &token);
    ci.set("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/ci-deployer");
    assert_eq!(ci.seal(&["get", &reference]).ok(), "from-web-identity\n");

    // Keys that may only assume a role: role_arn= in the reference costs one AssumeRole.
    let mut ci = Ci::new(env);
    ci.set("SEAL_DEBUG_CALLS", "1");
    let assumed =
        format!("ref+awssecrets://{name}?role_arn=arn:aws:iam::123456789012:role/reader#/password");
    let run = ci.seal(&["get", &assumed]);
    assert_eq!(run.ok(), "from-web-identity\n");
    assert!(
        run.stderr.contains("aws:AssumeRole:success=1"),
        "no AssumeRole counted: {}",
        run.stderr
    );
    Ok(())
}
