//! Log output in text or JSON (`--log-format=json`), filtered by `--log-level`.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::error::Error;

/// Installs the global log subscriber; writes to stderr.
///
/// `filter` (`RUST_LOG`), when set, replaces the filter entirely (for debugging dependencies);
/// otherwise our own lines follow `level` and libraries log warnings and errors only.
pub fn init(format: LogFormat, level: tracing::Level, filter: Option<&str>) -> Result<(), Error> {
    let filter = match filter {
        Some(directives) => EnvFilter::try_new(directives)
            .map_err(|e| Error::Logging(format!("invalid RUST_LOG {directives:?}: {e}")))?,
        None => EnvFilter::new(format!("warn,kube_reloader={level}")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
    result.map_err(|e| Error::Logging(e.to_string()))
}
