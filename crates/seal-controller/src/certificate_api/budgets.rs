//! What a client of the certificate API can make the controller spend, in token buckets:
//! requests per client address ([`RateLimiter`]) and RSA private-key operations, charged at
//! their worst case to the client's address and to every client together ([`RsaBudget`]).
//! Pure bookkeeping over `Instant`s, so every rule is unit-tested with a made-up clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    pub(super) workers: tokio::sync::Semaphore,
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
