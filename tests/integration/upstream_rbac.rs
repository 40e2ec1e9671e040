//! Swapping only the image on an existing stakater/Reloader install: kube-reloader runs under
//! exactly the ClusterRole upstream's chart 2.2.16 renders by default (no `watch` on workloads,
//! no `patch` on CronJobs and Jobs, core Events only), and under the older rule set of
//! upstream's static manifest (no batch rules, no Events), and still reloads every kind it may.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, Resource};
use serde_json::{Value, json};

use crate::controller::{Controller, identity_with_rules, requests_by};
use crate::fixtures::*;
use crate::support::eventually;

/// The ClusterRole rules of upstream's chart 2.2.16 with default values.
fn upstream_chart_rules() -> Value {
    json!([
        {"apiGroups": [""], "resources": ["secrets", "configmaps"], "verbs": ["list", "get", "watch"]},
        {"apiGroups": ["apps"], "resources": ["deployments", "daemonsets", "statefulsets"], "verbs": ["list", "get", "update", "patch"]},
        {"apiGroups": ["batch"], "resources": ["cronjobs"], "verbs": ["list", "get"]},
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "delete", "list", "get"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]}
    ])
}

/// The older rules of upstream's static manifest (deployments/kubernetes/manifests).
fn upstream_manifest_rules() -> Value {
    json!([
        {"apiGroups": [""], "resources": ["secrets", "configmaps"], "verbs": ["list", "get", "watch"]},
        {"apiGroups": ["apps"], "resources": ["deployments", "daemonsets", "statefulsets"], "verbs": ["list", "get", "update", "patch"]},
        {"apiGroups": ["extensions"], "resources": ["deployments", "daemonsets"], "verbs": ["list", "get", "update", "patch"]}
    ])
}

/// A pod reading ConfigMap `cfg` and Secret `sec` through env.
fn pod() -> Value {
    json!({"restartPolicy": "Always", "containers": [{"name": "app", "image": "registry.invalid/app",
        "envFrom": [{"configMapRef": {"name": "cfg"}}],
        "env": [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}}]}]})
}

/// Named ConfigMap and auto Secret, as most upstream users annotate.
fn annotations() -> Value {
    json!({"configmap.reloader.stakater.com/reload": "cfg", "secret.reloader.stakater.com/auto": "true"})
}

fn apps(kind: &str, name: &str) -> Value {
    let mut manifest = deployment(name, annotations(), pod());
    manifest["kind"] = json!(kind);
    if kind != "Deployment" {
        manifest["spec"].as_object_mut().unwrap().remove("replicas");
    }
    manifest
}

/// The pod template of a workload, as JSON.
async fn template<K>(client: &Client, ns: &str, name: &str) -> Value
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let object = Api::<K>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap();
    serde_json::to_value(object).unwrap()["spec"]["template"].clone()
}

fn env_var(template: &Value, var: &str) -> Option<String> {
    template["spec"]["containers"][0]["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == var)
        .and_then(|e| e["value"].as_str())
        .map(str::to_owned)
}

/// Waits until each of the three apps kinds carries `var` with a value other than `before`.
async fn wait_all_apps(client: &Client, ns: &str, var: &str, before: Option<&str>) -> String {
    let mut value = String::new();
    for (kind, name) in [
        ("Deployment", "web"),
        ("StatefulSet", "db"),
        ("DaemonSet", "agent"),
    ] {
        value = eventually(&format!("{kind} {name} to get {var}"), || async {
            let template = match kind {
                "Deployment" => template::<Deployment>(client, ns, name).await,
                "StatefulSet" => template::<StatefulSet>(client, ns, name).await,
                _ => template::<DaemonSet>(client, ns, name).await,
            };
            match env_var(&template, var) {
                Some(v) if Some(v.as_str()) != before => Ok(v),
                other => Err(format!("{var} is {other:?}")),
            }
        })
        .await;
    }
    value
}

async fn create_apps(client: &Client, ns: &str) {
    create::<Deployment>(client, ns, apps("Deployment", "web")).await;
    create::<StatefulSet>(client, ns, apps("StatefulSet", "db")).await;
    create::<DaemonSet>(client, ns, apps("DaemonSet", "agent")).await;
}

async fn set_secret(client: &Client, ns: &str, password: &str) {
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(
            "sec",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"password": password}})),
        )
        .await
        .unwrap();
}

/// Jobs owned by CronJob `nightly`, oldest first.
async fn nightly_jobs(jobs: &Api<Job>) -> Vec<Job> {
    let mut found: Vec<Job> = jobs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|j| {
            j.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.kind == "CronJob" && o.name == "nightly")
        })
        .collect();
    found.sort_by_key(|j| j.metadata.creation_timestamp.clone());
    found
}

fn uid(job: &Job) -> String {
    job.metadata.uid.clone().unwrap_or_default()
}

/// Waits until `sentinel` (a Deployment reading ConfigMap `barrier`) carries the digest of
/// `barrier` at `round`: proof the controller has listed and planned this namespace since.
async fn barrier(client: &Client, ns: &str, round: &str) {
    set_configmap(client, ns, "barrier", json!({"round": round})).await;
    let want = sha1(&format!("round={round}"));
    eventually("the sentinel to reload (barrier)", || async {
        let template = template::<Deployment>(client, ns, "sentinel").await;
        match env_var(&template, "STAKATER_BARRIER_CONFIGMAP") {
            Some(v) if v == want => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

/// Issue 11's image-swap test: upstream chart's default ClusterRole, every kind.
#[tokio::test]
async fn upstream_chart_clusterrole_reloads_every_kind() {
    let (cluster, ns, client) = setup("swap").await;
    create::<ConfigMap>(&client, &ns, configmap("cfg", json!({"v": "1"}))).await;
    create::<ConfigMap>(&client, &ns, configmap("barrier", json!({"round": "0"}))).await;
    create::<Secret>(
        &client,
        &ns,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sec"}, "stringData": {"password": "one"}}),
    )
    .await;
    create_apps(&client, &ns).await;
    // Reloaded by upstream already: carries upstream's marker for the current data.
    let mut marked_pod = pod();
    marked_pod["containers"][0]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "STAKATER_CFG_CONFIGMAP", "value": sha1("v=1")}));
    create::<Deployment>(
        &client,
        &ns,
        deployment(
            "marked",
            json!({"configmap.reloader.stakater.com/reload": "cfg"}),
            marked_pod,
        ),
    )
    .await;
    create::<Deployment>(
        &client,
        &ns,
        deployment(
            "sentinel",
            json!({"configmap.reloader.stakater.com/reload": "barrier"}),
            json!({"containers": [{"name": "app", "image": "registry.invalid/app"}]}),
        ),
    )
    .await;
    let task = json!({"restartPolicy": "Never", "containers": [{"name": "task", "image": "registry.invalid/task",
        "envFrom": [{"configMapRef": {"name": "cfg"}}]}]});
    create::<CronJob>(
        &client,
        &ns,
        json!({"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "nightly", "annotations": {"configmap.reloader.stakater.com/reload": "cfg"}},
            "spec": {"schedule": "0 0 1 1 *", "suspend": true,
                     "jobTemplate": {"spec": {"template": {"spec": task.clone()}}}}}),
    )
    .await;
    let original_job = create::<Job>(
        &client,
        &ns,
        json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "migrate", "annotations": {"configmap.reloader.stakater.com/reload": "cfg"}},
            "spec": {"suspend": true, "template": {"spec": task}}}),
    )
    .await;
    let marked_before = template::<Deployment>(&client, &ns, "marked").await;

    let identity = identity_with_rules(&cluster, &ns, upstream_chart_rules()).await;
    let controller = Controller::start(&cluster, &identity, &ns, &["--namespaces", &ns]).await;
    let (_, ready) = controller.get("/ready").await.unwrap();
    for expected in [
        "degraded: no watch on Deployment",
        "degraded: no watch on StatefulSet",
        "degraded: no watch on DaemonSet",
        "degraded: no watch on CronJob",
        "degraded: no watch on Job",
        "degraded: no patch on CronJob",
        "degraded: no patch on Job",
        "degraded: no create on Event",
    ] {
        assert!(
            ready.contains(expected),
            "{expected:?} not in /ready:\n{ready}"
        );
    }
    assert!(
        ready.contains(
            "Fix: grant a Role in namespace {ns} with rule {apiGroups: [\"apps\"], resources: [\"deployments\"], verbs: [\"watch\"]}"
                .replace("{ns}", &ns)
                .as_str()
        ),
        "{ready}"
    );
    assert_eq!(
        controller
            .metric("kube_reloader_degraded{kind=\"Deployment\",missing=\"watch\"}")
            .await,
        1.0
    );
    assert_eq!(
        controller
            .metric("kube_reloader_degraded{kind=\"CronJob\",missing=\"patch\"}")
            .await,
        1.0
    );
    barrier(&client, &ns, "1").await;
    assert_eq!(
        template::<Deployment>(&client, &ns, "marked").await,
        marked_before,
        "a workload carrying upstream's current marker is not rolled at start"
    );
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    assert!(
        nightly_jobs(&jobs).await.is_empty(),
        "no Job at first sight"
    );
    assert_eq!(
        uid(&jobs.get("migrate").await.unwrap()),
        uid(&original_job),
        "the Job is not re-created at start"
    );

    // Created while running: with no watch, it is first seen in the LIST the change causes,
    // and must still reload (it runs the old data).
    create::<Deployment>(&client, &ns, apps("Deployment", "late")).await;

    // A named ConfigMap change: every kind.
    set_configmap(&client, &ns, "cfg", json!({"v": "2"})).await;
    let cfg = wait_all_apps(&client, &ns, "STAKATER_CFG_CONFIGMAP", None).await;
    assert_eq!(cfg, sha1("v=2"));
    eventually("the Deployment created while running to reload", || async {
        let template = template::<Deployment>(&client, &ns, "late").await;
        match env_var(&template, "STAKATER_CFG_CONFIGMAP") {
            Some(v) if v == sha1("v=2") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let created = eventually("one Job from the CronJob", || async {
        match nightly_jobs(&jobs).await.as_slice() {
            [one] => Ok(one.clone()),
            other => Err(format!("{} Jobs", other.len())),
        }
    })
    .await;
    let recreated = eventually("the Job re-created", || async {
        match jobs.get_opt("migrate").await.map_err(|e| e.to_string())? {
            Some(job) if uid(&job) != uid(&original_job) => Ok(job),
            _ => Err("not yet".to_owned()),
        }
    })
    .await;
    let recreated_env = env_var(
        &serde_json::to_value(&recreated).unwrap()["spec"]["template"],
        "STAKATER_CFG_CONFIGMAP",
    );
    assert_eq!(recreated_env.as_deref(), Some(sha1("v=2").as_str()));
    assert!(
        recreated
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(kube_reloader::model::ledger::LEDGER_ANNOTATION)),
        "the ledger goes onto the new Job at create"
    );
    wait_event(&client, &ns, "a Reloaded Event (core v1)", |e| {
        e.reason.as_deref() == Some("Reloaded") && e.involved_object.name.as_deref() == Some("web")
    })
    .await;

    // An auto Secret change: every apps kind.
    set_secret(&client, &ns, "two").await;
    wait_all_apps(&client, &ns, "STAKATER_SEC_SECRET", None).await;

    // Nothing asked for a watch, a CronJob or Job patch, or events.k8s.io.
    let user = identity.user.clone();
    let requests = requests_by(&cluster, &user);
    let forbidden: Vec<String> = requests
        .iter()
        .filter(|r| r.code == 403)
        .map(|r| format!("{} {} {}", r.verb, r.resource, r.uri))
        .collect();
    assert!(forbidden.is_empty(), "denied requests: {forbidden:?}");

    // A restart: no second Job, no second re-creation, and the next change still works.
    controller.kill();
    let controller = Controller::start(&cluster, &identity, &ns, &["--namespaces", &ns]).await;
    barrier(&client, &ns, "2").await;
    let after_restart = nightly_jobs(&jobs).await;
    assert_eq!(
        after_restart.iter().map(uid).collect::<Vec<_>>(),
        vec![uid(&created)],
        "no second Job after a restart"
    );
    assert_eq!(
        uid(&jobs.get("migrate").await.unwrap()),
        uid(&recreated),
        "the Job is not re-created again after a restart"
    );
    set_configmap(&client, &ns, "cfg", json!({"v": "3"})).await;
    eventually("a second Job for the second change", || async {
        match nightly_jobs(&jobs).await.len() {
            2 => Ok(()),
            n => Err(format!("{n} Jobs")),
        }
    })
    .await;
    let third = eventually("the Job re-created for the second change", || async {
        match jobs.get_opt("migrate").await.map_err(|e| e.to_string())? {
            Some(job) if uid(&job) != uid(&recreated) => Ok(job),
            _ => Err("not yet".to_owned()),
        }
    })
    .await;
    barrier(&client, &ns, "3").await;
    assert_eq!(
        nightly_jobs(&jobs).await.len(),
        2,
        "exactly one Job per change"
    );
    assert_eq!(
        uid(&jobs.get("migrate").await.unwrap()),
        uid(&third),
        "re-created once per change"
    );
    let log = controller.stop();
    assert!(
        !log.contains("missing RBAC permission"),
        "every gap of upstream's ClusterRole is worked around:\n{log}"
    );
}

/// The older rule set of upstream's static manifest: the apps kinds reload; CronJobs and Jobs
/// (no rules at all) are reported and skipped, as are Events; nothing stops.
#[tokio::test]
async fn upstream_static_manifest_rules_reload_the_apps_kinds() {
    let (cluster, ns, client) = setup("swap-old").await;
    create::<ConfigMap>(&client, &ns, configmap("cfg", json!({"v": "1"}))).await;
    create::<Secret>(
        &client,
        &ns,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sec"}, "stringData": {"password": "one"}}),
    )
    .await;
    create_apps(&client, &ns).await;
    let identity = identity_with_rules(&cluster, &ns, upstream_manifest_rules()).await;
    let controller = Controller::start(&cluster, &identity, &ns, &["--namespaces", &ns]).await;
    let (_, ready) = controller.get("/ready").await.unwrap();
    assert!(
        ready.contains("degraded: no watch on Deployment"),
        "{ready}"
    );
    set_configmap(&client, &ns, "cfg", json!({"v": "2"})).await;
    let cfg = wait_all_apps(&client, &ns, "STAKATER_CFG_CONFIGMAP", None).await;
    assert_eq!(cfg, sha1("v=2"));
    set_secret(&client, &ns, "two").await;
    wait_all_apps(&client, &ns, "STAKATER_SEC_SECRET", None).await;
    let log = controller.stop();
    for expected in [
        "kube-reloader may not list/watch/patch cronjobs",
        "kube-reloader may not create events",
    ] {
        assert!(
            log.contains(expected),
            "{expected:?} not in the log:\n{log}"
        );
    }
}

/// Without `patch` on Jobs nothing holds the old Job for us, and without `watch` we do not see
/// it go: a Job another finalizer keeps in deletion is created again once it is gone, once.
#[tokio::test]
async fn under_upstreams_rules_a_lingering_job_is_recreated_once_it_is_gone() {
    let (cluster, ns, client) = setup("swap-job").await;
    create::<ConfigMap>(&client, &ns, configmap("cfg", json!({"v": "1"}))).await;
    create::<ConfigMap>(&client, &ns, configmap("barrier", json!({"round": "0"}))).await;
    create::<Deployment>(
        &client,
        &ns,
        deployment(
            "sentinel",
            json!({"configmap.reloader.stakater.com/reload": "barrier"}),
            json!({"containers": [{"name": "app", "image": "registry.invalid/app"}]}),
        ),
    )
    .await;
    let original = create::<Job>(
        &client,
        &ns,
        json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "migrate", "finalizers": ["example.com/hold"],
                         "annotations": {"configmap.reloader.stakater.com/reload": "cfg"}},
            "spec": {"suspend": true, "template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "task", "image": "registry.invalid/task",
                                "envFrom": [{"configMapRef": {"name": "cfg"}}]}]}}}}),
    )
    .await;
    let identity = identity_with_rules(&cluster, &ns, upstream_chart_rules()).await;
    let controller = Controller::start(&cluster, &identity, &ns, &["--namespaces", &ns]).await;
    barrier(&client, &ns, "1").await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);

    set_configmap(&client, &ns, "cfg", json!({"v": "2"})).await;
    eventually("the old Job to be deleted (and held)", || async {
        let job = jobs.get("migrate").await.map_err(|e| e.to_string())?;
        match (
            &job.metadata.deletion_timestamp,
            uid(&job) == uid(&original),
        ) {
            (Some(_), true) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    jobs.patch(
        "migrate",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    let recreated = eventually("the Job created again once the old one is gone", || async {
        match jobs.get_opt("migrate").await.map_err(|e| e.to_string())? {
            Some(job) if uid(&job) != uid(&original) => Ok(job),
            _ => Err("not yet".to_owned()),
        }
    })
    .await;
    let env = env_var(
        &serde_json::to_value(&recreated).unwrap()["spec"]["template"],
        "STAKATER_CFG_CONFIGMAP",
    );
    assert_eq!(env.as_deref(), Some(sha1("v=2").as_str()));
    barrier(&client, &ns, "2").await;
    assert_eq!(
        uid(&jobs.get("migrate").await.unwrap()),
        uid(&recreated),
        "re-created once"
    );
    controller.stop();
}
