//! The agent's Prometheus metrics, in the text exposition format at `GET /metrics`.
//!
//! Labels come from fixed sets (route, status code, cache outcome, error kind, provider call):
//! no secret name, id or value ever becomes a label, so the metrics can be scraped by anyone who
//! can reach the endpoint. Counters are atomics or a short-held mutex over small maps; the cost
//! on the request path is a few nanoseconds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use seal_providers::CallCounter;

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// What the cache did for a request; a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CacheOutcome {
    /// Served from a fresh entry.
    Hit,
    /// Fetched upstream.
    Miss,
    /// Waited for another request's fetch of the same secret and shared its result.
    Coalesced,
    /// The provider was unavailable; served an expired value within the stale bound.
    Stale,
}

impl CacheOutcome {
    fn as_str(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Coalesced => "coalesced",
            CacheOutcome::Stale => "stale",
        }
    }
}

/// A latency histogram.
#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        for (bucket, bound) in self.buckets.iter().zip(BUCKETS) {
            if seconds <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bucket, bound) in self.buckets.iter().zip(BUCKETS) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        #[allow(clippy::cast_precision_loss)]
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Every metric of the agent.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    cache: Mutex<BTreeMap<(&'static str, CacheOutcome), u64>>,
    upstream_errors: Mutex<BTreeMap<&'static str, u64>>,
    refreshes: Mutex<BTreeMap<&'static str, u64>>,
    file_writes: AtomicU64,
    connections_rejected: AtomicU64,
    request_latency: Histogram,
    upstream_latency: Histogram,
}

impl Metrics {
    /// One answered request: its route (`aws`, `secrets`, `ping`, `metrics`, `other`) and code.
    pub fn request(&self, route: &'static str, code: u16, elapsed: Duration) {
        *self
            .requests
            .lock()
            .expect("invariant: metric updates do not panic")
            .entry((route, code))
            .or_default() += 1;
        self.request_latency.observe(elapsed);
    }

    /// What the cache did for a request on `route`.
    pub fn cache(&self, route: &'static str, outcome: CacheOutcome) {
        *self
            .cache
            .lock()
            .expect("invariant: metric updates do not panic")
            .entry((route, outcome))
            .or_default() += 1;
    }

    /// One upstream fetch and how long it took; `error` is the error's metric label.
    pub fn upstream(&self, elapsed: Duration, error: Option<&'static str>) {
        self.upstream_latency.observe(elapsed);
        if let Some(label) = error {
            *self
                .upstream_errors
                .lock()
                .expect("invariant: metric updates do not panic")
                .entry(label)
                .or_default() += 1;
        }
    }

    /// One refresh of the configured secrets: `success` or `error`.
    pub fn refresh(&self, result: &'static str) {
        *self
            .refreshes
            .lock()
            .expect("invariant: metric updates do not panic")
            .entry(result)
            .or_default() += 1;
    }

    /// Files written (changed content).
    pub fn files_written(&self, n: usize) {
        self.file_writes.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// A connection answered 429 because too many were open.
    pub fn connection_rejected(&self) {
        self.connections_rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition, the providers' call counts included.
    pub fn render(&self, calls: &[&CallCounter]) -> String {
        let mut out = String::with_capacity(4096);
        let lock = "invariant: metric updates do not panic";
        out.push_str("# HELP seal_agent_requests_total Endpoint requests by route and status code.\n# TYPE seal_agent_requests_total counter\n");
        for ((route, code), n) in self.requests.lock().expect(lock).iter() {
            let _ = writeln!(
                out,
                "seal_agent_requests_total{{route=\"{route}\",code=\"{code}\"}} {n}"
            );
        }
        out.push_str("# HELP seal_agent_cache_requests_total Secret requests by route and cache outcome (hit, miss, coalesced, stale).\n# TYPE seal_agent_cache_requests_total counter\n");
        for ((route, outcome), n) in self.cache.lock().expect(lock).iter() {
            let _ = writeln!(
                out,
                "seal_agent_cache_requests_total{{route=\"{route}\",outcome=\"{}\"}} {n}",
                outcome.as_str()
            );
        }
        out.push_str("# HELP seal_agent_upstream_errors_total Failed upstream fetches by error kind.\n# TYPE seal_agent_upstream_errors_total counter\n");
        for (label, n) in self.upstream_errors.lock().expect(lock).iter() {
            let _ = writeln!(
                out,
                "seal_agent_upstream_errors_total{{error=\"{label}\"}} {n}"
            );
        }
        out.push_str("# HELP seal_agent_refreshes_total Refreshes of the configured secrets by result.\n# TYPE seal_agent_refreshes_total counter\n");
        for (result, n) in self.refreshes.lock().expect(lock).iter() {
            let _ = writeln!(out, "seal_agent_refreshes_total{{result=\"{result}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP seal_agent_file_writes_total Files written because their content changed.\n# TYPE seal_agent_file_writes_total counter\nseal_agent_file_writes_total {}",
            self.file_writes.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP seal_agent_connections_rejected_total Connections answered 429 at the connection cap.\n# TYPE seal_agent_connections_rejected_total counter\nseal_agent_connections_rejected_total {}",
            self.connections_rejected.load(Ordering::Relaxed)
        );
        out.push_str("# HELP seal_agent_provider_api_calls_total Provider API calls by provider, call and status.\n# TYPE seal_agent_provider_api_calls_total counter\n");
        let mut totals: BTreeMap<(String, &'static str, &'static str), u64> = BTreeMap::new();
        for counter in calls {
            for c in counter.snapshot() {
                *totals
                    .entry((c.provider.to_string(), c.call.as_str(), c.status.as_str()))
                    .or_default() += c.count;
            }
        }
        for ((provider, call, status), n) in totals {
            let _ = writeln!(
                out,
                "seal_agent_provider_api_calls_total{{provider=\"{provider}\",call=\"{call}\",status=\"{status}\"}} {n}"
            );
        }
        self.request_latency.write(
            &mut out,
            "seal_agent_request_duration_seconds",
            "Endpoint request latency.",
        );
        self.upstream_latency.write(
            &mut out,
            "seal_agent_upstream_duration_seconds",
            "Upstream fetch latency (retries included).",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_counts_and_buckets() {
        let m = Metrics::default();
        m.request("aws", 200, Duration::from_millis(2));
        m.request("aws", 200, Duration::from_secs(2));
        m.cache("aws", CacheOutcome::Hit);
        m.upstream(Duration::from_millis(30), Some("unavailable"));
        let text = m.render(&[]);
        assert!(text.contains("seal_agent_requests_total{route=\"aws\",code=\"200\"} 2"));
        assert!(text.contains("seal_agent_cache_requests_total{route=\"aws\",outcome=\"hit\"} 1"));
        assert!(text.contains("seal_agent_upstream_errors_total{error=\"unavailable\"} 1"));
        assert!(text.contains("seal_agent_request_duration_seconds_bucket{le=\"0.0025\"} 1"));
        assert!(text.contains("seal_agent_request_duration_seconds_bucket{le=\"+Inf\"} 2"));
    }
}
