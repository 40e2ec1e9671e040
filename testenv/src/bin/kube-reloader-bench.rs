//! `make bench`: memory and API load of kube-reloader against a real control plane, printed as
//! the Markdown that docs/BENCHMARKS.md holds. Numbers live here, never in tests.
//!
//! Usage: kube-reloader-bench --binary PATH [--configmaps N] [--secrets N] [--deployments N]
//!        [--reloads N]
//!
//! One namespace with N ConfigMaps and N Secrets of 1 KiB each, and Deployments that each use
//! one ConfigMap (envFrom) and one Secret (volume) with `reloader.stakater.com/auto: "true"`.
//! kube-reloader runs as a cluster-admin service account (so the audit log separates its
//! requests); its resident memory is read from /proc.

use std::collections::BTreeMap;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube_reloader_testenv::process::{Process, free_port};
use kube_reloader_testenv::procfs::memory;
use kube_reloader_testenv::{ClusterInfo, ControlPlane, Tier};
use serde_json::json;

const USAGE: &str = "usage: kube-reloader-bench --binary PATH [--configmaps N] [--secrets N] \
                     [--deployments N] [--reloads N]";
const LEDGER: &str = "kube-reloader.io/digests";

struct Options {
    binary: String,
    configmaps: usize,
    secrets: usize,
    deployments: usize,
    reloads: usize,
}

fn parse() -> Result<Options, String> {
    let mut options = Options {
        binary: String::new(),
        configmaps: 2000,
        secrets: 2000,
        deployments: 1000,
        reloads: 200,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(USAGE)?;
        let number = || {
            value
                .parse::<usize>()
                .map_err(|_| format!("{arg}: not a number\n{USAGE}"))
        };
        match arg.as_str() {
            "--binary" => options.binary = value.clone(),
            "--configmaps" => options.configmaps = number()?,
            "--secrets" => options.secrets = number()?,
            "--deployments" => options.deployments = number()?,
            "--reloads" => options.reloads = number()?,
            _ => return Err(USAGE.to_owned()),
        }
    }
    if options.binary.is_empty() {
        return Err(USAGE.to_owned());
    }
    if options.deployments > options.configmaps.min(options.secrets)
        || options.reloads > options.deployments
    {
        return Err("need deployments <= configmaps, secrets and reloads <= deployments".into());
    }
    Ok(options)
}

async fn wait_until<F, Fut>(what: &str, mut check: F) -> Result<Duration, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        if started.elapsed() > Duration::from_secs(600) {
            return Err(format!("timed out waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(started.elapsed())
}

fn count_requests(
    cluster: &ClusterInfo,
    user: &str,
    from: usize,
) -> (usize, BTreeMap<String, usize>) {
    let text = std::fs::read_to_string(&cluster.audit_log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let mut verbs = BTreeMap::new();
    for line in lines.iter().skip(from) {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if entry["stage"] == "ResponseComplete" && entry["user"]["username"] == user {
            *verbs
                .entry(entry["verb"].as_str().unwrap_or_default().to_owned())
                .or_insert(0) += 1;
        }
    }
    (lines.len(), verbs)
}

/// How many Deployments satisfy `check` (0 when the list fails; the caller polls).
async fn count(api: &Api<Deployment>, check: impl Fn(&Deployment) -> bool) -> usize {
    api.list(&ListParams::default())
        .await
        .map(|l| l.items.iter().filter(|d| check(d)).count())
        .unwrap_or(0)
}

struct Controller {
    process: Process,
    base: String,
}

async fn start(
    cluster: &ClusterInfo,
    options: &Options,
    kubeconfig: &std::path::Path,
    ns: &str,
    label: &str,
) -> Result<Controller, String> {
    let port = free_port().map_err(|e| e.to_string())?;
    let mut command = Command::new(&options.binary);
    command
        .args([
            "--http-addr",
            &format!("127.0.0.1:{port}"),
            "--namespaces",
            ns,
        ])
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "warn");
    let log = cluster.dir.join("logs").join(format!("bench-{label}.log"));
    let process = Process::spawn("kube-reloader", command, &log).map_err(|e| e.to_string())?;
    let base = format!("http://127.0.0.1:{port}");
    let http = kube_reloader_testenv::http();
    wait_until("kube-reloader to be ready", || async {
        http.get(format!("{base}/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await?;
    Ok(Controller { process, base })
}

async fn run(options: Options) -> Result<String, String> {
    let plane = ControlPlane::start(Tier::A)
        .await
        .map_err(|e| e.to_string())?;
    let cluster = plane.info().clone();
    let admin = cluster.client().await.map_err(|e| e.to_string())?;
    let ns = cluster
        .create_namespace("bench")
        .await
        .map_err(|e| e.to_string())?;
    let identity = cluster
        .service_account(&ns, "kube-reloader")
        .await
        .map_err(|e| e.to_string())?;
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "bench-kube-reloader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "kube-reloader", "namespace": ns}]
    }))
    .map_err(|e| e.to_string())?;
    Api::<ClusterRoleBinding>::all(admin.clone())
        .create(&PostParams::default(), &binding)
        .await
        .map_err(|e| e.to_string())?;

    let payload = "x".repeat(1024);
    let configmaps: Api<ConfigMap> = Api::namespaced(admin.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &ns);
    let started = Instant::now();
    for i in 0..options.configmaps.max(options.secrets) {
        if i < options.configmaps {
            let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": format!("cm-{i}")}, "data": {"payload": payload, "v": "0"}})).map_err(|e| e.to_string())?;
            configmaps
                .create(&PostParams::default(), &cm)
                .await
                .map_err(|e| e.to_string())?;
        }
        if i < options.secrets {
            let secret: Secret = serde_json::from_value(json!({"metadata": {"name": format!("secret-{i}")}, "stringData": {"payload": payload}})).map_err(|e| e.to_string())?;
            secrets
                .create(&PostParams::default(), &secret)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    for i in 0..options.deployments {
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": format!("app-{i}"), "annotations": {"reloader.stakater.com/auto": "true"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": format!("app-{i}")}},
                "template": {"metadata": {"labels": {"app": format!("app-{i}")}}, "spec": {
                    "containers": [{"name": "app", "image": "registry.invalid/app",
                        "envFrom": [{"configMapRef": {"name": format!("cm-{i}")}}],
                        "volumeMounts": [{"name": "s", "mountPath": "/s"}]}],
                    "volumes": [{"name": "s", "secret": {"secretName": format!("secret-{i}")}}]}}}
        }))
        .map_err(|e| e.to_string())?;
        deployments
            .create(&PostParams::default(), &deployment)
            .await
            .map_err(|e| e.to_string())?;
    }
    eprintln!("bench: created the objects in {:.0?}", started.elapsed());

    let (audit_start, _) = count_requests(&cluster, &identity.user, 0);
    let first = start(&cluster, &options, &identity.kubeconfig, &ns, "first").await?;
    let pid = first.process.pid();
    let (rss_synced, _) = memory(pid);
    let baseline = wait_until("every Deployment's baseline", || async {
        count(&deployments, |d| {
            d.metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(LEDGER))
        })
        .await
            == options.deployments
    })
    .await?;
    let (rss_baselined, _) = memory(pid);
    let (audit_mark, _) = count_requests(&cluster, &identity.user, audit_start);

    let reload_started = Instant::now();
    for i in 0..options.reloads {
        configmaps
            .patch(
                &format!("cm-{i}"),
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"v": "1"}})),
            )
            .await
            .map_err(|e| e.to_string())?;
    }
    wait_until("every reload", || async {
        count(&deployments, |d| {
            d.spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .is_some_and(|p| {
                    p.containers[0]
                        .env
                        .iter()
                        .flatten()
                        .any(|e| e.name.ends_with("_CONFIGMAP"))
                })
        })
        .await
            == options.reloads
    })
    .await?;
    let reload_time = reload_started.elapsed();
    let (rss_reloaded, hwm_first) = memory(pid);
    let (audit_after, during) = count_requests(&cluster, &identity.user, audit_mark);
    let mut first = first;
    first.process.stop(Duration::from_secs(20));

    let second = start(&cluster, &options, &identity.kubeconfig, &ns, "restart").await?;
    let restart_pid = second.process.pid();
    // Let the restarted controller plan every workload (nothing to write).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (rss_restarted, hwm_restarted) = memory(restart_pid);
    let (_, restart_requests) = count_requests(&cluster, &identity.user, audit_after);
    let metrics = kube_reloader_testenv::http()
        .get(format!("{}/metrics", second.base))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    let reported_rss = metrics
        .lines()
        .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1048576.0;
    let mut second = second;
    second.process.stop(Duration::from_secs(20));
    drop(plane);

    let verbs = |m: &BTreeMap<String, usize>| {
        if m.is_empty() {
            "none".to_owned()
        } else {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    Ok(format!(
        "| what | value |\n| --- | --- |\n\
         | objects | {cm} ConfigMaps and {s} Secrets of 1 KiB, {d} Deployments (auto, envFrom + secret volume) |\n\
         | RSS after the initial list (`/ready`) | {rss_synced:.1} MiB |\n\
         | RSS after every Deployment's baseline | {rss_baselined:.1} MiB (baseline of {d} Deployments took {baseline:.1?}) |\n\
         | RSS after {r} ConfigMap changes → {r} reloads | {rss_reloaded:.1} MiB; peak {hwm_first:.1} MiB |\n\
         | time from the first change to the last reload | {reload_time:.1?} ({r} changes, written back to back) |\n\
         | API requests during the reloads | {during} |\n\
         | RSS after a restart (caches relisted, nothing to write) | {rss_restarted:.1} MiB (metric `process_resident_memory_bytes`: {reported_rss:.1} MiB); peak {hwm_restarted:.1} MiB |\n\
         | API requests after the restart (5 s) | {restarted} |\n",
        cm = options.configmaps,
        s = options.secrets,
        d = options.deployments,
        r = options.reloads,
        during = verbs(&during),
        restarted = verbs(&restart_requests),
    ))
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(options).await {
        Ok(table) => {
            print!("{table}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}
