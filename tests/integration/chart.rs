//! The Helm chart (deploy/helm/kube-reloader) on the real API server with RBAC on: every value
//! set is accepted by a server-side dry run; the controller, run with exactly the args and env of
//! the rendered Deployment and the token of the rendered ServiceAccount, reloads in global and
//! namespaced mode and is denied outside its namespaces; and every rendered rule is needed.
//!
//! The binary runs on the host (tier A has no kubelet), as the chart's ServiceAccount.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube_reloader_testenv::{ClusterInfo, ControlPlane, Identity, Tier};
use serde_json::{Value, json};

use crate::controller::{Controller, requests_by};
use crate::fixtures::{
    configmap, create, deployment, env_of, ledger_of, set_configmap, wait_deployment,
};
use crate::rbac::status_code;
use crate::support::{cluster, eventually};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/helm/kube-reloader");
const UPSTREAM_VALUES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/upstream-chart/values.yaml"
);
const MISSING: &str = "missing RBAC permission";

/// Runs a command to completion and returns its stdout; panics with its output on failure.
fn run(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// helm with the admin kubeconfig and its caches in the run directory.
fn helm(cluster: &ClusterInfo) -> Command {
    let home = cluster.dir.join("helm");
    let mut command = Command::new(cluster.bin("helm"));
    command
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    command
}

/// `-f FILE` for each values file and `--set X` for each setting.
fn value_args(files: &[&str], sets: &[String]) -> Vec<String> {
    let mut args = Vec::new();
    for file in files {
        args.extend(["--values".to_owned(), (*file).to_owned()]);
    }
    for set in sets {
        args.extend(["--set".to_owned(), set.clone()]);
    }
    args
}

/// The documents of a multi-document YAML stream, as JSON values.
fn documents(text: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// `helm template` of the chart.
fn render(
    cluster: &ClusterInfo,
    release: &str,
    ns: &str,
    files: &[&str],
    sets: &[String],
) -> Vec<Value> {
    documents(&run(helm(cluster)
        .args(["template", release, CHART, "--namespace", ns])
        .args(value_args(files, sets))))
}

/// `helm upgrade --install` of the chart (a real install): its NOTES and the installed objects.
fn install(
    cluster: &ClusterInfo,
    release: &str,
    ns: &str,
    files: &[&str],
    sets: &[String],
) -> (String, Vec<Value>) {
    let notes = run(helm(cluster)
        .args(["upgrade", "--install", release, CHART, "--namespace", ns])
        .args(value_args(files, sets)));
    let docs = documents(&run(helm(cluster).args([
        "get",
        "manifest",
        release,
        "--namespace",
        ns,
    ])));
    (notes, docs)
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn container(docs: &[Value]) -> &Value {
    let deployments = of_kind(docs, "Deployment");
    assert_eq!(deployments.len(), 1);
    &deployments[0]["spec"]["template"]["spec"]["containers"][0]
}

fn args(docs: &[Value]) -> Vec<String> {
    strings(&container(docs)["args"])
}

fn env_names(docs: &[Value]) -> Vec<String> {
    container(docs)["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The rendered env as the pod would see it: field references resolved for pod `pod` in `ns`.
fn env_values(docs: &[Value], pod: &str, ns: &str) -> Vec<(String, String)> {
    container(docs)["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let value = match (
                &e["value"],
                e["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
            ) {
                (Value::String(v), _) => v.clone(),
                (_, Some("metadata.namespace")) => ns.to_owned(),
                (_, Some("metadata.name")) => pod.to_owned(),
                _ => panic!("unexpected env entry {e}"),
            };
            (e["name"].as_str().unwrap().to_owned(), value)
        })
        .collect()
}

/// Every rule of every (Cluster)Role: (kind, role name, namespace, rule).
fn rules(docs: &[Value]) -> Vec<(String, String, Option<String>, Value)> {
    let mut all = Vec::new();
    for doc in docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
    {
        for rule in doc["rules"].as_array().unwrap() {
            all.push((
                doc["kind"].as_str().unwrap().to_owned(),
                doc["metadata"]["name"].as_str().unwrap().to_owned(),
                doc["metadata"]["namespace"].as_str().map(str::to_owned),
                rule.clone(),
            ));
        }
    }
    all
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// `group/resource[names]: verbs` of every rule of the (Cluster)Roles in `namespace` (None: the
/// ClusterRoles).
fn grants(docs: &[Value], namespace: Option<&str>) -> BTreeSet<String> {
    let mut grants = BTreeSet::new();
    for (_, _, ns, rule) in rules(docs) {
        if ns.as_deref() != namespace {
            continue;
        }
        let verbs = strings(&rule["verbs"]).join(",");
        let names = strings(&rule["resourceNames"]);
        let named = if names.is_empty() {
            String::new()
        } else {
            format!("[{}]", names.join(","))
        };
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                grants.insert(format!("{group}/{resource}{named}: {verbs}"));
            }
        }
    }
    grants
}

fn set_of(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// The workload rules of the default values.
const DEFAULT_RULES: &[&str] = &[
    "/configmaps: list,watch",
    "/secrets: list,watch",
    "apps/daemonsets: list,watch,patch",
    "apps/deployments: list,watch,patch",
    "apps/statefulsets: list,watch,patch",
    "batch/cronjobs: list,watch,patch",
    "batch/jobs: list,watch,create,patch,delete",
    "events.k8s.io/events: create,patch",
];
const META_INFO_RULES: &[&str] = &[
    "/configmaps: create",
    "/configmaps[reloader-meta-info]: get,update",
];
const LEASE_RULES: &[&str] = &[
    "coordination.k8s.io/leases: create",
    "coordination.k8s.io/leases[stakater-reloader-lock]: get,patch,list,watch",
];

fn with(base: &[&str], extra: &[&str]) -> BTreeSet<String> {
    base.iter().chain(extra).map(|s| (*s).to_owned()).collect()
}

fn without(base: &[&str], removed: &[&str]) -> BTreeSet<String> {
    base.iter()
        .filter(|r| !removed.contains(r))
        .map(|s| (*s).to_owned())
        .collect()
}

/// What each value set renders: args, env and RBAC, checked on the rendered objects.
#[tokio::test]
async fn value_sets_render_the_args_env_and_rbac_of_their_features() {
    let cluster = cluster(Tier::A).await;
    let (release, ns) = ("rel", "relns");
    let ci = |name: &str| {
        render(
            &cluster,
            release,
            ns,
            &[&format!("{CHART}/ci/{name}-values.yaml")],
            &[],
        )
    };
    let set = |sets: &[&str]| {
        let sets: Vec<String> = sets.iter().map(|s| (*s).to_owned()).collect();
        render(&cluster, release, ns, &[], &sets)
    };

    let docs = set(&[]);
    assert_eq!(args(&docs), ["--log-level=info"]);
    assert_eq!(
        env_names(&docs),
        ["RELOADER_NAMESPACE", "RELOADER_DEPLOYMENT_NAME"]
    );
    assert_eq!(grants(&docs, None), with(DEFAULT_RULES, &[]));
    assert_eq!(grants(&docs, Some(ns)), with(META_INFO_RULES, &[]));
    let deployment = of_kind(&docs, "Deployment")[0];
    assert_eq!(deployment["metadata"]["name"], "rel-reloader");
    assert_eq!(
        deployment["spec"]["selector"]["matchLabels"],
        json!({"app": "rel-reloader", "release": "rel"})
    );
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "rel-reloader");
    assert_eq!(
        pod["securityContext"],
        json!({"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}})
    );
    let app = container(&docs);
    assert_eq!(
        app["securityContext"],
        json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}})
    );
    assert_eq!(
        app["ports"],
        json!([{"name": "http", "containerPort": 9090, "protocol": "TCP"}])
    );
    assert_eq!(
        app["livenessProbe"]["httpGet"],
        json!({"path": "/live", "port": "http"})
    );
    assert_eq!(
        app["readinessProbe"]["httpGet"],
        json!({"path": "/ready", "port": "http"})
    );
    assert!(
        app["resources"]["limits"]["memory"].is_string()
            && app["resources"]["requests"]["cpu"].is_string()
    );
    assert_eq!(
        of_kind(&docs, "ClusterRoleBinding")[0]["subjects"],
        json!([{"kind": "ServiceAccount", "name": "rel-reloader", "namespace": ns}])
    );

    // Namespaced: Roles in exactly the listed namespaces plus the release namespace, no ClusterRole.
    let docs = ci("namespaced");
    assert!(
        of_kind(&docs, "ClusterRole").is_empty() && of_kind(&docs, "ClusterRoleBinding").is_empty()
    );
    assert_eq!(
        args(&docs),
        ["--log-level=info", "--namespaces=relns,team-a,team-b"]
    );
    assert!(!env_names(&docs).contains(&"KUBERNETES_NAMESPACE".to_owned()));
    for watched in ["team-a", "team-b"] {
        assert_eq!(
            grants(&docs, Some(watched)),
            with(DEFAULT_RULES, &[]),
            "{watched}"
        );
        assert_eq!(
            of_kind(&docs, "RoleBinding")
                .iter()
                .filter(|b| b["metadata"]["namespace"] == watched)
                .count(),
            1
        );
    }
    assert_eq!(
        grants(&docs, Some(ns)),
        with(DEFAULT_RULES, META_INFO_RULES)
    );

    let docs = ci("single-namespace");
    assert!(of_kind(&docs, "ClusterRole").is_empty());
    assert!(env_values(&docs, "p", ns).contains(&("KUBERNETES_NAMESPACE".into(), ns.into())));
    assert_eq!(
        grants(&docs, Some(ns)),
        with(DEFAULT_RULES, META_INFO_RULES)
    );

    // replicas > 1 without enableHA: leader election instead of a crash loop.
    let docs = ci("ha");
    assert_eq!(of_kind(&docs, "Deployment")[0]["spec"]["replicas"], 2);
    assert!(args(&docs).contains(&"--enable-ha=true".to_owned()));
    let env = env_values(&docs, "pod-1", ns);
    assert!(
        env.contains(&("POD_NAME".into(), "pod-1".into()))
            && env.contains(&("POD_NAMESPACE".into(), ns.into()))
    );
    assert_eq!(grants(&docs, Some(ns)), with(META_INFO_RULES, LEASE_RULES));
    assert_eq!(of_kind(&docs, "PodDisruptionBudget").len(), 1);
    assert!(
        of_kind(&docs, "Deployment")[0]["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
            .is_object()
    );

    // No permission at all on what is ignored; Jobs keep delete only for re-creation.
    let docs = ci("ignore-secrets");
    assert_eq!(
        args(&docs),
        [
            "--log-level=info",
            "--resources-to-ignore=secrets",
            "--ignored-workload-types=cronjobs"
        ]
    );
    assert_eq!(
        grants(&docs, None),
        without(
            DEFAULT_RULES,
            &["/secrets: list,watch", "batch/cronjobs: list,watch,patch"]
        )
    );
    let docs = set(&["reloader.ignoreJobs=true"]);
    assert_eq!(
        grants(&docs, None),
        with(
            &without(
                DEFAULT_RULES,
                &["batch/jobs: list,watch,create,patch,delete"]
            )
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
            &["batch/jobs: list,watch,create"]
        )
    );
    let docs = set(&["reloader.ignoreJobs=true", "reloader.ignoreCronJobs=true"]);
    assert!(grants(&docs, None).iter().all(|g| !g.starts_with("batch/")));

    let docs = ci("argo");
    assert_eq!(
        args(&docs),
        [
            "--log-level=info",
            "--is-Argo-Rollouts=true",
            "--reload-strategy=annotations"
        ]
    );
    assert_eq!(
        grants(&docs, None),
        with(
            DEFAULT_RULES,
            &[
                "argoproj.io/rollouts: list,watch,patch",
                "apps.openshift.io/deploymentconfigs: list,watch,patch"
            ]
        )
    );

    let docs = ci("csi");
    assert_eq!(
        args(&docs),
        [
            "--log-level=info",
            "--resource-label-selector=reloader=enabled",
            "--enable-csi-integration=true"
        ]
    );
    assert_eq!(
        grants(&docs, None),
        with(
            DEFAULT_RULES,
            &[
                "secrets-store.csi.x-k8s.io/secretproviderclasses: list,watch",
                "secrets-store.csi.x-k8s.io/secretproviderclasspodstatuses: list,watch",
            ]
        )
    );

    // Every custom annotation flag, and the webhook URL (also without custom_annotations).
    let docs = ci("custom-annotations");
    let rendered: BTreeSet<String> = args(&docs).into_iter().collect();
    for flag in [
        "--configmap-annotation=example.com/configmap-reload",
        "--secret-annotation=example.com/secret-reload",
        "--auto-annotation=example.com/auto",
        "--secret-auto-annotation=example.com/secret-auto",
        "--configmap-auto-annotation=example.com/configmap-auto",
        "--auto-search-annotation=example.com/search",
        "--search-match-annotation=example.com/match",
        "--ignore-annotation=example.com/ignore",
        "--pause-deployment-annotation=example.com/pause-period",
        "--pause-deployment-time-annotation=example.com/paused-at",
        "--webhook-url=https://hooks.example.com/reloader",
    ] {
        assert!(rendered.contains(flag), "{flag} missing from {rendered:?}");
    }
    let docs = set(&["reloader.webhookUrl=https://hooks.example.com/x"]);
    assert!(args(&docs).contains(&"--webhook-url=https://hooks.example.com/x".to_owned()));

    // The namespace selector adds namespaces list/watch (global mode only).
    let docs = set(&["reloader.namespaceSelector=env=prod"]);
    assert!(grants(&docs, None).contains("/namespaces: list,watch"));
    assert!(args(&docs).contains(&"--namespace-selector=env=prod".to_owned()));

    // Upstream's own values.yaml renders with the same meaning (its image is kept, and said).
    let docs = render(&cluster, release, ns, &[UPSTREAM_VALUES], &[]);
    assert_eq!(args(&docs), ["--log-level=info"]);
    assert_eq!(grants(&docs, None), with(DEFAULT_RULES, &[]));
    assert_eq!(
        container(&docs)["image"],
        "ghcr.io/stakater/reloader:v1.4.21"
    );
}

/// A value set of deploy/helm/kube-reloader/ci/.
fn ci_values(name: &str) -> String {
    format!("{CHART}/ci/{name}-values.yaml")
}

/// `helm template` that must fail: its error output.
fn render_error(cluster: &ClusterInfo, sets: &[String]) -> String {
    let output = helm(cluster)
        .args(["template", "rel", CHART, "--namespace", "relns"])
        .args(value_args(&[], sets))
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "helm template {sets:?} succeeded:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stderr).unwrap()
}

/// The kinds the chart can render that live in a namespace.
const NAMESPACED_KINDS: &[&str] = &[
    "Deployment",
    "ServiceAccount",
    "Secret",
    "Service",
    "Role",
    "RoleBinding",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "VerticalPodAutoscaler",
    "ServiceMonitor",
    "PodMonitor",
];

/// Upstream's top-level `namespace` value: every namespaced object, the ServiceAccount the
/// bindings name, the namespaced mode's always-watched namespace and the monitors' target are
/// that namespace instead of the release namespace, in global, single-namespace and namespaced
/// mode; a monitor's own `namespace` still wins. A real install puts the objects there and
/// NOTES.txt says where.
#[tokio::test]
async fn the_namespace_value_places_every_namespaced_object_there() {
    let cluster = cluster(Tier::A).await;
    let (release, ns, target) = ("rel", "relns", "elsewhere");
    let everything: Vec<String> = [
        "namespace=elsewhere",
        "reloader.enableHA=true",
        "reloader.service.port=9090",
        "reloader.serviceMonitor.enabled=true",
        "reloader.podMonitor.enabled=true",
        "reloader.podDisruptionBudget.enabled=true",
        "reloader.netpol.enabled=true",
        "reloader.verticalPodAutoscaler.enabled=true",
        "reloader.deployment.env.secret.ALERT_SINK=slack",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let modes: [&[&str]; 3] = [
        &[],
        &["reloader.watchGlobally=false"],
        &[
            "reloader.watchGlobally=false",
            "reloader.namespaces={team-a}",
        ],
    ];
    for mode in modes {
        let sets: Vec<String> = everything
            .iter()
            .cloned()
            .chain(mode.iter().map(|s| (*s).to_owned()))
            .collect();
        let docs = render(&cluster, release, ns, &[], &sets);
        let mut kinds = BTreeSet::new();
        for doc in &docs {
            let kind = doc["kind"].as_str().unwrap();
            if !NAMESPACED_KINDS.contains(&kind) {
                assert!(doc["metadata"]["namespace"].is_null(), "{mode:?}: {doc}");
                continue;
            }
            kinds.insert(kind.to_owned());
            let placed = doc["metadata"]["namespace"].as_str().unwrap();
            let name = doc["metadata"]["name"].as_str().unwrap();
            // In namespaced mode the watch Role and its binding also go to the listed namespace.
            let watch_rbac = ["rel-reloader-role", "rel-reloader-role-binding"].contains(&name);
            assert!(
                placed == target || (mode.len() == 2 && watch_rbac && placed == "team-a"),
                "{mode:?}: {kind} {name} in {placed}"
            );
        }
        assert_eq!(
            kinds,
            set_of(NAMESPACED_KINDS),
            "{mode:?}: every namespaced kind was rendered"
        );
        for binding in of_kind(&docs, "RoleBinding")
            .into_iter()
            .chain(of_kind(&docs, "ClusterRoleBinding"))
        {
            assert_eq!(
                binding["subjects"],
                json!([{"kind": "ServiceAccount", "name": "rel-reloader", "namespace": target}])
            );
        }
        for monitor in ["ServiceMonitor", "PodMonitor"] {
            assert_eq!(
                of_kind(&docs, monitor)[0]["spec"]["namespaceSelector"],
                json!({"matchNames": [target]})
            );
        }
        let own: BTreeSet<String> = with(META_INFO_RULES, LEASE_RULES);
        if mode.is_empty() {
            assert_eq!(grants(&docs, Some(target)), own);
        } else {
            // The chart's namespace is watched: the workload rules are there too.
            assert!(of_kind(&docs, "ClusterRole").is_empty());
            let mut expected = with(DEFAULT_RULES, &[]);
            expected.extend(own);
            assert_eq!(grants(&docs, Some(target)), expected, "{mode:?}");
        }
        if mode.len() == 2 {
            assert!(args(&docs).contains(&format!("--namespaces={target},team-a")));
            assert_eq!(grants(&docs, Some("team-a")), with(DEFAULT_RULES, &[]));
        }
        assert!(grants(&docs, Some(ns)).is_empty(), "{mode:?}: RBAC in {ns}");
    }
    // A monitor's own namespace wins; it still scrapes the chart's namespace.
    let mut sets = everything.clone();
    sets.push("reloader.podMonitor.namespace=monitoring".to_owned());
    let docs = render(&cluster, release, ns, &[], &sets);
    let monitor = of_kind(&docs, "PodMonitor")[0];
    assert_eq!(monitor["metadata"]["namespace"], "monitoring");
    assert_eq!(
        monitor["spec"]["namespaceSelector"],
        json!({"matchNames": [target]})
    );

    // A real install: the objects are in the other namespace, the release record stays.
    let release_ns = cluster.create_namespace("chart-nsvalue").await.unwrap();
    let other = cluster
        .create_namespace("chart-nsvalue-objects")
        .await
        .unwrap();
    let admin = cluster.client().await.unwrap();
    let sets = [
        format!("namespace={other}"),
        "reloader.watchGlobally=false".to_owned(),
    ];
    let (notes, installed) = install(&cluster, &release_ns, &release_ns, &[], &sets);
    assert!(
        notes.contains(&format!(
            "is installed as Deployment {other}/{release_ns}-reloader."
        )) && notes.contains(&format!("Watching: namespace {other} only")),
        "{notes}"
    );
    let name = format!("{release_ns}-reloader");
    assert!(
        Api::<Deployment>::namespaced(admin.clone(), &other)
            .get_opt(&name)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        Api::<Deployment>::namespaced(admin.clone(), &release_ns)
            .get_opt(&name)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        Api::<Role>::namespaced(admin.clone(), &other)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        of_kind(&installed, "Role").len()
    );
    run(helm(&cluster).args(["uninstall", &release_ns, "--namespace", &release_ns]));
}

/// Labels and annotations given as templates (ci/templated-values.yaml) are rendered with tpl,
/// as upstream's chart renders them: on the Deployment, its pod and selector, the Service
/// selector, the ServiceAccount, the RBAC objects and the monitors; `{{ "{{" }}` keeps a literal.
#[tokio::test]
async fn labels_and_annotations_from_values_are_rendered_with_tpl() {
    let cluster = cluster(Tier::A).await;
    let docs = render(&cluster, "rel", "relns", &[&ci_values("templated")], &[]);
    let deployment = of_kind(&docs, "Deployment")[0];
    let metadata = &deployment["metadata"];
    assert_eq!(metadata["labels"]["chart-name"], "kube-reloader");
    assert_eq!(metadata["labels"]["instance"], "rel");
    assert_eq!(
        metadata["annotations"],
        json!({"example.com/release": "rel", "example.com/literal": "{{ kept }}"})
    );
    assert_eq!(
        deployment["spec"]["selector"]["matchLabels"],
        json!({"app": "rel-reloader", "release": "rel", "instance": "rel"})
    );
    let pod = &deployment["spec"]["template"]["metadata"];
    assert_eq!(pod["labels"]["instance"], "rel");
    assert_eq!(pod["labels"]["chart-name"], "kube-reloader");
    assert_eq!(
        pod["annotations"],
        json!({"example.com/namespace": "relns"})
    );
    let service = of_kind(&docs, "Service")[0];
    assert_eq!(
        service["spec"]["selector"],
        json!({"app": "rel-reloader", "release": "rel", "instance": "rel"})
    );
    assert_eq!(service["metadata"]["labels"]["service-of"], "rel");
    assert_eq!(
        service["metadata"]["annotations"],
        json!({"example.com/service-of": "rel"})
    );
    let account = of_kind(&docs, "ServiceAccount")[0];
    assert_eq!(account["metadata"]["labels"]["account-of"], "rel");
    assert_eq!(
        account["metadata"]["annotations"],
        json!({"example.com/role": "arn:aws:iam::123456789012:role/rel"})
    );
    for kind in ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"] {
        for doc in of_kind(&docs, kind) {
            assert_eq!(doc["metadata"]["labels"]["rbac-of"], "rel", "{kind}");
            assert_eq!(doc["metadata"]["labels"]["instance"], "rel", "{kind}");
        }
    }
    for kind in ["PodMonitor", "ServiceMonitor"] {
        let monitor = of_kind(&docs, kind)[0];
        assert_eq!(monitor["metadata"]["labels"]["monitor-of"], "rel", "{kind}");
        assert_eq!(
            monitor["spec"]["selector"]["matchLabels"]["instance"], "rel",
            "{kind}"
        );
    }
    assert_eq!(
        of_kind(&docs, "PodMonitor")[0]["metadata"]["annotations"],
        json!({"example.com/monitor-of": "rel"})
    );
    // No template is left unrendered anywhere (the escaped literal aside).
    let text = serde_json::to_string(&docs).unwrap();
    assert_eq!(text.matches("{{").count(), 1, "{text}");
}

/// Probe values and custom_annotations in upstream's shape (ci/upstream-shapes-values.yaml):
/// keys without effect here are rendered without error and named in NOTES.txt with the reason;
/// the timings that have an effect are applied. The schema still rejects what cannot run.
#[tokio::test]
async fn upstream_shaped_probe_and_annotation_values_render_and_warn_when_without_effect() {
    let cluster = cluster(Tier::A).await;
    let shapes = ci_values("upstream-shapes");
    let docs = render(&cluster, "rel", "relns", &[&shapes], &[]);
    let rendered = args(&docs);
    assert_eq!(
        rendered,
        [
            "--log-level=info",
            "--configmap-annotation=example.com/configmap-reload"
        ]
    );
    let app = container(&docs);
    assert_eq!(
        app["livenessProbe"],
        json!({"httpGet": {"path": "/live", "port": "http"}, "timeoutSeconds": 7,
            "failureThreshold": 5, "periodSeconds": 10, "successThreshold": 1, "initialDelaySeconds": 10})
    );
    assert_eq!(
        app["readinessProbe"],
        json!({"httpGet": {"path": "/ready", "port": "http"}, "timeoutSeconds": 5,
            "failureThreshold": 5, "periodSeconds": 20, "successThreshold": 1, "initialDelaySeconds": 10})
    );

    let release = cluster.create_namespace("chart-shapes").await.unwrap();
    let single = ["reloader.watchGlobally=false".to_owned()];
    let (notes, _) = install(&cluster, &release, &release, &[], &single);
    assert!(!notes.contains("has no effect"), "{notes}");
    let (notes, _) = install(&cluster, &release, &release, &[&shapes], &single);
    for warning in [
        "WARNING: reloader.deployment.livenessProbe.enabled has no effect: only the probe timings",
        "WARNING: reloader.deployment.readinessProbe.httpGet has no effect: only the probe timings",
        "the probe is HTTP GET /ready on port http",
        "WARNING: reloader.custom_annotations.configmaps has no effect: neither kube-reloader nor upstream's chart reads that key",
        "WARNING: reloader.custom_annotations.ignore is empty and has no effect: the default annotation reloader.stakater.com/ignore is used.",
    ] {
        assert!(notes.contains(warning), "{warning} missing from:\n{notes}");
    }
    assert_eq!(notes.matches("has no effect").count(), 4, "{notes}");
    run(helm(&cluster).args(["uninstall", &release, "--namespace", &release]));

    // Values that cannot run are still rejected before anything is installed.
    for (set, at) in [
        (
            "reloader.deployment.readinessProbe.timeoutSeconds=-1",
            "/reloader/deployment/readinessProbe/timeoutSeconds",
        ),
        (
            "reloader.deployment.livenessProbe.periodSeconds=10s",
            "/reloader/deployment/livenessProbe/periodSeconds",
        ),
        (
            "reloader.deployment.livenessProbe.successThreshold=2",
            "/reloader/deployment/livenessProbe/successThreshold",
        ),
        (
            "reloader.custom_annotations.configmap=5",
            "/reloader/custom_annotations/configmap",
        ),
    ] {
        let error = render_error(&cluster, &[set.to_owned()]);
        assert!(error.contains(at), "{set}: {error}");
    }
}

/// Empty `env.open`, `env.secret` and `env.existing` values ("" or null) are left out, as
/// upstream's chart leaves them out: no empty env var, no empty Secret key, and no Secret at all
/// when every secret value is empty. false is a value.
#[tokio::test]
async fn empty_env_values_are_left_out() {
    let cluster = cluster(Tier::A).await;
    let docs = render(&cluster, "rel", "relns", &[&ci_values("empty-env")], &[]);
    assert_eq!(
        env_names(&docs),
        [
            "RELOADER_NAMESPACE",
            "RELOADER_DEPLOYMENT_NAME",
            "DISABLED",
            "KEPT",
            "ALERT_ON_RELOAD",
            "ALERT_ADDITIONAL_INFO"
        ]
    );
    let env = &container(&docs)["env"];
    assert!(
        env.as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "DISABLED" && e["value"] == "false")
    );
    let secrets = of_kind(&docs, "Secret");
    assert_eq!(secrets.len(), 1);
    assert_eq!(
        secrets[0]["data"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["ALERT_ON_RELOAD"]
    );

    let sets = [
        "reloader.deployment.env.secret.ALERT_SINK=".to_owned(),
        "reloader.deployment.env.open.EMPTY=".to_owned(),
    ];
    let docs = render(&cluster, "rel", "relns", &[], &sets);
    assert!(of_kind(&docs, "Secret").is_empty());
    assert_eq!(
        env_names(&docs),
        ["RELOADER_NAMESPACE", "RELOADER_DEPLOYMENT_NAME"]
    );
}

/// `deployment.labels` defaults to upstream's (provider, group, version), on the Deployment and
/// its pod but not in the immutable selector; version is the chart's appVersion here, and a
/// values file's own labels (upstream's values.yaml) replace them.
#[tokio::test]
async fn deployment_labels_default_to_upstreams() {
    let cluster = cluster(Tier::A).await;
    let docs = render(&cluster, "rel", "relns", &[], &[]);
    let deployment = of_kind(&docs, "Deployment")[0];
    let version = deployment["metadata"]["labels"]["app.kubernetes.io/version"].clone();
    assert!(version.is_string());
    for labels in [
        &deployment["metadata"]["labels"],
        &deployment["spec"]["template"]["metadata"]["labels"],
    ] {
        assert_eq!(labels["provider"], "stakater");
        assert_eq!(labels["group"], "com.stakater.platform");
        assert_eq!(labels["version"], version);
    }
    assert_eq!(
        deployment["spec"]["selector"]["matchLabels"],
        json!({"app": "rel-reloader", "release": "rel"})
    );
    let docs = render(&cluster, "rel", "relns", &[UPSTREAM_VALUES], &[]);
    let labels = &of_kind(&docs, "Deployment")[0]["spec"]["template"]["metadata"]["labels"];
    assert_eq!(labels["version"], "v1.4.21");
    assert_eq!(labels["provider"], "stakater");
}

/// Minimal CRDs (any content accepted) for the optional Prometheus Operator and VPA objects, so
/// the dry run checks those objects' kind, name and namespace too.
fn install_monitoring_crds(cluster: &ClusterInfo, kubectl: impl Fn() -> Command) {
    let mut manifests = String::new();
    for (group, kind, plural) in [
        ("monitoring.coreos.com", "ServiceMonitor", "servicemonitors"),
        ("monitoring.coreos.com", "PodMonitor", "podmonitors"),
        ("monitoring.coreos.com", "PrometheusRule", "prometheusrules"),
        (
            "autoscaling.k8s.io",
            "VerticalPodAutoscaler",
            "verticalpodautoscalers",
        ),
    ] {
        let crd = json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            // *.k8s.io groups are reserved; a test CRD there must say it is unapproved.
            "metadata": {"name": format!("{plural}.{group}"), "annotations": if group.ends_with(".k8s.io") {
                json!({"api-approved.kubernetes.io": "unapproved, test-only stand-in for the VPA CRD"})
            } else {
                json!({})
            }},
            "spec": {"group": group, "scope": "Namespaced",
                "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(), "listKind": format!("{kind}List")},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
        });
        manifests.push_str(&format!("---\n{crd}\n"));
    }
    let file = cluster.dir.join("chart-test-crds.yaml");
    std::fs::write(&file, manifests).unwrap();
    run(kubectl().args(["apply", "--server-side", "-f"]).arg(&file));
    run(kubectl()
        .args(["wait", "--for=condition=Established", "--timeout=60s", "-f"])
        .arg(&file));
}

/// Creates namespace `name` unless it exists (fixed names used by the ci/ value sets and the
/// committed manifests).
async fn create_namespace_named(admin: &Client, name: &str) {
    let namespace: Namespace = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
    )
    .unwrap();
    match Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &namespace)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(e) => panic!("{e}"),
    }
}

/// The pod of the rendered Deployment (defaults, HA, and upstream's values.yaml over ours) is
/// admitted in a namespace that enforces the `restricted` Pod Security Standard; the same pod
/// with privilege escalation allowed is not (so the namespace really enforces it).
#[tokio::test]
async fn the_pod_meets_the_restricted_pod_security_standard() {
    let cluster = cluster(Tier::A).await;
    let ns = cluster.create_namespace("chart-restricted").await.unwrap();
    let admin = cluster.client().await.unwrap();
    Api::<Namespace>::all(admin.clone())
        .patch(
            &ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest"
            }}})),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(admin, &ns);
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let ci = format!("{CHART}/ci/ha-values.yaml");
    for files in [vec![], vec![ci.as_str()], vec![UPSTREAM_VALUES]] {
        let docs = render(&cluster, "psa", &ns, &files, &[]);
        let template = &of_kind(&docs, "Deployment")[0]["spec"]["template"];
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "reloader", "labels": template["metadata"]["labels"]},
            "spec": template["spec"]});
        let admitted = pods
            .create(&dry_run, &serde_json::from_value(pod.clone()).unwrap())
            .await;
        assert!(admitted.is_ok(), "{files:?}: {admitted:?}");
        pod["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = json!(true);
        let refused = pods
            .create(&dry_run, &serde_json::from_value(pod).unwrap())
            .await;
        assert_eq!(status_code(&refused), Some(403), "{files:?}: {refused:?}");
    }
}

/// `helm template` of the default values, every value set in ci/ and upstream's values.yaml,
/// then `kubectl apply --server-side --dry-run=server`: the API server validates every object.
#[tokio::test]
async fn the_api_server_accepts_every_rendered_object_in_a_server_side_dry_run() {
    let cluster = cluster(Tier::A).await;
    let ns = cluster.create_namespace("chart-dry-run").await.unwrap();
    let admin = cluster.client().await.unwrap();
    for name in ["team-a", "team-b"] {
        create_namespace_named(&admin, name).await;
    }
    let cache = cluster.dir.join(format!("kubectl-cache-{ns}"));
    let kubectl = || {
        let mut command = Command::new(cluster.bin("kubectl"));
        command
            .arg("--kubeconfig")
            .arg(&cluster.kubeconfig)
            .arg("--cache-dir")
            .arg(&cache);
        command
    };
    install_monitoring_crds(&cluster, kubectl);

    let mut value_sets: Vec<PathBuf> = std::fs::read_dir(Path::new(CHART).join("ci"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    value_sets.sort();
    value_sets.insert(0, PathBuf::new());
    value_sets.push(PathBuf::from(UPSTREAM_VALUES));
    let dry_run = |text: &str, what: &str| -> Vec<Value> {
        let docs = documents(text);
        let file = cluster.dir.join(format!("{ns}-rendered.yaml"));
        std::fs::write(&file, text).unwrap();
        let applied = run(kubectl()
            .args([
                "apply",
                "--server-side",
                "--dry-run=server",
                "--field-manager=chart-test",
                "-f",
            ])
            .arg(&file));
        let accepted = applied
            .lines()
            .filter(|l| l.ends_with("serverside-applied (server dry run)"))
            .count();
        assert_eq!(accepted, docs.len(), "{what}: {applied}");
        docs
    };
    let mut kinds = BTreeSet::new();
    for values in &value_sets {
        let files: Vec<&str> = values
            .to_str()
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect();
        let text = run(helm(&cluster)
            .args(["template", &ns, CHART, "--namespace", &ns])
            .args(value_args(&files, &[])));
        let docs = dry_run(&text, &values.display().to_string());
        kinds.extend(docs.iter().map(|d| d["kind"].as_str().unwrap().to_owned()));
    }

    // The committed manifests and the kustomize base, as users apply them (their namespace must
    // exist for a dry run of the objects in it).
    create_namespace_named(&admin, "kube-reloader").await;
    let root = env!("CARGO_MANIFEST_DIR");
    let manifests =
        std::fs::read_to_string(format!("{root}/deploy/manifests/kube-reloader.yaml")).unwrap();
    dry_run(&manifests, "deploy/manifests/kube-reloader.yaml");
    let kustomized = run(kubectl().args(["kustomize", &format!("{root}/deploy/kustomize")]));
    dry_run(&kustomized, "kubectl kustomize deploy/kustomize");
    let expected = [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "ConfigMap",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "PodMonitor",
        "PrometheusRule",
        "Role",
        "RoleBinding",
        "Secret",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
        "VerticalPodAutoscaler",
    ];
    assert_eq!(
        kinds,
        set_of(&expected),
        "every template was dry-run at least once"
    );
}

/// SelfSubjectAccessReview as `client`: may it `verb` `group/resource` (named `name`) in `ns`?
async fn allowed(
    client: &Client,
    group: &str,
    resource: &str,
    verb: &str,
    ns: Option<&str>,
    name: Option<&str>,
) -> bool {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some(group.into()),
                resource: Some(resource.into()),
                verb: Some(verb.into()),
                namespace: ns.map(Into::into),
                name: name.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap()
        .status
        .is_some_and(|s| s.allowed)
}

/// Waits until RBAC grants (or, with `want` false, denies) the first verb of `rule` to `client`:
/// the authorizer's cache follows Role changes within moments.
async fn wait_rule(client: &Client, rule: &Value, ns: Option<&str>, want: bool) {
    let group = strings(&rule["apiGroups"])[0].clone();
    let resource = strings(&rule["resources"])[0].clone();
    let verb = strings(&rule["verbs"])[0].clone();
    let name = strings(&rule["resourceNames"]).first().cloned();
    eventually(
        &format!(
            "RBAC to {} {verb} {group}/{resource} in {ns:?}",
            if want { "allow" } else { "deny" }
        ),
        || async {
            if allowed(client, &group, &resource, &verb, ns, name.as_deref()).await == want {
                Ok(())
            } else {
                Err("not yet".into())
            }
        },
    )
    .await;
}

/// Waits until every rule of the installed (Cluster)Roles is in effect for `identity`.
async fn wait_installed_rules(cluster: &ClusterInfo, identity: &Identity, docs: &[Value]) {
    let client = cluster.client_as(identity).await.unwrap();
    for (_, _, ns, rule) in rules(docs) {
        wait_rule(&client, &rule, ns.as_deref(), true).await;
    }
}

/// A token for the chart's ServiceAccount, once every installed rule is in effect for it.
async fn chart_identity(cluster: &ClusterInfo, release_ns: &str, docs: &[Value]) -> Identity {
    let account = of_kind(docs, "ServiceAccount")[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let identity = cluster.service_account(release_ns, &account).await.unwrap();
    wait_installed_rules(cluster, &identity, docs).await;
    identity
}

/// Starts the binary as the chart's ServiceAccount with the rendered args and env.
async fn start_as_rendered(
    cluster: &ClusterInfo,
    identity: &Identity,
    docs: &[Value],
    label: &str,
    ready: bool,
) -> Controller {
    let args = args(docs);
    let env = env_values(docs, &format!("{label}-pod"), &identity.namespace);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    if ready {
        Controller::start_with_env(cluster, identity, label, &args, &env).await
    } else {
        Controller::spawn_with_env(cluster, identity, label, &args, &env)
    }
}

/// A Deployment naming ConfigMap `app-config` and Secret `app-secret`, both created.
async fn workload(client: &Client, ns: &str) -> Api<Deployment> {
    create::<ConfigMap>(client, ns, configmap("app-config", json!({"k": "1"}))).await;
    create::<Secret>(client, ns, json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "app-secret"}, "stringData": {"k": "1"}})).await;
    create::<Deployment>(
        client,
        ns,
        deployment(
            "web",
            json!({"configmap.reloader.stakater.com/reload": "app-config", "secret.reloader.stakater.com/reload": "app-secret"}),
            json!({"containers": [{"name": "app", "image": "registry.invalid/app"}]}),
        ),
    )
    .await;
    Api::namespaced(client.clone(), ns)
}

/// Waits until Deployment `web` carries env var `marker` (a reload).
async fn wait_marker(deployments: &Api<Deployment>, ns: &str, marker: &str) {
    wait_deployment(deployments, "web", &format!("{marker} in {ns}"), |d| {
        env_of(d, "app").iter().any(|(name, _)| name == marker)
    })
    .await;
}

/// The core reload scenario: once the workload is recorded, a ConfigMap change and then a Secret
/// change each set their env var.
async fn reloads_on_configmap_and_secret_changes(
    client: &Client,
    ns: &str,
    deployments: &Api<Deployment>,
) {
    wait_deployment(deployments, "web", &format!("the baseline in {ns}"), |d| {
        ledger_of(d).is_some()
    })
    .await;
    set_configmap(client, ns, "app-config", json!({"k": "2"})).await;
    wait_marker(deployments, ns, "STAKATER_APP_CONFIG_CONFIGMAP").await;
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(
            "app-secret",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"k": "2"}})),
        )
        .await
        .unwrap();
    wait_marker(deployments, ns, "STAKATER_APP_SECRET_SECRET").await;
}

fn assert_no_missing_permission(log: &str) {
    assert!(
        !log.contains(MISSING),
        "the rendered RBAC lacks a permission:\n{log}"
    );
}

/// Global mode: `helm install` (scoped to one labelled namespace with namespaceSelector, as
/// other tests share this API server), the binary as the chart's ServiceAccount with the
/// rendered args and env: no missing permission, ConfigMap and Secret changes reload. Then a
/// `helm upgrade` with upstream's values.yaml succeeds on the same release.
#[tokio::test]
async fn global_mode_with_the_rendered_cluster_role_reloads() {
    let cluster = cluster(Tier::A).await;
    let release = cluster.create_namespace("chart-global").await.unwrap();
    let workloads = cluster.create_namespace("chart-global-apps").await.unwrap();
    let admin = cluster.client().await.unwrap();
    let label = format!("{release}=yes");
    Api::<Namespace>::all(admin.clone())
        .patch(
            &workloads,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {&release: "yes"}}})),
        )
        .await
        .unwrap();
    let sets = [format!("reloader.namespaceSelector={label}")];
    let (notes, docs) = install(&cluster, &release, &release, &[], &sets);
    assert!(notes.contains(&format!("Watching: every namespace whose labels match {label} (ClusterRole {release}-reloader-role).")), "{notes}");
    assert_eq!(of_kind(&docs, "ClusterRole").len(), 1);
    let identity = chart_identity(&cluster, &release, &docs).await;
    let deployments = workload(&admin, &workloads).await;

    let controller = start_as_rendered(&cluster, &identity, &docs, &release, true).await;
    reloads_on_configmap_and_secret_changes(&admin, &workloads, &deployments).await;
    let rss = controller.metric("process_resident_memory_bytes").await;
    eprintln!(
        "chart: global-mode controller resident memory {:.1} MiB",
        rss / 1_048_576.0
    );
    assert_no_missing_permission(&controller.stop());

    // A values file written for upstream's chart upgrades the release.
    let (notes, upgraded) = install(&cluster, &release, &release, &[UPSTREAM_VALUES], &sets);
    assert!(
        notes.contains("WARNING: the image is upstream's"),
        "{notes}"
    );
    assert_eq!(
        container(&upgraded)["image"],
        "ghcr.io/stakater/reloader:v1.4.21"
    );
    assert_eq!(grants(&upgraded, None), grants(&docs, None));
    run(helm(&cluster).args(["uninstall", &release, "--namespace", &release]));
}

/// Namespaced mode with HA: `watchGlobally=false`, `namespaces: [a, b]`, `enableHA`. No
/// ClusterRole exists; the binary reloads in a and b, leads through the name-restricted Lease
/// Role, and is denied everywhere else: a Deployment in c is never touched and the account gets
/// 403 there and cluster-wide.
#[tokio::test]
async fn namespaced_mode_with_rendered_roles_reloads_in_its_namespaces_only() {
    let cluster = cluster(Tier::A).await;
    let release = cluster.create_namespace("chart-ns").await.unwrap();
    let a = cluster.create_namespace("chart-ns-a").await.unwrap();
    let b = cluster.create_namespace("chart-ns-b").await.unwrap();
    let c = cluster.create_namespace("chart-ns-c").await.unwrap();
    let admin = cluster.client().await.unwrap();
    let sets = [
        "reloader.watchGlobally=false".to_owned(),
        format!("reloader.namespaces={{{a},{b}}}"),
        "reloader.enableHA=true".to_owned(),
    ];
    let (notes, docs) = install(&cluster, &release, &release, &[], &sets);
    let mut watched = [a.clone(), b.clone(), release.clone()];
    watched.sort();
    assert!(
        notes.contains(&format!(
            "Watching: namespaces {} only (a Role in each, no ClusterRole).",
            watched.join(",")
        )),
        "{notes}"
    );
    assert!(
        notes.contains("Leader election is on (1 replica(s)"),
        "{notes}"
    );
    assert!(
        of_kind(&docs, "ClusterRole").is_empty() && of_kind(&docs, "ClusterRoleBinding").is_empty()
    );
    let selector = ListParams::default().labels(&format!("release={release}"));
    assert!(
        Api::<ClusterRole>::all(admin.clone())
            .list(&selector)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let identity = chart_identity(&cluster, &release, &docs).await;
    let mut apps = Vec::new();
    for ns in [&a, &b, &c] {
        apps.push(workload(&admin, ns).await);
    }

    let controller = start_as_rendered(&cluster, &identity, &docs, &release, true).await;
    for (ns, deployments) in [(&a, &apps[0]), (&b, &apps[1])] {
        reloads_on_configmap_and_secret_changes(&admin, ns, deployments).await;
    }
    let lease = Api::<Lease>::namespaced(admin.clone(), &release)
        .get("stakater-reloader-lock")
        .await
        .unwrap();
    assert_eq!(
        lease.spec.unwrap().holder_identity.as_deref(),
        Some(format!("{release}-pod").as_str())
    );

    // Outside its namespaces: the same change in c is never acted on, and access is denied.
    let sha_of = |d: &Deployment| {
        env_of(d, "app")
            .into_iter()
            .find(|(n, _)| n == "STAKATER_APP_CONFIG_CONFIGMAP")
            .map(|(_, v)| v)
    };
    // Read before the change: the reload may land before a read after it.
    let before = sha_of(&apps[0].get("web").await.unwrap());
    set_configmap(&admin, &c, "app-config", json!({"k": "2"})).await;
    set_configmap(&admin, &a, "app-config", json!({"k": "3"})).await;
    wait_deployment(
        &apps[0],
        "web",
        "the later reload in a (after c's change)",
        |d| sha_of(d) != before,
    )
    .await;
    let untouched = apps[2].get("web").await.unwrap();
    assert!(
        env_of(&untouched, "app").is_empty() && ledger_of(&untouched).is_none(),
        "{:?}",
        untouched.metadata
    );
    assert_no_missing_permission(&controller.stop());
    // The controller never asked for anything in c, nor listed anything cluster-wide ...
    let elsewhere: Vec<_> = requests_by(&cluster, &identity.user)
        .into_iter()
        .filter(|r| {
            r.namespace == c
                || (r.namespace.is_empty() && matches!(r.verb.as_str(), "list" | "watch"))
        })
        .collect();
    assert!(
        elsewhere.is_empty(),
        "requests outside its namespaces: {elsewhere:?}"
    );
    // ... and its account may not: 403 in c and cluster-wide.
    let restricted = cluster.client_as(&identity).await.unwrap();
    for result in [
        status_code(
            &Api::<ConfigMap>::namespaced(restricted.clone(), &c)
                .list(&ListParams::default())
                .await,
        ),
        status_code(
            &Api::<Deployment>::namespaced(restricted.clone(), &c)
                .list(&ListParams::default())
                .await,
        ),
        status_code(
            &Api::<Secret>::all(restricted.clone())
                .list(&ListParams::default())
                .await,
        ),
        status_code(
            &Api::<Deployment>::all(restricted.clone())
                .list(&ListParams::default())
                .await,
        ),
    ] {
        assert_eq!(result, Some(403));
    }
    run(helm(&cluster).args(["uninstall", &release, "--namespace", &release]));
}

/// Every rule the chart renders (global mode with a namespace selector, HA, Argo Rollouts, CSI
/// and OpenShift, so every rule the binary can use is present) is needed: with it removed, the
/// controller says which feature breaks and which rule to add (the startup self-check), or, for
/// the Lease, leader election fails at startup naming the denied request. On a private control
/// plane, because the optional kinds' CRDs must exist there.
#[tokio::test]
async fn removing_any_rendered_rule_breaks_a_named_feature() {
    let plane = ControlPlane::start(Tier::A).await.unwrap();
    let cluster = plane.info().clone();
    let release = cluster.create_namespace("chart-rules").await.unwrap();
    let admin = cluster.client().await.unwrap();
    for kind in [
        crate::crds::ROLLOUT,
        crate::crds::DEPLOYMENT_CONFIG,
        crate::crds::SPC,
        crate::crds::SPC_POD_STATUS,
    ] {
        crate::crds::install(&admin, &kind).await;
    }
    let sets = [
        format!("reloader.namespaceSelector={release}=yes"),
        "reloader.enableHA=true".to_owned(),
        "reloader.isArgoRollouts=true".to_owned(),
        "reloader.isOpenshift=true".to_owned(),
        "reloader.enableCSIIntegration=true".to_owned(),
    ];
    let (_, docs) = install(&cluster, &release, &release, &[], &sets);
    let identity = chart_identity(&cluster, &release, &docs).await;
    let restricted = cluster.client_as(&identity).await.unwrap();
    let leases = Api::<Lease>::namespaced(admin.clone(), &release);

    let mut checked = Vec::new();
    for (kind, role, ns, rule) in rules(&docs) {
        let described = format!("{kind} {role}: {rule}");
        let full = rules(&docs)
            .into_iter()
            .filter(|(k, r, _, _)| *k == kind && *r == role)
            .map(|(_, _, _, r)| r)
            .collect::<Vec<_>>();
        let reduced: Vec<&Value> = full.iter().filter(|r| **r != rule).collect();
        set_rules(&admin, &kind, &role, ns.as_deref(), json!(reduced)).await;
        wait_rule(&restricted, &rule, ns.as_deref(), false).await;
        let is_lease = strings(&rule["resources"]) == ["leases"];
        if is_lease {
            // Without a Lease the next start must create one.
            let _ = leases
                .delete("stakater-reloader-lock", &DeleteParams::default())
                .await;
        }

        let label = format!("{release}-without-{}", checked.len());
        let controller = start_as_rendered(&cluster, &identity, &docs, &label, false).await;
        let effect = if is_lease {
            let verb = if strings(&rule["verbs"]).contains(&"create".to_owned()) {
                "create"
            } else {
                "get"
            };
            let denied = format!("cannot {verb} resource \\\"leases\\\"");
            let plain = format!("cannot {verb} resource \"leases\"");
            eventually(
                &format!("leader election to fail without {described}"),
                || async {
                    let log = controller.log();
                    if log.contains(&denied) || log.contains(&plain) {
                        Ok(())
                    } else {
                        Err(log)
                    }
                },
            )
            .await;
            format!("leader election fails at startup ({plain})")
        } else {
            let log = eventually(&format!("the self-check to report {described}"), || async {
                let log = controller.log();
                let reported = strings(&rule["resources"]).iter().all(|resource| {
                    log.lines().any(|l| {
                        l.contains(MISSING) && l.contains(&format!("resources: [\"{resource}\"]"))
                    })
                });
                if reported { Ok(log) } else { Err(log) }
            })
            .await;
            self_check_effects(&log, &rule, ns.as_deref())
        };
        eprintln!("chart: without {described}: {effect}");
        drop(controller);
        set_rules(&admin, &kind, &role, ns.as_deref(), json!(full)).await;
        wait_rule(&restricted, &rule, ns.as_deref(), true).await;
        checked.push(described);
    }
    // 10 ClusterRole rules (configmaps, secrets, apps, cronjobs, jobs, events, namespaces,
    // rollouts, deploymentconfigs, CSI), the 2 meta-info ConfigMap rules and the 2 Lease rules.
    assert_eq!(checked.len(), 14, "{checked:?}");
    run(helm(&cluster).args(["uninstall", &release, "--namespace", &release]));
    drop(plane);
}

/// Checks the self-check lines for `rule`: each names the rule's group, resource and scope and
/// asks for no verb the rule lacks; returns the effects they name.
fn self_check_effects(log: &str, rule: &Value, ns: Option<&str>) -> String {
    let scope = match ns {
        Some(ns) => format!("a Role in namespace {ns} with rule"),
        None => "a ClusterRole with rule".to_owned(),
    };
    let verbs = strings(&rule["verbs"]);
    let mut effects = BTreeSet::new();
    for resource in strings(&rule["resources"]) {
        let needle = format!("resources: [\"{resource}\"]");
        let line = log
            .lines()
            .find(|l| l.contains(MISSING) && l.contains(&needle))
            .unwrap();
        let group = strings(&rule["apiGroups"])[0].clone();
        assert!(
            line.contains(&format!(
                "Fix: grant {scope} {{apiGroups: [\"{group}\"], {needle}"
            )),
            "{line}"
        );
        let asked = line.split(&needle).nth(1).unwrap();
        let asked = &asked[asked.find("verbs: [").unwrap() + 8..];
        let asked = &asked[..asked.find(']').unwrap()];
        for verb in asked.split(", ") {
            assert!(
                verbs.contains(&verb.trim_matches('"').to_owned()),
                "asks {verb} beyond the rule: {line}"
            );
        }
        let effect = line.split("; ").nth(1).unwrap_or_default();
        effects.insert(effect.split(". Fix:").next().unwrap_or_default().to_owned());
    }
    effects.into_iter().collect::<Vec<_>>().join("; ")
}

/// Replaces the rules of a ClusterRole or Role.
async fn set_rules(admin: &Client, kind: &str, name: &str, ns: Option<&str>, rules: Value) {
    let patch = Patch::Merge(json!({"rules": rules}));
    match (kind, ns) {
        ("ClusterRole", _) => {
            Api::<ClusterRole>::all(admin.clone())
                .patch(name, &PatchParams::default(), &patch)
                .await
                .unwrap();
        }
        (_, Some(ns)) => {
            Api::<Role>::namespaced(admin.clone(), ns)
                .patch(name, &PatchParams::default(), &patch)
                .await
                .unwrap();
        }
        _ => panic!("{kind} {name} without a namespace"),
    }
}

/// Every governor flag has a chart value; the rendered args are what the binary accepts.
#[tokio::test]
async fn governor_values_render_flags_the_binary_accepts() {
    use clap::Parser;
    let cluster = cluster(Tier::A).await;
    let sets: Vec<String> = [
        "reloader.shutdownGracePeriod=20s",
        "reloader.pruneStaleMarkers=false",
        "reloader.keyLevelTriggers=true",
        "reloader.secretDigest.keySecret=relns/digest-key",
        "reloader.secretDigest.form=sha1",
        "reloader.governor.debounce=30s",
        "reloader.governor.maxConcurrentRollouts=5",
        "reloader.governor.maxConcurrentRolloutsPerNamespace=2",
        "reloader.governor.maxReloadsPerMinute=30",
        "reloader.governor.healthGate=true",
        "reloader.governor.canary=2",
        "reloader.governor.rolloutTimeout=5m",
        "reloader.governor.reloadWindow=Mon-Fri 22:00-06:00 Europe/Berlin",
        "reloader.governor.dryRun=true",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let docs = render(&cluster, "rel", "relns", &[], &sets);
    let rendered = args(&docs);
    for expected in [
        "--shutdown-grace-period=20s",
        "--prune-stale-markers=false",
        "--key-level-triggers=true",
        "--secret-digest-key-secret=relns/digest-key",
        "--secret-digest=sha1",
        "--debounce=30s",
        "--max-concurrent-rollouts=5",
        "--max-concurrent-rollouts-per-namespace=2",
        "--max-reloads-per-minute=30",
        "--health-gate",
        "--canary=2",
        "--rollout-timeout=5m",
        "--reload-window=Mon-Fri 22:00-06:00 Europe/Berlin",
        "--dry-run",
    ] {
        assert!(
            rendered.iter().any(|a| a == expected),
            "{expected} not in {rendered:?}"
        );
    }
    let settings = kube_reloader::Cli::try_parse_from(
        std::iter::once("kube-reloader".to_owned()).chain(rendered),
    )
    .unwrap()
    .into_settings_with(None)
    .unwrap();
    assert_eq!(settings.limits.max_concurrent, 5);
    assert_eq!(settings.limits.canaries, Some(2));
    assert!(settings.limits.window.is_some() && settings.limits.dry_run);
    assert!(!settings.prune_stale_markers);
    assert!(settings.key_level_triggers);
    let digest = settings.secret_digest.unwrap();
    assert_eq!(
        (digest.namespace.as_str(), digest.name.as_str()),
        ("relns", "digest-key")
    );
    assert!(!digest.write_keyed);
    let defaults = args(&render(&cluster, "rel", "relns", &[], &[]));
    assert!(
        !defaults.iter().any(|a| a.starts_with("--debounce")
            || a == "--dry-run"
            || a.starts_with("--key-level-triggers")
            || a.starts_with("--secret-digest")),
        "off by default: {defaults:?}"
    );
}

/// The dashboard and the alert rules: the dashboard JSON parses, every expression of both is
/// valid PromQL (Prometheus's grammar) and names only metrics a running controller exposes on
/// /metrics.
#[tokio::test]
async fn dashboard_and_alert_rules_name_only_exposed_metrics() {
    let cluster = cluster(Tier::A).await;
    let sets: Vec<String> = [
        "reloader.dashboard.enabled=true",
        "reloader.prometheusRule.enabled=true",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let docs = render(&cluster, "rel", "relns", &[], &sets);
    let dashboard_map = of_kind(&docs, "ConfigMap")
        .into_iter()
        .find(|c| c["metadata"]["name"] == "rel-reloader-dashboard")
        .expect("the dashboard ConfigMap");
    assert_eq!(
        dashboard_map["metadata"]["labels"]["grafana_dashboard"],
        "1"
    );
    let dashboard: Value = serde_json::from_str(
        dashboard_map["data"]["kube-reloader.json"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let mut expressions: Vec<String> = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            expressions.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    assert!(expressions.len() >= 12, "{expressions:?}");
    let rule = of_kind(&docs, "PrometheusRule")[0];
    let alerts: Vec<&str> = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            expressions.push(r["expr"].as_str().unwrap().to_owned());
            r["alert"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        alerts,
        [
            "KubeReloaderReloadsFailing",
            "KubeReloaderWorkloadRetrying",
            "KubeReloaderWatchNotSynced",
            "KubeReloaderNoLeader",
            "KubeReloaderMetricsAbsent"
        ]
    );
    // A running controller's metric names (histograms also as _bucket/_sum/_count).
    let ns = cluster.create_namespace("dashboard").await.unwrap();
    let identity = crate::controller::identity_with_rules(
        &cluster,
        &ns,
        crate::controller::controller_rules(),
    )
    .await;
    let controller = crate::controller::Controller::start_with_env(
        &cluster,
        &identity,
        &ns,
        &["--namespaces", &ns],
        &[("METRICS_COUNT_BY_NAMESPACE", "enabled")],
    )
    .await;
    // One reload, so the families that appear with the first one are on /metrics.
    let admin = cluster.client().await.unwrap();
    crate::fixtures::create::<k8s_openapi::api::core::v1::ConfigMap>(
        &admin,
        &ns,
        crate::fixtures::configmap("cfg", json!({"v": "1"})),
    )
    .await;
    crate::fixtures::named_deployment(&admin, &ns, "web", "cfg").await;
    let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(admin.clone(), &ns);
    crate::fixtures::wait_deployment(&deployments, "web", "the baseline", |d| {
        crate::fixtures::ledger_of(d).is_some()
    })
    .await;
    crate::fixtures::set_configmap(&admin, &ns, "cfg", json!({"v": "2"})).await;
    crate::fixtures::wait_env(&deployments, "web", "app", "the reload").await;
    let (_, body) = controller.get("/metrics").await.unwrap();
    controller.stop();
    // Every family, also those without a sample yet (no error so far), by its TYPE line.
    let mut exposed: BTreeSet<String> = BTreeSet::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                "info" => &["_info"],
                _ => &[""],
            };
            for suffix in suffixes {
                exposed.insert(format!("{name}{suffix}"));
            }
        } else if !line.starts_with('#')
            && let Some(name) = line.split(['{', ' ']).next().filter(|n| !n.is_empty())
        {
            exposed.insert(name.to_owned());
        }
    }
    // Families that get a sample only on a specific event (an error of a type, a halted
    // change, a workaround): checked against the names the code registers.
    let registering = include_str!("../../src/ops/metrics.rs");
    let registered = regex::Regex::new(r#"register\(\s*"([a-z_:]+)""#).unwrap();
    for family in registered
        .captures_iter(registering)
        .map(|c| c[1].to_owned())
    {
        for suffix in ["", "_total", "_bucket", "_sum", "_count"] {
            if [
                "reloader_errors",
                "kube_reloader_halted_changes",
                "kube_reloader_degraded",
            ]
            .contains(&family.as_str())
            {
                exposed.insert(format!("{family}{suffix}"));
            }
        }
    }
    for expression in &expressions {
        // Grafana's variables are substituted before a query runs.
        let query = expression.replace("$job", ".*");
        if let Err(error) = promql_parser::parser::parse(&query) {
            panic!("not valid PromQL: {expression:?}: {error}");
        }
    }
    let token = regex::Regex::new(r"[a-zA-Z_:][a-zA-Z0-9_:]*").unwrap();
    let prefixes = ["reloader_", "kube_reloader_", "rest_client_", "process_"];
    let mut checked = 0;
    for expression in &expressions {
        for name in token.find_iter(expression).map(|m| m.as_str()) {
            if !prefixes.iter().any(|p| name.starts_with(p)) {
                continue;
            }
            checked += 1;
            assert!(
                exposed.contains(name),
                "{name} (in {expression:?}) is not on /metrics; exposed: {exposed:?}"
            );
        }
    }
    assert!(checked >= 20, "{checked} metric references checked");
}
