//! End-to-end tests of the `seal` binary: the shared vectors through the CLI, every offline flow,
//! the bad-input matrix (message, exit code, nothing written), the marker-leak check, and interop
//! with kubeseal and kubesealpy. One test binary, as ripgrep does, with a small harness.

mod bad_input;
mod convert_eso;
mod flows;
mod harness;
mod interop;
mod leaks;
mod vectors;
