//! `cargo xtask bench controller`: seal-controller against Bitnami's controller v0.40.0 on the same
//! API server and the same workload, printing wall time and peak RSS (run it through xtask, which
//! builds both controllers and brings up the test environment).
//!
//! Workload: 1,000 SealedSecrets of 3 items each, sealed with the newest of 3 RSA-4096 keys that
//! both controllers hold. Each run starts a controller on fresh namespaces, waits until it is ready,
//! then creates the 1,000 objects (16 at a time) and measures the wall time from the first create
//! until every Secret exists, and the controller's peak RSS (`VmHWM`); then deletes them and waits
//! until they and their Secrets are gone, so no run sees another's. Then 10,000 unrelated
//! Secrets (1 KiB each) are created elsewhere in the cluster and both run again: seal-controller
//! watches only the Secrets it made, so its memory should not move.
//!
//! Bitnami's controller runs as in a cluster: `KUBERNETES_SERVICE_HOST/PORT` and a ServiceAccount
//! token and CA under `/var/run/secrets/kubernetes.io/serviceaccount` (written for the run and
//! removed after; the run refuses to start if that directory already exists). Its client-side
//! rate limit (`--kubeclient-qps 5` by default) is switched off, so the comparison is of the
//! controllers and not of that default. `SEAL_BENCH_SEAL_ONLY=1` (`cargo xtask bench controller
//! --seal-only`) skips Bitnami's runs, for iterating on seal-controller, and
//! `SEAL_BENCH_CONTROLLER_ARGS` adds flags to seal-controller's command line (`--concurrency 8`).
//!
//! Each run also prints the CPU seconds the controller, kube-apiserver, etcd,
//! kube-controller-manager (garbage collection follows every owned Secret) and the bench itself
//! used while it ran: on two cores they all share, that says where the wall time went.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::Api;
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::core::PartialObjectMeta;
use seal_api::bitnami::to_bitnami;
use seal_api::sealing::{SealOptions, seal_secret};
use seal_core::{Certificate, KeySize, PrivateKey};
use seal_testenv::{TestEnv, TestNamespace, secret_from_pairs};

mod common;
use common::{Running, cpu_sample, cpu_spent, free_port, seal_controller};

const OBJECTS: usize = 1000;
const UNRELATED: usize = 10_000;
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// One contender.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Contender {
    Seal,
    Bitnami,
}

impl Contender {
    fn name(self) -> &'static str {
        match self {
            Self::Seal => "seal-controller",
            Self::Bitnami => "bitnami controller v0.40.0",
        }
    }
}

/// What one run measured.
struct Measured {
    apply: Duration,
    all_present: Duration,
    peak_rss_mib: f64,
    /// The peak RSS and what the resident set is made of at the end.
    memory: String,
    /// CPU seconds each process spent from the first create until every Secret was present.
    cpu: String,
}

struct Keys {
    keys: Vec<(PrivateKey, Certificate)>,
}

impl Keys {
    fn generate() -> Result<Self> {
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

    fn newest(&self) -> &Certificate {
        &self.keys[2].1
    }

    /// The keys as the contender's key Secrets.
    async fn store(&self, contender: Contender, ns: &TestNamespace) -> Result<()> {
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
struct InCluster {
    host: String,
    port: String,
}

impl InCluster {
    async fn prepare(env: &TestEnv, ns: &TestNamespace) -> Result<Self> {
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

async fn start(
    contender: Contender,
    env: &TestEnv,
    keys_ns: &TestNamespace,
    binaries: &Binaries,
    in_cluster: Option<&InCluster>,
) -> Result<Running> {
    let port = free_port()?;
    let metrics = free_port()?;
    match contender {
        Contender::Seal => {
            let command = seal_controller(&binaries.seal, env, keys_ns.name(), port, metrics);
            Running::start(command, port, "/readyz").await
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
                .env("POD_NAMESPACE", keys_ns.name());
            Running::start(command, port, "/healthz").await
        }
    }
}

struct Binaries {
    seal: PathBuf,
    bitnami: PathBuf,
}

/// The workload: [`OBJECTS`] SealedSecrets of 3 items in `namespace`, in the contender's flavour.
fn sealed_objects(
    contender: Contender,
    keys: &Keys,
    namespace: &str,
) -> Result<Vec<serde_json::Value>> {
    (0..OBJECTS)
        .map(|i| {
            let secret = secret_from_pairs(
                &format!("app-{i}"),
                namespace,
                &[
                    (
                        "DATABASE_URL",
                        &format!("postgres://app:{i:08}@db:5432/app"),
                    ),
                    ("BROKER_URL", &format!("amqp://app:{i:08}@mq:5672/app")),
                    ("API_TOKEN", &format!("token-{i:032}")),
                ],
            );
            let sealed = seal_secret(
                &secret,
                &SealOptions {
                    certificate: keys.newest(),
                    scope: None,
                    namespace: None,
                    name: None,
                    allow_empty_data: false,
                },
            )?;
            Ok(match contender {
                Contender::Seal => serde_json::to_value(&sealed)?,
                Contender::Bitnami => serde_json::to_value(to_bitnami(&sealed))?,
            })
        })
        .collect()
}

async fn run_once(
    contender: Contender,
    env: &TestEnv,
    keys: &Keys,
    binaries: &Binaries,
    label: &str,
) -> Result<Measured> {
    let keys_ns = env.namespace(&format!("bench-keys-{label}")).await?;
    let app = env.namespace(&format!("bench-app-{label}")).await?;
    keys.store(contender, &keys_ns).await?;
    let in_cluster = match contender {
        Contender::Bitnami => Some(InCluster::prepare(env, &keys_ns).await?),
        Contender::Seal => None,
    };
    let running = start(contender, env, &keys_ns, binaries, in_cluster.as_ref()).await?;
    // Seal every object first, so that the timed part is the cluster's work only.
    let objects = sealed_objects(contender, keys, app.name())?;
    let (group, plural) = match contender {
        Contender::Seal => ("seal.dev", "sealedsecrets"),
        Contender::Bitnami => ("bitnami.com", "sealedsecrets"),
    };
    let resource = kube::api::ApiResource {
        group: group.into(),
        version: "v1alpha1".into(),
        api_version: format!("{group}/v1alpha1"),
        kind: "SealedSecret".into(),
        plural: plural.into(),
    };
    let api: Api<kube::api::DynamicObject> =
        Api::namespaced_with(app.client(), app.name(), &resource);
    // Secrets are counted from a watch rather than by listing them over and over, which would
    // load the API server both contenders share.
    let secrets = app.api::<Secret>();
    let (present_tx, mut present) = tokio::sync::watch::channel(None::<usize>);
    let counter = tokio::spawn(count_secrets(
        app.api::<PartialObjectMeta<Secret>>(),
        present_tx,
    ));
    present.wait_for(Option::is_some).await?;
    let cpu_before = cpu_sample(env, running.child.id())?;
    let started = Instant::now();
    futures::stream::iter(objects)
        .map(|object| {
            let api = api.clone();
            async move {
                let object: kube::api::DynamicObject = serde_json::from_value(object)?;
                anyhow::Ok(api.create(&PostParams::default(), &object).await?)
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    let apply = started.elapsed();
    let waited = tokio::time::timeout(
        Duration::from_secs(1200),
        present.wait_for(|n| n.is_some_and(|n| n >= OBJECTS)),
    )
    .await
    .map(|_| ());
    let all_present = started.elapsed();
    let cpu = cpu_spent(&cpu_before, &cpu_sample(env, running.child.id())?);
    counter.abort();
    if waited.is_err() {
        bail!(
            "{}: only {} of {OBJECTS} Secrets after 20 minutes",
            contender.name(),
            present.borrow().unwrap_or_default()
        );
    }
    let peak_rss_mib = running.peak_rss_mib()?;
    let memory = running.memory_report()?;
    drop(running);
    drop(in_cluster);
    // The next run must not see this run's objects (every controller watches every namespace).
    clear(&api, &secrets).await?;
    Ok(Measured {
        apply,
        all_present,
        peak_rss_mib,
        memory,
        cpu,
    })
}

/// Counts the distinct Secrets a watch of `secrets` has seen, into `present`; the first count is
/// sent once the watch is established, so nothing created after that is missed.
async fn count_secrets(
    secrets: Api<PartialObjectMeta<Secret>>,
    present: tokio::sync::watch::Sender<Option<usize>>,
) {
    let mut seen = std::collections::HashSet::new();
    let events = kube::runtime::watcher(secrets, kube::runtime::watcher::Config::default());
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        match event {
            Ok(kube::runtime::watcher::Event::InitDone) => {
                present.send_replace(Some(seen.len()));
            }
            Ok(
                kube::runtime::watcher::Event::Apply(secret)
                | kube::runtime::watcher::Event::InitApply(secret),
            ) => {
                seen.insert(secret.metadata.name.unwrap_or_default());
                present.send_replace(Some(seen.len()));
            }
            Ok(_) => {}
            Err(error) => eprintln!("  watching Secrets: {error}"),
        }
    }
}

/// Deletes the SealedSecrets of `api` and waits until they and their Secrets are gone.
async fn clear(api: &Api<kube::api::DynamicObject>, secrets: &Api<Secret>) -> Result<()> {
    api.delete_collection(&kube::api::DeleteParams::default(), &ListParams::default())
        .await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while !secrets
        .list_metadata(&ListParams::default())
        .await?
        .items
        .is_empty()
        || !api
            .list_metadata(&ListParams::default())
            .await?
            .items
            .is_empty()
    {
        if Instant::now() > deadline {
            bail!("this run's objects were not gone within 5 minutes");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

async fn unrelated_secrets(env: &TestEnv) -> Result<()> {
    let ns = env.namespace("bench-unrelated").await?;
    let api = ns.api::<Secret>();
    let filler = "x".repeat(1024);
    futures::stream::iter(0..UNRELATED)
        .map(|i| {
            let api = api.clone();
            let secret =
                secret_from_pairs(&format!("unrelated-{i}"), ns.name(), &[("blob", &filler)]);
            async move { anyhow::Ok(api.create(&PostParams::default(), &secret).await?) }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

fn report(label: &str, seal: &Measured, bitnami: &Measured) {
    println!("\n{label}");
    println!(
        "| controller | create 1,000 objects | all Secrets present | peak RSS |\n|---|---|---|---|"
    );
    for (contender, m) in [(Contender::Seal, seal), (Contender::Bitnami, bitnami)] {
        println!(
            "| {} | {:.1} s | {:.1} s | {:.1} MiB |",
            contender.name(),
            m.apply.as_secs_f64(),
            m.all_present.as_secs_f64(),
            m.peak_rss_mib
        );
    }
    println!(
        "speed-up {:.2}x, RSS ratio {:.2}",
        bitnami.all_present.as_secs_f64() / seal.all_present.as_secs_f64(),
        seal.peak_rss_mib / bitnami.peak_rss_mib
    );
}

#[tokio::main]
async fn main() -> Result<()> {
    // `cargo bench` passes --bench; nothing else is accepted.
    let Some(env) = TestEnv::get() else {
        bail!("no test environment: run `cargo xtask bench controller`");
    };
    let binaries = Binaries {
        seal: std::env::var_os("SEAL_BENCH_CONTROLLER")
            .map(PathBuf::from)
            .context("SEAL_BENCH_CONTROLLER (the seal-controller binary to measure) is not set")?,
        bitnami: std::env::var_os("SEAL_BENCH_BITNAMI")
            .map(PathBuf::from)
            .context("SEAL_BENCH_BITNAMI (Bitnami's controller) is not set")?,
    };
    // Every CRD the chart installs, so the controller runs as it does in a cluster.
    for crd in seal_api::crds() {
        env.apply_crd(&crd).await?;
    }
    // Bitnami's kind, with an open schema: enough for its controller to read and update it.
    let bitnami_crd = serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "sealedsecrets.bitnami.com"},
        "spec": {
            "group": "bitnami.com",
            "names": {"kind": "SealedSecret", "listKind": "SealedSecretList", "plural": "sealedsecrets", "singular": "sealedsecret"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1alpha1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
            }]
        }
    });
    env.apply_crd(&serde_json::from_value(bitnami_crd)?).await?;

    eprintln!("generating 3 RSA-4096 keys");
    let keys = Keys::generate()?;
    let mut results = Vec::new();
    for (phase, label) in [(0, "base"), (1, "unrelated")] {
        if phase == 1 {
            eprintln!("creating {UNRELATED} unrelated Secrets");
            let started = Instant::now();
            unrelated_secrets(env).await?;
            eprintln!("  took {:.1} s", started.elapsed().as_secs_f64());
        }
        let contenders: &[Contender] = if std::env::var_os("SEAL_BENCH_SEAL_ONLY").is_some() {
            &[Contender::Seal]
        } else {
            &[Contender::Seal, Contender::Bitnami]
        };
        for &contender in contenders {
            eprintln!("{} ({label}) ...", contender.name());
            let measured = run_once(contender, env, &keys, &binaries, label).await?;
            eprintln!(
                "  {:.1} s, {}; CPU seconds meanwhile: {}",
                measured.all_present.as_secs_f64(),
                measured.memory,
                measured.cpu
            );
            results.push(measured);
        }
    }
    // 3 items per object, ~5 ms per RSA-4096 decryption, 2 cores.
    let floor = 3.0 * 1000.0 * 0.005 / 2.0;
    if results.len() == 2 {
        for (label, m) in [("base", &results[0]), ("unrelated", &results[1])] {
            println!(
                "seal-controller ({label}): create {:.1} s, all present {:.1} s, peak RSS {:.1} MiB",
                m.apply.as_secs_f64(),
                m.all_present.as_secs_f64(),
                m.peak_rss_mib
            );
        }
        return Ok(());
    }
    report(
        &format!(
            "1,000 SealedSecrets x 3 items, RSA-4096, 3 keys (RSA floor ~{floor:.1} s on 2 cores)"
        ),
        &results[0],
        &results[1],
    );
    report(
        &format!("the same with {UNRELATED} unrelated Secrets in the cluster"),
        &results[2],
        &results[3],
    );
    println!(
        "seal-controller RSS with the unrelated Secrets: {:+.1} %",
        (results[2].peak_rss_mib / results[0].peak_rss_mib - 1.0) * 100.0
    );
    Ok(())
}
