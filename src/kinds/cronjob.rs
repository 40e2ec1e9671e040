//! CronJobs: as upstream, a reload creates a Job from the job template with the markers
//! applied (`generateName: <cronjob>-`, `cronjob.kubernetes.io/instantiate: manual`, owned by
//! the CronJob); the CronJob's own template is left alone. The Job carries the CronJob ledger it
//! was made for (`kube-reloader.io/created-for`), and the Job watch remembers it, so a failure
//! before the CronJob's ledger write, a retry or a restart creates no second Job.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use futures::future::BoxFuture;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;
use serde_json::Value;

use super::{KindModule, Work, Written};
use crate::config::Settings;
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
        view.job_template = Some(self.spec.job_template.clone());
    }
}

/// (namespace, CronJob, ledger) of a Job we created.
type Created = (String, String, String);

/// The CronJob kind, with the Jobs it created (kept current from the Job watch).
#[derive(Default)]
pub struct CronJobs {
    created: Mutex<HashSet<Created>>,
}

impl CronJobs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<Created>> {
        self.created
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
                let job = job_for(view, ledger, |template| {
                    work.edit(ctx.settings.strategy).apply(template)
                });
                let created = ctx.writer.create(&key.namespace, &job, false).await?;
                tracing::debug!(workload = %key, job = %created.name_any(), "created a Job from the CronJob");
                self.lock().insert(marker);
            }
            ctx.writer
                .patch::<CronJob>(key, patch::baseline(ledger))
                .await?;
            Ok(Written::Yes)
        })
    }
    /// A Job we created from a CronJob carries the CronJob's ledger it was made for.
    fn observe(&self, view: &WorkloadView, present: bool) {
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
            owner.name.clone(),
            ledger.clone(),
        );
        let mut created = self.lock();
        if present {
            created.insert(marker);
        } else {
            created.remove(&marker);
        }
    }
    fn diagnostics(&self) -> Option<Value> {
        Some(serde_json::json!({"cronjob_jobs_known": self.lock().len()}))
    }
}

/// Upstream's Job for a CronJob reload, with `edit` applied to the pod template.
fn job_for(view: &WorkloadView, ledger: &str, edit: impl FnOnce(&mut PodTemplateSpec)) -> Job {
    let key = &view.key;
    let template = view.job_template.clone().unwrap_or_default();
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
            namespace: Some(key.namespace.clone()),
            labels: template_meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "CronJob".into(),
                name: key.name.clone(),
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
        cronjobs.observe(&view, false);
        assert!(cronjobs.lock().is_empty());
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
