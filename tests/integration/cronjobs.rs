//! CronJobs: a change creates a Job from the job template (upstream's name prefix, annotation
//! and owner reference); retries and restarts never create a second Job for the same change.

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use crate::controller::{Controller, controller_rules, identity_with_rules};
use crate::fixtures::*;
use crate::support::eventually;

/// Jobs created from CronJob `cronjob`, with the STAKATER env var each carries.
async fn jobs_of(api: &Api<Job>, cronjob: &str) -> Vec<(Job, String)> {
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|j| {
            j.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.kind == "CronJob" && o.name == cronjob)
        })
        .map(|j| {
            let env = template_env(&j.spec.as_ref().unwrap().template, "task")
                .into_iter()
                .find(|(name, _)| name == "STAKATER_CFG_CONFIGMAP")
                .map(|(_, value)| value)
                .unwrap_or_default();
            (j, env)
        })
        .collect()
}

/// Checklist 24 plus the retry case: the CronJob's ledger write is denied after the Job was
/// created, so the reload is retried with backoff, and still exactly one Job exists per change,
/// also after a controller restart.
#[tokio::test]
async fn cronjob_change_creates_one_job_per_change_even_with_retries() {
    let (cluster, ns, client) = setup("cronjob").await;
    create::<ConfigMap>(&client, &ns, configmap("cfg", json!({"v": "1"}))).await;
    let cronjob = create::<CronJob>(
        &client,
        &ns,
        json!({"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "nightly", "annotations": {"configmap.reloader.stakater.com/reload": "cfg"}},
            "spec": {"schedule": "0 0 1 1 *", "suspend": true, "jobTemplate": {
                "metadata": {"labels": {"team": "data"}, "annotations": {"owner": "data-team"}},
                "spec": {"template": {"spec": {"restartPolicy": "Never",
                    "containers": [{"name": "task", "image": "registry.invalid/task"}]}}}}}}),
    )
    .await;
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let controller = Controller::start(&cluster, &identity, &ns, &["--namespaces", &ns]).await;
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), &ns);
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    eventually("the CronJob's baseline", || async {
        let cj = cronjobs.get("nightly").await.map_err(|e| e.to_string())?;
        let recorded = cj
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key(kube_reloader::model::ledger::LEDGER_ANNOTATION);
        if recorded {
            Ok(())
        } else {
            Err("no ledger yet".to_owned())
        }
    })
    .await;
    assert!(
        jobs_of(&jobs, "nightly").await.is_empty(),
        "no Job at first sight"
    );

    set_configmap(&client, &ns, "cfg", json!({"v": "2"})).await;
    let created = eventually("a Job from the CronJob", || async {
        let found = jobs_of(&jobs, "nightly").await;
        if found.len() == 1 {
            Ok(found)
        } else {
            Err(format!("{} jobs", found.len()))
        }
    })
    .await;
    let (job, env) = &created[0];
    assert_eq!(env, &sha1("v=2"));
    assert!(
        job.metadata
            .name
            .as_deref()
            .unwrap()
            .starts_with("nightly-")
    );
    let annotations = job.metadata.annotations.clone().unwrap();
    assert_eq!(annotations["cronjob.kubernetes.io/instantiate"], "manual");
    assert_eq!(annotations["owner"], "data-team");
    assert_eq!(job.metadata.labels.as_ref().unwrap()["team"], "data");
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.controller, owner.uid.as_str()),
        (Some(true), cronjob.metadata.uid.as_deref().unwrap())
    );
    let template_after = cronjobs.get("nightly").await.unwrap().spec.job_template;
    assert_eq!(
        template_after, cronjob.spec.job_template,
        "the CronJob's template is not modified"
    );

    // Deny the CronJob ledger write: the Job is created, the write after it fails and is retried.
    let role: Api<ClusterRole> = Api::all(cluster.client().await.unwrap());
    let mut narrowed = controller_rules();
    for rule in narrowed.as_array_mut().unwrap() {
        if rule["resources"] == json!(["cronjobs"]) {
            rule["verbs"] = json!(["list", "watch"]);
        }
    }
    role.patch(
        &format!("kube-reloader-{ns}"),
        &PatchParams::default(),
        &Patch::Merge(json!({"rules": narrowed})),
    )
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    set_configmap(&client, &ns, "cfg", json!({"v": "3"})).await;
    eventually("at least two failed attempts", || async {
        let retries = controller.log().matches("will retry").count();
        if retries >= 2 {
            Ok(())
        } else {
            Err(format!("{retries} retries"))
        }
    })
    .await;
    let during = jobs_of(&jobs, "nightly").await;
    assert_eq!(
        during.iter().filter(|(_, e)| *e == sha1("v=3")).count(),
        1,
        "one Job for v=3 despite retries"
    );

    role.patch(
        &format!("kube-reloader-{ns}"),
        &PatchParams::default(),
        &Patch::Merge(json!({"rules": controller_rules()})),
    )
    .await
    .unwrap();
    eventually("the CronJob's ledger to record v=3", || async {
        let cj = cronjobs.get("nightly").await.map_err(|e| e.to_string())?;
        let ledger = cj
            .metadata
            .annotations
            .unwrap_or_default()
            .get(kube_reloader::model::ledger::LEDGER_ANNOTATION)
            .cloned()
            .unwrap_or_default();
        if ledger.contains(&sha1("v=3")) {
            Ok(())
        } else {
            Err(ledger)
        }
    })
    .await;
    controller.stop();
    let restarted = Controller::start(
        &cluster,
        &identity,
        &format!("{ns}-2"),
        &["--namespaces", &ns],
    )
    .await;
    named_deployment(&client, &ns, "sentinel", "cfg").await;
    let deployments = Api::namespaced(client.clone(), &ns);
    wait_deployment(&deployments, "sentinel", "the sentinel's baseline", |d| {
        ledger_of(d).is_some()
    })
    .await;
    restarted.stop();
    let after = jobs_of(&jobs, "nightly").await;
    let values: Vec<&str> = after.iter().map(|(_, e)| e.as_str()).collect();
    assert_eq!(
        after.len(),
        2,
        "one Job per change, none added by retries or the restart: {values:?}"
    );
}
