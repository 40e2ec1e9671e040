//! What the watchers, the workers and the kind modules share, grouped by concern: settings,
//! indexes, the queue, the writer, the reporter, the kind registry, sync and leadership.

use std::sync::{Arc, Mutex};

use kube::Client;
use serde_json::json;

use crate::config::Settings;
use crate::index::{self, SourceCache, WorkloadStore};
use crate::kinds::Registry;
use crate::model::digest::SourceKind;
use crate::model::plan::PlanOptions;
use crate::model::workload::{WorkloadKey, WorkloadKind};
use crate::ops::diagnostics::StateReport;
use crate::ops::health::Health;
use crate::ops::leader::{Leadership, WriteState};
use crate::ops::metrics::Metrics;
use crate::ops::supervisor::Supervisor;
use crate::reconcile::degraded::Degradations;
use crate::reconcile::governor::Governor;
use crate::reconcile::queue::{QueueMetrics, WorkQueue};
use crate::reconcile::report::{Outbound, Reporter};
use crate::reconcile::sync::{SyncState, Watched};
use crate::reconcile::writer::Writer;
use crate::watch::NamespaceFilter;
use crate::watch::csi::CsiState;
use crate::watch::digest_key::KeyGeneration;
use crate::watch::listing::Listers;

/// The shared state of one running controller.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Validated settings.
    pub settings: Settings,
    /// Which namespaces may be reloaded.
    pub filter: NamespaceFilter,
    /// Digests of the sources.
    pub sources: SourceCache,
    /// Projections of the workloads, indexed for fan-out.
    pub workloads: Arc<WorkloadStore>,
    /// Keys to plan, now or later.
    pub queue: WorkQueue,
    /// Every API write.
    pub writer: Writer,
    /// Events, log lines, alerts.
    pub report: Reporter,
    /// The workload kinds.
    pub kinds: Registry,
    /// Which watches have synced.
    pub sync: SyncState,
    /// Whether this replica may write.
    pub leadership: Leadership,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Liveness and readiness.
    pub health: Arc<Health>,
    /// CSI bookkeeping.
    pub csi: CsiState,
    /// Every long-running task.
    pub supervisor: Supervisor,
    /// Permissions worked around (set at startup).
    pub degraded: Degradations,
    /// Kinds listed per change instead of watched.
    pub listers: Listers,
    /// The rollout governor's bookkeeping.
    pub governor: Governor,
    /// Changes of the digest keys (`--secret-digest-key-secret`).
    pub digest_keys: KeyGeneration,
    watching: Mutex<Vec<String>>,
}

impl Context {
    /// The context for `settings`.
    pub fn new(
        client: Client,
        settings: Settings,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        leadership: Leadership,
        outbound: Outbound,
        supervisor: Supervisor,
    ) -> Arc<Self> {
        let workloads = Arc::new(WorkloadStore::new(settings.policy.clone()));
        Arc::new(Self {
            writer: Writer::new(
                client.clone(),
                leadership.clone(),
                workloads.clone(),
                settings.test_write_delay,
            ),
            report: Reporter::new(&client, settings.instance.clone(), outbound),
            queue: WorkQueue::with_metrics(QueueMetrics {
                adds: metrics.workqueue_adds.clone(),
                depth: metrics.workqueue_depth.clone(),
                latency: metrics.workqueue_latency.clone(),
            }),
            filter: NamespaceFilter::new(settings.scope.clone()),
            sources: SourceCache::default(),
            workloads,
            kinds: Registry::new(),
            sync: SyncState::default(),
            csi: CsiState::default(),
            degraded: Degradations::default(),
            listers: Listers::default(),
            governor: Governor::default(),
            digest_keys: KeyGeneration::default(),
            watching: Mutex::default(),
            client,
            settings,
            leadership,
            metrics,
            health,
            supervisor,
        })
    }

    /// The flags that change a plan.
    pub fn plan_options(&self) -> PlanOptions {
        PlanOptions {
            strategy: self.settings.strategy,
            reload_on_create: self.settings.reload_on_create,
            reload_on_delete: self.settings.reload_on_delete,
            reload_unrecorded: false,
            prune_stale: self.settings.prune_stale_markers,
            key_level: self.settings.key_level_triggers,
        }
    }

    /// Whether this is upstream's webhook mode (no workload is watched or written).
    pub fn webhook_mode(&self) -> bool {
        self.settings.webhook_url.is_some()
    }

    /// Plans a workload (soon).
    pub fn enqueue(&self, key: WorkloadKey) {
        self.queue.add(key);
    }

    /// A workload's projection changed: plan it, and the Rollouts that follow a Deployment.
    pub fn workload_changed(&self, key: &WorkloadKey) {
        if key.kind == WorkloadKind::Deployment {
            for follower in self.workloads.followers(key) {
                self.enqueue(follower);
            }
        }
        self.enqueue(key.clone());
    }

    /// A source's digest or decision annotations changed: plan the workloads that can track it.
    pub fn source_changed(&self, kind: SourceKind, namespace: &str, name: &str) {
        let (keys, scanned) = index::affected(
            &self.workloads,
            &self.sources,
            &self.settings.policy,
            namespace,
            kind,
            name,
        );
        for kind in scanned {
            self.metrics.workload_scanned(kind.as_str());
        }
        // A kind we only list is planned after the LIST this change causes (none for a
        // namespace we do not act in).
        if self.filter.allows(namespace) {
            self.listers.source_changed(namespace, kind, name);
        }
        for key in keys {
            if !self.listers.lists(key.kind, &key.namespace) {
                self.enqueue(key);
            }
        }
    }

    /// Something about a whole namespace changed (it started matching the selector, or a
    /// relist found changes there): plan every workload in it.
    pub fn namespace_changed(&self, namespace: &str) {
        if self.filter.allows(namespace) {
            self.listers.namespace_changed(namespace);
        }
        for key in self.workloads.keys_in(namespace) {
            if !self.listers.lists(key.kind, namespace) {
                self.enqueue(key);
            }
        }
    }

    /// The flags that change the plan of a workload of `kind`.
    pub fn plan_options_for(&self, kind: WorkloadKind) -> PlanOptions {
        PlanOptions {
            reload_unrecorded: self.degraded.reload_unrecorded(kind),
            ..self.plan_options()
        }
    }

    /// Registers a watch that is about to start.
    pub fn expect(&self, watched: Watched, resource: &str) {
        let after = match &watched {
            Watched::Kind(kind, _) => self.kinds.get(*kind).map(|k| k.after()).unwrap_or(&[]),
            _ => &[],
        };
        let namespace = match &watched {
            Watched::Sources(_, ns) | Watched::Kind(_, ns) => ns.clone(),
            Watched::Namespaces => None,
        };
        self.watching
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(format!(
                "{resource} in {}",
                namespace.as_deref().unwrap_or("all namespaces")
            ));
        self.sync.expect(watched, after);
    }

    /// A watch delivered its first list: start the kinds it unlocks; once all have, be Ready.
    pub fn synced(&self, watched: &Watched) {
        let progress = self.sync.synced(watched);
        for kind in &progress.activated {
            tracing::debug!(
                kind = kind.as_str(),
                "synced; planning every workload of this kind"
            );
            for key in self.workloads.keys_of(*kind) {
                self.enqueue(key);
            }
        }
        if progress.all_done {
            self.metrics.watches_not_synced.set(0);
            tracing::info!(
                sources = self.sources.len(),
                workloads = self.workloads.len(),
                "caches synced; reconciling"
            );
            self.health.set_ready();
        } else if !progress.activated.is_empty() || progress.sources_done {
            self.waiting_for();
        }
    }

    /// Says on `/ready` which watches have not delivered their first list.
    pub fn waiting_for(&self) {
        let pending = self.sync.pending();
        self.metrics
            .watches_not_synced
            .set(i64::try_from(pending.len()).unwrap_or(i64::MAX));
        if pending.is_empty() {
            self.health.set_ready();
        } else {
            self.health.set_not_ready(format!(
                "waiting for the first list of {}",
                pending.join(", ")
            ));
        }
    }
}

impl StateReport for Context {
    fn snapshot(&self) -> serde_json::Value {
        let leadership = match self.leadership.write_state() {
            WriteState::Allowed => "writing",
            WriteState::Follower => "following",
            WriteState::Fenced => "elected, waiting for a fresh lease",
        };
        let delayed: Vec<serde_json::Value> = self
            .queue
            .delayed()
            .into_iter()
            .take(100)
            .map(|(key, due)| json!({"workload": key.to_string(), "due_in_seconds": due.as_secs_f64()}))
            .collect();
        let kinds: serde_json::Map<String, serde_json::Value> = self
            .kinds
            .iter()
            .filter_map(|k| Some((k.kind().as_str().to_owned(), k.diagnostics()?)))
            .collect();
        json!({
            "watching": *self.watching.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
            "not_synced": self.sync.pending(),
            "sources": self.sources.len(),
            "workloads": self.workloads.count_by_kind(),
            "queue_depth": self.queue.depth(),
            "delayed": delayed,
            "governor": self.governor.snapshot(crate::reconcile::unix_now()),
            "kinds": kinds,
            "tasks": self.supervisor.running(),
            "leadership": leadership,
            "webhook_mode": self.webhook_mode(),
        })
    }
}
