//! Liveness and readiness state shared by the controller and the HTTP endpoints.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// What `/live` and `/ready` report.
///
/// Live: the process works and should not be restarted. Ready: startup checks passed and the
/// controller is doing its job; until then `/ready` says why not.
#[derive(Debug)]
pub struct Health {
    live: AtomicBool,
    ready: AtomicBool,
    stopping: AtomicBool,
    not_ready_reason: Mutex<String>,
    notes: Mutex<Vec<String>>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            live: AtomicBool::new(true),
            ready: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            not_ready_reason: Mutex::new("starting".to_owned()),
            notes: Mutex::default(),
        }
    }
}

impl Health {
    /// Whether the process is healthy.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::SeqCst)
    }

    /// Marks the process unhealthy so the kubelet restarts it.
    pub fn set_not_live(&self) {
        self.live.store(false, Ordering::SeqCst);
    }

    /// `Ok` when ready, else the reason it is not.
    pub fn readiness(&self) -> Result<(), String> {
        if self.ready.load(Ordering::SeqCst) {
            return Ok(());
        }
        Err(self.reason())
    }

    /// Marks the controller ready (never again once shutdown has begun).
    pub fn set_ready(&self) {
        if !self.stopping.load(Ordering::SeqCst) {
            self.ready.store(true, Ordering::SeqCst);
        }
    }

    /// Marks the controller not ready for good: it is shutting down.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.set_not_ready("shutting down");
    }

    /// Marks the controller not ready, with a reason shown by `/ready`.
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        *self.lock_reason() = reason.into();
        self.ready.store(false, Ordering::SeqCst);
    }

    /// Sets what `/ready` adds below its status (the permissions worked around, and their
    /// cost), ready or not.
    pub fn set_notes(&self, notes: Vec<String>) {
        *self
            .notes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = notes;
    }

    /// What `/ready` adds below its status.
    pub fn notes(&self) -> Vec<String> {
        self.notes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn reason(&self) -> String {
        self.lock_reason().clone()
    }

    fn lock_reason(&self) -> std::sync::MutexGuard<'_, String> {
        // A poisoned lock only means a writer panicked mid-assignment of a String; the value is
        // still a valid String, so keep using it rather than propagating the panic.
        self.not_ready_reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_live_but_not_ready() {
        let health = Health::default();
        assert!(health.is_live());
        assert_eq!(health.readiness(), Err("starting".to_owned()));
        health.set_ready();
        assert_eq!(health.readiness(), Ok(()));
        health.set_not_ready("shutting down");
        assert_eq!(health.readiness(), Err("shutting down".to_owned()));
        health.set_stopping();
        health.set_ready();
        assert!(health.readiness().is_err(), "no way back once stopping");
        health.set_not_live();
        assert!(!health.is_live());
        assert!(health.notes().is_empty());
        health.set_notes(vec!["degraded: x".into()]);
        assert_eq!(health.notes(), ["degraded: x"]);
    }
}
