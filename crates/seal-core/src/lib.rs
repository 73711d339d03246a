//! The sealing format of seal, with no IO, no async and no Kubernetes.
//!
//! A sealed value is a one-time AES-256-GCM key wrapped with RSA-OAEP-SHA256 to a cluster's public
//! key, the OAEP label binding it to a scope (see [`scope`]). The format is Bitnami Sealed Secrets'
//! hybrid envelope, kept byte for byte so that values move between `kubeseal` and `seal` and between
//! their controllers (see [`envelope`]). Around it: RSA key pairs ([`keys`]), the self-signed
//! certificates a controller publishes ([`cert`]) and the fingerprint that names a key
//! ([`fingerprint`]).
//!
//! All cryptography goes through one private module that uses aws-lc-rs, chosen because its RSA
//! private-key operation is constant time (the `rsa` crate's is not: RUSTSEC-2023-0071). Plaintext
//! travels in [`SecretBytes`], which zeroizes and never prints.

mod backend;
pub mod cert;
pub mod duration;
pub mod envelope;
pub mod fingerprint;
pub mod keys;
pub mod scope;
mod secret;

pub use cert::{CLOCK_SKEW, CertError, Certificate};
pub use duration::{DurationError, parse_duration, parse_kubernetes_duration};
pub use envelope::{Malformed, OpenError, SealError};
pub use fingerprint::Fingerprint;
pub use keys::{KeyError, KeySize, PrivateKey, PublicKey};
pub use scope::{Label, Scope, ScopeError};
pub use secret::SecretBytes;
