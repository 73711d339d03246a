//! The two contenders and how each runs: seal-controller as shipped, and Bitnami's controller
//! v0.40.0 as in a cluster (in-cluster configuration in a mount namespace of its own:
//! [`seal_testenv::InCluster`]), both holding the same three RSA-4096 keys.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use seal_core::{Certificate, KeySize, PrivateKey};
use seal_testenv::{InCluster, TestEnv, TestNamespace};

use crate::common::{Running, free_port, seal_controller};

/// One contender.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Contender {
    /// seal-controller.
    Seal,
    /// Bitnami's controller.
    Bitnami,
}

impl Contender {
    pub fn name(self) -> &'static str {
        match self {
            Self::Seal => "seal-controller",
            Self::Bitnami => "bitnami controller v0.40.0",
        }
    }
}

impl Contender {
    /// The counter of unseal attempts in the contender's metrics.
    pub fn unseal_counter(self) -> &'static str {
        match self {
            Self::Seal => "seal_controller_unseal_requests_total",
            Self::Bitnami => "sealed_secrets_controller_unseal_requests_total",
        }
    }
}

/// Three RSA-4096 keys an hour apart; the newest seals.
pub struct Keys {
    keys: Vec<(PrivateKey, Certificate)>,
}

impl Keys {
    pub fn generate() -> Result<Self> {
        let now = SystemTime::now();
        let keys = (0..3u64)
            .map(|i| {
                let key = PrivateKey::generate(KeySize::Rsa4096)?;
                // Oldest first, an hour apart; the last is the newest and seals.
                let start = now - Duration::from_secs(3600 * (3 - i));
                let cert =
                    Certificate::self_signed(&key, start, Duration::from_secs(86_400 * 365))?;
                Ok((key, cert))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { keys })
    }

    pub fn newest(&self) -> &Certificate {
        &self.keys[2].1
    }

    /// The keys as the contender's key Secrets.
    pub async fn store(&self, contender: Contender, ns: &TestNamespace) -> Result<()> {
        let label = match contender {
            Contender::Seal => "seal.dev/sealing-key",
            Contender::Bitnami => "sealedsecrets.bitnami.com/sealed-secrets-key",
        };
        for (i, (key, cert)) in self.keys.iter().enumerate() {
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(format!("bench-key-{i}")),
                    labels: Some(BTreeMap::from([(label.into(), "active".into())])),
                    ..ObjectMeta::default()
                },
                type_: Some("kubernetes.io/tls".into()),
                data: Some(BTreeMap::from([
                    ("tls.crt".into(), ByteString(cert.to_pem().into_bytes())),
                    (
                        "tls.key".into(),
                        ByteString(key.to_pkcs1_pem().as_bytes().to_vec()),
                    ),
                ])),
                ..Secret::default()
            };
            ns.api::<Secret>()
                .create(&PostParams::default(), &secret)
                .await?;
        }
        Ok(())
    }
}

/// A running contender and the port of its metrics.
pub struct Controller {
    pub running: Running,
    pub metrics_port: u16,
}

/// Starts `contender` with its keys in `keys_ns` and waits until it serves.
pub async fn start(
    contender: Contender,
    env: &TestEnv,
    keys_ns: &str,
    binaries: &Binaries,
    in_cluster: Option<&InCluster>,
) -> Result<Controller> {
    let port = free_port()?;
    let metrics = free_port()?;
    match contender {
        Contender::Seal => {
            let command = seal_controller(&binaries.seal, env, keys_ns, port, metrics);
            let running = Running::start(command, port, "/readyz").await?;
            Ok(Controller {
                running,
                metrics_port: metrics,
            })
        }
        Contender::Bitnami => {
            let in_cluster = in_cluster.context("Bitnami needs in-cluster configuration")?;
            // In-cluster configuration only: a cluster-admin ServiceAccount's credentials at the
            // in-cluster path, in a mount namespace of the process's own.
            let mut command = in_cluster.command(&binaries.bitnami);
            command
                .args(["--kubeclient-qps=-1", "--log-level", "ERROR"])
                .args(["--listen-addr", &format!("127.0.0.1:{port}")])
                .args(["--listen-metrics-addr", &format!("127.0.0.1:{metrics}")])
                .env("POD_NAMESPACE", keys_ns);
            let running = Running::start(command, port, "/healthz").await?;
            Ok(Controller {
                running,
                metrics_port: metrics,
            })
        }
    }
}

/// The binaries to measure.
pub struct Binaries {
    pub seal: PathBuf,
    pub bitnami: PathBuf,
}
