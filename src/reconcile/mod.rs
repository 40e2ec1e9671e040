//! The reconcile loop: watchers feed caches and enqueue workload keys; workers plan each
//! workload from memory and write at most one patch.

pub mod engine;
pub mod queue;
