//! Projections of the workloads we may reload: only what a decision and a patch need.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use kube::Resource;
use serde::de::DeserializeOwned;

use crate::model::patch::{POD_TEMPLATE, TemplatePath};
use crate::model::policy::WorkloadKind;

/// Identity of a workload.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadKey {
    /// Its kind.
    pub kind: WorkloadKind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl std::fmt::Display for WorkloadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind.as_str(), self.namespace, self.name)
    }
}

/// What we keep of a workload.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadView {
    /// Identity.
    pub key: WorkloadKey,
    /// UID, for Event references.
    pub uid: String,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// Pod template annotations.
    pub template_annotations: BTreeMap<String, String>,
    /// Pod template spec (containers, volumes).
    pub pod_spec: PodSpec,
}

/// A workload kind we watch, with where its pod template lives.
pub trait WorkloadResource:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// The kind.
    const KIND: WorkloadKind;
    /// Path of the pod template for patches.
    const TEMPLATE_PATH: TemplatePath;
    /// The pod template.
    fn template(&self) -> Option<&PodTemplateSpec>;
}

impl WorkloadResource for Deployment {
    const KIND: WorkloadKind = WorkloadKind::Deployment;
    const TEMPLATE_PATH: TemplatePath = POD_TEMPLATE;
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
}

impl WorkloadResource for StatefulSet {
    const KIND: WorkloadKind = WorkloadKind::StatefulSet;
    const TEMPLATE_PATH: TemplatePath = POD_TEMPLATE;
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
}

impl WorkloadResource for DaemonSet {
    const KIND: WorkloadKind = WorkloadKind::DaemonSet;
    const TEMPLATE_PATH: TemplatePath = POD_TEMPLATE;
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
}

/// Builds the projection; `None` for objects without namespace or name.
pub fn project<K: WorkloadResource>(object: &K) -> Option<WorkloadView> {
    let meta = object.meta();
    let template = object.template();
    Some(WorkloadView {
        key: WorkloadKey {
            kind: K::KIND,
            namespace: meta.namespace.clone()?,
            name: meta.name.clone()?,
        },
        uid: meta.uid.clone().unwrap_or_default(),
        annotations: meta.annotations.clone().unwrap_or_default(),
        template_annotations: template
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.annotations.clone())
            .unwrap_or_default(),
        pod_spec: template.and_then(|t| t.spec.clone()).unwrap_or_default(),
    })
}

/// Every watched workload, by key.
#[derive(Debug, Default)]
pub struct WorkloadCache {
    map: RwLock<HashMap<WorkloadKey, Arc<WorkloadView>>>,
}

impl WorkloadCache {
    /// Stores a projection; returns false when nothing we read changed.
    pub fn upsert(&self, view: WorkloadView) -> bool {
        let mut map = self.write();
        if map.get(&view.key).is_some_and(|old| **old == view) {
            return false;
        }
        map.insert(view.key.clone(), Arc::new(view));
        true
    }

    /// Forgets a workload.
    pub fn remove(&self, key: &WorkloadKey) {
        self.write().remove(key);
    }

    /// Replaces all workloads of `kind` (in `namespace`, or everywhere) after a (re)list.
    pub fn replace(&self, kind: WorkloadKind, namespace: Option<&str>, fresh: Vec<WorkloadView>) {
        let mut map = self.write();
        map.retain(|key, _| key.kind != kind || namespace.is_some_and(|n| n != key.namespace));
        for view in fresh {
            map.insert(view.key.clone(), Arc::new(view));
        }
    }

    /// One workload.
    pub fn get(&self, key: &WorkloadKey) -> Option<Arc<WorkloadView>> {
        self.read().get(key).cloned()
    }

    /// Keys of the workloads in `namespace`.
    pub fn keys_in(&self, namespace: &str) -> Vec<WorkloadKey> {
        self.read()
            .keys()
            .filter(|k| k.namespace == namespace)
            .cloned()
            .collect()
    }

    /// All keys.
    pub fn keys(&self) -> Vec<WorkloadKey> {
        self.read().keys().cloned().collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<WorkloadKey, Arc<WorkloadView>>> {
        self.map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<WorkloadKey, Arc<WorkloadView>>> {
        self.map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
