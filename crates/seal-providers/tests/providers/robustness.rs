//! Failures: an unreachable or silent server is transient and retried (each attempt counted),
//! and no error, Debug or Display anywhere carries a secret value.

use std::collections::HashMap;
use std::net::TcpListener;
use std::time::Duration;

use anyhow::Result;
use seal_providers::{
    AwsAuth, AwsConfig, AwsProvider, Call, CallStatus, Error, RetryPolicy, SecretProvider,
    SecretRef, VaultAuth, VaultConfig, VaultProvider,
};
use seal_testenv::unique_name;
use secrecy::SecretString;
use vaultrs::api::token::requests::CreateTokenRequest;

use crate::{quick_retry, testenv};

/// A loopback port nothing listens on.
fn closed_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn static_auth() -> AwsAuth {
    AwsAuth::Static {
        access_key_id: "testing".into(),
        secret_access_key: SecretString::from("testing"),
        session_token: None,
    }
}

#[tokio::test]
async fn unreachable_vault_is_transient_after_every_attempt() -> Result<()> {
    let _env = testenv!();
    let address = format!("http://127.0.0.1:{}", closed_port()?);
    let vault = VaultProvider::new(
        VaultConfig::new(
            &address,
            VaultAuth::app_role("role", SecretString::from("secret-id")),
        )
        .retry(quick_retry()),
    )?;
    let error = vault.get("secret/ml/db", None).await.unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    assert!(
        matches!(&error, Error::Unavailable { attempts: 3, at, .. } if at.store == address),
        "{error:?}"
    );
    assert_eq!(
        vault
            .calls()
            .count(Call::VaultLogin, CallStatus::Unavailable),
        3
    );
    assert_eq!(vault.calls().total(Call::VaultRead), 0);
    Ok(())
}

#[tokio::test]
async fn unreachable_aws_is_transient_after_every_attempt() -> Result<()> {
    let _env = testenv!();
    let aws = AwsProvider::new(
        AwsConfig::new("us-east-1")
            .endpoint(format!("http://127.0.0.1:{}", closed_port()?))
            .auth(static_auth())
            .retry(quick_retry()),
    )
    .await?;
    let error = aws.get("ml/db", None).await.unwrap_err();
    assert!(
        matches!(&error, Error::Unavailable { attempts: 3, .. }),
        "{error:?}"
    );
    assert_eq!(
        aws.calls()
            .count(Call::GetSecretValue, CallStatus::Unavailable),
        3
    );

    // A batch failing as a whole fails each of its references.
    let refs = [SecretRef::new("a"), SecretRef::new("b").property("x")];
    let results = aws.get_many(&refs).await;
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(Error::Unavailable { .. })))
    );
    assert_eq!(
        aws.calls()
            .count(Call::BatchGetSecretValue, CallStatus::Unavailable),
        3
    );
    Ok(())
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_and_is_retried() -> Result<()> {
    let _env = testenv!();
    // Accepts connections (the kernel's backlog does) but never reads or answers.
    let silent = TcpListener::bind("127.0.0.1:0")?;
    let address = format!("http://{}", silent.local_addr()?);
    let policy = RetryPolicy {
        timeout: Duration::from_millis(300),
        max_attempts: 2,
        ..quick_retry()
    };
    let vault = VaultProvider::new(
        VaultConfig::new(&address, VaultAuth::Token(SecretString::from("t"))).retry(policy.clone()),
    )?;
    let error = vault.get("secret/ml/db", None).await.unwrap_err();
    assert!(
        matches!(&error, Error::Unavailable { attempts: 2, .. }),
        "{error:?}"
    );
    assert_eq!(
        vault
            .calls()
            .count(Call::VaultLookupSelf, CallStatus::Timeout),
        2
    );

    let aws = AwsProvider::new(
        AwsConfig::new("us-east-1")
            .endpoint(&address)
            .auth(static_auth())
            .retry(policy),
    )
    .await?;
    let error = aws.get("ml/db", None).await.unwrap_err();
    assert!(
        matches!(&error, Error::Unavailable { attempts: 2, .. }),
        "{error:?}"
    );
    assert_eq!(
        aws.calls().count(Call::GetSecretValue, CallStatus::Timeout),
        2
    );
    drop(silent);
    Ok(())
}

#[tokio::test]
async fn invalid_configuration_is_reported_before_any_call() -> Result<()> {
    let _env = testenv!();
    for address in ["not a url", "ftp://vault.example", "https://vault.example"] {
        let config = VaultConfig::new(address, VaultAuth::Token(SecretString::from("t")));
        let config = if address.starts_with("https") {
            config.ca_bundle("not PEM at all")
        } else {
            config
        };
        let result = VaultProvider::new(config);
        assert!(
            matches!(result, Err(Error::InvalidConfig { .. })),
            "{address}: {:?}",
            result.err()
        );
    }
    let result = AwsProvider::new(AwsConfig::new("us-east-1").endpoint("localhost:4566")).await;
    assert!(
        matches!(result, Err(Error::InvalidConfig { .. })),
        "{:?}",
        result.err()
    );
    Ok(())
}

/// Every error and every Debug a caller could log, from flows over secrets holding `MARKER`.
#[tokio::test]
async fn a_secret_value_never_appears_in_errors_or_debug_output() -> Result<()> {
    const MARKER: &str = "MARKER-5f0c1e-never-print-me";
    let env = testenv!();
    let mut outputs: Vec<String> = Vec::new();
    let mut errors: Vec<Error> = Vec::new();

    // Vault: a JSON secret and a secret whose value is not JSON at all.
    let root = env.vault_client(None)?;
    let path = unique_name("marker");
    let json_value: HashMap<String, String> = [("password".to_owned(), MARKER.to_owned())].into();
    vaultrs::kv2::set(&root, "secret", &path, &json_value).await?;
    let vault_token = SecretString::from(env.var("VAULT_TOKEN"));
    let vault = VaultProvider::new(
        VaultConfig::new(env.vault_addr(), VaultAuth::Token(vault_token)).retry(quick_retry()),
    )?;
    let key = format!("secret/{path}");
    let value = vault.get(&key, None).await?;
    outputs.push(format!("{value:?}"));
    for property in ["nope", "password.deeper", "#/password/0"] {
        let refs = [SecretRef::new(&key).property(property)];
        errors.push(vault.get_many(&refs).await.remove(0).unwrap_err());
    }
    errors.push(vault.get(&key, Some("7")).await.unwrap_err());
    let no_policy = vaultrs::token::new(
        &root,
        Some(CreateTokenRequest::builder().policies(vec!["default".to_owned()])),
    )
    .await?
    .client_token;
    let outsider = VaultProvider::new(VaultConfig::new(
        env.vault_addr(),
        VaultAuth::Token(SecretString::from(no_policy)),
    ))?;
    errors.push(outsider.get(&key, None).await.unwrap_err());
    // A login whose secret id is the marker, refused.
    let config = VaultConfig::new(
        env.vault_addr(),
        VaultAuth::app_role("no-such-role", SecretString::from(MARKER)),
    )
    .retry(quick_retry());
    outputs.push(format!("{config:?}"));
    errors.push(
        VaultProvider::new(config)?
            .get(&key, None)
            .await
            .unwrap_err(),
    );

    // AWS: the marker as a plain string, where properties cannot be read.
    let name = unique_name("marker");
    env.secretsmanager()
        .await
        .create_secret()
        .name(&name)
        .secret_string(MARKER)
        .send()
        .await?;
    let config = AwsConfig::new(env.var("AWS_REGION"))
        .endpoint(env.var("AWS_ENDPOINT_URL"))
        .auth(AwsAuth::Static {
            access_key_id: "testing".into(),
            secret_access_key: SecretString::from(MARKER),
            session_token: Some(SecretString::from(MARKER)),
        })
        .retry(quick_retry());
    outputs.push(format!("{config:?}"));
    let aws = AwsProvider::new(config).await?;
    let value = aws.get(&name, None).await?;
    outputs.push(format!("{value:?}"));
    let refs = [
        SecretRef::new(&name).property("password"),
        SecretRef::new(&name).property("#/password"),
    ];
    for result in aws.get_many(&refs).await {
        errors.push(result.unwrap_err());
    }
    errors.push(
        aws.get(&name, Some("uuid/not-a-version"))
            .await
            .unwrap_err(),
    );
    outputs.push(format!("{:?}", aws.calls()));

    assert_eq!(errors.len(), 9, "{errors:#?}");
    outputs.extend(errors.iter().map(|e| format!("{e} {e:?}")));
    for output in &outputs {
        assert!(!output.contains(MARKER), "the marker leaked: {output}");
    }
    Ok(())
}
