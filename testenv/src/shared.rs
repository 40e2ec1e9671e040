//! One control plane per test binary, shared by all its tests.
//!
//! The first test to ask starts it; a test asking for a higher tier adds the missing components.
//! It is stopped when the test binary exits (an `atexit` hook), and if the binary dies
//! abruptly the children die with it through their parent-death signal.

use std::sync::Once;

use tokio::sync::Mutex;

use crate::cluster::{ClusterInfo, ControlPlane, Tier};
use crate::error::Error;

enum State {
    NotStarted,
    Running(Box<ControlPlane>),
    Failed(String),
}

static SHARED: Mutex<State> = Mutex::const_new(State::NotStarted);

/// The shared control plane, started (or upgraded) to at least `tier`.
///
/// If starting failed once, every later call fails at once with the same report instead of
/// waiting for the timeout again.
pub async fn shared(tier: Tier) -> Result<ClusterInfo, Error> {
    static AT_EXIT: Once = Once::new();
    AT_EXIT.call_once(|| {
        // SAFETY: registers a plain extern "C" function with no captured state.
        unsafe {
            libc::atexit(stop_at_exit);
        }
    });
    let mut state = SHARED.lock().await;
    match &mut *state {
        State::NotStarted => match ControlPlane::start(tier).await {
            Ok(plane) => {
                let info = plane.info().clone();
                *state = State::Running(Box::new(plane));
                Ok(info)
            }
            Err(e) => {
                let report = e.to_string();
                *state = State::Failed(report.clone());
                Err(Error::Startup(report))
            }
        },
        State::Running(plane) => {
            if let Err(e) = plane.upgrade(tier).await {
                let report = e.to_string();
                *state = State::Failed(report.clone());
                return Err(Error::Startup(report));
            }
            Ok(plane.info().clone())
        }
        State::Failed(report) => Err(Error::Startup(format!(
            "the shared control plane failed to start earlier in this run:\n{report}"
        ))),
    }
}

extern "C" fn stop_at_exit() {
    // try_lock: a test thread may still hold the lock while the process exits; then the
    // parent-death signal cleans up instead.
    if let Ok(mut state) = SHARED.try_lock()
        && let State::Running(plane) = std::mem::replace(&mut *state, State::NotStarted)
    {
        drop(plane);
    }
}
