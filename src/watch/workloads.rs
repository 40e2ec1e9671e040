//! Workload watchers: one generic watch loop per kind and namespace that keeps the workload
//! store current, decodes tolerantly (one object that does not fit our types is reported and
//! skipped, it never fails the list), and tells the reconciler what changed.

use std::borrow::Cow;
use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use crate::model::workload::{WorkloadKey, WorkloadKind, WorkloadView, read_annotations};
use crate::reconcile::Context;
use crate::reconcile::sync::Watched;
use crate::watch::scoped_api;

/// A workload kind we watch: its Kubernetes type and how it projects into a [`WorkloadView`].
pub trait WorkloadResource:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
    /// The kind.
    const KIND: WorkloadKind;
    /// Whether the API server takes strategic-merge patches for it (built-in kinds do,
    /// custom resources do not).
    const STRATEGIC: bool = true;
    /// The pod template.
    fn template(&self) -> Option<&PodTemplateSpec>;
    /// Fills the kind-specific fields of the projection.
    fn project_into(&self, _view: &mut WorkloadView) {}
}

/// Builds the projection; `None` for objects without namespace or name.
pub fn project<K: WorkloadResource>(object: &K) -> Option<WorkloadView> {
    let meta = object.meta();
    let template = object.template();
    let mut view = WorkloadView {
        key: WorkloadKey {
            kind: K::KIND,
            namespace: meta.namespace.as_deref()?.into(),
            name: meta.name.as_deref()?.into(),
        },
        uid: meta.uid.clone().unwrap_or_default(),
        annotations: read_annotations(meta.annotations.as_ref()),
        template_annotations: template
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        pod_spec: template
            .and_then(|t| t.spec.clone())
            .unwrap_or_default()
            .into(),
        deleting: meta.deletion_timestamp.is_some(),
        created_at: meta.creation_timestamp.as_ref().map(|t| t.0.as_second()),
        ..WorkloadView::default()
    };
    object.project_into(&mut view);
    Some(view)
}

/// The object's resourceVersion as a number, when it is one (it is an etcd revision on every
/// real API server); used only to drop a watch event older than what we already hold.
pub fn resource_version<K: Resource>(object: &K) -> Option<u64> {
    object.meta().resource_version.as_deref()?.parse().ok()
}

/// An object as listed or watched: decoded into `K`, or, when it does not fit `K` (a custom
/// resource with an unexpected field type), its metadata and the decode error.
#[derive(Debug, Clone)]
pub struct Lenient<K> {
    /// The decoded object, or why it could not be decoded.
    pub object: Result<K, String>,
    meta: ObjectMeta,
}

impl<'de, K: DeserializeOwned> Deserialize<'de> for Lenient<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // The object's JSON text is captured as is (one copy, no JSON tree), then decoded.
        let raw = Box::<serde_json::value::RawValue>::deserialize(deserializer)?;
        match serde_json::from_str::<K>(raw.get()) {
            Ok(object) => Ok(Self {
                object: Ok(object),
                meta: ObjectMeta::default(),
            }),
            Err(error) => {
                #[derive(Deserialize)]
                struct MetadataOnly {
                    #[serde(default)]
                    metadata: ObjectMeta,
                }
                let meta = serde_json::from_str::<MetadataOnly>(raw.get())
                    .map(|m| m.metadata)
                    .unwrap_or_default();
                // Only the kind of error and its position: the message quotes the offending
                // value, and a pod spec may hold inline credentials.
                Ok(Self {
                    object: Err(format!(
                        "{:?} error at line {} column {}",
                        error.classify(),
                        error.line(),
                        error.column()
                    )),
                    meta,
                })
            }
        }
    }
}

impl<K: Resource<DynamicType = ()>> Resource for Lenient<K> {
    type DynamicType = ();
    type Scope = K::Scope;
    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        match &self.object {
            Ok(object) => object.meta(),
            Err(_) => &self.meta,
        }
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match &mut self.object {
            Ok(object) => object.meta_mut(),
            Err(_) => &mut self.meta,
        }
    }
}

/// What one listed or watched object means for the store.
pub(crate) enum Seen {
    View(Box<WorkloadView>, Option<u64>),
    Undecodable(WorkloadKey),
    Nameless,
}

/// Projects one object; an object that does not decode is reported (once) and comes back as
/// [`Seen::Undecodable`].
pub(crate) async fn seen<K: WorkloadResource>(ctx: &Context, object: &Lenient<K>) -> Seen {
    match &object.object {
        Ok(decoded) => match project(decoded) {
            Some(view) => Seen::View(Box::new(view), resource_version(decoded)),
            None => Seen::Nameless,
        },
        Err(error) => {
            let meta = &object.meta;
            let (Some(namespace), Some(name)) = (meta.namespace.clone(), meta.name.clone()) else {
                return Seen::Nameless;
            };
            let key = WorkloadKey {
                kind: K::KIND,
                namespace: namespace.into(),
                name: name.into(),
            };
            ctx.report
                .undecodable(&key, meta, &K::api_version(&()), error)
                .await;
            Seen::Undecodable(key)
        }
    }
}

/// Watches one kind in `namespace` (or everywhere) until the process stops. Returns only when
/// the API stops serving the kind (its CRD was removed), which the supervisor reports.
pub async fn run<K: WorkloadResource>(ctx: Arc<Context>, namespace: Option<String>) {
    let api: Api<Lenient<K>> = scoped_api(&ctx.client, namespace.as_deref());
    let watched = Watched::Kind(K::KIND, namespace.clone());
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut fresh = Vec::new();
    let mut first = true;
    let mut missing_api = 0u32;
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Init) => fresh.clear(),
            Ok(watcher::Event::InitApply(object)) => {
                missing_api = 0;
                if let Seen::View(view, version) = seen(&ctx, &object).await {
                    ctx.kinds.observe(&view, true);
                    fresh.push(ctx.workloads.fresh(*view, version));
                }
            }
            Ok(watcher::Event::InitDone) => {
                missing_api = 0;
                let keys: Vec<WorkloadKey> = fresh.iter().map(|f| f.key().clone()).collect();
                let vanished = ctx.workloads.replace(
                    K::KIND,
                    namespace.as_deref(),
                    std::mem::take(&mut fresh),
                );
                for view in &vanished {
                    ctx.kinds.observe(view, false);
                }
                if std::mem::replace(&mut first, false) {
                    ctx.synced(&watched);
                } else {
                    // Deleted during a watch gap: a kind may hold work for them.
                    for key in keys
                        .into_iter()
                        .chain(vanished.iter().map(|v| v.key.clone()))
                    {
                        ctx.workload_changed(&key);
                    }
                }
                crate::ops::memory::release_free_memory();
            }
            Ok(watcher::Event::Apply(object)) => match seen(&ctx, &object).await {
                Seen::View(view, version) => {
                    ctx.kinds.observe(&view, true);
                    let key = view.key.clone();
                    if ctx.workloads.upsert(*view, version) {
                        ctx.workload_changed(&key);
                    }
                }
                Seen::Undecodable(key) => ctx.workloads.forget(&key),
                Seen::Nameless => {}
            },
            Ok(watcher::Event::Delete(object)) => {
                if let Ok(decoded) = &object.object
                    && let Some(view) = project(decoded)
                {
                    ctx.kinds.observe(&view, false);
                    ctx.workloads.remove(&view.key, &view.uid);
                    // A kind may hold work for it (a Job to create in place of this one).
                    ctx.enqueue(view.key.clone());
                }
            }
            Err(e) => {
                if is_not_served(&e) {
                    missing_api += 1;
                    // A CRD removed while we run: the kind is gone until a restart
                    // rediscovers the APIs. Exit, so the supervisor fails /live.
                    if missing_api >= 3 {
                        tracing::error!(
                            kind = K::KIND.as_str(),
                            "the API server no longer serves {}; stopping its watch (restart \
                             kube-reloader after reinstalling the API, or to stop watching it)",
                            K::plural(&())
                        );
                        return;
                    }
                }
                tracing::warn!(kind = K::KIND.as_str(), error = %e, "watch error; retrying with backoff")
            }
        }
    }
}

/// Whether a watch error says the resource is not served (404 on the list or watch).
fn is_not_served(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status)) => status.code == 404,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;
    use serde_json::json;

    #[test]
    fn the_projection_leaves_out_kubectls_copy_of_the_object() {
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "team", "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{\"kind\":\"Deployment\"}",
                "reloader.stakater.com/auto": "true"}},
            "spec": {"selector": {}, "template": {"spec": {"containers": []}}}
        }))
        .unwrap();
        let view = project(&deployment).unwrap();
        assert_eq!(
            view.annotations.keys().collect::<Vec<_>>(),
            ["reloader.stakater.com/auto"]
        );
    }

    #[test]
    fn lenient_keeps_the_metadata_of_an_object_that_does_not_decode() {
        let good: Lenient<Deployment> = serde_json::from_str(
            &json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "team"},
                "spec": {"selector": {}, "template": {"spec": {"containers": []}}}
            })
            .to_string(),
        )
        .unwrap();
        assert!(good.object.is_ok());
        assert_eq!(good.meta().name.as_deref(), Some("web"));
        let bad: Lenient<Deployment> = serde_json::from_str(
            &json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "broken", "namespace": "team", "uid": "u1"},
                "spec": {"template": "not an object"}
            })
            .to_string(),
        )
        .unwrap();
        assert!(bad.object.is_err());
        assert_eq!(bad.meta().uid.as_deref(), Some("u1"));
        let list: kube::core::ObjectList<Lenient<Deployment>> = serde_json::from_str(&json!({
            "metadata": {}, "items": [
                {"metadata": {"name": "a", "namespace": "n"}, "spec": {"selector": {}, "template": {}}},
                {"metadata": {"name": "b", "namespace": "n"}, "spec": 7}
            ]
        }).to_string())
        .unwrap();
        assert_eq!(list.items.len(), 2, "one bad item does not fail the list");
        assert_eq!(Lenient::<Deployment>::plural(&()), "deployments");
    }
}
