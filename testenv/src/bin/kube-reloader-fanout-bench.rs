//! `make bench` (second part): what one source event costs kube-reloader when many workloads
//! live in *other* namespaces, on a real control plane. Printed as Markdown for
//! docs/BENCHMARKS.md. Numbers live here, never in tests.
//!
//! Usage: kube-reloader-fanout-bench --binary PATH [--baseline PATH] [--unrelated N]
//!        [--changes N]
//!
//! One namespace holds a ConfigMap and one Deployment that uses it; N Deployments (auto, each
//! with a ConfigMap of its own) live in ten other namespaces. kube-reloader watches every
//! namespace. The ConfigMap is changed `--changes` times, one after the other, each time
//! waiting until the Deployment carries the new digest; the controller's CPU time (from /proc)
//! over the whole run is divided by the number of changes. Measured first without, then with
//! the unrelated Deployments, for each binary (`--baseline` is an older build to compare with).

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube_reloader_testenv::process::{Process, free_port};
use kube_reloader_testenv::procfs::cpu_seconds;
use kube_reloader_testenv::{ClusterInfo, ControlPlane, Identity, Tier};
use serde_json::json;

const USAGE: &str = "usage: kube-reloader-fanout-bench --binary PATH [--baseline PATH] \
                     [--unrelated N] [--changes N] [--settle SECONDS]";
const LEDGER: &str = "kube-reloader.io/digests";
const OTHER_NAMESPACES: usize = 10;

struct Options {
    binary: String,
    baseline: Option<String>,
    unrelated: usize,
    changes: usize,
    settle: u64,
}

fn parse() -> Result<Options, String> {
    let mut options = Options {
        binary: String::new(),
        baseline: None,
        unrelated: 10_000,
        changes: 300,
        settle: 10,
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
            "--baseline" => options.baseline = Some(value.clone()),
            "--unrelated" => options.unrelated = number()?,
            "--changes" => options.changes = number()?,
            "--settle" => options.settle = number()? as u64,
            _ => return Err(USAGE.to_owned()),
        }
    }
    if options.binary.is_empty() || options.changes == 0 {
        return Err(USAGE.to_owned());
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
        if started.elapsed() > Duration::from_secs(900) {
            return Err(format!("timed out waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(started.elapsed())
}

fn deployment(name: &str, configmap: &str) -> Result<Deployment, String> {
    serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": {"reloader.stakater.com/auto": "true"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {
                "containers": [{"name": "app", "image": "registry.invalid/app",
                    "envFrom": [{"configMapRef": {"name": configmap}}]}]}}}
    }))
    .map_err(|e| e.to_string())
}

fn configmap(name: &str, v: usize) -> Result<ConfigMap, String> {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"v": v.to_string()}}))
        .map_err(|e| e.to_string())
}

fn env_value(d: &Deployment) -> Option<String> {
    d.spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .first()?
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "STAKATER_CFG_CONFIGMAP")
        .and_then(|e| e.value.clone())
}

/// Creates `count` Deployments over the other namespaces, 16 requests in flight.
async fn populate(admin: &kube::Client, namespaces: &[String], count: usize) -> Result<(), String> {
    const IN_FLIGHT: usize = 16;
    let per = count.div_ceil(namespaces.len().max(1)).max(1);
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..IN_FLIGHT {
        let admin = admin.clone();
        let namespaces = namespaces.to_vec();
        tasks.spawn(async move {
            for i in (lane..count).step_by(IN_FLIGHT) {
                let api: Api<Deployment> = Api::namespaced(admin.clone(), &namespaces[i / per]);
                api.create(
                    &PostParams::default(),
                    &deployment(&format!("other-{i}"), "shared")?,
                )
                .await
                .map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.map_err(|e| e.to_string())??;
    }
    Ok(())
}

struct Run {
    cpu_ms_per_event: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// One measurement.
struct Measure<'a> {
    cluster: &'a ClusterInfo,
    identity: &'a Identity,
    binary: &'a str,
    label: &'a str,
    expected_workloads: usize,
    changes: usize,
    settle: u64,
}

/// Starts `binary` over every namespace, waits until every Deployment has its ledger, then
/// changes the ConfigMap `changes` times and measures.
async fn measure(m: Measure<'_>, next_value: &mut usize) -> Result<Run, String> {
    let Measure {
        cluster,
        identity,
        binary,
        label,
        expected_workloads,
        changes,
        settle,
    } = m;
    let admin = cluster.client().await.map_err(|e| e.to_string())?;
    let port = free_port().map_err(|e| e.to_string())?;
    let mut command = Command::new(binary);
    command
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .env("KUBECONFIG", &identity.kubeconfig)
        .env("RUST_LOG", "warn");
    let log = cluster.dir.join("logs").join(format!("fanout-{label}.log"));
    let mut process = Process::spawn("kube-reloader", command, &log).map_err(|e| e.to_string())?;
    let http = kube_reloader_testenv::http();
    let base = format!("http://127.0.0.1:{port}");
    wait_until("kube-reloader to be ready", || async {
        http.get(format!("{base}/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await?;
    let all: Api<Deployment> = Api::all(admin.clone());
    wait_until("every Deployment's ledger", || async {
        all.list(&ListParams::default())
            .await
            .map(|l| {
                l.items
                    .iter()
                    .filter(|d| {
                        d.metadata
                            .annotations
                            .as_ref()
                            .is_some_and(|a| a.contains_key(LEDGER))
                    })
                    .count()
            })
            .unwrap_or(0)
            >= expected_workloads
    })
    .await?;
    // Let the start settle (baselines written, the echoes of those writes seen, every workload
    // planned once), so only the changes are measured.
    tokio::time::sleep(Duration::from_secs(settle)).await;
    let configmaps: Api<ConfigMap> = Api::namespaced(admin.clone(), "target");
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), "target");
    let pid = process.pid();
    let cpu_before = cpu_seconds(pid);
    let mut latencies = Vec::with_capacity(changes);
    for _ in 0..changes {
        *next_value += 1;
        let before = deployments.get("web").await.map_err(|e| e.to_string())?;
        let old = env_value(&before);
        let started = Instant::now();
        configmaps
            .patch(
                "cfg",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"v": next_value.to_string()}})),
            )
            .await
            .map_err(|e| e.to_string())?;
        wait_until("the reload", || async {
            deployments
                .get("web")
                .await
                .is_ok_and(|d| env_value(&d).is_some() && env_value(&d) != old)
        })
        .await?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let cpu = cpu_seconds(pid) - cpu_before;
    process.stop(Duration::from_secs(20));
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    Ok(Run {
        cpu_ms_per_event: cpu * 1000.0 / changes as f64,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
    })
}

async fn run(options: Options) -> Result<String, String> {
    let plane = ControlPlane::start(Tier::A)
        .await
        .map_err(|e| e.to_string())?;
    let cluster = plane.info().clone();
    let admin = cluster.client().await.map_err(|e| e.to_string())?;
    let ns: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(json!({"metadata": {"name": "target"}}))
            .map_err(|e| e.to_string())?;
    Api::<k8s_openapi::api::core::v1::Namespace>::all(admin.clone())
        .create(&PostParams::default(), &ns)
        .await
        .map_err(|e| e.to_string())?;
    let identity = cluster
        .service_account("target", "kube-reloader")
        .await
        .map_err(|e| e.to_string())?;
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "fanout-bench"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "kube-reloader", "namespace": "target"}]
    }))
    .map_err(|e| e.to_string())?;
    Api::<ClusterRoleBinding>::all(admin.clone())
        .create(&PostParams::default(), &binding)
        .await
        .map_err(|e| e.to_string())?;
    Api::<ConfigMap>::namespaced(admin.clone(), "target")
        .create(&PostParams::default(), &configmap("cfg", 0)?)
        .await
        .map_err(|e| e.to_string())?;
    Api::<Deployment>::namespaced(admin.clone(), "target")
        .create(&PostParams::default(), &deployment("web", "cfg")?)
        .await
        .map_err(|e| e.to_string())?;

    let mut binaries = vec![("this build", options.binary.clone())];
    if let Some(baseline) = &options.baseline {
        binaries.push(("baseline", baseline.clone()));
    }
    let mut value = 0;
    let mut rows = Vec::new();
    for (phase, unrelated) in [("none", 0), ("many", options.unrelated)] {
        if unrelated > 0 {
            let mut namespaces = Vec::new();
            for _ in 0..OTHER_NAMESPACES {
                let ns = cluster
                    .create_namespace("other")
                    .await
                    .map_err(|e| e.to_string())?;
                Api::<ConfigMap>::namespaced(admin.clone(), &ns)
                    .create(&PostParams::default(), &configmap("shared", 0)?)
                    .await
                    .map_err(|e| e.to_string())?;
                namespaces.push(ns);
            }
            let started = Instant::now();
            populate(&admin, &namespaces, unrelated).await?;
            eprintln!(
                "fanout-bench: created {unrelated} Deployments in {:.0?}",
                started.elapsed()
            );
        }
        for (name, binary) in &binaries {
            let label = format!("{phase}-{}", name.replace(' ', "-"));
            let run = measure(
                Measure {
                    cluster: &cluster,
                    identity: &identity,
                    binary,
                    label: &label,
                    expected_workloads: unrelated + 1,
                    changes: options.changes,
                    settle: options.settle,
                },
                &mut value,
            )
            .await?;
            eprintln!(
                "fanout-bench: {label}: {:.2} ms CPU per event",
                run.cpu_ms_per_event
            );
            rows.push(format!(
                "| {name} | {unrelated} | {:.2} ms | {:.0} / {:.0} ms |",
                run.cpu_ms_per_event, run.p50_ms, run.p99_ms
            ));
        }
    }
    drop(plane);
    Ok(format!(
        "| binary | Deployments in other namespaces | CPU per source event | change → PATCH seen, p50 / p99 |\n\
         | --- | --- | --- | --- |\n{}\n",
        rows.join("\n")
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
