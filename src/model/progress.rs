//! How far a workload's rollout has got, read from its status the way `kubectl rollout status`
//! (and the Argo and OpenShift equivalents) read it: the rollout governor counts rollouts in progress (concurrency cap) and waits for
//! canaries with it.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;

use crate::model::governor::Progress;

/// A Deployment: the controller saw the latest spec, every replica is updated and available and
/// no old one is left; failed when its progress deadline was exceeded.
pub fn deployment(object: &Deployment) -> Progress {
    let generation = object.metadata.generation.unwrap_or(0);
    let desired = object.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(status) = &object.status else {
        return Progress::default();
    };
    let failed = status.conditions.iter().flatten().find_map(|c| {
        (c.type_ == "Progressing"
            && c.status == "False"
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
        .then(|| {
            format!(
                "ProgressDeadlineExceeded: {}",
                c.message
                    .as_deref()
                    .unwrap_or("the rollout made no progress")
            )
        })
    });
    let complete = status.observed_generation.unwrap_or(0) >= generation
        && status.updated_replicas.unwrap_or(0) == desired
        && status.replicas.unwrap_or(0) == desired
        && status.available_replicas.unwrap_or(0) == desired;
    Progress { complete, failed }
}

/// A StatefulSet: latest spec seen, every replica updated and ready, one revision left.
pub fn statefulset(object: &StatefulSet) -> Progress {
    let generation = object.metadata.generation.unwrap_or(0);
    let desired = object.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(status) = &object.status else {
        return Progress::default();
    };
    let complete = status.observed_generation.unwrap_or(0) >= generation
        && status.updated_replicas.unwrap_or(0) == desired
        && status.ready_replicas.unwrap_or(0) == desired
        && (status.update_revision.is_none() || status.current_revision == status.update_revision);
    Progress {
        complete,
        failed: None,
    }
}

/// A DaemonSet: latest spec seen, every scheduled pod updated and available.
pub fn daemonset(object: &DaemonSet) -> Progress {
    let generation = object.metadata.generation.unwrap_or(0);
    let Some(status) = &object.status else {
        return Progress::default();
    };
    let desired = status.desired_number_scheduled;
    let complete = status.observed_generation.unwrap_or(0) >= generation
        && status.updated_number_scheduled.unwrap_or(0) == desired
        && status.number_available.unwrap_or(0) == desired;
    Progress {
        complete,
        failed: None,
    }
}

/// A number in a loosely read status, also when written as a string (Argo's
/// `observedGeneration`).
fn number(status: &serde_json::Value, field: &str) -> Option<i64> {
    let value = status.get(field)?;
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

/// The `ProgressDeadlineExceeded` condition of a loosely read status, as a failure.
fn deadline_exceeded(status: &serde_json::Value) -> Option<String> {
    status
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| {
            c["type"] == "Progressing"
                && c["status"] == "False"
                && c["reason"] == "ProgressDeadlineExceeded"
        })
        .map(|c| {
            format!(
                "ProgressDeadlineExceeded: {}",
                c["message"]
                    .as_str()
                    .unwrap_or("the rollout made no progress")
            )
        })
}

/// Whether a loosely read status has seen `generation` and has `desired` replicas updated and
/// available.
fn caught_up(status: &serde_json::Value, generation: Option<i64>, desired: i64) -> bool {
    number(status, "observedGeneration").unwrap_or(0) >= generation.unwrap_or(0)
        && number(status, "updatedReplicas").unwrap_or(0) == desired
        && number(status, "availableReplicas").unwrap_or(0) == desired
}

/// An Argo Rollout: latest spec seen, every replica updated and available, phase Healthy;
/// failed when Degraded or past its progress deadline.
pub fn rollout(
    generation: Option<i64>,
    replicas: Option<i32>,
    status: Option<&serde_json::Value>,
) -> Progress {
    let Some(status) = status else {
        return Progress::default();
    };
    let desired = i64::from(replicas.unwrap_or(1));
    let phase = status.get("phase").and_then(|p| p.as_str());
    let failed = deadline_exceeded(status).or_else(|| {
        (phase == Some("Degraded")).then(|| {
            format!(
                "Degraded: {}",
                status["message"]
                    .as_str()
                    .unwrap_or("the Rollout is degraded")
            )
        })
    });
    let complete = caught_up(status, generation, desired) && phase.is_none_or(|p| p == "Healthy");
    Progress { complete, failed }
}

/// An OpenShift DeploymentConfig: latest spec seen, every replica updated and available;
/// failed past its progress deadline.
pub fn deployment_config(
    generation: Option<i64>,
    replicas: Option<i32>,
    status: Option<&serde_json::Value>,
) -> Progress {
    let Some(status) = status else {
        return Progress::default();
    };
    let desired = i64::from(replicas.unwrap_or(1));
    let complete = caught_up(status, generation, desired)
        && number(status, "replicas").unwrap_or(0) == desired;
    Progress {
        complete,
        failed: deadline_exceeded(status),
    }
}

/// A Job: complete or failed by its conditions.
pub fn job(object: &Job) -> Progress {
    let condition = |kind: &str| {
        object
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|conditions| {
                conditions
                    .iter()
                    .find(|c| c.type_ == kind && c.status == "True")
            })
            .cloned()
    };
    Progress {
        complete: condition("Complete").is_some(),
        failed: condition("Failed").map(|c| {
            format!(
                "Failed: {}",
                c.reason.as_deref().unwrap_or("the Job failed")
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy(status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "d", "generation": 3},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": status
        }))
        .unwrap()
    }

    #[test]
    fn a_deployment_is_complete_when_every_replica_is_new_and_available() {
        let table = [
            (
                json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
                true,
            ),
            (
                json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
                false,
            ),
            (
                json!({"observedGeneration": 3, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 2}),
                false,
            ),
            (
                json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 1, "availableReplicas": 2}),
                false,
            ),
            (
                json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1}),
                false,
            ),
        ];
        for (status, complete) in table {
            assert_eq!(
                deployment(&deploy(status.clone())).complete,
                complete,
                "{status}"
            );
        }
        let stuck = deploy(json!({"observedGeneration": 3, "conditions": [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
             "message": "ReplicaSet \"d-1\" has timed out progressing."}]}));
        assert!(
            deployment(&stuck)
                .failed
                .unwrap()
                .starts_with("ProgressDeadlineExceeded")
        );
        let no_status = Deployment::default();
        assert!(!deployment(&no_status).complete);
    }

    #[test]
    fn rollouts_and_deployment_configs_read_loosely() {
        let healthy = json!({"observedGeneration": "4", "replicas": 2, "updatedReplicas": 2,
                             "availableReplicas": 2, "phase": "Healthy"});
        assert!(rollout(Some(4), Some(2), Some(&healthy)).complete);
        assert!(
            !rollout(Some(5), Some(2), Some(&healthy)).complete,
            "generation not seen"
        );
        let progressing = json!({"observedGeneration": 4, "updatedReplicas": 1, "availableReplicas": 2, "phase": "Progressing"});
        assert!(!rollout(Some(4), Some(2), Some(&progressing)).complete);
        let degraded = json!({"phase": "Degraded", "message": "ProgressDeadlineExceeded"});
        assert!(
            rollout(Some(4), None, Some(&degraded))
                .failed
                .unwrap()
                .starts_with("Degraded")
        );
        assert!(!rollout(Some(1), None, None).complete);
        let dc = json!({"observedGeneration": 3, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1});
        assert!(deployment_config(Some(3), None, Some(&dc)).complete);
        let stuck = json!({"observedGeneration": 3, "conditions": [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]});
        assert!(
            deployment_config(Some(3), None, Some(&stuck))
                .failed
                .is_some()
        );
    }

    #[test]
    fn statefulsets_daemonsets_and_jobs() {
        let sts: StatefulSet = serde_json::from_value(json!({
            "metadata": {"generation": 1}, "spec": {"replicas": 1, "selector": {}, "serviceName": "", "template": {}},
            "status": {"replicas": 1, "observedGeneration": 1, "updatedReplicas": 1, "readyReplicas": 1,
                       "currentRevision": "a", "updateRevision": "b"}
        }))
        .unwrap();
        assert!(!statefulset(&sts).complete, "two revisions left");
        let ds: DaemonSet = serde_json::from_value(json!({
            "metadata": {"generation": 2}, "spec": {"selector": {}, "template": {}},
            "status": {"observedGeneration": 2, "desiredNumberScheduled": 1, "currentNumberScheduled": 1,
                       "numberMisscheduled": 0, "numberReady": 1, "updatedNumberScheduled": 1, "numberAvailable": 1}
        }))
        .unwrap();
        assert!(daemonset(&ds).complete);
        let failed: Job = serde_json::from_value(json!({
            "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}
        }))
        .unwrap();
        assert_eq!(
            job(&failed).failed.as_deref(),
            Some("Failed: BackoffLimitExceeded")
        );
        assert!(!job(&Job::default()).complete);
    }
}
