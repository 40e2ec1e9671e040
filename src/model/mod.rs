//! Pure decision logic: no I/O, no clock, no client. Everything here is unit-tested with tables.
//!
//! A plan flows through these modules in this order: [`workload`] (what is known of a
//! workload) and [`source`] (of a ConfigMap or Secret), [`interest`] (which sources it could
//! track), [`policy`] and [`refs`] (which it does track, and which container carries the
//! marker), [`plan`] (markers against digests), [`planner`] (the intent, with pause periods
//! and Job re-creation), then [`edit`] and [`patch`] (the write). [`keys`] narrows a source to the
//! keys a workload reads (key-level triggers).
//!
//! [`window`] holds the maintenance windows a rollout may be deferred to.

pub mod annotations;
pub mod digest;
pub mod edit;
pub mod governor;
pub mod interest;
pub mod keyed;
pub mod keys;
pub mod ledger;
pub mod patch;
pub mod pause;
pub mod plan;
pub mod planner;
pub mod policy;
pub mod progress;
pub mod refs;
pub mod source;
pub mod stale;
pub mod window;
pub mod workload;

pub use edit::Strategy;

/// An object's name or namespace as the caches keep it: inline up to 24 bytes (most names are
/// shorter), where a `String` would be an allocation of its own in every key, interest and
/// index entry that holds it.
pub type ObjectName = compact_str::CompactString;
