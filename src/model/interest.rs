//! Which sources a workload could track, computed once per workload change: the input of the
//! fan-out index (a source event looks up only the workloads that name or reference it) and of
//! the planner's candidate list (a plan looks up only those sources, not the whole namespace).

use crate::model::ObjectName;
use crate::model::annotations::Annotations;
use crate::model::digest::SourceKind;
use crate::model::ledger::{LEDGER_ANNOTATION, Ledger};
use crate::model::policy::{NamedLists, Policy, WorkloadAnnotations};
use crate::model::refs;
use crate::model::workload::{WorkloadKind, WorkloadView};

/// The source kinds, in ledger and plan order.
pub const SOURCE_KINDS: [SourceKind; 3] = [
    SourceKind::ConfigMap,
    SourceKind::Secret,
    SourceKind::SecretProviderClass,
];

/// What a workload could track.
#[derive(Debug, Clone, Default)]
pub struct Interest {
    /// Its named lists, compiled.
    pub lists: NamedLists,
    /// Names listed exactly in a named list.
    pub listed: Vec<(SourceKind, ObjectName)>,
    /// Sources its own pod spec names.
    pub referenced: Vec<(SourceKind, ObjectName)>,
    /// Sources its ledger records.
    pub recorded: Vec<(SourceKind, ObjectName)>,
    /// Source kinds with pattern items: every source of that kind in the namespace may match.
    pub scans: Vec<SourceKind>,
    /// Rollouts with `workloadRef`: the Deployment whose pod template they run.
    pub follows: Option<ObjectName>,
}

impl Interest {
    /// The interest of `view` under `policy`.
    pub fn of(view: &WorkloadView, policy: &Policy) -> Self {
        let lists = policy.named_lists(WorkloadAnnotations {
            kind: view.key.kind,
            metadata: &view.annotations,
            template: &view.template_annotations,
        });
        // A Rollout following a Deployment reads the Deployment's template annotations under
        // its own metadata; index those lists too, so the Deployment (and with it its
        // followers) is a candidate for what they name.
        let template_lists = (view.key.kind == WorkloadKind::Deployment).then(|| {
            policy.named_lists(WorkloadAnnotations {
                kind: view.key.kind,
                metadata: &Annotations::default(),
                template: &view.template_annotations,
            })
        });
        let mut listed = Vec::new();
        let mut scans = Vec::new();
        for kind in SOURCE_KINDS {
            for list in
                std::iter::once(lists.get(kind)).chain(template_lists.as_ref().map(|l| l.get(kind)))
            {
                listed.extend(list.exact_names().map(|n| (kind, ObjectName::from(n))));
                if list.has_patterns() && !scans.contains(&kind) {
                    scans.push(kind);
                }
            }
        }
        listed.sort();
        listed.dedup();
        // Kept for as long as the workload is stored: no spare capacity.
        let tight = |mut names: Vec<(SourceKind, ObjectName)>| {
            names.shrink_to_fit();
            names
        };
        scans.shrink_to_fit();
        Self {
            listed: tight(listed),
            referenced: tight(refs::referenced(&view.pod_spec)),
            recorded: tight(
                Ledger::parse(view.annotations.get(LEDGER_ANNOTATION).map(String::as_str))
                    .sources(),
            ),
            scans,
            follows: match &view.workload_ref {
                Some(Ok(name)) => Some(ObjectName::from(name.as_str())),
                _ => None,
            },
            lists,
        }
    }

    /// Every source named by this interest (listed, referenced or recorded), for the index.
    pub fn names(&self) -> impl Iterator<Item = &(SourceKind, ObjectName)> {
        self.listed
            .iter()
            .chain(&self.referenced)
            .chain(&self.recorded)
    }

    /// Whether the ledger records `kind/name`.
    pub fn records(&self, kind: SourceKind, name: &str) -> bool {
        self.recorded.iter().any(|(k, n)| *k == kind && n == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn interest_names_lists_references_and_ledger() {
        let view = WorkloadView {
            annotations: [
                (
                    "configmap.reloader.stakater.com/reload".to_owned(),
                    "app, web-.*".to_owned(),
                ),
                (
                    LEDGER_ANNOTATION.to_owned(),
                    r#"{"secret/old":"x"}"#.to_owned(),
                ),
            ]
            .into(),
            pod_spec: serde_json::from_value(json!({"containers": [
                {"name": "a", "envFrom": [{"secretRef": {"name": "db"}}]}]}))
            .unwrap(),
            ..WorkloadView::default()
        };
        let interest = Interest::of(&view, &Policy::default());
        assert_eq!(interest.listed, [(SourceKind::ConfigMap, "app".into())]);
        assert_eq!(interest.scans, [SourceKind::ConfigMap]);
        assert_eq!(interest.referenced, [(SourceKind::Secret, "db".into())]);
        assert!(interest.records(SourceKind::Secret, "old"));
        assert_eq!(interest.names().count(), 3);
    }
}
