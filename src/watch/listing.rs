//! Workload kinds we may list but not watch (upstream's chart grants no `watch` on workloads):
//! list the kind once at start, then again in a namespace each time a watched source there
//! changes, before the workloads of that kind are planned for the change. This is upstream's
//! own cost model, one LIST per change; requests that arrive while a LIST runs are coalesced
//! into the next one. Everything else (digest cache, ledger, planning) is as with a watch.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use kube::api::{Api, ListParams};
use tokio::sync::Notify;

use crate::index;
use crate::model::digest::SourceKind;
use crate::model::workload::{WorkloadKey, WorkloadKind};
use crate::reconcile::Context;
use crate::reconcile::sync::Watched;
use crate::watch::scoped_api;
use crate::watch::workloads::{Lenient, Seen, WorkloadResource, seen};

/// Objects per LIST page.
const PAGE: u32 = 500;

/// What a namespace's next LIST is for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refresh {
    /// Plan the workloads that can track these sources.
    Sources(BTreeSet<(SourceKind, String)>),
    /// Plan every workload of the kind there.
    Everything,
}

impl Refresh {
    fn merge(&mut self, other: Refresh) {
        match (&mut *self, other) {
            (Refresh::Everything, _) => {}
            (_, Refresh::Everything) => *self = Refresh::Everything,
            (Refresh::Sources(mine), Refresh::Sources(theirs)) => mine.extend(theirs),
        }
    }
}

/// One kind listed in one scope (a namespace, or all of them).
#[derive(Debug)]
pub struct Lister {
    kind: WorkloadKind,
    scope: Option<String>,
    pending: Mutex<BTreeMap<String, Refresh>>,
    wake: Notify,
}

impl Lister {
    fn covers(&self, namespace: &str) -> bool {
        self.scope.as_deref().is_none_or(|s| s == namespace)
    }

    fn request(&self, namespace: &str, refresh: Refresh) {
        let mut pending = self.lock();
        match pending.get_mut(namespace) {
            Some(held) => held.merge(refresh),
            None => {
                pending.insert(namespace.to_owned(), refresh);
            }
        }
        drop(pending);
        // Stores a permit when the lister is busy: the request is picked up next round.
        self.wake.notify_one();
    }

    fn take(&self) -> BTreeMap<String, Refresh> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Refresh>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Every listed kind.
#[derive(Debug, Default)]
pub struct Listers {
    list: RwLock<Vec<Arc<Lister>>>,
    /// When each namespace was last refreshed for the governor, to keep those LISTs rare.
    followed: Mutex<HashMap<String, Instant>>,
}

/// How often the governor may ask for a namespace's LIST to see rollouts progress.
const FOLLOW_EVERY: Duration = Duration::from_secs(3);

impl Listers {
    /// Registers `kind`, listed in `scope`.
    pub fn register(&self, kind: WorkloadKind, scope: Option<String>) -> Arc<Lister> {
        let lister = Arc::new(Lister {
            kind,
            scope,
            pending: Mutex::default(),
            wake: Notify::new(),
        });
        self.write().push(lister.clone());
        lister
    }

    /// Whether `kind` is listed (not watched) in `namespace`: its plans for a change wait for
    /// the LIST the change causes.
    pub fn lists(&self, kind: WorkloadKind, namespace: &str) -> bool {
        self.read()
            .iter()
            .any(|l| l.kind == kind && l.covers(namespace))
    }

    /// A source changed: list the listed kinds in its namespace, then plan what can track it.
    pub fn source_changed(&self, namespace: &str, kind: SourceKind, name: &str) {
        self.each_covering(namespace, || {
            Refresh::Sources(BTreeSet::from([(kind, name.to_owned())]))
        });
    }

    /// Something about a whole namespace changed: list and plan every listed kind there.
    pub fn namespace_changed(&self, namespace: &str) {
        self.each_covering(namespace, || Refresh::Everything);
    }

    /// The governor follows a rollout of a listed kind in `namespace` (we see its status only
    /// through LISTs): list it again, at most every few seconds, and plan what changed.
    pub fn follow(&self, kind: WorkloadKind, namespace: &str) {
        if !self.lists(kind, namespace) {
            return;
        }
        {
            let mut followed = self
                .followed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            if followed
                .get(namespace)
                .is_some_and(|at| now.duration_since(*at) < FOLLOW_EVERY)
            {
                return;
            }
            followed.insert(namespace.to_owned(), now);
        }
        self.each_covering(namespace, || Refresh::Sources(BTreeSet::new()));
    }

    fn each_covering(&self, namespace: &str, refresh: impl Fn() -> Refresh) {
        for lister in self.read().iter().filter(|l| l.covers(namespace)) {
            lister.request(namespace, refresh());
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Lister>>> {
        self.list
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Arc<Lister>>> {
        self.list
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Every object of the API's scope, page by page, and the resourceVersion the list was read
/// at.
async fn list_all<K: WorkloadResource>(
    api: &Api<Lenient<K>>,
) -> Result<(Vec<Lenient<K>>, Option<u64>), kube::Error> {
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    let mut version = None;
    loop {
        let mut params = ListParams::default().limit(PAGE);
        if let Some(token) = &token {
            params = params.continue_token(token);
        }
        let page = api.list(&params).await?;
        if version.is_none() {
            version = page
                .metadata
                .resource_version
                .as_deref()
                .and_then(|v| v.parse().ok());
        }
        items.extend(page.items);
        match page.metadata.continue_ {
            Some(next) if !next.is_empty() => token = Some(next),
            _ => return Ok((items, version)),
        }
    }
}

/// Doubling from 1 s to 30 s.
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(5)).min(Duration::from_secs(30))
}

fn not_served(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

/// Lists `K` in `scope` until the process stops: once at start (the kind's first sync), then
/// per namespace as changes ask. Returns only when the API stops serving the kind.
pub async fn run<K: WorkloadResource>(
    ctx: Arc<Context>,
    scope: Option<String>,
    lister: Arc<Lister>,
) {
    let api: Api<Lenient<K>> = scoped_api(&ctx.client, scope.as_deref());
    let mut failures = 0u32;
    let items = loop {
        match list_all(&api).await {
            Ok((items, _)) => break items,
            Err(e) if not_served(&e) && failures >= 2 => {
                tracing::error!(
                    kind = K::KIND.as_str(),
                    "the API server does not serve {}; stopping its list (restart kube-reloader \
                     after installing the API)",
                    K::plural(&())
                );
                return;
            }
            Err(e) => {
                tracing::warn!(kind = K::KIND.as_str(), error = %e, "list failed; retrying with backoff");
                tokio::time::sleep(backoff(failures)).await;
                failures += 1;
            }
        }
    };
    let mut fresh = Vec::new();
    for object in &items {
        if let Seen::View(view, version) = seen(&ctx, object).await {
            ctx.kinds.observe(&view, true);
            fresh.push(ctx.workloads.fresh(*view, version));
        }
    }
    drop(items);
    for view in ctx.workloads.replace(K::KIND, scope.as_deref(), fresh) {
        ctx.kinds.observe(&view, false);
    }
    ctx.synced(&Watched::Kind(K::KIND, scope.clone()));
    let mut failures = 0u32;
    loop {
        lister.wake.notified().await;
        for (namespace, refresh) in lister.take() {
            let api: Api<Lenient<K>> = Api::namespaced(ctx.client.clone(), &namespace);
            match list_all(&api).await {
                Ok((items, version)) => {
                    failures = 0;
                    refreshed::<K>(&ctx, &namespace, (items, version), refresh).await;
                }
                Err(e) => {
                    tracing::warn!(
                        kind = K::KIND.as_str(),
                        namespace,
                        error = %e,
                        "list failed; the workloads there are planned after a retry"
                    );
                    // Kept for the next round, with whatever else arrives meanwhile.
                    lister.request(&namespace, refresh);
                    tokio::time::sleep(backoff(failures)).await;
                    failures += 1;
                }
            }
        }
    }
}

/// Brings the store up to date with one namespace's LIST and plans what needs planning:
/// workloads whose projection changed, vanished ones (a kind may hold work for them), and
/// those that can track the sources that asked for the LIST.
async fn refreshed<K: WorkloadResource>(
    ctx: &Context,
    namespace: &str,
    (items, listed_at): (Vec<Lenient<K>>, Option<u64>),
    refresh: Refresh,
) {
    let mut before: HashSet<WorkloadKey> = ctx
        .workloads
        .keys_in(namespace)
        .into_iter()
        .filter(|k| k.kind == K::KIND)
        .collect();
    let mut changed = Vec::new();
    for object in &items {
        match seen(ctx, object).await {
            Seen::View(view, version) => {
                before.remove(&view.key);
                ctx.kinds.observe(&view, true);
                let key = view.key.clone();
                if ctx.workloads.upsert(*view, version) {
                    changed.push(key);
                }
            }
            Seen::Undecodable(key) => {
                before.remove(&key);
                ctx.workloads.forget(&key);
            }
            Seen::Nameless => {}
        }
    }
    for key in before {
        if let Some(stored) = ctx.workloads.get(&key) {
            // Written by us after the LIST was read (a Job just created): not gone.
            if stored
                .version
                .zip(listed_at)
                .is_some_and(|(held, listed)| held > listed)
            {
                continue;
            }
            ctx.kinds.observe(&stored.view, false);
            ctx.workloads.remove(&key, &stored.view.uid);
        }
        ctx.enqueue(key);
    }
    for key in &changed {
        ctx.workload_changed(key);
    }
    let planned: Vec<WorkloadKey> = match refresh {
        Refresh::Everything => ctx
            .workloads
            .keys_in(namespace)
            .into_iter()
            .filter(|k| k.kind == K::KIND)
            .collect(),
        Refresh::Sources(sources) => sources
            .iter()
            .flat_map(|(kind, name)| {
                index::affected(
                    &ctx.workloads,
                    &ctx.sources,
                    &ctx.settings.policy,
                    namespace,
                    *kind,
                    name,
                )
                .0
            })
            .filter(|k| k.kind == K::KIND)
            .collect(),
    };
    for key in planned {
        ctx.enqueue(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_for_a_namespace_coalesce() {
        let listers = Listers::default();
        let all = listers.register(WorkloadKind::Deployment, None);
        let team = listers.register(WorkloadKind::StatefulSet, Some("team".into()));
        assert!(listers.lists(WorkloadKind::Deployment, "anything"));
        assert!(listers.lists(WorkloadKind::StatefulSet, "team"));
        assert!(!listers.lists(WorkloadKind::StatefulSet, "other"));
        assert!(!listers.lists(WorkloadKind::DaemonSet, "team"));

        listers.source_changed("team", SourceKind::ConfigMap, "a");
        listers.source_changed("team", SourceKind::Secret, "b");
        listers.source_changed("other", SourceKind::ConfigMap, "c");
        let pending = all.take();
        assert_eq!(
            pending["team"],
            Refresh::Sources(BTreeSet::from([
                (SourceKind::ConfigMap, "a".to_owned()),
                (SourceKind::Secret, "b".to_owned())
            ]))
        );
        assert!(pending.contains_key("other"));
        assert!(all.take().is_empty(), "taken once");
        assert_eq!(team.take().keys().collect::<Vec<_>>(), ["team"]);

        listers.source_changed("team", SourceKind::ConfigMap, "a");
        listers.namespace_changed("team");
        listers.source_changed("team", SourceKind::ConfigMap, "b");
        assert_eq!(team.take()["team"], Refresh::Everything);
    }

    #[test]
    fn backoff_doubles_up_to_thirty_seconds() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(9), Duration::from_secs(30));
    }
}
