//! Every label and annotation name seal reads or writes on Kubernetes objects: the wire names users
//! see in `kubectl get -o yaml`, write into manifests, and select on. One home, used by every
//! binary (the CLI, the controller, the agent's tests), so a name cannot drift between the side
//! that writes it and the side that reads it.
//!
//! seal's own names start with `seal.dev/`; Bitnami's, which seal honours for compatibility, with
//! `sealedsecrets.bitnami.com/`. Both prefixes are reserved: no produced Secret carries a label
//! under them that its author wrote ([`RESERVED_LABEL_PREFIXES`]).

/// Label prefixes no produced Secret may carry from a template.
pub const RESERVED_LABEL_PREFIXES: &[&str] = &["seal.dev/", "sealedsecrets.bitnami.com/"];

// On the plaintext Secret a developer seals (read by `seal`).

/// Annotation choosing the scope (`strict`, `namespace-wide`, `cluster-wide`) when no scope is
/// given on the command line.
pub const SCOPE_ANNOTATION: &str = "seal.dev/scope";
/// Annotation marking a plaintext Secret manifest as intended (fixtures, examples), so `seal scan`
/// lets it pass. It describes the plaintext file, so it is not copied into the sealed template.
pub const PLAINTEXT_ALLOWED_ANNOTATION: &str = "seal.dev/plaintext-allowed";

// On a SealedSecret or its template.

/// Where seal keeps the sealing certificate's fingerprint on a Bitnami-shaped manifest.
pub const FINGERPRINT_ANNOTATION: &str = "seal.dev/certificate-fingerprint";
/// Template annotation: do not set an owner reference on the produced Secret.
pub const SKIP_OWNER_ANNOTATION: &str = "seal.dev/skip-owner-references";
/// Bitnami's namespace-wide scope annotation.
pub const NAMESPACE_WIDE_ANNOTATION: &str = "sealedsecrets.bitnami.com/namespace-wide";
/// Bitnami's cluster-wide scope annotation.
pub const CLUSTER_WIDE_ANNOTATION: &str = "sealedsecrets.bitnami.com/cluster-wide";
/// Bitnami's template annotation: do not set an owner reference on the produced Secret.
pub const BITNAMI_SKIP_OWNER_ANNOTATION: &str =
    "sealedsecrets.bitnami.com/skip-set-owner-references";

// On an ExternalSecret.

/// A new value refreshes the ExternalSecret now (ESO's `force-sync`).
pub const FORCE_SYNC_ANNOTATION: &str = "seal.dev/force-sync";

// On a Secret the controller produced.

/// Label on every Secret produced from a SealedSecret: the SealedSecret's uid.
pub const SEALED_SECRET_UID_LABEL: &str = "seal.dev/sealed-secret-uid";
/// Label on every Secret produced from an ExternalSecret: the ExternalSecret's uid.
pub const EXTERNAL_SECRET_UID_LABEL: &str = "seal.dev/external-secret-uid";
/// Annotation on a Secret produced from an ExternalSecret: the ExternalSecret's name (the Secret's
/// own name may differ), which maps a change of the Secret back to the ExternalSecret.
pub const EXTERNAL_SECRET_ANNOTATION: &str = "seal.dev/external-secret";
/// Annotation that versions before 2026-12-04 wrote on a Secret produced from an ExternalSecret:
/// a plain SHA-256 of everything applied, values included. No longer written; the controller's
/// next write of such a Secret removes it, since anyone who reads the metadata could test guesses
/// of a low-entropy value against it.
pub const LEGACY_DATA_HASH_ANNOTATION: &str = "seal.dev/data-hash";
/// Annotation on a Secret produced from a SealedSecret: what it was unsealed from, as a keyed
/// digest (HMAC-SHA256 under a key derived from a sealing key) over the SealedSecret's uid and spec
/// and the produced items. A restarted controller that finds it valid skips the decryption; an
/// edit of the items or of the annotation makes it invalid.
pub const UNSEALED_FROM_ANNOTATION: &str = "seal.dev/unsealed-from";

// In the status of every kind the controller reconciles.

/// The condition type every kind reports its state under.
pub const CONDITION_READY: &str = "Ready";

// On an existing Secret, put there by its owner.

/// The controller may take the Secret over.
pub const MANAGED_ANNOTATION: &str = "seal.dev/managed";
/// The controller adds the sealed or synced items and keeps the others.
pub const PATCH_ANNOTATION: &str = "seal.dev/patch";
/// Bitnami's [`MANAGED_ANNOTATION`], honoured for `bitnami.com` SealedSecrets.
pub const BITNAMI_MANAGED_ANNOTATION: &str = "sealedsecrets.bitnami.com/managed";
/// Bitnami's [`PATCH_ANNOTATION`], honoured for `bitnami.com` SealedSecrets.
pub const BITNAMI_PATCH_ANNOTATION: &str = "sealedsecrets.bitnami.com/patch";

// On a workload's pod template (rollout on change).

/// The prefix of the pod-template annotation holding a produced Secret's checksum; the Secret's
/// name follows it (or a digest of the name, where the whole would pass 63 characters).
pub const CHECKSUM_ANNOTATION_PREFIX: &str = "seal.dev/secret-checksum-";

// On a ServiceAccount.

/// Lets stores of its namespace (and ClusterSecretStores that name it) request tokens for it.
pub const TOKEN_OPT_IN_ANNOTATION: &str = "seal.dev/allow-store-tokens";

// The controller's keys and their backup, in its key namespace.

/// Label that marks seal's key Secrets; its value is the key's state ([`KEY_ACTIVE`],
/// [`KEY_COMPROMISED`]).
pub const SEALING_KEY_LABEL: &str = "seal.dev/sealing-key";
/// The [`SEALING_KEY_LABEL`] value of a key in use.
pub const KEY_ACTIVE: &str = "active";
/// The [`SEALING_KEY_LABEL`] value of a key that must not be used again.
pub const KEY_COMPROMISED: &str = "compromised";
/// Label that marks Bitnami's key Secrets.
pub const BITNAMI_KEY_LABEL: &str = "sealedsecrets.bitnami.com/sealed-secrets-key";
/// Annotation on a key Secret asking for a new key; its value is when the request was made.
pub const RENEW_REQUEST_ANNOTATION: &str = "seal.dev/renew-requested-at";
/// Name of the key backup ConfigMap.
pub const BACKUP_CONFIGMAP: &str = "seal-key-backup";
/// Label on the backup ConfigMap, which `seal keys restore` looks for.
pub const BACKUP_LABEL: &str = "seal.dev/key-backup";
/// Annotation on the backup ConfigMap recording what it holds: the recovery certificate's and the
/// keys' fingerprints.
pub const BACKUP_OF_ANNOTATION: &str = "seal.dev/backup-of";
