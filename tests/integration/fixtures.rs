//! Builders and readers shared by the reload tests.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event, PodTemplateSpec};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use kube_reloader::model::digest;
use kube_reloader::model::ledger::LEDGER_ANNOTATION;
use kube_reloader_testenv::{ClusterInfo, Tier};
use serde_json::{Value, json};

use crate::support::{cluster, eventually};

/// Upstream's digest of ConfigMap data written as `k=v;k=v` (Secret data hashes the same).
pub fn sha1(entries: &str) -> String {
    let pairs: Vec<(&str, &str)> = entries
        .split(';')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap())
        .collect();
    digest::configmap_data(pairs, []).to_string()
}

pub async fn create<K>(client: &Client, ns: &str, manifest: Value) -> K
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let object: K = serde_json::from_value(manifest).unwrap();
    Api::<K>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &object)
        .await
        .unwrap()
}

pub fn deployment(name: &str, annotations: Value, pod_spec: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec}
        }
    })
}

/// Creates a Deployment with one container "app" that names `configmap` in
/// `configmap.reloader.stakater.com/reload` (and does not reference it).
pub async fn named_deployment(
    client: &Client,
    ns: &str,
    name: &str,
    configmap: &str,
) -> Deployment {
    create::<Deployment>(
        client,
        ns,
        deployment(
            name,
            json!({"configmap.reloader.stakater.com/reload": configmap}),
            json!({"containers": [{"name": "app", "image": "registry.invalid/app"}]}),
        ),
    )
    .await
}

pub fn configmap(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

/// A Secret manifest with `string_data` (the API server folds it into `data`).
pub fn secret(name: &str, string_data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": string_data})
}

/// Merges `string_data` into Secret `name`.
pub async fn set_secret(client: &Client, ns: &str, name: &str, string_data: Value) {
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": string_data})),
        )
        .await
        .unwrap();
}

pub async fn set_configmap(client: &Client, ns: &str, name: &str, data: Value) {
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"data": data})),
        )
        .await
        .unwrap();
}

pub fn env_of(deployment: &Deployment, container: &str) -> Vec<(String, String)> {
    template_env(&deployment.spec.as_ref().unwrap().template, container)
}

/// The `STAKATER_*` env vars of `container` in a pod template (Deployments, Jobs, ...).
pub fn template_env(template: &PodTemplateSpec, container: &str) -> Vec<(String, String)> {
    template
        .spec
        .as_ref()
        .unwrap()
        .containers
        .iter()
        .filter(|c| c.name == container)
        .flat_map(|c| c.env.clone().unwrap_or_default())
        .filter(|e| e.name.starts_with("STAKATER_"))
        .map(|e| (e.name, e.value.unwrap_or_default()))
        .collect()
}

/// The pod template: a rollout happens exactly when it changes. (A Deployment's generation
/// also moves on metadata annotation changes, so it is no rollout signal.)
pub fn template_of(deployment: &Deployment) -> Value {
    serde_json::to_value(&deployment.spec.as_ref().unwrap().template).unwrap()
}

pub fn ledger_of(deployment: &Deployment) -> Option<Value> {
    deployment
        .metadata
        .annotations
        .as_ref()?
        .get(LEDGER_ANNOTATION)
        .map(|l| serde_json::from_str(l).unwrap())
}

pub async fn wait_deployment<F>(
    api: &Api<Deployment>,
    name: &str,
    what: &str,
    check: F,
) -> Deployment
where
    F: Fn(&Deployment) -> bool,
{
    eventually(what, || async {
        let d = api.get(name).await.map_err(|e| e.to_string())?;
        if check(&d) {
            Ok(d)
        } else {
            Err(format!(
                "{:?} / {:?}",
                d.metadata.annotations,
                d.spec.as_ref().map(|s| &s.template)
            ))
        }
    })
    .await
}

/// Waits until `container` of Deployment `name` carries a STAKATER_* env var (a reload).
pub async fn wait_env(
    api: &Api<Deployment>,
    name: &str,
    container: &str,
    what: &str,
) -> Deployment {
    wait_deployment(api, name, what, |d| !env_of(d, container).is_empty()).await
}

pub async fn events(client: &Client, ns: &str) -> Vec<Event> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
}

/// Waits for an Event in `ns` that satisfies `check`.
pub async fn wait_event(
    client: &Client,
    ns: &str,
    what: &str,
    check: impl Fn(&Event) -> bool,
) -> Event {
    eventually(what, || async {
        let all = events(client, ns).await;
        let count = all.len();
        all.into_iter()
            .find(|e| check(e))
            .ok_or_else(|| format!("none among {count} Events"))
    })
    .await
}

pub async fn setup(prefix: &str) -> (ClusterInfo, String, Client) {
    let cluster = cluster(Tier::A).await;
    let ns = cluster.create_namespace(prefix).await.unwrap();
    let client = cluster.client().await.unwrap();
    (cluster, ns, client)
}
