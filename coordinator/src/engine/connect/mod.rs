//! How steward reaches one cluster, as a value: the agents' mutual TLS and
//! etcd's TLS and credentials. Every engine call that talks to agents or
//! members takes a [`Connector`]; nothing about a connection lives in
//! process-wide state, so one process can drive clusters with different
//! CAs, agent identities and etcd users side by side.

pub mod agent;
pub mod etcd;
pub mod session;
pub mod tls_probe;

use std::fmt;
use std::path::Path;

use etcd_client::ConnectOptions;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::engine::connect::agent::AgentTlsFiles;
use crate::engine::connect::etcd::{CONNECT_TIMEOUT, Credentials, EtcdTlsFiles, REQUEST_TIMEOUT};
use crate::engine::connect::session::Session;
use crate::engine::error::Error;

/// The TLS files of etcd connections: the CA of the members' certificates
/// and, for `--client-cert-auth`, a client certificate and key (PEM).
#[derive(Clone)]
struct EtcdTls {
    ca: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// How to reach one cluster's agents and members. The default is plaintext
/// everywhere and no etcd user (agents in insecure development mode, etcd
/// without TLS or auth).
#[derive(Clone, Default)]
pub struct Connector {
    agent_tls: Option<ClientTlsConfig>,
    /// The files `agent_tls` was made from, to say which they are.
    agent_tls_files: Option<AgentTlsFiles>,
    etcd_tls: Option<EtcdTls>,
    credentials: Option<Credentials>,
    /// The agent channels kept for this cluster; new settings, new session.
    session: Session,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("agent_tls", &self.agent_tls.is_some())
            .field("etcd_tls", &self.etcd_tls.is_some())
            .field("credentials", &self.credentials)
            .field("session", &self.session)
            .finish()
    }
}

impl Connector {
    /// Calls agents with mutual TLS from `files` (`None`: plaintext).
    ///
    /// # Errors
    /// [`Error::Io`] when a file cannot be read.
    pub fn with_agent_tls(mut self, files: Option<&AgentTlsFiles>) -> Result<Self, Error> {
        self.session = Session::default();
        self.agent_tls_files = files.cloned();
        self.agent_tls = match files {
            None => None,
            Some(files) => {
                let read = |path: &Path| {
                    std::fs::read(path).map_err(|source| Error::Io {
                        action: "read",
                        path: path.to_owned(),
                        source,
                    })
                };
                Some(
                    ClientTlsConfig::new()
                        .ca_certificate(Certificate::from_pem(read(&files.cacert)?))
                        .identity(Identity::from_pem(read(&files.cert)?, read(&files.key)?)),
                )
            }
        };
        Ok(self)
    }

    /// Talks to etcd over TLS with `files` (`None` or no CA: plaintext).
    ///
    /// # Errors
    /// A file that cannot be read, or a certificate without its key.
    pub fn with_etcd_tls(mut self, files: Option<&EtcdTlsFiles>) -> Result<Self, Error> {
        self.session = Session::default();
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| Error::Io {
                action: "read",
                path: path.to_owned(),
                source,
            })
        };
        self.etcd_tls = match files {
            Some(EtcdTlsFiles {
                cacert: Some(ca),
                cert,
                key,
            }) => Some(EtcdTls {
                ca: read(ca)?,
                identity: match (cert, key) {
                    (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
                    (None, None) => None,
                    _ => return Err(Error::Invalid("--cert and --key go together".into())),
                },
            }),
            Some(EtcdTlsFiles {
                cacert: None,
                cert,
                key,
            }) if cert.is_some() || key.is_some() => {
                return Err(Error::Invalid(
                    "--cert and --key need --cacert (the CA of the members' certificates)".into(),
                ));
            }
            _ => None,
        };
        Ok(self)
    }

    /// Authenticates to etcd as `credentials` (`None`: no user).
    #[must_use]
    pub fn with_credentials(mut self, credentials: Option<Credentials>) -> Self {
        self.session = Session::default();
        self.credentials = credentials;
        self
    }

    /// The files of this caller's agent identity, when it has one.
    #[must_use]
    pub const fn agent_tls_files(&self) -> Option<&AgentTlsFiles> {
        self.agent_tls_files.as_ref()
    }

    /// The connections kept for this cluster.
    #[must_use]
    pub const fn session(&self) -> &Session {
        &self.session
    }

    /// Whether an etcd user is set.
    #[must_use]
    pub const fn has_credentials(&self) -> bool {
        self.credentials.is_some()
    }

    /// Whether agent connections use mutual TLS.
    #[must_use]
    pub const fn agent_uses_tls(&self) -> bool {
        self.agent_tls.is_some()
    }

    /// Whether etcd connections use TLS.
    #[must_use]
    pub const fn etcd_uses_tls(&self) -> bool {
        self.etcd_tls.is_some()
    }

    /// The agents' TLS configuration, if any.
    pub(crate) const fn agent_tls(&self) -> Option<&ClientTlsConfig> {
        self.agent_tls.as_ref()
    }

    /// etcd connect options without credentials (timeouts and TLS).
    pub(crate) fn etcd_options_anonymous(&self) -> ConnectOptions {
        let options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT);
        let Some(tls) = &self.etcd_tls else { return options };
        let mut config =
            etcd_client::TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(tls.ca.clone()));
        if let Some((cert, key)) = &tls.identity {
            config = config.identity(etcd_client::Identity::from_pem(cert.clone(), key.clone()));
        }
        options.with_tls(config)
    }

    /// An HTTP client for etcd's `/version`, with the same timeouts and TLS.
    pub(crate) fn etcd_http_client(&self) -> Result<reqwest::Client, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT);
        if let Some(tls) = &self.etcd_tls {
            builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&tls.ca)?);
            if let Some((cert, key)) = &tls.identity {
                let pem = [cert.as_slice(), b"\n", key.as_slice()].concat();
                builder = builder.identity(reqwest::Identity::from_pem(&pem)?);
            }
        }
        builder.build()
    }

    /// etcd connect options: timeouts, TLS and the user.
    pub(crate) fn etcd_options(&self) -> ConnectOptions {
        let options = self.etcd_options_anonymous();
        match &self.credentials {
            Some(c) => options.with_user(c.user.clone(), c.password().to_owned()),
            None => options,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_plaintext_everywhere() {
        let connector = Connector::default();
        assert!(!connector.agent_uses_tls() && !connector.etcd_uses_tls());
    }

    #[test]
    fn etcd_tls_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, b"pem").unwrap();
        let with_ca = EtcdTlsFiles {
            cacert: Some(ca.clone()),
            ..EtcdTlsFiles::default()
        };
        assert!(
            Connector::default()
                .with_etcd_tls(Some(&with_ca))
                .unwrap()
                .etcd_uses_tls()
        );
        let cert_alone = EtcdTlsFiles {
            cert: Some(ca.clone()),
            ..EtcdTlsFiles::default()
        };
        assert!(Connector::default().with_etcd_tls(Some(&cert_alone)).is_err());
        let half = EtcdTlsFiles {
            cacert: Some(ca.clone()),
            cert: Some(ca),
            key: None,
        };
        assert!(Connector::default().with_etcd_tls(Some(&half)).is_err());
        let missing = EtcdTlsFiles {
            cacert: Some(dir.path().join("missing")),
            ..EtcdTlsFiles::default()
        };
        let error = Connector::default().with_etcd_tls(Some(&missing)).unwrap_err();
        assert!(crate::engine::error::chain(&error).contains("cannot read"), "{error}");
    }

    #[test]
    fn debug_never_shows_a_password() {
        let connector = Connector::default().with_credentials(Some(Credentials::new("root".into(), "secret".into())));
        let shown = format!("{connector:?}");
        assert!(shown.contains("root") && !shown.contains("secret"), "{shown}");
    }
}
