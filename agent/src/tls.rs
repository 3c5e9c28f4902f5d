//! Mutual TLS on the agent API: TLS 1.3 only, the agent's own certificate,
//! and the check of a caller's certificate in the handshake
//! ([`crate::caller_cert`]): a certificate of another CA, expired, or not
//! fit for a caller ends the handshake, before the caller can make the
//! agent do or write anything. A caller with no certificate completes the
//! handshake, and each of its calls gets a gRPC UNAUTHENTICATED that says
//! why (see [`crate::access`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::AgentTls;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("cannot read {what} from {path}: {reason}")]
    Pem {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// rustls refused the material.
    #[error("cannot set up TLS: {0}")]
    Rustls(String),
}

/// The server side of the agent's mutual TLS.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// For the acceptor.
    pub config: Arc<rustls::ServerConfig>,
    /// The full check of a client's chain against the configured CA, run
    /// by [`crate::access`] on every call.
    pub verifier: Arc<dyn ClientCertVerifier>,
    /// What the served certificate says, for GetStatus.
    pub served: steward_proto::v1::ServedCertificate,
}

/// The subject, end and names of the leaf certificate `der`; empty fields
/// where it cannot be parsed (rustls accepted it, so it is one).
fn describe_served(der: &CertificateDer<'_>) -> steward_proto::v1::ServedCertificate {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return steward_proto::v1::ServedCertificate::default();
    };
    let mut sans = Vec::new();
    if let Ok(Some(extension)) = cert.subject_alternative_name() {
        for name in &extension.value.general_names {
            match name {
                GeneralName::DNSName(dns) => sans.push((*dns).to_owned()),
                GeneralName::IPAddress(bytes) => {
                    if let Ok(octets) = <[u8; 4]>::try_from(*bytes) {
                        sans.push(std::net::Ipv4Addr::from(octets).to_string());
                    } else if let Ok(octets) = <[u8; 16]>::try_from(*bytes) {
                        sans.push(std::net::Ipv6Addr::from(octets).to_string());
                    }
                }
                _ => {}
            }
        }
    }
    steward_proto::v1::ServedCertificate {
        subject: cert.subject().to_string(),
        not_after: Some(prost_types::Timestamp {
            seconds: cert.validity().not_after.timestamp(),
            nanos: 0,
        }),
        sans,
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file (at least one); `what` names the file in
/// the error.
///
/// # Errors
/// [`TlsError::Pem`] when the file cannot be read or holds no certificate.
pub fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |reason: String| TlsError::Pem {
        what,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem("no certificate in the file".into()));
    }
    Ok(certs)
}

/// Loads the agent's certificate and key and the client CA.
///
/// # Errors
/// [`TlsError`] naming the file that is missing or unusable.
pub fn load(tls: &AgentTls) -> Result<ServerTls, TlsError> {
    let chain = certificates("the agent certificate", &tls.cert_file)?;
    let served = chain.first().map(describe_served).unwrap_or_default();
    let key = private_key("the agent key", &tls.key_file)?;
    let verifier = client_verifier(certificates("the client CA", &tls.client_ca_file)?).map_err(|e| match e {
        TlsError::Rustls(reason) => TlsError::Pem {
            what: "the client CA",
            path: tls.client_ca_file.clone(),
            reason,
        },
        other => other,
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_client_cert_verifier(Arc::clone(&verifier))
        .with_single_cert(chain, key)
        .map_err(|e| key_error(&e, "the agent key", &tls.key_file, &tls.cert_file))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(ServerTls {
        config: Arc::new(config),
        served,
        verifier,
    })
}

/// HTTPS for the metrics listener: the agent's own certificate and key,
/// no client certificate (Prometheus scrapes with the CA alone).
///
/// # Errors
/// [`TlsError`] naming the file that is missing or unusable.
pub fn metrics_server_config(tls: &AgentTls) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = certificates("the agent certificate", &tls.cert_file)?;
    let key = private_key("the agent key", &tls.key_file)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| key_error(&e, "the agent key", &tls.key_file, &tls.cert_file))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn private_key(what: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Pem {
        what,
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Checks a certificate and its key, as [`load`] does for the agent's own:
/// both files load, and the key belongs to the certificate.
///
/// # Errors
/// [`TlsError::Pem`] naming the file that is unusable (the key file when the
/// two do not match).
pub fn check_pair(what: &'static str, key_what: &'static str, cert: &Path, key: &Path) -> Result<(), TlsError> {
    let chain = certificates(what, cert)?;
    let key_der = private_key(key_what, key)?;
    rustls::sign::CertifiedKey::from_der(chain, key_der, &provider())
        .map_err(|e| key_error(&e, key_what, key, cert))?;
    Ok(())
}

/// A key that rustls refuses, in words that name both files.
fn key_error(error: &rustls::Error, what: &'static str, key: &Path, cert: &Path) -> TlsError {
    let reason = match error {
        rustls::Error::InconsistentKeys(_) => format!("it is not the key of the certificate {}", cert.display()),
        other => format!("{other} (certificate {})", cert.display()),
    };
    TlsError::Pem {
        what,
        path: key.to_owned(),
        reason,
    }
}

/// Checks a CA file, as [`load`] does for the client CA: it holds
/// certificates that can serve as trust anchors.
///
/// # Errors
/// [`TlsError::Pem`] naming the file.
pub fn check_ca(what: &'static str, path: &Path) -> Result<(), TlsError> {
    client_verifier(certificates(what, path)?).map_err(|e| match e {
        TlsError::Rustls(reason) => TlsError::Pem {
            what,
            path: path.to_owned(),
            reason,
        },
        other => other,
    })?;
    Ok(())
}

/// The full check of a client certificate: a chain to one of `cas`, valid
/// now, for client authentication, and the caller checks of
/// [`crate::caller_cert`].
///
/// # Errors
/// [`TlsError::Rustls`] when a CA certificate is unusable.
pub fn client_verifier(cas: Vec<CertificateDer<'static>>) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in &cas {
        roots.add(ca.clone()).map_err(|e| TlsError::Rustls(e.to_string()))?;
    }
    let chain = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    Ok(Arc::new(crate::caller_cert::CallerVerifier::new(chain, cas)))
}
