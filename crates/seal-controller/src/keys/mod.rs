//! The sealing keys: `kubernetes.io/tls` Secrets in the controller's namespace, found by label.
//!
//! - `seal.dev/sealing-key: active`: the key decrypts, and the newest active key (by its certificate's
//!   start) is the one `seal` seals with.
//! - `seal.dev/sealing-key: compromised` (or any other value): never used again.
//! - Bitnami's key Secrets (`sealedsecrets.bitnami.com/sealed-secrets-key: active`) decrypt too when
//!   importing is enabled, so a cluster moving from Bitnami keeps opening its SealedSecrets.
//! - With `--seal-with-bitnami-key` too, the newest imported Bitnami key is also the sealing key
//!   ([`sealing_key`]): the certificate at `/v1/cert.pem` stays the one `kubeseal --fetch-cert`
//!   users already have, for as long as the move lasts. Renewal is unchanged by it: it follows
//!   the age of seal's own newest key ([`KeySet::newest_own`]), so seal keeps making its own keys
//!   on schedule (they decrypt, and are ready to seal) while the Bitnami key seals; the
//!   certificate changes to seal's newest key when the flag is removed. seal never renews a
//!   Bitnami key: once Bitnami's controller is stopped, no newer Bitnami key appears.
//!
//! A renewal is requested by annotating any active seal key Secret [`RENEW_REQUEST_ANNOTATION`] with
//! an RFC 3339 time (`seal keys renew` does this with the user's own credentials, so Kubernetes RBAC
//! on the key namespace decides who may renew, and the audit log records who did); the leader makes
//! a new key when the request is newer than the newest key.
//!
//! Which key Secrets are trusted: only those an operator (or the controller) created. A key Secret
//! is skipped, with its reason reported, when it has owner references or a produced-Secret label
//! (SealedSecret and ExternalSecret outputs never are keys, and the controller refuses to write
//! `seal.dev/` or Bitnami labels into them: [`seal_api::produced`]), or when its certificate starts
//! more than [`seal_core::CLOCK_SKEW`] in the future (a key dated ahead would become the sealing key and
//! stay it). Creating a labelled Secret in the key namespace needs `create secrets` there, which
//! is the operator's right and, with the shipped RBAC, the unsealer's alone.
//!
//! Keys are read from the API server every time the set is loaded, so a key added or relabelled at
//! runtime (bring your own key, an import, a compromise) takes effect without a restart. The
//! controller creates key Secrets and never edits or deletes one: an old key is the only way to open
//! the SealedSecrets sealed with it.
//!
//! A replica holds the keys it last loaded in [`CurrentKeys`], which every user of the keys (the
//! unsealing loop, the certificate API, the metrics) reads and follows; [`upkeep`] keeps them
//! current (reloads on change, renewal, backup to the recovery certificate in [`backup`]).

pub mod backup;
pub mod upkeep;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::{Api, Client, ResourceExt};
use seal_api::names::{BITNAMI_KEY_LABEL, KEY_ACTIVE, RENEW_REQUEST_ANNOTATION, SEALING_KEY_LABEL};
use seal_api::unsealing::KeyRing;
use seal_core::{Certificate, Fingerprint, KeySize, PrivateKey};

/// Labels of Secrets produced from tenants' objects; such a Secret is never a key.
const PRODUCED_LABELS: [&str; 2] = [
    seal_api::names::SEALED_SECRET_UID_LABEL,
    seal_api::names::EXTERNAL_SECRET_UID_LABEL,
];
/// Prefix of the names of the key Secrets the controller creates.
pub const KEY_SECRET_PREFIX: &str = "seal-key-";

/// Why the key set could not be loaded or a key created. Messages name Secrets, never key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyStoreError {
    /// The API server refused or failed a request.
    #[error("{action}: {source}")]
    Api {
        /// What was being done.
        action: String,
        /// The client's error.
        source: kube::Error,
    },
    /// Generating a key or its certificate failed.
    #[error("cannot generate a sealing key: {0}")]
    Generate(String),
}

/// Where a key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// A seal key Secret.
    Seal,
    /// A Bitnami key Secret, imported.
    Bitnami,
}

/// One usable key's public facts.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    /// The Secret holding it.
    pub secret_name: String,
    /// Its fingerprint (SHA-256 of the SubjectPublicKeyInfo).
    pub fingerprint: Fingerprint,
    /// Its certificate.
    pub certificate: Certificate,
    /// Where it came from.
    pub source: KeySource,
}

/// The active keys, oldest first, with the Secrets that were skipped and why.
pub struct KeySet {
    ring: KeyRing,
    keys: Vec<KeyInfo>,
    skipped: Vec<(String, &'static str)>,
    renewal_requested: Option<SystemTime>,
    bitnami_seals: bool,
}

/// The key `seal` seals with among `keys`: with `bitnami_seals`, the imported Bitnami key whose
/// certificate starts last, if any; otherwise, or without one, the seal key whose certificate
/// starts last.
pub fn sealing_key(keys: &[KeyInfo], bitnami_seals: bool) -> Option<&KeyInfo> {
    let newest_of = |source| {
        keys.iter()
            .filter(move |k: &&KeyInfo| k.source == source)
            .max_by_key(|k| k.certificate.not_before())
    };
    bitnami_seals
        .then(|| newest_of(KeySource::Bitnami))
        .flatten()
        .or_else(|| newest_of(KeySource::Seal))
}

impl KeySet {
    /// No keys: what a replica that does not unseal holds ([`crate::replica::Role::Syncer`]).
    pub fn empty() -> Self {
        KeySet {
            ring: KeyRing::new([]),
            keys: Vec::new(),
            skipped: Vec::new(),
            renewal_requested: None,
            bitnami_seals: false,
        }
    }

    /// The key `seal` seals with ([`sealing_key`]): the active seal key whose certificate starts
    /// last, or the newest imported Bitnami key with `--seal-with-bitnami-key`.
    pub fn newest(&self) -> Option<&KeyInfo> {
        sealing_key(&self.keys, self.bitnami_seals)
    }

    /// seal's own newest key, whose age renewal follows.
    pub fn newest_own(&self) -> Option<&KeyInfo> {
        sealing_key(&self.keys, false)
    }

    /// Every active key, oldest first.
    pub fn keys(&self) -> &[KeyInfo] {
        &self.keys
    }

    /// The private keys, for unsealing.
    pub fn ring(&self) -> &KeyRing {
        &self.ring
    }

    /// The latest renewal request found on an active seal key Secret.
    pub fn renewal_requested(&self) -> Option<SystemTime> {
        self.renewal_requested
    }

    /// Whether a new key is due at `now`: by `policy`, or because a renewal was requested after
    /// the newest key was made.
    pub fn renewal_due(&self, policy: &RenewalPolicy, now: SystemTime) -> bool {
        let newest = self.newest_own().map(|k| &k.certificate);
        let requested = match (self.renewal_requested, newest) {
            // Certificates start on whole seconds, so requests count in whole seconds too; a
            // request from a clock ahead of this one waits until its time has come.
            (Some(requested), Some(newest)) => {
                requested <= now && requested > SystemTime::from(newest.not_before())
            }
            _ => false,
        };
        requested || policy.renewal_due(newest, now)
    }

    /// Labelled key Secrets that could not be used, with a reason that quotes no content.
    pub fn skipped(&self) -> &[(String, &'static str)] {
        &self.skipped
    }
}

/// The keys a replica holds now, shared by everything that uses them: readers see the last set
/// published, and followers are told when it changes.
#[derive(Clone)]
pub struct CurrentKeys(std::sync::Arc<tokio::sync::watch::Sender<std::sync::Arc<KeySet>>>);

impl CurrentKeys {
    /// Holding `keys`.
    pub fn new(keys: KeySet) -> Self {
        Self(std::sync::Arc::new(tokio::sync::watch::Sender::new(
            std::sync::Arc::new(keys),
        )))
    }

    /// The keys as last published.
    pub fn get(&self) -> std::sync::Arc<KeySet> {
        std::sync::Arc::clone(&self.0.borrow())
    }

    /// Publishes `keys` to every reader and follower.
    pub fn publish(&self, keys: KeySet) {
        self.0.send_replace(std::sync::Arc::new(keys));
    }

    /// A receiver told of every publication after this call.
    pub fn follow(&self) -> tokio::sync::watch::Receiver<std::sync::Arc<KeySet>> {
        self.0.subscribe()
    }
}

/// When to make a new key.
#[derive(Debug, Clone, Copy)]
pub struct RenewalPolicy {
    /// Make a new key when the newest is this old; `None` never renews on age.
    pub period: Option<Duration>,
    /// Make a new key when the newest started before this instant (`--key-cutoff-time`).
    pub cutoff: Option<SystemTime>,
    /// Size of new keys.
    pub size: KeySize,
    /// Validity of new keys' certificates.
    pub validity: Duration,
}

impl Default for RenewalPolicy {
    /// RSA-4096, renewed every 30 days, certificates valid for 10 years.
    fn default() -> Self {
        Self {
            period: Some(Duration::from_secs(30 * 24 * 3600)),
            cutoff: None,
            size: KeySize::Rsa4096,
            validity: Duration::from_secs(10 * 365 * 24 * 3600),
        }
    }
}

impl RenewalPolicy {
    /// Whether a new key is due at `now`, given the newest key's certificate.
    pub fn renewal_due(&self, newest: Option<&Certificate>, now: SystemTime) -> bool {
        let Some(newest) = newest else {
            return true;
        };
        let started = SystemTime::from(newest.not_before());
        let aged_out = self.period.is_some_and(|period| started + period <= now);
        let before_cutoff = self.cutoff.is_some_and(|cutoff| started < cutoff);
        aged_out || before_cutoff
    }
}

/// The key Secrets of one namespace.
#[derive(Clone)]
pub struct KeyStore {
    api: Api<Secret>,
    namespace: String,
    import_bitnami: bool,
    bitnami_seals: bool,
}

impl KeyStore {
    /// The store in `namespace`; with `import_bitnami`, Bitnami's active keys decrypt too.
    pub fn new(client: Client, namespace: &str, import_bitnami: bool) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            import_bitnami,
            bitnami_seals: false,
        }
    }

    /// The same store, whose newest imported Bitnami key also seals when `bitnami_seals` (and
    /// importing is enabled): `--seal-with-bitnami-key`.
    #[must_use]
    pub fn sealing_with_bitnami_key(mut self, bitnami_seals: bool) -> Self {
        self.bitnami_seals = bitnami_seals && self.import_bitnami;
        self
    }

    /// Reads every active key from the API server.
    pub async fn load(&self) -> Result<KeySet, KeyStoreError> {
        let mut sources = vec![(SEALING_KEY_LABEL, KeySource::Seal)];
        if self.import_bitnami {
            sources.push((BITNAMI_KEY_LABEL, KeySource::Bitnami));
        }
        let mut ring = KeyRing::new([]);
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        let mut renewal_requested = None;
        for (label, source) in sources {
            let selector = format!("{label}={KEY_ACTIVE}");
            let list = self
                .api
                .list(&ListParams::default().labels(&selector))
                .await
                .map_err(|source| KeyStoreError::Api {
                    action: format!("listing key Secrets ({selector}) in {}", self.namespace),
                    source,
                })?;
            for secret in list {
                let name = secret.name_any();
                if source == KeySource::Seal
                    && let Some(requested) = secret.annotations().get(RENEW_REQUEST_ANNOTATION)
                {
                    match requested.parse::<k8s_openapi::jiff::Timestamp>() {
                        Ok(at) => {
                            let whole = SystemTime::UNIX_EPOCH
                                + Duration::from_secs(u64::try_from(at.as_second()).unwrap_or(0));
                            renewal_requested = renewal_requested.max(Some(whole));
                        }
                        Err(_) => skipped
                            .push((name.clone(), "its renewal request is not an RFC 3339 time")),
                    }
                }
                match parse_key_secret(&secret, SystemTime::now()) {
                    Ok((key, certificate)) => {
                        keys.push(KeyInfo {
                            secret_name: name,
                            fingerprint: key.fingerprint(),
                            certificate,
                            source,
                        });
                        ring.add(key);
                    }
                    Err(reason) => skipped.push((name, reason)),
                }
            }
        }
        keys.sort_by_key(|k| (k.certificate.not_before(), k.secret_name.clone()));
        // The same key under two labels (seal's and Bitnami's) is listed once, oldest Secret first.
        let mut seen = Vec::new();
        keys.retain(|k| {
            let first = !seen.contains(&k.fingerprint);
            seen.push(k.fingerprint);
            first
        });
        Ok(KeySet {
            ring,
            keys,
            skipped,
            renewal_requested,
            bitnami_seals: self.bitnami_seals,
        })
    }

    /// Generates a key with a self-signed certificate starting `now` and stores it as a new active
    /// key Secret named after its fingerprint.
    pub async fn create(
        &self,
        policy: &RenewalPolicy,
        now: SystemTime,
    ) -> Result<KeyInfo, KeyStoreError> {
        let key = PrivateKey::generate(policy.size)
            .map_err(|e| KeyStoreError::Generate(e.to_string()))?;
        let certificate = Certificate::self_signed(&key, now, policy.validity)
            .map_err(|e| KeyStoreError::Generate(e.to_string()))?;
        let name = format!("{KEY_SECRET_PREFIX}{}", key.fingerprint().short());
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some(BTreeMap::from([(
                    SEALING_KEY_LABEL.to_owned(),
                    KEY_ACTIVE.to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            data: Some(BTreeMap::from([
                (
                    "tls.crt".to_owned(),
                    ByteString(certificate.to_pem().into_bytes()),
                ),
                (
                    "tls.key".to_owned(),
                    ByteString(key.to_pkcs1_pem().as_bytes().to_vec()),
                ),
            ])),
            ..Secret::default()
        };
        self.api
            .create(&PostParams::default(), &secret)
            .await
            .map_err(|source| KeyStoreError::Api {
                action: format!("creating key Secret {}/{name}", self.namespace),
                source,
            })?;
        Ok(KeyInfo {
            secret_name: name,
            fingerprint: key.fingerprint(),
            certificate,
            source: KeySource::Seal,
        })
    }

    /// Loads the keys and creates a new one when one is due (no key yet, the newest too old or
    /// started before the cutoff, or a renewal requested since). Returns the current set and the
    /// new key, if any.
    pub async fn ensure(
        &self,
        policy: &RenewalPolicy,
        now: SystemTime,
    ) -> Result<(KeySet, Option<KeyInfo>), KeyStoreError> {
        let set = self.load().await?;
        if !set.renewal_due(policy, now) {
            return Ok((set, None));
        }
        let created = self.create(policy, now).await?;
        Ok((self.load().await?, Some(created)))
    }
}

/// The key and certificate of a key Secret, or why it cannot be used (quoting no content).
fn parse_key_secret(
    secret: &Secret,
    now: SystemTime,
) -> Result<(PrivateKey, Certificate), &'static str> {
    if secret
        .metadata
        .owner_references
        .as_ref()
        .is_some_and(|o| !o.is_empty())
    {
        return Err("it has owner references (a produced Secret is never a key)");
    }
    if PRODUCED_LABELS
        .iter()
        .any(|label| secret.labels().contains_key(*label))
    {
        return Err("it was produced from a SealedSecret or ExternalSecret");
    }
    let data = secret.data.as_ref().ok_or("it has no data")?;
    let key = data.get("tls.key").ok_or("it has no tls.key")?;
    let cert = data.get("tls.crt").ok_or("it has no tls.crt")?;
    let key = PrivateKey::from_pem(&key.0).map_err(|_| "tls.key is not an RSA private key")?;
    let certificate =
        Certificate::from_pem(&cert.0).map_err(|_| "tls.crt is not a usable certificate")?;
    if certificate.fingerprint() != key.fingerprint() {
        return Err("tls.crt does not belong to tls.key");
    }
    if let Err(seal_core::CertError::NotYetValid { .. }) = certificate.check_valid_at(now) {
        return Err("its certificate is not valid yet (dated in the future)");
    }
    Ok((key, certificate))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_secret(not_before: SystemTime) -> Secret {
        let key = PrivateKey::generate(KeySize::Rsa2048).expect("a key");
        let certificate = Certificate::self_signed(&key, not_before, Duration::from_secs(86_400))
            .expect("a cert");
        Secret {
            metadata: ObjectMeta {
                name: Some("k".into()),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([
                (
                    "tls.crt".to_owned(),
                    ByteString(certificate.to_pem().into_bytes()),
                ),
                (
                    "tls.key".to_owned(),
                    ByteString(key.to_pkcs1_pem().as_bytes().to_vec()),
                ),
            ])),
            ..Secret::default()
        }
    }

    #[test]
    fn the_newest_bitnami_key_seals_only_when_asked_and_renewal_follows_seals_own() {
        // One RSA key under certificates of several start times: only the times matter here.
        let private = PrivateKey::generate(KeySize::Rsa2048).expect("a key");
        let key = |name: &str, source, started: u64| KeyInfo {
            secret_name: name.into(),
            fingerprint: private.fingerprint(),
            certificate: Certificate::self_signed(
                &private,
                SystemTime::UNIX_EPOCH + Duration::from_secs(started),
                Duration::from_secs(86_400),
            )
            .expect("a certificate"),
            source,
        };
        let keys = [
            key("seal-old", KeySource::Seal, 1_000_000),
            key("bitnami-new", KeySource::Bitnami, 3_000_000),
            key("seal-new", KeySource::Seal, 2_000_000),
            key("bitnami-old", KeySource::Bitnami, 500_000),
        ];
        let name = |k: Option<&KeyInfo>| k.map(|k| k.secret_name.clone());
        // Without the flag, Bitnami keys never seal, however new.
        assert_eq!(name(sealing_key(&keys, false)).as_deref(), Some("seal-new"));
        // With it, the newest Bitnami key seals, even when a seal key is newer.
        assert_eq!(
            name(sealing_key(&keys, true)).as_deref(),
            Some("bitnami-new")
        );
        let mut renewed = keys.to_vec();
        renewed.push(key("seal-newest", KeySource::Seal, 4_000_000));
        assert_eq!(
            name(sealing_key(&renewed, true)).as_deref(),
            Some("bitnami-new")
        );
        // With no Bitnami key imported, seal's own key seals.
        assert_eq!(
            name(sealing_key(&keys[..1], true)).as_deref(),
            Some("seal-old")
        );
        assert_eq!(name(sealing_key(&[], true)), None);
        // Renewal looks at seal's own newest key, never at a Bitnami key.
        let set = KeySet {
            ring: KeyRing::new([]),
            keys: keys.to_vec(),
            skipped: Vec::new(),
            renewal_requested: None,
            bitnami_seals: true,
        };
        assert_eq!(name(set.newest()).as_deref(), Some("bitnami-new"));
        assert_eq!(name(set.newest_own()).as_deref(), Some("seal-new"));
    }

    #[test]
    fn a_future_dated_key_is_not_trusted() {
        let now = SystemTime::now();
        let planted = key_secret(now + Duration::from_secs(3600));
        assert_eq!(
            parse_key_secret(&planted, now).err(),
            Some("its certificate is not valid yet (dated in the future)")
        );
        assert!(parse_key_secret(&planted, now + Duration::from_secs(3600)).is_ok());
        let skewed = key_secret(now + Duration::from_secs(60));
        assert!(parse_key_secret(&skewed, now).is_ok());
    }

    #[test]
    fn a_produced_or_owned_secret_is_never_a_key() {
        let now = SystemTime::now();
        let mut produced = key_secret(now);
        produced.metadata.labels = Some(BTreeMap::from([(
            seal_api::names::SEALED_SECRET_UID_LABEL.to_owned(),
            "uid".to_owned(),
        )]));
        assert!(parse_key_secret(&produced, now).is_err());
        let mut owned = key_secret(now);
        owned.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference::default(),
        ]);
        assert!(parse_key_secret(&owned, now).is_err());
        assert!(parse_key_secret(&key_secret(now), now).is_ok());
    }
}
