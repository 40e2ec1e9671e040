//! The work queue: keyed by workload, so a burst of changes to one workload's sources becomes a
//! single plan; a key re-added while it is being processed runs once more afterwards. Delayed
//! work (retries, pause periods, a fenced write) waits in the same queue: per key the earliest
//! deadline wins, and no task sleeps per entry: a waiting worker sleeps until the earliest one.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::model::workload::WorkloadKey;

#[derive(Debug, Default)]
struct State {
    ready: VecDeque<(WorkloadKey, Instant)>,
    queued: HashSet<WorkloadKey>,
    delayed: BTreeSet<(Instant, WorkloadKey)>,
    due: HashMap<WorkloadKey, Instant>,
    active: HashSet<WorkloadKey>,
    /// Keys added while active: run again at this time once done.
    dirty: HashMap<WorkloadKey, Instant>,
    failures: HashMap<WorkloadKey, u32>,
    /// Keys done since the queue was last drained after a burst.
    done_since_drain: u32,
    closed: bool,
}

impl State {
    /// Moves every delayed key whose time has come to the ready list.
    fn promote(&mut self, now: Instant) {
        while let Some((at, _)) = self.delayed.first() {
            if *at > now {
                break;
            }
            let Some((at, key)) = self.delayed.pop_first() else {
                break;
            };
            self.due.remove(&key);
            if self.queued.insert(key.clone()) {
                self.ready.push_back((key, at));
            }
        }
    }

    fn unschedule(&mut self, key: &WorkloadKey) {
        if let Some(at) = self.due.remove(key) {
            self.delayed.remove(&(at, key.clone()));
        }
    }
}

/// Metrics the queue reports to.
#[derive(Debug, Clone)]
pub struct QueueMetrics {
    /// Keys added (upstream's workqueue adds).
    pub adds: Counter,
    /// Keys ready and waiting for a worker.
    pub depth: Gauge,
    /// Seconds a key waited from ready to picked up.
    pub latency: Histogram,
}

/// How many keys a burst has at least for [`WorkQueue::done`] to report it drained: a single
/// change's plan frees little, a fan-out's or a first start's writes free their buffers at once.
pub const DRAINED_BURST: u32 = 16;

/// A deduplicating queue of workload keys with delayed entries and per-key failure counts.
#[derive(Debug, Default)]
pub struct WorkQueue {
    state: Mutex<State>,
    notify: Notify,
    metrics: Option<QueueMetrics>,
}

impl WorkQueue {
    /// A queue that reports to these metrics.
    pub fn with_metrics(metrics: QueueMetrics) -> Self {
        Self {
            metrics: Some(metrics),
            ..Self::default()
        }
    }

    /// Adds a key to run now, unless it is already waiting to run now.
    pub fn add(&self, key: WorkloadKey) {
        self.add_at(key, Instant::now());
    }

    /// Adds a key to run after `delay`; an earlier entry for the key wins.
    pub fn add_after(&self, key: WorkloadKey, delay: Duration) {
        self.add_at(key, Instant::now() + delay);
    }

    /// Adds a key to run at `at`; an earlier entry for the key wins.
    pub fn add_at(&self, key: WorkloadKey, at: Instant) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        if state.active.contains(&key) {
            let slot = state.dirty.entry(key).or_insert(at);
            *slot = (*slot).min(at);
            return;
        }
        if state.queued.contains(&key) {
            return;
        }
        if let Some(held) = state.due.get(&key)
            && *held <= at
        {
            return;
        }
        state.unschedule(&key);
        if let Some(metrics) = &self.metrics {
            metrics.adds.inc();
        }
        if at <= Instant::now() {
            state.queued.insert(key.clone());
            state.ready.push_back((key, at));
            self.report_depth(&state);
        } else {
            state.due.insert(key.clone(), at);
            state.delayed.insert((at, key));
        }
        drop(state);
        // Wakes one waiting worker: it takes the key, or re-arms its timer for the new deadline.
        self.notify.notify_one();
    }

    /// Waits for the next key and marks it active; `None` once the queue is closed.
    pub async fn next(&self) -> Option<WorkloadKey> {
        loop {
            let notified = self.notify.notified();
            let wake_at = {
                let mut state = self.lock();
                if state.closed {
                    return None;
                }
                state.promote(Instant::now());
                if let Some((key, ready_since)) = state.ready.pop_front() {
                    state.queued.remove(&key);
                    state.active.insert(key.clone());
                    if let Some(metrics) = &self.metrics {
                        metrics.latency.observe(ready_since.elapsed().as_secs_f64());
                    }
                    self.report_depth(&state);
                    let more = !state.ready.is_empty() || !state.delayed.is_empty();
                    drop(state);
                    if more {
                        self.notify.notify_one();
                    }
                    return Some(key);
                }
                state.delayed.first().map(|(at, _)| *at)
            };
            match wake_at {
                Some(at) => {
                    tokio::select! {
                        () = notified => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Marks a key done; on success its failure count resets. A key re-added meanwhile is
    /// queued again for the time it was re-added for. True when this drained a burst: at least
    /// [`DRAINED_BURST`] keys were done since the last drain, and none is ready or running now
    /// (delayed keys do not count), the moment to give the burst's freed memory back.
    pub fn done(&self, key: &WorkloadKey, succeeded: bool) -> bool {
        let (again, drained) = {
            let mut state = self.lock();
            state.active.remove(key);
            if succeeded {
                state.failures.remove(key);
            }
            state.done_since_drain = state.done_since_drain.saturating_add(1);
            let again = state.dirty.remove(key);
            let drained = again.is_none()
                && state.ready.is_empty()
                && state.active.is_empty()
                && state.done_since_drain >= DRAINED_BURST;
            if drained {
                state.done_since_drain = 0;
            }
            (again, drained)
        };
        if let Some(at) = again {
            self.add_at(key.clone(), at);
        }
        drained
    }

    /// Counts a failed attempt of `key`; returns how many in a row (1 for the first).
    pub fn record_failure(&self, key: &WorkloadKey) -> u32 {
        let mut state = self.lock();
        let count = state.failures.entry(key.clone()).or_insert(0);
        *count = count.saturating_add(1);
        *count
    }

    /// Stops handing out keys: waiting workers get `None`, adds are ignored.
    pub fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_waiters();
    }

    /// Keys ready to run now.
    pub fn depth(&self) -> usize {
        self.lock().ready.len()
    }

    /// Keys waiting for a later time, with how long until each is due (diagnostics).
    pub fn delayed(&self) -> Vec<(WorkloadKey, Duration)> {
        let now = Instant::now();
        self.lock()
            .delayed
            .iter()
            .map(|(at, key)| (key.clone(), at.saturating_duration_since(now)))
            .collect()
    }

    fn report_depth(&self, state: &State) {
        if let Some(metrics) = &self.metrics {
            metrics
                .depth
                .set(i64::try_from(state.ready.len()).unwrap_or(i64::MAX));
        }
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
    use crate::model::workload::WorkloadKind;

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
        let first = queue.next().await.unwrap();
        assert_eq!(first, key("a"));
        queue.add(key("a"));
        queue.add(key("a"));
        assert_eq!(queue.depth(), 1, "a is active, so it is only marked dirty");
        queue.done(&first, true);
        assert_eq!(queue.next().await.unwrap(), key("b"));
        assert_eq!(
            queue.next().await.unwrap(),
            key("a"),
            "dirty key runs once more"
        );
        assert_eq!(queue.depth(), 0);
    }

    #[tokio::test]
    async fn a_burst_is_drained_once_nothing_is_ready_or_running() {
        let queue = WorkQueue::default();
        let burst = usize::try_from(DRAINED_BURST).unwrap();
        for i in 0..burst {
            queue.add(key(&i.to_string()));
        }
        // Two keys running at once: the first done leaves the other running.
        let mut drained = Vec::new();
        for _ in 0..burst / 2 {
            let a = queue.next().await.unwrap();
            let b = queue.next().await.unwrap();
            drained.push(queue.done(&a, true));
            drained.push(queue.done(&b, true));
        }
        let last = drained.pop();
        assert_eq!(last, Some(true), "the burst's last key drains it");
        assert!(drained.iter().all(|d| !d), "not before: {drained:?}");
        // The count starts again: a single change afterwards is no burst.
        queue.add(key("x"));
        let x = queue.next().await.unwrap();
        assert!(!queue.done(&x, true));
        // A key re-added while running is not drained: it runs again.
        let queue = WorkQueue::default();
        for i in 1..burst {
            queue.add(key(&i.to_string()));
            let k = queue.next().await.unwrap();
            assert!(!queue.done(&k, true), "one at a time, short of a burst");
        }
        queue.add(key("last"));
        let last = queue.next().await.unwrap();
        queue.add(last.clone());
        assert!(!queue.done(&last, true), "dirty: it runs once more");
        let again = queue.next().await.unwrap();
        assert!(queue.done(&again, true));
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_keys_keep_the_earliest_deadline_and_spawn_nothing() {
        let queue = WorkQueue::default();
        let start = Instant::now();
        queue.add_after(key("a"), Duration::from_secs(10));
        queue.add_after(key("a"), Duration::from_secs(30));
        queue.add_after(key("a"), Duration::from_secs(5));
        assert_eq!(queue.delayed().len(), 1, "one entry per key");
        assert_eq!(queue.next().await.unwrap(), key("a"));
        assert_eq!(start.elapsed(), Duration::from_secs(5), "earliest wins");
        queue.done(&key("a"), true);
        // A key waiting for later runs now when added now.
        queue.add_after(key("b"), Duration::from_secs(60));
        queue.add(key("b"));
        let before = Instant::now();
        assert_eq!(queue.next().await.unwrap(), key("b"));
        assert_eq!(before.elapsed(), Duration::ZERO);
        assert!(queue.delayed().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_worker_wakes_for_an_earlier_deadline() {
        let queue = std::sync::Arc::new(WorkQueue::default());
        queue.add_after(key("late"), Duration::from_secs(100));
        let waiter = tokio::spawn({
            let queue = queue.clone();
            async move { queue.next().await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        queue.add_after(key("soon"), Duration::from_secs(2));
        let started = Instant::now();
        assert_eq!(waiter.await.unwrap().unwrap(), key("soon"));
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_delayed_add_while_active_runs_after_done_at_its_time() {
        let queue = WorkQueue::default();
        queue.add(key("a"));
        let a = queue.next().await.unwrap();
        queue.add_after(a.clone(), Duration::from_secs(3));
        queue.done(&a, true);
        assert_eq!(queue.depth(), 0);
        let started = Instant::now();
        assert_eq!(queue.next().await.unwrap(), a);
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test]
    async fn failures_count_until_a_success() {
        let queue = WorkQueue::default();
        assert_eq!(queue.record_failure(&key("a")), 1);
        assert_eq!(queue.record_failure(&key("a")), 2);
        queue.done(&key("a"), true);
        assert_eq!(queue.record_failure(&key("a")), 1);
    }

    #[tokio::test]
    async fn close_releases_waiting_workers_and_ignores_adds() {
        let queue = std::sync::Arc::new(WorkQueue::default());
        let waiter = tokio::spawn({
            let queue = queue.clone();
            async move { queue.next().await }
        });
        tokio::task::yield_now().await;
        queue.close();
        assert_eq!(waiter.await.unwrap(), None);
        queue.add(key("a"));
        assert_eq!(queue.depth(), 0);
    }
}
