//! Starting, upgrading and stopping one local control plane.

use std::fmt::Write as _;
use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Node, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

use crate::bins::Bins;
use crate::error::Error;
use crate::pki::Pki;
use crate::process::{Process, free_port};

/// How much of the Kubernetes control plane runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    /// etcd + kube-apiserver: full API semantics, RBAC, CRDs, watches; no pods.
    A,
    /// + kube-controller-manager: ReplicaSets, pods (Pending), garbage collection, namespace
    ///   deletion, default service accounts.
    B,
    /// + kube-scheduler + kwok with one fake Node: pods turn Running/Ready, rollouts complete.
    C,
}

/// Name of the fake node kwok manages in tier C.
pub const NODE_NAME: &str = "kwok-node-0";

/// Env var overriding how long each component may take to become ready (seconds).
pub const READY_TIMEOUT_ENV: &str = "KUBE_RELOADER_TEST_READY_TIMEOUT_SECS";
/// Env var that keeps the run directory (logs, certificates) after the control plane stops.
pub const KEEP_DIR_ENV: &str = "KUBE_RELOADER_TEST_KEEP_DIR";

const ADMIN_USER: &str = "testenv-admin";
const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(120);
const LOG_TAIL_LINES: usize = 40;
const KCM_CONTROLLERS: &str = "deployment-controller,replicaset-controller,statefulset-controller,\
daemonset-controller,job-controller,cronjob-controller,garbage-collector-controller,\
namespace-controller,serviceaccount-controller,clusterrole-aggregation-controller,\
node-lifecycle-controller,pod-garbage-collector-controller,root-ca-certificate-publisher-controller";
const KWOK_STAGES: &str = include_str!("../kwok/stages.yaml");
const AUDIT_POLICY: &str = include_str!("../audit-policy.yaml");

/// What a test needs to talk to a running control plane. Cheap to clone; holds no client,
/// because a kube client is bound to the Tokio runtime that created it.
#[derive(Debug, Clone)]
pub struct ClusterInfo {
    /// The run directory: certificates, logs, kubeconfigs, etcd data.
    pub dir: PathBuf,
    /// `https://127.0.0.1:<port>` of kube-apiserver.
    pub server: String,
    /// `http://127.0.0.1:<port>` of etcd.
    pub etcd_url: String,
    /// Admin kubeconfig (system:masters).
    pub kubeconfig: PathBuf,
    /// Where the control-plane binaries (and kubectl) live.
    pub bin_dir: PathBuf,
    /// kube-apiserver's audit log (JSON lines, Metadata level for every request).
    pub audit_log: PathBuf,
    /// etcd's version, e.g. "3.6.16".
    pub etcd_version: String,
    /// kube-apiserver's version, e.g. "v1.36.3".
    pub apiserver_version: String,
    ca_cert_pem: String,
    admin_token: String,
}

/// A restricted identity: a service account and a token for it.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The Kubernetes user name, `system:serviceaccount:<ns>:<name>`.
    pub user: String,
    /// Namespace of the service account.
    pub namespace: String,
    /// Name of the service account.
    pub name: String,
    /// A kubeconfig that authenticates as this identity.
    pub kubeconfig: PathBuf,
    token: String,
}

/// Extra flags for the components, for benchmarks that need higher limits than the defaults
/// (e.g. `--max-requests-inflight` for bulk creates, `--quota-backend-bytes` for large data).
#[derive(Debug, Clone, Default)]
pub struct Tuning {
    /// Appended to kube-apiserver's flags (a later flag wins over the default).
    pub apiserver_args: Vec<String>,
    /// Appended to etcd's flags.
    pub etcd_args: Vec<String>,
}

/// A running control plane; stops every process and removes its directory when dropped.
#[derive(Debug)]
pub struct ControlPlane {
    info: ClusterInfo,
    tier: Tier,
    bins: Bins,
    pki_dir: PathBuf,
    /// In start order; stopped in reverse.
    processes: Vec<Process>,
    ready_timeout: Duration,
    keep_dir: bool,
    /// etcd's peer port, kept across restarts so the member's recorded URL stays valid.
    etcd_peer_port: Option<u16>,
    tuning: Tuning,
}

fn say(message: impl AsRef<str>) {
    // Written to the real stderr so it shows even when the test harness captures output.
    let _ = writeln!(std::io::stderr(), "testenv: {}", message.as_ref());
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver, then whatever else `tier` needs, and waits until each
    /// is ready. On failure, the error holds every component's log.
    pub async fn start(tier: Tier) -> Result<Self, Error> {
        Self::start_tuned(tier, Tuning::default()).await
    }

    /// [`ControlPlane::start`] with extra component flags (kept across component restarts).
    pub async fn start_tuned(tier: Tier, tuning: Tuning) -> Result<Self, Error> {
        let bins = Bins::locate()?;
        let dir = make_run_dir()?;
        let ready_timeout = std::env::var(READY_TIMEOUT_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_READY_TIMEOUT);
        let keep_dir = std::env::var_os(KEEP_DIR_ENV).is_some_and(|v| !v.is_empty() && v != "0");
        let pki = Pki::generate()?;
        let pki_dir = dir.join("pki");
        write_files(
            &pki_dir,
            &[
                ("ca.crt", &pki.ca_cert_pem),
                ("apiserver.crt", &pki.serving_cert_pem),
                ("apiserver.key", &pki.serving_key_pem),
                ("sa.key", &pki.sa_signing_key_pem),
                ("sa.pub", &pki.sa_public_key_pem),
            ],
        )?;
        let admin_token = random_token()?;
        write_files(
            &pki_dir,
            &[(
                "tokens.csv",
                &format!("{admin_token},{ADMIN_USER},{ADMIN_USER},\"system:masters\"\n"),
            )],
        )?;
        write_files(
            &dir,
            &[
                ("audit-policy.yaml", AUDIT_POLICY),
                ("kwok-stages.yaml", KWOK_STAGES),
            ],
        )?;

        let etcd_version = version_of(&bins.path("etcd")?, "--version", "etcd Version:")?;
        let info = ClusterInfo {
            dir: dir.clone(),
            server: String::new(),
            etcd_url: String::new(),
            kubeconfig: dir.join("admin.kubeconfig"),
            bin_dir: bins.dir().to_owned(),
            audit_log: dir.join("logs").join("audit.log"),
            etcd_version,
            apiserver_version: String::new(),
            ca_cert_pem: pki.ca_cert_pem.clone(),
            admin_token,
        };
        let mut plane = Self {
            info,
            tier: Tier::A,
            bins,
            pki_dir,
            processes: Vec::new(),
            ready_timeout,
            keep_dir,
            etcd_peer_port: None,
            tuning,
        };
        std::fs::create_dir_all(dir.join("logs")).map_err(Error::io("cannot create logs dir"))?;
        say(format!(
            "starting a tier {tier:?} control plane in {}",
            dir.display()
        ));
        let started = Instant::now();
        plane.start_etcd().await?;
        plane.start_apiserver().await?;
        say(format!(
            "etcd {} at {} and kube-apiserver {} at {} ready after {:.1}s",
            plane.info.etcd_version,
            plane.info.etcd_url,
            plane.info.apiserver_version,
            plane.info.server,
            started.elapsed().as_secs_f64()
        ));
        plane.upgrade(tier).await?;
        Ok(plane)
    }

    /// Adds the components of a higher tier to a running control plane.
    pub async fn upgrade(&mut self, tier: Tier) -> Result<(), Error> {
        if self.tier < Tier::B && tier >= Tier::B {
            let started = Instant::now();
            self.start_controller_manager().await?;
            self.tier = Tier::B;
            say(format!(
                "kube-controller-manager ready after {:.1}s",
                started.elapsed().as_secs_f64()
            ));
        }
        if self.tier < Tier::C && tier >= Tier::C {
            let started = Instant::now();
            self.start_scheduler_and_kwok().await?;
            self.tier = Tier::C;
            say(format!(
                "kube-scheduler and kwok ready, node {NODE_NAME} Ready after {:.1}s",
                started.elapsed().as_secs_f64()
            ));
        }
        Ok(())
    }

    /// The tier currently running.
    pub fn tier(&self) -> Tier {
        self.tier
    }

    /// Connection details for tests.
    pub fn info(&self) -> &ClusterInfo {
        &self.info
    }

    /// Stops every component (reverse start order) and removes the run directory unless
    /// `KUBE_RELOADER_TEST_KEEP_DIR` is set.
    pub fn stop(&mut self) {
        // SIGTERM everyone first so they shut down in parallel, then reap each.
        while let Some(mut process) = self.processes.pop() {
            process.stop(Duration::from_secs(5));
        }
        if self.keep_dir {
            say(format!("kept {}", self.info.dir.display()));
        } else {
            let _ = std::fs::remove_dir_all(&self.info.dir);
        }
    }

    /// Kills (SIGKILL) the component called `name` and starts it again with the same flags,
    /// waiting until it is ready. For failure tests: "kube-apiserver", "etcd", ...
    pub async fn restart_component(&mut self, name: &str) -> Result<(), Error> {
        let Some(index) = self.processes.iter().position(|p| p.name() == name) else {
            return Err(Error::Startup(format!(
                "no component called {name} is running"
            )));
        };
        let mut old = self.processes.remove(index);
        old.kill();
        drop(old);
        match name {
            "etcd" => self.start_etcd_on(url_port(&self.info.etcd_url)?).await,
            "kube-apiserver" => self.start_apiserver_on(url_port(&self.info.server)?).await,
            "kube-controller-manager" => self.start_controller_manager().await,
            other => Err(Error::Startup(format!(
                "restarting {other} is not supported"
            ))),
        }
    }

    /// Compacts etcd's history up to its current revision (through etcd's JSON gateway), so
    /// watches resuming from an older resourceVersion get "410 Gone" and must relist.
    /// Returns the revision compacted to.
    pub async fn compact_etcd(&self) -> Result<i64, Error> {
        let http = crate::http();
        let post = |path: &str, body: serde_json::Value| {
            http.post(format!("{}{path}", self.info.etcd_url))
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
        };
        let fail = |e: reqwest::Error| Error::Startup(format!("etcd compaction failed: {e}"));
        // Any range read returns the current revision in its header ("AA==" is the key "\0").
        let range: serde_json::Value = post("/v3/kv/range", json!({"key": "AA=="}))
            .await
            .map_err(fail)?
            .json()
            .await
            .map_err(fail)?;
        let revision: i64 = range["header"]["revision"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .ok_or_else(|| Error::Startup(format!("no revision in etcd's answer: {range}")))?;
        let response = post(
            "/v3/kv/compaction",
            json!({"revision": revision.to_string(), "physical": true}),
        )
        .await
        .map_err(fail)?;
        if !response.status().is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(Error::Startup(format!("etcd compaction failed: {text}")));
        }
        say(format!("compacted etcd to revision {revision}"));
        Ok(revision)
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.info.dir.join("logs").join(format!("{name}.log"))
    }

    fn spawn(&mut self, name: &str, command: Command) -> Result<(), Error> {
        let log = self.log_path(name);
        let process = Process::spawn(name, command, &log)?;
        self.processes.push(process);
        Ok(())
    }

    async fn start_etcd(&mut self) -> Result<(), Error> {
        let mut attempt = 1;
        loop {
            let port = free_port()?;
            match self.start_etcd_on(port).await {
                Err(e) if attempt < 3 && is_port_clash(&e) => self.forget("etcd", &mut attempt),
                other => return other,
            }
        }
    }

    async fn start_etcd_on(&mut self, client_port: u16) -> Result<(), Error> {
        let peer_port = match self.etcd_peer_port {
            Some(port) => port,
            None => free_port()?,
        };
        self.etcd_peer_port = Some(peer_port);
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let mut command = Command::new(self.bins.path("etcd")?);
        command.args([
            "--name=testenv".to_owned(),
            format!("--data-dir={}", self.info.dir.join("etcd").display()),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=testenv={peer_url}"),
            "--unsafe-no-fsync".to_owned(),
            "--log-level=warn".to_owned(),
        ]);
        command.args(&self.tuning.etcd_args);
        self.spawn("etcd", command)?;
        self.info.etcd_url = client_url.clone();
        let health = format!("{client_url}/health");
        self.wait_ready("etcd", || {
            let health = health.clone();
            async move {
                let response = crate::http()
                    .get(&health)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let body = response.text().await.map_err(|e| e.to_string())?;
                Ok(body.contains("\"health\":\"true\""))
            }
        })
        .await
    }

    async fn start_apiserver(&mut self) -> Result<(), Error> {
        let mut attempt = 1;
        loop {
            let port = free_port()?;
            match self.start_apiserver_on(port).await {
                Err(e) if attempt < 3 && is_port_clash(&e) => {
                    self.forget("kube-apiserver", &mut attempt)
                }
                other => return other,
            }
        }
    }

    /// Drops a component that failed because its port was taken, so it can be started again.
    fn forget(&mut self, name: &str, attempt: &mut u32) {
        say(format!(
            "{name}: its port was taken, retrying (attempt {attempt})"
        ));
        self.processes.retain(|p| p.name() != name);
        *attempt += 1;
    }

    async fn start_apiserver_on(&mut self, port: u16) -> Result<(), Error> {
        let pki = &self.pki_dir;
        let server = format!("https://127.0.0.1:{port}");
        let mut command = Command::new(self.bins.path("kube-apiserver")?);
        command.args([
            format!("--etcd-servers={}", self.info.etcd_url),
            "--bind-address=127.0.0.1".to_owned(),
            format!("--secure-port={port}"),
            "--advertise-address=127.0.0.1".to_owned(),
            "--endpoint-reconciler-type=none".to_owned(),
            format!("--cert-dir={}", self.info.dir.join("apiserver").display()),
            format!("--tls-cert-file={}", pki.join("apiserver.crt").display()),
            format!(
                "--tls-private-key-file={}",
                pki.join("apiserver.key").display()
            ),
            format!("--client-ca-file={}", pki.join("ca.crt").display()),
            format!("--token-auth-file={}", pki.join("tokens.csv").display()),
            "--service-cluster-ip-range=10.0.0.0/24".to_owned(),
            format!("--service-account-issuer={server}"),
            format!(
                "--service-account-key-file={}",
                pki.join("sa.pub").display()
            ),
            format!(
                "--service-account-signing-key-file={}",
                pki.join("sa.key").display()
            ),
            "--authorization-mode=RBAC".to_owned(),
            "--disable-admission-plugins=ServiceAccount".to_owned(),
            "--allow-privileged=true".to_owned(),
            "--profiling=false".to_owned(),
            format!(
                "--audit-policy-file={}",
                self.info.dir.join("audit-policy.yaml").display()
            ),
            format!("--audit-log-path={}", self.info.audit_log.display()),
            "--audit-log-maxsize=2000".to_owned(),
            "--audit-log-maxbackup=1".to_owned(),
        ]);
        command.args(&self.tuning.apiserver_args);
        self.spawn("kube-apiserver", command)?;
        self.info.server = server;
        self.write_kubeconfig(
            &self.info.kubeconfig.clone(),
            ADMIN_USER,
            &self.info.admin_token.clone(),
        )?;
        let info = self.info.clone();
        self.wait_ready("kube-apiserver", || {
            let info = info.clone();
            async move {
                let client = info.client().await.map_err(|e| e.to_string())?;
                let request = http::Request::get("/readyz")
                    .body(Vec::new())
                    .map_err(|e| e.to_string())?;
                let text = client
                    .request_text(request)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(text.trim() == "ok")
            }
        })
        .await?;
        let client = self.info.client().await?;
        let version = client
            .apiserver_version()
            .await
            .map_err(Error::kube("cannot read the kube-apiserver version"))?;
        self.info.apiserver_version = version.git_version;
        Ok(())
    }

    async fn start_controller_manager(&mut self) -> Result<(), Error> {
        let mut command = Command::new(self.bins.path("kube-controller-manager")?);
        command.args([
            format!("--kubeconfig={}", self.info.kubeconfig.display()),
            "--leader-elect=false".to_owned(),
            "--bind-address=127.0.0.1".to_owned(),
            "--secure-port=0".to_owned(),
            format!("--controllers={KCM_CONTROLLERS}"),
            format!("--root-ca-file={}", self.pki_dir.join("ca.crt").display()),
            "--use-service-account-credentials=false".to_owned(),
            "--kube-api-qps=100".to_owned(),
            "--kube-api-burst=200".to_owned(),
            "--concurrent-deployment-syncs=10".to_owned(),
            "--concurrent-replicaset-syncs=10".to_owned(),
        ]);
        self.spawn("kube-controller-manager", command)?;
        // The serviceaccount controller creating "default" proves the controllers run.
        let info = self.info.clone();
        self.wait_ready("kube-controller-manager", || {
            let info = info.clone();
            async move {
                let client = info.client().await.map_err(|e| e.to_string())?;
                let accounts: Api<ServiceAccount> = Api::namespaced(client, "default");
                Ok(accounts
                    .get_opt("default")
                    .await
                    .map_err(|e| e.to_string())?
                    .is_some())
            }
        })
        .await
    }

    async fn start_scheduler_and_kwok(&mut self) -> Result<(), Error> {
        let kubeconfig = format!("--kubeconfig={}", self.info.kubeconfig.display());
        let mut scheduler = Command::new(self.bins.path("kube-scheduler")?);
        scheduler.args([
            kubeconfig.clone(),
            "--leader-elect=false".to_owned(),
            "--bind-address=127.0.0.1".to_owned(),
            "--secure-port=0".to_owned(),
        ]);
        self.spawn("kube-scheduler", scheduler)?;

        let mut kwok = Command::new(self.bins.path("kwok")?);
        kwok.args([
            kubeconfig,
            format!(
                "--config={}",
                self.info.dir.join("kwok-stages.yaml").display()
            ),
            "--manage-all-nodes=false".to_owned(),
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake".to_owned(),
            "--cidr=10.244.0.0/16".to_owned(),
            "--node-ip=127.0.0.1".to_owned(),
            "--node-lease-duration-seconds=40".to_owned(),
        ]);
        self.spawn("kwok", kwok)?;

        let client = self.info.client().await?;
        let nodes: Api<Node> = Api::all(client);
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": NODE_NAME,
                "annotations": {"kwok.x-k8s.io/node": "fake"},
                "labels": {
                    "type": "kwok",
                    "kubernetes.io/hostname": NODE_NAME,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                },
            },
            "spec": {"providerID": format!("kwok://{NODE_NAME}")},
        }))
        .map_err(|e| Error::Startup(format!("bad node manifest: {e}")))?;
        match nodes.create(&PostParams::default(), &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(e) => return Err(Error::kube(format!("cannot create node {NODE_NAME}"))(e)),
        }
        // Ready (kwok works) and untainted (node-lifecycle controller works): pods can land.
        let info = self.info.clone();
        self.wait_ready("kwok node", || {
            let info = info.clone();
            async move {
                let client = info.client().await.map_err(|e| e.to_string())?;
                let node = Api::<Node>::all(client)
                    .get(NODE_NAME)
                    .await
                    .map_err(|e| e.to_string())?;
                let ready = node
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                let tainted = node
                    .spec
                    .as_ref()
                    .and_then(|s| s.taints.as_ref())
                    .is_some_and(|t| !t.is_empty());
                Ok(ready && !tainted)
            }
        })
        .await
    }

    /// Polls `probe` until it says ready, a component exits, or the timeout passes.
    async fn wait_ready<F, Fut>(&mut self, what: &str, mut probe: F) -> Result<(), Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<bool, String>>,
    {
        let started = Instant::now();
        loop {
            let last = match probe().await {
                Ok(true) => return Ok(()),
                Ok(false) => "not ready yet".to_owned(),
                Err(e) => e,
            };
            if let Some(dead) = self.processes.iter_mut().find_map(|p| {
                p.exit_status()
                    .map(|status| format!("{} exited with {status}", p.name()))
            }) {
                return Err(Error::Startup(
                    self.failure_report(&format!("{what} did not become ready: {dead}")),
                ));
            }
            if started.elapsed() > self.ready_timeout {
                return Err(Error::Startup(self.failure_report(&format!(
                    "{what} was not ready after {}s (last probe: {last}); raise {READY_TIMEOUT_ENV} \
                     on a slow machine",
                    self.ready_timeout.as_secs()
                ))));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The error text for a failed start: what failed, then every component's recent log.
    fn failure_report(&self, headline: &str) -> String {
        let mut report = format!(
            "testenv: {headline}\n  run dir: {}\n",
            self.info.dir.display()
        );
        for process in &self.processes {
            let _ = write!(
                report,
                "---- last {LOG_TAIL_LINES} lines of {} ({}) ----\n{}\n",
                process.name(),
                process.log_path().display(),
                process.log_tail(LOG_TAIL_LINES)
            );
        }
        report
    }

    fn write_kubeconfig(&self, path: &Path, user: &str, token: &str) -> Result<(), Error> {
        self.info.write_kubeconfig(path, user, token)
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

impl ClusterInfo {
    /// A kubeconfig document (JSON, which every kubeconfig reader accepts) for `token`.
    fn kubeconfig_value(&self, user: &str, token: &str) -> serde_json::Value {
        use base64::Engine as _;
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_cert_pem);
        json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "testenv", "cluster": {
                "server": self.server,
                "certificate-authority-data": ca,
            }}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": user, "context": {"cluster": "testenv", "user": user}}],
            "current-context": user,
        })
    }

    /// Writes a kubeconfig for `token` to `path`.
    pub fn write_kubeconfig(&self, path: &Path, user: &str, token: &str) -> Result<(), Error> {
        let text = serde_json::to_string_pretty(&self.kubeconfig_value(user, token))
            .map_err(|e| Error::Startup(format!("cannot render kubeconfig: {e}")))?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(Error::io("cannot create kubeconfig dir"))?;
        }
        std::fs::write(path, text).map_err(Error::io(format!("cannot write {}", path.display())))
    }

    async fn client_for_token(&self, user: &str, token: &str) -> Result<kube::Client, Error> {
        let kubeconfig: Kubeconfig = serde_json::from_value(self.kubeconfig_value(user, token))
            .map_err(|e| Error::Startup(format!("cannot parse generated kubeconfig: {e}")))?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| Error::Startup(format!("cannot load generated kubeconfig: {e}")))?;
        kube::Client::try_from(config).map_err(Error::kube("cannot build a client"))
    }

    /// An admin client (group system:masters), bound to the calling Tokio runtime.
    pub async fn client(&self) -> Result<kube::Client, Error> {
        self.client_for_token(ADMIN_USER, &self.admin_token).await
    }

    /// A client that authenticates as `identity`.
    pub async fn client_as(&self, identity: &Identity) -> Result<kube::Client, Error> {
        self.client_for_token(&identity.user, &identity.token).await
    }

    /// Creates a namespace with a unique name starting with `prefix`, for one test.
    pub async fn create_namespace(&self, prefix: &str) -> Result<String, Error> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        let namespace: Namespace = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}
        }))
        .map_err(|e| Error::Startup(format!("bad namespace manifest: {e}")))?;
        let client = self.client().await?;
        Api::<Namespace>::all(client)
            .create(&PostParams::default(), &namespace)
            .await
            .map_err(Error::kube(format!("cannot create namespace {name}")))?;
        Ok(name)
    }

    /// Creates service account `namespace/name` (if missing), requests a token for it and
    /// writes a kubeconfig: the identity a controller runs as in a real cluster. It starts
    /// with no permissions beyond what RBAC grants every authenticated user.
    pub async fn service_account(&self, namespace: &str, name: &str) -> Result<Identity, Error> {
        let client = self.client().await?;
        let accounts: Api<ServiceAccount> = Api::namespaced(client, namespace);
        let account: ServiceAccount = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace}
        }))
        .map_err(|e| Error::Startup(format!("bad service account manifest: {e}")))?;
        match accounts.create(&PostParams::default(), &account).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(e) => {
                return Err(Error::kube(format!(
                    "cannot create service account {namespace}/{name}"
                ))(e));
            }
        }
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(24 * 3600),
                ..Default::default()
            }),
            ..Default::default()
        };
        let token = accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .map_err(Error::kube(format!(
                "cannot request a token for {namespace}/{name}"
            )))?
            .status
            .and_then(|s| s.token)
            .ok_or_else(|| {
                Error::Startup(format!(
                    "token request for {namespace}/{name} returned no token"
                ))
            })?;
        let user = format!("system:serviceaccount:{namespace}:{name}");
        let kubeconfig = self
            .dir
            .join("identities")
            .join(format!("{namespace}.{name}.kubeconfig"));
        self.write_kubeconfig(&kubeconfig, &user, &token)?;
        Ok(Identity {
            user,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            kubeconfig,
            token,
        })
    }

    /// Path of a control-plane binary, e.g. "kubectl".
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }
}

/// Whether a start failed because another process took the port we picked.
fn is_port_clash(error: &Error) -> bool {
    matches!(error, Error::Startup(report) if report.contains("address already in use"))
}

/// Creates `$TMPDIR/kube-reloader-testenv/<pid>-<nanos>` after removing the directories of
/// earlier runs whose process is gone (a run killed by SIGKILL cannot clean up after itself).
fn make_run_dir() -> Result<PathBuf, Error> {
    let root = std::env::temp_dir().join("kube-reloader-testenv");
    std::fs::create_dir_all(&root)
        .map_err(Error::io(format!("cannot create {}", root.display())))?;
    if let Ok(entries) = std::fs::read_dir(&root) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.split('-').next())
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = root.join(format!("{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(Error::io(format!("cannot create {}", dir.display())))?;
    Ok(dir)
}

fn write_files(dir: &Path, files: &[(&str, &str)]) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(Error::io(format!("cannot create {}", dir.display())))?;
    for (name, content) in files {
        let path = dir.join(name);
        std::fs::write(&path, content)
            .map_err(Error::io(format!("cannot write {}", path.display())))?;
    }
    Ok(())
}

/// 32 hex characters from the OS random source.
fn random_token() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    let mut file =
        std::fs::File::open("/dev/urandom").map_err(Error::io("cannot open /dev/urandom"))?;
    std::io::Read::read_exact(&mut file, &mut bytes)
        .map_err(Error::io("cannot read /dev/urandom"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Runs `binary flag` and returns what follows `prefix` on the matching output line.
fn version_of(binary: &Path, flag: &str, prefix: &str) -> Result<String, Error> {
    let output = Command::new(binary)
        .arg(flag)
        .output()
        .map_err(Error::io(format!("cannot run {} {flag}", binary.display())))?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|line| line.strip_prefix(prefix))
        .map(|v| v.trim().to_owned())
        .ok_or_else(|| {
            Error::Startup(format!(
                "{} {flag} printed no version: {text}",
                binary.display()
            ))
        })
}

fn url_port(url: &str) -> Result<u16, Error> {
    url.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .ok_or_else(|| Error::Startup(format!("no port in {url}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_port_parses() {
        assert_eq!(url_port("https://127.0.0.1:6443").unwrap(), 6443);
        assert_eq!(url_port("http://127.0.0.1:2379/").unwrap(), 2379);
        assert!(url_port("nonsense").is_err());
    }
}
