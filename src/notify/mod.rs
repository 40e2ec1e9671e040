//! Outgoing HTTP notifications: upstream's `--webhook-url` mode (a POST per qualifying change,
//! instead of reloading) and alerts after a reload (`ALERT_ON_RELOAD`, to Slack, Teams, Google
//! Chat or a raw endpoint). A slow or failing receiver never holds up a reload: messages go
//! through a bounded queue to one sender task with a timeout and a few retries, and what cannot
//! be delivered is counted and logged, never retried forever.

pub mod alert;

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::sync::mpsc;

pub use alert::{AlertSettings, Sink};

use crate::ops::metrics::{Metrics, NotificationLabels};

/// Messages waiting beyond this are dropped (and counted): a dead receiver must not grow memory.
const QUEUE_CAPACITY: usize = 1024;
/// Per-attempt timeout.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts per message (for what is retried at all, see [`retried`]).
const ATTEMPTS: u32 = 3;
/// Wait before the first retry; doubles after each.
const BACKOFF: Duration = Duration::from_secs(1);
/// Go's `http.Client` stops after this many consecutive requests (the first and 9 redirects).
const GO_MAX_REQUESTS: usize = 10;

/// Upstream's webhook body (gorequest JSON).
pub const WEBHOOK_BODY: &str = r#"{"webhook":"update successful"}"#;

/// What kind of notification a message is, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `--webhook-url` mode.
    Webhook,
    /// An alert after a reload.
    Alert,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Webhook => "webhook",
            Kind::Alert => "alert",
        }
    }
}

/// One HTTP request to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Webhook or alert.
    pub kind: Kind,
    /// Where to POST. Never logged: Slack and Teams URLs carry a token.
    pub url: String,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
    /// Which answers count as delivered.
    pub accepts: Accepts,
    /// For a webhook POST: the source event it reports.
    pub event: Option<SourceEvent>,
}

/// Which answers count as delivered (upstream differs per sink and for the webhook).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepts {
    /// Any HTTP response, whatever its status: upstream's webhook mode (gorequest) treats
    /// every response as delivered and only logs the body.
    AnyResponse,
    /// Any status below 400.
    Below400,
    /// Exactly 200.
    Only200,
}

impl Accepts {
    fn accepts(self, status: u16) -> bool {
        match self {
            Accepts::AnyResponse => true,
            Accepts::Below400 => status < 400,
            Accepts::Only200 => status == 200,
        }
    }
}

/// The source event a webhook POST stands for, so its outcome is counted in
/// `reloader_events_processed_total` as upstream counts its handler's: `success` once
/// delivered, `dropped` when it never was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceEvent {
    /// add, update or delete.
    pub event_type: &'static str,
    /// configmaps, secrets or secretproviderclasspodstatuses.
    pub resource_type: &'static str,
}

/// Queues notifications for the sender task.
#[derive(Debug, Clone)]
pub struct Notifier {
    tx: mpsc::Sender<Request>,
    metrics: Arc<Metrics>,
}

impl Notifier {
    /// Starts the sender task. `proxy` is `ALERT_WEBHOOK_PROXY` (for alerts only, as upstream).
    /// The trust store is read once, here (see [`trust_roots`]).
    pub fn start(
        proxy: Option<&str>,
        metrics: Arc<Metrics>,
        supervisor: &crate::ops::supervisor::Supervisor,
    ) -> Result<Self, crate::Error> {
        let clients = Clients::new(&tls_config(trust_roots())?, proxy)?;
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        supervisor.spawn(
            "send notifications",
            send_all(rx, clients, metrics.clone(), BACKOFF),
        );
        Ok(Self { tx, metrics })
    }

    /// Queues a request; when the queue is full the request is dropped and counted.
    pub fn send(&self, request: Request) {
        let (kind, event) = (request.kind, request.event);
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(request) {
            record(&self.metrics, kind, event, false, "dropped");
            tracing::warn!(
                kind = kind.as_str(),
                "notification queue full (receiver too slow or down); dropping one message"
            );
        }
    }
}

/// The certificate authorities outbound HTTPS (webhook and alerts) trusts, so a receiver
/// behind a private CA works as it does with upstream's Go client.
///
/// rustls-native-certs reads `SSL_CERT_FILE` and `SSL_CERT_DIR` itself (the variables OpenSSL
/// and Go honour; they are not flags, so they do not go through `config::Cli`); when neither
/// is set it reads the system store found by openssl-probe (e.g. the distroless image's
/// `/etc/ssl/certs/ca-certificates.crt`, or a CA bundle mounted there). What it finds is added
/// to the built-in Mozilla roots (webpki-roots), which are always trusted: a private CA given in
/// `SSL_CERT_FILE` must not cut off public receivers (Slack, Teams), just as Go still reads the
/// system certificate directories when only `SSL_CERT_FILE` is set, and a scratch image
/// without a CA bundle still reaches them.
/// Problems are logged with the path, never the file's content, and never stop the process.
pub fn trust_roots() -> rustls::RootCertStore {
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::warn!(
            problem = %describe_cert_error(error),
            "cannot use a CA certificate location for webhook and alert HTTPS (SSL_CERT_FILE, \
             SSL_CERT_DIR or the system trust store); it is skipped. Fix: point the variable at a \
             readable PEM file or directory"
        );
    }
    roots_from(native.certs)
}

/// The built-in roots plus the usable ones of `certs`.
fn roots_from(certs: Vec<CertificateDer<'static>>) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let (added, ignored) = roots.add_parsable_certificates(certs);
    if ignored > 0 {
        tracing::warn!(
            ignored,
            "some CA certificates for webhook and alert HTTPS are not valid X.509 and were skipped"
        );
    }
    tracing::debug!(
        certificates = added,
        "webhook and alert HTTPS trusts the built-in Mozilla roots and the CA certificates of \
         SSL_CERT_FILE, SSL_CERT_DIR or the system trust store"
    );
    roots
}

/// What went wrong with one trust-store location: its path and the I/O error, or the kind of
/// PEM damage. Never the content (a PEM error's own text can quote a line of the file).
fn describe_cert_error(error: &rustls_native_certs::Error) -> String {
    use rustls::pki_types::pem;
    use rustls_native_certs::ErrorKind;
    match &error.kind {
        ErrorKind::Io { inner, path } => {
            format!("{}: {} ({inner})", error.context, path.display())
        }
        ErrorKind::Pem(pem::Error::MissingSectionEnd { .. }) => {
            "a certificate file holds a PEM section without its END line".to_owned()
        }
        ErrorKind::Pem(pem::Error::IllegalSectionStart { .. }) => {
            "a certificate file holds a malformed PEM BEGIN line".to_owned()
        }
        ErrorKind::Pem(pem::Error::Base64Decode(_)) => {
            "a certificate file holds a PEM section that is not valid base64".to_owned()
        }
        ErrorKind::Pem(_) => "a certificate file cannot be read as PEM".to_owned(),
        ErrorKind::Os(e) => format!("{}: {e}", error.context),
        _ => error.context.to_owned(),
    }
}

/// rustls with ring (as kube uses) and `roots`.
fn tls_config(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, crate::Error> {
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| crate::Error::Notifier(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// One HTTP client per kind: their redirect and proxy rules differ upstream.
#[derive(Debug, Clone)]
struct Clients {
    /// Webhook mode: redirects followed as Go's net/http does, no proxy.
    webhook: reqwest::Client,
    /// Alerts: redirects refused (upstream's alert client), `ALERT_WEBHOOK_PROXY` if set.
    alert: reqwest::Client,
}

impl Clients {
    fn new(tls: &rustls::ClientConfig, proxy: Option<&str>) -> Result<Self, crate::Error> {
        Ok(Self {
            webhook: client(tls, webhook_redirects(), None)?,
            alert: client(tls, reqwest::redirect::Policy::none(), proxy)?,
        })
    }

    fn get(&self, kind: Kind) -> &reqwest::Client {
        match kind {
            Kind::Webhook => &self.webhook,
            Kind::Alert => &self.alert,
        }
    }
}

/// Go's default client policy, which upstream's webhook (gorequest) uses: stop after 10
/// consecutive requests, i.e. follow at most 9 redirects (reqwest's limit counts redirects).
/// reqwest, like Go, turns a POST into a GET without body on 301/302/303 and keeps the method
/// and body on 307/308.
fn webhook_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::limited(GO_MAX_REQUESTS - 1)
}

fn client(
    tls: &rustls::ClientConfig,
    redirects: reqwest::redirect::Policy,
    proxy: Option<&str>,
) -> Result<reqwest::Client, crate::Error> {
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls.clone())
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
        .redirect(redirects)
        .no_proxy();
    if let Some(proxy) = proxy {
        let proxy = reqwest::Proxy::all(proxy)
            .map_err(|e| crate::Error::Notifier(format!("invalid ALERT_WEBHOOK_PROXY: {e}")))?;
        builder = builder.proxy(proxy);
    }
    builder
        .build()
        .map_err(|e| crate::Error::Notifier(e.to_string()))
}

/// Counts one final outcome: per kind in `kube_reloader_notifications_total`, and for a
/// webhook POST its source event in `reloader_events_processed_total` (`success` when
/// delivered, `dropped` otherwise, as upstream's queue counts an event it gives up on).
fn record(
    metrics: &Metrics,
    kind: Kind,
    event: Option<SourceEvent>,
    delivered: bool,
    result: &'static str,
) {
    metrics
        .notifications
        .get_or_create(&NotificationLabels {
            kind: kind.as_str(),
            result,
        })
        .inc();
    if let Some(event) = event {
        metrics.event_processed(
            event.event_type,
            event.resource_type,
            if delivered { "success" } else { "dropped" },
        );
    }
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Delivery {
    /// The receiver answered with a status that counts as delivered.
    Delivered { status: u16, attempts: u32 },
    /// Given up: the last error (without the URL) and how many attempts were made.
    Failed { error: String, attempts: u32 },
}

async fn send_all(
    mut rx: mpsc::Receiver<Request>,
    clients: Clients,
    metrics: Arc<Metrics>,
    backoff: Duration,
) {
    while let Some(request) = rx.recv().await {
        match deliver(clients.get(request.kind), &request, backoff).await {
            Delivery::Delivered { status, attempts } => {
                record(&metrics, request.kind, request.event, true, "success");
                tracing::debug!(
                    kind = request.kind.as_str(),
                    status,
                    attempts,
                    "notification delivered"
                );
            }
            Delivery::Failed { error, attempts } => {
                record(&metrics, request.kind, request.event, false, "error");
                tracing::error!(
                    kind = request.kind.as_str(),
                    attempts,
                    error = %error,
                    "could not deliver a notification; check the receiver and the URL configured for it"
                );
            }
        }
    }
}

/// Sends one request, retrying (up to [`ATTEMPTS`], backoff doubling from `backoff`) only what
/// may be retried for its kind (see [`retried`]).
async fn deliver(client: &reqwest::Client, request: &Request, backoff: Duration) -> Delivery {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let (error, retry) = match client
            .post(&request.url)
            .header(reqwest::header::CONTENT_TYPE, request.content_type)
            .body(request.body.clone())
            .send()
            .await
        {
            Ok(response) => {
                let status = response.status().as_u16();
                if request.accepts.accepts(status) {
                    if request.kind == Kind::Webhook {
                        // Upstream logs the webhook's answer; the start of its first chunk is
                        // enough (and bounds what a receiver can make us read).
                        let mut response = response;
                        let chunk = response.chunk().await.ok().flatten().unwrap_or_default();
                        let excerpt = String::from_utf8_lossy(&chunk[..chunk.len().min(256)]);
                        tracing::debug!(status, body = %excerpt, "webhook answered");
                    }
                    return Delivery::Delivered { status, attempts };
                }
                (format!("HTTP status {status}"), request.kind == Kind::Alert)
            }
            // Without the URL: it may carry a token.
            Err(e) => (describe(&e), retried(request.kind, &e)),
        };
        if !retry || attempts >= ATTEMPTS {
            return Delivery::Failed { error, attempts };
        }
        tokio::time::sleep(backoff * (1 << (attempts - 1))).await;
    }
}

/// Whether a failed request is sent again. Webhook: only when it cannot have reached the
/// receiver (no connection: refused, DNS, TLS handshake, connect timeout), since upstream
/// counts any answer as delivered and waits for it without a timeout, so a retry after a
/// response timeout or a broken connection could POST a duplicate. Alerts keep retrying every
/// failure (their receivers' status rules are upstream's, see [`Accepts`]).
fn retried(kind: Kind, error: &reqwest::Error) -> bool {
    match kind {
        Kind::Webhook => error.is_connect(),
        Kind::Alert => true,
    }
}

fn describe(error: &reqwest::Error) -> String {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else if error.is_redirect() {
        "redirect refused or too many redirects"
    } else {
        "request failed"
    };
    // reqwest's Display includes the URL; keep only the cause chain below it.
    let mut cause = String::new();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        cause = inner.to_string();
        source = inner.source();
    }
    if cause.is_empty() {
        what.to_owned()
    } else {
        format!("{what}: {cause}")
    }
}

/// The webhook-mode request for one qualifying change (`event`).
pub fn webhook(url: &str, event: SourceEvent) -> Request {
    Request {
        kind: Kind::Webhook,
        url: url.to_owned(),
        content_type: "application/json",
        body: WEBHOOK_BODY.to_owned(),
        accepts: Accepts::AnyResponse,
        event: Some(event),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{Method, StatusCode, Uri, header};
    use axum::response::{IntoResponse, Response};
    use rustls::pki_types::pem::PemObject;
    use std::sync::Mutex;

    /// (method, path, body) of every request a test receiver got.
    type Log = Arc<Mutex<Vec<(String, String, String)>>>;

    /// Answers by path: `/status/<code>`, `/redirect/<code>` (to `/dst`), `/loop/<n>` (a
    /// redirect to `/loop/<n+1>` forever), anything else 200.
    async fn answer(State(log): State<Log>, method: Method, uri: Uri, body: Bytes) -> Response {
        let path = uri.path().to_owned();
        log.lock().unwrap().push((
            method.to_string(),
            path.clone(),
            String::from_utf8_lossy(&body).into_owned(),
        ));
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match parts.as_slice() {
            ["status", code] => StatusCode::from_u16(code.parse().unwrap())
                .unwrap()
                .into_response(),
            ["redirect", code] => (
                StatusCode::from_u16(code.parse().unwrap()).unwrap(),
                [(header::LOCATION, "/dst")],
            )
                .into_response(),
            ["loop", n] => (
                StatusCode::FOUND,
                [(
                    header::LOCATION,
                    format!("/loop/{}", n.parse::<u32>().unwrap() + 1),
                )],
            )
                .into_response(),
            _ => StatusCode::OK.into_response(),
        }
    }

    async fn receiver() -> (String, Log) {
        let log = Log::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(answer).with_state(log.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), log)
    }

    fn clients() -> Clients {
        Clients::new(&tls_config(roots_from(Vec::new())).unwrap(), None).unwrap()
    }

    fn alert(url: String, accepts: Accepts) -> Request {
        Request {
            kind: Kind::Alert,
            url,
            content_type: "text/plain",
            body: "reloaded".into(),
            accepts,
            event: None,
        }
    }

    fn event() -> SourceEvent {
        SourceEvent {
            event_type: "update",
            resource_type: "configmaps",
        }
    }

    async fn send(clients: &Clients, request: &Request) -> Delivery {
        deliver(clients.get(request.kind), request, Duration::ZERO).await
    }

    #[tokio::test]
    async fn any_webhook_answer_is_delivered_once() {
        let (base, log) = receiver().await;
        let clients = clients();
        for code in [500, 404, 400] {
            let request = webhook(&format!("{base}/status/{code}"), event());
            assert_eq!(
                send(&clients, &request).await,
                Delivery::Delivered {
                    status: code,
                    attempts: 1
                }
            );
        }
        assert_eq!(log.lock().unwrap().len(), 3, "no retry, no duplicate POST");
    }

    #[tokio::test]
    async fn alerts_keep_their_status_rules_and_retries() {
        let (base, log) = receiver().await;
        let clients = clients();
        let failed = send(
            &clients,
            &alert(format!("{base}/status/500"), Accepts::Below400),
        )
        .await;
        assert!(
            matches!(
                failed,
                Delivery::Failed {
                    attempts: ATTEMPTS,
                    ..
                }
            ),
            "{failed:?}"
        );
        let teams = send(
            &clients,
            &alert(format!("{base}/status/202"), Accepts::Only200),
        )
        .await;
        assert!(matches!(teams, Delivery::Failed { .. }), "{teams:?}");
        assert_eq!(log.lock().unwrap().len(), 2 * ATTEMPTS as usize);
        // Alerts refuse redirects (upstream's alert client): the 307 itself is the answer.
        log.lock().unwrap().clear();
        let redirected = send(
            &clients,
            &alert(format!("{base}/redirect/307"), Accepts::Below400),
        )
        .await;
        assert_eq!(
            redirected,
            Delivery::Delivered {
                status: 307,
                attempts: 1
            }
        );
        assert_eq!(log.lock().unwrap().len(), 1, "/dst never requested");
    }

    #[tokio::test]
    async fn webhook_follows_redirects_as_go_does() {
        let (base, log) = receiver().await;
        let clients = clients();
        for (code, method, body) in [
            (301, "GET", ""),
            (302, "GET", ""),
            (303, "GET", ""),
            (307, "POST", WEBHOOK_BODY),
            (308, "POST", WEBHOOK_BODY),
        ] {
            log.lock().unwrap().clear();
            let request = webhook(&format!("{base}/redirect/{code}"), event());
            assert_eq!(
                send(&clients, &request).await,
                Delivery::Delivered {
                    status: 200,
                    attempts: 1
                }
            );
            let got = log.lock().unwrap().clone();
            assert_eq!(got.len(), 2, "{code}: {got:?}");
            assert_eq!(
                got[1],
                (method.to_owned(), "/dst".to_owned(), body.to_owned()),
                "after a {code}"
            );
        }
    }

    #[tokio::test]
    async fn webhook_stops_after_ten_requests_and_does_not_retry_a_loop() {
        let (base, log) = receiver().await;
        let request = webhook(&format!("{base}/loop/0"), event());
        let outcome = send(&clients(), &request).await;
        assert!(
            matches!(outcome, Delivery::Failed { attempts: 1, .. }),
            "{outcome:?}"
        );
        assert_eq!(log.lock().unwrap().len(), GO_MAX_REQUESTS);
    }

    #[tokio::test]
    async fn webhook_retries_only_when_nothing_was_sent() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let request = webhook(&format!("http://{addr}/hook"), event());
        let outcome = send(&clients(), &request).await;
        assert!(
            matches!(&outcome, Delivery::Failed { attempts: ATTEMPTS, error } if error.starts_with("cannot connect")),
            "{outcome:?}"
        );

        // A receiver that takes the request and closes without answering may have acted on
        // it: not sent again.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(Mutex::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                *counter.lock().unwrap() += 1;
                let mut buf = [0u8; 1024];
                let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await;
                drop(socket);
            }
        });
        let request = webhook(&format!("http://{addr}/hook"), event());
        let outcome = send(&clients(), &request).await;
        assert!(
            matches!(outcome, Delivery::Failed { attempts: 1, .. }),
            "{outcome:?}"
        );
        assert_eq!(*accepted.lock().unwrap(), 1);
    }

    #[tokio::test]
    async fn outcomes_count_the_webhook_event() {
        let (base, _log) = receiver().await;
        let metrics = Arc::new(Metrics::new(false));
        let (tx, rx) = mpsc::channel(4);
        let sender = tokio::spawn(send_all(rx, clients(), metrics.clone(), Duration::ZERO));
        tx.send(webhook(&format!("{base}/status/500"), event()))
            .await
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead = listener.local_addr().unwrap();
        drop(listener);
        tx.send(webhook(
            &format!("http://{dead}/hook"),
            SourceEvent {
                event_type: "delete",
                resource_type: "secrets",
            },
        ))
        .await
        .unwrap();
        drop(tx);
        sender.await.unwrap();
        let text = metrics.encode().unwrap();
        for expected in [
            "reloader_events_processed_total{event_type=\"update\",resource_type=\"configmaps\",result=\"success\"} 1",
            "reloader_events_processed_total{event_type=\"delete\",resource_type=\"secrets\",result=\"dropped\"} 1",
            "kube_reloader_notifications_total{kind=\"webhook\",result=\"success\"} 1",
            "kube_reloader_notifications_total{kind=\"webhook\",result=\"error\"} 1",
        ] {
            assert!(text.contains(expected), "missing {expected}:\n{text}");
        }
    }

    #[test]
    fn a_private_ca_is_trusted_beside_the_built_in_roots() {
        let builtin = webpki_roots::TLS_SERVER_ROOTS.len();
        assert_eq!(roots_from(Vec::new()).len(), builtin);
        // Not a certificate: skipped.
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01]);
        assert_eq!(roots_from(vec![garbage]).len(), builtin);
        let pki = kube_reloader_testenv::pki::Pki::generate().unwrap();
        let ca = CertificateDer::from_pem_slice(pki.ca_cert_pem.as_bytes()).unwrap();
        assert_eq!(
            roots_from(vec![ca]).len(),
            builtin + 1,
            "added to the public roots, which keep working"
        );
    }

    #[test]
    fn bad_locations_are_described_by_path_not_content() {
        let dir = std::env::temp_dir().join(format!("kube-reloader-certs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let truncated = dir.join("truncated.pem");
        std::fs::write(
            &truncated,
            "-----BEGIN CERTIFICATE-----\nc2VjcmV0LWxvb2tpbmctbGluZQ==\n",
        )
        .unwrap();
        let missing = dir.join("missing.pem");
        for (path, expected) in [
            (&missing, missing.display().to_string()),
            (&truncated, "without its END line".to_owned()),
        ] {
            let result = rustls_native_certs::load_certs_from_paths(Some(path), None);
            assert!(result.certs.is_empty());
            let described: Vec<String> = result.errors.iter().map(describe_cert_error).collect();
            assert!(
                described.iter().any(|d| d.contains(&expected)),
                "{described:?}"
            );
            assert!(
                !described.iter().any(|d| d.contains("c2VjcmV0")),
                "{described:?}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
