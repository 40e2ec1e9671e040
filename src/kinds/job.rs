//! Jobs: as upstream, a reload deletes the Job and creates it again with the same name, its
//! spec and the markers (a finished Job runs again). Made durable with a finalizer:
//!
//! 1. a dry-run CREATE of the new Job proves RBAC, admission and validation would pass (it
//!    answers 409 only because the name is still taken), before the old Job is touched;
//! 2. a PATCH puts our finalizer on the old Job (UID-guarded);
//! 3. a DELETE (UID precondition) marks it for deletion; our finalizer keeps it, and its spec,
//!    readable on the API server, so a restart at any point from here finishes the work;
//! 4. once no other finalizer holds it, another dry-run, then a PATCH removes our finalizer
//!    (the API server deletes the object) and the CREATE makes the new Job, carrying the
//!    ledger, so nothing re-runs it for the same change.
//!
//! From step 2 on, the new Job is also held in memory: if the old one disappears without us
//! (someone removed every finalizer, or step 4's CREATE failed after the PATCH), it is created
//! from memory ([`Kind::resume`]). Only a restart while the old Job is already gone and the new
//! one not yet created loses the re-creation.
//!
//! Without `patch` on Jobs (upstream's chart grants none), steps 2 and 4's PATCHes are left out:
//! the DELETE is followed by the CREATE at once, with only memory holding the new Job between
//! them, and the ledger goes onto the new Job at `create`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use futures::future::BoxFuture;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use super::{Finished, KindModule, Work, Written};
use crate::config::Settings;
use crate::model::edit::TemplateEdit;
use crate::model::ledger::{LEDGER_ANNOTATION, RECREATE_FINALIZER};
use crate::model::patch;
use crate::model::workload::{WorkloadKey, WorkloadKind, WorkloadView};
use crate::reconcile::Context;
use crate::reconcile::error::WriteError;
use crate::reconcile::writer::Deleted;
use crate::watch::workloads::WorkloadResource;

impl WorkloadResource for Job {
    const KIND: WorkloadKind = WorkloadKind::Job;
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
    fn project_into(&self, view: &mut WorkloadView) {
        view.progress = Some(crate::model::progress::job(self));
        let mut job = self.clone();
        job.status = None;
        job.metadata.managed_fields = None;
        view.job = Some(Box::new(job));
    }
}

/// A re-creation under way: the old Job's UID, the Job to create, what to announce.
struct Unfinished {
    old_uid: String,
    job: Job,
    finished: Finished,
}

/// The Job kind, with the re-creations under way.
#[derive(Default)]
pub struct Jobs {
    unfinished: Mutex<HashMap<WorkloadKey, Unfinished>>,
}

impl KindModule for Jobs {
    type Object = Job;
    fn verbs(&self, settings: &Settings) -> Option<&'static [&'static str]> {
        // Jobs are watched for their own reloads, and because a CronJob reload creates one.
        match (settings.policy.ignore_jobs, settings.policy.ignore_cronjobs) {
            (false, _) => Some(&["list", "watch", "patch", "create", "delete"]),
            (true, false) => Some(&["list", "watch", "create"]),
            (true, true) => None,
        }
    }
    fn reload<'a>(
        &'a self,
        ctx: &'a Context,
        work: Work<'a>,
    ) -> BoxFuture<'a, Result<Written, WriteError>> {
        Box::pin(self.recreate(ctx, work))
    }
    fn resume<'a>(
        &'a self,
        ctx: &'a Context,
        key: &'a WorkloadKey,
    ) -> Option<BoxFuture<'a, Result<Option<Finished>, WriteError>>> {
        let (old_uid, job, finished) = {
            let unfinished = self.lock();
            let entry = unfinished.get(key)?;
            (
                entry.old_uid.clone(),
                entry.job.clone(),
                entry.finished.clone(),
            )
        };
        // While the old Job exists the cluster says where the re-creation is: plan normally.
        // Without `patch` nothing holds it for us, and without `watch` we may not see it go:
        // ask the API server.
        if let Some(stored) = ctx.workloads.get(key)
            && stored.view.uid == old_uid
        {
            if !(stored.view.deleting && ctx.degraded.lacks(WorkloadKind::Job, "patch")) {
                return None;
            }
            return Some(Box::pin(async move {
                let api: kube::Api<Job> = kube::Api::namespaced(ctx.client.clone(), &key.namespace);
                match api.get_opt(&key.name).await {
                    Ok(Some(job)) if job.metadata.uid.as_deref() == Some(old_uid.as_str()) => {
                        Err(WriteError::Blocked(
                            "the old Job is still being deleted (held by another finalizer); it is created again once it is gone".into(),
                        ))
                    }
                    Ok(_) => {
                        ctx.workloads.remove(key, &old_uid);
                        Ok(match self.create(ctx, key, &job).await? {
                            Written::Yes => Some(finished),
                            Written::Nothing => None,
                        })
                    }
                    Err(e) => Err(WriteError::from_kube(e, "get", "batch", "jobs", &key.namespace)),
                }
            }));
        }
        Some(Box::pin(async move {
            tracing::info!(workload = %key, "the old Job is gone; creating the new one");
            Ok(match self.create(ctx, key, &job).await? {
                Written::Yes => Some(finished),
                Written::Nothing => None,
            })
        }))
    }
    fn diagnostics(&self) -> Option<Value> {
        Some(serde_json::json!({"job_recreations_under_way": self.lock().len()}))
    }
}

impl Jobs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<WorkloadKey, Unfinished>> {
        self.unfinished
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn recreate(&self, ctx: &Context, work: Work<'_>) -> Result<Written, WriteError> {
        let view = work.view;
        let key = &view.key;
        let Some(old) = view.job.as_deref() else {
            return Ok(Written::Nothing);
        };
        let edit = work.edit(ctx.settings.strategy);
        let mut fresh = fresh_job(old, &work.reload.ledger, &edit);
        if ctx.settings.limits.follows_rollouts() {
            fresh.metadata.annotations.get_or_insert_default().insert(
                crate::model::governor::RELOADED_AT_ANNOTATION.to_owned(),
                work.now.to_string(),
            );
        }
        let remember = || {
            self.lock().insert(
                key.clone(),
                Unfinished {
                    old_uid: view.uid.clone(),
                    job: fresh.clone(),
                    finished: Finished {
                        view: view.clone(),
                        changes: work.reload.changes.clone(),
                    },
                },
            );
        };
        let held = if view.recreating() {
            remember();
            old.clone()
        } else if ctx.degraded.lacks(WorkloadKind::Job, "patch") {
            // No finalizer to hold it: delete, then create at once (or, while another
            // finalizer holds the old Job, once it is gone: see `resume`).
            gate(ctx.writer.create(&key.namespace, &fresh, true).await)?;
            remember();
            return match ctx.writer.delete::<Job>(key, &view.uid).await {
                Ok(Deleted::Gone) => self.create(ctx, key, &fresh).await,
                Ok(Deleted::Held(job)) => Err(WriteError::Blocked(format!(
                    "the old Job is still being deleted (held by finalizer {}); it is created again once it is gone",
                    job.metadata.finalizers.unwrap_or_default().join(", ")
                ))),
                Err(WriteError::NotFound | WriteError::Conflict(_)) => {
                    self.lock().remove(key);
                    tracing::info!(workload = %key, "the Job to re-create was deleted by someone else; nothing to do");
                    Ok(Written::Nothing)
                }
                Err(e) => {
                    self.lock().remove(key);
                    Err(e)
                }
            };
        } else {
            gate(ctx.writer.create(&key.namespace, &fresh, true).await)?;
            match ctx
                .writer
                .patch::<Job>(key, patch::hold_for_recreation(&view.uid))
                .await
            {
                Ok(_) => remember(),
                // Gone already (e.g. its TTL ran out), or replaced by a newer Job (the UID in
                // the patch does not match): nothing of the planned one is left to re-run.
                Err(WriteError::NotFound | WriteError::Conflict(_)) => {
                    tracing::info!(workload = %key, "the Job to re-create is gone or already replaced; nothing to do");
                    return Ok(Written::Nothing);
                }
                Err(e) => return Err(e),
            }
            match ctx.writer.delete::<Job>(key, &view.uid).await {
                Ok(Deleted::Held(job)) => *job,
                // Someone removed our finalizer meanwhile: the name is free, create now.
                Ok(Deleted::Gone) => return self.create(ctx, key, &fresh).await,
                Err(WriteError::NotFound | WriteError::Conflict(_)) => {
                    self.lock().remove(key);
                    tracing::info!(workload = %key, "the Job to re-create was deleted by someone else; nothing to do");
                    return Ok(Written::Nothing);
                }
                // Not deleted (denied, timed out): take our finalizer off again, so a live Job
                // never keeps it (a later delete by anyone would otherwise re-run it).
                Err(e) => {
                    self.lock().remove(key);
                    if let Err(release) = ctx
                        .writer
                        .patch::<Job>(key, patch::release_from_recreation(&view.uid))
                        .await
                    {
                        tracing::warn!(workload = %key, error = %release, "cannot remove our finalizer after a failed delete; the next attempt retries");
                    }
                    return Err(e);
                }
            }
        };
        let others: Vec<&str> = held
            .metadata
            .finalizers
            .iter()
            .flatten()
            .map(String::as_str)
            .filter(|f| *f != RECREATE_FINALIZER)
            .collect();
        if !others.is_empty() {
            return Err(WriteError::Blocked(format!(
                "the old Job is still being deleted (held by finalizer {}); it is created again once it is gone",
                others.join(", ")
            )));
        }
        // Last check before the point where only memory holds the new Job.
        gate(ctx.writer.create(&key.namespace, &fresh, true).await)?;
        let uid = held.metadata.uid.clone().unwrap_or_default();
        match ctx
            .writer
            .patch::<Job>(key, patch::release_from_recreation(&uid))
            .await
        {
            // Released (the API server deletes it now), or released by an earlier attempt.
            Ok(_) | Err(WriteError::NotFound) => {}
            Err(e) => return Err(e),
        }
        self.create(ctx, key, &fresh).await
    }

    /// Creates the new Job; on success (or when it exists already) the re-creation is over.
    async fn create(
        &self,
        ctx: &Context,
        key: &WorkloadKey,
        fresh: &Job,
    ) -> Result<Written, WriteError> {
        match ctx.writer.create(&key.namespace, fresh, false).await {
            Ok(_) => {
                self.lock().remove(key);
                Ok(Written::Yes)
            }
            // Created by an attempt whose answer we lost (or by someone else): the watch shows
            // it and the next plan compares its ledger.
            Err(WriteError::Conflict(_)) => {
                self.lock().remove(key);
                tracing::info!(workload = %key, "a Job of that name exists already; planning it as it is");
                Ok(Written::Nothing)
            }
            Err(e) => Err(e),
        }
    }
}

/// Passes a dry-run CREATE that was refused only because the name is taken (or, for a quota
/// counting the old Job, refused by the quota); stops on an RBAC denial, a rejection of the
/// object, or a transient error, before anything irreversible.
fn gate(result: Result<Job, WriteError>) -> Result<(), WriteError> {
    match result {
        Ok(_) | Err(WriteError::Conflict(_)) => Ok(()),
        Err(e @ WriteError::Forbidden { .. }) if e.missing_rule().is_some() => Err(e),
        Err(WriteError::Forbidden { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The Job a reload creates in place of `old`: same name, spec and owner, with the
/// identity fields and the labels the Job controller derives from the old UID removed (as
/// upstream does), the selector cleared so the API server derives a new one, and our ledger.
fn fresh_job(old: &Job, ledger: &str, edit: &TemplateEdit) -> Job {
    const DERIVED_LABELS: [&str; 4] = [
        "controller-uid",
        "batch.kubernetes.io/controller-uid",
        "batch.kubernetes.io/job-name",
        "job-name",
    ];
    let strip = |labels: &Option<BTreeMap<String, String>>| {
        labels.as_ref().map(|l| {
            l.iter()
                .filter(|(k, _)| !DERIVED_LABELS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<BTreeMap<_, _>>()
        })
    };
    let mut annotations = old.metadata.annotations.clone().unwrap_or_default();
    if ledger.is_empty() {
        annotations.remove(LEDGER_ANNOTATION);
    } else {
        annotations.insert(LEDGER_ANNOTATION.to_owned(), ledger.to_owned());
    }
    let mut spec = old.spec.clone().unwrap_or_default();
    spec.selector = None;
    spec.manual_selector = None;
    if let Some(meta) = spec.template.metadata.as_mut() {
        meta.labels = strip(&meta.labels);
    }
    edit.apply(&mut spec.template);
    Job {
        metadata: ObjectMeta {
            name: old.metadata.name.clone(),
            namespace: old.metadata.namespace.clone(),
            labels: strip(&old.metadata.labels),
            annotations: Some(annotations),
            owner_references: old.metadata.owner_references.clone(),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Strategy;
    use serde_json::json;

    #[test]
    fn the_fresh_job_keeps_spec_and_owner_and_drops_identity_and_finalizers() {
        let old: Job = serde_json::from_value(json!({
            "metadata": {"name": "migrate", "namespace": "ns", "uid": "old-uid", "resourceVersion": "5",
                         "labels": {"team": "data", "controller-uid": "old-uid", "job-name": "migrate"},
                         "finalizers": [RECREATE_FINALIZER, "example.com/hold"],
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "c", "uid": "c1"}]},
            "spec": {"backoffLimit": 2, "manualSelector": true, "selector": {"matchLabels": {"controller-uid": "old-uid"}},
                     "template": {"metadata": {"labels": {"role": "m", "batch.kubernetes.io/controller-uid": "old-uid"}},
                                  "spec": {"restartPolicy": "Never", "containers": [{"name": "task", "image": "t"}]}}}
        }))
        .unwrap();
        let edit = TemplateEdit::new(Strategy::EnvVars, "ns", &["task"], &[], 0);
        let fresh = fresh_job(&old, "{\"configmap/cfg\":\"x\"}", &edit);
        let value = serde_json::to_value(&fresh).unwrap();
        assert_eq!(value["metadata"]["name"], "migrate");
        assert!(
            value["metadata"].get("uid").is_none()
                && value["metadata"].get("resourceVersion").is_none()
        );
        assert_eq!(value["metadata"]["labels"], json!({"team": "data"}));
        assert!(value["metadata"].get("finalizers").is_none());
        assert_eq!(value["metadata"]["ownerReferences"][0]["name"], "c");
        assert_eq!(
            value["metadata"]["annotations"][LEDGER_ANNOTATION],
            "{\"configmap/cfg\":\"x\"}"
        );
        assert!(
            value["spec"].get("selector").is_none()
                && value["spec"].get("manualSelector").is_none()
        );
        assert_eq!(
            value["spec"]["template"]["metadata"]["labels"],
            json!({"role": "m"})
        );
        assert_eq!(value["spec"]["backoffLimit"], 2);
    }

    #[test]
    fn the_dry_run_gate_stops_only_on_what_the_real_create_would_hit() {
        let forbidden = |message: &str| WriteError::Forbidden {
            verb: "create",
            group: "batch".into(),
            resource: "jobs".into(),
            namespace: "ns".into(),
            message: message.into(),
        };
        assert!(gate(Err(WriteError::Conflict("already exists".into()))).is_ok());
        assert!(gate(Ok(Job::default())).is_ok());
        assert!(gate(Err(forbidden("User x cannot create resource \"jobs\""))).is_err());
        assert!(
            gate(Err(forbidden("exceeded quota: q"))).is_ok(),
            "the old Job frees the quota"
        );
        assert!(
            gate(Err(WriteError::Rejected {
                code: 422,
                message: "invalid".into()
            }))
            .is_err()
        );
        assert!(gate(Err(WriteError::Transient("timeout".into()))).is_err());
    }
}
