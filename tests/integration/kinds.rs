//! Jobs, Argo Rollouts, OpenShift DeploymentConfigs and the pause period (checklist 25, 27-31),
//! each on the real API server; the custom kinds through our own minimal CRDs, on a private
//! control plane so their APIs appear only where a test wants them.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube_reloader::model::ledger::LEDGER_ANNOTATION;
use kube_reloader_testenv::{ControlPlane, Tier};
use serde_json::{Value, json};

use crate::controller::{Controller, controller_rules, identity_with_rules};
use crate::crds::{self, DEPLOYMENT_CONFIG, ROLLOUT};
use crate::fixtures::*;
use crate::support::eventually;

fn container_env(template: &Value, var: &str) -> Option<String> {
    template["spec"]["containers"]
        .as_array()?
        .iter()
        .flat_map(|c| c["env"].as_array().cloned().unwrap_or_default())
        .find(|e| e["name"] == var)
        .and_then(|e| e["value"].as_str().map(str::to_owned))
}

fn data(object: &DynamicObject) -> Value {
    serde_json::to_value(object).unwrap()
}

async fn wait_custom(
    api: &Api<DynamicObject>,
    name: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    eventually(what, || async {
        let object = data(&api.get(name).await.map_err(|e| e.to_string())?);
        if check(&object) {
            Ok(object)
        } else {
            Err(object.to_string())
        }
    })
    .await
}

fn has_ledger(object: &Value) -> bool {
    object["metadata"]["annotations"][LEDGER_ANNOTATION].is_string()
}

/// Kinds whose API is absent are skipped with one log line; once the CRDs exist, Rollouts
/// (only with `--is-Argo-Rollouts=true`: template merge patch, `restartAt` for the restart
/// strategy, the referenced Deployment for `workloadRef`) and DeploymentConfigs reload.
#[tokio::test]
async fn argo_rollouts_and_deployment_configs_when_their_apis_exist() {
    let plane = ControlPlane::start(Tier::A).await.unwrap();
    let cluster = plane.info().clone();
    let client = cluster.client().await.unwrap();
    let ns = cluster.create_namespace("custom").await.unwrap();
    create::<ConfigMap>(&client, &ns, configmap("cfg", json!({"v": "1"}))).await;
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let args = ["--namespaces", ns.as_str(), "--is-Argo-Rollouts=true"];

    let before = Controller::start(&cluster, &identity, &format!("{ns}-before"), &args).await;
    let log = before.stop();
    assert_eq!(
        log.matches("does not serve argoproj.io/v1alpha1").count(),
        1,
        "{log}"
    );
    assert_eq!(
        log.matches("DeploymentConfigs are skipped").count(),
        1,
        "{log}"
    );

    crds::install(&client, &ROLLOUT).await;
    crds::install(&client, &DEPLOYMENT_CONFIG).await;
    let reload = json!({"configmap.reloader.stakater.com/reload": "cfg"});
    let template = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
        {"name": "app", "image": "registry.invalid/web:1", "ports": [{"containerPort": 8080}]},
        {"name": "sidecar", "image": "registry.invalid/proxy:1"}]}});
    let rollouts = ROLLOUT.api(&client, &ns);
    let rollout = |name: &str, annotations: Value, spec: Value| {
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
               "metadata": {"name": name, "annotations": annotations}, "spec": spec})
    };
    let canary = json!({"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}});
    crds::create(
        &client,
        &ns,
        &ROLLOUT,
        rollout(
            "web",
            reload.clone(),
            json!({"replicas": 2, "strategy": canary, "template": template}),
        ),
    )
    .await;
    let mut restart = reload.clone();
    restart["reloader.stakater.com/rollout-strategy"] = json!("restart");
    crds::create(
        &client,
        &ns,
        &ROLLOUT,
        rollout(
            "restarted",
            restart,
            json!({"replicas": 1, "strategy": canary, "template": template}),
        ),
    )
    .await;
    create::<Deployment>(
        &client,
        &ns,
        deployment(
            "base",
            json!({}),
            json!({"containers": [{"name": "app", "image": "registry.invalid/base:1"}]}),
        ),
    )
    .await;
    crds::create(
        &client,
        &ns,
        &ROLLOUT,
        rollout(
            "referencing",
            reload.clone(),
            json!({"replicas": 1, "strategy": canary,
               "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "base"}}),
        ),
    )
    .await;
    crds::create(
        &client,
        &ns,
        &DEPLOYMENT_CONFIG,
        json!({
        "apiVersion": "apps.openshift.io/v1", "kind": "DeploymentConfig",
        "metadata": {"name": "legacy", "annotations": reload},
        "spec": {"replicas": 1, "template": template}}),
    )
    .await;
    let configs = DEPLOYMENT_CONFIG.api(&client, &ns);

    // Without the flag: DeploymentConfigs (found by discovery) are handled, Rollouts are not.
    let without = Controller::start(
        &cluster,
        &identity,
        &format!("{ns}-without"),
        &["--namespaces", &ns],
    )
    .await;
    wait_custom(
        &configs,
        "legacy",
        "the DeploymentConfig's baseline",
        has_ledger,
    )
    .await;
    assert!(!has_ledger(&data(&rollouts.get("web").await.unwrap())));
    without.stop();

    let controller = Controller::start(&cluster, &identity, &format!("{ns}-with"), &args).await;
    for name in ["web", "restarted", "referencing"] {
        wait_custom(
            &rollouts,
            name,
            &format!("Rollout {name}'s baseline"),
            has_ledger,
        )
        .await;
    }
    let restarted_before = data(&rollouts.get("restarted").await.unwrap());
    set_configmap(&client, &ns, "cfg", json!({"v": "2"})).await;
    let digest = sha1("v=2");
    let var = "STAKATER_CFG_CONFIGMAP";

    let web = wait_custom(
        &rollouts,
        "web",
        "the Rollout's template to carry the env var",
        |r| container_env(&r["spec"]["template"], var).as_deref() == Some(digest.as_str()),
    )
    .await;
    // The merge patch replaced the container list with the whole list: nothing else lost.
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
        8080
    );
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][1]["image"],
        "registry.invalid/proxy:1"
    );
    assert!(
        web["spec"]["template"]["spec"]["containers"][1]["env"].is_null(),
        "one container only"
    );
    assert_eq!(web["spec"]["strategy"], canary);

    let restarted = wait_custom(&rollouts, "restarted", "spec.restartAt", |r| {
        r["spec"]["restartAt"].is_string()
    })
    .await;
    let at = restarted["spec"]["restartAt"].as_str().unwrap();
    assert!(
        at.parse::<k8s_openapi::jiff::Timestamp>().is_ok(),
        "RFC 3339: {at}"
    );
    assert_eq!(
        restarted["spec"]["template"], restarted_before["spec"]["template"],
        "restart leaves the template alone"
    );

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let base = wait_env(
        &deployments,
        "base",
        "app",
        "the workloadRef Deployment's template",
    )
    .await;
    assert_eq!(env_of(&base, "app"), [(var.to_owned(), digest.clone())]);
    let referencing = wait_custom(&rollouts, "referencing", "the Rollout's ledger", |r| {
        r["metadata"]["annotations"][LEDGER_ANNOTATION]
            .as_str()
            .is_some_and(|l| l.contains(&digest))
    })
    .await;
    assert!(
        referencing["spec"]["template"].is_null(),
        "a workloadRef Rollout gets no template"
    );

    wait_custom(&configs, "legacy", "the DeploymentConfig's template", |d| {
        container_env(&d["spec"]["template"], var).as_deref() == Some(digest.as_str())
    })
    .await;
    // Events go out through a queue after the write: wait for them.
    for kind in ["Rollout", "DeploymentConfig"] {
        wait_event(
            &client,
            &ns,
            &format!("a Reloaded Event on a {kind}"),
            |e| {
                e.reason.as_deref() == Some("Reloaded")
                    && e.involved_object.kind.as_deref() == Some(kind)
            },
        )
        .await;
    }
    controller.stop();
    drop(plane);
}

fn job_uid(job: &Job) -> String {
    job.metadata.uid.clone().unwrap_or_default()
}

/// Checklist 25 with the retry case: the Job is deleted and created again with the same name,
/// the new env var and a new UID. A finalizer holds the old Job for a while, so creating the
/// new one fails and is retried; there is still exactly one new Job, and a controller restart
/// afterwards re-creates nothing.
#[tokio::test]
async fn job_is_recreated_once_per_change_even_when_the_old_one_lingers() {
    let (cluster, ns, client) = setup("job").await;
    create::<ConfigMap>(&client, &ns, configmap("cfg", json!({"v": "1"}))).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    let original = create::<Job>(&client, &ns, json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "migrate", "labels": {"team": "data"}, "finalizers": ["example.com/hold"],
                     "annotations": {"configmap.reloader.stakater.com/reload": "cfg"}},
        "spec": {"suspend": true, "backoffLimit": 2, "template": {"metadata": {"labels": {"role": "migration"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "task", "image": "registry.invalid/task"}]}}}
    })).await;
    let old_uid = job_uid(&original);
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let controller = Controller::start(&cluster, &identity, &ns, &["--namespaces", &ns]).await;
    eventually("the Job's baseline", || async {
        let job = jobs.get("migrate").await.map_err(|e| e.to_string())?;
        if job
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key(LEDGER_ANNOTATION)
        {
            Ok(())
        } else {
            Err("no ledger".into())
        }
    })
    .await;

    set_configmap(&client, &ns, "cfg", json!({"v": "2"})).await;
    eventually(
        "the old Job to be deleted (held by its finalizer)",
        || async {
            let job = jobs.get("migrate").await.map_err(|e| e.to_string())?;
            if job.metadata.deletion_timestamp.is_some() {
                Ok(())
            } else {
                Err("not deleted yet".into())
            }
        },
    )
    .await;
    // Longer than one round of create attempts: the first reload attempt fails and is retried.
    tokio::time::sleep(Duration::from_secs(7)).await;
    jobs.patch(
        "migrate",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    let digest = sha1("v=2");
    let recreated = eventually("the re-created Job", || async {
        let job = jobs.get("migrate").await.map_err(|e| e.to_string())?;
        if job_uid(&job) != old_uid && job.metadata.deletion_timestamp.is_none() {
            Ok(job)
        } else {
            Err("old one".into())
        }
    })
    .await;
    let template = recreated.spec.as_ref().unwrap().template.clone();
    assert_eq!(
        template_env(&template, "task"),
        [("STAKATER_CFG_CONFIGMAP".to_owned(), digest)]
    );
    let labels = template.metadata.unwrap().labels.unwrap();
    assert_eq!(labels["role"], "migration");
    assert!(
        !labels.values().any(|v| *v == old_uid),
        "no label derived from the old UID: {labels:?}"
    );
    assert_eq!(recreated.metadata.labels.as_ref().unwrap()["team"], "data");
    assert_eq!(recreated.spec.as_ref().unwrap().backoff_limit, Some(2));
    assert!(
        controller
            .metric("reloader_reload_executed_total{success=\"false\"}")
            .await
            >= 1.0,
        "the first attempt failed"
    );
    wait_event(&client, &ns, "the Reloaded Event for the Job", |e| {
        e.reason.as_deref() == Some("Reloaded") && e.involved_object.kind.as_deref() == Some("Job")
    })
    .await;

    let new_uid = job_uid(&recreated);
    controller.stop();
    let restarted = Controller::start(
        &cluster,
        &identity,
        &format!("{ns}-again"),
        &["--namespaces", &ns],
    )
    .await;
    // Let the restarted controller plan every workload before looking.
    eventually("the restarted controller to plan", || async {
        let plans = restarted
            .metric("reloader_reconcile_total{result=\"skipped\"}")
            .await;
        if plans >= 1.0 {
            Ok(())
        } else {
            Err(format!("{plans} plans"))
        }
    })
    .await;
    let all = jobs.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(
        all.len(),
        1,
        "{:?}",
        all.iter().map(|j| &j.metadata.name).collect::<Vec<_>>()
    );
    assert_eq!(job_uid(&all[0]), new_uid, "not re-created again");
    restarted.stop();
}

fn paused(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
}

fn paused_at(d: &Deployment) -> Option<String> {
    d.metadata
        .annotations
        .as_ref()?
        .get("deployment.reloader.stakater.com/paused-at")
        .cloned()
}

/// Checklist 30-31: the reload pauses the Deployment in the same write and a controller
/// started after a restart resumes it when the period is over (the pause time is on the
/// object); a Deployment paused by its user is reloaded but never paused or resumed by us; an
/// invalid period reloads without a pause and says why (the first controller may be killed before
/// its Event is out: the next one says it again).
#[tokio::test]
async fn pause_period_survives_a_restart_and_user_pauses_are_left_alone() {
    let (cluster, ns, client) = setup("pause").await;
    create::<ConfigMap>(&client, &ns, configmap("cfg", json!({"v": "1"}))).await;
    let pod = json!({"containers": [{"name": "app", "image": "registry.invalid/app"}]});
    let annotated = |period: &str| {
        json!({"configmap.reloader.stakater.com/reload": "cfg",
        "deployment.reloader.stakater.com/pause-period": period})
    };
    create::<Deployment>(
        &client,
        &ns,
        deployment("timed", annotated("6s"), pod.clone()),
    )
    .await;
    let mut held = deployment("held", annotated("6s"), pod.clone());
    held["spec"]["paused"] = json!(true);
    create::<Deployment>(&client, &ns, held).await;
    create::<Deployment>(
        &client,
        &ns,
        deployment("typo", annotated("six seconds"), pod),
    )
    .await;
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let controller = Controller::start(&cluster, &identity, &ns, &["--namespaces", &ns]).await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    for name in ["timed", "held", "typo"] {
        wait_deployment(&api, name, "baseline", |d| ledger_of(d).is_some()).await;
    }

    set_configmap(&client, &ns, "cfg", json!({"v": "2"})).await;
    let timed = wait_env(&api, "timed", "app", "the paused reload").await;
    assert!(
        paused(&timed) && paused_at(&timed).is_some(),
        "paused in the same write: {:?}",
        timed.metadata.annotations
    );
    // Stop at once: the resume must come from the next controller, reading the object.
    controller.kill();
    let restarted = Controller::start(
        &cluster,
        &identity,
        &format!("{ns}-again"),
        &["--namespaces", &ns],
    )
    .await;
    let resumed =
        wait_deployment(&api, "timed", "the resume after the period", |d| !paused(d)).await;
    assert_eq!(paused_at(&resumed), None);
    assert_eq!(
        env_of(&resumed, "app"),
        [("STAKATER_CFG_CONFIGMAP".to_owned(), sha1("v=2"))]
    );

    let held = wait_env(
        &api,
        "held",
        "app",
        "the user-paused Deployment's env patch",
    )
    .await;
    assert!(
        paused(&held) && paused_at(&held).is_none(),
        "still the user's pause"
    );
    let typo = wait_env(&api, "typo", "app", "the reload without a pause").await;
    assert!(!paused(&typo));
    wait_event(&client, &ns, "a Warning naming the bad pause period", |e| {
        e.type_.as_deref() == Some("Warning")
            && e.message
                .as_deref()
                .is_some_and(|m| m.contains("six seconds") && m.contains("pause"))
    })
    .await;
    assert!(
        paused(&api.get("held").await.unwrap()),
        "never resumed by us"
    );
    restarted.stop();
}

/// Checklist 26: `--ignored-workload-types=jobs,cronjobs` neither lists nor touches Jobs and
/// CronJobs (the audit log shows no request for them), needs no RBAC for them, and other kinds
/// still reload.
#[tokio::test]
async fn ignored_workload_types_are_neither_listed_nor_touched() {
    let (cluster, ns, client) = setup("ignored-types").await;
    create::<ConfigMap>(&client, &ns, configmap("cfg", json!({"v": "1"}))).await;
    let reload = json!({"configmap.reloader.stakater.com/reload": "cfg"});
    let pod = json!({"restartPolicy": "Never", "containers": [{"name": "task", "image": "registry.invalid/task"}]});
    let job = create::<Job>(
        &client,
        &ns,
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once", "annotations": reload},
               "spec": {"suspend": true, "template": {"spec": pod}}}),
    )
    .await;
    create::<k8s_openapi::api::batch::v1::CronJob>(
        &client,
        &ns,
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly", "annotations": reload},
               "spec": {"schedule": "0 0 1 1 *", "suspend": true, "jobTemplate": {"spec": {"template": {"spec": pod}}}}}),
    )
    .await;
    named_deployment(&client, &ns, "web", "cfg").await;
    let rules: Vec<Value> = controller_rules()
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["apiGroups"] != json!(["batch"]))
        .cloned()
        .collect();
    let identity = identity_with_rules(&cluster, &ns, Value::Array(rules)).await;
    let controller = Controller::start(
        &cluster,
        &identity,
        &ns,
        &[
            "--namespaces",
            &ns,
            "--ignored-workload-types=jobs,cronjobs",
        ],
    )
    .await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    wait_deployment(&deployments, "web", "baseline", |d| ledger_of(d).is_some()).await;
    set_configmap(&client, &ns, "cfg", json!({"v": "2"})).await;
    wait_env(&deployments, "web", "app", "the Deployment's reload").await;
    let log = controller.stop();
    assert!(
        !log.contains("missing RBAC"),
        "no batch permission is asked for: {log}"
    );
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    let all = jobs.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(all.len(), 1, "no Job created from the CronJob");
    assert_eq!(
        job_uid(&all[0]),
        job_uid(&job),
        "the Job was not re-created"
    );
    assert!(!has_ledger(&serde_json::to_value(&all[0]).unwrap()));
    let batch: Vec<_> = crate::controller::requests_by(&cluster, &identity.user)
        .into_iter()
        .filter(|r| r.resource == "jobs" || r.resource == "cronjobs")
        .collect();
    assert!(batch.is_empty(), "{batch:?}");
}
