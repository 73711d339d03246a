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
//! - RSA operations: a request is charged its worst case (items x keys) to its client's address
//!   ([`RSA_OPS_PER_CLIENT_PER_SECOND`], [`RSA_OPS_PER_CLIENT_BURST`]) and to a budget shared by
//!   every client ([`RSA_OPS_PER_SECOND`], [`RSA_OPS_BURST`]); a request either cannot pay gets
//!   429 with the seconds until it could, and one client cannot spend what the others need;
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
/// RSA operations the certificate API may spend at once, over every client.
pub const RSA_OPS_BURST: f64 = 1024.0;
/// RSA operations per second one client address may spend: a quarter of the whole, so that one
/// client cannot keep the others out.
pub const RSA_OPS_PER_CLIENT_PER_SECOND: f64 = 5.0;
/// RSA operations one client address may spend at once: the largest request against two keys.
pub const RSA_OPS_PER_CLIENT_BURST: f64 = 512.0;
/// Threads request work runs on at once.
pub const RSA_WORKERS: usize = 1;
/// Client addresses remembered per bucket set before idle ones are forgotten.
const MAX_TRACKED_CLIENTS: usize = 10_000;

/// The one token-bucket rule of this module: `per_second` tokens refill up to `burst`.
#[derive(Clone, Copy)]
struct Rate {
    per_second: f64,
    burst: f64,
}

/// A bucket's tokens and when they were last counted.
#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    seen: Instant,
}

impl Rate {
    fn full(self, now: Instant) -> Bucket {
        Bucket {
            tokens: self.burst,
            seen: now,
        }
    }

    /// `bucket` refilled up to `now`.
    fn refilled(self, bucket: Bucket, now: Instant) -> Bucket {
        let elapsed = now.saturating_duration_since(bucket.seen).as_secs_f64();
        Bucket {
            tokens: (bucket.tokens + elapsed * self.per_second).min(self.burst),
            seen: now,
        }
    }

    /// What taking `cost` from `bucket` (already refilled) needs: nothing (`Ok`), or the wait
    /// until it could. A cost over the burst needs a full bucket and then takes all of it, so
    /// every allowed request can be paid eventually.
    fn wait(self, bucket: Bucket, cost: f64) -> Result<f64, Duration> {
        let cost = cost.min(self.burst);
        if cost <= bucket.tokens {
            return Ok(cost);
        }
        let missing = cost - bucket.tokens;
        Err(Duration::from_secs_f64(
            missing / self.per_second.max(f64::MIN_POSITIVE),
        ))
    }

    /// How long after a bucket was last seen it is full again, whatever it held.
    fn idle_until_full(self) -> f64 {
        self.burst / self.per_second.max(f64::MIN_POSITIVE)
    }
}

/// A bucket per client address, bounded to [`MAX_TRACKED_CLIENTS`] (idle, full ones go first).
struct PerClient {
    rate: Rate,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl PerClient {
    fn new(rate: Rate) -> Self {
        Self {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `decide` on `client`'s refilled bucket, under the lock.
    fn with<T>(&self, client: IpAddr, now: Instant, decide: impl FnOnce(&mut Bucket) -> T) -> T {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_TRACKED_CLIENTS {
            let full = self.rate.idle_until_full();
            buckets.retain(|_, bucket| now.duration_since(bucket.seen).as_secs_f64() < full);
        }
        let bucket = buckets.entry(client).or_insert(self.rate.full(now));
        *bucket = self.rate.refilled(*bucket, now);
        decide(bucket)
    }
}

/// Requests per client address: `per_second` sustained, `burst` at once.
pub struct RateLimiter(PerClient);

impl RateLimiter {
    /// Allows `per_second` requests per second per client, and bursts of `burst`.
    pub fn new(per_second: f64, burst: u32) -> Self {
        Self(PerClient::new(Rate {
            per_second,
            burst: f64::from(burst.max(1)),
        }))
    }

    /// Whether `client` may make a request now (taking a token if so).
    pub fn allow(&self, client: IpAddr, now: Instant) -> bool {
        self.0.with(client, now, |bucket| {
            let allowed = bucket.tokens >= 1.0;
            if allowed {
                bucket.tokens -= 1.0;
            }
            allowed
        })
    }
}

/// What request work may spend: RSA operations charged to the client that asks
/// ([`RSA_OPS_PER_CLIENT_PER_SECOND`], [`RSA_OPS_PER_CLIENT_BURST`]) and to every client together
/// ([`RSA_OPS_PER_SECOND`], [`RSA_OPS_BURST`]), and the threads the work runs on.
pub struct RsaBudget {
    per_client: PerClient,
    global: Mutex<Bucket>,
    workers: tokio::sync::Semaphore,
}

const GLOBAL: Rate = Rate {
    per_second: RSA_OPS_PER_SECOND,
    burst: RSA_OPS_BURST,
};
const PER_CLIENT: Rate = Rate {
    per_second: RSA_OPS_PER_CLIENT_PER_SECOND,
    burst: RSA_OPS_PER_CLIENT_BURST,
};

impl Default for RsaBudget {
    fn default() -> Self {
        Self {
            per_client: PerClient::new(PER_CLIENT),
            global: Mutex::new(GLOBAL.full(Instant::now())),
            workers: tokio::sync::Semaphore::new(RSA_WORKERS),
        }
    }
}

impl RsaBudget {
    /// Takes `cost` operations from `client`'s bucket and the shared one if both have them;
    /// otherwise takes nothing and says how long until both would.
    pub fn charge(&self, client: IpAddr, cost: f64, now: Instant) -> Result<(), Duration> {
        self.per_client.with(client, now, |own| {
            let mut global = self
                .global
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *global = GLOBAL.refilled(*global, now);
            match (PER_CLIENT.wait(*own, cost), GLOBAL.wait(*global, cost)) {
                (Ok(own_cost), Ok(global_cost)) => {
                    own.tokens -= own_cost;
                    global.tokens -= global_cost;
                    Ok(())
                }
                (Err(wait), Ok(_)) | (Ok(_), Err(wait)) => Err(wait.max(Duration::from_secs(1))),
                (Err(a), Err(b)) => Err(a.max(b).max(Duration::from_secs(1))),
            }
        })
    }
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
fn refusal(shared: &Shared, client: IpAddr, posted: &Posted, keys: usize) -> Option<Response> {
    let items = posted.sealed.spec.encrypted_data.len();
    if items > MAX_ITEMS {
        return Some(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{items} items; at most {MAX_ITEMS} per request\n"),
        ));
    }
    let wait = shared
        .rsa_budget
        .charge(client, rsa_cost(items, keys), Instant::now())
        .err()?;
    let mut response = text(
        StatusCode::TOO_MANY_REQUESTS,
        "the budget for request work (this client's or the controller's) is spent; try again later\n",
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
            Ok(body) => verify_body(&shared, client.ip(), body).await,
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

async fn verify_body(shared: &Shared, client: IpAddr, body: Bytes) -> Response {
    let posted = match parse_posted(&body) {
        Ok(posted) => posted,
        Err(problem) => return text(StatusCode::BAD_REQUEST, problem + "\n"),
    };
    let keys = shared.keys();
    if let Some(refused) = refusal(shared, client, &posted, keys.keys().len()) {
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
            Ok(body) => rotate_body(&shared, client.ip(), body).await,
            Err((code, message)) => text(code, message),
        }
    })
    .await
}

async fn rotate_body(shared: &Shared, client: IpAddr, body: Bytes) -> Response {
    let posted = match parse_posted(&body) {
        Ok(posted) => posted,
        Err(problem) => return text(StatusCode::BAD_REQUEST, problem + "\n"),
    };
    let keys = shared.keys();
    if let Some(refused) = refusal(shared, client, &posted, keys.keys().len()) {
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
        let a: IpAddr = [10, 0, 0, 1].into();
        assert!(budget.charge(a, RSA_OPS_PER_CLIENT_BURST, start).is_ok());
        let wait = budget.charge(a, 5.0, start).unwrap_err();
        assert_eq!(
            wait,
            Duration::from_secs(1),
            "a client's own bucket is spent"
        );
        // Refilled at the client's sustained rate.
        let later = start + Duration::from_secs(1);
        assert!(
            budget
                .charge(a, RSA_OPS_PER_CLIENT_PER_SECOND, later)
                .is_ok()
        );
        assert!(budget.charge(a, 1.0, later).is_err());
    }

    #[test]
    fn one_client_cannot_spend_the_others_budget_but_many_together_are_bounded() {
        let budget = RsaBudget::default();
        let start = Instant::now();
        let client = |n: u8| IpAddr::from([10, 0, 1, n]);
        assert!(
            budget
                .charge(client(1), RSA_OPS_PER_CLIENT_BURST, start)
                .is_ok()
        );
        assert!(budget.charge(client(1), 1.0, start).is_err());
        assert!(
            budget
                .charge(client(2), RSA_OPS_PER_CLIENT_BURST, start)
                .is_ok(),
            "another client pays from its own bucket"
        );
        // The shared budget is now spent: a third client waits too, and is told how long.
        let wait = budget.charge(client(3), 20.0, start).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        // Paid once the shared budget has refilled.
        let refilled = start + Duration::from_secs(1);
        assert!(
            budget
                .charge(client(3), RSA_OPS_PER_SECOND, refilled)
                .is_ok()
        );
    }

    #[test]
    fn a_cost_over_the_burst_needs_a_full_bucket_and_waits_at_most_one_refill() {
        let start = Instant::now();
        let full = PER_CLIENT.full(start);
        assert_eq!(
            PER_CLIENT.wait(full, 10.0 * RSA_OPS_PER_CLIENT_BURST),
            Ok(RSA_OPS_PER_CLIENT_BURST)
        );
        let empty = Bucket {
            tokens: 0.0,
            seen: start,
        };
        let wait = PER_CLIENT
            .wait(empty, 10.0 * RSA_OPS_PER_CLIENT_BURST)
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs_f64(PER_CLIENT.idle_until_full()));
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
