//! Conversion between the External Secrets Operator's manifests (`external-secrets.io/v1`, and
//! `v1beta1`, which has the same fields for the AWS and Vault providers) and seal's
//! (`seal.dev/v1alpha1`): ExternalSecret, SecretStore and ClusterSecretStore.
//!
//! seal's types keep ESO's field names, so converting is changing the apiVersion, plus three
//! things that make it safe to do without reading the result:
//! - **Nothing is dropped silently.** Every field is checked against seal's CRD schema; an ESO
//!   field seal does not implement (`dataFrom[].sourceRef`, `templateFrom`, another provider,
//!   another AWS service, ...) is an [`EsoError`] naming the document, the field and the provider
//!   or store. The same holds the other way: seal's additions (`rolloutRestartTargets`, the AWS
//!   `endpointURL`) cannot be converted to ESO.
//! - **ESO's server-side defaults are taken out.** A manifest exported from a cluster carries
//!   fields ESO's API server wrote (`engineVersion: v2`, `conversionStrategy: Default`,
//!   `metadataPolicy: None`); they mean what seal does anyway, so they are removed rather than
//!   refused. Other values of those fields are refused.
//! - **The result is valid.** It is parsed into seal's types and passes their `validate()`, and
//!   server-written metadata (uid, resourceVersion, managedFields, status, kubectl's
//!   last-applied annotation) is removed so the result is fit for git.
//!
//! Errors name fields and list allowed values; they never quote a document's values.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::CustomResourceExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::bitnami::strip_server_fields;
use crate::external_secret::ExternalSecret;
use crate::manifest::redact;
use crate::schema::{self, SchemaProblem};
use crate::sealed_secret::API_VERSION;
use crate::secret_store::{ClusterSecretStore, SecretStore};
use crate::validation::ValidationError;

/// ESO's API group.
pub const ESO_GROUP: &str = "external-secrets.io";
/// The ESO apiVersion `seal convert --to eso` writes.
pub const ESO_API_VERSION: &str = "external-secrets.io/v1";
/// ESO's previous apiVersion, read as well (same fields for these providers).
pub const ESO_API_VERSION_V1BETA1: &str = "external-secrets.io/v1beta1";
/// The annotation in which ESO's controller keeps a hash of the values of each Secret it writes.
pub const ESO_DATA_HASH_ANNOTATION: &str = "reconcile.external-secrets.io/data-hash";

/// The kinds both APIs share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EsoKind {
    /// ExternalSecret.
    ExternalSecret,
    /// SecretStore.
    SecretStore,
    /// ClusterSecretStore.
    ClusterSecretStore,
}

impl EsoKind {
    /// The kind as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            EsoKind::ExternalSecret => "ExternalSecret",
            EsoKind::SecretStore => "SecretStore",
            EsoKind::ClusterSecretStore => "ClusterSecretStore",
        }
    }

    fn from_kind(kind: &str) -> Option<Self> {
        match kind {
            "ExternalSecret" => Some(EsoKind::ExternalSecret),
            "SecretStore" => Some(EsoKind::SecretStore),
            "ClusterSecretStore" => Some(EsoKind::ClusterSecretStore),
            _ => None,
        }
    }
}

/// Which API a document belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// `external-secrets.io/v1` or `v1beta1`.
    Eso,
    /// `seal.dev/v1alpha1`.
    Seal,
}

/// Whether `(apiVersion, kind)` is one of the kinds this module converts, and on which side.
pub fn classify(api_version: &str, kind: &str) -> Option<(Api, EsoKind)> {
    let kind = EsoKind::from_kind(kind)?;
    match api_version {
        ESO_API_VERSION | ESO_API_VERSION_V1BETA1 => Some((Api::Eso, kind)),
        API_VERSION => Some((Api::Seal, kind)),
        _ => None,
    }
}

/// A document that cannot be converted, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{document}{}: {field}: {problem}", .about.as_ref().map(|a| format!(" ({a})")).unwrap_or_default())]
pub struct EsoError {
    /// The document: `ExternalSecret ml-batch/db`.
    pub document: String,
    /// The provider (`provider aws`) of a store, or the store (`store SecretStore aws-store`) of
    /// an ExternalSecret, when known.
    pub about: Option<String>,
    /// The JSON path of the field at fault (`spec.dataFrom[0].sourceRef`).
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

/// An ESO ExternalSecret, SecretStore or ClusterSecretStore as seal's, ready to write.
///
/// Errors: the document is not one of those kinds in an ESO apiVersion, uses a provider, service
/// or field seal does not implement, or is invalid (see the module docs).
pub fn from_eso(document: &Value) -> Result<Value, EsoError> {
    let mut doc = Document::read(document, Api::Eso)?;
    match doc.kind {
        EsoKind::ExternalSecret => doc.drop_external_secret_defaults()?,
        EsoKind::SecretStore | EsoKind::ClusterSecretStore => doc.check_provider()?,
    }
    doc.check_schema(|problem| match problem {
        SchemaProblem::Unknown => "an ESO field seal does not support".into(),
        other => other.to_string(),
    })?;
    let object = doc.typed(API_VERSION)?;
    Ok(object)
}

/// A seal ExternalSecret, SecretStore or ClusterSecretStore as ESO's (`external-secrets.io/v1`).
///
/// Errors: the document is not one of those kinds in seal's apiVersion, is invalid, or uses one
/// of seal's additions ESO does not have (`rolloutRestartTargets`, `provider.aws.endpointURL`).
pub fn to_eso(document: &Value) -> Result<Value, EsoError> {
    let doc = Document::read(document, Api::Seal)?;
    doc.check_schema(|problem| match problem {
        SchemaProblem::Unknown => format!("not a field of seal.dev/v1alpha1 {}", doc.kind.as_str()),
        other => other.to_string(),
    })?;
    let seal_only: &[(&str, &str)] = match doc.kind {
        EsoKind::ExternalSecret => &[(
            "rolloutRestartTargets",
            "seal's addition, which ESO does not have; remove it to convert (and restart the workloads another way)",
        )],
        EsoKind::SecretStore | EsoKind::ClusterSecretStore => &[],
    };
    for (field, problem) in seal_only {
        if doc.spec.get(*field).is_some() {
            return Err(doc.error(format!("spec.{field}"), *problem));
        }
    }
    if doc.kind != EsoKind::ExternalSecret
        && doc.spec["provider"]["aws"].get("endpointURL").is_some()
    {
        return Err(doc.error(
            "spec.provider.aws.endpointURL",
            "seal's addition, which ESO does not have (ESO reads an endpoint override from its controller's environment); remove it to convert",
        ));
    }
    doc.typed(ESO_API_VERSION)
}

/// One document being converted: its parts, and what errors say about it.
struct Document {
    kind: EsoKind,
    name: String,
    about: Option<String>,
    metadata: ObjectMeta,
    spec: Value,
}

impl Document {
    fn read(value: &Value, side: Api) -> Result<Self, EsoError> {
        let field = |name: &str| value.get(name).and_then(Value::as_str).unwrap_or("");
        let (api_version, kind) = (field("apiVersion"), field("kind"));
        let unknown = || EsoError {
            document: if kind.is_empty() {
                "a document".into()
            } else {
                kind.to_owned()
            },
            about: None,
            field: "apiVersion".into(),
            problem: format!(
                "not an ExternalSecret, SecretStore or ClusterSecretStore of {}",
                match side {
                    Api::Eso => "external-secrets.io/v1 or v1beta1",
                    Api::Seal => API_VERSION,
                }
            ),
        };
        let kind = match classify(api_version, kind) {
            Some((found, kind)) if found == side => kind,
            _ => return Err(unknown()),
        };
        let mut doc = Document {
            kind,
            name: String::new(),
            about: None,
            metadata: ObjectMeta::default(),
            spec: Value::Null,
        };
        let metadata = value.get("metadata").cloned().unwrap_or(Value::Null);
        let mut metadata: ObjectMeta = if metadata.is_null() {
            ObjectMeta::default()
        } else {
            serde_json::from_value(metadata)
                .map_err(|e| doc.error("metadata", redact(&e.to_string())))?
        };
        strip_server_fields(&mut metadata);
        doc.name = match (&metadata.namespace, &metadata.name) {
            (Some(ns), Some(name)) => format!("{ns}/{name}"),
            (None, Some(name)) => name.clone(),
            (_, None) => "(unnamed)".into(),
        };
        doc.metadata = metadata;
        doc.spec = match value.get("spec") {
            Some(spec @ Value::Object(_)) => spec.clone(),
            _ => return Err(doc.error("spec", "required, as an object")),
        };
        doc.about = match kind {
            EsoKind::ExternalSecret => {
                let store = &doc.spec["secretStoreRef"];
                store["name"].as_str().map(|name| {
                    let kind = store["kind"].as_str().unwrap_or("SecretStore");
                    format!("store {kind} {name}")
                })
            }
            EsoKind::SecretStore | EsoKind::ClusterSecretStore => doc.spec["provider"]
                .as_object()
                .and_then(|p| p.keys().next())
                .map(|p| format!("provider {p}")),
        };
        Ok(doc)
    }

    fn error(&self, field: impl Into<String>, problem: impl Into<String>) -> EsoError {
        EsoError {
            document: format!("{} {}", self.kind.as_str(), self.name),
            about: self.about.clone(),
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// Stores: only the aws (SecretsManager) and vault providers.
    fn check_provider(&mut self) -> Result<(), EsoError> {
        let Some(provider) = self.spec["provider"].as_object() else {
            return Ok(()); // the schema check reports it
        };
        if let Some(other) = provider.keys().find(|k| *k != "aws" && *k != "vault") {
            let (field, about) = (
                format!("spec.provider.{other}"),
                format!("provider {other}"),
            );
            let mut error = self.error(
                field,
                "a provider seal does not implement; seal reads from aws (SecretsManager) and vault",
            );
            error.about = Some(about);
            return Err(error);
        }
        if let Some(service) = provider.get("aws").and_then(|aws| aws.get("service"))
            && service != "SecretsManager"
        {
            let named = service.as_str().unwrap_or("this service");
            return Err(self.error(
                "spec.provider.aws.service",
                format!("{named} is not supported; seal's aws provider reads SecretsManager only"),
            ));
        }
        Ok(())
    }

    /// ExternalSecrets: ESO's server-written defaults removed, ESO-only features refused with a
    /// word on what to do instead.
    fn drop_external_secret_defaults(&mut self) -> Result<(), EsoError> {
        const SOURCE_REF: &str = "not supported by seal: generators and per-item stores are ESO-only; every item reads through spec.secretStoreRef";
        let mut found: Option<(String, String)> = None;
        let mut refuse = |field: String, problem: &str| {
            found.get_or_insert((field, problem.to_owned()));
        };
        let spec = self
            .spec
            .as_object_mut()
            .expect("invariant: read() checked spec is an object");
        refuse_newer_fields(spec, &mut refuse);
        if let Some(template) = spec
            .get_mut("target")
            .and_then(|t| t.get_mut("template"))
            .and_then(Value::as_object_mut)
        {
            let at = "spec.target.template";
            drop_default(
                template,
                at,
                "engineVersion",
                "v2",
                &mut refuse,
                "only v2 templates are supported (seal's template language is the part of ESO's v2 that reads and transforms values)",
            );
            if template.contains_key("templateFrom") {
                refuse(
                    format!("{at}.templateFrom"),
                    "not supported by seal; put the templates inline in template.data",
                );
            }
        }
        for (list, refs) in [
            ("data", &["remoteRef"][..]),
            ("dataFrom", &["extract", "find"][..]),
        ] {
            let Some(items) = spec.get_mut(list).and_then(Value::as_array_mut) else {
                continue;
            };
            for (i, item) in items.iter_mut().enumerate() {
                let Some(item) = item.as_object_mut() else {
                    continue;
                };
                let at = format!("spec.{list}[{i}]");
                if item.contains_key("sourceRef") {
                    refuse(format!("{at}.sourceRef"), SOURCE_REF);
                }
                for name in refs {
                    let Some(remote) = item.get_mut(*name).and_then(Value::as_object_mut) else {
                        continue;
                    };
                    let at = format!("{at}.{name}");
                    drop_default(
                        remote,
                        &at,
                        "conversionStrategy",
                        "Default",
                        &mut refuse,
                        "only Default is supported (values are read as they are stored)",
                    );
                    drop_default(
                        remote,
                        &at,
                        "metadataPolicy",
                        "None",
                        &mut refuse,
                        "only None is supported (seal reads secret values, not their metadata)",
                    );
                    drop_default(
                        remote,
                        &at,
                        "nullBytePolicy",
                        "Ignore",
                        &mut refuse,
                        "only Ignore is supported (ESO v1.x): seal writes values as they are stored, NUL bytes included",
                    );
                }
            }
        }
        match found {
            Some((field, problem)) => Err(self.error(field, problem)),
            None => Ok(()),
        }
    }

    fn check_schema(&self, word: impl Fn(&SchemaProblem) -> String) -> Result<(), EsoError> {
        let crd = match self.kind {
            EsoKind::ExternalSecret => ExternalSecret::crd(),
            EsoKind::SecretStore => SecretStore::crd(),
            EsoKind::ClusterSecretStore => ClusterSecretStore::crd(),
        };
        schema::check(&self.spec, &schema::spec_schema(&crd), "spec")
            .map_err(|v| self.error(v.path, word(&v.problem)))
    }

    /// The object parsed into seal's type, validated, written with `api_version`.
    fn typed(&self, api_version: &str) -> Result<Value, EsoError> {
        match self.kind {
            EsoKind::ExternalSecret => self.round_trip::<ExternalSecret>(api_version, |o| {
                o.status = None;
                o.validate()
            }),
            EsoKind::SecretStore => self.round_trip::<SecretStore>(api_version, |o| {
                o.status = None;
                o.validate()
            }),
            EsoKind::ClusterSecretStore => {
                self.round_trip::<ClusterSecretStore>(api_version, |o| {
                    o.status = None;
                    o.validate()
                })
            }
        }
    }

    fn round_trip<K: DeserializeOwned + Serialize>(
        &self,
        api_version: &str,
        check: impl FnOnce(&mut K) -> Result<(), ValidationError>,
    ) -> Result<Value, EsoError> {
        let value = serde_json::json!({
            "apiVersion": API_VERSION,
            "kind": self.kind.as_str(),
            "metadata": self.metadata,
            "spec": self.spec,
        });
        let mut object: K = serde_json::from_value(value)
            .map_err(|e| self.error("spec", redact(&e.to_string())))?;
        check(&mut object).map_err(|e| self.error(e.field(), problem_of(&e)))?;
        let mut out = serde_json::to_value(&object)
            .expect("invariant: seal's API types always serialize to JSON");
        out["apiVersion"] = Value::String(api_version.to_owned());
        Ok(out)
    }
}

/// ESO v1.x fields seal does not implement, each refused with what to do instead.
fn refuse_newer_fields(spec: &Map<String, Value>, refuse: &mut impl FnMut(String, &str)) {
    if spec.contains_key("syncWindows") {
        refuse(
            "spec.syncWindows".to_owned(),
            "not supported by seal (ESO v1.x): seal refreshes on refreshInterval and refreshPolicy alone; remove the windows, or keep this ExternalSecret on ESO",
        );
    }
    if let Some(target) = spec.get("target").and_then(Value::as_object) {
        if target.get("creationPolicy").and_then(Value::as_str) == Some("CreateOrMerge") {
            refuse(
                "spec.target.creationPolicy".to_owned(),
                "CreateOrMerge (ESO v1.x) is not supported by seal: use Merge when the Secret always exists (seal adds the items), or Owner or Orphan when seal should create it",
            );
        }
        if target
            .get("template")
            .and_then(|t| t.get("metadata"))
            .is_some_and(|m| m.get("finalizers").is_some())
        {
            refuse(
                "spec.target.template.metadata.finalizers".to_owned(),
                "not supported by seal: it puts no finalizers on the Secrets it writes, so deleting one is never blocked",
            );
        }
    }
    for (i, item) in spec
        .get("dataFrom")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = format!("spec.dataFrom[{i}]");
        for (j, rewrite) in item
            .get("rewrite")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            for kind in ["merge", "transform"] {
                if rewrite.get(kind).is_some() {
                    refuse(
                        format!("{at}.rewrite[{j}].{kind}"),
                        "not supported by seal (ESO v1.x): seal rewrites keys with regexp only",
                    );
                }
            }
        }
    }
}

/// A validation error's message without its leading field path (the error carries that apart).
fn problem_of(error: &ValidationError) -> String {
    let text = error.to_string();
    let prefix = format!("{}: ", error.field());
    text.strip_prefix(&prefix)
        .map_or(text.clone(), str::to_owned)
}

/// Removes `key` from `object` when it holds `default`; any other value is refused with `problem`.
fn drop_default(
    object: &mut Map<String, Value>,
    at: &str,
    key: &str,
    default: &str,
    refuse: &mut impl FnMut(String, &str),
    problem: &str,
) {
    match object.get(key) {
        None => {}
        Some(value) if value == default => {
            object.remove(key);
        }
        Some(_) => refuse(format!("{at}.{key}"), problem),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn yaml(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    /// An AWS ExternalSecret as `kubectl get -o yaml` shows it from a cluster running ESO: every
    /// default ESO's API server writes, status, and server metadata.
    const ESO_AWS_EXTERNAL_SECRET: &str = r#"
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata:
  name: ml-batch-db
  namespace: ml-batch
  uid: 0b9c4c2e-0000-4000-8000-000000000000
  resourceVersion: "4711"
  generation: 2
  creationTimestamp: "2025-01-01T00:00:00Z"
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: '{"spec":{}}'
    team: ml
spec:
  refreshInterval: 1h0m0s
  secretStoreRef: {kind: SecretStore, name: aws-store}
  target:
    name: ml-batch-db
    creationPolicy: Owner
    deletionPolicy: Retain
    template:
      engineVersion: v2
      mergePolicy: Replace
      type: Opaque
      data:
        DATABASE_URL: 'postgres://{{ .username }}:{{ .password | urlquery }}@db/ml'
  data:
  - secretKey: username
    remoteRef: {key: ml/db, property: username, conversionStrategy: Default, decodingStrategy: None, metadataPolicy: None}
  - secretKey: password
    remoteRef: {key: ml/db, property: password, conversionStrategy: Default, decodingStrategy: None, metadataPolicy: None}
  dataFrom:
  - extract: {key: ml/batch-config, conversionStrategy: Default, decodingStrategy: Auto, metadataPolicy: None}
  - find:
      name: {regexp: '^ml/batch-.*'}
      conversionStrategy: Default
      decodingStrategy: None
    rewrite:
    - regexp: {source: 'ml/batch-(.*)', target: '$1'}
status:
  refreshTime: "2025-01-01T00:00:00Z"
  syncedResourceVersion: 1-abc
  conditions:
  - {type: Ready, status: "True", reason: SecretSynced, message: ok, lastTransitionTime: "2025-01-01T00:00:00Z"}
"#;

    const ESO_VAULT_STORE: &str = r"
apiVersion: external-secrets.io/v1beta1
kind: ClusterSecretStore
metadata: {name: vault-backend}
spec:
  conditions:
  - namespaces: [ml-api]
  - namespaceSelector: {matchLabels: {team: ml}}
  provider:
    vault:
      server: https://vault.example.com:8200
      path: secret
      version: v2
      auth:
        kubernetes:
          mountPath: kubernetes
          role: ml-api
          serviceAccountRef: {name: ml-api, namespace: ml-api}
";

    #[test]
    fn an_exported_eso_external_secret_becomes_a_clean_seal_one() {
        let seal = from_eso(&yaml(ESO_AWS_EXTERNAL_SECRET)).unwrap();
        assert_eq!(seal["apiVersion"], "seal.dev/v1alpha1");
        assert_eq!(seal["kind"], "ExternalSecret");
        assert_eq!(
            seal["metadata"],
            json!({"name": "ml-batch-db", "namespace": "ml-batch", "annotations": {"team": "ml"}})
        );
        assert!(seal.get("status").is_none());
        let spec = &seal["spec"];
        assert_eq!(spec["refreshInterval"], "1h0m0s");
        assert!(spec["target"]["template"].get("engineVersion").is_none());
        assert_eq!(spec["target"]["template"]["mergePolicy"], "Replace");
        assert_eq!(
            spec["data"][0]["remoteRef"],
            json!({"key": "ml/db", "property": "username", "decodingStrategy": "None"})
        );
        assert_eq!(
            spec["dataFrom"][1]["find"],
            json!({"name": {"regexp": "^ml/batch-.*"}, "decodingStrategy": "None"})
        );
        let typed: ExternalSecret = serde_json::from_value(seal.clone()).unwrap();
        typed.validate().unwrap();

        // And back: ESO's v1 with the same fields, minus the defaults that meant nothing.
        let eso = to_eso(&seal).unwrap();
        assert_eq!(eso["apiVersion"], "external-secrets.io/v1");
        let mut expected = seal.clone();
        expected["apiVersion"] = json!("external-secrets.io/v1");
        assert_eq!(eso, expected);
        assert_eq!(from_eso(&eso).unwrap(), seal);
    }

    #[test]
    fn a_v1beta1_cluster_store_converts_both_ways_unchanged_but_for_the_api_version() {
        let original = yaml(ESO_VAULT_STORE);
        let seal = from_eso(&original).unwrap();
        assert_eq!(seal["apiVersion"], "seal.dev/v1alpha1");
        let mut expected = original.clone();
        expected["apiVersion"] = json!("seal.dev/v1alpha1");
        assert_eq!(seal, expected);
        let typed: ClusterSecretStore = serde_json::from_value(seal.clone()).unwrap();
        assert_eq!(typed.spec.conditions.len(), 2);
        assert_eq!(to_eso(&seal).unwrap()["apiVersion"], ESO_API_VERSION);
    }

    fn eso_error(text: &str) -> String {
        from_eso(&yaml(text)).unwrap_err().to_string()
    }

    #[test]
    fn unsupported_providers_and_services_are_named() {
        assert_eq!(
            eso_error(
                "apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {name: gcp, namespace: ml}\nspec: {provider: {gcpsm: {projectID: p}}}"
            ),
            "SecretStore ml/gcp (provider gcpsm): spec.provider.gcpsm: a provider seal does not implement; seal reads from aws (SecretsManager) and vault"
        );
        assert_eq!(
            eso_error(
                "apiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata: {name: ps}\nspec: {provider: {aws: {service: ParameterStore, region: eu-west-1}}}"
            ),
            "ClusterSecretStore ps (provider aws): spec.provider.aws.service: ParameterStore is not supported; seal's aws provider reads SecretsManager only"
        );
    }

    #[test]
    fn esos_newer_defaults_are_accepted_and_dropped() {
        // ESO v1.x writes nullBytePolicy: Ignore into exported manifests; it is what seal does.
        let text = ESO_AWS_EXTERNAL_SECRET.replace(
            "metadataPolicy: None}",
            "metadataPolicy: None, nullBytePolicy: Ignore}",
        );
        assert_ne!(text, ESO_AWS_EXTERNAL_SECRET);
        let converted = from_eso(&yaml(&text)).unwrap();
        let expected = from_eso(&yaml(ESO_AWS_EXTERNAL_SECRET)).unwrap();
        assert_eq!(converted, expected);
        assert!(!converted.to_string().contains("nullBytePolicy"));
    }

    #[test]
    fn esos_features_seal_lacks_are_refused_by_field() {
        let cases = [
            (
                "  - secretKey: username\n",
                "  - secretKey: username\n    sourceRef: {generatorRef: {kind: Password, name: pw}}\n",
                "spec.data[0].sourceRef: not supported by seal: generators and per-item stores are ESO-only; every item reads through spec.secretStoreRef",
            ),
            (
                "engineVersion: v2",
                "engineVersion: v1",
                "spec.target.template.engineVersion: only v2 templates are supported (seal's template language is the part of ESO's v2 that reads and transforms values)",
            ),
            (
                "mergePolicy: Replace",
                "templateFrom: [{configMap: {name: t, items: [{key: k}]}}]",
                "spec.target.template.templateFrom: not supported by seal; put the templates inline in template.data",
            ),
            (
                "property: username, conversionStrategy: Default",
                "property: username, conversionStrategy: Unicode",
                "spec.data[0].remoteRef.conversionStrategy: only Default is supported (values are read as they are stored)",
            ),
            (
                "property: password, conversionStrategy: Default, decodingStrategy: None, metadataPolicy: None",
                "property: password, metadataPolicy: Fetch",
                "spec.data[1].remoteRef.metadataPolicy: only None is supported (seal reads secret values, not their metadata)",
            ),
            (
                "    name: ml-batch-db\n    creationPolicy",
                "    name: ml-batch-db\n    manifest: {apiVersion: v1, kind: ConfigMap}\n    creationPolicy",
                "spec.target.manifest: an ESO field seal does not support",
            ),
            (
                "creationPolicy: Owner",
                "creationPolicy: Adopt",
                "spec.target.creationPolicy: must be one of Owner, Orphan, Merge, None",
            ),
            (
                "creationPolicy: Owner",
                "creationPolicy: CreateOrMerge",
                "spec.target.creationPolicy: CreateOrMerge (ESO v1.x) is not supported by seal: use Merge when the Secret always exists (seal adds the items), or Owner or Orphan when seal should create it",
            ),
            (
                "refreshInterval: 1h0m0s",
                "refreshInterval: 1h0m0s\n  syncWindows: {kind: deny, windows: [{schedule: \"0 22 * * 1-5\", duration: 8h}]}",
                "spec.syncWindows: not supported by seal (ESO v1.x): seal refreshes on refreshInterval and refreshPolicy alone; remove the windows, or keep this ExternalSecret on ESO",
            ),
            (
                "property: username, conversionStrategy: Default",
                "property: username, conversionStrategy: Default, nullBytePolicy: Fail",
                "spec.data[0].remoteRef.nullBytePolicy: only Ignore is supported (ESO v1.x): seal writes values as they are stored, NUL bytes included",
            ),
            (
                "      type: Opaque",
                "      metadata: {finalizers: [example.com/keep]}\n      type: Opaque",
                "spec.target.template.metadata.finalizers: not supported by seal: it puts no finalizers on the Secrets it writes, so deleting one is never blocked",
            ),
            (
                "    - regexp: {source",
                "    - merge: {into: config}\n    - regexp: {source",
                "spec.dataFrom[1].rewrite[0].merge: not supported by seal (ESO v1.x): seal rewrites keys with regexp only",
            ),
            (
                "refreshInterval: 1h0m0s",
                "refreshInterval: 1d",
                "spec.refreshInterval: \"1d\": a Kubernetes field takes no days (write hours, e.g. 24h)",
            ),
        ];
        for (from, to, message) in cases {
            let text = ESO_AWS_EXTERNAL_SECRET.replacen(from, to, 1);
            assert_ne!(text, ESO_AWS_EXTERNAL_SECRET, "{from}");
            assert_eq!(
                eso_error(&text),
                format!(
                    "ExternalSecret ml-batch/ml-batch-db (store SecretStore aws-store): {message}"
                )
            );
        }
        // A dataFrom sourceRef too.
        let text = ESO_AWS_EXTERNAL_SECRET.replace(
            "  - extract: {key: ml/batch-config",
            "  - sourceRef: {generatorRef: {kind: ECRAuthorizationToken, name: ecr}}\n  - extract: {key: ml/batch-config",
        );
        assert!(eso_error(&text).ends_with("spec.dataFrom[0].sourceRef: not supported by seal: generators and per-item stores are ESO-only; every item reads through spec.secretStoreRef"));
    }

    #[test]
    fn invalid_stores_are_refused_with_their_rule() {
        let both = ESO_VAULT_STORE.replace(
            "  provider:\n",
            "  provider:\n    aws: {service: SecretsManager, region: eu-west-1}\n",
        );
        assert_eq!(
            eso_error(&both),
            "ClusterSecretStore vault-backend (provider aws): spec.provider: exactly one of aws, vault must be set, found 2"
        );
        let bad_version = ESO_VAULT_STORE.replace("version: v2", "version: v3");
        assert_eq!(
            eso_error(&bad_version),
            "ClusterSecretStore vault-backend (provider vault): spec.provider.vault.version: must be one of v1, v2"
        );
        let userpass = ESO_VAULT_STORE.replace(
            "        kubernetes:\n",
            "        userPass: {path: userpass, username: u}\n        kubernetes:\n",
        );
        assert_eq!(
            eso_error(&userpass),
            "ClusterSecretStore vault-backend (provider vault): spec.provider.vault.auth.userPass: an ESO field seal does not support"
        );
    }

    #[test]
    fn seals_additions_do_not_convert_to_eso() {
        let mut seal = from_eso(&yaml(ESO_AWS_EXTERNAL_SECRET)).unwrap();
        seal["spec"]["rolloutRestartTargets"] = json!([{"kind": "Deployment", "name": "w"}]);
        assert_eq!(
            to_eso(&seal).unwrap_err().field,
            "spec.rolloutRestartTargets"
        );
        let store = yaml(
            "apiVersion: seal.dev/v1alpha1\nkind: SecretStore\nmetadata: {name: moto, namespace: t}\nspec: {provider: {aws: {service: SecretsManager, region: us-east-1, endpointURL: 'http://127.0.0.1:5000'}}}",
        );
        assert_eq!(
            to_eso(&store).unwrap_err().to_string(),
            "SecretStore t/moto (provider aws): spec.provider.aws.endpointURL: seal's addition, which ESO does not have (ESO reads an endpoint override from its controller's environment); remove it to convert"
        );
        let typo = yaml(
            "apiVersion: seal.dev/v1alpha1\nkind: SecretStore\nmetadata: {name: v, namespace: t}\nspec: {provider: {vault: {server: 'http://v', auht: {}}}}",
        );
        assert_eq!(
            to_eso(&typo).unwrap_err().to_string(),
            "SecretStore t/v (provider vault): spec.provider.vault.auht: not a field of seal.dev/v1alpha1 SecretStore"
        );
    }

    #[test]
    fn other_documents_are_not_classified() {
        assert_eq!(classify("v1", "Secret"), None);
        assert_eq!(
            classify("external-secrets.io/v1alpha1", "ExternalSecret"),
            None
        );
        assert_eq!(
            classify("external-secrets.io/v1beta1", "SecretStore"),
            Some((Api::Eso, EsoKind::SecretStore))
        );
        assert_eq!(
            classify("seal.dev/v1alpha1", "ExternalSecret"),
            Some((Api::Seal, EsoKind::ExternalSecret))
        );
        assert!(from_eso(&json!({"apiVersion": "v1", "kind": "Secret"})).is_err());
    }

    #[test]
    fn errors_never_quote_values() {
        // A value that looks like a secret in a field that is not a string.
        let text = ESO_AWS_EXTERNAL_SECRET.replace("immutable", "x").replace(
            "    name: ml-batch-db\n    creationPolicy",
            "    name: ml-batch-db\n    immutable: hunter2\n    creationPolicy",
        );
        let message = eso_error(&text);
        assert!(!message.contains("hunter2"), "{message}");
        assert!(
            message.ends_with("spec.target.immutable: must be true or false"),
            "{message}"
        );
    }
}
