//! Serves the agent's gRPC services, gRPC health (one status per service)
//! and reflection (v1 and v1alpha) until shutdown.

use std::future::Future;
use std::sync::Arc;

use steward_proto::service_names;
use steward_proto::v1::{
    agent_server::AgentServer, binaries_server::BinariesServer, snapshots_server::SnapshotsServer,
};
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;

use crate::agent::Agent;
use crate::config::Config;
use crate::service::AgentService;

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The agent could not start (state dir, recovery).
    #[error("the agent could not start")]
    Start(#[source] crate::error::AgentError),
    /// Reflection could not be built from the descriptor set.
    #[error("cannot build the reflection service")]
    Reflection(#[source] tonic_reflection::server::Error),
    /// The listen address cannot be bound.
    #[error("cannot listen on {address}")]
    Bind {
        /// The listen address.
        address: std::net::SocketAddr,
        /// The bind error.
        #[source]
        source: std::io::Error,
    },
    /// The listener failed.
    #[error("cannot serve gRPC on {address}")]
    Serve {
        /// The listen address.
        address: std::net::SocketAddr,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
}

/// Starts the agent and serves until `shutdown` resolves. etcd keeps
/// running after the agent stops.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServeError> {
    let token = CancellationToken::new();
    let agent: Arc<Agent> = Agent::start(config.clone(), token.clone())
        .await
        .map_err(ServeError::Start)?;
    // Follow streams never end on their own; they end when shutdown starts,
    // or the server's graceful drain would wait for them forever. Background
    // tasks (supervisor, log follower) stop only after the drain, so an RPC
    // still in flight can finish.
    let streams = CancellationToken::new();
    let service = AgentService::new(Arc::clone(&agent), streams.clone());

    let (health, health_service) = tonic_health::server::health_reporter();
    for name in [
        "",
        service_names::AGENT,
        service_names::BINARIES,
        service_names::SNAPSHOTS,
    ] {
        health.set_service_status(name, ServingStatus::Serving).await;
    }
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(steward_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(ServeError::Reflection)?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(steward_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(ServeError::Reflection)?;

    let address = config.listen;
    // Bind before telling systemd we are ready, so "ready" means reachable.
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| ServeError::Bind { address, source })?;
    tracing::info!(%address, member = %config.member.name, "steward-agent serving");
    notify_ready();
    let stop = token.clone();
    let result = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(AgentServer::new(service.clone()))
        .add_service(BinariesServer::new(service.clone()))
        .add_service(SnapshotsServer::new(service))
        .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), async move {
            shutdown.await;
            tracing::info!("shutting down; etcd keeps running");
            streams.cancel();
            for name in [
                "",
                service_names::AGENT,
                service_names::BINARIES,
                service_names::SNAPSHOTS,
            ] {
                health.set_service_status(name, ServingStatus::NotServing).await;
            }
        })
        .await;
    // An operation whose caller went away runs in its own task; let it end
    // (a switch reverts by itself if it fails) before the runtime goes.
    let limit = config.supervision.activate_timeout.saturating_mul(2) + config.supervision.stop_grace;
    if let Some(running) = agent.drain(limit).await {
        tracing::warn!(%running, ?limit, "shutting down with an operation still running");
    }
    stop.cancel();
    result.map_err(|source| ServeError::Serve { address, source })
}

fn notify_ready() {
    // Only meaningful under systemd (Type=notify); harmless elsewhere.
    if let Err(error) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::debug!(%error, "sd_notify failed");
    }
}
