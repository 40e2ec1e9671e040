//! kube-reloader rolls Kubernetes workloads when the ConfigMaps and Secrets they consume change.
//!
//! It is a drop-in replacement for stakater/Reloader: same annotations, flags, env-var names and
//! hash values. This crate holds the whole controller; `main.rs` only parses the command line,
//! sets up logging and calls [`run`].

pub mod app;
pub mod commands;
pub mod config;
pub mod error;
pub mod index;
pub mod kinds;
pub mod model;
pub mod notify;
pub mod ops;
pub mod reconcile;
pub mod watch;

pub use app::run;
pub use config::{Cli, Settings};
pub use error::Error;
