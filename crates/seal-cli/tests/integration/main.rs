//! End-to-end tests of the `seal` binary: the shared vectors through the CLI, every offline flow,
//! the bad-input matrix (message, exit code, nothing written), the marker-leak check, interop with
//! kubeseal and kubesealpy, and sealing for several environments at once. One test binary, as
//! ripgrep does, with a small harness.

mod bad_input;
mod convert_eso;
mod environments;
mod flows;
mod harness;
mod interop;
mod leaks;
mod vectors;
