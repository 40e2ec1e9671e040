//! `kube-reloader status [-n NAMESPACE | -A] [-o text|json]`: one line per opted-in workload
//! that is not up to date or has a problem (a pending reload, failed writes from recent
//! `ReloadFail` Events, invalid annotations, typos in reload lists), oldest first. Read-only,
//! with the user's kubeconfig; built on [`super::explain`].

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use serde::Serialize;

use super::explain::{self, ExplainError, api_error, list_views, read_sources};
use crate::config::Settings;
use crate::model::ObjectName;
use crate::model::governor;
use crate::model::interest::SOURCE_KINDS;
use crate::model::policy::Policy;
use crate::model::workload::WorkloadView;
use crate::ops::api_client;
use crate::watch::scoped_api;

/// One workload that needs a look.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    /// Its namespace.
    pub namespace: String,
    /// `Kind/name`.
    pub workload: String,
    /// pending, failing, or problem.
    pub state: &'static str,
    /// What, in one line.
    pub detail: String,
    /// Seconds since the oldest sign (failed write, else the workload's creation).
    pub age_seconds: i64,
}

/// Whether the workload opts in to reloads at all (an annotation, or `--auto-reload-all`).
pub fn opted_in(view: &WorkloadView, policy: &Policy) -> bool {
    if policy.auto_reload_all {
        return true;
    }
    let keys = &policy.keys;
    let mut opt_in = vec![keys.auto.as_str(), keys.search.as_str()];
    for kind in SOURCE_KINDS {
        let (named, typed, _) = policy.keys_for(kind);
        opt_in.push(named);
        opt_in.push(typed);
    }
    opt_in.extend([
        governor::MODE_ANNOTATION,
        governor::WINDOW_ANNOTATION,
        governor::DEBOUNCE_ANNOTATION,
    ]);
    opt_in
        .iter()
        .any(|k| view.annotations.contains_key(k) || view.template_annotations.contains_key(k))
}

/// Runs the command; returns the exit code (0 nothing to report, 1 something listed, 2 error).
pub async fn run(namespace: Option<&str>, all: bool, json: bool, settings: &Settings) -> u8 {
    match status(namespace, all, settings).await {
        Ok(lines) => {
            if json {
                match serde_json::to_string_pretty(&lines) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("kube-reloader status: error: {e}");
                        return 2;
                    }
                }
            } else if lines.is_empty() {
                println!("every opted-in workload is up to date");
            } else {
                println!("NAMESPACE\tWORKLOAD\tSTATE\tAGE\tDETAIL");
                for line in &lines {
                    println!(
                        "{}\t{}\t{}\t{}s\t{}",
                        line.namespace, line.workload, line.state, line.age_seconds, line.detail
                    );
                }
            }
            u8::from(!lines.is_empty())
        }
        Err(e) => {
            eprintln!("kube-reloader status: error: {e}");
            2
        }
    }
}

async fn status(
    namespace: Option<&str>,
    all: bool,
    settings: &Settings,
) -> Result<Vec<Line>, ExplainError> {
    let config = kube::Config::infer()
        .await
        .map_err(|e| ExplainError::Connect(e.to_string()))?;
    let default_namespace = config.default_namespace.clone();
    let client =
        api_client::client(config, None).map_err(|e| ExplainError::Connect(e.to_string()))?;
    let scope = if all {
        None
    } else {
        Some(namespace.map(str::to_owned).unwrap_or(default_namespace))
    };
    let scope = scope.as_deref();
    let mut views = Vec::new();
    views.extend(list_views::<Deployment>(&client, scope).await?);
    views.extend(list_views::<StatefulSet>(&client, scope).await?);
    views.extend(list_views::<DaemonSet>(&client, scope).await?);
    views.extend(list_views::<CronJob>(&client, scope).await?);
    views.extend(list_views::<Job>(&client, scope).await?);
    views.retain(|v| opted_in(v, &settings.policy));
    let events: Api<Event> = scoped_api(&client, scope);
    let failures: Vec<Event> = events
        .list(&ListParams::default())
        .await
        .map_err(|e| api_error(e, "list", "events", scope.unwrap_or("(all)")))?
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("ReloadFail"))
        .collect();
    let now = crate::reconcile::unix_now();
    let mut by_namespace: BTreeMap<ObjectName, Vec<WorkloadView>> = BTreeMap::new();
    for view in views {
        by_namespace
            .entry(view.key.namespace.clone())
            .or_default()
            .push(view);
    }
    let mut lines = Vec::new();
    let digest_keys = explain::read_digest_keys(&client, settings).await;
    for (ns, views) in by_namespace {
        let sources = read_sources(&client, &ns, &settings.policy, &digest_keys).await?;
        for view in &views {
            let explanation = explain::explain(view, None, &views, &sources, settings, now);
            let failed: Vec<&Event> = failures
                .iter()
                .filter(|e| {
                    e.involved_object.namespace.as_deref() == Some(ns.as_str())
                        && e.involved_object.name.as_deref() == Some(view.key.name.as_str())
                        && e.involved_object.kind.as_deref() == Some(view.key.kind.as_str())
                })
                .collect();
            let created = view.created_at.unwrap_or(now);
            let first_failure = failed
                .iter()
                .filter_map(|e| {
                    e.first_timestamp
                        .as_ref()
                        .or(e.last_timestamp.as_ref())
                        .map(|t| t.0.as_second())
                        .or_else(|| e.event_time.as_ref().map(|t| t.0.as_second()))
                })
                .min();
            let workload = format!("{}/{}", view.key.kind.as_str(), view.key.name);
            let age = now.saturating_sub(first_failure.unwrap_or(created));
            if let Some(last) = failed.last() {
                lines.push(Line {
                    namespace: ns.to_string(),
                    workload: workload.clone(),
                    state: "failing",
                    detail: last.message.clone().unwrap_or_default(),
                    age_seconds: age,
                });
            } else if explanation.verdict.starts_with("will reload")
                || explanation.verdict.starts_with("would reload")
            {
                lines.push(Line {
                    namespace: ns.to_string(),
                    workload: workload.clone(),
                    state: "pending",
                    detail: explanation.verdict.clone(),
                    age_seconds: age,
                });
            } else if !explanation.problems.is_empty() {
                lines.push(Line {
                    namespace: ns.to_string(),
                    workload,
                    state: "problem",
                    detail: explanation.problems.join("; "),
                    age_seconds: age,
                });
            }
        }
    }
    lines.sort_by(|a, b| {
        b.age_seconds
            .cmp(&a.age_seconds)
            .then_with(|| (&a.namespace, &a.workload).cmp(&(&b.namespace, &b.workload)))
    });
    Ok(lines)
}
