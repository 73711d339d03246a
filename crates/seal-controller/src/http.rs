//! The certificate API every replica serves (`--listen-addr`, default `:8080`), and the metrics
//! endpoint on its own port (`--listen-metrics-addr`, default `:8081`) so that a NetworkPolicy can
//! open one without the other.
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/cert.pem` | the newest sealing certificate (PEM); 503 before the first key exists |
//! | `GET /v1/certs` | every active certificate with fingerprint, validity and source (JSON) |
//! | `POST /v1/verify` | 200 when every item of the posted SealedSecret opens, 409 when one does not |
//! | `POST /v1/rotate` | the posted SealedSecret sealed again with the newest key, same format |
//! | `GET /healthz` | 200 while the process serves |
//! | `GET /readyz` | 200 once a sealing certificate can be served |
//!
//! `verify` and `rotate` accept either flavour (`seal.dev` or `bitnami.com`) as JSON or YAML, as
//! kubeseal posts them, and answer in the flavour and format they were given. They never render
//! templates, and the scope they open and seal under is the SealedSecret's own (its `spec.scope`,
//! or Bitnami's annotations on the object), never one its template claims. They cost RSA private-key
//! operations, so they run off the async workers and are rate-limited per client address; a 409
//! names the items that do not open and nothing about why.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use seal_api::SealedSecret;
use seal_api::bitnami::{from_bitnami, to_bitnami};
use seal_api::manifest::{self, Format, Object};
use seal_api::sealing::{ResealError, reseal};
use seal_api::unsealing::open_each;
use serde_json::{Value, json};

use crate::controller::Shared;

/// Largest request body accepted (a SealedSecret is a few KiB; Secrets are capped at 1 MiB).
const MAX_BODY: usize = 2 * 1024 * 1024;
/// Client addresses remembered by the rate limiter before idle ones are forgotten.
const MAX_TRACKED_CLIENTS: usize = 10_000;

/// A token bucket per client address: `per_second` sustained, `burst` at once.
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    /// Allows `per_second` requests per second per client, and bursts of `burst`.
    pub fn new(per_second: f64, burst: u32) -> Self {
        Self {
            per_second,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `client` may make a request now (taking a token if so).
    pub fn allow(&self, client: IpAddr, now: Instant) -> bool {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_TRACKED_CLIENTS {
            let refill = self.burst / self.per_second.max(f64::MIN_POSITIVE);
            buckets.retain(|_, (_, seen)| now.duration_since(*seen).as_secs_f64() < refill);
        }
        let (tokens, seen) = buckets.entry(client).or_insert((self.burst, now));
        let elapsed = now.saturating_duration_since(*seen).as_secs_f64();
        *tokens = (*tokens + elapsed * self.per_second).min(self.burst);
        *seen = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The certificate API's routes.
pub fn api_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/cert.pem", get(cert_pem))
        .route("/v1/certs", get(certs))
        .route("/v1/verify", post(verify))
        .route("/v1/rotate", post(rotate))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared)
}

/// The metrics route.
pub fn metrics_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(shared)
}

fn text(code: StatusCode, body: impl Into<String>) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

fn counted(shared: &Shared, handler: &'static str, response: Response) -> Response {
    shared
        .metrics
        .http_request(handler, response.status().as_u16());
    response
}

async fn cert_pem(State(shared): State<Arc<Shared>>) -> Response {
    let keys = shared.keys();
    let response = match keys.newest() {
        Some(newest) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/x-pem-file")],
            newest.certificate.to_pem(),
        )
            .into_response(),
        None => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "no sealing key yet: the leader creates one on start\n",
        ),
    };
    counted(&shared, "cert.pem", response)
}

async fn certs(State(shared): State<Arc<Shared>>) -> Response {
    let keys = shared.keys();
    let newest = keys.newest().map(|k| k.fingerprint);
    let list: Vec<Value> = keys
        .keys()
        .iter()
        .map(|key| {
            json!({
                "fingerprint": key.fingerprint.to_string(),
                "notBefore": rfc3339(key.certificate.not_before()),
                "notAfter": rfc3339(key.certificate.not_after()),
                "secret": key.secret_name,
                "source": match key.source {
                    crate::keys::KeySource::Seal => "seal",
                    crate::keys::KeySource::Bitnami => "bitnami",
                },
                "newest": Some(key.fingerprint) == newest,
                "certificate": key.certificate.to_pem(),
            })
        })
        .collect();
    let response = axum::Json(json!({ "certificates": list })).into_response();
    counted(&shared, "certs", response)
}

/// `2026-11-23T14:00:00Z`.
fn rfc3339(time: time::OffsetDateTime) -> String {
    k8s_openapi::jiff::Timestamp::try_from(SystemTime::from(time))
        .map(|t| t.to_string())
        .unwrap_or_default()
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    counted(&shared, "healthz", text(StatusCode::OK, "ok\n"))
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let response = if shared.keys().newest().is_some() {
        text(StatusCode::OK, "ok\n")
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, "no sealing key yet\n")
    };
    counted(&shared, "readyz", response)
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let body = shared.metrics.render(&shared.keys(), SystemTime::now());
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// A posted SealedSecret, remembered with how it came so the answer can match.
struct Posted {
    sealed: SealedSecret,
    bitnami: bool,
    format: Format,
}

/// The posted SealedSecret, or why the body is not one (for a 400).
fn parse_posted(body: &[u8]) -> Result<Posted, String> {
    let body = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_owned())?;
    let format = Format::detect(body);
    let mut objects = manifest::parse(body).map_err(|e| e.to_string())?;
    if objects.len() != 1 {
        return Err(format!(
            "expected one SealedSecret, found {} objects",
            objects.len()
        ));
    }
    match objects.remove(0).object {
        Object::SealedSecret(sealed) => Ok(Posted {
            sealed: *sealed,
            bitnami: false,
            format,
        }),
        Object::Bitnami(bitnami) => Ok(Posted {
            sealed: from_bitnami(&bitnami).map_err(|e| e.to_string())?,
            bitnami: true,
            format,
        }),
        other => Err(format!(
            "expected a SealedSecret, found {}",
            other.describe()
        )),
    }
}

fn limited(shared: &Shared, client: SocketAddr) -> Option<Response> {
    (!shared.rate_limiter.allow(client.ip(), Instant::now())).then(|| {
        let mut response = text(
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests; try again in a second\n",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        response
    })
}

async fn verify(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Response {
    rate_limited(&shared, client, "verify", verify_body(&shared, body)).await
}

/// Runs `work` unless `client` is over the rate limit, and counts the answer under `handler`.
async fn rate_limited(
    shared: &Shared,
    client: SocketAddr,
    handler: &'static str,
    work: impl Future<Output = Response>,
) -> Response {
    let response = match limited(shared, client) {
        Some(refused) => refused,
        None => work.await,
    };
    counted(shared, handler, response)
}

async fn verify_body(shared: &Shared, body: Bytes) -> Response {
    let posted = match parse_posted(&body) {
        Ok(posted) => posted,
        Err(problem) => return text(StatusCode::BAD_REQUEST, problem + "\n"),
    };
    let keys = shared.keys();
    let outcome = tokio::task::spawn_blocking(move || {
        open_each(&posted.sealed, keys.ring()).map(|items| {
            items
                .into_iter()
                .filter(|(_, opened)| opened.is_err())
                .map(|(item, _)| item)
                .collect::<Vec<_>>()
        })
    })
    .await;
    match outcome {
        Ok(Ok(failed)) if failed.is_empty() => text(StatusCode::OK, "every item opens\n"),
        Ok(Ok(failed)) => text(
            StatusCode::CONFLICT,
            format!(
                "no key of this controller opens item(s) {}\n",
                failed.join(", ")
            ),
        ),
        Ok(Err(scope)) => text(StatusCode::CONFLICT, format!("{scope}\n")),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "verification failed\n"),
    }
}

async fn rotate(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Response {
    rate_limited(&shared, client, "rotate", rotate_body(&shared, body)).await
}

async fn rotate_body(shared: &Shared, body: Bytes) -> Response {
    let posted = match parse_posted(&body) {
        Ok(posted) => posted,
        Err(problem) => return text(StatusCode::BAD_REQUEST, problem + "\n"),
    };
    let keys = shared.keys();
    let outcome = tokio::task::spawn_blocking(move || {
        let newest = keys.newest().ok_or(None)?;
        let resealed = reseal(&posted.sealed, keys.ring(), &newest.certificate).map_err(Some)?;
        let value = if posted.bitnami {
            serde_json::to_value(to_bitnami(&resealed))
        } else {
            let mut clean = resealed;
            clean.status = None;
            serde_json::to_value(clean)
        }
        .expect("invariant: Kubernetes objects serialize to JSON");
        Ok::<_, Option<ResealError>>(
            manifest::write(&[value], posted.format).expect("invariant: JSON values serialize"),
        )
    })
    .await;
    match outcome {
        Ok(Ok(manifest)) => {
            let content_type = match Format::detect(&manifest) {
                Format::Json => "application/json",
                Format::Yaml => "application/yaml",
            };
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, content_type)],
                manifest,
            )
                .into_response()
        }
        Ok(Err(None)) => text(StatusCode::SERVICE_UNAVAILABLE, "no sealing key yet\n"),
        Ok(Err(Some(ResealError::Open(error)))) => text(StatusCode::CONFLICT, format!("{error}\n")),
        Ok(Err(Some(_))) | Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "re-sealing failed\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rate_limiter_allows_a_burst_then_the_sustained_rate_per_client() {
        let limiter = RateLimiter::new(2.0, 3);
        let start = Instant::now();
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        assert!((0..3).all(|_| limiter.allow(a, start)));
        assert!(!limiter.allow(a, start));
        assert!(limiter.allow(b, start), "another client has its own bucket");
        assert!(limiter.allow(a, start + Duration::from_millis(500)));
        assert!(!limiter.allow(a, start + Duration::from_millis(500)));
    }
}
