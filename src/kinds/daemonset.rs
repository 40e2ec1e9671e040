//! DaemonSets: one strategic-merge PATCH of the pod template carrying the markers and the ledger
//! (the generic [`TemplateKind`](super::TemplateKind)).

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::PodTemplateSpec;

use crate::model::workload::{WorkloadKind, WorkloadView};
use crate::watch::workloads::WorkloadResource;

impl WorkloadResource for DaemonSet {
    const KIND: WorkloadKind = WorkloadKind::DaemonSet;
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
    fn project_into(&self, view: &mut WorkloadView) {
        view.progress = Some(crate::model::progress::daemonset(self));
    }
}

/// The DaemonSet kind.
pub type DaemonSets = super::TemplateKind<DaemonSet>;
