//! The reconciler: watchers feed the indexes and queue workload keys; workers plan each
//! workload from memory and carry the intent out through its kind module.
//!
//! Stages, in the order a change flows: `watch::sources` (event) → `index` (digest cache, then
//! [`crate::index::affected`]: the workloads that can track it) → [`queue`] → [`worker`]
//! (`model::planner`, then the `kinds` module's write through [`writer`]) → [`report`].

pub mod context;
pub mod degraded;
pub mod error;
pub mod governor;
pub mod queue;
pub mod report;
pub mod startup;
pub mod sync;
pub mod worker;
pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use context::Context;
pub use report::Outbound;

/// Workers planning and writing in parallel (each key is only ever in one of them).
const WORKERS: usize = 8;

/// A running engine.
pub struct Engine {
    ctx: Arc<Context>,
    workers_running: mpsc::Receiver<()>,
    startup: JoinHandle<()>,
}

impl Engine {
    /// Starts the workers and, in the background, discovery, the RBAC check and the watches.
    pub fn start(ctx: Arc<Context>) -> Self {
        let (running, workers_running) = mpsc::channel(1);
        for i in 0..WORKERS {
            ctx.supervisor.spawn(
                format!("worker {i}"),
                worker::run(ctx.clone(), running.clone()),
            );
        }
        ctx.supervisor
            .spawn("export leadership", export_leadership(ctx.clone()));
        let events = ctx.clone();
        ctx.supervisor.spawn("publish events", async move {
            events.report.publish_events().await;
        });
        let startup = tokio::spawn(startup::run(ctx.clone()));
        Self {
            ctx,
            workers_running,
            startup,
        }
    }

    /// The shared context (for diagnostics).
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// Stops taking new work, lets in-flight write sequences (and the Events they queued)
    /// finish within `grace`, then stops every task.
    pub async fn shutdown(mut self, grace: Duration) {
        self.startup.abort();
        self.ctx.supervisor.stopping();
        self.ctx.queue.close();
        let finished = async {
            self.workers_running.recv().await;
            self.ctx.report.events_published().await;
        };
        match tokio::time::timeout(grace, finished).await {
            Ok(()) => tracing::debug!("in-flight work finished"),
            Err(_) => tracing::warn!(
                grace_seconds = grace.as_secs_f64(),
                "in-flight writes did not finish within --shutdown-grace-period; stopping anyway \
                 (the next start finishes them from what the cluster shows)"
            ),
        }
        self.ctx.supervisor.abort_all();
    }
}

/// Unix seconds now (0 before 1970, saturating far in the future).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Keeps `kube_reloader_leader` current (for the "no leader" alert).
async fn export_leadership(ctx: Arc<Context>) {
    loop {
        let leading = ctx.leadership.write_state() == crate::ops::leader::WriteState::Allowed;
        ctx.metrics.leader.set(i64::from(leading));
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
