//! An ExternalSecret's status: the `Ready` condition ([`crate::protocols::ready_condition`]),
//! `observedGeneration`, `binding`, and, after a read, `refreshTime` and `syncedResourceVersion`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use seal_api::external_secret::{SecretBinding, reason};
use seal_api::{ExternalSecret, ExternalSecretStatus};

use super::{Context, Outcome, StatusError};
use crate::protocols::ready_condition::{self, Observed};

/// Writes the status when it differs from what `es` says (or values were read, which moves
/// `refreshTime`). Returns whether the condition changed.
pub(super) async fn write_status(
    ctx: &Context,
    es: &ExternalSecret,
    outcome: &Outcome,
) -> Result<bool, StatusError> {
    let observed = Observed {
        ready: outcome.reason == reason::SECRET_SYNCED,
        reason: outcome.reason,
        message: &outcome.message,
        generation: es.metadata.generation,
    };
    let current = es.status.clone().unwrap_or_default();
    let condition_same = ready_condition::same_condition(&current.conditions, &observed);
    if ready_condition::says(&current.conditions, current.observed_generation, &observed)
        && !outcome.refreshed
    {
        return Ok(false);
    }
    let now = Timestamp::now();
    let status = ExternalSecretStatus {
        observed_generation: observed.generation,
        refresh_time: if outcome.refreshed {
            Some(Time(now))
        } else {
            current.refresh_time.clone()
        },
        synced_resource_version: if outcome.refreshed {
            es.resource_version()
        } else {
            current.synced_resource_version.clone()
        },
        binding: Some(SecretBinding {
            name: es.spec.target().secret_name(&es.name_any()).to_owned(),
        }),
        conditions: vec![ready_condition::condition(
            &current.conditions,
            &observed,
            now,
        )],
    };
    Api::<ExternalSecret>::namespaced(ctx.client.clone(), &es.namespace().unwrap_or_default())
        .patch_status(
            &es.name_any(),
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "status": status })),
        )
        .await
        .map_err(StatusError::Write)?;
    Ok(!condition_same)
}
