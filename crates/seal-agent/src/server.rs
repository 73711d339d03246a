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
//! `Forwarded`) is
//! refused (400: the endpoint must not be reachable through a proxy an attacker can steer, the
//! SSRF the AWS agent guards against); anything but GET is 405; secret routes need the token in
//! `X-Aws-Parameters-Secrets-Token` or `X-Seal-Token`, compared in constant time (403). Errors
//! are the AWS agent's `{"__type","message"}` JSON with 400, 403, 404, 405, 429, 502 (the
//! provider is unreachable) or 504 (it timed out).
//!
//! Connections: the listener is on loopback unless the configuration says
//! `dangerAllowNonLoopback`; accepted sockets get IP TTL 1, so answers cannot be routed off the
//! host; past `maxConnections` open ones a connection is answered 429 and closed; a client has
//! `headerTimeout` to send each request's headers and a connection lives at most
//! `connectionTimeout`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use seal_providers::reference::resolve::AwsDefaults;
use seal_providers::{AwsConfig, AwsProvider, CallCounter, Error, RetryPolicy};
use secrecy::ExposeSecret as _;
use subtle::ConstantTimeEq as _;
use tokio::net::TcpListener;
use zeroize::Zeroizing;

use crate::cache::{Body, Cache};
use crate::config::ServerSettings;
use crate::metrics::{CacheOutcome, Metrics};
use crate::output::Fetcher;

/// The token headers: seal's own and the AWS agent's. Header names are constants so that a
/// lookup hashes them without parsing them first.
const TOKEN_HEADERS: [HeaderName; 2] = [
    HeaderName::from_static("x-seal-token"),
    HeaderName::from_static("x-aws-parameters-secrets-token"),
];
/// The proxy headers whose presence refuses a request.
const FORWARDED_HEADERS: [HeaderName; 2] = [
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("forwarded"),
];

type AwsKey = (String, Option<String>, Option<String>);

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

/// Decrements the open-connection count when a connection ends.
struct Open(Arc<Server>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
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
        let aws = aws_provider(&settings.aws, retry, aws_calls.clone()).await;
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

    /// Serves connections from `listener` until the process ends.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            if !peer.ip().is_loopback() && !self.settings.danger_allow_non_loopback {
                // Unreachable while bound to loopback; a second line of defence.
                continue;
            }
            let _ = stream.set_ttl(1);
            let _ = stream.set_nodelay(true);
            let open = self.active.fetch_add(1, Ordering::Relaxed);
            let guard = Open(self.clone());
            let over = open >= self.settings.max_connections;
            if over {
                self.metrics.connection_rejected();
            }
            let server = self.clone();
            let (header_timeout, lifetime) = (
                self.settings.header_timeout,
                self.settings.connection_timeout,
            );
            tokio::spawn(async move {
                let _guard = guard;
                let service = hyper::service::service_fn(move |request| {
                    let server = server.clone();
                    async move { Ok::<_, Infallible>(server.handle(&request, over).await) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .keep_alive(!over)
                    .serve_connection(TokioIo::new(stream), service);
                let _ = tokio::time::timeout(lifetime, connection).await;
            });
        }
    }

    /// Answers one request.
    async fn handle(&self, request: &Request<Incoming>, over: bool) -> Response<Full<Bytes>> {
        let started = Instant::now();
        let path = request.uri().path();
        let route = match path {
            "/secretsmanager/get" => "aws",
            "/ping" => "ping",
            "/metrics" => "metrics",
            p if p.starts_with("/v1/secrets/") => "secrets",
            p if p.len() > "/v1/".len() && p.starts_with("/v1/") => "aws",
            _ => "other",
        };
        let response = if over {
            error(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequestsException",
                "too many open connections",
            )
        } else {
            self.route(request, route).await
        };
        self.metrics
            .request(route, response.status().as_u16(), started.elapsed());
        response
    }

    async fn route(
        &self,
        request: &Request<Incoming>,
        route: &'static str,
    ) -> Response<Full<Bytes>> {
        if FORWARDED_HEADERS
            .iter()
            .any(|name| request.headers().contains_key(name))
        {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestException",
                "forwarded requests (X-Forwarded-For, Forwarded) are refused",
            );
        }
        if request.method() != Method::GET {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowedException",
                "only GET is allowed",
            );
        }
        match route {
            "ping" => return text(StatusCode::OK, "healthy"),
            "metrics" => return text(StatusCode::OK, self.metrics_text()),
            _ => {}
        }
        if !self.authorized(request) {
            return error(
                StatusCode::FORBIDDEN,
                "AccessDeniedException",
                "missing or wrong token (X-Aws-Parameters-Secrets-Token or X-Seal-Token)",
            );
        }
        let query = match Query::parse(request.uri().query().unwrap_or("")) {
            // The AWS agent's `/v1/SECRET_ID`: the id is the rest of the path.
            Ok(mut query) if route == "aws" && request.uri().path().starts_with("/v1/") => {
                if query.secret_id.is_some() {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "InvalidRequestException",
                        "secretId is given twice (path and query)",
                    );
                }
                query.secret_id = Some(percent_decode(&request.uri().path()["/v1/".len()..]));
                query
            }
            Ok(query) => query,
            Err(message) => {
                return error(StatusCode::BAD_REQUEST, "InvalidRequestException", &message);
            }
        };
        match route {
            "aws" => self.aws_secret(query).await,
            "secrets" => {
                let name = &request.uri().path()["/v1/secrets/".len()..];
                self.named_secret(&percent_decode(name), &query).await
            }
            _ => error(StatusCode::NOT_FOUND, "NotFoundException", "no such route"),
        }
    }

    fn authorized(&self, request: &Request<Incoming>) -> bool {
        let expected = self.settings.token.expose_secret().as_bytes();
        let mut ok = false;
        for name in &TOKEN_HEADERS {
            if let Some(given) = request.headers().get(name) {
                ok |= bool::from(given.as_bytes().ct_eq(expected));
            }
        }
        ok
    }

    async fn aws_secret(&self, query: Query) -> Response<Full<Bytes>> {
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

    async fn named_secret(&self, name: &str, query: &Query) -> Response<Full<Bytes>> {
        let Some(reference) = self.fetcher.reference(name) else {
            return error(
                StatusCode::NOT_FOUND,
                "ResourceNotFoundException",
                &format!("no secret {name:?} is configured"),
            );
        };
        let key = name.to_owned();
        let result = self
            .named_cache
            .get(&key, query.refresh_now, || async {
                let started = Instant::now();
                let result = self
                    .fetcher
                    .resolver()
                    .resolve(std::slice::from_ref(reference))
                    .await
                    .map(|values| Arc::new(Zeroizing::new(values[0].expose_bytes().to_vec())))
                    .map_err(|e| e.cause);
                self.metrics.upstream(
                    started.elapsed(),
                    result.as_ref().err().map(Error::metric_label),
                );
                result
            })
            .await;
        self.answer("secrets", result, "application/octet-stream")
    }

    fn answer(
        &self,
        route: &'static str,
        result: Result<(Body, CacheOutcome), Error>,
        content_type: &'static str,
    ) -> Response<Full<Bytes>> {
        match result {
            Ok((body, outcome)) => {
                self.metrics.cache(route, outcome);
                let mut response = Response::new(Full::new(Bytes::from_owner(Shared(body))));
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
                if outcome == CacheOutcome::Stale {
                    response
                        .headers_mut()
                        .insert("x-seal-stale", HeaderValue::from_static("true"));
                }
                response
            }
            Err(e) => {
                self.metrics.cache(route, CacheOutcome::Miss);
                tracing::warn!(route, error = %e, "fetch failed");
                let (status, kind) = match &e {
                    Error::NotFound { .. } => (StatusCode::NOT_FOUND, "ResourceNotFoundException"),
                    Error::Denied { .. } => (StatusCode::FORBIDDEN, "AccessDeniedException"),
                    Error::Unavailable { detail, .. } if detail.contains("timed out") => {
                        (StatusCode::GATEWAY_TIMEOUT, "RequestTimeoutException")
                    }
                    Error::Unavailable { .. } => (StatusCode::BAD_GATEWAY, "ServiceUnavailable"),
                    _ => (StatusCode::BAD_REQUEST, "InvalidRequestException"),
                };
                error(status, kind, &e.to_string())
            }
        }
    }
}

/// Serves `/metrics` and `/ping` only (GET; anything else 404 or 405), on a listener of its own
/// that may face the pod network: it serves no secret, and no label holds a secret's name.
pub async fn serve_metrics(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    calls: Vec<Arc<CallCounter>>,
) {
    let calls = Arc::new(calls);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let (metrics, calls) = (metrics.clone(), calls.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let (metrics, calls) = (metrics.clone(), calls.clone());
                async move {
                    let response = if request.method() == Method::GET {
                        match request.uri().path() {
                            "/metrics" => {
                                let counters: Vec<&CallCounter> =
                                    calls.iter().map(AsRef::as_ref).collect();
                                text(StatusCode::OK, metrics.render(&counters))
                            }
                            "/ping" => text(StatusCode::OK, "healthy"),
                            _ => error(StatusCode::NOT_FOUND, "NotFoundException", "no such route"),
                        }
                    } else {
                        error(
                            StatusCode::METHOD_NOT_ALLOWED,
                            "MethodNotAllowedException",
                            "only GET is allowed",
                        )
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(5))
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(60), connection).await;
        });
    }
}

/// A cached body handed to hyper without a copy; the bytes are wiped when the last holder drops.
struct Shared(Body);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

async fn aws_provider(
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

/// The query parameters the endpoint reads; others are ignored, as the AWS agent does.
#[derive(Default, Debug)]
struct Query {
    secret_id: Option<String>,
    version_stage: Option<String>,
    version_id: Option<String>,
    refresh_now: bool,
}

impl Query {
    fn parse(query: &str) -> Result<Self, String> {
        let mut out = Query::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = decode(value, true);
            let slot = match name {
                "secretId" => &mut out.secret_id,
                "versionStage" => &mut out.version_stage,
                "versionId" => &mut out.version_id,
                "refreshNow" => {
                    out.refresh_now = match value.as_str() {
                        "true" => true,
                        "false" | "" => false,
                        _ => return Err("refreshNow must be true or false".into()),
                    };
                    continue;
                }
                _ => continue,
            };
            if slot.is_some() {
                return Err(format!("{name} is given twice"));
            }
            *slot = Some(value);
        }
        Ok(out)
    }
}

/// `%XX` escapes decoded; an invalid escape is kept as written.
fn percent_decode(text: &str) -> String {
    decode(text, false)
}

/// `%XX` escapes decoded, and `+` as a space when `plus_is_space` (a query value); an invalid
/// escape is kept as written, invalid UTF-8 replaced.
fn decode(text: &str, plus_is_space: bool) -> String {
    let escaped = text.contains('%') || (plus_is_space && text.contains('+'));
    if !escaped {
        return text.to_owned();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if plus_is_space && bytes[i] == b'+' {
            out.push(b' ');
            i += 1;
        } else if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(u8::try_from(high * 16 + low).expect("invariant: two hex digits fit a byte"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.into())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({"__type": kind, "message": message}).to_string();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_and_reject_repeats() {
        let q =
            Query::parse("secretId=ml%2Fdb&versionStage=AWSPREVIOUS&refreshNow=true&x=1").unwrap();
        assert_eq!(q.secret_id.as_deref(), Some("ml/db"));
        assert_eq!(q.version_stage.as_deref(), Some("AWSPREVIOUS"));
        assert!(q.refresh_now);
        assert!(Query::parse("secretId=a&secretId=b").is_err());
        assert!(Query::parse("refreshNow=yes").is_err());
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("a%zz"), "a%zz");
        assert_eq!(percent_decode("a+b%20c"), "a+b c");
        assert_eq!(
            Query::parse("secretId=a+b%2Bc")
                .unwrap()
                .secret_id
                .as_deref(),
            Some("a b+c")
        );
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }

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
