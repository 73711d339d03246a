//! Proof that the test environment is real: each server does what the later integration tests
//! (controller, external sync, CI commands, sidecar) rely on, through the same Rust clients.

mod aws;
mod kubernetes;
mod openbao;

pub(crate) use seal_testenv::testenv;

pub(crate) use seal_testenv::eventually;
