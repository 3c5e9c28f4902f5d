//! A small certificate authority for steward: one CA, server certificates
//! for agents and client certificates for coordinators and other callers,
//! each carrying its role as the subject's OU and its name as the CN (see
//! [`steward_proto::role`]). Keys are ECDSA P-256; every file is written
//! 0600 and never over an existing one.

pub mod inspect;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use steward_proto::Role;
use steward_proto::role::ORGANIZATION;
use time::OffsetDateTime;

/// File names inside a certificate directory.
pub const CA_CERT: &str = "ca.crt";
/// The CA's private key.
pub const CA_KEY: &str = "ca.key";

/// How far back a new certificate's validity starts, for clocks a little
/// behind.
const BACKDATE: Duration = Duration::from_secs(300);

/// Why a certificate could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The crypto library refused.
    #[error("cannot {action}: {source}")]
    Crypto {
        /// What was being done.
        action: &'static str,
        /// The library's error.
        #[source]
        source: rcgen::Error,
    },
    /// A file could not be read or written.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A file that would be overwritten.
    #[error("{0} exists; steward never overwrites a key or certificate (move it away first)")]
    Exists(PathBuf),
    /// An agent certificate needs names to be reached by.
    #[error("an agent certificate needs at least one --san (the host names and addresses coordinators use)")]
    NoSubjectAltNames,
}

/// A certificate and its private key, PEM-encoded.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// The private key.
    pub key_pem: String,
}

fn crypto(action: &'static str) -> impl FnOnce(rcgen::Error) -> CertError {
    move |source| CertError::Crypto { action, source }
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + time::Duration::days(i64::from(days));
}

/// A new self-signed CA named `name`, valid for `days`.
///
/// # Errors
/// [`CertError::Crypto`] when the key or the certificate cannot be made.
pub fn new_ca(name: &str, days: u32) -> Result<Issued, CertError> {
    let key = KeyPair::generate().map_err(crypto("generate the CA key"))?;
    let mut params = CertificateParams::default();
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, name);
    subject.push(DnType::OrganizationName, ORGANIZATION);
    params.distinguished_name = subject;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params, days);
    let cert = params.self_signed(&key).map_err(crypto("sign the CA certificate"))?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A certificate for `name` with `role`, signed by the CA. An agent gets a
/// server certificate for `sans` (host names and IP addresses); every
/// other role gets a client certificate.
///
/// # Errors
/// [`CertError::NoSubjectAltNames`] for an agent without `sans`;
/// [`CertError::Crypto`] for a CA that cannot be read or a name that cannot
/// be encoded.
pub fn issue(ca: &Issued, role: Role, name: &str, sans: &[String], days: u32) -> Result<Issued, CertError> {
    if role == Role::Agent && sans.is_empty() {
        return Err(CertError::NoSubjectAltNames);
    }
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, name);
    subject.push(DnType::OrganizationName, ORGANIZATION);
    subject.push(DnType::OrganizationalUnitName, role.as_str());
    let usage = if role == Role::Agent {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    };
    sign(
        ca,
        subject,
        sans,
        vec![KeyUsagePurpose::DigitalSignature],
        vec![usage],
        days,
    )
}

/// A certificate for etcd itself (no steward role): `name` for `sans`,
/// usable for server and client authentication, as a member's certificate
/// is when its agent shows it to the member; or, without `sans`, a client
/// certificate.
///
/// # Errors
/// [`CertError::Crypto`] for a CA that cannot be read or a name that
/// cannot be encoded.
pub fn issue_for_etcd(ca: &Issued, name: &str, sans: &[String], days: u32) -> Result<Issued, CertError> {
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, name);
    let usages = if sans.is_empty() {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    } else {
        vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth]
    };
    let key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    sign(ca, subject, sans, key_usages, usages, days)
}

/// A new key and a certificate for it with `subject`, `sans` and the
/// usages, signed by `ca`.
fn sign(
    ca: &Issued,
    subject: DistinguishedName,
    sans: &[String],
    key_usages: Vec<KeyUsagePurpose>,
    extended_key_usages: Vec<ExtendedKeyUsagePurpose>,
    days: u32,
) -> Result<Issued, CertError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(crypto("read the CA key"))?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).map_err(crypto("read the CA certificate"))?;
    let key = KeyPair::generate().map_err(crypto("generate a key"))?;
    let mut params = CertificateParams::new(sans.to_vec()).map_err(crypto("encode the subject alternative names"))?;
    params.distinguished_name = subject;
    params.key_usages = key_usages;
    params.extended_key_usages = extended_key_usages;
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, days);
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(crypto("sign the certificate"))?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Reads the CA of a certificate directory.
///
/// # Errors
/// [`CertError::Io`] when `ca.crt` or `ca.key` cannot be read.
pub fn read_ca(dir: &Path) -> Result<Issued, CertError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|source| CertError::Io {
            action: "read",
            path,
            source,
        })
    };
    Ok(Issued {
        cert_pem: read(CA_CERT)?,
        key_pem: read(CA_KEY)?,
    })
}

/// Writes `content` to a new file `path`, mode 0600, refusing to replace
/// anything (the directory is created 0700 if missing).
///
/// # Errors
/// [`CertError::Exists`] or [`CertError::Io`].
pub fn write_new(path: &Path, content: &str) -> Result<(), CertError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let io = |action: &'static str| {
        move |source| CertError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(io("create the directory of"))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                CertError::Exists(path.to_owned())
            } else {
                io("create")(source)
            }
        })?;
    file.write_all(content.as_bytes()).map_err(io("write"))?;
    file.sync_all().map_err(io("sync"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::{FromDer, X509Certificate};

    fn parse(pem: &str) -> Vec<u8> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        pem.contents
    }

    #[test]
    fn a_client_certificate_carries_its_role_and_name_and_is_signed_by_the_ca() {
        let ca = new_ca("test CA", 30).unwrap();
        let client = issue(&ca, Role::Reader, "dashboards", &[], 10).unwrap();
        let der = parse(&client.cert_pem);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let subject = cert.subject();
        assert_eq!(
            subject.iter_common_name().next().unwrap().as_str().unwrap(),
            "dashboards"
        );
        assert_eq!(
            subject.iter_organizational_unit().next().unwrap().as_str().unwrap(),
            "reader"
        );
        let ca_der = parse(&ca.cert_pem);
        let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
        assert_eq!(cert.issuer(), ca_cert.subject());
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();
        assert!(cert.validity().time_to_expiration().unwrap().whole_days() >= 9);
        assert!(!cert.is_ca());
        assert!(ca_cert.is_ca());
    }

    #[test]
    fn an_agent_certificate_needs_names() {
        let ca = new_ca("test CA", 30).unwrap();
        assert!(matches!(
            issue(&ca, Role::Agent, "m0", &[], 10),
            Err(CertError::NoSubjectAltNames)
        ));
        let agent = issue(&ca, Role::Agent, "m0", &["127.0.0.1".into(), "m0.example".into()], 10).unwrap();
        let der = parse(&agent.cert_pem);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let sans = cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .len();
        assert_eq!(sans, 2);
    }

    #[test]
    fn files_are_private_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pki").join("ca.key");
        write_new(&path, "secret").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        assert!(matches!(write_new(&path, "other"), Err(CertError::Exists(_))));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "secret");
    }
}
