//! Certificates for clusters whose agents serve mutual TLS: a CA per
//! cluster made with `steward certs` (its library), one server certificate
//! per agent, a client certificate per role, and the bad ones the refusal
//! tests need (from another CA, expired).

use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair};
use steward_coordinator::certs::{self, CA_CERT, Issued};
use steward_coordinator::engine::connect::agent::AgentTlsFiles;
use steward_proto::Role;

/// A cluster's certificate dir.
#[derive(Debug, Clone)]
pub struct Pki {
    /// Where the files are.
    pub dir: PathBuf,
}

fn write(path: &Path, content: &str) {
    certs::write_new(path, content).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

impl Pki {
    /// A new CA in `dir`, and a client certificate for every role.
    #[must_use]
    pub fn create(dir: &Path) -> Self {
        let ca = certs::new_ca("steward test CA", 30).unwrap_or_else(|e| panic!("CA: {e}"));
        write(&dir.join("ca.crt"), &ca.cert_pem);
        write(&dir.join("ca.key"), &ca.key_pem);
        let pki = Self { dir: dir.to_owned() };
        for role in [Role::Admin, Role::Operator, Role::Reader, Role::Backup] {
            pki.issue(role, role.as_str(), &[]);
        }
        pki
    }

    fn ca(&self) -> Issued {
        certs::read_ca(&self.dir).unwrap_or_else(|e| panic!("read the test CA: {e}"))
    }

    /// Issues `name.crt`/`name.key` with `role`.
    pub fn issue(&self, role: Role, name: &str, sans: &[String]) {
        let issued = certs::issue(&self.ca(), role, name, sans, 30).unwrap_or_else(|e| panic!("issue {name}: {e}"));
        write(&self.dir.join(format!("{name}.crt")), &issued.cert_pem);
        write(&self.dir.join(format!("{name}.key")), &issued.key_pem);
    }

    /// The CA certificate.
    #[must_use]
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join(CA_CERT)
    }

    /// The identity files of the client certificate `name`.
    #[must_use]
    pub fn client(&self, name: &str) -> AgentTlsFiles {
        AgentTlsFiles {
            cacert: self.ca_cert(),
            cert: self.dir.join(format!("{name}.crt")),
            key: self.dir.join(format!("{name}.key")),
        }
    }

    /// A client certificate with `role` signed by the right CA but expired
    /// yesterday: `name.crt`/`name.key`.
    #[must_use]
    pub fn expired(&self, role: Role, name: &str) -> AgentTlsFiles {
        let ca = self.ca();
        let ca_key = KeyPair::from_pem(&ca.key_pem).unwrap_or_else(|e| panic!("{e}"));
        let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).unwrap_or_else(|e| panic!("{e}"));
        let now = time::OffsetDateTime::now_utc();
        let (cert, key) = client_params(
            role,
            name,
            now - time::Duration::days(10),
            now - time::Duration::days(1),
        );
        let cert = cert.signed_by(&key, &issuer).unwrap_or_else(|e| panic!("{e}"));
        write(&self.dir.join(format!("{name}.crt")), &cert.pem());
        write(&self.dir.join(format!("{name}.key")), &key.serialize_pem());
        self.client(name)
    }

    /// A client certificate with `role` from a CA the agents do not know,
    /// in `other/` (its own CA next to it).
    #[must_use]
    pub fn foreign(&self, role: Role, name: &str) -> AgentTlsFiles {
        let other = Self {
            dir: self.dir.join("other"),
        };
        let ca = certs::new_ca("someone else's CA", 30).unwrap_or_else(|e| panic!("{e}"));
        write(&other.dir.join("ca.crt"), &ca.cert_pem);
        write(&other.dir.join("ca.key"), &ca.key_pem);
        other.issue(role, name, &[]);
        AgentTlsFiles {
            // Trust the real agents' CA, but show the foreign certificate.
            cacert: self.ca_cert(),
            ..other.client(name)
        }
    }
}

fn client(role: Role, name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
    params.distinguished_name.push(DnType::CommonName, name);
    params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, role.as_str());
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params
}

fn client_params(
    role: Role,
    name: &str,
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
) -> (CertificateParams, KeyPair) {
    let mut params = client(role, name);
    params.not_before = not_before;
    params.not_after = not_after;
    (params, KeyPair::generate().unwrap_or_else(|e| panic!("{e}")))
}

/// Certificates for etcd's own TLS: a CA, one certificate per member (for
/// 127.0.0.1 and localhost, usable for server, peer and client
/// authentication, since the member's agent shows it to the member), and a
/// client certificate `client` for the coordinator and the harness.
#[derive(Debug, Clone)]
pub struct EtcdPki {
    /// Where the files are.
    pub dir: PathBuf,
}

impl EtcdPki {
    /// Creates the CA and certificates for `members` in `dir`.
    #[must_use]
    pub fn create(dir: &Path, members: &[String]) -> Self {
        let key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "etcd test CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        let ca = params.self_signed(&key).unwrap_or_else(|e| panic!("{e}"));
        write(&dir.join("ca.crt"), &ca.pem());
        let issuer = Issuer::new(params, key);
        let issue = |name: &str, sans: Vec<String>, usages: Vec<ExtendedKeyUsagePurpose>| {
            let key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
            let mut params = CertificateParams::new(sans).unwrap_or_else(|e| panic!("{e}"));
            params.distinguished_name.push(DnType::CommonName, name);
            params.extended_key_usages = usages;
            let cert = params.signed_by(&key, &issuer).unwrap_or_else(|e| panic!("{e}"));
            write(&dir.join(format!("{name}.crt")), &cert.pem());
            write(&dir.join(format!("{name}.key")), &key.serialize_pem());
        };
        for member in members {
            issue(
                member,
                vec!["127.0.0.1".into(), "localhost".into()],
                vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
            );
        }
        issue("client", Vec::new(), vec![ExtendedKeyUsagePurpose::ClientAuth]);
        Self { dir: dir.to_owned() }
    }

    /// The CA certificate.
    #[must_use]
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The client identity, as `steward --cacert/--cert/--key` takes it.
    #[must_use]
    pub fn client(&self) -> steward_coordinator::engine::connect::etcd::EtcdTlsFiles {
        steward_coordinator::engine::connect::etcd::EtcdTlsFiles {
            cacert: Some(self.ca()),
            cert: Some(self.dir.join("client.crt")),
            key: Some(self.dir.join("client.key")),
        }
    }

    /// Options for an etcd-client connection as that client.
    #[must_use]
    pub fn connect_options(&self) -> etcd_client::ConnectOptions {
        let read = |path: PathBuf| std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let tls = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(read(self.ca())))
            .identity(etcd_client::Identity::from_pem(
                read(self.dir.join("client.crt")),
                read(self.dir.join("client.key")),
            ));
        etcd_client::ConnectOptions::new().with_tls(tls)
    }
}
