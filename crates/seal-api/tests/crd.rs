//! The CRD YAML committed under `deploy/crds/` is exactly what `crdgen` writes today, and the real
//! API server accepts those CRDs, stores valid objects of each kind, and refuses (422) what their
//! schemas and CEL rules forbid.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use seal_testenv::testenv;
use serde_json::{Value, json};

const REGENERATE: &str = "cargo run -p seal-api --bin crdgen -- deploy/crds";

#[test]
fn committed_crd_yaml_is_not_stale() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/crds");
    let files = seal_api::crd_files();
    assert_eq!(
        files
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>(),
        [
            "seal.dev_sealedsecrets.yaml",
            "seal.dev_externalsecrets.yaml",
            "seal.dev_secretstores.yaml",
            "seal.dev_clustersecretstores.yaml"
        ]
    );
    for (name, yaml) in files {
        let committed = std::fs::read_to_string(format!("{dir}/{name}"))
            .unwrap_or_else(|e| panic!("deploy/crds/{name}: {e}; write it with\n  {REGENERATE}"));
        assert!(
            committed == yaml,
            "deploy/crds/{name} is stale; regenerate it with\n  {REGENERATE}"
        );
    }
    // No CRD file that crdgen would not write (a renamed kind leaves none behind).
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            seal_api::crd_files().iter().any(|(n, _)| *n == name),
            "deploy/crds/{name} is not written by crdgen"
        );
    }
}

#[test]
fn crd_yaml_is_the_sealed_secret_crd_alone() {
    let (_, sealed) = &seal_api::crd_files()[0];
    assert_eq!(&seal_api::crd_yaml(), sealed);
}

#[test]
fn crd_keeps_unknown_template_metadata_and_has_a_status_subresource() {
    let crd: serde_json::Value = serde_yaml::from_str(&seal_api::crd_yaml()).unwrap();
    let version = &crd["spec"]["versions"][0];
    assert_eq!(crd["spec"]["group"], "seal.dev");
    assert_eq!(version["name"], "v1alpha1");
    assert!(version["subresources"]["status"].is_object());
    let metadata = &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["template"]
        ["properties"]["metadata"];
    assert_eq!(metadata["x-kubernetes-preserve-unknown-fields"], true);
}

#[test]
fn every_crd_has_status_short_names_and_the_seal_category_with_no_schema_defaults() {
    let expected = [
        ("SealedSecret", "Namespaced", "sealed"),
        ("ExternalSecret", "Namespaced", "es"),
        ("SecretStore", "Namespaced", "ss"),
        ("ClusterSecretStore", "Cluster", "css"),
    ];
    for (crd, (kind, scope, short)) in seal_api::crds().iter().zip(expected) {
        assert_eq!(crd.spec.names.kind, kind);
        assert_eq!(crd.spec.scope, scope, "{kind}");
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&[short.to_owned()][..])
        );
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["seal".to_owned()][..])
        );
        let version = &crd.spec.versions[0];
        assert!(
            version.subresources.as_ref().unwrap().status.is_some(),
            "{kind}"
        );
        let columns: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert!(
            columns.contains(&"Ready") && columns.contains(&"Age"),
            "{kind}: {columns:?}"
        );
        if kind != "SealedSecret" {
            // A schema default is written into every object by the API server, which GitOps
            // tools then show as drift; ESO's defaults live in seal's accessors instead.
            let schema = serde_json::to_string(&version.schema).unwrap();
            assert!(
                !schema.contains("\"default\""),
                "{kind} has a schema default"
            );
        }
    }
}

/// The CEL rules in the CRDs are exactly the ones `validate()` mirrors.
#[test]
fn the_crds_carry_the_one_provider_and_one_auth_rules() {
    let text: String = seal_api::crd_files()
        .into_iter()
        .map(|(_, yaml)| yaml)
        .collect();
    for message in [
        "exactly one provider (aws or vault) must be set",
        "exactly one Vault auth method (tokenSecretRef, appRole, kubernetes or jwt) must be set",
        "exactly one JWT source (secretRef or kubernetesServiceAccountToken) must be set",
        "at most one AWS auth method (secretRef or jwt) may be set",
        "exactly one of extract or find must be set",
        "either data or dataFrom must be set",
    ] {
        assert!(text.contains(message), "{message}");
    }
}

/// Applies every CRD to the real API server, through the committed YAML: exactly what a user
/// applies.
async fn install(env: &seal_testenv::TestEnv) -> Result<()> {
    for (_, yaml) in seal_api::crd_files() {
        let crd: CustomResourceDefinition = serde_yaml::from_str(&yaml)?;
        env.apply_crd(&crd).await?;
    }
    Ok(())
}

/// The API for `kind` in `namespace`, or cluster-wide when `None`.
fn api(client: &kube::Client, kind: &str, namespace: Option<&str>) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("seal.dev", "v1alpha1", kind));
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

fn object(kind: &str, name: &str, spec: &Value) -> Result<DynamicObject> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "seal.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }))?)
}

/// Creates `spec` as `kind` and expects a 422 whose message contains `needle`.
async fn refused(api: &Api<DynamicObject>, kind: &str, spec: &Value, needle: &str) -> Result<()> {
    let created = api
        .create(&PostParams::default(), &object(kind, "refused", spec)?)
        .await;
    match created {
        Err(kube::Error::Api(status)) if status.code == 422 => {
            if !status.message.contains(needle) {
                bail!(
                    "{kind} {spec}: refused, but the message lacks {needle:?}: {}",
                    status.message
                );
            }
            Ok(())
        }
        other => bail!("{kind} {spec}: expected 422, got {other:?}"),
    }
}

fn vault_store_spec() -> Value {
    json!({"provider": {"vault": {
        "server": "http://127.0.0.1:8200", "path": "secret", "version": "v2",
        "caBundle": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t",
        "auth": {"appRole": {"roleId": "r", "secretRef": {"name": "approle", "key": "secret-id"}}}
    }}})
}

fn aws_store_spec() -> Value {
    json!({"provider": {"aws": {
        "service": "SecretsManager", "region": "us-east-1", "endpointURL": "http://127.0.0.1:5000",
        "auth": {"secretRef": {
            "accessKeyIDSecretRef": {"name": "aws", "key": "id"},
            "secretAccessKeySecretRef": {"name": "aws", "key": "secret"}
        }}
    }}})
}

fn external_secret_spec() -> Value {
    json!({
        "secretStoreRef": {"name": "vault"},
        "refreshInterval": "15m",
        "refreshPolicy": "Periodic",
        "target": {"name": "db", "creationPolicy": "Owner", "deletionPolicy": "Retain",
                   "template": {"type": "Opaque", "mergePolicy": "Merge",
                                "metadata": {"labels": {"app": "ml-api"}},
                                "data": {"dsn": "postgres://{{ .user }}@db"}}},
        "data": [{"secretKey": "user", "remoteRef": {"key": "ml/db", "property": "user", "decodingStrategy": "None"}}],
        "dataFrom": [
            {"extract": {"key": "ml/api"}},
            {"find": {"path": "ml", "name": {"regexp": "^ml"}},
             "rewrite": [{"regexp": {"source": "ml/(.*)", "target": "$1"}}]}
        ],
        "rolloutRestartTargets": [{"kind": "Deployment", "name": "ml-api"}]
    })
}

#[tokio::test]
async fn the_api_server_stores_a_valid_object_of_each_kind_as_written() -> Result<()> {
    let env = testenv!();
    install(env).await?;
    let ns = env.namespace("api-crds-valid").await?;
    let client = env.kube_client().await?;
    let post = PostParams::default();
    let stores = api(&client, "SecretStore", Some(ns.name()));
    stores
        .create(&post, &object("SecretStore", "vault", &vault_store_spec())?)
        .await?;
    stores
        .create(&post, &object("SecretStore", "aws", &aws_store_spec())?)
        .await?;
    let css_name = format!("{}-shared", ns.name());
    let mut css_spec = aws_store_spec();
    css_spec["conditions"] = json!([
        {"namespaces": [ns.name()]},
        {"namespaceSelector": {"matchLabels": {"team": "ml"}}}
    ]);
    let cluster_stores = api(&client, "ClusterSecretStore", None);
    cluster_stores
        .create(&post, &object("ClusterSecretStore", &css_name, &css_spec)?)
        .await?;
    api(&client, "ExternalSecret", Some(ns.name()))
        .create(
            &post,
            &object("ExternalSecret", "db", &external_secret_spec())?,
        )
        .await?;
    let sealed_spec = json!({
        "encryptedData": {"password": "AgBy3i4OJSWK+PiTySYZZA=="},
        "rolloutRestartTargets": [{"kind": "StatefulSet", "name": "queue"}]
    });
    api(&client, "SealedSecret", Some(ns.name()))
        .create(&post, &object("SealedSecret", "db", &sealed_spec)?)
        .await?;

    // Read back as seal's types: every one passes validate(), and the server added nothing the
    // user did not write (no schema defaults, so no GitOps drift).
    let typed_stores: Api<seal_api::SecretStore> = Api::namespaced(client.clone(), ns.name());
    for store in typed_stores.list(&ListParams::default()).await? {
        store.validate()?;
    }
    let css = Api::<seal_api::ClusterSecretStore>::all(client.clone())
        .get(&css_name)
        .await?;
    css.validate()?;
    assert!(css.allows_namespace(ns.name(), &BTreeMap::new()));
    assert!(!css.allows_namespace("elsewhere", &BTreeMap::new()));
    let es = Api::<seal_api::ExternalSecret>::namespaced(client.clone(), ns.name())
        .get("db")
        .await?;
    es.validate()?;
    assert_eq!(es.spec.refresh_interval()?, Duration::from_secs(900));
    let mut as_read = serde_json::to_value(&es.spec)?;
    let mut written = external_secret_spec();
    as_read.sort_all_objects();
    written.sort_all_objects();
    assert_eq!(as_read, written);
    let sealed = Api::<seal_api::SealedSecret>::namespaced(client.clone(), ns.name())
        .get("db")
        .await?;
    assert_eq!(
        sealed.spec.rollout_restart_targets,
        [seal_api::RolloutRestartTarget {
            kind: seal_api::WorkloadKind::StatefulSet,
            name: "queue".into()
        }]
    );
    cluster_stores
        .delete(&css_name, &DeleteParams::default())
        .await?;
    Ok(())
}

/// `base` with the value at `path` replaced.
fn with(base: Value, path: &[&str], value: Value) -> Value {
    let mut spec = base;
    let (last, parents) = path.split_last().expect("invariant: a non-empty path");
    let mut node = &mut spec;
    for key in parents {
        node = &mut node[*key];
    }
    node[*last] = value;
    spec
}

fn two_providers() -> Value {
    let aws = aws_store_spec()["provider"]["aws"].clone();
    with(vault_store_spec(), &["provider", "aws"], aws)
}

#[tokio::test]
async fn the_api_server_refuses_stores_with_two_providers_two_auth_methods_or_bad_enums()
-> Result<()> {
    let env = testenv!();
    install(env).await?;
    let ns = env.namespace("api-crds-stores").await?;
    let client = env.kube_client().await?;
    let stores = api(&client, "SecretStore", Some(ns.name()));
    let cases = [
        (
            two_providers(),
            "exactly one provider (aws or vault) must be set",
        ),
        (
            json!({"provider": {}}),
            "exactly one provider (aws or vault) must be set",
        ),
        (
            with(
                vault_store_spec(),
                &["provider", "vault", "auth", "tokenSecretRef"],
                json!({"name": "t", "key": "token"}),
            ),
            "exactly one Vault auth method",
        ),
        (
            with(
                vault_store_spec(),
                &["provider", "vault", "auth"],
                json!({"jwt": {"secretRef": {"name": "j", "key": "k"}, "kubernetesServiceAccountToken": {"serviceAccountRef": {"name": "sa"}}}}),
            ),
            "exactly one JWT source",
        ),
        (
            with(
                aws_store_spec(),
                &["provider", "aws", "auth", "jwt"],
                json!({"serviceAccountRef": {"name": "sa"}}),
            ),
            "at most one AWS auth method",
        ),
        (
            with(
                aws_store_spec(),
                &["provider", "aws", "service"],
                json!("ParameterStore"),
            ),
            "Unsupported value",
        ),
        (
            with(
                vault_store_spec(),
                &["provider", "vault", "version"],
                json!("v3"),
            ),
            "Unsupported value",
        ),
        (
            with(
                vault_store_spec(),
                &["provider", "vault", "caBundle"],
                json!("not base64!"),
            ),
            "caBundle",
        ),
    ];
    for (spec, needle) in &cases {
        refused(&stores, "SecretStore", spec, needle).await?;
    }
    let cluster_stores = api(&client, "ClusterSecretStore", None);
    refused(
        &cluster_stores,
        "ClusterSecretStore",
        &two_providers(),
        "exactly one provider",
    )
    .await?;
    assert!(stores.list(&ListParams::default()).await?.items.is_empty());
    Ok(())
}

#[tokio::test]
async fn the_api_server_refuses_external_secrets_that_break_a_rule() -> Result<()> {
    let env = testenv!();
    install(env).await?;
    let ns = env.namespace("api-crds-es").await?;
    let client = env.kube_client().await?;
    let externals = api(&client, "ExternalSecret", Some(ns.name()));
    let base = json!({"secretStoreRef": {"name": "vault"}, "data": [{"secretKey": "a", "remoteRef": {"key": "k"}}]});
    let es_with = |key: &str, value: Value| with(base.clone(), &[key], value);
    let cases = [
        (es_with("refreshInterval", json!("1d")), "refreshInterval"),
        (
            es_with("refreshPolicy", json!("Always")),
            "Unsupported value",
        ),
        (
            es_with("target", json!({"creationPolicy": "Adopt"})),
            "Unsupported value",
        ),
        (
            es_with(
                "data",
                json!([{"secretKey": "a", "remoteRef": {"key": "k", "decodingStrategy": "Base64Url"}}]),
            ),
            "Unsupported value",
        ),
        (
            es_with(
                "data",
                json!([{"secretKey": "a/b", "remoteRef": {"key": "k"}}]),
            ),
            "secretKey",
        ),
        (
            es_with("data", json!([])),
            "either data or dataFrom must be set",
        ),
        (
            es_with(
                "dataFrom",
                json!([{"extract": {"key": "a"}, "find": {"path": "b"}}]),
            ),
            "exactly one of extract or find",
        ),
        (
            es_with("dataFrom", json!([{"rewrite": []}])),
            "exactly one of extract or find",
        ),
        (
            es_with(
                "target",
                json!({"creationPolicy": "Merge", "deletionPolicy": "Delete"}),
            ),
            "deletionPolicy Delete",
        ),
        (
            es_with(
                "target",
                json!({"creationPolicy": "None", "deletionPolicy": "Merge"}),
            ),
            "deletionPolicy Merge",
        ),
        (
            es_with(
                "rolloutRestartTargets",
                json!([{"kind": "DaemonSet", "name": "x"}]),
            ),
            "Unsupported value",
        ),
    ];
    for (spec, needle) in &cases {
        refused(&externals, "ExternalSecret", spec, needle).await?;
    }
    refused(
        &api(&client, "SealedSecret", Some(ns.name())),
        "SealedSecret",
        &json!({"encryptedData": {}, "rolloutRestartTargets": [{"kind": "Pod", "name": "x"}]}),
        "Unsupported value",
    )
    .await?;
    assert!(
        externals
            .list(&ListParams::default())
            .await?
            .items
            .is_empty()
    );
    Ok(())
}

#[tokio::test]
async fn server_side_apply_refuses_an_unknown_auth_method() -> Result<()> {
    let env = testenv!();
    install(env).await?;
    let ns = env.namespace("api-crds-strict").await?;
    let stores = api(&env.kube_client().await?, "SecretStore", Some(ns.name()));
    // Server-side apply (kubectl apply --server-side, Argo CD, Flux) refuses a field the schema
    // does not declare; a plain create with kubectl's default strict field validation does too.
    // Only a client that asks for no validation gets it pruned, as for any structural schema.
    let unknown = with(
        vault_store_spec(),
        &["provider", "vault", "auth", "userPass"],
        json!({"path": "userpass", "username": "u"}),
    );
    let strict = PatchParams::apply("seal-api-test").validation_strict();
    let applied = stores
        .patch(
            "unknown",
            &strict,
            &Patch::Apply(object("SecretStore", "unknown", &unknown)?),
        )
        .await;
    match applied {
        Err(kube::Error::Api(status))
            if status
                .message
                .contains(".spec.provider.vault.auth.userPass") =>
        {
            Ok(())
        }
        other => bail!("an unknown field under strict validation: {other:?}"),
    }
}

/// The schema's duration pattern and minimum (checked by the API server with Go's RE2 and CEL)
/// and the code's reading of `refreshInterval` (`parse_duration`, then at least a second unless
/// zero) agree: what one accepts the other does.
#[tokio::test]
async fn the_api_server_and_the_code_agree_on_refresh_intervals() -> Result<()> {
    let env = testenv!();
    install(env).await?;
    let ns = env.namespace("api-crds-durations").await?;
    let externals = api(&env.kube_client().await?, "ExternalSecret", Some(ns.name()));
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let samples = [
        "0", "0s", "+5s", "1h", "15m", "1h30m", "1h0m0s", "1.5h", ".5s", "1.s", "500ms", "10us",
        "10µs", "7ns", "999ms", "1000ms", "1s", "", "1", "-1h", "1d", "1d12h", "1w", "h", "1h5",
        "1..5s", "00", " 1h", "1H",
    ];
    for sample in samples {
        let spec = json!({
            "secretStoreRef": {"name": "vault"},
            "refreshInterval": sample,
            "data": [{"secretKey": "a", "remoteRef": {"key": "k"}}]
        });
        let server = externals
            .create(&dry_run, &object("ExternalSecret", "duration", &spec)?)
            .await
            .is_ok();
        let parsed: seal_api::external_secret::ExternalSecretSpec =
            serde_json::from_value(spec.clone())?;
        let ours = parsed.refresh_interval().is_ok();
        assert_eq!(
            server, ours,
            "{sample:?}: API server {server}, refresh_interval {ours}"
        );
    }
    Ok(())
}

/// ESO's manifests, converted by `seal_api::eso::from_eso`, are accepted by the API server as
/// seal's objects.
#[tokio::test]
async fn converted_eso_manifests_are_accepted_by_the_api_server() -> Result<()> {
    let env = testenv!();
    install(env).await?;
    let ns = env.namespace("api-crds-eso").await?;
    let client = env.kube_client().await?;
    let eso = [
        json!({
            "apiVersion": "external-secrets.io/v1",
            "kind": "SecretStore",
            "metadata": {"name": "aws-store", "uid": "0b9c4c2e-0000-4000-8000-000000000000"},
            "spec": {"provider": {"aws": {"service": "SecretsManager", "region": "eu-west-1",
                "role": "arn:aws:iam::123456789012:role/r",
                "auth": {"jwt": {"serviceAccountRef": {"name": "ml-batch"}}}}}}
        }),
        json!({
            "apiVersion": "external-secrets.io/v1beta1",
            "kind": "SecretStore",
            "metadata": {"name": "vault-store"},
            "spec": {"provider": {"vault": {"server": "https://vault:8200", "path": "secret",
                "version": "v2", "auth": {"jwt": {"path": "jwt", "role": "ci",
                "kubernetesServiceAccountToken": {"serviceAccountRef": {"name": "ci"},
                "audiences": ["vault"], "expirationSeconds": 600}}}}}}
        }),
        json!({
            "apiVersion": "external-secrets.io/v1",
            "kind": "ExternalSecret",
            "metadata": {"name": "db"},
            "spec": {
                "refreshInterval": "1h0m0s",
                "secretStoreRef": {"name": "aws-store", "kind": "SecretStore"},
                "target": {"name": "db", "creationPolicy": "Owner", "deletionPolicy": "Retain",
                    "template": {"engineVersion": "v2", "mergePolicy": "Replace",
                        "data": {"url": "postgres://{{ .user }}:{{ .password | urlquery }}@db"}}},
                "data": [{"secretKey": "user", "remoteRef": {"key": "ml/db", "property": "user",
                    "conversionStrategy": "Default", "decodingStrategy": "None", "metadataPolicy": "None"}}],
                "dataFrom": [{"find": {"name": {"regexp": "^ml/"}, "conversionStrategy": "Default"},
                    "rewrite": [{"regexp": {"source": "ml/(.*)", "target": "$1"}}]}]
            },
            "status": {"refreshTime": "2025-01-01T00:00:00Z"}
        }),
    ];
    for document in &eso {
        let converted = seal_api::eso::from_eso(document)?;
        let kind = converted["kind"].as_str().unwrap_or_default().to_owned();
        let object: DynamicObject = serde_json::from_value(converted)?;
        api(&client, &kind, Some(ns.name()))
            .create(&PostParams::default(), &object)
            .await?;
    }
    Ok(())
}
