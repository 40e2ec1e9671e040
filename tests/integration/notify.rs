//! `--webhook-url` mode and alerts (checklist 39, 50-51) against a local HTTP receiver: the
//! payloads upstream sends, retries on failure (alerts) and none on an answer (webhook), a
//! receiver behind a private CA trusted through `SSL_CERT_FILE`, and a receiver that hangs
//! never delays a reload.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::controller::{Controller, controller_rules, identity_with_rules};
use crate::fixtures::*;
use crate::support::eventually;
use kube_reloader_testenv::pki::Pki;

/// One received request: path, content type, body.
pub type Received = (String, String, String);

/// A local HTTP receiver that records what it is sent.
#[derive(Clone, Default)]
pub struct Receiver {
    pub received: Arc<Mutex<Vec<Received>>>,
    /// Answer 500 to this many requests first.
    failures: Arc<Mutex<u32>>,
    /// Never answer (until the client gives up).
    hang: bool,
}

async fn receive(
    State(receiver): State<Receiver>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    if receiver.hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    receiver.received.lock().unwrap().push((
        uri.path().to_owned(),
        content_type,
        String::from_utf8_lossy(&body).into_owned(),
    ));
    let mut failures = receiver.failures.lock().unwrap();
    if *failures > 0 {
        *failures -= 1;
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

fn app(receiver: Receiver) -> Router {
    Router::new()
        .route("/{*path}", post(receive))
        .with_state(receiver)
}

/// Starts a receiver on 127.0.0.1; returns its base URL.
pub async fn serve(receiver: Receiver) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app(receiver)).await });
    format!("http://{addr}")
}

/// TLS on top of a TCP listener; a failed handshake (a client that does not trust us) is
/// skipped, never served.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Starts an HTTPS receiver on 127.0.0.1 whose certificate `pki`'s CA signed; returns its
/// base URL.
pub async fn serve_tls(receiver: Receiver, pki: &Pki) -> String {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let cert = CertificateDer::from_pem_slice(pki.serving_cert_pem.as_bytes()).unwrap();
    let key = PrivateKeyDer::from_pem_slice(pki.serving_key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener = TlsListener {
        tcp,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    };
    tokio::spawn(async move { axum::serve(listener, app(receiver)).await });
    format!("https://{addr}")
}

/// Waits until `sample` on `controller`'s /metrics reads `value`.
pub async fn metric_reaches(controller: &Controller, sample: &str, value: f64) {
    eventually(sample, || async {
        let got = controller.metric(sample).await;
        if got == value {
            Ok(())
        } else {
            Err(format!("{got}"))
        }
    })
    .await;
}

pub async fn received(receiver: &Receiver, what: &str, count: usize) -> Vec<Received> {
    eventually(what, || async {
        let got = receiver.received.lock().unwrap().clone();
        if got.len() >= count {
            Ok(got)
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await
}

/// Checklist 39: with `--webhook-url`, a data change POSTs upstream's body and no workload
/// is written; metadata-only changes post nothing. As upstream, any answer (here a 500) is
/// delivered: nothing is sent again.
#[tokio::test]
async fn webhook_mode_posts_changes_and_reloads_nothing() {
    let (cluster, ns, client) = setup("webhook").await;
    let receiver = Receiver {
        failures: Arc::new(Mutex::new(1)),
        ..Receiver::default()
    };
    let base = serve(receiver.clone()).await;
    create::<ConfigMap>(&client, &ns, configmap("cfg", json!({"v": "1"}))).await;
    let before = named_deployment(&client, &ns, "web", "cfg").await;
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let url = format!("{base}/hook");
    let controller = Controller::start(
        &cluster,
        &identity,
        &ns,
        &["--namespaces", &ns, "--webhook-url", &url],
    )
    .await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    configmaps
        .patch(
            "cfg",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
        )
        .await
        .unwrap();
    set_configmap(&client, &ns, "cfg", json!({"v": "2"})).await;
    let got = received(&receiver, "the webhook POST", 1).await;
    assert_eq!(
        got[0],
        (
            "/hook".to_owned(),
            "application/json".to_owned(),
            r#"{"webhook":"update successful"}"#.to_owned()
        )
    );
    eventually("the delivery metric", || async {
        let delivered = controller
            .metric("kube_reloader_notifications_total{kind=\"webhook\",result=\"success\"}")
            .await;
        if delivered == 1.0 {
            Ok(())
        } else {
            Err(format!("{delivered}"))
        }
    })
    .await;
    // The label change and the update are both processed; only the update's POST counted it.
    metric_reaches(
        &controller,
        "reloader_events_processed_total{event_type=\"update\",resource_type=\"configmaps\",result=\"success\"}",
        2.0,
    )
    .await;
    assert_eq!(
        receiver.received.lock().unwrap().len(),
        1,
        "the label change posted nothing, and the 500 was not retried"
    );
    assert!(
        controller
            .metric("reloader_skipped_total{reason=\"no_data_change\"}")
            .await
            >= 1.0
    );
    let after: Deployment = Api::namespaced(client.clone(), &ns)
        .get("web")
        .await
        .unwrap();
    assert_eq!(ledger_of(&after), None, "not even a baseline");
    assert_eq!(template_of(&after), template_of(&before));
    controller.stop();
}

/// Checklist 50-51: after a reload, one alert per reloaded workload in the sink's format,
/// retried when the receiver fails, with `ALERT_ADDITIONAL_INFO` prefixed; a planted Secret
/// value never reaches an alert. A receiver that never answers does not delay reloads.
#[tokio::test]
async fn alerts_after_reloads_with_retries_and_a_hanging_receiver() {
    let (cluster, ns, client) = setup("alerts").await;
    let slack = Receiver {
        failures: Arc::new(Mutex::new(1)),
        ..Receiver::default()
    };
    let slack_url = format!("{}/services/T0/B0/x", serve(slack.clone()).await);
    let planted = "planted-alert-value-4f1d";
    create::<Secret>(
        &client,
        &ns,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "stringData": {"password": "one"}}),
    )
    .await;
    create::<Deployment>(
        &client,
        &ns,
        deployment(
            "api",
            json!({"secret.reloader.stakater.com/reload": "db"}),
            json!({"containers": [{"name": "app", "image": "registry.invalid/app"}]}),
        ),
    )
    .await;
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let controller = Controller::start_with_env(
        &cluster,
        &identity,
        &ns,
        &["--namespaces", &ns],
        &[
            ("ALERT_ON_RELOAD", "true"),
            ("ALERT_SINK", "slack"),
            ("ALERT_WEBHOOK_URL", &slack_url),
            ("ALERT_ADDITIONAL_INFO", "prod cluster"),
        ],
    )
    .await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    wait_deployment(&deployments, "api", "baseline", |d| ledger_of(d).is_some()).await;
    Api::<Secret>::namespaced(client.clone(), &ns)
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"password": planted}})),
        )
        .await
        .unwrap();
    let got = received(&slack, "the alert and its retry", 2).await;
    assert_eq!(got[0], got[1], "the retry sends the same alert");
    let body: serde_json::Value = serde_json::from_str(&got[0].2).unwrap();
    assert_eq!(got[0].1, "application/json");
    assert_eq!(
        body,
        json!({"attachments": [{"color": "good", "author_name": "Reloader", "text": format!(
            "prod cluster : Reloader detected changes in *db* of type *SECRET* in namespace *{ns}*. \
             Hence reloaded *api* of type *Deployment* in namespace *{ns}*")}]})
    );
    assert!(!got.iter().any(|r| r.2.contains(planted)));
    let log = controller.stop();
    assert!(!log.contains(planted));
    assert!(
        !log.contains("/services/T0/B0/x"),
        "the alert URL (a token) is never logged"
    );

    // A raw sink that never answers: reloads go on regardless.
    let hanging = Receiver {
        hang: true,
        ..Receiver::default()
    };
    let hanging_url = format!("{}/raw", serve(hanging).await);
    create::<ConfigMap>(&client, &ns, configmap("cfg", json!({"v": "1"}))).await;
    for name in ["one", "two"] {
        named_deployment(&client, &ns, name, "cfg").await;
    }
    let controller = Controller::start_with_env(
        &cluster,
        &identity,
        &format!("{ns}-hanging"),
        &["--namespaces", &ns],
        &[
            ("ALERT_ON_RELOAD", "true"),
            ("ALERT_WEBHOOK_URL", &hanging_url),
        ],
    )
    .await;
    for name in ["one", "two"] {
        wait_deployment(&deployments, name, "baseline", |d| ledger_of(d).is_some()).await;
    }
    set_configmap(&client, &ns, "cfg", json!({"v": "2"})).await;
    for name in ["one", "two"] {
        wait_env(
            &deployments,
            name,
            "app",
            "reloads while the alert receiver hangs",
        )
        .await;
    }
    let failed = controller
        .metric("kube_reloader_notifications_total{kind=\"alert\",result=\"error\"}")
        .await;
    assert_eq!(
        failed, 0.0,
        "both alerts still in flight or queued, none lost yet"
    );
    controller.stop();
}

/// Item 3 of issue 11: a webhook receiver whose certificate a private CA signed is reached
/// when `SSL_CERT_FILE` points at that CA, and refused (never POSTed to, counted as dropped)
/// when it does not: unset, or a path that does not exist (a warning naming the path).
#[tokio::test]
async fn webhook_trusts_a_private_ca_from_ssl_cert_file() {
    let (cluster, ns, client) = setup("webhook-tls").await;
    let pki = Pki::generate().unwrap();
    let dir = cluster.dir.join(format!("tls-{ns}"));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("private-ca.pem");
    std::fs::write(&ca_file, &pki.ca_cert_pem).unwrap();
    let missing = dir.join("no-such-bundle.pem");
    let receiver = Receiver::default();
    let url = format!("{}/hook", serve_tls(receiver.clone(), &pki).await);
    create::<ConfigMap>(&client, &ns, configmap("cfg", json!({"v": "0"}))).await;
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let args = ["--namespaces", &ns, "--webhook-url", &url];
    let ca = ca_file.to_str().unwrap();
    let missing_path = missing.to_str().unwrap();

    let trusted = Controller::start_with_env(
        &cluster,
        &identity,
        &format!("{ns}-trusted"),
        &args,
        &[("SSL_CERT_FILE", ca)],
    )
    .await;
    set_configmap(&client, &ns, "cfg", json!({"v": "1"})).await;
    let got = received(&receiver, "the POST over HTTPS", 1).await;
    assert_eq!(got[0].2, r#"{"webhook":"update successful"}"#);
    metric_reaches(
        &trusted,
        "kube_reloader_notifications_total{kind=\"webhook\",result=\"success\"}",
        1.0,
    )
    .await;
    trusted.stop();

    for (label, env) in [
        ("untrusted", Vec::new()),
        ("missing", vec![("SSL_CERT_FILE", missing_path)]),
    ] {
        let controller =
            Controller::start_with_env(&cluster, &identity, &format!("{ns}-{label}"), &args, &env)
                .await;
        let before = receiver.received.lock().unwrap().len();
        set_configmap(&client, &ns, "cfg", json!({"v": label})).await;
        metric_reaches(
            &controller,
            "reloader_events_processed_total{event_type=\"update\",resource_type=\"configmaps\",result=\"dropped\"}",
            1.0,
        )
        .await;
        assert_eq!(
            controller
                .metric("kube_reloader_notifications_total{kind=\"webhook\",result=\"error\"}")
                .await,
            1.0,
            "{label}"
        );
        assert_eq!(
            receiver.received.lock().unwrap().len(),
            before,
            "{label}: the receiver is never reached"
        );
        let log = controller.stop();
        assert!(
            log.contains("UnknownIssuer") || log.contains("unknown issuer"),
            "{label}: refused for its issuer:\n{log}"
        );
        if label == "missing" {
            assert!(
                log.contains(missing_path) && log.contains("cannot use a CA certificate location"),
                "the bad path is named:\n{log}"
            );
        }
    }
}
