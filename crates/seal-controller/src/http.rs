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
//! that do not open and nothing about why. `rotate` seals to [`crate::keys::KeySet::newest`]: the
//! newest of the controller's own trusted keys, never an imported Bitnami key.
//!
//! # What a client can make the controller spend
//!
//! `verify` and `rotate` cost RSA private-key operations, the controller's scarcest resource: the
//! same operations unseal SealedSecrets, and a review showed one 2 MiB request costing 15.6 CPU
//! seconds and twenty of them delaying a real unseal by minutes. Every cost is bounded before it
//! is paid, by the [`HttpLimits`] the server was built with:
//! - requests per client address ([`RateLimiter`], `--rate-limit`, `--rate-limit-burst`);
//! - the body: [`HttpLimits::max_body`] bytes (413, at once when `Content-Length` says so), read
//!   within [`HttpLimits::body_timeout`] (408);
//! - items per request: [`HttpLimits::max_items`] (413), counted before any decryption;
//! - RSA operations, charged to the client as they are made: every private-key operation is paid
//!   from the client's bucket ([`HttpLimits::rsa_ops_per_client`]) and from one bucket shared by
//!   every client ([`HttpLimits::rsa_ops`]) before it runs ([`open_paid`]). A request first
//!   prepays one operation per item (429 with `Retry-After` before any work when it cannot); a
//!   budget that runs out midway stops the work with the same 429; what was prepaid and not used
//!   is given back. So a SealedSecret sealed to the key it names costs one operation per item,
//!   and only items that fail (or were sealed to an older key) cost one per key tried;
//! - the work (parsing included) runs on [`HttpLimits::workers`] threads of its own, never on the
//!   runtime's blocking pool, where unsealing decrypts: request work can delay an unseal only by
//!   the CPU it is allowed, never by holding the threads unsealing needs;
//! - connections: at most [`HttpLimits::max_connections`] at once per listener (more wait in the
//!   kernel's backlog), [`HttpLimits::max_connections_per_client`] from one address (more are
//!   answered 503 and closed), request headers (and an idle keep-alive) within
//!   [`HttpLimits::header_timeout`], and no connection past [`HttpLimits::connection_lifetime`],
//!   so half-sent requests cannot pile up.
//!
//! Caveat: a "client" is an IPv4 address or an IPv6 /64. Requests that come through the API
//! server's service proxy (as kubeseal's do by default) all share the API server's address, and so
//! one client's budget.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use seal_api::SealedSecret;
use seal_api::bitnami::{from_bitnami, to_bitnami};
use seal_api::manifest::{self, Format, Object};
use seal_api::sealing::{ResealError, reseal};
use seal_api::unsealing::{ItemOutcomes, KeyRing, UnsealError};
use seal_core::envelope::{self, Envelope};
use seal_core::{Label, OpenError, PrivateKey, ScopeError, SecretBytes};
use serde_json::{Value, json};

use crate::controller::Shared;

/// A token bucket's shape: tokens added per second, and the most it holds (and starts with).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_second: f64,
    /// Tokens the bucket holds at most: the largest burst.
    pub burst: f64,
}

/// What the certificate API lets clients spend. [`Default`] gives the documented defaults;
/// [`HttpLimits::validate`] says whether a set can be served.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpLimits {
    /// Largest request body in bytes. Default 2 MiB: the SealedSecret of a full 1 MiB Secret.
    pub max_body: usize,
    /// Most items in one posted SealedSecret. Default 256.
    pub max_items: usize,
    /// Time a client has to send a request's headers, and the longest a keep-alive connection
    /// waits idle for the next request. Default 10 s.
    pub header_timeout: Duration,
    /// Time a client has to send a request's body. Default 10 s.
    pub body_timeout: Duration,
    /// The longest any one connection is served, keep-alive included. Default 120 s.
    pub connection_lifetime: Duration,
    /// Connections served at once per listener; more wait in the kernel's backlog. Default 256.
    pub max_connections: usize,
    /// Connections one client address may hold at once; more are answered 503 and closed.
    /// Default 32.
    pub max_connections_per_client: usize,
    /// RSA private-key operations `verify` and `rotate` may spend over every client. Default 20
    /// per second (a tenth of a core at RSA-4096), bursts of 2,048.
    pub rsa_ops: Rate,
    /// RSA private-key operations one client may spend. Default 10 per second, bursts of 1,024
    /// (four `verify`s, two `rotate`s, of the largest SealedSecret allowed).
    pub rsa_ops_per_client: Rate,
    /// Threads of their own that request work runs on. Default 1.
    pub workers: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_body: 2 * 1024 * 1024,
            max_items: 256,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            connection_lifetime: Duration::from_secs(120),
            max_connections: 256,
            max_connections_per_client: 32,
            rsa_ops: Rate {
                per_second: 20.0,
                burst: 2048.0,
            },
            rsa_ops_per_client: Rate {
                per_second: 10.0,
                burst: 1024.0,
            },
            workers: 1,
        }
    }
}

/// Why a set of [`HttpLimits`] cannot be served: the field and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidHttpLimits(&'static str);

impl HttpLimits {
    /// Whether these limits can be served: every count at least one, every timeout above zero,
    /// every rate positive and finite with a burst of at least one operation.
    pub fn validate(&self) -> Result<(), InvalidHttpLimits> {
        let rate_ok = |rate: Rate| {
            rate.per_second.is_finite()
                && rate.per_second > 0.0
                && rate.burst.is_finite()
                && rate.burst >= 1.0
        };
        let checks = [
            (self.max_body >= 1, "the body limit must be at least 1 byte"),
            (self.max_items >= 1, "the item limit must be at least 1"),
            (
                !self.header_timeout.is_zero(),
                "the header timeout must be above zero",
            ),
            (
                !self.body_timeout.is_zero(),
                "the body timeout must be above zero",
            ),
            (
                !self.connection_lifetime.is_zero(),
                "the connection lifetime must be above zero",
            ),
            (self.max_connections >= 1, "at least 1 connection"),
            (
                self.max_connections_per_client >= 1,
                "at least 1 connection per client",
            ),
            (
                rate_ok(self.rsa_ops),
                "the RSA budget needs a positive rate and a burst of at least 1",
            ),
            (
                rate_ok(self.rsa_ops_per_client),
                "the per-client RSA budget needs a positive rate and a burst of at least 1",
            ),
            (self.workers >= 1, "at least 1 worker thread"),
        ];
        match checks.into_iter().find(|(ok, _)| !ok) {
            Some((_, problem)) => Err(InvalidHttpLimits(problem)),
            None => Ok(()),
        }
    }
}

// ---- token buckets: the pure arithmetic of every budget below ----

/// One token bucket: `tokens` as of `seen`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Bucket {
    tokens: f64,
    seen: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Self {
        Self {
            tokens: rate.burst,
            seen: now,
        }
    }

    /// The bucket at `now`: refilled at the rate since it was last seen, up to the burst.
    fn at(self, rate: Rate, now: Instant) -> Self {
        let elapsed = now.saturating_duration_since(self.seen).as_secs_f64();
        Self {
            tokens: (self.tokens + elapsed * rate.per_second).min(rate.burst),
            seen: now.max(self.seen),
        }
    }

    /// How long until the bucket holds `cost` (zero when it does). A cost over the burst waits
    /// as long as a whole burst takes: no caller charges that much at once.
    fn wait_for(self, rate: Rate, cost: f64) -> Duration {
        let missing = (cost.min(rate.burst) - self.tokens).max(0.0);
        seconds(missing / rate.per_second.max(f64::MIN_POSITIVE))
    }
}

/// `secs` as a duration, an hour at most (whatever the arithmetic gave).
fn seconds(secs: f64) -> Duration {
    const LONGEST: Duration = Duration::from_secs(3600);
    Duration::try_from_secs_f64(secs).map_or(LONGEST, |d| d.min(LONGEST))
}

/// Takes `cost` from every bucket, or from none: the buckets after paying, or the longest any of
/// them needs before it could pay. The buckets are as of now (see [`Bucket::at`]).
fn pay<const N: usize>(cost: f64, buckets: [(Bucket, Rate); N]) -> Result<[Bucket; N], Duration> {
    let wait = buckets
        .iter()
        .map(|(bucket, rate)| bucket.wait_for(*rate, cost))
        .max()
        .unwrap_or_default();
    if buckets.iter().any(|(bucket, _)| bucket.tokens < cost) {
        return Err(wait.max(Duration::from_secs(1)));
    }
    Ok(buckets.map(|(bucket, _)| Bucket {
        tokens: bucket.tokens - cost,
        ..bucket
    }))
}

/// The `Retry-After` value for `wait`: whole seconds, rounded up, at least one.
fn retry_after(wait: Duration) -> HeaderValue {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    HeaderValue::from(secs.max(1))
}

/// What budgets key a client by: its IPv4 address, or its IPv6 /64 (one host's usual share), so
/// that a client cannot multiply its budget by changing the low bits of its address.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

/// Client addresses a per-client budget remembers before it forgets some.
const MAX_TRACKED_CLIENTS: usize = 10_000;

/// One bucket per client; a client not in the map has a full bucket.
struct ClientBuckets {
    rate: Rate,
    buckets: HashMap<IpAddr, Bucket>,
}

impl ClientBuckets {
    fn new(rate: Rate) -> Self {
        Self {
            rate,
            buckets: HashMap::new(),
        }
    }

    /// `client`'s bucket as of `now`.
    fn get(&self, client: IpAddr, now: Instant) -> Bucket {
        self.buckets
            .get(&client)
            .map_or_else(|| Bucket::full(self.rate, now), |b| b.at(self.rate, now))
    }

    /// Records `client`'s bucket. Bounded: when the map is full, clients whose bucket has
    /// refilled are forgotten (a full bucket is what an absent one means); if that frees
    /// nothing, every client is forgotten. The budget shared by every client still holds then.
    fn set(&mut self, client: IpAddr, bucket: Bucket, now: Instant) {
        if self.buckets.len() >= MAX_TRACKED_CLIENTS && !self.buckets.contains_key(&client) {
            let rate = self.rate;
            self.buckets
                .retain(|_, b| b.at(rate, now).tokens < rate.burst);
            if self.buckets.len() >= MAX_TRACKED_CLIENTS {
                self.buckets.clear();
            }
        }
        self.buckets.insert(client, bucket);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A token bucket of requests per client address: `per_second` sustained, `burst` at once.
pub struct RateLimiter {
    clients: Mutex<ClientBuckets>,
}

impl RateLimiter {
    /// Allows `per_second` requests per second per client, and bursts of `burst`.
    pub fn new(per_second: f64, burst: u32) -> Self {
        Self {
            clients: Mutex::new(ClientBuckets::new(Rate {
                per_second,
                burst: f64::from(burst.max(1)),
            })),
        }
    }

    /// Whether `client` may make a request now (taking a token if so).
    pub fn allow(&self, client: IpAddr, now: Instant) -> bool {
        let client = client_key(client);
        let mut clients = lock(&self.clients);
        let bucket = clients.get(client, now);
        match pay(1.0, [(bucket, clients.rate)]) {
            Ok([paid]) => {
                clients.set(client, paid, now);
                true
            }
            Err(_) => false,
        }
    }
}

// ---- the RSA budget and the threads request work runs on ----

/// What `verify` and `rotate` may spend: RSA operations from a bucket per client and one shared
/// by every client, the threads the work runs on, and the [`HttpLimits`] it was made with.
pub struct RsaBudget {
    limits: HttpLimits,
    buckets: Mutex<(Bucket, ClientBuckets)>,
    pool: RequestPool,
}

impl Default for RsaBudget {
    /// The budget of [`HttpLimits::default`].
    fn default() -> Self {
        Self::new(HttpLimits::default())
    }
}

impl RsaBudget {
    /// A full budget for `limits`, and its worker threads (they end when it is dropped).
    pub fn new(limits: HttpLimits) -> Self {
        let now = Instant::now();
        Self {
            buckets: Mutex::new((
                Bucket::full(limits.rsa_ops, now),
                ClientBuckets::new(limits.rsa_ops_per_client),
            )),
            pool: RequestPool::new(limits.workers, limits.max_connections),
            limits,
        }
    }

    /// The limits this budget was made with.
    pub fn limits(&self) -> &HttpLimits {
        &self.limits
    }

    /// Takes `cost` operations from `client`'s bucket and the shared one, or from neither; when
    /// it cannot, how long until both would hold them.
    pub fn charge(&self, client: IpAddr, cost: f64, now: Instant) -> Result<(), Duration> {
        let client = client_key(client);
        let mut guard = lock(&self.buckets);
        let (global, clients) = &mut *guard;
        let mine = clients.get(client, now);
        let [global_paid, mine_paid] = pay(
            cost,
            [
                (global.at(self.limits.rsa_ops, now), self.limits.rsa_ops),
                (mine, clients.rate),
            ],
        )?;
        *global = global_paid;
        clients.set(client, mine_paid, now);
        Ok(())
    }

    /// Gives back `ops` operations charged to `client` and not spent (never above a burst).
    fn refund(&self, client: IpAddr, ops: f64, now: Instant) {
        let client = client_key(client);
        let mut guard = lock(&self.buckets);
        let (global, clients) = &mut *guard;
        let mut refunded = global.at(self.limits.rsa_ops, now);
        refunded.tokens = (refunded.tokens + ops).min(self.limits.rsa_ops.burst);
        *global = refunded;
        let mut mine = clients.get(client, now);
        mine.tokens = (mine.tokens + ops).min(clients.rate.burst);
        clients.set(client, mine, now);
    }
}

/// One request's account with the [`RsaBudget`]: operations prepaid up front, the rest paid one
/// at a time as they are made; what was prepaid and not spent goes back when it is dropped.
struct Meter<'a> {
    budget: &'a RsaBudget,
    client: IpAddr,
    prepaid: f64,
}

impl<'a> Meter<'a> {
    /// Prepays `ops` operations (at most the smaller burst, so that a prepayment can always
    /// succeed eventually); or how long until the budget could.
    fn prepay(budget: &'a RsaBudget, client: IpAddr, ops: usize) -> Result<Self, Duration> {
        let limits = budget.limits();
        // `ops` is at most twice `max_items`: exact in an f64.
        #[allow(clippy::cast_precision_loss)]
        let ops = (ops as f64)
            .min(limits.rsa_ops.burst)
            .min(limits.rsa_ops_per_client.burst);
        budget.charge(client, ops, Instant::now())?;
        Ok(Self {
            budget,
            client,
            prepaid: ops,
        })
    }

    /// Pays for one RSA operation about to be made.
    fn pay_one(&mut self) -> Result<(), Duration> {
        if self.prepaid >= 1.0 {
            self.prepaid -= 1.0;
            return Ok(());
        }
        self.budget.charge(self.client, 1.0, Instant::now())
    }
}

impl Drop for Meter<'_> {
    fn drop(&mut self) {
        if self.prepaid > 0.0 {
            self.budget
                .refund(self.client, self.prepaid, Instant::now());
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Threads of their own for request work. Unsealing decrypts on the runtime's blocking pool,
/// which `main` sizes to the cores; request work never takes one of those threads, so a flood of
/// requests can cost unsealing only the CPU the [`RsaBudget`] allows, never a thread. The queue
/// holds at most one job per connection the listener serves; a job whose client has gone (its
/// connection closed while it waited) is skipped.
struct RequestPool {
    jobs: std::sync::mpsc::SyncSender<Job>,
}

impl RequestPool {
    fn new(threads: usize, queue: usize) -> Self {
        let (jobs, queued) = std::sync::mpsc::sync_channel::<Job>(queue.max(1));
        let queued = Arc::new(Mutex::new(queued));
        for i in 0..threads.max(1) {
            let queued = Arc::clone(&queued);
            std::thread::Builder::new()
                .name(format!("seal-http-{i}"))
                .spawn(move || {
                    loop {
                        // The guard is dropped before the job runs, so threads take turns only
                        // at waiting.
                        let job = lock(&queued).recv();
                        let Ok(job) = job else { return };
                        // A panicking job loses its answer (the handler says 500), not the thread.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                })
                .expect("invariant: the process can start a thread when the server starts");
        }
        Self { jobs }
    }

    /// `work`'s result, computed on the pool; `None` when the queue is full or the job failed.
    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            if !answer.is_closed() {
                let _ = answer.send(work());
            }
        });
        self.jobs.try_send(job).ok()?;
        answered.await.ok()
    }
}

// ---- opening, paid one RSA operation at a time ----

/// Each item of `sealed` opened as [`seal_api::unsealing::open_each`] opens it (the key the
/// object names first, then the others; the same outcomes), calling `pay` before every RSA
/// private-key operation: a malformed item costs nothing, a key of another size costs nothing
/// (refused on length alone), every other key tried costs one. Stops with `pay`'s wait when it
/// refuses.
fn open_paid(
    sealed: &SealedSecret,
    ring: &KeyRing,
    mut pay: impl FnMut() -> Result<(), Duration>,
) -> Result<Result<ItemOutcomes, ScopeError>, Duration> {
    let label = match sealed.label() {
        Ok(label) => label,
        Err(scope) => return Ok(Err(scope)),
    };
    let keys = ring.ordered(sealed.fingerprint());
    let mut outcomes = Vec::with_capacity(sealed.spec.encrypted_data.len());
    for (item, text) in &sealed.spec.encrypted_data {
        let outcome = match envelope::decode_base64(text) {
            Err(malformed) => Err(OpenError::Malformed(malformed)),
            Ok(blob) => match Envelope::parse(&blob) {
                Err(malformed) => Err(OpenError::Malformed(malformed)),
                Ok(envelope) => open_one(&envelope, &keys, &label, &mut pay)?,
            },
        };
        outcomes.push((item.clone(), outcome));
    }
    Ok(Ok(outcomes))
}

/// One envelope opened with the first of `keys` that works, paying for each RSA operation.
fn open_one(
    envelope: &Envelope<'_>,
    keys: &[&PrivateKey],
    label: &Label,
    pay: &mut impl FnMut() -> Result<(), Duration>,
) -> Result<Result<SecretBytes, OpenError>, Duration> {
    for key in keys {
        // `open_with` refuses a key whose modulus is not the wrapped key's length before any
        // RSA work; every other key costs one operation, whether it opens or not. The key is
        // tried either way, so the outcome never depends on this accounting.
        if key.public_key().bits().div_ceil(8) == envelope.wrapped_key_len() {
            pay()?;
        }
        if let Ok(value) = envelope.open_with(key, label) {
            return Ok(Ok(value));
        }
    }
    Ok(Err(OpenError::DecryptionFailed))
}

// ---- connections ----

/// Open connections per client address, for [`HttpLimits::max_connections_per_client`].
struct Connections {
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// A connection counted in [`Connections`]; uncounted when dropped.
struct Counted {
    connections: Arc<Connections>,
    client: IpAddr,
}

impl Connections {
    fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit: limit.max(1),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a new connection from `client`, or `None` when it holds its limit already.
    fn admit(self: &Arc<Self>, client: IpAddr) -> Option<Counted> {
        let client = client_key(client);
        let mut open = lock(&self.open);
        let count = open.entry(client).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(Counted {
            connections: Arc::clone(self),
            client,
        })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut open = lock(&self.connections.open);
        if let Some(count) = open.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

/// What a connection over its client's limit is told before it is closed.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 37\r\n\r\ntoo many connections from one client\n";

/// Serves `router` on `listener` until `stopped`, within [`HttpLimits::default`]; see
/// [`serve_with`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    stopped: tokio::sync::watch::Receiver<bool>,
) {
    serve_with(listener, router, stopped, &HttpLimits::default()).await;
}

/// Serves `router` on `listener` until `stopped`, within the connection limits of `limits`: at
/// most [`HttpLimits::max_connections`] at once (the next waits in the backlog),
/// [`HttpLimits::max_connections_per_client`] from one client (the next is answered 503 and
/// closed), headers within [`HttpLimits::header_timeout`], each connection at most
/// [`HttpLimits::connection_lifetime`]. HTTP/1.1 (what kubeseal, seal and the API server's proxy
/// speak).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    router: Router,
    mut stopped: tokio::sync::watch::Receiver<bool>,
    limits: &HttpLimits,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let clients = Connections::new(limits.max_connections_per_client);
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
        let Some(counted) = clients.admit(client.ip()) else {
            tracing::debug!(client = %client.ip(), "too many connections from one client");
            // One attempt, never waiting: the answer is a courtesy, the close is the refusal.
            let _ = stream.try_write(REFUSED);
            continue;
        };
        let service = router.clone().layer(axum::Extension(ConnectInfo(client)));
        let (header_timeout, lifetime) = (limits.header_timeout, limits.connection_lifetime);
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            let _ = tokio::time::timeout(lifetime, connection).await;
            drop((permit, counted));
        });
    }
}

// ---- routes ----

/// The certificate API's routes.
pub fn api_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/cert.pem", get(cert_pem))
        .route("/v1/certs", get(certs))
        .route("/v1/verify", post(verify))
        .route("/v1/rotate", post(rotate))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
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
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        response
    })
}

/// What a posted SealedSecret is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Work {
    Verify,
    Rotate,
}

impl Work {
    fn handler(self) -> &'static str {
        match self {
            Work::Verify => "verify",
            Work::Rotate => "rotate",
        }
    }

    /// How many times the items are opened: `rotate` opens them once, paid, to learn that they
    /// open and what that costs, then again inside seal-api's `reseal`, so that the format of a
    /// re-sealed object is written in one place.
    fn passes(self) -> usize {
        match self {
            Work::Verify => 1,
            Work::Rotate => 2,
        }
    }
}

async fn verify(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    posted_work(shared, client, request, Work::Verify).await
}

async fn rotate(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    posted_work(shared, client, request, Work::Rotate).await
}

/// `verify` and `rotate`, in the order their costs are bounded: the client's request rate, the
/// declared and the actual body size, the body's time, then everything else on the request
/// threads ([`answer`]).
async fn posted_work(
    shared: Arc<Shared>,
    client: SocketAddr,
    request: Request,
    work: Work,
) -> Response {
    let response = match limited(&shared, client) {
        Some(refused) => refused,
        None => match read_body(request, shared.rsa_budget.limits()).await {
            Err((code, message)) => text(code, message),
            Ok(body) => {
                let on_pool = Arc::clone(&shared);
                shared
                    .rsa_budget
                    .pool
                    .run(move || answer(&on_pool, client.ip(), &body, work))
                    .await
                    .unwrap_or_else(|| {
                        let mut busy = text(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "the controller is busy with other requests; try again later\n",
                        );
                        busy.headers_mut()
                            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                        busy
                    })
            }
        },
    };
    counted(&shared, work.handler(), response)
}

/// Whether a declared `Content-Length` is over `max_body` (the body is then refused unread).
fn declared_too_large(length: Option<&HeaderValue>, max_body: usize) -> bool {
    length
        .and_then(|value| value.to_str().ok()?.trim().parse::<u64>().ok())
        .is_some_and(|declared| declared > max_body as u64)
}

/// The request body, within [`HttpLimits::max_body`] (refused before a byte is read when the
/// headers declare more) and [`HttpLimits::body_timeout`]; or the status and message of the
/// refusal.
async fn read_body(request: Request, limits: &HttpLimits) -> Result<Bytes, (StatusCode, String)> {
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {} bytes\n", limits.max_body),
        )
    };
    if declared_too_large(
        request.headers().get(header::CONTENT_LENGTH),
        limits.max_body,
    ) {
        return Err(too_large());
    }
    let body: Body = request.into_body();
    match tokio::time::timeout(
        limits.body_timeout,
        axum::body::to_bytes(body, limits.max_body),
    )
    .await
    {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(too_large()),
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            "the body did not arrive in time\n".to_owned(),
        )),
    }
}

/// A 429 saying when the budget could pay.
fn budget_spent(wait: Duration) -> Response {
    let mut response = text(
        StatusCode::TOO_MANY_REQUESTS,
        "the budget for RSA work is spent (this client's or every client's); try again later\n",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, retry_after(wait));
    response
}

/// The answer to a posted body, computed on a request thread: parsed, its items counted, its
/// RSA operations paid as they are made ([`open_paid`]), then verified or re-sealed.
fn answer(shared: &Shared, client: IpAddr, body: &[u8], work: Work) -> Response {
    let posted = match parse_posted(body) {
        Ok(posted) => posted,
        Err(problem) => return text(StatusCode::BAD_REQUEST, problem + "\n"),
    };
    let limits = shared.rsa_budget.limits();
    let items = posted.sealed.spec.encrypted_data.len();
    if items > limits.max_items {
        return text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{items} items; at most {} per request (send the SealedSecret in parts)\n",
                limits.max_items
            ),
        );
    }
    let keys = shared.keys();
    // The controller's own newest trusted key ([`crate::keys`]: never an imported Bitnami key,
    // one dated in the future, or one planted without the controller's trust).
    let newest = keys.newest();
    if work == Work::Rotate && newest.is_none() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "no sealing key yet\n");
    }
    let mut meter = match Meter::prepay(&shared.rsa_budget, client, items * work.passes()) {
        Ok(meter) => meter,
        Err(wait) => return budget_spent(wait),
    };
    let mut spent = 0_usize;
    let opened = open_paid(&posted.sealed, keys.ring(), || {
        meter.pay_one()?;
        spent += 1;
        Ok(())
    });
    let outcomes = match opened {
        Err(wait) => return budget_spent(wait),
        Ok(Err(scope)) => return text(StatusCode::CONFLICT, format!("{scope}\n")),
        Ok(Ok(outcomes)) => outcomes,
    };
    let failed: Vec<_> = outcomes
        .into_iter()
        .filter_map(|(item, opened)| opened.err().map(|error| (item, error)))
        .collect();
    match (work, newest) {
        (Work::Verify, _) if failed.is_empty() => text(StatusCode::OK, "every item opens\n"),
        (Work::Verify, _) => {
            let names: Vec<&str> = failed.iter().map(|(item, _)| item.as_str()).collect();
            text(
                StatusCode::CONFLICT,
                format!(
                    "no key of this controller opens item(s) {}\n",
                    names.join(", ")
                ),
            )
        }
        (Work::Rotate, _) if !failed.is_empty() => {
            let (item, error) = failed.into_iter().next().expect("invariant: not empty");
            text(
                StatusCode::CONFLICT,
                format!("{}\n", UnsealError::Item { item, error }),
            )
        }
        (Work::Rotate, Some(newest)) => {
            // `reseal` opens every item again, exactly as the paid pass did: the same
            // operations, paid again.
            for _ in 0..spent {
                if let Err(wait) = meter.pay_one() {
                    return budget_spent(wait);
                }
            }
            resealed(&posted, keys.ring(), &newest.certificate)
        }
        (Work::Rotate, None) => text(StatusCode::SERVICE_UNAVAILABLE, "no sealing key yet\n"),
    }
}

/// `posted` sealed again to `certificate`, in the flavour and format it came in.
fn resealed(posted: &Posted, ring: &KeyRing, certificate: &seal_core::Certificate) -> Response {
    let resealed = match reseal(&posted.sealed, ring, certificate) {
        Ok(resealed) => resealed,
        Err(ResealError::Open(error)) => return text(StatusCode::CONFLICT, format!("{error}\n")),
        Err(_) => return text(StatusCode::INTERNAL_SERVER_ERROR, "re-sealing failed\n"),
    };
    let value = if posted.bitnami {
        serde_json::to_value(to_bitnami(&resealed))
    } else {
        let mut clean = resealed;
        clean.status = None;
        serde_json::to_value(clean)
    }
    .expect("invariant: Kubernetes objects serialize to JSON");
    let manifest =
        manifest::write(&[value], posted.format).expect("invariant: JSON values serialize");
    let content_type = match posted.format {
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

#[cfg(test)]
mod tests {
    use super::*;
    use seal_core::{Certificate, KeySize};
    use std::time::Duration;

    const ONE_PER_SECOND: Rate = Rate {
        per_second: 1.0,
        burst: 10.0,
    };

    fn limits(global: Rate, per_client: Rate) -> HttpLimits {
        HttpLimits {
            rsa_ops: global,
            rsa_ops_per_client: per_client,
            ..HttpLimits::default()
        }
    }

    #[test]
    fn the_default_limits_are_valid_and_zero_counts_are_not() {
        assert_eq!(HttpLimits::default().validate(), Ok(()));
        let zero_workers = HttpLimits {
            workers: 0,
            ..HttpLimits::default()
        };
        assert!(zero_workers.validate().is_err());
        let no_rate = limits(
            Rate {
                per_second: 0.0,
                burst: 10.0,
            },
            ONE_PER_SECOND,
        );
        assert!(no_rate.validate().is_err());
        let nan_burst = limits(
            ONE_PER_SECOND,
            Rate {
                per_second: 1.0,
                burst: f64::NAN,
            },
        );
        assert!(nan_burst.validate().is_err());
        let no_header_time = HttpLimits {
            header_timeout: Duration::ZERO,
            ..HttpLimits::default()
        };
        assert!(no_header_time.validate().is_err());
    }

    #[test]
    fn a_bucket_refills_at_its_rate_up_to_its_burst() {
        let start = Instant::now();
        let empty = Bucket {
            tokens: 0.0,
            seen: start,
        };
        let later = empty.at(ONE_PER_SECOND, start + Duration::from_secs(3));
        assert!((later.tokens - 3.0).abs() < 1e-9);
        let much_later = empty.at(ONE_PER_SECOND, start + Duration::from_secs(3600));
        assert!(
            (much_later.tokens - 10.0).abs() < 1e-9,
            "capped at the burst"
        );
        // A clock that reads earlier never drains a bucket.
        assert!((later.at(ONE_PER_SECOND, start).tokens - 3.0).abs() < 1e-9);
        assert_eq!(later.wait_for(ONE_PER_SECOND, 5.0), Duration::from_secs(2));
        assert_eq!(later.wait_for(ONE_PER_SECOND, 1.0), Duration::ZERO);
        // A cost over the burst waits for a whole burst, not forever.
        assert_eq!(empty.wait_for(ONE_PER_SECOND, 1e9), Duration::from_secs(10));
    }

    #[test]
    fn a_charge_takes_from_every_bucket_or_from_none() {
        let start = Instant::now();
        let rich = Bucket::full(ONE_PER_SECOND, start);
        let poor = Bucket {
            tokens: 2.0,
            seen: start,
        };
        let refused = pay(5.0, [(rich, ONE_PER_SECOND), (poor, ONE_PER_SECOND)]);
        assert_eq!(
            refused,
            Err(Duration::from_secs(3)),
            "the poorer one decides"
        );
        let [rich_after, poor_after] =
            pay(2.0, [(rich, ONE_PER_SECOND), (poor, ONE_PER_SECOND)]).unwrap();
        assert!((rich_after.tokens - 8.0).abs() < 1e-9);
        assert!(poor_after.tokens.abs() < 1e-9);
        // Never a Retry-After of zero: a refusal waits at least a second.
        let short = Bucket {
            tokens: 0.9,
            seen: start,
        };
        assert_eq!(
            pay(1.0, [(short, ONE_PER_SECOND)]),
            Err(Duration::from_secs(1))
        );
        assert_eq!(retry_after(Duration::from_millis(1500)), "2");
        assert_eq!(retry_after(Duration::ZERO), "1");
    }

    #[test]
    fn one_client_cannot_spend_the_budget_of_every_client() {
        let budget = RsaBudget::new(limits(
            Rate {
                per_second: 1.0,
                burst: 100.0,
            },
            Rate {
                per_second: 1.0,
                burst: 60.0,
            },
        ));
        let now = Instant::now();
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            [10, 0, 0, 1].into(),
            [10, 0, 0, 2].into(),
            [10, 0, 0, 3].into(),
        );
        assert!(budget.charge(a, 60.0, now).is_ok());
        assert_eq!(
            budget.charge(a, 1.0, now),
            Err(Duration::from_secs(1)),
            "a's own share is spent"
        );
        assert!(budget.charge(b, 40.0, now).is_ok(), "b still has its share");
        assert_eq!(
            budget.charge(c, 1.0, now),
            Err(Duration::from_secs(1)),
            "every client's budget is spent"
        );
        assert!(budget.charge(c, 1.0, now + Duration::from_secs(1)).is_ok());
        // A refused charge took nothing: b's bucket still holds its 20.
        assert!(
            budget
                .charge(b, 20.0, now + Duration::from_secs(100))
                .is_ok()
        );
    }

    #[test]
    fn what_a_request_prepaid_and_did_not_spend_is_given_back() {
        let budget = RsaBudget::new(limits(ONE_PER_SECOND, ONE_PER_SECOND));
        let client: IpAddr = [10, 0, 0, 1].into();
        {
            let mut meter = Meter::prepay(&budget, client, 8).unwrap();
            for _ in 0..3 {
                meter.pay_one().unwrap();
            }
        }
        // 10 - 3 spent: 7 left (and a little refill).
        let now = Instant::now();
        assert!(budget.charge(client, 7.0, now).is_ok());
        assert!(budget.charge(client, 1.0, now).is_err());
        // A prepayment is capped at the smaller burst, so it can always be paid eventually.
        let fresh: IpAddr = [10, 0, 0, 2].into();
        let budget = RsaBudget::new(limits(ONE_PER_SECOND, ONE_PER_SECOND));
        let meter = Meter::prepay(&budget, fresh, 1000).unwrap();
        assert!((meter.prepaid - 10.0).abs() < 1e-9);
    }

    #[test]
    fn the_per_client_map_stays_bounded() {
        let start = Instant::now();
        let mut clients = ClientBuckets::new(ONE_PER_SECOND);
        let spent = Bucket {
            tokens: 0.0,
            seen: start,
        };
        for i in 0..=MAX_TRACKED_CLIENTS {
            let ip = IpAddr::from(u32::try_from(i).unwrap().to_be_bytes());
            clients.set(ip, spent, start);
        }
        assert!(clients.buckets.len() <= MAX_TRACKED_CLIENTS);
        // Once refilled, clients are forgotten to make room rather than everyone.
        let mut clients = ClientBuckets::new(ONE_PER_SECOND);
        for i in 0..MAX_TRACKED_CLIENTS {
            let ip = IpAddr::from(u32::try_from(i).unwrap().to_be_bytes());
            clients.set(ip, spent, start);
        }
        let later = start + Duration::from_secs(60);
        let newcomer: IpAddr = [192, 168, 0, 1].into();
        clients.set(newcomer, spent, later);
        assert_eq!(clients.buckets.len(), 1);
        assert!(clients.get(newcomer, later).tokens.abs() < 1e-9);
    }

    #[test]
    fn an_ipv6_client_is_its_64_and_a_mapped_ipv4_is_itself() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(other));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client_key(mapped), IpAddr::from([10, 0, 0, 1]));
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

    #[test]
    fn a_client_holds_at_most_its_connections_and_gets_them_back_on_close() {
        let connections = Connections::new(2);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let first = connections.admit(a).unwrap();
        let _second = connections.admit(a).unwrap();
        assert!(connections.admit(a).is_none());
        assert!(
            connections.admit(b).is_some(),
            "another client is counted apart"
        );
        drop(first);
        assert!(connections.admit(a).is_some());
    }

    #[test]
    fn a_declared_body_over_the_limit_is_refused_unread() {
        let declared = |text: &str| HeaderValue::from_str(text).unwrap();
        assert!(declared_too_large(Some(&declared("11")), 10));
        assert!(!declared_too_large(Some(&declared("10")), 10));
        assert!(
            !declared_too_large(None, 10),
            "chunked: read up to the limit"
        );
        assert!(
            !declared_too_large(Some(&declared("ten")), 10),
            "hyper refuses it"
        );
    }

    #[test]
    fn the_refusal_of_an_extra_connection_is_one_well_formed_answer() {
        let text = std::str::from_utf8(REFUSED).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())));
    }

    #[tokio::test]
    async fn request_work_runs_on_threads_of_its_own_and_survives_a_panic() {
        let pool = RequestPool::new(1, 4);
        let name = pool
            .run(|| std::thread::current().name().map(str::to_owned))
            .await;
        assert_eq!(name, Some(Some("seal-http-0".to_owned())));
        assert_eq!(pool.run(|| -> u8 { panic!("a bad request") }).await, None);
        assert_eq!(pool.run(|| 7).await, Some(7), "the thread goes on");
    }

    /// `label`-scoped item sealed to `certificate`.
    fn sealed_item(certificate: &Certificate, label: &Label, value: &[u8]) -> String {
        envelope::seal_base64(certificate.public_key(), label, value).unwrap()
    }

    #[test]
    fn paid_opening_has_open_each_outcomes_and_pays_per_rsa_operation() {
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        let newest = PrivateKey::generate(KeySize::Rsa2048).unwrap();
        let older = PrivateKey::generate(KeySize::Rsa2048).unwrap();
        let stranger = PrivateKey::generate(KeySize::Rsa2048).unwrap();
        let [newest_cert, older_cert, stranger_cert] = [&newest, &older, &stranger]
            .map(|key| Certificate::self_signed(key, now, day).unwrap());
        let mut sealed = seal_api::sealing::seal_secret(
            &k8s_openapi::api::core::v1::Secret {
                metadata: kube::api::ObjectMeta {
                    name: Some("db".into()),
                    namespace: Some("team-a".into()),
                    ..Default::default()
                },
                string_data: Some([("a".to_owned(), "one".to_owned())].into()),
                ..Default::default()
            },
            &seal_api::sealing::SealOptions {
                certificate: &newest_cert,
                scope: None,
                namespace: None,
                name: None,
                allow_empty_data: false,
            },
        )
        .unwrap();
        let label = sealed.label().unwrap();
        let items = &mut sealed.spec.encrypted_data;
        items.insert("b".into(), sealed_item(&older_cert, &label, b"two"));
        items.insert("c".into(), sealed_item(&stranger_cert, &label, b"three"));
        items.insert("d".into(), "not base64!".into());
        let ring = KeyRing::new([older, newest]);

        let mut ops = 0;
        let paid = open_paid(&sealed, &ring, || {
            ops += 1;
            Ok(())
        })
        .unwrap()
        .unwrap();
        let free = seal_api::unsealing::open_each(&sealed, &ring).unwrap();
        let summary = |outcomes: &ItemOutcomes| -> Vec<(String, Result<Vec<u8>, OpenError>)> {
            outcomes
                .iter()
                .map(|(item, o)| {
                    (
                        item.clone(),
                        o.as_ref().map(|v| v.expose().to_vec()).map_err(|e| *e),
                    )
                })
                .collect()
        };
        assert_eq!(summary(&paid), summary(&free));
        assert_eq!(paid[0].1.as_ref().unwrap().expose(), b"one");
        // a: the named key, 1; b: the named key then the older, 2; c: both keys fail, 2;
        // d: malformed, 0.
        assert_eq!(ops, 5);

        // A budget that runs out midway stops the work with its wait.
        let mut left = 2;
        let stopped = open_paid(&sealed, &ring, || {
            if left == 0 {
                return Err(Duration::from_secs(4));
            }
            left -= 1;
            Ok(())
        });
        assert_eq!(stopped.err(), Some(Duration::from_secs(4)));
    }
}
