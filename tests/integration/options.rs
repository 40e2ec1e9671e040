//! Scope flags, create/delete handling and bad input, on the real API server.

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube_reloader::model::digest;
use kube_reloader_testenv::Tier;
use serde_json::json;

use crate::controller::{Controller, controller_rules, identity_with_rules, requests_by};
use crate::fixtures::*;
use crate::support::{cluster, eventually};

fn auto_spec(configmaps: &[&str], secrets: &[&str]) -> serde_json::Value {
    let mut env_from: Vec<serde_json::Value> = configmaps
        .iter()
        .map(|n| json!({"configMapRef": {"name": n}}))
        .collect();
    env_from.extend(secrets.iter().map(|n| json!({"secretRef": {"name": n}})));
    json!({"containers": [{"name": "app", "image": "registry.invalid/app", "envFrom": env_from}]})
}

/// Checklist 32-34: --reload-on-create reloads when a referenced ConfigMap appears while we run;
/// --reload-on-delete removes the env var again. Without the flags, creation only records a
/// baseline and deletion writes nothing.
#[tokio::test]
async fn reload_on_create_and_delete() {
    let (cluster, ns, client) = setup("create-delete").await;
    let named = json!({"configmap.reloader.stakater.com/reload": "late"});
    let spec = json!({"containers": [{"name": "app", "image": "registry.invalid/app"}]});
    create::<Deployment>(&client, &ns, deployment("web", named, spec)).await;
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let controller = Controller::start(
        &cluster,
        &identity,
        &ns,
        &[
            "--namespaces",
            &ns,
            "--reload-on-create=true",
            "--reload-on-delete=true",
        ],
    )
    .await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    create::<ConfigMap>(&client, &ns, configmap("late", json!({"a": "1"}))).await;
    let created = wait_env(
        &deployments,
        "web",
        "app",
        "a reload for the created ConfigMap",
    )
    .await;
    assert_eq!(
        env_of(&created, "app"),
        vec![("STAKATER_LATE_CONFIGMAP".to_owned(), sha1("a=1"))]
    );
    Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .delete("late", &DeleteParams::default())
        .await
        .unwrap();
    let deleted = wait_deployment(&deployments, "web", "the env var to be removed", |d| {
        env_of(d, "app").is_empty()
    })
    .await;
    assert!(
        ledger_of(&deleted).is_none(),
        "{:?}",
        deleted.metadata.annotations
    );
    controller.stop();
}

/// Without --reload-on-create, a referenced ConfigMap that appears later is recorded (no
/// rollout); its next data change reloads.
#[tokio::test]
async fn a_missing_source_created_later_is_a_baseline_then_reloads_on_change() {
    let (cluster, ns, client) = setup("missing").await;
    let original = create::<Deployment>(
        &client,
        &ns,
        deployment(
            "web",
            json!({"reloader.stakater.com/auto": "true"}),
            auto_spec(&["later"], &[]),
        ),
    )
    .await;
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let controller = Controller::start(&cluster, &identity, &ns, &["--namespaces", &ns]).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    create::<ConfigMap>(&client, &ns, configmap("later", json!({"a": "1"}))).await;
    let recorded = wait_deployment(
        &deployments,
        "web",
        "the created ConfigMap's baseline",
        |d| ledger_of(d).is_some(),
    )
    .await;
    assert_eq!(
        template_of(&recorded),
        template_of(&original),
        "no rollout on create"
    );
    set_configmap(&client, &ns, "later", json!({"a": "2"})).await;
    wait_env(&deployments, "web", "app", "the reload").await;
    controller.stop();
}

/// Checklist 37: --namespace-selector (global mode) acts only in matching namespaces and picks
/// up a namespace labelled while running, without a restart.
#[tokio::test]
async fn namespace_selector_picks_up_a_namespace_labelled_later() {
    let cluster = cluster(Tier::A).await;
    let client = cluster.client().await.unwrap();
    let selected = cluster.create_namespace("selected").await.unwrap();
    let later = cluster.create_namespace("later").await.unwrap();
    let label = format!("reload-test-{selected}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            &selected,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {&label: "yes"}}})),
        )
        .await
        .unwrap();
    for ns in [&selected, &later] {
        create::<ConfigMap>(&client, ns, configmap("cfg", json!({"v": "1"}))).await;
        create::<Deployment>(
            &client,
            ns,
            deployment(
                "web",
                json!({"reloader.stakater.com/auto": "true"}),
                auto_spec(&["cfg"], &[]),
            ),
        )
        .await;
    }
    let identity = identity_with_rules(&cluster, &selected, controller_rules()).await;
    let controller = Controller::start(
        &cluster,
        &identity,
        &selected,
        &[&format!("--namespace-selector={label}:yes")],
    )
    .await;
    let in_selected: Api<Deployment> = Api::namespaced(client.clone(), &selected);
    let in_later: Api<Deployment> = Api::namespaced(client.clone(), &later);
    wait_deployment(
        &in_selected,
        "web",
        "the selected namespace's baseline",
        |d| ledger_of(d).is_some(),
    )
    .await;
    set_configmap(&client, &later, "cfg", json!({"v": "2"})).await;
    set_configmap(&client, &selected, "cfg", json!({"v": "2"})).await;
    wait_env(
        &in_selected,
        "web",
        "app",
        "the reload in the selected namespace",
    )
    .await;
    let untouched = in_later.get("web").await.unwrap();
    assert!(
        ledger_of(&untouched).is_none() && env_of(&untouched, "app").is_empty(),
        "not selected yet"
    );

    namespaces
        .patch(
            &later,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {&label: "yes"}}})),
        )
        .await
        .unwrap();
    wait_deployment(
        &in_later,
        "web",
        "the newly selected namespace's baseline",
        |d| ledger_of(d).is_some(),
    )
    .await;
    set_configmap(&client, &later, "cfg", json!({"v": "3"})).await;
    let reloaded = wait_env(
        &in_later,
        "web",
        "app",
        "a reload in the newly selected namespace",
    )
    .await;
    assert_eq!(
        env_of(&reloaded, "app"),
        vec![("STAKATER_CFG_CONFIGMAP".to_owned(), sha1("v=3"))]
    );
    controller.stop();
}

/// Checklist 35, 38: --resource-label-selector watches only matching sources (server-side);
/// --resources-to-ignore=secrets never watches Secrets.
#[tokio::test]
async fn label_selector_and_ignored_resource_types() {
    let (cluster, ns, client) = setup("selectors").await;
    let labelled = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "labelled", "labels": {"reload": "true"}}, "data": {"a": "1"}});
    create::<ConfigMap>(&client, &ns, labelled).await;
    create::<ConfigMap>(&client, &ns, configmap("plain", json!({"a": "1"}))).await;
    create::<Secret>(
        &client,
        &ns,
        json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "creds", "labels": {"reload": "true"}}, "stringData": {"k": "1"}}),
    )
    .await;
    for name in ["uses-plain", "uses-secret", "uses-labelled"] {
        let spec = match name {
            "uses-plain" => auto_spec(&["plain"], &[]),
            "uses-secret" => auto_spec(&[], &["creds"]),
            _ => auto_spec(&["labelled"], &[]),
        };
        create::<Deployment>(
            &client,
            &ns,
            deployment(name, json!({"reloader.stakater.com/auto": "true"}), spec),
        )
        .await;
    }
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let controller = Controller::start(
        &cluster,
        &identity,
        &ns,
        &[
            "--namespaces",
            &ns,
            "--resource-label-selector=reload=true",
            "--resources-to-ignore=secrets",
        ],
    )
    .await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    wait_deployment(&deployments, "uses-labelled", "the baseline", |d| {
        ledger_of(d).is_some()
    })
    .await;
    set_configmap(&client, &ns, "plain", json!({"a": "2"})).await;
    Api::<Secret>::namespaced(client.clone(), &ns)
        .patch(
            "creds",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"k": "2"}})),
        )
        .await
        .unwrap();
    set_configmap(&client, &ns, "labelled", json!({"a": "2"})).await;
    wait_env(
        &deployments,
        "uses-labelled",
        "app",
        "the labelled ConfigMap's reload",
    )
    .await;
    for name in ["uses-plain", "uses-secret"] {
        let d = deployments.get(name).await.unwrap();
        assert!(
            ledger_of(&d).is_none() && env_of(&d, "app").is_empty(),
            "{name} must not track anything"
        );
    }
    controller.stop();
    let requests = requests_by(&cluster, &identity.user);
    assert!(
        !requests.iter().any(|r| r.resource == "secrets"),
        "Secrets are never watched"
    );
}

/// Bad input: a 1 MiB ConfigMap with binaryData, Secret bytes that are not UTF-8, an unknown
/// auto value and a Deployment whose sources do not exist: nothing crashes, digests match
/// upstream's formula, the "yes" workload is never written.
#[tokio::test]
async fn big_binary_and_non_utf8_sources_and_unknown_annotation_values() {
    let (cluster, ns, client) = setup("bad-input").await;
    let big = "x".repeat(1024 * 1024 - 64);
    let cm = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some("big".into()),
            ..Default::default()
        },
        data: Some([("text".to_owned(), big.clone())].into()),
        binary_data: Some([("blob".to_owned(), ByteString(vec![0, 159, 146, 150]))].into()),
        ..Default::default()
    };
    Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("raw".into()),
            ..Default::default()
        },
        data: Some([("key".to_owned(), ByteString(vec![0xff, 0xfe, 0x00, 0x41]))].into()),
        ..Default::default()
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    create::<Deployment>(
        &client,
        &ns,
        deployment(
            "web",
            json!({"reloader.stakater.com/auto": "true"}),
            auto_spec(&["big", "absent"], &["raw"]),
        ),
    )
    .await;
    let yes = create::<Deployment>(
        &client,
        &ns,
        deployment(
            "yes",
            json!({"reloader.stakater.com/auto": "yes"}),
            auto_spec(&["big"], &["raw"]),
        ),
    )
    .await;
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let controller = Controller::start(&cluster, &identity, &ns, &["--namespaces", &ns]).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let recorded = wait_deployment(&deployments, "web", "the baseline", |d| {
        ledger_of(d).is_some()
    })
    .await;
    let ledger = ledger_of(&recorded).unwrap();
    assert_eq!(ledger["configmap/big"], digest::configmap(&cm).to_string());
    assert_eq!(ledger["secret/raw"], digest::secret(&secret).to_string());
    assert!(ledger.get("configmap/absent").is_none());

    let changed = Secret {
        data: Some([("key".to_owned(), ByteString(vec![0xff, 0x00, 0x80]))].into()),
        ..secret.clone()
    };
    secrets
        .replace(
            "raw",
            &PostParams::default(),
            &Secret {
                metadata: secrets.get("raw").await.unwrap().metadata,
                ..changed.clone()
            },
        )
        .await
        .unwrap();
    let reloaded = wait_env(&deployments, "web", "app", "the Secret reload").await;
    assert_eq!(
        env_of(&reloaded, "app"),
        vec![(
            "STAKATER_RAW_SECRET".to_owned(),
            digest::secret(&changed).to_string()
        )]
    );
    eventually("the controller to stay live", || async {
        match controller.get("/live").await? {
            (200, _) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let untouched = deployments.get("yes").await.unwrap();
    assert_eq!(template_of(&untouched), template_of(&yes));
    assert!(
        ledger_of(&untouched).is_none(),
        "auto: \"yes\" is not true for Go's ParseBool"
    );
    let log = controller.stop();
    assert!(
        !log.contains("xxxxxxxxxxxxxxxx"),
        "no ConfigMap data in logs"
    );
}

/// A namespace deleted while its sources change does not stop reloads elsewhere.
#[tokio::test]
async fn a_namespace_deleted_under_load_does_not_stop_other_namespaces() {
    let cluster = cluster(Tier::B).await;
    let client = cluster.client().await.unwrap();
    let doomed = cluster.create_namespace("doomed").await.unwrap();
    let alive = cluster.create_namespace("alive").await.unwrap();
    for ns in [&doomed, &alive] {
        for i in 0..5 {
            let name = format!("cfg-{i}");
            create::<ConfigMap>(&client, ns, configmap(&name, json!({"v": "1"}))).await;
            create::<Deployment>(
                &client,
                ns,
                deployment(
                    &format!("web-{i}"),
                    json!({"reloader.stakater.com/auto": "true"}),
                    auto_spec(&[&name], &[]),
                ),
            )
            .await;
        }
    }
    let identity = identity_with_rules(&cluster, &alive, controller_rules()).await;
    let scope = format!("--namespaces={doomed},{alive}");
    let controller = Controller::start(&cluster, &identity, &alive, &[&scope]).await;
    let in_alive: Api<Deployment> = Api::namespaced(client.clone(), &alive);
    wait_deployment(&in_alive, "web-4", "the baseline", |d| {
        ledger_of(d).is_some()
    })
    .await;
    for i in 0..5 {
        set_configmap(&client, &doomed, &format!("cfg-{i}"), json!({"v": "2"})).await;
    }
    Api::<Namespace>::all(client.clone())
        .delete(&doomed, &DeleteParams::default())
        .await
        .unwrap();
    for i in 0..5 {
        set_configmap(&client, &alive, &format!("cfg-{i}"), json!({"v": "2"})).await;
    }
    for i in 0..5 {
        wait_env(
            &in_alive,
            &format!("web-{i}"),
            "app",
            "reloads in the surviving namespace",
        )
        .await;
    }
    assert_eq!(controller.get("/live").await.unwrap().0, 200);
    controller.stop();
}

/// Secrets stay secret: a planted Secret value appears in no log line, Event, metric or alert,
/// even with trace logging, across baseline and reload.
#[tokio::test]
async fn secret_values_never_reach_logs_events_or_metrics() {
    let (cluster, ns, client) = setup("secrecy").await;
    let planted = format!("planted-{}-value", std::process::id());
    create::<Secret>(
        &client,
        &ns,
        json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "creds"}, "stringData": {"password": planted}}),
    )
    .await;
    create::<Deployment>(
        &client,
        &ns,
        deployment(
            "web",
            json!({"secret.reloader.stakater.com/reload": "creds"}),
            json!({"containers": [{"name": "app", "image": "registry.invalid/app"}]}),
        ),
    )
    .await;
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let receiver = crate::notify::Receiver::default();
    let alert_url = format!("{}/alerts", crate::notify::serve(receiver.clone()).await);
    let controller = Controller::start_with_env(
        &cluster,
        &identity,
        &ns,
        &["--namespaces", &ns, "--log-level=trace"],
        &[
            ("ALERT_ON_RELOAD", "true"),
            ("ALERT_WEBHOOK_URL", &alert_url),
        ],
    )
    .await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    wait_deployment(&deployments, "web", "the baseline", |d| {
        ledger_of(d).is_some()
    })
    .await;
    let rotated = format!("{planted}-rotated");
    Api::<Secret>::namespaced(client.clone(), &ns)
        .patch(
            "creds",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"password": rotated}})),
        )
        .await
        .unwrap();
    wait_env(&deployments, "web", "app", "the reload").await;
    let alerts = crate::notify::received(&receiver, "the alert", 1).await;
    let (_, metrics) = controller.get("/metrics").await.unwrap();
    // After the stop, which waits for queued Events to be published.
    let log = controller.stop();
    let events = events(&client, &ns).await;
    assert!(
        log.contains("Changes detected in 'creds'"),
        "the reload was logged: {log}"
    );
    for (place, text) in [
        ("log", log),
        ("metrics", metrics),
        ("events", format!("{events:?}")),
        ("alerts", format!("{alerts:?}")),
    ] {
        assert!(
            !text.contains(&planted),
            "the Secret value leaked into the {place}"
        );
    }
}

/// Checklist 32: with --reload-on-create and --sync-after-restart, sources that exist at start
/// count as just created: a workload with no marker for them reloads once; a second start with
/// the markers in place writes nothing (upstream re-rolls every time under annotations).
#[tokio::test]
async fn sync_after_restart_reloads_unrecorded_workloads_once() {
    let (cluster, ns, client) = setup("sync-after-restart").await;
    create::<ConfigMap>(&client, &ns, configmap("cfg", json!({"a": "1"}))).await;
    named_deployment(&client, &ns, "web", "cfg").await;
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let args = [
        "--namespaces",
        ns.as_str(),
        "--reload-on-create=true",
        "--sync-after-restart",
    ];
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let first = Controller::start(&cluster, &identity, "sync-1", &args).await;
    let reloaded = wait_env(&deployments, "web", "app", "the sync-after-restart reload").await;
    assert_eq!(
        env_of(&reloaded, "app"),
        vec![("STAKATER_CFG_CONFIGMAP".to_owned(), sha1("a=1"))]
    );
    first.stop();
    let second = Controller::start(&cluster, &identity, "sync-2", &args).await;
    named_deployment(&client, &ns, "sentinel", "cfg").await;
    wait_env(&deployments, "sentinel", "app", "the sentinel's reload").await;
    second.stop();
    let patches = requests_by(&cluster, &identity.user)
        .into_iter()
        .filter(|r| r.verb == "patch" && r.name == "web")
        .count();
    assert_eq!(patches, 1, "the second start wrote nothing to web");
}

/// Checklist 1 and 36: KUBERNETES_NAMESPACE limits the controller to one namespace; in global
/// mode --namespaces-to-ignore drops a namespace even when it matches the selector.
#[tokio::test]
async fn kubernetes_namespace_and_namespaces_to_ignore() {
    let cluster = cluster(Tier::A).await;
    let client = cluster.client().await.unwrap();
    let watched = cluster.create_namespace("env-ns").await.unwrap();
    let other = cluster.create_namespace("env-other").await.unwrap();
    for ns in [&watched, &other] {
        create::<ConfigMap>(&client, ns, configmap("cfg", json!({"v": "1"}))).await;
        named_deployment(&client, ns, "web", "cfg").await;
    }
    let identity = identity_with_rules(&cluster, &watched, controller_rules()).await;
    let single = Controller::start_with_env(
        &cluster,
        &identity,
        "env-ns",
        &[],
        &[("KUBERNETES_NAMESPACE", &watched)],
    )
    .await;
    let in_watched: Api<Deployment> = Api::namespaced(client.clone(), &watched);
    let in_other: Api<Deployment> = Api::namespaced(client.clone(), &other);
    wait_deployment(
        &in_watched,
        "web",
        "the baseline in KUBERNETES_NAMESPACE",
        |d| ledger_of(d).is_some(),
    )
    .await;
    single.stop();
    assert!(
        ledger_of(&in_other.get("web").await.unwrap()).is_none(),
        "other namespaces untouched"
    );
    let lists: Vec<_> = requests_by(&cluster, &identity.user)
        .into_iter()
        .filter(|r| r.verb == "list" || r.verb == "watch")
        .filter(|r| r.namespace != watched && r.resource != "selfsubjectaccessreviews")
        .collect();
    assert!(
        lists.is_empty(),
        "only the one namespace is listed or watched: {lists:?}"
    );

    // Global mode: both namespaces match the selector, one is ignored by name.
    let label = format!("reload-test-{watched}");
    for ns in [&watched, &other] {
        Api::<Namespace>::all(client.clone())
            .patch(
                ns,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {&label: "yes"}}})),
            )
            .await
            .unwrap();
    }
    let global = Controller::start(
        &cluster,
        &identity,
        "ignore",
        &[
            &format!("--namespace-selector={label}=yes"),
            &format!("--namespaces-to-ignore={other}"),
        ],
    )
    .await;
    set_configmap(&client, &other, "cfg", json!({"v": "2"})).await;
    set_configmap(&client, &watched, "cfg", json!({"v": "2"})).await;
    wait_env(
        &in_watched,
        "web",
        "app",
        "the reload in the watched namespace",
    )
    .await;
    let ignored = in_other.get("web").await.unwrap();
    assert!(
        ledger_of(&ignored).is_none() && env_of(&ignored, "app").is_empty(),
        "ignored namespace"
    );
    global.stop();
}
