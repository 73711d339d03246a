//! The key store against the real API server: first start, idempotence, renewal, compromise,
//! runtime additions and Bitnami imports.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use anyhow::Result;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use seal_api::names::{BITNAMI_KEY_LABEL, KEY_ACTIVE, KEY_COMPROMISED, SEALING_KEY_LABEL};
use seal_api::unsealing::unseal_items;
use seal_controller::keys::{KeySource, KeyStore, RenewalPolicy};
use seal_core::{KeySize, Scope};
use seal_testenv::testenv;

/// Small keys: these tests are about storage, not strength.
fn policy() -> RenewalPolicy {
    RenewalPolicy {
        size: KeySize::Rsa2048,
        ..RenewalPolicy::default()
    }
}

#[tokio::test]
async fn first_start_creates_one_key_and_later_starts_reuse_it() -> Result<()> {
    let env = testenv!();
    let ns = env.namespace("keys-first").await?;
    let store = KeyStore::new(ns.client(), ns.name(), false);
    let now = SystemTime::now();

    let (set, created) = store.ensure(&policy(), now).await?;
    let created = created.expect("no key yet, so one is created");
    assert_eq!(set.keys().len(), 1);
    assert_eq!(set.newest().unwrap().fingerprint, created.fingerprint);

    let stored = ns.api::<Secret>().get(&created.secret_name).await?;
    assert_eq!(stored.type_.as_deref(), Some("kubernetes.io/tls"));
    assert_eq!(
        stored.metadata.labels.unwrap()[SEALING_KEY_LABEL],
        KEY_ACTIVE
    );

    let (again, none) = store
        .ensure(&policy(), now + Duration::from_secs(60))
        .await?;
    assert!(none.is_none(), "a fresh key is not renewed");
    assert_eq!(again.keys().len(), 1);
    Ok(())
}

#[tokio::test]
async fn renewal_adds_a_newest_key_and_old_keys_still_decrypt() -> Result<()> {
    let env = testenv!();
    let ns = env.namespace("keys-renew").await?;
    let store = KeyStore::new(ns.client(), ns.name(), false);
    let start = SystemTime::now() - Duration::from_secs(40 * 24 * 3600);
    let (_, first) = store.ensure(&policy(), start).await?;
    let first = first.unwrap();

    // Sealed with the first key, before renewal.
    let sealed = seal_value(&first.certificate, ns.name())?;

    let (set, second) = store.ensure(&policy(), SystemTime::now()).await?;
    let second = second.expect("a 40-day-old key is renewed after 30 days");
    assert_eq!(set.keys().len(), 2);
    assert_eq!(set.newest().unwrap().fingerprint, second.fingerprint);
    let opened = unseal_items(&sealed, set.ring())?;
    assert_eq!(opened["password"].expose(), b"s3cret");

    // The cutoff renews a key however young it is.
    let cutoff = RenewalPolicy {
        cutoff: Some(SystemTime::now() + Duration::from_secs(1)),
        ..policy()
    };
    let (set, third) = store
        .ensure(&cutoff, SystemTime::now() + Duration::from_secs(2))
        .await?;
    assert!(third.is_some());
    assert_eq!(set.keys().len(), 3);
    Ok(())
}

#[tokio::test]
async fn a_compromised_key_stops_being_used_and_a_new_one_is_made() -> Result<()> {
    let env = testenv!();
    let ns = env.namespace("keys-compromised").await?;
    let store = KeyStore::new(ns.client(), ns.name(), false);
    let (_, first) = store.ensure(&policy(), SystemTime::now()).await?;
    let first = first.unwrap();

    let relabel = serde_json::json!({"metadata": {"labels": {SEALING_KEY_LABEL: KEY_COMPROMISED}}});
    ns.api::<Secret>()
        .patch(
            &first.secret_name,
            &PatchParams::default(),
            &Patch::Merge(&relabel),
        )
        .await?;
    let (set, replacement) = store.ensure(&policy(), SystemTime::now()).await?;
    let replacement = replacement.expect("no active key left, so one is made");
    assert_eq!(set.keys().len(), 1);
    assert_eq!(set.newest().unwrap().fingerprint, replacement.fingerprint);
    assert!(set.ring().get(first.fingerprint).is_none());
    // Never deleted.
    assert!(
        ns.api::<Secret>()
            .get_opt(&first.secret_name)
            .await?
            .is_some()
    );
    Ok(())
}

#[tokio::test]
async fn keys_added_at_runtime_are_picked_up_and_bitnami_keys_only_when_importing() -> Result<()> {
    let env = testenv!();
    let ns = env.namespace("keys-runtime").await?;
    let secrets = ns.api::<Secret>();
    let own = tls_secret("brought-own", &[(SEALING_KEY_LABEL, KEY_ACTIVE)])?;
    let bitnami = tls_secret(
        "sealed-secrets-keyabcde",
        &[(BITNAMI_KEY_LABEL, KEY_ACTIVE)],
    )?;
    let broken = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("broken".into()),
            labels: Some(BTreeMap::from([(
                SEALING_KEY_LABEL.into(),
                KEY_ACTIVE.into(),
            )])),
            ..Default::default()
        },
        string_data: Some(BTreeMap::from([("tls.key".into(), "not a key".into())])),
        ..Secret::default()
    };
    for secret in [&own, &bitnami, &broken] {
        secrets.create(&PostParams::default(), secret).await?;
    }

    let without = KeyStore::new(ns.client(), ns.name(), false).load().await?;
    assert_eq!(names(&without), ["brought-own"]);
    assert_eq!(
        without.skipped(),
        [("broken".to_owned(), "it has no tls.crt")]
    );

    let with = KeyStore::new(ns.client(), ns.name(), true).load().await?;
    let mut found = names(&with);
    found.sort_unstable();
    assert_eq!(found, ["brought-own", "sealed-secrets-keyabcde"]);
    // An imported Bitnami key decrypts but never seals.
    assert_eq!(with.newest().unwrap().secret_name, "brought-own");
    assert!(with.keys().iter().any(|k| k.source == KeySource::Bitnami));
    Ok(())
}

fn names(set: &seal_controller::keys::KeySet) -> Vec<String> {
    set.keys().iter().map(|k| k.secret_name.clone()).collect()
}

/// A TLS key Secret made outside the controller (an operator's own key, or Bitnami's).
pub(crate) fn tls_secret(name: &str, labels: &[(&str, &str)]) -> Result<Secret> {
    let key = seal_core::PrivateKey::generate(KeySize::Rsa2048)?;
    let cert =
        seal_core::Certificate::self_signed(&key, SystemTime::now(), Duration::from_secs(86_400))?;
    Ok(Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        string_data: Some(BTreeMap::from([
            ("tls.crt".into(), cert.to_pem()),
            ("tls.key".into(), key.to_pkcs1_pem().to_string()),
        ])),
        ..Secret::default()
    })
}

/// A SealedSecret `db` in `namespace` with one item, sealed to `certificate`.
fn seal_value(
    certificate: &seal_core::Certificate,
    namespace: &str,
) -> Result<seal_api::SealedSecret> {
    let secret = seal_testenv::secret_from_pairs("db", namespace, &[("password", "s3cret")]);
    Ok(seal_api::sealing::seal_secret(
        &secret,
        &seal_api::sealing::SealOptions {
            certificate,
            scope: Some(Scope::Strict),
            namespace: None,
            name: None,
            allow_empty_data: false,
        },
    )?)
}
