//! Outgoing HTTP notifications: upstream's `--webhook-url` mode (a POST per qualifying change,
//! instead of reloading) and alerts after a reload (`ALERT_ON_RELOAD`, to Slack, Teams, Google
//! Chat or a raw endpoint). A slow or failing receiver never holds up a reload: messages go
//! through a bounded queue to one sender task with a timeout and a few retries, and what cannot
//! be delivered is counted and logged, never retried forever.

pub mod alert;

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::mpsc;

pub use alert::{AlertSettings, Sink};

use crate::ops::metrics::NotificationLabels;

/// Messages waiting beyond this are dropped (and counted): a dead receiver must not grow memory.
const QUEUE_CAPACITY: usize = 1024;
/// Per-attempt timeout.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts per message.
const ATTEMPTS: u32 = 3;

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
    /// Which status codes count as delivered.
    pub accepts: Accepts,
}

/// Which HTTP statuses a receiver answers on success (upstream differs per sink).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepts {
    /// Any status below 400.
    Below400,
    /// Exactly 200.
    Only200,
}

impl Accepts {
    fn accepts(self, status: u16) -> bool {
        match self {
            Accepts::Below400 => status < 400,
            Accepts::Only200 => status == 200,
        }
    }
}

/// Queues notifications for the sender task.
#[derive(Debug, Clone)]
pub struct Notifier {
    tx: mpsc::Sender<Request>,
    outcomes: Family<NotificationLabels, Counter>,
}

impl Notifier {
    /// Starts the sender task. `proxy` is `ALERT_WEBHOOK_PROXY` (for alerts only, as upstream).
    pub fn start(
        proxy: Option<&str>,
        outcomes: Family<NotificationLabels, Counter>,
        supervisor: &crate::ops::supervisor::Supervisor,
    ) -> Result<Self, crate::Error> {
        let direct = client(None)?;
        let proxied = match proxy {
            Some(p) => Some(client(Some(p))?),
            None => None,
        };
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        supervisor.spawn(
            "send notifications",
            send_all(rx, direct, proxied, outcomes.clone()),
        );
        Ok(Self { tx, outcomes })
    }

    /// Queues a request; when the queue is full the request is dropped and counted.
    pub fn send(&self, request: Request) {
        let kind = request.kind;
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(request) {
            record(&self.outcomes, kind, "dropped");
            tracing::warn!(
                kind = kind.as_str(),
                "notification queue full (receiver too slow or down); dropping one message"
            );
        }
    }
}

fn client(proxy: Option<&str>) -> Result<reqwest::Client, crate::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| crate::Error::Notifier(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
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

fn record(outcomes: &Family<NotificationLabels, Counter>, kind: Kind, result: &'static str) {
    outcomes
        .get_or_create(&NotificationLabels {
            kind: kind.as_str(),
            result,
        })
        .inc();
}

async fn send_all(
    mut rx: mpsc::Receiver<Request>,
    direct: reqwest::Client,
    proxied: Option<reqwest::Client>,
    outcomes: Family<NotificationLabels, Counter>,
) {
    while let Some(request) = rx.recv().await {
        let client = match (request.kind, &proxied) {
            (Kind::Alert, Some(p)) => p,
            _ => &direct,
        };
        let mut last_error = String::new();
        let mut delivered = false;
        for attempt in 1..=ATTEMPTS {
            match client
                .post(&request.url)
                .header(reqwest::header::CONTENT_TYPE, request.content_type)
                .body(request.body.clone())
                .send()
                .await
            {
                Ok(response) if request.accepts.accepts(response.status().as_u16()) => {
                    delivered = true;
                    break;
                }
                Ok(response) => last_error = format!("HTTP status {}", response.status()),
                // Without the URL: it may carry a token.
                Err(e) => last_error = describe(&e),
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(Duration::from_secs(1 << (attempt - 1))).await;
            }
        }
        if delivered {
            record(&outcomes, request.kind, "success");
            tracing::debug!(kind = request.kind.as_str(), "notification delivered");
        } else {
            record(&outcomes, request.kind, "error");
            tracing::error!(
                kind = request.kind.as_str(),
                attempts = ATTEMPTS,
                error = %last_error,
                "could not deliver a notification; check the receiver and the URL configured for it"
            );
        }
    }
}

fn describe(error: &reqwest::Error) -> String {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else if error.is_redirect() {
        "redirects are refused"
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

/// The webhook-mode request for one qualifying change.
pub fn webhook(url: &str) -> Request {
    Request {
        kind: Kind::Webhook,
        url: url.to_owned(),
        content_type: "application/json",
        body: WEBHOOK_BODY.to_owned(),
        accepts: Accepts::Below400,
    }
}
