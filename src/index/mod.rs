//! In-memory indexes fed by the watchers: the digest-only source cache and the workload store
//! with its fan-out indexes. [`affected`] answers "which workloads must be planned again after
//! this source changed" from them alone.

pub mod sources;
pub mod workloads;

use crate::model::digest::SourceKind;
use crate::model::planner::{self, PodTemplate};
use crate::model::policy::{Policy, SourceRef};
use crate::model::workload::{WorkloadKey, WorkloadKind};

pub use sources::SourceCache;
pub use workloads::{Stored, WorkloadStore};

/// The workloads of `namespace` that track source `kind/name` now, or tracked it when last
/// written (their ledger names it, so a source that stopped being tracked is dropped from the
/// ledger), plus Rollouts whose `workloadRef` cannot be resolved (their plan reports why).
/// Returns the keys and how many candidates were looked at.
pub fn affected(
    workloads: &WorkloadStore,
    sources: &SourceCache,
    policy: &Policy,
    namespace: &str,
    kind: SourceKind,
    name: &str,
) -> (Vec<WorkloadKey>, Vec<WorkloadKind>) {
    let source = SourceRef {
        kind,
        name,
        flags: sources
            .get(kind, namespace, name)
            .map(|entry| entry.flags)
            .unwrap_or_default(),
    };
    let mut keys = Vec::new();
    let mut scanned = Vec::new();
    for candidate in workloads.candidates(namespace, kind, name) {
        let view = &candidate.view;
        scanned.push(view.key.kind);
        if candidate.interest.records(kind, name) {
            keys.push(view.key.clone());
            continue;
        }
        let target = match &view.workload_ref {
            Some(Ok(deployment)) => {
                let key = WorkloadKey {
                    kind: WorkloadKind::Deployment,
                    namespace: namespace.into(),
                    name: deployment.as_str().into(),
                };
                match workloads.get(&key) {
                    Some(target) => Some(target),
                    None => {
                        keys.push(view.key.clone());
                        continue;
                    }
                }
            }
            Some(Err(_)) => {
                keys.push(view.key.clone());
                continue;
            }
            None => None,
        };
        let pod = match &target {
            Some(target) => PodTemplate::referenced(&target.view),
            None => PodTemplate::of(view),
        };
        if planner::tracks(view, &candidate.interest, pod, source, policy) {
            keys.push(view.key.clone());
        }
    }
    (keys, scanned)
}
