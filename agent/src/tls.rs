//! Mutual TLS on the agent API: TLS 1.3 only, the agent's own certificate,
//! and a client certificate verifier that proves the caller holds the key
//! of the certificate it shows but leaves the check of the chain to
//! [`crate::access`]. A caller with no certificate, an expired one or one
//! from another CA then gets a gRPC UNAUTHENTICATED that says why, rather
//! than a handshake that breaks off without a word; no RPC runs for it
//! either way.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

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
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
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
    let key = PrivateKeyDer::from_pem_file(&tls.key_file).map_err(|e| TlsError::Pem {
        what: "the agent key",
        path: tls.key_file.clone(),
        reason: e.to_string(),
    })?;
    let verifier = client_verifier(certificates("the client CA", &tls.client_ca_file)?).map_err(|e| match e {
        TlsError::Rustls(reason) => TlsError::Pem {
            what: "the client CA",
            path: tls.client_ca_file.clone(),
            reason,
        },
        other => other,
    })?;
    let deferred = Arc::new(DeferredChainCheck(Arc::clone(&verifier)));
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_client_cert_verifier(deferred)
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(ServerTls {
        config: Arc::new(config),
        verifier,
    })
}

/// The full check of a client certificate: a chain to one of `cas`, valid
/// now, for client authentication.
///
/// # Errors
/// [`TlsError::Rustls`] when a CA certificate is unusable.
pub fn client_verifier(cas: Vec<CertificateDer<'static>>) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots.add(ca).map_err(|e| TlsError::Rustls(e.to_string()))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| TlsError::Rustls(e.to_string()))
}

/// Asks every client for a certificate and checks its handshake signature
/// (possession of the key), but accepts its chain as it comes: the chain is
/// checked per call, where a refusal can be a gRPC status.
#[derive(Debug)]
struct DeferredChainCheck(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for DeferredChainCheck {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
