//! Errors of the test environment; each says what failed and how to fix it.

/// Why the control plane could not be built, started or used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The control-plane binaries are missing or could not be built.
    #[error("{0}")]
    Binaries(String),
    /// A component did not start or did not become ready; the message holds its logs.
    #[error("{0}")]
    Startup(String),
    /// Creating certificates failed.
    #[error("cannot generate certificates: {0}")]
    Pki(#[from] rcgen::Error),
    /// A file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A Kubernetes API call failed.
    #[error("{context}: {source}")]
    Kube {
        /// What we were doing.
        context: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// Wraps an I/O error with what we were doing.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }

    /// Wraps a client error with what we were doing.
    pub fn kube(context: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let context = context.into();
        move |source| Self::Kube { context, source }
    }
}
