//! Diagnostics, only with `--enable-pprof` and only on `--pprof-addr` (upstream serves Go's
//! pprof on every install, on the metrics port). A Rust process has no pprof; instead it shows
//! what people open pprof for: what the controller is doing and where its memory goes.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Something that can describe its state (the controller's context).
pub trait StateReport: Send + Sync {
    /// A snapshot: names and counts only, never a value.
    fn snapshot(&self) -> serde_json::Value;
}

/// The controller, once it exists (the listener starts before the API server answers).
pub type EngineSlot = Arc<OnceLock<Arc<dyn StateReport>>>;

/// The diagnostics routes.
pub fn router(engine: EngineSlot) -> Router {
    Router::new()
        .route("/debug/pprof/", get(index))
        .route("/debug/state", get(state))
        .route("/debug/process", get(process))
        .with_state(engine)
}

/// Binds and serves the diagnostics listener in the background.
pub async fn serve(addr: SocketAddr, engine: EngineSlot) -> Result<(), crate::Error> {
    let listener = crate::ops::http::bind(addr).await?;
    tracing::info!(addr = %addr, "serving diagnostics on /debug/state, /debug/process (--enable-pprof)");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(engine)).await {
            tracing::error!(error = %e, "diagnostics listener stopped");
        }
    });
    Ok(())
}

async fn index() -> &'static str {
    "kube-reloader diagnostics\n\n\
     /debug/state    what is watched, cache sizes, queue depth, leadership (JSON)\n\
     /debug/process  this process's /proc status (memory, threads)\n\n\
     Go's pprof profiles do not exist in a Rust build; use these, the /metrics endpoint, \
     or a sampling profiler such as perf against the process.\n"
}

async fn state(State(engine): State<EngineSlot>) -> Response {
    match engine.get() {
        Some(engine) => (
            [(header::CONTENT_TYPE, "application/json")],
            engine.snapshot().to_string(),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not connected to the API server yet",
        )
            .into_response(),
    }
}

async fn process() -> Response {
    match std::fs::read_to_string("/proc/self/status") {
        Ok(text) => text.into_response(),
        Err(e) => (StatusCode::NOT_IMPLEMENTED, e.to_string()).into_response(),
    }
}
