//! `make bench` (side by side): kube-reloader and, when given, a peer controller (e.g.
//! stakater/Reloader) on the same real control plane, in the same run, on the same data, one
//! controller at a time. Writes JSON results and PNG charts, and prints Markdown for
//! docs/BENCHMARKS.md. Numbers live here and in the docs, never in tests.
//!
//! Usage: kube-reloader-compare-bench --binary PATH [--peer PATH] [--peer-label TEXT]
//!        [--points quick|full|fanout|initial-list|workloads|target] [--out DIR] [--memory-budget-gib N]
//!        kube-reloader-compare-bench --markdown RESULTS.json   (the tables again, from a run's JSON)
//!
//! `--points` (or `BENCH_POINTS`) picks the matrix: `quick` is a smoke run of a few minutes,
//! `full` the whole matrix of docs/BENCHMARKS.md, `fanout` only the fan-out points (to try a
//! change to the write path), `initial-list` only object points, 1 and 100 KiB (to try a change
//! to the initial list), `workloads` only the workload points (to try a change to the workload
//! store), `target` only the point (20,000 Secrets x 10 KiB + 5,000
//! ConfigMaps + 1,000 Deployments). Scenarios, in order:
//!
//! 1. fan-out: one ConfigMap used by N Deployments (envFrom, auto); the ConfigMap changes once;
//!    the time until every Deployment's pod template carries the new env var.
//! 2. single change: one ConfigMap and one Deployment, changed one after the other; the time from
//!    the PATCH of the ConfigMap until the Deployment carries the new env var (p50/p99), and the
//!    controller's API requests by verb during the changes (audit log, its service account only),
//!    per 100 changes.
//! 3. workloads: memory after the initial sync with N Deployments (each using one of 100
//!    ConfigMaps and one of 100 Secrets).
//! 4. objects: memory after the initial sync with N Secrets of S KiB of random (incompressible)
//!    data plus N/4 ConfigMaps of 1 KiB and 1,000 Deployments (100 in `quick`) using the first
//!    ConfigMaps; points whose data would not fit this machine are
//!    dropped (and listed, with why) instead of swapping.
//!
//! Per controller and point: VmRSS after the sync settled, VmHWM (peak since start), CPU
//! seconds until then, time to ready. "Ready" is measured the same way for both: from the spawn
//! until a change of a probe ConfigMap is first seen as a reload of its Deployment (the peer has
//! no readiness endpoint; its informers ignore changes made before they synced). kube-reloader's
//! own `/ready` time is recorded too.
//!
//! `BENCH_RUST_LOG` sets kube-reloader's `RUST_LOG` (default `warn`), e.g.
//! `warn,kube_reloader::ops::memory=debug` for the allocator's figures after each initial list;
//! with `KUBE_RELOADER_TEST_KEEP_DIR=1` the logs stay under the control plane's directory.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube_reloader_testenv::process::{Process, free_port};
use kube_reloader_testenv::procfs::{cpu_seconds, memory, status_kib};
use kube_reloader_testenv::{ClusterInfo, ControlPlane, Identity, Tier, Tuning};
use serde_json::{Value, json};

const USAGE: &str = "usage: kube-reloader-compare-bench --binary PATH [--peer PATH] \
                     [--peer-label TEXT] [--points quick|full|fanout|initial-list|workloads|target] [--out DIR] [--memory-budget-gib N]\n       \
                     kube-reloader-compare-bench --markdown RESULTS.json";
const LEDGER: &str = "kube-reloader.io/digests";
const IN_FLIGHT: usize = 32;
/// etcd's backend quota in the bench (its documented maximum is 8 GiB; the default is 2 GiB).
const ETCD_QUOTA: u64 = 8 << 30;
/// Estimated bytes of machine memory per byte of Secret data at the peak of a point: etcd
/// (page cache of its db), kube-apiserver (watch cache, and the serialised full LIST an
/// informer asks for), and a controller that caches whole objects. An estimate to decide which
/// points to drop, not a measurement; the measured component RSS is in the results.
const FOOTPRINT_FACTOR: u64 = 8;
/// The peer serves its metrics on this fixed address (no flag to change it).
const PEER_PORT: u16 = 9090;

struct Matrix {
    name: &'static str,
    fanout: Vec<usize>,
    changes: usize,
    workloads: Vec<usize>,
    secret_counts: Vec<usize>,
    secret_kib: Vec<usize>,
    /// Deployments present during the object sweep (using the first ConfigMaps and Secrets).
    objects_workloads: usize,
}

fn matrix(name: &str) -> Result<Matrix, String> {
    match name {
        "quick" => Ok(Matrix {
            name: "quick",
            fanout: vec![50, 200],
            changes: 20,
            workloads: vec![100],
            secret_counts: vec![0, 1000],
            secret_kib: vec![1, 10],
            objects_workloads: 100,
        }),
        "full" => Ok(Matrix {
            name: "full",
            fanout: vec![200, 1000],
            changes: 100,
            workloads: vec![100, 1000, 10_000],
            secret_counts: vec![0, 1000, 5000, 20_000, 50_000, 80_000],
            secret_kib: vec![1, 10, 100],
            objects_workloads: 1000,
        }),
        "fanout" => Ok(Matrix {
            name: "fanout",
            fanout: vec![200, 1000],
            changes: 20,
            workloads: vec![],
            secret_counts: vec![],
            secret_kib: vec![],
            objects_workloads: 0,
        }),
        "initial-list" => Ok(Matrix {
            name: "initial-list",
            fanout: vec![],
            changes: 5,
            workloads: vec![],
            secret_counts: vec![0, 1000, 5000, 80_000],
            secret_kib: vec![1, 100],
            objects_workloads: 1000,
        }),
        "workloads" => Ok(Matrix {
            name: "workloads",
            fanout: vec![],
            changes: 5,
            workloads: vec![100, 1000, 10_000],
            secret_counts: vec![],
            secret_kib: vec![],
            objects_workloads: 0,
        }),
        "target" => Ok(Matrix {
            name: "target",
            fanout: vec![],
            changes: 5,
            workloads: vec![],
            secret_counts: vec![20_000],
            secret_kib: vec![10],
            objects_workloads: 1000,
        }),
        other => Err(format!(
            "--points {other}: expected quick, full, fanout, initial-list, workloads or target\n{USAGE}"
        )),
    }
}

struct Options {
    binary: String,
    peer: Option<String>,
    peer_label: String,
    matrix: Matrix,
    out: PathBuf,
    budget: u64,
}

fn parse() -> Result<Options, String> {
    let mut binary = String::new();
    let mut peer = None;
    let mut peer_label = "stakater-reloader".to_owned();
    let mut points = std::env::var("BENCH_POINTS").unwrap_or_else(|_| "quick".to_owned());
    let mut out = PathBuf::from("docs/bench");
    let mut budget_gib = 12u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(USAGE)?;
        match arg.as_str() {
            "--binary" => binary = value,
            "--peer" => peer = Some(value).filter(|p| !p.is_empty()),
            "--peer-label" => peer_label = value,
            "--points" => points = value,
            "--out" => out = PathBuf::from(value),
            "--memory-budget-gib" => {
                budget_gib = value
                    .parse()
                    .map_err(|_| format!("{arg}: not a number\n{USAGE}"))?
            }
            _ => return Err(USAGE.to_owned()),
        }
    }
    if binary.is_empty() {
        return Err(USAGE.to_owned());
    }
    Ok(Options {
        binary,
        peer,
        peer_label,
        matrix: matrix(&points)?,
        out,
        budget: budget_gib << 30,
    })
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

// ---------------------------------------------------------------------------------------------
// /proc readings

/// MemAvailable of the machine, in bytes.
fn mem_available() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// RSS (MiB) of the control-plane component `name` of this run (found by its command line,
/// which names the run directory).
fn component_rss(cluster: &ClusterInfo, name: &str) -> f64 {
    let dir = cluster.dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        let mut args = cmdline.split('\0');
        if args.next().is_some_and(|a| a.ends_with(name)) && cmdline.contains(&dir) {
            return memory(pid).0;
        }
    }
    0.0
}

// ---------------------------------------------------------------------------------------------
// Audit log

/// Counts the requests of `user` by verb in the audit log from byte `from`; returns the end.
fn count_requests(cluster: &ClusterInfo, user: &str, from: u64) -> (u64, BTreeMap<String, f64>) {
    let mut verbs = BTreeMap::new();
    let Ok(mut file) = std::fs::File::open(&cluster.audit_log) else {
        return (from, verbs);
    };
    let mut text = String::new();
    if file.seek(SeekFrom::Start(from)).is_err() || file.read_to_string(&mut text).is_err() {
        return (from, verbs);
    }
    // Only whole lines; a line being written is read next time.
    let end = text.rfind('\n').map_or(0, |i| i + 1);
    for line in text[..end].lines() {
        if !line.contains(user) {
            continue;
        }
        let Ok(entry) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if entry["stage"] == "ResponseComplete" && entry["user"]["username"] == user {
            let verb = entry["verb"].as_str().unwrap_or_default().to_owned();
            *verbs.entry(verb).or_insert(0.0) += 1.0;
        }
    }
    (from + end as u64, verbs)
}

fn audit_end(cluster: &ClusterInfo) -> u64 {
    std::fs::metadata(&cluster.audit_log).map_or(0, |m| m.len())
}

// ---------------------------------------------------------------------------------------------
// Objects

/// xorshift64*: fast, and its output does not compress (as real secret material does not).
struct Random(u64);

impl Random {
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            out.extend_from_slice(&self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        out.truncate(n);
        out
    }

    fn text(&mut self, n: usize) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        self.bytes(n)
            .into_iter()
            .map(|b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()]))
            .collect()
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, String> {
    serde_json::from_value(value).map_err(err)
}

fn deployment(name: &str, configmap: &str, secret: Option<&str>) -> Result<Deployment, String> {
    let mut container = json!({"name": "app", "image": "registry.invalid/app",
        "envFrom": [{"configMapRef": {"name": configmap}}]});
    let mut volumes = json!([]);
    if let Some(secret) = secret {
        container["volumeMounts"] = json!([{"name": "s", "mountPath": "/s"}]);
        volumes = json!([{"name": "s", "secret": {"secretName": secret}}]);
    }
    parse_json(json!({
        "metadata": {"name": name, "annotations": {"reloader.stakater.com/auto": "true"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [container], "volumes": volumes}}}
    }))
}

fn configmap(name: &str, data: &str) -> Result<ConfigMap, String> {
    parse_json(json!({"metadata": {"name": name}, "data": {"v": data}}))
}

/// Creates `make(i)` for i in `range`, `IN_FLIGHT` at a time. Stops early (returning false)
/// when the machine's available memory falls below `floor` bytes.
async fn create_all<K, F>(
    api: &Api<K>,
    range: std::ops::Range<usize>,
    floor: u64,
    make: F,
) -> Result<bool, String>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
    F: Fn(usize) -> Result<K, String>,
{
    let started = Instant::now();
    let total = range.len();
    let low = std::sync::atomic::AtomicBool::new(false);
    futures::stream::iter(range)
        .map(|i| {
            let object = make(i);
            let low = &low;
            async move {
                if low.load(std::sync::atomic::Ordering::Relaxed) {
                    return Ok(());
                }
                if i % 500 == 0 && mem_available() < floor {
                    low.store(true, std::sync::atomic::Ordering::Relaxed);
                    return Ok(());
                }
                let object = object?;
                transient_retry(|| async {
                    match api.create(&PostParams::default(), &object).await {
                        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                        other => other.map(drop),
                    }
                })
                .await
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<()>()
        .await?;
    if total > 0 {
        eprintln!(
            "compare-bench: created {total} objects in {:.1?}",
            started.elapsed()
        );
    }
    Ok(!low.load(std::sync::atomic::Ordering::Relaxed))
}

async fn delete_all<K>(api: &Api<K>) -> Result<(), String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    transient_retry(|| async {
        api.delete_collection(&DeleteParams::default(), &ListParams::default())
            .await
            .map(drop)
    })
    .await
}

/// Runs `request` again (up to 5 tries, 1 s apart) when it fails without an answer from the
/// API server (a dropped connection under the load of the largest points: a full run once
/// ended with "client error (SendRequest)"); an API error is final.
async fn transient_retry<F, Fut>(request: F) -> Result<(), String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), kube::Error>>,
{
    let mut tries = 0;
    loop {
        match request().await {
            Ok(()) => return Ok(()),
            Err(e @ kube::Error::Api(_)) => return Err(err(e)),
            Err(e) if tries >= 4 => return Err(err(e)),
            Err(e) => {
                tries += 1;
                eprintln!("compare-bench: {e}; trying again ({tries} of 4)");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

fn env_value(d: &Deployment, name: &str) -> Option<String> {
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
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
}

async fn wait_until<F, Fut>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut check: F,
) -> Result<Duration, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        if started.elapsed() > limit {
            return Err(format!("timed out after {limit:?} waiting for {what}"));
        }
        tokio::time::sleep(every).await;
    }
    Ok(started.elapsed())
}

// ---------------------------------------------------------------------------------------------
// Controllers

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ours,
    Peer,
}

struct Controller {
    name: String,
    kind: Kind,
    binary: String,
    identity: Identity,
}

struct Running {
    process: Process,
    spawned: Instant,
    port: u16,
}

/// What a controller's start cost, after its initial sync settled.
struct Synced {
    /// kube-reloader's `/ready` (0 for the peer, which has none).
    ready_endpoint_s: f64,
    first_reload_s: f64,
    rss: f64,
    /// The anonymous part of `rss` (heap, stacks); the rest is the mapped binary's pages.
    anon: f64,
    peak: f64,
    cpu_s: f64,
}

struct Bench {
    cluster: ClusterInfo,
    admin: kube::Client,
    controllers: Vec<Controller>,
    records: Vec<Value>,
    dropped: Vec<Value>,
    probe_value: usize,
    logs: usize,
}

impl Bench {
    fn record(
        &mut self,
        controller: &str,
        scenario: &str,
        point: &Value,
        figure: &str,
        value: f64,
        unit: &str,
    ) {
        let mut record = json!({"controller": controller, "scenario": scenario, "figure": figure,
            "value": (value * 1000.0).round() / 1000.0, "unit": unit});
        if let (Some(record), Some(point)) = (record.as_object_mut(), point.as_object()) {
            for (k, v) in point {
                record.insert(k.clone(), v.clone());
            }
        }
        self.records.push(record);
    }

    async fn spawn(&mut self, index: usize) -> Result<Running, String> {
        let controller = &self.controllers[index];
        self.logs += 1;
        let log = self
            .cluster
            .dir
            .join("logs")
            .join(format!("{}-{}.log", controller.name, self.logs));
        let mut command = Command::new(&controller.binary);
        command.env("KUBECONFIG", &controller.identity.kubeconfig);
        let port = match controller.kind {
            Kind::Ours => {
                let port = free_port().map_err(err)?;
                command
                    .args(["--http-addr", &format!("127.0.0.1:{port}")])
                    .env(
                        "RUST_LOG",
                        std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "warn".to_owned()),
                    );
                port
            }
            Kind::Peer => {
                // One at a time: the peer's port is fixed, so a leftover would make it fail.
                if std::net::TcpListener::bind(("0.0.0.0", PEER_PORT)).is_err() {
                    return Err(format!(
                        "port {PEER_PORT} is taken: the peer cannot serve its metrics"
                    ));
                }
                PEER_PORT
            }
        };
        let process = Process::spawn(&controller.name, command, &log).map_err(err)?;
        Ok(Running {
            process,
            spawned: Instant::now(),
            port,
        })
    }

    /// Waits until the controller reloads on a change of the probe ConfigMap, then until its
    /// initial work settled.
    async fn sync(&mut self, index: usize, run: &mut Running) -> Result<Synced, String> {
        let kind = self.controllers[index].kind;
        let http = kube_reloader_testenv::http();
        let limit = Duration::from_secs(900);
        let mut ready_s = 0.0;
        if kind == Kind::Ours {
            let url = format!("http://127.0.0.1:{}/ready", run.port);
            let process = &mut run.process;
            let started = run.spawned;
            let mut exited = None;
            wait_until("/ready", limit, Duration::from_millis(50), || {
                exited = process.exit_status();
                let dead = exited.is_some();
                let probe = http.get(&url).send();
                async move { dead || probe.await.is_ok_and(|r| r.status().is_success()) }
            })
            .await?;
            if let Some(status) = exited {
                return Err(format!("kube-reloader exited with {status} before ready"));
            }
            ready_s = started.elapsed().as_secs_f64();
        }
        let configmaps: Api<ConfigMap> = Api::namespaced(self.admin.clone(), "probe");
        let deployments: Api<Deployment> = Api::namespaced(self.admin.clone(), "probe");
        let first_reload_s = loop {
            if run.spawned.elapsed() > limit {
                return Err("no reload of the probe Deployment".into());
            }
            if let Some(status) = run.process.exit_status() {
                return Err(format!(
                    "{} exited with {status}; see {}",
                    self.controllers[index].name,
                    run.process.log_path().display()
                ));
            }
            let before = deployments.get("probe").await.map_err(err)?;
            let old = env_value(&before, "STAKATER_PROBE_CONFIGMAP");
            self.probe_value += 1;
            configmaps
                .patch(
                    "probe",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"data": {"v": self.probe_value.to_string()}})),
                )
                .await
                .map_err(err)?;
            let seen = wait_until(
                "probe",
                Duration::from_millis(300),
                Duration::from_millis(20),
                || async {
                    deployments.get("probe").await.is_ok_and(|d| {
                        let new = env_value(&d, "STAKATER_PROBE_CONFIGMAP");
                        new.is_some() && new != old
                    })
                },
            )
            .await;
            if seen.is_ok() {
                break run.spawned.elapsed().as_secs_f64();
            }
        };
        if kind == Kind::Ours {
            let all: Api<Deployment> = Api::all(self.admin.clone());
            wait_until(
                "every Deployment's ledger",
                limit,
                Duration::from_secs(1),
                || async {
                    all.list(&ListParams::default()).await.is_ok_and(|l| {
                        l.items.iter().all(|d| {
                            d.metadata
                                .annotations
                                .as_ref()
                                .is_some_and(|a| a.contains_key(LEDGER))
                        })
                    })
                },
            )
            .await?;
        }
        // Every auto Deployment carries kube-reloader's ledger once its start-up work is done.
        // Let the start settle (echoes of writes, the peer's resyncs of its caches).
        tokio::time::sleep(Duration::from_secs(3)).await;
        let pid = run.process.pid();
        let (rss, peak) = memory(pid);
        let anon = status_kib(pid, "RssAnon:") / 1024.0;
        Ok(Synced {
            ready_endpoint_s: ready_s,
            first_reload_s,
            rss,
            anon,
            peak,
            cpu_s: cpu_seconds(pid),
        })
    }

    fn record_synced(&mut self, index: usize, scenario: &str, point: &Value, s: &Synced) {
        let name = self.controllers[index].name.clone();
        self.record(&name, scenario, point, "rss_after_sync", s.rss, "MiB");
        self.record(&name, scenario, point, "rss_anon_after_sync", s.anon, "MiB");
        self.record(&name, scenario, point, "rss_peak", s.peak, "MiB");
        self.record(&name, scenario, point, "cpu_to_sync", s.cpu_s, "s");
        self.record(
            &name,
            scenario,
            point,
            "time_to_ready",
            s.first_reload_s,
            "s",
        );
        if self.controllers[index].kind == Kind::Ours {
            self.record(
                &name,
                scenario,
                point,
                "time_to_ready_endpoint",
                s.ready_endpoint_s,
                "s",
            );
        }
        eprintln!(
            "compare-bench: {scenario} {}: {name}: RSS {:.1} MiB (peak {:.1}), CPU {:.2} s, ready {:.1} s",
            point["point"].as_str().unwrap_or_default(),
            s.rss,
            s.peak,
            s.cpu_s,
            s.first_reload_s
        );
    }

    /// Starts each controller in turn on the current data and records its start.
    async fn memory_point(&mut self, scenario: &str, point: Value) -> Result<(), String> {
        for index in 0..self.controllers.len() {
            let mut run = self.spawn(index).await?;
            let synced = self.sync(index, &mut run).await?;
            run.process.stop(Duration::from_secs(20));
            self.record_synced(index, scenario, &point, &synced);
        }
        let apiserver = component_rss(&self.cluster, "kube-apiserver");
        let etcd = component_rss(&self.cluster, "etcd");
        self.record(
            "kube-apiserver",
            scenario,
            &point,
            "rss_after_sync",
            apiserver,
            "MiB",
        );
        self.record("etcd", scenario, &point, "rss_after_sync", etcd, "MiB");
        Ok(())
    }

    async fn fanout(&mut self, counts: &[usize]) -> Result<(), String> {
        let ns = "fanout";
        let deployments: Api<Deployment> = Api::namespaced(self.admin.clone(), ns);
        let configmaps: Api<ConfigMap> = Api::namespaced(self.admin.clone(), ns);
        configmaps
            .create(&PostParams::default(), &configmap("shared", "0")?)
            .await
            .map_err(err)?;
        let mut created = 0;
        let mut value = 0;
        for &count in counts {
            create_all(&deployments, created..count, 0, |i| {
                deployment(&format!("app-{i}"), "shared", None)
            })
            .await?;
            created = created.max(count);
            let point = json!({"workloads": count, "point": format!("{count} Deployments")});
            for index in 0..self.controllers.len() {
                let mut run = self.spawn(index).await?;
                let synced = self.sync(index, &mut run).await?;
                let before: BTreeMap<String, Option<String>> = deployments
                    .list(&ListParams::default())
                    .await
                    .map_err(err)?
                    .items
                    .iter()
                    .map(|d| {
                        (
                            d.metadata.name.clone().unwrap_or_default(),
                            env_value(d, "STAKATER_SHARED_CONFIGMAP"),
                        )
                    })
                    .collect();
                value += 1;
                let cpu_before = cpu_seconds(run.process.pid());
                let started = Instant::now();
                configmaps
                    .patch(
                        "shared",
                        &PatchParams::default(),
                        &Patch::Merge(json!({"data": {"v": value.to_string()}})),
                    )
                    .await
                    .map_err(err)?;
                wait_until(
                    "every Deployment patched",
                    Duration::from_secs(1800),
                    Duration::from_millis(100),
                    || async {
                        deployments
                            .list(&ListParams::default())
                            .await
                            .map(|l| {
                                l.items
                                    .iter()
                                    .filter(|d| {
                                        let new = env_value(d, "STAKATER_SHARED_CONFIGMAP");
                                        let name = d.metadata.name.clone().unwrap_or_default();
                                        new.is_some()
                                            && before.get(&name).is_some_and(|old| *old != new)
                                    })
                                    .count()
                            })
                            .unwrap_or(0)
                            >= count
                    },
                )
                .await?;
                let took = started.elapsed().as_secs_f64();
                let cpu = cpu_seconds(run.process.pid()) - cpu_before;
                let (_, peak) = memory(run.process.pid());
                run.process.stop(Duration::from_secs(20));
                let name = self.controllers[index].name.clone();
                eprintln!("compare-bench: fan-out to {count}: {name}: {took:.2} s");
                self.record(&name, "fanout", &point, "fanout_time", took, "s");
                self.record(&name, "fanout", &point, "fanout_cpu", cpu, "s");
                self.record(&name, "fanout", &point, "rss_after_sync", synced.rss, "MiB");
                self.record(&name, "fanout", &point, "rss_peak", peak, "MiB");
            }
        }
        delete_all(&deployments).await
    }

    async fn latency(&mut self, changes: usize) -> Result<(), String> {
        let ns = "latency";
        let deployments: Api<Deployment> = Api::namespaced(self.admin.clone(), ns);
        let configmaps: Api<ConfigMap> = Api::namespaced(self.admin.clone(), ns);
        configmaps
            .create(&PostParams::default(), &configmap("cfg", "0")?)
            .await
            .map_err(err)?;
        deployments
            .create(&PostParams::default(), &deployment("web", "cfg", None)?)
            .await
            .map_err(err)?;
        let point =
            json!({"changes": changes, "point": format!("{changes} changes, one at a time")});
        let mut value = 0;
        for index in 0..self.controllers.len() {
            let mut run = self.spawn(index).await?;
            self.sync(index, &mut run).await?;
            let pid = run.process.pid();
            let user = self.controllers[index].identity.user.clone();
            let mark = audit_end(&self.cluster);
            let cpu_before = cpu_seconds(pid);
            let mut latencies = Vec::with_capacity(changes);
            for _ in 0..changes {
                value += 1;
                let old = env_value(
                    &deployments.get("web").await.map_err(err)?,
                    "STAKATER_CFG_CONFIGMAP",
                );
                let started = Instant::now();
                configmaps
                    .patch(
                        "cfg",
                        &PatchParams::default(),
                        &Patch::Merge(json!({"data": {"v": value.to_string()}})),
                    )
                    .await
                    .map_err(err)?;
                wait_until(
                    "the reload",
                    Duration::from_secs(120),
                    Duration::from_millis(10),
                    || async {
                        deployments.get("web").await.is_ok_and(|d| {
                            let new = env_value(&d, "STAKATER_CFG_CONFIGMAP");
                            new.is_some() && new != old
                        })
                    },
                )
                .await?;
                latencies.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            let cpu = cpu_seconds(pid) - cpu_before;
            // Requests still in flight (e.g. an Event after the PATCH) land in the log shortly.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let (_, verbs) = count_requests(&self.cluster, &user, mark);
            run.process.stop(Duration::from_secs(20));
            latencies.sort_by(f64::total_cmp);
            let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
            let name = self.controllers[index].name.clone();
            self.record(&name, "latency", &point, "latency_p50", at(0.5), "ms");
            self.record(&name, "latency", &point, "latency_p99", at(0.99), "ms");
            self.record(
                &name,
                "latency",
                &point,
                "cpu_per_100_changes",
                cpu * 100.0 / changes as f64,
                "s",
            );
            for verb in [
                "get", "list", "watch", "create", "update", "patch", "delete",
            ] {
                let n = verbs.get(verb).copied().unwrap_or(0.0) * 100.0 / changes as f64;
                self.record(
                    &name,
                    "latency",
                    &point,
                    &format!("api_{verb}_per_100_changes"),
                    n,
                    "requests",
                );
            }
            eprintln!(
                "compare-bench: latency {name}: p50 {:.0} ms, p99 {:.0} ms, requests {verbs:?}",
                at(0.5),
                at(0.99)
            );
        }
        Ok(())
    }

    async fn workloads(&mut self, counts: &[usize]) -> Result<(), String> {
        let ns = "workloads";
        let deployments: Api<Deployment> = Api::namespaced(self.admin.clone(), ns);
        let configmaps: Api<ConfigMap> = Api::namespaced(self.admin.clone(), ns);
        let secrets: Api<Secret> = Api::namespaced(self.admin.clone(), ns);
        let mut random = Random(0x9e37_79b9_7f4a_7c15);
        let payload = random.text(1024);
        create_all(&configmaps, 0..100, 0, |i| {
            configmap(&format!("cm-{i}"), &payload)
        })
        .await?;
        let bytes = random.bytes(1024);
        create_all(&secrets, 0..100, 0, |i| {
            parse_json(json!({"metadata": {"name": format!("secret-{i}")}})).map(|mut s: Secret| {
                s.data = Some([("payload".to_owned(), ByteString(bytes.clone()))].into());
                s
            })
        })
        .await?;
        let mut created = 0;
        for &count in counts {
            create_all(&deployments, created..count, 0, |i| {
                deployment(
                    &format!("app-{i}"),
                    &format!("cm-{}", i % 100),
                    Some(&format!("secret-{}", i % 100)),
                )
            })
            .await?;
            created = created.max(count);
            let point = json!({"workloads": count, "point": format!("{count} Deployments, 100 ConfigMaps, 100 Secrets")});
            self.memory_point("workloads", point).await?;
        }
        delete_all(&deployments).await
    }

    async fn objects(&mut self, matrix: &Matrix, budget: u64) -> Result<(), String> {
        let ns = "data";
        let configmaps: Api<ConfigMap> = Api::namespaced(self.admin.clone(), ns);
        let secrets: Api<Secret> = Api::namespaced(self.admin.clone(), ns);
        let mut random = Random(0x2545_f491_4f6c_dd1d);
        let cm_payload = random.text(1024);
        // Workloads present at every point, so a point is the issue's "N Secrets + N/4
        // ConfigMaps + 1,000 workloads": every Deployment uses one ConfigMap that exists at
        // every point (so each gets its baseline, which the sync waits for).
        let deployments: Api<Deployment> = Api::namespaced(self.admin.clone(), ns);
        let with = matrix.objects_workloads;
        configmaps
            .create(&PostParams::default(), &configmap("used", "0")?)
            .await
            .map_err(err)?;
        create_all(&deployments, 0..with, 0, |i| {
            deployment(&format!("app-{i}"), "used", None)
        })
        .await?;
        for &kib in &matrix.secret_kib {
            let mut created = 0;
            let mut created_cms = 0;
            for &count in &matrix.secret_counts {
                if count == 0 && kib != matrix.secret_kib[0] {
                    continue; // the empty point is the same for every size
                }
                let cms = count / 4;
                let label = format!(
                    "{count} Secrets x {kib} KiB + {cms} ConfigMaps x 1 KiB + {with} Deployments"
                );
                let data = (count * kib * 1024 + cms * 1024) as u64;
                let available = mem_available();
                let need = data * FOOTPRINT_FACTOR;
                let reason = if data * 3 / 2 > ETCD_QUOTA {
                    Some(format!(
                        "{:.1} GiB of data would not fit etcd's {} GiB quota",
                        data as f64 / f64::from(1u32 << 30),
                        ETCD_QUOTA >> 30
                    ))
                } else if need > budget || need > available * 4 / 5 {
                    Some(format!(
                        "{:.1} GiB of data: an estimated {:.1} GiB at the peak (etcd, kube-apiserver's \
                         watch cache and LIST, a controller caching objects) is over the {:.0} GiB \
                         budget or 80 % of the {:.1} GiB available",
                        data as f64 / f64::from(1u32 << 30),
                        need as f64 / f64::from(1u32 << 30),
                        budget as f64 / f64::from(1u32 << 30),
                        available as f64 / f64::from(1u32 << 30),
                    ))
                } else {
                    None
                };
                if let Some(reason) = reason {
                    eprintln!("compare-bench: dropped {label}: {reason}");
                    self.dropped.push(json!({"point": label, "reason": reason}));
                    continue;
                }
                let floor = 2u64 << 30;
                let size = kib * 1024;
                let complete = create_all(&secrets, created..count, floor, |i| {
                    let mut random = Random(0x1234_5678 ^ (i as u64) << 20 ^ kib as u64);
                    parse_json(json!({"metadata": {"name": format!("s{kib}-{i}")}})).map(
                        |mut s: Secret| {
                            s.data = Some(
                                [("payload".to_owned(), ByteString(random.bytes(size)))].into(),
                            );
                            s
                        },
                    )
                })
                .await?
                    && create_all(&configmaps, created_cms..cms, floor, |i| {
                        configmap(&format!("cm-{i}"), &cm_payload)
                    })
                    .await?;
                if !complete {
                    let reason =
                        "the machine's available memory fell below 2 GiB while creating".to_owned();
                    eprintln!("compare-bench: dropped {label}: {reason}");
                    self.dropped.push(json!({"point": label, "reason": reason}));
                    break;
                }
                created = count;
                created_cms = cms;
                let point = json!({"point": label, "secrets": count, "secret_kib": kib,
                    "configmaps": cms, "objects": count + cms, "workloads": with});
                self.memory_point("objects", point).await?;
            }
            delete_all(&secrets).await?;
            delete_all(&configmaps).await?;
            // The Deployments' ConfigMap stays for the next size.
            configmaps
                .create(&PostParams::default(), &configmap("used", "0")?)
                .await
                .map_err(err)?;
        }
        delete_all(&deployments).await
    }
}

/// The peer's RBAC: upstream's chart ClusterRole (stakater/Reloader chart 2.2.x, defaults) plus
/// `watch` on the workloads, as the peer's README asks.
fn peer_rules() -> Value {
    json!([
        {"apiGroups": [""], "resources": ["secrets", "configmaps"], "verbs": ["list", "get", "watch"]},
        {"apiGroups": ["apps"], "resources": ["deployments", "daemonsets", "statefulsets"],
         "verbs": ["list", "get", "update", "patch", "watch"]},
        {"apiGroups": ["extensions"], "resources": ["deployments", "daemonsets"],
         "verbs": ["list", "get", "update", "patch", "watch"]},
        {"apiGroups": ["batch"], "resources": ["cronjobs"], "verbs": ["list", "get", "watch"]},
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "delete", "list", "get", "watch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]}
    ])
}

async fn bind(admin: &kube::Client, name: &str, role: &str, ns: &str) -> Result<(), String> {
    let binding: ClusterRoleBinding = parse_json(json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]
    }))?;
    Api::<ClusterRoleBinding>::all(admin.clone())
        .create(&PostParams::default(), &binding)
        .await
        .map_err(err)?;
    Ok(())
}

async fn namespace(admin: &kube::Client, name: &str) -> Result<(), String> {
    let ns: k8s_openapi::api::core::v1::Namespace =
        parse_json(json!({"metadata": {"name": name}}))?;
    Api::<k8s_openapi::api::core::v1::Namespace>::all(admin.clone())
        .create(&PostParams::default(), &ns)
        .await
        .map_err(err)?;
    Ok(())
}

async fn run(options: Options) -> Result<(Value, String), String> {
    let started = Instant::now();
    let tuning = Tuning {
        // Bulk creates with 32 in flight, and a controller's LISTs alongside.
        apiserver_args: vec![
            "--max-requests-inflight=1000".into(),
            "--max-mutating-requests-inflight=500".into(),
        ],
        etcd_args: vec![format!("--quota-backend-bytes={ETCD_QUOTA}")],
    };
    let plane = ControlPlane::start_tuned(Tier::A, tuning.clone())
        .await
        .map_err(err)?;
    let cluster = plane.info().clone();
    let admin = cluster.client().await.map_err(err)?;
    for ns in [
        "bench-system",
        "probe",
        "fanout",
        "latency",
        "workloads",
        "data",
    ] {
        namespace(&admin, ns).await?;
    }
    let ours = cluster
        .service_account("bench-system", "kube-reloader")
        .await
        .map_err(err)?;
    bind(&admin, "kube-reloader", "cluster-admin", "bench-system").await?;
    let mut controllers = vec![Controller {
        name: "kube-reloader".into(),
        kind: Kind::Ours,
        binary: options.binary.clone(),
        identity: ours,
    }];
    if let Some(peer) = &options.peer {
        let role: ClusterRole = parse_json(json!({
            "metadata": {"name": "stakater-reloader"}, "rules": peer_rules()
        }))?;
        Api::<ClusterRole>::all(admin.clone())
            .create(&PostParams::default(), &role)
            .await
            .map_err(err)?;
        let identity = cluster
            .service_account("bench-system", "stakater-reloader")
            .await
            .map_err(err)?;
        bind(
            &admin,
            "stakater-reloader",
            "stakater-reloader",
            "bench-system",
        )
        .await?;
        controllers.push(Controller {
            name: options.peer_label.clone(),
            kind: Kind::Peer,
            binary: peer.clone(),
            identity,
        });
    }
    Api::<ConfigMap>::namespaced(admin.clone(), "probe")
        .create(&PostParams::default(), &configmap("probe", "0")?)
        .await
        .map_err(err)?;
    Api::<Deployment>::namespaced(admin.clone(), "probe")
        .create(&PostParams::default(), &deployment("probe", "probe", None)?)
        .await
        .map_err(err)?;
    let mut bench = Bench {
        cluster,
        admin,
        controllers,
        records: Vec::new(),
        dropped: Vec::new(),
        probe_value: 0,
        logs: 0,
    };
    let m = &options.matrix;
    bench.fanout(&m.fanout).await?;
    bench.latency(m.changes).await?;
    bench.workloads(&m.workloads).await?;
    bench.objects(m, options.budget).await?;
    let elapsed = started.elapsed();
    drop(plane);
    let peer = bench.controllers.iter().find(|c| c.kind == Kind::Peer);
    let results = json!({
        "meta": {
            "points": m.name,
            "duration_s": elapsed.as_secs(),
            "machine": {"cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
                "memory_gib": (mem_total() as f64 / f64::from(1u32 << 30)).round()},
            "control_plane": {"tier": "A", "kube_apiserver": bench.cluster.apiserver_version,
                "etcd": bench.cluster.etcd_version,
                "apiserver_args": tuning.apiserver_args, "etcd_args": tuning.etcd_args},
            "controllers": bench.controllers.iter().map(|c| json!({
                "name": c.name, "binary": c.binary,
                "flags": if c.kind == Kind::Ours { "--http-addr 127.0.0.1:<port>, RUST_LOG=warn" } else { "none (upstream defaults: --reload-strategy=env-vars, all namespaces)" },
                "rbac": if c.kind == Kind::Ours { json!("cluster-admin") } else { peer_rules() },
            })).collect::<Vec<_>>(),
            "peer": peer.map(|p| p.name.clone()),
        },
        "records": bench.records,
        "dropped": bench.dropped,
    });
    let markdown = markdown(&results);
    Ok((results, markdown))
}

fn mem_total() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

// ---------------------------------------------------------------------------------------------
// Markdown

fn find(
    results: &Value,
    controller: &str,
    scenario: &str,
    point: &str,
    figure: &str,
) -> Option<f64> {
    results["records"].as_array()?.iter().find_map(|r| {
        (r["controller"] == controller
            && r["scenario"] == scenario
            && r["point"] == point
            && r["figure"] == figure)
            .then(|| r["value"].as_f64())
            .flatten()
    })
}

fn points(results: &Value, scenario: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in results["records"].as_array().into_iter().flatten() {
        if r["scenario"] == scenario
            && let Some(p) = r["point"].as_str()
            && !out.iter().any(|o| o == p)
        {
            out.push(p.to_owned());
        }
    }
    out
}

fn names(results: &Value) -> Vec<String> {
    results["meta"]["controllers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect()
}

fn cell(v: Option<f64>, digits: usize, unit: &str) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}{unit}"))
}

fn memory_table(results: &Value, scenario: &str) -> String {
    let names = names(results);
    let mut out = String::from("| point |");
    for n in &names {
        out += &format!(
            " {n}: RSS after sync [anonymous] (peak) | {n}: CPU to sync | {n}: ready (first reload) |"
        );
    }
    out += " kube-apiserver RSS | etcd RSS |\n|---|";
    out += &"---|".repeat(names.len() * 3 + 2);
    out += "\n";
    for p in points(results, scenario) {
        out += &format!("| {p} |");
        for n in &names {
            let rss = find(results, n, scenario, &p, "rss_after_sync");
            let peak = find(results, n, scenario, &p, "rss_peak");
            let anon = find(results, n, scenario, &p, "rss_anon_after_sync");
            out += &format!(
                " {} [{}] ({}) | {} | {} |",
                cell(rss, 1, " MiB"),
                cell(anon, 1, ""),
                cell(peak, 1, ""),
                cell(find(results, n, scenario, &p, "cpu_to_sync"), 2, " s"),
                cell(find(results, n, scenario, &p, "time_to_ready"), 1, " s"),
            );
        }
        out += &format!(
            " {} | {} |\n",
            cell(
                find(results, "kube-apiserver", scenario, &p, "rss_after_sync"),
                0,
                " MiB"
            ),
            cell(
                find(results, "etcd", scenario, &p, "rss_after_sync"),
                0,
                " MiB"
            ),
        );
    }
    out
}

/// Least-squares line y = a + b x through the points.
fn fit(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    if points.len() < 2 {
        return (points.first().map_or(0.0, |p| p.1), 0.0);
    }
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |a, p| (a.0 + p.0, a.1 + p.1));
    let (mx, my) = (sx / n, sy / n);
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let b = if sxx > 0.0 { (sxy / sxx).max(0.0) } else { 0.0 };
    (my - b * mx, b)
}

fn series(
    results: &Value,
    controller: &str,
    scenario: &str,
    x: &str,
    figure: &str,
) -> Vec<(f64, f64)> {
    results["records"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| {
            r["controller"] == controller && r["scenario"] == scenario && r["figure"] == figure
        })
        .filter_map(|r| Some((r[x].as_f64()?, r["value"].as_f64()?)))
        .collect()
}

/// The objects points of `controller`'s `figure`, one line of (objects, value) per Secret size
/// measured, by size; the empty point belongs to every size.
fn size_lines(results: &Value, controller: &str, figure: &str) -> Vec<(f64, Vec<(f64, f64)>)> {
    let all = results["records"].as_array().cloned().unwrap_or_default();
    let mut sizes: Vec<f64> = all
        .iter()
        .filter_map(|r| r["secret_kib"].as_f64())
        .collect();
    sizes.sort_by(f64::total_cmp);
    sizes.dedup();
    sizes
        .into_iter()
        .map(|size| {
            let line = all
                .iter()
                .filter(|r| {
                    r["controller"] == controller
                        && r["scenario"] == "objects"
                        && r["figure"] == figure
                        && (r["secret_kib"].as_f64() == Some(size)
                            || r["objects"].as_f64() == Some(0.0))
                })
                .filter_map(|r| Some((r["objects"].as_f64()?, r["value"].as_f64()?)))
                .collect();
            (size, line)
        })
        .collect()
}

/// The fitted RSS growth per extra Secret (bytes per object, ConfigMaps included) of every
/// controller at every Secret size, as one Markdown line per controller.
fn growth_per_object(results: &Value) -> String {
    let mut out = String::new();
    for controller in names(results) {
        let per_size: Vec<String> = size_lines(results, &controller, "rss_after_sync")
            .iter()
            .map(|(size, line)| format!("{size:.0} KiB Secrets: {:.0} B", fit(line).1 * 1048576.0))
            .collect();
        out += &format!(
            "- {controller}: RSS growth per extra object (least-squares over the points): {}\n",
            per_size.join("; ")
        );
    }
    out
}

/// The steepest of the per-Secret-size lines of `figure` over the objects points, so the sizing
/// holds for the largest Secrets measured.
fn steepest(results: &Value, controller: &str, figure: &str) -> (f64, f64) {
    let mut best = (0.0, 0.0);
    for (_, line) in size_lines(results, controller, figure) {
        let line = fit(&line);
        if line.1 >= best.1 {
            best = line;
        }
    }
    best
}

/// Requests and limits for the chart by cluster size, from kube-reloader's figures: memory as a
/// line in objects (the worst of the measured Secret sizes) plus a line in workloads.
fn sizing(results: &Value) -> String {
    let c = "kube-reloader";
    let objects_rss = steepest(results, c, "rss_after_sync");
    let objects_peak = steepest(results, c, "rss_peak");
    let workloads_rss = fit(&series(
        results,
        c,
        "workloads",
        "workloads",
        "rss_after_sync",
    ));
    let workloads_peak = fit(&series(results, c, "workloads", "workloads", "rss_peak"));
    let mut out = format!(
        "Fitted from this run (objects: the line of the largest Secrets measured): RSS after sync ≈ {:.1} MiB + {:.0} B per Secret/ConfigMap + {:.0} B \
         per workload; peak ≈ {:.1} MiB + {:.0} B per object + {:.0} B per workload.\n\n\
         | cluster | objects (Secrets + ConfigMaps) | workloads | expected RSS (peak) | memory request | memory limit |\n\
         |---|---|---|---|---|---|\n",
        objects_rss.0,
        objects_rss.1 * 1048576.0,
        workloads_rss.1 * 1048576.0,
        objects_peak.0,
        objects_peak.1 * 1048576.0,
        workloads_peak.1 * 1048576.0,
    );
    let measured = |scenario: &str, x: &str| {
        series(results, c, scenario, x, "rss_after_sync")
            .iter()
            .map(|p| p.0)
            .fold(0.0, f64::max)
    };
    let (max_objects, max_workloads) = (
        measured("objects", "objects"),
        measured("workloads", "workloads"),
    );
    for (name, objects, workloads) in [
        ("small", 1_000.0, 100.0),
        ("medium", 10_000.0, 1_000.0),
        ("large", 50_000.0, 5_000.0),
        ("very large", 100_000.0, 10_000.0),
    ] {
        let rss = objects_rss.0 + objects_rss.1 * objects + workloads_rss.1 * workloads;
        let peak =
            (objects_peak.0 + objects_peak.1 * objects + workloads_peak.1 * workloads).max(rss);
        let round = |v: f64| ((v / 16.0).ceil() * 16.0) as u64;
        let beyond = if objects > max_objects || workloads > max_workloads {
            " (extrapolated)"
        } else {
            ""
        };
        out += &format!(
            "| {name}{beyond} | {objects:.0} | {workloads:.0} | {rss:.0} MiB ({peak:.0}) | {} Mi | {} Mi |\n",
            round(rss * 1.25),
            round(peak * 1.5).max(round(rss * 1.25) * 2),
        );
    }
    out += "\nRequest = 1.25 × the expected RSS after sync; limit = 1.5 × the expected peak (at least \
            twice the request), both rounded up to 16 MiB. CPU: the per-change and sync costs above \
            are small; a request of 10m–50m and no CPU limit keeps fan-out bursts from being throttled.\n";
    out
}

/// The value of the objects-scenario record of `controller`'s `figure` whose point `matches`.
fn find_object_point(
    results: &Value,
    controller: &str,
    figure: &str,
    matches: impl Fn(&Value) -> bool,
) -> Option<f64> {
    results["records"].as_array()?.iter().find_map(|r| {
        (r["controller"] == controller
            && r["scenario"] == "objects"
            && r["figure"] == figure
            && matches(r))
        .then(|| r["value"].as_f64())
        .flatten()
    })
}

/// One target as read from a run: this run's figure and whether it meets the target, or why it
/// is not judged (not measured, no peer).
type Judged = Result<(String, bool), String>;

/// Issue 14's targets, each read from this run's records: kube-reloader's figure, the peer's
/// where one ran, and whether the target is met. A target whose point is not in the matrix
/// says so instead of guessing.
fn targets(results: &Value) -> String {
    const US: &str = "kube-reloader";
    let peer = results["meta"]["peer"].as_str().map(str::to_owned);
    let unmeasured = || "not in this matrix (BENCH_POINTS=full measures it)".to_owned();
    let at_target = |r: &Value| {
        r["secrets"].as_f64() == Some(20_000.0)
            && r["secret_kib"].as_f64() == Some(10.0)
            && r["configmaps"].as_f64() == Some(5_000.0)
            && r["workloads"].as_f64() == Some(1_000.0)
    };
    let ours = |figure: &str| find_object_point(results, US, figure, at_target);
    let theirs = |figure: &str| {
        peer.as_deref()
            .and_then(|n| find_object_point(results, n, figure, at_target))
    };
    let with_peer = |value: Option<f64>, digits: usize, unit: &str| match &peer {
        Some(name) => format!(" ({name}: {})", cell(value, digits, unit)),
        None => String::new(),
    };
    let mut rows: Vec<(String, Judged)> = Vec::new();
    let (rss, anon, peak) = (
        ours("rss_after_sync"),
        ours("rss_anon_after_sync"),
        ours("rss_peak"),
    );
    rows.push(match (rss, theirs("rss_after_sync"), &peer) {
        (Some(rss), Some(p), Some(name)) => {
            let anon_ratio = match (anon, theirs("rss_anon_after_sync")) {
                (Some(a), Some(pa)) if a > 0.0 => {
                    format!(
                        " (anonymous memory: {a:.1} vs {pa:.1} MiB, 1/{:.1})",
                        pa / a
                    )
                }
                _ => String::new(),
            };
            (
                format!("RSS after sync ≤ 1/10 of {name}'s"),
                Ok((
                    format!("{rss:.1} MiB vs {p:.1} MiB: 1/{:.1}{anon_ratio}", p / rss),
                    rss * 10.0 <= p,
                )),
            )
        }
        (rss, _, _) => (
            "RSS after sync ≤ 1/10 of the peer's".to_owned(),
            Err(match rss {
                Some(_) => "no peer in this run (PEER=…)".to_owned(),
                None => unmeasured(),
            }),
        ),
    });
    rows.push((
        "RSS after sync ≤ 25 MiB".to_owned(),
        rss.map(|rss| (format!("{rss:.1} MiB"), rss <= 25.0))
            .ok_or_else(unmeasured),
    ));
    rows.push((
        "peak during the initial sync ≤ 1.5 × steady state".to_owned(),
        match (rss, peak) {
            (Some(rss), Some(peak)) if rss > 0.0 => Ok((
                format!("{peak:.1} / {rss:.1} MiB = {:.2}", peak / rss),
                peak <= 1.5 * rss,
            )),
            _ => Err(unmeasured()),
        },
    ));
    let growth: Vec<(f64, f64)> = size_lines(results, US, "rss_after_sync")
        .into_iter()
        .filter(|(_, line)| line.len() >= 3)
        .map(|(size, line)| (size, fit(&line).1 * 1_048_576.0))
        .collect();
    rows.push((
        "RSS growth ≤ 400 B per extra Secret, whatever its size".to_owned(),
        if growth.is_empty() {
            Err("needs three object points or more per size".to_owned())
        } else {
            Ok((
                growth
                    .iter()
                    .map(|(size, b)| format!("{b:.0} B ({size:.0} KiB)"))
                    .collect::<Vec<_>>()
                    .join(", "),
                growth.iter().all(|g| g.1 <= 400.0),
            ))
        },
    ));
    let fanout = |controller: &str| {
        find(
            results,
            controller,
            "fanout",
            "1000 Deployments",
            "fanout_time",
        )
    };
    rows.push((
        "fan-out to 1,000 Deployments ≤ 5 s".to_owned(),
        fanout(US)
            .map(|t| {
                (
                    format!(
                        "{t:.2} s{}",
                        with_peer(peer.as_deref().and_then(fanout), 1, " s")
                    ),
                    t <= 5.0,
                )
            })
            .ok_or_else(unmeasured),
    ));
    let latency = points(results, "latency").into_iter().next();
    let per_change = |controller: &str, figure: &str| {
        latency
            .as_deref()
            .and_then(|p| find(results, controller, "latency", p, figure))
    };
    let peer_per_change = |figure: &str| peer.as_deref().and_then(|n| per_change(n, figure));
    rows.push((
        "p99 single-change latency ≤ 100 ms".to_owned(),
        per_change(US, "latency_p99")
            .map(|p99| {
                (
                    format!(
                        "{p99:.0} ms{}",
                        with_peer(peer_per_change("latency_p99"), 0, " ms")
                    ),
                    p99 <= 100.0,
                )
            })
            .ok_or_else(unmeasured),
    ));
    rows.push((
        "zero LIST/GET per change".to_owned(),
        match (
            per_change(US, "api_list_per_100_changes"),
            per_change(US, "api_get_per_100_changes"),
        ) {
            (Some(list), Some(get)) => Ok((
                format!(
                    "{list:.0} LIST / {get:.0} GET per 100 changes{}",
                    with_peer(peer_per_change("api_list_per_100_changes"), 0, " LISTs")
                ),
                list == 0.0 && get == 0.0,
            )),
            _ => Err(unmeasured()),
        },
    ));
    // The largest object point of at least 100,000 objects, at the largest Secret size.
    let all = results["records"].as_array().cloned().unwrap_or_default();
    let big = all
        .iter()
        .filter(|r| {
            r["controller"] == US
                && r["scenario"] == "objects"
                && r["figure"] == "rss_after_sync"
                && r["objects"].as_f64().is_some_and(|o| o >= 100_000.0)
        })
        .max_by(|a, b| {
            let key = |r: &Value| {
                (
                    r["secret_kib"].as_f64().unwrap_or(0.0),
                    r["objects"].as_f64().unwrap_or(0.0),
                )
            };
            let (ka, kb) = (key(a), key(b));
            ka.0.total_cmp(&kb.0).then(ka.1.total_cmp(&kb.1))
        })
        .and_then(|r| r["point"].as_str().map(str::to_owned));
    rows.push((
        "100,000 objects: ready ≤ 30 s, RSS ≤ 80 MiB".to_owned(),
        big.map(|point| {
            let (rss, peak, ready) = (
                find(results, US, "objects", &point, "rss_after_sync"),
                find(results, US, "objects", &point, "rss_peak"),
                find(results, US, "objects", &point, "time_to_ready"),
            );
            (
                format!(
                    "{point}: ready in {}, {} (peak {})",
                    cell(ready, 1, " s"),
                    cell(rss, 1, " MiB"),
                    cell(peak, 1, "")
                ),
                ready.is_some_and(|t| t <= 30.0) && rss.is_some_and(|m| m <= 80.0),
            )
        })
        .ok_or_else(unmeasured),
    ));
    let mut out = String::from(
        "At the issue's point, 20,000 Secrets x 10 KiB + 5,000 ConfigMaps + 1,000 Deployments, \
         unless the row says otherwise; read from this run's results by the bench.\n\n\
         | target | this run | met |\n|---|---|---|\n",
    );
    for (target, judged) in rows {
        let (figure, met) = match judged {
            Ok((figure, true)) => (figure, "yes"),
            Ok((figure, false)) => (figure, "**no**"),
            Err(why) => (why, "-"),
        };
        out += &format!("| {target} | {figure} | {met} |\n");
    }
    out
}

fn markdown(results: &Value) -> String {
    let names = names(results);
    let mut out = String::new();
    out += "### Fan-out: one ConfigMap used by N Deployments, changed once\n\n| Deployments |";
    for n in &names {
        out += &format!(" {n}: all patched | {n}: CPU |");
    }
    out += "\n|---|";
    out += &"---|".repeat(names.len() * 2);
    out += "\n";
    for p in points(results, "fanout") {
        out += &format!("| {} |", p.trim_end_matches(" Deployments"));
        for n in &names {
            out += &format!(
                " {} | {} |",
                cell(find(results, n, "fanout", &p, "fanout_time"), 2, " s"),
                cell(find(results, n, "fanout", &p, "fanout_cpu"), 2, " s"),
            );
        }
        out += "\n";
    }
    out += "\n![fan-out time vs workloads](bench/fanout.png)\n\n";
    out += "### Single change: latency and API requests\n\n";
    for p in points(results, "latency") {
        out += &format!(
            "{p}; API requests of the controller's service account by verb, per 100 changes.\n\n"
        );
        out += "| controller | p50 | p99 | CPU per 100 changes | get | list | watch | create | update | patch | delete |\n|---|---|---|---|---|---|---|---|---|---|---|\n";
        for n in &names {
            out += &format!(
                "| {n} | {} | {} | {} |",
                cell(find(results, n, "latency", &p, "latency_p50"), 0, " ms"),
                cell(find(results, n, "latency", &p, "latency_p99"), 0, " ms"),
                cell(
                    find(results, n, "latency", &p, "cpu_per_100_changes"),
                    2,
                    " s"
                ),
            );
            for verb in [
                "get", "list", "watch", "create", "update", "patch", "delete",
            ] {
                out += &format!(
                    " {} |",
                    cell(
                        find(
                            results,
                            n,
                            "latency",
                            &p,
                            &format!("api_{verb}_per_100_changes")
                        ),
                        0,
                        ""
                    )
                );
            }
            out += "\n";
        }
    }
    out += "\n### Memory vs Secrets and ConfigMaps\n\n";
    out += &memory_table(results, "objects");
    out += "\n";
    out += &growth_per_object(results);
    out += "\n![memory vs objects](bench/memory-vs-objects.png)\n\n";
    let dropped = results["dropped"].as_array().cloned().unwrap_or_default();
    if !dropped.is_empty() {
        out += "Dropped points (not measured, so the machine does not swap):\n\n";
        for d in dropped {
            out += &format!(
                "- {}: {}\n",
                d["point"].as_str().unwrap_or_default(),
                d["reason"].as_str().unwrap_or_default()
            );
        }
        out += "\n";
    }
    out += "### Memory vs workloads\n\n";
    out += &memory_table(results, "workloads");
    out += "\n![memory vs workloads](bench/memory-vs-workloads.png)\n\n";
    out += "### Sizing the chart (kube-reloader)\n\n";
    out += &sizing(results);
    out += "\n### Issue 14's targets, read from this run\n\n";
    out += &targets(results);
    out
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, input] = args.as_slice()
        && flag == "--markdown"
    {
        return match std::fs::read_to_string(input)
            .map_err(err)
            .and_then(|t| serde_json::from_str::<Value>(&t).map_err(err))
        {
            Ok(results) => {
                print!("{}", markdown(&results));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cannot read {input}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let options = match parse() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let out = options.out.clone();
    match run(options).await {
        Ok((results, markdown)) => {
            let written = write(&out, &results);
            match written {
                Ok(files) => {
                    for f in files {
                        eprintln!("compare-bench: wrote {}", f.display());
                    }
                    print!("{markdown}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("bench failed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write(out: &Path, results: &Value) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(out).map_err(err)?;
    let path = out.join("results.json");
    let text = serde_json::to_string_pretty(results).map_err(err)?;
    std::fs::write(&path, text + "\n").map_err(err)?;
    let mut files = vec![path];
    files.extend(kube_reloader_testenv::plot::draw(results, out)?);
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(controller: &str, scenario: &str, point: &str, figure: &str, value: f64) -> Value {
        json!({"controller": controller, "scenario": scenario, "point": point,
            "figure": figure, "value": value})
    }

    fn object(controller: &str, secrets: u64, kib: u64, figure: &str, value: f64) -> Value {
        let configmaps = secrets / 4;
        let mut r = record(
            controller,
            "objects",
            &format!(
                "{secrets} Secrets x {kib} KiB + {configmaps} ConfigMaps x 1 KiB + 1000 Deployments"
            ),
            figure,
            value,
        );
        r["secrets"] = json!(secrets);
        r["secret_kib"] = json!(kib);
        r["configmaps"] = json!(configmaps);
        r["objects"] = json!(secrets + configmaps);
        r["workloads"] = json!(1000);
        r
    }

    fn row<'a>(table: &'a str, target: &str) -> &'a str {
        table
            .lines()
            .find(|l| l.starts_with(&format!("| {target}")))
            .unwrap_or_else(|| panic!("no row {target} in\n{table}"))
    }

    #[test]
    fn targets_are_read_from_the_records_and_judged() {
        let results = json!({
            "meta": {"peer": "peer", "controllers": [{"name": "kube-reloader"}, {"name": "peer"}]},
            "records": [
                object("kube-reloader", 0, 10, "rss_after_sync", 18.0),
                object("kube-reloader", 5000, 10, "rss_after_sync", 19.0),
                object("kube-reloader", 20_000, 10, "rss_after_sync", 20.0),
                object("kube-reloader", 20_000, 10, "rss_anon_after_sync", 11.0),
                object("kube-reloader", 20_000, 10, "rss_peak", 31.0),
                object("peer", 20_000, 10, "rss_after_sync", 150.0),
                object("peer", 20_000, 10, "rss_anon_after_sync", 110.0),
                record("kube-reloader", "fanout", "1000 Deployments", "fanout_time", 3.5),
                record("kube-reloader", "latency", "5 changes", "latency_p99", 30.0),
                record("kube-reloader", "latency", "5 changes", "api_list_per_100_changes", 0.0),
                record("kube-reloader", "latency", "5 changes", "api_get_per_100_changes", 20.0),
            ],
        });
        let table = targets(&results);
        assert!(
            row(&table, "RSS after sync ≤ 1/10 of peer's").contains("20.0 MiB vs 150.0 MiB: 1/7.5"),
            "{table}"
        );
        assert!(row(&table, "RSS after sync ≤ 1/10").ends_with("| **no** |"));
        assert!(row(&table, "RSS after sync ≤ 25 MiB").ends_with("| yes |"));
        // 31 > 1.5 × 20.
        assert!(row(&table, "peak during").ends_with("| **no** |"));
        // Three points per size: 0, 6,250 and 25,000 objects.
        assert!(row(&table, "RSS growth").ends_with("| yes |"), "{table}");
        assert!(row(&table, "fan-out to 1,000").contains("3.50 s (peer: -)"));
        assert!(row(&table, "p99").ends_with("| yes |"));
        // A GET per change is not zero.
        assert!(row(&table, "zero LIST/GET").ends_with("| **no** |"));
        assert!(row(&table, "100,000 objects").contains("not in this matrix"));
    }

    #[test]
    fn without_a_peer_the_ratio_is_not_judged() {
        let results = json!({
            "meta": {"peer": null, "controllers": [{"name": "kube-reloader"}]},
            "records": [object("kube-reloader", 20_000, 10, "rss_after_sync", 20.0)],
        });
        let table = targets(&results);
        assert!(row(&table, "RSS after sync ≤ 1/10").contains("no peer in this run"));
        assert!(row(&table, "RSS after sync ≤ 1/10").ends_with("| - |"));
        assert!(row(&table, "fan-out").contains("not in this matrix"));
    }
}
