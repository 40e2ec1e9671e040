//! Secrets Store CSI (checklist 40-42): a SecretProviderClassPodStatus reporting new object
//! versions reloads the workloads that mount the class or name it; the other pods' statuses
//! reporting the same rotation roll nothing again; ignore on the class opts out.

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use kube_reloader::model::digest;
use serde_json::{Value, json};

use crate::controller::{Controller, controller_rules, identity_with_rules};
use crate::crds::{self, SPC, SPC_POD_STATUS};
use crate::fixtures::*;

fn pod_status(pod: &str, class: &str, version: &str) -> Value {
    json!({"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClassPodStatus",
        "metadata": {"name": format!("{pod}-{class}")},
        "status": {"secretProviderClassName": class, "podName": pod, "mounted": true,
                   "objects": [{"id": "secret/db-password", "version": version}]}})
}

fn mounting(class: &str) -> Value {
    json!({"containers": [{"name": "app", "image": "registry.invalid/app",
            "volumeMounts": [{"name": "secrets", "mountPath": "/mnt/secrets"}]}],
           "volumes": [{"name": "secrets", "csi": {"driver": "secrets-store.csi.k8s.io", "readOnly": true,
            "volumeAttributes": {"secretProviderClass": class}}}]})
}

fn generation(d: &Deployment) -> i64 {
    d.metadata.generation.unwrap_or_default()
}

#[tokio::test]
async fn spc_rotation_reloads_each_workload_once() {
    let (cluster, ns, client) = setup("csi").await;
    crds::install(&client, &SPC).await;
    crds::install(&client, &SPC_POD_STATUS).await;
    for (name, annotations) in [
        ("vault-db", json!({})),
        ("quiet", json!({"reloader.stakater.com/ignore": "true"})),
    ] {
        crds::create(
            &client,
            &ns,
            &SPC,
            json!({"apiVersion": "secrets-store.csi.x-k8s.io/v1",
            "kind": "SecretProviderClass", "metadata": {"name": name, "annotations": annotations},
            "spec": {"provider": "vault"}}),
        )
        .await;
    }
    let auto = json!({"reloader.stakater.com/auto": "true"});
    create::<Deployment>(
        &client,
        &ns,
        deployment("mounts", auto.clone(), mounting("vault-db")),
    )
    .await;
    create::<Deployment>(
        &client,
        &ns,
        deployment(
            "names",
            json!({"secretproviderclass.reloader.stakater.com/reload": "vault-db"}),
            json!({"containers": [{"name": "app", "image": "registry.invalid/app"}]}),
        ),
    )
    .await;
    create::<Deployment>(&client, &ns, deployment("ignored", auto, mounting("quiet"))).await;
    let statuses = SPC_POD_STATUS.api(&client, &ns);
    for (pod, class) in [
        ("mounts-a", "vault-db"),
        ("mounts-b", "vault-db"),
        ("ignored-a", "quiet"),
    ] {
        crds::create(&client, &ns, &SPC_POD_STATUS, pod_status(pod, class, "1")).await;
    }
    let identity = identity_with_rules(&cluster, &ns, {
        let mut rules = controller_rules();
        rules.as_array_mut().unwrap().push(json!({"apiGroups": ["secrets-store.csi.x-k8s.io"],
            "resources": ["secretproviderclasspodstatuses", "secretproviderclasses"], "verbs": ["list", "watch"]}));
        rules
    })
    .await;
    let controller = Controller::start(
        &cluster,
        &identity,
        &ns,
        &[
            "--namespaces",
            &ns,
            "--enable-csi-integration",
            "--reload-strategy=annotations",
        ],
    )
    .await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let mut generations = Vec::new();
    for name in ["mounts", "names"] {
        generations.push(generation(
            &wait_deployment(&api, name, "baseline", |d| ledger_of(d).is_some()).await,
        ));
    }
    // Tracks nothing (its only source is ignored), so it never gets a ledger.
    generations.push(generation(&api.get("ignored").await.unwrap()));

    let rotate = |pod: &str, class: &str, version: &str| {
        let statuses = statuses.clone();
        let (name, body) = (format!("{pod}-{class}"), pod_status(pod, class, version));
        async move {
            statuses
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": body["status"]})),
                )
                .await
                .unwrap();
        }
    };
    let digest_at = |version: &str| {
        digest::secret_provider_class(
            "vault-db",
            &[("secret/db-password".to_owned(), version.to_owned())],
        )
        .to_string()
    };
    let reloaded_with = |version: String| {
        move |d: &Deployment| {
            d.spec
                .as_ref()
                .unwrap()
                .template
                .metadata
                .as_ref()
                .and_then(|m| m.annotations.as_ref())
                .and_then(|a| a.get("reloader.stakater.com/last-reloaded-from"))
                .is_some_and(|v| v.contains(&version) && v.contains("SECRETPROVIDERCLASS"))
        }
    };
    rotate("mounts-a", "vault-db", "2").await;
    for name in ["mounts", "names"] {
        let d = wait_deployment(
            &api,
            name,
            "the rotation's reload",
            reloaded_with(digest_at("2")),
        )
        .await;
        assert!(ledger_of(&d).unwrap().to_string().contains(&digest_at("2")));
    }
    // The second pod reports the same rotation: nothing to do. Then a second rotation, seen
    // first on that pod, rolls each workload exactly once more.
    rotate("mounts-b", "vault-db", "2").await;
    rotate("ignored-a", "quiet", "2").await;
    rotate("mounts-b", "vault-db", "3").await;
    for (i, name) in ["mounts", "names"].iter().enumerate() {
        let d = wait_deployment(
            &api,
            name,
            "the second rotation's reload",
            reloaded_with(digest_at("3")),
        )
        .await;
        assert_eq!(
            generation(&d),
            generations[i] + 2,
            "{name}: one rollout per rotation"
        );
    }
    let ignored = api.get("ignored").await.unwrap();
    assert_eq!(
        generation(&ignored),
        generations[2],
        "ignore on the SecretProviderClass"
    );
    controller.stop();
}

/// Webhook mode with CSI (checklists 39 and 40): as upstream's update handler, a pod status
/// whose objects changed POSTs upstream's body instead of reloading, compared with that
/// status's previous version; the same objects again (a metadata-only update) and a new
/// status (upstream ignores SPCPS adds) post nothing.
#[tokio::test]
async fn spc_pod_status_updates_post_to_the_webhook() {
    let (cluster, ns, client) = setup("csi-webhook").await;
    crds::install(&client, &SPC).await;
    crds::install(&client, &SPC_POD_STATUS).await;
    crds::create(
        &client,
        &ns,
        &SPC,
        json!({"apiVersion": "secrets-store.csi.x-k8s.io/v1",
        "kind": "SecretProviderClass", "metadata": {"name": "vault-db"},
        "spec": {"provider": "vault"}}),
    )
    .await;
    crds::create(
        &client,
        &ns,
        &SPC_POD_STATUS,
        pod_status("web-a", "vault-db", "1"),
    )
    .await;
    let receiver = crate::notify::Receiver::default();
    let url = format!("{}/hook", crate::notify::serve(receiver.clone()).await);
    let identity = identity_with_rules(&cluster, &ns, {
        let mut rules = controller_rules();
        rules.as_array_mut().unwrap().push(json!({"apiGroups": ["secrets-store.csi.x-k8s.io"],
            "resources": ["secretproviderclasspodstatuses", "secretproviderclasses"], "verbs": ["list", "watch"]}));
        rules
    })
    .await;
    let controller = Controller::start(
        &cluster,
        &identity,
        &ns,
        &[
            "--namespaces",
            &ns,
            "--enable-csi-integration",
            "--webhook-url",
            &url,
        ],
    )
    .await;
    let statuses = SPC_POD_STATUS.api(&client, &ns);
    let patch = |name: &str, body: Value| {
        let statuses = statuses.clone();
        let name = name.to_owned();
        async move {
            statuses
                .patch(&name, &PatchParams::default(), &Patch::Merge(body))
                .await
                .unwrap();
        }
    };
    patch(
        "web-a-vault-db",
        json!({"status": pod_status("web-a", "vault-db", "2")["status"]}),
    )
    .await;
    let got = crate::notify::received(&receiver, "the rotation's POST", 1).await;
    assert_eq!(
        got[0],
        (
            "/hook".to_owned(),
            "application/json".to_owned(),
            r#"{"webhook":"update successful"}"#.to_owned()
        )
    );
    // The same objects with a new label; a new pod's status; then that pod's own rotation.
    patch(
        "web-a-vault-db",
        json!({"metadata": {"labels": {"touched": "yes"}}}),
    )
    .await;
    crds::create(
        &client,
        &ns,
        &SPC_POD_STATUS,
        pod_status("web-b", "vault-db", "2"),
    )
    .await;
    patch(
        "web-b-vault-db",
        json!({"status": pod_status("web-b", "vault-db", "3")["status"]}),
    )
    .await;
    // Three updates processed (two POSTs delivered, one no_data_change) and nothing else sent.
    crate::notify::metric_reaches(
        &controller,
        "reloader_events_processed_total{event_type=\"update\",resource_type=\"secretproviderclasspodstatuses\",result=\"success\"}",
        3.0,
    )
    .await;
    assert_eq!(
        controller
            .metric("kube_reloader_notifications_total{kind=\"webhook\",result=\"success\"}")
            .await,
        2.0
    );
    assert_eq!(receiver.received.lock().unwrap().len(), 2);
    assert_eq!(
        controller
            .metric("reloader_skipped_total{reason=\"no_data_change\"}")
            .await,
        1.0
    );
    let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    assert!(
        api.list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    controller.stop();
}
