//! Every long-running task runs under the supervisor. A task is meant to run until shutdown;
//! one that returns or panics before is logged and makes `/live` fail, so Kubernetes restarts
//! the pod instead of leaving a process that is live, Ready and stale.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::task::AbortHandle;

use crate::ops::health::Health;

/// The supervisor. Cheap to clone; clones share the tasks.
#[derive(Debug, Clone)]
pub struct Supervisor {
    health: Arc<Health>,
    stopping: Arc<AtomicBool>,
    tasks: Arc<Mutex<Vec<(String, AbortHandle)>>>,
}

impl Supervisor {
    /// A supervisor that reports to `health`.
    pub fn new(health: Arc<Health>) -> Self {
        Self {
            health,
            stopping: Arc::default(),
            tasks: Arc::default(),
        }
    }

    /// Runs `task` until shutdown. Its end before shutdown (return or panic) fails `/live`.
    pub fn spawn(&self, name: impl Into<String>, task: impl Future<Output = ()> + Send + 'static) {
        let name = name.into();
        let handle = tokio::spawn(task);
        self.lock().push((name.clone(), handle.abort_handle()));
        let health = self.health.clone();
        let stopping = self.stopping.clone();
        tokio::spawn(async move {
            let outcome = handle.await;
            if stopping.load(Ordering::SeqCst) {
                return;
            }
            match outcome {
                Ok(()) => {
                    tracing::error!(task = %name, "a task that should run until shutdown stopped; /live now fails so Kubernetes restarts kube-reloader")
                }
                Err(e) if e.is_panic() => {
                    let payload = e.into_panic();
                    let message = payload
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "(no message)".to_owned());
                    tracing::error!(task = %name, panic = %message, "a task panicked; /live now fails so Kubernetes restarts kube-reloader");
                }
                Err(_) => {
                    tracing::error!(task = %name, "a task was cancelled; /live now fails so Kubernetes restarts kube-reloader")
                }
            }
            health.set_not_live();
        });
    }

    /// From now on a task ending is expected (the process is stopping).
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Aborts every task still running (after [`Supervisor::stopping`]).
    pub fn abort_all(&self) {
        self.stopping();
        for (_, handle) in self.lock().drain(..) {
            handle.abort();
        }
    }

    /// Names of the supervised tasks still running.
    pub fn running(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, h)| !h.is_finished())
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, AbortHandle)>> {
        self.tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    #[tokio::test]
    async fn a_task_that_panics_or_returns_fails_liveness() {
        for ends in ["panic", "return"] {
            let health = Arc::new(Health::default());
            let supervisor = Supervisor::new(health.clone());
            supervisor.spawn("forever", std::future::pending());
            settle().await;
            assert!(health.is_live());
            match ends {
                "panic" => supervisor.spawn("broken", async { panic!("boom") }),
                _ => supervisor.spawn("quitter", async {}),
            }
            settle().await;
            assert!(!health.is_live(), "{ends}");
            assert_eq!(supervisor.running(), ["forever"]);
        }
    }

    #[tokio::test]
    async fn tasks_ending_at_shutdown_are_expected() {
        let health = Arc::new(Health::default());
        let supervisor = Supervisor::new(health.clone());
        supervisor.spawn("watch", std::future::pending());
        supervisor.abort_all();
        settle().await;
        assert!(health.is_live());
        assert!(supervisor.running().is_empty());
    }
}
