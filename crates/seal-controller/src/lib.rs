//! `seal-controller`: the in-cluster half of sealing. It owns the sealing keys ([`keys`]), unseals
//! SealedSecrets into Secrets ([`unseal`]) in a control loop ([`controller`]) that runs highly
//! available under leader election, and serves the public certificate ([`http`]) and Prometheus
//! metrics ([`metrics`]), and keeps an offline-recoverable backup of its keys ([`backup`]). The binary is a thin `main` over this library, so tests drive the same
//! code against the real API server of the test environment.

pub mod backup;
pub mod controller;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod unseal;
