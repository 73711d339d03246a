//! What a produced Secret was unsealed from, recorded on the Secret so that a restarted
//! controller, or a replica that has just become leader, can tell without decrypting that the
//! Secret already is what its SealedSecret produces.
//!
//! The record is the annotation [`UNSEALED_FROM_ANNOTATION`]: `v2:<key>:<mac>`, where `<mac>` is
//! HMAC-SHA256 over
//! - the SealedSecret's uid (a record copied from another object's Secret does not verify),
//! - the produced Secret's namespace and name,
//! - the SHA-256 of the SealedSecret's whole `spec` (sealed items, template, scope, rollout
//!   targets), its [`SpecDigest`], so that the record can be checked against a cached object
//!   that no longer holds the ciphertext ([`super::watched`]),
//! - the name and value of every item the SealedSecret produces
//!   ([`seal_api::unsealing::produced_item_names`]; a Secret that the SealedSecret only adds items
//!   to keeps its other items out of the record),
//!
//! each field length-prefixed, under a record key derived (HKDF-SHA256) from one of the
//! controller's sealing keys, named by the first 16 hex digits of its fingerprint (`<key>`).
//!
//! Why keyed: the record sits next to the values in the Secret's metadata, and a plain hash of a
//! low-entropy value (a PIN, a short password) would let anyone who reads the metadata test
//! guesses against it offline. Without the sealing key, no one can compute a record for other
//! items either, so an edit of the items, of the SealedSecret, or of the record itself makes the
//! record fail to verify, and the controller decrypts and puts the Secret back. Whoever holds the
//! sealing key can forge a record, but can also open every SealedSecret already.
//!
//! A record made with an older key still verifies while that key is in the ring (a renewal
//! rewrites nothing); when its key is gone (a compromised key removed), the next reconcile
//! decrypts and records again with the newest key.
//!
//! `v1` records (which authenticated the spec itself rather than its digest) are not read: the
//! first reconcile after an upgrade decrypts once and writes a `v2` record, no value changes.

use std::collections::{BTreeMap, BTreeSet};

use aws_lc_rs::{digest, hkdf, hmac};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use k8s_openapi::ByteString;
use kube::api::ObjectMeta;
use seal_api::SealedSecret;
use seal_api::names::UNSEALED_FROM_ANNOTATION;
use seal_api::sealed_secret::SealedSecretSpec;
use seal_api::unsealing::produced_item_names;
use seal_core::{Fingerprint, PrivateKey};

/// The record format this module writes and reads.
const VERSION: &str = "v2";
/// HKDF salt of the record keys: says what they are for, so no other use of a sealing key can
/// produce the same bytes.
const SALT: &[u8] = b"seal.dev/unsealed-from";
/// Hex digits of the key fingerprint a record names its key by.
const KEY_ID_LEN: usize = 16;

/// The SHA-256 of a SealedSecret's spec as the API server stored it, serialized in the field
/// order of its Rust type and with sorted maps: the same spec always gives the same digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecDigest([u8; 32]);

impl SpecDigest {
    /// The digest of `spec`.
    ///
    /// # Panics
    /// Never: a spec is plain data and always serializes.
    pub fn of(spec: &SealedSecretSpec) -> Self {
        let bytes = serde_json::to_vec(spec).expect("invariant: a spec serializes");
        let digest = digest::digest(&digest::SHA256, &bytes);
        let mut out = [0; 32];
        out.copy_from_slice(digest.as_ref());
        Self(out)
    }
}

/// What a Secret is unsealed from: a SealedSecret's identity, the names of the items it produces,
/// and its spec's digest.
pub struct Source<'a> {
    uid: &'a str,
    namespace: &'a str,
    name: &'a str,
    items: BTreeSet<&'a str>,
    spec: SpecDigest,
}

impl<'a> Source<'a> {
    /// `sealed`, whole.
    pub fn of(sealed: &'a SealedSecret) -> Self {
        Self::new(
            &sealed.metadata,
            produced_item_names(sealed),
            SpecDigest::of(&sealed.spec),
        )
    }

    /// The SealedSecret with `meta` that produces `items` and whose spec's digest is `spec`.
    pub(super) fn new(meta: &'a ObjectMeta, items: BTreeSet<&'a str>, spec: SpecDigest) -> Self {
        Self {
            uid: meta.uid.as_deref().unwrap_or_default(),
            namespace: meta.namespace.as_deref().unwrap_or_default(),
            name: meta.name.as_deref().unwrap_or_default(),
            items,
            spec,
        }
    }
}

/// The record keys of the controller's current sealing keys.
pub struct RecordKeys {
    /// By key id: the key's fingerprint prefix.
    keys: Vec<(String, hmac::Key)>,
    /// The id of the key new records are made with.
    signing: Option<String>,
}

impl RecordKeys {
    /// The record keys of `keys`; new records are made with the one whose fingerprint is
    /// `signing` (the newest sealing key), else with the first.
    pub fn derive<'k>(
        keys: impl IntoIterator<Item = &'k PrivateKey>,
        signing: Option<Fingerprint>,
    ) -> Self {
        let keys: Vec<(String, hmac::Key)> = keys
            .into_iter()
            .map(|key| (key_id(key.fingerprint()), record_key(key)))
            .collect();
        let signing = signing
            .map(key_id)
            .filter(|id| keys.iter().any(|(k, _)| k == id))
            .or_else(|| keys.first().map(|(id, _)| id.clone()));
        Self { keys, signing }
    }

    /// The record for a Secret holding `data` as produced from `source`; `None` without a key.
    pub fn record(
        &self,
        source: &Source<'_>,
        data: &BTreeMap<String, ByteString>,
    ) -> Option<String> {
        let id = self.signing.as_ref()?;
        let (_, key) = self.keys.iter().find(|(k, _)| k == id)?;
        let tag = hmac::sign(key, &message(source, data));
        Some(format!(
            "{VERSION}:{id}:{}",
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        ))
    }

    /// Whether `record` (the annotation's value) proves that `data` is what `source` produces.
    /// Constant time in the tag; any failure (no record, another format, an unknown key, a
    /// mismatch) is the same `false`.
    pub fn verify(
        &self,
        source: &Source<'_>,
        data: &BTreeMap<String, ByteString>,
        record: Option<&str>,
    ) -> bool {
        let Some((id, tag)) = record.and_then(parse) else {
            return false;
        };
        let Some((_, key)) = self.keys.iter().find(|(k, _)| k == id) else {
            return false;
        };
        hmac::verify(key, &message(source, data), &tag).is_ok()
    }

    /// Whether the Secret with these `annotations` and `data` carries a valid record for `source`.
    pub fn verify_secret(
        &self,
        source: &Source<'_>,
        annotations: &BTreeMap<String, String>,
        data: &BTreeMap<String, ByteString>,
    ) -> bool {
        self.verify(
            source,
            data,
            annotations
                .get(UNSEALED_FROM_ANNOTATION)
                .map(String::as_str),
        )
    }
}

/// `v2:<key id>:<tag>` split into the key id and the decoded tag.
fn parse(record: &str) -> Option<(&str, Vec<u8>)> {
    let mut parts = record.splitn(3, ':');
    if parts.next()? != VERSION {
        return None;
    }
    let id = parts.next()?;
    let tag = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
    Some((id, tag))
}

fn key_id(fingerprint: Fingerprint) -> String {
    fingerprint.to_string()[..KEY_ID_LEN].to_owned()
}

/// The record key of one sealing key: HKDF-SHA256 over its private key.
fn record_key(key: &PrivateKey) -> hmac::Key {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(key.pkcs8_der());
    let okm = prk
        .expand(&[b"record key"], hmac::HMAC_SHA256)
        .expect("invariant: 32 bytes is within HKDF-SHA256's output limit");
    hmac::Key::from(okm)
}

/// The bytes a record authenticates, each field length-prefixed so that no two inputs meet.
fn message(source: &Source<'_>, data: &BTreeMap<String, ByteString>) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut field = |value: &[u8]| {
        bytes.extend_from_slice(&(value.len() as u64).to_be_bytes());
        bytes.extend_from_slice(value);
    };
    field(source.uid.as_bytes());
    field(source.namespace.as_bytes());
    field(source.name.as_bytes());
    field(&source.spec.0);
    for name in &source.items {
        field(name.as_bytes());
        match data.get(*name) {
            Some(value) => {
                field(b"=");
                field(&value.0);
            }
            None => field(b"absent"),
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;
    use seal_api::sealed_secret::SealedSecretSpec;
    use seal_core::KeySize;

    fn sealed(uid: &str, items: &[(&str, &str)]) -> SealedSecret {
        let mut sealed = SealedSecret::new(
            "db",
            SealedSecretSpec {
                encrypted_data: items
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                ..SealedSecretSpec::default()
            },
        );
        sealed.metadata = ObjectMeta {
            name: Some("db".into()),
            namespace: Some("ns".into()),
            uid: Some(uid.into()),
            ..ObjectMeta::default()
        };
        sealed
    }

    fn data(items: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
            .collect()
    }

    fn keys() -> (PrivateKey, PrivateKey) {
        (
            PrivateKey::generate(KeySize::Rsa2048).unwrap(),
            PrivateKey::generate(KeySize::Rsa2048).unwrap(),
        )
    }

    #[test]
    fn a_record_verifies_only_for_what_it_was_made_from() {
        let (old, new) = keys();
        let ring = RecordKeys::derive([&old, &new], Some(new.fingerprint()));
        let object = sealed("u1", &[("password", "c1"), ("user", "c2")]);
        let made = data(&[("password", "p"), ("user", "u")]);
        let record = ring.record(&Source::of(&object), &made).unwrap();
        assert!(record.starts_with(&format!("v2:{}:", &new.fingerprint().to_string()[..16])));
        assert!(ring.verify(&Source::of(&object), &made, Some(&record)));

        // An edited value, a missing item, an added produced item: not what it was made from.
        assert!(!ring.verify(
            &Source::of(&object),
            &data(&[("password", "x"), ("user", "u")]),
            Some(&record)
        ));
        assert!(!ring.verify(
            &Source::of(&object),
            &data(&[("password", "p")]),
            Some(&record)
        ));
        // Items the SealedSecret does not produce are not its business (a patched Secret's own).
        let with_foreign = data(&[("password", "p"), ("user", "u"), ("theirs", "t")]);
        assert!(ring.verify(&Source::of(&object), &with_foreign, Some(&record)));
        // Another spec, another object, another name.
        let respec = sealed("u1", &[("password", "c1-resealed"), ("user", "c2")]);
        assert!(!ring.verify(&Source::of(&respec), &made, Some(&record)));
        assert!(!ring.verify(
            &Source::of(&sealed("u2", &[("password", "c1"), ("user", "c2")])),
            &made,
            Some(&record)
        ));
        let mut renamed = object.clone();
        renamed.metadata.name = Some("db2".into());
        assert!(!ring.verify(&Source::of(&renamed), &made, Some(&record)));
    }

    #[test]
    fn an_edited_or_foreign_record_never_verifies() {
        let (old, new) = keys();
        let ring = RecordKeys::derive([&old, &new], Some(new.fingerprint()));
        let object = sealed("u1", &[("password", "c1")]);
        let made = data(&[("password", "p")]);
        let record = ring.record(&Source::of(&object), &made).unwrap();
        let mut flipped = record.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        for bad in [
            None,
            Some(""),
            Some("v1"),
            Some("v2:abc:def"),
            Some(flipped.as_str()),
            Some(&record.replace("v2:", "v3:")),
            Some(&record[..record.len() - 4]),
        ] {
            assert!(!ring.verify(&Source::of(&object), &made, bad), "{bad:?}");
        }
        // A plain SHA-256 of the inputs is not a record, whatever its format.
        let digest = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            &message(&Source::of(&object), &made),
        );
        let plain = format!(
            "v2:{}:{}",
            &new.fingerprint().to_string()[..16],
            URL_SAFE_NO_PAD.encode(digest.as_ref())
        );
        assert!(!ring.verify(&Source::of(&object), &made, Some(&plain)));
        // A controller with other keys cannot verify (nor forge) this one's records.
        let (a, b) = keys();
        assert!(!RecordKeys::derive([&a, &b], None).verify(
            &Source::of(&object),
            &made,
            Some(&record)
        ));
    }

    #[test]
    fn a_record_made_from_the_whole_object_verifies_against_the_cached_one() {
        let (key, _) = keys();
        let ring = RecordKeys::derive([&key], None);
        let object = sealed("u1", &[("password", "c1"), ("user", "c2")]);
        let made = data(&[("password", "p"), ("user", "u")]);
        let record = ring.record(&Source::of(&object), &made).unwrap();
        let cached = super::super::watched::Watched::from(object.clone());
        assert!(ring.verify(&cached.source(), &made, Some(&record)));
        // The cached object without its ciphertext is another spec: only its digest stands in.
        assert!(!ring.verify(
            &Source::of(&cached.without_ciphertext()),
            &made,
            Some(&record)
        ));
    }

    #[test]
    fn older_keys_verify_while_they_are_in_the_ring() {
        let (old, new) = keys();
        let object = sealed("u1", &[("password", "c1")]);
        let made = data(&[("password", "p")]);
        let by_old = RecordKeys::derive([&old], Some(old.fingerprint()))
            .record(&Source::of(&object), &made)
            .unwrap();
        let renewed = RecordKeys::derive([&old, &new], Some(new.fingerprint()));
        assert!(renewed.verify(&Source::of(&object), &made, Some(&by_old)));
        assert_ne!(renewed.record(&Source::of(&object), &made).unwrap(), by_old);
        let old_removed = RecordKeys::derive([&new], Some(new.fingerprint()));
        assert!(!old_removed.verify(&Source::of(&object), &made, Some(&by_old)));
        assert_eq!(
            RecordKeys::derive([], None).record(&Source::of(&object), &made),
            None
        );
    }
}
