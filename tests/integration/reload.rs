//! The reload engine on a real API server: what it writes, what it never writes, and what it
//! says. Each test runs its own controller, scoped with --namespaces to its own namespace, as a
//! service account holding only the RBAC the controller needs.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use crate::controller::{Controller, controller_rules, identity_with_rules, requests_by};
use crate::fixtures::*;
use crate::support::eventually;

/// Checklist 2, 5, 17-19, 49: a named ConfigMap change puts upstream's env var with upstream's
/// hash on exactly the container that uses it, with one PATCH and no GET or LIST per change;
/// first sight restarts nothing; metadata-only changes never reload.
#[tokio::test]
async fn named_configmap_change_sets_the_env_var_with_one_patch() {
    let (cluster, ns, client) = setup("named").await;
    create::<ConfigMap>(&client, &ns, configmap("foo-config", json!({"a": "1"}))).await;
    let created = create::<Deployment>(&client, &ns, deployment(
        "web",
        json!({"configmap.reloader.stakater.com/reload": "foo-config"}),
        json!({"containers": [
            {"name": "sidecar", "image": "registry.invalid/sidecar"},
            {"name": "app", "image": "registry.invalid/app", "envFrom": [{"configMapRef": {"name": "foo-config"}}]}
        ]}),
    )).await;
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let controller = Controller::start(&cluster, &identity, &ns, &["--namespaces", &ns]).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);

    // First sight: the digest is recorded on metadata, the pod template is untouched.
    let baseline = wait_deployment(&deployments, "web", "the baseline ledger", |d| {
        ledger_of(d).is_some()
    })
    .await;
    assert_eq!(
        ledger_of(&baseline).unwrap(),
        json!({"configmap/foo-config": sha1("a=1")})
    );
    assert!(env_of(&baseline, "app").is_empty() && env_of(&baseline, "sidecar").is_empty());
    assert_eq!(
        template_of(&baseline),
        template_of(&created),
        "no rollout at first sight"
    );

    set_configmap(&client, &ns, "foo-config", json!({"a": "1", "b": "2"})).await;
    let reloaded = wait_env(&deployments, "web", "app", "STAKATER_FOO_CONFIG_CONFIGMAP").await;
    assert_eq!(
        env_of(&reloaded, "app"),
        vec![(
            "STAKATER_FOO_CONFIG_CONFIGMAP".to_owned(),
            "f83e99e324ba68ccc373a58ef1eb42f8ab88646a".to_owned()
        )]
    );
    assert!(
        env_of(&reloaded, "sidecar").is_empty(),
        "only the container using the ConfigMap"
    );
    assert_eq!(
        ledger_of(&reloaded).unwrap()["configmap/foo-config"],
        "f83e99e324ba68ccc373a58ef1eb42f8ab88646a"
    );

    let expected = format!(
        "Changes detected in 'foo-config' of type 'CONFIGMAP' in namespace '{ns}', Updated 'web' of type 'Deployment' in namespace '{ns}'"
    );
    let event = eventually("the Reloaded event", || async {
        events(&client, &ns)
            .await
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("Reloaded"))
            .ok_or_else(|| "no event yet".to_owned())
    })
    .await;
    assert_eq!(event.message.as_deref(), Some(expected.as_str()));
    assert_eq!(event.type_.as_deref(), Some("Normal"));
    assert_eq!(event.involved_object.name.as_deref(), Some("web"));
    assert_eq!(
        controller
            .metric("reloader_reload_executed_total{success=\"true\"}")
            .await,
        1.0
    );
    // Upstream's metric names: one action per reload write, a reconcile counted
    // once per plan, the update event, and the process metrics the upstream load test reads.
    let action = "reloader_action_total{workload_kind=\"Deployment\",result=\"success\"}";
    assert_eq!(controller.metric(action).await, 1.0, "the reload");
    assert!(
        controller
            .metric("reloader_reconcile_total{result=\"success\"}")
            .await
            >= 2.0
    );
    let update =
        "reloader_events_received_total{event_type=\"update\",resource_type=\"configmaps\"}";
    assert!(controller.metric(update).await >= 1.0);
    assert!(controller.metric("process_resident_memory_bytes").await > 1_000_000.0);

    // A label-only change: seen (counted as no_data_change), never a rollout.
    Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .patch(
            "foo-config",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
        )
        .await
        .unwrap();
    eventually(
        "the label change to be counted as no_data_change",
        || async {
            let n = controller
                .metric("reloader_skipped_total{reason=\"no_data_change\"}")
                .await;
            if n >= 1.0 {
                Ok(())
            } else {
                Err(format!("{n}"))
            }
        },
    )
    .await;
    assert_eq!(
        template_of(&deployments.get("web").await.unwrap()),
        template_of(&reloaded)
    );

    let log = controller.stop();
    assert!(log.contains(&format!(
        "Changes detected in 'foo-config' of type 'CONFIGMAP' in namespace '{ns}'; updated 'web' of type 'Deployment' in namespace '{ns}'"
    )), "{log}");

    // The API server's own accounting: one LIST per watched kind at startup, no GET at all,
    // exactly two writes to the Deployment (baseline, reload).
    let requests = requests_by(&cluster, &identity.user);
    // The only GETs are the startup check of /version and the discovery of optional kinds.
    let reads: Vec<_> = requests
        .iter()
        .filter(|r| r.verb == "get" && !r.uri.starts_with("/apis/apps.openshift.io/"))
        .collect();
    assert!(
        reads.len() == 1 && reads[0].uri == "/version",
        "no GET but /version: {reads:?}"
    );
    // Sources come as one streaming list each (a watch with sendInitialEvents, this API server
    // serving WatchList), workload kinds as one paged LIST each; nothing more per change.
    for resource in ["configmaps", "secrets"] {
        let streams = requests
            .iter()
            .filter(|r| {
                r.verb == "watch"
                    && r.resource == resource
                    && r.uri.contains("sendInitialEvents=true")
            })
            .count();
        let lists = requests
            .iter()
            .filter(|r| r.verb == "list" && r.resource == resource)
            .count();
        assert_eq!(
            (streams, lists),
            (1, 0),
            "{resource}: one streaming list, no LIST: {requests:?}"
        );
    }
    for resource in ["deployments", "statefulsets", "daemonsets"] {
        let lists = requests
            .iter()
            .filter(|r| r.verb == "list" && r.resource == resource)
            .count();
        assert_eq!(
            lists, 1,
            "{resource}: one initial LIST, none per change: {requests:?}"
        );
    }
    let patches: Vec<_> = requests
        .iter()
        .filter(|r| r.verb == "patch" && r.resource == "deployments")
        .collect();
    assert_eq!(patches.len(), 2, "{patches:?}");
    assert!(
        patches
            .iter()
            .all(|p| p.code == 200 && p.namespace == ns && p.name == "web")
    );
}

/// Checklist 6, 8, 20: auto through a Secret volume with the annotations strategy writes
/// upstream's last-reloaded-from JSON, field order included; typed auto ignores the other kind.
#[tokio::test]
async fn annotations_strategy_writes_last_reloaded_from() {
    let (cluster, ns, client) = setup("annotations").await;
    create::<Secret>(&client, &ns, json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "stringData": {"password": "one"}})).await;
    create::<ConfigMap>(&client, &ns, configmap("settings", json!({"x": "1"}))).await;
    let spec = json!({
        "containers": [{"name": "app", "image": "registry.invalid/app",
                        "volumeMounts": [{"name": "creds", "mountPath": "/creds"}],
                        "envFrom": [{"configMapRef": {"name": "settings"}}]}],
        "volumes": [{"name": "creds", "secret": {"secretName": "db"}}]
    });
    create::<Deployment>(
        &client,
        &ns,
        deployment(
            "auto",
            json!({"reloader.stakater.com/auto": "true"}),
            spec.clone(),
        ),
    )
    .await;
    let typed_created = create::<Deployment>(
        &client,
        &ns,
        deployment(
            "typed",
            json!({"secret.reloader.stakater.com/auto": "true"}),
            spec,
        ),
    )
    .await;
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let controller = Controller::start(
        &cluster,
        &identity,
        &ns,
        &["--namespaces", &ns, "--reload-strategy=annotations"],
    )
    .await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    for name in ["auto", "typed"] {
        wait_deployment(&deployments, name, "the baseline ledger", |d| {
            ledger_of(d).is_some()
        })
        .await;
    }
    let typed = deployments.get("typed").await.unwrap();
    assert_eq!(
        ledger_of(&typed).unwrap().as_object().unwrap().len(),
        1,
        "typed auto tracks only the Secret"
    );

    // ConfigMap change: reloads "auto", not "typed".
    set_configmap(&client, &ns, "settings", json!({"x": "2"})).await;
    let annotation = |d: &Deployment| -> String {
        d.spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get("reloader.stakater.com/last-reloaded-from"))
            .cloned()
            .unwrap_or_default()
    };
    let auto = wait_deployment(&deployments, "auto", "a reload for the ConfigMap", |d| {
        !annotation(d).is_empty()
    })
    .await;
    assert_eq!(
        template_of(&deployments.get("typed").await.unwrap()),
        template_of(&typed_created),
        "typed auto for Secrets ignores ConfigMap changes"
    );
    assert!(annotation(&auto).starts_with(&format!(
        "{{\"type\":\"CONFIGMAP\",\"name\":\"settings\",\"namespace\":\"{ns}\",\"hash\":\"{}\",\"containerRefs\":[\"app\"],\"observedAt\":",
        sha1("x=2")
    )), "{}", annotation(&auto));

    // Secret change: both reload; the hash is over the raw bytes.
    Api::<Secret>::namespaced(client.clone(), &ns)
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"password": "two"}})),
        )
        .await
        .unwrap();
    let secret_hash = sha1("password=two");
    for name in ["auto", "typed"] {
        let d = wait_deployment(&deployments, name, "a reload for the Secret", |d| {
            annotation(d).contains(&secret_hash)
        })
        .await;
        let value: Value = serde_json::from_str(&annotation(&d)).unwrap();
        assert_eq!(
            (value["type"].as_str(), value["name"].as_str()),
            (Some("SECRET"), Some("db"))
        );
        assert!(
            env_of(&d, "app").is_empty(),
            "annotations strategy adds no env var"
        );
    }
    controller.stop();
}

/// Level-triggered with a ledger: a restart with no change writes nothing; a change made while
/// the controller was down is applied exactly once on the next start.
#[tokio::test]
async fn restarts_write_nothing_and_catch_up_changes_made_while_down() {
    let (cluster, ns, client) = setup("restart").await;
    create::<ConfigMap>(&client, &ns, configmap("cfg", json!({"v": "1"}))).await;
    let spec = json!({"containers": [{"name": "app", "image": "registry.invalid/app",
        "env": [{"name": "V", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "v"}}}]}]});
    create::<Deployment>(
        &client,
        &ns,
        deployment(
            "web",
            json!({"reloader.stakater.com/auto": "true"}),
            spec.clone(),
        ),
    )
    .await;
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let args = ["--namespaces", ns.as_str()];
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let patches_to_web = || {
        requests_by(&cluster, &identity.user)
            .into_iter()
            .filter(|r| r.verb == "patch" && r.resource == "deployments" && r.name == "web")
            .count()
    };
    // A later Deployment proves the controller worked through its queue.
    let sentinel = |n: usize| {
        let client = client.clone();
        let ns = ns.clone();
        let spec = spec.clone();
        async move {
            let name = format!("sentinel-{n}");
            create::<Deployment>(
                &client,
                &ns,
                deployment(&name, json!({"reloader.stakater.com/auto": "true"}), spec),
            )
            .await;
            wait_deployment(
                &Api::namespaced(client, &ns),
                &name,
                "the sentinel's ledger",
                |d| ledger_of(d).is_some(),
            )
            .await;
        }
    };

    let first = Controller::start(&cluster, &identity, "restart-1", &args).await;
    wait_deployment(&deployments, "web", "the baseline ledger", |d| {
        ledger_of(d).is_some()
    })
    .await;
    first.stop();
    assert_eq!(patches_to_web(), 1);

    let second = Controller::start(&cluster, &identity, "restart-2", &args).await;
    sentinel(1).await;
    second.stop();
    assert_eq!(
        patches_to_web(),
        1,
        "a restart without changes writes nothing"
    );

    set_configmap(&client, &ns, "cfg", json!({"v": "2"})).await;
    let third = Controller::start(&cluster, &identity, "restart-3", &args).await;
    let d = wait_env(&deployments, "web", "app", "the change made while down").await;
    assert_eq!(
        env_of(&d, "app"),
        vec![("STAKATER_CFG_CONFIGMAP".to_owned(), sha1("v=2"))]
    );
    sentinel(2).await;
    third.kill();

    let fourth = Controller::start(&cluster, &identity, "restart-4", &args).await;
    sentinel(3).await;
    fourth.stop();
    assert_eq!(patches_to_web(), 2, "baseline + exactly one reload");
    assert_eq!(
        template_of(&deployments.get("web").await.unwrap()),
        template_of(&d)
    );
}

/// Switching from stakater/Reloader restarts nothing: a workload whose STAKATER_* env var holds
/// the current digest keeps its pod template; a stale one is brought up to date.
#[tokio::test]
async fn switching_from_upstream_restarts_nothing() {
    let (cluster, ns, client) = setup("switch").await;
    create::<ConfigMap>(&client, &ns, configmap("cfg", json!({"a": "1", "b": "2"}))).await;
    let with_env = |value: &str| {
        json!({"containers": [{"name": "app", "image": "registry.invalid/app",
        "env": [{"name": "STAKATER_CFG_CONFIGMAP", "value": value}]}]})
    };
    let annotations = json!({"configmap.reloader.stakater.com/reload": "cfg"});
    let created = create::<Deployment>(
        &client,
        &ns,
        deployment(
            "current",
            annotations.clone(),
            with_env("f83e99e324ba68ccc373a58ef1eb42f8ab88646a"),
        ),
    )
    .await;
    create::<Deployment>(
        &client,
        &ns,
        deployment("stale", annotations, with_env(&sha1("a=0"))),
    )
    .await;
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let controller = Controller::start(&cluster, &identity, &ns, &["--namespaces", &ns]).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let current = wait_deployment(&deployments, "current", "the ledger", |d| {
        ledger_of(d).is_some()
    })
    .await;
    assert_eq!(
        template_of(&current),
        template_of(&created),
        "already current: no rollout"
    );
    let stale = wait_deployment(
        &deployments,
        "stale",
        "the stale env var to be updated",
        |d| {
            env_of(d, "app")
                .first()
                .is_some_and(|(_, v)| v == "f83e99e324ba68ccc373a58ef1eb42f8ab88646a")
        },
    )
    .await;
    assert_eq!(
        env_of(&stale, "app"),
        vec![(
            "STAKATER_CFG_CONFIGMAP".to_owned(),
            "f83e99e324ba68ccc373a58ef1eb42f8ab88646a".to_owned()
        )]
    );
    controller.stop();
}

/// Checklist 4, 23: an invalid regex item is skipped with a Warning Event naming it, the valid
/// item still reloads; StatefulSets and DaemonSets reload like Deployments.
#[tokio::test]
async fn invalid_regex_warns_and_all_apps_kinds_reload() {
    let (cluster, ns, client) = setup("kinds").await;
    create::<ConfigMap>(&client, &ns, configmap("good", json!({"k": "1"}))).await;
    let annotations = json!({"configmap.reloader.stakater.com/reload": "bad[, good"});
    let pod = json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "registry.invalid/c"}]}});
    create::<Deployment>(
        &client,
        &ns,
        deployment("d", annotations.clone(), pod["spec"].clone()),
    )
    .await;
    create::<StatefulSet>(
        &client,
        &ns,
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "s", "annotations": annotations},
        "spec": {"serviceName": "s", "selector": {"matchLabels": {"app": "x"}}, "template": pod}}),
    )
    .await;
    create::<DaemonSet>(
        &client,
        &ns,
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "ds", "annotations": annotations},
        "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": pod}}),
    )
    .await;
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let controller = Controller::start(&cluster, &identity, &ns, &["--namespaces", &ns]).await;

    let warning = eventually("the InvalidAnnotation warning", || async {
        events(&client, &ns)
            .await
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("InvalidAnnotation")
                    && e.involved_object.name.as_deref() == Some("d")
            })
            .ok_or_else(|| "none yet".to_owned())
    })
    .await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    assert!(
        warning.message.as_deref().unwrap().contains("\"bad[\""),
        "{warning:?}"
    );

    set_configmap(&client, &ns, "good", json!({"k": "2"})).await;
    let value = sha1("k=2");
    let has_env = |spec: Option<&k8s_openapi::api::core::v1::PodTemplateSpec>| {
        spec.and_then(|t| t.spec.as_ref()).is_some_and(|s| {
            s.containers[0].env.iter().flatten().any(|e| {
                e.name == "STAKATER_GOOD_CONFIGMAP" && e.value.as_deref() == Some(value.as_str())
            })
        })
    };
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), &ns);
    eventually("all three kinds to carry the env var", || async {
        let d = deployments.get("d").await.map_err(|e| e.to_string())?;
        let s = statefulsets.get("s").await.map_err(|e| e.to_string())?;
        let ds = daemonsets.get("ds").await.map_err(|e| e.to_string())?;
        let done = [
            has_env(d.spec.as_ref().map(|x| &x.template)),
            has_env(s.spec.as_ref().map(|x| &x.template)),
            has_env(ds.spec.as_ref().map(|x| &x.template)),
        ];
        if done.iter().all(|x| *x) {
            Ok(())
        } else {
            Err(format!("{done:?}"))
        }
    })
    .await;
    let log = controller.stop();
    assert_eq!(
        log.matches("Skipping invalid item").count(),
        3,
        "once per workload: {log}"
    );
}

/// The startup RBAC self-check: a kind the identity may not list/watch is reported once with
/// the rule to add and skipped (no watch retried forever, no error per event); the rest works.
#[tokio::test]
async fn missing_rbac_is_reported_once_and_that_kind_skipped() {
    let (cluster, ns, client) = setup("rbac-gap").await;
    create::<ConfigMap>(&client, &ns, configmap("cfg", json!({"a": "1"}))).await;
    named_deployment(&client, &ns, "web", "cfg").await;
    // Everything but Secrets and StatefulSets.
    let rules = json!([
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list", "watch"]},
        {"apiGroups": ["apps"], "resources": ["deployments", "daemonsets"], "verbs": ["list", "watch", "patch"]},
        {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]}
    ]);
    let identity = identity_with_rules(&cluster, &ns, rules).await;
    let controller = Controller::start(&cluster, &identity, &ns, &["--namespaces", &ns]).await;
    set_configmap(&client, &ns, "cfg", json!({"a": "2"})).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    wait_env(&deployments, "web", "app", "the ConfigMap reload").await;
    let log = controller.stop();
    for resource in ["secrets", "statefulsets"] {
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| {
                l.contains("missing RBAC permission")
                    && l.contains(&format!("resources: [\"{resource}\"]"))
            })
            .collect();
        assert_eq!(lines.len(), 1, "{resource} reported once: {log}");
        assert!(
            lines[0].contains(&format!("a Role in namespace {ns}")),
            "{}",
            lines[0]
        );
        assert!(
            lines[0].contains("verbs: [\"list\", \"watch\""),
            "{}",
            lines[0]
        );
    }
    let attempts: Vec<_> = requests_by(&cluster, &identity.user)
        .into_iter()
        .filter(|r| r.resource == "secrets" || r.resource == "statefulsets")
        .collect();
    assert!(
        attempts.is_empty(),
        "skipped kinds are never requested: {attempts:?}"
    );
}

/// One workload whose PATCH starts failing (RBAC then allows patching only "good") gets a
/// ReloadFail Event and is retried with backoff while the others reload; once allowed again,
/// the pending reload lands with the digest of the change it missed.
#[tokio::test]
async fn a_failing_workload_is_retried_and_never_blocks_the_others() {
    let (cluster, ns, client) = setup("failing").await;
    create::<ConfigMap>(&client, &ns, configmap("cfg", json!({"v": "1"}))).await;
    for name in ["good", "bad"] {
        named_deployment(&client, &ns, name, "cfg").await;
    }
    let rules = |patchable: &[&str]| {
        json!([
            {"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["list", "watch"]},
            {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets"], "verbs": ["list", "watch"]},
            {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": patchable, "verbs": ["patch"]},
            {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]}
        ])
    };
    let identity = identity_with_rules(&cluster, &ns, rules(&["good", "bad"])).await;
    let set_rules = |patchable: &'static [&'static str]| {
        let cluster = cluster.clone();
        let ns = ns.clone();
        let body = json!({"rules": rules(patchable)});
        async move {
            let admin = cluster.client().await.unwrap();
            Api::<k8s_openapi::api::rbac::v1::ClusterRole>::all(admin)
                .patch(
                    &format!("kube-reloader-{ns}"),
                    &PatchParams::default(),
                    &Patch::Merge(body),
                )
                .await
                .unwrap();
        }
    };
    let controller = Controller::start(&cluster, &identity, &ns, &["--namespaces", &ns]).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    for name in ["good", "bad"] {
        wait_deployment(&deployments, name, "the baseline", |d| {
            ledger_of(d).is_some()
        })
        .await;
    }

    set_rules(&["good"]).await;
    let probe = Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(
        cluster.client_as(&identity).await.unwrap(),
        &ns,
    );
    eventually("the RBAC change to take effect", || async {
        match probe
            .patch("bad", &PatchParams::default(), &Patch::Merge(json!({})))
            .await
        {
            Err(kube::Error::Api(status)) if status.code == 403 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    set_configmap(&client, &ns, "cfg", json!({"v": "2"})).await;
    wait_env(
        &deployments,
        "good",
        "app",
        "the reload of the healthy workload",
    )
    .await;
    let warning = eventually("the ReloadFail warning", || async {
        events(&client, &ns)
            .await
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("ReloadFail"))
            .ok_or_else(|| "none yet".to_owned())
    })
    .await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    assert_eq!(warning.involved_object.name.as_deref(), Some("bad"));
    assert!(
        warning
            .message
            .as_deref()
            .unwrap()
            .starts_with("Update for 'bad' of type 'Deployment' in namespace"),
        "{warning:?}"
    );
    assert!(
        controller
            .metric("reloader_reload_executed_total{success=\"false\"}")
            .await
            >= 1.0
    );
    assert!(env_of(&deployments.get("bad").await.unwrap(), "app").is_empty());

    set_rules(&["good", "bad"]).await;
    let bad = wait_env(&deployments, "bad", "app", "the retried reload").await;
    assert_eq!(
        env_of(&bad, "app"),
        vec![("STAKATER_CFG_CONFIGMAP".to_owned(), sha1("v=2"))]
    );
    let log = controller.stop();
    assert!(log.contains("will retry"), "{log}");
}
