//! OpenShift DeploymentConfigs (when the cluster serves `apps.openshift.io/v1`): a JSON merge
//! patch of the pod template, guarded by the resourceVersion the plan was made from.

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::PodTemplateSpec;

use super::{KindModule, Optional, Work, Written};
use crate::config::Settings;
use crate::model::edit::POD_TEMPLATE;
use crate::model::patch;
use crate::model::workload::{WorkloadKind, WorkloadView};
use crate::reconcile::Context;
use crate::reconcile::error::WriteError;
use crate::watch::custom::DeploymentConfig;
use crate::watch::workloads::WorkloadResource;

impl WorkloadResource for DeploymentConfig {
    const KIND: WorkloadKind = WorkloadKind::DeploymentConfig;
    const STRATEGIC: bool = false;
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().and_then(|s| s.template.as_ref())
    }
    fn project_into(&self, view: &mut WorkloadView) {
        view.progress = Some(crate::model::progress::deployment_config(
            self.metadata.generation,
            self.spec.as_ref().and_then(|s| s.replicas),
            self.status.as_ref(),
        ));
    }
}

/// The DeploymentConfig kind.
pub struct DeploymentConfigs;

impl KindModule for DeploymentConfigs {
    type Object = DeploymentConfig;
    fn verbs(&self, _: &Settings) -> Option<&'static [&'static str]> {
        Some(&["list", "watch", "patch"])
    }
    fn optional(&self, _: &Settings) -> Option<Optional> {
        Some(Optional {
            warn: false,
            absent: "this cluster does not serve apps.openshift.io/v1 deploymentconfigs; DeploymentConfigs are skipped",
        })
    }
    fn reload<'a>(
        &'a self,
        ctx: &'a Context,
        work: Work<'a>,
    ) -> BoxFuture<'a, Result<Written, WriteError>> {
        Box::pin(async move {
            let view = work.view;
            let mut body = patch::merge_reload(
                &work.edit(ctx.settings.strategy),
                POD_TEMPLATE,
                &view.template(),
                &work.reload.ledger,
                work.reload.version,
            );
            if let Some(stamp) = super::reloaded_at(ctx, work.now) {
                body = patch::combine(body, stamp);
            }
            ctx.writer
                .patch::<DeploymentConfig>(&view.key, body)
                .await?;
            Ok(Written::Yes)
        })
    }
}
