//! The two contenders and how each runs: seal-controller as shipped, and Bitnami's controller
//! v0.40.0 as in a cluster (in-cluster configuration written for the run), both holding the same
//! three RSA-4096 keys.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use k8s_openapi::ByteString;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::Api;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use seal_core::{Certificate, KeySize, PrivateKey};
use seal_testenv::{TestEnv, TestNamespace};

use crate::common::{Running, free_port, seal_controller};

const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

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

/// In-cluster configuration for Bitnami's controller: a cluster-admin ServiceAccount's token and
/// the API server's CA where client-go looks for them.
pub struct InCluster {
    host: String,
    port: String,
}

impl InCluster {
    pub async fn prepare(env: &TestEnv, ns: &TestNamespace) -> Result<Self> {
        if Path::new(SERVICE_ACCOUNT_DIR).exists() {
            bail!("{SERVICE_ACCOUNT_DIR} exists; the benchmark will not overwrite it");
        }
        let client = env.kube_client().await?;
        let account: ServiceAccount = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "bitnami-bench"}
        }))?;
        ns.api::<ServiceAccount>()
            .create(&PostParams::default(), &account)
            .await?;
        let binding: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("bitnami-bench-{}", ns.name())},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": "bitnami-bench", "namespace": ns.name()}]
        }))?;
        Api::<ClusterRoleBinding>::all(client.clone())
            .patch(
                &format!("bitnami-bench-{}", ns.name()),
                &PatchParams::apply("bench").force(),
                &Patch::Apply(&binding),
            )
            .await?;
        let request: TokenRequest = serde_json::from_value(serde_json::json!({
            "spec": {"expirationSeconds": 7200}
        }))?;
        let token: TokenRequest = ns
            .api::<ServiceAccount>()
            .create_subresource("token", "bitnami-bench", &PostParams::default(), &request)
            .await?;
        let token = token.status.and_then(|s| s.token).context("no token")?;
        std::fs::create_dir_all(SERVICE_ACCOUNT_DIR)?;
        std::fs::write(format!("{SERVICE_ACCOUNT_DIR}/token"), token)?;
        std::fs::copy(
            Path::new(env.var("SEAL_TESTENV_DIR")).join("ca.crt"),
            format!("{SERVICE_ACCOUNT_DIR}/ca.crt"),
        )?;
        std::fs::write(format!("{SERVICE_ACCOUNT_DIR}/namespace"), ns.name())?;
        let server = kube::Config::infer().await?.cluster_url;
        Ok(Self {
            host: server.host().context("no host")?.to_owned(),
            port: server.port_u16().context("no port")?.to_string(),
        })
    }
}

impl Drop for InCluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all("/var/run/secrets/kubernetes.io");
        let _ = std::fs::remove_dir("/var/run/secrets");
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
            let mut command = Command::new(&binaries.bitnami);
            command
                .args(["--kubeclient-qps=-1", "--log-level", "ERROR"])
                .args(["--listen-addr", &format!("127.0.0.1:{port}")])
                .args(["--listen-metrics-addr", &format!("127.0.0.1:{metrics}")])
                .env("KUBERNETES_SERVICE_HOST", &in_cluster.host)
                .env("KUBERNETES_SERVICE_PORT", &in_cluster.port)
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
