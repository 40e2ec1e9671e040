//! Durability under faults (issue: no missed and no spurious reloads across restarts, failover
//! and API trouble). Each scenario drives a fleet of 50 Deployments, each naming its own
//! ConfigMap, through a stream of 200 ConfigMap changes with a fault in the middle, then asserts:
//!
//! 1. none missed: every Deployment's env var holds the digest of its ConfigMap's final data;
//! 2. none spurious: the 10 Deployments whose ConfigMaps never change are written once (the
//!    baseline) and never rolled;
//! 3. bounded: no Deployment is written more often than its ConfigMap changed, plus its baseline
//!    (counted from the API server's audit log, over every identity).
//!
//! Scenarios that restart kube-apiserver or etcd run on a private control plane.

use std::collections::BTreeMap;
use std::time::Instant;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, ListParams};
use kube_reloader_testenv::{ClusterInfo, ControlPlane, Identity, Tier};
use serde_json::json;

use crate::controller::{Controller, ha_rules, identity_named, requests_by, start_replicas};
use crate::fixtures::*;
use crate::support::{cluster, eventually};

const WORKLOADS: usize = 50;
const CHANGING: usize = 40;
const CHANGES: usize = 200;

struct Fleet {
    tier: Tier,
    ns: String,
    client: Client,
    /// Changes made to cm-i.
    changes: Vec<usize>,
    /// Last value written to cm-i.
    last: Vec<usize>,
}

impl Fleet {
    async fn create(cluster: &ClusterInfo, tier: Tier, prefix: &str) -> Self {
        let ns = cluster.create_namespace(prefix).await.unwrap();
        let client = cluster.client().await.unwrap();
        for i in 0..WORKLOADS {
            create::<ConfigMap>(
                &client,
                &ns,
                configmap(&format!("cm-{i}"), json!({"v": "initial"})),
            )
            .await;
            named_deployment(&client, &ns, &format!("web-{i}"), &format!("cm-{i}")).await;
        }
        Self {
            tier,
            ns,
            client,
            changes: vec![0; WORKLOADS],
            last: vec![usize::MAX; WORKLOADS],
        }
    }

    /// Changes `range` of the stream: change n goes to cm-(n*7 mod 40), a spread over the
    /// changing ConfigMaps with repeats.
    async fn stream(&mut self, range: std::ops::Range<usize>) {
        for n in range {
            let i = (n * 7) % CHANGING;
            set_configmap(
                &self.client,
                &self.ns,
                &format!("cm-{i}"),
                json!({"v": n.to_string()}),
            )
            .await;
            self.changes[i] += 1;
            self.last[i] = n;
        }
    }

    /// What web-i's env var must hold now (None: never changed, so no env var).
    fn expected(&self, i: usize) -> Option<String> {
        (self.last[i] != usize::MAX).then(|| sha1(&format!("v={}", self.last[i])))
    }

    /// Waits until every Deployment carries its ledger and the expected env var.
    async fn converged(&self) {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.ns);
        eventually("every Deployment to match its ConfigMap", || async {
            let list = api
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let by_name: BTreeMap<String, Deployment> = list
                .items
                .into_iter()
                .map(|d| (d.metadata.name.clone().unwrap_or_default(), d))
                .collect();
            let wrong: Vec<String> = (0..WORKLOADS)
                .filter(|i| {
                    let Some(d) = by_name.get(&format!("web-{i}")) else {
                        return true;
                    };
                    let env = env_of(d, "app").first().map(|(_, v)| v.clone());
                    ledger_of(d).is_none() || env != self.expected(*i)
                })
                .map(|i| format!("web-{i}"))
                .collect();
            if wrong.is_empty() {
                Ok(())
            } else {
                Err(format!("{} not yet: {wrong:?}", wrong.len()))
            }
        })
        .await;
    }

    /// Invariants 2 and 3. A Deployment's generation moves exactly when its spec or
    /// annotations change, so `generation - 1` counts our effective writes (baseline and
    /// reloads); a retried PATCH that changed nothing (say, the first attempt landed just before
    /// kube-apiserver was killed) is not a rollout and is not counted. The audit log's request
    /// count over `users` is printed for the record.
    async fn assert_bounded(&self, cluster: &ClusterInfo, users: &[&str]) {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.ns);
        let list = api.list(&ListParams::default()).await.unwrap();
        let mut effective = 0;
        for i in 0..WORKLOADS {
            let name = format!("web-{i}");
            let d = list
                .items
                .iter()
                .find(|d| d.metadata.name.as_deref() == Some(&name))
                .unwrap();
            let writes = usize::try_from(d.metadata.generation.unwrap() - 1).unwrap();
            effective += writes;
            if i >= CHANGING {
                assert_eq!(
                    writes, 1,
                    "{name} never changed: only its baseline may be written"
                );
                assert!(env_of(d, "app").is_empty(), "{name} was never rolled");
            } else {
                assert!(
                    (1..=self.changes[i] + 1).contains(&writes),
                    "{name}: {writes} effective writes for {} changes plus a baseline",
                    self.changes[i]
                );
            }
        }
        // With a controller manager running, "never rolled" is also visible as exactly one
        // ReplicaSet revision per untouched Deployment.
        if self.tier >= Tier::B {
            let sets = Api::<ReplicaSet>::namespaced(self.client.clone(), &self.ns)
                .list(&ListParams::default())
                .await
                .unwrap();
            for i in CHANGING..WORKLOADS {
                let owner = format!("web-{i}");
                let revisions = sets
                    .items
                    .iter()
                    .filter(|rs| {
                        rs.metadata
                            .owner_references
                            .iter()
                            .flatten()
                            .any(|o| o.name == owner)
                    })
                    .count();
                assert_eq!(revisions, 1, "{owner} has exactly one ReplicaSet revision");
            }
        }
        let requests = users
            .iter()
            .flat_map(|user| requests_by(cluster, user))
            .filter(|r| r.verb == "patch" && r.resource == "deployments" && r.namespace == self.ns)
            .count();
        let changes: usize = self.changes.iter().sum();
        eprintln!(
            "durability: {changes} changes; {effective} effective writes ({requests} PATCH requests) \
             over {WORKLOADS} workloads; at most {} allowed",
            changes + WORKLOADS
        );
    }

    async fn baselines(&self) {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.ns);
        eventually("every baseline", || async {
            let list = api
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let missing = list.items.iter().filter(|d| ledger_of(d).is_none()).count();
            if missing == 0 {
                Ok(())
            } else {
                Err(format!("{missing} without ledger"))
            }
        })
        .await;
    }
}

async fn controller_identity(cluster: &ClusterInfo, ns: &str, name: &str) -> Identity {
    identity_named(cluster, ns, name, ha_rules()).await
}

/// Scenarios 1, 5, 6: SIGKILL mid-stream, half the changes made while no controller runs, then a
/// restart catches up exactly the changed ones; a further restart without changes writes nothing.
#[tokio::test]
async fn kill_during_a_stream_then_restart() {
    let cluster = cluster(Tier::C).await;
    let mut fleet = Fleet::create(&cluster, Tier::C, "kill9").await;
    let identity = controller_identity(&cluster, &fleet.ns, "kube-reloader").await;
    let ns = fleet.ns.clone();
    let args = ["--namespaces", ns.as_str()];
    let first = Controller::start(&cluster, &identity, &format!("{}-1", fleet.ns), &args).await;
    fleet.baselines().await;
    fleet.stream(0..CHANGES / 2).await;
    first.kill();
    fleet.stream(CHANGES / 2..CHANGES).await;
    let second = Controller::start(&cluster, &identity, &format!("{}-2", fleet.ns), &args).await;
    fleet.converged().await;
    second.stop();
    fleet.assert_bounded(&cluster, &[&identity.user]).await;
    let before = requests_by(&cluster, &identity.user)
        .iter()
        .filter(|r| r.verb == "patch")
        .count();
    let third = Controller::start(&cluster, &identity, &format!("{}-3", fleet.ns), &args).await;
    // Its queue has been worked through once a newly created Deployment is recorded.
    named_deployment(&fleet.client, &fleet.ns, "sentinel", "cm-0").await;
    let api: Api<Deployment> = Api::namespaced(fleet.client.clone(), &fleet.ns);
    wait_deployment(&api, "sentinel", "the sentinel's baseline", |d| {
        ledger_of(d).is_some()
    })
    .await;
    third.stop();
    let after = requests_by(&cluster, &identity.user)
        .iter()
        .filter(|r| r.verb == "patch")
        .count();
    assert_eq!(
        after,
        before + 1,
        "a restart without changes writes nothing but the sentinel"
    );
}

/// Scenario 2: three replicas with --enable-ha; the leader is SIGKILLed mid-stream; a follower
/// takes over; invariants hold over all identities and no second has writes from two of them.
#[tokio::test]
async fn three_replicas_leader_killed_mid_stream() {
    let cluster = cluster(Tier::C).await;
    let mut fleet = Fleet::create(&cluster, Tier::C, "ha3").await;
    let ns = fleet.ns.clone();
    let (mut replicas, users) = start_replicas(&cluster, &ns, &["r-0", "r-1", "r-2"]).await;
    fleet.baselines().await;
    fleet.stream(0..CHANGES / 2).await;
    let leases: Api<Lease> = Api::namespaced(fleet.client.clone(), &ns);
    let leader = leases
        .get("stakater-reloader-lock")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity
        .unwrap();
    replicas.remove(&leader).unwrap().kill();
    let killed = Instant::now();
    fleet.stream(CHANGES / 2..CHANGES).await;
    fleet.converged().await;
    eprintln!(
        "durability: leader {leader} killed; converged {:?} later",
        killed.elapsed()
    );
    for (_, replica) in std::mem::take(&mut replicas) {
        replica.stop();
    }
    let all: Vec<&str> = users.values().map(String::as_str).collect();
    fleet.assert_bounded(&cluster, &all).await;
    let mut seconds: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for user in &all {
        for r in requests_by(&cluster, user) {
            if r.verb == "patch" && r.resource == "deployments" {
                seconds
                    .entry(r.received[..19].to_owned())
                    .or_default()
                    .insert((*user).to_owned());
            }
        }
    }
    let shared: Vec<_> = seconds.iter().filter(|(_, who)| who.len() > 1).collect();
    assert!(
        shared.is_empty(),
        "two writers in the same second: {shared:?}"
    );
}

/// Scenarios 3 and 4 on a private control plane: kube-apiserver restarted mid-stream, etcd
/// restarted mid-stream, and etcd compacted with an apiserver restart so every watch resumes
/// from a compacted revision ("410 Gone") and must relist.
#[tokio::test]
async fn apiserver_and_etcd_restarts_and_watch_expiry_mid_stream() {
    let mut plane = ControlPlane::start(Tier::A)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let info = plane.info().clone();
    let mut fleet = Fleet::create(&info, Tier::A, "restarts").await;
    let identity = controller_identity(&info, &fleet.ns, "kube-reloader").await;
    let controller =
        Controller::start(&info, &identity, &fleet.ns, &["--namespaces", &fleet.ns]).await;
    fleet.baselines().await;
    fleet.stream(0..50).await;
    plane.restart_component("kube-apiserver").await.unwrap();
    fleet.client = info.client().await.unwrap();
    fleet.stream(50..100).await;
    plane.restart_component("etcd").await.unwrap();
    fleet.client = info.client().await.unwrap();
    // The apiserver reconnects to etcd by itself; wait until it serves again.
    eventually("the API to answer after the etcd restart", || async {
        Api::<ConfigMap>::namespaced(fleet.client.clone(), &fleet.ns)
            .get("cm-0")
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    })
    .await;
    fleet.stream(100..150).await;
    plane.compact_etcd().await.unwrap();
    plane.restart_component("kube-apiserver").await.unwrap();
    fleet.client = info.client().await.unwrap();
    fleet.stream(150..CHANGES).await;
    fleet.converged().await;
    let log = controller.stop();
    fleet.assert_bounded(&info, &[&identity.user]).await;
    assert!(
        log.contains("watch error"),
        "the watches really broke: {log}"
    );
    drop(plane);
}
