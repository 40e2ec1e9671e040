//! Integration tests against a real control plane (etcd + kube-apiserver, plus
//! kube-controller-manager, kube-scheduler and kwok where a test needs them).
//!
//! All tests in this binary share one control plane (started by the first test that needs it)
//! and each works in its own namespace. The binaries come from testbins/build.sh; if they are
//! missing the tests fail and say how to build them.

mod binary;
mod chart;
mod controller;
mod crds;
mod cronjobs;
mod csi;
mod decisions;
mod durability;
mod explain;
mod fixtures;
mod governor;
mod ha;
mod keyed;
mod keylevel;
mod kinds;
mod notify;
mod observability;
mod options;
mod pipeline;
mod rbac;
mod reload;
mod smoke;
mod stale;
mod support;
mod upstream_rbac;
