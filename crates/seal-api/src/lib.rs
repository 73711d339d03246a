//! seal's Kubernetes API: the `SealedSecret` custom resource and the model around it.
//!
//! - [`sealed_secret`]: the `seal.dev/v1alpha1` types, from which `crdgen` writes the CRD YAML.
//! - [`bitnami`]: Bitnami's `bitnami.com/v1alpha1` SealedSecret and lossless conversion both ways.
//! - [`sealing`] and [`unsealing`]: Secret → SealedSecret by kubeseal's rules, and back with a key
//!   ring that tries the recorded key first.
//! - [`manifest`]: reading and writing YAML/JSON streams of these objects, with line numbers and
//!   errors that never quote a value.
//!
//! No IO happens here: callers bring text and keys.

pub mod bitnami;
pub mod manifest;
pub mod sealed_secret;
pub mod sealing;
pub mod unsealing;

pub use sealed_secret::{
    SealedSecret, SealedSecretSpec, SealedSecretStatus, SealingScope, SecretTemplate,
};

/// The annotation kubectl writes with the whole applied object, plaintext included: never copied.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The CRD YAML for every resource of this crate, as `crdgen` prints it and `deploy/crds/` holds it.
///
/// # Panics
/// Never: a CRD built from these types always serializes.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let crd = SealedSecret::crd();
    let value = serde_json::to_value(&crd).expect("invariant: a CRD serializes to JSON");
    serde_yaml::to_string(&value).expect("invariant: a JSON value serializes to YAML")
}
