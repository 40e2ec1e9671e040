//! Secrets Store CSI (`--enable-csi-integration`): a SecretProviderClass is a source whose
//! digest is that of its newest pod status (each pod has one, and the driver updates them one by
//! one on rotation; the ledger makes the other pods' updates no-ops, upstream's dedup). The
//! class's ignore/match annotations come from the class itself, as upstream reads them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::ResourceExt;
use kube::runtime::{WatchStreamExt, watcher};

use crate::model::digest::{self, Digest, SourceKind};
use crate::model::source::SourceEntry;
use crate::reconcile::Context;
use crate::reconcile::sync::Watched;
use crate::watch::custom::{SecretProviderClass, SecretProviderClassPodStatus};
use crate::watch::scoped_api;
use crate::watch::workloads::resource_version;

/// What the CSI watchers keep between events.
#[derive(Debug, Default)]
pub struct CsiState {
    /// Per (namespace, class): the resourceVersion and digest of the newest pod status seen,
    /// so one stale pod status never turns a class's digest back.
    newest: Mutex<HashMap<(String, String), (u64, Digest)>>,
    /// Annotations (ignore, match) of SecretProviderClasses, by (namespace, name).
    annotations: Mutex<HashMap<(String, String), BTreeMap<String, String>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Keeps the ignore/match annotations of SecretProviderClasses.
pub async fn watch_classes(ctx: Arc<Context>, namespace: Option<String>) {
    let keys = [
        ctx.settings.policy.keys.ignore.clone(),
        ctx.settings.policy.keys.search_match.clone(),
    ];
    let watched = Watched::Sources("secretproviderclasses", namespace.clone());
    let mut stream = watcher(
        scoped_api::<SecretProviderClass>(&ctx.client, namespace.as_deref()),
        watcher::Config::default(),
    )
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
                lock(&ctx.csi.annotations).insert((ns.clone(), name.clone()), annotations.clone());
                // A status seen before its class carries no annotations yet: fix it up.
                let kind = SourceKind::SecretProviderClass;
                if let Some(mut entry) = ctx.sources.get(kind, &ns, &name)
                    && entry.annotations != annotations
                {
                    entry.annotations = annotations;
                    if ctx.sources.upsert(kind, &ns, &name, entry).is_relevant()
                        && ctx.sync.sources_synced()
                    {
                        ctx.source_changed(kind, &ns, &name);
                    }
                }
            }
            Ok(watcher::Event::Delete(class)) => {
                if let Some(ns) = class.namespace() {
                    lock(&ctx.csi.annotations).remove(&(ns, class.name_any()));
                }
            }
            Ok(watcher::Event::InitDone) => {
                if std::mem::replace(&mut first, false) {
                    ctx.synced(&watched);
                }
            }
            Ok(watcher::Event::Init) => {}
            Err(e) => {
                tracing::warn!(error = %e, "SecretProviderClass watch error; retrying with backoff")
            }
        }
    }
}

/// Turns pod statuses into the digest of their class.
pub async fn watch_pod_statuses(ctx: Arc<Context>, namespace: Option<String>) {
    // Upstream applies --resource-label-selector here too, which in effect turns CSI off
    // unless the driver labels its statuses; we do not.
    let watched = Watched::Sources("secretproviderclasspodstatuses", namespace.clone());
    let mut stream = watcher(
        scoped_api::<SecretProviderClassPodStatus>(&ctx.client, namespace.as_deref()),
        watcher::Config::default(),
    )
    .default_backoff()
    .boxed();
    let mut first = true;
    let resource_type = "secretproviderclasspodstatuses";
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::InitApply(status)) => {
                ctx.metrics.event_received("add", resource_type);
                observe(&ctx, &status);
            }
            Ok(watcher::Event::Apply(status)) => {
                ctx.metrics.event_received("update", resource_type);
                if let Some((ns, class)) = observe(&ctx, &status) {
                    ctx.source_changed(SourceKind::SecretProviderClass, &ns, &class);
                }
                ctx.metrics
                    .event_processed("update", resource_type, "success");
            }
            Ok(watcher::Event::Delete(_)) => {
                // A pod went away; the class's digest stays what it was.
                ctx.metrics.event_received("delete", resource_type);
            }
            Ok(watcher::Event::InitDone) => {
                if std::mem::replace(&mut first, false) {
                    ctx.synced(&watched);
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
fn observe(ctx: &Context, status: &SecretProviderClassPodStatus) -> Option<(String, String)> {
    let ns = status.namespace()?;
    let inner = status.status.as_ref()?;
    let class = inner.secret_provider_class_name.clone()?;
    let objects: Vec<(String, String)> = inner
        .objects
        .iter()
        .flatten()
        .map(|o| (o.id.clone(), o.version.clone()))
        .collect();
    let version = resource_version(status).unwrap_or(0);
    let digest = digest::secret_provider_class(&class, &objects);
    {
        let mut newest = lock(&ctx.csi.newest);
        let slot = newest
            .entry((ns.clone(), class.clone()))
            .or_insert((0, digest.clone()));
        if slot.0 > version {
            return None;
        }
        *slot = (version, digest.clone());
    }
    let annotations = lock(&ctx.csi.annotations)
        .get(&(ns.clone(), class.clone()))
        .cloned()
        .unwrap_or_default();
    let entry = SourceEntry {
        digest: Some(digest),
        annotations,
        created_while_running: false,
        data_changed_at: Some(crate::reconcile::unix_now()),
    };
    ctx.sources
        .upsert(SourceKind::SecretProviderClass, &ns, &class, entry)
        .is_relevant()
        .then_some((ns, class))
}
