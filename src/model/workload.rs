//! What kube-reloader knows of a workload: its identity and the projection a decision and a
//! write need (annotations, pod template, a few kind-specific fields). Built by the watchers,
//! read by the planner; plain data.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobTemplateSpec};
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};

use crate::model::ObjectName;
use crate::model::annotations::Annotations;
use crate::model::ledger::RECREATE_FINALIZER;

/// Workload kinds, named as upstream names them in Events and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum WorkloadKind {
    /// apps/v1 Deployment.
    #[default]
    Deployment,
    /// apps/v1 DaemonSet.
    DaemonSet,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// batch/v1 CronJob.
    CronJob,
    /// batch/v1 Job.
    Job,
    /// argoproj.io/v1alpha1 Rollout.
    Rollout,
    /// apps.openshift.io/v1 DeploymentConfig.
    DeploymentConfig,
}

impl WorkloadKind {
    /// The Kubernetes kind name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deployment => "Deployment",
            Self::DaemonSet => "DaemonSet",
            Self::StatefulSet => "StatefulSet",
            Self::CronJob => "CronJob",
            Self::Job => "Job",
            Self::Rollout => "Rollout",
            Self::DeploymentConfig => "DeploymentConfig",
        }
    }
}

/// Metadata annotations left out of the projection: no decision reads them, and kubectl's
/// client-side apply (also Argo CD's default) stores a copy of the whole object there, often
/// the largest part of a workload's metadata. Our writes touch only our own keys, so leaving
/// them out can never remove them.
pub const UNREAD_ANNOTATIONS: &[&str] = &[LAST_APPLIED_CONFIGURATION];

/// Where `kubectl apply` (client-side) keeps the object as last applied.
pub const LAST_APPLIED_CONFIGURATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// `annotations` without [`UNREAD_ANNOTATIONS`].
pub fn read_annotations(annotations: Option<&BTreeMap<String, String>>) -> Annotations {
    annotations
        .into_iter()
        .flatten()
        .filter(|(key, _)| !UNREAD_ANNOTATIONS.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// Identity of a workload.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct WorkloadKey {
    /// Its kind.
    pub kind: WorkloadKind,
    /// Its namespace.
    pub namespace: ObjectName,
    /// Its name.
    pub name: ObjectName,
}

impl std::fmt::Display for WorkloadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind.as_str(), self.namespace, self.name)
    }
}

/// A pod spec on the heap, absent when empty: k8s-openapi's `PodSpec` is a 1.5 KiB struct of
/// inline options, and the workload store keeps each view without its spec (which it holds
/// packed). Reads as the empty spec when absent.
#[derive(Debug, Clone, Default)]
pub struct BoxedPodSpec(Option<Box<PodSpec>>);

impl PartialEq for BoxedPodSpec {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl From<PodSpec> for BoxedPodSpec {
    fn from(spec: PodSpec) -> Self {
        Self((spec != PodSpec::default()).then(|| Box::new(spec)))
    }
}

impl std::ops::DerefMut for BoxedPodSpec {
    fn deref_mut(&mut self) -> &mut PodSpec {
        self.0.get_or_insert_default()
    }
}

impl<'de> serde::Deserialize<'de> for BoxedPodSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        PodSpec::deserialize(deserializer).map(Self::from)
    }
}

impl std::ops::Deref for BoxedPodSpec {
    type Target = PodSpec;

    fn deref(&self) -> &PodSpec {
        static EMPTY: std::sync::LazyLock<PodSpec> = std::sync::LazyLock::new(PodSpec::default);
        self.0.as_deref().unwrap_or(&EMPTY)
    }
}

/// What we keep of a workload.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WorkloadView {
    /// Identity.
    pub key: WorkloadKey,
    /// UID, for Event references and write preconditions.
    pub uid: String,
    /// `metadata.annotations` (without [`UNREAD_ANNOTATIONS`]).
    pub annotations: Annotations,
    /// Pod template annotations.
    pub template_annotations: Annotations,
    /// Pod template spec (containers, volumes).
    pub pod_spec: BoxedPodSpec,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// `metadata.creationTimestamp`, in Unix seconds.
    pub created_at: Option<i64>,
    /// CronJobs only: the job template, from which a reload creates a Job (boxed: the
    /// struct is 2.4 KiB, and most workloads are not CronJobs).
    pub job_template: Option<Box<JobTemplateSpec>>,
    /// Jobs only: the Job itself (without status and managed fields), from which a reload
    /// re-creates it.
    pub job: Option<Box<Job>>,
    /// Deployments only: `spec.paused`.
    pub paused: bool,
    /// How far its latest rollout has got (kinds with a rollout status: Deployments,
    /// StatefulSets, DaemonSets, Jobs), for the rollout governor.
    pub progress: Option<crate::model::governor::Progress>,
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
                annotations: Some(self.template_annotations.to_map()),
                ..Default::default()
            }),
            spec: Some(PodSpec::clone(&self.pod_spec)),
        }
    }

    /// A Job we deleted for a reload and must create again (our finalizer holds it).
    pub fn recreating(&self) -> bool {
        self.deleting && self.held_for_recreation()
    }

    /// A Job carrying our re-creation finalizer: a re-creation was started (deleted already,
    /// or about to be, if the process stopped between the finalizer and the delete).
    pub fn held_for_recreation(&self) -> bool {
        self.job.as_ref().is_some_and(|job| {
            job.metadata
                .finalizers
                .iter()
                .flatten()
                .any(|f| f == RECREATE_FINALIZER)
        })
    }
}
