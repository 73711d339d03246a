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
//! or Bitnami's annotations on the object), never one its template claims. A 409 names the items
//! that do not open and nothing about why.
//!
//! # What a client can make the controller spend
//!
//! `verify` and `rotate` cost RSA private-key operations, the controller's scarcest resource (the
//! same operations unseal SealedSecrets). Every cost is therefore bounded before it is paid:
//! - requests per client address ([`RateLimiter`], `--rate-limit`, `--rate-limit-burst`);
//! - the body: [`MAX_BODY`] bytes, read within [`BODY_TIMEOUT`] (413 and 408 otherwise);
//! - items per request: [`MAX_ITEMS`] (413), counted before any decryption;
//! - RSA operations: a request is charged its worst case (items x keys) against one budget shared
//!   by every client ([`RSA_OPS_PER_SECOND`], [`RSA_OPS_BURST`]); a request the budget cannot pay
//!   gets 429 with the seconds until it could;
//! - the work runs on [`RSA_WORKERS`] thread at a time, so request work never takes more of the
//!   blocking pool than that and unsealing keeps the rest;
//! - connections: at most [`MAX_CONNECTIONS`] at once (more wait in the kernel's backlog), request
//!   headers within [`HEADER_TIMEOUT`], and no connection lives past [`CONNECTION_LIFETIME`], so
//!   half-sent requests cannot pile up.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
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
pub const MAX_BODY: usize = 2 * 1024 * 1024;
/// How long a client may take to send a request's body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest any one connection is served (keep-alive included).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);
/// Connections served at once, per listener.
pub const MAX_CONNECTIONS: usize = 256;
/// Most items in one posted SealedSecret (a Secret with more is rare; each costs RSA work).
pub const MAX_ITEMS: usize = 256;
/// RSA private-key operations per second the certificate API may spend, over every client.
/// About a tenth of one core at RSA-4096.
pub const RSA_OPS_PER_SECOND: f64 = 20.0;
/// RSA operations the certificate API may spend at once: a large SealedSecret against a few keys.
pub const RSA_OPS_BURST: f64 = 1024.0;
/// Threads request work runs on at once.
pub const RSA_WORKERS: usize = 1;
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

/// What request work may spend, over every client: a token bucket of RSA operations, and the
/// threads the work runs on.
pub struct RsaBudget {
    bucket: Mutex<(f64, Instant)>,
    workers: tokio::sync::Semaphore,
}

impl Default for RsaBudget {
    fn default() -> Self {
        Self {
            bucket: Mutex::new((RSA_OPS_BURST, Instant::now())),
            workers: tokio::sync::Semaphore::new(RSA_WORKERS),
        }
    }
}

impl RsaBudget {
    /// Takes `cost` operations if the budget has them; otherwise how long until it would.
    pub fn charge(&self, cost: f64, now: Instant) -> Result<(), Duration> {
        let mut bucket = self
            .bucket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tokens, seen) = &mut *bucket;
        *tokens = refill(*tokens, *seen, now);
        *seen = now;
        charge(tokens, cost)
    }
}

/// The bucket's tokens after refilling since `seen`.
fn refill(tokens: f64, seen: Instant, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(seen).as_secs_f64();
    (tokens + elapsed * RSA_OPS_PER_SECOND).min(RSA_OPS_BURST)
}

/// Takes `cost` from `tokens`, or says how long until they would cover it (never, for a cost
/// over the burst: [`MAX_ITEMS`] keeps requests under it with a handful of keys).
fn charge(tokens: &mut f64, cost: f64) -> Result<(), Duration> {
    if cost <= *tokens {
        *tokens -= cost;
        return Ok(());
    }
    let missing = (cost.min(RSA_OPS_BURST) - *tokens).max(0.0);
    Err(Duration::from_secs_f64(missing / RSA_OPS_PER_SECOND).max(Duration::from_secs(1)))
}

/// The worst-case RSA operations of opening `items` items with `keys` keys.
pub fn rsa_cost(items: usize, keys: usize) -> f64 {
    // Both are small (items <= MAX_ITEMS, keys a handful): exact in an f64.
    #[allow(clippy::cast_precision_loss)]
    let cost = (items.max(1) * keys.max(1)) as f64;
    cost
}

/// Serves `router` on `listener` until `stopped`, within the connection limits above: at most
/// [`MAX_CONNECTIONS`] at once, headers within [`HEADER_TIMEOUT`], each connection at most
/// [`CONNECTION_LIFETIME`]. HTTP/1.1 (what kubeseal, seal and the API server's proxy speak).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => return,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let (stream, client) = tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::debug!(%error, "accept failed");
                    continue;
                }
            },
        };
        let service = router.clone().layer(axum::Extension(ConnectInfo(client)));
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
            drop(permit);
        });
    }
}

/// The request body, read within [`BODY_TIMEOUT`] and [`MAX_BODY`]; or the status and message
/// of the refusal.
async fn read_body(body: Body) -> Result<Bytes, (StatusCode, String)> {
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {MAX_BODY} bytes\n"),
        )),
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            "the body did not arrive in time\n".to_owned(),
        )),
    }
}

/// The refusal of `posted` when it has too many items or the RSA budget cannot pay for opening
/// it with `keys` keys; checked before any decryption.
fn refusal(shared: &Shared, posted: &Posted, keys: usize) -> Option<Response> {
    let items = posted.sealed.spec.encrypted_data.len();
    if items > MAX_ITEMS {
        return Some(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{items} items; at most {MAX_ITEMS} per request\n"),
        ));
    }
    let wait = shared
        .rsa_budget
        .charge(rsa_cost(items, keys), Instant::now())
        .err()?;
    let mut response = text(
        StatusCode::TOO_MANY_REQUESTS,
        "the controller's budget for request work is spent; try again later\n",
    );
    if let Ok(value) = header::HeaderValue::from_str(&wait.as_secs().to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    Some(response)
}

/// Runs `work` on one of the [`RSA_WORKERS`], off the async workers.
async fn on_worker<T: Send + 'static>(
    shared: &Shared,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let _permit = shared.rsa_budget.workers.acquire().await.ok()?;
    tokio::task::spawn_blocking(work).await.ok()
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
    body: Body,
) -> Response {
    rate_limited(&shared, client, "verify", async {
        match read_body(body).await {
            Ok(body) => verify_body(&shared, body).await,
            Err((code, message)) => text(code, message),
        }
    })
    .await
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
    if let Some(refused) = refusal(shared, &posted, keys.keys().len()) {
        return refused;
    }
    let outcome = on_worker(shared, move || {
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
        Some(Ok(failed)) if failed.is_empty() => text(StatusCode::OK, "every item opens\n"),
        Some(Ok(failed)) => text(
            StatusCode::CONFLICT,
            format!(
                "no key of this controller opens item(s) {}\n",
                failed.join(", ")
            ),
        ),
        Some(Err(scope)) => text(StatusCode::CONFLICT, format!("{scope}\n")),
        None => text(StatusCode::INTERNAL_SERVER_ERROR, "verification failed\n"),
    }
}

async fn rotate(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    body: Body,
) -> Response {
    rate_limited(&shared, client, "rotate", async {
        match read_body(body).await {
            Ok(body) => rotate_body(&shared, body).await,
            Err((code, message)) => text(code, message),
        }
    })
    .await
}

async fn rotate_body(shared: &Shared, body: Bytes) -> Response {
    let posted = match parse_posted(&body) {
        Ok(posted) => posted,
        Err(problem) => return text(StatusCode::BAD_REQUEST, problem + "\n"),
    };
    let keys = shared.keys();
    if let Some(refused) = refusal(shared, &posted, keys.keys().len()) {
        return refused;
    }
    let outcome = on_worker(shared, move || {
        // The controller's own newest key: planted or future-dated keys are never in the ring
        // ([`crate::keys`]).
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
        Some(Ok(manifest)) => {
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
        Some(Err(None)) => text(StatusCode::SERVICE_UNAVAILABLE, "no sealing key yet\n"),
        Some(Err(Some(ResealError::Open(error)))) => {
            text(StatusCode::CONFLICT, format!("{error}\n"))
        }
        Some(Err(Some(_))) | None => text(StatusCode::INTERNAL_SERVER_ERROR, "re-sealing failed\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_rsa_budget_charges_the_worst_case_and_says_when_to_come_back() {
        assert!((rsa_cost(3, 2) - 6.0).abs() < f64::EPSILON);
        assert!(
            (rsa_cost(0, 0) - 1.0).abs() < f64::EPSILON,
            "parsing alone costs one"
        );
        let budget = RsaBudget::default();
        let start = Instant::now();
        assert!(budget.charge(RSA_OPS_BURST, start).is_ok(), "a full burst");
        let wait = budget.charge(20.0, start).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        // Refilled at the sustained rate.
        assert!(budget.charge(20.0, start + Duration::from_secs(1)).is_ok());
        // A cost over the burst waits at most as long as a whole burst takes to refill.
        let mut empty = 0.0;
        let wait = charge(&mut empty, 10.0 * RSA_OPS_BURST).unwrap_err();
        assert!(wait <= Duration::from_secs_f64(RSA_OPS_BURST / RSA_OPS_PER_SECOND));
        assert!(empty.abs() < f64::EPSILON, "a refused charge takes nothing");
    }

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
