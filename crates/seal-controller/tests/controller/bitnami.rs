//! Bitnami's `bitnami.com/v1alpha1` SealedSecrets reconciled in place (`--bitnami-sealed-secrets`)
//! against the real API server: the Secret in Bitnami's shape and the `Synced` status, an edited or
//! deleted Secret put back, a Secret Bitnami's controller made left unwritten, the flag off leaving
//! them alone, `spec.data` and undecryptable items reported, Bitnami's `managed` and `patch`, and
//! the seal.dev object of the same name taking a Bitnami Secret over without rewriting its data.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use seal_api::SealedSecret;
use seal_api::bitnami::{BITNAMI_API_VERSION, BitnamiSealedSecret, BitnamiStatus, to_bitnami};
use seal_api::names::{
    BITNAMI_MANAGED_ANNOTATION, BITNAMI_PATCH_ANNOTATION, MANAGED_ANNOTATION,
    SEALED_SECRET_UID_LABEL, UNSEALED_FROM_ANNOTATION,
};
use seal_core::{Certificate, KeySize, PrivateKey};
use seal_testenv::{TestEnv, TestNamespace, eventually, testenv};

use crate::support::{ControllerProcess, first_key, install_crds, item, sealed};

const LIMIT: Duration = Duration::from_secs(60);
/// A value that must never appear in a status.
const MARKER: &str = "plaintext-marker-b17a";

async fn install_bitnami_crd(env: &TestEnv) -> Result<()> {
    let crd: CustomResourceDefinition =
        serde_yaml::from_str(include_str!("fixtures/bitnami-sealedsecrets-crd.yaml"))?;
    env.apply_crd(&crd).await
}

/// Both CRDs, a key namespace and an application namespace.
pub(crate) async fn namespaces(
    env: &TestEnv,
    prefix: &str,
) -> Result<(TestNamespace, TestNamespace)> {
    install_crds(env).await?;
    install_bitnami_crd(env).await?;
    Ok((
        env.namespace(&format!("{prefix}-keys")).await?,
        env.namespace(&format!("{prefix}-app")).await?,
    ))
}

/// An unsealer for `app` only, with `--bitnami-sealed-secrets` when `bitnami`.
async fn controller(
    env: &TestEnv,
    keys: &TestNamespace,
    app: &TestNamespace,
    bitnami: bool,
) -> Result<ControllerProcess> {
    let mut args = vec!["--namespaces", app.name(), "--role", "unsealer"];
    if bitnami {
        args.push("--bitnami-sealed-secrets");
    }
    ControllerProcess::start(env, keys.name(), &args).await
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A Bitnami SealedSecret `name` holding `items` sealed to `certificate`, whose template gives
/// the Secret `labels`, as kubeseal writes one.
fn bitnami_object(
    certificate: &Certificate,
    ns: &TestNamespace,
    name: &str,
    items: &[(&str, &str)],
    labels: &[(&str, &str)],
) -> Result<BitnamiSealedSecret> {
    let mut object = to_bitnami(&sealed(certificate, ns.name(), name, items)?);
    let template = object.spec.template.get_or_insert_with(Default::default);
    template
        .metadata
        .get_or_insert_with(Default::default)
        .labels = Some(map(labels));
    Ok(object)
}

async fn create(ns: &TestNamespace, object: &BitnamiSealedSecret) -> Result<BitnamiSealedSecret> {
    Ok(ns
        .api::<BitnamiSealedSecret>()
        .create(&PostParams::default(), object)
        .await?)
}

/// The owner reference Bitnami's controller gives the Secret of `object`.
fn bitnami_owner(object: &BitnamiSealedSecret) -> OwnerReference {
    OwnerReference {
        api_version: BITNAMI_API_VERSION.into(),
        kind: "SealedSecret".into(),
        name: object.name_any(),
        uid: object.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    }
}

/// Creates the Secret of `object` as Bitnami's controller does: the template's labels, the
/// items, its controlling owner reference.
async fn create_as_bitnami(
    ns: &TestNamespace,
    object: &BitnamiSealedSecret,
    labels: &[(&str, &str)],
    items: &[(&str, &str)],
) -> Result<Secret> {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(object.name_any()),
            labels: Some(map(labels)),
            owner_references: Some(vec![bitnami_owner(object)]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(
            items
                .iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    };
    let params = PostParams {
        field_manager: Some("sealed-secrets-controller".into()),
        ..PostParams::default()
    };
    Ok(ns.api::<Secret>().create(&params, &secret).await?)
}

/// The status of the Bitnami object `name` once its `Synced` condition is `want`.
async fn synced(ns: &TestNamespace, name: &str, want: &str) -> Result<BitnamiStatus> {
    let api = ns.api::<BitnamiSealedSecret>();
    eventually(&format!("{name} is Synced {want}"), LIMIT, || async {
        let status = api.get(name).await?.status;
        Ok(status.filter(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Synced" && c.status == want)
        }))
    })
    .await
}

/// The Secret `name` once `check` accepts it.
async fn secret_when(
    ns: &TestNamespace,
    name: &str,
    what: &str,
    check: impl Fn(&Secret) -> bool,
) -> Result<Secret> {
    let api = ns.api::<Secret>();
    eventually(what, LIMIT, || async {
        Ok(api.get_opt(name).await?.filter(|s| check(s)))
    })
    .await
}

/// The notes of the Events about the object `name` of `api_version`, once there is one.
async fn event_notes(ns: &TestNamespace, name: &str, api_version: &str) -> Result<Vec<String>> {
    use k8s_openapi::api::events::v1::Event;
    let api = ns.api::<Event>();
    eventually(&format!("an Event about {name}"), LIMIT, || async {
        let notes: Vec<String> = api
            .list(&kube::api::ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().is_some_and(|r| {
                    r.name.as_deref() == Some(name) && r.api_version.as_deref() == Some(api_version)
                })
            })
            .filter_map(|e| e.note)
            .collect();
        Ok((!notes.is_empty()).then_some(notes))
    })
    .await
}

fn text(secret: &Secret, name: &str) -> Option<String> {
    item(secret, name).map(|v| String::from_utf8_lossy(&v).into_owned())
}

#[tokio::test]
async fn a_bitnami_object_unseals_in_bitnamis_shape_and_its_secret_is_put_back() -> Result<()> {
    let env = testenv!();
    let (keys, app) = namespaces(env, "bitnami-shape").await?;
    let _controller = controller(env, &keys, &app, true).await?;
    let certificate = first_key(&keys).await?;
    let mut object = bitnami_object(
        &certificate,
        &app,
        "db",
        &[("password", MARKER)],
        &[("app", "ml-api")],
    )?;
    object
        .spec
        .template
        .as_mut()
        .and_then(|t| t.metadata.as_mut())
        .context("template metadata")?
        .annotations = Some(map(&[("team", "ml")]));
    let object = create(&app, &object).await?;

    let secret = secret_when(&app, "db", "the Secret is unsealed", |_| true).await?;
    assert_eq!(text(&secret, "password").as_deref(), Some(MARKER));
    // Exactly Bitnami's shape: the template's metadata, its owner reference, nothing of seal's.
    assert_eq!(secret.labels(), &map(&[("app", "ml-api")]));
    assert_eq!(secret.annotations(), &map(&[("team", "ml")]));
    assert_eq!(secret.owner_references(), &[bitnami_owner(&object)]);
    assert!(!secret.labels().contains_key(SEALED_SECRET_UID_LABEL));
    assert!(!secret.annotations().contains_key(UNSEALED_FROM_ANNOTATION));
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));

    let status = synced(&app, "db", "True").await?;
    assert_eq!(status.observed_generation, object.metadata.generation);
    let condition = &status.conditions[0];
    assert_eq!(condition.message, None);
    assert!(condition.last_transition_time.is_some() && condition.last_update_time.is_some());

    // An edited value is put back.
    let secrets = app.api::<Secret>();
    secrets
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"stringData": {"password": "edited"}})),
        )
        .await?;
    secret_when(&app, "db", "the edited value is put back", |s| {
        text(s, "password").as_deref() == Some(MARKER)
    })
    .await?;
    // A deleted Secret is made again.
    let uid = secret.uid();
    secrets.delete("db", &DeleteParams::default()).await?;
    let again = secret_when(&app, "db", "the deleted Secret is made again", |s| {
        s.uid() != uid
    })
    .await?;
    assert_eq!(text(&again, "password").as_deref(), Some(MARKER));
    assert_eq!(again.owner_references(), &[bitnami_owner(&object)]);
    Ok(())
}

#[tokio::test]
async fn without_the_flag_bitnami_objects_are_left_alone_and_with_it_bitnamis_secret_is_not_written()
-> Result<()> {
    let env = testenv!();
    let (keys, app) = namespaces(env, "bitnami-flag").await?;
    let mut off = controller(env, &keys, &app, false).await?;
    let certificate = first_key(&keys).await?;
    let labels = [("app", "ml-api")];
    let items = [("password", "p4ss"), ("user", "etl")];
    let object = create(
        &app,
        &bitnami_object(&certificate, &app, "db", &items, &labels)?,
    )
    .await?;
    // A seal.dev object in the same namespace proves the controller reconciles meanwhile.
    app.api::<SealedSecret>()
        .create(
            &PostParams::default(),
            &sealed(&certificate, app.name(), "probe", &[("v", "1")])?,
        )
        .await?;
    secret_when(&app, "probe", "the seal.dev object is unsealed", |_| true).await?;
    ensure!(
        app.api::<Secret>().get_opt("db").await?.is_none(),
        "the flag is off, yet the Bitnami object was unsealed"
    );
    let untouched = app.api::<BitnamiSealedSecret>().get("db").await?;
    assert_eq!(untouched.status, None);
    assert_eq!(untouched.resource_version(), object.resource_version());
    off.terminate()?;

    // Bitnami's controller made the Secret; seal takes its place with the flag on.
    let made = create_as_bitnami(&app, &object, &labels, &items).await?;
    let _on = controller(env, &keys, &app, true).await?;
    let status = synced(&app, "db", "True").await?;
    assert_eq!(status.conditions[0].message, None);
    let after = app.api::<Secret>().get("db").await?;
    assert_eq!(
        after.resource_version(),
        made.resource_version(),
        "a Secret that already is what Bitnami's controller writes is not written"
    );
    // A no-op update would keep the resourceVersion too: the Event says what the reconcile did.
    let notes = event_notes(&app, "db", BITNAMI_API_VERSION).await?;
    ensure!(
        notes.iter().any(|n| n.ends_with("is up to date"))
            && !notes.iter().any(|n| n.ends_with("written")),
        "{notes:?}"
    );
    Ok(())
}

#[tokio::test]
async fn spec_data_and_undecryptable_items_say_synced_false_without_a_value() -> Result<()> {
    let env = testenv!();
    let (keys, app) = namespaces(env, "bitnami-false").await?;
    let _controller = controller(env, &keys, &app, true).await?;
    let certificate = first_key(&keys).await?;

    let mut legacy = bitnami_object(&certificate, &app, "legacy", &[("a", "b")], &[])?;
    legacy.spec.data = Some("AgBlegacy".into());
    create(&app, &legacy).await?;
    let status = synced(&app, "legacy", "False").await?;
    let message = status.conditions[0].message.clone().unwrap_or_default();
    assert!(message.contains("spec.data"), "{message}");

    // Sealed to a key the controller does not hold.
    let stranger = PrivateKey::generate(KeySize::Rsa2048)?;
    let stranger = Certificate::self_signed(
        &stranger,
        std::time::SystemTime::now(),
        Duration::from_secs(3600),
    )?;
    create(
        &app,
        &bitnami_object(&stranger, &app, "foreign", &[("password", MARKER)], &[])?,
    )
    .await?;
    let status = synced(&app, "foreign", "False").await?;
    let message = status.conditions[0].message.clone().unwrap_or_default();
    assert!(message.contains("cannot be decrypted"), "{message}");
    assert!(!serde_json::to_string(&status)?.contains(MARKER));
    for name in ["legacy", "foreign"] {
        ensure!(
            app.api::<Secret>().get_opt(name).await?.is_none(),
            "{name} written"
        );
    }
    Ok(())
}

#[tokio::test]
async fn bitnamis_managed_and_patch_annotations_keep_their_meaning() -> Result<()> {
    let env = testenv!();
    let (keys, app) = namespaces(env, "bitnami-optin").await?;
    let _controller = controller(env, &keys, &app, true).await?;
    let certificate = first_key(&keys).await?;
    let secrets = app.api::<Secret>();
    let existing = |name: &str, annotation: &str| Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: Some(map(&[(annotation, "true")])),
            ..ObjectMeta::default()
        },
        string_data: Some(map(&[("own", "kept?")])),
        ..Secret::default()
    };
    for (name, annotation) in [
        ("managed", BITNAMI_MANAGED_ANNOTATION),
        ("patched", BITNAMI_PATCH_ANNOTATION),
        ("sealonly", MANAGED_ANNOTATION),
    ] {
        secrets
            .create(&PostParams::default(), &existing(name, annotation))
            .await?;
        create(
            &app,
            &bitnami_object(&certificate, &app, name, &[("sealed", "v")], &[])?,
        )
        .await?;
    }
    // managed: taken over wholesale (Bitnami replaces items and annotations, sets its owner).
    let object = app.api::<BitnamiSealedSecret>().get("managed").await?;
    let managed = secret_when(&app, "managed", "the managed Secret is taken over", |s| {
        text(s, "sealed").is_some()
    })
    .await?;
    assert_eq!(text(&managed, "own"), None);
    assert_eq!(managed.owner_references(), &[bitnami_owner(&object)]);
    synced(&app, "managed", "True").await?;
    // patch: the item is added, the rest stays the Secret owner's.
    let patched = secret_when(&app, "patched", "the patched Secret gets the item", |s| {
        text(s, "sealed").is_some()
    })
    .await?;
    assert_eq!(text(&patched, "own").as_deref(), Some("kept?"));
    assert!(patched.owner_references().is_empty());
    assert!(patched.annotations().contains_key(BITNAMI_PATCH_ANNOTATION));
    synced(&app, "patched", "True").await?;
    // seal's own opt-in is not Bitnami's.
    let status = synced(&app, "sealonly", "False").await?;
    let message = status.conditions[0].message.clone().unwrap_or_default();
    assert!(message.contains(BITNAMI_MANAGED_ANNOTATION), "{message}");
    let sealonly = secrets.get("sealonly").await?;
    assert_eq!(text(&sealonly, "sealed"), None);
    Ok(())
}

#[tokio::test]
async fn the_seal_object_of_the_same_name_takes_a_bitnami_secret_over_without_rewriting_its_data()
-> Result<()> {
    let env = testenv!();
    let (keys, app) = namespaces(env, "bitnami-takeover").await?;
    // The takeover is the seal.dev object's: it needs no --bitnami-sealed-secrets.
    let _controller = controller(env, &keys, &app, false).await?;
    let certificate = first_key(&keys).await?;
    let labels = [("app", "ml-api")];
    let items = [("password", "p4ss")];
    let object = create(
        &app,
        &bitnami_object(&certificate, &app, "db", &items, &labels)?,
    )
    .await?;
    create_as_bitnami(&app, &object, &labels, &items).await?;
    // `seal convert`, applied.
    let mut converted = sealed(&certificate, app.name(), "db", &items)?;
    converted.spec.template = object.spec.template.clone();
    let converted = app
        .api::<SealedSecret>()
        .create(&PostParams::default(), &converted)
        .await?;
    let uid = converted.uid().unwrap_or_default();
    let taken = secret_when(
        &app,
        "db",
        "the seal.dev object takes the Secret over",
        |s| {
            s.labels().get(SEALED_SECRET_UID_LABEL) == Some(&uid)
                && s.annotations().contains_key(UNSEALED_FROM_ANNOTATION)
        },
    )
    .await?;
    let owners = taken.owner_references();
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!(
        (owners[0].api_version.as_str(), owners[0].uid.as_str()),
        ("seal.dev/v1alpha1", uid.as_str())
    );
    assert_eq!(text(&taken, "password").as_deref(), Some("p4ss"));
    // The data was never written by seal: no field manager of seal's owns it.
    for entry in taken.metadata.managed_fields.iter().flatten() {
        let fields = serde_json::to_string(&entry.fields_v1)?;
        ensure!(
            !(entry.manager.as_deref() == Some("seal-controller") && fields.contains("f:data")),
            "seal-controller wrote the data: {fields}"
        );
    }
    // Only metadata was written, which is no rollout (a rollout follows a write of the items).
    let notes = event_notes(&app, "db", "seal.dev/v1alpha1").await?;
    ensure!(
        notes.iter().all(|n| !n.ends_with("/db written")),
        "{notes:?}"
    );
    ensure!(
        notes.iter().any(|n| n.ends_with("its record was written")),
        "{notes:?}"
    );
    Ok(())
}

#[tokio::test]
async fn with_seal_with_bitnami_key_the_imported_key_seals_and_seal_still_makes_its_own()
-> Result<()> {
    use seal_api::names::{BITNAMI_KEY_LABEL, KEY_ACTIVE};
    let env = testenv!();
    let (keys, app) = namespaces(env, "bitnami-cert").await?;
    let bitnami_key = crate::keys::tls_secret(
        "sealed-secrets-keyabcde",
        &[(BITNAMI_KEY_LABEL, KEY_ACTIVE)],
    )?;
    keys.api::<Secret>()
        .create(&PostParams::default(), &bitnami_key)
        .await?;
    let bitnami_certificate = Certificate::from_pem(
        bitnami_key
            .string_data
            .as_ref()
            .and_then(|d| d.get("tls.crt"))
            .context("tls.crt")?
            .as_bytes(),
    )?;
    let process = ControllerProcess::start(
        env,
        keys.name(),
        &[
            "--namespaces",
            app.name(),
            "--role",
            "unsealer",
            "--import-bitnami-keys",
            "--seal-with-bitnami-key",
            "--bitnami-sealed-secrets",
        ],
    )
    .await?;
    // seal's own key is still made (renewal follows seal's keys) ...
    let own = first_key(&keys).await?;
    ensure!(own.fingerprint() != bitnami_certificate.fingerprint());
    // ... and the certificate served is the Bitnami key's, the one kubeseal users have.
    let (code, pem) = crate::support::get(&format!("{}/v1/cert.pem", process.api))?;
    assert_eq!(code, 200);
    assert_eq!(
        Certificate::from_pem(pem.as_bytes())?.fingerprint(),
        bitnami_certificate.fingerprint()
    );
    create(
        &app,
        &bitnami_object(
            &Certificate::from_pem(pem.as_bytes())?,
            &app,
            "db",
            &[("k", "v")],
            &[],
        )?,
    )
    .await?;
    synced(&app, "db", "True")
        .await
        .with_context(|| process.log())?;
    Ok(())
}

#[tokio::test]
async fn the_shipped_rbac_is_enough_for_bitnami_objects() -> Result<()> {
    let env = testenv!();
    let (keys, app) = namespaces(env, "bitnami-rbac").await?;
    crate::rbac::apply_shipped_rbac(
        env,
        keys.name(),
        &seal_testenv::unique_name("seal-bitnami-rbac"),
    )
    .await?;
    let work = tempfile::tempdir()?;
    let kubeconfig = work.path().join("kubeconfig");
    env.service_account_kubeconfig(keys.name(), "seal-controller", &kubeconfig)?;
    let controller = ControllerProcess::start_with(
        &kubeconfig,
        keys.name(),
        "seal-controller-0",
        &[
            "--namespaces",
            app.name(),
            "--role",
            "unsealer",
            "--bitnami-sealed-secrets",
        ],
    )
    .await?;
    let certificate = first_key(&keys).await?;
    create(
        &app,
        &bitnami_object(&certificate, &app, "db", &[("password", "rbac")], &[])?,
    )
    .await?;
    synced(&app, "db", "True").await?;
    // The put-back of an edited Secret is a patch too.
    app.api::<Secret>()
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"stringData": {"password": "edited"}})),
        )
        .await?;
    secret_when(&app, "db", "the edited value is put back", |s| {
        text(s, "password").as_deref() == Some("rbac")
    })
    .await?;
    let log = controller.log();
    ensure!(
        !log.contains("forbidden") && !log.contains("cannot be listed"),
        "{log}"
    );
    Ok(())
}

#[tokio::test]
async fn without_the_right_to_list_bitnami_objects_the_controller_says_so_and_unseals_the_rest()
-> Result<()> {
    use k8s_openapi::api::rbac::v1::ClusterRole;
    let env = testenv!();
    let (keys, app) = namespaces(env, "bitnami-norights").await?;
    let cluster_name = seal_testenv::unique_name("seal-bitnami-norights");
    crate::rbac::apply_shipped_rbac(env, keys.name(), &cluster_name).await?;
    // The shipped role without its bitnami.com rules: as if Bitnami's CRD were not there to read.
    let roles = kube::Api::<ClusterRole>::all(env.kube_client().await?);
    let role_name = format!("{cluster_name}-seal-controller");
    let mut role = roles.get(&role_name).await?;
    let granted = role.rules.get_or_insert_with(Vec::new);
    let before = granted.len();
    granted.retain(|r| {
        !r.api_groups
            .iter()
            .flatten()
            .any(|group| group == "bitnami.com")
    });
    ensure!(
        granted.len() < before,
        "the shipped role has no bitnami.com rule"
    );
    role.metadata.managed_fields = None;
    roles
        .replace(&role_name, &PostParams::default(), &role)
        .await?;
    let work = tempfile::tempdir()?;
    let kubeconfig = work.path().join("kubeconfig");
    env.service_account_kubeconfig(keys.name(), "seal-controller", &kubeconfig)?;
    let controller = ControllerProcess::start_with(
        &kubeconfig,
        keys.name(),
        "seal-controller-0",
        &[
            "--namespaces",
            app.name(),
            "--role",
            "unsealer",
            "--bitnami-sealed-secrets",
        ],
    )
    .await?;
    let certificate = first_key(&keys).await?;
    app.api::<SealedSecret>()
        .create(
            &PostParams::default(),
            &sealed(&certificate, app.name(), "db", &[("v", "1")])?,
        )
        .await?;
    secret_when(&app, "db", "the seal.dev object is unsealed", |_| true).await?;
    let log = controller.log();
    ensure!(
        log.contains("bitnami.com/v1alpha1 SealedSecrets cannot be listed"),
        "{log}"
    );
    Ok(())
}

#[tokio::test]
async fn when_both_flavours_claim_a_secret_the_seal_object_holds_it_and_the_bitnami_one_says_so()
-> Result<()> {
    let env = testenv!();
    let (keys, app) = namespaces(env, "bitnami-both").await?;
    let _controller = controller(env, &keys, &app, true).await?;
    let certificate = first_key(&keys).await?;
    let items = [("password", "p4ss")];
    let object = create(
        &app,
        &bitnami_object(&certificate, &app, "db", &items, &[])?,
    )
    .await?;
    synced(&app, "db", "True").await?;
    let converted = app
        .api::<SealedSecret>()
        .create(
            &PostParams::default(),
            &sealed(&certificate, app.name(), "db", &items)?,
        )
        .await?;
    let uid = converted.uid().unwrap_or_default();
    secret_when(
        &app,
        "db",
        "the seal.dev object takes the Secret over",
        |s| s.owner_references().iter().any(|o| o.uid == uid),
    )
    .await?;
    // Any change of the Bitnami object reconciles it: it is refused, and says why.
    app.api::<BitnamiSealedSecret>()
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"touched": "yes"}}})),
        )
        .await?;
    let status = synced(&app, "db", "False").await?;
    let message = status.conditions[0].message.clone().unwrap_or_default();
    assert!(
        message.contains("was not made by this SealedSecret"),
        "{message}"
    );
    let secret = app.api::<Secret>().get("db").await?;
    assert!(
        secret.owner_references().iter().all(|o| o.uid == uid),
        "the Bitnami object took the Secret back: {:?} (its uid {:?})",
        secret.owner_references(),
        object.uid()
    );
    Ok(())
}
