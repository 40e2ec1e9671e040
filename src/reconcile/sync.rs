//! Which watches have delivered their first list, and so which kinds may be planned. Sources
//! come first (a plan needs them); then each kind starts on its own once its watches (and those
//! of the kinds it waits for) have synced, so one kind whose list never succeeds stops only
//! itself.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use crate::model::workload::WorkloadKind;

/// One watch whose first list counts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Watched {
    /// A source watch (`configmaps`, `secrets`, CSI kinds), in a namespace or everywhere.
    Sources(&'static str, Option<String>),
    /// The namespace watch of `--namespace-selector`.
    Namespaces,
    /// A workload kind's watch.
    Kind(WorkloadKind, Option<String>),
}

impl std::fmt::Display for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (what, ns) = match self {
            Watched::Sources(resource, ns) => (*resource, ns),
            Watched::Namespaces => return f.write_str("namespaces"),
            Watched::Kind(kind, ns) => (kind.as_str(), ns),
        };
        write!(f, "{what} in {}", ns.as_deref().unwrap_or("all namespaces"))
    }
}

#[derive(Debug, Default)]
struct State {
    pending: BTreeSet<Watched>,
    watched_kinds: BTreeSet<WorkloadKind>,
    after: BTreeMap<WorkloadKind, &'static [WorkloadKind]>,
    active: BTreeSet<WorkloadKind>,
    sources_synced: bool,
}

/// Sync bookkeeping.
#[derive(Debug, Default)]
pub struct SyncState {
    state: Mutex<State>,
}

/// What a newly synced watch unlocked.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Kinds whose plans may start now.
    pub activated: Vec<WorkloadKind>,
    /// Whether this completed the sources (the first time).
    pub sources_done: bool,
    /// Whether every expected watch has synced now (the first time).
    pub all_done: bool,
}

impl SyncState {
    /// Registers a watch that is about to start; `after` are the kinds a kind's plans wait for.
    pub fn expect(&self, watched: Watched, after: &'static [WorkloadKind]) {
        let mut state = self.lock();
        if let Watched::Kind(kind, _) = &watched {
            state.watched_kinds.insert(*kind);
            state.after.insert(*kind, after);
        }
        state.pending.insert(watched);
    }

    /// Records a watch's first list.
    pub fn synced(&self, watched: &Watched) -> Progress {
        let mut state = self.lock();
        let was_pending = state.pending.remove(watched);
        let mut progress = Progress::default();
        if !was_pending {
            return progress;
        }
        let sources_pending = state
            .pending
            .iter()
            .any(|w| !matches!(w, Watched::Kind(..)));
        if !sources_pending && !state.sources_synced {
            state.sources_synced = true;
            progress.sources_done = true;
        }
        if state.sources_synced {
            // Activate in dependency order until nothing changes.
            loop {
                let ready: Vec<WorkloadKind> = state
                    .watched_kinds
                    .iter()
                    .copied()
                    .filter(|kind| !state.active.contains(kind))
                    .filter(|kind| {
                        !state
                            .pending
                            .iter()
                            .any(|w| matches!(w, Watched::Kind(k, _) if k == kind))
                    })
                    .filter(|kind| {
                        state
                            .after
                            .get(kind)
                            .copied()
                            .unwrap_or_default()
                            .iter()
                            .all(|dep| {
                                state.active.contains(dep) || !state.watched_kinds.contains(dep)
                            })
                    })
                    .collect();
                if ready.is_empty() {
                    break;
                }
                for kind in ready {
                    state.active.insert(kind);
                    progress.activated.push(kind);
                }
            }
        }
        progress.all_done = state.pending.is_empty();
        progress
    }

    /// Whether plans of `kind` may run.
    pub fn is_active(&self, kind: WorkloadKind) -> bool {
        self.lock().active.contains(&kind)
    }

    /// Whether every source watch has delivered its first list.
    pub fn sources_synced(&self) -> bool {
        self.lock().sources_synced
    }

    /// The watches still waiting for their first list, in words.
    pub fn pending(&self) -> Vec<String> {
        self.lock()
            .pending
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns() -> Option<String> {
        Some("team".into())
    }

    #[test]
    fn kinds_start_on_their_own_once_sources_synced() {
        let sync = SyncState::default();
        sync.expect(Watched::Sources("configmaps", ns()), &[]);
        sync.expect(Watched::Kind(WorkloadKind::Deployment, ns()), &[]);
        sync.expect(
            Watched::Kind(WorkloadKind::Rollout, ns()),
            &[WorkloadKind::Deployment],
        );
        sync.expect(Watched::Kind(WorkloadKind::StatefulSet, ns()), &[]);
        let first = sync.synced(&Watched::Kind(WorkloadKind::StatefulSet, ns()));
        assert!(first.activated.is_empty(), "sources first");
        let sources = sync.synced(&Watched::Sources("configmaps", ns()));
        assert!(sources.sources_done);
        assert_eq!(sources.activated, [WorkloadKind::StatefulSet]);
        let rollouts = sync.synced(&Watched::Kind(WorkloadKind::Rollout, ns()));
        assert!(
            rollouts.activated.is_empty(),
            "Rollouts wait for Deployments"
        );
        assert_eq!(sync.pending(), ["Deployment in team"]);
        let last = sync.synced(&Watched::Kind(WorkloadKind::Deployment, ns()));
        assert_eq!(
            last.activated,
            [WorkloadKind::Deployment, WorkloadKind::Rollout]
        );
        assert!(last.all_done);
        assert!(sync.is_active(WorkloadKind::Rollout));
        assert_eq!(
            sync.synced(&Watched::Kind(WorkloadKind::Deployment, ns())),
            Progress::default(),
            "a relist counts once"
        );
    }

    #[test]
    fn a_kind_that_never_syncs_stops_only_itself() {
        let sync = SyncState::default();
        sync.expect(Watched::Sources("secrets", None), &[]);
        sync.expect(Watched::Kind(WorkloadKind::Rollout, None), &[]);
        sync.expect(Watched::Kind(WorkloadKind::DaemonSet, None), &[]);
        sync.synced(&Watched::Sources("secrets", None));
        let progress = sync.synced(&Watched::Kind(WorkloadKind::DaemonSet, None));
        assert_eq!(progress.activated, [WorkloadKind::DaemonSet]);
        assert!(!progress.all_done);
        assert!(!sync.is_active(WorkloadKind::Rollout));
        assert_eq!(sync.pending(), ["Rollout in all namespaces"]);
    }

    #[test]
    fn waiting_for_an_unwatched_kind_does_not_block() {
        let sync = SyncState::default();
        sync.expect(
            Watched::Kind(WorkloadKind::Rollout, None),
            &[WorkloadKind::Deployment],
        );
        let progress = sync.synced(&Watched::Kind(WorkloadKind::Rollout, None));
        assert!(progress.sources_done, "no source watch at all");
        assert_eq!(progress.activated, [WorkloadKind::Rollout]);
    }
}
