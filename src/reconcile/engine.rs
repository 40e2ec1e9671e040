//! Wiring: watchers → caches → queue → plan → one PATCH → Event, metric, log line.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ObjectReference, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::watch;

use crate::config::{Scope, Settings};
use crate::model::digest::{self, SourceKind};
use crate::model::patch;
use crate::model::plan::{
    self, Cause, Decision, Deleted, LEDGER_ANNOTATION, Markers, PlanOptions, Tracked,
};
use crate::model::policy::{
    InvalidPattern, LAST_RELOADED_FROM, Policy, SourceRef, WorkloadAnnotations, WorkloadKind,
};
use crate::model::refs;
use crate::ops::health::Health;
use crate::ops::leader::{Leadership, WriteState};
use crate::ops::metrics::Metrics;
use crate::reconcile::queue::WorkQueue;
use crate::watch::sources::{self, SourceCache, SourceEntry};
use crate::watch::workloads::{self, WorkloadCache, WorkloadKey, WorkloadResource, WorkloadView};
use crate::watch::{NamespaceFilter, access};

/// Field manager of every write, as upstream's, so managed-fields show who wrote the markers.
pub const FIELD_MANAGER: &str = "Reloader";
const WORKERS: usize = 4;

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
}

impl Engine {
    /// Builds the engine from validated settings.
    pub fn new(
        client: Client,
        settings: &Settings,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        leadership: Leadership,
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
            )),
            metrics,
            health,
            reported: Mutex::new(HashSet::new()),
            synced: watch::channel(0).0,
            leadership,
            lease: settings.lease.clone(),
            created_jobs: Mutex::new(HashSet::new()),
        })
    }

    /// Starts every watcher, waits for all to sync, then runs the workers until the process
    /// stops. Never returns under normal operation.
    pub async fn run(self: Arc<Self>) {
        let namespaces: Vec<Option<String>> = match self.filter.scope() {
            Scope::Global { .. } => vec![None],
            Scope::Namespaces(list) => list.iter().cloned().map(Some).collect(),
        };
        let denied = self.check_access(&namespaces).await;
        let allowed = |resource: &str, ns: &Option<String>| {
            !denied.iter().any(|m| {
                m.need.resource == resource
                    && &m.need.namespace == ns
                    && m.denied.iter().any(|v| *v == "list" || *v == "watch")
            })
        };
        let mut watchers = 0;
        for ns in &namespaces {
            if self.watch_configmaps && allowed("configmaps", ns) {
                tokio::spawn(self.clone().watch_sources::<ConfigMap>(
                    ns.clone(),
                    SourceKind::ConfigMap,
                    digest::configmap,
                ));
                watchers += 1;
            }
            if self.watch_secrets && allowed("secrets", ns) {
                tokio::spawn(self.clone().watch_sources::<Secret>(
                    ns.clone(),
                    SourceKind::Secret,
                    digest::secret,
                ));
                watchers += 1;
            }
            if allowed("deployments", ns) {
                tokio::spawn(self.clone().watch_workloads::<Deployment>(ns.clone()));
                watchers += 1;
            }
            if allowed("statefulsets", ns) {
                tokio::spawn(self.clone().watch_workloads::<StatefulSet>(ns.clone()));
                watchers += 1;
            }
            if allowed("daemonsets", ns) {
                tokio::spawn(self.clone().watch_workloads::<DaemonSet>(ns.clone()));
                watchers += 1;
            }
            // A CronJob reload creates a Job; the Job watch keeps one Job per change, even
            // across retries and restarts.
            if !self.policy.ignore_cronjobs && allowed("cronjobs", ns) && allowed("jobs", ns) {
                tokio::spawn(self.clone().watch_workloads::<CronJob>(ns.clone()));
                tokio::spawn(self.clone().watch_jobs(ns.clone()));
                watchers += 2;
            }
        }
        if let Scope::Global {
            selector: Some(selector),
            ..
        } = self.filter.scope()
            && allowed("namespaces", &None)
        {
            tokio::spawn(self.clone().watch_namespaces(selector.clone()));
            watchers += 1;
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
    async fn check_access(&self, namespaces: &[Option<String>]) -> Vec<access::Missing> {
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
            for resource in ["deployments", "statefulsets", "daemonsets"] {
                need("apps", resource, &["list", "watch", "patch"]);
            }
            if !self.policy.ignore_cronjobs {
                need("batch", "cronjobs", &["list", "watch", "patch"]);
                need("batch", "jobs", &["list", "watch", "create"]);
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
        let missing = access::check(&self.client, &needs).await;
        for gap in &missing {
            let effect = match gap.need.resource {
                "events" => "reload Events will not be published",
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

    fn enqueue_namespace(&self, namespace: &str) {
        for key in self.workloads.keys_in(namespace) {
            self.queue.add(key);
        }
    }

    async fn watch_sources<K>(
        self: Arc<Self>,
        namespace: Option<String>,
        kind: SourceKind,
        hash: fn(&K) -> digest::Digest,
    ) where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
    {
        let api: Api<K> = match &namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let mut config = watcher::Config::default();
        if let Some(selector) = &self.resource_selector {
            config = config.labels(selector);
        }
        let keys = [
            self.policy.keys.ignore.clone(),
            self.policy.keys.search_match.clone(),
        ];
        let entry = |object: &K, created: bool| SourceEntry {
            digest: Some(hash(object)),
            annotations: object
                .annotations()
                .iter()
                .filter(|(k, _)| keys.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            created_while_running: created,
        };
        let mut stream = watcher(api, config).default_backoff().boxed();
        let mut fresh: HashMap<(String, String), SourceEntry> = HashMap::new();
        let mut first = true;
        let keep_tombstones = self.options.reload_on_delete;
        let resource_type = match kind {
            SourceKind::ConfigMap => "configmaps",
            SourceKind::Secret => "secrets",
            SourceKind::SecretProviderClass => "secretproviderclasspodstatuses",
        };
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init) => fresh.clear(),
                Ok(watcher::Event::InitApply(object)) => {
                    self.metrics.event_received("add", resource_type);
                    let (Some(ns), name) = (object.namespace(), object.name_any()) else {
                        continue;
                    };
                    // After the first sync, objects new in a relist were created during the gap.
                    let created = if first { self.sync_after_restart } else { true };
                    fresh.insert((ns, name), entry(&object, created));
                }
                Ok(watcher::Event::InitDone) => {
                    let changed = self.sources.replace(
                        kind,
                        namespace.as_deref(),
                        std::mem::take(&mut fresh),
                        keep_tombstones,
                    );
                    self.relisted(&mut first, changed);
                }
                Ok(watcher::Event::Apply(object)) => {
                    self.metrics.event_received("update", resource_type);
                    let Some(ns) = object.namespace() else {
                        continue;
                    };
                    let name = object.name_any();
                    match self.sources.upsert(kind, &ns, &name, entry(&object, true)) {
                        sources::Change::Relevant => self.enqueue_affected(kind, &ns, &name),
                        sources::Change::NoDataChange => self.metrics.skipped("no_data_change"),
                    }
                }
                Ok(watcher::Event::Delete(object)) => {
                    self.metrics.event_received("delete", resource_type);
                    let Some(ns) = object.namespace() else {
                        continue;
                    };
                    self.sources
                        .remove(kind, &ns, &object.name_any(), keep_tombstones);
                    self.enqueue_affected(kind, &ns, &object.name_any());
                }
                Err(e) => {
                    tracing::warn!(kind = %kind, error = %e, "watch error; retrying with backoff")
                }
            }
        }
    }

    async fn watch_workloads<K: WorkloadResource>(self: Arc<Self>, namespace: Option<String>) {
        let api: Api<K> = match &namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut fresh = Vec::new();
        let mut first = true;
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init) => fresh.clear(),
                Ok(watcher::Event::InitApply(object)) => fresh.extend(
                    workloads::project(&object).map(|v| (v, workloads::resource_version(&object))),
                ),
                Ok(watcher::Event::InitDone) => {
                    let keys: Vec<WorkloadKey> = fresh
                        .iter()
                        .map(|(v, _): &(WorkloadView, _)| v.key.clone())
                        .collect();
                    self.workloads.replace(
                        K::KIND,
                        namespace.as_deref(),
                        std::mem::take(&mut fresh),
                    );
                    if first {
                        first = false;
                        self.mark_synced();
                    } else {
                        for key in keys {
                            self.queue.add(key);
                        }
                    }
                }
                Ok(watcher::Event::Apply(object)) => {
                    if let Some(view) = workloads::project(&object) {
                        let key = view.key.clone();
                        let version = workloads::resource_version(&object);
                        if self.workloads.upsert(view, version) && self.is_synced() {
                            self.queue.add(key);
                        }
                    }
                }
                Ok(watcher::Event::Delete(object)) => {
                    if let Some(view) = workloads::project(&object) {
                        self.workloads.remove(&view.key);
                    }
                }
                Err(e) => {
                    tracing::warn!(kind = K::KIND.as_str(), error = %e, "watch error; retrying with backoff")
                }
            }
        }
    }

    async fn watch_namespaces(self: Arc<Self>, selector: String) {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let mut stream = watcher(api, watcher::Config::default().labels(&selector))
            .default_backoff()
            .boxed();
        let mut fresh = HashSet::new();
        let mut first = true;
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init) => fresh.clear(),
                Ok(watcher::Event::InitApply(ns)) => {
                    fresh.insert(ns.name_any());
                }
                Ok(watcher::Event::InitDone) => {
                    let changed = self.filter.replace_selected(std::mem::take(&mut fresh));
                    self.relisted(&mut first, changed);
                }
                Ok(watcher::Event::Apply(ns)) => {
                    if self.filter.set_selected(&ns.name_any(), true) {
                        tracing::info!(namespace = %ns.name_any(), "namespace now matches --namespace-selector");
                        self.enqueue_namespace(&ns.name_any());
                    }
                }
                Ok(watcher::Event::Delete(ns)) => {
                    self.filter.set_selected(&ns.name_any(), false);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "namespace watch error; retrying with backoff")
                }
            }
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
        let Some(view) = self.workloads.get(key) else {
            return Ok(false);
        };
        if !self.filter.allows(&key.namespace) {
            return Ok(false);
        }
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
        if decision != Decision::UpToDate {
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
            Decision::UpToDate => Ok(false),
            Decision::Baseline { ledger } => {
                self.patch(key, patch::baseline(&ledger))
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::debug!(workload = %key, "recorded the current digests (no rollout)");
                Ok(true)
            }
            Decision::Reload { ledger, changes } => {
                let containers: Vec<&str> = view
                    .pod_spec
                    .containers
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                let started = std::time::Instant::now();
                let result = if key.kind == WorkloadKind::CronJob {
                    self.instantiate_cronjob(&view, &changes, &ledger, now)
                        .await
                } else {
                    let body = patch::reload(
                        self.options.strategy,
                        template_path(key.kind),
                        &key.namespace,
                        &containers,
                        &changes,
                        &ledger,
                        now,
                    );
                    self.patch(key, body).await
                };
                self.metrics.reload_executed(result.is_ok(), &key.namespace);
                self.metrics.action(
                    key.kind.as_str(),
                    result.is_ok(),
                    started.elapsed().as_secs_f64(),
                );
                match result {
                    Ok(()) => {
                        for change in &changes {
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
                            self.publish(&view, change.kind, EventType::Normal, "Reloaded", note)
                                .await;
                        }
                        Ok(true)
                    }
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

    /// Upstream's CronJob reload: a Job from the job template with the markers applied,
    /// `generateName: <cronjob>-`, `cronjob.kubernetes.io/instantiate: manual` and a controller
    /// owner reference; the CronJob's own template is left alone. The Job carries the ledger it
    /// was made for, and the CronJob's ledger is written after it, so a failure in between is
    /// retried without creating a second Job.
    async fn instantiate_cronjob(
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
            annotations.insert(LEDGER_ANNOTATION.to_owned(), ledger.to_owned());
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

    /// Remembers which Jobs were created for which CronJob ledger (see `created_jobs`).
    async fn watch_jobs(self: Arc<Self>, namespace: Option<String>) {
        let api: Api<Job> = match &namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let marker = |job: &Job| {
            let ledger = job.annotations().get(LEDGER_ANNOTATION)?;
            let owner = job
                .owner_references()
                .iter()
                .find(|o| o.kind == "CronJob" && o.controller == Some(true))?;
            Some((job.namespace()?, owner.name.clone(), ledger.clone()))
        };
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut first = true;
        while let Some(event) = stream.next().await {
            let mut created = self
                .created_jobs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match event {
                Ok(watcher::Event::Apply(job) | watcher::Event::InitApply(job)) => {
                    created.extend(marker(&job));
                }
                Ok(watcher::Event::Delete(job)) => {
                    if let Some(m) = marker(&job) {
                        created.remove(&m);
                    }
                }
                Ok(watcher::Event::InitDone) => {
                    drop(created);
                    if std::mem::replace(&mut first, false) {
                        self.mark_synced();
                    }
                }
                Ok(watcher::Event::Init) => {}
                Err(e) => tracing::warn!(error = %e, "Job watch error; retrying with backoff"),
            }
        }
    }

    /// One strategic-merge PATCH; the object it returns goes straight into the cache, so a
    /// re-plan right after (before the watch echoes our write) does not write again.
    async fn patch(&self, key: &WorkloadKey, body: serde_json::Value) -> Result<(), kube::Error> {
        match key.kind {
            WorkloadKind::Deployment => self.patch_as::<Deployment>(key, body).await,
            WorkloadKind::StatefulSet => self.patch_as::<StatefulSet>(key, body).await,
            WorkloadKind::DaemonSet => self.patch_as::<DaemonSet>(key, body).await,
            WorkloadKind::CronJob => self.patch_as::<CronJob>(key, body).await,
            other => {
                tracing::warn!(
                    kind = other.as_str(),
                    "reloading this kind is not supported yet"
                );
                Ok(())
            }
        }
    }

    async fn patch_as<K: WorkloadResource + serde::Serialize>(
        &self,
        key: &WorkloadKey,
        body: serde_json::Value,
    ) -> Result<(), kube::Error> {
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        let updated = Api::<K>::namespaced(self.client.clone(), &key.namespace)
            .patch(&key.name, &params, &Patch::Strategic(body))
            .await?;
        if let Some(view) = workloads::project(&updated) {
            self.workloads
                .upsert(view, workloads::resource_version(&updated));
        }
        Ok(())
    }

    async fn report_invalid(&self, view: &WorkloadView, annotation: &str, item: &str, error: &str) {
        let first_time = self
            .reported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert((view.key.clone(), format!("{annotation}={item}")));
        if !first_time {
            return;
        }
        let note = format!(
            "Skipping invalid item {item:?} of annotation {annotation} on {} {}/{}: {error}. \
             Each item is a regular expression matched against the whole name; fix or remove the item.",
            view.key.kind.as_str(),
            view.key.namespace,
            view.key.name
        );
        tracing::warn!(workload = %view.key, annotation, item, "{note}");
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

fn template_path(kind: WorkloadKind) -> patch::TemplatePath {
    match kind {
        WorkloadKind::Deployment => <Deployment as WorkloadResource>::TEMPLATE_PATH,
        WorkloadKind::StatefulSet => <StatefulSet as WorkloadResource>::TEMPLATE_PATH,
        WorkloadKind::DaemonSet => <DaemonSet as WorkloadResource>::TEMPLATE_PATH,
        WorkloadKind::CronJob => <CronJob as WorkloadResource>::TEMPLATE_PATH,
        _ => patch::POD_TEMPLATE,
    }
}

fn object_reference(view: &WorkloadView) -> ObjectReference {
    ObjectReference {
        api_version: Some(match view.key.kind {
            WorkloadKind::Deployment | WorkloadKind::StatefulSet | WorkloadKind::DaemonSet => {
                "apps/v1".into()
            }
            WorkloadKind::CronJob | WorkloadKind::Job => "batch/v1".into(),
            WorkloadKind::Rollout => "argoproj.io/v1alpha1".into(),
        }),
        kind: Some(view.key.kind.as_str().into()),
        name: Some(view.key.name.clone()),
        namespace: Some(view.key.namespace.clone()),
        uid: Some(view.uid.clone()),
        ..ObjectReference::default()
    }
}
