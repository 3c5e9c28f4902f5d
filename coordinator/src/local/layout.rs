//! The layout of a local cluster's directory and the agent config of each
//! member:
//!
//! ```text
//! D/cluster.toml            the cluster description (written once ready)
//! D/local-processes.toml    the agents started, by pid and start time
//! D/m<i>/agent.toml         member i's agent config
//! D/m<i>/agent.log          the agent's stdout and stderr
//! D/m<i>/state/             the agent's state dir (etcd's log in logs/etcd.log)
//! D/m<i>/data/              etcd's data dir
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::process::ProcessId;
use crate::engine::connect::agent::AgentAddress;

/// The record of the agent processes `steward local up` started.
pub const PROCESSES_FILE: &str = "local-processes.toml";

/// How long an agent gives etcd between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// One member of a local cluster: its files and ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberLayout {
    /// etcd's `--name`: `m<i>`.
    pub name: String,
    /// `D/m<i>`.
    pub dir: PathBuf,
    /// etcd's client port on 127.0.0.1.
    pub client_port: u16,
    /// etcd's peer port on 127.0.0.1.
    pub peer_port: u16,
    /// The agent's gRPC port on 127.0.0.1.
    pub agent_port: u16,
    /// etcd serves TLS on its client and peer URLs.
    pub etcd_tls: bool,
}

impl MemberLayout {
    /// Member `index` of the cluster in `dir`, with three ports.
    #[must_use]
    pub fn new(dir: &Path, index: usize, [client_port, peer_port, agent_port]: [u16; 3]) -> Self {
        let name = format!("m{index}");
        Self {
            dir: dir.join(&name),
            name,
            client_port,
            peer_port,
            agent_port,
            etcd_tls: false,
        }
    }

    /// The same member serving TLS (`https://`) when `etcd_tls`.
    #[must_use]
    pub const fn with_etcd_tls(mut self, etcd_tls: bool) -> Self {
        self.etcd_tls = etcd_tls;
        self
    }

    const fn scheme(&self) -> &'static str {
        if self.etcd_tls { "https" } else { "http" }
    }

    /// `http://127.0.0.1:<client port>` (`https://` with etcd TLS).
    #[must_use]
    pub fn client_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.client_port)
    }

    /// `http://127.0.0.1:<peer port>` (`https://` with etcd TLS).
    #[must_use]
    pub fn peer_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.peer_port)
    }

    /// `127.0.0.1:<agent port>`.
    #[must_use]
    pub fn agent_address(&self) -> AgentAddress {
        // A loopback address with a port always parses.
        format!("127.0.0.1:{}", self.agent_port)
            .parse()
            .unwrap_or_else(|e| unreachable!("loopback address does not parse: {e}"))
    }

    /// The agent's config file.
    #[must_use]
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("agent.toml")
    }

    /// The agent's stdout and stderr.
    #[must_use]
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("agent.log")
    }

    /// The agent's state dir.
    #[must_use]
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// etcd's data dir.
    #[must_use]
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// etcd's log, inside the agent's state dir.
    #[must_use]
    pub fn etcd_log_path(&self) -> PathBuf {
        self.state_dir().join("logs").join("etcd.log")
    }
}

/// `--initial-cluster` for `members`: `m0=http://...,m1=http://...`.
#[must_use]
pub fn initial_cluster(members: &[MemberLayout]) -> String {
    members
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url()))
        .collect::<Vec<_>>()
        .join(",")
}

/// The agent config of `member` (see the agent's configuration reference):
/// loopback URLs, its state and data dirs inside the member dir, imports
/// from the release directory, and the first version started from
/// `initial_binary`.
#[derive(Debug, Serialize)]
struct AgentConfig {
    listen: String,
    state_dir: PathBuf,
    import_dirs: Vec<PathBuf>,
    initial_binary: PathBuf,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    insecure: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<AgentTlsSection>,
    supervision: Supervision,
    member: MemberSpec,
}

/// `[tls]` of an agent config: its certificate and key, and the CA of its
/// callers.
#[derive(Debug, Clone, Serialize)]
pub struct AgentTlsSection {
    /// The agent's certificate.
    pub cert_file: PathBuf,
    /// Its key.
    pub key_file: PathBuf,
    /// The CA of the callers' certificates.
    pub client_ca_file: PathBuf,
}

#[derive(Debug, Serialize)]
struct Supervision {
    stop_grace: String,
}

/// `[member.tls]`: etcd's own client and peer TLS.
#[derive(Debug, Clone, Serialize)]
pub struct MemberTlsSection {
    /// `--cert-file`.
    pub cert_file: PathBuf,
    /// `--key-file`.
    pub key_file: PathBuf,
    /// `--trusted-ca-file`.
    pub trusted_ca_file: PathBuf,
    /// `--client-cert-auth`.
    pub client_cert_auth: bool,
    /// `--peer-cert-file`.
    pub peer_cert_file: PathBuf,
    /// `--peer-key-file`.
    pub peer_key_file: PathBuf,
    /// `--peer-trusted-ca-file`.
    pub peer_trusted_ca_file: PathBuf,
    /// `--peer-client-cert-auth`.
    pub peer_client_cert_auth: bool,
}

#[derive(Debug, Serialize)]
struct MemberSpec {
    name: String,
    data_dir: PathBuf,
    listen_client_urls: Vec<String>,
    advertise_client_urls: Vec<String>,
    listen_peer_urls: Vec<String>,
    initial_advertise_peer_urls: Vec<String>,
    initial_cluster: String,
    initial_cluster_state: String,
    initial_cluster_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<MemberTlsSection>,
}

/// The text of `member`'s `agent.toml`.
///
/// # Errors
/// A TOML encoding error (only on a bug: every field encodes).
pub fn agent_config(
    member: &MemberLayout,
    initial_cluster: &str,
    token: &str,
    binaries: &Path,
    initial_binary: &Path,
    tls: Option<&AgentTlsSection>,
) -> Result<String, toml::ser::Error> {
    let config = AgentConfig {
        listen: member.agent_address().to_string(),
        state_dir: member.state_dir(),
        import_dirs: vec![binaries.to_owned()],
        initial_binary: initial_binary.to_owned(),
        insecure: tls.is_none(),
        tls: tls.cloned(),
        supervision: Supervision {
            stop_grace: humantime::format_duration(STOP_GRACE).to_string(),
        },
        member: MemberSpec {
            name: member.name.clone(),
            data_dir: member.data_dir(),
            listen_client_urls: vec![member.client_url()],
            advertise_client_urls: vec![member.client_url()],
            listen_peer_urls: vec![member.peer_url()],
            initial_advertise_peer_urls: vec![member.peer_url()],
            initial_cluster: initial_cluster.to_owned(),
            initial_cluster_state: "new".to_owned(),
            initial_cluster_token: token.to_owned(),
            tls: member
                .etcd_tls
                .then(|| super::pki::member_tls(member.dir.parent().unwrap_or(&member.dir), &member.name)),
        },
    };
    let body = toml::to_string_pretty(&config)?;
    Ok(format!("# Written by `steward local up`.\n{body}"))
}

/// `local-processes.toml`: every agent `steward local up` started, written
/// right after each start (so an interrupted `up` leaves a record that
/// `steward local down` can use) and marking the directory as a local
/// cluster's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessesFile {
    /// The agents, in start order.
    #[serde(default)]
    pub agents: Vec<AgentProcess>,
}

/// One started agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentProcess {
    /// The member it owns.
    pub member: String,
    /// Where it listens.
    pub agent: String,
    /// Its pid.
    pub pid: u32,
    /// Its start time in clock ticks since boot (`/proc/<pid>/stat` field
    /// 22), which tells it apart from a later process with the same pid.
    pub start_ticks: u64,
}

impl AgentProcess {
    /// The process identity.
    #[must_use]
    pub const fn id(&self) -> ProcessId {
        ProcessId {
            pid: self.pid,
            start_ticks: self.start_ticks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_config_has_every_field_the_agent_needs() {
        let dir = Path::new("/tmp/demo");
        let members: Vec<MemberLayout> = (0..3)
            .map(|i| {
                let base = 40_000 + u16::try_from(i).unwrap() * 3;
                MemberLayout::new(dir, i, [base, base + 1, base + 2])
            })
            .collect();
        let cluster = initial_cluster(&members);
        assert_eq!(
            cluster,
            "m0=http://127.0.0.1:40001,m1=http://127.0.0.1:40004,m2=http://127.0.0.1:40007"
        );
        let text = agent_config(
            &members[1],
            &cluster,
            "steward-local-demo",
            Path::new("/e"),
            Path::new("/e/3.4.23/etcd"),
            None,
        )
        .unwrap();
        let value: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(value["listen"].as_str(), Some("127.0.0.1:40005"));
        assert_eq!(value["state_dir"].as_str(), Some("/tmp/demo/m1/state"));
        assert_eq!(value["initial_binary"].as_str(), Some("/e/3.4.23/etcd"));
        assert_eq!(value["import_dirs"][0].as_str(), Some("/e"));
        assert_eq!(value["supervision"]["stop_grace"].as_str(), Some("10s"));
        let member = &value["member"];
        assert_eq!(member["name"].as_str(), Some("m1"));
        assert_eq!(member["data_dir"].as_str(), Some("/tmp/demo/m1/data"));
        assert_eq!(member["listen_client_urls"][0].as_str(), Some("http://127.0.0.1:40003"));
        assert_eq!(
            member["initial_advertise_peer_urls"][0].as_str(),
            Some("http://127.0.0.1:40004")
        );
        assert_eq!(member["initial_cluster"].as_str(), Some(cluster.as_str()));
        assert_eq!(member["initial_cluster_token"].as_str(), Some("steward-local-demo"));
    }

    #[test]
    fn the_processes_file_round_trips() {
        let file = ProcessesFile {
            agents: vec![AgentProcess {
                member: "m0".into(),
                agent: "127.0.0.1:40002".into(),
                pid: 42,
                start_ticks: 4242,
            }],
        };
        let text = toml::to_string_pretty(&file).unwrap();
        assert_eq!(toml::from_str::<ProcessesFile>(&text).unwrap(), file);
        assert_eq!(toml::from_str::<ProcessesFile>("").unwrap(), ProcessesFile::default());
    }
}
