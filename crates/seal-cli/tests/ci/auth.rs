//! Vault logins other than a token: JWT with an OIDC token signed in the test (from a file, from
//! `SEAL_VAULT_JWT`, the role from a flag or the reference), and AppRole; a token from
//! `~/.vault-token`. None of them has `VAULT_TOKEN`.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use seal_testenv::{TestEnv, testenv};
use serde_json::json;

use crate::harness::{Ci, vault_kv2};

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
