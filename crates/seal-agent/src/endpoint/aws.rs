//! The AWS Secrets Manager Agent's routes, `GET /secretsmanager/get?secretId=ID[&versionStage=S]
//! [&versionId=V][&refreshNow=true][&roleArn=ARN]` and `GET /v1/SECRET_ID`: an AWS secret
//! fetched with the endpoint's own AWS client (the `aws` settings; without a region the route
//! answers 400 saying so), cached per (id, version id, stage, role), and answered with the
//! GetSecretValue JSON exactly as the agent 2.1.0 writes it, so its clients work unchanged.
//!
//! `roleArn`, as in the agent, reads the secret with that role assumed (through STS, with the
//! endpoint's own credentials); one client per role is kept, at most [`MAX_ROLES`], the agent's
//! default, after which a new role is refused with the agent's `MaxRolesExceeded`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use seal_providers::reference::resolve::AwsDefaults;
use seal_providers::{AwsConfig, AwsProvider, AwsSecret, CallCounter, RetryPolicy};
use zeroize::Zeroizing;

use super::Server;
use super::query::AwsQuery;
use super::response::aws_error;

/// A cache key: the secret id, the version id, the version stage and the role.
pub(super) type AwsKey = (String, Option<String>, Option<String>, Option<String>);

/// The most roles the endpoint keeps a client for, as the agent's default `max_roles`.
const MAX_ROLES: usize = 20;

impl Server {
    /// `/secretsmanager/get` and `/v1/SECRET_ID`: the secret `query` names, from the cache or
    /// from AWS.
    pub(super) async fn aws_secret(&self, query: AwsQuery) -> Response<Full<Bytes>> {
        let provider = match self.aws_client(query.role_arn.as_deref()).await {
            Ok(provider) => provider,
            Err(refusal) => return refusal,
        };
        let key = (
            query.secret_id,
            query.version_id,
            query.version_stage,
            query.role_arn,
        );
        let result = self
            .aws_cache
            .get(&key, query.refresh_now, || async {
                let started = Instant::now();
                let result = provider
                    .get_secret(&key.0, key.2.as_deref(), key.1.as_deref())
                    .await
                    .map(|secret| Arc::new(get_secret_value_json(&secret)));
                self.metrics.upstream(
                    started.elapsed(),
                    result.as_ref().err().map(|e| e.error.metric_label()),
                );
                result
            })
            .await;
        self.answer("aws", result, None)
    }

    /// The client for `role` (none: the endpoint's own), made at the first request naming the
    /// role; or the answer refusing it.
    async fn aws_client(
        &self,
        role: Option<&str>,
    ) -> Result<Arc<AwsProvider>, Response<Full<Bytes>>> {
        let no_client = |why: &str| {
            aws_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestException",
                Some(why),
            )
        };
        let Some(role) = role else {
            return self.aws.clone().map_err(|why| no_client(&why));
        };
        let mut clients = self.aws_roles.lock().await;
        if let Some(client) = clients.get(role) {
            return Ok(client.clone());
        }
        if clients.len() >= MAX_ROLES {
            return Err(aws_error(
                StatusCode::BAD_REQUEST,
                "MaxRolesExceeded",
                Some(&format!(
                    "The maximum number of assumed roles ({MAX_ROLES}) has been reached. Unable to assume the following role to create a client: {role}"
                )),
            ));
        }
        let client = aws_provider(
            &self.settings.aws,
            Some(role),
            self.retry.clone(),
            self.aws_calls.clone(),
        )
        .await
        .map_err(|why| no_client(&why))?;
        clients.insert(role.to_owned(), client.clone());
        Ok(client)
    }
}

/// The per-role clients of `roleArn` requests.
pub(super) type RoleClients = tokio::sync::Mutex<HashMap<String, Arc<AwsProvider>>>;

/// The AWS client of the AWS routes, with `role` assumed (none: the `aws` settings' own role,
/// if any), or why there is none (no region, a bad setting).
pub(super) async fn aws_provider(
    aws: &AwsDefaults,
    role: Option<&str>,
    retry: RetryPolicy,
    calls: Arc<CallCounter>,
) -> Result<Arc<AwsProvider>, String> {
    let Some(region) = aws.region.clone() else {
        return Err("no AWS region: set aws.region in the configuration or AWS_REGION".to_owned());
    };
    let mut config = AwsConfig::new(region).retry(retry).calls(calls);
    if let Some(endpoint) = &aws.endpoint {
        config = config.endpoint(endpoint.clone());
    }
    if let Some(role) = role.or(aws.role_arn.as_deref()) {
        config = config.assume_role(role);
    }
    AwsProvider::new(config)
        .await
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

/// The GetSecretValue JSON as the agent writes it: `ARN`, `Name`, `VersionId` (`null` when
/// the service gave none), then `SecretString` or `SecretBinary` (base64), then `VersionStages`
/// (left out when absent), then `CreatedDate` as a string of seconds since the epoch, with the
/// fraction only when there is one (`"1700000000"`, `"1700000000.25"`), or `null`. Written
/// straight into a zeroizing buffer: the value is escaped in place, never held in an
/// intermediate `String`.
fn get_secret_value_json(secret: &AwsSecret) -> Zeroizing<Vec<u8>> {
    use base64::Engine as _;
    let value = secret.value.expose_bytes();
    let mut out = Zeroizing::new(Vec::with_capacity(value.len() * 2 + 512));
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
    if let Some(stages) = &secret.version_stages {
        out.extend_from_slice(b",\"VersionStages\":");
        put(&mut out, stages);
    }
    out.extend_from_slice(b",\"CreatedDate\":");
    put(&mut out, &secret.created_date.map(|date| date.to_string()));
    out.push(b'}');
    out
}

/// `value` as JSON at the end of `out`.
fn put<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(out, value).expect("invariant: writing JSON to a Vec cannot fail");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(value: seal_providers::SecretValue) -> AwsSecret {
        AwsSecret {
            arn: Some("arn:x".into()),
            name: Some("n".into()),
            version_id: Some("v1".into()),
            version_stages: Some(vec!["AWSCURRENT".into()]),
            created_date: Some(1_700_000_000.25),
            value,
        }
    }

    #[test]
    fn the_json_is_the_agents_byte_for_byte() {
        let text = secret(seal_providers::SecretValue::from_text("a\"b\n é"));
        assert_eq!(
            String::from_utf8(get_secret_value_json(&text).to_vec()).unwrap(),
            r#"{"ARN":"arn:x","Name":"n","VersionId":"v1","SecretString":"a\"b\n é","VersionStages":["AWSCURRENT"],"CreatedDate":"1700000000.25"}"#
        );
        let bare = AwsSecret {
            arn: None,
            name: None,
            version_id: None,
            version_stages: None,
            created_date: Some(1_796_379_461.0),
            value: seal_providers::SecretValue::from_bytes(vec![0xff, 0, b'a', b'b']),
        };
        assert_eq!(
            String::from_utf8(get_secret_value_json(&bare).to_vec()).unwrap(),
            r#"{"ARN":null,"Name":null,"VersionId":null,"SecretBinary":"/wBhYg==","CreatedDate":"1796379461"}"#
        );
        let undated = AwsSecret {
            created_date: None,
            ..secret(seal_providers::SecretValue::from_text("v"))
        };
        assert!(
            String::from_utf8(get_secret_value_json(&undated).to_vec())
                .unwrap()
                .ends_with(r#""CreatedDate":null}"#)
        );
    }
}
