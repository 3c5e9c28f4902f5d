//! A probe of what an agent makes of one TLS connection: refused in (or
//! right after) the handshake, or served. It speaks TLS itself, one
//! connection per probe: a gRPC channel reconnects on its own each time the
//! agent closes its connection, for as long as it likes, and hides what the
//! agent answered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use steward_coordinator::engine::connect::agent::AgentTlsFiles;
use steward_coordinator::engine::connect::tls_probe::client_config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long the agent may take to refuse or serve a caller: past its own
/// handshake time limit.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// A TLS client that shows the certificate in `files`.
#[must_use]
pub fn tls_connector(files: &AgentTlsFiles) -> tokio_rustls::TlsConnector {
    let config = client_config(files).unwrap_or_else(|| panic!("a usable client certificate in {files:?}"));
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// What the agent made of one connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Probe {
    /// Closed it, in the handshake or at once after it.
    Refused,
    /// Answered the HTTP/2 preface: the caller could make calls.
    Served,
}

/// Opens one connection to `address`, finishes the TLS handshake as far as
/// the agent lets it, and sends the HTTP/2 preface a gRPC client sends. An
/// agent that accepted the caller answers with its own settings frame.
pub async fn probe(address: SocketAddr, connector: &tokio_rustls::TlsConnector) -> Probe {
    /// The client's connection preface, then an empty settings frame.
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";
    let attempt = async {
        let Ok(tcp) = tokio::net::TcpStream::connect(address).await else {
            return Probe::Refused;
        };
        let name = ServerName::IpAddress(address.ip().into());
        let Ok(mut tls) = connector.connect(name, tcp).await else {
            return Probe::Refused;
        };
        if tls.write_all(PREFACE).await.is_err() || tls.flush().await.is_err() {
            return Probe::Refused;
        }
        let mut answer = [0_u8; 1];
        match tls.read(&mut answer).await {
            Ok(0) | Err(_) => Probe::Refused,
            Ok(_) => Probe::Served,
        }
    };
    tokio::time::timeout(ANSWER_WITHIN, attempt)
        .await
        .unwrap_or_else(|_| panic!("the agent neither refused nor served a connection within {ANSWER_WITHIN:?}"))
}
