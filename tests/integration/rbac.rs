//! Restricted identities see real RBAC: denied until a binding grants exactly what they need.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams, PostParams};
use kube_reloader_testenv::Tier;
use serde_json::json;

use crate::support::{cluster, eventually};

/// The HTTP status of an API call: 200, the API error's code, or None for other errors.
pub fn status_code<T>(result: &Result<T, kube::Error>) -> Option<u16> {
    match result {
        Ok(_) => Some(200),
        Err(kube::Error::Api(status)) => Some(status.code),
        Err(_) => None,
    }
}

#[tokio::test]
async fn service_account_is_forbidden_until_a_role_binding_grants_access() {
    let cluster = cluster(Tier::A).await;
    let ns = cluster.create_namespace("rbac").await.unwrap();
    let identity = cluster.service_account(&ns, "reader").await.unwrap();
    assert_eq!(identity.user, format!("system:serviceaccount:{ns}:reader"));

    let restricted = cluster.client_as(&identity).await.unwrap();
    let configmaps: Api<ConfigMap> = Api::namespaced(restricted.clone(), &ns);
    let denied = configmaps.list(&ListParams::default()).await;
    assert_eq!(status_code(&denied), Some(403), "{denied:?}");

    let admin = cluster.client().await.unwrap();
    let role: Role = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "configmap-reader"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}]
    }))
    .unwrap();
    Api::<Role>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "configmap-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "configmap-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}]
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(admin, &ns)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();

    // RBAC is served from an informer cache: the grant lands within moments, so poll.
    eventually("the RoleBinding to allow listing ConfigMaps", || async {
        match configmaps.list(&ListParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;

    // Exactly what was granted: Secrets stay forbidden, and so do other namespaces.
    let secrets = Api::<Secret>::namespaced(restricted.clone(), &ns)
        .list(&ListParams::default())
        .await;
    assert_eq!(status_code(&secrets), Some(403), "{secrets:?}");
    let elsewhere = Api::<ConfigMap>::namespaced(restricted, "default")
        .list(&ListParams::default())
        .await;
    assert_eq!(status_code(&elsewhere), Some(403), "{elsewhere:?}");
}
