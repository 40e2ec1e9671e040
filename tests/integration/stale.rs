//! Stale-marker cleanup (issue 15, item 2): a marker of a source the workload no longer tracks
//! is removed in the same write as its next real reload, never alone.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::controller::{Controller, controller_rules, identity_with_rules};
use crate::fixtures::*;

fn generation(d: &Deployment) -> i64 {
    d.metadata.generation.unwrap_or(0)
}

fn has(d: &Deployment, var: &str) -> bool {
    env_of(d, "app").iter().any(|(n, _)| n == var)
}

#[tokio::test]
async fn a_stale_marker_leaves_with_the_next_reload_and_never_alone() {
    let (cluster, ns, client) = setup("stale").await;
    create::<ConfigMap>(&client, &ns, configmap("a", json!({"v": "1"}))).await;
    create::<ConfigMap>(&client, &ns, configmap("b", json!({"v": "1"}))).await;
    create::<Deployment>(
        &client,
        &ns,
        deployment(
            "web",
            json!({"reloader.stakater.com/auto": "true"}),
            json!({"containers": [{"name": "app", "image": "registry.invalid/app",
                "envFrom": [{"configMapRef": {"name": "a"}}, {"configMapRef": {"name": "b"}}]}]}),
        ),
    )
    .await;
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let controller = Controller::start(&cluster, &identity, &ns, &["--namespaces", &ns]).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    wait_deployment(&deployments, "web", "the ledger", |d| {
        ledger_of(d).is_some()
    })
    .await;
    set_configmap(&client, &ns, "b", json!({"v": "2"})).await;
    wait_deployment(&deployments, "web", "the b marker", |d| {
        has(d, "STAKATER_B_CONFIGMAP")
    })
    .await;

    // The user stops reading b: the controller records that without touching the template.
    // The controller may still be writing its ledger after the reload (or the
    // controller-manager the status): retry the read-modify-replace on a conflict.
    let edited = loop {
        let mut current = deployments.get("web").await.unwrap();
        let spec = current.spec.as_mut().unwrap();
        let container = &mut spec.template.spec.as_mut().unwrap().containers[0];
        container
            .env_from
            .as_mut()
            .unwrap()
            .retain(|e| e.config_map_ref.as_ref().is_some_and(|r| r.name == "a"));
        match deployments
            .replace("web", &PostParams::default(), &current)
            .await
        {
            Ok(edited) => break edited,
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(e) => panic!("replacing the Deployment: {e}"),
        }
    };
    // A Deployment's generation also moves with its annotations (the ledger): the pod
    // template is what rolls pods.
    let template = |d: &Deployment| d.spec.as_ref().map(|s| s.template.clone());
    let recorded = wait_deployment(&deployments, "web", "b leaves the ledger", |d| {
        ledger_of(d).is_some_and(|l| l.get("configmap/b").is_none())
    })
    .await;
    assert_eq!(
        template(&recorded),
        template(&edited),
        "nothing written to the pod template for the stale marker"
    );
    assert!(
        has(&recorded, "STAKATER_B_CONFIGMAP"),
        "left alone until a real reload"
    );
    let explained = std::process::Command::new(crate::controller::BINARY)
        .args(["explain", "deploy/web", "-n", &ns])
        .env("KUBECONFIG", &cluster.kubeconfig)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&explained.stdout);
    assert!(
        text.contains("problem: stale marker STAKATER_B_CONFIGMAP on container app"),
        "explain lists it: {text}"
    );

    // a's next change: one write of the template, which also drops the b marker.
    set_configmap(&client, &ns, "a", json!({"v": "2"})).await;
    let rolled = wait_deployment(&deployments, "web", "the a marker", |d| {
        has(d, "STAKATER_A_CONFIGMAP")
    })
    .await;
    assert!(
        !has(&rolled, "STAKATER_B_CONFIGMAP"),
        "the stale marker went with it"
    );
    assert_eq!(
        generation(&rolled),
        generation(&recorded) + 1,
        "one write for the reload and the cleanup together"
    );
    controller.stop();
}

#[tokio::test]
async fn prune_stale_markers_false_keeps_them() {
    let (cluster, ns, client) = setup("stale-off").await;
    create::<ConfigMap>(&client, &ns, configmap("a", json!({"v": "1"}))).await;
    create::<Deployment>(
        &client,
        &ns,
        deployment(
            "web",
            json!({"configmap.reloader.stakater.com/reload": "a"}),
            json!({"containers": [{"name": "app", "image": "registry.invalid/app",
                "env": [{"name": "STAKATER_GONE_CONFIGMAP", "value": "x"}]}]}),
        ),
    )
    .await;
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let controller = Controller::start(
        &cluster,
        &identity,
        &ns,
        &["--namespaces", &ns, "--prune-stale-markers=false"],
    )
    .await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    wait_deployment(&deployments, "web", "the ledger", |d| {
        ledger_of(d).is_some()
    })
    .await;
    set_configmap(&client, &ns, "a", json!({"v": "2"})).await;
    let rolled = wait_deployment(&deployments, "web", "the a marker", |d| {
        has(d, "STAKATER_A_CONFIGMAP")
    })
    .await;
    assert!(
        has(&rolled, "STAKATER_GONE_CONFIGMAP"),
        "kept when pruning is off"
    );
    controller.stop();
}
