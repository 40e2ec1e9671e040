//! Pure decision logic: no I/O, no clock, no client. Everything here is unit-tested with tables.

pub mod digest;
pub mod patch;
pub mod pause;
pub mod plan;
pub mod policy;
pub mod refs;
