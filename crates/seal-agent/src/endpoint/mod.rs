//! The opt-in localhost endpoint: compatible with the AWS Secrets Manager Agent, plus the
//! configured secrets of any provider by name.
//!
//! - `GET /secretsmanager/get?secretId=ID[&versionStage=S][&versionId=V][&refreshNow=true]`:
//!   the GetSecretValue JSON (`ARN`, `Name`, `VersionId`, `SecretString` or `SecretBinary`,
//!   `VersionStages`, `CreatedDate`), as the AWS agent answers; also as `GET /v1/SECRET_ID`, its
//!   other form (an AWS secret whose name starts with `secrets/` is reached through the first).
//! - `GET /v1/secrets/NAME[?refreshNow=true]`: the value of the configured secret NAME, as is.
//! - `GET /ping`: `healthy`, no token needed. `GET /metrics`: Prometheus text, no token needed
//!   (no label carries a secret name or value); also on a listener of its own
//!   ([`serve_metrics`], `metrics.listen`) for a scraper outside the pod.
//!
//! Rules, checked in this order on every request: a request carrying `X-Forwarded-For` (or
//! `Forwarded`) is refused (400: the endpoint must not be reachable through a proxy an attacker
//! can steer, the SSRF the AWS agent guards against); anything but GET is 405; secret routes need the token in
//! `X-Aws-Parameters-Secrets-Token` or `X-Seal-Token`, compared in constant time (403). Errors
//! are the AWS agent's `{"__type","message"}` JSON with 400, 403, 404, 405, 429, 502 (the
//! provider is unreachable) or 504 (it timed out).
//!
//! Connections: the listener is on loopback unless the configuration says
//! `dangerAllowNonLoopback`; accepted sockets get IP TTL 1, so answers cannot be routed off the
//! host; past `maxConnections` open ones a connection is answered 429 and closed; a client has
//! `headerTimeout` to send each request's headers and a connection lives at most
//! `connectionTimeout`.
//!
//! One file per job:
//!
//! | Job | File |
//! |---|---|
//! | the endpoint's state ([`Server`]), built and bound | `mod.rs` |
//! | accepting connections: loopback, IP TTL 1, `maxConnections`, timeouts; the metrics listener | `connections.rs` |
//! | one request: the rules in order (proxy headers, GET, token, query), then the route | `routing.rs` |
//! | the token check, constant time | `token.rs` |
//! | the query string and percent-decoding | `query.rs` |
//! | `/secretsmanager/get` and `/v1/SECRET_ID`: the AWS agent's GetSecretValue JSON | `aws.rs` |
//! | `/v1/secrets/NAME`: a configured secret, as is | `named.rs` |
//! | answers and errors, in the AWS agent's `{"__type","message"}` shape | `response.rs` |
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
use aws::AwsKey;
use cache::Cache;

/// The endpoint's state, shared by every connection.
pub struct Server {
    settings: ServerSettings,
    metrics: Arc<Metrics>,
    fetcher: Arc<Fetcher>,
    aws: Result<AwsProvider, String>,
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
        let aws = aws::aws_provider(&settings.aws, retry, aws_calls.clone()).await;
        Server {
            aws_cache: Cache::new(settings.ttl, settings.max_stale, settings.max_entries),
            named_cache: Cache::new(settings.ttl, settings.max_stale, settings.max_entries),
            settings,
            metrics,
            fetcher,
            aws,
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
