//! Where an agent listens and how to connect to it. This is the one place
//! that builds a gRPC channel to an agent, so transport security (mTLS) is
//! added here and nowhere else.

use std::path::{Path, PathBuf};
use std::time::Duration;

use steward_proto::v1::{
    agent_client::AgentClient, binaries_client::BinariesClient, snapshots_client::SnapshotsClient,
};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::engine::address::Scheme;
pub use crate::engine::address::{AddressError, AgentAddress};
use crate::engine::connect::Connector;
use crate::engine::error::Error;

/// How long to wait for the TCP connection and HTTP/2 handshake to an agent.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The files of this process's identity towards agents: the CA that signed
/// the agents' certificates, and this caller's certificate (which carries
/// its role) and key.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentTlsFiles {
    /// The CA of the agents' certificates (PEM).
    pub cacert: PathBuf,
    /// This caller's certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

impl AgentTlsFiles {
    /// The same files, relative paths taken from `base`.
    #[must_use]
    pub fn relative_to(&self, base: &Path) -> Self {
        let resolve = |path: &Path| {
            if path.is_absolute() {
                path.to_owned()
            } else {
                base.join(path)
            }
        };
        Self {
            cacert: resolve(&self.cacert),
            cert: resolve(&self.cert),
            key: resolve(&self.key),
        }
    }
}

fn endpoint(connector: &Connector, address: &AgentAddress) -> Result<Endpoint, Error> {
    let mismatch = |problem| Error::SchemeMismatch {
        address: address.clone(),
        problem,
    };
    let Some(tls) = connector.agent_tls().cloned() else {
        if address.written_scheme() == Scheme::Https {
            return Err(mismatch(
                "https:// needs this caller's agent TLS: --agent-cacert, --agent-cert and --agent-key, or the \
                 cluster file's [agent_tls]",
            ));
        }
        return Ok(Endpoint::from(Uri::clone(address.uri())));
    };
    if address.written_scheme() == Scheme::Http {
        // Quietly using TLS for http:// would hide a wrong address or a
        // wrong belief about the agent.
        return Err(mismatch(
            "http:// means plaintext, but this caller has agent TLS: write https://host:port or host:port",
        ));
    }
    let unreachable = |source| Error::Unreachable {
        address: address.clone(),
        source,
    };
    let host = address
        .uri()
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let endpoint = Endpoint::from_shared(format!("https://{address}"))
        .map_err(unreachable)?
        .tls_config(tls.domain_name(host))
        .map_err(unreachable)?;
    Ok(endpoint)
}

/// Clients for the agent's three services, sharing one connection.
#[derive(Clone, Debug)]
pub struct AgentClients {
    /// Where the agent is; every error names it.
    pub address: AgentAddress,
    /// Whether the connection is plaintext (no agent TLS was configured):
    /// a dropped connection then most likely means the agent wants mTLS.
    pub plaintext: bool,
    /// Lifecycle: status, flags, version switches, logs.
    pub agent: AgentClient<Channel>,
    /// The binary store.
    pub binaries: BinariesClient<Channel>,
    /// Snapshots.
    pub snapshots: SnapshotsClient<Channel>,
}

/// Connects to the agent at `address`, eagerly, so an unreachable agent is
/// reported as such (naming the address) before any call is attempted.
///
/// # Errors
/// [`Error::Unreachable`] when the connection fails and
/// [`Error::ConnectTimeout`] when it does not complete within
/// [`CONNECT_TIMEOUT`].
pub async fn connect(connector: &Connector, address: &AgentAddress) -> Result<AgentClients, Error> {
    let channel = open_channel(connector, address).await?;
    Ok(clients_on(connector, address, channel))
}

async fn open_channel(connector: &Connector, address: &AgentAddress) -> Result<Channel, Error> {
    let endpoint = endpoint(connector, address)?
        .connect_timeout(CONNECT_TIMEOUT)
        .initial_stream_window_size(steward_proto::windows::STREAM_WINDOW)
        .initial_connection_window_size(steward_proto::windows::CONNECTION_WINDOW)
        .max_frame_size(steward_proto::windows::MAX_FRAME);
    tracing::debug!(%address, "connecting to the agent");
    // connect_timeout bounds the TCP connect only; the outer timeout also
    // bounds the HTTP/2 handshake with a peer that accepts and then stalls.
    let channel = match tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect()).await {
        Ok(Ok(channel)) => channel,
        Ok(Err(source)) => {
            return Err(Error::Unreachable {
                address: address.clone(),
                source,
            });
        }
        Err(_) => {
            return Err(Error::ConnectTimeout {
                address: address.clone(),
                timeout: CONNECT_TIMEOUT,
            });
        }
    };
    if let Some(files) = connector.agent_tls_files() {
        check_certificate_accepted(&channel, files, address).await?;
    }
    Ok(channel)
}

/// An agent refuses a certificate it does not accept in the TLS handshake,
/// after the client has finished its part, so the connection only fails
/// at its first call, with words that say nothing ("operation was
/// canceled"). One health check on a new connection finds out; when the
/// connection drops, a bare handshake with the same certificate reads the
/// agent's alert, which says why.
async fn check_certificate_accepted(
    channel: &Channel,
    files: &AgentTlsFiles,
    address: &AgentAddress,
) -> Result<(), Error> {
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let checked = tokio::time::timeout(
        CONNECT_TIMEOUT,
        health.check(tonic_health::pb::HealthCheckRequest::default()),
    )
    .await;
    let dropped = matches!(
        &checked,
        Ok(Err(status)) if matches!(status.code(), tonic::Code::Cancelled | tonic::Code::Unavailable | tonic::Code::Unknown)
    );
    if !dropped {
        // Answered (a refusal by status is the agent's word), or slow:
        // the calls themselves report what they meet.
        return Ok(());
    }
    match super::tls_probe::alert(files, address).await {
        Some(alert) => Err(Error::CertificateRefused {
            address: address.clone(),
            alert,
        }),
        None => Ok(()),
    }
}

fn clients_on(connector: &Connector, address: &AgentAddress, channel: Channel) -> AgentClients {
    AgentClients {
        address: address.clone(),
        plaintext: !connector.agent_uses_tls(),
        agent: AgentClient::new(channel.clone()),
        binaries: BinariesClient::new(channel.clone()),
        snapshots: SnapshotsClient::new(channel),
    }
}

/// The agent at `address` on the channel the connector's session keeps,
/// connecting (and keeping the channel) when there is none. A call that
/// fails on a kept channel should [`super::session::Session::forget`] it
/// and ask again on a fresh one: see [`kept_call`].
///
/// # Errors
/// As [`connect`].
pub async fn connect_kept(connector: &Connector, address: &AgentAddress) -> Result<(AgentClients, bool), Error> {
    if let Some(channel) = connector.session().agent(address) {
        return Ok((clients_on(connector, address, channel), true));
    }
    let channel = open_channel(connector, address).await?;
    connector.session().keep(address, channel.clone());
    Ok((clients_on(connector, address, channel), false))
}

/// Runs `call` on the kept channel of `address`; when it fails on a kept
/// channel, forgets it and runs `call` once more on a fresh connection, so
/// an agent that went away is reported as its fresh connection fails.
///
/// # Errors
/// `call`'s error, or the connection's.
pub async fn kept_call<T, F, Fut>(connector: &Connector, address: &AgentAddress, call: F) -> Result<T, AnswerError>
where
    F: Fn(AgentClients) -> Fut,
    Fut: std::future::Future<Output = Result<T, AnswerError>>,
{
    let unreachable = |e: Error| AnswerError::unreachable(&e);
    let (clients, kept) = connect_kept(connector, address).await.map_err(unreachable)?;
    match call(clients).await {
        Err(_) if kept => {
            connector.session().forget(address);
            let (clients, _) = connect_kept(connector, address).await.map_err(unreachable)?;
            call(clients).await
        }
        answer => answer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_host_port_with_or_without_a_scheme() {
        let plain: AgentAddress = "127.0.0.1:7400".parse().unwrap();
        let http: AgentAddress = "http://127.0.0.1:7400".parse().unwrap();
        let https: AgentAddress = "https://127.0.0.1:7400".parse().unwrap();
        assert_eq!(plain, http);
        assert_eq!(plain, https);
        assert_eq!(https.to_string(), "127.0.0.1:7400");
        assert_eq!(plain.written_scheme(), Scheme::None);
        assert_eq!(http.written_scheme(), Scheme::Http);
        assert_eq!(https.written_scheme(), Scheme::Https);
        assert_eq!(plain.to_string(), "127.0.0.1:7400");
        assert_eq!(plain.uri().to_string(), "http://127.0.0.1:7400/");
        let named: AgentAddress = "http://etcd-1.example:7400/".parse().unwrap();
        assert_eq!(named.to_string(), "etcd-1.example:7400");
        let v6: AgentAddress = "[::1]:7400".parse().unwrap();
        assert_eq!(v6.to_string(), "[::1]:7400");
    }

    #[test]
    fn refuses_what_is_not_host_port() {
        assert!(matches!("".parse::<AgentAddress>(), Err(AddressError::Empty)));
        assert!(matches!(
            "127.0.0.1".parse::<AgentAddress>(),
            Err(AddressError::NoPort { .. })
        ));
        assert!(matches!(
            "grpcs://127.0.0.1:7400".parse::<AgentAddress>(),
            Err(AddressError::Scheme { .. })
        ));
        assert!(matches!(
            "127.0.0.1:7400/x".parse::<AgentAddress>(),
            Err(AddressError::Extra { .. })
        ));
        assert!(matches!(
            "user@host:7400".parse::<AgentAddress>(),
            Err(AddressError::Extra { .. })
        ));
        assert!("host:notaport".parse::<AgentAddress>().is_err());
    }
}

/// Why an agent's answer to one question could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// The address does not parse.
    #[error("bad agent address {address}: {reason}")]
    BadAddress {
        /// What was given.
        address: String,
        /// Why it is not an address.
        reason: String,
    },
    /// The agent could not be reached (the connection error and its
    /// causes).
    #[error("{0}")]
    Unreachable(String),
    /// The agent refused or failed the call.
    #[error("{rpc}: {code:?}: {message}")]
    Refused {
        /// The RPC.
        rpc: &'static str,
        /// The gRPC code.
        code: tonic::Code,
        /// The agent's message.
        message: String,
    },
    /// The agent did not answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl AnswerError {
    /// The agent at `address` (as text) and its clients, or why not.
    ///
    /// # Errors
    /// The address does not parse, or the agent cannot be reached.
    pub async fn connect(connector: &Connector, address: &str) -> Result<AgentClients, Self> {
        let parsed: AgentAddress = address.parse().map_err(|e: AddressError| Self::BadAddress {
            address: address.to_owned(),
            reason: e.to_string(),
        })?;
        Self::connect_to(connector, &parsed).await
    }

    /// The agent at `address` and its clients, or why not.
    ///
    /// # Errors
    /// The agent cannot be reached.
    pub async fn connect_to(connector: &Connector, address: &AgentAddress) -> Result<AgentClients, Self> {
        connect(connector, address).await.map_err(|e| Self::unreachable(&e))
    }

    /// The agent could not be reached: the connection error with its
    /// causes.
    #[must_use]
    pub fn unreachable(error: &Error) -> Self {
        Self::Unreachable(crate::engine::error::chain(error))
    }

    /// A refusal of `rpc`.
    #[must_use]
    pub fn refused(rpc: &'static str, status: &tonic::Status) -> Self {
        Self::Refused {
            rpc,
            code: status.code(),
            message: status.message().to_owned(),
        }
    }
}
