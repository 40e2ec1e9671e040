//! ConfigMap and Secret watchers: each object is hashed the moment it arrives (only its digest
//! and the ignore/match annotations are kept), and a relevant change queues the workloads that
//! can track it. In webhook mode a qualifying change is POSTed instead.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};

use crate::index::sources::Change;
use crate::model::digest::SourceKind;
use crate::model::source::{SourceContent, SourceEntry};
use crate::notify;
use crate::ops::leader::WriteState;
use crate::reconcile::Context;
use crate::reconcile::sync::Watched;
use crate::watch::scoped_api;

/// Upstream's `reloader_skipped_total` reason for an event from a namespace that is ignored
/// or not selected (or, for adds, seen before its controller started).
pub const IGNORED_OR_NOT_SELECTED: &str = "ignored_or_not_selected";

/// Objects per page of the initial list where the API server does not serve streaming lists
/// (kube-runtime's default is 500). A page is held as response text while it decodes, so with
/// 100 KiB Secrets 500 would mean ~70 MB at once; 100 costs a few more requests at start only.
pub const SOURCE_LIST_PAGE_SIZE: u32 = 100;

/// How long a streaming list may go without an event before the first end of its initial
/// events, before it is given up for paged lists.
const STREAMING_STALL: std::time::Duration = std::time::Duration::from_secs(30);

/// Whether a watcher error says the API server refuses a streaming list (`sendInitialEvents`):
/// an older server rejects `resourceVersionMatch` on a watch, a newer one with the WatchList
/// feature off rejects `sendInitialEvents`; both answer 400 (or 422) before any event.
fn streaming_refused(error: &watcher::Error) -> bool {
    let code = match error {
        watcher::Error::WatchStartFailed(kube::Error::Api(status)) => status.code,
        watcher::Error::WatchError(status) => status.code,
        _ => return false,
    };
    matches!(code, 400 | 422)
}

/// Upstream's resource type label of a source kind.
pub fn resource_type(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::ConfigMap => "configmaps",
        SourceKind::Secret => "secrets",
        SourceKind::SecretProviderClass => "secretproviderclasspodstatuses",
    }
}

/// Watches one source kind in `namespace` (or everywhere) until the process stops.
pub async fn run<K>(
    ctx: Arc<Context>,
    namespace: Option<String>,
    kind: SourceKind,
    hash: fn(&K) -> SourceContent,
) where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let api: Api<K> = scoped_api(&ctx.client, namespace.as_deref());
    let mut config = watcher::Config::default().page_size(SOURCE_LIST_PAGE_SIZE);
    if let Some(selector) = &ctx.settings.resource_selector {
        config = config.labels(selector);
    }
    let entry = |object: &K, created: bool| {
        let SourceContent {
            digest,
            keys,
            keyed,
        } = hash(object);
        SourceEntry {
            digest: Some(digest),
            keys,
            keyed,
            flags: ctx.settings.policy.source_flags(object.annotations()),
            created_while_running: created,
            // Kept by the cache only when the digest differs from the one it held.
            data_changed_at: Some(crate::reconcile::unix_now()),
        }
    };
    let watched = Watched::Sources(resource_type(kind), namespace.clone());
    // With keyed digests, Secrets are digested under the keys: wait for them, and list again
    // whenever they change.
    let mut key_changes = (kind == SourceKind::Secret && ctx.settings.secret_digest.is_some())
        .then(|| ctx.digest_keys.subscribe());
    if let Some(changes) = &mut key_changes
        && changes
            .wait_for(|generation| *generation > 0)
            .await
            .is_err()
    {
        return;
    }
    // Streaming lists first (each object arrives as one watch event, so no list page of large
    // Secrets is ever held); pages of SOURCE_LIST_PAGE_SIZE where the API server refuses them.
    let mut streaming = true;
    let start = |streaming: bool| {
        let config = if streaming {
            config.clone().streaming_lists()
        } else {
            config.clone()
        };
        watcher(api.clone(), config).default_backoff().boxed()
    };
    let mut stream = start(streaming);
    // Whether the current stream finished an initial list (streaming lists proven served).
    let mut listed = false;
    let mut fresh: HashMap<(String, String), SourceEntry> = HashMap::new();
    let mut first = true;
    let keep_tombstones = ctx.settings.reload_on_delete;
    let sync_after_restart = ctx.settings.sync_after_restart && ctx.settings.reload_on_create;
    let resource_type = resource_type(kind);
    let metrics = &ctx.metrics;
    loop {
        // Until a streaming list has ended once, a server that accepted it but sends nothing
        // (and so never the end-of-initial-events bookmark) would leave the cache unsynced.
        let guarded = streaming && !listed;
        let next = async {
            if guarded {
                tokio::time::timeout(STREAMING_STALL, stream.next())
                    .await
                    .ok()
            } else {
                Some(stream.next().await)
            }
        };
        let next = match &mut key_changes {
            Some(changes) => tokio::select! {
                next = next => next,
                changed = changes.changed() => {
                    if changed.is_ok() {
                        tracing::info!(kind = %kind, "digest keys changed; listing again");
                        stream = start(streaming);
                        listed = false;
                    } else {
                        key_changes = None; // the process is stopping
                    }
                    continue;
                }
            },
            None => next.await,
        };
        let Some(event) = next else {
            tracing::warn!(
                kind = %kind,
                "a streaming list sent nothing for {}s; listing in pages of {SOURCE_LIST_PAGE_SIZE} instead",
                STREAMING_STALL.as_secs()
            );
            streaming = false;
            stream = start(streaming);
            continue;
        };
        let Some(event) = event else { break };
        match event {
            Ok(watcher::Event::Init) => fresh.clear(),
            Ok(watcher::Event::InitApply(object)) => {
                metrics.event_received("add", resource_type);
                let (Some(ns), name) = (object.namespace(), object.name_any()) else {
                    continue;
                };
                // Upstream drops the adds of its first list (before its workers start) unless
                // --sync-after-restart, and any add outside the selected namespaces, counting
                // each when --reload-on-create is on.
                if ctx.settings.reload_on_create
                    && ((first && !sync_after_restart) || !ctx.filter.allows(&ns))
                {
                    metrics.skipped(IGNORED_OR_NOT_SELECTED);
                }
                // After the first sync, objects new in a relist were created during the gap.
                let created = if first { sync_after_restart } else { true };
                fresh.insert((ns, name), entry(&object, created));
            }
            Ok(watcher::Event::InitDone) => {
                listed = true;
                let changed = ctx.sources.replace(
                    kind,
                    namespace.as_deref(),
                    std::mem::take(&mut fresh),
                    keep_tombstones,
                );
                if std::mem::replace(&mut first, false) {
                    ctx.synced(&watched);
                } else {
                    for ns in changed {
                        ctx.namespace_changed(&ns);
                    }
                }
                // The pages are gone; give their memory back rather than keep the peak.
                crate::ops::memory::release_free_memory();
            }
            Ok(watcher::Event::Apply(object)) => {
                let Some(ns) = object.namespace() else {
                    continue;
                };
                let name = object.name_any();
                let change = ctx.sources.upsert(kind, &ns, &name, entry(&object, true));
                let event_type = if change == Change::Created {
                    "add"
                } else {
                    "update"
                };
                metrics.event_received(event_type, resource_type);
                if change.is_relevant() {
                    ctx.source_changed(kind, &ns, &name);
                }
                // Upstream queues every update (and, with --reload-on-create, every add) from
                // a selected namespace, and counts the others as ignored_or_not_selected.
                let queued = event_type == "update" || ctx.settings.reload_on_create;
                if !ctx.filter.allows(&ns) {
                    if queued {
                        metrics.skipped(IGNORED_OR_NOT_SELECTED);
                    }
                    continue;
                }
                if !change.is_relevant() {
                    metrics.skipped("no_data_change");
                }
                let posted = change
                    .data_event()
                    .is_some_and(|event_type| notify_webhook(&ctx, event_type, &ns, resource_type));
                // A POST counts its event when it is delivered (or given up on).
                if !posted {
                    metrics.event_processed(event_type, resource_type, "success");
                }
            }
            Ok(watcher::Event::Delete(object)) => {
                metrics.event_received("delete", resource_type);
                let Some(ns) = object.namespace() else {
                    continue;
                };
                ctx.sources
                    .remove(kind, &ns, &object.name_any(), keep_tombstones);
                ctx.source_changed(kind, &ns, &object.name_any());
                if !ctx.filter.allows(&ns) {
                    if keep_tombstones {
                        metrics.skipped(IGNORED_OR_NOT_SELECTED);
                    }
                    continue;
                }
                if !notify_webhook(&ctx, "delete", &ns, resource_type) {
                    metrics.event_processed("delete", resource_type, "success");
                }
            }
            Err(e) if streaming && !listed && streaming_refused(&e) => {
                tracing::info!(
                    kind = %kind,
                    error = %e,
                    "the API server does not serve streaming lists (WatchList); listing in pages of {SOURCE_LIST_PAGE_SIZE} instead"
                );
                streaming = false;
                stream = start(streaming);
            }
            Err(e) => {
                tracing::warn!(kind = %kind, error = %e, "watch error; retrying with backoff")
            }
        }
    }
}

/// Upstream's webhook mode: one POST per qualifying change (an update with new data; a
/// create or delete when `--reload-on-create` / `--reload-on-delete` are on), from the
/// leader only, without looking at workloads. Returns whether a POST was queued (its outcome
/// then counts the event in `reloader_events_processed_total`).
pub fn notify_webhook(
    ctx: &Context,
    event_type: &'static str,
    namespace: &str,
    resource_type: &'static str,
) -> bool {
    let outbound = &ctx.report.outbound;
    let (Some(url), Some(notifier)) = (&outbound.webhook_url, &outbound.notifier) else {
        return false;
    };
    let qualifies = match event_type {
        "add" => ctx.settings.reload_on_create && ctx.sync.sources_synced(),
        "delete" => ctx.settings.reload_on_delete,
        _ => true,
    };
    if !qualifies || !ctx.filter.allows(namespace) {
        return false;
    }
    if ctx.leadership.write_state() != WriteState::Allowed {
        tracing::debug!("not the leader; the leader calls the webhook");
        return false;
    }
    notifier.send(notify::webhook(
        url,
        notify::SourceEvent {
            event_type,
            resource_type,
        },
    ));
    true
}
