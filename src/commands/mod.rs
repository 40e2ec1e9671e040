//! Subcommands that help users without touching a cluster.

pub mod digest;
