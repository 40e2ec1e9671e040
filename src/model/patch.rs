//! Patch bodies for a [`Decision`](crate::model::plan::Decision): strategic-merge patches that
//! touch only our markers, so they need no resourceVersion and cannot undo anyone else's change.

use k8s_openapi::api::core::v1::{EnvVar, PodTemplateSpec};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::config::Strategy;
use crate::model::digest::env_var_name;
use crate::model::plan::{Cause, Change, LEDGER_ANNOTATION};
use crate::model::policy::LAST_RELOADED_FROM;

/// Upstream's `last-reloaded-from` payload; field order is part of the contract.
#[derive(Debug, Serialize)]
struct LastReloadedFrom<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    name: &'a str,
    namespace: &'a str,
    hash: &'a str,
    #[serde(rename = "containerRefs")]
    container_refs: [&'a str; 1],
    #[serde(rename = "observedAt")]
    observed_at: i64,
}

/// Where the pod template lives in a workload, e.g. `["spec", "template"]`, or
/// `["spec", "jobTemplate", "spec", "template"]` for a CronJob.
pub type TemplatePath = &'static [&'static str];

/// Pod template path of Deployments, StatefulSets, DaemonSets, Jobs and Rollouts.
pub const POD_TEMPLATE: TemplatePath = &["spec", "template"];

/// The metadata-only patch that records the ledger (no rollout). An empty ledger removes it.
pub fn baseline(ledger: &str) -> Value {
    json!({"metadata": {"annotations": {LEDGER_ANNOTATION: ledger_value(ledger)}}})
}

/// The patch that performs a reload: ledger plus markers in the pod template.
///
/// `containers` are the pod template's container names (indexed by `Change::container`);
/// `now_unix` is written as `observedAt` under the annotations strategy.
pub fn reload(
    strategy: Strategy,
    path: TemplatePath,
    namespace: &str,
    containers: &[&str],
    changes: &[Change],
    ledger: &str,
    now_unix: i64,
) -> Value {
    let mut body = baseline(ledger);
    merge(
        &mut body,
        template_markers(strategy, path, namespace, containers, changes, now_unix),
    );
    body
}

/// The strategic-merge patch of the pod-template markers alone (no ledger): for a Rollout
/// whose template lives in the Deployment its `workloadRef` names.
pub fn template_markers(
    strategy: Strategy,
    path: TemplatePath,
    namespace: &str,
    containers: &[&str],
    changes: &[Change],
    now_unix: i64,
) -> Value {
    let template = match strategy {
        Strategy::EnvVars => {
            let mut per_container: Vec<(&str, Vec<Value>)> = Vec::new();
            for change in changes {
                let Some(container) = containers.get(change.container) else {
                    continue;
                };
                let name = env_var_name(&change.name, change.kind);
                let entry = if change.cause == Cause::Deleted {
                    json!({"name": name, "$patch": "delete"})
                } else {
                    json!({"name": name, "value": change.digest.as_str()})
                };
                match per_container.iter_mut().find(|(c, _)| c == container) {
                    Some((_, env)) => env.push(entry),
                    None => per_container.push((container, vec![entry])),
                }
            }
            let list: Vec<Value> = per_container
                .into_iter()
                .map(|(name, env)| json!({"name": name, "env": env}))
                .collect();
            json!({"spec": {"containers": list}})
        }
        Strategy::Annotations => {
            // Upstream writes one source per event; with several at once, the last (in kind,
            // name order) is the one that stays, as it would after sequential upstream writes.
            let value = changes.last().map(|change| {
                let container = containers
                    .get(change.container)
                    .copied()
                    .unwrap_or_default();
                last_reloaded_from(change, namespace, container, now_unix)
            });
            json!({"metadata": {"annotations": {LAST_RELOADED_FROM: value}}})
        }
    };
    let mut body = json!({});
    insert_at(&mut body, path, template);
    body
}

/// The JSON merge patch of a reload, for custom resources (which take no strategic merge):
/// a merge patch replaces lists whole, so under env-vars it carries the full container list of
/// `template` with the markers applied, and `resource_version` makes the API server refuse it
/// if the object changed since we read it.
pub fn merge_reload(
    strategy: Strategy,
    template: &PodTemplateSpec,
    namespace: &str,
    changes: &[Change],
    ledger: &str,
    resource_version: Option<u64>,
    now_unix: i64,
) -> Value {
    let mut updated = template.clone();
    apply_to_template(&mut updated, strategy, namespace, changes, now_unix);
    let mut body = baseline(ledger);
    match strategy {
        Strategy::EnvVars => {
            let containers = updated
                .spec
                .map(|s| serde_json::to_value(s.containers).unwrap_or(Value::Null))
                .unwrap_or(Value::Null);
            merge(
                &mut body,
                json!({"spec": {"template": {"spec": {"containers": containers}}}}),
            );
            if let Some(version) = resource_version {
                merge(
                    &mut body,
                    json!({"metadata": {"resourceVersion": version.to_string()}}),
                );
            }
        }
        Strategy::Annotations => {
            let value = updated
                .metadata
                .and_then(|m| m.annotations)
                .and_then(|mut a| a.remove(LAST_RELOADED_FROM));
            merge(
                &mut body,
                json!({"spec": {"template": {"metadata": {"annotations": {LAST_RELOADED_FROM: value}}}}}),
            );
        }
    }
    body
}

/// Argo Rollouts' restart: `spec.restartAt` (RFC 3339) makes the Rollout controller replace
/// its pods without a new revision; the ledger records what it was done for.
pub fn restart_at(ledger: &str, now_rfc3339: &str) -> Value {
    let mut body = baseline(ledger);
    merge(&mut body, json!({"spec": {"restartAt": now_rfc3339}}));
    body
}

/// The pause that precedes a reload of a Deployment with a pause period: merged into the
/// reload patch, so the Deployment is paused in the same write that changes its template and
/// no pod rolls until we resume it.
pub fn pause(paused_at_key: &str, now_rfc3339: &str) -> Value {
    json!({"spec": {"paused": true}, "metadata": {"annotations": {paused_at_key: now_rfc3339}}})
}

/// The resume after a pause period: unpause and drop our `paused-at` annotation.
pub fn resume(paused_at_key: &str) -> Value {
    json!({"spec": {"paused": false}, "metadata": {"annotations": {paused_at_key: null}}})
}

/// Drops a stale `paused-at` from a Deployment someone else already resumed.
pub fn forget_pause(paused_at_key: &str) -> Value {
    json!({"metadata": {"annotations": {paused_at_key: null}}})
}

/// Adds `extra` into `body` (objects merged key by key).
pub fn combine(mut body: Value, extra: Value) -> Value {
    merge(&mut body, extra);
    body
}

/// Applies a reload's markers to a pod template in memory, the same edit [`reload`] expresses
/// as a patch: for CronJobs, whose reload creates a Job from the (mutated) job template.
pub fn apply_to_template(
    template: &mut PodTemplateSpec,
    strategy: Strategy,
    namespace: &str,
    changes: &[Change],
    now_unix: i64,
) {
    let Some(spec) = template.spec.as_mut() else {
        return;
    };
    match strategy {
        Strategy::EnvVars => {
            for change in changes {
                let Some(container) = spec.containers.get_mut(change.container) else {
                    continue;
                };
                let name = env_var_name(&change.name, change.kind);
                let env = container.env.get_or_insert_with(Vec::new);
                env.retain(|e| e.name != name);
                if change.cause != Cause::Deleted {
                    env.push(EnvVar {
                        name,
                        value: Some(change.digest.to_string()),
                        ..EnvVar::default()
                    });
                }
            }
        }
        Strategy::Annotations => {
            if let Some(change) = changes.last() {
                let container = spec
                    .containers
                    .get(change.container)
                    .map(|c| c.name.as_str())
                    .unwrap_or_default();
                let value = last_reloaded_from(change, namespace, container, now_unix);
                template
                    .metadata
                    .get_or_insert_with(Default::default)
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(LAST_RELOADED_FROM.to_owned(), value);
            }
        }
    }
}

/// Upstream's `last-reloaded-from` value for one change.
fn last_reloaded_from(change: &Change, namespace: &str, container: &str, now_unix: i64) -> String {
    let payload = LastReloadedFrom {
        kind: change.kind.upstream_type(),
        name: &change.name,
        namespace,
        hash: change.digest.as_str(),
        container_refs: [container],
        observed_at: now_unix,
    };
    serde_json::to_string(&payload).unwrap_or_default()
}

fn ledger_value(ledger: &str) -> Value {
    if ledger.is_empty() {
        Value::Null
    } else {
        Value::String(ledger.to_owned())
    }
}

/// Merges `value` into `body` at `path`, creating objects on the way.
fn insert_at(body: &mut Value, path: &[&str], value: Value) {
    let mut cursor = body;
    for key in path {
        if !cursor.is_object() {
            *cursor = Value::Object(Map::new());
        }
        let Value::Object(map) = cursor else { return };
        cursor = map
            .entry(key.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    merge(cursor, value);
}

fn merge(target: &mut Value, value: Value) {
    match (target, value) {
        (Value::Object(target), Value::Object(source)) => {
            for (k, v) in source {
                merge(target.entry(k).or_insert(Value::Null), v);
            }
        }
        (target, value) => *target = value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::digest::{Digest, SourceKind};

    const A: &str = "f83e99e324ba68ccc373a58ef1eb42f8ab88646a";

    fn change(kind: SourceKind, name: &str, container: usize, cause: Cause) -> Change {
        Change {
            kind,
            name: name.into(),
            digest: Digest::parse(A).unwrap(),
            container,
            cause,
        }
    }

    #[test]
    fn env_vars_patch_matches_upstream_shape_plus_ledger() {
        let body = reload(
            Strategy::EnvVars,
            POD_TEMPLATE,
            "default",
            &["app", "side"],
            &[change(
                SourceKind::ConfigMap,
                "foo-config",
                0,
                Cause::Changed,
            )],
            "{\"configmap/foo-config\":\"x\"}",
            0,
        );
        assert_eq!(
            body,
            json!({
                "metadata": {"annotations": {LEDGER_ANNOTATION: "{\"configmap/foo-config\":\"x\"}"}},
                "spec": {"template": {"spec": {"containers": [
                    {"name": "app", "env": [{"name": "STAKATER_FOO_CONFIG_CONFIGMAP", "value": A}]}
                ]}}}
            })
        );
    }

    #[test]
    fn several_changes_group_env_vars_by_container() {
        let body = reload(
            Strategy::EnvVars,
            POD_TEMPLATE,
            "ns",
            &["app", "side"],
            &[
                change(SourceKind::ConfigMap, "a", 1, Cause::Changed),
                change(SourceKind::Secret, "b", 1, Cause::Changed),
                change(SourceKind::Secret, "gone", 0, Cause::Deleted),
            ],
            "",
            0,
        );
        let containers = &body["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["name"], "side");
        assert_eq!(containers[0]["env"].as_array().unwrap().len(), 2);
        assert_eq!(
            containers[1],
            json!({"name": "app", "env": [{"name": "STAKATER_GONE_SECRET", "$patch": "delete"}]})
        );
        assert_eq!(
            body["metadata"]["annotations"][LEDGER_ANNOTATION],
            Value::Null
        );
    }

    #[test]
    fn annotations_patch_has_upstream_field_order() {
        let body = reload(
            Strategy::Annotations,
            POD_TEMPLATE,
            "default",
            &["app"],
            &[change(
                SourceKind::ConfigMap,
                "foo-config",
                0,
                Cause::Changed,
            )],
            "{}",
            1754800000,
        );
        let value = body["spec"]["template"]["metadata"]["annotations"][LAST_RELOADED_FROM]
            .as_str()
            .unwrap();
        assert_eq!(
            value,
            format!(
                "{{\"type\":\"CONFIGMAP\",\"name\":\"foo-config\",\"namespace\":\"default\",\"hash\":\"{A}\",\"containerRefs\":[\"app\"],\"observedAt\":1754800000}}"
            )
        );
    }

    #[test]
    fn cronjob_path_nests_the_template() {
        let body = reload(
            Strategy::EnvVars,
            &["spec", "jobTemplate", "spec", "template"],
            "ns",
            &["app"],
            &[change(SourceKind::ConfigMap, "a", 0, Cause::Changed)],
            "{}",
            0,
        );
        assert!(body["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"].is_array());
    }

    #[test]
    fn in_memory_edit_matches_the_patch() {
        let mut template: PodTemplateSpec = serde_json::from_value(json!({
            "spec": {"containers": [
                {"name": "app", "env": [{"name": "STAKATER_A_CONFIGMAP", "value": "old"}, {"name": "X", "value": "1"}]},
                {"name": "side"}
            ]}
        }))
        .unwrap();
        apply_to_template(
            &mut template,
            Strategy::EnvVars,
            "ns",
            &[
                change(SourceKind::ConfigMap, "a", 0, Cause::Changed),
                change(SourceKind::Secret, "b", 1, Cause::Changed),
            ],
            0,
        );
        let value = serde_json::to_value(&template).unwrap();
        assert_eq!(
            value["spec"]["containers"][0]["env"],
            json!([{"name": "X", "value": "1"}, {"name": "STAKATER_A_CONFIGMAP", "value": A}])
        );
        assert_eq!(
            value["spec"]["containers"][1]["env"],
            json!([{"name": "STAKATER_B_SECRET", "value": A}])
        );
        apply_to_template(
            &mut template,
            Strategy::Annotations,
            "ns",
            &[change(SourceKind::Secret, "b", 1, Cause::Changed)],
            7,
        );
        let value = serde_json::to_value(&template).unwrap();
        assert!(
            value["metadata"]["annotations"][LAST_RELOADED_FROM]
                .as_str()
                .unwrap()
                .contains("\"containerRefs\":[\"side\"],\"observedAt\":7")
        );
    }

    #[test]
    fn baseline_touches_only_metadata() {
        assert_eq!(
            baseline("{}"),
            json!({"metadata": {"annotations": {LEDGER_ANNOTATION: "{}"}}})
        );
        assert_eq!(
            baseline(""),
            json!({"metadata": {"annotations": {LEDGER_ANNOTATION: null}}})
        );
    }
}
