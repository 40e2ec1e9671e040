//! --enable-ha: several replicas, one writer, failover without missed or duplicated reloads.

use std::time::Instant;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use serde_json::json;

use crate::controller::{requests_by, start_replicas};
use crate::fixtures::*;
use crate::support::eventually;

/// Two `--enable-ha` replicas in a fresh namespace with ConfigMap `cfg` (v=1) and Deployment
/// `web` naming it, once the leader has recorded the baseline.
struct Pair {
    cluster: kube_reloader_testenv::ClusterInfo,
    ns: String,
    client: kube::Client,
    replicas: std::collections::BTreeMap<String, crate::controller::Controller>,
    users: std::collections::BTreeMap<String, String>,
    leader: String,
    follower: String,
    leases: Api<Lease>,
    deployments: Api<Deployment>,
}

async fn two_replicas_with_a_baseline(prefix: &str) -> Pair {
    let (cluster, ns, client) = setup(prefix).await;
    create::<ConfigMap>(&client, &ns, configmap("cfg", json!({"v": "1"}))).await;
    named_deployment(&client, &ns, "web", "cfg").await;
    let (replicas, users) = start_replicas(&cluster, &ns, &["replica-a", "replica-b"]).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let leader = eventually("a leader", || holder(&leases)).await;
    let follower = if leader == "replica-a" {
        "replica-b"
    } else {
        "replica-a"
    }
    .to_owned();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    wait_deployment(&deployments, "web", "the leader's baseline", |d| {
        ledger_of(d).is_some()
    })
    .await;
    Pair {
        cluster,
        ns,
        client,
        replicas,
        users,
        leader,
        follower,
        leases,
        deployments,
    }
}

/// Waits until `web` carries the digest of ConfigMap data `data` (e.g. "v=2").
async fn wait_digest(deployments: &Api<Deployment>, what: &str, data: &str) {
    wait_deployment(deployments, "web", what, |d| {
        env_of(d, "app")
            .first()
            .is_some_and(|(_, v)| *v == sha1(data))
    })
    .await;
}

async fn holder(leases: &Api<Lease>) -> Result<String, String> {
    let lease = leases
        .get("stakater-reloader-lock")
        .await
        .map_err(|e| e.to_string())?;
    lease
        .spec
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
        .ok_or_else(|| "no holder".to_owned())
}

/// Two replicas: both Ready, only the Lease holder writes; after the leader is killed with
/// SIGKILL the other takes over and applies the change made meanwhile, once; no second ever
/// carries writes from both identities (the API server's audit log).
#[tokio::test]
async fn only_the_leader_writes_and_a_follower_takes_over() {
    // Both are Ready (followers keep warm caches); one holds the Lease.
    let Pair {
        cluster,
        ns,
        client,
        mut replicas,
        users,
        leader,
        follower,
        leases,
        deployments,
    } = two_replicas_with_a_baseline("ha").await;
    let follower = follower.as_str();
    set_configmap(&client, &ns, "cfg", json!({"v": "2"})).await;
    wait_digest(&deployments, "the leader's reload", "v=2").await;
    let writes = |user: &str| {
        requests_by(&cluster, user)
            .into_iter()
            .filter(|r| r.verb == "patch" && r.resource == "deployments")
            .collect::<Vec<_>>()
    };
    assert!(
        writes(&users[follower]).is_empty(),
        "the follower never writes"
    );

    // Kill the leader; change the source right away; the follower must apply it.
    replicas.remove(leader.as_str()).unwrap().kill();
    let killed = Instant::now();
    set_configmap(&client, &ns, "cfg", json!({"v": "3"})).await;
    wait_digest(&deployments, "the new leader's reload", "v=3").await;
    let failover = killed.elapsed();
    assert_eq!(holder(&leases).await.unwrap(), follower);
    let survivor = replicas.remove(follower).unwrap();
    assert!(
        survivor.log().contains("became the leader"),
        "{}",
        survivor.log()
    );
    survivor.stop();
    eprintln!(
        "ha: failover (leader SIGKILLed -> change applied by the new leader) took {failover:?}"
    );

    // Exactly: baseline + reload by the first leader, one reload by the second.
    let first = writes(&users[leader.as_str()]);
    let second = writes(&users[follower]);
    assert_eq!((first.len(), second.len()), (2, 1), "{first:?} {second:?}");
    let seconds = |w: &Vec<crate::controller::AuditEntry>| {
        w.iter()
            .map(|e| e.received[..19].to_owned())
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert!(
        seconds(&first).is_disjoint(&seconds(&second)),
        "two writers in the same second"
    );
}

/// A leader that stalls (SIGSTOP, like a frozen node) loses the Lease; when it wakes up it must
/// not write on a stale belief that it still leads: only the new leader writes.
#[tokio::test]
async fn a_stalled_leader_does_not_write_after_waking_up() {
    let Pair {
        cluster,
        ns,
        client,
        mut replicas,
        users,
        leader,
        follower,
        leases,
        deployments,
    } = two_replicas_with_a_baseline("ha-stall").await;
    let follower = follower.as_str();

    replicas[leader.as_str()].pause();
    eventually("the follower to take the Lease", || async {
        match holder(&leases).await? {
            h if h == follower => Ok(()),
            h => Err(h),
        }
    })
    .await;
    // The stalled leader wakes up while a change is pending for both replicas.
    set_configmap(&client, &ns, "cfg", json!({"v": "2"})).await;
    replicas[leader.as_str()].resume();
    wait_digest(&deployments, "the reload", "v=2").await;
    set_configmap(&client, &ns, "cfg", json!({"v": "3"})).await;
    wait_digest(&deployments, "the second reload", "v=3").await;
    for (_, controller) in std::mem::take(&mut replicas) {
        controller.stop();
    }
    let writes = |user: &str| {
        requests_by(&cluster, user)
            .into_iter()
            .filter(|r| r.verb == "patch" && r.resource == "deployments")
            .count()
    };
    assert_eq!(
        writes(&users[leader.as_str()]),
        1,
        "the stalled leader only wrote its baseline"
    );
    assert_eq!(
        writes(&users[follower]),
        2,
        "the new leader wrote both reloads"
    );
}
