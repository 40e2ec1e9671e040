//! Operating the controller: logs, the HTTP endpoints, metrics, leader election, process
//! signals and task supervision.

pub mod api_client;
pub mod diagnostics;
pub mod health;
pub mod http;
pub mod leader;
pub mod logging;
pub mod memory;
pub mod meta_info;
pub mod metrics;
pub mod rest_metrics;
pub mod signals;
pub mod supervisor;
