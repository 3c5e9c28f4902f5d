//! Questions the agent asks its own etcd member: Status, the cluster version
//! from `/version`, and the health check `etcdctl endpoint health` makes (a
//! linearizable read that only succeeds through a quorum).

use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use steward_proto::v1::MemberStatus;

use crate::error::AgentError;
use crate::etcd_channel::WideWindows;
use crate::etcd_snapshot::EtcdSnapshots;

/// Connection timeout towards the local member.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Timeout of one request towards the local member.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How the agent reaches a member that serves TLS on its client URL: the
/// CA of the member's certificate and, for `--client-cert-auth`, the
/// certificate and key the agent shows (PEM).
#[derive(Clone)]
pub struct MemberClientTls {
    /// The CA (`trusted_ca_file`).
    pub ca: Vec<u8>,
    /// Certificate and key (`cert_file`, `key_file`), when given.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for MemberClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberClientTls")
            .field("identity", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

impl MemberClientTls {
    /// Reads the member's TLS files for the agent's own connection: the
    /// trusted CA, and the member's certificate and key as the agent's
    /// identity (they must allow client authentication when the member
    /// requires client certificates).
    ///
    /// # Errors
    /// A file that cannot be read.
    pub fn read(tls: &crate::config::MemberTls) -> Result<Option<Self>, AgentError> {
        let read = |path: &std::path::Path| std::fs::read(path).map_err(crate::fsutil::io_err("read", path));
        let Some(ca) = &tls.trusted_ca_file else {
            return Ok(None);
        };
        let identity = match (&tls.cert_file, &tls.key_file) {
            (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
            _ => None,
        };
        Ok(Some(Self {
            ca: read(ca)?,
            identity,
        }))
    }
}

/// The etcd user of the agent's calls; the password is never printed.
#[derive(Clone)]
pub struct MemberCredentials {
    user: String,
    password: String,
}

impl std::fmt::Debug for MemberCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberCredentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl MemberCredentials {
    /// Reads the password file of `[member.auth]` (its first line).
    ///
    /// # Errors
    /// The file cannot be read, or holds no password.
    pub fn read(auth: &crate::config::MemberAuth) -> Result<Self, AgentError> {
        let text =
            std::fs::read_to_string(&auth.password_file).map_err(crate::fsutil::io_err("read", &auth.password_file))?;
        let password = text.lines().next().unwrap_or_default().to_owned();
        if password.is_empty() {
            return Err(AgentError::InvalidArgument {
                field: "member.auth.password_file",
                reason: format!("{} holds no password", auth.password_file.display()),
            });
        }
        Ok(Self {
            user: auth.user.clone(),
            password,
        })
    }
}

/// A client connected to the member, the channel under it, and the user
/// its calls authenticate as (none when etcd authentication is off).
struct Connected<'a> {
    client: Client,
    windows: WideWindows,
    as_user: Option<&'a MemberCredentials>,
}

/// The agent's view of its local member.
#[derive(Clone, Debug)]
pub struct LocalMember {
    endpoint: String,
    http: reqwest::Client,
    tls: Option<MemberClientTls>,
    credentials: Option<MemberCredentials>,
}

impl LocalMember {
    /// A handle for the member reachable at `endpoint` (a client URL), over
    /// TLS with `tls` when the URL is `https://`.
    pub fn new(endpoint: String, tls: Option<MemberClientTls>) -> Result<Self, AgentError> {
        let tool = |e: reqwest::Error| AgentError::Tool {
            tool: "http client".into(),
            reason: e.to_string(),
        };
        let mut http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT);
        if let Some(tls) = &tls {
            http = http.add_root_certificate(reqwest::Certificate::from_pem(&tls.ca).map_err(tool)?);
            if let Some((cert, key)) = &tls.identity {
                let pem = [cert.as_slice(), b"\n", key.as_slice()].concat();
                http = http.identity(reqwest::Identity::from_pem(&pem).map_err(tool)?);
            }
        }
        Ok(Self {
            endpoint,
            http: http.build().map_err(tool)?,
            tls,
            credentials: None,
        })
    }

    /// The same member, called as `credentials` (auth enabled).
    #[must_use]
    pub fn with_credentials(mut self, credentials: Option<MemberCredentials>) -> Self {
        self.credentials = credentials;
        self
    }

    /// The client URL.
    #[must_use]
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A fresh etcd client connected to this member only.
    pub async fn client(&self) -> Result<Client, AgentError> {
        self.connect().await.map(|connected| connected.client)
    }

    /// A fresh etcd client connected to this member only, and what opens
    /// a snapshot stream over its channel as its user.
    pub async fn snapshot_client(&self) -> Result<(Client, EtcdSnapshots), AgentError> {
        let Connected {
            client,
            windows,
            as_user,
        } = self.connect().await?;
        let channel = windows.channel().ok_or_else(|| AgentError::EtcdUnavailable {
            endpoint: self.endpoint.clone(),
            reason: "the etcd client was built without a channel".into(),
        })?;
        // etcd-client keeps its user's token to itself: the stream gets
        // one of its own, from the same credentials.
        let token = match as_user {
            Some(credentials) => {
                let response = client
                    .auth_client()
                    .authenticate(credentials.user.clone(), credentials.password.clone())
                    .await
                    .map_err(|error| self.unavailable(&error))?;
                let token = tonic::metadata::AsciiMetadataValue::try_from(response.token()).map_err(|_| {
                    AgentError::EtcdUnavailable {
                        endpoint: self.endpoint.clone(),
                        reason: "etcd gave an authentication token that is not ASCII".into(),
                    }
                })?;
                Some(token)
            }
            None => None,
        };
        Ok((client, EtcdSnapshots::new(channel, token)))
    }

    async fn connect(&self) -> Result<Connected<'_>, AgentError> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT);
        if let Some(tls) = self.tls.as_ref().filter(|_| self.endpoint.starts_with("https://")) {
            let mut config =
                etcd_client::TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(tls.ca.clone()));
            if let Some((cert, key)) = &tls.identity {
                config = config.identity(etcd_client::Identity::from_pem(cert.clone(), key.clone()));
            }
            options = options.with_tls(config);
        }
        if let Some(credentials) = &self.credentials {
            let with_user = options
                .clone()
                .with_user(credentials.user.clone(), credentials.password.clone());
            let windows = WideWindows::default();
            match Client::connect_with_balanced_channel([self.endpoint.as_str()], Some(with_user), windows.clone())
                .await
            {
                // Until auth is enabled in the cluster, etcd refuses to
                // authenticate anyone: call without the user then.
                Err(error) if describe_etcd_error(&error).contains("authentication is not enabled") => {}
                other => {
                    return other
                        .map(|client| Connected {
                            client,
                            windows,
                            as_user: Some(credentials),
                        })
                        .map_err(|error| self.unavailable(&error));
                }
            }
        }
        let windows = WideWindows::default();
        Client::connect_with_balanced_channel([self.endpoint.as_str()], Some(options), windows.clone())
            .await
            .map(|client| Connected {
                client,
                windows,
                as_user: None,
            })
            .map_err(|error| self.unavailable(&error))
    }

    fn unavailable(&self, error: &etcd_client::Error) -> AgentError {
        AgentError::EtcdUnavailable {
            endpoint: self.endpoint.clone(),
            reason: describe_etcd_error(error),
        }
    }

    /// The member's Status plus its view of the cluster version. A member
    /// that does not answer gives `reachable: false` with the error.
    pub async fn status(&self) -> MemberStatus {
        match self.try_status().await {
            Ok(status) => status,
            Err(error) => MemberStatus {
                reachable: false,
                error: crate::error::error_chain(&error),
                ..MemberStatus::default()
            },
        }
    }

    async fn try_status(&self) -> Result<MemberStatus, AgentError> {
        let mut client = self.client().await?;
        let status = client.status().await.map_err(|error| self.unavailable(&error))?;
        let header = status.header();
        let member_id = header.map_or(0, etcd_client::ResponseHeader::member_id);
        Ok(MemberStatus {
            reachable: true,
            error: String::new(),
            member_id,
            leader_id: status.leader(),
            is_leader: member_id != 0 && status.leader() == member_id,
            is_learner: status.is_learner(),
            version: status.version().to_owned(),
            cluster_version: self.cluster_version().await.unwrap_or_default(),
            raft_term: status.raft_term(),
            raft_index: status.raft_index(),
            raft_applied_index: status.raft_applied_index(),
            db_size: u64::try_from(status.db_size()).unwrap_or(0),
            db_size_in_use: u64::try_from(status.raft_used_db_size()).unwrap_or(0),
            errors: status.errors().to_vec(),
            cluster_id: header.map_or(0, etcd_client::ResponseHeader::cluster_id),
            revision: header.map_or(0, etcd_client::ResponseHeader::revision),
        })
    }

    /// The cluster's current revision, read through a linearizable read (a
    /// count of a key nobody writes), so it covers every write committed
    /// before the call, wherever it was made; `None` when the member does
    /// not answer within `limit`.
    pub async fn linearized_revision(&self, limit: std::time::Duration) -> Option<i64> {
        let read = async {
            let mut client = self.client().await.ok()?;
            let answer = client
                .get(
                    "/steward-agent/revision-probe",
                    Some(etcd_client::GetOptions::new().with_count_only()),
                )
                .await
                .ok()?;
            answer.header().map(etcd_client::ResponseHeader::revision)
        };
        tokio::time::timeout(limit, read).await.ok().flatten()
    }

    /// `etcdcluster` from `GET /version`; `None` when the endpoint does not
    /// answer or the cluster version is not decided yet ("not_decided").
    pub async fn cluster_version(&self) -> Option<String> {
        #[derive(serde::Deserialize)]
        struct Version {
            etcdcluster: String,
        }
        let url = format!("{}/version", self.endpoint.trim_end_matches('/'));
        let response = self.http.get(url).send().await.ok()?;
        let version: Version = response.json().await.ok()?;
        (!version.etcdcluster.is_empty() && version.etcdcluster != "not_decided").then_some(version.etcdcluster)
    }

    /// What `etcdctl endpoint health` checks: a linearizable read succeeds
    /// (a permission error still proves the member serves) and no alarm is
    /// raised. Returns why not.
    pub async fn check_health(&self) -> Result<(), String> {
        let mut client = self.client().await.map_err(|e| crate::error::error_chain(&e))?;
        match client.get("health", None).await {
            Ok(_) => {}
            Err(etcd_client::Error::GRpcStatus(status)) if status.code() == tonic::Code::PermissionDenied => {}
            Err(error) => return Err(format!("linearizable read failed: {}", describe_etcd_error(&error))),
        }
        match client
            .alarm(etcd_client::AlarmAction::Get, etcd_client::AlarmType::None, None)
            .await
        {
            Ok(alarms) if !alarms.alarms().is_empty() => {
                let names: Vec<String> = alarms.alarms().iter().map(|a| format!("{:?}", a.alarm())).collect();
                Err(format!("alarm raised: {}", names.join(", ")))
            }
            Ok(_) => Ok(()),
            Err(error) => Err(format!("alarm list failed: {}", describe_etcd_error(&error))),
        }
    }
}

/// An etcd-client error in words: gRPC statuses as code and message,
/// transport errors as their innermost cause ("Connection refused").
#[must_use]
pub fn describe_etcd_error(error: &etcd_client::Error) -> String {
    match error {
        etcd_client::Error::GRpcStatus(status) => steward_proto::error_text::status_with_causes(status),
        etcd_client::Error::TransportError(transport) => {
            format!(
                "cannot connect: {}",
                steward_proto::error_text::innermost_cause(transport)
            )
        }
        other => other.to_string(),
    }
}
