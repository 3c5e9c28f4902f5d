//! The check of a caller's certificate, made in the TLS handshake (a
//! certificate that fails it costs the agent a handshake, nothing more) and
//! again on every call (a certificate can expire while its connection
//! lasts).
//!
//! rustls' webpki verifier checks the chain to the agent's client CA, the
//! validity period, the signatures, and the client-auth extended key usage
//! where a certificate lists any. What it leaves to the application is
//! checked here:
//! - the certificate must list the client-auth extended key usage;
//! - it must name its holder, with a non-empty CN, which the audit log
//!   records;
//! - a client CA whose pathLenConstraint is 0 signs callers' certificates
//!   only: webpki applies no constraint of a trust anchor itself, so a
//!   certificate under an intermediate CA that such a CA signed would pass
//!   it.
//!
//! A caller without a certificate still completes the handshake: its calls
//! are refused one by one with a clear UNAUTHENTICATED (see
//! [`crate::access`]), and gRPC health may let it through.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why a certificate that chains to the client CA is still refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CallerRefused(String);

/// The caller checks beyond the chain.
///
/// # Errors
/// [`CallerRefused`] saying which check failed.
pub fn check_caller(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    client_cas: &[CertificateDer<'static>],
) -> Result<(), CallerRefused> {
    let refused = |why: String| CallerRefused(why);
    let (_, cert) = X509Certificate::from_der(leaf).map_err(|e| refused(format!("it cannot be read: {e}")))?;
    let named = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .is_some_and(|cn| !cn.trim().is_empty());
    if !named {
        return Err(refused(
            "it names no holder (no CN, or an empty one); `steward certs issue` names every certificate".into(),
        ));
    }
    let client_auth = matches!(cert.extended_key_usage(), Ok(Some(eku)) if eku.value.client_auth);
    if !client_auth {
        return Err(refused(
            "it is not a client certificate (its extended key usage does not list clientAuth)".into(),
        ));
    }
    for intermediate in intermediates {
        let Ok((_, issuer)) = X509Certificate::from_der(intermediate) else {
            continue;
        };
        for ca in client_cas {
            let Ok((_, ca)) = X509Certificate::from_der(ca) else {
                continue;
            };
            let leaves_only = matches!(ca.basic_constraints(), Ok(Some(bc)) if bc.value.path_len_constraint == Some(0));
            // The CA itself, sent along in the chain, is no intermediate.
            let same_key = issuer.public_key().raw == ca.public_key().raw;
            if leaves_only && !same_key && issuer.verify_signature(Some(ca.public_key())).is_ok() {
                return Err(refused(format!(
                    "it was issued by an intermediate CA ({}) under the client CA {}, whose pathLenConstraint 0 \
                     allows none",
                    issuer.subject(),
                    ca.subject()
                )));
            }
        }
    }
    Ok(())
}

/// The handshake's verifier: webpki's chain check, then [`check_caller`].
#[derive(Debug)]
pub struct CallerVerifier {
    chain: Arc<dyn ClientCertVerifier>,
    client_cas: Vec<CertificateDer<'static>>,
}

impl CallerVerifier {
    /// Checks callers against `client_cas` with `chain` (webpki's verifier
    /// over the same CAs).
    #[must_use]
    pub const fn new(chain: Arc<dyn ClientCertVerifier>, client_cas: Vec<CertificateDer<'static>>) -> Self {
        Self { chain, client_cas }
    }
}

impl ClientCertVerifier for CallerVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.chain.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.chain.verify_client_cert(end_entity, intermediates, now)?;
        check_caller(end_entity, intermediates, &self.client_cas).map_err(|refused| {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(refused))))
        })?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}
