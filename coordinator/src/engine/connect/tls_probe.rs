//! Why an agent dropped a connection: a bare TLS handshake with this
//! caller's certificate, then a short read. An agent that refuses the
//! certificate sends a TLS alert that names the reason (`UnknownCA`,
//! `CertificateExpired`, `BadCertificate`); one that accepts it waits for
//! the HTTP/2 preface and sends nothing.

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::AsyncReadExt;

use super::agent::AgentTlsFiles;
use crate::engine::address::AgentAddress;

/// How long the probe waits for the agent's verdict.
const WAIT: Duration = Duration::from_secs(2);

/// The alert the agent answers this caller's certificate with, as rustls
/// words it (`received fatal alert: UnknownCA`); `None` when it sends none
/// or the probe cannot be made.
pub async fn alert(files: &AgentTlsFiles, address: &AgentAddress) -> Option<String> {
    let config = client_config(files)?;
    let host = address
        .uri()
        .host()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = address.uri().port_u16()?;
    let name = ServerName::try_from(host.clone()).ok()?;
    let probe = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await.ok()?;
        let mut tls = match tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
        {
            Ok(tls) => tls,
            Err(error) => return alert_in(&error),
        };
        let mut byte = [0_u8; 1];
        match tls.read(&mut byte).await {
            Err(error) => alert_in(&error),
            Ok(_) => None,
        }
    };
    tokio::time::timeout(WAIT, probe).await.ok().flatten()
}

fn alert_in(error: &std::io::Error) -> Option<String> {
    let text = error.to_string();
    text.contains("alert").then_some(text)
}

/// A TLS client configuration that trusts `files.cacert` and shows the
/// certificate in `files`; `None` when a file cannot be read or used.
#[must_use]
pub fn client_config(files: &AgentTlsFiles) -> Option<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&files.cacert).ok()? {
        roots.add(ca.ok()?).ok()?;
    }
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .ok()?
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    let key = PrivateKeyDer::from_pem_file(&files.key).ok()?;
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .ok()
}
