//! Projections of the workloads we may reload: only what a decision and a patch need.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job, JobTemplateSpec};
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use kube::Resource;
use serde::de::DeserializeOwned;

use crate::model::patch::{POD_TEMPLATE, TemplatePath};
use crate::model::policy::WorkloadKind;
use crate::watch::custom::{DeploymentConfig, Rollout};

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
    /// CronJobs only: the job template, from which a reload creates a Job.
    pub job_template: Option<JobTemplateSpec>,
    /// Jobs only: the Job itself (without status and managed fields), from which a reload
    /// re-creates it.
    pub job: Option<Box<Job>>,
    /// Deployments only: `spec.paused`.
    pub paused: bool,
    /// Rollouts only: the Deployment named by `spec.workloadRef`, whose pod template the
    /// Rollout runs (`Err` holds an unsupported reference, reported to the user).
    pub workload_ref: Option<Result<String, String>>,
}

impl WorkloadView {
    /// The pod template's container names, in order (what `Change::container` indexes).
    pub fn container_names(&self) -> Vec<&str> {
        self.pod_spec
            .containers
            .iter()
            .map(|c| c.name.as_str())
            .collect()
    }

    /// The pod template as we hold it (spec and annotations; labels are not kept).
    pub fn template(&self) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                annotations: Some(self.template_annotations.clone()),
                ..Default::default()
            }),
            spec: Some(self.pod_spec.clone()),
        }
    }
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
    /// Whether the API server takes strategic-merge patches for it (built-in kinds do,
    /// custom resources do not).
    const STRATEGIC: bool = true;
    /// The pod template.
    fn template(&self) -> Option<&PodTemplateSpec>;
    /// The job template (CronJobs only).
    fn job_template(&self) -> Option<&JobTemplateSpec> {
        None
    }
    /// The Job to keep for re-creation (Jobs only).
    fn job(&self) -> Option<Job> {
        None
    }
    /// `spec.paused` (Deployments only).
    fn paused(&self) -> bool {
        false
    }
    /// `spec.workloadRef` (Rollouts only): the Deployment's name, or why it is unsupported.
    fn workload_ref(&self) -> Option<Result<String, String>> {
        None
    }
}

impl WorkloadResource for Deployment {
    const KIND: WorkloadKind = WorkloadKind::Deployment;
    const TEMPLATE_PATH: TemplatePath = POD_TEMPLATE;
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
    fn paused(&self) -> bool {
        self.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
    }
}

impl WorkloadResource for Job {
    const KIND: WorkloadKind = WorkloadKind::Job;
    const TEMPLATE_PATH: TemplatePath = POD_TEMPLATE;
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
    fn job(&self) -> Option<Job> {
        let mut job = self.clone();
        job.status = None;
        job.metadata.managed_fields = None;
        Some(job)
    }
}

impl WorkloadResource for Rollout {
    const KIND: WorkloadKind = WorkloadKind::Rollout;
    const TEMPLATE_PATH: TemplatePath = POD_TEMPLATE;
    const STRATEGIC: bool = false;
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().and_then(|s| s.template.as_ref())
    }
    fn workload_ref(&self) -> Option<Result<String, String>> {
        let reference = self.spec.as_ref()?.workload_ref.as_ref()?;
        let kind = reference.kind.as_deref().unwrap_or_default();
        match (&reference.name, kind) {
            (Some(name), "Deployment") if !name.is_empty() => Some(Ok(name.clone())),
            (name, kind) => Some(Err(format!(
                "spec.workloadRef names {kind:?} {:?}; kube-reloader follows workloadRef to a Deployment only",
                name.as_deref().unwrap_or_default()
            ))),
        }
    }
}

impl WorkloadResource for DeploymentConfig {
    const KIND: WorkloadKind = WorkloadKind::DeploymentConfig;
    const TEMPLATE_PATH: TemplatePath = POD_TEMPLATE;
    const STRATEGIC: bool = false;
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().and_then(|s| s.template.as_ref())
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

/// Pod template path of CronJobs.
pub const CRONJOB_TEMPLATE: TemplatePath = &["spec", "jobTemplate", "spec", "template"];

impl WorkloadResource for CronJob {
    const KIND: WorkloadKind = WorkloadKind::CronJob;
    const TEMPLATE_PATH: TemplatePath = CRONJOB_TEMPLATE;
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.job_template.spec.as_ref().map(|s| &s.template)
    }
    fn job_template(&self) -> Option<&JobTemplateSpec> {
        Some(&self.spec.job_template)
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
        job_template: object.job_template().cloned(),
        job: object.job().map(Box::new),
        paused: object.paused(),
        workload_ref: object.workload_ref(),
    })
}

/// The object's resourceVersion as a number, when it is one (it is an etcd revision on every
/// real API server); used only to drop a watch event older than what we already hold.
pub fn resource_version<K: Resource>(object: &K) -> Option<u64> {
    object.meta().resource_version.as_deref()?.parse().ok()
}

type Entry = (Arc<WorkloadView>, Option<u64>);

/// Every watched workload, by key, with the resourceVersion it was seen at.
#[derive(Debug, Default)]
pub struct WorkloadCache {
    map: RwLock<HashMap<WorkloadKey, Entry>>,
}

impl WorkloadCache {
    /// Stores a projection seen at `version`; returns false when nothing we read changed or the
    /// projection is older than the one held (e.g. a watch event overtaken by our own PATCH's
    /// response, which is stored at once so the next plan sees what we just wrote).
    pub fn upsert(&self, view: WorkloadView, version: Option<u64>) -> bool {
        let mut map = self.write();
        if let Some((old, old_version)) = map.get_mut(&view.key) {
            if let (Some(new), Some(held)) = (version, *old_version)
                && new < held
            {
                return false;
            }
            if **old == view {
                *old_version = version.or(*old_version);
                return false;
            }
        }
        map.insert(view.key.clone(), (Arc::new(view), version));
        true
    }

    /// Forgets a workload, unless the one held is a newer object of the same name (a Job we
    /// re-created before the watch reported the old one's deletion).
    pub fn remove(&self, key: &WorkloadKey, uid: &str) {
        let mut map = self.write();
        if map.get(key).is_some_and(|(view, _)| view.uid == uid) {
            map.remove(key);
        }
    }

    /// One workload with the resourceVersion it was seen at.
    pub fn get_versioned(&self, key: &WorkloadKey) -> Option<(Arc<WorkloadView>, Option<u64>)> {
        self.read().get(key).cloned()
    }

    /// Replaces all workloads of `kind` (in `namespace`, or everywhere) after a (re)list.
    pub fn replace(
        &self,
        kind: WorkloadKind,
        namespace: Option<&str>,
        fresh: Vec<(WorkloadView, Option<u64>)>,
    ) {
        let mut map = self.write();
        map.retain(|key, _| key.kind != kind || namespace.is_some_and(|n| n != key.namespace));
        for (view, version) in fresh {
            map.insert(view.key.clone(), (Arc::new(view), version));
        }
    }

    /// One workload.
    pub fn get(&self, key: &WorkloadKey) -> Option<Arc<WorkloadView>> {
        self.read().get(key).map(|(view, _)| view.clone())
    }

    /// The workloads in `namespace`.
    pub fn views_in(&self, namespace: &str) -> Vec<Arc<WorkloadView>> {
        self.read()
            .iter()
            .filter(|(k, _)| k.namespace == namespace)
            .map(|(_, (view, _))| view.clone())
            .collect()
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

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<WorkloadKey, Entry>> {
        self.map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<WorkloadKey, Entry>> {
        self.map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
