//! The cost of the fan-out stage of one source event, in process: which workloads must be
//! planned again after a ConfigMap changed, with N workloads in other namespaces. Run by
//! `make bench` (scripts/bench.sh); printed as Markdown for docs/BENCHMARKS.md.
//!
//! Usage: cargo run --release --example fanout_cost [N ...]
//!
//! "index" is `kube_reloader::index::affected` over the workload store's reverse index.
//! "flat scan" is the previous engine's algorithm (before the pipeline rework): walk every
//! stored workload, keep those of the event's namespace, evaluate the policy and the pod-spec
//! references of each. Both answer the same question on the same data; the example checks that
//! they agree.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use kube_reloader::index::{self, SourceCache, WorkloadStore};
use kube_reloader::model::digest::{Sha1Digest, SourceKind};
use kube_reloader::model::policy::{Policy, SourceRef, WorkloadAnnotations};
use kube_reloader::model::refs;
use kube_reloader::model::source::SourceEntry;
use kube_reloader::model::workload::{WorkloadKey, WorkloadKind, WorkloadView};

fn workload(namespace: &str, name: &str, configmap: &str) -> WorkloadView {
    WorkloadView {
        key: WorkloadKey {
            kind: WorkloadKind::Deployment,
            namespace: namespace.into(),
            name: name.into(),
        },
        uid: format!("uid-{name}"),
        annotations: [("reloader.stakater.com/auto".to_owned(), "true".to_owned())].into(),
        pod_spec: serde_json::from_value(serde_json::json!({"containers": [
            {"name": "app", "image": "registry.invalid/app",
             "envFrom": [{"configMapRef": {"name": configmap}}]}]}))
        .unwrap_or_default(),
        ..WorkloadView::default()
    }
}

/// The previous engine's fan-out: every workload is visited for every event.
fn flat_scan(
    all: &HashMap<WorkloadKey, Arc<WorkloadView>>,
    policy: &Policy,
    source: SourceRef<'_>,
    namespace: &str,
) -> Vec<WorkloadKey> {
    let mut keys = Vec::new();
    for (key, view) in all {
        if key.namespace != namespace {
            continue;
        }
        let workload = WorkloadAnnotations {
            kind: key.kind,
            metadata: &view.annotations,
            template: &view.template_annotations,
        };
        let lists = policy.named_lists(workload);
        let tracked = policy.evaluate(source, workload, &lists).is_ok_and(|m| {
            refs::container_for(
                &view.pod_spec,
                source.kind,
                source.name,
                m.needs_reference(),
            )
            .is_some()
        });
        if tracked {
            keys.push(key.clone());
        }
    }
    keys
}

fn nanos_per_call(iterations: u32, mut f: impl FnMut() -> usize) -> f64 {
    let started = Instant::now();
    let mut found = 0;
    for _ in 0..iterations {
        found += black_box(f());
    }
    black_box(found);
    started.elapsed().as_nanos() as f64 / f64::from(iterations)
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![0, 1_000, 10_000, 100_000]
    } else {
        sizes
    };
    let policy = Policy::default();
    println!("| workloads in other namespaces | index (this build) | flat scan (before) |");
    println!("| --- | --- | --- |");
    for unrelated in sizes {
        let store = WorkloadStore::new(policy.clone());
        let mut flat = HashMap::new();
        let mut add = |view: WorkloadView| {
            flat.insert(view.key.clone(), Arc::new(view.clone()));
            store.upsert(view, Some(1));
        };
        add(workload("target", "web", "cfg"));
        for i in 0..unrelated {
            add(workload(
                &format!("other-{}", i % 10),
                &format!("app-{i}"),
                "shared",
            ));
        }
        let sources = SourceCache::default();
        let entry = SourceEntry {
            digest: Sha1Digest::parse("da39a3ee5e6b4b0d3255bfef95601890afd80709"),
            keys: Default::default(),
            keyed: Default::default(),
            flags: Default::default(),
            created_while_running: false,
            data_changed_at: None,
        };
        sources.upsert(SourceKind::ConfigMap, "target", "cfg", entry.clone());
        let source = SourceRef {
            kind: SourceKind::ConfigMap,
            name: "cfg",
            flags: entry.flags,
        };
        let (indexed, _) = index::affected(
            &store,
            &sources,
            &policy,
            "target",
            SourceKind::ConfigMap,
            "cfg",
        );
        let scanned = flat_scan(&flat, &policy, source, "target");
        assert_eq!(indexed, scanned, "both find the same workloads");
        assert_eq!(indexed.len(), 1);
        let iterations = (2_000_000 / (unrelated + 100)).clamp(20, 200_000) as u32;
        let index_ns = nanos_per_call(iterations * 10, || {
            index::affected(
                &store,
                &sources,
                &policy,
                "target",
                SourceKind::ConfigMap,
                "cfg",
            )
            .0
            .len()
        });
        let flat_ns = nanos_per_call(iterations, || {
            flat_scan(&flat, &policy, source, "target").len()
        });
        let show = |ns: f64| {
            if ns >= 1_000_000.0 {
                format!("{:.2} ms", ns / 1_000_000.0)
            } else {
                format!("{:.1} µs", ns / 1_000.0)
            }
        };
        println!("| {unrelated} | {} | {} |", show(index_ns), show(flat_ns));
    }
}
