//! The Kubernetes API client: kube-rs's default service stack, built here so that hyper's
//! per-connection read buffer can be capped.
//!
//! hyper doubles a connection's read buffer whenever a read fills it, up to ~400 KiB, and keeps
//! it for as long as the connection lives. Every watch holds a connection of its own, and the
//! initial lists of large Secrets grow each buffer to the maximum: at 20,000 Secrets x 10 KiB,
//! 1.8 MB of read buffers stayed allocated after the sync (heaptrack), for streams that then carry
//! a few hundred bytes per event. kube's `ClientBuilder::try_from(Config)` does not expose the
//! hyper builder, so [`client`] assembles the same layers from kube's public parts (timeouts,
//! TLS from the config, base URI, retries on 429/503/504, credentials, extra headers) with
//! [`READ_BUFFER_MAX`]. Left out: kube's per-request debug-level tracing spans (the
//! `rest_client_*` metrics count and time every request), and the expiry date kube attaches to
//! a client whose certificate an exec plugin issued (`Client::valid_until`, which kube leaves to
//! the caller to check, and which nothing here checked).

use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::ConfigExt;
use kube::client::retry::RetryPolicy;
use tower::ServiceBuilder;
use tower::retry::RetryLayer;

use crate::ops::rest_metrics::RestMetricsLayer;

/// The most a connection's read buffer grows to. Far above any response head the API server
/// sends (hyper needs the head to fit), and twice the largest TLS record: a larger buffer only
/// saves read calls while an initial list streams.
pub const READ_BUFFER_MAX: usize = 32 * 1024;

/// A client for `config`, recording `rest_client_*` metrics through `metrics` when given.
pub fn client(
    config: kube::Config,
    metrics: Option<RestMetricsLayer>,
) -> Result<kube::Client, kube::Error> {
    if let Some(proxy_url) = &config.proxy_url {
        // As kube without its proxy features: our build has none.
        return Err(match proxy_url.scheme_str() {
            Some("socks5") => kube::Error::ProxyProtocolDisabled {
                proxy_url: Box::new(proxy_url.clone()),
                protocol_feature: "kube/socks5",
            },
            Some("http" | "https") => kube::Error::ProxyProtocolDisabled {
                proxy_url: Box::new(proxy_url.clone()),
                protocol_feature: "kube/http-proxy",
            },
            _ => kube::Error::ProxyProtocolUnsupported {
                proxy_url: Box::new(proxy_url.clone()),
            },
        });
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let mut connector =
        hyper_timeout::TimeoutConnector::new(config.rustls_https_connector_with_connector(http)?);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let hyper: HyperClient<_, kube::client::Body> = HyperClient::builder(TokioExecutor::new())
        .http1_max_buf_size(READ_BUFFER_MAX)
        .build(connector);
    let service = ServiceBuilder::new()
        .option_layer(metrics)
        .layer(config.base_uri_layer())
        .option_layer(
            config
                .default_retry
                .then(|| RetryLayer::new(RetryPolicy::server_retry())),
        )
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(hyper);
    Ok(kube::Client::new(service, config.default_namespace))
}
