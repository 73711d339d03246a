//! `cargo xtask bench controller`: seal-controller against Bitnami's controller v0.40.0 on the same
//! API server and the same workload (run it through xtask, which builds both controllers and
//! brings up the test environment).
//!
//! | phase | what is measured |
//! |---|---|
//! | 1,000 SealedSecrets x 3 items | wall time from the first create until every Secret exists; peak RSS (`VmHWM`) |
//! | the same with 10,000 unrelated Secrets in the cluster | whether memory moves (seal watches only the Secrets it made) |
//! | 10,000 SealedSecrets x 3 items ([`SCALE`], `SEAL_BENCH_SCALE`) | first convergence and peak RSS; then a restart ([`recovery`]) and, for seal, a failover to a standby replica: RSA decryptions, CPU seconds and wall time until every SealedSecret is up to date again |
//!
//! Every object is sealed with the newest of 3 RSA-4096 keys that both controllers hold
//! ([`contenders`]); objects are created 16 at a time and deleted after each run, so no run sees
//! another's ([`workload`]).
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

#[path = "../common/mod.rs"]
mod common;
mod contenders;
mod recovery;
mod workload;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use seal_testenv::TestEnv;

use common::{cpu_sample, cpu_spent};
use contenders::{Binaries, Contender, Keys, start};
use recovery::Recovery;
use seal_testenv::InCluster;
use workload::{
    clear, count_ready, count_secrets, create, sealed_api, sealed_objects, unrelated_secrets,
};

/// Objects of the first two phases.
const OBJECTS: usize = 1000;
/// Unrelated Secrets of the second phase.
pub const UNRELATED: usize = 10_000;
/// Objects of the scale phase (`SEAL_BENCH_SCALE` overrides).
const SCALE: usize = 10_000;

/// What one run measured.
struct Measured {
    apply: Duration,
    all_present: Duration,
    peak_rss_mib: f64,
    /// The peak RSS and what the resident set is made of at the end.
    memory: String,
    /// CPU seconds each process spent from the first create until every Secret was present.
    cpu: String,
    /// The size of the objects created, as JSON.
    object_bytes: usize,
}

/// What the scale phase measured for one contender.
struct Scaled {
    first: Measured,
    restart: Recovery,
    failover: Option<Recovery>,
}

/// One convergence run of `count` objects: creates them, waits until every Secret exists, and
/// hands the running controller to `then` before the objects are deleted.
async fn run_once<T, F, Fut>(
    contender: Contender,
    env: &TestEnv,
    keys: &Keys,
    binaries: &Binaries,
    label: &str,
    count: usize,
    then: F,
) -> Result<(Measured, T)>
where
    F: FnOnce(
        contenders::Controller,
        String,
        kube::Api<kube::api::DynamicObject>,
        Option<InCluster>,
    ) -> Fut,
    Fut: std::future::Future<Output = Result<(T, Option<contenders::Controller>)>>,
{
    let keys_ns = env.namespace(&format!("bench-keys-{label}")).await?;
    let app = env.namespace(&format!("bench-app-{label}")).await?;
    keys.store(contender, &keys_ns).await?;
    let in_cluster = match contender {
        Contender::Bitnami => Some(
            env.in_cluster(&keys_ns, "bitnami-bench", "cluster-admin")
                .await?,
        ),
        Contender::Seal => None,
    };
    let controller = start(
        contender,
        env,
        keys_ns.name(),
        binaries,
        in_cluster.as_ref(),
    )
    .await?;
    // Seal every object first, so that the timed part is the cluster's work only.
    let objects = sealed_objects(contender, keys, app.name(), count)?;
    let object_bytes = objects.iter().map(|o| o.to_string().len()).sum();
    let api = sealed_api(contender, &app);
    // Secrets are counted from a watch rather than by listing them over and over, which would
    // load the API server both contenders share.
    let secrets = app.api::<Secret>();
    let (present_tx, mut present) = tokio::sync::watch::channel(None::<usize>);
    let counter = tokio::spawn(count_secrets(
        app.api::<PartialObjectMeta<Secret>>(),
        present_tx,
    ));
    present.wait_for(Option::is_some).await?;
    let pid = controller.running.child.id();
    let cpu_before = cpu_sample(env, pid)?;
    let started = Instant::now();
    create(&api, objects).await?;
    let apply = started.elapsed();
    let waited = tokio::time::timeout(
        Duration::from_secs(3600),
        present.wait_for(|n| n.is_some_and(|n| n >= count)),
    )
    .await
    .map(|_| ());
    let all_present = started.elapsed();
    let cpu = cpu_spent(&cpu_before, &cpu_sample(env, pid)?);
    counter.abort();
    if waited.is_err() {
        bail!(
            "{}: only {} of {count} Secrets after an hour",
            contender.name(),
            present.borrow().unwrap_or_default()
        );
    }
    let peak_rss_mib = controller.running.peak_rss_mib()?;
    let memory = controller.running.memory_report()?;
    let (extra, left) = then(
        controller,
        keys_ns.name().to_owned(),
        api.clone(),
        in_cluster,
    )
    .await?;
    drop(left);
    // The next run must not see this run's objects (every controller watches every namespace).
    clear(&api, &secrets).await?;
    Ok((
        Measured {
            apply,
            all_present,
            peak_rss_mib,
            memory,
            cpu,
            object_bytes,
        },
        extra,
    ))
}

/// The scale phase for `contender`: first convergence, then a restart, then (seal) a failover.
async fn scale_run(
    contender: Contender,
    env: &TestEnv,
    keys: &Keys,
    binaries: &Binaries,
    count: usize,
) -> Result<Scaled> {
    let label = format!(
        "scale-{}",
        match contender {
            Contender::Seal => "seal",
            Contender::Bitnami => "bitnami",
        }
    );
    let (first, (restart, failover)) = run_once(
        contender,
        env,
        keys,
        binaries,
        &label,
        count,
        |controller, keys_ns, api, in_cluster| async move {
            let condition = match contender {
                Contender::Seal => "Ready",
                Contender::Bitnami => "Synced",
            };
            if contender == Contender::Seal {
                // Every object up to date before the old process goes.
                #[allow(clippy::cast_precision_loss)]
                recovery::wait_for_metric(
                    controller.metrics_port,
                    "seal_controller_sealedsecrets_settled",
                    count as f64,
                    Duration::from_secs(600),
                )
                .await?;
            }
            eprintln!("  restarting {}", contender.name());
            let (restart, restarted) = recovery::restart(contender, controller, count, || {
                start(contender, env, &keys_ns, binaries, in_cluster.as_ref())
            })
            .await?;
            let ready = count_ready(&api, condition).await?;
            eprintln!("  {ready} of {count} say {condition} after the restart");
            if contender == Contender::Bitnami {
                drop(restarted);
                drop(in_cluster);
                return Ok(((restart, None), None));
            }
            eprintln!("  failing over to a standby replica");
            let standby = start(contender, env, &keys_ns, binaries, None).await?;
            // The standby is ready (keys loaded) and waits for the Lease.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let failover = recovery::failover(restarted, &standby, count).await?;
            let ready = count_ready(&api, condition).await?;
            if ready != count {
                bail!("only {ready} of {count} SealedSecrets Ready after the failover");
            }
            Ok(((restart, Some(failover)), Some(standby)))
        },
    )
    .await?;
    Ok(Scaled {
        first,
        restart,
        failover,
    })
}

fn report(label: &str, seal: &Measured, bitnami: Option<&Measured>) {
    println!("\n{label}");
    println!(
        "| controller | create the objects | all Secrets present | peak RSS |\n|---|---|---|---|"
    );
    let contenders = std::iter::once((Contender::Seal, seal))
        .chain(bitnami.map(|bitnami| (Contender::Bitnami, bitnami)));
    for (contender, m) in contenders {
        println!(
            "| {} | {:.1} s | {:.1} s | {:.1} MiB |",
            contender.name(),
            m.apply.as_secs_f64(),
            m.all_present.as_secs_f64(),
            m.peak_rss_mib
        );
    }
    if let Some(bitnami) = bitnami {
        println!(
            "speed-up {:.2}x, RSS ratio {:.2}",
            bitnami.all_present.as_secs_f64() / seal.all_present.as_secs_f64(),
            seal.peak_rss_mib / bitnami.peak_rss_mib
        );
    }
}

fn report_scale(count: usize, small: Option<&Measured>, seal: &Scaled, bitnami: Option<&Scaled>) {
    report(
        &format!("{count} SealedSecrets x 3 items, RSA-4096, 3 keys: first convergence"),
        &seal.first,
        bitnami.map(|b| &b.first),
    );
    if let Some(small) = small {
        let grew = seal.first.peak_rss_mib - small.peak_rss_mib;
        #[allow(clippy::cast_precision_loss)]
        let objects_grew =
            (seal.first.object_bytes.saturating_sub(small.object_bytes)) as f64 / 1024.0 / 1024.0;
        println!(
            "seal-controller peak RSS {:.1} MiB at {count} objects vs {:.1} MiB at {OBJECTS}: +{grew:.1} MiB for +{objects_grew:.1} MiB of objects (ratio {:.2})",
            seal.first.peak_rss_mib,
            small.peak_rss_mib,
            grew / objects_grew
        );
    }
    println!(
        "seal-controller when every Secret was present: {}",
        seal.first.memory
    );
    println!("\nafter {count} objects are up to date: the controller comes back");
    println!(
        "| controller | event | RSA decryptions | CPU seconds | to leading | to every object up to date |\n|---|---|---|---|---|---|"
    );
    let row = |who: &str, event: &str, r: &Recovery| {
        println!(
            "| {who} | {event} | {} | {:.1} | {} | {:.1} s |",
            r.rsa
                .map_or_else(|| "not exported".to_owned(), |n| format!("{n:.0}")),
            r.cpu,
            r.to_lead
                .map_or_else(|| "-".to_owned(), |d| format!("{:.1} s", d.as_secs_f64())),
            r.to_ready.as_secs_f64()
        );
    };
    row(Contender::Seal.name(), "restart", &seal.restart);
    if let Some(failover) = &seal.failover {
        row(Contender::Seal.name(), "failover", failover);
    }
    if let Some(bitnami) = bitnami {
        row(Contender::Bitnami.name(), "restart", &bitnami.restart);
        println!(
            "restart CPU: Bitnami / seal = {:.0}x",
            bitnami.restart.cpu / seal.restart.cpu.max(0.01)
        );
    }
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
    install_crds(env).await?;
    refuse_a_used_environment(env).await?;
    eprintln!("generating 3 RSA-4096 keys");
    let keys = Keys::generate()?;
    let results = small_phases(env, &keys, &binaries).await?;
    let count = std::env::var("SEAL_BENCH_SCALE")
        .ok()
        .map(|n| n.parse::<usize>())
        .transpose()
        .context("SEAL_BENCH_SCALE is not a number")?
        .unwrap_or(SCALE);
    eprintln!("scale: {count} SealedSecrets");
    let seal = scale_run(Contender::Seal, env, &keys, &binaries, count).await?;
    let bitnami = if std::env::var_os("SEAL_BENCH_SEAL_ONLY").is_some() {
        None
    } else {
        Some(scale_run(Contender::Bitnami, env, &keys, &binaries, count).await?)
    };
    report_scale(count, results.first(), &seal, bitnami.as_ref());
    Ok(())
}

/// Fails when the test environment already holds objects the controllers would watch besides
/// the bench's own (other tests' SealedSecrets and ExternalSecrets): their reconciles, caches and
/// provider calls would be counted in every figure.
async fn refuse_a_used_environment(env: &TestEnv) -> Result<()> {
    let client = env.kube_client().await?;
    let one = kube::api::ListParams::default().limit(1);
    let sealed = kube::Api::<seal_api::SealedSecret>::all(client.clone())
        .list_metadata(&one)
        .await?;
    let external = kube::Api::<seal_api::ExternalSecret>::all(client)
        .list_metadata(&one)
        .await?;
    if !sealed.items.is_empty() || !external.items.is_empty() {
        bail!(
            "the running test environment already holds SealedSecrets or ExternalSecrets of other runs, which the controllers would watch and count in every figure: stop it (`cargo xtask testenv down`) and run the bench again, so that it starts a fresh one"
        );
    }
    Ok(())
}

/// Every CRD the chart installs, so the controller runs as it does in a cluster, and Bitnami's
/// kind.
async fn install_crds(env: &TestEnv) -> Result<()> {
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

    Ok(())
}

/// The 1,000-object phases, without and with unrelated Secrets: their figures, printed.
async fn small_phases(env: &TestEnv, keys: &Keys, binaries: &Binaries) -> Result<Vec<Measured>> {
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
            let (measured, ()) = run_once(
                contender,
                env,
                keys,
                binaries,
                label,
                OBJECTS,
                |controller, _, _, in_cluster| async move {
                    drop(in_cluster);
                    Ok(((), Some(controller)))
                },
            )
            .await?;
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
    } else {
        report(
            &format!(
                "1,000 SealedSecrets x 3 items, RSA-4096, 3 keys (RSA floor ~{floor:.1} s on 2 cores)"
            ),
            &results[0],
            Some(&results[1]),
        );
        report(
            &format!("the same with {UNRELATED} unrelated Secrets in the cluster"),
            &results[2],
            Some(&results[3]),
        );
        println!(
            "seal-controller RSS with the unrelated Secrets: {:+.1} %",
            (results[2].peak_rss_mib / results[0].peak_rss_mib - 1.0) * 100.0
        );
    }
    Ok(results)
}
