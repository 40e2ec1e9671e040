//! The edit a reload makes to a pod template, computed once and rendered three ways: a
//! strategic-merge patch (built-in kinds), a JSON merge patch (custom resources, which take no
//! strategic merge) and an in-memory edit (the Job a CronJob reload creates, a re-created Job).

use k8s_openapi::api::core::v1::{EnvVar, PodTemplateSpec};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::model::digest::env_var_name;
use crate::model::plan::{Cause, Change};
use crate::model::policy::LAST_RELOADED_FROM;
use crate::model::stale::StaleMarkers;

/// How a reload is written into the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// `STAKATER_<NAME>_<TYPE>=<digest>` on one container (upstream default).
    EnvVars,
    /// `reloader.stakater.com/last-reloaded-from` JSON on the pod template.
    Annotations,
}

/// Where the pod template lives in a workload, e.g. `["spec", "template"]`.
pub type TemplatePath = &'static [&'static str];

/// Pod template path of Deployments, StatefulSets, DaemonSets, Jobs, Rollouts and
/// DeploymentConfigs.
pub const POD_TEMPLATE: TemplatePath = &["spec", "template"];

/// One env-var change on one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvEdit {
    /// Set `name` to `value` (upstream's marker).
    Set {
        /// `STAKATER_<NAME>_<TYPE>`.
        name: String,
        /// The digest.
        value: String,
    },
    /// Remove `name` (a deleted source under `--reload-on-delete`).
    Remove {
        /// `STAKATER_<NAME>_<TYPE>`.
        name: String,
    },
}

/// The env-var edits of one container, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEdit {
    /// Container name.
    pub container: String,
    /// Its edits, in change order.
    pub env: Vec<EnvEdit>,
}

/// A reload's edit of a pod template.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TemplateEdit {
    /// Env-var edits per container (env-vars strategy).
    pub containers: Vec<ContainerEdit>,
    /// The new `last-reloaded-from` value (annotations strategy).
    pub last_reloaded_from: Option<String>,
    /// Remove a stale `last-reloaded-from` (env-vars strategy).
    pub remove_last_reloaded_from: bool,
}

#[derive(Serialize)]
struct LastReloadedFrom<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'a str,
    namespace: &'a str,
    hash: &'a str,
    #[serde(rename = "containerRefs")]
    container_refs: [&'a str; 1],
    #[serde(rename = "observedAt")]
    observed_at: i64,
}

impl TemplateEdit {
    /// The edit of `changes` under `strategy`. `containers` are the pod template's container
    /// names (what `Change::container` indexes); `now_unix` is upstream's `observedAt`.
    pub fn new(
        strategy: Strategy,
        namespace: &str,
        containers: &[&str],
        changes: &[Change],
        now_unix: i64,
    ) -> Self {
        match strategy {
            Strategy::EnvVars => {
                let mut edit = Self::default();
                for change in changes {
                    let Some(container) = containers.get(change.container) else {
                        continue;
                    };
                    let name = env_var_name(&change.name, change.kind);
                    let env = if change.cause == Cause::Deleted {
                        EnvEdit::Remove { name }
                    } else {
                        EnvEdit::Set {
                            name,
                            value: change.digest.to_string(),
                        }
                    };
                    match edit
                        .containers
                        .iter_mut()
                        .find(|c| c.container == *container)
                    {
                        Some(existing) => existing.env.push(env),
                        None => edit.containers.push(ContainerEdit {
                            container: (*container).to_owned(),
                            env: vec![env],
                        }),
                    }
                }
                edit
            }
            // Upstream writes one source per event; with several at once, the last (in kind,
            // name order) is the one that stays, as it would after sequential upstream writes.
            Strategy::Annotations => Self {
                containers: Vec::new(),
                remove_last_reloaded_from: false,
                last_reloaded_from: changes.last().map(|change| {
                    let container = containers
                        .get(change.container)
                        .copied()
                        .unwrap_or_default();
                    let payload = LastReloadedFrom {
                        kind: change.kind.upstream_type(),
                        name: &change.name,
                        namespace,
                        hash: change.digest.as_str(),
                        container_refs: [container],
                        observed_at: now_unix,
                    };
                    serde_json::to_string(&payload).unwrap_or_default()
                }),
            },
        }
    }

    /// Also removes `stale` markers (only in a write that reloads anyway).
    pub fn prune(&mut self, stale: &StaleMarkers) {
        for (container, name) in &stale.env {
            let remove = EnvEdit::Remove { name: name.clone() };
            match self
                .containers
                .iter_mut()
                .find(|c| c.container == *container)
            {
                Some(edit) => {
                    let set = edit
                        .env
                        .iter()
                        .any(|e| matches!(e, EnvEdit::Set { name: n, .. } if n == name));
                    if !set {
                        edit.env.push(remove);
                    }
                }
                None => self.containers.push(ContainerEdit {
                    container: container.clone(),
                    env: vec![remove],
                }),
            }
        }
        self.remove_last_reloaded_from =
            stale.last_reloaded_from && self.last_reloaded_from.is_none();
    }

    /// The pod template's annotations part of the edit, if any.
    fn annotations(&self) -> Option<Value> {
        match &self.last_reloaded_from {
            Some(value) => Some(json!({"annotations": {LAST_RELOADED_FROM: value}})),
            None if self.remove_last_reloaded_from => {
                Some(json!({"annotations": {LAST_RELOADED_FROM: null}}))
            }
            None => None,
        }
    }

    /// The strategic-merge patch of the edit, nested at `path` (env vars merge by container
    /// and variable name, so no other writer's change can be lost).
    pub fn strategic(&self, path: TemplatePath) -> Value {
        let mut template = Map::new();
        if let Some(annotations) = self.annotations() {
            template.insert("metadata".to_owned(), annotations);
        }
        let template = if self.containers.is_empty() {
            Value::Object(template)
        } else {
            {
                let list: Vec<Value> = self
                    .containers
                    .iter()
                    .map(|c| {
                        let env: Vec<Value> = c
                            .env
                            .iter()
                            .map(|e| match e {
                                EnvEdit::Set { name, value } => {
                                    json!({"name": name, "value": value})
                                }
                                EnvEdit::Remove { name } => {
                                    json!({"name": name, "$patch": "delete"})
                                }
                            })
                            .collect();
                        json!({"name": c.container, "env": env})
                    })
                    .collect();
                template.insert("spec".to_owned(), json!({"containers": list}));
                Value::Object(template)
            }
        };
        nest(path, template)
    }

    /// The JSON merge patch of the edit at `path`. A merge patch replaces lists whole, so under
    /// env-vars it carries the full container list of `template` with the edit applied; the
    /// caller guards it with the resourceVersion `template` was read at.
    pub fn merge(&self, path: TemplatePath, template: &PodTemplateSpec) -> Value {
        let mut patch = Map::new();
        if let Some(annotations) = self.annotations() {
            patch.insert("metadata".to_owned(), annotations);
        }
        if !self.containers.is_empty() {
            let mut updated = template.clone();
            self.apply(&mut updated);
            let containers = updated
                .spec
                .map(|s| serde_json::to_value(s.containers).unwrap_or(Value::Null))
                .unwrap_or(Value::Null);
            patch.insert("spec".to_owned(), json!({"containers": containers}));
        }
        nest(path, Value::Object(patch))
    }

    /// Applies the edit to a pod template in memory.
    pub fn apply(&self, template: &mut PodTemplateSpec) {
        if let Some(value) = &self.last_reloaded_from {
            template
                .metadata
                .get_or_insert_with(Default::default)
                .annotations
                .get_or_insert_with(Default::default)
                .insert(LAST_RELOADED_FROM.to_owned(), value.clone());
        } else if self.remove_last_reloaded_from
            && let Some(annotations) = template
                .metadata
                .as_mut()
                .and_then(|m| m.annotations.as_mut())
        {
            annotations.remove(LAST_RELOADED_FROM);
        }
        let Some(spec) = template.spec.as_mut() else {
            return;
        };
        for edit in &self.containers {
            let Some(container) = spec
                .containers
                .iter_mut()
                .find(|c| c.name == edit.container)
            else {
                continue;
            };
            let env = container.env.get_or_insert_with(Vec::new);
            for change in &edit.env {
                match change {
                    EnvEdit::Set { name, value } => {
                        env.retain(|e| e.name != *name);
                        env.push(EnvVar {
                            name: name.clone(),
                            value: Some(value.clone()),
                            ..EnvVar::default()
                        });
                    }
                    EnvEdit::Remove { name } => env.retain(|e| e.name != *name),
                }
            }
        }
    }
}

/// `value` nested under the keys of `path`.
fn nest(path: &[&str], value: Value) -> Value {
    path.iter().rev().fold(value, |inner, key| {
        let mut map = Map::new();
        map.insert((*key).to_owned(), inner);
        Value::Object(map)
    })
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

    fn template(value: Value) -> PodTemplateSpec {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn strategic_groups_env_vars_by_container_and_deletes_by_name() {
        let edit = TemplateEdit::new(
            Strategy::EnvVars,
            "ns",
            &["app", "side"],
            &[
                change(SourceKind::ConfigMap, "a", 1, Cause::Changed),
                change(SourceKind::Secret, "b", 1, Cause::Changed),
                change(SourceKind::Secret, "gone", 0, Cause::Deleted),
            ],
            0,
        );
        let body = edit.strategic(POD_TEMPLATE);
        let containers = &body["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["name"], "side");
        assert_eq!(containers[0]["env"].as_array().unwrap().len(), 2);
        assert_eq!(
            containers[1],
            json!({"name": "app", "env": [{"name": "STAKATER_GONE_SECRET", "$patch": "delete"}]})
        );
    }

    #[test]
    fn annotations_value_has_upstream_field_order() {
        let edit = TemplateEdit::new(
            Strategy::Annotations,
            "default",
            &["app"],
            &[change(
                SourceKind::ConfigMap,
                "foo-config",
                0,
                Cause::Changed,
            )],
            1754800000,
        );
        assert_eq!(
            edit.last_reloaded_from.as_deref().unwrap(),
            format!(
                "{{\"type\":\"CONFIGMAP\",\"name\":\"foo-config\",\"namespace\":\"default\",\"hash\":\"{A}\",\"containerRefs\":[\"app\"],\"observedAt\":1754800000}}"
            )
        );
        let body = edit.strategic(&["spec", "jobTemplate", "spec", "template"]);
        assert!(
            body["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["annotations"]
                [LAST_RELOADED_FROM]
                .is_string()
        );
    }

    /// The three renderings say the same thing: applying the edit in memory gives the same
    /// containers as the merge patch carries, and the strategic patch names the same vars.
    #[test]
    fn three_renderings_agree() {
        let original = template(json!({
            "spec": {"containers": [
                {"name": "app", "image": "x", "env": [{"name": "STAKATER_A_CONFIGMAP", "value": "old"}, {"name": "X", "value": "1"}]},
                {"name": "side", "image": "y"}
            ]}
        }));
        let edit = TemplateEdit::new(
            Strategy::EnvVars,
            "ns",
            &["app", "side"],
            &[
                change(SourceKind::ConfigMap, "a", 0, Cause::Changed),
                change(SourceKind::Secret, "b", 1, Cause::Changed),
            ],
            0,
        );
        let mut applied = original.clone();
        edit.apply(&mut applied);
        let applied = serde_json::to_value(&applied).unwrap();
        assert_eq!(
            applied["spec"]["containers"][0]["env"],
            json!([{"name": "X", "value": "1"}, {"name": "STAKATER_A_CONFIGMAP", "value": A}])
        );
        assert_eq!(
            applied["spec"]["containers"][1]["env"],
            json!([{"name": "STAKATER_B_SECRET", "value": A}])
        );
        let merged = edit.merge(POD_TEMPLATE, &original);
        assert_eq!(
            merged["spec"]["template"]["spec"]["containers"],
            applied["spec"]["containers"]
        );
        let strategic = edit.strategic(POD_TEMPLATE);
        for (i, name) in ["STAKATER_A_CONFIGMAP", "STAKATER_B_SECRET"]
            .iter()
            .enumerate()
        {
            assert_eq!(
                strategic["spec"]["template"]["spec"]["containers"][i]["env"][0],
                json!({"name": name, "value": A})
            );
        }
    }

    #[test]
    fn removal_in_memory_and_in_the_merge_patch() {
        let original = template(json!({
            "spec": {"containers": [{"name": "app", "env": [{"name": "STAKATER_GONE_SECRET", "value": "x"}]}]}
        }));
        let edit = TemplateEdit::new(
            Strategy::EnvVars,
            "ns",
            &["app"],
            &[change(SourceKind::Secret, "gone", 0, Cause::Deleted)],
            0,
        );
        let merged = edit.merge(POD_TEMPLATE, &original);
        assert_eq!(
            merged["spec"]["template"]["spec"]["containers"][0]["env"],
            json!([])
        );
    }

    #[test]
    fn annotations_in_memory_name_the_container() {
        let mut t = template(json!({"spec": {"containers": [{"name": "app"}, {"name": "side"}]}}));
        TemplateEdit::new(
            Strategy::Annotations,
            "ns",
            &["app", "side"],
            &[change(SourceKind::Secret, "b", 1, Cause::Changed)],
            7,
        )
        .apply(&mut t);
        let value = serde_json::to_value(&t).unwrap();
        assert!(
            value["metadata"]["annotations"][LAST_RELOADED_FROM]
                .as_str()
                .unwrap()
                .contains("\"containerRefs\":[\"side\"],\"observedAt\":7")
        );
    }
}
