//! Unsealing one SealedSecret into its Secret against the real API server: creation with an owner
//! reference, no write when nothing changed, the NotManaged / take-over / patch rules, skipping
//! owner references, decryption failures that write nothing and say nothing, and garbage
//! collection.

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use seal_api::SealedSecret;

use seal_api::names::{
    MANAGED_ANNOTATION, PATCH_ANNOTATION, SEALED_SECRET_UID_LABEL, SKIP_OWNER_ANNOTATION,
};
use seal_api::produced::ProducedPolicy;
use seal_api::sealing::{SealOptions, seal_secret};
use seal_api::unsealing::KeyRing;
use seal_controller::sealed_secrets::unseal::{Reason, unseal_into_secret, write_status};
use seal_core::{Certificate, KeySize, PrivateKey, Scope};
use seal_testenv::{TestEnv, TestNamespace, secret_from_pairs, testenv};

/// A value that must never appear in a status message.
const MARKER: &str = "plaintext-marker-7f3a";

struct Fixture {
    ns: TestNamespace,
    key_certificate: Certificate,
    ring: KeyRing,
}

async fn fixture(env: &TestEnv, prefix: &str) -> Result<Fixture> {
    let crd: CustomResourceDefinition = serde_yaml::from_str(&seal_api::crd_yaml())?;
    env.apply_crd(&crd).await?;
    let key = PrivateKey::generate(KeySize::Rsa2048)?;
    let key_certificate =
        Certificate::self_signed(&key, SystemTime::now(), Duration::from_secs(86_400))?;
    Ok(Fixture {
        ns: env.namespace(prefix).await?,
        key_certificate,
        ring: KeyRing::new([key]),
    })
}

impl Fixture {
    /// Seals `items` as `name` in this namespace, with `template_annotations`, and creates it.
    async fn create_sealed(
        &self,
        name: &str,
        items: &[(&str, &str)],
        template_annotations: &[(&str, &str)],
    ) -> Result<SealedSecret> {
        let mut secret = secret_from_pairs(name, self.ns.name(), items);
        secret.metadata.annotations = Some(
            template_annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        let sealed = seal_secret(
            &secret,
            &SealOptions {
                certificate: &self.key_certificate,
                scope: None,
                namespace: None,
                name: None,
                allow_empty_data: false,
            },
        )?;
        Ok(self
            .ns
            .api::<SealedSecret>()
            .create(&PostParams::default(), &sealed)
            .await?)
    }

    async fn secret(&self, name: &str) -> Result<Option<Secret>> {
        Ok(self.ns.api::<Secret>().get_opt(name).await?)
    }
}

fn item(secret: &Secret, name: &str) -> Option<String> {
    let value = secret.data.as_ref()?.get(name)?;
    Some(String::from_utf8(value.0.clone()).expect("test values are text"))
}

fn plain_secret(name: &str, annotations: &[(&str, &str)], items: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        string_data: Some(
            items
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        ..Secret::default()
    }
}

#[tokio::test]
async fn a_secret_is_created_owned_and_not_rewritten_when_unchanged() -> Result<()> {
    let env = testenv!();
    let f = fixture(env, "unseal-create").await?;
    let sealed = f
        .create_sealed("db", &[("password", MARKER), ("user", "etl")], &[])
        .await?;

    let outcome =
        unseal_into_secret(f.ns.client(), &sealed, &f.ring, &ProducedPolicy::default()).await;
    assert_eq!(outcome.reason, Reason::Unsealed, "{outcome:?}");
    assert!(outcome.wrote);
    let secret = f.secret("db").await?.context("no Secret")?;
    assert_eq!(item(&secret, "password").as_deref(), Some(MARKER));
    assert_eq!(item(&secret, "user").as_deref(), Some("etl"));
    assert_eq!(
        secret.labels().get(SEALED_SECRET_UID_LABEL),
        sealed.uid().as_ref()
    );
    let owner = &secret.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("SealedSecret", Some(true))
    );

    let again =
        unseal_into_secret(f.ns.client(), &sealed, &f.ring, &ProducedPolicy::default()).await;
    assert_eq!(again.reason, Reason::Unsealed);
    assert!(!again.wrote, "an unchanged Secret is not written again");
    let after = f.secret("db").await?.context("no Secret")?;
    assert_eq!(after.resource_version(), secret.resource_version());

    assert!(write_status(f.ns.client(), &sealed, &outcome).await?);
    let recorded = f.ns.api::<SealedSecret>().get("db").await?;
    let status = recorded.status.clone().context("no status")?;
    assert_eq!(status.observed_generation, recorded.metadata.generation);
    let ready = &status.conditions[0];
    assert_eq!(
        (
            ready.type_.as_str(),
            ready.status.as_str(),
            ready.reason.as_str()
        ),
        ("Ready", "True", "Unsealed")
    );
    assert!(
        !write_status(f.ns.client(), &recorded, &outcome).await?,
        "the same status is not written twice"
    );
    Ok(())
}

#[tokio::test]
async fn an_unowned_secret_is_left_alone_until_annotated_managed() -> Result<()> {
    let env = testenv!();
    let f = fixture(env, "unseal-managed").await?;
    let secrets = f.ns.api::<Secret>();
    secrets
        .create(
            &PostParams::default(),
            &plain_secret("db", &[], &[("password", "hand-made")]),
        )
        .await?;
    let sealed = f.create_sealed("db", &[("password", MARKER)], &[]).await?;

    let refused =
        unseal_into_secret(f.ns.client(), &sealed, &f.ring, &ProducedPolicy::default()).await;
    assert_eq!(refused.reason, Reason::NotManaged);
    assert!(!refused.message.contains(MARKER));
    let untouched = f.secret("db").await?.context("gone")?;
    assert_eq!(item(&untouched, "password").as_deref(), Some("hand-made"));

    let mut annotated = untouched.clone();
    annotated
        .annotations_mut()
        .insert(MANAGED_ANNOTATION.into(), "true".into());
    secrets
        .replace("db", &PostParams::default(), &annotated)
        .await?;
    let taken =
        unseal_into_secret(f.ns.client(), &sealed, &f.ring, &ProducedPolicy::default()).await;
    assert_eq!(taken.reason, Reason::Unsealed, "{taken:?}");
    let secret = f.secret("db").await?.context("gone")?;
    assert_eq!(item(&secret, "password").as_deref(), Some(MARKER));
    Ok(())
}

#[tokio::test]
async fn a_patch_annotated_secret_gets_the_sealed_items_and_keeps_its_own() -> Result<()> {
    let env = testenv!();
    let f = fixture(env, "unseal-patch").await?;
    f.ns.api::<Secret>()
        .create(
            &PostParams::default(),
            &plain_secret("app", &[(PATCH_ANNOTATION, "true")], &[("config", "kept")]),
        )
        .await?;
    let sealed = f.create_sealed("app", &[("token", MARKER)], &[]).await?;
    let outcome =
        unseal_into_secret(f.ns.client(), &sealed, &f.ring, &ProducedPolicy::default()).await;
    assert_eq!(outcome.reason, Reason::Unsealed, "{outcome:?}");
    let secret = f.secret("app").await?.context("gone")?;
    assert_eq!(item(&secret, "config").as_deref(), Some("kept"));
    assert_eq!(item(&secret, "token").as_deref(), Some(MARKER));
    assert!(
        secret.owner_references().is_empty(),
        "a patched Secret keeps its owner"
    );
    Ok(())
}

#[tokio::test]
async fn skip_owner_references_leaves_the_secret_when_the_sealed_secret_goes() -> Result<()> {
    let env = testenv!();
    let f = fixture(env, "unseal-skipowner").await?;
    let skip = f
        .create_sealed("kept", &[("k", "v")], &[(SKIP_OWNER_ANNOTATION, "true")])
        .await?;
    let owned = f.create_sealed("owned", &[("k", "v")], &[]).await?;
    for sealed in [&skip, &owned] {
        let outcome =
            unseal_into_secret(f.ns.client(), sealed, &f.ring, &ProducedPolicy::default()).await;
        assert_eq!(outcome.reason, Reason::Unsealed, "{outcome:?}");
    }
    let kept = f.secret("kept").await?.context("no Secret")?;
    assert!(kept.owner_references().is_empty());
    assert_eq!(
        kept.labels().get(SEALED_SECRET_UID_LABEL),
        skip.uid().as_ref()
    );
    // Rerunning recognises its own Secret by the label, without an owner reference.
    let again = unseal_into_secret(f.ns.client(), &skip, &f.ring, &ProducedPolicy::default()).await;
    assert_eq!((again.reason, again.wrote), (Reason::Unsealed, false));

    let sealed_secrets = f.ns.api::<SealedSecret>();
    for name in ["kept", "owned"] {
        sealed_secrets
            .delete(name, &DeleteParams::background())
            .await?;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while f.secret("owned").await?.is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the owned Secret was not garbage-collected"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(f.secret("kept").await?.is_some());
    Ok(())
}

#[tokio::test]
async fn a_value_moved_to_another_name_fails_decryption_and_writes_nothing() -> Result<()> {
    let env = testenv!();
    let f = fixture(env, "unseal-moved").await?;
    let original = f.create_sealed("db", &[("password", MARKER)], &[]).await?;
    // Copy the ciphertext under another name: strict scope binds it to `db`.
    let mut moved = SealedSecret::new("stolen", original.spec.clone());
    moved.metadata.namespace = Some(f.ns.name().into());
    let moved =
        f.ns.api::<SealedSecret>()
            .create(&PostParams::default(), &moved)
            .await?;
    let outcome =
        unseal_into_secret(f.ns.client(), &moved, &f.ring, &ProducedPolicy::default()).await;
    assert_eq!(outcome.reason, Reason::DecryptionFailed);
    assert_eq!(
        outcome.message,
        "item \"password\" cannot be decrypted with any of the controller's keys"
    );
    assert!(f.secret("stolen").await?.is_none());
    write_status(f.ns.client(), &moved, &outcome).await?;
    let status = f.ns.api::<SealedSecret>().get("stolen").await?.status;
    let ready = &status.context("no status")?.conditions[0];
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "DecryptionFailed")
    );
    assert!(!serde_json::to_string(ready)?.contains(MARKER));

    // A wrong key gives exactly the same words.
    let other = KeyRing::new([PrivateKey::generate(KeySize::Rsa2048)?]);
    let wrong_key =
        unseal_into_secret(f.ns.client(), &original, &other, &ProducedPolicy::default()).await;
    assert_eq!(
        (wrong_key.reason, wrong_key.message),
        (outcome.reason, outcome.message)
    );
    assert!(f.secret("db").await?.is_none());
    Ok(())
}

#[tokio::test]
async fn an_immutable_secret_is_replaced_when_its_values_change() -> Result<()> {
    let env = testenv!();
    let f = fixture(env, "unseal-immutable").await?;
    let api = f.ns.api::<SealedSecret>();
    let mut first = f.create_sealed("db", &[("password", "one")], &[]).await?;
    first.spec.template.get_or_insert_default().immutable = Some(true);
    let first = api.replace("db", &PostParams::default(), &first).await?;
    assert!(
        unseal_into_secret(f.ns.client(), &first, &f.ring, &ProducedPolicy::default())
            .await
            .wrote
    );
    let before = f.secret("db").await?.context("no Secret")?;
    assert_eq!(before.immutable, Some(true));

    let mut second = first.clone();
    let resealed = seal_secret(
        &secret_from_pairs("db", f.ns.name(), &[("password", "two")]),
        &SealOptions {
            certificate: &f.key_certificate,
            scope: None,
            namespace: None,
            name: None,
            allow_empty_data: false,
        },
    )?;
    second.spec.encrypted_data = resealed.spec.encrypted_data;
    let second = api.replace("db", &PostParams::default(), &second).await?;
    let outcome =
        unseal_into_secret(f.ns.client(), &second, &f.ring, &ProducedPolicy::default()).await;
    assert_eq!(outcome.reason, Reason::Unsealed, "{outcome:?}");
    assert!(outcome.note.contains("replaced"), "{}", outcome.note);
    let after = f.secret("db").await?.context("no Secret")?;
    assert_eq!(item(&after, "password").as_deref(), Some("two"));
    assert_eq!(after.immutable, Some(true));
    assert_ne!(
        after.uid(),
        before.uid(),
        "an immutable Secret is replaced, not edited"
    );
    Ok(())
}

#[tokio::test]
async fn scopes_decide_where_a_value_may_be_moved() -> Result<()> {
    let env = testenv!();
    let f = fixture(env, "unseal-scope").await?;
    let elsewhere = env.namespace("unseal-scope-other").await?;
    let seal_as = |scope: Scope, name: &str| {
        seal_secret(
            &secret_from_pairs(name, f.ns.name(), &[("password", MARKER)]),
            &SealOptions {
                certificate: &f.key_certificate,
                scope: Some(scope),
                namespace: None,
                name: None,
                allow_empty_data: false,
            },
        )
    };
    // Moves the ciphertext of `sealed` to `namespace/name` and unseals it there.
    let moved = |sealed: SealedSecret, ns: TestNamespace, name: &'static str| {
        let ring = &f.ring;
        async move {
            let mut copy = SealedSecret::new(name, sealed.spec);
            copy.metadata.namespace = Some(ns.name().into());
            let copy = ns
                .api::<SealedSecret>()
                .create(&PostParams::default(), &copy)
                .await?;
            anyhow::Ok(
                unseal_into_secret(ns.client(), &copy, ring, &ProducedPolicy::default())
                    .await
                    .reason,
            )
        }
    };
    let namespace_wide = seal_as(Scope::NamespaceWide, "nw")?;
    assert_eq!(
        moved(namespace_wide.clone(), f.ns.clone(), "nw-renamed").await?,
        Reason::Unsealed
    );
    assert_eq!(
        moved(namespace_wide, elsewhere.clone(), "nw").await?,
        Reason::DecryptionFailed
    );
    let cluster_wide = seal_as(Scope::ClusterWide, "cw")?;
    assert_eq!(
        moved(cluster_wide, elsewhere.clone(), "cw-renamed").await?,
        Reason::Unsealed
    );
    let strict = seal_as(Scope::Strict, "st")?;
    assert_eq!(
        moved(strict, elsewhere, "st").await?,
        Reason::DecryptionFailed
    );
    Ok(())
}
