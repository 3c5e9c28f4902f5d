//! What a certificate file says about itself: who, which role, for which
//! names, and until when. Read with x509-parser, without trusting it: this
//! is for reports and renewals, not for authentication.

use std::path::Path;
use std::time::{Duration, SystemTime};

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// One certificate as `steward certs check` lists it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CertFacts {
    /// The subject's common name.
    pub name: String,
    /// The subject's OU naming a steward role, if any (`ca` for a CA).
    pub role: Option<String>,
    /// DNS names and IP addresses it is valid for.
    pub sans: Vec<String>,
    /// The end of its validity, seconds since the epoch.
    pub not_after_unix: i64,
    /// Whether it is a CA.
    pub is_ca: bool,
}

/// Why a certificate file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The file could not be read.
    #[error("cannot read it")]
    Io(#[from] std::io::Error),
    /// The file holds no PEM certificate that parses.
    #[error("not a PEM certificate: {0}")]
    Malformed(String),
}

/// Reads the first certificate of the PEM file at `path`.
///
/// # Errors
/// [`InspectError`].
pub fn read(path: &Path) -> Result<CertFacts, InspectError> {
    let pem_text = std::fs::read(path)?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem_text).map_err(|e| InspectError::Malformed(e.to_string()))?;
    let (_, cert) = X509Certificate::from_der(&pem.contents).map_err(|e| InspectError::Malformed(e.to_string()))?;
    facts(&cert)
}

fn facts(cert: &X509Certificate<'_>) -> Result<CertFacts, InspectError> {
    let subject = cert.subject();
    let text = |attr: Option<&x509_parser::x509::AttributeTypeAndValue<'_>>| {
        attr.and_then(|a| a.as_str().ok()).unwrap_or_default().to_owned()
    };
    let name = text(subject.iter_common_name().next());
    let is_ca = cert.is_ca();
    let role = if is_ca {
        Some("ca".to_owned())
    } else {
        subject
            .iter_organizational_unit()
            .filter_map(|ou| ou.as_str().ok())
            .find(|ou| ou.parse::<steward_proto::Role>().is_ok())
            .map(str::to_owned)
    };
    let mut sans = Vec::new();
    if let Ok(Some(extension)) = cert.subject_alternative_name() {
        for general in &extension.value.general_names {
            match general {
                GeneralName::DNSName(dns) => sans.push((*dns).to_owned()),
                GeneralName::IPAddress(bytes) => match bytes.len() {
                    4 => sans.push(std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string()),
                    16 => {
                        let mut octets = [0_u8; 16];
                        octets.copy_from_slice(bytes);
                        sans.push(std::net::Ipv6Addr::from(octets).to_string());
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Ok(CertFacts {
        name,
        role,
        sans,
        not_after_unix: cert.validity().not_after.timestamp(),
        is_ca,
    })
}

/// How long until `not_after_unix`, from `now`; `None` once it has passed.
#[must_use]
pub fn remaining(not_after_unix: i64, now: SystemTime) -> Option<Duration> {
    let now_unix = i64::try_from(now.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs()).ok()?;
    let left = not_after_unix.checked_sub(now_unix)?;
    (left > 0).then(|| Duration::from_secs(left.unsigned_abs()))
}

/// The verdict on a certificate: fine, inside the warning threshold, or
/// expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Expiry {
    /// More than the threshold left.
    Ok,
    /// Expires within the threshold.
    Soon,
    /// Already expired.
    Expired,
}

/// Judges a certificate that ends at `not_after_unix`, seen at `now`.
#[must_use]
pub fn judge(not_after_unix: i64, now: SystemTime, threshold: Duration) -> Expiry {
    match remaining(not_after_unix, now) {
        None => Expiry::Expired,
        Some(left) if left <= threshold => Expiry::Soon,
        Some(_) => Expiry::Ok,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steward_certificate_tells_its_name_role_sans_and_end() {
        let ca = crate::certs::new_ca("test CA", 30).unwrap();
        let agent = crate::certs::issue(
            &ca,
            steward_proto::Role::Agent,
            "infra0",
            &["10.0.0.1".into(), "infra0.example".into()],
            10,
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("infra0.crt"), &agent.cert_pem).unwrap();
        std::fs::write(dir.path().join("ca.crt"), &ca.cert_pem).unwrap();
        let facts = read(&dir.path().join("infra0.crt")).unwrap();
        assert_eq!(facts.name, "infra0");
        assert_eq!(facts.role.as_deref(), Some("agent"));
        assert_eq!(facts.sans, vec!["10.0.0.1".to_owned(), "infra0.example".to_owned()]);
        assert!(!facts.is_ca);
        let left = remaining(facts.not_after_unix, SystemTime::now()).unwrap();
        assert!(
            left > Duration::from_secs(9 * 86_400) && left <= Duration::from_secs(10 * 86_400),
            "{left:?}"
        );
        let ca_facts = read(&dir.path().join("ca.crt")).unwrap();
        assert_eq!(ca_facts.role.as_deref(), Some("ca"));
        assert!(ca_facts.is_ca);
    }

    #[test]
    fn the_threshold_decides_ok_soon_and_expired() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let day = 86_400;
        let thirty = Duration::from_secs(30 * 86_400);
        assert_eq!(judge(1_000_000 + 31 * day, now, thirty), Expiry::Ok);
        assert_eq!(judge(1_000_000 + 10 * day, now, thirty), Expiry::Soon);
        assert_eq!(judge(1_000_000 - 1, now, thirty), Expiry::Expired);
        assert_eq!(judge(1_000_000, now, thirty), Expiry::Expired);
    }

    #[test]
    fn garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.crt");
        std::fs::write(&path, b"not a certificate").unwrap();
        assert!(matches!(read(&path), Err(InspectError::Malformed(_))));
    }
}
