//! The deploy-time commands (`seal get`, `env`, `render`, `exec`) run as the real binary against
//! the test environment's OpenBao and moto: every output format byte for byte, masking,
//! flattening, rendering, exec, each Vault login, every failure mode (a server stopped mid-run
//! included), and a marker value that must never appear where it was not asked for. Plus the
//! reference finder's properties, and differential tests against vals v0.46.1 itself (`vals.rs`,
//! `SEAL_VALS`). One test binary with a small harness, as `integration` is.

mod auth;
mod exec;
mod failures;
mod formats;
mod harness;
mod leaks;
mod reference_props;
mod render;
mod vals;
