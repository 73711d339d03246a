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
//! - connections: at most [`crate::replica::serving::MAX_CONNECTIONS`] at once, with time limits
//!   for headers and for the whole connection ([`crate::replica::serving`]).

pub mod budgets;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
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

use self::budgets::{RateLimiter, RsaBudget, rsa_cost};
use crate::keys::CurrentKeys;
use crate::metrics::Metrics;

/// Largest request body accepted (a SealedSecret is a few KiB; Secrets are capped at 1 MiB).
pub const MAX_BODY: usize = 2 * 1024 * 1024;
/// How long a client may take to send a request's body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Most items in one posted SealedSecret (a Secret with more is rare; each costs RSA work).
pub const MAX_ITEMS: usize = 256;

/// What the handlers share: the keys, the metrics and the budgets.
pub struct ApiState {
    keys: CurrentKeys,
    metrics: Arc<Metrics>,
    rate_limiter: RateLimiter,
    rsa_budget: RsaBudget,
}

impl ApiState {
    /// Serving `keys`, counting in `metrics`, with `rate_limit` requests per second per client
    /// and bursts of `burst`.
    pub fn new(keys: CurrentKeys, metrics: Arc<Metrics>, rate_limit: f64, burst: u32) -> Arc<Self> {
        Arc::new(Self {
            keys,
            metrics,
            rate_limiter: RateLimiter::new(rate_limit, burst),
            rsa_budget: RsaBudget::default(),
        })
    }

    fn keys(&self) -> Arc<crate::keys::KeySet> {
        self.keys.get()
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
fn refusal(shared: &ApiState, client: IpAddr, posted: &Posted, keys: usize) -> Option<Response> {
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

/// Runs `work` on one of the [`budgets::RSA_WORKERS`], off the async workers.
async fn on_worker<T: Send + 'static>(
    shared: &ApiState,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let _permit = shared.rsa_budget.workers.acquire().await.ok()?;
    tokio::task::spawn_blocking(work).await.ok()
}

/// The certificate API's routes.
pub fn api_router(shared: Arc<ApiState>) -> Router {
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
pub fn metrics_router(shared: Arc<ApiState>) -> Router {
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

fn counted(shared: &ApiState, handler: &'static str, response: Response) -> Response {
    shared
        .metrics
        .http_request(handler, response.status().as_u16());
    response
}

async fn cert_pem(State(shared): State<Arc<ApiState>>) -> Response {
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

async fn certs(State(shared): State<Arc<ApiState>>) -> Response {
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

async fn healthz(State(shared): State<Arc<ApiState>>) -> Response {
    counted(&shared, "healthz", text(StatusCode::OK, "ok\n"))
}

async fn readyz(State(shared): State<Arc<ApiState>>) -> Response {
    let response = if shared.keys().newest().is_some() {
        text(StatusCode::OK, "ok\n")
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, "no sealing key yet\n")
    };
    counted(&shared, "readyz", response)
}

async fn metrics(State(shared): State<Arc<ApiState>>) -> Response {
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

fn limited(shared: &ApiState, client: SocketAddr) -> Option<Response> {
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
    State(shared): State<Arc<ApiState>>,
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
    shared: &ApiState,
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

async fn verify_body(shared: &ApiState, client: IpAddr, body: Bytes) -> Response {
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
    State(shared): State<Arc<ApiState>>,
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

async fn rotate_body(shared: &ApiState, client: IpAddr, body: Bytes) -> Response {
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
