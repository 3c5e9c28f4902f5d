//! The certificates of a local cluster, in `DIR/pki/`: a CA made for this
//! cluster, one server certificate per agent (for 127.0.0.1 and
//! localhost), and the admin client certificate `steward` uses, which the
//! cluster file names in `[agent_tls]`.

use std::path::{Path, PathBuf};

use steward_proto::Role;

use super::LocalError;
use super::layout::AgentTlsSection;
use crate::certs::{self, CA_CERT, CA_KEY};
use crate::engine::connect::agent::AgentTlsFiles;

/// The directory name inside the cluster directory.
pub const DIR: &str = "pki";
/// The directory of etcd's own certificates (`--etcd-tls`).
pub const ETCD_DIR: &str = "etcd-pki";
/// The client certificate's name.
const ADMIN: &str = "admin";
/// How long local certificates last.
const DAYS: u32 = 365;

/// The certificate dir of a local cluster.
#[derive(Debug, Clone)]
pub struct Pki {
    dir: PathBuf,
}

fn tls_error(error: &certs::CertError) -> LocalError {
    LocalError::Tls(error.to_string())
}

/// Creates `cluster_dir/pki` with the CA, the admin certificate and an
/// agent certificate for each of `members` members (`m0`, `m1`, ...).
///
/// # Errors
/// [`LocalError::Tls`] when a certificate cannot be made or written.
pub fn create(cluster_dir: &Path, members: usize) -> Result<Pki, LocalError> {
    let pki = Pki::at(cluster_dir);
    let ca = certs::new_ca("steward local CA", DAYS).map_err(|e| tls_error(&e))?;
    certs::write_new(&pki.dir.join(CA_KEY), &ca.key_pem).map_err(|e| tls_error(&e))?;
    certs::write_new(&pki.dir.join(CA_CERT), &ca.cert_pem).map_err(|e| tls_error(&e))?;
    let issue = |role: Role, name: &str, sans: &[String]| -> Result<(), LocalError> {
        let issued = certs::issue(&ca, role, name, sans, DAYS).map_err(|e| tls_error(&e))?;
        certs::write_new(&pki.dir.join(format!("{name}.key")), &issued.key_pem).map_err(|e| tls_error(&e))?;
        certs::write_new(&pki.dir.join(format!("{name}.crt")), &issued.cert_pem).map_err(|e| tls_error(&e))
    };
    issue(Role::Admin, ADMIN, &[])?;
    for i in 0..members {
        issue(
            Role::Agent,
            &format!("m{i}"),
            &["127.0.0.1".to_owned(), "localhost".to_owned()],
        )?;
    }
    Ok(pki)
}

impl Pki {
    /// The certificate dir of the cluster in `cluster_dir`.
    #[must_use]
    pub fn at(cluster_dir: &Path) -> Self {
        Self {
            dir: cluster_dir.join(DIR),
        }
    }

    /// Whether the cluster has certificates (it was made without
    /// `--insecure`).
    #[must_use]
    pub fn exists(&self) -> bool {
        self.dir.join(CA_CERT).is_file()
    }

    /// The admin identity, absolute paths.
    #[must_use]
    pub fn admin(&self) -> AgentTlsFiles {
        AgentTlsFiles {
            cacert: self.dir.join(CA_CERT),
            cert: self.dir.join(format!("{ADMIN}.crt")),
            key: self.dir.join(format!("{ADMIN}.key")),
        }
    }

    /// The admin identity as the cluster file names it (relative to the
    /// file, so the directory can move).
    #[must_use]
    pub fn cluster_file_identity() -> AgentTlsFiles {
        AgentTlsFiles {
            cacert: Path::new(DIR).join(CA_CERT),
            cert: Path::new(DIR).join(format!("{ADMIN}.crt")),
            key: Path::new(DIR).join(format!("{ADMIN}.key")),
        }
    }

    /// The `[tls]` section of member `name`'s agent.
    #[must_use]
    pub fn agent_tls(&self, name: &str) -> AgentTlsSection {
        AgentTlsSection {
            cert_file: self.dir.join(format!("{name}.crt")),
            key_file: self.dir.join(format!("{name}.key")),
            client_ca_file: self.dir.join(CA_CERT),
        }
    }
}

/// Creates `cluster_dir/etcd-pki`: a CA for etcd itself, a certificate per
/// member (`m0.crt`, ...; server and client authentication, for 127.0.0.1
/// and localhost) and the client certificate steward uses (`client.crt`).
///
/// # Errors
/// [`LocalError::Tls`] when a certificate cannot be made or written.
pub fn create_etcd(cluster_dir: &Path, members: usize) -> Result<(), LocalError> {
    let dir = cluster_dir.join(ETCD_DIR);
    let ca = certs::new_ca("etcd local CA", DAYS).map_err(|e| tls_error(&e))?;
    certs::write_new(&dir.join(CA_KEY), &ca.key_pem).map_err(|e| tls_error(&e))?;
    certs::write_new(&dir.join(CA_CERT), &ca.cert_pem).map_err(|e| tls_error(&e))?;
    let issue = |name: &str, sans: &[String]| -> Result<(), LocalError> {
        let issued = certs::issue_for_etcd(&ca, name, sans, DAYS).map_err(|e| tls_error(&e))?;
        certs::write_new(&dir.join(format!("{name}.key")), &issued.key_pem).map_err(|e| tls_error(&e))?;
        certs::write_new(&dir.join(format!("{name}.crt")), &issued.cert_pem).map_err(|e| tls_error(&e))
    };
    for i in 0..members {
        issue(&format!("m{i}"), &["127.0.0.1".to_owned(), "localhost".to_owned()])?;
    }
    issue("client", &[])
}

/// The `[member.tls]` of member `name` when the cluster was made with
/// `--etcd-tls`: client and peer TLS with client certificates required.
#[must_use]
pub fn member_tls(cluster_dir: &Path, name: &str) -> super::layout::MemberTlsSection {
    let dir = cluster_dir.join(ETCD_DIR);
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let ca = dir.join(CA_CERT);
    super::layout::MemberTlsSection {
        cert_file: cert.clone(),
        key_file: key.clone(),
        trusted_ca_file: ca.clone(),
        client_cert_auth: true,
        peer_cert_file: cert,
        peer_key_file: key,
        peer_trusted_ca_file: ca,
        peer_client_cert_auth: true,
    }
}

/// The cluster file's `[etcd]` when the cluster was made with
/// `--etcd-tls` (relative to the file).
#[must_use]
pub fn cluster_file_etcd() -> crate::engine::cluster::file::EtcdSettings {
    crate::engine::cluster::file::EtcdSettings {
        cacert: Some(Path::new(ETCD_DIR).join(CA_CERT)),
        cert: Some(Path::new(ETCD_DIR).join("client.crt")),
        key: Some(Path::new(ETCD_DIR).join("client.key")),
        ..crate::engine::cluster::file::EtcdSettings::default()
    }
}

/// The etcd client identity of a cluster made with `--etcd-tls`, absolute
/// paths; `None` for a cluster without.
#[must_use]
pub fn etcd_client(cluster_dir: &Path) -> Option<crate::engine::connect::etcd::EtcdTlsFiles> {
    let dir = cluster_dir.join(ETCD_DIR);
    dir.join(CA_CERT)
        .is_file()
        .then(|| crate::engine::connect::etcd::EtcdTlsFiles {
            cacert: Some(dir.join(CA_CERT)),
            cert: Some(dir.join("client.crt")),
            key: Some(dir.join("client.key")),
        })
}
