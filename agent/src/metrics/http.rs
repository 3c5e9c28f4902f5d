//! The metrics listener: `GET /metrics` (the OpenMetrics text format, which
//! Prometheus reads) and `GET /healthz` (200 while the member serves, 503
//! with the reason otherwise), over HTTP or, with `tls = true`, HTTPS with
//! the agent's own certificate.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use super::Metrics;
use crate::agent::Agent;
use crate::config::MetricsSettings;
use crate::state::PersistedState;
use crate::supervisor::ProcessStatus;

/// Scrapers at once: Prometheus servers and probes are few.
const SCRAPERS: crate::accept::ConnectionCaps = crate::accept::ConnectionCaps {
    total: 64,
    per_peer: 16,
};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug)]
struct Shared {
    metrics: Arc<Metrics>,
    agent: Arc<Agent>,
}

/// What `/healthz` answers for `state` and `process`: whether the member
/// serves, and a line that says why.
#[must_use]
pub fn healthz(state: &PersistedState, process: &ProcessStatus) -> (bool, String) {
    let serving = crate::health::member_serving(state, process);
    let etcd = match (&process.record, &process.last_exit) {
        (Some(record), _) => format!("etcd {} runs as pid {}", record.version, record.pid),
        (None, Some(exit)) => format!("etcd is not running (last exit: {exit})"),
        (None, None) => "etcd is not running".to_owned(),
    };
    let mut line = format!(
        "{}: agent {}, {etcd}",
        if serving { "ok" } else { "not serving" },
        state.state
    );
    if !state.state_reason.is_empty() && !serving {
        line.push_str(": ");
        line.push_str(&state.state_reason);
    }
    (serving, line)
}

async fn serve_metrics(State(shared): State<Shared>) -> Response {
    match shared.metrics.render() {
        Ok(text) => ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot render the metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot render the metrics\n").into_response()
        }
    }
}

async fn health(State(shared): State<Shared>) -> Response {
    let (serving, line) = healthz(&shared.agent.persisted(), &shared.agent.process());
    let status = if serving {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, format!("{line}\n")).into_response()
}

/// TLS connections for axum.
struct TlsListener {
    connections: crate::accept::Connections,
    local: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = crate::accept::Connection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.connections.recv().await {
            Some(connection) => connection,
            // The accepting task ended: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// A bound metrics listener, not yet serving.
#[derive(Debug)]
pub struct MetricsListener {
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    address: SocketAddr,
}

impl MetricsListener {
    /// Binds `settings.listen`; `tls` when HTTPS is asked for.
    ///
    /// # Errors
    /// The bind error.
    pub async fn bind(settings: &MetricsSettings, tls: Option<Arc<rustls::ServerConfig>>) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(settings.listen).await?;
        let address = listener.local_addr()?;
        Ok(Self { listener, tls, address })
    }

    /// The bound address (the port the kernel chose for port 0).
    #[must_use]
    pub const fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves `metrics` and the health of `agent` until `stop`.
    pub fn spawn(self, metrics: Arc<Metrics>, agent: Arc<Agent>, stop: CancellationToken) {
        let router = Router::new()
            .route("/metrics", get(serve_metrics))
            .route("/healthz", get(health))
            .with_state(Shared { metrics, agent });
        let address = self.address;
        tokio::spawn(async move {
            let result = match self.tls {
                Some(tls) => {
                    let listener = TlsListener {
                        connections: crate::accept::tls_connections(
                            self.listener,
                            tokio_rustls::TlsAcceptor::from(tls),
                            SCRAPERS,
                            None,
                        ),
                        local: address,
                    };
                    axum::serve(listener, router)
                        .with_graceful_shutdown(stop.cancelled_owned())
                        .await
                }
                None => {
                    let listener =
                        axum::serve::ListenerExt::tap_io(self.listener, |tcp: &mut tokio::net::TcpStream| {
                            crate::accept::send_at_once(tcp);
                        });
                    axum::serve(listener, router)
                        .with_graceful_shutdown(stop.cancelled_owned())
                        .await
                }
            };
            if let Err(error) = result {
                tracing::error!(%address, %error, "the metrics listener failed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::tests::{running, state};
    use crate::state::AgentState;

    #[test]
    fn healthz_says_why_the_member_does_not_serve() {
        let (serving, line) = healthz(&state(AgentState::Running, Some("3.5.30")), &running("3.5.30", 42));
        assert!(serving);
        assert_eq!(line, "ok: agent RUNNING, etcd 3.5.30 runs as pid 42");

        let mut failed = state(AgentState::Failed, Some("3.5.30"));
        failed.state_reason = "etcd crashed 5 times in a row".to_owned();
        let exited = ProcessStatus {
            last_exit: Some("exit status 1".to_owned()),
            ..ProcessStatus::default()
        };
        let (serving, line) = healthz(&failed, &exited);
        assert!(!serving);
        assert_eq!(
            line,
            "not serving: agent FAILED, etcd is not running (last exit: exit status 1): etcd crashed 5 times in a row"
        );
    }
}
