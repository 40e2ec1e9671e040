//! Patch bodies. Built-in kinds get strategic-merge patches that touch only our markers, so they
//! need no resourceVersion and cannot undo anyone else's change; custom resources get JSON merge
//! patches, guarded by the resourceVersion the plan was made from where they replace a list.

use serde_json::{Value, json};

use crate::model::edit::{TemplateEdit, TemplatePath};
use crate::model::ledger::{LEDGER_ANNOTATION, RECREATE_FINALIZER};

/// The metadata-only patch that records the ledger (no rollout). An empty ledger removes it.
pub fn baseline(ledger: &str) -> Value {
    json!({"metadata": {"annotations": {LEDGER_ANNOTATION: ledger_value(ledger)}}})
}

/// The strategic-merge patch of a reload: ledger plus the edit of the pod template at `path`.
pub fn reload(edit: &TemplateEdit, path: TemplatePath, ledger: &str) -> Value {
    combine(baseline(ledger), edit.strategic(path))
}

/// The JSON merge patch of a reload of a custom resource: ledger, the edit (which under
/// env-vars carries the whole container list of the template it was made from) and that
/// template's resourceVersion, so the API server refuses it if the object changed since.
pub fn merge_reload(
    edit: &TemplateEdit,
    path: TemplatePath,
    template: &k8s_openapi::api::core::v1::PodTemplateSpec,
    ledger: &str,
    resource_version: Option<u64>,
) -> Value {
    let mut body = combine(baseline(ledger), edit.merge(path, template));
    if edit.last_reloaded_from.is_none()
        && let Some(version) = resource_version
    {
        body = combine(
            body,
            json!({"metadata": {"resourceVersion": version.to_string()}}),
        );
    }
    body
}

/// Argo Rollouts' restart: `spec.restartAt` (RFC 3339) makes the Rollout controller replace
/// its pods without a new revision; the ledger records what it was done for.
pub fn restart_at(ledger: &str, now_rfc3339: &str) -> Value {
    combine(
        baseline(ledger),
        json!({"spec": {"restartAt": now_rfc3339}}),
    )
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

/// Adds our re-creation finalizer to a Job (strategic merge: finalizers merge as a set),
/// conditional on its UID: a patch carrying another UID is refused with a conflict.
pub fn hold_for_recreation(uid: &str) -> Value {
    json!({"metadata": {"uid": uid, "finalizers": [RECREATE_FINALIZER]}})
}

/// Removes our re-creation finalizer (and nothing else) from the Job with `uid`.
pub fn release_from_recreation(uid: &str) -> Value {
    json!({"metadata": {"uid": uid, "$deleteFromPrimitiveList/finalizers": [RECREATE_FINALIZER]}})
}

/// Adds `extra` into `body` (objects merged key by key).
pub fn combine(mut body: Value, extra: Value) -> Value {
    merge(&mut body, extra);
    body
}

fn ledger_value(ledger: &str) -> Value {
    if ledger.is_empty() {
        Value::Null
    } else {
        Value::String(ledger.to_owned())
    }
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
    use crate::model::edit::{POD_TEMPLATE, Strategy};
    use crate::model::plan::{Cause, Change};
    use crate::model::policy::LAST_RELOADED_FROM;

    const A: &str = "f83e99e324ba68ccc373a58ef1eb42f8ab88646a";

    fn edit(strategy: Strategy) -> TemplateEdit {
        TemplateEdit::new(
            strategy,
            "default",
            &["app", "side"],
            &[Change {
                kind: SourceKind::ConfigMap,
                name: "foo-config".into(),
                digest: Digest::parse(A).unwrap(),
                container: 0,
                cause: Cause::Changed,
            }],
            0,
        )
    }

    #[test]
    fn env_vars_patch_matches_upstream_shape_plus_ledger() {
        assert_eq!(
            reload(
                &edit(Strategy::EnvVars),
                POD_TEMPLATE,
                "{\"configmap/foo-config\":\"x\"}"
            ),
            json!({
                "metadata": {"annotations": {LEDGER_ANNOTATION: "{\"configmap/foo-config\":\"x\"}"}},
                "spec": {"template": {"spec": {"containers": [
                    {"name": "app", "env": [{"name": "STAKATER_FOO_CONFIG_CONFIGMAP", "value": A}]}
                ]}}}
            })
        );
    }

    #[test]
    fn merge_reload_carries_the_version_only_when_it_replaces_the_container_list() {
        let template = serde_json::from_value(
            json!({"spec": {"containers": [{"name": "app"}, {"name": "side"}]}}),
        )
        .unwrap();
        let env = merge_reload(
            &edit(Strategy::EnvVars),
            POD_TEMPLATE,
            &template,
            "",
            Some(42),
        );
        assert_eq!(env["metadata"]["resourceVersion"], "42");
        assert_eq!(
            env["metadata"]["annotations"][LEDGER_ANNOTATION],
            Value::Null
        );
        assert_eq!(
            env["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let annotated = merge_reload(
            &edit(Strategy::Annotations),
            POD_TEMPLATE,
            &template,
            "{}",
            Some(42),
        );
        assert!(annotated["metadata"].get("resourceVersion").is_none());
        assert!(
            annotated["spec"]["template"]["metadata"]["annotations"][LAST_RELOADED_FROM]
                .is_string()
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

    #[test]
    fn recreation_finalizer_bodies_are_uid_guarded() {
        assert_eq!(
            hold_for_recreation("u"),
            json!({"metadata": {"uid": "u", "finalizers": [RECREATE_FINALIZER]}})
        );
        assert_eq!(
            release_from_recreation("u")["metadata"]["$deleteFromPrimitiveList/finalizers"],
            json!([RECREATE_FINALIZER])
        );
    }
}
