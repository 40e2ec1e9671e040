//! Stale reload markers: `STAKATER_<NAME>_<TYPE>` env vars and `last-reloaded-from` left on a
//! pod template for a source the workload no longer tracks (its reference is gone, its
//! annotation changed, or the strategy changed). They are removed in the same write as the
//! workload's next real reload, never alone: a write of the pod template rolls the pods.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::PodSpec;

use crate::model::edit::Strategy;
use crate::model::interest::SOURCE_KINDS;

/// The markers to remove with the next reload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaleMarkers {
    /// (container, env var) pairs.
    pub env: Vec<(String, String)>,
    /// `last-reloaded-from` is on the template under the env-vars strategy.
    pub last_reloaded_from: bool,
}

impl StaleMarkers {
    /// Whether there is nothing to remove.
    pub fn is_empty(&self) -> bool {
        self.env.is_empty() && !self.last_reloaded_from
    }
}

/// Whether `name` has the shape of a marker env var (`STAKATER_<NAME>_<TYPE>`).
fn is_marker(name: &str) -> bool {
    name.strip_prefix("STAKATER_").is_some_and(|rest| {
        SOURCE_KINDS.iter().any(|kind| {
            rest.strip_suffix(kind.upstream_type())
                .and_then(|r| r.strip_suffix('_'))
                .is_some_and(|n| !n.is_empty())
        })
    })
}

/// The stale markers of a pod template. `keep` holds the env-var names of the sources the
/// workload still tracks (and of referenced sources that are missing right now: their markers
/// stay for when they come back); under the annotations strategy every marker env var is stale.
pub fn stale_markers(
    spec: &PodSpec,
    has_last_reloaded_from: bool,
    keep: &BTreeSet<String>,
    strategy: Strategy,
) -> StaleMarkers {
    let mut stale = StaleMarkers::default();
    for container in &spec.containers {
        for env in container.env.iter().flatten() {
            // A marker carries a plain value; anything read from elsewhere is the user's.
            let plain = env.value.is_some() && env.value_from.is_none();
            let kept = strategy == Strategy::EnvVars && keep.contains(&env.name);
            if plain && is_marker(&env.name) && !kept {
                stale.env.push((container.name.clone(), env.name.clone()));
            }
        }
    }
    stale.last_reloaded_from = has_last_reloaded_from && strategy == Strategy::EnvVars;
    stale
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(env: serde_json::Value) -> PodSpec {
        serde_json::from_value(
            json!({"containers": [{"name": "app", "env": env}, {"name": "side"}]}),
        )
        .unwrap()
    }

    #[test]
    fn markers_of_untracked_sources_are_stale_and_nothing_else() {
        let spec = spec(json!([
            {"name": "STAKATER_A_CONFIGMAP", "value": "1"},
            {"name": "STAKATER_B_CONFIGMAP", "value": "2"},
            {"name": "STAKATER_DB_SECRET", "value": "3"},
            {"name": "STAKATER_FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "x", "key": "y"}}},
            {"name": "STAKATER_NOT_A_MARKER", "value": "4"},
            {"name": "STAKATER__CONFIGMAP", "value": "5"},
            {"name": "PLAIN", "value": "6"}
        ]));
        let keep: BTreeSet<String> = ["STAKATER_A_CONFIGMAP".to_owned()].into();
        let stale = stale_markers(&spec, false, &keep, Strategy::EnvVars);
        assert_eq!(
            stale.env,
            [
                ("app".to_owned(), "STAKATER_B_CONFIGMAP".to_owned()),
                ("app".to_owned(), "STAKATER_DB_SECRET".to_owned())
            ]
        );
        assert!(!stale.last_reloaded_from);
        let switched = stale_markers(&spec, true, &keep, Strategy::Annotations);
        assert_eq!(
            switched.env.len(),
            3,
            "a strategy switch leaves every env marker stale"
        );
        assert!(
            !switched.last_reloaded_from,
            "rewritten by the reload itself"
        );
        let back = stale_markers(&spec, true, &keep, Strategy::EnvVars);
        assert!(back.last_reloaded_from);
        assert!(stale_markers(&PodSpec::default(), false, &keep, Strategy::EnvVars).is_empty());
    }
}
