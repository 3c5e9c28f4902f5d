//! Calls to the gRPC API, counted as they end: by method and gRPC status,
//! with their duration, and the calls refused before any service code ran.
//!
//! A call ends when its response body does (a stream's status comes in
//! its trailers), or when the caller goes away first (CANCELLED). Methods
//! outside the API's own contract share one `other` label, so a caller
//! cannot grow the series with made-up paths.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The method label of a path outside the contract.
const OTHER: &str = "other";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    code: String,
}

fn duration_histogram() -> Histogram {
    // 1 ms to about 4.4 minutes: status calls at the bottom, switches and
    // GB-sized transfers at the top.
    Histogram::new(exponential_buckets(0.001, 4.0, 10))
}

/// The API's call metrics.
#[derive(Debug)]
pub struct RpcMetrics {
    calls: Family<CallLabels, Counter>,
    durations: Family<MethodLabels, Histogram, fn() -> Histogram>,
    refused: Family<RefusedLabels, Counter>,
    handshakes_failed: Counter,
    connections_refused: Counter,
    known: HashSet<String>,
}

impl Default for RpcMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// `/package.Service/Method` of every call the agent serves by contract.
fn contract_methods() -> HashSet<String> {
    use prost::Message;
    let mut known = HashSet::new();
    for set in [
        steward_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
    ] {
        let Ok(set) = prost_types::FileDescriptorSet::decode(set) else {
            continue;
        };
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    known.insert(format!("/{}.{}/{}", file.package(), service.name(), method.name()));
                }
            }
        }
    }
    known
}

/// The gRPC name of a status code (`PERMISSION_DENIED`).
#[must_use]
pub fn code_name(code: tonic::Code) -> String {
    let camel = format!("{code:?}");
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

impl RpcMetrics {
    /// Empty counters for the API's contract.
    #[must_use]
    pub fn new() -> Self {
        Self {
            calls: Family::default(),
            durations: Family::new_with_constructor(duration_histogram),
            refused: Family::default(),
            handshakes_failed: Counter::default(),
            connections_refused: Counter::default(),
            known: contract_methods(),
        }
    }

    /// Adds the metrics to `registry`.
    pub fn register(self: &Arc<Self>, registry: &mut Registry) {
        registry.register(
            "rpc_calls",
            "Calls to the agent's gRPC API that ended, by method and gRPC status",
            self.calls.clone(),
        );
        registry.register(
            "rpc_duration_seconds",
            "How long calls to the agent's gRPC API took, to the end of their response",
            self.durations.clone(),
        );
        registry.register(
            "refused_calls",
            "Calls refused before any service code ran: UNAUTHENTICATED (no or a foreign certificate) or \
             PERMISSION_DENIED (a role that may not make the call)",
            self.refused.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes on the API that failed: a client certificate of another CA, expired or unfit for \
             a caller, no TLS, or no handshake within 10 s",
            self.handshakes_failed.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections to the API closed as soon as they were accepted, over limits.max_connections or \
             limits.max_connections_per_peer",
            self.connections_refused.clone(),
        );
    }

    /// Counts a connection closed over a cap.
    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// Counts a failed TLS handshake.
    pub fn handshake_failed(&self) {
        self.handshakes_failed.inc();
    }

    /// The label of `path`.
    fn method(&self, path: &str) -> String {
        if self.known.contains(path) {
            path.trim_start_matches('/').to_owned()
        } else {
            OTHER.to_owned()
        }
    }

    /// Counts a call refused with `code` by the access check.
    pub fn refused(&self, code: tonic::Code) {
        self.refused
            .get_or_create(&RefusedLabels { code: code_name(code) })
            .inc();
    }

    fn finished(&self, method: String, code: String, took: std::time::Duration) {
        self.durations
            .get_or_create(&MethodLabels { method: method.clone() })
            .observe(took.as_secs_f64());
        self.calls.get_or_create(&CallLabels { method, code }).inc();
    }
}

/// The tower layer that counts every call to the services it wraps.
#[derive(Clone, Debug)]
pub struct RpcMetricsLayer {
    metrics: Arc<RpcMetrics>,
}

impl RpcMetricsLayer {
    /// Counts into `metrics`.
    #[must_use]
    pub const fn new(metrics: Arc<RpcMetrics>) -> Self {
        Self { metrics }
    }
}

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Counted {
            inner,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

/// See [`RpcMetricsLayer`].
#[derive(Clone, Debug)]
pub struct Counted<S> {
    inner: S,
    metrics: Arc<RpcMetrics>,
}

type Answer<E> = Pin<Box<dyn Future<Output = Result<http::Response<tonic::body::Body>, E>> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Counted<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Answer<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let finish = Finish {
            metrics: Arc::clone(&self.metrics),
            method: self.metrics.method(request.uri().path()),
            started: Instant::now(),
            header_code: None,
        };
        // The clone that was polled ready serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let mut finish = finish;
            match inner.call(request).await {
                Ok(response) => {
                    finish.header_code = grpc_status(response.headers());
                    Ok(response.map(|body| tonic::body::Body::new(Observed::new(body, finish))))
                }
                Err(error) => {
                    finish.done("UNKNOWN".to_owned());
                    Err(error)
                }
            }
        })
    }
}

/// The status in `grpc-status` of a header block, by name.
fn grpc_status(headers: &http::HeaderMap) -> Option<String> {
    let value = headers.get("grpc-status")?.to_str().ok()?.parse::<i32>().ok()?;
    Some(code_name(tonic::Code::from_i32(value)))
}

/// What is needed to count a call when it ends.
#[derive(Debug)]
struct Finish {
    metrics: Arc<RpcMetrics>,
    method: String,
    started: Instant,
    /// The status of a trailers-only response (an error before any message).
    header_code: Option<String>,
}

impl Finish {
    fn done(self, code: String) {
        self.metrics.finished(self.method, code, self.started.elapsed());
    }
}

/// A response body that counts its call when it ends or is dropped.
#[derive(Debug)]
struct Observed {
    inner: tonic::body::Body,
    finish: Option<Finish>,
}

impl Observed {
    const fn new(inner: tonic::body::Body, finish: Finish) -> Self {
        Self {
            inner,
            finish: Some(finish),
        }
    }

    fn end(&mut self, code: Option<String>) {
        if let Some(finish) = self.finish.take() {
            let code = code
                .or_else(|| finish.header_code.clone())
                .unwrap_or_else(|| "UNKNOWN".to_owned());
            finish.done(code);
        }
    }
}

impl http_body::Body for Observed {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = grpc_status(trailers);
                    self.end(code);
                }
            }
            Poll::Ready(Some(Err(status))) => self.end(Some(code_name(status.code()))),
            Poll::Ready(None) => self.end(None),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        // A body with nothing left was a trailers-only answer; anything
        // else still unread means the caller went away.
        let code = if http_body::Body::is_end_stream(&self.inner) {
            None
        } else {
            Some("CANCELLED".to_owned())
        };
        self.end(code);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_named_as_grpc_names_them() {
        assert_eq!(code_name(tonic::Code::Ok), "OK");
        assert_eq!(code_name(tonic::Code::PermissionDenied), "PERMISSION_DENIED");
        assert_eq!(code_name(tonic::Code::DeadlineExceeded), "DEADLINE_EXCEEDED");
    }

    #[test]
    fn only_the_contract_s_methods_get_their_own_label() {
        let metrics = RpcMetrics::new();
        assert_eq!(
            metrics.method("/steward.agent.v1.Agent/GetStatus"),
            "steward.agent.v1.Agent/GetStatus"
        );
        assert_eq!(
            metrics.method("/grpc.health.v1.Health/Check"),
            "grpc.health.v1.Health/Check"
        );
        assert_eq!(metrics.method("/steward.agent.v1.Agent/Made-Up-1"), OTHER);
        assert_eq!(metrics.method("/x"), OTHER);
    }
}
