//! Each tier of the test control plane does what later tests rely on.

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube_reloader_testenv::{NODE_NAME, Tier};
use serde_json::json;

use crate::support::{cluster, eventually};

/// Tier A: a ConfigMap can be created, read back, updated, and both changes arrive on a watch.
#[tokio::test]
async fn tier_a_configmap_create_read_and_watch() {
    let cluster = cluster(Tier::A).await;
    let ns = cluster.create_namespace("smoke-a").await.unwrap();
    let client = cluster.client().await.unwrap();
    let configmaps: Api<ConfigMap> = Api::namespaced(client, &ns);

    let list = configmaps.list(&ListParams::default()).await.unwrap();
    let version = list.metadata.resource_version.unwrap();
    let mut events = configmaps
        .watch(&WatchParams::default().timeout(60), &version)
        .await
        .unwrap()
        .boxed();

    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings"},
        "data": {"level": "debug"}
    }))
    .unwrap();
    configmaps
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let read = configmaps.get("settings").await.unwrap();
    assert_eq!(read.data.unwrap()["level"], "debug");

    configmaps
        .patch(
            "settings",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"level": "info"}})),
        )
        .await
        .unwrap();

    // Only our object: with a controller manager running (tier B, other tests), the
    // root-CA publisher adds kube-root-ca.crt to every new namespace at any moment.
    let ours = |cm: &ConfigMap| cm.metadata.name.as_deref() == Some("settings");
    let level = |cm: ConfigMap| {
        cm.data
            .unwrap_or_default()
            .get("level")
            .cloned()
            .unwrap_or_default()
    };
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match events.try_next().await.unwrap() {
            Some(WatchEvent::Added(cm)) if ours(&cm) => seen.push(("added", level(cm))),
            Some(WatchEvent::Modified(cm)) if ours(&cm) => seen.push(("modified", level(cm))),
            Some(WatchEvent::Added(_) | WatchEvent::Modified(_) | WatchEvent::Bookmark(_)) => {}
            other => panic!("unexpected watch event {other:?}"),
        }
    }
    assert_eq!(
        seen,
        vec![
            ("added", "debug".to_owned()),
            ("modified", "info".to_owned())
        ]
    );
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}
            }
        }
    }))
    .unwrap()
}

fn owned_by(
    uid: &str,
    owners: Option<&Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>>,
) -> bool {
    owners.is_some_and(|o| o.iter().any(|o| o.uid == uid))
}

/// Tier B: the controller manager turns a Deployment into a ReplicaSet and a Pod.
#[tokio::test]
async fn tier_b_deployment_gets_a_replicaset_and_pod() {
    let cluster = cluster(Tier::B).await;
    let ns = cluster.create_namespace("smoke-b").await.unwrap();
    let client = cluster.client().await.unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let created = deployments
        .create(&PostParams::default(), &deployment("web", 1))
        .await
        .unwrap();
    let uid = created.metadata.uid.unwrap();

    let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    let rs = eventually("a ReplicaSet owned by the Deployment", || async {
        let list = replicasets
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        list.items
            .into_iter()
            .find(|rs| owned_by(&uid, rs.metadata.owner_references.as_ref()))
            .ok_or_else(|| "no ReplicaSet yet".to_owned())
    })
    .await;
    let rs_uid = rs.metadata.uid.unwrap();

    let pods: Api<Pod> = Api::namespaced(client, &ns);
    eventually("a Pod owned by the ReplicaSet", || async {
        let list = pods
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        list.items
            .into_iter()
            .find(|p| owned_by(&rs_uid, p.metadata.owner_references.as_ref()))
            .ok_or_else(|| "no Pod yet".to_owned())
    })
    .await;
}

/// What a rollout test needs to know about one ReplicaSet.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SetState {
    desired: i32,
    current: i32,
    ready: i32,
    revision: String,
}

/// The ReplicaSets a Deployment owns, by name.
async fn replica_sets(
    api: &Api<ReplicaSet>,
    deployment_uid: &str,
) -> Result<BTreeMap<String, SetState>, String> {
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?;
    Ok(list
        .items
        .into_iter()
        .filter(|rs| owned_by(deployment_uid, rs.metadata.owner_references.as_ref()))
        .map(|rs| {
            let status = rs.status.unwrap_or_default();
            let state = SetState {
                desired: rs.spec.and_then(|s| s.replicas).unwrap_or(0),
                current: status.replicas,
                ready: status.ready_replicas.unwrap_or(0),
                revision: rs
                    .metadata
                    .annotations
                    .and_then(|a| a.get("deployment.kubernetes.io/revision").cloned())
                    .unwrap_or_default(),
            };
            (rs.metadata.name.unwrap_or_default(), state)
        })
        .collect())
}

async fn wait_rollout_complete(api: &Api<Deployment>, name: &str, replicas: i32) {
    eventually(
        &format!("Deployment {name} to finish its rollout"),
        || async {
            let d = api.get(name).await.map_err(|e| e.to_string())?;
            let generation = d.metadata.generation.unwrap_or(0);
            let status = d.status.unwrap_or_default();
            let done = status.observed_generation == Some(generation)
                && status.updated_replicas == Some(replicas)
                && status.ready_replicas == Some(replicas)
                && status.available_replicas == Some(replicas)
                && status.replicas == Some(replicas);
            if done {
                Ok(())
            } else {
                Err(format!("{status:?}"))
            }
        },
    )
    .await
}

/// Tier C: pods become Ready on the fake node, and a pod-template change completes a rollout
/// with the old ReplicaSet scaled to zero.
#[tokio::test]
async fn tier_c_pods_turn_ready_and_rollout_completes() {
    let cluster = cluster(Tier::C).await;
    let ns = cluster.create_namespace("smoke-c").await.unwrap();
    let client = cluster.client().await.unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client, &ns);

    let uid = deployments
        .create(&PostParams::default(), &deployment("api", 2))
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    wait_rollout_complete(&deployments, "api", 2).await;
    let first = replica_sets(&replicasets, &uid).await.unwrap();
    assert_eq!(first.len(), 1, "{first:?}");
    let (old_name, _) = first.iter().next().unwrap();
    let old_name = old_name.clone();

    let ready_pods = pods.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(ready_pods.len(), 2);
    for pod in &ready_pods {
        assert_eq!(
            pod.spec.as_ref().unwrap().node_name.as_deref(),
            Some(NODE_NAME)
        );
        let status = pod.status.as_ref().unwrap();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert!(
            status
                .conditions
                .as_ref()
                .unwrap()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        );
    }

    deployments
        .patch(
            "api",
            &PatchParams::default(),
            &Patch::Strategic(
                json!({"spec": {"template": {"metadata": {"annotations": {"smoke/rev": "2"}}}}}),
            ),
        )
        .await
        .unwrap();
    wait_rollout_complete(&deployments, "api", 2).await;
    let after = eventually("the old ReplicaSet to reach 0 replicas", || async {
        let sets = replica_sets(&replicasets, &uid).await?;
        let old = sets
            .get(&old_name)
            .cloned()
            .ok_or("old ReplicaSet vanished")?;
        if sets.len() == 2 && old.desired == 0 && old.current == 0 {
            Ok(sets)
        } else {
            Err(format!("{sets:?}"))
        }
    })
    .await;
    let (new_name, new) = after.iter().find(|(n, _)| **n != old_name).unwrap();
    assert_eq!(
        (new.desired, new.ready),
        (2, 2),
        "new ReplicaSet {new_name} should run both pods"
    );
    assert_eq!(new.revision, "2", "new ReplicaSet should be revision 2");
}
