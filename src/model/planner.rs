//! The planner: one workload (as read at one resourceVersion), the sources of its namespace,
//! the policy and the time in; one [`Intent`] out. Pure: no IO, no clock, no client. Everything
//! between a watch event and a write that *decides* lives here; the worker only carries it out.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::PodSpec;

use crate::model::annotations::Annotations;
use crate::model::digest::SourceKind;
use crate::model::digest::env_var_name;
use crate::model::interest::{Interest, SOURCE_KINDS};
use crate::model::keyed::{self, Recognition};
use crate::model::keys::{self, InvalidKeyLevel};
use crate::model::ledger::{LEDGER_ANNOTATION, Ledger};
use crate::model::pause::{self, InvalidPeriod, PauseState};
use crate::model::plan::{self, Change, Decision, Deleted, Markers, PlanOptions, Tracked};
use crate::model::policy::{
    InvalidPattern, LAST_RELOADED_FROM, Policy, SourceRef, WorkloadAnnotations,
};
use crate::model::refs;
use crate::model::source::NamespaceSources;
use crate::model::stale::{self, StaleMarkers};
use crate::model::workload::{WorkloadKind, WorkloadView};

/// The pod template a workload runs.
#[derive(Debug, Clone, Copy)]
pub struct PodTemplate<'a> {
    /// Its annotations.
    pub annotations: &'a Annotations,
    /// Its spec.
    pub spec: &'a PodSpec,
    /// Whether it is the workload's own (else another object's, e.g. a `workloadRef` target).
    pub own: bool,
}

impl<'a> PodTemplate<'a> {
    /// The workload's own pod template.
    pub fn of(view: &'a WorkloadView) -> Self {
        Self {
            annotations: &view.template_annotations,
            spec: &view.pod_spec,
            own: true,
        }
    }

    /// The pod template of another workload (a Rollout's `workloadRef` Deployment).
    pub fn referenced(target: &'a WorkloadView) -> Self {
        Self {
            own: false,
            ..Self::of(target)
        }
    }
}

/// Everything a plan depends on.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    /// The workload.
    pub view: &'a WorkloadView,
    /// The resourceVersion `view` was read at (guards merge patches).
    pub version: Option<u64>,
    /// Its interest (compiled named lists, references).
    pub interest: &'a Interest,
    /// The pod template it runs: its own, or for a Rollout with `workloadRef` the referenced
    /// Deployment's; `Err` says why that cannot be used.
    pub pod: Result<PodTemplate<'a>, &'a str>,
    /// The sources of its namespace.
    pub sources: &'a NamespaceSources,
    /// The annotation policy.
    pub policy: &'a Policy,
    /// The ledger kept elsewhere for a workload we may not write it on (a CronJob we may not
    /// patch: the ledger its newest Job was created for); read instead of its annotation.
    pub recorded: Option<&'a str>,
    /// Flags that change the plan.
    pub options: PlanOptions,
    /// Unix seconds now.
    pub now: i64,
}

/// A reload to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reload {
    /// The new ledger annotation value.
    pub ledger: String,
    /// The sources that cause it, sorted by kind and name (empty only when finishing the
    /// re-creation of a Job whose sources went back to what it had).
    pub changes: Vec<Change>,
    /// Deployments with a pause period: pause in the same write, for this long.
    pub pause: Option<Duration>,
    /// The resourceVersion the plan was made from.
    pub version: Option<u64>,
    /// Markers of sources no longer tracked, removed in the same write.
    pub stale: StaleMarkers,
}

/// What to do with one workload now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// Nothing to write, nothing to wait for.
    UpToDate,
    /// Nothing to write now; plan again at this Unix time (a pause period running).
    RequeueAt(i64),
    /// Record the ledger on metadata (no rollout).
    Baseline {
        /// The new ledger annotation value.
        ledger: String,
    },
    /// Write the markers into the pod template (one rollout) and the ledger.
    Reload(Reload),
    /// The pause period is over: unpause the Deployment.
    Resume,
    /// Someone else resumed the Deployment: drop our `paused-at`.
    ForgetPause,
}

impl Intent {
    /// Whether carrying it out writes to the API server.
    pub fn writes(&self) -> bool {
        !matches!(self, Intent::UpToDate | Intent::RequeueAt(_))
    }
}

/// A problem with the workload's configuration, reported to the user (once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A named-list item is not a valid regular expression (skipped).
    InvalidPattern(InvalidPattern),
    /// A Rollout's `workloadRef` cannot be followed (nothing is planned).
    WorkloadRef(String),
    /// The pause period cannot be parsed (the reload goes ahead without a pause).
    InvalidPause(InvalidPeriod),
    /// `kube-reloader.io/key-level` is neither "true" nor "false" (`--key-level-triggers`
    /// decides instead).
    InvalidKeyLevel(InvalidKeyLevel),
    /// The ledger records a Secret's digest under a digest key that is not configured (any
    /// more): it cannot be checked, so the workload reloads once.
    UnverifiableDigest {
        /// The Secret.
        source: String,
        /// The key id recorded.
        key_id: String,
    },
}

/// The planner's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// What to do.
    pub intent: Intent,
    /// What to tell the user.
    pub problems: Vec<Problem>,
}

/// Plans one workload.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let view = input.view;
    let mut problems: Vec<Problem> = input
        .interest
        .lists
        .invalid()
        .cloned()
        .map(Problem::InvalidPattern)
        .collect();
    let pod = match input.pod {
        Ok(pod) => pod,
        Err(problem) => {
            problems.push(Problem::WorkloadRef(problem.to_owned()));
            return Plan {
                intent: Intent::UpToDate,
                problems,
            };
        }
    };
    let (key_level, invalid) = keys::enabled(&view.annotations, input.options.key_level);
    problems.extend(invalid.map(Problem::InvalidKeyLevel));
    let is_deployment = view.key.kind == WorkloadKind::Deployment;
    // Said on every plan, not only with a reload: a typo shows up at once, and a Warning
    // lost with a killed process comes again from the next one.
    if is_deployment
        && let Some(Err(invalid)) = view
            .annotations
            .get(&input.policy.keys.pause_period)
            .map(|period| pause::parse_go_duration(period))
    {
        problems.push(Problem::InvalidPause(invalid));
    }
    let recreating = view.held_for_recreation();
    if view.deleting && !recreating {
        return Plan {
            intent: Intent::UpToDate,
            problems,
        };
    }
    let TrackedSources {
        tracked,
        deleted,
        keep,
    } = tracked_sources(input, pod, key_level);
    let stale = if input.options.prune_stale {
        stale::stale_markers(
            pod.spec,
            pod.annotations.contains_key(LAST_RELOADED_FROM),
            &keep,
            input.options.strategy,
        )
    } else {
        StaleMarkers::default()
    };
    let markers = Markers {
        ledger: input
            .recorded
            .or_else(|| view.annotations.get(LEDGER_ANNOTATION).map(String::as_str)),
        containers: &pod.spec.containers,
        last_reloaded_from: pod.annotations.get(LAST_RELOADED_FROM).map(String::as_str),
        created_at: view.created_at,
    };
    let recorded = Ledger::parse(markers.ledger);
    for source in &tracked {
        let Some(whole) = recorded
            .get(source.kind, &source.name)
            .map(|r| keys::Entry::parse(r).whole())
        else {
            continue;
        };
        if source.now().recognize(whole) == Recognition::Unverifiable {
            problems.push(Problem::UnverifiableDigest {
                source: source.name.clone(),
                key_id: keyed::record_key_id(whole)
                    .map(|id| id.to_string())
                    .unwrap_or_default(),
            });
        }
    }
    let decision = plan::plan(&tracked, &deleted, markers, input.options);
    let reload = |ledger, changes, pause| {
        Intent::Reload(Reload {
            ledger,
            changes,
            pause,
            version: input.version,
            stale: stale.clone(),
        })
    };
    if recreating {
        // The old Job is already deleted: it must be created again whatever the sources say.
        let (ledger, changes) = match decision {
            Decision::Reload { ledger, changes } => (ledger, changes),
            Decision::Baseline { ledger } => (ledger, Vec::new()),
            Decision::UpToDate => (markers.ledger.unwrap_or_default().to_owned(), Vec::new()),
        };
        return Plan {
            intent: reload(ledger, changes, None),
            problems,
        };
    }
    let keys = &input.policy.keys;
    let intent = match decision {
        Decision::UpToDate if is_deployment => {
            match pause::state(
                &view.annotations,
                &keys.pause_period,
                &keys.paused_at,
                view.paused,
                input.now,
            ) {
                PauseState::ResumeNow => Intent::Resume,
                PauseState::StaleMarker => Intent::ForgetPause,
                PauseState::ResumeIn(delay) => Intent::RequeueAt(
                    input
                        .now
                        .saturating_add(i64::try_from(delay.as_secs()).unwrap_or(i64::MAX)),
                ),
                PauseState::NotPausedByUs => Intent::UpToDate,
            }
        }
        Decision::UpToDate => Intent::UpToDate,
        Decision::Baseline { ledger } => Intent::Baseline { ledger },
        Decision::Reload { ledger, changes } => {
            let pause = if is_deployment {
                // An invalid period is among the problems already: reload without a pause.
                pause::pause_for(
                    &view.annotations,
                    &keys.pause_period,
                    &keys.paused_at,
                    view.paused,
                )
                .and_then(Result::ok)
            } else {
                None
            };
            reload(ledger, changes, pause)
        }
    };
    Plan { intent, problems }
}

/// Whether the workload (running `pod`) tracks `source`: the quick check a source event makes
/// for each candidate workload before queueing it.
pub fn tracks(
    view: &WorkloadView,
    interest: &Interest,
    pod: PodTemplate<'_>,
    source: SourceRef<'_>,
    policy: &Policy,
) -> bool {
    let workload = WorkloadAnnotations {
        kind: view.key.kind,
        metadata: &view.annotations,
        template: pod.annotations,
    };
    let lists = if pod.own {
        Cow::Borrowed(&interest.lists)
    } else {
        Cow::Owned(policy.named_lists(workload))
    };
    policy
        .evaluate(source, workload, &lists)
        .is_ok_and(|matched| {
            refs::container_for(
                pod.spec,
                source.kind,
                source.name,
                matched.needs_reference(),
            )
            .is_some()
        })
}

/// The sources the workload tracks now (with the container that carries each marker), and
/// the tracked ones that were deleted. Only candidates are looked at: names listed exactly,
/// sources the pod spec references, and every source of a kind with pattern items.
/// What a workload tracks now.
struct TrackedSources {
    tracked: Vec<Tracked>,
    deleted: Vec<Deleted>,
    /// Env-var names whose markers stay: tracked sources, and referenced or listed sources
    /// missing right now (their markers wait for them).
    keep: BTreeSet<String>,
}

fn tracked_sources(input: &PlanInput<'_>, pod: PodTemplate<'_>, key_level: bool) -> TrackedSources {
    let view = input.view;
    let workload = WorkloadAnnotations {
        kind: view.key.kind,
        metadata: &view.annotations,
        template: pod.annotations,
    };
    // A Rollout running another object's template reads that template's annotations too.
    let lists = if pod.own {
        Cow::Borrowed(&input.interest.lists)
    } else {
        Cow::Owned(input.policy.named_lists(workload))
    };
    let referenced = if pod.own {
        Cow::Borrowed(&input.interest.referenced)
    } else {
        Cow::Owned(refs::referenced(pod.spec))
    };
    let mut candidates: BTreeSet<(SourceKind, &str)> = referenced
        .iter()
        .map(|(kind, name)| (*kind, name.as_str()))
        .collect();
    for kind in SOURCE_KINDS {
        let list = lists.get(kind);
        if list.has_patterns() {
            candidates.extend(input.sources.names(kind).map(|name| (kind, name)));
        } else {
            candidates.extend(list.exact_names().map(|name| (kind, name)));
        }
    }
    let mut tracked = Vec::new();
    let mut deleted = Vec::new();
    let mut keep = BTreeSet::new();
    for (kind, name) in candidates {
        let Some(entry) = input.sources.get(kind, name) else {
            keep.insert(env_var_name(name, kind));
            continue;
        };
        let source = SourceRef {
            kind,
            name,
            flags: entry.flags,
        };
        let Ok(matched) = input.policy.evaluate(source, workload, &lists) else {
            continue;
        };
        let Some(container) = refs::container_for(pod.spec, kind, name, matched.needs_reference())
        else {
            continue;
        };
        keep.insert(env_var_name(name, kind));
        match &entry.digest {
            Some(digest) => tracked.push(Tracked {
                kind,
                name: name.to_owned(),
                digest: digest.marker(),
                keyed: entry.keyed.clone(),
                keys: keys::selection(key_level, pod.spec, kind, name, &entry.keys),
                container,
                created_while_running: entry.created_while_running,
                data_changed_at: entry.data_changed_at,
            }),
            None => deleted.push(Deleted {
                kind,
                name: name.to_owned(),
                container,
            }),
        }
    }
    TrackedSources {
        tracked,
        deleted,
        keep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::digest::{self, Sha1Digest};
    use crate::model::edit::Strategy;
    use crate::model::ledger::RECREATE_FINALIZER;
    use crate::model::plan::Cause;
    use crate::model::source::SourceEntry;
    use crate::model::workload::WorkloadKey;
    use k8s_openapi::api::batch::v1::Job;
    use serde_json::json;
    use std::collections::BTreeMap;

    const A: &str = "f83e99e324ba68ccc373a58ef1eb42f8ab88646a";
    const B: &str = "da39a3ee5e6b4b0d3255bfef95601890afd80709";
    const NOW: i64 = 1_800_000_000;
    const PAUSED_AT: &str = "deployment.reloader.stakater.com/paused-at";
    const PERIOD: &str = "deployment.reloader.stakater.com/pause-period";

    fn view(
        kind: WorkloadKind,
        annotations: &[(&str, &str)],
        spec: serde_json::Value,
    ) -> WorkloadView {
        WorkloadView {
            key: WorkloadKey {
                kind,
                namespace: "ns".into(),
                name: "w".into(),
            },
            uid: "uid-1".into(),
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            pod_spec: serde_json::from_value(spec).unwrap(),
            ..WorkloadView::default()
        }
    }

    fn uses(name: &str) -> serde_json::Value {
        json!({"containers": [{"name": "app", "envFrom": [{"configMapRef": {"name": name}}]}]})
    }

    fn no_refs() -> serde_json::Value {
        json!({"containers": [{"name": "app"}]})
    }

    /// (kind, name, digest, annotations) of one source.
    type Row<'a> = (
        SourceKind,
        &'a str,
        Option<&'a str>,
        &'a [(&'a str, &'a str)],
    );

    fn sources(entries: &[Row<'_>]) -> NamespaceSources {
        entries
            .iter()
            .map(|(kind, name, digest, annotations)| {
                (
                    (*kind, (*name).into()),
                    SourceEntry {
                        digest: digest.and_then(Sha1Digest::parse),
                        keys: Default::default(),
                        keyed: Default::default(),
                        flags: Policy::default().source_flags(
                            &annotations
                                .iter()
                                .map(|(k, v)| (k.to_string(), v.to_string()))
                                .collect(),
                        ),
                        created_while_running: false,
                        data_changed_at: None,
                    },
                )
            })
            .collect()
    }

    /// ConfigMap `cfg` with this data, hashed as the watcher hashes it.
    fn keyed(data: &[(&str, &str)]) -> NamespaceSources {
        let (digest, keys) = digest::configmap_content(data.iter().copied(), []);
        NamespaceSources::from([(
            (CM, "cfg".into()),
            SourceEntry {
                digest: Some(digest),
                keys,
                keyed: Default::default(),
                flags: Default::default(),
                created_while_running: false,
                data_changed_at: None,
            },
        )])
    }

    fn options() -> PlanOptions {
        PlanOptions {
            strategy: Strategy::EnvVars,
            reload_on_create: false,
            reload_on_delete: false,
            reload_unrecorded: false,
            prune_stale: true,
            key_level: false,
        }
    }

    fn run_with(
        view: &WorkloadView,
        pod: Option<Result<&WorkloadView, &str>>,
        sources: &NamespaceSources,
        options: PlanOptions,
    ) -> Plan {
        let policy = Policy::default();
        let interest = Interest::of(view, &policy);
        let pod = match pod {
            None => Ok(PodTemplate::of(view)),
            Some(Ok(other)) => Ok(PodTemplate::referenced(other)),
            Some(Err(problem)) => Err(problem),
        };
        plan(&PlanInput {
            view,
            version: Some(7),
            interest: &interest,
            pod,
            sources,
            policy: &policy,
            recorded: None,
            options,
            now: NOW,
        })
    }

    fn run(view: &WorkloadView, sources: &NamespaceSources) -> Plan {
        run_with(view, None, sources, options())
    }

    fn ledger(pairs: &[(&str, &str)]) -> String {
        let map: BTreeMap<&str, &str> = pairs.iter().copied().collect();
        serde_json::to_string(&map).unwrap()
    }

    fn reload_of(plan: &Plan) -> &Reload {
        match &plan.intent {
            Intent::Reload(reload) => reload,
            other => panic!("expected a reload, got {other:?}"),
        }
    }

    const CM: SourceKind = SourceKind::ConfigMap;
    const AUTO: (&str, &str) = ("reloader.stakater.com/auto", "true");

    /// The intents for the common cases, one row each: (what, workload, sources, intent).
    #[test]
    fn intent_table() {
        let cfg_a = ledger(&[("configmap/cfg", A)]);
        let cfg_b = ledger(&[("configmap/cfg", B)]);
        let rows: Vec<(&str, WorkloadView, NamespaceSources, Intent)> = vec![
            (
                "first sight: baseline, no rollout",
                view(WorkloadKind::Deployment, &[AUTO], uses("cfg")),
                sources(&[(CM, "cfg", Some(A), &[])]),
                Intent::Baseline {
                    ledger: cfg_a.clone(),
                },
            ),
            (
                "ledger current: nothing",
                view(
                    WorkloadKind::Deployment,
                    &[AUTO, (LEDGER_ANNOTATION, &cfg_a)],
                    uses("cfg"),
                ),
                sources(&[(CM, "cfg", Some(A), &[])]),
                Intent::UpToDate,
            ),
            (
                "auto without a reference: not tracked",
                view(WorkloadKind::Deployment, &[AUTO], no_refs()),
                sources(&[(CM, "cfg", Some(A), &[])]),
                Intent::UpToDate,
            ),
            (
                "not opted in: not tracked",
                view(WorkloadKind::Deployment, &[], uses("cfg")),
                sources(&[(CM, "cfg", Some(A), &[])]),
                Intent::UpToDate,
            ),
            (
                "source now ignored: its ledger entry is dropped without a rollout",
                view(
                    WorkloadKind::StatefulSet,
                    &[AUTO, (LEDGER_ANNOTATION, &cfg_a)],
                    uses("cfg"),
                ),
                sources(&[(
                    CM,
                    "cfg",
                    Some(B),
                    &[("reloader.stakater.com/ignore", "true")],
                )]),
                Intent::Baseline {
                    ledger: String::new(),
                },
            ),
            (
                "a missing source is not tracked",
                view(
                    WorkloadKind::DaemonSet,
                    &[("configmap.reloader.stakater.com/reload", "cfg")],
                    no_refs(),
                ),
                sources(&[]),
                Intent::UpToDate,
            ),
            (
                "a deleting workload is left alone",
                WorkloadView {
                    deleting: true,
                    ..view(
                        WorkloadKind::Deployment,
                        &[AUTO, (LEDGER_ANNOTATION, &cfg_b)],
                        uses("cfg"),
                    )
                },
                sources(&[(CM, "cfg", Some(A), &[])]),
                Intent::UpToDate,
            ),
        ];
        for (what, view, sources, expected) in rows {
            assert_eq!(run(&view, &sources).intent, expected, "{what}");
        }
    }

    #[test]
    fn changed_sources_give_one_reload_carrying_all_of_them_and_the_version() {
        let old = ledger(&[("configmap/cfg", A), ("secret/db", A)]);
        let v = view(
            WorkloadKind::Deployment,
            &[AUTO, (LEDGER_ANNOTATION, &old)],
            json!({"containers": [{"name": "app", "envFrom": [{"configMapRef": {"name": "cfg"}}, {"secretRef": {"name": "db"}}]}]}),
        );
        let s = sources(&[
            (CM, "cfg", Some(B), &[]),
            (SourceKind::Secret, "db", Some(B), &[]),
        ]);
        let plan = run(&v, &s);
        let reload = reload_of(&plan);
        assert_eq!(
            reload
                .changes
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
            ["cfg", "db"]
        );
        assert_eq!(
            reload.ledger,
            ledger(&[("configmap/cfg", B), ("secret/db", B)])
        );
        assert_eq!(reload.version, Some(7));
        assert_eq!(reload.pause, None);
    }

    #[test]
    fn named_items_exact_and_pattern_and_invalid() {
        let v = view(
            WorkloadKind::Deployment,
            &[(
                "configmap.reloader.stakater.com/reload",
                "app-.*, bad[, plain",
            )],
            no_refs(),
        );
        let s = sources(&[
            (CM, "app-1", Some(A), &[]),
            (CM, "plain", Some(A), &[]),
            (CM, "other", Some(A), &[]),
            (SourceKind::Secret, "app-2", Some(A), &[]),
        ]);
        let plan = run(&v, &s);
        assert_eq!(
            plan.intent,
            Intent::Baseline {
                ledger: ledger(&[("configmap/app-1", A), ("configmap/plain", A)])
            }
        );
        assert!(matches!(&plan.problems[..], [Problem::InvalidPattern(p)] if p.item == "bad["));
    }

    #[test]
    fn search_needs_match_on_the_source_and_a_reference() {
        let v = view(
            WorkloadKind::Deployment,
            &[("reloader.stakater.com/search", "true")],
            json!({"containers": [{"name": "app", "envFrom": [{"configMapRef": {"name": "m"}}, {"configMapRef": {"name": "n"}}]}]}),
        );
        let s = sources(&[
            (CM, "m", Some(A), &[("reloader.stakater.com/match", "true")]),
            (CM, "n", Some(A), &[]),
            (
                CM,
                "unreferenced",
                Some(A),
                &[("reloader.stakater.com/match", "true")],
            ),
        ]);
        assert_eq!(
            run(&v, &s).intent,
            Intent::Baseline {
                ledger: ledger(&[("configmap/m", A)])
            }
        );
    }

    #[test]
    fn the_container_that_references_the_source_carries_the_marker() {
        let old = ledger(&[("configmap/cfg", A)]);
        let v = view(
            WorkloadKind::Deployment,
            &[AUTO, (LEDGER_ANNOTATION, &old)],
            json!({"containers": [{"name": "main"}, {"name": "side", "envFrom": [{"configMapRef": {"name": "cfg"}}]}]}),
        );
        let plan = run(&v, &sources(&[(CM, "cfg", Some(B), &[])]));
        assert_eq!(reload_of(&plan).changes[0].container, 1);
    }

    #[test]
    fn workload_ref_plans_on_the_referenced_template_or_reports_why_not() {
        let old = ledger(&[("configmap/cfg", A)]);
        let rollout = view(
            WorkloadKind::Rollout,
            &[AUTO, (LEDGER_ANNOTATION, &old)],
            json!({"containers": []}),
        );
        let deployment = view(WorkloadKind::Deployment, &[], uses("cfg"));
        let s = sources(&[(CM, "cfg", Some(B), &[])]);
        let plan = run_with(&rollout, Some(Ok(&deployment)), &s, options());
        assert_eq!(reload_of(&plan).changes[0].name, "cfg");
        let broken = run_with(&rollout, Some(Err("names a StatefulSet")), &s, options());
        assert_eq!(broken.intent, Intent::UpToDate);
        assert_eq!(
            broken.problems,
            [Problem::WorkloadRef("names a StatefulSet".into())]
        );
    }

    #[test]
    fn pause_period_intents() {
        let old = ledger(&[("configmap/cfg", A)]);
        let changed = sources(&[(CM, "cfg", Some(B), &[])]);
        let current = sources(&[(CM, "cfg", Some(A), &[])]);
        let started = pause::rfc3339(NOW - 4);
        // A reload of a Deployment with a pause period pauses in the same write.
        let with_period = view(
            WorkloadKind::Deployment,
            &[AUTO, (LEDGER_ANNOTATION, &old), (PERIOD, "10s")],
            uses("cfg"),
        );
        assert_eq!(
            reload_of(&run(&with_period, &changed)).pause,
            Some(Duration::from_secs(10))
        );
        // Not for other kinds.
        let statefulset = WorkloadView {
            key: WorkloadKey {
                kind: WorkloadKind::StatefulSet,
                ..with_period.key.clone()
            },
            ..with_period.clone()
        };
        assert_eq!(reload_of(&run(&statefulset, &changed)).pause, None);
        // An invalid period reloads without a pause and says why.
        let invalid = view(
            WorkloadKind::Deployment,
            &[AUTO, (LEDGER_ANNOTATION, &old), (PERIOD, "ten")],
            uses("cfg"),
        );
        let plan = run(&invalid, &changed);
        assert_eq!(reload_of(&plan).pause, None);
        assert!(matches!(&plan.problems[..], [Problem::InvalidPause(p)] if p.value == "ten"));
        // ...and says so when nothing changed too, once per plan.
        let plan = run(&invalid, &current);
        assert_eq!(plan.intent, Intent::UpToDate);
        assert!(matches!(&plan.problems[..], [Problem::InvalidPause(p)] if p.value == "ten"));
        // Paused by us: wait, then resume; a pause someone else ended: forget the marker.
        let paused = WorkloadView {
            paused: true,
            ..view(
                WorkloadKind::Deployment,
                &[
                    AUTO,
                    (LEDGER_ANNOTATION, &old),
                    (PERIOD, "10s"),
                    (PAUSED_AT, &started),
                ],
                uses("cfg"),
            )
        };
        assert_eq!(run(&paused, &current).intent, Intent::RequeueAt(NOW + 6));
        let over = WorkloadView {
            annotations: [
                (PAUSED_AT, pause::rfc3339(NOW - 10).as_str()),
                (PERIOD, "10s"),
                AUTO,
                (LEDGER_ANNOTATION, old.as_str()),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            ..paused.clone()
        };
        assert_eq!(run(&over, &current).intent, Intent::Resume);
        let resumed = WorkloadView {
            paused: false,
            ..paused.clone()
        };
        assert_eq!(run(&resumed, &current).intent, Intent::ForgetPause);
        // A change while paused by us reloads without pausing again.
        assert_eq!(reload_of(&run(&paused, &changed)).pause, None);
        // A user's pause (no paused-at) is never resumed.
        let user = WorkloadView {
            paused: true,
            ..view(
                WorkloadKind::Deployment,
                &[AUTO, (LEDGER_ANNOTATION, &old), (PERIOD, "10s")],
                uses("cfg"),
            )
        };
        assert_eq!(run(&user, &current).intent, Intent::UpToDate);
    }

    #[test]
    fn a_job_being_recreated_is_always_finished() {
        let old = ledger(&[("configmap/cfg", A)]);
        let mut job = view(
            WorkloadKind::Job,
            &[AUTO, (LEDGER_ANNOTATION, &old)],
            uses("cfg"),
        );
        job.deleting = true;
        job.job = Some(Box::new(Job {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                finalizers: Some(vec![RECREATE_FINALIZER.into(), "example.com/hold".into()]),
                ..Default::default()
            },
            ..Job::default()
        }));
        let changed = run(&job, &sources(&[(CM, "cfg", Some(B), &[])]));
        assert_eq!(reload_of(&changed).changes[0].cause, Cause::Changed);
        let reverted = run(&job, &sources(&[(CM, "cfg", Some(A), &[])]));
        assert_eq!(
            reload_of(&reverted),
            &Reload {
                ledger: old.clone(),
                changes: vec![],
                pause: None,
                version: Some(7),
                stale: StaleMarkers::default(),
            }
        );
    }

    #[test]
    fn a_reload_carries_the_stale_markers_of_untracked_sources() {
        let mut v = view(
            WorkloadKind::Deployment,
            &[("configmap.reloader.stakater.com/reload", "cfg")],
            json!({"containers": [{"name": "app", "env": [
                {"name": "STAKATER_CFG_CONFIGMAP", "value": A},
                {"name": "STAKATER_OLD_CONFIGMAP", "value": A},
                {"name": "STAKATER_MISSING_SECRET", "value": A}]}],
                "volumes": [{"name": "s", "secret": {"secretName": "missing"}}]}),
        );
        v.annotations
            .insert(LEDGER_ANNOTATION.into(), ledger(&[("configmap/cfg", A)]));
        let plan = run(
            &v,
            &sources(&[(CM, "cfg", Some(B), &[]), (CM, "old", Some(A), &[])]),
        );
        let reload = reload_of(&plan);
        assert_eq!(
            reload.stale.env,
            [("app".to_owned(), "STAKATER_OLD_CONFIGMAP".to_owned())],
            "the missing but referenced Secret keeps its marker"
        );
        let off = run_with(
            &v,
            None,
            &sources(&[(CM, "cfg", Some(B), &[])]),
            PlanOptions {
                prune_stale: false,
                ..options()
            },
        );
        assert!(reload_of(&off).stale.is_empty());
    }

    #[test]
    fn reload_on_delete_and_create() {
        let old = ledger(&[("configmap/cfg", A)]);
        let v = view(
            WorkloadKind::Deployment,
            &[AUTO, (LEDGER_ANNOTATION, &old)],
            json!({"containers": [{"name": "app", "envFrom": [{"configMapRef": {"name": "cfg"}}],
                                   "env": [{"name": "STAKATER_CFG_CONFIGMAP", "value": A}]}]}),
        );
        let tombstone = sources(&[(CM, "cfg", None, &[])]);
        let on = PlanOptions {
            reload_on_delete: true,
            ..options()
        };
        let plan = run_with(&v, None, &tombstone, on);
        assert_eq!(reload_of(&plan).changes[0].cause, Cause::Deleted);
        assert_eq!(
            run(&v, &tombstone).intent,
            Intent::Baseline {
                ledger: String::new()
            }
        );
        let born: NamespaceSources = sources(&[(CM, "cfg", Some(B), &[])])
            .into_iter()
            .map(|(key, entry)| {
                let entry = SourceEntry {
                    created_while_running: true,
                    ..entry
                };
                (key, entry)
            })
            .collect();
        let fresh = view(WorkloadKind::Deployment, &[AUTO], uses("cfg"));
        let create = PlanOptions {
            reload_on_create: true,
            ..options()
        };
        assert_eq!(
            reload_of(&run_with(&fresh, None, &born, create)).changes[0].cause,
            Cause::Created
        );
    }

    /// Key-level triggers: plan once with `before` (a baseline under `first` flag), record it,
    /// then plan with `after` under `then` flag. (what, pod spec, workload annotation, data
    /// before, data after, flag first, flag then, outcome)
    #[test]
    fn key_level_triggers_table() {
        #[derive(Debug, PartialEq)]
        enum Outcome {
            Nothing,
            Baseline,
            Reload,
        }
        let reads_a = json!({"containers": [{"name": "app", "env": [
            {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "a"}}}]}]});
        let mounts_b = json!({"containers": [{"name": "app", "volumeMounts": [{"name": "v", "mountPath": "/v"}]}],
            "volumes": [{"name": "v", "configMap": {"name": "cfg", "items": [{"key": "b", "path": "b"}]}}]});
        let whole = uses("cfg");
        let ab: &[(&str, &str)] = &[("a", "1"), ("b", "1")];
        let b2: &[(&str, &str)] = &[("a", "1"), ("b", "2")];
        let a2: &[(&str, &str)] = &[("a", "2"), ("b", "1")];
        let no_a: &[(&str, &str)] = &[("b", "1")];
        type Row<'a> = (
            &'a str,
            &'a serde_json::Value,
            Option<&'a str>,
            &'a [(&'a str, &'a str)],
            &'a [(&'a str, &'a str)],
            bool,
            bool,
            Outcome,
        );
        let rows: Vec<Row<'_>> = vec![
            (
                "reads a, b changes: nothing, not even a write",
                &reads_a,
                None,
                ab,
                b2,
                true,
                true,
                Outcome::Nothing,
            ),
            (
                "reads a, a changes",
                &reads_a,
                None,
                ab,
                a2,
                true,
                true,
                Outcome::Reload,
            ),
            (
                "reads a, a disappears",
                &reads_a,
                None,
                ab,
                no_a,
                true,
                true,
                Outcome::Reload,
            ),
            (
                "mounts item b, b changes",
                &mounts_b,
                None,
                ab,
                b2,
                true,
                true,
                Outcome::Reload,
            ),
            (
                "mounts item b, a changes",
                &mounts_b,
                None,
                ab,
                a2,
                true,
                true,
                Outcome::Nothing,
            ),
            (
                "envFrom: whole object",
                &whole,
                None,
                ab,
                b2,
                true,
                true,
                Outcome::Reload,
            ),
            (
                "flag off: whole object",
                &reads_a,
                None,
                ab,
                b2,
                false,
                false,
                Outcome::Reload,
            ),
            (
                "annotation opts in",
                &reads_a,
                Some("true"),
                ab,
                b2,
                false,
                false,
                Outcome::Nothing,
            ),
            (
                "annotation opts out",
                &reads_a,
                Some("false"),
                ab,
                b2,
                true,
                true,
                Outcome::Reload,
            ),
            (
                "an invalid annotation: the flag decides",
                &reads_a,
                Some("yes"),
                ab,
                b2,
                true,
                true,
                Outcome::Nothing,
            ),
            (
                "switched on: the record changes form, no rollout",
                &reads_a,
                None,
                ab,
                ab,
                false,
                true,
                Outcome::Baseline,
            ),
            (
                "switched off: the record changes form, no rollout",
                &reads_a,
                None,
                ab,
                ab,
                true,
                false,
                Outcome::Baseline,
            ),
            (
                "switched off after an ignored change: one reload",
                &reads_a,
                None,
                ab,
                b2,
                true,
                false,
                Outcome::Reload,
            ),
        ];
        for (what, spec, annotation, before, after, first, then, expected) in rows {
            let mut annotations = vec![AUTO];
            if let Some(value) = annotation {
                annotations.push((keys::KEY_LEVEL_ANNOTATION, value));
            }
            let mut v = view(WorkloadKind::Deployment, &annotations, spec.clone());
            let with = |on| PlanOptions {
                key_level: on,
                ..options()
            };
            let baseline = run_with(&v, None, &keyed(before), with(first));
            let Intent::Baseline { ledger } = baseline.intent else {
                panic!("{what}: {baseline:?}")
            };
            v.annotations.insert(LEDGER_ANNOTATION.into(), ledger);
            let plan = run_with(&v, None, &keyed(after), with(then));
            let outcome = match &plan.intent {
                Intent::UpToDate => Outcome::Nothing,
                Intent::Baseline { .. } => Outcome::Baseline,
                Intent::Reload(reload) => {
                    // The marker stays upstream's whole-object digest.
                    assert_eq!(
                        reload.changes[0].digest,
                        digest::configmap_data(after.iter().copied(), []),
                        "{what}"
                    );
                    Outcome::Reload
                }
                other => panic!("{what}: {other:?}"),
            };
            assert_eq!(outcome, expected, "{what}");
            assert_eq!(
                plan.problems.len(),
                usize::from(annotation == Some("yes")),
                "{what}: {:?}",
                plan.problems
            );
        }
    }

    /// A reload caused by another source refreshes a key-level record that only other keys
    /// had moved away from (the pods restart and read everything as it is now).
    #[test]
    fn a_reload_refreshes_key_level_records() {
        let spec = json!({"containers": [{"name": "app",
            "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "a"}}}],
            "envFrom": [{"configMapRef": {"name": "other"}}]}]});
        let on = PlanOptions {
            key_level: true,
            ..options()
        };
        let mut v = view(WorkloadKind::Deployment, &[AUTO], spec);
        let mut s = keyed(&[("a", "1"), ("b", "1")]);
        s.extend(sources(&[(CM, "other", Some(A), &[])]));
        let Intent::Baseline { ledger: first } = run_with(&v, None, &s, on).intent else {
            panic!()
        };
        assert!(first.contains("\"configmap/cfg\":\"keys:"), "{first}");
        v.annotations
            .insert(LEDGER_ANNOTATION.into(), first.clone());
        let mut changed = keyed(&[("a", "1"), ("b", "2")]);
        changed.extend(sources(&[(CM, "other", Some(A), &[])]));
        assert_eq!(run_with(&v, None, &changed, on).intent, Intent::UpToDate);
        let mut both = keyed(&[("a", "1"), ("b", "2")]);
        both.extend(sources(&[(CM, "other", Some(B), &[])]));
        let plan = run_with(&v, None, &both, on);
        let reload = reload_of(&plan);
        assert_eq!(reload.changes.len(), 1, "only other changed what it reads");
        let whole_now = digest::configmap_data([("a", "1"), ("b", "2")], []);
        assert!(
            reload.ledger.contains(&format!("keys:{whole_now}:")),
            "{}",
            reload.ledger
        );
    }

    #[test]
    fn write_intents() {
        assert!(!Intent::UpToDate.writes());
        assert!(!Intent::RequeueAt(1).writes());
        assert!(Intent::Resume.writes() && Intent::ForgetPause.writes());
        assert!(
            Intent::Baseline {
                ledger: String::new()
            }
            .writes()
        );
    }
}
