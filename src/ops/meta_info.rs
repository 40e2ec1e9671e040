//! Upstream's meta-info ConfigMap (`reloader-meta-info` in `RELOADER_NAMESPACE`): build info,
//! the options in effect and the Deployment running us, for support and fleet inventory.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::config::{Scope, Settings};
use crate::model::{Strategy, policy};

/// Name of the ConfigMap.
pub const NAME: &str = "reloader-meta-info";
/// Its label (upstream's), so tools can find it.
pub const LABEL: (&str, &str) = ("reloader.stakater.com/meta-info", "reloader");

/// The options in effect as upstream's `reloaderOptions`: every key upstream writes, with its
/// camelCase name and JSON type, so tools reading upstream's ConfigMap read ours. The keys
/// without a flag (SecretProviderClass, exclude, rollout strategy) carry upstream's fixed
/// values. `webhookUrl` is written without path, query or credentials (Slack and Teams URLs
/// carry a token in the path). `namespaces` is ours (upstream has no such key).
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
        "secretProviderClassUpdateOnChangeAnnotation": policy::SPC_RELOAD,
        "reloaderAutoAnnotation": keys.auto,
        "ignoreResourceAnnotation": keys.ignore,
        "configmapReloaderAutoAnnotation": keys.configmap_auto,
        "secretReloaderAutoAnnotation": keys.secret_auto,
        "secretProviderClassReloaderAutoAnnotation": policy::SPC_AUTO,
        "configmapExcludeReloaderAnnotation": policy::CONFIGMAP_EXCLUDE,
        "secretExcludeReloaderAnnotation": policy::SECRET_EXCLUDE,
        "secretProviderClassExcludeReloaderAnnotation": policy::SPC_EXCLUDE,
        "autoSearchAnnotation": keys.search,
        "searchMatchAnnotation": keys.search_match,
        "rolloutStrategyAnnotation": policy::ROLLOUT_STRATEGY,
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
        "webhookUrl": settings.webhook_url.as_deref().map(redact_url).unwrap_or_default(),
        "resourcesToIgnore": resources_to_ignore,
        "workloadTypesToIgnore": workload_types_to_ignore,
        "namespaceSelectors": selector.into_iter().collect::<Vec<_>>(),
        "resourceSelectors": settings.resource_selector.iter().collect::<Vec<_>>(),
        "namespacesToIgnore": ignored,
        "enablePProf": settings.diagnostics_addr.is_some(),
        "pprofAddr": settings.pprof_addr,
        "namespaces": namespaces,
    })
}

/// `scheme://host[:port]` of a URL, with `/REDACTED` when anything followed (path, query, fragment):
/// enough to tell which receiver is configured, without the token its path or query may hold
/// or any `user:password@`.
fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let tail = if end < rest.len() && &rest[end..] != "/" {
        "/REDACTED"
    } else {
        ""
    };
    if scheme.is_empty() {
        format!("{host}{tail}")
    } else {
        format!("{scheme}://{host}{tail}")
    }
}

/// Go's JSON for a zero `time.Time`, which upstream writes as `commitTime` when its build
/// date is unknown (an empty string would not decode into upstream's `BuildInfo`).
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The ConfigMap's data: `buildInfo`, `reloaderOptions` and `deploymentInfo` in upstream's
/// shapes (`deploymentInfo` is a Go `ObjectMeta`: `name` omitted when empty,
/// `creationTimestamp` null).
pub fn data(settings: &Settings, namespace: &str, deployment: &str) -> BTreeMap<String, String> {
    let build = json!({
        "goVersion": "",
        "releaseVersion": env!("CARGO_PKG_VERSION"),
        "commitHash": option_env!("KUBE_RELOADER_COMMIT").unwrap_or(""),
        "commitTime": option_env!("KUBE_RELOADER_COMMIT_TIME").filter(|t| !t.is_empty()).unwrap_or(GO_ZERO_TIME),
        "edition": "kube-reloader",
    });
    let mut deployment_info = serde_json::Map::new();
    if !deployment.is_empty() {
        deployment_info.insert("name".into(), deployment.into());
    }
    deployment_info.insert("namespace".into(), namespace.into());
    deployment_info.insert("creationTimestamp".into(), serde_json::Value::Null);
    BTreeMap::from([
        ("buildInfo".to_owned(), build.to_string()),
        ("reloaderOptions".to_owned(), options(settings).to_string()),
        (
            "deploymentInfo".to_owned(),
            serde_json::Value::Object(deployment_info).to_string(),
        ),
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

    /// Every key of upstream's `ReloaderOptions` (its JSON tags), with its JSON type.
    const UPSTREAM_OPTIONS: &[(&str, &str)] = &[
        ("autoReloadAll", "bool"),
        ("configmapUpdateOnChangeAnnotation", "string"),
        ("secretUpdateOnChangeAnnotation", "string"),
        ("secretProviderClassUpdateOnChangeAnnotation", "string"),
        ("reloaderAutoAnnotation", "string"),
        ("ignoreResourceAnnotation", "string"),
        ("configmapReloaderAutoAnnotation", "string"),
        ("secretReloaderAutoAnnotation", "string"),
        ("secretProviderClassReloaderAutoAnnotation", "string"),
        ("configmapExcludeReloaderAnnotation", "string"),
        ("secretExcludeReloaderAnnotation", "string"),
        ("secretProviderClassExcludeReloaderAnnotation", "string"),
        ("autoSearchAnnotation", "string"),
        ("searchMatchAnnotation", "string"),
        ("rolloutStrategyAnnotation", "string"),
        ("pauseDeploymentAnnotation", "string"),
        ("pauseDeploymentTimeAnnotation", "string"),
        ("logFormat", "string"),
        ("logLevel", "string"),
        ("isArgoRollouts", "bool"),
        ("reloadStrategy", "string"),
        ("reloadOnCreate", "bool"),
        ("reloadOnDelete", "bool"),
        ("syncAfterRestart", "bool"),
        ("enableHA", "bool"),
        ("enableCSIIntegration", "bool"),
        ("webhookUrl", "string"),
        ("resourcesToIgnore", "array"),
        ("workloadTypesToIgnore", "array"),
        ("namespaceSelectors", "array"),
        ("resourceSelectors", "array"),
        ("namespacesToIgnore", "array"),
        ("enablePProf", "bool"),
        ("pprofAddr", "string"),
    ];

    fn json_type(value: &serde_json::Value) -> &'static str {
        match value {
            serde_json::Value::Bool(_) => "bool",
            serde_json::Value::String(_) => "string",
            serde_json::Value::Array(_) => "array",
            _ => "other",
        }
    }

    fn settings(args: &[&str]) -> Settings {
        crate::Cli::try_parse_from(std::iter::once("kube-reloader").chain(args.iter().copied()))
            .unwrap()
            .into_settings_with(None)
            .unwrap()
    }

    #[test]
    fn every_upstream_option_key_with_its_type() {
        let data = data(&settings(&[]), "tools", "reloader-reloader");
        let options: serde_json::Value = serde_json::from_str(&data["reloaderOptions"]).unwrap();
        for (key, kind) in UPSTREAM_OPTIONS {
            assert_eq!(json_type(&options[key]), *kind, "{key}: {options}");
        }
        assert_eq!(
            options["secretProviderClassUpdateOnChangeAnnotation"],
            "secretproviderclass.reloader.stakater.com/reload"
        );
        assert_eq!(
            options["secretProviderClassReloaderAutoAnnotation"],
            "secretproviderclass.reloader.stakater.com/auto"
        );
        assert_eq!(
            options["configmapExcludeReloaderAnnotation"],
            "configmaps.exclude.reloader.stakater.com/reload"
        );
        assert_eq!(
            options["secretExcludeReloaderAnnotation"],
            "secrets.exclude.reloader.stakater.com/reload"
        );
        assert_eq!(
            options["secretProviderClassExcludeReloaderAnnotation"],
            "secretproviderclasses.exclude.reloader.stakater.com/reload"
        );
        assert_eq!(
            options["rolloutStrategyAnnotation"],
            "reloader.stakater.com/rollout-strategy"
        );
        assert_eq!(
            options["pprofAddr"], ":6060",
            "written without --enable-pprof"
        );
        assert_eq!(options["enablePProf"], false);
        assert_eq!(options["webhookUrl"], "");
        assert_eq!(options["logLevel"], "info");
    }

    #[test]
    fn build_and_deployment_info_in_upstream_shapes() {
        let data = data(&settings(&[]), "tools", "reloader-reloader");
        let build: serde_json::Value = serde_json::from_str(&data["buildInfo"]).unwrap();
        let keys: Vec<&str> = build
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "commitHash",
                "commitTime",
                "edition",
                "goVersion",
                "releaseVersion"
            ]
        );
        assert!(build.as_object().unwrap().values().all(|v| v.is_string()));
        // A Go time.Time: RFC 3339, the zero time when unknown.
        let time = build["commitTime"].as_str().unwrap();
        assert!(
            time.len() >= 20 && time.contains('T') && time.ends_with('Z'),
            "{time}"
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&data["deploymentInfo"]).unwrap(),
            json!({"name": "reloader-reloader", "namespace": "tools", "creationTimestamp": null})
        );
        let unnamed = super::data(&settings(&[]), "tools", "");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&unnamed["deploymentInfo"]).unwrap(),
            json!({"namespace": "tools", "creationTimestamp": null})
        );
    }

    #[test]
    fn flags_are_reflected_and_the_webhook_token_is_not() {
        let settings = settings(&[
            "--reload-strategy=annotations",
            "--webhook-url=https://user:pw@hooks.example:8443/services/T0KEN?sig=S1G",
            "--enable-pprof",
            "--pprof-addr=127.0.0.1:7070",
            "--enable-csi-integration",
        ]);
        let data = data(&settings, "tools", "reloader-reloader");
        let options: serde_json::Value = serde_json::from_str(&data["reloaderOptions"]).unwrap();
        assert_eq!(options["reloadStrategy"], "annotations");
        assert_eq!(options["autoReloadAll"], false);
        assert_eq!(options["isArgoRollouts"], false);
        assert_eq!(options["enableCSIIntegration"], true);
        assert_eq!(options["enablePProf"], true);
        assert_eq!(options["pprofAddr"], "127.0.0.1:7070");
        assert_eq!(options["webhookUrl"], "https://hooks.example:8443/REDACTED");
        for secret in ["T0KEN", "S1G", "pw"] {
            assert!(!data["reloaderOptions"].contains(secret), "{secret}");
        }
        assert_eq!(redact_url("http://hooks.example"), "http://hooks.example");
        assert_eq!(redact_url("http://hooks.example/"), "http://hooks.example");
    }
}
