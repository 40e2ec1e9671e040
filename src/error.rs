//! Errors the controller reports to its operator; each message names the cause and the fix.

use std::net::SocketAddr;

/// Everything that can stop kube-reloader from starting or keep it from running.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag or environment variable holds a value we cannot use.
    #[error("invalid value {value:?} for {flag}: {reason}")]
    InvalidFlag {
        /// The flag (or env var) as the user wrote it, e.g. `--http-addr`.
        flag: &'static str,
        /// The rejected value.
        value: String,
        /// What is accepted instead.
        reason: String,
    },

    /// The HTTP client for webhooks or alerts cannot be set up.
    #[error("cannot set up notifications: {0}")]
    Notifier(String),

    /// No kubeconfig and no in-cluster service account were found.
    #[error(
        "no Kubernetes client configuration found: {0}\n  fix: set KUBECONFIG to a kubeconfig file, \
         create ~/.kube/config, or run kube-reloader in a pod with a service account token mounted"
    )]
    NoClientConfig(#[source] kube::config::InferConfigError),

    /// The client configuration exists but cannot be turned into a working client.
    #[error("cannot build a Kubernetes client for {server}: {source}\n  fix: {fix}")]
    ClientSetup {
        /// The API server URL from the configuration.
        server: String,
        /// The underlying error.
        #[source]
        source: kube::Error,
        /// What the user should check.
        fix: &'static str,
    },

    /// The API server did not answer the startup check.
    #[error("cannot reach the Kubernetes API server at {server}: {cause}\n  fix: {fix}")]
    ApiUnreachable {
        /// The API server URL from the configuration.
        server: String,
        /// Why the request failed, in words.
        cause: String,
        /// What the user should check.
        fix: String,
    },

    /// The HTTP endpoint (/live, /ready, /metrics) could not be opened.
    #[error(
        "cannot listen for HTTP on {addr}: {source}\n  fix: choose a free address with --http-addr"
    )]
    HttpBind {
        /// The address we tried to bind.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// The HTTP server failed while running.
    #[error("HTTP server failed: {0}")]
    HttpServe(#[source] std::io::Error),

    /// Leader election could not start.
    #[error(
        "cannot start leader election: {0}\n  fix: grant get, create, update and patch on coordination.k8s.io leases in the pod's namespace"
    )]
    LeaderElection(String),

    /// Logging could not be initialised (a global subscriber was already set).
    #[error("cannot initialise logging: {0}")]
    Logging(String),
}
