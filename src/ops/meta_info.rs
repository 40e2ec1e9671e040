//! Upstream's meta-info ConfigMap (`reloader-meta-info` in `RELOADER_NAMESPACE`): build info,
//! the options in effect and the Deployment running us, for support and fleet inventory.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::config::{Scope, Settings};
use crate::model::Strategy;

/// Name of the ConfigMap.
pub const NAME: &str = "reloader-meta-info";
/// Its label (upstream's), so tools can find it.
pub const LABEL: (&str, &str) = ("reloader.stakater.com/meta-info", "reloader");

/// The options in effect, with upstream's camelCase keys. The webhook URL is not written
/// (Slack and Teams URLs carry a token); only whether one is set.
pub fn options(settings: &Settings) -> serde_json::Value {
    let keys = &settings.policy.keys;
    let (namespaces, ignored, selector) = match &settings.scope {
        Scope::Namespaces(list) => (list.clone(), Vec::new(), None),
        Scope::Global { ignored, selector } => (Vec::new(), ignored.clone(), selector.clone()),
    };
    let mut resources_to_ignore = Vec::new();
    if !settings.watch_configmaps {
        resources_to_ignore.push("configmaps");
    }
    if !settings.watch_secrets {
        resources_to_ignore.push("secrets");
    }
    let mut workload_types_to_ignore = Vec::new();
    if settings.policy.ignore_jobs {
        workload_types_to_ignore.push("jobs");
    }
    if settings.policy.ignore_cronjobs {
        workload_types_to_ignore.push("cronjobs");
    }
    json!({
        "autoReloadAll": settings.policy.auto_reload_all,
        "configmapUpdateOnChangeAnnotation": keys.configmap_reload,
        "secretUpdateOnChangeAnnotation": keys.secret_reload,
        "reloaderAutoAnnotation": keys.auto,
        "configmapReloaderAutoAnnotation": keys.configmap_auto,
        "secretReloaderAutoAnnotation": keys.secret_auto,
        "ignoreResourceAnnotation": keys.ignore,
        "autoSearchAnnotation": keys.search,
        "searchMatchAnnotation": keys.search_match,
        "pauseDeploymentAnnotation": keys.pause_period,
        "pauseDeploymentTimeAnnotation": keys.paused_at,
        "logFormat": match settings.log_format { crate::config::LogFormat::Json => "json", crate::config::LogFormat::Text => "" },
        "logLevel": settings.log_level.to_string().to_lowercase(),
        "isArgoRollouts": settings.argo_rollouts,
        "reloadStrategy": match settings.strategy { Strategy::EnvVars => "env-vars", Strategy::Annotations => "annotations" },
        "reloadOnCreate": settings.reload_on_create,
        "reloadOnDelete": settings.reload_on_delete,
        "syncAfterRestart": settings.sync_after_restart,
        "enableHA": settings.lease.is_some(),
        "enableCSIIntegration": settings.csi,
        "enablePProf": settings.diagnostics_addr.is_some(),
        "webhookUrlSet": settings.webhook_url.is_some(),
        "resourcesToIgnore": resources_to_ignore,
        "workloadTypesToIgnore": workload_types_to_ignore,
        "namespacesToIgnore": ignored,
        "namespaces": namespaces,
        "namespaceSelectors": selector.into_iter().collect::<Vec<_>>(),
        "resourceSelectors": settings.resource_selector.iter().collect::<Vec<_>>(),
    })
}

/// The ConfigMap's data.
pub fn data(settings: &Settings, namespace: &str, deployment: &str) -> BTreeMap<String, String> {
    let build = json!({
        "goVersion": "",
        "releaseVersion": env!("CARGO_PKG_VERSION"),
        "commitHash": option_env!("KUBE_RELOADER_COMMIT").unwrap_or(""),
        "commitTime": option_env!("KUBE_RELOADER_COMMIT_TIME").unwrap_or(""),
        "edition": "kube-reloader",
    });
    let deployment = json!({"name": deployment, "namespace": namespace});
    BTreeMap::from([
        ("buildInfo".to_owned(), build.to_string()),
        ("reloaderOptions".to_owned(), options(settings).to_string()),
        ("deploymentInfo".to_owned(), deployment.to_string()),
    ])
}

/// Creates or updates the ConfigMap (GET, then UPDATE or CREATE, as upstream). Failures are
/// logged with the fix and do not stop the controller: the ConfigMap is informational.
pub async fn publish(
    client: &kube::Client,
    settings: &Settings,
    namespace: &str,
    deployment: &str,
) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let wanted = ConfigMap {
        metadata: ObjectMeta {
            name: Some(NAME.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([(LABEL.0.to_owned(), LABEL.1.to_owned())])),
            ..ObjectMeta::default()
        },
        data: Some(data(settings, namespace, deployment)),
        ..ConfigMap::default()
    };
    let params = PostParams {
        field_manager: Some(crate::model::ledger::FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    let result = match api.get_opt(NAME).await {
        Ok(Some(existing)) => {
            let mut updated = wanted;
            updated.metadata.resource_version = existing.metadata.resource_version;
            let mut labels = existing.metadata.labels.unwrap_or_default();
            labels.insert(LABEL.0.to_owned(), LABEL.1.to_owned());
            updated.metadata.labels = Some(labels);
            api.replace(NAME, &params, &updated).await.map(|_| ())
        }
        Ok(None) => api.create(&params, &wanted).await.map(|_| ()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => tracing::info!(
            namespace,
            configmap = NAME,
            "published the meta-info ConfigMap"
        ),
        Err(e) => tracing::warn!(
            namespace,
            configmap = NAME,
            error = %e,
            "cannot publish the meta-info ConfigMap (informational only). Fix: grant get, create and \
             update on configmaps named {NAME} in namespace {namespace}, or unset RELOADER_NAMESPACE"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn upstream_keys_and_no_webhook_url() {
        let settings = crate::Cli::try_parse_from([
            "kube-reloader",
            "--reload-strategy=annotations",
            "--webhook-url=https://hooks.example/T0KEN",
        ])
        .unwrap()
        .into_settings_with(None)
        .unwrap();
        let data = data(&settings, "tools", "reloader-reloader");
        let options: serde_json::Value = serde_json::from_str(&data["reloaderOptions"]).unwrap();
        assert_eq!(options["reloadStrategy"], "annotations");
        assert_eq!(options["autoReloadAll"], false);
        assert_eq!(options["isArgoRollouts"], false);
        assert!(!data["reloaderOptions"].contains("T0KEN"));
        let deployment: serde_json::Value = serde_json::from_str(&data["deploymentInfo"]).unwrap();
        assert_eq!(deployment["name"], "reloader-reloader");
        assert!(data["buildInfo"].contains("releaseVersion"));
    }
}
