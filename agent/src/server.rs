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

use crate::access::{AccessLayer, Policy};
use crate::agent::Agent;
use crate::config::Config;
use crate::host_shutdown::HostState;
use crate::notify;
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
    /// The audit log cannot be opened.
    #[error("cannot open the audit log {path}")]
    Audit {
        /// Its path.
        path: std::path::PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS material could not be loaded.
    #[error("cannot set up mutual TLS")]
    Tls(#[source] crate::tls::TlsError),
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

/// Says so, loudly, when the state dir's disk is nearly full at start. The
/// agent starts all the same: etcd needs its supervisor most when the disk
/// is full. What needs room (a snapshot, an upload) is refused on its own
/// with the numbers, and the metrics carry the free space.
fn warn_if_short_of_space(state_dir: &std::path::Path) {
    let free = crate::datadir::free_bytes(state_dir);
    if free < crate::snapshot::UPLOAD_HEADROOM {
        tracing::error!(
            state_dir = %state_dir.display(),
            free,
            "the state dir's disk is nearly full: snapshots and uploads will be refused until there is room; etcd \
             is supervised as always"
        );
    }
}

/// How often an HTTP/2 ping checks an idle connection's peer.
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
/// How long a ping may go unanswered before the connection is closed.
const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Calls at once on one connection.
const MAX_STREAMS_PER_CONNECTION: u32 = 128;

/// How the agent fits into the host, beyond its config.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Forward etcd's output to journald at this socket (see
    /// [`crate::journal`]); set when the agent itself logs to journald.
    pub etcd_log_to_journal: Option<std::path::PathBuf>,
}

/// Starts the agent and serves until `shutdown` resolves. etcd keeps
/// running after the agent stops.
pub async fn run(
    config: Config,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    notify::status("starting: taking the state dir, adopting or starting etcd");
    // Certificates are read before anything starts: a bad file is a
    // refusal to start, not an agent that answers nobody.
    let tls = config
        .tls
        .as_ref()
        .map(crate::tls::load)
        .transpose()
        .map_err(ServeError::Tls)?;
    let token = CancellationToken::new();
    let agent: Arc<Agent> = Agent::start(config.clone(), token.clone())
        .await
        .map_err(ServeError::Start)?;
    if let Some(socket) = options.etcd_log_to_journal {
        crate::journal::spawn_forwarder(agent.logs(), socket, token.clone());
    }
    // Follow streams never end on their own; they end when shutdown starts,
    // or the server's graceful drain would wait for them forever. Background
    // tasks (supervisor, log follower) stop only after the drain, so an RPC
    // still in flight can finish.
    let streams = CancellationToken::new();
    let rotation = crate::audit::Rotation {
        max_bytes: config.limits.audit_log_max_bytes,
        keep: config.limits.audit_log_files,
    };
    let audit = crate::audit::AuditLog::open_with(&config.state_dir, rotation).map_err(|source| ServeError::Audit {
        path: config.state_dir.join(crate::audit::FILE_NAME),
        source,
    })?;
    let audit = Arc::new(audit);
    warn_if_short_of_space(&config.state_dir);
    agent.snapshots().audit_to(Arc::clone(&audit));
    let service = AgentService::new(
        Arc::clone(&agent),
        streams.clone(),
        Arc::clone(&audit),
        tls.as_ref().map(|t| t.served.clone()),
    );

    let (health, health_service) = tonic_health::server::health_reporter();
    for name in crate::health::AGENT_SERVICES {
        health.set_service_status(name, ServingStatus::Serving).await;
    }
    health
        .set_service_status(service_names::MEMBER, ServingStatus::NotServing)
        .await;
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

    let rpc_metrics = Arc::new(crate::metrics::RpcMetrics::new());
    if let Some(settings) = &config.metrics {
        let https = match (settings.tls, &config.tls) {
            (true, Some(agent_tls)) => Some(crate::tls::metrics_server_config(agent_tls).map_err(ServeError::Tls)?),
            _ => None,
        };
        let listener = crate::metrics::MetricsListener::bind(settings, https.clone())
            .await
            .map_err(|source| ServeError::Bind {
                address: settings.listen,
                source,
            })?;
        tracing::info!(
            address = %listener.address(),
            https = https.is_some(),
            "serving /metrics and /healthz"
        );
        let metrics = Arc::new(crate::metrics::Metrics::new(Arc::clone(&agent), &rpc_metrics));
        listener.spawn(metrics, Arc::clone(&agent), token.clone());
    }

    let address = config.listen;
    // Bind before telling systemd we are ready, so "ready" means reachable.
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| ServeError::Bind { address, source })?;
    // The port the kernel chose, when the config says 0.
    let bound = listener.local_addr().unwrap_or(address);
    let policy = match (&tls, &config.tls) {
        (Some(tls), Some(settings)) => Policy::Mutual {
            verifier: Arc::clone(&tls.verifier),
            health_open: settings.health_without_client_cert,
        },
        _ => Policy::Insecure,
    };
    match &tls {
        Some(_) => {
            tracing::info!(address = %bound, member = %config.member.name, "steward-agent serving with mutual TLS")
        }
        None => tracing::warn!(
            address = %bound,
            member = %config.member.name,
            "steward-agent serving INSECURE: plaintext, no authentication (loopback only)"
        ),
    }
    notify::ready(&notify::describe(&agent.persisted(), &agent.process()));
    // The status line stops changing when shutdown begins (it then says
    // "stopping"); the watchdog pings until the end, though systemd stops
    // watching at STOPPING=1.
    notify::spawn_status(Arc::clone(&agent), streams.clone());
    crate::health::spawn_member_health(Arc::clone(&agent), health.clone(), streams.clone());
    crate::watchdog::spawn_if_enabled(agent.supervisor_heartbeat(), token.clone());
    let stop = token.clone();
    let router = tonic::transport::Server::builder()
        // A peer that went away without closing is found and dropped.
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .initial_stream_window_size(steward_proto::windows::STREAM_WINDOW)
        .initial_connection_window_size(steward_proto::windows::CONNECTION_WINDOW)
        .max_frame_size(Some(steward_proto::windows::MAX_FRAME))
        .layer(crate::metrics::RpcMetricsLayer::new(Arc::clone(&rpc_metrics)))
        .layer(AccessLayer::new(policy, Arc::clone(&audit), Arc::clone(&rpc_metrics)))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(AgentServer::new(service.clone()))
        .add_service(BinariesServer::new(service.clone()))
        .add_service(SnapshotsServer::new(service));
    // Whether the agent ends with its host (etcd is then stopped cleanly
    // before the network goes) or alone (etcd keeps running).
    let (host_state_sender, host_state) = tokio::sync::oneshot::channel();
    let drain = async move {
        shutdown.await;
        let state = crate::host_shutdown::host_state().await;
        match &state {
            HostState::ShuttingDown => tracing::info!(
                "the host is shutting down: etcd will be stopped cleanly once calls in flight are done, before the network goes"
            ),
            HostState::Running(system) => {
                tracing::info!(system = %system, "shutting down; etcd keeps running");
            }
            HostState::Unknown(why) => tracing::info!(%why, "shutting down; etcd keeps running"),
        }
        let _ = host_state_sender.send(state);
        streams.cancel();
        notify::stopping("stopping: finishing calls in flight; etcd keeps running");
        for name in crate::health::AGENT_SERVICES.into_iter().chain([service_names::MEMBER]) {
            health.set_service_status(name, ServingStatus::NotServing).await;
        }
    };
    let handshake_metrics = rpc_metrics;
    let result = match tls {
        Some(tls) => {
            let caps = crate::accept::ConnectionCaps {
                total: config.limits.max_connections,
                per_peer: config.limits.max_connections_per_peer,
            };
            let connections = crate::accept::tls_connections(
                listener,
                tokio_rustls::TlsAcceptor::from(tls.config),
                caps,
                Some(Arc::clone(&handshake_metrics)),
            );
            let incoming = tokio_stream::StreamExt::map(
                tokio_stream::wrappers::ReceiverStream::new(connections),
                |(stream, _peer)| Ok::<_, std::io::Error>(stream),
            );
            router.serve_with_incoming_shutdown(incoming, drain).await
        }
        None => {
            router
                .serve_with_incoming_shutdown(crate::accept::plaintext_connections(listener), drain)
                .await
        }
    };
    // An operation whose caller went away runs in its own task; let it end
    // (a switch reverts by itself if it fails) before the runtime goes.
    let limit = config.supervision.activate_timeout.saturating_mul(2) + config.supervision.stop_grace;
    notify::status(&format!(
        "stopping: letting a running operation finish (up to {}); etcd keeps running",
        humantime::format_duration(limit)
    ));
    if let Some(running) = agent.drain(limit).await {
        tracing::warn!(%running, ?limit, "shutting down with an operation still running");
    }
    if host_state.await == Ok(HostState::ShuttingDown) {
        notify::status("stopping: the host is shutting down; stopping etcd cleanly");
        match agent.stop_etcd_for_host_shutdown().await {
            Ok(()) => tracing::info!("etcd stopped cleanly for the host's shutdown; it starts again with the host"),
            Err(error) => tracing::error!(%error, "cannot stop etcd for the host's shutdown"),
        }
    }
    stop.cancel();
    result.map_err(|source| ServeError::Serve { address, source })
}
