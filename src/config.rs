//! Command-line flags and environment variables, validated into [`Settings`] before anything starts.
//!
//! Flag names follow stakater/Reloader where it has them, so existing manifests keep working.
//! Bad values fail here, at startup, with a message that names the flag and what it accepts.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::Parser;

use crate::error::Error;

/// The kube-reloader command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "kube-reloader",
    version,
    about = "Rolls Deployments, StatefulSets, DaemonSets and more when the ConfigMaps and Secrets they use change.",
    long_about = "Rolls Deployments, StatefulSets, DaemonSets and more when the ConfigMaps and Secrets they \
                  use change. A drop-in replacement for stakater/Reloader: same annotations, flags, env-var \
                  names and hash values.\n\nConnects with KUBECONFIG, ~/.kube/config or the in-cluster \
                  service account, in that order."
)]
pub struct Cli {
    /// Log format: "json" for JSON lines, "" or "text" for human-readable text.
    #[arg(long, default_value = "")]
    pub log_format: String,

    /// Log level: trace, debug, info, warn(ing), error, fatal or panic (fatal and panic log as error).
    #[arg(long, default_value = "info")]
    pub log_level: String,

    /// Address of the HTTP server for /live, /ready and /metrics, as host:port or :port.
    #[arg(long, default_value = ":9090", env = "KUBE_RELOADER_HTTP_ADDR")]
    pub http_addr: String,

    /// Seconds to wait for the Kubernetes API server to answer at startup before giving up.
    #[arg(long, default_value_t = 30, env = "KUBE_RELOADER_API_TIMEOUT_SECONDS")]
    pub api_timeout_seconds: u64,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Validated settings the controller runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Log output format.
    pub log_format: LogFormat,
    /// Level filter for our own log lines.
    pub log_level: tracing::Level,
    /// Warnings found while validating that must be logged once logging is up
    /// (upstream only warns on these, so we do not fail).
    pub warnings: Vec<String>,
    /// Where /live, /ready and /metrics are served.
    pub http_addr: SocketAddr,
    /// How long the startup API check may take.
    pub api_timeout: Duration,
}

impl Cli {
    /// Checks every value and turns the command line into [`Settings`].
    pub fn into_settings(self) -> Result<Settings, Error> {
        let mut warnings = Vec::new();
        let log_format = match self.log_format.as_str() {
            "" | "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                // Upstream keeps text format for unknown values; do the same, but say so.
                warnings.push(format!(
                    "unknown --log-format {other:?}; using text (accepted: \"json\", \"text\" or empty)"
                ));
                LogFormat::Text
            }
        };
        let log_level = match parse_log_level(&self.log_level) {
            Some(level) => level,
            None => {
                warnings.push(format!(
                    "unknown --log-level {:?}; using info (accepted: trace, debug, info, warn, warning, error, fatal, panic)",
                    self.log_level
                ));
                tracing::Level::INFO
            }
        };
        let http_addr = parse_listen_addr(&self.http_addr).ok_or_else(|| Error::InvalidFlag {
            flag: "--http-addr",
            value: self.http_addr.clone(),
            reason: "expected host:port or :port, e.g. \":9090\" or \"127.0.0.1:9090\"".into(),
        })?;
        if self.api_timeout_seconds == 0 {
            return Err(Error::InvalidFlag {
                flag: "--api-timeout-seconds",
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        Ok(Settings {
            log_format,
            log_level,
            warnings,
            http_addr,
            api_timeout: Duration::from_secs(self.api_timeout_seconds),
        })
    }
}

/// Maps logrus level names (upstream's) onto tracing levels.
fn parse_log_level(value: &str) -> Option<tracing::Level> {
    use tracing::Level;
    Some(match value.to_ascii_lowercase().as_str() {
        "trace" => Level::TRACE,
        "debug" => Level::DEBUG,
        "info" => Level::INFO,
        "warn" | "warning" => Level::WARN,
        "error" | "fatal" | "panic" => Level::ERROR,
        _ => return None,
    })
}

/// Parses `host:port`, `[v6]:port` or `:port` (all interfaces, like Go's net/http).
fn parse_listen_addr(value: &str) -> Option<SocketAddr> {
    if let Some(port) = value.strip_prefix(':') {
        let port: u16 = port.parse().ok()?;
        return Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Some(addr);
    }
    let (host, port) = value.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    match host {
        "localhost" => Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Result<Cli, clap::Error> {
        let mut full = vec!["kube-reloader"];
        full.extend_from_slice(args);
        Cli::try_parse_from(full)
    }

    #[test]
    fn defaults_match_upstream() {
        let settings = cli(&[]).unwrap().into_settings().unwrap();
        assert_eq!(settings.log_format, LogFormat::Text);
        assert_eq!(settings.log_level, tracing::Level::INFO);
        assert_eq!(settings.http_addr, "0.0.0.0:9090".parse().unwrap());
        assert!(settings.warnings.is_empty());
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen_addr(":8080"),
            Some("0.0.0.0:8080".parse().unwrap())
        );
        assert_eq!(
            parse_listen_addr("127.0.0.1:0"),
            Some("127.0.0.1:0".parse().unwrap())
        );
        assert_eq!(
            parse_listen_addr("[::1]:9090"),
            Some("[::1]:9090".parse().unwrap())
        );
        assert_eq!(
            parse_listen_addr("localhost:9"),
            Some("127.0.0.1:9".parse().unwrap())
        );
        for bad in ["", "9090", ":", ":99999", "example.com:80", "1.2.3.4"] {
            assert_eq!(parse_listen_addr(bad), None, "{bad:?} should be rejected");
        }
    }

    #[test]
    fn bad_http_addr_names_the_flag() {
        let err = cli(&["--http-addr", "nonsense"])
            .unwrap()
            .into_settings()
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("--http-addr") && msg.contains("nonsense"),
            "{msg}"
        );
    }

    #[test]
    fn log_levels_accept_logrus_names() {
        for (name, level) in [
            ("trace", tracing::Level::TRACE),
            ("Debug", tracing::Level::DEBUG),
            ("warning", tracing::Level::WARN),
            ("fatal", tracing::Level::ERROR),
            ("panic", tracing::Level::ERROR),
        ] {
            assert_eq!(parse_log_level(name), Some(level), "{name}");
        }
        let settings = cli(&["--log-level", "loud"])
            .unwrap()
            .into_settings()
            .unwrap();
        assert_eq!(settings.log_level, tracing::Level::INFO);
        assert!(settings.warnings[0].contains("--log-level"));
    }

    #[test]
    fn unknown_log_format_warns_and_keeps_text() {
        let settings = cli(&["--log-format", "logfmt", "--log-level", "debug"])
            .unwrap()
            .into_settings()
            .unwrap();
        assert_eq!(settings.log_format, LogFormat::Text);
        // Unlike upstream, an unknown format does not drop --log-level.
        assert_eq!(settings.log_level, tracing::Level::DEBUG);
        assert_eq!(settings.warnings.len(), 1);
    }

    #[test]
    fn unknown_flag_is_rejected() {
        let err = cli(&["--no-such-flag"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
    }

    #[test]
    fn zero_timeout_is_rejected() {
        let err = cli(&["--api-timeout-seconds", "0"])
            .unwrap()
            .into_settings()
            .unwrap_err();
        assert!(err.to_string().contains("--api-timeout-seconds"));
    }
}
