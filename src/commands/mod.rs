//! Subcommands that help users: `digest` (offline) and `explain` (reads the cluster, never
//! writes).

pub mod digest;
pub mod explain;
pub mod status;
