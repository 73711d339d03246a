//! Disaster recovery (`--backup-cert`): every key the controller holds, sealed to an offline
//! recovery certificate, kept in one ConfigMap that is safe to commit.
//!
//! The ConfigMap [`BACKUP_CONFIGMAP`] in the key namespace holds one entry per key Secret,
//! `<secret name>.yaml`: a cluster-wide `seal.dev/v1alpha1` SealedSecret of that Secret (its
//! `tls.crt`, `tls.key`, type and labels), in the same hybrid format as every other SealedSecret.
//! Only the recovery key, kept offline, opens it: `seal keys restore --key RECOVERY_KEY BACKUP`
//! recreates the key Secrets in a new cluster, and `seal unseal --key RECOVERY_KEY` reads them.
//!
//! Sealing is randomised, so the ConfigMap is rewritten only when the set of keys or the recovery
//! certificate changes (both recorded in [`BACKUP_OF_ANNOTATION`]); git then shows one change per
//! new key rather than one per restart.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::{Api, Client};
use seal_api::manifest;
use seal_api::sealing::{SealOptions, seal_secret};
use seal_core::{Certificate, Scope};

use crate::keys::{KeySet, KeySource};
use crate::protocols::ownership::FIELD_MANAGER;
use seal_api::names::{BACKUP_CONFIGMAP, BACKUP_LABEL, BACKUP_OF_ANNOTATION};
use seal_api::names::{BITNAMI_KEY_LABEL, KEY_ACTIVE, SEALING_KEY_LABEL};

/// Why the backup could not be written. Messages never carry key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The API server refused or failed.
    #[error("writing ConfigMap {BACKUP_CONFIGMAP}: {0}")]
    Api(#[from] kube::Error),
    /// Sealing a key failed.
    #[error("sealing key Secret {0} to the recovery certificate failed")]
    Seal(String),
}

/// What the backup of `keys` to `recovery` is recorded as.
fn summary(recovery: &Certificate, keys: &KeySet) -> String {
    let fingerprints: Vec<String> = keys
        .keys()
        .iter()
        .map(|k| k.fingerprint.to_string())
        .collect();
    format!(
        "recovery={};keys={}",
        recovery.fingerprint(),
        fingerprints.join(",")
    )
}

/// Writes the backup of `keys` in `namespace` unless it already holds exactly these keys for this
/// recovery certificate. Returns whether it wrote.
pub async fn write_backup(
    client: Client,
    namespace: &str,
    recovery: &Certificate,
    keys: &KeySet,
) -> Result<bool, BackupError> {
    let api: Api<ConfigMap> = Api::namespaced(client, namespace);
    let summary = summary(recovery, keys);
    let current = api.get_opt(BACKUP_CONFIGMAP).await?;
    if current
        .as_ref()
        .and_then(|c| c.metadata.annotations.as_ref())
        .and_then(|a| a.get(BACKUP_OF_ANNOTATION))
        == Some(&summary)
    {
        return Ok(false);
    }
    let mut data = BTreeMap::new();
    for key in keys.keys() {
        let private = keys
            .ring()
            .get(key.fingerprint)
            .ok_or_else(|| BackupError::Seal(key.secret_name.clone()))?;
        let label = match key.source {
            KeySource::Seal => SEALING_KEY_LABEL,
            KeySource::Bitnami => BITNAMI_KEY_LABEL,
        };
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(key.secret_name.clone()),
                namespace: Some(namespace.to_owned()),
                labels: Some(BTreeMap::from([(label.to_owned(), KEY_ACTIVE.to_owned())])),
                ..ObjectMeta::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            data: Some(BTreeMap::from([
                (
                    "tls.crt".to_owned(),
                    ByteString(key.certificate.to_pem().into_bytes()),
                ),
                (
                    "tls.key".to_owned(),
                    ByteString(private.to_pkcs1_pem().as_bytes().to_vec()),
                ),
            ])),
            ..Secret::default()
        };
        let sealed = seal_secret(
            &secret,
            &SealOptions {
                certificate: recovery,
                scope: Some(Scope::ClusterWide),
                namespace: None,
                name: None,
                allow_empty_data: false,
            },
        )
        .map_err(|_| BackupError::Seal(key.secret_name.clone()))?;
        let yaml = manifest::write(&[sealed], manifest::Format::Yaml)
            .map_err(|_| BackupError::Seal(key.secret_name.clone()))?;
        data.insert(format!("{}.yaml", key.secret_name), yaml);
    }
    let backup = ConfigMap {
        metadata: ObjectMeta {
            name: Some(BACKUP_CONFIGMAP.into()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([(
                BACKUP_LABEL.to_owned(),
                "true".to_owned(),
            )])),
            annotations: Some(BTreeMap::from([(BACKUP_OF_ANNOTATION.to_owned(), summary)])),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..ConfigMap::default()
    };
    api.patch(
        BACKUP_CONFIGMAP,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&backup),
    )
    .await?;
    Ok(true)
}
