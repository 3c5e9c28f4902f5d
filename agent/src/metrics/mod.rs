//! Prometheus metrics of the agent, and `/healthz`, on a listener of their
//! own (`[metrics]` in the config; none without it). See `docs/metrics.md`
//! for every metric and a sample alert set.

mod collect;
mod http;
mod rpc;

use std::sync::Arc;

use prometheus_client::registry::Registry;

pub use collect::{AgentCollector, WatchedCertificate, watched_certificates};
pub use http::{MetricsListener, healthz};
pub use rpc::{RpcMetrics, RpcMetricsLayer, code_name};

use crate::agent::Agent;

/// The prefix of every metric name.
pub const PREFIX: &str = "steward_agent";

/// Everything a scrape shows.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// The metrics of `agent`, with the call counts of `rpc`.
    #[must_use]
    pub fn new(agent: Arc<Agent>, rpc: &Arc<RpcMetrics>) -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let certificates = watched_certificates(agent.config());
        registry.register_collector(Box::new(AgentCollector::new(agent, certificates)));
        rpc.register(&mut registry);
        Self { registry }
    }

    /// The text exposition of every metric.
    ///
    /// # Errors
    /// When a value cannot be written (a formatter error).
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}
