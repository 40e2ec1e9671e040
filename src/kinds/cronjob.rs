//! CronJobs: as upstream, a reload creates a Job from the job template with the markers
//! applied (`generateName: <cronjob>-`, `cronjob.kubernetes.io/instantiate: manual`, owned by
//! the CronJob); the CronJob's own template is left alone. The Job carries the CronJob ledger it
//! was made for (`kube-reloader.io/created-for`), and the Job watch remembers it, so a failure
//! before the CronJob's ledger write, a retry or a restart creates no second Job.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use futures::future::BoxFuture;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;
use serde_json::Value;

use super::{KindModule, Work, Written};
use crate::config::Settings;
use crate::model::ObjectName;
use crate::model::ledger::CREATED_FOR_ANNOTATION;
use crate::model::patch;
use crate::model::workload::{WorkloadKind, WorkloadView};
use crate::reconcile::Context;
use crate::reconcile::error::WriteError;
use crate::watch::workloads::WorkloadResource;

impl WorkloadResource for CronJob {
    const KIND: WorkloadKind = WorkloadKind::CronJob;
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.job_template.spec.as_ref().map(|s| &s.template)
    }
    fn project_into(&self, view: &mut WorkloadView) {
        view.job_template = Some(Box::new(self.spec.job_template.clone()));
    }
}

/// (namespace, CronJob, ledger) of a Job we created.
type Created = (ObjectName, ObjectName, String);

/// The newest Job created for a CronJob: (its creation time, its name, the ledger).
type Newest = (Option<i64>, ObjectName, String);

/// The CronJob kind, with the Jobs it created (kept current from the Job watch).
#[derive(Default)]
pub struct CronJobs {
    created: Mutex<HashSet<Created>>,
    /// By (namespace, CronJob): what was last applied, for a CronJob we may not patch (its
    /// ledger lives on its Jobs). Kept when the Job goes (history limits delete Jobs), so the
    /// change it was made for is not applied twice; dropped with the CronJob.
    newest: Mutex<HashMap<(ObjectName, ObjectName), Newest>>,
}

impl CronJobs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<Created>> {
        self.created
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn newest(&self) -> std::sync::MutexGuard<'_, HashMap<(ObjectName, ObjectName), Newest>> {
        self.newest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a Job created for `cronjob` with `ledger` if it is the newest one seen.
    fn saw_job(&self, namespace: &str, cronjob: &str, job: Newest) {
        let mut newest = self.newest();
        let slot = newest.entry((namespace.into(), cronjob.into()));
        match slot {
            std::collections::hash_map::Entry::Occupied(mut held) => {
                if (job.0, &job.1) >= (held.get().0, &held.get().1) {
                    held.insert(job);
                }
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(job);
            }
        }
    }
}

impl KindModule for CronJobs {
    type Object = CronJob;
    fn verbs(&self, settings: &Settings) -> Option<&'static [&'static str]> {
        (!settings.policy.ignore_cronjobs).then_some(&["list", "watch", "patch"][..])
    }
    fn requires(&self) -> &'static [WorkloadKind] {
        &[WorkloadKind::Job]
    }
    fn after(&self) -> &'static [WorkloadKind] {
        &[WorkloadKind::Job]
    }
    fn reload<'a>(
        &'a self,
        ctx: &'a Context,
        work: Work<'a>,
    ) -> BoxFuture<'a, Result<Written, WriteError>> {
        Box::pin(async move {
            let view = work.view;
            let key = &view.key;
            let ledger = &work.reload.ledger;
            let marker = (key.namespace.clone(), key.name.clone(), ledger.clone());
            if !self.lock().contains(&marker) {
                let mut job = job_for(view, ledger, |template| {
                    work.edit(ctx.settings.strategy).apply(template)
                });
                // The Job is the CronJob's rollout: counted by the governor while it runs.
                if ctx.settings.limits.follows_rollouts() {
                    job.metadata.annotations.get_or_insert_default().insert(
                        crate::model::governor::RELOADED_AT_ANNOTATION.to_owned(),
                        work.now.to_string(),
                    );
                }
                let created = ctx.writer.create(&key.namespace, &job, false).await?;
                tracing::debug!(workload = %key, job = %created.name_any(), "created a Job from the CronJob");
                self.lock().insert(marker);
                let created_at = created
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.as_second());
                self.saw_job(
                    &key.namespace,
                    &key.name,
                    (created_at, created.name_any().into(), ledger.clone()),
                );
            }
            // Without `patch` the Job just created is the record.
            if !ctx.degraded.lacks(WorkloadKind::CronJob, "patch") {
                ctx.writer
                    .patch::<CronJob>(key, patch::baseline(ledger))
                    .await?;
            }
            Ok(Written::Yes)
        })
    }
    /// A Job we created from a CronJob carries the CronJob's ledger it was made for.
    fn observe(&self, view: &WorkloadView, present: bool) {
        if view.key.kind == WorkloadKind::CronJob && !present {
            self.newest()
                .remove(&(view.key.namespace.clone(), view.key.name.clone()));
        }
        let Some(job) = view.job.as_deref() else {
            return;
        };
        let Some(ledger) = job.annotations().get(CREATED_FOR_ANNOTATION) else {
            return;
        };
        let Some(owner) = job
            .owner_references()
            .iter()
            .find(|o| o.kind == "CronJob" && o.controller == Some(true))
        else {
            return;
        };
        let marker = (
            view.key.namespace.clone(),
            ObjectName::from(&owner.name),
            ledger.clone(),
        );
        if present {
            self.saw_job(
                &view.key.namespace,
                &owner.name,
                (view.created_at, view.key.name.clone(), ledger.clone()),
            );
        }
        let mut created = self.lock();
        if present {
            created.insert(marker);
        } else {
            created.remove(&marker);
        }
    }
    /// Without `patch` on CronJobs, the ledger of the newest Job created for it.
    fn recorded(&self, ctx: &Context, view: &WorkloadView) -> Option<String> {
        if !ctx.degraded.lacks(WorkloadKind::CronJob, "patch") {
            return None;
        }
        self.newest()
            .get(&(view.key.namespace.clone(), view.key.name.clone()))
            .map(|(_, _, ledger)| ledger.clone())
    }
    fn diagnostics(&self) -> Option<Value> {
        Some(serde_json::json!({"cronjob_jobs_known": self.lock().len()}))
    }
}

/// Upstream's Job for a CronJob reload, with `edit` applied to the pod template.
fn job_for(view: &WorkloadView, ledger: &str, edit: impl FnOnce(&mut PodTemplateSpec)) -> Job {
    let key = &view.key;
    let template = view.job_template.as_deref().cloned().unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    edit(&mut spec.template);
    let template_meta = template.metadata.unwrap_or_default();
    let mut annotations = BTreeMap::from([(
        "cronjob.kubernetes.io/instantiate".to_owned(),
        "manual".to_owned(),
    )]);
    annotations.extend(template_meta.annotations.unwrap_or_default());
    annotations.insert(CREATED_FOR_ANNOTATION.to_owned(), ledger.to_owned());
    Job {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", key.name)),
            namespace: Some(key.namespace.to_string()),
            labels: template_meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "CronJob".into(),
                name: key.name.to_string(),
                uid: view.uid.clone(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        ..Job::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::workload::WorkloadKey;

    #[test]
    fn the_job_watch_keeps_the_created_set() {
        let cronjobs = CronJobs::default();
        let mut job = Job::default();
        job.metadata.annotations = Some(BTreeMap::from([(
            CREATED_FOR_ANNOTATION.to_owned(),
            "L".to_owned(),
        )]));
        job.metadata.owner_references = Some(vec![OwnerReference {
            kind: "CronJob".into(),
            name: "nightly".into(),
            controller: Some(true),
            ..OwnerReference::default()
        }]);
        let view = WorkloadView {
            key: WorkloadKey {
                kind: WorkloadKind::Job,
                namespace: "ns".into(),
                name: "nightly-x".into(),
            },
            job: Some(Box::new(job)),
            ..WorkloadView::default()
        };
        cronjobs.observe(&view, true);
        assert!(
            cronjobs
                .lock()
                .contains(&("ns".into(), "nightly".into(), "L".into()))
        );
        let newest = |c: &CronJobs| {
            c.newest()
                .get(&("ns".into(), "nightly".into()))
                .map(|n| n.2.clone())
        };
        assert_eq!(newest(&cronjobs).as_deref(), Some("L"));
        cronjobs.observe(&view, false);
        assert!(cronjobs.lock().is_empty());
        assert_eq!(
            newest(&cronjobs).as_deref(),
            Some("L"),
            "what was applied is kept when the Job goes"
        );
        // An older Job does not displace a newer one.
        cronjobs.saw_job(
            "ns",
            "nightly",
            (Some(10), "nightly-a".into(), "OLD".into()),
        );
        cronjobs.saw_job(
            "ns",
            "nightly",
            (Some(20), "nightly-b".into(), "NEW".into()),
        );
        cronjobs.saw_job(
            "ns",
            "nightly",
            (Some(15), "nightly-c".into(), "MID".into()),
        );
        assert_eq!(newest(&cronjobs).as_deref(), Some("NEW"));
        let cronjob = WorkloadView {
            key: WorkloadKey {
                kind: WorkloadKind::CronJob,
                namespace: "ns".into(),
                name: "nightly".into(),
            },
            ..WorkloadView::default()
        };
        cronjobs.observe(&cronjob, false);
        assert_eq!(newest(&cronjobs), None, "dropped with the CronJob");
    }

    #[test]
    fn the_job_has_upstreams_shape_and_our_marker() {
        let view = WorkloadView {
            key: WorkloadKey {
                kind: WorkloadKind::CronJob,
                namespace: "ns".into(),
                name: "nightly".into(),
            },
            uid: "c1".into(),
            job_template: Some(
                serde_json::from_value(serde_json::json!({
                    "metadata": {"labels": {"team": "data"}, "annotations": {"owner": "x"}},
                    "spec": {"template": {"spec": {"containers": [{"name": "t"}]}}}
                }))
                .unwrap(),
            ),
            ..WorkloadView::default()
        };
        let job = job_for(&view, "L", |_| {});
        let meta = &job.metadata;
        assert_eq!(meta.generate_name.as_deref(), Some("nightly-"));
        let annotations = meta.annotations.as_ref().unwrap();
        assert_eq!(annotations["cronjob.kubernetes.io/instantiate"], "manual");
        assert_eq!(annotations["owner"], "x");
        assert_eq!(annotations[CREATED_FOR_ANNOTATION], "L");
        assert_eq!(meta.owner_references.as_ref().unwrap()[0].uid, "c1");
    }
}
