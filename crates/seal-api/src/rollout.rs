//! `spec.rolloutRestartTargets`, seal's one addition to ESO's ExternalSecret (and to its own
//! SealedSecret): the workloads to restart when the Secret's data changes.
//!
//! ESO's most requested missing feature is a pod restart on change; the usual answer is a third
//! operator (Reloader) watching every Secret in the cluster. seal's controller already knows the
//! moment the data changes, so it writes a checksum of the new data into each listed workload's pod
//! template annotations, which makes the workload's own controller roll the pods the ordinary way
//! (`maxUnavailable`, readiness gates, rollbacks all apply). Targets are in the same namespace as
//! the object that names them; nothing else is touched.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A workload in the same namespace whose pods are restarted (by a pod-template annotation) when
/// the produced Secret's data changes.
#[derive(
    Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct RolloutRestartTarget {
    /// The workload's kind.
    pub kind: WorkloadKind,
    /// The workload's name, in the same namespace.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// Kinds of workload seal can restart.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
#[non_exhaustive]
pub enum WorkloadKind {
    /// `apps/v1` Deployment.
    Deployment,
    /// `apps/v1` StatefulSet.
    StatefulSet,
}

impl WorkloadKind {
    /// The kind as Kubernetes spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
        }
    }
}
