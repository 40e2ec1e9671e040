//! The process lifecycle: connect to the API server, serve the HTTP endpoints, stop on a signal.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::Settings;
use crate::error::Error;
use crate::notify::{AlertSettings, Notifier};
use crate::ops::health::Health;
use crate::ops::http::{self, HttpState};
use crate::ops::leader::Leadership;
use crate::ops::metrics::Metrics;
use crate::ops::rest_metrics::RestMetricsLayer;
use crate::ops::signals::ShutdownSignals;
use crate::ops::supervisor::Supervisor;
use crate::ops::{diagnostics, meta_info};
use crate::reconcile::{Context, Engine, Outbound};

/// Runs kube-reloader until SIGTERM or SIGINT.
///
/// Fails fast, before serving readiness, when the cluster cannot be reached, so a misconfigured
/// deployment crash-loops with a message instead of sitting idle.
pub async fn run(settings: Settings) -> Result<(), Error> {
    let mut signals = ShutdownSignals::install().map_err(Error::HttpServe)?;
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
    let health = Arc::new(Health::default());
    let supervisor = Supervisor::new(health.clone());
    let metrics = Arc::new(Metrics::new(settings.metrics_by_namespace));
    let outbound = outbound(&settings, &metrics, &supervisor)?;
    let engine_slot: diagnostics::EngineSlot = Arc::default();
    if let Some(addr) = settings.diagnostics_addr {
        diagnostics::serve(addr, engine_slot.clone()).await?;
    }

    let listener = http::bind(settings.http_addr).await?;
    let local_addr = listener.local_addr().map_err(Error::HttpServe)?;
    tracing::info!(addr = %local_addr, "serving /live, /ready and /metrics");
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let state = HttpState {
        health: health.clone(),
        metrics: metrics.clone(),
    };
    let server = tokio::spawn(http::serve(listener, state, async move {
        // The sender lives until run() returns; a closed channel also means stop.
        let _ = stop_rx.wait_for(|stop| *stop).await;
    }));

    let connected = tokio::select! {
        result = connect(settings.api_timeout, &metrics) => Some(result),
        _ = signals.recv() => None,
    };
    let signal = match connected {
        // A signal arrived before the API answered: stop without starting anything.
        None => "signal",
        Some(Err(e)) => {
            let _ = stop_tx.send(true);
            let _ = server.await;
            return Err(e);
        }
        Some(Ok(client)) => {
            // Ready only once every watcher has listed its objects (the engine sets it).
            health.set_not_ready("syncing caches");
            let leadership = match &settings.lease {
                None => Leadership::single(),
                Some(lease) => match Leadership::elect(client.clone(), lease, &supervisor).await {
                    Ok(leadership) => {
                        tracing::info!(lease = %lease.name, namespace = %lease.namespace, identity = %lease.identity,
                            "leader election on; caches stay warm on every replica, only the leader writes");
                        leadership
                    }
                    Err(e) => {
                        let _ = stop_tx.send(true);
                        let _ = server.await;
                        return Err(Error::LeaderElection(e.to_string()));
                    }
                },
            };
            if let Some(target) = &settings.meta_info {
                meta_info::publish(&client, &settings, &target.namespace, &target.deployment).await;
            }
            let grace = settings.shutdown_grace;
            let ctx = Context::new(
                client,
                settings.clone(),
                metrics.clone(),
                health.clone(),
                leadership,
                outbound,
                supervisor.clone(),
            );
            let _ = engine_slot.set(ctx.clone());
            let engine = Engine::start(ctx);
            let signal = signals.recv().await;
            tracing::info!(
                signal,
                "shutting down: no new work; in-flight writes may finish"
            );
            health.set_stopping();
            engine.shutdown(grace).await;
            signal
        }
    };

    tracing::info!(signal, "shutting down");
    health.set_stopping();
    let _ = stop_tx.send(true);
    match tokio::time::timeout(Duration::from_secs(10), server).await {
        Ok(Ok(result)) => result?,
        Ok(Err(join_error)) => tracing::error!(error = %join_error, "HTTP server task failed"),
        Err(_) => tracing::warn!("HTTP server did not stop within 10s; exiting anyway"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// Builds a client from KUBECONFIG, ~/.kube/config or the in-cluster service account, and checks
/// that the API server answers with that identity.
pub async fn connect(timeout: Duration, metrics: &Metrics) -> Result<kube::Client, Error> {
    let config = kube::Config::infer().await.map_err(Error::NoClientConfig)?;
    let server = config.cluster_url.to_string();
    let host = config
        .cluster_url
        .authority()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let layer = RestMetricsLayer::new(
        metrics.rest_requests.clone(),
        metrics.rest_duration.clone(),
        host,
    );
    let client = crate::ops::api_client::client(config, Some(layer)).map_err(|source| {
        Error::ClientSetup {
            server: server.clone(),
            source,
            fix: "check the certificate and credential fields of your kubeconfig",
        }
    })?;
    let version = match tokio::time::timeout(timeout, client.apiserver_version()).await {
        Ok(Ok(version)) => version,
        Ok(Err(e)) => return Err(unreachable(&server, &e)),
        Err(_) => {
            return Err(Error::ApiUnreachable {
                server,
                cause: format!("no answer within {}s", timeout.as_secs()),
                fix:
                    "check that the API server is running and reachable from here (network policy, \
                      firewall, proxy), or raise --api-timeout-seconds"
                        .into(),
            });
        }
    };
    tracing::info!(server = %server, version = %version.git_version, "connected to the Kubernetes API server");
    Ok(client)
}

/// Sets up webhook mode and alerts from the flags and upstream's ALERT_* variables.
fn outbound(
    settings: &Settings,
    metrics: &Arc<Metrics>,
    supervisor: &Supervisor,
) -> Result<Outbound, Error> {
    let alerts = match AlertSettings::from_env(|name| settings.alert_vars.get(name).cloned()) {
        Ok(alerts) => alerts,
        Err(problem) => {
            tracing::error!("{problem}");
            None
        }
    };
    if settings.webhook_url.is_some() {
        tracing::warn!(
            "--webhook-url is set: changes are POSTed to the webhook and no workload is reloaded"
        );
    }
    let notifier = if alerts.is_some() || settings.webhook_url.is_some() {
        Some(Notifier::start(
            alerts.as_ref().and_then(|a| a.proxy.as_deref()),
            metrics.clone(),
            supervisor,
        )?)
    } else {
        None
    };
    Ok(Outbound {
        notifier,
        webhook_url: settings.webhook_url.clone(),
        alerts,
    })
}

/// Explains a failed startup request in words a user can act on.
fn unreachable(server: &str, error: &kube::Error) -> Error {
    let chain = error_chain(error);
    let (cause, fix) = match error {
        kube::Error::Api(status) if status.code == 401 => (
            format!("the API server rejected our credentials (401 Unauthorized: {})", status.message),
            "refresh the token or client certificate in your kubeconfig, or check the service account token"
                .to_owned(),
        ),
        kube::Error::Api(status) if status.code == 403 => (
            format!("the API server denied access (403 Forbidden: {})", status.message),
            "grant the identity permission to read /version (every authenticated user has it by default)"
                .to_owned(),
        ),
        kube::Error::Api(status) => (
            format!("the API server answered {} {}: {}", status.code, status.reason, status.message),
            "check the API server's health (kubectl get --raw /readyz)".to_owned(),
        ),
        _ if chain.contains("Connection refused") => (
            format!("connection refused ({chain})"),
            "check that the API server is running and that the server address in your kubeconfig is right"
                .to_owned(),
        ),
        _ if chain.contains("certificate") || chain.contains("UnknownIssuer") => (
            format!("TLS verification failed ({chain})"),
            "check certificate-authority(-data) in your kubeconfig matches the API server's CA".to_owned(),
        ),
        _ if chain.contains("dns error") || chain.contains("failed to lookup") => (
            format!("the server name does not resolve ({chain})"),
            "check the server address in your kubeconfig".to_owned(),
        ),
        _ => (
            chain,
            "check that the API server is running and reachable with the configured credentials".to_owned(),
        ),
    };
    Error::ApiUnreachable {
        server: server.to_owned(),
        cause,
        fix,
    }
}

/// Joins an error and all its sources into one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let part = inner.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = inner.source();
    }
    text
}
