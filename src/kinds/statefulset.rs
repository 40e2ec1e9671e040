//! StatefulSets: one strategic-merge PATCH of the pod template carrying the markers and the ledger
//! (the generic [`TemplateKind`](super::TemplateKind)).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PodTemplateSpec;

use crate::model::workload::{WorkloadKind, WorkloadView};
use crate::watch::workloads::WorkloadResource;

impl WorkloadResource for StatefulSet {
    const KIND: WorkloadKind = WorkloadKind::StatefulSet;
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
    fn project_into(&self, view: &mut WorkloadView) {
        view.progress = Some(crate::model::progress::statefulset(self));
    }
}

/// The StatefulSet kind.
pub type StatefulSets = super::TemplateKind<StatefulSet>;
