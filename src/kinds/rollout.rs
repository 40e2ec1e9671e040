//! Argo Rollouts (`--is-Argo-Rollouts=true`, when the cluster serves them). A custom resource
//! takes no strategic merge, so a reload is a JSON merge patch of the pod template carrying the
//! whole container list and the resourceVersion the plan was made from (a concurrent edit gets
//! a 409 and a re-plan, never a lost update). `rollout-strategy: restart` sets `spec.restartAt`
//! instead; a Rollout with `workloadRef` gets its markers in the referenced Deployment's
//! template (which the Rollout controller follows) and its ledger on itself.

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::PodTemplateSpec;

use super::{KindModule, Optional, Work, Written};
use crate::config::Settings;
use crate::model::edit::POD_TEMPLATE;
use crate::model::patch;
use crate::model::pause;
use crate::model::policy::ROLLOUT_STRATEGY;
use crate::model::workload::{WorkloadKey, WorkloadKind, WorkloadView};
use crate::reconcile::Context;
use crate::reconcile::error::WriteError;
use crate::watch::custom::Rollout;
use crate::watch::workloads::WorkloadResource;

impl WorkloadResource for Rollout {
    const KIND: WorkloadKind = WorkloadKind::Rollout;
    const STRATEGIC: bool = false;
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().and_then(|s| s.template.as_ref())
    }
    fn project_into(&self, view: &mut WorkloadView) {
        view.progress = Some(crate::model::progress::rollout(
            self.metadata.generation,
            self.spec.as_ref().and_then(|s| s.replicas),
            self.status.as_ref(),
        ));
        view.workload_ref = (|| {
            let reference = self.spec.as_ref()?.workload_ref.as_ref()?;
            let kind = reference.kind.as_deref().unwrap_or_default();
            Some(match (&reference.name, kind) {
                (Some(name), "Deployment") if !name.is_empty() => Ok(name.clone()),
                (name, kind) => Err(format!(
                    "spec.workloadRef names {kind:?} {:?}; kube-reloader follows workloadRef to a Deployment only",
                    name.as_deref().unwrap_or_default()
                )),
            })
        })();
    }
}

/// The Rollout kind.
pub struct Rollouts;

impl KindModule for Rollouts {
    type Object = Rollout;
    fn verbs(&self, settings: &Settings) -> Option<&'static [&'static str]> {
        settings
            .argo_rollouts
            .then_some(&["list", "watch", "patch"][..])
    }
    fn optional(&self, _: &Settings) -> Option<Optional> {
        Some(Optional {
            warn: true,
            absent: "--is-Argo-Rollouts=true, but this cluster does not serve argoproj.io/v1alpha1 \
                     rollouts; Rollouts are skipped. Fix: install Argo Rollouts (its CRDs) and restart kube-reloader",
        })
    }
    fn after(&self) -> &'static [WorkloadKind] {
        &[WorkloadKind::Deployment]
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
            let restart = view
                .annotations
                .get(ROLLOUT_STRATEGY)
                .is_some_and(|s| s == "restart");
            let stamp = |body: serde_json::Value| match super::reloaded_at(ctx, work.now) {
                Some(stamp) => patch::combine(body, stamp),
                None => body,
            };
            if restart {
                ctx.writer
                    .patch::<Rollout>(
                        key,
                        stamp(patch::restart_at(ledger, &pause::rfc3339(work.now))),
                    )
                    .await?;
                return Ok(Written::Yes);
            }
            let edit = work.edit(ctx.settings.strategy);
            if let Some(Ok(deployment)) = &view.workload_ref {
                let target = WorkloadKey {
                    kind: WorkloadKind::Deployment,
                    namespace: key.namespace.clone(),
                    name: deployment.as_str().into(),
                };
                ctx.writer
                    .patch::<Deployment>(&target, edit.strategic(POD_TEMPLATE))
                    .await?;
                ctx.writer
                    .patch::<Rollout>(key, stamp(patch::baseline(ledger)))
                    .await?;
                return Ok(Written::Yes);
            }
            let body = patch::merge_reload(
                &edit,
                POD_TEMPLATE,
                &view.template(),
                ledger,
                work.reload.version,
            );
            ctx.writer.patch::<Rollout>(key, stamp(body)).await?;
            Ok(Written::Yes)
        })
    }
}
