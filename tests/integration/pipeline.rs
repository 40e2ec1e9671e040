//! The engine's pipeline under faults, on the real API server: a concurrent edit between plan
//! and write, a workload deleted there, SIGTERM there, a Job re-creation killed halfway, an
//! object that does not decode, and a watch whose API disappears.
//!
//! `--test-write-delay` (a hidden flag) widens the window between a plan and its write, so a
//! test can act inside it.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube_reloader::model::ledger::{LEDGER_ANNOTATION, RECREATE_FINALIZER};
use kube_reloader_testenv::{ControlPlane, Tier};
use serde_json::{Value, json};

use crate::controller::{Controller, controller_rules, identity_with_rules, requests_by};
use crate::crds::{self, ROLLOUT};
use crate::fixtures::*;
use crate::support::eventually;

fn rollout_env(rollout: &Value, container: &str) -> Vec<(String, String)> {
    rollout["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["name"] == container)
        .flat_map(|c| c["env"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default().to_owned(),
                e["value"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Point 9 and the conflict class: a user edits a Rollout's container list after kube-reloader
/// planned a reload and before it writes. The merge patch carries the resourceVersion the plan
/// was made from, so the API server answers 409; the reload is planned again on the edited
/// object and lands on top of the edit. No ReloadFail, no failed reload counted.
#[tokio::test]
async fn a_concurrent_edit_between_plan_and_write_survives() {
    let plane = ControlPlane::start(Tier::A).await.unwrap();
    let cluster = plane.info().clone();
    let client = cluster.client().await.unwrap();
    crds::install(&client, &ROLLOUT).await;
    let ns = cluster.create_namespace("conflict").await.unwrap();
    create::<ConfigMap>(&client, &ns, configmap("cfg", json!({"v": "1"}))).await;
    crds::create(
        &client,
        &ns,
        &ROLLOUT,
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
               "metadata": {"name": "web", "annotations": {"configmap.reloader.stakater.com/reload": "cfg"}},
               "spec": {"replicas": 1, "template": {"spec": {"containers": [
                   {"name": "app", "image": "registry.invalid/web:1"}]}}}}),
    )
    .await;
    let rollouts = ROLLOUT.api(&client, &ns);
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let controller = Controller::start(
        &cluster,
        &identity,
        &ns,
        &[
            "--namespaces",
            &ns,
            "--is-Argo-Rollouts=true",
            "--test-write-delay=4s",
        ],
    )
    .await;
    eventually("the Rollout's baseline", || async {
        let r =
            serde_json::to_value(rollouts.get("web").await.map_err(|e| e.to_string())?).unwrap();
        if r["metadata"]["annotations"][LEDGER_ANNOTATION].is_string() {
            Ok(())
        } else {
            Err(r.to_string())
        }
    })
    .await;

    set_configmap(&client, &ns, "cfg", json!({"v": "2"})).await;
    // The plan is made at once; the write waits 4 s. Edit the container list meanwhile.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    rollouts
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "app", "image": "registry.invalid/web:2", "env": [{"name": "USER_EDIT", "value": "kept"}]}]}}}})),
        )
        .await
        .unwrap();
    let digest = sha1("v=2");
    let reloaded = eventually("the reload on top of the edit", || async {
        let r =
            serde_json::to_value(rollouts.get("web").await.map_err(|e| e.to_string())?).unwrap();
        if rollout_env(&r, "app").contains(&("STAKATER_CFG_CONFIGMAP".to_owned(), digest.clone())) {
            Ok(r)
        } else {
            Err(r["spec"].to_string())
        }
    })
    .await;
    assert_eq!(
        reloaded["spec"]["template"]["spec"]["containers"][0]["image"], "registry.invalid/web:2",
        "the concurrent edit survives: {reloaded}"
    );
    assert!(
        rollout_env(&reloaded, "app").contains(&("USER_EDIT".to_owned(), "kept".to_owned())),
        "{reloaded}"
    );
    let conflicts = requests_by(&cluster, &identity.user)
        .into_iter()
        .filter(|r| r.verb == "patch" && r.resource == "rollouts" && r.code == 409)
        .count();
    assert!(conflicts >= 1, "the stale write was refused with 409");
    assert!(
        !events(&client, &ns)
            .await
            .iter()
            .any(|e| e.reason.as_deref() == Some("ReloadFail")),
        "a conflict is no ReloadFail"
    );
    assert_eq!(
        controller
            .metric("reloader_reload_executed_total{success=\"false\"}")
            .await,
        0.0
    );
    controller.stop();
    drop(plane);
}

/// The not-found class: a workload deleted between the plan and its write is dropped quietly.
#[tokio::test]
async fn a_workload_deleted_between_plan_and_write_is_dropped_quietly() {
    let (cluster, ns, client) = setup("vanished").await;
    create::<ConfigMap>(&client, &ns, configmap("cfg", json!({"v": "1"}))).await;
    named_deployment(&client, &ns, "gone", "cfg").await;
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let controller = Controller::start(
        &cluster,
        &identity,
        &ns,
        &["--namespaces", &ns, "--test-write-delay=3s"],
    )
    .await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    wait_deployment(&deployments, "gone", "the baseline", |d| {
        ledger_of(d).is_some()
    })
    .await;
    set_configmap(&client, &ns, "cfg", json!({"v": "2"})).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    deployments
        .delete("gone", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the PATCH answered 404", || async {
        let found = requests_by(&cluster, &identity.user)
            .iter()
            .any(|r| r.verb == "patch" && r.name == "gone" && r.code == 404);
        if found {
            Ok(())
        } else {
            Err("no 404 yet".to_owned())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !events(&client, &ns)
            .await
            .iter()
            .any(|e| e.reason.as_deref() == Some("ReloadFail")),
        "a vanished workload is no ReloadFail"
    );
    assert_eq!(
        controller
            .metric("reloader_reload_executed_total{success=\"false\"}")
            .await,
        0.0
    );
    let log = controller.stop();
    assert!(!log.contains("will retry"), "{log}");
}

/// Point 5: SIGTERM stops new work but lets an in-flight write finish within the grace
/// period; with a grace shorter than the write, the process still exits 0 and the next start
/// applies the change (nothing lives only in memory).
#[tokio::test]
async fn sigterm_lets_an_inflight_write_finish() {
    let (cluster, ns, client) = setup("sigterm").await;
    create::<ConfigMap>(&client, &ns, configmap("cfg", json!({"v": "1"}))).await;
    named_deployment(&client, &ns, "web", "cfg").await;
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let start = |label: &str, grace: &str| {
        let (cluster, identity, ns) = (cluster.clone(), identity.clone(), ns.clone());
        let (label, grace) = (label.to_owned(), format!("--shutdown-grace-period={grace}"));
        async move {
            Controller::start(
                &cluster,
                &identity,
                &label,
                &["--namespaces", &ns, "--test-write-delay=3s", &grace],
            )
            .await
        }
    };
    let first = start(&format!("{ns}-graceful"), "10s").await;
    wait_deployment(&deployments, "web", "the baseline", |d| {
        ledger_of(d).is_some()
    })
    .await;
    set_configmap(&client, &ns, "cfg", json!({"v": "2"})).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let log = first.stop();
    let web = deployments.get("web").await.unwrap();
    assert_eq!(
        env_of(&web, "app"),
        [("STAKATER_CFG_CONFIGMAP".to_owned(), sha1("v=2"))],
        "the write in flight at SIGTERM landed before exit: {log}"
    );

    let second = start(&format!("{ns}-impatient"), "500ms").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    set_configmap(&client, &ns, "cfg", json!({"v": "3"})).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let log = second.stop();
    assert!(
        log.contains("did not finish within --shutdown-grace-period"),
        "{log}"
    );
    let web = deployments.get("web").await.unwrap();
    assert_eq!(
        env_of(&web, "app")[0].1,
        sha1("v=2"),
        "cut before its write"
    );
    let third = start(&format!("{ns}-again"), "10s").await;
    wait_deployment(
        &deployments,
        "web",
        "the change applied by the next start",
        |d| env_of(d, "app") == [("STAKATER_CFG_CONFIGMAP".to_owned(), sha1("v=3"))],
    )
    .await;
    third.stop();
}

fn has_finalizer(job: &Job, finalizer: &str) -> bool {
    job.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == finalizer)
}

/// Point 7: a Job reload killed between its DELETE and its CREATE does not lose the Job. The
/// old Job is held by our finalizer; the controller is SIGKILLed there, the other finalizer is
/// removed and create is denied by RBAC: the old Job stays (with its spec), the restarted
/// controller reports the missing rule, and once it is granted the Job is created once.
#[tokio::test]
async fn a_job_recreation_killed_halfway_is_finished_by_the_next_start() {
    let (cluster, ns, client) = setup("job-gap").await;
    create::<ConfigMap>(&client, &ns, configmap("cfg", json!({"v": "1"}))).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    let original = create::<Job>(
        &client,
        &ns,
        json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "migrate", "finalizers": ["example.com/hold"],
                         "annotations": {"configmap.reloader.stakater.com/reload": "cfg"}},
            "spec": {"suspend": true, "template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "task", "image": "registry.invalid/task"}]}}}
        }),
    )
    .await;
    let old_uid = original.metadata.uid.clone().unwrap();
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let first = Controller::start(&cluster, &identity, &ns, &["--namespaces", &ns]).await;
    eventually("the Job's baseline", || async {
        let job = jobs.get("migrate").await.map_err(|e| e.to_string())?;
        match job
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key(LEDGER_ANNOTATION)
        {
            true => Ok(()),
            false => Err("no ledger".to_owned()),
        }
    })
    .await;
    set_configmap(&client, &ns, "cfg", json!({"v": "2"})).await;
    eventually("the old Job deleted and held by our finalizer", || async {
        let job = jobs.get("migrate").await.map_err(|e| e.to_string())?;
        if job.metadata.deletion_timestamp.is_some() && has_finalizer(&job, RECREATE_FINALIZER) {
            Ok(())
        } else {
            Err(format!("{:?}", job.metadata))
        }
    })
    .await;
    first.kill();

    let role = Api::<k8s_openapi::api::rbac::v1::ClusterRole>::all(cluster.client().await.unwrap());
    let mut no_create = controller_rules();
    for rule in no_create.as_array_mut().unwrap() {
        if rule["resources"] == json!(["jobs"]) {
            rule["verbs"] = json!(["list", "watch", "patch", "delete"]);
        }
    }
    let set_rules = |rules: Value| {
        let role = role.clone();
        let name = format!("kube-reloader-{ns}");
        async move {
            role.patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"rules": rules})),
            )
            .await
            .unwrap();
        }
    };
    set_rules(no_create).await;
    // The other finalizer goes (a patch that removes only it); ours keeps the Job.
    jobs.patch(
        "migrate",
        &PatchParams::default(),
        &Patch::Strategic(
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["example.com/hold"]}}),
        ),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = jobs.get("migrate").await.unwrap();
    assert_eq!(
        held.metadata.uid.as_deref(),
        Some(old_uid.as_str()),
        "the old Job is still readable"
    );
    assert_eq!(
        held.metadata.finalizers,
        Some(vec![RECREATE_FINALIZER.to_owned()])
    );

    let second = Controller::start(
        &cluster,
        &identity,
        &format!("{ns}-second"),
        &["--namespaces", &ns],
    )
    .await;
    let warning = wait_event(&client, &ns, "the ReloadFail naming the rule", |e| {
        e.reason.as_deref() == Some("ReloadFail")
            && e.message
                .as_deref()
                .is_some_and(|m| m.contains("Fix: grant") && m.contains("\"create\""))
    })
    .await;
    assert_eq!(warning.involved_object.name.as_deref(), Some("migrate"));
    let still = jobs.get("migrate").await.unwrap();
    assert_eq!(
        still.metadata.uid.as_deref(),
        Some(old_uid.as_str()),
        "not released without create"
    );

    set_rules(controller_rules()).await;
    let recreated = eventually("the re-created Job", || async {
        let job = jobs.get("migrate").await.map_err(|e| e.to_string())?;
        if job.metadata.uid.as_deref() != Some(old_uid.as_str()) {
            Ok(job)
        } else {
            Err("the old one".to_owned())
        }
    })
    .await;
    assert_eq!(
        template_env(&recreated.spec.as_ref().unwrap().template, "task"),
        [("STAKATER_CFG_CONFIGMAP".to_owned(), sha1("v=2"))]
    );
    assert!(!has_finalizer(&recreated, RECREATE_FINALIZER));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = jobs.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(all.len(), 1, "one Job");
    second.stop();
}

/// Point 6: one Rollout that does not decode into kube-reloader's types is reported (log line
/// and a Warning Event on it) and skipped; the rest of its kind and every other kind reload.
#[tokio::test]
async fn an_object_that_does_not_decode_stops_only_itself() {
    let plane = ControlPlane::start(Tier::A).await.unwrap();
    let cluster = plane.info().clone();
    let client = cluster.client().await.unwrap();
    crds::install(&client, &ROLLOUT).await;
    let ns = cluster.create_namespace("undecodable").await.unwrap();
    create::<ConfigMap>(&client, &ns, configmap("cfg", json!({"v": "1"}))).await;
    let reload = json!({"configmap.reloader.stakater.com/reload": "cfg"});
    for (name, template) in [
        (
            "good",
            json!({"spec": {"containers": [{"name": "app", "image": "registry.invalid/web"}]}}),
        ),
        ("broken", json!("this is not a pod template")),
    ] {
        crds::create(
            &client,
            &ns,
            &ROLLOUT,
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                   "metadata": {"name": name, "annotations": reload},
                   "spec": {"replicas": 1, "template": template}}),
        )
        .await;
    }
    named_deployment(&client, &ns, "web", "cfg").await;
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let controller = Controller::start(
        &cluster,
        &identity,
        &ns,
        &["--namespaces", &ns, "--is-Argo-Rollouts=true"],
    )
    .await;
    let warning = wait_event(&client, &ns, "the InvalidObject warning", |e| {
        e.reason.as_deref() == Some("InvalidObject")
    })
    .await;
    assert_eq!(warning.involved_object.name.as_deref(), Some("broken"));
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    set_configmap(&client, &ns, "cfg", json!({"v": "2"})).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    wait_env(&deployments, "web", "app", "the Deployment's reload").await;
    let rollouts = ROLLOUT.api(&client, &ns);
    eventually("the good Rollout's reload", || async {
        let r =
            serde_json::to_value(rollouts.get("good").await.map_err(|e| e.to_string())?).unwrap();
        if rollout_env(&r, "app")
            .iter()
            .any(|(n, _)| n == "STAKATER_CFG_CONFIGMAP")
        {
            Ok(())
        } else {
            Err(r["spec"].to_string())
        }
    })
    .await;
    let log = controller.stop();
    assert!(
        log.contains(&format!("Skipping Rollout {ns}/broken")),
        "{log}"
    );
    drop(plane);
}

/// Point 5: a watch that ends (its API was removed while running) is logged and makes /live
/// fail, so Kubernetes restarts the pod, which then rediscovers the APIs.
#[tokio::test]
async fn a_watch_that_ends_fails_liveness() {
    let plane = ControlPlane::start(Tier::A).await.unwrap();
    let cluster = plane.info().clone();
    let client = cluster.client().await.unwrap();
    crds::install(&client, &ROLLOUT).await;
    let ns = cluster.create_namespace("dead-watch").await.unwrap();
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let controller = Controller::start(
        &cluster,
        &identity,
        &ns,
        &["--namespaces", &ns, "--is-Argo-Rollouts=true"],
    )
    .await;
    assert_eq!(controller.get("/live").await.unwrap().0, 200);
    Api::<CustomResourceDefinition>::all(client.clone())
        .delete("rollouts.argoproj.io", &DeleteParams::default())
        .await
        .unwrap();
    eventually("/live to fail", || async {
        match controller.get("/live").await? {
            (500, _) => Ok(()),
            (code, body) => Err(format!("{code} {body}")),
        }
    })
    .await;
    let log = controller.stop();
    assert!(log.contains("no longer serves rollouts"), "{log}");
    assert!(log.contains("/live now fails"), "{log}");
    drop(plane);
}

/// Sources are listed as streaming lists (one watch event per object, so no page of large
/// Secrets is ever held); an API server that refuses them (the WatchList feature off, as by
/// default in 1.33, or a server older than 1.27) gets paged lists instead, and reloads work the
/// same. The audit log shows which.
#[tokio::test]
async fn source_lists_stream_and_fall_back_to_pages_where_refused() {
    for watch_list in [true, false] {
        let tuning = kube_reloader_testenv::Tuning {
            apiserver_args: vec![format!("--feature-gates=WatchList={watch_list}")],
            ..Default::default()
        };
        let plane = ControlPlane::start_tuned(Tier::A, tuning).await.unwrap();
        let cluster = plane.info().clone();
        let client = cluster.client().await.unwrap();
        let ns = cluster.create_namespace("streaming").await.unwrap();
        create::<ConfigMap>(&client, &ns, configmap("cfg", json!({"v": "1"}))).await;
        named_deployment(&client, &ns, "web", "cfg").await;
        let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
        let controller = Controller::start(&cluster, &identity, &ns, &["--namespaces", &ns]).await;
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        wait_deployment(&deployments, "web", "the baseline", |d| {
            ledger_of(d).is_some()
        })
        .await;
        set_configmap(&client, &ns, "cfg", json!({"v": "2"})).await;
        wait_env(&deployments, "web", "app", "the reload").await;
        let log = controller.stop();
        let requests = requests_by(&cluster, &identity.user);
        let listed = |resource: &str| {
            requests
                .iter()
                .any(|r| r.resource == resource && r.verb == "list")
        };
        let streamed = |resource: &str| {
            requests.iter().any(|r| {
                r.resource == resource
                    && r.verb == "watch"
                    && r.code == 200
                    && r.uri.contains("sendInitialEvents=true")
            })
        };
        // Refused, the streaming attempt shows up answered 422.
        for resource in ["configmaps", "secrets"] {
            assert_eq!(
                streamed(resource),
                watch_list,
                "WatchList={watch_list}: {resource} streamed"
            );
            assert_eq!(
                listed(resource),
                !watch_list,
                "WatchList={watch_list}: {resource} paged"
            );
        }
        assert_eq!(
            log.contains("does not serve streaming lists"),
            !watch_list,
            "the fallback is logged when taken: {log}"
        );
    }
}
