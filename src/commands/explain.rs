//! `kube-reloader explain KIND/NAME [-n NAMESPACE] [-o text|json]`: why a workload did or did
//! not reload, answered by the controller's own policy, reference rules and planner. Reads the
//! workload and its namespace's ConfigMaps and Secrets with the user's kubeconfig (GET and LIST
//! only); prints names, rules and digests, never a Secret value.
//!
//! The core ([`explain`]) is pure: a projected workload and the namespace's sources in, an
//! [`Explanation`] out. [`run`] is the thin shell that reads the cluster and prints.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams};
use serde::Serialize;

use crate::config::Settings;
use crate::model::ObjectName;
use crate::model::annotations::Annotations;
use crate::model::digest::{self, SourceKind, env_var_name};
use crate::model::governor;
use crate::model::interest::Interest;
use crate::model::keyed::{self, DataNow, DigestKeys, KeyedDigests, Recognition};
use crate::model::keys::{self, Judgement};
use crate::model::ledger::{LEDGER_ANNOTATION, Ledger};
use crate::model::plan::PlanOptions;
use crate::model::planner::{self, Intent, PlanInput, PodTemplate};
use crate::model::policy::{
    LAST_RELOADED_FROM, ListItem, Match, NoMatch, Policy, SourceRef, WorkloadAnnotations,
};
use crate::model::refs;
use crate::model::source::{NamespaceSources, SourceContent, SourceEntry};
use crate::model::workload::{WorkloadKind, WorkloadView};
use crate::ops::api_client;
use crate::watch::custom::{DeploymentConfig, Rollout};
use crate::watch::digest_key;
use crate::watch::workloads::{WorkloadResource, project};

/// What was found about one ConfigMap or Secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceReport {
    /// ConfigMap or Secret.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// Whether the pod spec references it.
    pub referenced: bool,
    /// Whether it exists in the namespace.
    pub exists: bool,
    /// Whether the workload tracks it.
    pub tracked: bool,
    /// Why (one line naming the rule, and the fix when it is not tracked).
    pub why: String,
    /// The container that gets the marker.
    pub container: Option<String>,
    /// Why that container (upstream's choice).
    pub container_why: Option<&'static str>,
    /// The env var written under the env-vars strategy.
    pub env_var: Option<String>,
    /// Its digest now.
    pub digest: Option<String>,
    /// The digest the workload carries as applied, and where it was read.
    pub applied: Option<(String, &'static str)>,
    /// With key-level triggers: the only keys whose changes reload it (`None`: any change).
    pub keys: Option<Vec<String>>,
    /// up to date, will reload, first sight, or not tracked.
    pub verdict: String,
}

/// The whole answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// `Kind namespace/name`.
    pub workload: String,
    /// env-vars or annotations.
    pub strategy: &'static str,
    /// Every referenced or listed source.
    pub sources: Vec<SourceReport>,
    /// Problems with the annotations (typos, invalid patterns, governor values).
    pub problems: Vec<String>,
    /// The plan: up to date, will reload (what), first sight, waiting (for what).
    pub verdict: String,
    /// Whether a reload is pending or a referenced source is not tracked (exit code 1).
    pub attention: bool,
}

fn kind_name(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::ConfigMap => "ConfigMap",
        SourceKind::Secret => "Secret",
        SourceKind::SecretProviderClass => "SecretProviderClass",
    }
}

/// The first item of `key`'s list that matches `name`, as written.
fn matching_item(annotations: &Annotations, key: &str, name: &str) -> String {
    annotations
        .get(key)
        .and_then(|value| {
            value
                .split(',')
                .map(str::trim)
                .find(|item| crate::model::policy::NamedList::parse(key, item).matches(name))
        })
        .unwrap_or(name)
        .to_owned()
}

/// One source as the policy judged it for the workload.
struct Judged<'a> {
    kind: SourceKind,
    name: &'a str,
    entry: Option<&'a SourceEntry>,
    result: Result<Match, NoMatch>,
    referenced: bool,
}

/// Why `view` does or does not track the source, in one line.
fn reason(
    policy: &Policy,
    view: &WorkloadView,
    pod: PodTemplate<'_>,
    judged: &Judged<'_>,
) -> (bool, String) {
    let Judged {
        kind,
        name,
        entry,
        result,
        referenced,
    } = *judged;
    let (named_key, typed_auto_key, exclude_key) = policy.keys_for(kind);
    let keys = &policy.keys;
    let workload = view.key.kind.as_str();
    let source = kind_name(kind);
    let opt_in = if view.annotations.keys().any(|k| {
        [
            named_key,
            typed_auto_key,
            keys.auto.as_str(),
            keys.search.as_str(),
        ]
        .contains(&k.as_str())
    }) {
        &view.annotations
    } else {
        pod.annotations
    };
    match result {
        Ok(Match::Named) => (
            true,
            format!(
                "named item {:?} matches ({named_key})",
                matching_item(opt_in, named_key, name)
            ),
        ),
        Ok(Match::Search) if referenced => (
            true,
            format!("search: the {source} has {}: \"true\"", keys.search_match),
        ),
        Ok(Match::Auto) if referenced => {
            let via = if governor_bool(opt_in.get(&keys.auto)) {
                keys.auto.clone()
            } else if governor_bool(opt_in.get(typed_auto_key)) {
                typed_auto_key.to_owned()
            } else {
                "--auto-reload-all".to_owned()
            };
            (true, format!("auto ({via}) and the pod spec references it"))
        }
        Ok(_) => (
            false,
            format!(
                "not tracked: auto and search need the pod spec to reference the {source}; name it \
                 in {named_key}: \"{name}\" instead"
            ),
        ),
        Err(NoMatch::IgnoredWorkloadType) => (
            false,
            format!("not tracked: --ignored-workload-types ignores {workload}s"),
        ),
        Err(NoMatch::SourceIgnored) => (
            false,
            format!("not tracked: the {source} has {}: \"true\"", keys.ignore),
        ),
        Err(NoMatch::Excluded) => (false, format!("not tracked: excluded by {exclude_key}")),
        Err(NoMatch::NotOptedIn) => {
            let searching = opt_in.get(&keys.search).map(String::as_str) == Some("true");
            let has_match = entry.is_some_and(|e| e.flags.matched);
            if searching && !has_match {
                return (
                    false,
                    format!("search: the {source} lacks {}: \"true\"", keys.search_match),
                );
            }
            let other_typed = match kind {
                SourceKind::ConfigMap => Some(keys.secret_auto.as_str()),
                SourceKind::Secret => Some(keys.configmap_auto.as_str()),
                SourceKind::SecretProviderClass => None,
            };
            if let Some(other) = other_typed
                && (governor_bool(view.annotations.get(other))
                    || governor_bool(pod.annotations.get(other)))
            {
                return (
                    false,
                    format!(
                        "not tracked: {other} applies to {} only; add {typed_auto_key}: \"true\" or \
                         {named_key}: \"{name}\"",
                        if kind == SourceKind::ConfigMap {
                            "Secrets"
                        } else {
                            "ConfigMaps"
                        }
                    ),
                );
            }
            (
                false,
                format!(
                    "not tracked: the {workload} has no opt-in annotation for it; add {}: \"true\" \
                     or {named_key}: \"{name}\"",
                    keys.auto
                ),
            )
        }
    }
}

/// A pod spec of just `container` (to ask whether that container references a source).
fn single(
    container: &k8s_openapi::api::core::v1::Container,
) -> k8s_openapi::api::core::v1::PodSpec {
    k8s_openapi::api::core::v1::PodSpec {
        containers: vec![container.clone()],
        ..Default::default()
    }
}

fn governor_bool(value: Option<&String>) -> bool {
    value.is_some_and(|v| crate::model::policy::parse_go_bool(v))
}

/// Explains one workload. `target` is the pod template it runs (a Rollout's `workloadRef`
/// Deployment's, or its own).
pub fn explain(
    view: &WorkloadView,
    target: Option<&WorkloadView>,
    neighbours: &[WorkloadView],
    sources: &NamespaceSources,
    settings: &Settings,
    now: i64,
) -> Explanation {
    let policy = &settings.policy;
    let pod = match target {
        Some(target) => PodTemplate::referenced(target),
        None => PodTemplate::of(view),
    };
    let workload = WorkloadAnnotations {
        kind: view.key.kind,
        metadata: &view.annotations,
        template: pod.annotations,
    };
    let lists = policy.named_lists(workload);
    let referenced: BTreeSet<(SourceKind, ObjectName)> =
        refs::referenced(pod.spec).into_iter().collect();
    let mut candidates = referenced.clone();
    let mut problems: Vec<String> = lists
        .invalid()
        .map(|p| {
            format!(
                "item {:?} of {} is not a valid regular expression ({}); it is skipped",
                p.item, p.key, p.error
            )
        })
        .collect();
    for kind in [SourceKind::ConfigMap, SourceKind::Secret] {
        let list = lists.get(kind);
        let (named_key, _, _) = policy.keys_for(kind);
        for item in &list.items {
            let matched: Vec<&str> = sources
                .names(kind)
                .filter(|n| match item {
                    ListItem::Exact(exact) => **exact == **n,
                    ListItem::Pattern(pattern) => pattern.is_match(n),
                })
                .collect();
            let written = match item {
                ListItem::Exact(exact) => exact.clone(),
                ListItem::Pattern(pattern) => {
                    let text = pattern.as_str();
                    text.strip_prefix('^')
                        .and_then(|t| t.strip_suffix('$'))
                        .unwrap_or(text)
                        .to_owned()
                }
            };
            if matched.is_empty() {
                problems.push(format!(
                    "item {written:?} of {named_key} matches no {} in namespace {} (a typo?)",
                    kind_name(kind),
                    view.key.namespace
                ));
            }
            candidates.extend(matched.into_iter().map(|n| (kind, ObjectName::from(n))));
        }
    }
    let ledger = Ledger::parse(view.annotations.get(LEDGER_ANNOTATION).map(String::as_str));
    let (key_level, invalid_key_level) =
        keys::enabled(&view.annotations, settings.key_level_triggers);
    if let Some(invalid) = invalid_key_level {
        problems.push(format!(
            "{invalid}: --key-level-triggers decides instead; set it to \"true\" or \"false\""
        ));
    }
    let mut reports = Vec::new();
    let mut attention = false;
    for (kind, name) in &candidates {
        if *kind == SourceKind::SecretProviderClass {
            continue;
        }
        let entry = sources.get(*kind, name);
        let is_referenced = referenced.contains(&(*kind, name.clone()));
        let exists = entry.as_ref().is_some_and(|e| e.digest.is_some());
        let source = SourceRef {
            kind: *kind,
            name,
            flags: entry.as_ref().map(|e| e.flags).unwrap_or_default(),
        };
        let result = policy.evaluate(source, workload, &lists);
        let judged = Judged {
            kind: *kind,
            name,
            entry: entry.as_ref(),
            result,
            referenced: is_referenced,
        };
        let (mut tracked, mut why) = reason(policy, view, pod, &judged);
        let container = result
            .ok()
            .and_then(|m| refs::container_for(pod.spec, *kind, name, m.needs_reference()));
        if tracked && container.is_none() {
            tracked = false;
            why = "not tracked: the pod has no container".to_owned();
        }
        if !exists {
            why = format!(
                "{why}; but no {} {name} exists in namespace {}{}",
                kind_name(*kind),
                view.key.namespace,
                if is_referenced {
                    " (pods referencing it cannot start unless it is optional)"
                } else {
                    ""
                }
            );
        }
        let marker = entry.as_ref().and_then(|e| e.digest).map(|d| d.marker());
        let digest = marker.as_ref().map(|d| d.as_str().to_owned());
        let env_var = env_var_name(name, *kind);
        let env_value = pod
            .spec
            .containers
            .iter()
            .flat_map(|c| c.env.iter().flatten())
            .find(|e| e.name == env_var)
            .and_then(|e| e.value.clone());
        let last = pod
            .annotations
            .get(LAST_RELOADED_FROM)
            .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
            .filter(|v| v["name"] == name.as_str() && v["type"] == kind.upstream_type())
            .and_then(|v| v["hash"].as_str().map(str::to_owned));
        let applied = ledger
            .get(*kind, name)
            .map(|d| (d.to_owned(), "ledger kube-reloader.io/digests"))
            .or(env_value.map(|v| (v, "env var")))
            .or(last.map(|v| (v, "last-reloaded-from")));
        let now = entry.as_ref().zip(marker.as_ref()).map(|(e, sha1)| {
            (
                DataNow {
                    sha1,
                    keyed: &e.keyed,
                },
                &e.keys,
            )
        });
        let selection = now
            .filter(|_| tracked)
            .and_then(|(_, digests)| keys::selection(key_level, pod.spec, *kind, name, digests));
        let verdict = if !tracked {
            if is_referenced {
                attention = true;
            }
            "not tracked".to_owned()
        } else {
            match (now, &applied) {
                (Some((now, _)), Some((was, _)))
                    if now.recognize(keys::Entry::parse(was).whole())
                        == Recognition::Unverifiable =>
                {
                    let id = keyed::record_key_id(keys::Entry::parse(was).whole())
                        .map(|id| format!(" (key id {id})"))
                        .unwrap_or_default();
                    format!(
                        "recorded as a keyed digest{id}, which only the controller can check \
                         (--secret-digest-key-secret); its digest key is not readable here"
                    )
                }
                (Some((now, _)), Some((was, _))) => {
                    match keys::judge(was, now, selection.as_ref()) {
                        Judgement::Current => "up to date".to_owned(),
                        Judgement::OtherKeysChanged => format!(
                            "up to date: it changed, but the change is ignored because the \
                             workload reads only key(s) {} of it (key-level triggers)",
                            selection
                                .as_ref()
                                .map(|s| s.keys.join(", "))
                                .unwrap_or_default()
                        ),
                        Judgement::Changed => "will reload".to_owned(),
                    }
                }
                (Some(_), None) => "first sight: recorded without a rollout".to_owned(),
                (None, _) => "source missing".to_owned(),
            }
        };
        reports.push(SourceReport {
            kind: kind_name(*kind),
            name: name.to_string(),
            referenced: is_referenced,
            exists,
            tracked,
            why,
            container: container
                .and_then(|i| pod.spec.containers.get(i))
                .map(|c| c.name.clone()),
            container_why: container.map(|_| {
                if refs::container_for(pod.spec, *kind, name, true).is_none() {
                    "the first container: the source is named, not referenced"
                } else if pod
                    .spec
                    .containers
                    .iter()
                    .any(|c| refs::references(&single(c), *kind, name))
                {
                    "the first container that mounts or reads it"
                } else {
                    "the first container: only an init container references it"
                }
            }),
            env_var: (tracked && settings.strategy == crate::model::Strategy::EnvVars)
                .then_some(env_var),
            digest,
            applied,
            keys: selection.map(|s| s.keys),
            verdict,
        });
    }
    if settings.prune_stale_markers {
        let keep: BTreeSet<String> = candidates
            .iter()
            .filter(|(kind, name)| {
                reports
                    .iter()
                    .find(|r| r.kind == kind_name(*kind) && r.name == *name)
                    .is_none_or(|r| r.tracked || !r.exists)
            })
            .map(|(kind, name)| env_var_name(name, *kind))
            .collect();
        let stale = crate::model::stale::stale_markers(
            pod.spec,
            pod.annotations.contains_key(LAST_RELOADED_FROM),
            &keep,
            settings.strategy,
        );
        for (container, name) in &stale.env {
            problems.push(format!(
                "stale marker {name} on container {container} (its source is no longer tracked): \
                 removed with the next reload, never on its own"
            ));
        }
        if stale.last_reloaded_from {
            problems.push(format!(
                "stale {LAST_RELOADED_FROM} annotation (the strategy is env-vars): removed with \
                 the next reload"
            ));
        }
    }
    let interest = Interest::of(view, policy);
    let plan = planner::plan(&PlanInput {
        view,
        version: None,
        interest: &interest,
        pod: Ok(pod),
        sources,
        policy,
        recorded: None,
        options: PlanOptions {
            strategy: settings.strategy,
            reload_on_create: settings.reload_on_create,
            reload_on_delete: settings.reload_on_delete,
            reload_unrecorded: false,
            prune_stale: settings.prune_stale_markers,
            key_level: settings.key_level_triggers,
        },
        now,
    });
    let (rules, rule_problems) = governor::rules(&view.annotations, &settings.limits);
    problems.extend(rule_problems.into_iter().map(|p| {
        format!(
            "annotation {}={:?} is ignored: {}",
            p.key, p.value, p.reason
        )
    }));
    let verdict = match &plan.intent {
        Intent::Reload(reload) => {
            attention = true;
            let what: Vec<String> = reload
                .changes
                .iter()
                .map(|c| format!("{} {}", kind_name(c.kind), c.name))
                .collect();
            let mut text = format!("will reload ({} changed)", what.join(", "));
            if rules.notify {
                text = format!(
                    "would reload, but only reports it (dry-run / notify mode): {}",
                    what.join(", ")
                );
            } else if let Some(window) = &rules.window
                && !window.is_open(now)
            {
                text.push_str(&format!(
                    "; waiting: window: outside its maintenance window until {}",
                    crate::model::pause::rfc3339(window.next_open(now))
                ));
            } else if let Some(hold) =
                neighbour_hold(view, reload, neighbours, sources, settings, now)
            {
                text.push_str(&format!("; waiting: {hold}"));
            } else if rules.debounce > 0 {
                text.push_str(&format!(
                    "; after the debounce period ({}s) once the sources are quiet",
                    rules.debounce
                ));
            }
            text
        }
        Intent::Baseline { .. } => {
            "up to date (first sight: the controller records the digests without a rollout)"
                .to_owned()
        }
        Intent::UpToDate | Intent::RequeueAt(_) => "up to date".to_owned(),
        Intent::Resume => {
            "up to date (its pause period is over: the controller resumes it)".to_owned()
        }
        Intent::ForgetPause => "up to date".to_owned(),
    };
    Explanation {
        workload: view.key.to_string(),
        strategy: match settings.strategy {
            crate::model::Strategy::EnvVars => "env-vars",
            crate::model::Strategy::Annotations => "annotations",
        },
        sources: reports,
        problems,
        verdict,
        attention,
    }
}

/// What the governor's health gate, caps and rate limit would hold the reload for, judged from
/// the namespace's other workloads (the caps and the rate count this namespace only).
fn neighbour_hold(
    view: &WorkloadView,
    reload: &crate::model::planner::Reload,
    neighbours: &[WorkloadView],
    sources: &NamespaceSources,
    settings: &Settings,
    now: i64,
) -> Option<String> {
    let limits = &settings.limits;
    let timeout = limits.rollout_timeout;
    if let Some(canaries) = limits.canaries {
        for change in &reload.changes {
            let entry = sources.get(change.kind, &change.name);
            let source = SourceRef {
                kind: change.kind,
                name: &change.name,
                flags: entry.as_ref().map(|e| e.flags).unwrap_or_default(),
            };
            let others: Vec<&WorkloadView> = neighbours
                .iter()
                .filter(|v| v.key != view.key)
                .filter(|v| {
                    planner::tracks(
                        v,
                        &Interest::of(v, &settings.policy),
                        PodTemplate::of(v),
                        source,
                        &settings.policy,
                    ) && !entry.as_ref().is_some_and(|e| {
                        e.digest.is_some_and(|sha1| {
                            keys::workload_ignores_change(
                                v,
                                settings.key_level_triggers,
                                (change.kind, &change.name),
                                DataNow {
                                    sha1: &sha1.marker(),
                                    keyed: &e.keyed,
                                },
                                &e.keys,
                            )
                        })
                    })
                })
                .chain(std::iter::once(view))
                .collect();
            match governor::canary_for(view, change, &others, canaries, None, (now, timeout)) {
                governor::CanaryState::Waiting { canary } => {
                    return Some(format!(
                        "canary: {canary} reloads first and must complete its rollout"
                    ));
                }
                governor::CanaryState::Halted { canary, reason } => {
                    return Some(format!("halted: canary {canary} failed ({reason})"));
                }
                _ => {}
            }
        }
    }
    let busy = neighbours
        .iter()
        .filter(|v| v.key != view.key)
        .filter(|v| {
            v.progress
                .as_ref()
                .is_some_and(|p| governor::in_progress(p, governor::reloaded_at(v), now, timeout))
        })
        .count();
    for cap in [limits.max_concurrent_per_namespace, limits.max_concurrent] {
        if cap > 0 && busy >= usize::try_from(cap).unwrap_or(usize::MAX) {
            return Some(format!(
                "concurrency: {busy} of our rollouts are in progress in this namespace (cap {cap})"
            ));
        }
    }
    if limits.max_per_minute > 0 {
        let stamps: Vec<i64> = neighbours
            .iter()
            .filter_map(governor::reloaded_at)
            .collect();
        let wait = governor::rate_wait(stamps, limits.max_per_minute, now);
        if wait > 0 {
            return Some(format!(
                "rate: the next reload may start in {wait}s (counting this namespace's reloads)"
            ));
        }
    }
    None
}

/// The explanation as text.
pub fn render_text(explanation: &Explanation) -> String {
    let mut out = format!(
        "{} (reload strategy {})\n",
        explanation.workload, explanation.strategy
    );
    if explanation.sources.is_empty() {
        out.push_str("  references no ConfigMap or Secret and names none\n");
    }
    for source in &explanation.sources {
        out.push_str(&format!(
            "  {} {}: {}\n",
            source.kind, source.name, source.why
        ));
        if let Some(container) = &source.container
            && source.tracked
        {
            let why = source.container_why.unwrap_or_default();
            match &source.env_var {
                Some(var) => {
                    out.push_str(&format!("    container {container} gets {var} ({why})\n"))
                }
                None => out.push_str(&format!(
                    "    container {container} is named in the pod annotation ({why})\n"
                )),
            }
        }
        if let Some(keys) = &source.keys {
            out.push_str(&format!(
                "    key-level: reloads only when key(s) {} change (every reference names keys)\n",
                keys.join(", ")
            ));
        }
        if source.tracked {
            let now = source.digest.as_deref().unwrap_or("(missing)");
            let applied = source
                .applied
                .as_ref()
                .map(|(d, from)| format!("{d} ({from})"))
                .unwrap_or_else(|| "none".to_owned());
            out.push_str(&format!(
                "    digest now {now}, applied {applied}: {}\n",
                source.verdict
            ));
        }
    }
    for problem in &explanation.problems {
        out.push_str(&format!("  problem: {problem}\n"));
    }
    out.push_str(&format!("verdict: {}\n", explanation.verdict));
    out
}

/// Kinds as kubectl spells them.
fn parse_kind(text: &str) -> Option<WorkloadKind> {
    Some(match text.to_ascii_lowercase().as_str() {
        "deploy" | "deployment" | "deployments" => WorkloadKind::Deployment,
        "sts" | "statefulset" | "statefulsets" => WorkloadKind::StatefulSet,
        "ds" | "daemonset" | "daemonsets" => WorkloadKind::DaemonSet,
        "cj" | "cronjob" | "cronjobs" => WorkloadKind::CronJob,
        "job" | "jobs" => WorkloadKind::Job,
        "rollout" | "rollouts" | "ro" => WorkloadKind::Rollout,
        "dc" | "deploymentconfig" | "deploymentconfigs" => WorkloadKind::DeploymentConfig,
        _ => return None,
    })
}

/// A failed explain: what to tell the user.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The target is not `KIND/NAME`.
    #[error(
        "{0:?} is not KIND/NAME (e.g. deploy/web, sts/db, ds/agent, cronjob/nightly, job/migrate, rollout/x, dc/x)"
    )]
    Target(String),
    /// No kube config.
    #[error("cannot connect to the cluster: {0}")]
    Connect(String),
    /// The API refused or failed.
    #[error("cannot {verb} {resource} in namespace {namespace}: {message}{fix}")]
    Api {
        /// get or list.
        verb: &'static str,
        /// What.
        resource: String,
        /// Where.
        namespace: String,
        /// The API's answer.
        message: String,
        /// What to do.
        fix: String,
    },
}

/// An API error as a message naming the permission to grant.
pub fn api_error(
    e: kube::Error,
    verb: &'static str,
    resource: &str,
    namespace: &str,
) -> ExplainError {
    let (message, fix) = match &e {
        kube::Error::Api(status) if status.code == 403 => (
            "forbidden".to_owned(),
            format!(
                ". Fix: grant {verb} on {resource} in namespace {namespace} (explain only reads: get and list)"
            ),
        ),
        kube::Error::Api(status) if status.code == 404 => (
            "not found".to_owned(),
            ". Check the name and the namespace (-n)".to_owned(),
        ),
        other => (other.to_string(), String::new()),
    };
    ExplainError::Api {
        verb,
        resource: resource.to_owned(),
        namespace: namespace.to_owned(),
        message,
        fix,
    }
}

async fn get_view<K: WorkloadResource + k8s_openapi::Resource>(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<WorkloadView, ExplainError> {
    let object = Api::<K>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .map_err(|e| api_error(e, "get", K::URL_PATH_SEGMENT, namespace))?;
    project(&object).ok_or_else(|| ExplainError::Target(name.to_owned()))
}

/// The digest keys of `--secret-digest-key-secret`, when given and readable (never printed):
/// with them keyed records are checked as the controller checks them; without them they are
/// reported as not checkable here.
pub async fn read_digest_keys(client: &kube::Client, settings: &Settings) -> DigestKeys {
    let Some(key) = &settings.secret_digest else {
        return DigestKeys::default();
    };
    match Api::<Secret>::namespaced(client.clone(), &key.namespace)
        .get(&key.name)
        .await
    {
        Ok(secret) => digest_key::keys_of(&secret, key.write_keyed).unwrap_or_else(|e| {
            eprintln!(
                "kube-reloader: the digest key Secret {}/{} cannot be used ({e}); keyed digests \
                 are not checked",
                key.namespace, key.name
            );
            DigestKeys::default()
        }),
        Err(e) => {
            eprintln!(
                "kube-reloader: cannot read the digest key Secret {}/{} ({}); keyed digests are \
                 not checked",
                key.namespace,
                key.name,
                api_error(e, "get", "secrets", &key.namespace)
            );
            DigestKeys::default()
        }
    }
}

/// The namespace's ConfigMaps and Secrets, digested (values dropped at once); Secrets under
/// `digest_keys` too.
pub async fn read_sources(
    client: &kube::Client,
    namespace: &str,
    policy: &Policy,
    digest_keys: &DigestKeys,
) -> Result<NamespaceSources, ExplainError> {
    let entry =
        |content: SourceContent,
         meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            SourceEntry {
                digest: Some(content.digest),
                keys: content.keys,
                keyed: content.keyed,
                flags: policy.source_flags(meta.annotations.as_ref().unwrap_or(&BTreeMap::new())),
                created_while_running: false,
                data_changed_at: None,
            }
        };
    let mut sources = NamespaceSources::new();
    let configmaps = Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map_err(|e| api_error(e, "list", "configmaps", namespace))?;
    for cm in &configmaps.items {
        if let Some(name) = cm.metadata.name.clone() {
            sources.insert(
                SourceKind::ConfigMap,
                &name,
                entry(
                    {
                        let (digest, keys) = digest::configmap_keyed(cm);
                        SourceContent {
                            digest,
                            keys,
                            keyed: KeyedDigests::default(),
                        }
                    },
                    &cm.metadata,
                ),
            );
        }
    }
    let secrets = Api::<Secret>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map_err(|e| api_error(e, "list", "secrets", namespace))?;
    for secret in &secrets.items {
        if let Some(name) = secret.metadata.name.clone() {
            sources.insert(
                SourceKind::Secret,
                &name,
                entry(
                    {
                        let (digest, keys, keyed) = digest::secret_forms_of(secret, digest_keys);
                        SourceContent {
                            digest,
                            keys,
                            keyed,
                        }
                    },
                    &secret.metadata,
                ),
            );
        }
    }
    Ok(sources)
}

/// Runs the command; returns the exit code (0 up to date, 1 attention needed, 2 error).
pub async fn run(target: &str, namespace: Option<&str>, json: bool, settings: &Settings) -> u8 {
    match explain_target(target, namespace, settings).await {
        Ok(explanation) => {
            if json {
                match serde_json::to_string_pretty(&explanation) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("kube-reloader explain: error: {e}");
                        return 2;
                    }
                }
            } else {
                print!("{}", render_text(&explanation));
            }
            u8::from(explanation.attention)
        }
        Err(e) => {
            eprintln!("kube-reloader explain: error: {e}");
            2
        }
    }
}

async fn explain_target(
    target: &str,
    namespace: Option<&str>,
    settings: &Settings,
) -> Result<Explanation, ExplainError> {
    let (kind, name) = target
        .split_once('/')
        .and_then(|(k, n)| Some((parse_kind(k)?, n)))
        .filter(|(_, n)| !n.is_empty())
        .ok_or_else(|| ExplainError::Target(target.to_owned()))?;
    let config = kube::Config::infer()
        .await
        .map_err(|e| ExplainError::Connect(e.to_string()))?;
    let namespace = namespace
        .map(str::to_owned)
        .unwrap_or_else(|| config.default_namespace.clone());
    let client =
        api_client::client(config, None).map_err(|e| ExplainError::Connect(e.to_string()))?;
    let view = match kind {
        WorkloadKind::Deployment => get_view::<Deployment>(&client, &namespace, name).await?,
        WorkloadKind::StatefulSet => get_view::<StatefulSet>(&client, &namespace, name).await?,
        WorkloadKind::DaemonSet => get_view::<DaemonSet>(&client, &namespace, name).await?,
        WorkloadKind::CronJob => get_view::<CronJob>(&client, &namespace, name).await?,
        WorkloadKind::Job => get_view::<Job>(&client, &namespace, name).await?,
        WorkloadKind::Rollout => get_view::<Rollout>(&client, &namespace, name).await?,
        WorkloadKind::DeploymentConfig => {
            get_view::<DeploymentConfig>(&client, &namespace, name).await?
        }
    };
    let target_view = match &view.workload_ref {
        Some(Ok(deployment)) => {
            Some(get_view::<Deployment>(&client, &namespace, deployment).await?)
        }
        _ => None,
    };
    let digest_keys = read_digest_keys(&client, settings).await;
    let sources = read_sources(&client, &namespace, &settings.policy, &digest_keys).await?;
    let limits = &settings.limits;
    // The namespace's other workloads, for the governor's gate, caps and rate (best effort:
    // without list permission those holds are not shown).
    let neighbours = if limits.canaries.is_some() || limits.follows_rollouts() {
        list_namespace(&client, &namespace)
            .await
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    Ok(explain(
        &view,
        target_view.as_ref(),
        &neighbours,
        &sources,
        settings,
        crate::reconcile::unix_now(),
    ))
}

/// Every workload of the core kinds in `namespace` (or everywhere), projected.
pub async fn list_namespace(
    client: &kube::Client,
    namespace: &str,
) -> Result<Vec<WorkloadView>, ExplainError> {
    let mut views = Vec::new();
    views.extend(list_views::<Deployment>(client, Some(namespace)).await?);
    views.extend(list_views::<StatefulSet>(client, Some(namespace)).await?);
    views.extend(list_views::<DaemonSet>(client, Some(namespace)).await?);
    views.extend(list_views::<CronJob>(client, Some(namespace)).await?);
    views.extend(list_views::<Job>(client, Some(namespace)).await?);
    Ok(views)
}

/// The workloads of one kind in `namespace` (or everywhere); none when the API is not served.
pub async fn list_views<K: WorkloadResource + k8s_openapi::Resource>(
    client: &kube::Client,
    namespace: Option<&str>,
) -> Result<Vec<WorkloadView>, ExplainError> {
    let api: Api<K> = crate::watch::scoped_api(client, namespace);
    match api.list(&ListParams::default()).await {
        Ok(list) => Ok(list.items.iter().filter_map(project).collect()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Vec::new()),
        Err(e) => Err(api_error(
            e,
            "list",
            K::URL_PATH_SEGMENT,
            namespace.unwrap_or("(all)"),
        )),
    }
}
