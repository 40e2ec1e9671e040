//! The writes of a reload, per kind: strategic patches, merge patches of custom kinds, Jobs
//! created from CronJobs, re-created Jobs, pauses.

use super::*;

impl Engine {
    /// Writes one reload the way its kind takes it.
    pub(super) async fn write_reload(
        &self,
        view: &WorkloadView,
        changes: &[plan::Change],
        ledger: &str,
        now: i64,
    ) -> Result<Written, kube::Error> {
        let key = &view.key;
        let containers = view.container_names();
        match key.kind {
            WorkloadKind::CronJob => self
                .instantiate_cronjob(view, changes, ledger, now)
                .await
                .map(|()| Written::Yes),
            WorkloadKind::Job => self.recreate_job(view, changes, ledger, now).await,
            WorkloadKind::Rollout => self
                .reload_rollout(view, changes, ledger, now)
                .await
                .map(|()| Written::Yes),
            WorkloadKind::DeploymentConfig => self
                .merge_reload(view, changes, ledger, now)
                .await
                .map(|()| Written::Yes),
            _ => {
                let mut body = patch::reload(
                    self.options.strategy,
                    template_path(key.kind),
                    &key.namespace,
                    &containers,
                    changes,
                    ledger,
                    now,
                );
                let mut resume_in = None;
                if key.kind == WorkloadKind::Deployment {
                    match pause::pause_for(
                        &view.annotations,
                        &self.policy.keys.pause_period,
                        &self.policy.keys.paused_at,
                        view.paused,
                    ) {
                        Some(Ok(period)) => {
                            body = patch::combine(
                                body,
                                patch::pause(&self.policy.keys.paused_at, &pause::rfc3339(now)),
                            );
                            resume_in = Some(period);
                        }
                        Some(Err(invalid)) => {
                            // Upstream refuses the reload; we reload without the pause and say why.
                            let note = format!(
                                "Reloading Deployment {}/{} without a pause: annotation {}: {invalid}",
                                key.namespace, key.name, self.policy.keys.pause_period
                            );
                            self.report_once(view, format!("pause={}", invalid.value), note)
                                .await;
                        }
                        None => {}
                    }
                }
                self.patch(key, body).await?;
                if let Some(period) = resume_in {
                    tracing::info!(workload = %key, seconds = period.as_secs(), "paused for the pause period; will resume");
                    self.queue.add_after(key.clone(), period);
                }
                Ok(Written::Yes)
            }
        }
    }

    /// Resumes a Deployment whose pause period is over, or schedules that; read from the
    /// object, so a restart or a new leader resumes on time.
    pub(super) async fn maintain_pause(
        &self,
        view: &WorkloadView,
        pause: Option<PauseState>,
    ) -> Result<bool, String> {
        let key = &view.key;
        match pause {
            Some(PauseState::ResumeNow) => {
                self.patch(key, patch::resume(&self.policy.keys.paused_at))
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(workload = %key, "pause period over; resumed the Deployment");
                Ok(true)
            }
            Some(PauseState::StaleMarker) => {
                self.patch(key, patch::forget_pause(&self.policy.keys.paused_at))
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(workload = %key, "the Deployment was resumed by someone else; dropped our paused-at marker");
                Ok(true)
            }
            Some(PauseState::ResumeIn(delay)) => {
                self.queue.add_after(key.clone(), delay);
                Ok(false)
            }
            Some(PauseState::NotPausedByUs) | None => Ok(false),
        }
    }

    /// Argo Rollouts: `rollout-strategy: restart` sets `spec.restartAt`; otherwise the markers go
    /// into the pod template with a merge patch (CRDs take no strategic merge), or, for a
    /// Rollout with `workloadRef`, into the referenced Deployment's template (which the Rollout
    /// controller follows), with the ledger on the Rollout.
    pub(super) async fn reload_rollout(
        &self,
        view: &WorkloadView,
        changes: &[plan::Change],
        ledger: &str,
        now: i64,
    ) -> Result<(), kube::Error> {
        let key = &view.key;
        let restart = view
            .annotations
            .get(ROLLOUT_STRATEGY)
            .is_some_and(|s| s == "restart");
        if restart {
            return self
                .patch(key, patch::restart_at(ledger, &pause::rfc3339(now)))
                .await;
        }
        if let Some(Ok(deployment)) = &view.workload_ref {
            let target = WorkloadKey {
                kind: WorkloadKind::Deployment,
                namespace: key.namespace.clone(),
                name: deployment.clone(),
            };
            let containers = view.container_names();
            let markers = patch::template_markers(
                self.options.strategy,
                patch::POD_TEMPLATE,
                &key.namespace,
                &containers,
                changes,
                now,
            );
            self.patch(&target, markers).await?;
            return self.patch(key, patch::baseline(ledger)).await;
        }
        self.merge_reload(view, changes, ledger, now).await
    }

    /// The reload of a custom kind: a JSON merge patch of its pod template, guarded by the
    /// resourceVersion the plan was made from.
    pub(super) async fn merge_reload(
        &self,
        view: &WorkloadView,
        changes: &[plan::Change],
        ledger: &str,
        now: i64,
    ) -> Result<(), kube::Error> {
        let key = &view.key;
        let body = patch::merge_reload(
            self.options.strategy,
            &view.template(),
            &key.namespace,
            changes,
            ledger,
            self.workloads.get_versioned(key).and_then(|(_, v)| v),
            now,
        );
        self.patch(key, body).await
    }

    /// Upstream's Job reload: delete the Job and create it again with the same name and the
    /// markers applied (a finished Job runs again). The delete is conditional on the UID we
    /// planned for, and the new Job carries the ledger, so no retry or restart deletes the new
    /// one or re-runs the Job twice for one change.
    pub(super) async fn recreate_job(
        &self,
        view: &WorkloadView,
        changes: &[plan::Change],
        ledger: &str,
        now: i64,
    ) -> Result<Written, kube::Error> {
        let key = &view.key;
        let Some(old) = view.job.as_deref() else {
            return Ok(Written::Nothing);
        };
        let fresh = fresh_job(old, ledger, |template| {
            patch::apply_to_template(
                template,
                self.options.strategy,
                &key.namespace,
                changes,
                now,
            )
        });
        let api = Api::<Job>::namespaced(self.client.clone(), &key.namespace);
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            preconditions: Some(Preconditions {
                uid: Some(view.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        // Held before the delete: from here on the new Job must be created, even on retry.
        self.pending_jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                key.clone(),
                PendingJob {
                    job: fresh.clone(),
                    old: view.clone(),
                    changes: changes.to_vec(),
                },
            );
        match api.delete(&key.name, &params).await {
            Ok(_) => {}
            // Gone already (e.g. its TTL ran out), or replaced by a newer Job: there is
            // nothing of the planned one left to re-run.
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
                self.take_pending_job(key);
                tracing::info!(workload = %key, "the Job to re-create is gone or already replaced; nothing to do");
                return Ok(Written::Nothing);
            }
            Err(e) => {
                self.take_pending_job(key);
                return Err(e);
            }
        }
        self.create_pending_job(key, &fresh)
            .await
            .map(|_| Written::Yes)
            .map_err(|message| kube::Error::Service(message.into()))
    }

    pub(super) fn pending_job(&self, key: &WorkloadKey) -> Option<PendingJob> {
        self.pending_jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    pub(super) fn take_pending_job(&self, key: &WorkloadKey) -> Option<PendingJob> {
        self.pending_jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key)
    }

    /// Creates the Job a reload deleted; while the old one is still being removed the create
    /// is retried, and on any other failure the work queue retries it.
    pub(super) async fn create_pending_job(
        &self,
        key: &WorkloadKey,
        job: &Job,
    ) -> Result<bool, String> {
        let api = Api::<Job>::namespaced(self.client.clone(), &key.namespace);
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        for _ in 0..20 {
            match api.create(&params, job).await {
                Ok(created) => {
                    self.take_pending_job(key);
                    if let Some(view) = workloads::project(&created) {
                        self.workloads
                            .upsert(view, workloads::resource_version(&created));
                    }
                    return Ok(true);
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    let current = api.get_opt(&key.name).await.map_err(|e| e.to_string())?;
                    let ours = current.as_ref().is_some_and(|j| {
                        j.metadata.deletion_timestamp.is_none()
                            && j.annotations().get(LEDGER_ANNOTATION)
                                == job.annotations().get(LEDGER_ANNOTATION)
                    });
                    if ours {
                        // Created by an attempt whose answer we lost.
                        self.take_pending_job(key);
                        return Ok(true);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
                Err(e) => return Err(format!("cannot re-create the Job: {e}")),
            }
        }
        Err("the old Job is still being deleted; will retry".into())
    }

    /// Upstream's CronJob reload: a Job from the job template with the markers applied,
    /// `generateName: <cronjob>-`, `cronjob.kubernetes.io/instantiate: manual` and a controller
    /// owner reference; the CronJob's own template is left alone. The Job carries the ledger it
    /// was made for, and the CronJob's ledger is written after it, so a failure in between is
    /// retried without creating a second Job.
    pub(super) async fn instantiate_cronjob(
        &self,
        view: &WorkloadView,
        changes: &[plan::Change],
        ledger: &str,
        now: i64,
    ) -> Result<(), kube::Error> {
        let key = &view.key;
        let marker = (key.namespace.clone(), key.name.clone(), ledger.to_owned());
        let already = self
            .created_jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&marker);
        if !already {
            let template = view.job_template.clone().unwrap_or_default();
            let mut spec = template.spec.unwrap_or_default();
            patch::apply_to_template(
                &mut spec.template,
                self.options.strategy,
                &key.namespace,
                changes,
                now,
            );
            let template_meta = template.metadata.unwrap_or_default();
            let mut annotations = std::collections::BTreeMap::from([(
                "cronjob.kubernetes.io/instantiate".to_owned(),
                "manual".to_owned(),
            )]);
            annotations.extend(template_meta.annotations.unwrap_or_default());
            annotations.insert(CREATED_FOR_ANNOTATION.to_owned(), ledger.to_owned());
            let job = Job {
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
            };
            let params = PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..PostParams::default()
            };
            let created = Api::<Job>::namespaced(self.client.clone(), &key.namespace)
                .create(&params, &job)
                .await?;
            tracing::debug!(workload = %key, job = %created.name_any(), "created a Job from the CronJob");
            self.created_jobs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(marker);
        }
        self.patch(key, patch::baseline(ledger)).await
    }

    /// One strategic-merge PATCH; the object it returns goes straight into the cache, so a
    /// re-plan right after (before the watch echoes our write) does not write again.
    pub(super) async fn patch(
        &self,
        key: &WorkloadKey,
        body: serde_json::Value,
    ) -> Result<(), kube::Error> {
        match key.kind {
            WorkloadKind::Deployment => self.patch_as::<Deployment>(key, body).await,
            WorkloadKind::StatefulSet => self.patch_as::<StatefulSet>(key, body).await,
            WorkloadKind::DaemonSet => self.patch_as::<DaemonSet>(key, body).await,
            WorkloadKind::CronJob => self.patch_as::<CronJob>(key, body).await,
            WorkloadKind::Job => self.patch_as::<Job>(key, body).await,
            WorkloadKind::Rollout => self.patch_as::<Rollout>(key, body).await,
            WorkloadKind::DeploymentConfig => self.patch_as::<DeploymentConfig>(key, body).await,
        }
    }

    pub(super) async fn patch_as<K: WorkloadResource + serde::Serialize>(
        &self,
        key: &WorkloadKey,
        body: serde_json::Value,
    ) -> Result<(), kube::Error> {
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        // Custom resources take no strategic merge; our bodies only name maps and whole lists
        // there, so a JSON merge patch means the same.
        let body = if K::STRATEGIC {
            Patch::Strategic(body)
        } else {
            Patch::Merge(body)
        };
        let updated = Api::<K>::namespaced(self.client.clone(), &key.namespace)
            .patch(&key.name, &params, &body)
            .await?;
        if let Some(view) = workloads::project(&updated) {
            self.workloads
                .upsert(view, workloads::resource_version(&updated));
        }
        Ok(())
    }
}

pub(super) fn template_path(kind: WorkloadKind) -> patch::TemplatePath {
    match kind {
        WorkloadKind::CronJob => <CronJob as WorkloadResource>::TEMPLATE_PATH,
        _ => patch::POD_TEMPLATE,
    }
}

/// The Job a reload creates in place of `old`: same name, spec and owner, with the
/// identity fields and the labels the Job controller derives from the old UID removed (as
/// upstream does), the selector cleared so the API server derives a new one, and our ledger.
fn fresh_job(old: &Job, ledger: &str, edit: impl FnOnce(&mut PodTemplateSpec)) -> Job {
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
    edit(&mut spec.template);
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
