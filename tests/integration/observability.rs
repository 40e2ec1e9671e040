//! The rest of upstream's observable surface (checklist 46-48, 52): the meta-info ConfigMap,
//! the full metric set including client-go's REST metrics, and diagnostics only when asked for,
//! on their own listener.

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
    let deployment: serde_json::Value = serde_json::from_str(&data["deploymentInfo"]).unwrap();
    assert_eq!(
        deployment,
        json!({"name": "reloader-reloader", "namespace": ns})
    );
    assert!(data["buildInfo"].contains("releaseVersion"));

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
    ] {
        assert!(metrics.contains(sample), "missing {sample}:\n{metrics}");
    }

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
