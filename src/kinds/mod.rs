//! One module per workload kind, behind one trait: its API (for discovery, RBAC and Event
//! references), the permissions it needs, its watch, how it takes a patch, how it carries out a
//! reload, and any state of its own. The [`Registry`] drives everything that is per kind:
//! discovery, the RBAC self-check, spawning the watchers and dispatching writes.
//!
//! Adding a kind: a new module here implementing [`KindModule`] (and [`WorkloadResource`] for
//! its type), its variant in [`WorkloadKind`], one line in [`Registry::new`], and its rules in the
//! chart.

mod cronjob;
mod daemonset;
mod deployment;
mod deployment_config;
mod job;
mod rollout;
mod statefulset;

use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ObjectReference;
use serde_json::Value;

use crate::config::Settings;
use crate::model::edit::{POD_TEMPLATE, TemplateEdit};
use crate::model::patch;
use crate::model::plan::Change;
use crate::model::planner::{PodTemplate, Reload};
use crate::model::workload::{WorkloadKey, WorkloadKind, WorkloadView};
use crate::reconcile::Context;
use crate::reconcile::error::WriteError;
use crate::watch::listing::{self, Lister};
use crate::watch::workloads::{self, WorkloadResource};

/// Where a kind's API lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiInfo {
    /// API group ("" for core).
    pub group: &'static str,
    /// API version.
    pub version: &'static str,
    /// Plural resource name.
    pub plural: &'static str,
}

impl ApiInfo {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// An optional API: what to say when discovery finds it absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Optional {
    /// Logged at warning level when true (the user asked for the kind by a flag), else info.
    pub warn: bool,
    /// The message.
    pub absent: &'static str,
}

/// One reload to carry out.
#[derive(Debug, Clone, Copy)]
pub struct Work<'a> {
    /// The workload as planned.
    pub view: &'a WorkloadView,
    /// The pod template the plan read (a Rollout's `workloadRef` Deployment's, or its own).
    pub pod: PodTemplate<'a>,
    /// The reload.
    pub reload: &'a Reload,
    /// Unix seconds now.
    pub now: i64,
}

impl Work<'_> {
    /// The edit of the pod template this reload makes.
    pub fn edit(&self, strategy: crate::model::Strategy) -> TemplateEdit {
        let containers: Vec<&str> = self
            .pod
            .spec
            .containers
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        let mut edit = TemplateEdit::new(
            strategy,
            &self.view.key.namespace,
            &containers,
            &self.reload.changes,
            self.now,
        );
        edit.prune(&self.reload.stale);
        edit
    }
}

/// A reload finished from memory: the workload it was planned on (for Events) and its changes.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The workload as it was when the reload was planned.
    pub view: WorkloadView,
    /// The sources that caused it.
    pub changes: Vec<Change>,
}

/// Whether a reload wrote anything (a Job may turn out gone or already replaced).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The reload landed.
    Yes,
    /// Nothing needed writing after all.
    Nothing,
}

/// A workload kind kube-reloader reloads.
pub trait Kind: Send + Sync {
    /// The kind.
    fn kind(&self) -> WorkloadKind;
    /// Its API.
    fn api(&self) -> ApiInfo;
    /// The verbs it needs with these settings; `None` when the kind is not used.
    fn verbs(&self, settings: &Settings) -> Option<&'static [&'static str]>;
    /// For an API a cluster may not serve: what to say when it is absent. `None`: always served.
    fn optional(&self, _settings: &Settings) -> Option<Optional> {
        None
    }
    /// Kinds that must be watched for this one to be (a CronJob's Jobs).
    fn requires(&self) -> &'static [WorkloadKind] {
        &[]
    }
    /// Kinds whose first list this one's plans wait for when they are watched.
    fn after(&self) -> &'static [WorkloadKind] {
        &[]
    }
    /// The watch loop for `namespace` (or everywhere).
    fn watch(&self, ctx: Arc<Context>, namespace: Option<String>) -> BoxFuture<'static, ()>;
    /// The list loop for `namespace` (or everywhere), when we may list the kind but not
    /// watch it.
    fn list(
        &self,
        ctx: Arc<Context>,
        namespace: Option<String>,
        lister: Arc<Lister>,
    ) -> BoxFuture<'static, ()>;
    /// One patch of a workload of this kind (strategic or merge, as the kind takes it); the
    /// object returned goes into the store.
    fn patch<'a>(
        &'a self,
        ctx: &'a Context,
        key: &'a WorkloadKey,
        body: Value,
    ) -> BoxFuture<'a, Result<(), WriteError>>;
    /// Carries out a reload.
    fn reload<'a>(
        &'a self,
        ctx: &'a Context,
        work: Work<'a>,
    ) -> BoxFuture<'a, Result<Written, WriteError>>;
    /// Work this kind holds in memory for `key` beyond what the cluster shows (a Job to create
    /// whose old copy is already gone): finish it before planning. `Ok(Some)` when a reload
    /// landed.
    fn resume<'a>(
        &'a self,
        _ctx: &'a Context,
        _key: &'a WorkloadKey,
    ) -> Option<BoxFuture<'a, Result<Option<Finished>, WriteError>>> {
        None
    }
    /// Sees every workload the watchers store or drop (a CronJob remembers its Jobs).
    fn observe(&self, _view: &WorkloadView, _present: bool) {}
    /// The ledger kept elsewhere for a workload we may not write it on, read instead of its
    /// annotation (see [`crate::model::planner::PlanInput::recorded`]).
    fn recorded(&self, _ctx: &Context, _view: &WorkloadView) -> Option<String> {
        None
    }
    /// Its own state, for the diagnostics endpoint (names and counts only).
    fn diagnostics(&self) -> Option<Value> {
        None
    }
}

/// What a kind's module provides; [`Kind`] (its API, watch and patch from `Object`'s type) is
/// derived from it.
pub trait KindModule: Send + Sync + 'static {
    /// The Kubernetes type of the kind.
    type Object: WorkloadResource + k8s_openapi::Resource;
    /// See [`Kind::verbs`].
    fn verbs(&self, settings: &Settings) -> Option<&'static [&'static str]>;
    /// See [`Kind::optional`].
    fn optional(&self, _settings: &Settings) -> Option<Optional> {
        None
    }
    /// See [`Kind::requires`].
    fn requires(&self) -> &'static [WorkloadKind] {
        &[]
    }
    /// See [`Kind::after`].
    fn after(&self) -> &'static [WorkloadKind] {
        &[]
    }
    /// See [`Kind::reload`].
    fn reload<'a>(
        &'a self,
        ctx: &'a Context,
        work: Work<'a>,
    ) -> BoxFuture<'a, Result<Written, WriteError>>;
    /// See [`Kind::resume`].
    fn resume<'a>(
        &'a self,
        _ctx: &'a Context,
        _key: &'a WorkloadKey,
    ) -> Option<BoxFuture<'a, Result<Option<Finished>, WriteError>>> {
        None
    }
    /// See [`Kind::observe`].
    fn observe(&self, _view: &WorkloadView, _present: bool) {}
    /// See [`Kind::recorded`].
    fn recorded(&self, _ctx: &Context, _view: &WorkloadView) -> Option<String> {
        None
    }
    /// See [`Kind::diagnostics`].
    fn diagnostics(&self) -> Option<Value> {
        None
    }
}

impl<M: KindModule> Kind for M {
    fn kind(&self) -> WorkloadKind {
        <M::Object as WorkloadResource>::KIND
    }
    fn api(&self) -> ApiInfo {
        api_of::<M::Object>()
    }
    fn verbs(&self, settings: &Settings) -> Option<&'static [&'static str]> {
        KindModule::verbs(self, settings)
    }
    fn optional(&self, settings: &Settings) -> Option<Optional> {
        KindModule::optional(self, settings)
    }
    fn requires(&self) -> &'static [WorkloadKind] {
        KindModule::requires(self)
    }
    fn after(&self) -> &'static [WorkloadKind] {
        KindModule::after(self)
    }
    fn watch(&self, ctx: Arc<Context>, namespace: Option<String>) -> BoxFuture<'static, ()> {
        Box::pin(workloads::run::<M::Object>(ctx, namespace))
    }
    fn list(
        &self,
        ctx: Arc<Context>,
        namespace: Option<String>,
        lister: Arc<Lister>,
    ) -> BoxFuture<'static, ()> {
        Box::pin(listing::run::<M::Object>(ctx, namespace, lister))
    }
    fn patch<'a>(
        &'a self,
        ctx: &'a Context,
        key: &'a WorkloadKey,
        body: Value,
    ) -> BoxFuture<'a, Result<(), WriteError>> {
        Box::pin(async move { ctx.writer.patch::<M::Object>(key, body).await.map(|_| ()) })
    }
    fn reload<'a>(
        &'a self,
        ctx: &'a Context,
        work: Work<'a>,
    ) -> BoxFuture<'a, Result<Written, WriteError>> {
        KindModule::reload(self, ctx, work)
    }
    fn resume<'a>(
        &'a self,
        ctx: &'a Context,
        key: &'a WorkloadKey,
    ) -> Option<BoxFuture<'a, Result<Option<Finished>, WriteError>>> {
        KindModule::resume(self, ctx, key)
    }
    fn observe(&self, view: &WorkloadView, present: bool) {
        KindModule::observe(self, view, present)
    }
    fn recorded(&self, ctx: &Context, view: &WorkloadView) -> Option<String> {
        KindModule::recorded(self, ctx, view)
    }
    fn diagnostics(&self) -> Option<Value> {
        KindModule::diagnostics(self)
    }
}

/// Every kind.
pub struct Registry {
    kinds: Vec<Box<dyn Kind>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// The registry of every kind kube-reloader knows.
    pub fn new() -> Self {
        Self {
            kinds: vec![
                Box::new(deployment::Deployments),
                Box::new(statefulset::StatefulSets::default()),
                Box::new(daemonset::DaemonSets::default()),
                Box::new(job::Jobs::default()),
                Box::new(cronjob::CronJobs::default()),
                Box::new(rollout::Rollouts),
                Box::new(deployment_config::DeploymentConfigs),
            ],
        }
    }

    /// The module of one kind.
    pub fn get(&self, kind: WorkloadKind) -> Option<&dyn Kind> {
        self.kinds
            .iter()
            .find(|k| k.kind() == kind)
            .map(|k| k.as_ref())
    }

    /// Every kind, in registry order.
    pub fn iter(&self) -> impl Iterator<Item = &dyn Kind> {
        self.kinds.iter().map(|k| k.as_ref())
    }

    /// Lets every kind see a workload stored or dropped by a watcher.
    pub fn observe(&self, view: &WorkloadView, present: bool) {
        for kind in &self.kinds {
            kind.observe(view, present);
        }
    }

    /// The reference an Event about `view` points at.
    pub fn object_reference(&self, view: &WorkloadView) -> ObjectReference {
        ObjectReference {
            api_version: self.get(view.key.kind).map(|k| k.api().api_version()),
            kind: Some(view.key.kind.as_str().into()),
            name: Some(view.key.name.to_string()),
            namespace: Some(view.key.namespace.to_string()),
            uid: Some(view.uid.clone()),
            ..ObjectReference::default()
        }
    }
}

/// The API of `K`, from its type.
fn api_of<K: k8s_openapi::Resource>() -> ApiInfo {
    ApiInfo {
        group: K::GROUP,
        version: K::VERSION,
        plural: K::URL_PATH_SEGMENT,
    }
}

/// The reload of a kind whose pod template is at `spec.template` and takes a strategic merge:
/// markers and ledger in one PATCH, with `extra` merged in (a Deployment's pause).
async fn template_reload<K: WorkloadResource>(
    ctx: &Context,
    work: Work<'_>,
    extra: Option<Value>,
) -> Result<Written, WriteError> {
    let edit = work.edit(ctx.settings.strategy);
    let mut body = patch::reload(&edit, POD_TEMPLATE, &work.reload.ledger);
    if let Some(extra) = extra {
        body = patch::combine(body, extra);
    }
    if let Some(stamp) = reloaded_at(ctx, work.now) {
        body = patch::combine(body, stamp);
    }
    ctx.writer.patch::<K>(&work.view.key, body).await?;
    Ok(Written::Yes)
}

/// The `reloaded-at` stamp a reload writes on metadata while the governor follows rollouts
/// (a concurrency cap, rate limit or health gate), from which it counts them.
pub fn reloaded_at(ctx: &Context, now: i64) -> Option<Value> {
    ctx.settings.limits.follows_rollouts().then(|| {
        serde_json::json!({"metadata": {"annotations": {
            crate::model::governor::RELOADED_AT_ANNOTATION: now.to_string()
        }}})
    })
}

/// A kind whose reload is one strategic-merge PATCH of `spec.template` and that needs nothing
/// else (StatefulSets, DaemonSets).
pub struct TemplateKind<K>(std::marker::PhantomData<fn() -> K>);

impl<K> Default for TemplateKind<K> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<K: WorkloadResource + k8s_openapi::Resource> KindModule for TemplateKind<K> {
    type Object = K;
    fn verbs(&self, _: &Settings) -> Option<&'static [&'static str]> {
        Some(&["list", "watch", "patch"])
    }
    fn reload<'a>(
        &'a self,
        ctx: &'a Context,
        work: Work<'a>,
    ) -> BoxFuture<'a, Result<Written, WriteError>> {
        Box::pin(template_reload::<K>(ctx, work, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_registered_once_with_its_api() {
        let registry = Registry::new();
        let all = [
            WorkloadKind::Deployment,
            WorkloadKind::DaemonSet,
            WorkloadKind::StatefulSet,
            WorkloadKind::CronJob,
            WorkloadKind::Job,
            WorkloadKind::Rollout,
            WorkloadKind::DeploymentConfig,
        ];
        assert_eq!(registry.iter().count(), all.len());
        for kind in all {
            let module = registry.get(kind).unwrap();
            let api = module.api();
            assert!(
                !api.plural.is_empty() && !api.version.is_empty(),
                "{kind:?}"
            );
        }
        assert_eq!(
            registry
                .get(WorkloadKind::Rollout)
                .unwrap()
                .api()
                .api_version(),
            "argoproj.io/v1alpha1"
        );
        assert_eq!(
            registry.get(WorkloadKind::CronJob).unwrap().api(),
            ApiInfo {
                group: "batch",
                version: "v1",
                plural: "cronjobs"
            }
        );
    }
}
