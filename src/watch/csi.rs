//! Secrets Store CSI (`--enable-csi-integration`): a SecretProviderClass is a source whose
//! digest is that of its newest pod status (each pod has one, and the driver updates them one by
//! one on rotation; the ledger makes the other pods' updates no-ops, upstream's dedup). The
//! class's ignore/match annotations come from the class itself, as upstream reads them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::ResourceExt;
use kube::runtime::{WatchStreamExt, watcher};

use crate::model::digest::{self, Sha1Digest, SourceKind};
use crate::model::source::{SourceEntry, SourceFlags};
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
    newest: Mutex<HashMap<(String, String), (u64, Sha1Digest)>>,
    /// What the ignore and match annotations of SecretProviderClasses say, by (namespace,
    /// name).
    flags: Mutex<HashMap<(String, String), SourceFlags>>,
    /// Per pod status (namespace, name): the digest of its own objects (`None` without
    /// objects), so an update is compared with that status's previous version, as upstream's
    /// update handler does (webhook POSTs, `no_data_change`).
    statuses: Mutex<HashMap<(String, String), Option<Sha1Digest>>>,
}

/// How a pod status compares with its previous version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusChange {
    /// Not seen before (upstream ignores SPCPS adds).
    New,
    /// Its objects' versions changed (or it had no objects before).
    Changed,
    /// The same objects.
    Same,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Keeps the ignore/match annotations of SecretProviderClasses.
pub async fn watch_classes(ctx: Arc<Context>, namespace: Option<String>) {
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
                let flags = ctx.settings.policy.source_flags(class.annotations());
                let name = class.name_any();
                lock(&ctx.csi.flags).insert((ns.clone(), name.clone()), flags);
                // A status seen before its class carries no annotations yet: fix it up.
                let kind = SourceKind::SecretProviderClass;
                if let Some(mut entry) = ctx.sources.get(kind, &ns, &name)
                    && entry.flags != flags
                {
                    entry.flags = flags;
                    if ctx.sources.upsert(kind, &ns, &name, entry).is_relevant()
                        && ctx.sync.sources_synced()
                    {
                        ctx.source_changed(kind, &ns, &name);
                    }
                }
            }
            Ok(watcher::Event::Delete(class)) => {
                if let Some(ns) = class.namespace() {
                    lock(&ctx.csi.flags).remove(&(ns, class.name_any()));
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
                remember(&ctx, &status);
                observe(&ctx, &status);
            }
            Ok(watcher::Event::Apply(status)) => {
                let own = remember(&ctx, &status);
                // Upstream ignores SPCPS adds; only updates count.
                let event_type = if own == StatusChange::New {
                    "add"
                } else {
                    "update"
                };
                ctx.metrics.event_received(event_type, resource_type);
                if let Some((ns, class)) = observe(&ctx, &status) {
                    ctx.source_changed(SourceKind::SecretProviderClass, &ns, &class);
                }
                if own == StatusChange::New {
                    continue;
                }
                let Some(ns) = status.namespace() else {
                    continue;
                };
                if !ctx.filter.allows(&ns) {
                    ctx.metrics
                        .skipped(crate::watch::sources::IGNORED_OR_NOT_SELECTED);
                    continue;
                }
                let posted = match own {
                    StatusChange::Same => {
                        ctx.metrics.skipped("no_data_change");
                        false
                    }
                    // Upstream's update handler POSTs in webhook mode instead of reloading.
                    _ => crate::watch::sources::notify_webhook(&ctx, "update", &ns, resource_type),
                };
                if !posted {
                    ctx.metrics
                        .event_processed("update", resource_type, "success");
                }
            }
            Ok(watcher::Event::Delete(status)) => {
                // A pod went away; the class's digest stays what it was.
                ctx.metrics.event_received("delete", resource_type);
                if let Some(ns) = status.namespace() {
                    lock(&ctx.csi.statuses).remove(&(ns, status.name_any()));
                }
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

/// Records a pod status's own digest and compares it with its previous version.
fn remember(ctx: &Context, status: &SecretProviderClassPodStatus) -> StatusChange {
    let Some(ns) = status.namespace() else {
        return StatusChange::New;
    };
    let own = status.status.as_ref().and_then(|inner| {
        let class = inner.secret_provider_class_name.as_deref().unwrap_or("");
        let objects: Vec<(String, String)> = inner
            .objects
            .as_ref()?
            .iter()
            .map(|o| (o.id.clone(), o.version.clone()))
            .collect();
        Some(digest::secret_provider_class(class, &objects))
    });
    match lock(&ctx.csi.statuses).insert((ns, status.name_any()), own) {
        None => StatusChange::New,
        Some(previous) if previous == own => StatusChange::Same,
        Some(_) => StatusChange::Changed,
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
            .or_insert((0, digest));
        if slot.0 > version {
            return None;
        }
        *slot = (version, digest);
    }
    let flags = lock(&ctx.csi.flags)
        .get(&(ns.clone(), class.clone()))
        .copied()
        .unwrap_or_default();
    let entry = SourceEntry {
        digest: Some(digest),
        // A SecretProviderClass has no keys: always whole-object.
        keys: Default::default(),
        keyed: Default::default(),
        flags,
        created_while_running: false,
        data_changed_at: Some(crate::reconcile::unix_now()),
    };
    ctx.sources
        .upsert(SourceKind::SecretProviderClass, &ns, &class, entry)
        .is_relevant()
        .then_some((ns, class))
}
