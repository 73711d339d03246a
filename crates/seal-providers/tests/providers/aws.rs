//! The AWS provider against moto: stages and version ids, binary values, properties, batched
//! reads and their cost, find, credentials (static, web identity, an assumed role) and error
//! kinds.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use aws_sdk_secretsmanager::primitives::Blob;
use aws_sdk_secretsmanager::types::Tag;
use seal_providers::{
    AwsAuth, AwsConfig, AwsProvider, Call, CallStatus, Error, FindQuery, Provider, ProviderKind,
    SecretProvider, SecretRef, TokenSource,
};
use seal_testenv::{TestEnv, unique_name};
use secrecy::SecretString;

use crate::{quick_retry, testenv, text};

fn static_auth(env: &TestEnv) -> AwsAuth {
    AwsAuth::Static {
        access_key_id: env.var("AWS_ACCESS_KEY_ID").to_owned(),
        secret_access_key: SecretString::from(env.var("AWS_SECRET_ACCESS_KEY")),
        session_token: None,
    }
}

fn config(env: &TestEnv) -> AwsConfig {
    AwsConfig::new(env.var("AWS_REGION"))
        .endpoint(env.var("AWS_ENDPOINT_URL"))
        .auth(static_auth(env))
        .retry(quick_retry())
}

async fn provider(env: &TestEnv) -> Result<AwsProvider> {
    Ok(AwsProvider::new(config(env)).await?)
}

async fn create(env: &TestEnv, name: &str, value: &str, tags: &[(&str, &str)]) -> Result<String> {
    let created = env
        .secretsmanager()
        .await
        .create_secret()
        .name(name)
        .secret_string(value)
        .set_tags(Some(
            tags.iter()
                .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
                .collect(),
        ))
        .send()
        .await?;
    created.version_id.context("no version id")
}

#[tokio::test]
async fn get_reads_stages_version_ids_and_json_properties() -> Result<()> {
    let env = testenv!();
    let name = format!("{}/db", unique_name("ml-api"));
    let first_id = create(env, &name, r#"{"username":"app","password":"one"}"#, &[]).await?;
    env.secretsmanager()
        .await
        .put_secret_value()
        .secret_id(&name)
        .secret_string(r#"{"username":"app","password":"two","db.host":"literal"}"#)
        .send()
        .await?;

    let aws = provider(env).await?;
    let current = aws.get(&name, None).await?;
    assert_eq!(text(&current.property("password")?), "two");
    assert_eq!(text(&current.property("db.host")?), "literal");
    assert_eq!(aws.get(&name, Some("AWSCURRENT")).await?, current);
    let previous = aws.get(&name, Some("AWSPREVIOUS")).await?;
    assert_eq!(text(&previous.property("#/password")?), "one");
    let by_id = aws.get(&name, Some(&format!("uuid/{first_id}"))).await?;
    assert_eq!(by_id, previous);
    assert_eq!(
        aws.calls().count(Call::GetSecretValue, CallStatus::Success),
        4
    );

    let missing = aws.get(&format!("{name}-missing"), None).await;
    assert!(
        matches!(missing, Err(Error::NotFound { .. })),
        "{missing:?}"
    );
    let no_such_stage = aws.get(&name, Some("NOPE")).await;
    assert!(
        matches!(no_such_stage, Err(Error::NotFound { .. })),
        "{no_such_stage:?}"
    );
    // Permanent errors are not retried.
    assert_eq!(
        aws.calls()
            .count(Call::GetSecretValue, CallStatus::NotFound),
        2
    );
    Ok(())
}

#[tokio::test]
async fn binary_secrets_come_back_as_bytes() -> Result<()> {
    let env = testenv!();
    let name = unique_name("ml-batch-keytab");
    env.secretsmanager()
        .await
        .create_secret()
        .name(&name)
        .secret_binary(Blob::new(vec![0u8, 159, 146, 150]))
        .send()
        .await?;
    let value = provider(env).await?.get(&name, None).await?;
    assert!(value.is_binary());
    assert_eq!(value.expose_bytes(), [0u8, 159, 146, 150]);
    Ok(())
}

#[tokio::test]
async fn get_many_costs_one_batch_call_per_twenty_distinct_secrets() -> Result<()> {
    let env = testenv!();
    let prefix = unique_name("batch");
    let mut names = Vec::new();
    for i in 0..41 {
        let name = format!("{prefix}/s{i:02}");
        create(
            env,
            &name,
            &format!(r#"{{"user":"u{i}","password":"p{i}"}}"#),
            &[],
        )
        .await?;
        names.push(name);
    }
    let missing = format!("{prefix}/missing");
    // Two properties of each secret, one missing secret: 42 distinct secrets, 83 references.
    let mut refs: Vec<SecretRef> = names
        .iter()
        .flat_map(|n| {
            [
                SecretRef::new(n.clone()).property("user"),
                SecretRef::new(n.clone()).property("password"),
            ]
        })
        .collect();
    refs.push(SecretRef::new(missing.clone()));

    // Through the run-time choice of backend, as the controller holds it.
    let aws = Provider::Aws(provider(env).await?);
    assert_eq!(aws.kind(), ProviderKind::Aws);
    let values = aws.get_many(&refs).await;
    assert_eq!(values.len(), refs.len());
    for (i, pair) in values[..82].chunks(2).enumerate() {
        assert_eq!(text(pair[0].as_ref().unwrap()), format!("u{i}"));
        assert_eq!(text(pair[1].as_ref().unwrap()), format!("p{i}"));
    }
    assert!(
        matches!(values[82], Err(Error::NotFound { .. })),
        "{:?}",
        values[82]
    );
    let calls = aws.calls();
    assert_eq!(
        calls.total(Call::BatchGetSecretValue),
        42_u64.div_ceil(20),
        "{calls:?}"
    );
    assert_eq!(calls.total(Call::GetSecretValue), 0, "{calls:?}");

    // BatchGetSecretValue has no version parameter: other versions cost a GetSecretValue each.
    let versioned = aws
        .get_many(&[
            SecretRef::new(names[0].clone())
                .version("AWSCURRENT")
                .property("user"),
            SecretRef::new(names[1].clone()).version("AWSPREVIOUS"),
        ])
        .await;
    assert_eq!(text(versioned[0].as_ref().unwrap()), "u0");
    assert!(
        matches!(versioned[1], Err(Error::NotFound { .. })),
        "{:?}",
        versioned[1]
    );
    assert_eq!(calls.total(Call::BatchGetSecretValue), 4, "{calls:?}");
    assert_eq!(calls.total(Call::GetSecretValue), 1, "{calls:?}");
    Ok(())
}

#[tokio::test]
async fn find_matches_path_name_regexp_and_exact_tags() -> Result<()> {
    let env = testenv!();
    let prefix = unique_name("find");
    create(
        env,
        &format!("{prefix}/app/db"),
        "db",
        &[("team", "ml"), ("env", "prod")],
    )
    .await?;
    create(
        env,
        &format!("{prefix}/app/queue"),
        "queue",
        &[("team", "ml"), ("env", "dev")],
    )
    .await?;
    create(
        env,
        &format!("{prefix}/web/x"),
        "x",
        &[("team", "web"), ("env", "prod")],
    )
    .await?;
    let aws = provider(env).await?;
    let names = |found: &[(String, seal_providers::SecretValue)]| -> Vec<String> {
        found.iter().map(|(n, _)| n.clone()).collect()
    };

    let under_app = aws
        .find(&FindQuery {
            path: Some(format!("{prefix}/app/")),
            ..FindQuery::default()
        })
        .await?;
    assert_eq!(
        names(&under_app),
        [format!("{prefix}/app/db"), format!("{prefix}/app/queue")]
    );
    assert_eq!(text(&under_app[1].1), "queue");

    let by_name = aws
        .find(&FindQuery {
            path: Some(prefix.clone()),
            name_regexp: Some("(queue|x)$".into()),
            ..FindQuery::default()
        })
        .await?;
    assert_eq!(
        names(&by_name),
        [format!("{prefix}/app/queue"), format!("{prefix}/web/x")]
    );

    // team=ml and env=prod: only db has both (queue has team=ml, x has env=prod).
    let by_tags = aws
        .find(&FindQuery {
            path: Some(prefix.clone()),
            tags: BTreeMap::from([
                ("team".to_owned(), "ml".to_owned()),
                ("env".to_owned(), "prod".to_owned()),
            ]),
            ..FindQuery::default()
        })
        .await?;
    assert_eq!(names(&by_tags), [format!("{prefix}/app/db")]);

    let too_many = aws
        .find(&FindQuery {
            path: Some(prefix.clone()),
            limit: 2,
            ..FindQuery::default()
        })
        .await;
    assert!(
        matches!(too_many, Err(Error::TooMany { limit: 2, .. })),
        "{too_many:?}"
    );
    assert!(aws.calls().count(Call::ListSecrets, CallStatus::Success) >= 4);
    Ok(())
}

#[tokio::test]
async fn web_identity_and_assumed_role_credentials_come_from_sts_once() -> Result<()> {
    let env = testenv!();
    let name = unique_name("sts");
    create(env, &name, "through-sts", &[]).await?;

    let web_identity = AwsProvider::new(
        AwsConfig::new(env.var("AWS_REGION"))
            .endpoint(env.var("AWS_ENDPOINT_URL"))
            .auth(AwsAuth::WebIdentity {
                role_arn: "arn:aws:iam::123456789012:role/ml-batch".into(),
                token: TokenSource::Value(SecretString::from("a.service-account.token")),
            })
            .retry(quick_retry()),
    )
    .await?;
    for _ in 0..3 {
        assert_eq!(text(&web_identity.get(&name, None).await?), "through-sts");
    }
    let calls = web_identity.calls();
    assert_eq!(
        calls.count(Call::AssumeRoleWithWebIdentity, CallStatus::Success),
        1,
        "{calls:?}"
    );

    let assumed =
        AwsProvider::new(config(env).assume_role("arn:aws:iam::123456789012:role/reader")).await?;
    for _ in 0..3 {
        assert_eq!(text(&assumed.get(&name, None).await?), "through-sts");
    }
    assert_eq!(
        assumed.calls().count(Call::AssumeRole, CallStatus::Success),
        1,
        "{:?}",
        assumed.calls()
    );
    Ok(())
}

#[tokio::test]
async fn a_secret_scheduled_for_deletion_reads_as_not_found() -> Result<()> {
    let env = testenv!();
    let name = unique_name("deleted");
    create(env, &name, "soon-gone", &[]).await?;
    env.secretsmanager()
        .await
        .delete_secret()
        .secret_id(&name)
        .send()
        .await?;
    let aws = provider(env).await?;
    let single = aws.get(&name, None).await;
    assert!(matches!(single, Err(Error::NotFound { .. })), "{single:?}");
    let batched = aws.get_many(&[SecretRef::new(&name)]).await.remove(0);
    assert!(
        matches!(batched, Err(Error::NotFound { .. })),
        "{batched:?}"
    );
    Ok(())
}
