//! Operating the controller: logs, the HTTP endpoints, metrics and process signals.

pub mod health;
pub mod http;
pub mod leader;
pub mod logging;
pub mod metrics;
pub mod signals;
