//! The endpoint's cache: a TTL cache with single-flight and bounded stale serving.
//!
//! **Single-flight.** Each key has its own async mutex. A request takes it, serves a fresh
//! entry, or fetches while holding it; requests for the same key that arrive meanwhile wait on
//! the mutex and then find the value (or the failure) the first one stored, dated after they
//! arrived, and share it. So N concurrent misses cost one upstream call, and during an outage N
//! waiting requests cost one failed fetch, not N in a row. Different keys never wait on each
//! other.
//!
//! **Stale on transient errors.** When a fetch fails with a transient error
//! ([`seal_providers::Error::is_transient`]: unreachable, timeouts, 5xx, throttling) and the
//! entry holds a value at most `ttl + max_stale` old, that value is served. For a short hold
//! after such a failure (5 s, or the TTL when shorter) requests are answered from it without a
//! new upstream attempt, so an outage costs one retry cycle per hold, not one per request, and
//! stale answers come at once. A permanent error (not found, denied) is returned, and a not-found
//! drops the entry: a deleted secret must not live on in the cache.
//!
//! A failure is kept with Secrets Manager's own answer, if it got one
//! ([`seal_providers::AwsGetError`]; none for the configured secrets of `/v1/secrets/NAME`), so
//! the requests sharing it are answered alike.
//!
//! Values are kept as the response body they will be served as, in zeroizing buffers shared by
//! `Arc`, so a hit copies nothing and the last holder wipes the bytes.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use seal_providers::{AwsGetError, Error};
use zeroize::Zeroizing;

use crate::metrics::CacheOutcome;

/// The longest a transient failure is reused before the next request tries upstream again.
const FAILURE_HOLD: Duration = Duration::from_secs(5);

/// A cached response body.
pub type Body = Arc<Zeroizing<Vec<u8>>>;

/// A TTL cache of bodies by key.
pub struct Cache<K> {
    slots: Mutex<HashMap<K, Arc<tokio::sync::Mutex<Slot>>>>,
    ttl: Duration,
    max_stale: Duration,
    max_entries: usize,
}

#[derive(Default)]
struct Slot {
    value: Option<(Body, Instant)>,
    /// The last failed fetch and when it ended, for requests that waited on it.
    failure: Option<(AwsGetError, Instant)>,
}

impl<K: Eq + Hash + Clone> Cache<K> {
    /// A cache serving entries for `ttl`, stale ones up to `max_stale` past it, and holding at
    /// most `max_entries` keys.
    pub fn new(ttl: Duration, max_stale: Duration, max_entries: usize) -> Self {
        Cache {
            slots: Mutex::new(HashMap::new()),
            ttl,
            max_stale,
            max_entries,
        }
    }

    /// The body for `key`: fresh from the cache, or from `fetch` (called at most once per
    /// concurrent burst of requests for `key`). `refresh_now` skips a fresh entry unless it was
    /// fetched after this request arrived.
    pub async fn get<F, Fut>(
        &self,
        key: &K,
        refresh_now: bool,
        fetch: F,
    ) -> Result<(Body, CacheOutcome), AwsGetError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Body, AwsGetError>>,
    {
        let arrived = Instant::now();
        let slot = self.slot(key);
        let mut slot = slot.lock().await;
        if let Some((body, at)) = &slot.value {
            if *at >= arrived {
                return Ok((body.clone(), CacheOutcome::Coalesced));
            }
            // The age when this request arrived: one clock read per request is enough.
            if !refresh_now && arrived.saturating_duration_since(*at) < self.ttl {
                return Ok((body.clone(), CacheOutcome::Hit));
            }
        }
        // A failure is shared by the requests that waited for it and, when transient, reused
        // for a short hold: during an outage each request would otherwise wait out a whole
        // retry cycle before getting its stale value.
        if let Some((error, at)) = &slot.failure
            && (*at >= arrived
                || (error.error.is_transient() && at.elapsed() < self.failure_hold()))
        {
            return self.after_failure(&slot, error.clone());
        }
        match fetch().await {
            Ok(body) => {
                slot.value = Some((body.clone(), Instant::now()));
                slot.failure = None;
                Ok((body, CacheOutcome::Miss))
            }
            Err(error) => {
                if matches!(error.error, Error::NotFound { .. }) {
                    slot.value = None;
                }
                slot.failure = Some((error.clone(), Instant::now()));
                self.after_failure(&slot, error)
            }
        }
    }

    /// How long a transient failure answers without a new upstream attempt: 5 s, or the TTL
    /// when shorter.
    fn failure_hold(&self) -> Duration {
        FAILURE_HOLD.min(self.ttl)
    }

    /// A stale value when `error` is transient and one is young enough, else `error`.
    fn after_failure(
        &self,
        slot: &Slot,
        error: AwsGetError,
    ) -> Result<(Body, CacheOutcome), AwsGetError> {
        match &slot.value {
            Some((body, at))
                if error.error.is_transient() && at.elapsed() <= self.ttl + self.max_stale =>
            {
                Ok((body.clone(), CacheOutcome::Stale))
            }
            _ => Err(error),
        }
    }

    /// The slot of `key`, made if missing; at the entry cap, idle slots holding nothing
    /// servable are dropped first, then an arbitrary idle one.
    fn slot(&self, key: &K) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut slots = self
            .slots
            .lock()
            .expect("invariant: no panic while the slot map is locked");
        if let Some(slot) = slots.get(key) {
            return slot.clone();
        }
        if slots.len() >= self.max_entries {
            let limit = self.ttl + self.max_stale;
            slots.retain(|_, slot| {
                slot.try_lock().map_or(true, |s| {
                    s.value
                        .as_ref()
                        .is_some_and(|(_, at)| at.elapsed() <= limit)
                })
            });
            if slots.len() >= self.max_entries {
                let idle = slots
                    .iter()
                    .find(|(_, slot)| slot.try_lock().is_ok())
                    .map(|(k, _)| k.clone());
                if let Some(idle) = idle {
                    slots.remove(&idle);
                }
            }
        }
        slots.entry(key.clone()).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seal_providers::{Location, ProviderKind};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn body(text: &str) -> Body {
        Arc::new(Zeroizing::new(text.as_bytes().to_vec()))
    }

    fn outage() -> AwsGetError {
        AwsGetError {
            error: Error::Unavailable {
                at: Location {
                    provider: ProviderKind::Aws,
                    store: "test".into(),
                    key: "k".into(),
                },
                attempts: 1,
                detail: "down".into(),
            },
            service: None,
        }
    }

    #[tokio::test]
    async fn concurrent_misses_make_one_fetch() {
        let cache = Arc::new(Cache::new(Duration::from_secs(60), Duration::ZERO, 10));
        let calls = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let (cache, calls) = (cache.clone(), calls.clone());
                tokio::spawn(async move {
                    cache
                        .get(&"k", false, || async {
                            calls.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Ok(body("v"))
                        })
                        .await
                        .unwrap()
                        .1
                })
            })
            .collect();
        let mut misses = 0;
        for task in tasks {
            if task.await.unwrap() == CacheOutcome::Miss {
                misses += 1;
            }
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(misses, 1);
    }

    #[tokio::test]
    async fn a_transient_error_serves_the_stale_value_within_its_bound() {
        let cache = Cache::new(Duration::ZERO, Duration::from_millis(200), 10);
        cache
            .get(&"k", false, || async { Ok(body("old")) })
            .await
            .unwrap();
        let (stale, outcome) = cache
            .get(&"k", false, || async { Err(outage()) })
            .await
            .unwrap();
        assert_eq!(outcome, CacheOutcome::Stale);
        assert_eq!(stale.as_slice(), b"old");
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(
            cache
                .get(&"k", false, || async { Err(outage()) })
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_transient_failure_is_reused_for_the_hold_without_new_fetches() {
        let cache = Cache::new(Duration::from_millis(300), Duration::from_secs(60), 10);
        cache
            .get(&"k", false, || async { Ok(body("old")) })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(350)).await;
        let calls = AtomicUsize::new(0);
        for _ in 0..5 {
            let (value, outcome) = cache
                .get(&"k", false, || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err(outage())
                })
                .await
                .unwrap();
            assert_eq!(
                (value.as_slice(), outcome),
                (&b"old"[..], CacheOutcome::Stale)
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(350)).await;
        let (fresh, _) = cache
            .get(&"k", false, || async { Ok(body("new")) })
            .await
            .unwrap();
        assert_eq!(fresh.as_slice(), b"new");
    }

    #[tokio::test]
    async fn not_found_drops_the_entry() {
        let cache = Cache::new(Duration::ZERO, Duration::from_secs(60), 10);
        cache
            .get(&"k", false, || async { Ok(body("old")) })
            .await
            .unwrap();
        let gone = AwsGetError {
            error: Error::NotFound {
                at: Location {
                    provider: ProviderKind::Aws,
                    store: "t".into(),
                    key: "k".into(),
                },
                detail: "gone".into(),
            },
            service: None,
        };
        assert!(
            cache
                .get(&"k", false, || async { Err(gone) })
                .await
                .is_err()
        );
        assert!(
            cache
                .get(&"k", false, || async { Err(outage()) })
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn the_entry_cap_holds() {
        let cache = Cache::new(Duration::from_secs(60), Duration::ZERO, 3);
        for k in 0..10 {
            cache
                .get(&k, false, || async { Ok(body("v")) })
                .await
                .unwrap();
        }
        assert!(cache.slots.lock().unwrap().len() <= 3);
    }
}
