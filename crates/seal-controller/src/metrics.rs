//! Prometheus metrics, served in the text format on their own port (`--listen-metrics-addr`).
//!
//! Every label value comes from a fixed set (a condition reason, a route, a status code), never from
//! an object's content, so no value and no user-chosen string can reach a metric. The names follow
//! Bitnami's controller (`..._unseal_requests_total`, `..._unseal_errors_total{reason}`) so existing
//! dashboards need only a prefix change; the ExternalSecret and provider metrics follow ESO's
//! (`externalsecret_sync_calls_total`, `externalsecret_sync_calls_error_total{reason}`,
//! `provider_api_calls_total{provider,call,status}`) under the same prefix.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use seal_providers::CallCounter;

use crate::keys::KeySet;
use seal_api::sealed_secret::Reason;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    handler: &'static str,
    code: u16,
}

/// The controller's metrics.
pub struct Metrics {
    registry: Registry,
    unseal_requests: Counter,
    unseal_errors: Family<ReasonLabel, Counter>,
    reconcile_duration: Histogram,
    keys: Gauge,
    newest_key_age: Gauge<f64, AtomicU64>,
    leader: Gauge,
    http_requests: Family<RequestLabels, Counter>,
    external_syncs: Counter,
    external_sync_errors: Family<ReasonLabel, Counter>,
    external_reconcile_duration: Histogram,
    provider_calls: Arc<CallCounter>,
    provider_api_calls: Family<CallLabels, Counter>,
    rsa_decryptions: Counter,
    settled: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    provider: &'static str,
    call: &'static str,
    status: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry holding every metric, all at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("seal_controller");
        let unseal_requests = Counter::default();
        let unseal_errors = Family::<ReasonLabel, Counter>::default();
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let keys = Gauge::default();
        let newest_key_age = Gauge::<f64, AtomicU64>::default();
        let leader = Gauge::default();
        let http_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "unseal_requests",
            "SealedSecrets reconciled",
            unseal_requests.clone(),
        );
        registry.register(
            "unseal_errors",
            "SealedSecrets not unsealed, by the Ready condition's reason",
            unseal_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time to reconcile one SealedSecret",
            reconcile_duration.clone(),
        );
        registry.register("keys", "Active sealing keys", keys.clone());
        registry.register(
            "newest_key_age_seconds",
            "Age of the key new SealedSecrets are sealed with",
            newest_key_age.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            leader.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests to the certificate API, by handler and status code",
            http_requests.clone(),
        );
        let external_syncs = Counter::default();
        let external_sync_errors = Family::<ReasonLabel, Counter>::default();
        let external_reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let provider_api_calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "externalsecret_sync_calls",
            "ExternalSecret syncs that read from a provider",
            external_syncs.clone(),
        );
        registry.register(
            "externalsecret_sync_calls_error",
            "ExternalSecret syncs that failed, by a reason from a fixed set",
            external_sync_errors.clone(),
        );
        registry.register(
            "externalsecret_reconcile_duration_seconds",
            "Time to reconcile one ExternalSecret",
            external_reconcile_duration.clone(),
        );
        registry.register(
            "provider_api_calls",
            "Calls to AWS Secrets Manager, STS and Vault, by provider, call and status",
            provider_api_calls.clone(),
        );
        let rsa_decryptions = Counter::default();
        registry.register(
            "rsa_decryptions",
            "RSA private-key decryptions this process made (unsealing, /v1/verify, /v1/rotate)",
            rsa_decryptions.clone(),
        );
        let settled = Gauge::default();
        registry.register(
            "sealedsecrets_settled",
            "SealedSecrets this leader has found or made up to date since it began leading (deleted ones included)",
            settled.clone(),
        );
        for reason in Reason::FAILURES {
            drop(unseal_errors.get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            }));
        }
        Self {
            registry,
            unseal_requests,
            unseal_errors,
            reconcile_duration,
            keys,
            newest_key_age,
            leader,
            http_requests,
            external_syncs,
            external_sync_errors,
            external_reconcile_duration,
            provider_calls: Arc::new(CallCounter::new()),
            provider_api_calls,
            rsa_decryptions,
            settled,
        }
    }

    /// The counter every provider the controller builds records its calls in.
    pub fn provider_calls(&self) -> Arc<CallCounter> {
        Arc::clone(&self.provider_calls)
    }

    /// Counts one ExternalSecret sync that reads from a provider.
    pub fn external_sync(&self) {
        self.external_syncs.inc();
    }

    /// Counts one failed ExternalSecret sync; `reason` comes from a fixed set.
    pub fn external_sync_error(&self, reason: &'static str) {
        self.external_sync_errors
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Records the duration of one ExternalSecret reconcile.
    pub fn external_reconciled(&self, took: Duration) {
        self.external_reconcile_duration.observe(took.as_secs_f64());
    }

    /// Counts one reconcile and its outcome.
    pub fn reconciled(&self, reason: Reason, took: Duration) {
        self.unseal_requests.inc();
        if reason != Reason::Unsealed {
            self.unseal_errors
                .get_or_create(&ReasonLabel {
                    reason: reason.as_str(),
                })
                .inc();
        }
        self.reconcile_duration.observe(took.as_secs_f64());
    }

    /// Records how many SealedSecrets the leader knows to be up to date.
    pub fn set_settled(&self, count: usize) {
        self.settled.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Counts one HTTP request; `handler` is the route's fixed name.
    pub fn http_request(&self, handler: &'static str, code: u16) {
        self.http_requests
            .get_or_create(&RequestLabels { handler, code })
            .inc();
    }

    /// Records whether this replica leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// The text exposition, with the key gauges brought up to date with `keys` at `now`.
    ///
    /// # Panics
    /// Never: the text is written to a `String`.
    pub fn render(&self, keys: &KeySet, now: SystemTime) -> String {
        self.keys
            .set(i64::try_from(keys.keys().len()).unwrap_or(i64::MAX));
        let age = keys.newest().map_or(0.0, |newest| {
            now.duration_since(SystemTime::from(newest.certificate.not_before()))
                .unwrap_or_default()
                .as_secs_f64()
        });
        self.newest_key_age.set(age);
        for count in self.provider_calls.snapshot() {
            let counter = self.provider_api_calls.get_or_create(&CallLabels {
                provider: count.provider.as_str(),
                call: count.call.as_str(),
                status: count.status.as_str(),
            });
            counter.inc_by(count.count.saturating_sub(counter.get()));
        }
        self.rsa_decryptions.inc_by(
            seal_core::keys::private_key_decryptions().saturating_sub(self.rsa_decryptions.get()),
        );
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("invariant: writing to a String cannot fail");
        text
    }
}
