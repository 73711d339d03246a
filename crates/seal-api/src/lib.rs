//! seal's Kubernetes API: the custom resources (`SealedSecret`, `ExternalSecret`, `SecretStore`,
//! `ClusterSecretStore`, all `seal.dev/v1alpha1`) and the model around them.
//!
//! - [`sealed_secret`]: the SealedSecret types, with Bitnami's field names.
//! - [`external_secret`] and [`secret_store`]: ExternalSecret and the two stores, with ESO's field
//!   names for the `aws` (Secrets Manager) and `vault` providers; [`eso`] converts ESO's
//!   `external-secrets.io` manifests to them and back; [`duration`] reads `refreshInterval`;
//!   [`validation`] is what their `validate()` methods report; [`rollout`] is seal's
//!   `rolloutRestartTargets`, shared by ExternalSecret and SealedSecret.
//! - [`crds`] and [`crd_files`]: the CRDs of every resource, which `crdgen` writes to `deploy/crds/`.
//! - [`bitnami`]: Bitnami's `bitnami.com/v1alpha1` SealedSecret and lossless conversion both ways.
//! - [`sealing`] and [`unsealing`]: Secret → SealedSecret by kubeseal's rules, and back with a key
//!   ring that tries the recorded key first.
//! - [`produced`]: what a Secret the controller produces for a tenant may carry (no reserved
//!   labels, no denied types).
//! - [`manifest`]: reading and writing YAML/JSON streams of these objects, with line numbers and
//!   errors that never quote a value.
//!
//! No IO happens here: callers bring text and keys.

pub mod bitnami;
pub mod eso;
pub mod external_secret;
pub mod manifest;
pub mod names;
pub mod produced;
pub mod rollout;
mod schema;
pub mod sealed_secret;
pub mod sealing;
pub mod secret_store;
pub mod unsealing;
pub mod validation;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

pub use external_secret::{ExternalSecret, ExternalSecretSpec, ExternalSecretStatus};
pub use rollout::{RolloutRestartTarget, WorkloadKind};
pub use sealed_secret::{
    SealedSecret, SealedSecretSpec, SealedSecretStatus, SealingScope, SecretTemplate,
};
pub use secret_store::{
    ClusterSecretStore, ClusterSecretStoreSpec, SecretStore, SecretStoreSpec, SecretStoreStatus,
};
pub use validation::ValidationError;

/// The annotation kubectl writes with the whole applied object, plaintext included: never copied.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The CRD of every resource of this crate: SealedSecret, ExternalSecret, SecretStore,
/// ClusterSecretStore.
pub fn crds() -> Vec<CustomResourceDefinition> {
    use kube::CustomResourceExt;
    vec![
        SealedSecret::crd(),
        ExternalSecret::crd(),
        SecretStore::crd(),
        ClusterSecretStore::crd(),
    ]
}

/// Every CRD as the file `deploy/crds/` holds it: `(<group>_<plural>.yaml, YAML)`, in the order
/// of [`crds`].
pub fn crd_files() -> Vec<(String, String)> {
    crds()
        .iter()
        .map(|crd| {
            let name = format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural);
            (name, to_yaml(crd))
        })
        .collect()
}

/// The SealedSecret CRD alone, as one YAML document (`deploy/crds/seal.dev_sealedsecrets.yaml`).
/// Kept for the callers that read exactly one CRD; [`crd_files`] has all of them.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    to_yaml(&SealedSecret::crd())
}

/// # Panics
/// Never: a CRD built from these types always serializes.
fn to_yaml(crd: &CustomResourceDefinition) -> String {
    let value = serde_json::to_value(crd).expect("invariant: a CRD serializes to JSON");
    serde_yaml::to_string(&value).expect("invariant: a JSON value serializes to YAML")
}
