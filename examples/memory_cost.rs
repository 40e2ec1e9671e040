//! What the controller's caches hold per object, in process: heap bytes in use (glibc's
//! `mallinfo2`) per cached Secret, per cached ConfigMap and per stored Deployment, filled the
//! way the watchers fill them. Run by `make bench` (scripts/bench.sh); printed as Markdown for
//! docs/BENCHMARKS.md, beside the whole-process figures measured on a real control plane.
//!
//! Usage: cargo run --release --example memory_cost [N]
//!
//! The objects are the compare bench's: a Secret with one key of 10 KiB, a ConfigMap with one
//! key, a Deployment with `reloader.stakater.com/auto`, one container reading a ConfigMap with
//! `envFrom`, a Secret volume, and the ledger a baseline writes.

use std::collections::HashMap;

use k8s_openapi::api::apps::v1::Deployment;
use kube_reloader::index::{SourceCache, WorkloadStore};
use kube_reloader::model::digest::{self, SourceKind};
use kube_reloader::model::keyed::DigestKeys;
use kube_reloader::model::policy::Policy;
use kube_reloader::model::source::SourceEntry;
use kube_reloader::model::workload::{LAST_APPLIED_CONFIGURATION as LAST_APPLIED, WorkloadKind};
use kube_reloader::watch::workloads::project;

/// Heap bytes in use.
fn in_use() -> usize {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallinfo2 takes the allocator's own lock and has no preconditions.
    unsafe {
        libc::mallinfo2().uordblks
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    0
}

fn entry(content: (digest::Sha1Digest, digest::KeyDigests), policy: &Policy) -> SourceEntry {
    SourceEntry {
        digest: Some(content.0),
        keys: content.1,
        keyed: Default::default(),
        flags: policy.source_flags(&Default::default()),
        created_while_running: false,
        data_changed_at: Some(1_764_000_000),
    }
}

/// The bench's Deployment; `applied` adds what `kubectl apply` (client-side, also Argo CD's
/// default) adds: its own JSON under `kubectl.kubernetes.io/last-applied-configuration`.
fn deployment(i: usize, applied: bool) -> Deployment {
    let name = format!("app-{i:05}");
    let ledger = format!(
        "{{\"configmap/cm-00000\":\"{}\",\"secret/s-{i:05}\":\"{}\"}}",
        "a".repeat(40),
        "b".repeat(40)
    );
    // Built from literal JSON of the Deployment type: cannot fail.
    let mut deployment: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "bench", "uid": format!("{:08x}-0000-4000-8000-000000000000", i),
            "resourceVersion": "12345", "creationTimestamp": "2026-12-01T00:00:00Z",
            "annotations": {"reloader.stakater.com/auto": "true", "kube-reloader.io/digests": ledger}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/app",
                    "envFrom": [{"configMapRef": {"name": "cm-00000"}}],
                    "volumeMounts": [{"name": "s", "mountPath": "/s"}]}],
                    "volumes": [{"name": "s", "secret": {"secretName": format!("s-{i:05}")}}]}}}
    }))
    .unwrap_or_default();
    if applied {
        let copy = serde_json::to_string(&deployment).unwrap_or_default();
        deployment
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(LAST_APPLIED.to_owned(), copy);
    }
    deployment
}

/// Heap bytes in use per Deployment, stored the way the workload watcher stores them.
fn per_deployment(policy: &Policy, count: usize, applied: bool) -> usize {
    let workloads = WorkloadStore::new(policy.clone());
    let before = in_use();
    let fresh = (0..count)
        .filter_map(|i| project(&deployment(i, applied)))
        .map(|view| workloads.fresh(view, Some(1)))
        .collect();
    workloads.replace(WorkloadKind::Deployment, None, fresh);
    let bytes = in_use().saturating_sub(before) / count.max(1);
    drop(workloads);
    bytes
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let policy = Policy::default();
    let value = vec![b'x'; 10 * 1024];

    let sources = SourceCache::default();
    let before = in_use();
    let fresh: HashMap<(String, String), SourceEntry> = (0..n)
        .map(|i| {
            let (sha1, keys, _) = digest::secret_forms(
                [("v", value.as_slice())],
                &format!("{i:08x}-uid"),
                &DigestKeys::default(),
            );
            (
                ("bench".to_owned(), format!("s-{i:05}")),
                entry((sha1, keys), &policy),
            )
        })
        .collect();
    sources.replace(SourceKind::Secret, None, fresh, false);
    let secrets = in_use().saturating_sub(before);

    let before = in_use();
    let fresh: HashMap<(String, String), SourceEntry> = (0..n)
        .map(|i| {
            let content = digest::configmap_content([("v", "1")], []);
            (
                ("bench".to_owned(), format!("cm-{i:05}")),
                entry(content, &policy),
            )
        })
        .collect();
    sources.replace(SourceKind::ConfigMap, None, fresh, false);
    let configmaps = in_use().saturating_sub(before);

    let deployments = n / 10;
    let per_workload = per_deployment(&policy, deployments, false);
    let per_applied = per_deployment(&policy, deployments, true);

    println!("| cached object | heap bytes each |");
    println!("|---|---|");
    println!(
        "| Secret (one 10 KiB key), of {n} | {} |",
        secrets / n.max(1)
    );
    println!(
        "| ConfigMap (one key), of {n} | {} |",
        configmaps / n.max(1)
    );
    println!(
        "| Deployment (one container, a ConfigMap and a Secret), of {deployments} | {} |",
        per_workload
    );
    println!(
        "| the same Deployment applied with kubectl (its JSON in `{LAST_APPLIED}`), of {deployments} | {per_applied} |"
    );
}
