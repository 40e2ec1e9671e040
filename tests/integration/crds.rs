//! Minimal structural CRDs for the custom kinds kube-reloader reloads (our own, not the
//! projects' real ones: only the group, versions, names and an open schema matter here), and
//! dynamic clients for them.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde_json::json;

use crate::support::eventually;

/// One custom kind: group, version, kind, plural.
pub struct Kind(
    pub &'static str,
    pub &'static str,
    pub &'static str,
    pub &'static str,
);

pub const ROLLOUT: Kind = Kind("argoproj.io", "v1alpha1", "Rollout", "rollouts");
pub const DEPLOYMENT_CONFIG: Kind = Kind(
    "apps.openshift.io",
    "v1",
    "DeploymentConfig",
    "deploymentconfigs",
);
pub const SPC: Kind = Kind(
    "secrets-store.csi.x-k8s.io",
    "v1",
    "SecretProviderClass",
    "secretproviderclasses",
);
pub const SPC_POD_STATUS: Kind = Kind(
    "secrets-store.csi.x-k8s.io",
    "v1",
    "SecretProviderClassPodStatus",
    "secretproviderclasspodstatuses",
);

impl Kind {
    pub fn resource(&self) -> ApiResource {
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(self.0, self.1, self.2), self.3)
    }

    pub fn api(&self, client: &Client, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), ns, &self.resource())
    }
}

/// Installs the CRD of `kind` (if absent) and waits until the API server serves it.
pub async fn install(client: &Client, kind: &Kind) {
    let Kind(group, version, name, plural) = kind;
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": {"kind": name, "plural": plural, "singular": name.to_lowercase(), "listKind": format!("{name}List")},
            "versions": [{"name": version, "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
        }
    }))
    .unwrap();
    match Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &crd)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(e) => panic!("cannot create the {plural} CRD: {e}"),
    }
    let api_version = format!("{group}/{version}");
    eventually(&format!("{plural}.{group} to be served"), || async {
        match client.list_api_group_resources(&api_version).await {
            Ok(list) if list.resources.iter().any(|r| r.name == *plural) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

/// Creates a custom object from a manifest.
pub async fn create(
    client: &Client,
    ns: &str,
    kind: &Kind,
    manifest: serde_json::Value,
) -> DynamicObject {
    let object: DynamicObject = serde_json::from_value(manifest).unwrap();
    kind.api(client, ns)
        .create(&PostParams::default(), &object)
        .await
        .unwrap()
}
