//! `seal-controller`: the in-cluster half of sealing. It owns the sealing keys ([`keys`]) and, in the
//! modules that follow, unseals SealedSecrets into Secrets, serves the public certificate and runs
//! highly available. The binary is a thin `main` over this library, so tests drive the same code
//! against the real API server of the test environment.

pub mod controller;
pub mod keys;
pub mod unseal;
