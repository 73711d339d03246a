//! Rolling restarts on change (`spec.rolloutRestartTargets` of an ExternalSecret or a
//! SealedSecret): after a write that changed the produced Secret, each listed Deployment or
//! StatefulSet gets the pod-template annotation `seal.dev/secret-checksum-<secret>` set to a
//! checksum of that write, and the workload's own controller rolls its pods the ordinary way.
//!
//! The checksum is the resourceVersion of the Secret write, not a hash of the values: the
//! controller writes a Secret only when its content changes, so it changes exactly when the values
//! do, while a hash of low-entropy values in a Deployment (readable by far more people than the
//! Secret) would let anyone test guesses against it. Setting the same value again changes nothing,
//! so no rollout happens without a change. A missing target is a Warning Event, not a failed sync.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Client};
use seal_api::names::CHECKSUM_ANNOTATION_PREFIX;
use seal_api::{RolloutRestartTarget, WorkloadKind};
use tracing::{info, warn};

use super::events::Events;

/// The annotation key for `secret`: the prefix and the Secret's name, or, when that would pass
/// the 63 characters Kubernetes allows an annotation name, a digest of the name.
pub fn checksum_annotation(secret: &str) -> String {
    let key = format!("{CHECKSUM_ANNOTATION_PREFIX}{secret}");
    // The name part, after the prefix's `/`, may have at most 63 characters.
    let name = key.split_once('/').map_or(key.as_str(), |(_, name)| name);
    if name.len() <= 63 {
        return key;
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes());
    format!(
        "{CHECKSUM_ANNOTATION_PREFIX}{}",
        hex(&digest.as_ref()[..16])
    )
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// Sets the checksum of `secret` to `checksum` on every target in `namespace`, publishing an Event
/// on `regarding` for each target that is missing or refuses the patch.
pub async fn restart(
    client: &Client,
    events: &Events,
    regarding: &k8s_openapi::api::core::v1::ObjectReference,
    namespace: &str,
    targets: &[RolloutRestartTarget],
    secret: &str,
    checksum: &str,
) {
    let patch = serde_json::json!({
        "spec": {"template": {"metadata": {"annotations": {checksum_annotation(secret): checksum}}}}
    });
    for target in targets {
        let result = match target.kind {
            WorkloadKind::Deployment => Api::<Deployment>::namespaced(client.clone(), namespace)
                .patch(&target.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(drop),
            WorkloadKind::StatefulSet => Api::<StatefulSet>::namespaced(client.clone(), namespace)
                .patch(&target.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(drop),
            _ => continue,
        };
        let kind = target.kind.as_str();
        let name = &target.name;
        match result {
            Ok(()) => info!(%namespace, %kind, %name, %secret, "restarting on changed Secret"),
            Err(error) => {
                let why = match &error {
                    kube::Error::Api(status) if status.code == 404 => "does not exist".to_owned(),
                    kube::Error::Api(status) => format!("refused the patch ({})", status.code),
                    _ => "could not be reached".to_owned(),
                };
                warn!(%namespace, %kind, %name, %why, "rollout restart failed");
                let event = Event {
                    type_: EventType::Warning,
                    reason: "RolloutRestartFailed".into(),
                    note: Some(format!("{kind} {namespace}/{name} {why}")),
                    action: "RolloutRestart".into(),
                    secondary: None,
                };
                if let Err(error) = events.publish(&event, regarding).await {
                    warn!(%error, "cannot publish an Event");
                }
            }
        }
    }
}
