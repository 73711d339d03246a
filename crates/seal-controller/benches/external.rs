//! `cargo xtask bench external`: what keeping 1,000 ExternalSecrets in sync from AWS Secrets
//! Manager (moto) costs seal-controller (run it through xtask, which builds the controller and
//! brings up the test environment).
//!
//! Workload: 1,000 secrets in moto, each a JSON object of two properties, and 1,000 ExternalSecrets
//! that each read both properties of one secret through one SecretStore. The bench
//! - creates the ExternalSecrets (16 at a time) and measures the time from the first create until
//!   every Secret exists, counted from a watch; then checks every Secret's two values;
//! - forces one refresh of every ExternalSecret (a new `seal.dev/force-sync` value, ESO's way to say
//!   "refresh now") and waits until the controller has finished 1,000 more syncs;
//! - reports the provider calls of the first sync and of that refresh (the controller's
//!   `provider_api_calls` metric, which counts every HTTP call, retries included), the Secret
//!   writes the refresh caused (ADDED/MODIFIED/DELETED events of a Secret watch: nothing changed
//!   upstream, so the target is 0), and the controller's peak RSS.
//!
//! The controller watches only the bench's namespace, so nothing else in the shared test
//! environment is counted. Targets (issue 5): at most one provider call per secret per refresh, no write when nothing
//! changed, peak RSS under 64 MiB. The bench exits non-zero when one is missed.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use seal_api::{ExternalSecret, SecretStore};

use seal_testenv::{TestEnv, TestNamespace, secret_from_pairs, unique_name};
use serde_json::json;

mod common;
use common::{Running, cpu_sample, cpu_spent, free_port, http_get, seal_controller};
use seal_api::names::{EXTERNAL_SECRET_UID_LABEL, FORCE_SYNC_ANNOTATION};

const OBJECTS: usize = 1000;
const OBJECTS_U64: u64 = OBJECTS as u64;
const PEAK_RSS_TARGET_MIB: f64 = 64.0;

/// The two values secret `i` holds.
fn values(i: usize) -> (String, String) {
    (format!("app-{i}"), format!("pw-{i:032}"))
}

/// Creates the [`OBJECTS`] secrets in moto, named `{prefix}/app-{i}`.
async fn upstream_secrets(env: &TestEnv, prefix: &str) -> Result<()> {
    let sm = env.secretsmanager().await;
    futures::stream::iter(0..OBJECTS)
        .map(|i| {
            let sm = sm.clone();
            let (username, password) = values(i);
            async move {
                sm.create_secret()
                    .name(format!("{prefix}/app-{i}"))
                    .secret_string(json!({"username": username, "password": password}).to_string())
                    .send()
                    .await
                    .with_context(|| format!("creating {prefix}/app-{i} in moto"))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// The moto SecretStore `aws` and its credentials, in `ns`.
async fn store(env: &TestEnv, ns: &TestNamespace) -> Result<()> {
    ns.api::<Secret>()
        .create(
            &PostParams::default(),
            &secret_from_pairs(
                "aws-creds",
                ns.name(),
                &[
                    ("id", env.var("AWS_ACCESS_KEY_ID")),
                    ("key", env.var("AWS_SECRET_ACCESS_KEY")),
                ],
            ),
        )
        .await?;
    let store: SecretStore = serde_json::from_value(json!({
        "apiVersion": "seal.dev/v1alpha1", "kind": "SecretStore",
        "metadata": {"name": "aws"},
        "spec": {"provider": {"aws": {
            "service": "SecretsManager",
            "region": env.var("AWS_REGION"),
            "endpointURL": env.var("AWS_ENDPOINT_URL"),
            "auth": {"secretRef": {
                "accessKeyIDSecretRef": {"name": "aws-creds", "key": "id"},
                "secretAccessKeySecretRef": {"name": "aws-creds", "key": "key"},
            }},
        }}},
    }))?;
    ns.api::<SecretStore>()
        .create(&PostParams::default(), &store)
        .await?;
    Ok(())
}

async fn store_ready(ns: &TestNamespace) -> Result<bool> {
    let store = ns.api::<SecretStore>().get("aws").await?;
    Ok(store.status.is_some_and(|status| {
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    }))
}

fn external_secret(prefix: &str, i: usize) -> Result<ExternalSecret> {
    let key = format!("{prefix}/app-{i}");
    Ok(serde_json::from_value(json!({
        "apiVersion": "seal.dev/v1alpha1", "kind": "ExternalSecret",
        "metadata": {"name": format!("app-{i}")},
        "spec": {
            "refreshInterval": "1h",
            "secretStoreRef": {"name": "aws", "kind": "SecretStore"},
            "target": {"name": format!("app-{i}")},
            "data": [
                {"secretKey": "DB_USER", "remoteRef": {"key": key, "property": "username"}},
                {"secretKey": "DB_PASSWORD", "remoteRef": {"key": key, "property": "password"}},
            ],
        },
    }))?)
}

/// Secret events a watch of the produced Secrets saw after its initial list.
#[derive(Default, Clone, Copy)]
struct Seen {
    /// Distinct Secrets present.
    present: usize,
    /// Writes: every ADDED, MODIFIED and DELETED event after the initial list.
    writes: usize,
}

/// Watches the produced Secrets of `secrets` into `seen`, which gets its first value once the
/// watch is established, so nothing written after that is missed.
async fn watch_secrets(
    secrets: kube::Api<PartialObjectMeta<Secret>>,
    seen: tokio::sync::watch::Sender<Option<Seen>>,
) {
    let mut names = std::collections::HashSet::new();
    let mut listed = false;
    let mut writes = 0;
    let config = watcher::Config::default().labels(EXTERNAL_SECRET_UID_LABEL);
    let mut events = std::pin::pin!(watcher(secrets, config));
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Init) => {}
            Ok(watcher::Event::InitApply(secret)) => {
                names.insert(secret.metadata.name.unwrap_or_default());
            }
            Ok(watcher::Event::InitDone) => listed = true,
            Ok(watcher::Event::Apply(secret)) => {
                writes += 1;
                names.insert(secret.metadata.name.unwrap_or_default());
            }
            Ok(watcher::Event::Delete(secret)) => {
                writes += 1;
                names.remove(&secret.metadata.name.unwrap_or_default());
            }
            Err(error) => eprintln!("  watching Secrets: {error}"),
        }
        if listed {
            seen.send_replace(Some(Seen {
                present: names.len(),
                writes,
            }));
        }
    }
}

/// The sum of a counter's samples in a Prometheus text scrape.
fn metric_sum(scrape: &str, name: &str) -> u64 {
    scrape
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Provider calls and finished syncs so far, from the controller's metrics.
struct Counts {
    provider_calls: u64,
    finished_syncs: u64,
}

fn counts(metrics_port: u16) -> Result<Counts> {
    const FINISHED: &str = "seal_controller_externalsecret_reconcile_duration_seconds_count";
    let scrape = http_get(metrics_port, "/metrics").context("no answer from /metrics")?;
    // The histogram is there from the start; without it every wait below would time out.
    ensure!(
        scrape.lines().any(|line| line.starts_with(FINISHED)),
        "the controller's metrics have no {FINISHED}"
    );
    Ok(Counts {
        provider_calls: metric_sum(&scrape, "seal_controller_provider_api_calls_total"),
        finished_syncs: metric_sum(&scrape, FINISHED),
    })
}

/// Checks that every Secret holds the two values of its upstream secret.
async fn check_values(ns: &TestNamespace) -> Result<()> {
    let secrets = ns
        .api::<Secret>()
        .list(&ListParams::default().labels(EXTERNAL_SECRET_UID_LABEL))
        .await?;
    ensure!(
        secrets.items.len() == OBJECTS,
        "{} Secrets, expected {OBJECTS}",
        secrets.items.len()
    );
    for secret in secrets.items {
        let name = secret.metadata.name.clone().unwrap_or_default();
        let i: usize = name
            .strip_prefix("app-")
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("unexpected Secret {name}"))?;
        let (username, password) = values(i);
        let data = secret.data.unwrap_or_default();
        let item = |key: &str| data.get(key).map(|v| v.0.as_slice());
        ensure!(
            item("DB_USER") == Some(username.as_bytes())
                && item("DB_PASSWORD") == Some(password.as_bytes()),
            "Secret {name} does not hold its upstream values"
        );
    }
    Ok(())
}

/// Waits until the controller has finished `target` syncs in all (its reconcile-duration count).
async fn wait_for_syncs(metrics_port: u16, target: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while counts(metrics_port)?.finished_syncs < target {
        if Instant::now() > deadline {
            bail!("the controller did not finish the syncs within 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// The controller under test, the namespace it syncs into, and the watch of its Secrets.
struct Bench<'env> {
    env: &'env TestEnv,
    app: TestNamespace,
    running: Running,
    metrics_port: u16,
    seen: tokio::sync::watch::Receiver<Option<Seen>>,
}

/// What one phase cost.
struct Phase {
    wall: Duration,
    provider_calls: u64,
    writes: usize,
    cpu: String,
}

impl Bench<'_> {
    fn externals(&self) -> kube::Api<ExternalSecret> {
        self.app.api::<ExternalSecret>()
    }

    /// Runs `work`, waits until the controller has finished [`OBJECTS`] more syncs (and, when
    /// `until_present`, until every Secret exists), and says what that cost.
    async fn phase<F>(&mut self, until_present: bool, work: F) -> Result<Phase>
    where
        F: Future<Output = Result<()>>,
    {
        let before = counts(self.metrics_port)?;
        let writes_before = self.seen.borrow().unwrap_or_default().writes;
        let pid = self.running.child.id();
        let cpu_before = cpu_sample(self.env, pid)?;
        let started = Instant::now();
        work.await?;
        if until_present {
            tokio::time::timeout(
                Duration::from_secs(900),
                self.seen
                    .wait_for(|s| s.is_some_and(|s| s.present >= OBJECTS)),
            )
            .await
            .context("not every Secret existed after 15 minutes")??;
        }
        let wall = started.elapsed();
        // Every sync finished (status written) before its calls are counted.
        wait_for_syncs(self.metrics_port, before.finished_syncs + OBJECTS_U64).await?;
        let cpu = cpu_spent(&cpu_before, &cpu_sample(self.env, pid)?);
        // Writes a sync made reach the watch within moments of the sync finishing.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = counts(self.metrics_port)?;
        check_values(&self.app).await?;
        Ok(Phase {
            wall,
            provider_calls: after.provider_calls - before.provider_calls,
            writes: self.seen.borrow().unwrap_or_default().writes - writes_before,
            cpu,
        })
    }
}

/// Creates every ExternalSecret, 16 at a time.
async fn create_all(api: kube::Api<ExternalSecret>, prefix: &str) -> Result<()> {
    let externals: Vec<ExternalSecret> = (0..OBJECTS)
        .map(|i| external_secret(prefix, i))
        .collect::<Result<_>>()?;
    futures::stream::iter(externals)
        .map(|es| {
            let api = api.clone();
            async move { anyhow::Ok(api.create(&PostParams::default(), &es).await?) }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// Gives every ExternalSecret a new force-sync value, 16 at a time.
async fn force_sync_all(api: kube::Api<ExternalSecret>) -> Result<()> {
    let force = json!({"metadata": {"annotations": {FORCE_SYNC_ANNOTATION: unique_name("bench")}}});
    futures::stream::iter(0..OBJECTS)
        .map(|i| {
            let api = api.clone();
            let force = &force;
            async move {
                let name = format!("app-{i}");
                api.patch(&name, &PatchParams::default(), &Patch::Merge(force))
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// Starts the controller on a fresh namespace with the moto store, once the store is Ready (its
/// validation calls are not part of any phase), with the watch of its Secrets established.
async fn prepare(env: &TestEnv) -> Result<Bench<'_>> {
    let binary = std::env::var_os("SEAL_BENCH_CONTROLLER")
        .map(PathBuf::from)
        .context("SEAL_BENCH_CONTROLLER (the seal-controller binary to measure) is not set")?;
    let keys = env.namespace("bench-external-keys").await?;
    let app = env.namespace("bench-external").await?;
    store(env, &app).await?;
    let port = free_port()?;
    let metrics_port = free_port()?;
    // Only this namespace: whatever else the shared test environment holds is not measured.
    let mut command = seal_controller(&binary, env, keys.name(), port, metrics_port);
    command.args(["--namespaces", app.name()]);
    let running = Running::start(command, port, "/readyz").await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !store_ready(&app).await? {
        ensure!(
            Instant::now() < deadline,
            "SecretStore aws not Ready within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (seen_tx, mut seen) = tokio::sync::watch::channel(None::<Seen>);
    tokio::spawn(watch_secrets(
        app.api::<PartialObjectMeta<Secret>>(),
        seen_tx,
    ));
    seen.wait_for(Option::is_some).await?;
    Ok(Bench {
        env,
        app,
        running,
        metrics_port,
        seen,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let Some(env) = TestEnv::get() else {
        bail!("no test environment: run `cargo xtask bench external`");
    };
    for crd in seal_api::crds() {
        env.apply_crd(&crd).await?;
    }
    let prefix = unique_name("bench-external");
    eprintln!("creating {OBJECTS} secrets in moto");
    let started = Instant::now();
    upstream_secrets(env, &prefix).await?;
    eprintln!("  took {:.1} s", started.elapsed().as_secs_f64());

    let mut bench = prepare(env).await?;
    eprintln!("first sync: creating {OBJECTS} ExternalSecrets");
    let first = bench
        .phase(true, create_all(bench.externals(), &prefix))
        .await?;
    eprintln!("refresh: a new force-sync value on every ExternalSecret");
    let refresh = bench
        .phase(false, force_sync_all(bench.externals()))
        .await?;
    let memory = bench.running.memory_report()?;
    let peak = bench.running.peak_rss_mib()?;

    println!("\n{OBJECTS} ExternalSecrets x 2 properties of one moto secret each, one SecretStore");
    println!("| phase | wall time | provider calls | Secret writes |\n|---|---|---|---|");
    for (label, phase) in [
        ("first sync (until every Secret exists)", &first),
        ("refresh, nothing changed upstream", &refresh),
    ] {
        println!(
            "| {label} | {:.1} s | {} | {} |",
            phase.wall.as_secs_f64(),
            phase.provider_calls,
            phase.writes
        );
    }
    println!("controller: {memory}");
    println!("CPU seconds, first sync: {}", first.cpu);
    println!("CPU seconds, refresh: {}", refresh.cpu);
    let mut missed = Vec::new();
    if first.provider_calls > OBJECTS_U64 || refresh.provider_calls > OBJECTS_U64 {
        missed.push("more than one provider call per secret per sync");
    }
    if refresh.writes != 0 {
        missed.push("Secret writes in a refresh where nothing changed");
    }
    if peak >= PEAK_RSS_TARGET_MIB {
        missed.push("peak RSS of 64 MiB or more");
    }
    if !missed.is_empty() {
        bail!("targets missed: {}", missed.join("; "));
    }
    println!(
        "targets met: <= 1 provider call per secret per sync, 0 writes unchanged, RSS < 64 MiB"
    );
    Ok(())
}
