//! `kube-reloader explain` on the real API server: one workload per "why" case, the text checked
//! line by line and the JSON field by field, the verdict flipping once the controller has run,
//! a read-only identity, a missing permission, and the kubectl plugin name.

use std::path::Path;
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

use crate::controller::{BINARY, Controller, controller_rules, identity_with_rules};
use crate::fixtures::*;

const SECRET_VALUE: &str = "s3cr3t-never-printed";

/// Runs `explain` with `kubeconfig`; returns (exit code, stdout, stderr).
fn explain(program: &Path, kubeconfig: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(program)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("KUBERNETES_NAMESPACE")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn uses(configmaps: &[&str], secrets: &[&str]) -> Value {
    let mut env_from: Vec<Value> = configmaps
        .iter()
        .map(|n| json!({"configMapRef": {"name": n}}))
        .collect();
    env_from.extend(secrets.iter().map(|n| json!({"secretRef": {"name": n}})));
    json!({"containers": [{"name": "app", "image": "registry.invalid/app", "envFrom": env_from}]})
}

#[tokio::test]
async fn explain_answers_every_why_and_flips_once_the_controller_ran() {
    let (cluster, ns, client) = setup("explain").await;
    create::<ConfigMap>(&client, &ns, configmap("app-config", json!({"v": "1"}))).await;
    create::<ConfigMap>(&client, &ns, configmap("other", json!({"v": "1"}))).await;
    let mut ignored = configmap("quiet", json!({"v": "1"}));
    ignored["metadata"]["annotations"] = json!({"reloader.stakater.com/ignore": "true"});
    create::<ConfigMap>(&client, &ns, ignored).await;
    create::<Secret>(
        &client,
        &ns,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
               "stringData": {"password": SECRET_VALUE}}),
    )
    .await;
    let cases = [
        (
            "named",
            json!({"configmap.reloader.stakater.com/reload": "app-config,app-cofnig"}),
            uses(&[], &[]),
        ),
        ("plain", json!({}), uses(&["other"], &[])),
        (
            "typed",
            json!({"secret.reloader.stakater.com/auto": "true"}),
            uses(&["other"], &["db"]),
        ),
        (
            "excluded",
            json!({"reloader.stakater.com/auto": "true",
            "configmaps.exclude.reloader.stakater.com/reload": "other"}),
            uses(&["other"], &[]),
        ),
        (
            "ignored",
            json!({"reloader.stakater.com/auto": "true"}),
            uses(&["quiet"], &[]),
        ),
        (
            "search",
            json!({"reloader.stakater.com/search": "true"}),
            uses(&["other"], &[]),
        ),
        (
            "pattern",
            json!({"configmap.reloader.stakater.com/reload": "app-.*,bad[,none-.*"}),
            uses(&[], &[]),
        ),
    ];
    for (name, annotations, pod) in &cases {
        create::<Deployment>(
            &client,
            &ns,
            deployment(name, annotations.clone(), pod.clone()),
        )
        .await;
    }
    let admin = cluster.kubeconfig.clone();
    let run = |args: &[&str]| {
        let mut full = vec!["explain"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["-n", &ns]);
        explain(Path::new(BINARY), &admin, &full)
    };

    let (code, text, _) = run(&["deploy/named"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!("Deployment {ns}/named (reload strategy env-vars)")
    );
    assert_eq!(
        lines[1],
        "  ConfigMap app-config: named item \"app-config\" matches (configmap.reloader.stakater.com/reload)"
    );
    assert_eq!(
        lines[2],
        "    container app gets STAKATER_APP_CONFIG_CONFIGMAP (the first container: the source is named, not referenced)"
    );
    assert!(
        lines[3].starts_with(&format!(
            "    digest now {}, applied none: first sight",
            sha1("v=1")
        )),
        "{text}"
    );
    assert_eq!(
        lines[4],
        format!(
            "  problem: item \"app-cofnig\" of configmap.reloader.stakater.com/reload matches no ConfigMap in namespace {ns} (a typo?)"
        )
    );
    assert!(
        lines[5].starts_with("verdict: up to date (first sight"),
        "{text}"
    );
    assert_eq!(code, 0, "{text}");

    let why = |name: &str| {
        let (code, text, stderr) = run(&[&format!("deployment/{name}")]);
        assert!(!text.contains(SECRET_VALUE) && !stderr.contains(SECRET_VALUE));
        (code, text)
    };
    let (code, text) = why("plain");
    assert!(text.contains(
        "  ConfigMap other: not tracked: the Deployment has no opt-in annotation for it; add reloader.stakater.com/auto: \"true\" or configmap.reloader.stakater.com/reload: \"other\""
    ), "{text}");
    assert_eq!(code, 1, "a referenced source is not tracked");
    let (_, text) = why("typed");
    assert!(text.contains("  ConfigMap other: not tracked: secret.reloader.stakater.com/auto applies to Secrets only"), "{text}");
    assert!(
        text.contains(
            "  Secret db: auto (secret.reloader.stakater.com/auto) and the pod spec references it"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "    container app gets STAKATER_DB_SECRET (the first container that mounts or reads it)"
        ),
        "{text}"
    );
    let (_, text) = why("excluded");
    assert!(text.contains("  ConfigMap other: not tracked: excluded by configmaps.exclude.reloader.stakater.com/reload"), "{text}");
    let (_, text) = why("ignored");
    assert!(text.contains("  ConfigMap quiet: not tracked: the ConfigMap has reloader.stakater.com/ignore: \"true\""), "{text}");
    let (_, text) = why("search");
    assert!(
        text.contains(
            "  ConfigMap other: search: the ConfigMap lacks reloader.stakater.com/match: \"true\""
        ),
        "{text}"
    );
    let (_, text) = why("pattern");
    assert!(
        text.contains("  ConfigMap app-config: named item \"app-.*\" matches"),
        "{text}"
    );
    assert!(text.contains("problem: item \"bad[\" of configmap.reloader.stakater.com/reload is not a valid regular expression"), "{text}");
    assert!(text.contains("problem: item \"none-.*\" of configmap.reloader.stakater.com/reload matches no ConfigMap"), "{text}");

    // The controller's flags change the answer.
    let (_, text, _) = explain(
        Path::new(BINARY),
        &admin,
        &[
            "--auto-reload-all=true",
            "explain",
            "deploy/plain",
            "-n",
            &ns,
        ],
    );
    assert!(
        text.contains("  ConfigMap other: auto (--auto-reload-all) and the pod spec references it"),
        "{text}"
    );

    // The verdict flips: recorded by the controller, changed while it is stopped, reloaded.
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let controller = Controller::start(&cluster, &identity, &ns, &["--namespaces", &ns]).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    wait_deployment(&deployments, "named", "the ledger", |d| {
        ledger_of(d).is_some()
    })
    .await;
    controller.stop();
    set_configmap(&client, &ns, "app-config", json!({"v": "2"})).await;
    let (code, json_text, _) = run(&["deploy/named", "-o", "json"]);
    let answer: Value = serde_json::from_str(&json_text).unwrap();
    assert_eq!(code, 1);
    assert_eq!(answer["workload"], format!("Deployment {ns}/named"));
    assert_eq!(
        answer["verdict"],
        "will reload (ConfigMap app-config changed)"
    );
    let source = &answer["sources"][0];
    assert_eq!(source["name"], "app-config");
    assert_eq!(source["tracked"], true);
    assert_eq!(source["container"], "app");
    assert_eq!(source["digest"], sha1("v=2"));
    assert_eq!(source["applied"][0], sha1("v=1"));
    assert_eq!(source["verdict"], "will reload");
    let controller = Controller::start(&cluster, &identity, &ns, &["--namespaces", &ns]).await;
    wait_env(&deployments, "named", "app", "the reload").await;
    controller.stop();
    let (code, text, _) = run(&["deploy/named"]);
    assert!(text.contains("verdict: up to date"), "{text}");
    assert_eq!(code, 0);

    // The kubectl plugin name.
    let plugin_dir = cluster.dir.join(format!("plugin-{ns}"));
    std::fs::create_dir_all(&plugin_dir).unwrap();
    let plugin = plugin_dir.join("kubectl-reloader");
    let _ = std::fs::remove_file(&plugin);
    std::os::unix::fs::symlink(BINARY, &plugin).unwrap();
    let (code, text, _) = explain(&plugin, &admin, &["explain", "deploy/named", "-n", &ns]);
    assert!(
        text.starts_with(&format!("Deployment {ns}/named")),
        "{text}"
    );
    assert_eq!(code, 0);
}

#[tokio::test]
async fn explain_needs_only_get_and_list_and_names_a_missing_permission() {
    let (cluster, ns, client) = setup("explain-rbac").await;
    create::<ConfigMap>(&client, &ns, configmap("cfg", json!({"v": "1"}))).await;
    create::<Deployment>(
        &client,
        &ns,
        deployment(
            "web",
            json!({"reloader.stakater.com/auto": "true"}),
            uses(&["cfg"], &[]),
        ),
    )
    .await;
    let reader = cluster.service_account(&ns, "reader").await.unwrap();
    let role: Role = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "reader"},
        "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]},
                  {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]
    }))
    .unwrap();
    Api::<Role>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}]
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let args = ["explain", "deploy/web", "-n", ns.as_str()];
    // Without list on secrets: exit 2, naming the permission.
    let (code, _, stderr) = crate::support::eventually("RBAC to apply", || async {
        let result = explain(Path::new(BINARY), &reader.kubeconfig, &args);
        if result.2.contains("secrets") {
            Ok(result)
        } else {
            Err(result.2.clone())
        }
    })
    .await;
    assert_eq!(code, 2);
    assert!(
        stderr.contains(&format!("cannot list secrets in namespace {ns}: forbidden. Fix: grant list on secrets in namespace {ns}")),
        "{stderr}"
    );
    let mut role = role;
    role.rules.as_mut().unwrap().push(
        serde_json::from_value(
            json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}),
        )
        .unwrap(),
    );
    Api::<Role>::namespaced(client.clone(), &ns)
        .replace("reader", &PostParams::default(), &role)
        .await
        .unwrap();
    let (code, text, stderr) = crate::support::eventually("the grant to apply", || async {
        let result = explain(Path::new(BINARY), &reader.kubeconfig, &args);
        if result.0 == 0 {
            Ok(result)
        } else {
            Err(result.2.clone())
        }
    })
    .await;
    assert!(
        text.contains("  ConfigMap cfg: auto (reloader.stakater.com/auto)"),
        "{text} {stderr}"
    );
    assert_eq!(code, 0);
}

#[tokio::test]
async fn status_lists_what_needs_a_look_oldest_first() {
    let (cluster, ns, client) = setup("status").await;
    create::<ConfigMap>(&client, &ns, configmap("cfg", json!({"v": "2"}))).await;
    let named = json!({"configmap.reloader.stakater.com/reload": "cfg"});
    create::<Deployment>(
        &client,
        &ns,
        deployment("fine", named.clone(), uses(&[], &[])),
    )
    .await;
    create::<Deployment>(
        &client,
        &ns,
        deployment("quiet", json!({}), uses(&["cfg"], &[])),
    )
    .await;
    create::<Deployment>(
        &client,
        &ns,
        deployment(
            "typo",
            json!({"configmap.reloader.stakater.com/reload": "cfg,cgf"}),
            uses(&[], &[]),
        ),
    )
    .await;
    let mut behind = deployment("behind", named.clone(), uses(&[], &[]));
    behind["metadata"]["annotations"]["kube-reloader.io/digests"] =
        json!(format!("{{\"configmap/cfg\":\"{}\"}}", sha1("v=1")));
    create::<Deployment>(&client, &ns, behind).await;
    let failing =
        create::<Deployment>(&client, &ns, deployment("failing", named, uses(&[], &[]))).await;
    create::<k8s_openapi::api::core::v1::Event>(
        &client,
        &ns,
        json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "failing.reload"},
            "involvedObject": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "failing",
                               "namespace": ns, "uid": failing.metadata.uid},
            "reason": "ReloadFail", "type": "Warning", "message": "Update for 'failing' failed with error forbidden",
            "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z", "count": 1,
            "source": {"component": "reloader-configmaps"}}),
    )
    .await;
    let (code, text, stderr) = explain(
        Path::new(BINARY),
        &cluster.kubeconfig,
        &["status", "-n", &ns, "-o", "json"],
    );
    assert_eq!(code, 1, "{text} {stderr}");
    let lines: Vec<Value> = serde_json::from_str(&text).unwrap();
    let summary: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            (
                l["workload"].as_str().unwrap().to_owned(),
                l["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        summary[0],
        ("Deployment/failing".to_owned(), "failing".to_owned()),
        "oldest first: {text}"
    );
    let rest: std::collections::BTreeSet<(String, String)> = summary[1..].iter().cloned().collect();
    assert_eq!(
        rest,
        [
            ("Deployment/behind".to_owned(), "pending".to_owned()),
            ("Deployment/typo".to_owned(), "problem".to_owned())
        ]
        .into_iter()
        .collect(),
        "up-to-date and unannotated workloads are not listed: {text}"
    );
    let (code, text, _) = explain(
        Path::new(BINARY),
        &cluster.kubeconfig,
        &["status", "-n", &ns],
    );
    assert_eq!(code, 1);
    assert!(
        text.starts_with("NAMESPACE\tWORKLOAD\tSTATE\tAGE\tDETAIL"),
        "{text}"
    );
}

#[tokio::test]
async fn explain_names_the_governor_hold_given_the_controllers_flags() {
    let (cluster, ns, client) = setup("explain-gov").await;
    create::<ConfigMap>(&client, &ns, configmap("cfg", json!({"v": "2"}))).await;
    let recorded = json!({"configmap.reloader.stakater.com/reload": "cfg",
        "kube-reloader.io/digests": format!("{{\"configmap/cfg\":\"{}\"}}", sha1("v=1"))});
    for name in ["a-first", "b-second"] {
        create::<Deployment>(
            &client,
            &ns,
            deployment(name, recorded.clone(), uses(&[], &[])),
        )
        .await;
    }
    let gate = |name: &str| {
        let target = format!("deploy/{name}");
        explain(
            Path::new(BINARY),
            &cluster.kubeconfig,
            &["--health-gate", "--canary=1", "explain", &target, "-n", &ns],
        )
    };
    let (code, text, stderr) = gate("b-second");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        text.contains("verdict: will reload (ConfigMap cfg changed); waiting: canary: a-first (Deployment) reloads first"),
        "{text}"
    );
    let (_, text, _) = gate("a-first");
    assert!(
        text.contains("verdict: will reload (ConfigMap cfg changed)\n"),
        "the canary goes first: {text}"
    );
    // Without the flag: no hold.
    let (_, text, _) = explain(
        Path::new(BINARY),
        &cluster.kubeconfig,
        &["explain", "deploy/b-second", "-n", &ns],
    );
    assert!(
        text.contains("verdict: will reload (ConfigMap cfg changed)\n"),
        "{text}"
    );
}
