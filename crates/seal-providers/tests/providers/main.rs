//! The providers against the real servers of the test environment: OpenBao for Vault, moto for
//! AWS Secrets Manager and STS, the test kube-apiserver for Vault's Kubernetes auth (a real
//! TokenReview of a real ServiceAccount token). Without an environment every test prints
//! SKIPPED (and fails under CI).

mod aws;
mod robustness;
mod vault;

use std::time::Duration;

use seal_providers::RetryPolicy;
use seal_testenv::testenv;

/// Short timeouts and backoffs, so tests of failures finish quickly.
fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        timeout: Duration::from_secs(5),
        max_attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
    }
}

/// The value as text, for assertions; panics on a binary value.
fn text(value: &seal_providers::SecretValue) -> &str {
    value.expose_str().expect("a text value")
}
