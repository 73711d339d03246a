//! The charts and the helmfile environments, offline: lint, render, and what the rendered objects
//! must say (the generated CRDs, the tested RBAC, the restricted security context, each
//! environment's sealed values sealed for that environment, a valid seal-agent configuration).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{ENVIRONMENTS, Helm, documents, of_kind, ok, path_str, releases, root};

const CHARTS: [&str; 3] = ["seal-controller", "ml-api", "ml-batch"];

fn chart(name: &str) -> PathBuf {
    root().join("deploy/charts").join(name)
}

/// Every release of every environment, rendered as `helmfile template` would.
fn render_environment(helm: &Helm, environment: &str) -> Result<Vec<(String, Vec<Value>)>> {
    releases(environment)?
        .into_iter()
        .map(|release| {
            let objects = helm
                .template(
                    &release.name,
                    &release.chart,
                    &release.namespace,
                    &release.values,
                    &[],
                )
                .with_context(|| format!("{environment}: release {}", release.name))?;
            Ok((release.name, objects))
        })
        .collect()
}

#[test]
fn every_chart_lints_strictly_with_its_defaults_and_every_environments_values() -> Result<()> {
    let helm = helm!();
    for name in CHARTS {
        helm.run(&["lint", "--strict", path_str(&chart(name))?])?;
    }
    for environment in ENVIRONMENTS {
        for release in releases(environment)? {
            let mut args = vec![
                "lint".to_owned(),
                "--strict".to_owned(),
                path_str(&release.chart)?.to_owned(),
                "--namespace".to_owned(),
                release.namespace.clone(),
            ];
            for file in &release.values {
                args.push("--values".to_owned());
                args.push(path_str(file)?.to_owned());
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            helm.run(&args)
                .with_context(|| format!("{environment}: {}", release.name))?;
        }
    }
    Ok(())
}

#[test]
fn every_environment_releases_the_three_services_selectable_by_label() -> Result<()> {
    let helm = helm!();
    for environment in ENVIRONMENTS {
        let releases = releases(environment)?;
        let services: BTreeSet<&str> = releases
            .iter()
            .filter_map(|r| r.labels.get("service")?.as_str())
            .collect();
        assert_eq!(
            services,
            BTreeSet::from(["seal-controller", "ml-api", "ml-batch"]),
            "{environment}"
        );
        for release in &releases {
            for file in &release.values {
                assert!(
                    file.is_file(),
                    "{environment}: {} is missing",
                    file.display()
                );
            }
        }
        let rendered = render_environment(helm, environment)?;
        for (release, objects) in &rendered {
            assert!(
                !objects.is_empty(),
                "{environment}: {release} renders nothing"
            );
        }
    }
    Ok(())
}

#[test]
fn invalid_values_are_refused_by_the_schema() -> Result<()> {
    let helm = helm!();
    for (name, set) in [
        ("seal-controller", "keys.size=1024"),
        ("seal-controller", "logFormat=xml"),
        ("seal-controller", "unknownKey=1"),
        ("ml-api", "secrets.source=vault"),
        ("ml-batch", "cronJob.concurrencyPolicy=Sometimes"),
    ] {
        let result = helm.template("x", &chart(name), "default", &[], &["--set", set]);
        assert!(result.is_err(), "{name} accepted --set {set}");
    }
    Ok(())
}

#[test]
fn the_controller_chart_carries_exactly_the_generated_crds() -> Result<()> {
    let generated = root().join("deploy/crds");
    let carried = chart("seal-controller").join("crds");
    let names = |dir: &PathBuf| -> Result<BTreeSet<String>> {
        std::fs::read_dir(dir)?
            .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
            .collect()
    };
    assert_eq!(
        names(&carried)?,
        names(&generated)?,
        "copy deploy/crds/*.yaml into deploy/charts/seal-controller/crds/"
    );
    for name in names(&generated)? {
        assert_eq!(
            std::fs::read_to_string(carried.join(&name))?,
            std::fs::read_to_string(generated.join(&name))?,
            "deploy/charts/seal-controller/crds/{name} is stale: cp deploy/crds/*.yaml deploy/charts/seal-controller/crds/"
        );
    }
    Ok(())
}

/// Every (apiGroup, resource, verb) the rules of the ClusterRoles and Roles among `objects` grant.
fn grants(objects: &[Value]) -> Result<BTreeSet<(String, String, String)>> {
    let mut out = BTreeSet::new();
    for role in objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "Role")
    {
        for rule in role["rules"].as_array().context("rules")? {
            let list = |field: &str| -> Vec<String> {
                rule[field]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            if rule.get("resourceNames").is_some() || rule.get("nonResourceURLs").is_some() {
                bail!("a rule the comparison does not model: {rule}");
            }
            for group in list("apiGroups") {
                for resource in list("resources") {
                    for verb in list("verbs") {
                        out.insert((group.clone(), resource.clone(), verb));
                    }
                }
            }
        }
    }
    Ok(out)
}

#[test]
fn the_chart_rbac_grants_exactly_what_deploy_rbac_grants() -> Result<()> {
    let helm = helm!();
    let shipped = documents(&std::fs::read_to_string(
        root().join("deploy/rbac/seal-controller.yaml"),
    )?)?;
    let expected = grants(&shipped)?;
    assert!(
        expected.contains(&(String::new(), "secrets".into(), "create".into())),
        "the comparison reads deploy/rbac"
    );
    let chart = chart("seal-controller");
    let all = helm.template("seal-controller", &chart, "seal-system", &[], &[])?;
    assert_eq!(grants(&all)?, expected, "all namespaces");
    let listed = helm.template(
        "seal-controller",
        &chart,
        "seal-system",
        &[],
        &["--set", "namespaces={ml,ml-batch}"],
    )?;
    assert_eq!(grants(&listed)?, expected, "a namespace list");

    // Cluster-wide: both ClusterRoles bound cluster-wide. With a list: the namespaced one only in
    // the listed namespaces and the release namespace (its keys), never cluster-wide.
    let bound = |objects: &[Value], kind: &str| -> BTreeSet<(String, String)> {
        of_kind(objects, kind)
            .into_iter()
            .map(|b| {
                (
                    b["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or("*")
                        .to_owned(),
                    b["roleRef"]["name"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(
        bound(&all, "ClusterRoleBinding"),
        BTreeSet::from([
            ("*".to_owned(), "seal-controller".to_owned()),
            ("*".to_owned(), "seal-controller-syncer".to_owned()),
            ("*".to_owned(), "seal-controller-syncer-cluster".to_owned()),
        ])
    );
    assert_eq!(
        bound(&listed, "ClusterRoleBinding"),
        BTreeSet::from([("*".to_owned(), "seal-controller-syncer-cluster".to_owned())])
    );
    let role_bindings = bound(&listed, "RoleBinding");
    for namespace in ["ml", "ml-batch", "seal-system"] {
        assert!(
            role_bindings.contains(&(namespace.to_owned(), "seal-controller".to_owned())),
            "{namespace}: {role_bindings:?}"
        );
    }
    // The syncer's Secret rights: in the listed namespaces, never in the key namespace.
    for namespace in ["ml", "ml-batch"] {
        assert!(
            role_bindings.contains(&(namespace.to_owned(), "seal-controller-syncer".to_owned())),
            "{namespace}: {role_bindings:?}"
        );
    }
    let syncer_secrets_in_keys = of_kind(&listed, "RoleBinding").into_iter().any(|b| {
        b["metadata"]["namespace"] == "seal-system"
            && b["roleRef"]["kind"] == "ClusterRole"
            && b["roleRef"]["name"] == "seal-controller-syncer"
    });
    assert!(!syncer_secrets_in_keys, "{role_bindings:?}");
    // The cluster-scoped ClusterRole holds no namespaced resource.
    let cluster_role = of_kind(&listed, "ClusterRole")
        .into_iter()
        .find(|r| r["metadata"]["name"] == "seal-controller-syncer-cluster")
        .context("the -cluster ClusterRole")?;
    let cluster_grants = grants(std::slice::from_ref(cluster_role))?;
    for (_, resource, _) in &cluster_grants {
        assert!(
            [
                "clustersecretstores",
                "clustersecretstores/status",
                "namespaces"
            ]
            .contains(&resource.as_str()),
            "{resource} is namespaced and must not be granted cluster-wide with a list"
        );
    }
    Ok(())
}

#[test]
fn the_roles_run_apart_and_a_cluster_that_only_unseals_syncs_nothing() -> Result<()> {
    let helm = helm!();
    let chart = chart("seal-controller");
    let objects = helm.template("seal-controller", &chart, "seal-system", &[], &[])?;
    // Two Deployments, each under its own ServiceAccount, with its own role; only the unsealer is
    // behind the certificate Service.
    let roles: BTreeSet<(String, String)> = of_kind(&objects, "Deployment")
        .into_iter()
        .map(|d| {
            let spec = &d["spec"]["template"]["spec"];
            let role = spec["containers"][0]["args"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .find_map(|a| a.strip_prefix("--role="))
                .unwrap_or_default()
                .to_owned();
            (
                role,
                spec["serviceAccountName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        BTreeSet::from([
            ("unsealer".to_owned(), "seal-controller".to_owned()),
            ("syncer".to_owned(), "seal-controller-syncer".to_owned()),
        ])
    );
    let service = of_kind(&objects, "Service")
        .into_iter()
        .find(|s| s["metadata"]["name"] == "seal-controller")
        .context("the certificate Service")?;
    let syncer = of_kind(&objects, "Deployment")
        .into_iter()
        .find(|d| d["metadata"]["name"] == "seal-controller-syncer")
        .context("the syncer")?;
    let selector = service["spec"]["selector"]
        .as_object()
        .context("selector")?;
    let labels = &syncer["spec"]["template"]["metadata"]["labels"];
    assert!(
        selector.iter().any(|(k, v)| &labels[k] != v),
        "the certificate Service selects the syncer's pods"
    );

    // syncer.enabled=false: nothing that syncs, and no right to stores, ExternalSecrets or tokens.
    let unsealing = helm.template(
        "seal-controller",
        &chart,
        "seal-system",
        &[],
        &["--set", "syncer.enabled=false"],
    )?;
    assert_eq!(of_kind(&unsealing, "Deployment").len(), 1);
    let granted = grants(&unsealing)?;
    for resource in [
        "externalsecrets",
        "secretstores",
        "clustersecretstores",
        "serviceaccounts/token",
    ] {
        assert!(
            granted.iter().all(|(_, r, _)| r != resource),
            "{resource} is granted to a cluster that only unseals"
        );
    }
    Ok(())
}

/// The pod specs of the workloads (and `helm test` pods) among `objects`.
fn pod_specs(objects: &[Value]) -> Vec<(String, &Value)> {
    objects
        .iter()
        .filter_map(|o| {
            let name = format!("{} {}", o["kind"], o["metadata"]["name"]);
            let spec = match o["kind"].as_str()? {
                "Deployment" => &o["spec"]["template"]["spec"],
                "CronJob" => &o["spec"]["jobTemplate"]["spec"]["template"]["spec"],
                "Pod" => &o["spec"],
                _ => return None,
            };
            Some((name, spec))
        })
        .collect()
}

#[test]
fn every_container_runs_restricted_in_every_environment() -> Result<()> {
    let helm = helm!();
    let mut checked = 0;
    for environment in ENVIRONMENTS {
        for (release, objects) in render_environment(helm, environment)? {
            for (workload, spec) in pod_specs(&objects) {
                let pod = &spec["securityContext"];
                assert_eq!(
                    pod["runAsNonRoot"], true,
                    "{environment} {release} {workload}"
                );
                assert_eq!(pod["seccompProfile"]["type"], "RuntimeDefault");
                let containers = spec["containers"]
                    .as_array()
                    .into_iter()
                    .chain(spec["initContainers"].as_array())
                    .flatten();
                for container in containers {
                    let what = format!("{environment} {release} {workload} {}", container["name"]);
                    let context = &container["securityContext"];
                    assert_eq!(context["allowPrivilegeEscalation"], false, "{what}");
                    assert_eq!(context["readOnlyRootFilesystem"], true, "{what}");
                    assert_eq!(
                        context["capabilities"]["drop"],
                        serde_json::json!(["ALL"]),
                        "{what}"
                    );
                    assert!(
                        container["resources"]["limits"]["memory"].is_string(),
                        "{what}: no memory limit"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 12, "only {checked} containers checked");
    Ok(())
}

#[test]
fn the_controller_deployment_is_highly_available_and_probed() -> Result<()> {
    let helm = helm!();
    let objects = helm.template(
        "seal-controller",
        &chart("seal-controller"),
        "seal-system",
        &[],
        &[],
    )?;
    let deployment = of_kind(&objects, "Deployment")[0];
    assert_eq!(deployment["spec"]["replicas"], 2);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .context("args")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(args.contains(&"--leader-elect=true"), "{args:?}");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(
        of_kind(&objects, "PodDisruptionBudget").len(),
        2,
        "one per role"
    );
    let services = of_kind(&objects, "Service");
    assert_eq!(services.len(), 2, "the certificate API and the metrics");
    assert_eq!(services[0]["spec"]["ports"][0]["name"], "http");

    // The arguments are the binary's: it starts parsing them (and only then needs a cluster).
    let output = Command::new(env!("CARGO_BIN_EXE_seal-controller"))
        .args(&args)
        .arg("--help")
        .output()?;
    ok(&output, "seal-controller with the chart's arguments")?;

    // prod: monitoring, alerts, network policy, key backup.
    let prod = render_environment(helm, "prod")?;
    let controller = &prod
        .iter()
        .find(|(r, _)| r == "seal-controller")
        .context("release")?
        .1;
    for kind in ["ServiceMonitor", "PrometheusRule", "ConfigMap"] {
        assert_eq!(of_kind(controller, kind).len(), 1, "prod renders a {kind}");
    }
    assert_eq!(
        of_kind(controller, "NetworkPolicy").len(),
        2,
        "prod renders a NetworkPolicy per role"
    );
    let rules = serde_json::to_string(&of_kind(controller, "PrometheusRule")[0]["spec"])?;
    for metric in [
        "seal_controller_unseal_errors_total",
        "seal_controller_externalsecret_sync_calls_error_total",
        "seal_controller_newest_key_age_seconds",
    ] {
        assert!(rules.contains(metric), "no alert on {metric}");
    }
    Ok(())
}

#[test]
fn each_environment_seals_ml_api_with_its_own_certificate() -> Result<()> {
    let helm = helm!();
    let seal = crate::workspace_binary("seal-cli", "seal")?;
    let work = tempfile::tempdir()?;
    let certs = root().join("deploy/helmfile/certs");
    for environment in ENVIRONMENTS {
        let rendered = render_environment(helm, environment)?;
        let api = &rendered
            .iter()
            .find(|(r, _)| r == "ml-api")
            .context("ml-api")?
            .1;
        let sealed = of_kind(api, "SealedSecret");
        assert_eq!(sealed.len(), 1, "{environment}: ml-api's SealedSecret");
        let file = work.path().join(format!("{environment}.yaml"));
        std::fs::write(&file, serde_yaml::to_string(sealed[0])?)?;
        for other in ENVIRONMENTS {
            let output = Command::new(&seal)
                .arg("verify")
                .arg("--cert")
                .arg(certs.join(format!("{other}.pem")))
                .arg(&file)
                .output()?;
            assert_eq!(
                output.status.success(),
                other == environment,
                "{environment}'s values verified against {other}'s certificate: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        // The Deployment reads the Secret the SealedSecret produces and is restarted with it.
        let deployment = of_kind(api, "Deployment")[0];
        let env_from = &deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"];
        assert_eq!(
            env_from[0]["secretRef"]["name"],
            sealed[0]["spec"]["template"]["metadata"]["name"]
        );
        assert_eq!(
            sealed[0]["spec"]["rolloutRestartTargets"][0]["name"],
            deployment["metadata"]["name"]
        );
        // The HPA: CPU 70 % up to 10 replicas at most.
        if let Some(hpa) = of_kind(api, "HorizontalPodAutoscaler").first() {
            assert!(hpa["spec"]["maxReplicas"].as_u64() <= Some(10));
        }
    }
    let defaults = helm.template("ml-api", &chart("ml-api"), "ml", &[], &[])?;
    let hpa = of_kind(&defaults, "HorizontalPodAutoscaler")[0];
    assert_eq!(hpa["spec"]["maxReplicas"], 10);
    assert_eq!(
        hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        70
    );
    Ok(())
}

/// The seal-agent configuration of every ConfigMap named `*-seal-agent` among `objects`.
pub(crate) fn agent_configs(objects: &[Value]) -> Vec<String> {
    of_kind(objects, "ConfigMap")
        .into_iter()
        .filter(|c| {
            c["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-seal-agent"))
        })
        .filter_map(|c| c["data"]["config.yaml"].as_str().map(str::to_owned))
        .collect()
}

/// The exit code of `seal-agent init -c` on `config`: 2 is an invalid configuration; anything else
/// (here 1: no Vault or ServiceAccount token to reach) means the configuration was accepted.
pub(crate) fn agent_init_code(agent: &std::path::Path, config: &str) -> Result<Option<i32>> {
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), config)?;
    let output = Command::new(agent)
        .args(["init", "-c"])
        .arg(file.path())
        .env_remove("VAULT_TOKEN")
        .output()?;
    if output.status.code() == Some(2) {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(output.status.code())
}

#[test]
fn the_sidecar_option_renders_a_configuration_seal_agent_accepts() -> Result<()> {
    let helm = helm!();
    let agent = crate::workspace_binary("seal-agent", "seal-agent")?;
    let mut checked = 0;
    for environment in ENVIRONMENTS {
        for (release, objects) in render_environment(helm, environment)? {
            for config in agent_configs(&objects) {
                assert_ne!(
                    agent_init_code(&agent, &config)?,
                    Some(2),
                    "{environment} {release}: seal-agent refused the configuration"
                );
                checked += 1;
                // The pod: init container, sidecar, memory volume, shared process namespace.
                let spec = &of_kind(&objects, "Deployment")[0]["spec"]["template"]["spec"];
                assert_eq!(spec["shareProcessNamespace"], true);
                assert_eq!(spec["initContainers"][0]["name"], "seal-agent-init");
                let names: Vec<&str> = spec["containers"]
                    .as_array()
                    .context("containers")?
                    .iter()
                    .filter_map(|c| c["name"].as_str())
                    .collect();
                assert!(names.contains(&"seal-agent"), "{names:?}");
                let parsed: Value = serde_yaml::from_str(&config)?;
                if let Some(listen) = parsed["metrics"]["listen"].as_str() {
                    let sidecar = spec["containers"]
                        .as_array()
                        .context("containers")?
                        .iter()
                        .find(|c| c["name"] == "seal-agent")
                        .context("the sidecar")?;
                    assert_eq!(sidecar["livenessProbe"]["httpGet"]["path"], "/ping");
                    assert!(
                        listen.ends_with(&format!(":{}", sidecar["ports"][0]["containerPort"])),
                        "{listen}"
                    );
                }
                let memory = spec["volumes"]
                    .as_array()
                    .context("volumes")?
                    .iter()
                    .any(|v| v["name"] == "secrets" && v["emptyDir"]["medium"] == "Memory");
                assert!(memory, "{environment} {release}: the files live in memory");
                assert!(
                    of_kind(&objects, "Secret").is_empty()
                        && of_kind(&objects, "SealedSecret").is_empty()
                );
            }
        }
    }
    assert!(checked >= 1, "no environment uses the sidecar");
    // A configuration seal-agent refuses is caught by this check.
    assert_eq!(agent_init_code(&agent, "unknown: 1\n")?, Some(2));
    Ok(())
}

#[test]
fn ml_batch_scales_on_its_queue_and_runs_its_cron_job_in_prod() -> Result<()> {
    let helm = helm!();
    let prod = render_environment(helm, "prod")?;
    let batch = &prod
        .iter()
        .find(|(r, _)| r == "ml-batch")
        .context("ml-batch")?
        .1;
    let scaled = of_kind(batch, "ScaledObject");
    assert_eq!(scaled.len(), 1);
    let trigger = &scaled[0]["spec"]["triggers"][0];
    assert_eq!(trigger["type"], "rabbitmq");
    assert_eq!(trigger["metadata"]["mode"], "QueueLength");
    let auth = of_kind(batch, "TriggerAuthentication");
    assert_eq!(
        auth[0]["metadata"]["name"],
        trigger["authenticationRef"]["name"]
    );
    let external = of_kind(batch, "ExternalSecret");
    assert_eq!(
        auth[0]["spec"]["secretTargetRef"][0]["name"], external[0]["spec"]["target"]["name"],
        "KEDA reads the broker URL from the Secret the ExternalSecret produces"
    );
    let deployment = of_kind(batch, "Deployment")[0];
    assert!(
        deployment["spec"].get("replicas").is_none(),
        "KEDA owns the replica count"
    );
    assert_eq!(
        scaled[0]["spec"]["scaleTargetRef"]["name"],
        deployment["metadata"]["name"]
    );
    let cron = of_kind(batch, "CronJob");
    assert_eq!(cron.len(), 1);
    assert_eq!(
        cron[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"],
        "Never"
    );
    Ok(())
}

/// (kind, namespace, name) of each object, sorted.
fn identities(objects: &[Value]) -> Vec<(String, String, String)> {
    let mut out: Vec<_> = objects
        .iter()
        .map(|o| {
            let field = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (
                field(&o["kind"]),
                field(&o["metadata"]["namespace"]),
                field(&o["metadata"]["name"]),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn helmfile_template_renders_what_helm_template_per_release_renders() -> Result<()> {
    let helm = helm!();
    let helmfile = helmfile!();
    for environment in ENVIRONMENTS {
        let file = root().join(format!(
            "deploy/helmfile/deployments/{environment}/helmfile.yaml"
        ));
        let run = |selector: Option<&str>| -> Result<Vec<Value>> {
            let mut command = Command::new(&helmfile);
            helm.isolate(&mut command);
            command
                .arg("--helm-binary")
                .arg(helm.binary())
                .arg("--file")
                .arg(&file);
            if let Some(selector) = selector {
                command.args(["--selector", selector]);
            }
            let output = command.args(["template", "--skip-deps"]).output()?;
            documents(&ok(&output, &format!("helmfile template ({environment})"))?)
        };
        let mut expected = Vec::new();
        for (_, objects) in render_environment(helm, environment)? {
            expected.extend(objects);
        }
        assert_eq!(
            identities(&run(None)?),
            identities(&expected),
            "{environment}"
        );
        let api = render_environment(helm, environment)?
            .into_iter()
            .find(|(r, _)| r == "ml-api")
            .context("ml-api")?
            .1;
        assert_eq!(
            identities(&run(Some("service=ml-api"))?),
            identities(&api),
            "{environment}: --selector service=ml-api"
        );
    }
    Ok(())
}
