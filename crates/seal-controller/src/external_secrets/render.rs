//! What an ExternalSecret's Secret holds: the fetched values through `target.template`
//! ([`render`]: ESO's `Replace` and `Merge` merge policies, template metadata and type), and the
//! digest of everything applied ([`content_hash`]) that lets a refresh producing the same content
//! write nothing.

use std::collections::BTreeMap;

use seal_api::external_secret::{ExternalSecretTemplate, TemplateMergePolicy};
use seal_core::SecretBytes;

use crate::protocols::rollout;

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

/// SHA-256 (hex) of everything applied, length-prefixed so no two contents hash alike.
pub(super) fn content_hash(produced: &Produced, immutable: bool, owner: bool) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
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
    rollout::hex(ctx.finish().as_ref())
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
    fn the_hash_changes_with_any_applied_content_and_only_then() {
        let produced = |value: &[u8]| Produced {
            data: BTreeMap::from([("k".to_owned(), SecretBytes::new(value.to_vec()))]),
            type_: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        };
        let base = content_hash(&produced(b"v"), false, true);
        assert_eq!(base, content_hash(&produced(b"v"), false, true));
        assert_ne!(base, content_hash(&produced(b"w"), false, true));
        assert_ne!(base, content_hash(&produced(b"v"), true, true));
        assert_ne!(base, content_hash(&produced(b"v"), false, false));
        assert_eq!(base.len(), 64);
    }
}
