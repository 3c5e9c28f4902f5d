//! How the coordinator talks to etcd itself.
//!
//! etcd-client balances requests over every endpoint of a client, even one
//! with a single endpoint list; questions about one member (its Status, its
//! health) therefore go through a client connected to that member only.

use std::fmt;
use std::time::Duration;

use etcd_client::Client;
use steward_proto::EtcdVersion;

use crate::engine::connect::Connector;

/// Connection timeout towards a member.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Timeout of one request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why etcd did not answer.
#[derive(Debug, thiserror::Error)]
#[error("etcd at {endpoints} did not answer {what}: {reason}")]
pub struct EtcdError {
    /// The endpoints asked.
    pub endpoints: String,
    /// The question.
    pub what: &'static str,
    /// What the client said.
    pub reason: String,
}

/// An etcd-client error in words: gRPC statuses as code and message with
/// their causes, transport errors as their innermost cause.
#[must_use]
pub fn describe(error: &etcd_client::Error) -> String {
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

/// A user and password for clusters with auth enabled. The password is
/// never printed: not by `Debug`, not in errors, not in reports.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The etcd user.
    pub user: String,
    password: String,
}

impl Credentials {
    /// `user` with `password`.
    #[must_use]
    pub const fn new(user: String, password: String) -> Self {
        Self { user, password }
    }

    /// The password, for the connection only.
    pub(crate) fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The files of an etcd TLS setting, as etcdctl's `--cacert`, `--cert`,
/// `--key` take them.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdTlsFiles {
    /// The CA of the members' certificates.
    pub cacert: Option<std::path::PathBuf>,
    /// A client certificate (for `--client-cert-auth`).
    pub cert: Option<std::path::PathBuf>,
    /// Its key.
    pub key: Option<std::path::PathBuf>,
}

impl EtcdTlsFiles {
    /// Nothing set.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A client over several endpoints (for cluster-wide questions).
pub async fn connect(connector: &Connector, endpoints: &[String], what: &'static str) -> Result<Client, EtcdError> {
    let connected = match Client::connect(endpoints, Some(connector.etcd_options())).await {
        // Credentials given for a cluster without auth: etcd refuses to
        // authenticate anyone then, and needs no user.
        Err(error) if describe(&error).contains("authentication is not enabled") => {
            Client::connect(endpoints, Some(connector.etcd_options_anonymous())).await
        }
        other => other,
    };
    connected.map_err(|e| EtcdError {
        endpoints: endpoints.join(","),
        what,
        reason: describe(&e),
    })
}

/// A client for one member only.
pub async fn connect_member(connector: &Connector, url: &str, what: &'static str) -> Result<Client, EtcdError> {
    connect(connector, &[url.to_owned()], what).await
}

/// Runs `op` through one member at a time, in the order of `endpoints`,
/// until one answers within [`REQUEST_TIMEOUT`]. A client balanced over
/// every endpoint keeps sending part of its requests to a member that is
/// frozen or half-dead and waits out each of them; this asks the next
/// member instead. For requests that may be repeated (a read, a put of
/// the same value).
///
/// # Errors
/// The last member's error when none answered.
pub async fn through_any<T, F, Fut>(
    connector: &Connector,
    endpoints: &[String],
    what: &'static str,
    mut op: F,
) -> Result<T, EtcdError>
where
    F: FnMut(Client) -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let mut last = EtcdError {
        endpoints: endpoints.join(","),
        what,
        reason: "no endpoint to ask".into(),
    };
    for endpoint in endpoints {
        let client = match connect_member(connector, endpoint, what).await {
            Ok(client) => client,
            Err(error) => {
                last = error;
                continue;
            }
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, op(client)).await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(error)) => {
                last = EtcdError {
                    endpoints: endpoint.clone(),
                    what,
                    reason: describe(&error),
                };
            }
            Err(_) => {
                last = EtcdError {
                    endpoints: endpoint.clone(),
                    what,
                    reason: format!("no answer within {REQUEST_TIMEOUT:?}"),
                };
            }
        }
        tracing::debug!(%endpoint, reason = %last.reason, "asking the next member");
    }
    Err(last)
}

/// Why one etcd call to one member failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Auth is enabled and steward has no user to call with.
    #[error("auth is enabled and steward has no etcd credentials to run the quorum read with (--user, --password)")]
    NoCredentials,
    /// The linearizable read of the health check failed.
    #[error("quorum read failed: {0}")]
    QuorumRead(String),
    /// etcd refused or failed the call, or could not be reached (etcd's
    /// words, see [`describe`]).
    #[error("{0}")]
    Failed(String),
}

impl CallError {
    fn of(error: &etcd_client::Error) -> Self {
        Self::Failed(describe(error))
    }
}

/// What `etcdctl endpoint health` checks, through one member: a
/// linearizable read succeeds (a permission error still proves it serves).
pub async fn check_health(client: &mut Client) -> Result<(), CallError> {
    match client.get("health", None).await {
        Ok(_) => Ok(()),
        Err(etcd_client::Error::GRpcStatus(status)) if status.code() == tonic::Code::PermissionDenied => Ok(()),
        // Like `etcdctl endpoint health`, a read refused for lack of a user
        // proves nothing about quorum.
        Err(etcd_client::Error::GRpcStatus(status)) if status.message().contains("user name is empty") => {
            Err(CallError::NoCredentials)
        }
        Err(error) => Err(CallError::QuorumRead(describe(&error))),
    }
}

/// The cluster version a member reports on `GET /version`, when decided.
pub async fn cluster_version(http: &reqwest::Client, client_url: &str) -> Option<EtcdVersion> {
    #[derive(serde::Deserialize)]
    struct Version {
        etcdcluster: String,
    }
    let url = format!("{}/version", client_url.trim_end_matches('/'));
    let version: Version = http.get(url).send().await.ok()?.json().await.ok()?;
    version.etcdcluster.parse().ok()
}

/// An HTTP client for `/version`, with `connector`'s etcd TLS.
pub fn http_client(connector: &Connector) -> Result<reqwest::Client, EtcdError> {
    connector.etcd_http_client().map_err(|e| EtcdError {
        endpoints: String::new(),
        what: "an HTTP client",
        reason: e.to_string(),
    })
}

/// Whether authentication is enabled. etcd has no AuthStatus call before
/// 3.5 and etcd-client exposes none, so ask `endpoint` to authenticate a
/// user that cannot exist: etcd answers "authentication is not enabled"
/// only while it is off, whoever asks (a client certificate whose CN names
/// a root user would make a permission-based probe say "off").
pub async fn auth_enabled(connector: &Connector, endpoint: &str) -> Result<bool, CallError> {
    let client = Client::connect([endpoint], Some(connector.etcd_options_anonymous()))
        .await
        .map_err(|e| CallError::of(&e))?;
    let probe = client
        .auth_client()
        .authenticate("steward-auth-probe\u{0}".to_owned(), "-".to_owned())
        .await;
    match probe {
        Err(etcd_client::Error::GRpcStatus(status)) if status.message().contains("authentication is not enabled") => {
            Ok(false)
        }
        Err(etcd_client::Error::GRpcStatus(status))
            if matches!(
                status.code(),
                tonic::Code::InvalidArgument | tonic::Code::PermissionDenied | tonic::Code::Unauthenticated
            ) || status.message().contains("authentication failed") =>
        {
            Ok(true)
        }
        // A user by that name authenticated: auth is on.
        Ok(_) => Ok(true),
        Err(error) => Err(CallError::of(&error)),
    }
}

/// Active alarms as (member id, alarm name).
pub async fn alarms(client: &mut Client) -> Result<Vec<(u64, String)>, CallError> {
    let response = client
        .alarm(etcd_client::AlarmAction::Get, etcd_client::AlarmType::None, None)
        .await
        .map_err(|e| CallError::of(&e))?;
    Ok(response
        .alarms()
        .iter()
        .map(|a| (a.member_id(), format!("{:?}", a.alarm()).to_uppercase()))
        .collect())
}

/// Whether any lease exists (LeaseLeases, etcd 3.3+).
pub async fn leases_in_use(client: &mut Client) -> Result<bool, CallError> {
    client
        .leases()
        .await
        .map(|r| !r.leases().is_empty())
        .map_err(|e| CallError::of(&e))
}
