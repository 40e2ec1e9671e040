//! Running the kube-reloader binary against the shared control plane, as a service account
//! with exactly the RBAC a user would grant.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, PostParams};
use kube_reloader_testenv::process::{Process, free_port};
use kube_reloader_testenv::{ClusterInfo, Identity};
use serde_json::json;

use crate::support::try_eventually;

pub const BINARY: &str = env!("CARGO_BIN_EXE_kube-reloader");

/// The cluster-wide rules the controller needs in its default configuration.
pub fn controller_rules() -> serde_json::Value {
    json!([
        {"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["list", "watch"]},
        {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets"], "verbs": ["list", "watch", "patch"]},
        {"apiGroups": ["batch"], "resources": ["cronjobs"], "verbs": ["list", "watch", "patch"]},
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["list", "watch", "patch", "create", "delete"]},
        {"apiGroups": ["argoproj.io"], "resources": ["rollouts"], "verbs": ["list", "watch", "patch"]},
        {"apiGroups": ["apps.openshift.io"], "resources": ["deploymentconfigs"], "verbs": ["list", "watch", "patch"]},
        {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}
    ])
}

/// [`controller_rules`] plus what `--enable-ha` needs on Leases.
pub fn ha_rules() -> serde_json::Value {
    let mut rules = controller_rules();
    if let Some(list) = rules.as_array_mut() {
        list.push(
            json!({"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
            "verbs": ["get", "create", "patch", "list", "watch"]}),
        );
    }
    rules
}

/// Starts one `--enable-ha` replica (6 s Lease) per name, each as its own service account
/// `<ns>/<name>`, scoped to `ns`. Returns the replicas and their user names, by name.
pub async fn start_replicas(
    cluster: &ClusterInfo,
    ns: &str,
    names: &[&str],
) -> (BTreeMap<String, Controller>, BTreeMap<String, String>) {
    let mut replicas = BTreeMap::new();
    let mut users = BTreeMap::new();
    for name in names {
        let identity = identity_named(cluster, ns, name, ha_rules()).await;
        users.insert((*name).to_owned(), identity.user.clone());
        let controller = Controller::start_with_env(
            cluster,
            &identity,
            &format!("{ns}-{name}"),
            &[
                "--namespaces",
                ns,
                "--enable-ha",
                "--ha-lease-duration-seconds=6",
            ],
            &[("POD_NAME", name), ("POD_NAMESPACE", ns)],
        )
        .await;
        replicas.insert((*name).to_owned(), controller);
    }
    (replicas, users)
}

/// Creates service account `<ns>/kube-reloader` bound to a ClusterRole with `rules`.
pub async fn identity_with_rules(
    cluster: &ClusterInfo,
    ns: &str,
    rules: serde_json::Value,
) -> Identity {
    identity_named(cluster, ns, "kube-reloader", rules).await
}

/// Creates service account `<ns>/<account>` bound to its own ClusterRole with `rules`.
pub async fn identity_named(
    cluster: &ClusterInfo,
    ns: &str,
    account: &str,
    rules: serde_json::Value,
) -> Identity {
    let identity = cluster.service_account(ns, account).await.unwrap();
    let admin = cluster.client().await.unwrap();
    let name = if account == "kube-reloader" {
        format!("kube-reloader-{ns}")
    } else {
        format!("kube-reloader-{ns}-{account}")
    };
    let role: ClusterRole = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name}, "rules": rules
    }))
    .unwrap();
    Api::<ClusterRole>::all(admin.clone())
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": ns}]
    }))
    .unwrap();
    Api::<ClusterRoleBinding>::all(admin)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    identity
}

/// A running kube-reloader.
pub struct Controller {
    process: Process,
    base: String,
}

impl Controller {
    /// Starts the binary with `args` as `identity` and waits until `/ready` answers 200.
    pub async fn start(
        cluster: &ClusterInfo,
        identity: &Identity,
        label: &str,
        args: &[&str],
    ) -> Self {
        Self::start_with_env(cluster, identity, label, args, &[]).await
    }

    /// [`Controller::start`] with extra environment variables.
    pub async fn start_with_env(
        cluster: &ClusterInfo,
        identity: &Identity,
        label: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let controller = Self::spawn_with_env(cluster, identity, label, args, env);
        let ready = try_eventually(
            &format!("kube-reloader ({label}) to become ready"),
            || async {
                match controller.get("/ready").await? {
                    (200, _) => Ok(()),
                    (code, body) => Err(format!("{code} {body}")),
                }
            },
        )
        .await;
        // The cluster's directory goes with the run: the log is only in the message.
        if let Err(timed_out) = ready {
            panic!(
                "{timed_out}; its log:\n{}",
                controller.process.log_tail(200)
            );
        }
        controller
    }

    /// Starts the binary without waiting for readiness (for runs that may fail at startup).
    pub fn spawn_with_env(
        cluster: &ClusterInfo,
        identity: &Identity,
        label: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let port = free_port().unwrap();
        let log = cluster
            .dir
            .join("logs")
            .join(format!("kube-reloader-{label}.log"));
        let mut command = Command::new(BINARY);
        command
            .args(["--http-addr", &format!("127.0.0.1:{port}")])
            .args(args)
            .env("KUBECONFIG", &identity.kubeconfig)
            .env("RUST_LOG", "warn,kube_reloader=debug")
            .envs(env.iter().copied());
        let process = Process::spawn("kube-reloader", command, &log).unwrap();
        Self {
            process,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// GET a path on the controller's HTTP server.
    pub async fn get(&self, path: &str) -> Result<(u16, String), String> {
        let response = kube_reloader_testenv::http()
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        Ok((status, response.text().await.map_err(|e| e.to_string())?))
    }

    /// Value of one sample line of /metrics, e.g. `reloader_skipped_total{reason="no_data_change"}`.
    pub async fn metric(&self, sample: &str) -> f64 {
        let (_, body) = self.get("/metrics").await.unwrap();
        body.lines()
            .find_map(|l| {
                l.strip_prefix(sample)
                    .and_then(|rest| rest.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }

    /// SIGTERM and wait; asserts a clean exit.
    pub fn stop(mut self) -> String {
        self.process.stop(Duration::from_secs(20));
        let log = self.process.log_tail(2000);
        let status = self.process.exit_status();
        assert!(
            status.is_some_and(|s| s.success()),
            "kube-reloader exit {status:?}; log:\n{log}"
        );
        log
    }

    /// SIGKILL, like a crashed pod.
    pub fn kill(mut self) {
        self.process.kill();
    }

    /// Freezes the process (SIGSTOP).
    pub fn pause(&self) {
        self.process.pause();
    }

    /// Wakes it up (SIGCONT).
    pub fn resume(&self) {
        self.process.resume();
    }

    /// The log so far.
    pub fn log(&self) -> String {
        self.process.log_tail(2000)
    }
}

/// One request from the API server's audit log.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub verb: String,
    pub resource: String,
    pub namespace: String,
    pub name: String,
    pub uri: String,
    pub code: i64,
    /// When the API server received the request (RFC 3339, microseconds).
    pub received: String,
}

/// Every completed request `user` made, read from the API server's audit log.
pub fn requests_by(cluster: &ClusterInfo, user: &str) -> Vec<AuditEntry> {
    let text = std::fs::read_to_string(&cluster.audit_log).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|e| e["stage"] == "ResponseComplete" && e["user"]["username"] == user)
        .map(|e| AuditEntry {
            verb: e["verb"].as_str().unwrap_or_default().to_owned(),
            resource: e["objectRef"]["resource"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            namespace: e["objectRef"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            name: e["objectRef"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            uri: e["requestURI"].as_str().unwrap_or_default().to_owned(),
            code: e["responseStatus"]["code"].as_i64().unwrap_or_default(),
            received: e["requestReceivedTimestamp"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        })
        .collect()
}
