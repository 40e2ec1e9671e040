//! A real, local Kubernetes control plane for kube-reloader's integration tests, demo and
//! benchmarks: etcd and kube-apiserver (tier A), plus kube-controller-manager (tier B), plus
//! kube-scheduler and kwok fake nodes so pods turn Ready and rollouts complete (tier C).
//!
//! Binaries come from `testbins/build.sh` (built from pinned Go modules, cached outside the
//! repository). Every process binds 127.0.0.1 on a free port, lives in a per-run temp dir, and
//! dies with the process that started it, also on panic or Ctrl-C.

pub mod bins;
pub mod cluster;
pub mod error;
pub mod pki;
pub mod plot;
pub mod process;
pub mod procfs;
pub mod shared;

pub use cluster::{ClusterInfo, ControlPlane, Identity, NODE_NAME, Tier, Tuning};
pub use error::Error;
pub use shared::shared;

/// An HTTP client for probes and test receivers. The workspace enables reqwest's rustls
/// without a built-in crypto provider (the controller brings its own), so this installs ring
/// as the process default first.
pub fn http() -> reqwest::Client {
    static PROVIDER: std::sync::Once = std::sync::Once::new();
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::new()
}
