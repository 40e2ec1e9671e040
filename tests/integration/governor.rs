//! The rollout governor (issue 12) on the real control plane: debounce, dry-run, maintenance
//! windows, the concurrency cap and the canary health gate, each with a controller restart in
//! the middle (nothing lost, nothing doubled).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube_reloader_testenv::Tier;
use serde_json::{Value, json};

use crate::controller::{Controller, controller_rules, identity_with_rules, requests_by};
use crate::fixtures::*;
use crate::support::{cluster, eventually};

const RELOADED_AT: &str = "kube-reloader.io/reloaded-at";

fn generation(d: &Deployment) -> i64 {
    d.metadata.generation.unwrap_or(0)
}

fn env_value(d: &Deployment, var: &str) -> Option<String> {
    env_of(d, "app")
        .into_iter()
        .find(|(n, _)| n == var)
        .map(|(_, v)| v)
}

async fn recorded(api: &Api<Deployment>, name: &str) -> Deployment {
    wait_deployment(api, name, "the first-sight ledger", |d| {
        ledger_of(d).is_some()
    })
    .await
}

fn app(name: &str, annotations: Value, replicas: i32) -> Value {
    let mut manifest = deployment(
        name,
        annotations,
        json!({"containers": [{"name": "app", "image": "registry.invalid/app",
            "envFrom": [{"configMapRef": {"name": "cfg"}}]}]}),
    );
    manifest["spec"]["replicas"] = json!(replicas);
    manifest
}

/// A ConfigMap and a Secret of one workload changed within the debounce period give one
/// rollout carrying both markers, also when the controller restarts while it waits.
#[tokio::test]
async fn debounce_coalesces_two_sources_into_one_rollout_across_a_restart() {
    let (cluster, ns, client) = setup("debounce").await;
    create::<ConfigMap>(&client, &ns, configmap("cfg", json!({"v": "1"}))).await;
    create::<Secret>(
        &client,
        &ns,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sec"}, "stringData": {"k": "1"}}),
    )
    .await;
    create::<Deployment>(
        &client,
        &ns,
        deployment(
            "web",
            json!({"reloader.stakater.com/auto": "true"}),
            json!({"containers": [{"name": "app", "image": "registry.invalid/app",
                "envFrom": [{"configMapRef": {"name": "cfg"}}, {"secretRef": {"name": "sec"}}]}]}),
        ),
    )
    .await;
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let args = ["--namespaces", ns.as_str(), "--debounce=6s"];
    let controller = Controller::start(&cluster, &identity, &ns, &args).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let before = generation(&recorded(&deployments, "web").await);

    set_configmap(&client, &ns, "cfg", json!({"v": "2"})).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    Api::<Secret>::namespaced(client.clone(), &ns)
        .patch(
            "sec",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"k": "2"}})),
        )
        .await
        .unwrap();
    // Both changes are pending; the controller dies before the quiet period is over.
    let current = deployments.get("web").await.unwrap();
    assert_eq!(
        generation(&current),
        before,
        "nothing rolled within the quiet period"
    );
    controller.kill();
    let controller = Controller::start(&cluster, &identity, &ns, &args).await;
    let rolled = wait_deployment(&deployments, "web", "one rollout with both markers", |d| {
        env_value(d, "STAKATER_CFG_CONFIGMAP").is_some()
            && env_value(d, "STAKATER_SEC_SECRET").is_some()
    })
    .await;
    assert_eq!(
        generation(&rolled),
        before + 1,
        "one rollout for both sources"
    );
    assert_eq!(
        env_value(&rolled, "STAKATER_CFG_CONFIGMAP"),
        Some(sha1("v=2"))
    );
    controller.stop();
}

/// `kube-reloader.io/mode: notify`: a WouldReload Event and the metric, no write; the
/// workload next to it reloads as usual.
#[tokio::test]
async fn notify_mode_reports_and_writes_nothing() {
    let (cluster, ns, client) = setup("notify-mode").await;
    create::<ConfigMap>(&client, &ns, configmap("cfg", json!({"v": "1"}))).await;
    create::<Deployment>(
        &client,
        &ns,
        app(
            "watched",
            json!({"configmap.reloader.stakater.com/reload": "cfg", "kube-reloader.io/mode": "notify"}),
            1,
        ),
    )
    .await;
    create::<Deployment>(
        &client,
        &ns,
        app(
            "normal",
            json!({"configmap.reloader.stakater.com/reload": "cfg"}),
            1,
        ),
    )
    .await;
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let controller = Controller::start(&cluster, &identity, &ns, &["--namespaces", &ns]).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    recorded(&deployments, "normal").await;
    let watched_before = deployments.get("watched").await.unwrap();

    set_configmap(&client, &ns, "cfg", json!({"v": "2"})).await;
    wait_env(
        &deployments,
        "normal",
        "app",
        "the normal Deployment to reload",
    )
    .await;
    let event = wait_event(&client, &ns, "a WouldReload Event", |e| {
        e.reason.as_deref() == Some("WouldReload")
            && e.involved_object.name.as_deref() == Some("watched")
    })
    .await;
    let note = event.message.unwrap_or_default();
    assert!(
        note.contains("CONFIGMAP 'cfg'") && note.contains(&sha1("v=2")),
        "{note}"
    );
    let watched = deployments.get("watched").await.unwrap();
    assert_eq!(
        watched.spec, watched_before.spec,
        "nothing written to its pod template"
    );
    assert_eq!(
        watched.metadata.resource_version, watched_before.metadata.resource_version,
        "nothing written at all, not even the ledger"
    );
    assert_eq!(
        controller.metric("kube_reloader_would_reload_total").await,
        1.0
    );
    assert_eq!(
        controller
            .metric("reloader_reload_executed_total{success=\"true\"}")
            .await,
        1.0,
        "only the normal Deployment counts as reloaded"
    );
    controller.stop();
}

/// A window that opens a little after the change: a ReloadDeferred Event, no write before the
/// window opens (per the API server's audit log), the reload inside it, also after a restart.
#[tokio::test]
async fn a_reload_outside_its_window_waits_for_it_across_a_restart() {
    let (cluster, ns, client) = setup("window").await;
    create::<ConfigMap>(&client, &ns, configmap("cfg", json!({"v": "1"}))).await;
    // The window opens at the first minute boundary at least 20 s from now (UTC).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let opens = (now + 20 + 59) / 60 * 60;
    let hhmm = |t: i64| format!("{:02}:{:02}", (t / 3600) % 24, (t / 60) % 60);
    let window = format!("{}-{}", hhmm(opens), hhmm(opens + 180));
    create::<Deployment>(
        &client,
        &ns,
        app(
            "web",
            json!({"configmap.reloader.stakater.com/reload": "cfg", "kube-reloader.io/reload-window": window}),
            1,
        ),
    )
    .await;
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let args = ["--namespaces", ns.as_str()];
    let controller = Controller::start(&cluster, &identity, &ns, &args).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    recorded(&deployments, "web").await;

    set_configmap(&client, &ns, "cfg", json!({"v": "2"})).await;
    let event = wait_event(&client, &ns, "a ReloadDeferred Event", |e| {
        e.reason.as_deref() == Some("ReloadDeferred")
    })
    .await;
    assert!(
        event
            .message
            .unwrap_or_default()
            .contains("maintenance window opens"),
        "the Event says when"
    );
    assert!(
        env_value(
            &deployments.get("web").await.unwrap(),
            "STAKATER_CFG_CONFIGMAP"
        )
        .is_none(),
        "deferred, not written"
    );
    assert_eq!(
        controller
            .metric("kube_reloader_pending_reloads{reason=\"window\"}")
            .await,
        1.0
    );
    controller.kill();
    let controller = Controller::start(&cluster, &identity, &ns, &args).await;
    let rolled = eventually("the reload inside the window", || async {
        let d = deployments.get("web").await.map_err(|e| e.to_string())?;
        env_value(&d, "STAKATER_CFG_CONFIGMAP").ok_or_else(|| "not yet".to_owned())
    })
    .await;
    assert_eq!(rolled, sha1("v=2"));
    let writes: Vec<_> = requests_by(&cluster, &identity.user)
        .into_iter()
        .filter(|r| r.verb == "patch" && r.resource == "deployments" && r.code == 200)
        .collect();
    // Compared to the second (the audit log has microseconds, rfc3339 none).
    let opened = opens_rfc3339(opens);
    let reload_write = writes
        .iter()
        .filter(|r| r.received.get(..19) >= opened.get(..19))
        .count();
    assert_eq!(reload_write, 1, "one write inside the window: {writes:?}");
    controller.stop();
}

/// RFC 3339 (UTC, seconds) of a Unix time, comparable as text with the audit log's times.
fn opens_rfc3339(unix: i64) -> String {
    kube_reloader::model::pause::rfc3339(unix)
}

/// Whether a Deployment's rollout is complete (as `kubectl rollout status` reads it).
fn complete(d: &Deployment) -> bool {
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = d.status.clone().unwrap_or_default();
    status.observed_generation.unwrap_or(0) >= generation(d)
        && status.updated_replicas.unwrap_or(0) == desired
        && status.replicas.unwrap_or(0) == desired
        && status.available_replicas.unwrap_or(0) == desired
}

async fn wait_all_complete(api: &Api<Deployment>, count: usize) {
    eventually("every rollout to complete", || async {
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let done = list.items.iter().filter(|d| complete(d)).count();
        if done == count {
            Ok(())
        } else {
            Err(format!("{done} of {count} complete"))
        }
    })
    .await;
}

/// 100 Deployments on one ConfigMap under `--max-concurrent-rollouts=5`: sampled from the API,
/// never more than 5 of our rollouts incomplete at once; all 100 done once each at the end,
/// with a controller restart in the middle.
#[tokio::test]
async fn a_fan_out_never_exceeds_the_concurrency_cap() {
    let cluster = cluster(Tier::C).await;
    let ns = cluster.create_namespace("cap").await.unwrap();
    let client = cluster.client().await.unwrap();
    create::<ConfigMap>(&client, &ns, configmap("cfg", json!({"v": "1"}))).await;
    let count = 100;
    for i in 0..count {
        create::<Deployment>(
            &client,
            &ns,
            app(
                &format!("app-{i:03}"),
                json!({"configmap.reloader.stakater.com/reload": "cfg"}),
                1,
            ),
        )
        .await;
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    wait_all_complete(&deployments, count).await;
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let args = ["--namespaces", ns.as_str(), "--max-concurrent-rollouts=5"];
    let controller = Controller::start(&cluster, &identity, &ns, &args).await;
    eventually("every first-sight ledger", || async {
        let list = deployments
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let recorded = list.items.iter().filter(|d| ledger_of(d).is_some()).count();
        if recorded == count {
            Ok(())
        } else {
            Err(format!("{recorded} recorded"))
        }
    })
    .await;
    let before: BTreeMap<String, i64> = deployments
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|d| (d.metadata.name.clone().unwrap(), generation(d)))
        .collect();

    let max_seen = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample_incomplete(
        deployments.clone(),
        max_seen.clone(),
        stop.clone(),
    ));
    set_configmap(&client, &ns, "cfg", json!({"v": "2"})).await;
    let reloaded = |client: Client| {
        let api: Api<Deployment> = Api::namespaced(client, &ns);
        async move {
            api.list(&ListParams::default())
                .await
                .map(|l| {
                    l.items
                        .iter()
                        .filter(|d| env_value(d, "STAKATER_CFG_CONFIGMAP").is_some())
                        .count()
                })
                .unwrap_or(0)
        }
    };
    eventually("a third of the rollouts", || async {
        match reloaded(client.clone()).await {
            n if n >= count / 3 => Ok(()),
            n => Err(format!("{n} reloaded")),
        }
    })
    .await;
    controller.kill();
    let controller = Controller::start(&cluster, &identity, &ns, &args).await;
    eventually("all rollouts", || async {
        match reloaded(client.clone()).await {
            n if n == count => Ok(()),
            n => Err(format!("{n} reloaded")),
        }
    })
    .await;
    wait_all_complete(&deployments, count).await;
    stop.store(true, Ordering::SeqCst);
    sampler.await.unwrap();
    let max = max_seen.load(Ordering::SeqCst);
    assert!(
        (1..=5).contains(&max),
        "at most 5 rollouts in progress at any sample, saw {max}"
    );
    for d in deployments
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
    {
        let name = d.metadata.name.clone().unwrap();
        assert_eq!(
            generation(&d),
            before[&name] + 1,
            "{name} rolled exactly once"
        );
    }
    controller.stop();
}

async fn sample_incomplete(
    api: Api<Deployment>,
    max_seen: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::SeqCst) {
        if let Ok(list) = api.list(&ListParams::default()).await {
            let incomplete = list
                .items
                .iter()
                .filter(|d| {
                    d.metadata
                        .annotations
                        .as_ref()
                        .is_some_and(|a| a.contains_key(RELOADED_AT))
                        && !complete(d)
                })
                .count();
            max_seen.fetch_max(incomplete, Ordering::SeqCst);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `--health-gate`: the first workload by name reloads first; its rollout cannot finish (its
/// pods cannot be scheduled), so the change halts for the others (Warning `ReloadHalted`,
/// `kube_reloader_halted_changes`), also after a restart; a new change of the source, once the
/// canary is fixed, starts a new round that reaches everyone.
#[tokio::test]
async fn a_failed_canary_halts_the_change_until_the_next_one() {
    let cluster = cluster(Tier::C).await;
    let ns = cluster.create_namespace("canary").await.unwrap();
    let client = cluster.client().await.unwrap();
    create::<ConfigMap>(&client, &ns, configmap("cfg", json!({"v": "1"}))).await;
    let annotations = json!({"configmap.reloader.stakater.com/reload": "cfg"});
    for name in ["a-canary", "b-app", "c-app"] {
        create::<Deployment>(&client, &ns, app(name, annotations.clone(), 1)).await;
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    wait_all_complete(&deployments, 3).await;
    // From now on the canary's new pods cannot be scheduled, and it gives up after 10 s.
    deployments
        .patch(
            "a-canary",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"progressDeadlineSeconds": 10,
                "strategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                "template": {"spec": {"nodeSelector": {"kube-reloader.io/test": "nowhere"}}}}})),
        )
        .await
        .unwrap();
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let args = [
        "--namespaces",
        ns.as_str(),
        "--health-gate",
        "--canary=1",
        "--rollout-timeout=60s",
    ];
    let controller = Controller::start(&cluster, &identity, &ns, &args).await;
    for name in ["a-canary", "b-app", "c-app"] {
        recorded(&deployments, name).await;
    }

    set_configmap(&client, &ns, "cfg", json!({"v": "2"})).await;
    wait_env(&deployments, "a-canary", "app", "the canary to reload").await;
    wait_event(&client, &ns, "a ReloadHalted Event", |e| {
        e.reason.as_deref() == Some("ReloadHalted")
            && e.message
                .as_deref()
                .unwrap_or_default()
                .contains("a-canary")
    })
    .await;
    let gauge = format!(
        "kube_reloader_halted_changes{{namespace=\"{ns}\",kind=\"CONFIGMAP\",name=\"cfg\"}}"
    );
    assert_eq!(controller.metric(&gauge).await, 1.0);
    controller.kill();
    let controller = Controller::start(&cluster, &identity, &ns, &args).await;
    eventually("the halt to be derived again after the restart", || async {
        let value = controller.metric(&gauge).await;
        if value == 1.0 {
            Ok(())
        } else {
            Err(format!("gauge {value}"))
        }
    })
    .await;
    for name in ["b-app", "c-app"] {
        let d = deployments.get(name).await.unwrap();
        assert!(
            env_value(&d, "STAKATER_CFG_CONFIGMAP").is_none(),
            "{name} got the halted change"
        );
    }

    // The canary is fixed and the source changes again: a new round reaches everyone.
    deployments
        .patch(
            "a-canary",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"nodeSelector": null}}}})),
        )
        .await
        .unwrap();
    set_configmap(&client, &ns, "cfg", json!({"v": "3"})).await;
    for name in ["a-canary", "b-app", "c-app"] {
        eventually(&format!("{name} to get the new change"), || async {
            let d = deployments.get(name).await.map_err(|e| e.to_string())?;
            match env_value(&d, "STAKATER_CFG_CONFIGMAP") {
                Some(v) if v == sha1("v=3") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    }
    eventually("the halt to be lifted", || async {
        let value = controller.metric(&gauge).await;
        if value == 0.0 {
            Ok(())
        } else {
            Err(format!("gauge {value}"))
        }
    })
    .await;
    controller.stop();
}

/// Under the health gate, a key-level reader of other keys is no canary of a change it
/// ignores: it would never reload and would hold the others until the rollout timeout.
#[tokio::test]
async fn keylevel_readers_of_other_keys_are_no_canaries() {
    let cluster = cluster(Tier::C).await;
    let ns = cluster.create_namespace("keylevel-canary").await.unwrap();
    let client = cluster.client().await.unwrap();
    create::<ConfigMap>(&client, &ns, configmap("cfg", json!({"a": "1", "b": "1"}))).await;
    let reads = |key: &str| {
        json!({"containers": [{"name": "app", "image": "registry.invalid/app",
            "env": [{"name": "V", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": key}}}]}]})
    };
    let annotations = json!({"configmap.reloader.stakater.com/reload": "cfg"});
    // "a-reader" sorts first: without the fix it would be the canary of a change of b.
    for (name, key) in [("a-reader", "a"), ("b-one", "b"), ("b-two", "b")] {
        create::<Deployment>(
            &client,
            &ns,
            deployment(name, annotations.clone(), reads(key)),
        )
        .await;
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    wait_all_complete(&deployments, 3).await;
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let args = [
        "--namespaces",
        ns.as_str(),
        "--key-level-triggers",
        "--health-gate",
        "--canary=1",
        "--rollout-timeout=10m",
    ];
    let controller = Controller::start(&cluster, &identity, &ns, &args).await;
    for name in ["a-reader", "b-one", "b-two"] {
        recorded(&deployments, name).await;
    }
    let untouched = template_of(&deployments.get("a-reader").await.unwrap());
    set_configmap(&client, &ns, "cfg", json!({"b": "2"})).await;
    wait_env(&deployments, "b-one", "app", "the canary b-one to reload").await;
    wait_env(
        &deployments,
        "b-two",
        "app",
        "b-two to reload after the canary",
    )
    .await;
    assert_eq!(
        template_of(&deployments.get("a-reader").await.unwrap()),
        untouched,
        "a-reader reads only a"
    );
    controller.stop();
}
