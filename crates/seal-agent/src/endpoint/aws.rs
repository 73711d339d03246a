//! The AWS Secrets Manager Agent's routes, `GET /secretsmanager/get?secretId=ID[&versionStage=S]
//! [&versionId=V][&refreshNow=true]` and `GET /v1/SECRET_ID`: an AWS secret fetched with the
//! endpoint's own AWS client (the `aws` settings; without a region the route answers 400 saying
//! so), cached per (id, stage, version), and answered with the GetSecretValue JSON the AWS agent
//! returns (`ARN`, `Name`, `VersionId`, `SecretString` or `SecretBinary`, `VersionStages`,
//! `CreatedDate`), so its clients work unchanged.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use seal_providers::reference::resolve::AwsDefaults;
use seal_providers::{AwsConfig, AwsProvider, CallCounter, Error, RetryPolicy};
use zeroize::Zeroizing;

use super::Server;
use super::query::Query;
use super::response::error;

/// A cache key: the secret id, the version stage and the version id.
pub(super) type AwsKey = (String, Option<String>, Option<String>);

impl Server {
    /// `/secretsmanager/get` and `/v1/SECRET_ID`: the secret `query` names, from the cache or
    /// from AWS.
    pub(super) async fn aws_secret(&self, query: Query) -> Response<Full<Bytes>> {
        let Some(id) = query.secret_id.filter(|id| !id.is_empty()) else {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestException",
                "secretId is required",
            );
        };
        let provider = match &self.aws {
            Ok(provider) => provider,
            Err(why) => return error(StatusCode::BAD_REQUEST, "InvalidRequestException", why),
        };
        let key = (id, query.version_stage, query.version_id);
        let result = self
            .aws_cache
            .get(&key, query.refresh_now, || async {
                let started = Instant::now();
                let result = provider
                    .get_secret(&key.0, key.1.as_deref(), key.2.as_deref())
                    .await
                    .map(|secret| Arc::new(get_secret_value_json(&secret)));
                self.metrics.upstream(
                    started.elapsed(),
                    result.as_ref().err().map(Error::metric_label),
                );
                result
            })
            .await;
        self.answer("aws", result, "application/x-amz-json-1.1")
    }
}

/// The AWS client of `/secretsmanager/get`, or why there is none (no region, a bad setting).
pub(super) async fn aws_provider(
    aws: &AwsDefaults,
    retry: RetryPolicy,
    calls: Arc<CallCounter>,
) -> Result<AwsProvider, String> {
    let Some(region) = aws.region.clone() else {
        return Err("no AWS region: set aws.region in the configuration or AWS_REGION".to_owned());
    };
    let mut config = AwsConfig::new(region).retry(retry).calls(calls);
    if let Some(endpoint) = &aws.endpoint {
        config = config.endpoint(endpoint.clone());
    }
    if let Some(role) = &aws.role_arn {
        config = config.assume_role(role.clone());
    }
    AwsProvider::new(config).await.map_err(|e| e.to_string())
}

/// The GetSecretValue JSON, written straight into a zeroizing buffer (the value is escaped in
/// place, never held in an intermediate `String`).
fn get_secret_value_json(secret: &seal_providers::AwsSecret) -> Zeroizing<Vec<u8>> {
    use base64::Engine as _;
    let value = secret.value.expose_bytes();
    let mut out = Zeroizing::new(Vec::with_capacity(value.len() * 2 + 512));
    let put = |out: &mut Vec<u8>, s: &str| {
        serde_json::to_writer(&mut *out, s).expect("invariant: writing JSON to a Vec cannot fail");
    };
    out.extend_from_slice(b"{\"ARN\":");
    put(&mut out, &secret.arn);
    out.extend_from_slice(b",\"Name\":");
    put(&mut out, &secret.name);
    out.extend_from_slice(b",\"VersionId\":");
    put(&mut out, &secret.version_id);
    if let (false, Some(text)) = (secret.value.is_binary(), secret.value.expose_str()) {
        out.extend_from_slice(b",\"SecretString\":");
        put(&mut out, text);
    } else {
        out.extend_from_slice(b",\"SecretBinary\":\"");
        let encoded = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(value));
        out.extend_from_slice(encoded.as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b",\"VersionStages\":");
    serde_json::to_writer(&mut *out, &secret.version_stages)
        .expect("invariant: writing JSON to a Vec cannot fail");
    out.extend_from_slice(b",\"CreatedDate\":");
    match secret.created_date {
        Some(date) => out.extend_from_slice(format!("{date}").as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_escapes_values_and_encodes_binary() {
        let secret = seal_providers::AwsSecret {
            arn: "arn:x".into(),
            name: "n".into(),
            version_id: "v1".into(),
            version_stages: vec!["AWSCURRENT".into()],
            created_date: Some(1.5),
            value: seal_providers::SecretValue::from_text("a\"b\n"),
        };
        let json: serde_json::Value =
            serde_json::from_slice(&get_secret_value_json(&secret)).unwrap();
        assert_eq!(json["SecretString"], "a\"b\n");
        assert_eq!(json["VersionStages"][0], "AWSCURRENT");
        assert_eq!(json["CreatedDate"], 1.5);
        let binary = seal_providers::AwsSecret {
            value: seal_providers::SecretValue::from_bytes(vec![0xff, 0]),
            ..secret
        };
        let json: serde_json::Value =
            serde_json::from_slice(&get_secret_value_json(&binary)).unwrap();
        assert_eq!(json["SecretBinary"], "/wA=");
        assert!(json.get("SecretString").is_none());
    }
}
