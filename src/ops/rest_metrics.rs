//! client-go's REST client metrics (`rest_client_requests_total`,
//! `rest_client_request_duration_seconds`) for every request kube-rs makes, as a tower layer on
//! the client, so dashboards built for upstream keep their API-traffic panels.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use tower::{Layer, Service};

use crate::ops::metrics::{RestDurationLabels, RestRequestLabels};

/// Counts and times API requests.
#[derive(Clone, Debug)]
pub struct RestMetricsLayer {
    requests: Family<RestRequestLabels, Counter>,
    duration: Family<RestDurationLabels, Histogram, fn() -> Histogram>,
    host: String,
}

impl RestMetricsLayer {
    /// A layer recording into these families, labelling requests with the API server's `host`.
    pub fn new(
        requests: Family<RestRequestLabels, Counter>,
        duration: Family<RestDurationLabels, Histogram, fn() -> Histogram>,
        host: String,
    ) -> Self {
        Self {
            requests,
            duration,
            host,
        }
    }
}

impl<S> Layer<S> for RestMetricsLayer {
    type Service = RestMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RestMetrics {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`RestMetricsLayer`] wraps around the client's stack.
#[derive(Clone, Debug)]
pub struct RestMetrics<S> {
    inner: S,
    layer: RestMetricsLayer,
}

impl<S, B, R> Service<Request<B>> for RestMetrics<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    R: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let method = request.method().as_str().to_owned();
        let layer = self.layer.clone();
        let started = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let result = response.await;
            let code = match &result {
                Ok(response) => response.status().as_u16().to_string(),
                Err(_) => "<error>".to_owned(),
            };
            layer
                .duration
                .get_or_create(&RestDurationLabels {
                    verb: method.clone(),
                    host: layer.host.clone(),
                })
                .observe(started.elapsed().as_secs_f64());
            layer
                .requests
                .get_or_create(&RestRequestLabels {
                    code,
                    method,
                    host: layer.host,
                })
                .inc();
            result
        })
    }
}
