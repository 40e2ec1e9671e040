//! Wiring: watchers → caches → queue → plan → one PATCH → Event, metric, log line.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ObjectReference, PodTemplateSpec, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{
    Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy,
};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::watch;

use crate::config::{Scope, Settings};
use crate::model::digest::{self, SourceKind};
use crate::model::patch;
use crate::model::pause::{self, PauseState};
use crate::model::plan::{
    self, CREATED_FOR_ANNOTATION, Cause, Decision, Deleted, LEDGER_ANNOTATION, Markers,
    PlanOptions, Tracked,
};
use crate::model::policy::{
    InvalidPattern, LAST_RELOADED_FROM, Policy, ROLLOUT_STRATEGY, SourceRef, WorkloadAnnotations,
    WorkloadKind,
};
use crate::model::refs;
use crate::notify::{self, AlertSettings, Notifier};
use crate::ops::health::Health;
use crate::ops::leader::{Leadership, WriteState};
use crate::ops::metrics::Metrics;
use crate::reconcile::queue::WorkQueue;
use crate::watch::custom::{
    DeploymentConfig, Rollout, SecretProviderClass, SecretProviderClassPodStatus,
};
use crate::watch::sources::{self, SourceCache, SourceEntry};
use crate::watch::workloads::{self, WorkloadCache, WorkloadKey, WorkloadResource, WorkloadView};
use crate::watch::{NamespaceFilter, access};

mod watchers;
mod writes;

/// Field manager of every write, as upstream's, so managed-fields show who wrote the markers.
pub const FIELD_MANAGER: &str = "Reloader";
const WORKERS: usize = 4;

/// Where notifications go: upstream's `--webhook-url` mode and alerts after reloads.
#[derive(Debug, Clone, Default)]
pub struct Outbound {
    /// The sender, when either is configured.
    pub notifier: Option<Notifier>,
    /// `--webhook-url`: POST each qualifying change there and reload nothing.
    pub webhook_url: Option<String>,
    /// `ALERT_ON_RELOAD=true`: announce each reload.
    pub alerts: Option<AlertSettings>,
}

/// A Job deleted for a reload, to be created again: the new Job, and what to announce.
#[derive(Debug, Clone)]
struct PendingJob {
    job: Job,
    old: WorkloadView,
    changes: Vec<plan::Change>,
}

/// Whether a reload wrote anything (a Job may turn out gone or already replaced).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written {
    Yes,
    Nothing,
}

/// Optional kinds found served (and asked for) at startup.
#[derive(Debug, Clone, Copy, Default)]
struct Optional {
    rollouts: bool,
    deployment_configs: bool,
    csi: bool,
}

/// Everything the watchers and workers share.
pub struct Engine {
    client: Client,
    policy: Policy,
    options: PlanOptions,
    filter: NamespaceFilter,
    resource_selector: Option<String>,
    watch_configmaps: bool,
    watch_secrets: bool,
    sync_after_restart: bool,
    sources: SourceCache,
    workloads: WorkloadCache,
    queue: Arc<WorkQueue>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    recorders: HashMap<SourceKind, Recorder>,
    general_recorder: Recorder,
    /// Invalid-annotation warnings already reported, so each is published once per process.
    reported: Mutex<HashSet<(WorkloadKey, String)>>,
    synced: watch::Sender<usize>,
    leadership: Leadership,
    lease: Option<crate::ops::leader::LeaseSettings>,
    /// Jobs we created from CronJobs, as (namespace, CronJob, ledger): a retry or a restart
    /// that finds the Job for a change does not create a second one.
    created_jobs: Mutex<HashSet<(String, String, String)>>,
    /// Jobs deleted for a reload and not yet created again.
    pending_jobs: Mutex<HashMap<WorkloadKey, PendingJob>>,
    argo_rollouts: bool,
    csi: bool,
    outbound: Outbound,
    /// Per (namespace, class): the resourceVersion and digest of the newest pod status seen,
    /// so one stale pod status never turns a class's digest back.
    spc_status: Mutex<HashMap<(String, String), (u64, digest::Digest)>>,
    /// Annotations (ignore, match) of SecretProviderClasses, by (namespace, name).
    spc_annotations: Mutex<HashMap<(String, String), BTreeMap<String, String>>>,
    /// What is watched, for diagnostics.
    watched: Mutex<Vec<String>>,
    /// `RELOADER_NAMESPACE`: where the meta-info ConfigMap is published (for the self-check).
    meta_info_namespace: Option<String>,
}

impl Engine {
    /// Builds the engine from validated settings.
    pub fn new(
        client: Client,
        settings: &Settings,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        leadership: Leadership,
        outbound: Outbound,
    ) -> Arc<Self> {
        let instance = std::env::var("POD_NAME")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok());
        let recorder = |controller: &str| {
            Recorder::new(
                client.clone(),
                Reporter {
                    controller: controller.into(),
                    instance: instance.clone(),
                },
            )
        };
        let recorders = HashMap::from([
            (SourceKind::ConfigMap, recorder("reloader-configmaps")),
            (SourceKind::Secret, recorder("reloader-secrets")),
            (
                SourceKind::SecretProviderClass,
                recorder("reloader-secretproviderclasspodstatuses"),
            ),
        ]);
        Arc::new(Self {
            general_recorder: recorder("kube-reloader"),
            recorders,
            client,
            policy: settings.policy.clone(),
            options: PlanOptions {
                strategy: settings.strategy,
                reload_on_create: settings.reload_on_create,
                reload_on_delete: settings.reload_on_delete,
            },
            filter: NamespaceFilter::new(settings.scope.clone()),
            resource_selector: settings.resource_selector.clone(),
            watch_configmaps: settings.watch_configmaps,
            watch_secrets: settings.watch_secrets,
            sync_after_restart: settings.sync_after_restart && settings.reload_on_create,
            sources: SourceCache::default(),
            workloads: WorkloadCache::default(),
            queue: Arc::new(WorkQueue::with_metrics(
                metrics.workqueue_adds.clone(),
                metrics.workqueue_depth.clone(),
                metrics.workqueue_latency.clone(),
            )),
            metrics,
            health,
            reported: Mutex::new(HashSet::new()),
            synced: watch::channel(0).0,
            leadership,
            lease: settings.lease.clone(),
            created_jobs: Mutex::new(HashSet::new()),
            pending_jobs: Mutex::new(HashMap::new()),
            argo_rollouts: settings.argo_rollouts,
            csi: settings.csi,
            outbound,
            spc_status: Mutex::new(HashMap::new()),
            spc_annotations: Mutex::new(HashMap::new()),
            watched: Mutex::new(Vec::new()),
            meta_info_namespace: settings.meta_info.as_ref().map(|t| t.namespace.clone()),
        })
    }

    /// A snapshot of the engine's state for the diagnostics endpoint (names and counts only).
    pub fn diagnostics(&self) -> serde_json::Value {
        let leadership = match self.leadership.write_state() {
            WriteState::Allowed => "writing",
            WriteState::Follower => "following",
            WriteState::Fenced => "elected, waiting for a fresh lease",
        };
        let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
        for key in self.workloads.keys() {
            *by_kind.entry(key.kind.as_str()).or_default() += 1;
        }
        serde_json::json!({
            "watching": *self.watched.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
            "synced_watchers": *self.synced.borrow(),
            "sources": self.sources.len(),
            "workloads": by_kind,
            "queue_depth": self.queue.depth(),
            "pending_job_recreations": self.pending_jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len(),
            "leadership": leadership,
            "webhook_mode": self.outbound.webhook_url.is_some(),
        })
    }

    /// An API for `namespace`, or for all namespaces.
    fn scoped_api<K>(&self, namespace: Option<&str>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        match namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }

    fn watching(&self, what: String) {
        self.watched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(what);
    }

    /// Whether the API server serves `resource` in `api_version`. Only a 404 counts as absent:
    /// on any other error we assume it is served and let the watcher report and retry.
    async fn served(&self, api_version: &str, resource: &str) -> bool {
        match self.client.list_api_group_resources(api_version).await {
            Ok(list) => list.resources.iter().any(|r| r.name == resource),
            Err(kube::Error::Api(status)) if status.code == 404 => false,
            Err(e) => {
                tracing::warn!(api_version, resource, error = %e, "cannot check whether the API is served; assuming it is");
                true
            }
        }
    }

    /// Finds the optional kinds: asked for by flags, and served by this cluster.
    async fn discover(&self) -> Optional {
        let webhook_mode = self.outbound.webhook_url.is_some();
        let mut optional = Optional::default();
        if self.argo_rollouts && !webhook_mode {
            optional.rollouts = self.served("argoproj.io/v1alpha1", "rollouts").await;
            if !optional.rollouts {
                tracing::warn!(
                    "--is-Argo-Rollouts=true, but this cluster does not serve argoproj.io/v1alpha1 \
                     rollouts; Rollouts are skipped. Fix: install Argo Rollouts (its CRDs) and restart kube-reloader"
                );
            }
        }
        if !webhook_mode {
            optional.deployment_configs = self
                .served("apps.openshift.io/v1", "deploymentconfigs")
                .await;
            if !optional.deployment_configs {
                tracing::info!(
                    "this cluster does not serve apps.openshift.io/v1 deploymentconfigs; DeploymentConfigs are skipped"
                );
            }
        }
        if self.csi {
            optional.csi = self
                .served(
                    "secrets-store.csi.x-k8s.io/v1",
                    "secretproviderclasspodstatuses",
                )
                .await;
            if !optional.csi {
                tracing::warn!(
                    "--enable-csi-integration=true, but this cluster does not serve \
                     secrets-store.csi.x-k8s.io/v1 secretproviderclasspodstatuses; CSI reloads are off. \
                     Fix: install the Secrets Store CSI driver and restart kube-reloader"
                );
            }
        }
        optional
    }

    /// Starts every watcher, waits for all to sync, then runs the workers until the process
    /// stops. Never returns under normal operation.
    pub async fn run(self: Arc<Self>) {
        let namespaces: Vec<Option<String>> = match self.filter.scope() {
            Scope::Global { .. } => vec![None],
            Scope::Namespaces(list) => list.iter().cloned().map(Some).collect(),
        };
        let optional = self.discover().await;
        let webhook_mode = self.outbound.webhook_url.is_some();
        let denied = self.check_access(&namespaces, optional).await;
        let allowed = |resource: &str, ns: &Option<String>| {
            !denied.iter().any(|m| {
                m.need.resource == resource
                    && &m.need.namespace == ns
                    && m.denied.iter().any(|v| *v == "list" || *v == "watch")
            })
        };
        let mut watchers = 0;
        let mut watch = |what: &str, ns: &Option<String>| {
            self.watching(format!(
                "{what} in {}",
                ns.as_deref().unwrap_or("all namespaces")
            ));
            watchers += 1;
        };
        for ns in &namespaces {
            if self.watch_configmaps && allowed("configmaps", ns) {
                tokio::spawn(self.clone().watch_sources::<ConfigMap>(
                    ns.clone(),
                    SourceKind::ConfigMap,
                    digest::configmap,
                ));
                watch("configmaps", ns);
            }
            if self.watch_secrets && allowed("secrets", ns) {
                tokio::spawn(self.clone().watch_sources::<Secret>(
                    ns.clone(),
                    SourceKind::Secret,
                    digest::secret,
                ));
                watch("secrets", ns);
            }
            if optional.csi
                && allowed("secretproviderclasspodstatuses", ns)
                && allowed("secretproviderclasses", ns)
            {
                tokio::spawn(self.clone().watch_secret_provider_classes(ns.clone()));
                tokio::spawn(self.clone().watch_spc_pod_statuses(ns.clone()));
                watch("secretproviderclasses", ns);
                watch("secretproviderclasspodstatuses", ns);
            }
            if webhook_mode {
                // Upstream's webhook mode looks at no workload.
                continue;
            }
            if allowed("deployments", ns) {
                tokio::spawn(self.clone().watch_workloads::<Deployment>(ns.clone()));
                watch("deployments", ns);
            }
            if allowed("statefulsets", ns) {
                tokio::spawn(self.clone().watch_workloads::<StatefulSet>(ns.clone()));
                watch("statefulsets", ns);
            }
            if allowed("daemonsets", ns) {
                tokio::spawn(self.clone().watch_workloads::<DaemonSet>(ns.clone()));
                watch("daemonsets", ns);
            }
            // Jobs are watched for their own reloads, and because a CronJob reload creates a
            // Job: the watch keeps one Job per change, even across retries and restarts.
            let cronjobs = !self.policy.ignore_cronjobs && allowed("cronjobs", ns);
            if allowed("jobs", ns) && (cronjobs || !self.policy.ignore_jobs) {
                tokio::spawn(self.clone().watch_workloads::<Job>(ns.clone()));
                watch("jobs", ns);
                if cronjobs {
                    tokio::spawn(self.clone().watch_workloads::<CronJob>(ns.clone()));
                    watch("cronjobs", ns);
                }
            }
            if optional.rollouts && allowed("rollouts", ns) {
                tokio::spawn(self.clone().watch_workloads::<Rollout>(ns.clone()));
                watch("rollouts", ns);
            }
            if optional.deployment_configs && allowed("deploymentconfigs", ns) {
                tokio::spawn(self.clone().watch_workloads::<DeploymentConfig>(ns.clone()));
                watch("deploymentconfigs", ns);
            }
        }
        if let Scope::Global {
            selector: Some(selector),
            ..
        } = self.filter.scope()
            && allowed("namespaces", &None)
        {
            tokio::spawn(self.clone().watch_namespaces(selector.clone()));
            watch("namespaces", &None);
        }
        let mut synced = self.synced.subscribe();
        let _ = synced.wait_for(|n| *n >= watchers).await;
        tracing::info!(
            sources = self.sources.len(),
            workloads = self.workloads.keys().len(),
            "caches synced; reconciling"
        );
        for key in self.workloads.keys() {
            self.queue.add(key);
        }
        self.health.set_ready();
        if self.leadership.is_ha() {
            tokio::spawn(self.clone().follow_leadership());
        }
        let mut workers = Vec::new();
        for _ in 0..WORKERS {
            workers.push(tokio::spawn(self.clone().work()));
        }
        for worker in workers {
            let _ = worker.await;
        }
    }

    /// Each time this replica becomes the leader, waits until its lease is confirmed and then
    /// re-plans every workload: whatever changed while another replica led (or nobody did)
    /// is caught up, and what is current costs nothing.
    async fn follow_leadership(self: Arc<Self>) {
        let mut leadership = self.leadership.clone();
        loop {
            leadership.became_leader().await;
            let started = std::time::Instant::now();
            while self.leadership.write_state() == WriteState::Fenced {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            if self.leadership.write_state() == WriteState::Allowed {
                tracing::info!(
                    confirmed_after_ms = started.elapsed().as_millis() as u64,
                    "became the leader; re-planning every workload"
                );
                for key in self.workloads.keys() {
                    self.queue.add(key);
                }
            }
        }
    }

    /// Checks RBAC for everything we are about to watch or write; reports each gap once.
    async fn check_access(
        &self,
        namespaces: &[Option<String>],
        optional: Optional,
    ) -> Vec<access::Missing> {
        let webhook_mode = self.outbound.webhook_url.is_some();
        let mut needs = Vec::new();
        for ns in namespaces {
            let mut need = |group, resource, verbs| {
                needs.push(access::Need {
                    group,
                    resource,
                    verbs,
                    namespace: ns.clone(),
                    name: None,
                })
            };
            if self.watch_configmaps {
                need("", "configmaps", &["list", "watch"]);
            }
            if self.watch_secrets {
                need("", "secrets", &["list", "watch"]);
            }
            if optional.csi {
                need(
                    "secrets-store.csi.x-k8s.io",
                    "secretproviderclasspodstatuses",
                    &["list", "watch"],
                );
                need(
                    "secrets-store.csi.x-k8s.io",
                    "secretproviderclasses",
                    &["list", "watch"],
                );
            }
            if webhook_mode {
                continue;
            }
            for resource in ["deployments", "statefulsets", "daemonsets"] {
                need("apps", resource, &["list", "watch", "patch"]);
            }
            if !self.policy.ignore_cronjobs {
                need("batch", "cronjobs", &["list", "watch", "patch"]);
            }
            match (self.policy.ignore_jobs, self.policy.ignore_cronjobs) {
                (false, _) => need(
                    "batch",
                    "jobs",
                    &["list", "watch", "patch", "create", "delete"],
                ),
                (true, false) => need("batch", "jobs", &["list", "watch", "create"]),
                (true, true) => {}
            }
            if optional.rollouts {
                need("argoproj.io", "rollouts", &["list", "watch", "patch"]);
            }
            if optional.deployment_configs {
                need(
                    "apps.openshift.io",
                    "deploymentconfigs",
                    &["list", "watch", "patch"],
                );
            }
            need("events.k8s.io", "events", &["create"]);
        }
        if let Scope::Global {
            selector: Some(_), ..
        } = self.filter.scope()
        {
            needs.push(access::Need {
                group: "",
                resource: "namespaces",
                verbs: &["list", "watch"],
                namespace: None,
                name: None,
            });
        }
        if let Some(lease) = &self.lease {
            // kube-lease-manager gets, creates and patches the Lease; we watch it by name.
            needs.push(access::Need {
                group: "coordination.k8s.io",
                resource: "leases",
                verbs: &["get", "create", "patch", "list", "watch"],
                namespace: Some(lease.namespace.clone()),
                name: Some(lease.name.clone()),
            });
        }
        if let Some(namespace) = &self.meta_info_namespace {
            needs.push(access::Need {
                group: "",
                resource: "configmaps",
                verbs: &["get", "create", "update"],
                namespace: Some(namespace.clone()),
                name: Some(crate::ops::meta_info::NAME.to_owned()),
            });
        }
        let missing = access::check(&self.client, &needs).await;
        for gap in &missing {
            let effect = match gap.need.resource {
                "events" => "reload Events will not be published",
                "configmaps" if gap.need.name.is_some() => {
                    "the reloader-meta-info ConfigMap cannot be published (RELOADER_NAMESPACE)"
                }
                "jobs" if gap.denied.contains(&"delete") => "Job reloads will fail",
                "leases" => "leader election cannot work, so this replica never writes",
                _ if gap.denied.iter().any(|v| *v == "list" || *v == "watch") => {
                    "this kind is skipped"
                }
                _ => "reloads of this kind will fail",
            };
            tracing::error!(
                resource = gap.need.resource,
                namespace = gap.need.namespace.as_deref().unwrap_or("(all)"),
                denied = ?gap.denied,
                "missing RBAC permission: kube-reloader may not {} {}; {effect}. Fix: grant {}",
                gap.denied.join("/"),
                gap.need.resource,
                gap.rule()
            );
        }
        missing
    }

    /// After a (re)list of sources or namespaces: the first one counts towards readiness;
    /// a later one (after a watch gap) re-plans the namespaces where something changed.
    fn relisted(&self, first: &mut bool, changed_namespaces: Vec<String>) {
        if std::mem::replace(first, false) {
            self.mark_synced();
        } else {
            for ns in changed_namespaces {
                self.enqueue_namespace(&ns);
            }
        }
    }

    fn mark_synced(&self) {
        self.synced.send_modify(|n| *n += 1);
    }

    fn is_synced(&self) -> bool {
        // Watchers report once each; past the first sync this only grows.
        *self.synced.borrow() > 0
    }

    /// Enqueues the workloads of `namespace` that track source `kind/name` now, or tracked it
    /// when last written (its ledger names it), so a change costs work only where it matters.
    fn enqueue_affected(&self, kind: SourceKind, namespace: &str, name: &str) {
        let annotations = self
            .sources
            .get(kind, namespace, name)
            .map(|entry| entry.annotations)
            .unwrap_or_default();
        let source = SourceRef {
            kind,
            name,
            annotations: &annotations,
        };
        let ledger_key = format!("\"{}\"", plan::ledger_key(kind, name));
        for view in self.workloads.views_in(namespace) {
            self.metrics.workload_scanned(view.key.kind.as_str());
            let view = match self.effective(view) {
                Ok(view) => view,
                // Reported by its reconcile.
                Err((view, _)) => {
                    self.queue.add(view.key.clone());
                    continue;
                }
            };
            let recorded = view
                .annotations
                .get(LEDGER_ANNOTATION)
                .is_some_and(|ledger| ledger.contains(&ledger_key));
            // Invalid list items matter too: the reconcile reports them.
            let tracks = || {
                let (container, invalid) = self.tracking(&view, source);
                container.is_some() || !invalid.is_empty()
            };
            if recorded || tracks() {
                self.queue.add(view.key.clone());
            }
        }
    }

    /// The view a plan works on: for a Rollout with `workloadRef`, the pod template (spec and
    /// annotations) of the Deployment it names; `Err` with the problem when that cannot be used.
    #[allow(clippy::result_large_err)]
    fn effective(
        &self,
        view: Arc<WorkloadView>,
    ) -> Result<Arc<WorkloadView>, (Arc<WorkloadView>, String)> {
        match &view.workload_ref {
            None => Ok(view),
            Some(Err(problem)) => {
                let problem = problem.clone();
                Err((view, problem))
            }
            Some(Ok(name)) => {
                let target = WorkloadKey {
                    kind: WorkloadKind::Deployment,
                    namespace: view.key.namespace.clone(),
                    name: name.clone(),
                };
                let problem = format!(
                    "spec.workloadRef names Deployment {name:?}, which does not exist \
                     (or kube-reloader may not watch Deployments here)"
                );
                match self.workloads.get(&target) {
                    Some(deployment) => {
                        let mut resolved = (*view).clone();
                        resolved.pod_spec = deployment.pod_spec.clone();
                        resolved.template_annotations = deployment.template_annotations.clone();
                        Ok(Arc::new(resolved))
                    }
                    None => Err((view, problem)),
                }
            }
        }
    }

    /// Whether `view` tracks `source`: the container that carries its marker (upstream's
    /// decision, then its container choice), plus any invalid list items met on the way.
    fn tracking(
        &self,
        view: &WorkloadView,
        source: SourceRef<'_>,
    ) -> (Option<usize>, Vec<InvalidPattern>) {
        let workload = WorkloadAnnotations {
            kind: view.key.kind,
            metadata: &view.annotations,
            template: &view.template_annotations,
        };
        let evaluation = self.policy.evaluate(source, workload);
        let container = evaluation.result.ok().and_then(|matched| {
            refs::container_for(
                &view.pod_spec,
                source.kind,
                source.name,
                matched.needs_reference(),
            )
        });
        (container, evaluation.invalid)
    }

    /// Upstream's webhook mode: one POST per qualifying change (an update with new data; a
    /// create or delete when `--reload-on-create` / `--reload-on-delete` are on), from the
    /// leader only, without looking at workloads.
    fn notify_webhook(&self, event_type: &str, namespace: &str) {
        let (Some(url), Some(notifier)) = (&self.outbound.webhook_url, &self.outbound.notifier)
        else {
            return;
        };
        let qualifies = match event_type {
            "add" => self.options.reload_on_create && self.is_synced(),
            "delete" => self.options.reload_on_delete,
            _ => true,
        };
        if !qualifies || !self.filter.allows(namespace) {
            return;
        }
        if self.leadership.write_state() != WriteState::Allowed {
            tracing::debug!("not the leader; the leader calls the webhook");
            return;
        }
        notifier.send(notify::webhook(url));
    }

    fn enqueue_namespace(&self, namespace: &str) {
        for key in self.workloads.keys_in(namespace) {
            self.queue.add(key);
        }
    }

    async fn work(self: Arc<Self>) {
        loop {
            let key = self.queue.next().await;
            let started = std::time::Instant::now();
            let result = self.reconcile(&key).await;
            let outcome = match &result {
                Ok(true) => "success",
                Ok(false) => "skipped",
                Err(_) => "error",
            };
            self.metrics
                .reconciled(outcome, started.elapsed().as_secs_f64());
            self.queue.done(&key, result.is_ok());
            if let Err(message) = result {
                self.metrics.failed_and_retried();
                let delay = self.queue.retry_later(key.clone());
                tracing::warn!(
                    workload = %key,
                    error = %message,
                    retry_in_seconds = delay.as_secs(),
                    "reload failed; will retry"
                );
            }
        }
    }

    /// Plans one workload from memory and writes at most one patch; `Ok(true)` when it wrote.
    async fn reconcile(&self, key: &WorkloadKey) -> Result<bool, String> {
        if key.kind == WorkloadKind::Job
            && let Some(pending) = self.pending_job(key)
        {
            let result = self.create_pending_job(key, &pending.job).await;
            if result.is_ok() {
                self.metrics.reload_executed(true, &key.namespace);
                for change in &pending.changes {
                    self.announce(&pending.old, change).await;
                }
            }
            return result;
        }
        let Some(view) = self.workloads.get(key) else {
            return Ok(false);
        };
        if !self.filter.allows(&key.namespace) {
            return Ok(false);
        }
        let view = match self.effective(view) {
            Ok(view) => view,
            Err((view, problem)) => {
                let note = format!(
                    "Cannot reload {} {}/{}: {problem}. Fix: point spec.workloadRef at an existing Deployment.",
                    view.key.kind.as_str(),
                    view.key.namespace,
                    view.key.name
                );
                self.report_once(&view, format!("workloadRef={problem}"), note)
                    .await;
                return Ok(false);
            }
        };
        let mut tracked = Vec::new();
        let mut deleted = Vec::new();
        for ((kind, name), entry) in self.sources.namespace(&key.namespace) {
            let source = SourceRef {
                kind,
                name: &name,
                annotations: &entry.annotations,
            };
            let (container, invalid) = self.tracking(&view, source);
            for item in &invalid {
                self.report_invalid(&view, &item.key, &item.item, &item.error)
                    .await;
            }
            let Some(container) = container else {
                continue;
            };
            match entry.digest {
                Some(digest) => tracked.push(Tracked {
                    kind,
                    name,
                    digest,
                    container,
                    created_while_running: entry.created_while_running,
                }),
                None => deleted.push(Deleted {
                    kind,
                    name,
                    container,
                }),
            }
        }
        let markers = Markers {
            ledger: view.annotations.get(LEDGER_ANNOTATION).map(String::as_str),
            containers: &view.pod_spec.containers,
            last_reloaded_from: view
                .template_annotations
                .get(LAST_RELOADED_FROM)
                .map(String::as_str),
        };
        let decision = plan::plan(&tracked, &deleted, markers, self.options);
        let now = unix_now();
        let pause = (key.kind == WorkloadKind::Deployment).then(|| {
            pause::state(
                &view.annotations,
                &self.policy.keys.pause_period,
                &self.policy.keys.paused_at,
                view.paused,
                now,
            )
        });
        let pause_due = matches!(pause, Some(PauseState::ResumeNow | PauseState::StaleMarker));
        if decision != Decision::UpToDate || pause_due {
            match self.leadership.write_state() {
                WriteState::Allowed => {}
                WriteState::Follower => {
                    tracing::debug!(workload = %key, "not the leader; the leader writes");
                    return Ok(false);
                }
                WriteState::Fenced => {
                    // Elected, but the lease is not confirmed fresh: never risk two writers.
                    self.queue
                        .add_after(key.clone(), std::time::Duration::from_secs(1));
                    return Ok(false);
                }
            }
        }
        match decision {
            Decision::UpToDate => self.maintain_pause(&view, pause).await,
            Decision::Baseline { ledger } => {
                self.patch(key, patch::baseline(&ledger))
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::debug!(workload = %key, "recorded the current digests (no rollout)");
                Ok(true)
            }
            Decision::Reload { ledger, changes } => {
                let started = std::time::Instant::now();
                self.metrics.workload_matched(key.kind.as_str());
                let result = self.write_reload(&view, &changes, &ledger, now).await;
                if !matches!(result, Ok(Written::Nothing)) {
                    self.metrics.reload_executed(result.is_ok(), &key.namespace);
                    self.metrics.action(
                        key.kind.as_str(),
                        result.is_ok(),
                        started.elapsed().as_secs_f64(),
                    );
                }
                match result {
                    Ok(Written::Yes) => {
                        for change in &changes {
                            self.announce(&view, change).await;
                        }
                        Ok(true)
                    }
                    Ok(Written::Nothing) => Ok(false),
                    Err(e) => {
                        let note = format!(
                            "Update for '{}' of type '{}' in namespace '{}' failed with error {e}",
                            key.name,
                            key.kind.as_str(),
                            key.namespace
                        );
                        if let Some(first) = changes.first() {
                            self.publish(&view, first.kind, EventType::Warning, "ReloadFail", note)
                                .await;
                        }
                        Err(e.to_string())
                    }
                }
            }
        }
    }

    /// The log line, Event and alert of one successful reload.
    async fn announce(&self, view: &WorkloadView, change: &plan::Change) {
        let key = &view.key;
        let verb = if change.cause == Cause::Deleted {
            "deleted"
        } else {
            "changed"
        };
        tracing::info!(
            workload = %key, source = %change.name, source_kind = change.kind.upstream_type(), cause = verb,
            "Changes detected in '{}' of type '{}' in namespace '{}'; updated '{}' of type '{}' in namespace '{}'",
            change.name, change.kind.upstream_type(), key.namespace, key.name, key.kind.as_str(), key.namespace
        );
        let note = format!(
            "Changes detected in '{}' of type '{}' in namespace '{}', Updated '{}' of type '{}' in namespace '{}'",
            change.name,
            change.kind.upstream_type(),
            key.namespace,
            key.name,
            key.kind.as_str(),
            key.namespace
        );
        self.publish(view, change.kind, EventType::Normal, "Reloaded", note)
            .await;
        if let (Some(alerts), Some(notifier)) = (&self.outbound.alerts, &self.outbound.notifier) {
            notifier.send(alerts.request(
                &change.name,
                change.kind.upstream_type(),
                &key.name,
                key.kind.as_str(),
                &key.namespace,
            ));
        }
    }

    async fn report_invalid(&self, view: &WorkloadView, annotation: &str, item: &str, error: &str) {
        let note = format!(
            "Skipping invalid item {item:?} of annotation {annotation} on {} {}/{}: {error}. \
             Each item is a regular expression matched against the whole name; fix or remove the item.",
            view.key.kind.as_str(),
            view.key.namespace,
            view.key.name
        );
        self.report_once(view, format!("{annotation}={item}"), note)
            .await;
    }

    /// Reports a problem with a workload's configuration once per process: a Warning Event
    /// `InvalidAnnotation` on the workload and a log line, both naming the fix.
    async fn report_once(&self, view: &WorkloadView, what: String, note: String) {
        let first_time = self
            .reported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert((view.key.clone(), what));
        if !first_time {
            return;
        }
        tracing::warn!(workload = %view.key, "{note}");
        self.publish_with(
            &self.general_recorder,
            view,
            EventType::Warning,
            "InvalidAnnotation",
            note,
        )
        .await;
    }

    async fn publish(
        &self,
        view: &WorkloadView,
        kind: SourceKind,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let recorder = self.recorders.get(&kind).unwrap_or(&self.general_recorder);
        self.publish_with(recorder, view, type_, reason, note).await;
    }

    async fn publish_with(
        &self,
        recorder: &Recorder,
        view: &WorkloadView,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let reference = object_reference(view);
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Reload".into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::warn!(workload = %view.key, error = %e, "cannot publish Event");
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn object_reference(view: &WorkloadView) -> ObjectReference {
    ObjectReference {
        api_version: Some(match view.key.kind {
            WorkloadKind::Deployment | WorkloadKind::StatefulSet | WorkloadKind::DaemonSet => {
                "apps/v1".into()
            }
            WorkloadKind::CronJob | WorkloadKind::Job => "batch/v1".into(),
            WorkloadKind::Rollout => "argoproj.io/v1alpha1".into(),
            WorkloadKind::DeploymentConfig => "apps.openshift.io/v1".into(),
        }),
        kind: Some(view.key.kind.as_str().into()),
        name: Some(view.key.name.clone()),
        namespace: Some(view.key.namespace.clone()),
        uid: Some(view.uid.clone()),
        ..ObjectReference::default()
    }
}
