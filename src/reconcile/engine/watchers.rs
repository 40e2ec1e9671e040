//! The watchers: each keeps one cache current from a watch and enqueues the workloads a change
//! affects.

use super::*;

impl Engine {
    pub(super) async fn watch_sources<K>(
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
        let api: Api<K> = self.scoped_api(namespace.as_deref());
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
                    let Some(ns) = object.namespace() else {
                        continue;
                    };
                    let name = object.name_any();
                    let change = self.sources.upsert(kind, &ns, &name, entry(&object, true));
                    let event_type = if change == sources::Change::Created {
                        "add"
                    } else {
                        "update"
                    };
                    self.metrics.event_received(event_type, resource_type);
                    if let Some(event_type) = change.data_event() {
                        self.notify_webhook(event_type, &ns);
                    }
                    if change.is_relevant() {
                        self.enqueue_affected(kind, &ns, &name);
                    } else {
                        self.metrics.skipped("no_data_change");
                    }
                    self.metrics
                        .event_processed(event_type, resource_type, "success");
                }
                Ok(watcher::Event::Delete(object)) => {
                    self.metrics.event_received("delete", resource_type);
                    let Some(ns) = object.namespace() else {
                        continue;
                    };
                    self.sources
                        .remove(kind, &ns, &object.name_any(), keep_tombstones);
                    self.notify_webhook("delete", &ns);
                    self.enqueue_affected(kind, &ns, &object.name_any());
                    self.metrics
                        .event_processed("delete", resource_type, "success");
                }
                Err(e) => {
                    tracing::warn!(kind = %kind, error = %e, "watch error; retrying with backoff")
                }
            }
        }
    }

    pub(super) async fn watch_workloads<K: WorkloadResource>(
        self: Arc<Self>,
        namespace: Option<String>,
    ) {
        let api: Api<K> = self.scoped_api(namespace.as_deref());
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut fresh = Vec::new();
        let mut first = true;
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init) => fresh.clear(),
                Ok(watcher::Event::InitApply(object)) => {
                    if let Some(view) = workloads::project(&object) {
                        self.remember_cronjob_job(&view, true);
                        fresh.push((view, workloads::resource_version(&object)));
                    }
                }
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
                        self.remember_cronjob_job(&view, true);
                        let key = view.key.clone();
                        let version = workloads::resource_version(&object);
                        if self.workloads.upsert(view, version) && self.is_synced() {
                            self.enqueue_followers(&key);
                            self.queue.add(key);
                        }
                    }
                }
                Ok(watcher::Event::Delete(object)) => {
                    if let Some(view) = workloads::project(&object) {
                        self.remember_cronjob_job(&view, false);
                        self.workloads.remove(&view.key, &view.uid);
                    }
                }
                Err(e) => {
                    tracing::warn!(kind = K::KIND.as_str(), error = %e, "watch error; retrying with backoff")
                }
            }
        }
    }

    /// A Deployment changed: Rollouts whose `workloadRef` names it plan again (their pod
    /// template is its template).
    pub(super) fn enqueue_followers(&self, key: &WorkloadKey) {
        if key.kind != WorkloadKind::Deployment {
            return;
        }
        for view in self.workloads.views_in(&key.namespace) {
            if matches!(&view.workload_ref, Some(Ok(name)) if *name == key.name) {
                self.queue.add(view.key.clone());
            }
        }
    }

    /// Keeps `created_jobs` current from the Job watch: a Job we created from a CronJob carries
    /// the CronJob's ledger it was made for.
    pub(super) fn remember_cronjob_job(&self, view: &WorkloadView, present: bool) {
        let Some(job) = view.job.as_deref() else {
            return;
        };
        let marker = (|| {
            let ledger = job.annotations().get(CREATED_FOR_ANNOTATION)?;
            let owner = job
                .owner_references()
                .iter()
                .find(|o| o.kind == "CronJob" && o.controller == Some(true))?;
            Some((
                view.key.namespace.clone(),
                owner.name.clone(),
                ledger.clone(),
            ))
        })();
        let Some(marker) = marker else {
            return;
        };
        let mut created = self
            .created_jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if present {
            created.insert(marker);
        } else {
            created.remove(&marker);
        }
    }

    /// Keeps the ignore/match annotations of SecretProviderClasses, which upstream reads from
    /// the class (not from its pod statuses).
    pub(super) async fn watch_secret_provider_classes(self: Arc<Self>, namespace: Option<String>) {
        let api: Api<SecretProviderClass> = self.scoped_api(namespace.as_deref());
        let keys = [
            self.policy.keys.ignore.clone(),
            self.policy.keys.search_match.clone(),
        ];
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut first = true;
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Apply(class) | watcher::Event::InitApply(class)) => {
                    let Some(ns) = class.namespace() else {
                        continue;
                    };
                    let annotations: BTreeMap<String, String> = class
                        .annotations()
                        .iter()
                        .filter(|(k, _)| keys.contains(k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    let name = class.name_any();
                    self.spc_annotations
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert((ns.clone(), name.clone()), annotations.clone());
                    // A status seen before its class carries no annotations yet: fix it up.
                    let kind = SourceKind::SecretProviderClass;
                    if let Some(mut entry) = self.sources.get(kind, &ns, &name)
                        && entry.annotations != annotations
                    {
                        entry.annotations = annotations;
                        if self.sources.upsert(kind, &ns, &name, entry).is_relevant()
                            && self.is_synced()
                        {
                            self.enqueue_affected(kind, &ns, &name);
                        }
                    }
                }
                Ok(watcher::Event::Delete(class)) => {
                    if let Some(ns) = class.namespace() {
                        self.spc_annotations
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .remove(&(ns, class.name_any()));
                    }
                }
                Ok(watcher::Event::InitDone) => {
                    if std::mem::replace(&mut first, false) {
                        self.mark_synced();
                    }
                }
                Ok(watcher::Event::Init) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "SecretProviderClass watch error; retrying with backoff")
                }
            }
        }
    }

    /// CSI: a SecretProviderClass's digest is that of its newest pod status (each pod has one,
    /// and the driver updates them one by one on rotation). A change reloads the workloads
    /// that mount the class; the ledger makes the other pods' updates no-ops (upstream's dedup).
    pub(super) async fn watch_spc_pod_statuses(self: Arc<Self>, namespace: Option<String>) {
        let api: Api<SecretProviderClassPodStatus> = self.scoped_api(namespace.as_deref());
        // Upstream applies --resource-label-selector here too, which in effect turns CSI off
        // unless the driver labels its statuses; we do not.
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut first = true;
        let resource_type = "secretproviderclasspodstatuses";
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::InitApply(status)) => {
                    self.metrics.event_received("add", resource_type);
                    self.observe_spc_status(&status);
                }
                Ok(watcher::Event::Apply(status)) => {
                    self.metrics.event_received("update", resource_type);
                    if let Some((ns, class)) = self.observe_spc_status(&status) {
                        self.enqueue_affected(SourceKind::SecretProviderClass, &ns, &class);
                    }
                    self.metrics
                        .event_processed("update", resource_type, "success");
                }
                Ok(watcher::Event::Delete(_)) => {
                    // A pod went away; the class's digest stays what it was.
                    self.metrics.event_received("delete", resource_type);
                }
                Ok(watcher::Event::InitDone) => {
                    if std::mem::replace(&mut first, false) {
                        self.mark_synced();
                    }
                }
                Ok(watcher::Event::Init) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "SecretProviderClassPodStatus watch error; retrying with backoff")
                }
            }
        }
    }

    /// Records a pod status; returns the class when its digest changed.
    pub(super) fn observe_spc_status(
        &self,
        status: &SecretProviderClassPodStatus,
    ) -> Option<(String, String)> {
        let ns = status.namespace()?;
        let inner = status.status.as_ref()?;
        let class = inner.secret_provider_class_name.clone()?;
        let objects: Vec<(String, String)> = inner
            .objects
            .iter()
            .flatten()
            .map(|o| (o.id.clone(), o.version.clone()))
            .collect();
        let version = workloads::resource_version(status).unwrap_or(0);
        let digest = digest::secret_provider_class(&class, &objects);
        {
            let mut newest = self
                .spc_status
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let slot = newest.entry((ns.clone(), class.clone()));
            match slot {
                std::collections::hash_map::Entry::Occupied(mut held) => {
                    if held.get().0 > version {
                        return None;
                    }
                    held.insert((version, digest.clone()));
                }
                std::collections::hash_map::Entry::Vacant(free) => {
                    free.insert((version, digest.clone()));
                }
            }
        }
        let annotations = self
            .spc_annotations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(ns.clone(), class.clone()))
            .cloned()
            .unwrap_or_default();
        let entry = SourceEntry {
            digest: Some(digest),
            annotations,
            created_while_running: false,
        };
        self.sources
            .upsert(SourceKind::SecretProviderClass, &ns, &class, entry)
            .is_relevant()
            .then_some((ns, class))
    }

    pub(super) async fn watch_namespaces(self: Arc<Self>, selector: String) {
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
}
