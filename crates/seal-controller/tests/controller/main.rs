//! seal-controller against the real API server of the test environment: the key store and the
//! unseal step as library calls, then the binary as a process (HTTP API, metrics, leader election,
//! restarts under load).

// Each test is one scenario read top to bottom, as a user would live it.
#![allow(clippy::too_many_lines)]

mod bitnami;
mod bulk;
mod external;
mod external_auth;
mod external_policies;
mod from_bitnami;
mod from_eso;
mod ha;
mod http;
mod keys;
mod online;
mod process;
mod rbac;
mod restart;
mod support;
mod tenant;
mod unseal;
