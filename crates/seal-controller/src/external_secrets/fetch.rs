//! Reading an ExternalSecret's values: the provider of its store ([`provider_for`], after the
//! store exists and, for a ClusterSecretStore, allows the namespace), then `data[]` through one
//! `get_many` (AWS batches 20 per call; several properties of one secret cost one call),
//! `dataFrom[].extract` (a JSON object's keys) and `dataFrom[].find` (name regexp, tags, path;
//! `/` in a name becomes `_` as in ESO), with `rewrite` regexps and `decodingStrategy` applied.
//!
//! A transient failure of any item fails the whole read, so nothing is written from a partial
//! read and an outage never reads as deleted keys; a key that is really gone is reported in
//! [`Fetched::missing`] for the deletion policy to decide.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::{Api, ResourceExt};
use seal_api::external_secret::{DecodingStrategy, ExternalSecretRewrite, SecretStoreKind};
use seal_api::{ClusterSecretStore, ExternalSecret, SecretStore};
use seal_core::SecretBytes;
use seal_providers::{FindQuery, Provider, SecretProvider, SecretRef, SecretValue};

use super::{Context, Outcome};
use crate::protocols::redaction::api_refusal;
use crate::stores::providers::StoreId;

/// The provider of the ExternalSecret's store, after checking that the store exists and, for a
/// ClusterSecretStore, allows the namespace.
pub(super) async fn provider_for(
    ctx: &Context,
    es: &ExternalSecret,
) -> Result<Arc<Provider>, Outcome> {
    let namespace = es.namespace().unwrap_or_default();
    let store_name = &es.spec.secret_store_ref.name;
    let unavailable = |error: &kube::Error| Outcome::failed("kube", api_refusal(error));
    let (id, generation, provider) = match es.spec.secret_store_ref.store_kind() {
        SecretStoreKind::SecretStore => {
            let api: Api<SecretStore> = Api::namespaced(ctx.client.clone(), &namespace);
            let Some(store) = api.get_opt(store_name).await.map_err(|e| unavailable(&e))? else {
                return Err(Outcome::failed(
                    "store",
                    format!("SecretStore {namespace}/{store_name} does not exist"),
                ));
            };
            let id = StoreId {
                cluster: false,
                namespace: namespace.clone(),
                name: store_name.clone(),
                credentials_namespace: String::new(),
            };
            (id, store.metadata.generation, store.spec.provider)
        }
        SecretStoreKind::ClusterSecretStore => {
            let api: Api<ClusterSecretStore> = Api::all(ctx.client.clone());
            let Some(store) = api.get_opt(store_name).await.map_err(|e| unavailable(&e))? else {
                return Err(Outcome::failed(
                    "store",
                    format!("ClusterSecretStore {store_name} does not exist"),
                ));
            };
            if !store.spec.conditions.is_empty() {
                let labels = Api::<Namespace>::all(ctx.client.clone())
                    .get_metadata(&namespace)
                    .await
                    .map_err(|e| unavailable(&e))?
                    .metadata
                    .labels
                    .unwrap_or_default();
                if !store.allows_namespace(&namespace, &labels) {
                    return Err(Outcome::failed(
                        "store",
                        format!(
                            "ClusterSecretStore {store_name} does not allow namespace {namespace} (see its spec.conditions)"
                        ),
                    ));
                }
            }
            let id = StoreId {
                cluster: true,
                namespace: String::new(),
                name: store_name.clone(),
                credentials_namespace: namespace.clone(),
            };
            (id, store.metadata.generation, store.spec.provider)
        }
    };
    if let Err(error) = provider.validate("spec.provider") {
        return Err(Outcome::failed(
            "store",
            format!("store {store_name} is invalid: {error}"),
        ));
    }
    ctx.providers
        .get(&id, generation, &provider)
        .await
        .map_err(|error| Outcome::failed("store", format!("store {store_name}: {error}")))
}

/// Values read from the provider: by Secret key, and the keys the provider no longer has.
pub(super) struct Fetched {
    /// By Secret key.
    pub(super) values: BTreeMap<String, SecretBytes>,
    /// Keys the provider no longer has.
    pub(super) missing: Vec<String>,
}

/// Reads every `data[]` and `dataFrom[]` item. A transient failure of any item fails the whole
/// read (nothing is written from a partial read); a missing key is reported in `missing`.
// One pass over data[] then dataFrom[], in the order a reader meets them in the spec.
#[allow(clippy::too_many_lines)]
pub(super) async fn fetch(provider: &Provider, es: &ExternalSecret) -> Result<Fetched, Outcome> {
    let provider_failed = |error: &seal_providers::Error| {
        Outcome::failed(
            if error.is_transient() {
                "provider_unavailable"
            } else {
                "provider_error"
            },
            if error.is_transient() {
                format!("provider unavailable, the Secret is kept as it was: {error}")
            } else {
                error.to_string()
            },
        )
    };
    let mut values = BTreeMap::new();
    let mut missing = Vec::new();
    let refs: Vec<SecretRef> = es
        .spec
        .data
        .iter()
        .map(|d| SecretRef {
            key: d.remote_ref.key.clone(),
            version: d.remote_ref.version.clone(),
            property: d.remote_ref.property.clone(),
        })
        .collect();
    let results = if refs.is_empty() {
        Vec::new()
    } else {
        provider.get_many(&refs).await
    };
    // Transient failures first: an outage must not read as deleted keys.
    if let Some(error) = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .find(|e| e.is_transient())
    {
        return Err(provider_failed(error));
    }
    for (item, result) in es.spec.data.iter().zip(results) {
        match result {
            Ok(value) => {
                let decoded = decode(item.remote_ref.decoding_strategy(), value.expose_bytes())
                    .map_err(|why| {
                        Outcome::failed("decoding", format!("data {:?}: {why}", item.secret_key))
                    })?;
                values.insert(item.secret_key.clone(), decoded);
            }
            Err(seal_providers::Error::NotFound { .. }) => missing.push(format!(
                "data {:?} ({})",
                item.secret_key, item.remote_ref.key
            )),
            Err(error) => return Err(provider_failed(&error)),
        }
    }
    for (index, from) in es.spec.data_from.iter().enumerate() {
        let mut items: Vec<(String, SecretBytes)> = Vec::new();
        if let Some(extract) = &from.extract {
            match provider.get(&extract.key, extract.version.as_deref()).await {
                Ok(value) => {
                    let value = match &extract.property {
                        Some(property) => value.property(property).map_err(|e| {
                            Outcome::failed(
                                "decoding",
                                format!("dataFrom[{index}].extract {:?}: {e}", extract.key),
                            )
                        })?,
                        None => value,
                    };
                    for (key, item) in json_object(&value).map_err(|why| {
                        Outcome::failed(
                            "decoding",
                            format!("dataFrom[{index}].extract {:?}: {why}", extract.key),
                        )
                    })? {
                        let decoded =
                            decode(extract.decoding_strategy(), item.expose()).map_err(|why| {
                                Outcome::failed(
                                    "decoding",
                                    format!("dataFrom[{index}] {key:?}: {why}"),
                                )
                            })?;
                        items.push((key, decoded));
                    }
                }
                Err(seal_providers::Error::NotFound { .. }) => {
                    missing.push(format!("dataFrom[{index}] ({})", extract.key));
                }
                Err(error) => return Err(provider_failed(&error)),
            }
        }
        if let Some(find) = &from.find {
            let query = FindQuery {
                path: find.path.clone(),
                name_regexp: find.name.as_ref().map(|n| n.regexp.clone()),
                tags: find.tags.clone(),
                ..FindQuery::default()
            };
            let found = provider
                .find(&query)
                .await
                .map_err(|e| provider_failed(&e))?;
            let strategy = find.decoding_strategy.unwrap_or_default();
            for (name, value) in found {
                let key = name.replace('/', "_");
                let decoded = decode(strategy, value.expose_bytes()).map_err(|why| {
                    Outcome::failed("decoding", format!("dataFrom[{index}] {key:?}: {why}"))
                })?;
                items.push((key, decoded));
            }
        }
        for (key, value) in items {
            let key = rewrite(&from.rewrite, key).map_err(|why| {
                Outcome::failed("invalid_spec", format!("dataFrom[{index}].rewrite: {why}"))
            })?;
            values.insert(key, value);
        }
    }
    Ok(Fetched { values, missing })
}

/// The top-level members of a JSON object value: strings as they are, anything else as JSON text.
fn json_object(value: &SecretValue) -> Result<Vec<(String, SecretBytes)>, &'static str> {
    let parsed: serde_json::Value =
        serde_json::from_slice(value.expose_bytes()).map_err(|_| "the value is not JSON")?;
    let serde_json::Value::Object(members) = parsed else {
        return Err("the value is not a JSON object");
    };
    Ok(members
        .into_iter()
        .map(|(key, member)| {
            let bytes = match member {
                serde_json::Value::String(text) => text.into_bytes(),
                other => other.to_string().into_bytes(),
            };
            (key, SecretBytes::new(bytes))
        })
        .collect())
}

/// Applies `rewrite` regexps in order to a key.
fn rewrite(rules: &[ExternalSecretRewrite], mut key: String) -> Result<String, String> {
    for rule in rules {
        let re = regex::Regex::new(&rule.regexp.source)
            .map_err(|e| format!("invalid regexp {:?}: {e}", rule.regexp.source))?;
        key = re
            .replace_all(&key, rule.regexp.target.as_str())
            .into_owned();
    }
    Ok(key)
}

/// `decodingStrategy` applied to a value.
fn decode(strategy: DecodingStrategy, bytes: &[u8]) -> Result<SecretBytes, &'static str> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    let trimmed = bytes.trim_ascii();
    match strategy {
        DecodingStrategy::None => Ok(SecretBytes::new(bytes.to_vec())),
        DecodingStrategy::Base64 => STANDARD
            .decode(trimmed)
            .map(SecretBytes::new)
            .map_err(|_| "the value is not base64"),
        DecodingStrategy::Base64Url => URL_SAFE
            .decode(trimmed)
            .map(SecretBytes::new)
            .map_err(|_| "the value is not URL-safe base64"),
        DecodingStrategy::Auto => Ok(SecretBytes::new(
            STANDARD
                .decode(trimmed)
                .or_else(|_| URL_SAFE.decode(trimmed))
                .unwrap_or_else(|_| bytes.to_vec()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seal_api::external_secret::ExternalSecretRewriteRegexp;

    fn bytes(map: &BTreeMap<String, SecretBytes>, key: &str) -> Option<Vec<u8>> {
        map.get(key).map(|v| v.expose().to_vec())
    }

    #[test]
    fn decoding_strategies_follow_eso() {
        let decoded = |s, v: &[u8]| decode(s, v).map(|b| b.expose().to_vec());
        assert_eq!(
            decoded(DecodingStrategy::None, b"aGk="),
            Ok(b"aGk=".to_vec())
        );
        assert_eq!(
            decoded(DecodingStrategy::Base64, b"aGk=\n"),
            Ok(b"hi".to_vec())
        );
        assert_eq!(
            decoded(DecodingStrategy::Base64Url, b"-_8="),
            Ok(vec![0xfb, 0xff])
        );
        assert_eq!(decoded(DecodingStrategy::Auto, b"aGk="), Ok(b"hi".to_vec()));
        assert_eq!(
            decoded(DecodingStrategy::Auto, b"not base64!"),
            Ok(b"not base64!".to_vec())
        );
        assert!(decoded(DecodingStrategy::Base64, b"not base64!").is_err());
    }

    #[test]
    fn rewrites_apply_in_order_and_bad_regexps_are_errors() {
        let rule = |source: &str, target: &str| ExternalSecretRewrite {
            regexp: ExternalSecretRewriteRegexp {
                source: source.into(),
                target: target.into(),
            },
        };
        let rules = [rule("^ml_", ""), rule("^(.*)$", "APP_$1")];
        assert_eq!(rewrite(&rules, "ml_db".into()), Ok("APP_db".into()));
        assert!(rewrite(&[rule("(", "")], "x".into()).is_err());
    }

    #[test]
    fn extract_keeps_strings_and_serialises_the_rest() {
        let value = SecretValue::from_text(r#"{"user":"u","port":5432,"tls":{"on":true}}"#);
        let members: BTreeMap<_, _> = json_object(&value).unwrap().into_iter().collect();
        assert_eq!(bytes(&members, "user"), Some(b"u".to_vec()));
        assert_eq!(bytes(&members, "port"), Some(b"5432".to_vec()));
        assert_eq!(bytes(&members, "tls"), Some(br#"{"on":true}"#.to_vec()));
        assert!(json_object(&SecretValue::from_text("[1]")).is_err());
        assert!(json_object(&SecretValue::from_text("plain")).is_err());
    }
}
