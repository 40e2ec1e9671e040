//! The HTTP server: `/live`, `/ready` and `/metrics` on one listener, nothing else.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::error::Error;
use crate::ops::health::Health;
use crate::ops::metrics::Metrics;

/// What the handlers read.
#[derive(Debug, Clone)]
pub struct HttpState {
    /// Liveness and readiness.
    pub health: Arc<Health>,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
}

/// Binds the listener now, so a taken port fails startup instead of a background task.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::HttpBind { addr, source })
}

/// The routes, separate from serving so tests can call them directly.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/live", get(live))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::HttpServe)
}

async fn live(State(state): State<HttpState>) -> Response {
    if state.health.is_live() {
        (StatusCode::OK, "alive").into_response()
    } else {
        (StatusCode::INTERNAL_SERVER_ERROR, "not alive").into_response()
    }
}

async fn ready(State(state): State<HttpState>) -> Response {
    let (status, mut body) = match state.health.readiness() {
        Ok(()) => (StatusCode::OK, "ready".to_owned()),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}"),
        ),
    };
    for note in state.health.notes() {
        body.push('\n');
        body.push_str(&note);
    }
    (status, body).into_response()
}

async fn metrics(State(state): State<HttpState>) -> Response {
    match state.metrics.encode() {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
