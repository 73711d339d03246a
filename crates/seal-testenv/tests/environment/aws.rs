//! moto through the Rust `aws-sdk-secretsmanager` client: the calls the AWS provider makes.

use anyhow::{Context, Result};
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
use seal_testenv::unique_name;

use crate::testenv;

#[tokio::test]
async fn secrets_manager_creates_reads_versions_batch_reads_and_lists() -> Result<()> {
    let env = testenv!();
    let client = env.secretsmanager().await;
    let prefix = unique_name("ml-batch");
    let warehouse = format!("{prefix}/warehouse");
    let queue = format!("{prefix}/queue");

    let created = client
        .create_secret()
        .name(&warehouse)
        .secret_string(r#"{"username":"etl","password":"one"}"#)
        .send()
        .await?;
    client
        .create_secret()
        .name(&queue)
        .secret_string("amqp-password")
        .send()
        .await?;
    let first_version = created.version_id().context("no version id")?.to_owned();

    client
        .put_secret_value()
        .secret_id(&warehouse)
        .secret_string(r#"{"username":"etl","password":"two"}"#)
        .send()
        .await?;
    let current = client
        .get_secret_value()
        .secret_id(&warehouse)
        .send()
        .await?;
    assert_eq!(
        current.secret_string(),
        Some(r#"{"username":"etl","password":"two"}"#)
    );
    assert!(current.version_stages().iter().any(|s| s == "AWSCURRENT"));
    let previous = client
        .get_secret_value()
        .secret_id(&warehouse)
        .version_stage("AWSPREVIOUS")
        .send()
        .await?;
    assert_eq!(previous.version_id(), Some(first_version.as_str()));

    let batch = client
        .batch_get_secret_value()
        .secret_id_list(&warehouse)
        .secret_id_list(&queue)
        .send()
        .await?;
    let mut names: Vec<_> = batch
        .secret_values()
        .iter()
        .filter_map(|v| v.name())
        .collect();
    names.sort_unstable();
    assert_eq!(names, [queue.as_str(), warehouse.as_str()]);
    assert!(batch.errors().is_empty(), "{:?}", batch.errors());

    let listed = client
        .list_secrets()
        .filters(
            Filter::builder()
                .key(FilterNameStringType::Name)
                .values(&prefix)
                .build(),
        )
        .send()
        .await?;
    let mut names: Vec<_> = listed
        .secret_list()
        .iter()
        .filter_map(|s| s.name())
        .collect();
    names.sort_unstable();
    assert_eq!(names, [queue.as_str(), warehouse.as_str()]);

    let missing = client
        .get_secret_value()
        .secret_id(format!("{prefix}/missing"))
        .send()
        .await;
    let error = missing
        .expect_err("a missing secret is an error")
        .into_service_error();
    assert!(error.is_resource_not_found_exception(), "{error:?}");
    Ok(())
}
