//! The rest of upstream's observable surface (checklist 46-48, 52, 56): the meta-info ConfigMap
//! in upstream's shapes, the full metric set including client-go's REST metrics, the standard
//! process metrics and upstream's skip and drop counts, and diagnostics only when asked for, on
//! their own listener.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube_reloader_testenv::process::free_port;
use serde_json::json;

use crate::controller::{Controller, controller_rules, identity_with_rules};
use crate::fixtures::*;
use crate::support::eventually;

#[tokio::test]
async fn meta_info_metrics_and_diagnostics_only_when_asked() {
    let (cluster, ns, client) = setup("observe").await;
    create::<ConfigMap>(&client, &ns, configmap("cfg", json!({"v": "1"}))).await;
    named_deployment(&client, &ns, "web", "cfg").await;
    let mut rules = controller_rules();
    rules.as_array_mut().unwrap().push(
        json!({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "update"]}),
    );
    let identity = identity_with_rules(&cluster, &ns, rules).await;
    let diagnostics = free_port().unwrap();
    let diagnostics_addr = format!("127.0.0.1:{diagnostics}");
    let controller = Controller::start_with_env(
        &cluster,
        &identity,
        &ns,
        &[
            "--namespaces",
            &ns,
            "--enable-pprof",
            "--pprof-addr",
            &diagnostics_addr,
            "--reload-on-create=true",
        ],
        &[
            ("RELOADER_NAMESPACE", &ns),
            ("RELOADER_DEPLOYMENT_NAME", "reloader-reloader"),
            ("METRICS_COUNT_BY_NAMESPACE", "enabled"),
        ],
    )
    .await;

    let meta: ConfigMap = eventually("the meta-info ConfigMap", || async {
        Api::<ConfigMap>::namespaced(client.clone(), &ns)
            .get("reloader-meta-info")
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    assert_eq!(
        meta.metadata.labels.unwrap()["reloader.stakater.com/meta-info"],
        "reloader"
    );
    let data = meta.data.unwrap();
    let options: serde_json::Value = serde_json::from_str(&data["reloaderOptions"]).unwrap();
    assert_eq!(options["reloadStrategy"], "env-vars");
    assert_eq!(options["namespaces"], json!([ns]));
    assert_eq!(options["reloadOnCreate"], true);
    assert_eq!(options["enablePProf"], true);
    assert_eq!(options["pprofAddr"], diagnostics_addr);
    for (key, value) in [
        (
            "secretProviderClassUpdateOnChangeAnnotation",
            "secretproviderclass.reloader.stakater.com/reload",
        ),
        (
            "secretProviderClassReloaderAutoAnnotation",
            "secretproviderclass.reloader.stakater.com/auto",
        ),
        (
            "configmapExcludeReloaderAnnotation",
            "configmaps.exclude.reloader.stakater.com/reload",
        ),
        (
            "secretExcludeReloaderAnnotation",
            "secrets.exclude.reloader.stakater.com/reload",
        ),
        (
            "secretProviderClassExcludeReloaderAnnotation",
            "secretproviderclasses.exclude.reloader.stakater.com/reload",
        ),
        (
            "rolloutStrategyAnnotation",
            "reloader.stakater.com/rollout-strategy",
        ),
        ("webhookUrl", ""),
    ] {
        assert_eq!(options[key], value, "{key}");
    }
    let deployment: serde_json::Value = serde_json::from_str(&data["deploymentInfo"]).unwrap();
    assert_eq!(
        deployment,
        json!({"name": "reloader-reloader", "namespace": ns, "creationTimestamp": null})
    );
    let build: serde_json::Value = serde_json::from_str(&data["buildInfo"]).unwrap();
    for key in [
        "goVersion",
        "releaseVersion",
        "commitHash",
        "commitTime",
        "edition",
    ] {
        assert!(build[key].is_string(), "{key}: {build}");
    }

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    wait_deployment(&deployments, "web", "baseline", |d| ledger_of(d).is_some()).await;
    set_configmap(&client, &ns, "cfg", json!({"v": "2"})).await;
    wait_env(&deployments, "web", "app", "the reload").await;
    let (_, metrics) = controller.get("/metrics").await.unwrap();
    for sample in [
        "reloader_events_processed_total{event_type=\"update\",resource_type=\"configmaps\",result=\"success\"}",
        "reloader_workloads_scanned_total{kind=\"Deployment\"}",
        "reloader_workloads_matched_total{kind=\"Deployment\"}",
        "reloader_workqueue_latency_seconds_count",
        "rest_client_requests_total{code=\"200\",method=\"PATCH\",host=",
        "rest_client_request_duration_seconds_bucket{",
        &format!(
            "reloader_reload_executed_total_by_namespace{{success=\"true\",namespace=\"{ns}\"}} 1"
        ),
        // Upstream drops (and counts) the adds of its first list under --reload-on-create.
        "reloader_skipped_total{reason=\"ignored_or_not_selected\"}",
        "# TYPE process_cpu_seconds counter",
        "process_cpu_seconds_total ",
        "# TYPE process_resident_memory_bytes gauge",
        "# TYPE process_virtual_memory_bytes gauge",
        "# TYPE process_start_time_seconds gauge",
        "# TYPE process_open_fds gauge",
        "# TYPE process_max_fds gauge",
    ] {
        assert!(metrics.contains(sample), "missing {sample}:\n{metrics}");
    }
    assert!(
        controller
            .metric("reloader_skipped_total{reason=\"ignored_or_not_selected\"}")
            .await
            >= 1.0,
        "the ConfigMap of the first list"
    );
    let started = controller.metric("process_start_time_seconds").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        started > now - 600.0 && started <= now + 1.0,
        "{started} vs {now}"
    );
    assert!(controller.metric("process_open_fds").await >= 3.0);

    // Diagnostics: on their own listener only.
    let (code, _) = controller.get("/debug/pprof/").await.unwrap();
    assert_eq!(code, 404, "nothing extra on the metrics port");
    let state = kube_reloader_testenv::http()
        .get(format!("http://{diagnostics_addr}/debug/state"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["leadership"], "writing");
    assert!(
        state["watching"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().starts_with("deployments in ")),
        "{state}"
    );
    controller.stop();

    let plain = Controller::start(
        &cluster,
        &identity,
        &format!("{ns}-plain"),
        &["--namespaces", &ns, "--pprof-addr", &diagnostics_addr],
    )
    .await;
    let refused = kube_reloader_testenv::http()
        .get(format!("http://{diagnostics_addr}/debug/state"))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "no diagnostics listener without --enable-pprof"
    );
    plain.stop();
}

/// Upstream counts an update from an ignored namespace (global mode, `--namespaces-to-ignore`)
/// as `reloader_skipped_total{reason="ignored_or_not_selected"}` and does not process it. In
/// webhook mode, so this cluster-wide controller writes nothing in other tests' namespaces.
#[tokio::test]
async fn ignored_namespace_updates_count_as_ignored_or_not_selected() {
    let (cluster, ns, client) = setup("ignored-ns").await;
    create::<ConfigMap>(&client, &ns, configmap("cfg", json!({"v": "1"}))).await;
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let receiver = crate::notify::Receiver::default();
    let url = format!("{}/hook", crate::notify::serve(receiver.clone()).await);
    let controller = Controller::start(
        &cluster,
        &identity,
        &ns,
        &["--namespaces-to-ignore", &ns, "--webhook-url", &url],
    )
    .await;
    let sample = "reloader_skipped_total{reason=\"ignored_or_not_selected\"}";
    assert_eq!(controller.metric(sample).await, 0.0);
    set_configmap(&client, &ns, "cfg", json!({"v": "2"})).await;
    crate::notify::metric_reaches(&controller, sample, 1.0).await;
    controller.stop();
}
