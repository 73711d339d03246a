//! `seal-controller`: the in-cluster half of seal. It owns the sealing keys ([`keys`]), unseals
//! SealedSecrets into Secrets ([`unseal`]) in a control loop ([`controller`]) that runs highly
//! available under leader election, serves the public certificate ([`http`]) and Prometheus
//! metrics ([`metrics`]), and keeps an offline-recoverable backup of its keys ([`backup`]). It also
//! keeps Secrets in sync with AWS Secrets Manager and Vault: ExternalSecrets ([`external`]) read
//! through the providers of SecretStores and ClusterSecretStores ([`stores`]), and the Secrets of
//! both kinds roll the workloads that use them when their data changes ([`rollout`]). The binary is
//! a thin `main` over this library, so tests drive the same code against the real API server of
//! the test environment.

pub mod backup;
pub mod contained;
pub mod controller;
pub mod external;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod rollout;
pub mod store_trust;
pub mod stores;
pub mod unseal;
