//! What an ExternalSecret's Secret holds: the fetched values through `target.template`
//! ([`render`]: ESO's `Replace` and `Merge` merge policies, template metadata and type), and the
//! digest of everything applied ([`content_digest`]) that lets a refresh producing the same content
//! write nothing without reading the Secret.

use std::collections::BTreeMap;

use aws_lc_rs::hmac;
use seal_api::external_secret::{ExternalSecretTemplate, TemplateMergePolicy};
use seal_core::SecretBytes;

/// What the Secret should hold: items, type and template metadata.
pub(super) struct Produced {
    /// The items.
    pub(super) data: BTreeMap<String, SecretBytes>,
    /// The Secret's type, if the template sets one.
    pub(super) type_: Option<String>,
    /// Template labels.
    pub(super) labels: BTreeMap<String, String>,
    /// Template annotations.
    pub(super) annotations: BTreeMap<String, String>,
}

/// Applies `template` to the fetched `values` (taking them).
pub(super) fn render(
    template: Option<&ExternalSecretTemplate>,
    values: &mut BTreeMap<String, SecretBytes>,
) -> Result<Produced, String> {
    let fetched = std::mem::take(values);
    let Some(template) = template else {
        return Ok(Produced {
            data: fetched,
            type_: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        });
    };
    let mut data = BTreeMap::new();
    // One output budget for every template of this Secret (seal_template's budgets).
    let mut budget = seal_template::OutputBudget::per_secret();
    for (key, source) in &template.data {
        let parsed = seal_template::Template::parse(source)
            .map_err(|e| format!("template.data {key:?}: {e}"))?;
        let rendered = parsed
            .render_within(&fetched, &mut budget)
            .map_err(|e| format!("template.data {key:?}: {e}"))?;
        data.insert(key.clone(), rendered);
    }
    if template.data.is_empty() || template.merge_policy() == TemplateMergePolicy::Merge {
        for (key, value) in fetched {
            data.entry(key).or_insert(value);
        }
    }
    let metadata = template.metadata.clone().unwrap_or_default();
    Ok(Produced {
        data,
        type_: template.type_.clone(),
        labels: metadata.labels,
        annotations: metadata.annotations,
    })
}

/// The digest of everything applied, length-prefixed so that no two contents meet: HMAC-SHA256
/// under `key`, which the process makes at start and never writes anywhere. It is kept in memory
/// only ([`super::Memory`]), so not even a digest of the values leaves the process, and a restart
/// compares the Secret itself once ([`crate::protocols::applied`]).
pub(super) fn content_digest(
    key: &hmac::Key,
    produced: &Produced,
    immutable: bool,
    owner: bool,
) -> ContentDigest {
    let mut ctx = hmac::Context::with_key(key);
    let mut field = |bytes: &[u8]| {
        ctx.update(&(bytes.len() as u64).to_be_bytes());
        ctx.update(bytes);
    };
    field(produced.type_.as_deref().unwrap_or("").as_bytes());
    field(&[u8::from(immutable), u8::from(owner)]);
    for map in [&produced.labels, &produced.annotations] {
        field(&(map.len() as u64).to_be_bytes());
        for (k, v) in map {
            field(k.as_bytes());
            field(v.as_bytes());
        }
    }
    field(&(produced.data.len() as u64).to_be_bytes());
    for (k, v) in &produced.data {
        field(k.as_bytes());
        field(v.expose());
    }
    let mut digest = [0; 32];
    digest.copy_from_slice(ctx.sign().as_ref());
    ContentDigest(digest)
}

/// What [`content_digest`] gives: equal for equal contents under one key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct ContentDigest([u8; 32]);

/// A fresh key for [`content_digest`].
pub(super) fn digest_key() -> hmac::Key {
    hmac::Key::generate(hmac::HMAC_SHA256, &aws_lc_rs::rand::SystemRandom::new())
        .expect("invariant: the system's random source works")
}

#[cfg(test)]
mod tests {
    use super::*;
    use seal_api::external_secret::ExternalSecretTemplateMetadata;

    fn bytes(map: &BTreeMap<String, SecretBytes>, key: &str) -> Option<Vec<u8>> {
        map.get(key).map(|v| v.expose().to_vec())
    }

    #[test]
    fn templates_replace_or_merge_and_set_metadata() {
        let fetched = || {
            BTreeMap::from([
                ("user".to_owned(), SecretBytes::new(b"u".to_vec())),
                ("password".to_owned(), SecretBytes::new(b"p".to_vec())),
            ])
        };
        let mut template = ExternalSecretTemplate {
            type_: Some("Opaque".into()),
            metadata: Some(ExternalSecretTemplateMetadata {
                labels: BTreeMap::from([("team".into(), "ml".into())]),
                annotations: BTreeMap::new(),
            }),
            data: BTreeMap::from([("dsn".into(), "{{ .user }}:{{ .password }}".into())]),
            ..ExternalSecretTemplate::default()
        };
        let replaced = render(Some(&template), &mut fetched()).unwrap();
        assert_eq!(bytes(&replaced.data, "dsn"), Some(b"u:p".to_vec()));
        assert_eq!(replaced.data.len(), 1);
        assert_eq!(replaced.labels.get("team").map(String::as_str), Some("ml"));
        template.merge_policy = Some(TemplateMergePolicy::Merge);
        let merged = render(Some(&template), &mut fetched()).unwrap();
        assert_eq!(merged.data.len(), 3);
        template.data = BTreeMap::from([("x".into(), "{{ .missing }}".into())]);
        let error = render(Some(&template), &mut fetched()).err().unwrap();
        assert!(error.contains("template.data \"x\""), "{error}");
    }

    #[test]
    fn the_digest_changes_with_any_applied_content_and_only_then() {
        let produced = |value: &[u8]| Produced {
            data: BTreeMap::from([("k".to_owned(), SecretBytes::new(value.to_vec()))]),
            type_: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        };
        let key = digest_key();
        let base = content_digest(&key, &produced(b"v"), false, true);
        assert!(base == content_digest(&key, &produced(b"v"), false, true));
        assert!(base != content_digest(&key, &produced(b"w"), false, true));
        assert!(base != content_digest(&key, &produced(b"v"), true, true));
        assert!(base != content_digest(&key, &produced(b"v"), false, false));
        // Another process's key: the same content gives another digest.
        assert!(base != content_digest(&digest_key(), &produced(b"v"), false, true));
    }
}
