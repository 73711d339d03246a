//! The opt-in localhost endpoint: a drop-in for the AWS Secrets Manager Agent 2.1.0, plus the
//! configured secrets of any provider by name.
//!
//! - `GET /secretsmanager/get?secretId=ID[&versionStage=S][&versionId=V][&refreshNow=true]
//!   [&roleArn=ARN]` and `GET /v1/SECRET_ID[?...]`: answered as the AWS agent answers the same
//!   request, byte for byte: the GetSecretValue JSON (`ARN`, `Name`, `VersionId`, `SecretString`
//!   or `SecretBinary`, `VersionStages`, `CreatedDate` as a string), Secrets Manager's own error
//!   relayed with its status, and the agent's plain-text refusals (an AWS secret whose name
//!   starts with `secrets/` is reached through the first form: `/v1/secrets/` is seal's).
//! - `GET /v1/secrets/NAME[?refreshNow=true]`: the value of the configured secret NAME, as is.
//! - `GET /ping`: `healthy`, no token needed. `GET /metrics`: Prometheus text, no token needed
//!   (no label carries a secret name or value); also on a listener of its own
//!   ([`serve_metrics`], `metrics.listen`) for a scraper outside the pod.
//!
//! Rules, checked in the AWS agent's order on every request but `/ping` and `/metrics`: a
//! request carrying `X-Forwarded-For` (or, beyond the agent, `Forwarded`) is refused (400
//! `Forwarded`: the endpoint must not be reachable through a proxy an attacker can steer, the
//! SSRF the agent guards against); then the token, in `X-Aws-Parameters-Secrets-Token`,
//! `X-Vault-Token` (the agent's default headers) or `X-Seal-Token`, compared in constant time
//! (403 `Bad Token`); then anything but GET is 405 `Not allowed`; then the route (404 `Not
//! found`) and its query (400, the agent's message).
//!
//! Connections: the listener is on loopback unless the configuration says
//! `dangerAllowNonLoopback`; accepted sockets get IP TTL 1, so answers cannot be routed off the
//! host; past `maxConnections` open ones a connection is answered 429 `Connection limit
//! exceeded` and closed; a client has `headerTimeout` to send each request's headers and a
//! connection lives at most `connectionTimeout`.
//!
//! One file per job:
//!
//! | Job | File |
//! |---|---|
//! | the endpoint's state ([`Server`]), built and bound | `mod.rs` |
//! | accepting connections: loopback, IP TTL 1, `maxConnections`, timeouts; the metrics listener | `connections.rs` |
//! | one request: the rules in order (proxy headers, token, GET), then the route | `routing.rs` |
//! | the token check, constant time | `token.rs` |
//! | the request target as the AWS agent parses it, and its refusals | `query.rs` |
//! | `/secretsmanager/get` and `/v1/SECRET_ID`: the AWS agent's GetSecretValue JSON, roles | `aws.rs` |
//! | `/v1/secrets/NAME`: a configured secret, as is | `named.rs` |
//! | answers and errors, in the AWS agent's shapes | `response.rs` |
//! | the cache: TTL, single-flight, stale serving | `cache.rs` |

mod aws;
mod cache;
mod connections;
mod named;
mod query;
mod response;
mod routing;
mod token;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use seal_providers::{AwsProvider, CallCounter, RetryPolicy};
use tokio::net::TcpListener;

pub use connections::serve_metrics;

use crate::config::ServerSettings;
use crate::metrics::Metrics;
use crate::output::Fetcher;
use aws::{AwsKey, RoleClients};
use cache::Cache;

/// The endpoint's state, shared by every connection.
pub struct Server {
    settings: ServerSettings,
    metrics: Arc<Metrics>,
    fetcher: Arc<Fetcher>,
    aws: Result<Arc<AwsProvider>, String>,
    aws_roles: RoleClients,
    retry: RetryPolicy,
    aws_calls: Arc<CallCounter>,
    aws_cache: Cache<AwsKey>,
    named_cache: Cache<String>,
    active: AtomicUsize,
}

impl Server {
    /// The endpoint's state. The AWS client for `/secretsmanager/get` is built here (no call is
    /// made); without an AWS region that route answers 400 saying so.
    pub async fn new(
        settings: ServerSettings,
        retry: RetryPolicy,
        fetcher: Arc<Fetcher>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let aws_calls = Arc::new(CallCounter::new());
        let aws = aws::aws_provider(&settings.aws, None, retry.clone(), aws_calls.clone()).await;
        Server {
            aws_cache: Cache::new(settings.ttl, settings.max_stale, settings.max_entries),
            named_cache: Cache::new(settings.ttl, settings.max_stale, settings.max_entries),
            settings,
            metrics,
            fetcher,
            aws,
            aws_roles: RoleClients::default(),
            retry,
            aws_calls,
            active: AtomicUsize::new(0),
        }
    }

    /// The metrics text, the providers' call counts included.
    pub fn metrics_text(&self) -> String {
        self.metrics
            .render(&[self.fetcher.resolver().calls(), &self.aws_calls])
    }

    /// The call counter of the `/secretsmanager/get` provider.
    pub fn aws_calls(&self) -> &Arc<CallCounter> {
        &self.aws_calls
    }

    /// Binds the listener. Errors name the address.
    pub async fn bind(&self) -> anyhow::Result<TcpListener> {
        TcpListener::bind(self.settings.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", self.settings.listen))
    }
}
