//! How the coordinator talks to etcd itself.
//!
//! etcd-client balances requests over every endpoint of a client, even one
//! with a single endpoint list; questions about one member (its Status, its
//! health) therefore go through a client connected to that member only.

use std::fmt;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use steward_proto::EtcdVersion;

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
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The credentials of this process's etcd connections, chosen once per
/// command (`--user`/`--password` or their variables).
static CREDENTIALS: RwLock<Option<Credentials>> = RwLock::new(None);

/// Authenticates every etcd connection from now on as `credentials`
/// (`None`: no credentials).
pub fn use_credentials(credentials: Option<Credentials>) {
    *CREDENTIALS.write().unwrap_or_else(PoisonError::into_inner) = credentials;
}

fn anonymous_options() -> ConnectOptions {
    ConnectOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_timeout(REQUEST_TIMEOUT)
}

fn options() -> ConnectOptions {
    let credentials = CREDENTIALS.read().unwrap_or_else(PoisonError::into_inner).clone();
    match credentials {
        Some(c) => anonymous_options().with_user(c.user, c.password),
        None => anonymous_options(),
    }
}

/// A client over several endpoints (for cluster-wide questions).
pub async fn connect(endpoints: &[String], what: &'static str) -> Result<Client, EtcdError> {
    Client::connect(endpoints, Some(options()))
        .await
        .map_err(|e| EtcdError {
            endpoints: endpoints.join(","),
            what,
            reason: describe(&e),
        })
}

/// A client for one member only.
pub async fn connect_member(url: &str, what: &'static str) -> Result<Client, EtcdError> {
    connect(&[url.to_owned()], what).await
}

/// What `etcdctl endpoint health` checks, through one member: a
/// linearizable read succeeds (a permission error still proves it serves).
pub async fn check_health(client: &mut Client) -> Result<(), String> {
    match client.get("health", None).await {
        Ok(_) => Ok(()),
        Err(etcd_client::Error::GRpcStatus(status)) if status.code() == tonic::Code::PermissionDenied => Ok(()),
        // Like `etcdctl endpoint health`, a read refused for lack of a user
        // proves nothing about quorum.
        Err(etcd_client::Error::GRpcStatus(status)) if status.message().contains("user name is empty") => Err(
            "auth is enabled and steward has no etcd credentials to run the quorum read with (--user, --password)"
                .to_owned(),
        ),
        Err(error) => Err(format!("quorum read failed: {}", describe(&error))),
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

/// An HTTP client for `/version`.
pub fn http_client() -> Result<reqwest::Client, EtcdError> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| EtcdError {
            endpoints: String::new(),
            what: "an HTTP client",
            reason: e.to_string(),
        })
}

/// Whether authentication is enabled. etcd has no AuthStatus call before
/// 3.5 and etcd-client exposes none, so ask `endpoint` for the user list
/// without credentials (even when steward has some): it is answered only
/// while auth is disabled.
pub async fn auth_enabled(endpoint: &str) -> Result<bool, String> {
    let mut client = Client::connect([endpoint], Some(anonymous_options()))
        .await
        .map_err(|e| describe(&e))?;
    match client.user_list().await {
        Ok(_) => Ok(false),
        Err(etcd_client::Error::GRpcStatus(status))
            if matches!(
                status.code(),
                tonic::Code::InvalidArgument | tonic::Code::PermissionDenied | tonic::Code::Unauthenticated
            ) =>
        {
            Ok(true)
        }
        Err(error) => Err(describe(&error)),
    }
}

/// Active alarms as (member id, alarm name).
pub async fn alarms(client: &mut Client) -> Result<Vec<(u64, String)>, String> {
    let response = client
        .alarm(etcd_client::AlarmAction::Get, etcd_client::AlarmType::None, None)
        .await
        .map_err(|e| describe(&e))?;
    Ok(response
        .alarms()
        .iter()
        .map(|a| (a.member_id(), format!("{:?}", a.alarm()).to_uppercase()))
        .collect())
}

/// Whether any lease exists (LeaseLeases, etcd 3.3+).
pub async fn leases_in_use(client: &mut Client) -> Result<bool, String> {
    client
        .leases()
        .await
        .map(|r| !r.leases().is_empty())
        .map_err(|e| describe(&e))
}
