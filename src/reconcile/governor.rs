//! The rollout governor's stage between planning and writing: it reads what `model::governor`
//! needs from memory that mirrors the cluster (the workload's annotations and status, the other
//! workloads' ledgers, statuses and `reloaded-at` stamps, the sources' change times), asks it,
//! and says whether the worker writes now, waits (and until when), or only reports.
//!
//! What it keeps itself is derived, never the only record: when a reload became pending (after
//! a restart: when it was first planned again, so a wait is at most restarted, never skipped),
//! which reloads wait for a slot (their order), and which notices were published (a restart may
//! publish one again, it never writes twice). A pending reload is pending because the workload's
//! ledger differs from its sources' digests, which the cluster holds.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use serde_json::json;

use crate::index;
use crate::model::governor::{self, CanaryState, Gate, GateInput, Hold, InvalidRule, Limits, Load};
use crate::model::keyed::DataNow;
use crate::model::keys;
use crate::model::pause::rfc3339;
use crate::model::plan::{Cause, Change};
use crate::model::planner::{self, PodTemplate, Reload};
use crate::model::policy::SourceRef;
use crate::model::workload::{WorkloadKey, WorkloadView};
use crate::ops::metrics::{HaltedLabels, PendingLabels};
use crate::reconcile::Context;

/// How often a reload waiting for something other than a time (a slot, a canary) is planned
/// again.
pub const POLL: Duration = Duration::from_secs(1);

/// Seconds after which a waiting reload not planned again no longer holds its place in line.
const STALE_AFTER: i64 = 10;

/// The longest wait put into the queue at once (a far window is re-planned, not slept on).
const LONGEST_WAIT: Duration = Duration::from_secs(24 * 3600);

/// What the worker does with a planned reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Write it now.
    Go,
    /// Plan it again after this long.
    Wait(Duration),
    /// Nothing to write (reported instead, or held until something changes).
    Hold,
}

#[derive(Debug, Clone)]
struct Pending {
    since: i64,
    /// When it was last planned: entries not planned for a while are stale.
    seen: i64,
    ledger: String,
    hold: Option<Hold>,
    due: Option<i64>,
}

/// The governor's bookkeeping.
#[derive(Debug, Default)]
pub struct Governor {
    pending: Mutex<HashMap<WorkloadKey, Pending>>,
    halted: Mutex<HashMap<(String, &'static str, String), String>>,
    /// Reloads admitted whose write has not returned yet: counted against the caps (the
    /// workers admit in parallel), and held across the count and the admission.
    writing: Mutex<HashSet<WorkloadKey>>,
}

impl Governor {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<WorkloadKey, Pending>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The write of an admitted reload returned (landed or failed).
    pub fn written(&self, key: &WorkloadKey) {
        self.writing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }

    /// The workload has no pending reload (any more): forget it.
    pub fn forget(&self, ctx: &Context, key: &WorkloadKey) {
        if self.lock().remove(key).is_some() {
            self.export(ctx);
        }
    }

    /// When `key`'s reload to `ledger` became pending (now, if it just did), and whether this
    /// target is new (its notices are still to publish).
    fn pending_since(&self, key: &WorkloadKey, ledger: &str, now: i64) -> (i64, bool) {
        let mut pending = self.lock();
        let entry = pending.entry(key.clone()).or_insert_with(|| Pending {
            since: now,
            seen: now,
            ledger: String::new(),
            hold: None,
            due: None,
        });
        entry.seen = now;
        let new_target = entry.ledger != ledger;
        entry.ledger = ledger.to_owned();
        (entry.since, new_target)
    }

    fn set_hold(&self, ctx: &Context, key: &WorkloadKey, hold: Option<Hold>, due: Option<i64>) {
        if let Some(entry) = self.lock().get_mut(key) {
            entry.hold = hold;
            entry.due = due;
        }
        self.export(ctx);
    }

    /// Reloads waiting for a slot that became pending before `key`'s (their turn comes first).
    fn ahead(&self, key: &WorkloadKey, since: i64, now: i64) -> Load {
        let pending = self.lock();
        let mut load = Load::default();
        for (other, entry) in pending.iter() {
            // A waiting reload is planned again every POLL; one not seen for a while is gone.
            let fresh = now.saturating_sub(entry.seen) <= STALE_AFTER;
            let waiting = fresh && matches!(entry.hold, Some(Hold::Concurrency | Hold::Rate));
            if other != key && waiting && (entry.since, other) < (since, key) {
                load.total += 1;
                if other.namespace == key.namespace {
                    load.namespace += 1;
                }
            }
        }
        load
    }

    fn export(&self, ctx: &Context) {
        let mut counts: BTreeMap<Hold, i64> = Hold::ALL.iter().map(|h| (*h, 0)).collect();
        for entry in self.lock().values() {
            if let Some(hold) = entry.hold {
                *counts.entry(hold).or_default() += 1;
            }
        }
        for (hold, count) in counts {
            ctx.metrics
                .pending_reloads
                .get_or_create(&PendingLabels {
                    reason: hold.as_str(),
                })
                .set(count);
        }
    }

    /// Records whether `change` is halted; true when it just became so (alert once).
    fn halt(&self, ctx: &Context, namespace: &str, change: &Change, halted: bool) -> bool {
        let source = (
            namespace.to_owned(),
            change.kind.upstream_type(),
            change.name.clone(),
        );
        let mut map = self
            .halted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let labels = HaltedLabels {
            namespace: source.0.clone(),
            kind: source.1,
            name: source.2.clone(),
        };
        if halted {
            let digest = change.digest.as_str().to_owned();
            let new = map.get(&source) != Some(&digest);
            map.insert(source, digest);
            ctx.metrics.halted_changes.get_or_create(&labels).set(1);
            new
        } else {
            if map.remove(&source).is_some() {
                ctx.metrics.halted_changes.get_or_create(&labels).set(0);
            }
            false
        }
    }

    /// The waiting reloads, for the diagnostics endpoint.
    pub fn snapshot(&self, now: i64) -> serde_json::Value {
        let pending = self.lock();
        let mut list: Vec<serde_json::Value> = pending
            .iter()
            .filter_map(|(key, entry)| {
                let hold = entry.hold?;
                Some(json!({
                    "workload": key.to_string(),
                    "reason": hold.as_str(),
                    "pending_for_seconds": now.saturating_sub(entry.since),
                    "due_in_seconds": entry.due.map(|d| d.saturating_sub(now)),
                }))
            })
            .collect();
        list.sort_by(|a, b| a["workload"].as_str().cmp(&b["workload"].as_str()));
        list.truncate(100);
        json!(list)
    }
}

/// Whether anything may hold a reload of `view` (else the worker writes at once, as upstream).
fn governed(limits: &Limits, view: &WorkloadView) -> bool {
    !limits.is_off()
        || [
            governor::DEBOUNCE_ANNOTATION,
            governor::WINDOW_ANNOTATION,
            governor::MODE_ANNOTATION,
        ]
        .iter()
        .any(|k| view.annotations.contains_key(k))
}

/// Whether the workload is in dry-run or notify mode (nothing is written to it).
pub fn reports_only(ctx: &Context, view: &WorkloadView) -> bool {
    ctx.settings.limits.dry_run
        || view
            .annotations
            .get(governor::MODE_ANNOTATION)
            .map(|m| m.trim())
            == Some("notify")
}

/// Rollouts of ours in progress, other than `key`'s and those being written, in all and in
/// its namespace.
fn in_progress(ctx: &Context, key: &WorkloadKey, now: i64, writing: &HashSet<WorkloadKey>) -> Load {
    let timeout = ctx.settings.limits.rollout_timeout;
    let busy = ctx.workloads.views_where(|v| {
        v.key != *key
            && !writing.contains(&v.key)
            && ctx.filter.allows(&v.key.namespace)
            && v.progress
                .as_ref()
                .is_some_and(|p| governor::in_progress(p, governor::reloaded_at(v), now, timeout))
    });
    // Without a watch, their status moves only through LISTs.
    for view in &busy {
        ctx.listers.follow(view.key.kind, &view.key.namespace);
    }
    Load {
        total: u32::try_from(busy.len()).unwrap_or(u32::MAX),
        namespace: u32::try_from(
            busy.iter()
                .filter(|v| v.key.namespace == key.namespace)
                .count(),
        )
        .unwrap_or(u32::MAX),
    }
}

/// When the reloads of the last minutes started: the workloads' `reloaded-at` stamps (other
/// than those being written), and now for each write under way.
fn reload_times(ctx: &Context, now: i64, writing: &HashSet<WorkloadKey>) -> Vec<i64> {
    let mut stamps: Vec<i64> = ctx
        .workloads
        .views_where(|v| !writing.contains(&v.key) && governor::reloaded_at(v).is_some())
        .iter()
        .filter_map(|v| governor::reloaded_at(v))
        .collect();
    stamps.extend(std::iter::repeat_n(now, writing.len()));
    stamps
}

/// The health gate over every change of the reload (the strictest wins).
fn canary(
    ctx: &Context,
    view: &WorkloadView,
    reload: &Reload,
    canaries: u32,
    (since, now): (i64, i64),
) -> (CanaryState, Option<Change>, bool) {
    let timeout = ctx.settings.limits.rollout_timeout;
    let ns = &view.key.namespace;
    let mut strictest = (CanaryState::Ungated, None, false);
    for change in reload.changes.iter().filter(|c| c.cause != Cause::Deleted) {
        let source_entry = ctx.sources.get(change.kind, ns, &change.name);
        let source = SourceRef {
            kind: change.kind,
            name: &change.name,
            flags: source_entry.as_ref().map(|e| e.flags).unwrap_or_default(),
        };
        let waiting_since = source_entry
            .as_ref()
            .and_then(|e| e.data_changed_at)
            .unwrap_or(since);
        let (keys, _) = index::affected(
            &ctx.workloads,
            &ctx.sources,
            &ctx.settings.policy,
            ns,
            change.kind,
            &change.name,
        );
        // Only workloads that track the source now, really write (not in notify mode) and
        // reload for this change (not key-level readers of other keys) can be canaries: one
        // that never reloads would hold the others for nothing.
        let stored: Vec<_> = keys
            .iter()
            .filter(|k| ctx.filter.allows(&k.namespace))
            .filter_map(|k| ctx.workloads.get(k))
            .filter(|s| {
                s.view.key == view.key
                    || (!reports_only(ctx, &s.view)
                        && planner::tracks(
                            &s.view,
                            &s.interest,
                            PodTemplate::of(&s.view),
                            source,
                            &ctx.settings.policy,
                        )
                        && !source_entry.as_ref().is_some_and(|e| {
                            e.digest.is_some_and(|sha1| {
                                keys::workload_ignores_change(
                                    &s.view,
                                    ctx.settings.key_level_triggers,
                                    (change.kind, &change.name),
                                    DataNow {
                                        sha1: &sha1.marker(),
                                        keyed: &e.keyed,
                                    },
                                    &e.keys,
                                )
                            })
                        }))
            })
            .collect();
        for s in &stored {
            ctx.listers.follow(s.view.key.kind, &s.view.key.namespace);
        }
        let trackers: Vec<&WorkloadView> = stored.iter().map(|s| s.view.as_ref()).collect();
        let state = governor::canary_for(
            view,
            change,
            &trackers,
            canaries,
            Some(waiting_since),
            (now, timeout),
        );
        let rank = |s: &CanaryState| match s {
            CanaryState::Halted { .. } => 3,
            CanaryState::Waiting { .. } => 2,
            CanaryState::Canary => 1,
            CanaryState::Ungated | CanaryState::Released => 0,
        };
        let newly = ctx
            .governor
            .halt(ctx, ns, change, matches!(state, CanaryState::Halted { .. }));
        if rank(&state) > rank(&strictest.0) {
            strictest = (state, Some(change.clone()), newly);
        }
    }
    strictest
}

/// A source and the digest a change gives it, as the governor's notices name it.
fn source_text(change: &Change) -> String {
    format!(
        "{} '{}' (digest {})",
        change.kind.upstream_type(),
        change.name,
        change.digest.as_str()
    )
}

fn sources_text(reload: &Reload) -> String {
    reload
        .changes
        .iter()
        .map(source_text)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decides one planned reload of `view`; publishes the notices that go with waiting (once per
/// pending change).
pub async fn admit(
    ctx: &Context,
    view: &WorkloadView,
    reload: &Reload,
    reference: &(dyn Fn() -> ObjectReference + Sync),
    now: i64,
) -> Verdict {
    let limits = &ctx.settings.limits;
    // Finishing a Job re-creation is not a new rollout: never hold it.
    if !governed(limits, view) || view.recreating() || reload.changes.is_empty() {
        return Verdict::Go;
    }
    let key = &view.key;
    let (rules, problems) = governor::rules(&view.annotations, limits);
    for InvalidRule {
        key: annotation,
        value,
        reason,
    } in problems
    {
        ctx.report
            .problem_once(
                &reference(),
                key,
                format!("{annotation}={value}"),
                format!(
                    "Ignoring annotation {annotation}={value:?} on {} {}/{}: {reason}. The global \
                     setting applies instead.",
                    key.kind.as_str(),
                    key.namespace,
                    key.name
                ),
            )
            .await;
    }
    let (since, new_target) = ctx.governor.pending_since(key, &reload.ledger, now);
    let last_change = reload
        .changes
        .iter()
        .filter_map(|c| {
            ctx.sources
                .get(c.kind, &key.namespace, &c.name)
                .and_then(|e| e.data_changed_at)
        })
        .max();
    let (canary, gated, newly_halted) = match limits.canaries {
        Some(n) => canary(ctx, view, reload, n, (since, now)),
        None => (CanaryState::Ungated, None, false),
    };
    let caps = limits.max_concurrent > 0 || limits.max_concurrent_per_namespace > 0;
    let gate = {
        // Counted and admitted under one lock: parallel workers never overshoot a cap.
        let mut writing = ctx
            .governor
            .writing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let busy = if caps {
            let running = in_progress(ctx, key, now, &writing);
            let ahead = ctx.governor.ahead(key, since, now);
            let in_flight = writing.iter().filter(|k| *k != key);
            let (flying, flying_here) = in_flight.fold((0u32, 0u32), |(all, here), k| {
                (all + 1, here + u32::from(k.namespace == key.namespace))
            });
            Load {
                total: running.total + ahead.total + flying,
                namespace: running.namespace + ahead.namespace + flying_here,
            }
        } else {
            Load::default()
        };
        let rate_wait = governor::rate_wait(
            if limits.max_per_minute > 0 {
                reload_times(ctx, now, &writing)
            } else {
                Vec::new()
            },
            limits.max_per_minute,
            now,
        );
        let gate = governor::gate(&GateInput {
            now,
            limits,
            rules: &rules,
            pending_since: since,
            last_change,
            busy,
            rate_wait,
            canary: canary.clone(),
        });
        if gate == Gate::Go && (caps || limits.max_per_minute > 0) {
            writing.insert(key.clone());
        }
        gate
    };
    let what = |hold: &str| format!("{hold}@{}", reload.ledger);
    match gate {
        Gate::Go => {
            ctx.governor.set_hold(ctx, key, None, None);
            Verdict::Go
        }
        Gate::DryRun => {
            ctx.governor.set_hold(ctx, key, None, None);
            if new_target {
                ctx.metrics.would_reload.inc();
                let note = format!(
                    "Would reload {} {}/{} (dry-run): {} changed",
                    key.kind.as_str(),
                    key.namespace,
                    key.name,
                    sources_text(reload)
                );
                ctx.report
                    .notice_once(
                        &reference(),
                        key,
                        what("would"),
                        false,
                        "WouldReload",
                        note.clone(),
                    )
                    .await;
                ctx.report.alert(format!("Reloader (dry-run): {note}"));
            }
            Verdict::Hold
        }
        Gate::Wait { hold, until } => {
            ctx.governor.set_hold(ctx, key, Some(hold), until);
            match (&hold, &canary) {
                (Hold::Window, _) => {
                    let at = until.unwrap_or(now);
                    let note = format!(
                        "Reload of {} {}/{} for {} deferred until its maintenance window opens at {}",
                        key.kind.as_str(),
                        key.namespace,
                        key.name,
                        sources_text(reload),
                        rfc3339(at)
                    );
                    ctx.report
                        .notice_once(
                            &reference(),
                            key,
                            what("deferred"),
                            false,
                            "ReloadDeferred",
                            note,
                        )
                        .await;
                }
                (Hold::Halted, CanaryState::Halted { canary, reason }) => {
                    let source = gated.as_ref().map(source_text).unwrap_or_default();
                    let note = format!(
                        "Reload of {} {}/{} for {source} halted: canary {canary} failed ({reason}). \
                         A new change of the source starts a new canary round.",
                        key.kind.as_str(),
                        key.namespace,
                        key.name
                    );
                    ctx.report
                        .notice_once(
                            &reference(),
                            key,
                            what("halted"),
                            true,
                            "ReloadHalted",
                            note.clone(),
                        )
                        .await;
                    // One alert per halted change, not one per waiting workload.
                    if newly_halted {
                        ctx.report.alert(format!("Reloader: {note}"));
                    }
                }
                _ => {}
            }
            match until {
                Some(at) => Verdict::Wait(
                    Duration::from_secs(u64::try_from(at.saturating_sub(now)).unwrap_or(0).max(1))
                        .min(LONGEST_WAIT),
                ),
                None if hold == Hold::Halted => Verdict::Wait(POLL * 5),
                None => Verdict::Wait(POLL),
            }
        }
    }
}
