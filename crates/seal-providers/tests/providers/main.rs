//! The providers against the real servers of the test environment (OpenBao, moto, the test
//! kube-apiserver for Kubernetes auth). Without an environment every test prints SKIPPED.

pub use seal_testenv::testenv;
