//! The work queue: keyed by workload, so a burst of changes to one workload's sources becomes a
//! single reconcile; a key re-added while it is being processed runs once more afterwards.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::Notify;

use crate::watch::workloads::WorkloadKey;

#[derive(Debug, Default)]
struct State {
    ready: VecDeque<(WorkloadKey, Instant)>,
    queued: HashSet<WorkloadKey>,
    active: HashSet<WorkloadKey>,
    dirty: HashSet<WorkloadKey>,
    failures: HashMap<WorkloadKey, u32>,
}

/// A deduplicating queue of workload keys with per-key retry backoff.
#[derive(Debug, Default)]
pub struct WorkQueue {
    state: Mutex<State>,
    notify: Notify,
    adds: Counter,
    depth: Gauge,
    latency: Option<Histogram>,
}

impl WorkQueue {
    /// A queue that reports keys added, keys waiting and time waited to these metrics.
    pub fn with_metrics(adds: Counter, depth: Gauge, latency: Histogram) -> Self {
        Self {
            adds,
            depth,
            latency: Some(latency),
            ..Self::default()
        }
    }

    /// Adds a key unless it is already waiting.
    pub fn add(&self, key: WorkloadKey) {
        let mut state = self.lock();
        if state.active.contains(&key) {
            state.dirty.insert(key);
            return;
        }
        if state.queued.insert(key.clone()) {
            state.ready.push_back((key, Instant::now()));
            self.adds.inc();
            self.depth
                .set(i64::try_from(state.ready.len()).unwrap_or(i64::MAX));
            drop(state);
            self.notify.notify_one();
        }
    }

    /// Waits for the next key and marks it active.
    pub async fn next(&self) -> WorkloadKey {
        loop {
            let notified = self.notify.notified();
            {
                let mut state = self.lock();
                if let Some((key, added)) = state.ready.pop_front() {
                    state.queued.remove(&key);
                    if let Some(latency) = &self.latency {
                        latency.observe(added.elapsed().as_secs_f64());
                    }
                    self.depth
                        .set(i64::try_from(state.ready.len()).unwrap_or(i64::MAX));
                    state.active.insert(key.clone());
                    if !state.ready.is_empty() {
                        self.notify.notify_one();
                    }
                    return key;
                }
            }
            notified.await;
        }
    }

    /// Marks a key done: on success its failure count resets; a key re-added meanwhile is
    /// queued again.
    pub fn done(&self, key: &WorkloadKey, succeeded: bool) {
        let requeue = {
            let mut state = self.lock();
            state.active.remove(key);
            if succeeded {
                state.failures.remove(key);
            }
            state.dirty.remove(key)
        };
        if requeue {
            self.add(key.clone());
        }
    }

    /// Schedules a retry after a failure with exponential backoff (1 s doubling, at most
    /// 5 min); the key is never dropped. Returns the delay.
    pub fn retry_later(self: &Arc<Self>, key: WorkloadKey) -> Duration {
        let attempt = {
            let mut state = self.lock();
            let count = state.failures.entry(key.clone()).or_insert(0);
            *count += 1;
            *count
        };
        let delay = Duration::from_secs(1u64 << attempt.min(8).saturating_sub(1))
            .min(Duration::from_secs(300));
        self.add_after(key, delay);
        delay
    }

    /// Adds a key after `delay`, without counting a failure.
    pub fn add_after(self: &Arc<Self>, key: WorkloadKey, delay: Duration) {
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(key);
        });
    }

    /// Keys waiting now (for metrics).
    pub fn depth(&self) -> usize {
        self.lock().ready.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::policy::WorkloadKind;

    fn key(name: &str) -> WorkloadKey {
        WorkloadKey {
            kind: WorkloadKind::Deployment,
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    #[tokio::test]
    async fn duplicates_collapse_and_active_keys_rerun_once() {
        let queue = WorkQueue::default();
        queue.add(key("a"));
        queue.add(key("a"));
        queue.add(key("b"));
        assert_eq!(queue.depth(), 2);
        let first = queue.next().await;
        assert_eq!(first, key("a"));
        queue.add(key("a"));
        queue.add(key("a"));
        assert_eq!(queue.depth(), 1, "a is active, so it is only marked dirty");
        queue.done(&first, true);
        assert_eq!(queue.next().await, key("b"));
        assert_eq!(queue.next().await, key("a"), "dirty key runs once more");
        assert_eq!(queue.depth(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_and_retry() {
        let queue = Arc::new(WorkQueue::default());
        queue.add(key("a"));
        let k = queue.next().await;
        queue.done(&k, false);
        assert_eq!(queue.retry_later(k.clone()), Duration::from_secs(1));
        assert_eq!(queue.next().await, k);
        queue.done(&k, false);
        assert_eq!(queue.retry_later(k.clone()), Duration::from_secs(2));
        assert_eq!(queue.next().await, k);
        queue.done(&k, true);
        assert_eq!(
            queue.retry_later(k),
            Duration::from_secs(1),
            "success resets the backoff"
        );
    }
}
