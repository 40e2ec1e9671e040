//! Minimal typed views of the custom workload kinds we reload: Argo Rollouts and OpenShift
//! DeploymentConfigs. Only the fields a decision or a patch needs are modelled; everything else
//! in the object is ignored when reading and never written back (patches are merge patches that
//! name only our markers).

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// `argoproj.io/v1alpha1` Rollout.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Rollout {
    /// Standard object metadata.
    pub metadata: ObjectMeta,
    /// The parts of the spec we read.
    #[serde(default)]
    pub spec: Option<RolloutSpec>,
    /// Its status, read loosely (the rollout governor's progress; field types vary across
    /// Argo versions, so a mismatch never fails the decode).
    #[serde(default, skip_serializing)]
    pub status: Option<serde_json::Value>,
}

/// The parts of a Rollout spec we read.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RolloutSpec {
    /// The pod template, absent when `workloadRef` is used.
    #[serde(default)]
    pub template: Option<PodTemplateSpec>,
    /// A Deployment whose pod template the Rollout uses instead of its own.
    #[serde(default, rename = "workloadRef")]
    pub workload_ref: Option<WorkloadRef>,
    /// Desired replicas (default 1).
    #[serde(default)]
    pub replicas: Option<i32>,
}

/// `spec.workloadRef` of a Rollout.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct WorkloadRef {
    /// API version of the referenced workload (`apps/v1`).
    #[serde(default, rename = "apiVersion")]
    pub api_version: Option<String>,
    /// Kind of the referenced workload (`Deployment`).
    #[serde(default)]
    pub kind: Option<String>,
    /// Name of the referenced workload, in the Rollout's namespace.
    #[serde(default)]
    pub name: Option<String>,
}

/// `apps.openshift.io/v1` DeploymentConfig.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct DeploymentConfig {
    /// Standard object metadata.
    pub metadata: ObjectMeta,
    /// The parts of the spec we read.
    #[serde(default)]
    pub spec: Option<DeploymentConfigSpec>,
    /// Its status, read loosely (the rollout governor's progress).
    #[serde(default, skip_serializing)]
    pub status: Option<serde_json::Value>,
}

/// The parts of a DeploymentConfig spec we read.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct DeploymentConfigSpec {
    /// The pod template.
    #[serde(default)]
    pub template: Option<PodTemplateSpec>,
    /// Desired replicas (default 1).
    #[serde(default)]
    pub replicas: Option<i32>,
}

/// `secrets-store.csi.x-k8s.io/v1` SecretProviderClassPodStatus: one per pod and class,
/// updated by the CSI driver when it mounts or rotates the class's objects.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct SecretProviderClassPodStatus {
    /// Standard object metadata.
    pub metadata: ObjectMeta,
    /// What is mounted.
    #[serde(default)]
    pub status: Option<SpcPodStatus>,
}

/// `status` of a SecretProviderClassPodStatus.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct SpcPodStatus {
    /// The SecretProviderClass this status belongs to.
    #[serde(default, rename = "secretProviderClassName")]
    pub secret_provider_class_name: Option<String>,
    /// The mounted objects with their versions.
    #[serde(default)]
    pub objects: Option<Vec<SpcObject>>,
}

/// One mounted object of a SecretProviderClassPodStatus.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct SpcObject {
    /// Object id (provider-specific).
    #[serde(default)]
    pub id: String,
    /// Object version (changes on rotation).
    #[serde(default)]
    pub version: String,
}

/// `secrets-store.csi.x-k8s.io/v1` SecretProviderClass: only its annotations are read
/// (ignore and match, as upstream reads them from the class).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct SecretProviderClass {
    /// Standard object metadata.
    pub metadata: ObjectMeta,
}

macro_rules! custom_resource {
    ($ty:ty, $group:literal, $version:literal, $kind:literal, $plural:literal) => {
        impl k8s_openapi::Resource for $ty {
            const API_VERSION: &'static str = concat!($group, "/", $version);
            const GROUP: &'static str = $group;
            const KIND: &'static str = $kind;
            const VERSION: &'static str = $version;
            const URL_PATH_SEGMENT: &'static str = $plural;
            type Scope = k8s_openapi::NamespaceResourceScope;
        }

        impl k8s_openapi::Metadata for $ty {
            type Ty = ObjectMeta;
            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

custom_resource!(Rollout, "argoproj.io", "v1alpha1", "Rollout", "rollouts");
custom_resource!(
    DeploymentConfig,
    "apps.openshift.io",
    "v1",
    "DeploymentConfig",
    "deploymentconfigs"
);
custom_resource!(
    SecretProviderClassPodStatus,
    "secrets-store.csi.x-k8s.io",
    "v1",
    "SecretProviderClassPodStatus",
    "secretproviderclasspodstatuses"
);
custom_resource!(
    SecretProviderClass,
    "secrets-store.csi.x-k8s.io",
    "v1",
    "SecretProviderClass",
    "secretproviderclasses"
);

#[cfg(test)]
mod tests {
    use super::*;
    use kube::Resource;

    #[test]
    fn rollout_with_workload_ref_reads_without_a_template() {
        let rollout: Rollout = serde_json::from_value(serde_json::json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "web", "namespace": "team"},
            "spec": {"replicas": 2, "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "strategy": {"canary": {"steps": [{"setWeight": 20}]}}}
        }))
        .unwrap();
        let spec = rollout.spec.unwrap();
        assert!(spec.template.is_none());
        assert_eq!(spec.workload_ref.unwrap().name.as_deref(), Some("web"));
        assert_eq!(
            Rollout::url_path(&(), Some("team")),
            "/apis/argoproj.io/v1alpha1/namespaces/team/rollouts"
        );
        assert_eq!(
            DeploymentConfig::url_path(&(), Some("x")),
            "/apis/apps.openshift.io/v1/namespaces/x/deploymentconfigs"
        );
    }
}
