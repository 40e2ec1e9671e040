//! Key-level triggers (issue 15, item 1): a workload whose every reference to a ConfigMap names
//! keys reloads only when one of those keys changes; a whole-object reference keeps
//! whole-object behaviour. Rollouts are judged by the pod template (a Deployment's generation
//! also moves with its ledger annotation).

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::Api;
use serde_json::{Value, json};

use crate::controller::{Controller, controller_rules, identity_with_rules};
use crate::fixtures::*;

const AUTO: &str = "reloader.stakater.com/auto";
const MARKER: &str = "STAKATER_SHARED_CONFIGMAP";

/// A pod spec reading key `key` of ConfigMap `shared` through `env.valueFrom`.
fn reads_key(key: &str) -> Value {
    json!({"containers": [{"name": "app", "image": "registry.invalid/app",
        "env": [{"name": "V", "valueFrom": {"configMapKeyRef": {"name": "shared", "key": key}}}]}]})
}

/// A pod spec mounting only key `key` of ConfigMap `shared` (a volume with `items`).
fn mounts_key(key: &str) -> Value {
    json!({"containers": [{"name": "app", "image": "registry.invalid/app",
            "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}]}],
        "volumes": [{"name": "cfg", "configMap": {"name": "shared", "items": [{"key": key, "path": key}]}}]})
}

/// A pod spec taking all of ConfigMap `name` (envFrom).
fn reads_all(name: &str) -> Value {
    json!({"containers": [{"name": "app", "image": "registry.invalid/app",
        "envFrom": [{"configMapRef": {"name": name}}]}]})
}

fn marker(d: &Deployment) -> Option<String> {
    env_of(d, "app")
        .into_iter()
        .find(|(n, _)| n == MARKER)
        .map(|(_, v)| v)
}

async fn templates(api: &Api<Deployment>, names: &[&str]) -> Vec<Value> {
    let mut out = Vec::new();
    for name in names {
        out.push(template_of(&api.get(name).await.unwrap()));
    }
    out
}

/// Waits until every Deployment in `names` has a ledger entry for `shared`.
async fn wait_recorded(api: &Api<Deployment>, names: &[&str]) {
    for name in names {
        wait_deployment(api, name, "the ledger entry", |d| {
            ledger_of(d).is_some_and(|l| l.get("configmap/shared").is_some())
        })
        .await;
    }
}

async fn deploy(client: &Client, ns: &str, name: &str, annotations: Value, spec: Value) {
    create::<Deployment>(client, ns, deployment(name, annotations, spec)).await;
}

#[tokio::test]
async fn keylevel_rolls_only_the_readers_of_changed_keys() {
    let (cluster, ns, client) = setup("keylevel").await;
    create::<ConfigMap>(
        &client,
        &ns,
        configmap("shared", json!({"a": "1", "b": "1", "c": "1"})),
    )
    .await;
    create::<ConfigMap>(&client, &ns, configmap("probe", json!({"v": "1"}))).await;
    deploy(&client, &ns, "key-a", json!({AUTO: "true"}), reads_key("a")).await;
    deploy(
        &client,
        &ns,
        "key-b",
        json!({AUTO: "true"}),
        mounts_key("b"),
    )
    .await;
    deploy(
        &client,
        &ns,
        "whole",
        json!({AUTO: "true"}),
        reads_all("shared"),
    )
    .await;
    deploy(
        &client,
        &ns,
        "probe",
        json!({AUTO: "true"}),
        reads_all("probe"),
    )
    .await;
    let args = ["--namespaces", ns.as_str(), "--key-level-triggers"];
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let controller = Controller::start(&cluster, &identity, &ns, &args).await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let all = ["key-a", "key-b", "whole"];
    wait_recorded(&api, &all).await;
    for (name, keyed) in [("key-a", true), ("key-b", true), ("whole", false)] {
        let ledger = ledger_of(&api.get(name).await.unwrap()).unwrap();
        let entry = ledger["configmap/shared"].as_str().unwrap().to_owned();
        assert_eq!(entry.starts_with("keys:"), keyed, "{name}: {entry}");
    }
    let before = templates(&api, &all).await;

    // b changes: the Deployment mounting b and the one reading everything roll, not the a reader.
    set_configmap(&client, &ns, "shared", json!({"b": "2"})).await;
    let whole_digest = sha1("a=1;b=2;c=1");
    for name in ["key-b", "whole"] {
        let rolled = wait_deployment(&api, name, "a reload for b", |d| marker(d).is_some()).await;
        assert_eq!(
            marker(&rolled).as_deref(),
            Some(whole_digest.as_str()),
            "{name}: the marker stays upstream's whole-object digest"
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_b = templates(&api, &all).await;
    assert_eq!(after_b[0], before[0], "key-a reads only a: no rollout");
    let explained = std::process::Command::new(crate::controller::BINARY)
        .args(["--key-level-triggers", "explain", "deploy/key-a", "-n", &ns])
        .env("KUBECONFIG", &cluster.kubeconfig)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&explained.stdout);
    assert!(
        text.contains("key-level: reloads only when key(s) a change")
            && text.contains("the change is ignored because the workload reads only key(s) a"),
        "explain says why: {text}"
    );

    // a disappears: the a reader rolls (and the whole-object reader); the b reader does not.
    set_configmap(&client, &ns, "shared", json!({"a": null})).await;
    for name in ["key-a", "whole"] {
        let rolled = wait_deployment(&api, name, "a reload for a", |d| {
            marker(d).is_some_and(|m| m == sha1("b=2;c=1"))
        })
        .await;
        assert!(ledger_of(&rolled).is_some());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_a = templates(&api, &all).await;
    assert_eq!(after_a[1], after_b[1], "key-b reads only b: no rollout");

    // A restart recomputes everything from the cluster and rolls nothing.
    let _ = controller.stop();
    let controller = Controller::start(&cluster, &identity, &ns, &args).await;
    // The probe's reload shows the restarted controller has planned this namespace.
    set_configmap(&client, &ns, "probe", json!({"v": "2"})).await;
    wait_deployment(&api, "probe", "the probe reload", |d| {
        !env_of(d, "app").is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        templates(&api, &all).await,
        after_a,
        "no rollout after a restart"
    );
    controller.stop();
}

#[tokio::test]
async fn keylevel_annotation_opts_in_and_out() {
    let (cluster, ns, client) = setup("keylevel-ann").await;
    create::<ConfigMap>(
        &client,
        &ns,
        configmap("shared", json!({"a": "1", "b": "1"})),
    )
    .await;
    let opt_in = json!({AUTO: "true", "kube-reloader.io/key-level": "true"});
    let opt_out = json!({AUTO: "true", "kube-reloader.io/key-level": "false"});
    let invalid = json!({AUTO: "true", "kube-reloader.io/key-level": "yes"});
    deploy(&client, &ns, "in", opt_in, reads_key("a")).await;
    deploy(&client, &ns, "out", opt_out, reads_key("a")).await;
    deploy(&client, &ns, "plain", json!({AUTO: "true"}), reads_key("a")).await;
    deploy(&client, &ns, "invalid", invalid, reads_key("a")).await;
    let names = ["in", "out", "plain", "invalid"];
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);

    // Flag off: only the opted-in Deployment ignores a change of b.
    let controller = Controller::start(&cluster, &identity, &ns, &["--namespaces", &ns]).await;
    wait_recorded(&api, &names).await;
    let event = wait_event(&client, &ns, "the invalid-annotation Event", |e| {
        e.involved_object.name.as_deref() == Some("invalid")
            && e.message
                .as_deref()
                .is_some_and(|m| m.contains("kube-reloader.io/key-level=\"yes\""))
    })
    .await;
    assert_eq!(event.reason.as_deref(), Some("InvalidAnnotation"));
    let message = event.message.unwrap_or_default();
    assert!(
        message.contains(&format!("Deployment {ns}/invalid")) && message.contains("Fix:"),
        "{message}"
    );
    let before = templates(&api, &names).await;
    set_configmap(&client, &ns, "shared", json!({"b": "2"})).await;
    for name in ["out", "plain", "invalid"] {
        wait_deployment(&api, name, "a whole-object reload", |d| marker(d).is_some()).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let flag_off = templates(&api, &names).await;
    assert_eq!(flag_off[0], before[0], "opted in: no rollout");
    let _ = controller.stop();

    // Flag on: only the opted-out Deployment rolls on a change of b; the invalid value
    // follows the flag.
    let args = ["--namespaces", ns.as_str(), "--key-level-triggers=true"];
    let controller = Controller::start(&cluster, &identity, &ns, &args).await;
    // Turning the option on rolls nothing (the records change form on metadata only).
    for name in ["plain", "invalid"] {
        wait_deployment(&api, name, "the key-level record", |d| {
            ledger_of(d).is_some_and(|l| {
                l["configmap/shared"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("keys:"))
            })
        })
        .await;
    }
    assert_eq!(
        templates(&api, &names).await,
        flag_off,
        "switching on rolls nothing"
    );
    set_configmap(&client, &ns, "shared", json!({"b": "3"})).await;
    wait_deployment(&api, "out", "the opted-out reload", |d| {
        marker(d).is_some_and(|m| m == sha1("a=1;b=3"))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let flag_on = templates(&api, &names).await;
    assert_eq!(flag_on[0], flag_off[0], "opted in: no rollout");
    assert_eq!(flag_on[2], flag_off[2], "flag on: no rollout");
    assert_eq!(flag_on[3], flag_off[3], "invalid value follows the flag");
    controller.stop();
}

/// A Secret read through one `secretKeyRef`: another key's change rolls nothing, the read
/// key's change rolls once with upstream's marker, and the ledger entry is not an unkeyed
/// digest of the read value (it is keyed by the Secret's uid).
#[tokio::test]
async fn keylevel_secret_key_refs() {
    let (cluster, ns, client) = setup("keylevel-secret").await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), &ns);
    create::<k8s_openapi::api::core::v1::Secret>(
        &client,
        &ns,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
               "stringData": {"pin": "1234", "other": "x"}}),
    )
    .await;
    let spec = json!({"containers": [{"name": "app", "image": "registry.invalid/app",
        "env": [{"name": "PIN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "pin"}}}]}]});
    deploy(&client, &ns, "pin", json!({AUTO: "true"}), spec).await;
    deploy(
        &client,
        &ns,
        "all",
        json!({AUTO: "true"}),
        json!({"containers": [{"name": "app",
        "image": "registry.invalid/app", "envFrom": [{"secretRef": {"name": "creds"}}]}]}),
    )
    .await;
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let args = ["--namespaces", ns.as_str(), "--key-level-triggers"];
    let controller = Controller::start(&cluster, &identity, &ns, &args).await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let recorded = wait_deployment(&api, "pin", "the ledger entry", |d| {
        ledger_of(d).is_some_and(|l| l.get("secret/creds").is_some())
    })
    .await;
    let entry = ledger_of(&recorded).unwrap()["secret/creds"]
        .as_str()
        .unwrap()
        .to_owned();
    let unkeyed = kube_reloader::model::keys::KeySelection::of(
        vec!["pin".to_owned()],
        &kube_reloader::model::digest::secret_content([("pin", b"1234".as_slice())]).1,
    );
    assert!(entry.starts_with("keys:"), "{entry}");
    assert!(!entry.contains(&unkeyed.digest), "keyed: {entry}");
    let before = template_of(&recorded);
    let patch = |data: Value| {
        let secrets = secrets.clone();
        async move {
            secrets
                .patch(
                    "creds",
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(json!({"stringData": data})),
                )
                .await
                .unwrap();
        }
    };
    patch(json!({"other": "y"})).await;
    wait_deployment(&api, "all", "the whole-object reload", |d| {
        !env_of(d, "app").is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        template_of(&api.get("pin").await.unwrap()),
        before,
        "another key changed: no rollout"
    );
    patch(json!({"pin": "4321"})).await;
    let rolled = wait_deployment(&api, "pin", "the pin reload", |d| {
        !env_of(d, "app").is_empty()
    })
    .await;
    assert_eq!(
        env_of(&rolled, "app"),
        [("STAKATER_CREDS_SECRET".to_owned(), sha1("other=y;pin=4321"))]
    );
    controller.stop();
}
