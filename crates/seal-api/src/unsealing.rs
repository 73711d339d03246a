//! SealedSecret → plaintext items and Secret, with a key ring that tries the recorded key first.
//!
//! Bitnami's format has no key id, so an opener without a hint tries every key: one RSA private
//! operation per key per item. seal records the certificate fingerprint, so [`KeyRing::ordered`]
//! puts the matching key first and a well-formed file costs one RSA operation per item. When the
//! hint is missing or wrong, every other key is still tried; failure stays one uniform error.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use seal_core::envelope::{self, Envelope};
use seal_core::{Fingerprint, OpenError, PrivateKey, ScopeError, SecretBytes};
use seal_template::{OutputBudget, Template, TemplateError};

use crate::sealed_secret::SealedSecret;

/// The private keys an opener holds.
#[derive(Debug, Default)]
pub struct KeyRing {
    keys: Vec<PrivateKey>,
}

impl KeyRing {
    /// A ring of these keys; duplicates (same fingerprint) are dropped.
    pub fn new(keys: impl IntoIterator<Item = PrivateKey>) -> Self {
        let mut ring = Self::default();
        for key in keys {
            ring.add(key);
        }
        ring
    }

    /// Adds a key unless one with the same fingerprint is present.
    pub fn add(&mut self, key: PrivateKey) {
        if !self
            .keys
            .iter()
            .any(|k| k.fingerprint() == key.fingerprint())
        {
            self.keys.push(key);
        }
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key with this fingerprint.
    pub fn get(&self, fingerprint: Fingerprint) -> Option<&PrivateKey> {
        self.keys.iter().find(|k| k.fingerprint() == fingerprint)
    }

    /// The keys, the one matching `hint` first.
    pub fn ordered(&self, hint: Option<Fingerprint>) -> Vec<&PrivateKey> {
        let mut keys: Vec<&PrivateKey> = self.keys.iter().collect();
        if let Some(hint) = hint {
            keys.sort_by_key(|k| k.fingerprint() != hint);
        }
        keys
    }
}

/// Why a SealedSecret could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnsealError {
    /// Its scope needs a name or namespace it does not have.
    #[error(transparent)]
    Scope(#[from] ScopeError),
    /// One item failed; carries the item name and the uniform reason.
    #[error("item {item:?}: {error}")]
    Item {
        /// The item's name.
        item: String,
        /// Malformed, or the uniform decryption failure.
        error: OpenError,
    },
    /// A `template.data` entry does not parse or render; the message names values, never shows one.
    #[error("template.data {item:?}: {error}")]
    Template {
        /// The template's item name.
        item: String,
        /// What is wrong with it.
        error: TemplateError,
    },
}

/// Each item's name with the outcome of opening it.
pub type ItemOutcomes = Vec<(String, Result<SecretBytes, OpenError>)>;

/// Opens every item, reporting each outcome separately.
pub fn open_each(sealed: &SealedSecret, ring: &KeyRing) -> Result<ItemOutcomes, ScopeError> {
    let label = sealed.label()?;
    let keys = ring.ordered(sealed.fingerprint());
    Ok(sealed
        .spec
        .encrypted_data
        .iter()
        .map(|(item, value)| {
            let outcome = envelope::open_base64(keys.iter().copied(), &label, value);
            (item.clone(), outcome)
        })
        .collect())
}

/// Checks the shape of every item without any key: base64 and length prefix (for `seal verify`
/// without keys). Returns the items that are malformed.
pub fn malformed_items(sealed: &SealedSecret) -> Vec<(String, seal_core::Malformed)> {
    sealed
        .spec
        .encrypted_data
        .iter()
        .filter_map(|(item, value)| {
            let problem = envelope::decode_base64(value)
                .and_then(|blob| Envelope::parse(&blob).map(|_| ()))
                .err()?;
            Some((item.clone(), problem))
        })
        .collect()
}

/// Opens every item; the first failure aborts with the item's name.
pub fn unseal_items(
    sealed: &SealedSecret,
    ring: &KeyRing,
) -> Result<BTreeMap<String, SecretBytes>, UnsealError> {
    open_each(sealed, ring)?
        .into_iter()
        .map(|(item, outcome)| match outcome {
            Ok(value) => Ok((item, value)),
            Err(error) => Err(UnsealError::Item { item, error }),
        })
        .collect()
}

/// Recovers the Secret a controller produces from `sealed`: its name and namespace, the template's
/// labels, annotations, type and immutability, every sealed item, and every `template.data` entry
/// rendered with the sealed items as its values (see `seal-template`). A sealed item wins over a
/// template of the same name, as in Bitnami's controller since v0.37.
pub fn unseal_to_secret(sealed: &SealedSecret, ring: &KeyRing) -> Result<Secret, UnsealError> {
    let mut items = unseal_items(sealed, ring)?;
    let template = sealed.spec.template.clone().unwrap_or_default();
    let mut rendered = Vec::new();
    // One output budget for every template of this Secret (seal_template's budgets).
    let mut budget = OutputBudget::per_secret();
    for (item, source) in template.data.iter().flatten() {
        if items.contains_key(item) {
            continue;
        }
        let error = |error| UnsealError::Template {
            item: item.clone(),
            error,
        };
        let value = Template::parse(source)
            .map_err(error)?
            .render_within(&items, &mut budget)
            .map_err(error)?;
        rendered.push((item.clone(), value));
    }
    items.extend(rendered);
    let mut secret = produced_skeleton(sealed);
    secret.data = Some(
        items
            .into_iter()
            .map(|(item, value)| (item, ByteString(value.expose().to_vec())))
            .collect(),
    );
    Ok(secret)
}

/// Everything of the Secret `sealed` produces except its items, which needs no key: its name and
/// namespace, the template's labels, annotations, type (`Opaque` by default) and immutability.
pub fn produced_skeleton(sealed: &SealedSecret) -> Secret {
    let template = sealed.spec.template.clone().unwrap_or_default();
    let template_meta = template.metadata.unwrap_or_default();
    Secret {
        metadata: ObjectMeta {
            name: sealed.metadata.name.clone(),
            namespace: sealed.metadata.namespace.clone(),
            labels: template_meta.labels,
            annotations: template_meta.annotations,
            ..ObjectMeta::default()
        },
        type_: Some(template.type_.unwrap_or_else(|| "Opaque".into())),
        immutable: template.immutable,
        ..Secret::default()
    }
}

/// The names of the items the Secret `sealed` produces holds, which needs no key: every sealed
/// item and every `template.data` entry.
pub fn produced_item_names(sealed: &SealedSecret) -> std::collections::BTreeSet<&str> {
    item_names(
        sealed.spec.encrypted_data.keys().map(String::as_str),
        sealed.spec.template.as_ref(),
    )
}

/// [`produced_item_names`] of a SealedSecret known by its sealed items' names and its template.
pub fn item_names<'a>(
    sealed_items: impl Iterator<Item = &'a str>,
    template: Option<&'a crate::sealed_secret::SecretTemplate>,
) -> std::collections::BTreeSet<&'a str> {
    let templates = template.and_then(|t| t.data.as_ref());
    sealed_items
        .chain(
            templates
                .into_iter()
                .flat_map(BTreeMap::keys)
                .map(String::as_str),
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use seal_core::KeySize;

    #[test]
    fn ordered_puts_the_hinted_key_first_and_keeps_the_rest() {
        let a = PrivateKey::generate(KeySize::Rsa2048).unwrap();
        let b = PrivateKey::generate(KeySize::Rsa2048).unwrap();
        let (fa, fb) = (a.fingerprint(), b.fingerprint());
        let ring = KeyRing::new([a, b]);
        let order: Vec<_> = ring
            .ordered(Some(fb))
            .iter()
            .map(|k| k.fingerprint())
            .collect();
        assert_eq!(order, vec![fb, fa]);
        let order: Vec<_> = ring.ordered(None).iter().map(|k| k.fingerprint()).collect();
        assert_eq!(order, vec![fa, fb]);
    }

    /// A SealedSecret for `ns/db` with `items` sealed and `templates` as `template.data`.
    fn sealed_with_templates(
        key: &PrivateKey,
        items: &[(&str, &str)],
        templates: &[(&str, &str)],
    ) -> SealedSecret {
        use std::time::{Duration, SystemTime};
        let certificate = seal_core::Certificate::self_signed(
            key,
            SystemTime::now(),
            Duration::from_secs(86_400),
        )
        .unwrap();
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some("db".into()),
                namespace: Some("ns".into()),
                ..ObjectMeta::default()
            },
            string_data: Some(
                items
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..Secret::default()
        };
        let options = crate::sealing::SealOptions {
            certificate: &certificate,
            scope: None,
            namespace: None,
            name: None,
            allow_empty_data: false,
        };
        let mut sealed = crate::sealing::seal_secret(&secret, &options).unwrap();
        let template = sealed.spec.template.get_or_insert_with(Default::default);
        template.data = Some(
            templates
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        sealed
    }

    #[test]
    fn the_skeleton_and_item_names_are_what_unsealing_produces_without_a_key() {
        let key = PrivateKey::generate(KeySize::Rsa2048).unwrap();
        let mut sealed = sealed_with_templates(
            &key,
            &[("user", "u"), ("password", "p")],
            &[("dsn", "{{ .user }}:{{ .password }}"), ("user", "shadowed")],
        );
        let template = sealed.spec.template.get_or_insert_with(Default::default);
        template.type_ = Some("kubernetes.io/basic-auth".into());
        template.immutable = Some(true);
        let unsealed = unseal_to_secret(&sealed, &KeyRing::new([key])).unwrap();
        let names: Vec<&str> = produced_item_names(&sealed).into_iter().collect();
        let unsealed_names: Vec<&str> = unsealed
            .data
            .as_ref()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(names, unsealed_names);
        let mut without_items = unsealed;
        without_items.data = None;
        assert_eq!(produced_skeleton(&sealed), without_items);
    }

    fn data(secret: &Secret, item: &str) -> String {
        String::from_utf8(secret.data.as_ref().unwrap()[item].0.clone()).unwrap()
    }

    #[test]
    fn template_data_is_rendered_from_the_sealed_items() {
        let key = PrivateKey::generate(KeySize::Rsa2048).unwrap();
        let sealed = sealed_with_templates(
            &key,
            &[("username", "etl"), ("password", "p@ss")],
            &[
                (
                    "dsn",
                    "postgres://{{ .username }}:{{ .password | urlquery }}@db/app",
                ),
                ("static", "plain text"),
            ],
        );
        let secret = unseal_to_secret(&sealed, &KeyRing::new([key])).unwrap();
        assert_eq!(data(&secret, "dsn"), "postgres://etl:p%40ss@db/app");
        assert_eq!(data(&secret, "static"), "plain text");
        assert_eq!(data(&secret, "username"), "etl");
    }

    #[test]
    fn a_sealed_item_wins_over_a_template_of_the_same_name() {
        let key = PrivateKey::generate(KeySize::Rsa2048).unwrap();
        let sealed = sealed_with_templates(
            &key,
            &[("password", "sealed")],
            &[("password", "from the template")],
        );
        let secret = unseal_to_secret(&sealed, &KeyRing::new([key])).unwrap();
        assert_eq!(data(&secret, "password"), "sealed");
    }

    #[test]
    fn a_broken_template_names_its_item_and_no_value() {
        let key = PrivateKey::generate(KeySize::Rsa2048).unwrap();
        let sealed = sealed_with_templates(
            &key,
            &[("password", "hunter2-marker")],
            &[("dsn", "{{ .password }}{{ .nope }}")],
        );
        let error = unseal_to_secret(&sealed, &KeyRing::new([key])).unwrap_err();
        assert!(matches!(&error, UnsealError::Template { item, .. } if item == "dsn"));
        let message = error.to_string();
        assert!(message.contains("\"nope\""), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn duplicate_keys_are_kept_once() {
        let a = PrivateKey::generate(KeySize::Rsa2048).unwrap();
        let again = PrivateKey::from_pem(a.to_pkcs1_pem().as_bytes()).unwrap();
        let ring = KeyRing::new([a, again]);
        assert_eq!(ring.len(), 1);
    }
}
