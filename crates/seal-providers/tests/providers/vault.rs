//! The Vault provider against OpenBao: KV v1 and v2 (with and without `/data`, a given version),
//! every auth method, the token's renewal and re-login, find, and error kinds.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{ObjectMeta, PostParams};
use seal_providers::{
    Call, CallStatus, Error, FindQuery, KvVersion, SecretProvider, SecretRef, TokenSource,
    VaultAuth, VaultConfig, VaultProvider,
};
use seal_testenv::{TestEnv, eventually, unique_name};
use secrecy::SecretString;
use serde_json::json;
use vaultrs::api::kv2::requests::SetSecretMetadataRequest;
use vaultrs::api::token::requests::CreateTokenRequest;

use crate::{quick_retry, testenv, text};

fn pairs(items: &[(&str, &str)]) -> HashMap<String, String> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn root_provider(env: &TestEnv) -> Result<VaultProvider> {
    Ok(VaultProvider::new(
        VaultConfig::new(
            env.vault_addr(),
            VaultAuth::Token(SecretString::from(env.var("VAULT_TOKEN"))),
        )
        .retry(quick_retry()),
    )?)
}

/// A token with `policies` only, made by root.
async fn token_with(env: &TestEnv, policies: &[&str]) -> Result<String> {
    let root = env.vault_client(None)?;
    let auth = vaultrs::token::new(
        &root,
        Some(
            CreateTokenRequest::builder()
                .policies(policies.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>())
                .no_default_policy(false)
                .ttl("1h"),
        ),
    )
    .await?;
    Ok(auth.client_token)
}

/// vals' reading: the mount and its KV version come from Vault (`sys/internal/ui/mounts`),
/// asked once per mount however many keys are read below it.
#[tokio::test]
async fn kv_version_from_the_mount_as_vals_reads_it() -> Result<()> {
    let env = testenv!();
    let root = env.vault_client(None)?;
    let path = format!("{}/db", unique_name("vals"));
    vaultrs::kv2::set(&root, "secret", &path, &pairs(&[("password", "v2")])).await?;
    vaultrs::kv1::set(&root, "kv", &path, &HashMap::from([("password", "v1")])).await?;
    // A KV v1 secret in a folder named data, which KV v2 would take for its API segment.
    vaultrs::kv1::set(
        &root,
        "kv",
        &format!("data/{path}"),
        &HashMap::from([("password", "v1-data")]),
    )
    .await?;
    let vault = VaultProvider::new(
        VaultConfig::new(
            env.vault_addr(),
            VaultAuth::Token(SecretString::from(env.var("VAULT_TOKEN"))),
        )
        .kv_from_mount()
        .retry(quick_retry()),
    )?;
    let cases = [
        (format!("secret/{path}"), "v2"),
        (format!("secret/data/{path}"), "v2"),
        (format!("kv/{path}"), "v1"),
        (format!("kv/data/{path}"), "v1-data"),
    ];
    // Read concurrently (get_many), then one by one.
    let wanted: Vec<SecretRef> = cases
        .iter()
        .map(|(key, _)| SecretRef::new(key.clone()).property("#/password"))
        .collect();
    let values = vault.get_many(&wanted).await;
    for ((key, want), value) in cases.iter().zip(values) {
        assert_eq!(text(&value?), *want, "{key}");
    }
    for (key, want) in &cases {
        let value = vault.get(key, None).await?;
        assert_eq!(text(&value.property("#/password")?), *want, "{key}");
    }
    // Two mounts, two questions, even for concurrent first reads; eight reads (get_many reads
    // secret/x and secret/data/x as two keys).
    assert_eq!(
        vault.calls().count(Call::VaultMount, CallStatus::Success),
        2
    );
    assert_eq!(vault.calls().count(Call::VaultRead, CallStatus::Success), 8);
    // A path under no mount is refused by Vault's preflight, as vals reports it.
    let e = vault.get("nomount/x", None).await.unwrap_err();
    assert!(matches!(e, Error::Denied { .. }), "{e}");
    Ok(())
}

#[tokio::test]
async fn kv_v2_reads_with_or_without_data_and_at_a_version() -> Result<()> {
    let env = testenv!();
    let root = env.vault_client(None)?;
    let path = format!("{}/db", unique_name("ml-api"));
    vaultrs::kv2::set(&root, "secret", &path, &pairs(&[("password", "first")])).await?;
    vaultrs::kv2::set(
        &root,
        "secret",
        &path,
        &pairs(&[("password", "second"), ("user", "app")]),
    )
    .await?;

    let vault = root_provider(env)?;
    for key in [format!("secret/{path}"), format!("secret/data/{path}")] {
        let value = vault.get(&key, None).await?;
        assert_eq!(text(&value.property("password")?), "second", "{key}");
        assert_eq!(text(&value.property("#/user")?), "app", "{key}");
    }
    let first = vault.get(&format!("secret/{path}"), Some("1")).await?;
    assert_eq!(text(&first), r#"{"password":"first"}"#);

    // With the store's mount (ESO's `path`), keys are relative to it, `/data` or not.
    let mounted = VaultProvider::new(
        VaultConfig::new(
            env.vault_addr(),
            VaultAuth::Token(SecretString::from(env.var("VAULT_TOKEN"))),
        )
        .mount("secret"),
    )?;
    for key in [path.clone(), format!("data/{path}")] {
        let value = mounted.get(&key, Some("2")).await?;
        assert_eq!(text(&value.property("password")?), "second", "{key}");
    }

    let missing = vault.get(&format!("secret/{path}-missing"), None).await;
    assert!(
        matches!(missing, Err(Error::NotFound { .. })),
        "{missing:?}"
    );
    let no_such_version = vault.get(&format!("secret/{path}"), Some("9")).await;
    assert!(
        matches!(no_such_version, Err(Error::NotFound { .. })),
        "{no_such_version:?}"
    );
    let bad_version = vault.get(&format!("secret/{path}"), Some("latest")).await;
    assert!(
        matches!(bad_version, Err(Error::InvalidRequest { .. })),
        "{bad_version:?}"
    );
    Ok(())
}

#[tokio::test]
async fn kv_v1_reads_plain_paths_where_data_is_an_ordinary_folder() -> Result<()> {
    let env = testenv!();
    let root = env.vault_client(None)?;
    let kv1 = env.var("SEAL_TESTENV_VAULT_KV1_MOUNT");
    let path = format!("{}/data/token", unique_name("ml-batch"));
    vaultrs::kv1::set(&root, kv1, &path, &HashMap::from([("token", "abc")])).await?;

    let vault = VaultProvider::new(
        VaultConfig::new(
            env.vault_addr(),
            VaultAuth::Token(SecretString::from(env.var("VAULT_TOKEN"))),
        )
        .kv_version(KvVersion::V1),
    )?;
    let value = vault.get(&format!("{kv1}/{path}"), None).await?;
    assert_eq!(text(&value.property("token")?), "abc");
    let versioned = vault.get(&format!("{kv1}/{path}"), Some("1")).await;
    assert!(
        matches!(versioned, Err(Error::InvalidRequest { .. })),
        "{versioned:?}"
    );
    Ok(())
}

#[tokio::test]
async fn token_auth_reads_within_its_policy_and_is_denied_outside_it() -> Result<()> {
    let env = testenv!();
    let root = env.vault_client(None)?;
    let path = unique_name("token-auth");
    vaultrs::kv2::set(&root, "secret", &path, &pairs(&[("k", "v")])).await?;

    let reader = VaultProvider::new(VaultConfig::new(
        env.vault_addr(),
        VaultAuth::Token(SecretString::from(token_with(env, &["seal-read"]).await?)),
    ))?;
    assert_eq!(
        text(&reader.get(&format!("secret/{path}"), None).await?),
        r#"{"k":"v"}"#
    );

    let outsider = VaultProvider::new(VaultConfig::new(
        env.vault_addr(),
        VaultAuth::Token(SecretString::from(token_with(env, &["default"]).await?)),
    ))?;
    let denied = outsider.get(&format!("secret/{path}"), None).await;
    assert!(matches!(denied, Err(Error::Denied { .. })), "{denied:?}");
    assert!(!denied.unwrap_err().is_transient());
    // A refusal is not retried.
    assert_eq!(outsider.calls().total(Call::VaultRead), 1);
    Ok(())
}

#[tokio::test]
async fn approle_logs_in_once_for_many_reads() -> Result<()> {
    let env = testenv!();
    let root = env.vault_client(None)?;
    let path = unique_name("approle");
    vaultrs::kv2::set(
        &root,
        "secret",
        &path,
        &pairs(&[("password", "from-approle")]),
    )
    .await?;

    let vault = VaultProvider::new(VaultConfig::new(
        env.vault_addr(),
        VaultAuth::app_role(
            env.var("SEAL_TESTENV_APPROLE_ROLE_ID"),
            SecretString::from(env.var("SEAL_TESTENV_APPROLE_SECRET_ID")),
        ),
    ))?;
    for _ in 0..5 {
        let value = vault.get(&format!("secret/data/{path}"), None).await?;
        assert_eq!(text(&value.property("password")?), "from-approle");
    }
    let calls = vault.calls();
    assert_eq!(calls.count(Call::VaultLogin, CallStatus::Success), 1);
    assert_eq!(calls.count(Call::VaultRead, CallStatus::Success), 5);

    let wrong = VaultProvider::new(
        VaultConfig::new(
            env.vault_addr(),
            VaultAuth::app_role(
                env.var("SEAL_TESTENV_APPROLE_ROLE_ID"),
                SecretString::from("not-the-secret-id"),
            ),
        )
        .retry(quick_retry()),
    )?;
    let refused = wrong.get(&format!("secret/{path}"), None).await;
    assert!(matches!(refused, Err(Error::Denied { .. })), "{refused:?}");
    assert_eq!(wrong.calls().count(Call::VaultLogin, CallStatus::Denied), 1);
    Ok(())
}

#[tokio::test]
async fn jwt_login_reads_with_a_ci_token() -> Result<()> {
    let env = testenv!();
    let root = env.vault_client(None)?;
    let path = unique_name("jwt");
    vaultrs::kv2::set(&root, "secret", &path, &pairs(&[("password", "from-jwt")])).await?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let jwt = env.sign_jwt(&json!({
        "iss": "https://ci.example.test",
        "sub": "repo:seal/ml-api:ref:refs/heads/main",
        "aud": env.var("SEAL_TESTENV_JWT_AUDIENCE"),
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    }))?;

    let vault = VaultProvider::new(VaultConfig::new(
        env.vault_addr(),
        VaultAuth::jwt(
            Some(env.var("SEAL_TESTENV_JWT_ROLE").to_owned()),
            TokenSource::Value(SecretString::from(jwt)),
        ),
    ))?;
    let value = vault.get(&format!("secret/{path}"), None).await?;
    assert_eq!(text(&value.property("password")?), "from-jwt");
    assert_eq!(
        vault.calls().count(Call::VaultLogin, CallStatus::Success),
        1
    );
    Ok(())
}

#[tokio::test]
async fn kubernetes_login_with_a_token_request_token_from_a_file() -> Result<()> {
    let env = testenv!();
    let root = env.vault_client(None)?;
    let path = unique_name("k8s");
    vaultrs::kv2::set(&root, "secret", &path, &pairs(&[("password", "from-k8s")])).await?;

    let ns = env.namespace("providers-vault-k8s").await?;
    let accounts = ns.api::<ServiceAccount>();
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("ml-api".into()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    accounts.create(&PostParams::default(), &account).await?;
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
    // As the kubelet projects it into a pod.
    let file = std::env::temp_dir().join(unique_name("sa-token"));
    std::fs::write(&file, format!("{jwt}\n"))?;

    let vault = VaultProvider::new(VaultConfig::new(
        env.vault_addr(),
        VaultAuth::kubernetes(
            env.var("SEAL_TESTENV_KUBERNETES_ROLE"),
            TokenSource::File(file.clone()),
        ),
    ))?;
    let value = vault.get(&format!("secret/{path}"), None).await;
    std::fs::remove_file(&file)?;
    assert_eq!(text(&value?.property("password")?), "from-k8s");

    let forged = VaultProvider::new(VaultConfig::new(
        env.vault_addr(),
        VaultAuth::kubernetes(
            env.var("SEAL_TESTENV_KUBERNETES_ROLE"),
            TokenSource::Value(SecretString::from("not.a.jwt")),
        ),
    ))?;
    let refused = forged.get(&format!("secret/{path}"), None).await;
    assert!(matches!(refused, Err(Error::Denied { .. })), "{refused:?}");
    Ok(())
}

/// A plain HTTP client for the few admin calls vaultrs has no function for.
fn admin_http() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .tls_backend_rustls()
        .tls_certs_only(Vec::new())
        .build()?)
}

#[tokio::test]
async fn a_namespace_scopes_every_call() -> Result<()> {
    let env = testenv!();
    let namespace = unique_name("team-ml");
    let created = admin_http()?
        .post(format!(
            "{}/v1/sys/namespaces/{namespace}",
            env.vault_addr()
        ))
        .header("X-Vault-Token", env.var("VAULT_TOKEN"))
        .send()
        .await?;
    assert!(created.status().is_success(), "{}", created.status());
    let in_namespace = vaultrs::client::VaultClient::new(
        vaultrs::client::VaultClientSettingsBuilder::default()
            .address(env.vault_addr())
            .token(env.var("VAULT_TOKEN"))
            .namespace(Some(namespace.clone()))
            .build()?,
    )?;
    vaultrs::sys::mount::enable(&in_namespace, "secret", "kv-v2", None).await?;
    let path = format!("{}/db", unique_name("ml"));
    // The mount may take a moment to accept writes.
    eventually("the namespace's KV mount", Duration::from_secs(10), || {
        let (client, path) = (&in_namespace, &path);
        async move {
            let written =
                vaultrs::kv2::set(client, "secret", path, &pairs(&[("password", "scoped")])).await;
            Ok(written.ok().map(|_| ()))
        }
    })
    .await?;

    let config = VaultConfig::new(
        env.vault_addr(),
        VaultAuth::Token(SecretString::from(env.var("VAULT_TOKEN"))),
    );
    let scoped = VaultProvider::new(config.clone().namespace(&namespace))?;
    let value = scoped.get(&format!("secret/{path}"), None).await?;
    assert_eq!(text(&value.property("password")?), "scoped");
    // The same path outside the namespace is another secret (here: none).
    let outside = VaultProvider::new(config)?
        .get(&format!("secret/{path}"), None)
        .await;
    assert!(
        matches!(outside, Err(Error::NotFound { .. })),
        "{outside:?}"
    );
    Ok(())
}

/// An AppRole on an auth mount of its own, whose tokens live `ttl`: revoking that mount's
/// logins touches no other test's tokens.
async fn short_lived_approle(env: &TestEnv, ttl: &str) -> Result<(String, String, String)> {
    use vaultrs::api::auth::approle::requests::SetAppRoleRequest;
    let root = env.vault_client(None)?;
    let mount = unique_name("approle-short");
    vaultrs::sys::auth::enable(&root, &mount, "approle", None).await?;
    vaultrs::auth::approle::role::set(
        &root,
        &mount,
        "short",
        Some(
            SetAppRoleRequest::builder()
                .token_ttl(ttl)
                .token_max_ttl("24h")
                .token_policies(vec!["seal-read".to_owned()]),
        ),
    )
    .await?;
    let role_id = vaultrs::auth::approle::role::read_id(&root, &mount, "short")
        .await?
        .role_id;
    let secret_id = vaultrs::auth::approle::role::secret::generate(&root, &mount, "short", None)
        .await?
        .secret_id;
    Ok((mount, role_id, secret_id))
}

async fn seeded_approle_provider(
    env: &TestEnv,
    ttl: &str,
) -> Result<(VaultProvider, String, String)> {
    let root = env.vault_client(None)?;
    let path = unique_name("session");
    vaultrs::kv2::set(&root, "secret", &path, &pairs(&[("password", "kept")])).await?;
    let (mount, role_id, secret_id) = short_lived_approle(env, ttl).await?;
    let vault = VaultProvider::new(VaultConfig::new(
        env.vault_addr(),
        VaultAuth::AppRole {
            mount: mount.clone(),
            role_id,
            secret_id: SecretString::from(secret_id),
        },
    ))?;
    Ok((vault, format!("secret/{path}"), mount))
}

#[tokio::test]
async fn a_short_lived_token_is_renewed_in_the_background_instead_of_logging_in_again() -> Result<()>
{
    let env = testenv!();
    let (vault, key, mount) = seeded_approle_provider(env, "3s").await?;
    vault.get(&key, None).await?;
    let calls = vault.calls().clone();

    // Idle for longer than the token's 3 s TTL: the background task renews it at 2 s, 4 s, ...
    eventually("two background renewals", Duration::from_secs(15), || {
        let calls = calls.clone();
        async move {
            Ok((calls.count(Call::VaultRenewSelf, CallStatus::Success) >= 2).then_some(()))
        }
    })
    .await?;
    // The first token outlived its TTL only by being renewed: no second login.
    for _ in 0..3 {
        assert_eq!(
            text(&vault.get(&key, None).await?.property("password")?),
            "kept"
        );
    }
    assert_eq!(calls.total(Call::VaultLogin), 1, "{calls:?}");
    assert_eq!(
        calls.count(Call::VaultRead, CallStatus::Success),
        4,
        "{calls:?}"
    );

    drop(vault);
    vaultrs::sys::auth::disable(&env.vault_client(None)?, &mount).await?;
    Ok(())
}

#[tokio::test]
async fn a_revoked_token_is_replaced_by_a_new_login() -> Result<()> {
    let env = testenv!();
    // A long TTL, so no background renewal notices the revocation before the read does.
    let (vault, key, mount) = seeded_approle_provider(env, "1h").await?;
    vault.get(&key, None).await?;
    let calls = vault.calls().clone();

    // Revoke every token of that mount, as an operator would after a leak.
    let revoked = admin_http()?
        .put(format!(
            "{}/v1/sys/leases/revoke-prefix/auth/{mount}/login",
            env.vault_addr()
        ))
        .header("X-Vault-Token", env.var("VAULT_TOKEN"))
        .send()
        .await?;
    assert!(revoked.status().is_success(), "{}", revoked.status());

    // The read is refused, lookup-self shows the token dead, the provider logs in again and
    // reads once more.
    let value = vault.get(&key, None).await?;
    assert_eq!(text(&value.property("password")?), "kept");
    assert_eq!(
        calls.count(Call::VaultLogin, CallStatus::Success),
        2,
        "{calls:?}"
    );
    assert_eq!(
        calls.count(Call::VaultRead, CallStatus::Denied),
        1,
        "{calls:?}"
    );
    assert_eq!(
        calls.count(Call::VaultLookupSelf, CallStatus::Denied),
        1,
        "{calls:?}"
    );
    // And the new token serves the next reads without another login.
    vault.get(&key, None).await?;
    assert_eq!(calls.total(Call::VaultLogin), 2, "{calls:?}");

    drop(vault);
    vaultrs::sys::auth::disable(&env.vault_client(None)?, &mount).await?;
    Ok(())
}

#[tokio::test]
async fn get_many_reads_each_secret_once_for_all_its_properties() -> Result<()> {
    let env = testenv!();
    let root = env.vault_client(None)?;
    let path = unique_name("many");
    vaultrs::kv2::set(
        &root,
        "secret",
        &format!("{path}/db"),
        &pairs(&[("user", "u"), ("password", "p")]),
    )
    .await?;
    vaultrs::kv2::set(
        &root,
        "secret",
        &format!("{path}/queue"),
        &pairs(&[("url", "amqp://q")]),
    )
    .await?;

    let vault = root_provider(env)?;
    let refs = [
        SecretRef::new(format!("secret/{path}/db")).property("user"),
        SecretRef::new(format!("secret/{path}/db")).property("password"),
        SecretRef::new(format!("secret/{path}/db")).property("nope"),
        SecretRef::new(format!("secret/{path}/queue")).property("url"),
        SecretRef::new(format!("secret/{path}/gone")),
    ];
    let values = vault.get_many(&refs).await;
    assert_eq!(text(values[0].as_ref().unwrap()), "u");
    assert_eq!(text(values[1].as_ref().unwrap()), "p");
    assert!(
        matches!(values[2], Err(Error::InvalidValue { .. })),
        "{:?}",
        values[2]
    );
    assert_eq!(text(values[3].as_ref().unwrap()), "amqp://q");
    assert!(
        matches!(values[4], Err(Error::NotFound { .. })),
        "{:?}",
        values[4]
    );
    assert_eq!(vault.calls().total(Call::VaultRead), 3);
    Ok(())
}

#[tokio::test]
async fn find_lists_recursively_and_filters_by_name_and_custom_metadata() -> Result<()> {
    let env = testenv!();
    let root = env.vault_client(None)?;
    let base = unique_name("find");
    for (path, value) in [
        ("app/db", "1"),
        ("app/queue", "2"),
        ("app/deep/er/cache", "3"),
        ("other/x", "4"),
    ] {
        vaultrs::kv2::set(
            &root,
            "secret",
            &format!("{base}/{path}"),
            &pairs(&[("v", value)]),
        )
        .await?;
    }
    vaultrs::kv2::set_metadata(
        &root,
        "secret",
        &format!("{base}/app/db"),
        Some(SetSecretMetadataRequest::builder().custom_metadata(pairs(&[("team", "ml")]))),
    )
    .await?;

    // A token with the read policy, as the controller would have: it may list metadata.
    let vault = VaultProvider::new(VaultConfig::new(
        env.vault_addr(),
        VaultAuth::Token(SecretString::from(token_with(env, &["seal-read"]).await?)),
    ))?;
    let names = |found: &[(String, seal_providers::SecretValue)]| -> Vec<String> {
        found.iter().map(|(n, _)| n.clone()).collect()
    };

    let all = vault
        .find(&FindQuery {
            path: Some(format!("secret/{base}")),
            ..FindQuery::default()
        })
        .await?;
    assert_eq!(
        names(&all),
        [
            format!("{base}/app/db"),
            format!("{base}/app/deep/er/cache"),
            format!("{base}/app/queue"),
            format!("{base}/other/x"),
        ]
    );
    assert_eq!(text(&all[1].1.property("v")?), "3");

    let by_name = vault
        .find(&FindQuery {
            path: Some(format!("secret/data/{base}/app")),
            name_regexp: Some("(db|cache)$".into()),
            ..FindQuery::default()
        })
        .await?;
    assert_eq!(
        names(&by_name),
        [
            format!("{base}/app/db"),
            format!("{base}/app/deep/er/cache")
        ]
    );

    let by_tag = vault
        .find(&FindQuery {
            path: Some(format!("secret/{base}")),
            tags: BTreeMap::from([("team".to_owned(), "ml".to_owned())]),
            ..FindQuery::default()
        })
        .await?;
    assert_eq!(names(&by_tag), [format!("{base}/app/db")]);

    let too_many = vault
        .find(&FindQuery {
            path: Some(format!("secret/{base}")),
            limit: 2,
            ..FindQuery::default()
        })
        .await;
    assert!(
        matches!(too_many, Err(Error::TooMany { limit: 2, .. })),
        "{too_many:?}"
    );

    let bad_regexp = vault
        .find(&FindQuery {
            path: Some(format!("secret/{base}")),
            name_regexp: Some("(".into()),
            ..FindQuery::default()
        })
        .await;
    assert!(
        matches!(bad_regexp, Err(Error::InvalidConfig { .. })),
        "{bad_regexp:?}"
    );
    Ok(())
}
