//! ExternalSecret behaviour beyond a plain sync, against the real API server, OpenBao and moto with
//! the controller as a process: `dataFrom.find` (AWS by name and tags, Vault by path), AWS versions
//! and stages and a KV v1 value rotated upstream, each deletion, creation and refresh policy,
//! `target.immutable`, and rollout restarts of a StatefulSet and of a SealedSecret's Deployment.
//!
//! A policy that must *not* read is shown against a witness: a Periodic ExternalSecret of the same
//! key that does pick the change up, so the assertion waits for an event instead of sleeping.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context as _, Result};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PodTemplateSpec, Secret};
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use seal_api::{ExternalSecret, SealedSecret, SecretStore};
use seal_controller::protocols::rollout::checksum_annotation;
use seal_testenv::{TestEnv, TestNamespace, eventually, secret_from_pairs, testenv, unique_name};
use serde_json::json;

use crate::external::{
    aws_credentials, aws_store, create, external_secret, install_all_crds, wait_item, wait_reason,
    wait_refreshes, wait_secret, workload,
};
use crate::external_auth::kv2_put;
use crate::support::{ControllerProcess, first_key, item, sealed};

/// The controller, watching only `app`, with its keys in a namespace of their own.
async fn controller(env: &TestEnv, app: &TestNamespace) -> Result<ControllerProcess> {
    let keys = env.namespace("es-policy-keys").await?;
    ControllerProcess::start(
        env,
        keys.name(),
        &["--namespaces", app.name(), "--leader-elect=false"],
    )
    .await
}

/// The Secret `vault-token` with OpenBao's root token, and SecretStores `kv2` (mount `secret`)
/// and `kv1` (mount `kv`) logging in with it, in `ns`.
async fn vault_token_stores(env: &TestEnv, ns: &TestNamespace) -> Result<()> {
    ns.api::<Secret>()
        .create(
            &PostParams::default(),
            &secret_from_pairs(
                "vault-token",
                ns.name(),
                &[("token", env.var("VAULT_TOKEN"))],
            ),
        )
        .await?;
    for (name, mount, version) in [("kv2", "secret", "v2"), ("kv1", "kv", "v1")] {
        create::<SecretStore>(ns, json!({
            "apiVersion": "seal.dev/v1alpha1", "kind": "SecretStore", "metadata": {"name": name},
            "spec": {"provider": {"vault": {"server": env.vault_addr(), "path": mount, "version": version,
                "auth": {"tokenSecretRef": {"name": "vault-token", "key": "token"}}}}},
        }))
        .await?;
    }
    Ok(())
}

/// `data` reading `property` of `key` into item `v`.
fn one_item(key: &str, property: &str) -> serde_json::Value {
    json!({"data": [{"secretKey": "v", "remoteRef": {"key": key, "property": property}}]})
}

/// The item names of a Secret.
fn keys_of(secret: &Secret) -> BTreeSet<String> {
    secret
        .data
        .iter()
        .flatten()
        .map(|(k, _)| k.clone())
        .collect()
}

/// The names `names` as a set, for comparing with [`keys_of`].
fn set_of(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

/// The rollout checksum annotation for Secret `secret` on a pod template.
fn checksum(template: &PodTemplateSpec, secret: &str) -> Option<String> {
    template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(&checksum_annotation(secret))
        .cloned()
}

#[tokio::test]
async fn aws_find_by_name_and_tags_and_versions_by_stage_and_id() -> Result<()> {
    let env = testenv!();
    install_all_crds(env).await?;
    let app = env.namespace("es-aws-find").await?;
    let sm = env.secretsmanager().await;
    let prefix = unique_name("es-find");
    let team = unique_name("team");
    for (suffix, tagged) in [("a", false), ("b", false), ("x", true), ("y", true)] {
        let name = format!("{prefix}-{suffix}");
        let mut create = sm.create_secret().name(&name).secret_string(suffix);
        if tagged {
            create = create.tags(
                aws_sdk_secretsmanager::types::Tag::builder()
                    .key("team")
                    .value(&team)
                    .build(),
            );
        }
        create.send().await?;
    }
    let rotated = format!("{prefix}-rotated");
    let first = sm
        .create_secret()
        .name(&rotated)
        .secret_string("v1")
        .send()
        .await?
        .version_id
        .context("no version id")?;
    let pending = sm
        .put_secret_value()
        .secret_id(&rotated)
        .secret_string("v2")
        .version_stages("AWSPENDING")
        .send()
        .await?
        .version_id
        .context("no version id")?;
    // A stage of the test's own on the first version, moved below as AWSCURRENT is at the end of
    // a rotation. (moto 5.2 keeps answering a read without a stage with the old version after
    // AWSCURRENT moves, which AWS does not, so the move is shown with this stage.)
    let move_live = |from: Option<&str>, to: &str| {
        sm.update_secret_version_stage()
            .secret_id(&rotated)
            .version_stage("LIVE")
            .set_remove_from_version_id(from.map(str::to_owned))
            .move_to_version_id(to)
            .send()
    };
    move_live(None, &first).await?;

    aws_credentials(env, &app).await?;
    create::<SecretStore>(&app, aws_store(env, "aws", env.var("AWS_ENDPOINT_URL"))).await?;
    let find = |find: serde_json::Value| json!({"dataFrom": [{"find": find}]});
    create::<ExternalSecret>(
        &app,
        external_secret(
            "by-name",
            "aws",
            find(json!({"name": {"regexp": format!("^{prefix}-[ab]$")}})),
        ),
    )
    .await?;
    create::<ExternalSecret>(
        &app,
        external_secret("by-tags", "aws", find(json!({"tags": {"team": team}}))),
    )
    .await?;
    let version = |key: &str, version: Option<&str>| {
        let mut remote = json!({"key": rotated});
        if let Some(version) = version {
            remote["version"] = json!(version);
        }
        json!({"secretKey": key, "remoteRef": remote})
    };
    create::<ExternalSecret>(
        &app,
        external_secret(
            "versions",
            "aws",
            json!({"data": [
                version("current", None),
                version("live", Some("LIVE")),
                version("pending", Some("AWSPENDING")),
                version("pinned", Some(&format!("uuid/{first}"))),
            ]}),
        ),
    )
    .await?;
    let _controller = controller(env, &app).await?;

    // Exactly the secrets the name matches, and exactly the tagged ones, each under its name.
    let a = format!("{prefix}-a");
    let by_name = wait_item(&app, "by-name", &a, "a").await?;
    assert_eq!(keys_of(&by_name), set_of(&[&a, &format!("{prefix}-b")]));
    let x = format!("{prefix}-x");
    let by_tags = wait_item(&app, "by-tags", &x, "x").await?;
    assert_eq!(keys_of(&by_tags), set_of(&[&x, &format!("{prefix}-y")]));

    // No version, a stage and a version id each read their own version.
    let versions = wait_item(&app, "versions", "current", "v1").await?;
    let items = |secret: &Secret| {
        ["current", "live", "pending", "pinned"].map(|k| item(secret, k).unwrap_or_default())
    };
    assert_eq!(
        items(&versions),
        [b"v1", b"v1", b"v2", b"v1"].map(|v| v.to_vec())
    );

    // The stage moves to the pending version upstream: the next refresh reads it; the pinned
    // version id stays where it was.
    move_live(Some(&first), &pending).await?;
    let moved = wait_item(&app, "versions", "live", "v2").await?;
    assert_eq!(
        items(&moved),
        [b"v1", b"v2", b"v2", b"v1"].map(|v| v.to_vec())
    );
    Ok(())
}

#[tokio::test]
async fn vault_find_by_path_kv1_rotation_and_deletion_policies() -> Result<()> {
    let env = testenv!();
    install_all_crds(env).await?;
    let app = env.namespace("es-bao-find").await?;
    let root = env.vault_client(None)?;
    let path = unique_name("es-find");
    for (name, value) in [
        ("find/a", "a"),
        ("find/b", "b"),
        ("other", "o"),
        ("retain", "r"),
        ("merge-a", "a"),
        ("merge-b", "b"),
    ] {
        kv2_put(env, &format!("{path}/{name}"), &[("v", value)]).await?;
    }
    vaultrs::kv1::set(&root, "kv", &path, &[("token", "t1")].into()).await?;
    vault_token_stores(env, &app).await?;
    create::<ExternalSecret>(
        &app,
        external_secret(
            "by-path",
            "kv2",
            json!({"dataFrom": [{"find": {"path": format!("{path}/find")}}]}),
        ),
    )
    .await?;
    create::<ExternalSecret>(
        &app,
        external_secret("kv1", "kv1", one_item(&path, "token")),
    )
    .await?;
    let mut retain = external_secret("retain", "kv2", one_item(&format!("{path}/retain"), "v"));
    retain["spec"]["target"] = json!({"deletionPolicy": "Retain"});
    create::<ExternalSecret>(&app, retain).await?;
    create::<ExternalSecret>(&app, external_secret("merge", "kv2", json!({
        "data": [
            {"secretKey": "a", "remoteRef": {"key": format!("{path}/merge-a"), "property": "v"}},
            {"secretKey": "b", "remoteRef": {"key": format!("{path}/merge-b"), "property": "v"}},
        ],
        "target": {"deletionPolicy": "Merge"},
    })))
    .await?;
    let _controller = controller(env, &app).await?;

    // Everything below the path, nothing beside it; names with `/` as `_`, values as JSON.
    let a = format!("{path}_find_a");
    let by_path = wait_item(&app, "by-path", &a, r#"{"v":"a"}"#).await?;
    assert_eq!(keys_of(&by_path), set_of(&[&a, &format!("{path}_find_b")]));

    // KV v1 has no versions: a new value under the same path is picked up on refresh.
    wait_item(&app, "kv1", "v", "t1").await?;
    vaultrs::kv1::set(&root, "kv", &path, &[("token", "t2")].into()).await?;
    wait_item(&app, "kv1", "v", "t2").await?;

    // Retain: the key is gone, the Secret stays as it was and the status says why.
    let retained = wait_item(&app, "retain", "v", "r").await?;
    vaultrs::kv2::delete_metadata(&root, "secret", &format!("{path}/retain")).await?;
    let message = wait_reason(&app, "retain", "SecretSyncedError").await?;
    assert!(message.contains("deletionPolicy Retain"), "{message}");
    assert!(
        message.contains(&format!("{path}/retain")),
        "the message names the key: {message}"
    );
    let kept = app.api::<Secret>().get("retain").await?;
    assert_eq!(kept.resource_version(), retained.resource_version());

    // Merge: the missing key's item goes, the other stays, and the sync counts as done.
    wait_item(&app, "merge", "b", "b").await?;
    vaultrs::kv2::delete_metadata(&root, "secret", &format!("{path}/merge-b")).await?;
    let merged = wait_secret(&app, "merge", "item b is removed", |s| {
        item(s, "b").is_none()
    })
    .await?;
    assert_eq!(keys_of(&merged), set_of(&["a"]));
    assert_eq!(item(&merged, "a").as_deref(), Some(&b"a"[..]));
    wait_reason(&app, "merge", "SecretSynced").await?;
    Ok(())
}

#[tokio::test]
async fn creation_policies_immutable_and_refresh_policies() -> Result<()> {
    let env = testenv!();
    install_all_crds(env).await?;
    let app = env.namespace("es-policies").await?;
    let path = unique_name("es-policies");
    kv2_put(env, &path, &[("v", "1")]).await?;
    vault_token_stores(env, &app).await?;
    // Merge writes into a Secret of someone else's only when its owner opted in.
    let mut existing = secret_from_pairs("existing", app.name(), &[("mine", "kept")]);
    existing.metadata.annotations = Some([("seal.dev/patch".to_owned(), "true".to_owned())].into());
    app.api::<Secret>()
        .create(&PostParams::default(), &existing)
        .await?;
    let value = one_item(&path, "v");
    let with = |name: &str, field: &str, extra: serde_json::Value| {
        let mut es = external_secret(name, "kv2", value.clone());
        es["spec"][field] = extra;
        es
    };
    for es in [
        external_secret("periodic", "kv2", value.clone()),
        with("orphan", "target", json!({"creationPolicy": "Orphan"})),
        with(
            "merge",
            "target",
            json!({"name": "existing", "creationPolicy": "Merge"}),
        ),
        // A second object merging another item into the same Secret: each writes under its own
        // field manager, so neither write removes the other's item.
        {
            let mut other = external_secret(
                "merge-other",
                "kv2",
                json!({"data": [{"secretKey": "w", "remoteRef": {"key": path, "property": "v"}}]}),
            );
            other["spec"]["target"] = json!({"name": "existing", "creationPolicy": "Merge"});
            other
        },
        with("immutable", "target", json!({"immutable": true})),
        with("once", "refreshPolicy", json!("CreatedOnce")),
        with("on-change", "refreshPolicy", json!("OnChange")),
    ] {
        create::<ExternalSecret>(&app, es).await?;
    }
    let _controller = controller(env, &app).await?;

    for name in ["periodic", "orphan", "existing", "once", "on-change"] {
        wait_item(&app, name, "v", "1").await?;
    }
    let immutable = wait_item(&app, "immutable", "v", "1").await?;
    assert_eq!(immutable.immutable, Some(true));
    let merged = app.api::<Secret>().get("existing").await?;
    assert_eq!(item(&merged, "mine").as_deref(), Some(&b"kept"[..]));

    // Upstream changes. Periodic ones follow; the immutable Secret is replaced by a new one.
    kv2_put(env, &path, &[("v", "2")]).await?;
    wait_item(&app, "periodic", "v", "2").await?;
    let replaced = wait_item(&app, "immutable", "v", "2").await?;
    assert_eq!(replaced.immutable, Some(true));
    assert_ne!(
        replaced.uid(),
        immutable.uid(),
        "the immutable Secret was not replaced"
    );
    let merged = wait_item(&app, "existing", "v", "2").await?;
    assert_eq!(item(&merged, "mine").as_deref(), Some(&b"kept"[..]));
    let merged = wait_item(&app, "existing", "w", "2").await?;
    assert_eq!(item(&merged, "v").as_deref(), Some(&b"2"[..]));
    wait_refreshes(&app, "merge", 2).await?;
    wait_refreshes(&app, "merge-other", 2).await?;
    let merged = app.api::<Secret>().get("existing").await?;
    for (key, value) in [("mine", "kept"), ("v", "2"), ("w", "2")] {
        assert_eq!(
            item(&merged, key).as_deref(),
            Some(value.as_bytes()),
            "{key} after both merged twice more"
        );
    }

    // CreatedOnce and OnChange did not read again while the witness refreshed twice more.
    wait_refreshes(&app, "periodic", 2).await?;
    for name in ["once", "on-change"] {
        let secret = app.api::<Secret>().get(name).await?;
        assert_eq!(
            item(&secret, "v").as_deref(),
            Some(&b"1"[..]),
            "{name} read again"
        );
    }
    // CreatedOnce reads again only to create its Secret anew; OnChange only on a spec change.
    app.api::<Secret>()
        .delete("once", &DeleteParams::default())
        .await?;
    wait_item(&app, "once", "v", "2").await?;
    app.api::<ExternalSecret>()
        .patch(
            "on-change",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"refreshInterval": "3s"}})),
        )
        .await?;
    wait_item(&app, "on-change", "v", "2").await?;

    // Deleting the ExternalSecrets: garbage collection takes the owned Secret, not the orphan
    // nor the one merged into.
    for name in ["periodic", "orphan", "merge"] {
        app.api::<ExternalSecret>()
            .delete(name, &DeleteParams::default())
            .await?;
    }
    eventually(
        "the owned Secret is collected",
        Duration::from_secs(60),
        || async {
            Ok(app
                .api::<Secret>()
                .get_opt("periodic")
                .await?
                .is_none()
                .then_some(()))
        },
    )
    .await?;
    let orphan = app.api::<Secret>().get("orphan").await?;
    assert_eq!(item(&orphan, "v").as_deref(), Some(&b"2"[..]));
    let merged = app.api::<Secret>().get("existing").await?;
    assert_eq!(item(&merged, "mine").as_deref(), Some(&b"kept"[..]));
    Ok(())
}

#[tokio::test]
async fn rollout_restarts_a_statefulset_and_a_sealed_secrets_deployment() -> Result<()> {
    let env = testenv!();
    install_all_crds(env).await?;
    let app = env.namespace("es-rollout").await?;
    let path = unique_name("es-rollout");
    kv2_put(env, &path, &[("v", "1")]).await?;
    vault_token_stores(env, &app).await?;
    create::<StatefulSet>(&app, workload("StatefulSet", "db")).await?;
    create::<Deployment>(&app, workload("Deployment", "web")).await?;
    let mut es = external_secret("external", "kv2", one_item(&path, "v"));
    es["spec"]["rolloutRestartTargets"] = json!([{"kind": "StatefulSet", "name": "db"}]);
    create::<ExternalSecret>(&app, es).await?;
    let keys = env.namespace("es-rollout-keys").await?;
    let _controller = ControllerProcess::start(
        env,
        keys.name(),
        &["--namespaces", app.name(), "--leader-elect=false"],
    )
    .await?;
    let certificate = first_key(&keys).await?;
    let mut sealed_secret = sealed(&certificate, app.name(), "sealed", &[("v", "1")])?;
    sealed_secret.spec.rollout_restart_targets =
        serde_json::from_value(json!([{"kind": "Deployment", "name": "web"}]))?;
    app.api::<SealedSecret>()
        .create(&PostParams::default(), &sealed_secret)
        .await?;
    wait_item(&app, "external", "v", "1").await?;
    wait_item(&app, "sealed", "v", "1").await?;

    // A changed value annotates the workload with the resourceVersion of the write that changed
    // the Secret, which rolls its pods.
    kv2_put(env, &path, &[("v", "2")]).await?;
    let written = wait_item(&app, "external", "v", "2").await?;
    let statefulsets = app.api::<StatefulSet>();
    let annotated = eventually(
        "the StatefulSet is annotated",
        Duration::from_secs(30),
        || async {
            let set = statefulsets.get("db").await?;
            Ok(checksum(&set.spec.template, "external"))
        },
    )
    .await?;
    assert_eq!(Some(annotated), written.resource_version());

    let resealed = sealed(&certificate, app.name(), "sealed", &[("v", "2")])?;
    app.api::<SealedSecret>()
        .patch(
            "sealed",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"encryptedData": resealed.spec.encrypted_data}})),
        )
        .await?;
    let unsealed = wait_item(&app, "sealed", "v", "2").await?;
    let deployments = app.api::<Deployment>();
    let expected = unsealed.resource_version();
    eventually(
        "the Deployment is annotated with the new write",
        Duration::from_secs(30),
        || async {
            let deployment = deployments.get("web").await?;
            let now = checksum(&deployment.spec.template, "sealed");
            Ok((now == expected).then_some(()))
        },
    )
    .await?;
    Ok(())
}
