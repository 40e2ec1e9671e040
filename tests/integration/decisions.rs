//! Upstream's decision rules, end to end: which sources each workload tracks (the ledger lists
//! exactly those) and which container gets the env var.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use crate::controller::{Controller, controller_rules, identity_with_rules};
use crate::fixtures::*;

fn container(name: &str, env_from: &[&str]) -> Value {
    json!({"name": name, "image": "registry.invalid/app",
           "envFrom": env_from.iter().map(|n| json!({"configMapRef": {"name": n}})).collect::<Vec<_>>()})
}

/// Checklist 3, 5-7, 9-14, 53 with `--auto-reload-all` and a custom `--configmap-annotation`.
#[tokio::test]
async fn decision_rules_match_upstream() {
    let (cluster, ns, client) = setup("decisions").await;
    for (name, annotations) in [
        ("cfg", json!({})),
        ("app-config-x", json!({})),
        ("ignored", json!({"reloader.stakater.com/ignore": "true"})),
        ("matched", json!({"reloader.stakater.com/match": "true"})),
    ] {
        create::<ConfigMap>(
            &client,
            &ns,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "annotations": annotations}, "data": {"v": "1"}}),
        )
        .await;
    }
    create::<Secret>(
        &client,
        &ns,
        json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "creds"}, "stringData": {"k": "1"}}),
    )
    .await;
    let mut app = container("app", &["cfg", "matched"]);
    app["volumeMounts"] = json!([{"name": "s", "mountPath": "/s"}]);
    let refs_all =
        json!({"containers": [app], "volumes": [{"name": "s", "secret": {"secretName": "creds"}}]});
    let cases: Vec<(&str, Value, Value, Value)> = vec![
        // (name, metadata annotations, pod spec, expected ledger keys)
        (
            "custom-named-regex",
            json!({"example.com/reload": "app-config-.*, ignored"}),
            json!({"containers": [container("first", &[]), container("second", &[])]}),
            json!(["configmap/app-config-x"]),
        ),
        (
            "default-key-unused",
            json!({"configmap.reloader.stakater.com/reload": "cfg", "reloader.stakater.com/auto": "false"}),
            json!({"containers": [container("app", &["cfg"])]}),
            json!([]),
        ),
        // auto "false" opts out of --auto-reload-all, so only search/match applies.
        (
            "search",
            json!({"reloader.stakater.com/search": "true", "reloader.stakater.com/auto": "false"}),
            refs_all.clone(),
            json!(["configmap/matched"]),
        ),
        (
            "excluded",
            json!({"reloader.stakater.com/auto": "true", "configmaps.exclude.reloader.stakater.com/reload": "cfg"}),
            refs_all.clone(),
            json!(["configmap/matched", "secret/creds"]),
        ),
        (
            "typed-secret",
            // With --auto-reload-all, a typed "false" opts that type out.
            json!({"secret.reloader.stakater.com/auto": "1", "configmap.reloader.stakater.com/auto": "false"}),
            refs_all.clone(),
            json!(["secret/creds"]),
        ),
        (
            "auto-all",
            json!({}),
            refs_all.clone(),
            json!(["configmap/cfg", "configmap/matched", "secret/creds"]),
        ),
        (
            "opt-out",
            json!({"reloader.stakater.com/auto": "false"}),
            refs_all.clone(),
            json!([]),
        ),
        (
            "init-only",
            json!({"reloader.stakater.com/auto": "True"}),
            json!({"initContainers": [container("init", &["cfg"])], "containers": [container("main", &[]), container("other", &[])]}),
            json!(["configmap/cfg"]),
        ),
    ];
    for (name, annotations, spec, _) in &cases {
        create::<Deployment>(
            &client,
            &ns,
            deployment(name, annotations.clone(), spec.clone()),
        )
        .await;
    }
    // The fallback to pod-template annotations when metadata has none of the keys.
    let mut template_auto = deployment(
        "template-auto",
        json!({"unrelated": "x"}),
        json!({"containers": [container("app", &["cfg"])]}),
    );
    template_auto["spec"]["template"]["metadata"]["annotations"] =
        json!({"reloader.stakater.com/auto": "true"});
    create::<Deployment>(&client, &ns, template_auto).await;

    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let controller = Controller::start(
        &cluster,
        &identity,
        &ns,
        &[
            "--namespaces",
            &ns,
            "--auto-reload-all",
            "--configmap-annotation",
            "example.com/reload",
        ],
    )
    .await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    // The last-created workload tracks something, so once it is recorded all were planned.
    wait_deployment(
        &deployments,
        "template-auto",
        "the template fallback's baseline",
        |d| ledger_of(d).is_some(),
    )
    .await;
    for (name, _, _, expected) in &cases {
        let expected: Vec<&str> = expected
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let d = if expected.is_empty() {
            deployments.get(name).await.unwrap()
        } else {
            wait_deployment(&deployments, name, "a baseline", |d| ledger_of(d).is_some()).await
        };
        let keys: Vec<String> = ledger_of(&d)
            .map(|l| l.as_object().unwrap().keys().cloned().collect())
            .unwrap_or_default();
        assert_eq!(keys, expected, "{name} tracks exactly these sources");
    }

    // Change every ConfigMap: named matches without a reference use containers[0], an
    // initContainer reference puts the env var on containers[0].
    for name in ["cfg", "app-config-x", "ignored", "matched"] {
        Api::<ConfigMap>::namespaced(client.clone(), &ns)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"v": "2"}})),
            )
            .await
            .unwrap();
    }
    let named = wait_env(
        &deployments,
        "custom-named-regex",
        "first",
        "the named reload",
    )
    .await;
    assert_eq!(
        env_of(&named, "first"),
        vec![("STAKATER_APP_CONFIG_X_CONFIGMAP".to_owned(), sha1("v=2"))]
    );
    assert!(env_of(&named, "second").is_empty());
    let init = wait_env(
        &deployments,
        "init-only",
        "main",
        "the initContainer reload",
    )
    .await;
    assert_eq!(
        env_of(&init, "main"),
        vec![("STAKATER_CFG_CONFIGMAP".to_owned(), sha1("v=2"))]
    );
    assert!(env_of(&init, "other").is_empty());
    wait_env(
        &deployments,
        "template-auto",
        "app",
        "the template fallback's reload",
    )
    .await;
    for name in ["default-key-unused", "opt-out"] {
        let d = deployments.get(name).await.unwrap();
        assert!(
            env_of(&d, "app").is_empty() && ledger_of(&d).is_none(),
            "{name} is never written"
        );
    }
    controller.stop();
}
