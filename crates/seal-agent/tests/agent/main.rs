//! `seal-agent` run as the real binary against the test environment's OpenBao and moto: init,
//! run (atomic rewrites, signals, commands), exec (restart, signal, exit codes), every rule of
//! the localhost endpoint, single-flight counted in upstream calls, an outage of a throwaway
//! OpenBao, bad configurations, and a marker value that must never reach a log or a metric.
//! One test binary with a small harness.

mod auth;
mod configs;
mod differential;
mod endpoint;
mod exec;
mod harness;
mod init;
mod leaks;
mod outage;
mod run;
