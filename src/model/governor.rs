//! The rollout governor's decisions: whether a planned reload goes ahead now, waits (debounce,
//! maintenance window, canary, concurrency, rate), is halted by a failed canary, or is only
//! reported (dry-run). Pure: every input is read from the cluster by the caller (the workload's
//! annotations and status, the other workloads' ledgers and statuses, the sources' change
//! times) or is the time now, so a restart recomputes every decision.

use crate::model::annotations::Annotations;
use crate::model::ledger::{LEDGER_ANNOTATION, Ledger};
use crate::model::pause::parse_go_duration;
use crate::model::plan::Change;
use crate::model::window::Window;
use crate::model::workload::WorkloadView;

/// Per-workload debounce period (`"30s"`).
pub const DEBOUNCE_ANNOTATION: &str = "kube-reloader.io/debounce";
/// Per-workload maintenance window.
pub const WINDOW_ANNOTATION: &str = "kube-reloader.io/reload-window";
/// Per-workload mode: `notify` reports instead of reloading.
pub const MODE_ANNOTATION: &str = "kube-reloader.io/mode";
/// When we last reloaded the workload (Unix seconds), written with each reload while a
/// concurrency cap, rate limit or health gate is on: rollouts in progress and reloads in the
/// last minute are counted from it.
pub const RELOADED_AT_ANNOTATION: &str = "kube-reloader.io/reloaded-at";

/// A source that never stops changing still rolls this many debounce periods after its first
/// pending change.
pub const MAX_DEBOUNCE_FACTOR: i64 = 5;

/// The global limits (flags). Zero means off.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// `--debounce`, seconds.
    pub debounce: i64,
    /// `--reload-window`.
    pub window: Option<Window>,
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--max-concurrent-rollouts`.
    pub max_concurrent: u32,
    /// `--max-concurrent-rollouts-per-namespace`.
    pub max_concurrent_per_namespace: u32,
    /// `--max-reloads-per-minute`: a token bucket with that burst, refilled at that rate.
    pub max_per_minute: u32,
    /// `--health-gate`: canaries per change.
    pub canaries: Option<u32>,
    /// `--rollout-timeout`, seconds.
    pub rollout_timeout: i64,
}

impl Limits {
    /// Whether no flag asks anything of the governor (upstream's behaviour).
    pub fn is_off(&self) -> bool {
        self.debounce == 0 && self.window.is_none() && !self.dry_run && !self.follows_rollouts()
    }

    /// Whether rollouts must be followed (their status read, `reloaded-at` written).
    pub fn follows_rollouts(&self) -> bool {
        self.max_concurrent > 0
            || self.max_concurrent_per_namespace > 0
            || self.max_per_minute > 0
            || self.canaries.is_some()
    }
}

/// What a workload's annotations ask of the governor, with the global defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// Debounce period, seconds (0: none).
    pub debounce: i64,
    /// Maintenance window.
    pub window: Option<Window>,
    /// Report instead of reloading.
    pub notify: bool,
}

/// An annotation value the governor cannot use (the global setting applies instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRule {
    /// The annotation.
    pub key: &'static str,
    /// Its value.
    pub value: String,
    /// Why, and the expected syntax.
    pub reason: String,
}

/// A duration flag or annotation value: a Go duration, not negative.
pub fn parse_period(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if text.starts_with('-') {
        return Err(format!("{text:?} is negative"));
    }
    let duration = parse_go_duration(text).map_err(|e| {
        format!(
            "{text:?} is not a duration like \"30s\" or \"5m\": {}",
            e.reason
        )
    })?;
    if !duration.is_zero() && duration.as_secs() == 0 {
        return Err(format!(
            "{text:?} is shorter than the 1s resolution; use 0s or at least 1s"
        ));
    }
    Ok(i64::try_from(duration.as_secs()).unwrap_or(i64::MAX))
}

/// The rules of a workload: its annotations over the global limits; a bad value is reported and
/// the global setting used.
pub fn rules(annotations: &Annotations, limits: &Limits) -> (Rules, Vec<InvalidRule>) {
    let mut problems = Vec::new();
    let debounce = match annotations.get(DEBOUNCE_ANNOTATION) {
        None => limits.debounce,
        Some(value) => parse_period(value).unwrap_or_else(|reason| {
            problems.push(InvalidRule {
                key: DEBOUNCE_ANNOTATION,
                value: value.clone(),
                reason,
            });
            limits.debounce
        }),
    };
    let window = match annotations.get(WINDOW_ANNOTATION) {
        None => limits.window.clone(),
        Some(value) => match Window::parse(value) {
            Ok(window) => Some(window),
            Err(invalid) => {
                problems.push(InvalidRule {
                    key: WINDOW_ANNOTATION,
                    value: value.clone(),
                    reason: invalid.to_string(),
                });
                limits.window.clone()
            }
        },
    };
    let notify = match annotations.get(MODE_ANNOTATION).map(|v| v.trim()) {
        None | Some("") | Some("reload") => limits.dry_run,
        Some("notify") => true,
        Some(other) => {
            problems.push(InvalidRule {
                key: MODE_ANNOTATION,
                value: other.to_owned(),
                reason: "the mode is \"notify\" (report only) or \"reload\"".to_owned(),
            });
            limits.dry_run
        }
    };
    (
        Rules {
            debounce,
            window,
            notify,
        },
        problems,
    )
}

/// Rollouts counted against a cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    /// In the whole scope.
    pub total: u32,
    /// In the workload's namespace.
    pub namespace: u32,
}

/// Where a reload stands with the health gate of its change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CanaryState {
    /// The change reaches few enough workloads (or the gate is off).
    Ungated,
    /// This workload is one of the change's canaries.
    Canary,
    /// Every canary completed its rollout with the new data.
    Released,
    /// A canary has not completed yet.
    Waiting {
        /// The canary waited for.
        canary: String,
    },
    /// A canary failed: no other workload gets this data.
    Halted {
        /// The failed canary.
        canary: String,
        /// Its condition.
        reason: String,
    },
}

/// Why a reload waits (the `reason` label of `kube_reloader_pending_reloads`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hold {
    /// Its sources are still changing.
    Debounce,
    /// Outside its maintenance window.
    Window,
    /// Over the concurrency cap.
    Concurrency,
    /// Over the rate limit.
    Rate,
    /// Waiting for the change's canaries.
    Canary,
    /// The change's canary failed.
    Halted,
}

impl Hold {
    /// Every reason, for metrics.
    pub const ALL: [Hold; 6] = [
        Hold::Debounce,
        Hold::Window,
        Hold::Concurrency,
        Hold::Rate,
        Hold::Canary,
        Hold::Halted,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Hold::Debounce => "debounce",
            Hold::Window => "window",
            Hold::Concurrency => "concurrency",
            Hold::Rate => "rate",
            Hold::Canary => "canary",
            Hold::Halted => "halted",
        }
    }
}

/// Everything a gate decision depends on.
#[derive(Debug, Clone)]
pub struct GateInput<'a> {
    /// Unix seconds now.
    pub now: i64,
    /// The global limits.
    pub limits: &'a Limits,
    /// The workload's rules.
    pub rules: &'a Rules,
    /// When this workload's reload became pending (first seen pending by this process).
    pub pending_since: i64,
    /// The latest data change among the sources it reloads for, if seen while running.
    pub last_change: Option<i64>,
    /// Rollouts in progress (ours, not this workload's), and reloads waiting for a slot that
    /// became pending before this one.
    pub busy: Load,
    /// Seconds until the rate limit has a token ([`rate_wait`]); 0 when one is free.
    pub rate_wait: i64,
    /// The health gate.
    pub canary: CanaryState,
}

/// The governor's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Reload now.
    Go,
    /// Report what would be reloaded; write nothing.
    DryRun,
    /// Wait; plan again at `until` (Unix seconds), or when something changes when `None`.
    Wait {
        /// Why.
        hold: Hold,
        /// When to plan again.
        until: Option<i64>,
    },
}

/// Decides one reload. Checks, in order: debounce, window, health gate, then (for a real
/// reload) concurrency and rate.
pub fn gate(input: &GateInput<'_>) -> Gate {
    let now = input.now;
    let rules = input.rules;
    if rules.debounce > 0 {
        let quiet_since = input
            .last_change
            .unwrap_or(input.pending_since)
            .max(input.pending_since);
        let due = (quiet_since.saturating_add(rules.debounce)).min(
            input
                .pending_since
                .saturating_add(rules.debounce.saturating_mul(MAX_DEBOUNCE_FACTOR)),
        );
        if now < due {
            return Gate::Wait {
                hold: Hold::Debounce,
                until: Some(due),
            };
        }
    }
    if let Some(window) = &rules.window
        && !window.is_open(now)
    {
        return Gate::Wait {
            hold: Hold::Window,
            until: Some(window.next_open(now)),
        };
    }
    if rules.notify {
        return Gate::DryRun;
    }
    match &input.canary {
        CanaryState::Halted { .. } => {
            return Gate::Wait {
                hold: Hold::Halted,
                until: None,
            };
        }
        CanaryState::Waiting { .. } => {
            return Gate::Wait {
                hold: Hold::Canary,
                until: None,
            };
        }
        CanaryState::Ungated | CanaryState::Canary | CanaryState::Released => {}
    }
    let limits = input.limits;
    let over = |cap: u32, busy: u32| cap > 0 && busy >= cap;
    if over(limits.max_concurrent, input.busy.total)
        || over(limits.max_concurrent_per_namespace, input.busy.namespace)
    {
        return Gate::Wait {
            hold: Hold::Concurrency,
            until: None,
        };
    }
    if limits.max_per_minute > 0 && input.rate_wait > 0 {
        return Gate::Wait {
            hold: Hold::Rate,
            until: Some(now.saturating_add(input.rate_wait)),
        };
    }
    Gate::Go
}

/// How far back reload times are replayed into the token bucket (it is full again after a
/// minute without reloads, so older history rarely matters).
const RATE_HISTORY: i64 = 600;

/// Seconds until the rate limit's token bucket (burst `per_minute`, refilled at `per_minute`
/// a minute) has a token, replaying the start times of earlier reloads (`stamps`, read from
/// the cluster); 0 when one is free now.
pub fn rate_wait(mut stamps: Vec<i64>, per_minute: u32, now: i64) -> i64 {
    if per_minute == 0 {
        return 0;
    }
    let capacity = f64::from(per_minute);
    let per_second = capacity / 60.0;
    let start = now.saturating_sub(RATE_HISTORY);
    stamps.retain(|t| *t > start && *t <= now);
    stamps.sort_unstable();
    let (mut tokens, mut at) = (capacity, start);
    for t in stamps {
        tokens = (tokens + (t - at) as f64 * per_second).min(capacity) - 1.0;
        at = t;
    }
    tokens = (tokens + (now - at) as f64 * per_second).min(capacity);
    if tokens >= 1.0 {
        0
    } else {
        ((1.0 - tokens) / per_second).ceil().max(1.0) as i64
    }
}

/// How a workload's rollout stands, from its status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Progress {
    /// The status shows the latest spec fully rolled out.
    pub complete: bool,
    /// The workload controller gave up (a Deployment's `ProgressDeadlineExceeded`, a failed Job).
    pub failed: Option<String>,
}

/// Whether a rollout we started at `reloaded_at` still counts as in progress: not complete,
/// not failed, and younger than the rollout timeout.
pub fn in_progress(progress: &Progress, reloaded_at: Option<i64>, now: i64, timeout: i64) -> bool {
    let Some(at) = reloaded_at else {
        return false;
    };
    !progress.complete && progress.failed.is_none() && now.saturating_sub(at) < timeout
}

/// The failure of a rollout we started, if it failed: the workload controller's condition, or
/// the rollout timeout running out.
pub fn failure(
    progress: &Progress,
    reloaded_at: Option<i64>,
    now: i64,
    timeout: i64,
) -> Option<String> {
    if progress.complete {
        return None;
    }
    if let Some(reason) = &progress.failed {
        return Some(reason.clone());
    }
    let at = reloaded_at?;
    (now.saturating_sub(at) >= timeout)
        .then(|| format!("not complete within the rollout timeout ({timeout}s)"))
}

/// One workload tracking a changed source, as the health gate sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracker<'a> {
    /// Its name, unique among the trackers (canaries are the first in this order): the
    /// workload's name, then its kind.
    pub name: &'a str,
    /// Since when it could have had the new data (the source's change, as seen): a canary
    /// that has not got it within the rollout timeout has failed.
    pub waiting_since: Option<i64>,
    /// Whether it already carries the new data.
    pub has_new_data: bool,
    /// Its rollout, when it has the new data.
    pub progress: Progress,
    /// When we reloaded it.
    pub reloaded_at: Option<i64>,
}

/// When we last reloaded the workload (its `reloaded-at` stamp).
pub fn reloaded_at(view: &WorkloadView) -> Option<i64> {
    view.annotations
        .get(RELOADED_AT_ANNOTATION)
        .and_then(|v| v.trim().parse().ok())
}

/// The health gate for `view`'s reload for `change`, among `trackers`: the workloads that track
/// the changed source (`view` among them). A tracker has the new data when its ledger records
/// the change's digest; one without a rollout status counts as complete.
pub fn canary_for(
    view: &WorkloadView,
    change: &Change,
    trackers: &[&WorkloadView],
    canaries: u32,
    waiting_since: Option<i64>,
    (now, timeout): (i64, i64),
) -> CanaryState {
    let label = |v: &WorkloadView| format!("{} ({})", v.key.name, v.key.kind.as_str());
    let labels: Vec<String> = trackers.iter().map(|v| label(v)).collect();
    let trackers: Vec<Tracker<'_>> = trackers
        .iter()
        .zip(&labels)
        .map(|(v, name)| Tracker {
            name,
            waiting_since,
            // A key-level record carries the whole-object digest too; a keyed one the marker.
            has_new_data: v.key != view.key
                && Ledger::parse(v.annotations.get(LEDGER_ANNOTATION).map(String::as_str))
                    .get(change.kind, &change.name)
                    .map(|recorded| {
                        crate::model::keyed::record_marker(
                            crate::model::keys::Entry::parse(recorded).whole(),
                        )
                    })
                    == Some(change.digest.as_str()),
            progress: v.progress.clone().unwrap_or(Progress {
                complete: true,
                failed: None,
            }),
            reloaded_at: reloaded_at(v),
        })
        .collect();
    canary_state(&label(view), &trackers, canaries, now, timeout)
}

/// The health gate for workload `name` and one change reaching `trackers` (including it).
pub fn canary_state(
    name: &str,
    trackers: &[Tracker<'_>],
    canaries: u32,
    now: i64,
    timeout: i64,
) -> CanaryState {
    let n = usize::try_from(canaries).unwrap_or(usize::MAX);
    if trackers.len() <= n {
        return CanaryState::Ungated;
    }
    let mut sorted: Vec<&Tracker<'_>> = trackers.iter().collect();
    sorted.sort_by_key(|t| t.name);
    let chosen = &sorted[..n];
    if chosen.iter().any(|t| t.name == name) {
        return CanaryState::Canary;
    }
    for canary in chosen {
        if !canary.has_new_data {
            if canary
                .waiting_since
                .is_some_and(|since| now.saturating_sub(since) >= timeout)
            {
                return CanaryState::Halted {
                    canary: canary.name.to_owned(),
                    reason: format!(
                        "it did not get the new data within the rollout timeout ({timeout}s)"
                    ),
                };
            }
            return CanaryState::Waiting {
                canary: canary.name.to_owned(),
            };
        }
        if let Some(reason) = failure(&canary.progress, canary.reloaded_at, now, timeout) {
            return CanaryState::Halted {
                canary: canary.name.to_owned(),
                reason,
            };
        }
        if !canary.progress.complete {
            return CanaryState::Waiting {
                canary: canary.name.to_owned(),
            };
        }
    }
    CanaryState::Released
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn rules_with(debounce: i64) -> Rules {
        Rules {
            debounce,
            window: None,
            notify: false,
        }
    }

    fn input<'a>(limits: &'a Limits, rules: &'a Rules) -> GateInput<'a> {
        GateInput {
            now: NOW,
            limits,
            rules,
            pending_since: NOW,
            last_change: None,
            busy: Load::default(),
            rate_wait: 0,
            canary: CanaryState::Ungated,
        }
    }

    #[test]
    fn defaults_go_at_once() {
        let limits = Limits::default();
        let rules = rules_with(0);
        assert_eq!(gate(&input(&limits, &rules)), Gate::Go);
        assert!(!limits.follows_rollouts());
        let timeout_only = Limits {
            rollout_timeout: 600,
            ..Limits::default()
        };
        assert!(timeout_only.is_off(), "a timeout alone asks nothing");
        assert!(
            !Limits {
                debounce: 1,
                ..Limits::default()
            }
            .is_off()
        );
    }

    #[test]
    fn debounce_waits_for_quiet_and_at_most_five_periods() {
        let limits = Limits::default();
        let rules = rules_with(30);
        // (pending since, last change, now, expected due or None for go)
        let table = [
            (NOW, Some(NOW), NOW, Some(NOW + 30)),
            (NOW, Some(NOW), NOW + 30, None),
            (NOW, Some(NOW + 20), NOW + 30, Some(NOW + 50)),
            (NOW, Some(NOW + 140), NOW + 149, Some(NOW + 150)),
            (NOW, Some(NOW + 149), NOW + 150, None),
            (NOW, None, NOW + 10, Some(NOW + 30)),
        ];
        for (pending_since, last_change, now, due) in table {
            let decided = gate(&GateInput {
                now,
                pending_since,
                last_change,
                ..input(&limits, &rules)
            });
            let expected = match due {
                Some(until) => Gate::Wait {
                    hold: Hold::Debounce,
                    until: Some(until),
                },
                None => Gate::Go,
            };
            assert_eq!(decided, expected, "{pending_since} {last_change:?} {now}");
        }
    }

    #[test]
    fn limits_hold_in_order_and_dry_run_skips_them() {
        let limits = Limits {
            max_concurrent: 2,
            max_concurrent_per_namespace: 1,
            max_per_minute: 3,
            ..Limits::default()
        };
        let rules = rules_with(0);
        let base = input(&limits, &rules);
        let concurrency = Gate::Wait {
            hold: Hold::Concurrency,
            until: None,
        };
        let with = |busy: Load, rate_wait: i64| {
            gate(&GateInput {
                busy,
                rate_wait,
                ..base.clone()
            })
        };
        assert_eq!(
            with(
                Load {
                    total: 1,
                    namespace: 0
                },
                0
            ),
            Gate::Go
        );
        assert_eq!(
            with(
                Load {
                    total: 2,
                    namespace: 0
                },
                0
            ),
            concurrency
        );
        assert_eq!(
            with(
                Load {
                    total: 1,
                    namespace: 1
                },
                0
            ),
            concurrency
        );
        assert_eq!(
            with(Load::default(), 10),
            Gate::Wait {
                hold: Hold::Rate,
                until: Some(NOW + 10)
            }
        );
        let notify = Rules {
            notify: true,
            ..rules_with(0)
        };
        assert_eq!(
            gate(&GateInput {
                rules: &notify,
                busy: Load {
                    total: 9,
                    namespace: 9
                },
                ..base.clone()
            }),
            Gate::DryRun
        );
        assert_eq!(
            gate(&GateInput {
                canary: CanaryState::Halted {
                    canary: "a".into(),
                    reason: "x".into()
                },
                ..base.clone()
            }),
            Gate::Wait {
                hold: Hold::Halted,
                until: None
            }
        );
    }

    #[test]
    fn the_rate_limit_is_a_token_bucket_replayed_from_reload_times() {
        // 60 a minute: one token a second, burst 60.
        assert_eq!(rate_wait(vec![], 60, NOW), 0);
        let burst: Vec<i64> = vec![NOW; 60];
        assert_eq!(rate_wait(burst.clone(), 60, NOW), 1, "the burst is spent");
        assert_eq!(rate_wait(burst, 60, NOW + 1), 0, "refilled by one");
        assert_eq!(rate_wait(vec![NOW; 59], 60, NOW), 0, "one token left");
        // 2 a minute: after two, the next token comes 30 s later.
        assert_eq!(rate_wait(vec![NOW, NOW], 2, NOW), 30);
        assert_eq!(rate_wait(vec![NOW - 40, NOW - 40], 2, NOW), 0);
        assert_eq!(
            rate_wait(vec![NOW - 10_000; 5], 2, NOW),
            0,
            "old history is full again"
        );
        assert_eq!(rate_wait(vec![NOW; 9], 0, NOW), 0, "off");
    }

    #[test]
    fn canaries_are_the_first_by_name_and_gate_the_rest() {
        let done = Progress {
            complete: true,
            failed: None,
        };
        let rolling = Progress::default();
        let stuck = Progress {
            complete: false,
            failed: Some("ProgressDeadlineExceeded".into()),
        };
        let tracker = |name, has_new_data, progress: &Progress| Tracker {
            name,
            waiting_since: Some(NOW - 10),
            has_new_data,
            progress: progress.clone(),
            reloaded_at: Some(NOW - 10),
        };
        let few = [tracker("a", false, &rolling)];
        assert_eq!(canary_state("a", &few, 1, NOW, 600), CanaryState::Ungated);
        let pending = [
            tracker("c", false, &rolling),
            tracker("a", false, &rolling),
            tracker("b", false, &rolling),
        ];
        assert_eq!(
            canary_state("a", &pending, 1, NOW, 600),
            CanaryState::Canary
        );
        assert_eq!(
            canary_state("b", &pending, 1, NOW, 600),
            CanaryState::Waiting { canary: "a".into() }
        );
        let rolled = [
            tracker("a", true, &rolling),
            tracker("b", false, &rolling),
            tracker("c", false, &rolling),
        ];
        assert!(matches!(
            canary_state("c", &rolled, 1, NOW, 600),
            CanaryState::Waiting { .. }
        ));
        assert!(
            matches!(
                canary_state("c", &rolled, 1, NOW + 600, 600),
                CanaryState::Halted { .. }
            ),
            "the timeout fails a canary"
        );
        assert!(
            matches!(
                canary_state("b", &pending, 1, NOW + 600, 600),
                CanaryState::Halted { .. }
            ),
            "a canary that never gets the data fails at the timeout"
        );
        let completed = [tracker("a", true, &done), tracker("b", false, &rolling)];
        assert_eq!(
            canary_state("b", &completed, 1, NOW, 600),
            CanaryState::Released
        );
        let failed = [tracker("a", true, &stuck), tracker("b", false, &rolling)];
        assert_eq!(
            canary_state("b", &failed, 1, NOW, 600),
            CanaryState::Halted {
                canary: "a".into(),
                reason: "ProgressDeadlineExceeded".into()
            }
        );
    }

    /// A canary whose ledger holds a key-level record of the change's data has the new data
    /// (the record carries the whole-object digest).
    #[test]
    fn a_key_level_record_counts_as_the_new_data() {
        use crate::model::digest::{Digest, KeyDigests, SourceKind};
        use crate::model::keys::KeySelection;
        use crate::model::ledger::LEDGER_ANNOTATION;
        use crate::model::plan::{Cause, Change};
        use crate::model::workload::{WorkloadKey, WorkloadKind};
        let new = Digest::parse("f83e99e324ba68ccc373a58ef1eb42f8ab88646a").unwrap();
        let old = "da39a3ee5e6b4b0d3255bfef95601890afd80709";
        let entry = |whole: &str| {
            KeySelection::of(vec!["a".into()], &KeyDigests::default())
                .entry(Digest::parse(whole).unwrap().as_str())
        };
        let workload = |name: &str, recorded: String| WorkloadView {
            key: WorkloadKey {
                kind: WorkloadKind::Deployment,
                namespace: "ns".into(),
                name: name.into(),
            },
            annotations: [(
                LEDGER_ANNOTATION.to_owned(),
                format!("{{\"configmap/cfg\":\"{recorded}\"}}"),
            )]
            .into(),
            ..WorkloadView::default()
        };
        let change = Change {
            kind: SourceKind::ConfigMap,
            name: "cfg".into(),
            digest: new.clone(),
            container: 0,
            cause: Cause::Changed,
        };
        let me = workload("b", old.to_owned());
        for (recorded, expected) in [
            (entry(new.as_str()), CanaryState::Released),
            (
                entry(old),
                CanaryState::Waiting {
                    canary: "a (Deployment)".into(),
                },
            ),
        ] {
            let canary = workload("a", recorded);
            assert_eq!(
                canary_for(&me, &change, &[&canary, &me], 1, None, (NOW, 600)),
                expected
            );
        }
    }

    #[test]
    fn annotations_override_the_flags_and_bad_values_fall_back() {
        let limits = Limits {
            debounce: 10,
            ..Limits::default()
        };
        let annotations = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Annotations>()
        };
        let (own, problems) = rules(
            &annotations(&[(DEBOUNCE_ANNOTATION, "1m"), (MODE_ANNOTATION, "notify")]),
            &limits,
        );
        assert_eq!((own.debounce, own.notify), (60, true));
        assert!(problems.is_empty());
        let (fallback, problems) = rules(
            &annotations(&[
                (DEBOUNCE_ANNOTATION, "-5s"),
                (MODE_ANNOTATION, "loud"),
                (WINDOW_ANNOTATION, "25:00-26:00"),
            ]),
            &limits,
        );
        assert_eq!(
            (fallback.debounce, fallback.notify, fallback.window),
            (10, false, None)
        );
        let keys: Vec<&str> = problems.iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [DEBOUNCE_ANNOTATION, WINDOW_ANNOTATION, MODE_ANNOTATION]
        );
        assert_eq!(parse_period("30s"), Ok(30));
        assert!(parse_period("soon").is_err());
        assert!(parse_period("500ms").is_err(), "never silently 0");
        assert_eq!(parse_period("0"), Ok(0));
    }

    #[test]
    fn a_rollout_counts_until_complete_failed_or_timed_out() {
        let rolling = Progress::default();
        assert!(in_progress(&rolling, Some(NOW), NOW + 5, 600));
        assert!(!in_progress(&rolling, None, NOW, 600), "not ours");
        assert!(!in_progress(&rolling, Some(NOW), NOW + 600, 600));
        let done = Progress {
            complete: true,
            failed: None,
        };
        assert!(!in_progress(&done, Some(NOW), NOW + 5, 600));
        assert_eq!(failure(&done, Some(NOW), NOW + 900, 600), None);
    }
}
