//! Permissions kube-reloader works without, as upstream does with the RBAC its chart grants
//! (no `watch` on workloads, no `patch` on CronJobs and Jobs, core Events only): what each
//! workaround is, what it costs, and the rule that removes it. Reported once at start (log),
//! as `kube_reloader_degraded{kind,missing}` and on `/ready`.

use std::sync::RwLock;

use crate::model::workload::WorkloadKind;

/// One missing permission worked around.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Degradation {
    /// The Kubernetes kind the permission is about (Deployment, CronJob, Event, ...).
    pub kind: &'static str,
    /// The workload kind, for workload permissions.
    pub workload: Option<WorkloadKind>,
    /// The verb that is not granted.
    pub missing: &'static str,
    /// Where (a namespace), or `None` for the whole cluster.
    pub namespace: Option<String>,
    /// The RBAC rule that would remove the workaround.
    pub rule: String,
    /// What the workaround costs.
    pub cost: &'static str,
}

impl Degradation {
    /// One line for the log and `/ready`.
    pub fn describe(&self) -> String {
        format!(
            "degraded: no {} on {} in {}: {}. Fix: grant {}",
            self.missing,
            self.kind,
            self.namespace.as_deref().unwrap_or("all namespaces"),
            self.cost,
            self.rule
        )
    }
}

/// The workaround for a workload kind lacking `verb` (while `list` is granted), as its cost;
/// `None` when there is none (the kind's reloads need that verb).
pub fn workaround(kind: WorkloadKind, verb: &str) -> Option<&'static str> {
    match (kind, verb) {
        (_, "watch") => Some(
            "LIST of this kind in a namespace each time a watched source there changes (and once \
             at start) instead of one watch; a workload that appears between two changes is \
             seen at the next one",
        ),
        (WorkloadKind::CronJob, "patch") => Some(
            "no ledger on the CronJob: what was applied is read back from the Jobs created for \
             it (kube-reloader.io/created-for), so a CronJob none of whose Jobs is left, and \
             whose sources change while kube-reloader is down, gets no Job for that change",
        ),
        (WorkloadKind::Job, "patch") => Some(
            "no ledger before the first change and no finalizer holding a Job between its \
             DELETE and its CREATE: a Job is re-created for the first change seen after its \
             creation, and a restart inside that window (milliseconds) loses the re-creation",
        ),
        _ => None,
    }
}

/// What publishing Events costs without `events.k8s.io` (core v1 Events, as upstream).
pub const CORE_EVENTS: &str = "Events are published through the core v1 Event API (as upstream \
     does) instead of events.k8s.io/v1, without series aggregation";

/// The workarounds in force.
#[derive(Debug, Default)]
pub struct Degradations {
    list: RwLock<Vec<Degradation>>,
}

impl Degradations {
    /// Records one workaround.
    pub fn add(&self, degradation: Degradation) {
        self.write().push(degradation);
    }

    /// Whether `kind` lacks `verb` somewhere.
    pub fn lacks(&self, kind: WorkloadKind, verb: &str) -> bool {
        self.read()
            .iter()
            .any(|d| d.workload == Some(kind) && d.missing == verb)
    }

    /// Whether a workload of `kind` may lack a record of a change it missed: we may not watch
    /// it (it can appear to us only after the change) or not record a baseline on it.
    pub fn reload_unrecorded(&self, kind: WorkloadKind) -> bool {
        self.lacks(kind, "watch") || self.lacks(kind, "patch")
    }

    /// Every workaround.
    pub fn all(&self) -> Vec<Degradation> {
        self.read().clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Degradation>> {
        self.list
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Degradation>> {
        self.list
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_watch_and_the_job_kinds_patch_have_a_workaround() {
        let table = [
            (WorkloadKind::Deployment, "watch", true),
            (WorkloadKind::Rollout, "watch", true),
            (WorkloadKind::Deployment, "patch", false),
            (WorkloadKind::StatefulSet, "patch", false),
            (WorkloadKind::CronJob, "patch", true),
            (WorkloadKind::Job, "patch", true),
            (WorkloadKind::Job, "delete", false),
            (WorkloadKind::Job, "create", false),
        ];
        for (kind, verb, worked_around) in table {
            assert_eq!(
                workaround(kind, verb).is_some(),
                worked_around,
                "{kind:?} {verb}"
            );
        }
    }

    #[test]
    fn the_registry_answers_per_kind_and_verb() {
        let degradations = Degradations::default();
        degradations.add(Degradation {
            kind: "CronJob",
            workload: Some(WorkloadKind::CronJob),
            missing: "patch",
            namespace: None,
            rule: "a ClusterRole with rule {...}".into(),
            cost: "x",
        });
        assert!(degradations.lacks(WorkloadKind::CronJob, "patch"));
        assert!(!degradations.lacks(WorkloadKind::CronJob, "watch"));
        assert!(degradations.reload_unrecorded(WorkloadKind::CronJob));
        assert!(!degradations.reload_unrecorded(WorkloadKind::Deployment));
        let line = degradations.all()[0].describe();
        assert!(
            line.starts_with(
                "degraded: no patch on CronJob in all namespaces: x. Fix: grant a ClusterRole"
            ),
            "{line}"
        );
    }
}
