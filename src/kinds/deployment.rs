//! Deployments: a strategic-merge PATCH of the pod template; with upstream's pause period the
//! Deployment is paused in the same write and resumed when the period is over.

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::PodTemplateSpec;

use super::{KindModule, Work, Written, template_reload};
use crate::config::Settings;
use crate::model::patch;
use crate::model::pause;
use crate::model::workload::{WorkloadKind, WorkloadView};
use crate::reconcile::Context;
use crate::reconcile::error::WriteError;
use crate::watch::workloads::WorkloadResource;

impl WorkloadResource for Deployment {
    const KIND: WorkloadKind = WorkloadKind::Deployment;
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
    fn project_into(&self, view: &mut WorkloadView) {
        view.paused = self.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        view.progress = Some(crate::model::progress::deployment(self));
    }
}

/// The Deployment kind.
pub struct Deployments;

impl KindModule for Deployments {
    type Object = Deployment;
    fn verbs(&self, _: &Settings) -> Option<&'static [&'static str]> {
        Some(&["list", "watch", "patch"])
    }
    fn reload<'a>(
        &'a self,
        ctx: &'a Context,
        work: Work<'a>,
    ) -> BoxFuture<'a, Result<Written, WriteError>> {
        Box::pin(async move {
            let paused_at = &ctx.settings.policy.keys.paused_at;
            let pause = work
                .reload
                .pause
                .map(|_| patch::pause(paused_at, &pause::rfc3339(work.now)));
            let written = template_reload::<Deployment>(ctx, work, pause).await?;
            if let Some(period) = work.reload.pause {
                tracing::info!(workload = %work.view.key, seconds = period.as_secs(), "paused for the pause period; will resume");
            }
            Ok(written)
        })
    }
}
