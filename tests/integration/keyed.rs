//! Keyed digests for Secrets (issue 15, item 3): with `--secret-digest-key-secret`, a Secret's
//! marker is HMAC-SHA256(key, upstream's canonical bytes). Switching on, rotating the key and
//! switching off roll nothing by themselves; a change of the Secret rolls each workload once,
//! with the keyed marker; neither the Secret's value nor the key reaches a log or an Event.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde_json::{Value, json};

use crate::controller::{Controller, controller_rules, identity_with_rules};
use crate::fixtures::*;

const WORKLOADS: usize = 20;
const MARKER: &str = "STAKATER_CREDS_SECRET";

fn names() -> Vec<String> {
    (0..WORKLOADS).map(|i| format!("web-{i}")).collect()
}

/// Secret `creds`' entry in a Deployment's ledger.
fn recorded(d: &Deployment) -> Option<String> {
    ledger_of(d)?
        .get("secret/creds")?
        .as_str()
        .map(str::to_owned)
}

fn marker(d: &Deployment) -> Option<String> {
    env_of(d, "app")
        .into_iter()
        .find(|(n, _)| n == MARKER)
        .map(|(_, v)| v)
}

/// HMAC-SHA256 of upstream's canonical bytes of `{password: value}`, hex, computed apart.
fn hmac_marker(key: &str, value: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes());
    hex::encode(ring::hmac::sign(&key, format!("password={value}").as_bytes()).as_ref())
}

/// Waits until every Deployment's ledger entry for `creds` satisfies `check`; returns them.
async fn wait_all(api: &Api<Deployment>, what: &str, check: impl Fn(&str) -> bool) -> Vec<String> {
    let mut out = Vec::new();
    for name in names() {
        let d = wait_deployment(api, &name, what, |d| recorded(d).is_some_and(|r| check(&r))).await;
        out.extend(recorded(&d));
    }
    out
}

async fn templates(api: &Api<Deployment>) -> Vec<Value> {
    let mut out = Vec::new();
    for name in names() {
        out.push(template_of(&api.get(&name).await.unwrap()));
    }
    out
}

/// A Deployment naming Secret `creds` in `secret.reloader.stakater.com/reload`.
fn creds_reader(name: &str) -> Value {
    deployment(
        name,
        json!({"secret.reloader.stakater.com/reload": "creds"}),
        json!({"containers": [{"name": "app", "image": "registry.invalid/app"}]}),
    )
}

fn is_keyed(record: &str) -> bool {
    record.starts_with("hmac-sha256:")
}

#[tokio::test]
async fn keyed_digests_switch_on_rotate_and_off_without_extra_rollouts() {
    let (cluster, ns, client) = setup("keyed").await;
    let pid = std::process::id();
    let planted = format!("planted-{pid}-keyed-value");
    let key_one = format!("first-digest-key-{pid}-0123456789abcdef");
    let key_two = format!("second-digest-key-{pid}-0123456789abcdef");
    create::<Secret>(&client, &ns, secret("creds", json!({"password": planted}))).await;
    for name in names() {
        create::<Deployment>(&client, &ns, creds_reader(&name)).await;
    }
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let plain = ["--namespaces", ns.as_str(), "--log-level=trace"];

    // Without a key: upstream's SHA-1.
    let controller = Controller::start(&cluster, &identity, &ns, &plain).await;
    let sha1_now = sha1(&format!("password={planted}"));
    wait_all(&api, "the SHA-1 baseline", |r| r == sha1_now).await;
    let mut logs = vec![controller.stop()];
    let start = templates(&api).await;

    // Switched on with 20 workloads running: ledgers rewritten keyed, no rollout.
    create::<Secret>(&client, &ns, secret("digest-key", json!({"key": key_one}))).await;
    let key_flag = format!("--secret-digest-key-secret={ns}/digest-key");
    let keyed_args = [plain.as_slice(), &[key_flag.as_str()]].concat();
    let controller = Controller::start(&cluster, &identity, &ns, &keyed_args).await;
    let first_keyed = wait_all(&api, "keyed ledger entries", is_keyed).await;
    assert!(
        first_keyed
            .iter()
            .all(|r| r.ends_with(&hmac_marker(&key_one, &planted))),
        "{first_keyed:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        templates(&api).await,
        start,
        "switching on rolled something"
    );

    // The Secret changes: each workload rolls once, with the HMAC marker.
    let rotated_value = format!("{planted}-rotated");
    set_secret(&client, &ns, "creds", json!({"password": rotated_value})).await;
    let expected = hmac_marker(&key_one, &rotated_value);
    for name in names() {
        let d = wait_deployment(&api, &name, "the keyed reload", |d| marker(d).is_some()).await;
        assert_eq!(marker(&d).as_deref(), Some(expected.as_str()), "{name}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reloaded = templates(&api).await;
    for (before, after) in start.iter().zip(&reloaded) {
        assert_ne!(before, after, "every workload rolled");
    }

    // The key rotates (only the new key in the Secret: the old one is remembered while
    // running): ledgers move to the new key, nothing rolls.
    set_secret(&client, &ns, "digest-key", json!({"key": key_two})).await;
    let under_two = hmac_marker(&key_two, &rotated_value);
    wait_all(&api, "ledgers under the new key", |r| {
        r.ends_with(&under_two)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        templates(&api).await,
        reloaded,
        "the rotation rolled something"
    );
    let (_, metrics) = controller.get("/metrics").await.unwrap();
    logs.push(metrics);
    logs.push(controller.stop());

    // A restart with only the new key: everything is verifiable, nothing rolls.
    let controller = Controller::start(&cluster, &identity, &ns, &keyed_args).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        templates(&api).await,
        reloaded,
        "the restart rolled something"
    );
    logs.push(controller.stop());

    // Switched off, the key still readable: ledgers back to SHA-1, nothing rolls.
    let off_args = [keyed_args.as_slice(), &["--secret-digest=sha1"]].concat();
    let controller = Controller::start(&cluster, &identity, &ns, &off_args).await;
    let sha1_rotated = sha1(&format!("password={rotated_value}"));
    wait_all(&api, "SHA-1 ledger entries again", |r| r == sha1_rotated).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        templates(&api).await,
        reloaded,
        "switching off rolled something"
    );
    logs.push(controller.stop());

    let events = format!("{:?}", events(&client, &ns).await);
    for (place, text) in logs
        .iter()
        .enumerate()
        .map(|(i, log)| (format!("log {i}"), log.as_str()))
        .chain(std::iter::once(("events".to_owned(), events.as_str())))
    {
        for secret in [&planted, &key_one, &key_two] {
            assert!(
                !text.contains(secret.as_str()),
                "a secret leaked into the {place}"
            );
        }
    }
    assert!(
        logs[2].contains("digest keys loaded") && logs[2].contains("digest keys changed"),
        "the key changes were logged (by id)"
    );
}

/// A key Secret that is missing at start holds the Secret watches back (the controller is not
/// ready and says how to fix it); once it exists, everything syncs.
#[tokio::test]
async fn a_missing_key_secret_is_reported_and_waited_for() {
    let (cluster, ns, client) = setup("keyed-missing").await;
    create::<Secret>(&client, &ns, secret("creds", json!({"password": "x"}))).await;
    create::<Deployment>(&client, &ns, creds_reader("web")).await;
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let key_flag = format!("--secret-digest-key-secret={ns}/digest-key");
    let controller = Controller::spawn_with_env(
        &cluster,
        &identity,
        &ns,
        &["--namespaces", ns.as_str(), key_flag.as_str()],
        &[],
    );
    crate::support::eventually("the missing key Secret to be reported", || async {
        let log = controller.log();
        if log.contains("does not exist") && log.contains("create secret generic digest-key") {
            Ok(())
        } else {
            Err(log)
        }
    })
    .await;
    assert_ne!(controller.get("/ready").await.map(|r| r.0), Ok(200));
    create::<Secret>(
        &client,
        &ns,
        secret("digest-key", json!({"key": "k".repeat(32)})),
    )
    .await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    wait_deployment(&api, "web", "a keyed baseline", |d| {
        recorded(d).is_some_and(|r| is_keyed(&r))
    })
    .await;
    crate::support::eventually("readiness", || async {
        match controller.get("/ready").await? {
            (200, _) => Ok(()),
            (code, body) => Err(format!("{code} {body}")),
        }
    })
    .await;
    controller.stop();
}
