//! Helpers shared by the integration tests.

use std::future::Future;
use std::time::{Duration, Instant};

use kube_reloader_testenv::{ClusterInfo, Tier};

/// How long a test waits for an effect before failing. Generous: this is a bound on a hang,
/// not a performance assertion (timings live in bench/).
pub const EFFECT_TIMEOUT: Duration = Duration::from_secs(120);

/// The shared control plane at `tier` or higher; panics with the full startup report.
pub async fn cluster(tier: Tier) -> ClusterInfo {
    match kube_reloader_testenv::shared(tier).await {
        Ok(info) => info,
        Err(e) => panic!("{e}"),
    }
}

/// Polls `check` until it returns `Some`, or panics after [`EFFECT_TIMEOUT`] naming `what`
/// and the last state `check` reported through `describe`.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    match try_eventually(what, check).await {
        Ok(value) => value,
        Err(timed_out) => panic!("{timed_out}"),
    }
}

/// [`eventually`] that returns the timeout message instead of panicking, for callers that
/// add to it (a log tail).
pub async fn try_eventually<T, F, Fut>(what: &str, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        let last = match check().await {
            Ok(value) => return Ok(value),
            Err(state) => state,
        };
        if started.elapsed() > EFFECT_TIMEOUT {
            return Err(format!(
                "timed out after {}s waiting for {what}; last state: {last}",
                EFFECT_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
