//! `steward local down`: ask every agent to stop etcd, stop the recorded
//! agent processes (by pid and start time), end whatever else still names
//! the directory, and keep or remove the files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use steward_proto::v1 as pb;

use super::layout::{AgentProcess, PROCESSES_FILE};
use super::process::{self, Ended, Liveness, ProcessId};
use super::{AGENT_GRACE, CALL_TIMEOUT, LEFTOVER_GRACE, LocalError, io_error, read_processes};
use crate::engine::cluster::file::{self as cluster_file, ClusterFile};
use crate::engine::connect::Connector;
use crate::engine::connect::agent::{self, AgentAddress};

/// How long `down` waits for an agent to stop etcd (its own grace is
/// [`super::layout::STOP_GRACE`]).
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// What [`down`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownReport {
    /// The directory.
    pub dir: PathBuf,
    /// False when the directory did not exist (nothing to do).
    pub existed: bool,
    /// Each member.
    pub members: Vec<MemberDown>,
    /// Other processes that named the directory and were ended.
    pub leftovers: Vec<LeftoverDown>,
    /// Whether the directory was removed.
    pub purged: bool,
}

impl DownReport {
    /// Whether anything was running before `down` (false for a second run).
    #[must_use]
    pub fn was_running(&self) -> bool {
        !self.leftovers.is_empty()
            || self.members.iter().any(|m| {
                matches!(m.etcd, EtcdStop::Stopped)
                    || matches!(
                        m.agent_process,
                        Some(Ended::Terminated | Ended::Killed | Ended::Survived)
                    )
            })
    }
}

/// One member's part in [`down`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDown {
    /// The member name.
    pub name: String,
    /// The agent's address.
    pub agent: String,
    /// What became of etcd through the agent.
    pub etcd: EtcdStop,
    /// How the recorded agent process ended; `None` when none was recorded.
    pub agent_process: Option<Ended>,
}

/// What asking an agent to stop etcd achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtcdStop {
    /// The agent stopped etcd.
    Stopped,
    /// etcd was not running under the agent (its state is given).
    NotRunning(String),
    /// The agent is not running (its recorded process is gone).
    AgentGone,
    /// The agent did not answer although it may be running.
    Unreachable(String),
    /// Whatever answers at the address is not this cluster's agent.
    NotOurs(String),
    /// The agent refused or failed Stop.
    Refused(String),
}

/// A process that named the directory after the agents were stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftoverDown {
    /// Its pid.
    pub pid: u32,
    /// Its command line.
    pub command: String,
    /// How it ended.
    pub ended: Ended,
}

/// Stops the local cluster in `dir`: asks every agent to stop etcd, stops
/// the recorded agent processes (SIGTERM, 15 s, SIGKILL; checked by pid and
/// start time), then ends any process whose command line still names `dir`
/// (SIGTERM, 10 s, SIGKILL). Keeps the files unless `purge`. Safe to run
/// again: a directory that is gone or a cluster that is already down is
/// reported as such.
///
/// # Errors
/// [`LocalError::NotLocalDir`] or [`LocalError::NotLocal`] for a directory
/// `steward local up` did not make (nothing is signalled then), a cluster
/// file or process record that cannot be read, processes that survive
/// SIGKILL, or a purge that fails.
pub async fn down(dir: &Path, purge: bool) -> Result<DownReport, LocalError> {
    let dir = process::absolute(dir);
    if std::fs::symlink_metadata(&dir).is_err() {
        return Ok(DownReport {
            dir,
            existed: false,
            members: Vec::new(),
            leftovers: Vec::new(),
            purged: false,
        });
    }
    let dir = std::fs::canonicalize(&dir).map_err(io_error("resolve", &dir))?;
    let cluster_path = dir.join(cluster_file::FILE_NAME);
    let cluster = if cluster_path.exists() {
        let cluster = ClusterFile::load(&cluster_path)?;
        if cluster.local.is_none() {
            return Err(LocalError::NotLocal { path: cluster_path });
        }
        Some(cluster)
    } else {
        None
    };
    let processes = read_processes(&dir.join(PROCESSES_FILE))?;
    if cluster.is_none() && processes.is_none() {
        return Err(LocalError::NotLocalDir { dir });
    }
    let records = processes.map(|p| p.agents).unwrap_or_default();
    // The agents of a cluster made with certificates answer only its admin.
    let pki = super::pki::Pki::at(&dir);
    let connector = if pki.exists() {
        Connector::default()
            .with_agent_tls(Some(&pki.admin()))
            .map_err(|e| LocalError::Tls(e.to_string()))?
    } else {
        Connector::default()
    };

    // The members: from the cluster file, and any agent recorded beyond it
    // (an `up` that did not finish has only the record).
    let mut members: Vec<(String, String)> = cluster
        .iter()
        .flat_map(|c| c.members.iter().map(|m| (m.name.clone(), m.agent.to_string())))
        .collect();
    for record in &records {
        if !members.iter().any(|(name, _)| *name == record.member) {
            members.push((record.member.clone(), record.agent.clone()));
        }
    }

    let mut report = Vec::with_capacity(members.len());
    for (name, agent) in members {
        let record = records.iter().find(|r| r.member == name);
        let etcd = stop_etcd(&connector, &dir, &agent, record).await;
        tracing::info!(member = %name, ?etcd, "etcd");
        report.push(MemberDown {
            name,
            agent,
            etcd,
            agent_process: None,
        });
    }
    let ids: Vec<ProcessId> = records.iter().map(AgentProcess::id).collect();
    let ended = process::terminate(&ids, AGENT_GRACE).await;
    for (record, ended) in records.iter().zip(ended) {
        if let Some(member) = report.iter_mut().find(|m| m.name == record.member) {
            member.agent_process = Some(ended);
        }
    }

    let found = process::mentioning(&dir);
    let ids: Vec<ProcessId> = found.iter().map(|f| f.id).collect();
    let ended = process::terminate(&ids, LEFTOVER_GRACE).await;
    let leftovers: Vec<LeftoverDown> = found
        .into_iter()
        .zip(ended)
        .map(|(found, ended)| LeftoverDown {
            pid: found.id.pid,
            command: found.command,
            ended,
        })
        .collect();
    let survivors = process::mentioning(&dir);
    if !survivors.is_empty() {
        return Err(LocalError::Survivors {
            dir,
            pids: survivors
                .iter()
                .map(|f| f.id.pid.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    if purge {
        std::fs::remove_dir_all(&dir).map_err(io_error("remove", &dir))?;
    }
    Ok(DownReport {
        dir,
        existed: true,
        members: report,
        leftovers,
        purged: purge,
    })
}

/// Asks the agent at `agent` to stop etcd, after checking that it is this
/// cluster's agent (its state dir lies inside `dir`).
async fn stop_etcd(connector: &Connector, dir: &Path, agent: &str, record: Option<&AgentProcess>) -> EtcdStop {
    let agent_gone = record.is_some_and(|r| r.id().liveness() != Liveness::Alive);
    let address: AgentAddress = match agent.parse() {
        Ok(address) => address,
        Err(error) => return EtcdStop::Unreachable(crate::engine::error::chain(&error)),
    };
    let mut clients = match agent::connect(connector, &address).await {
        Ok(clients) => clients,
        Err(_) if agent_gone => return EtcdStop::AgentGone,
        Err(error) => return EtcdStop::Unreachable(crate::engine::error::chain(&error)),
    };
    let status = match tokio::time::timeout(CALL_TIMEOUT, clients.agent.get_status(pb::GetStatusRequest {})).await {
        Ok(Ok(response)) => response.into_inner(),
        Ok(Err(status)) => return EtcdStop::Unreachable(format!("GetStatus: {}", status.message())),
        Err(_) => return EtcdStop::Unreachable("no answer to GetStatus".to_owned()),
    };
    let info = status.agent.unwrap_or_default();
    if !Path::new(&info.state_dir).starts_with(dir) {
        return EtcdStop::NotOurs(format!("the agent at {address} owns {}", info.state_dir));
    }
    let state = pb::AgentState::try_from(info.state).unwrap_or(pb::AgentState::Unspecified);
    if !matches!(state, pb::AgentState::Running | pb::AgentState::Failed) {
        return EtcdStop::NotRunning(crate::format::agent_state(info.state));
    }
    match tokio::time::timeout(STOP_TIMEOUT, clients.agent.stop(pb::StopRequest::default())).await {
        Ok(Ok(_)) => EtcdStop::Stopped,
        Ok(Err(status)) => EtcdStop::Refused(format!(
            "{}: {}",
            crate::engine::error::CodeName(status.code()),
            status.message()
        )),
        Err(_) => EtcdStop::Refused(format!(
            "no answer to Stop within {}",
            humantime::format_duration(STOP_TIMEOUT)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::layout::ProcessesFile;
    use crate::local::write_processes;

    #[tokio::test]
    async fn down_refuses_directories_it_did_not_make() {
        let dir = tempfile::tempdir().unwrap();
        let error = down(dir.path(), true).await.unwrap_err();
        assert!(matches!(error, LocalError::NotLocalDir { .. }), "{error}");
        assert!(dir.path().exists());

        std::fs::write(
            dir.path().join(cluster_file::FILE_NAME),
            "[[members]]\nname = \"m0\"\nagent = \"127.0.0.1:1\"\n",
        )
        .unwrap();
        let error = down(dir.path(), true).await.unwrap_err();
        assert!(matches!(error, LocalError::NotLocal { .. }), "{error}");
        assert!(dir.path().exists());
    }

    #[tokio::test]
    async fn down_is_idempotent_on_a_dead_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PROCESSES_FILE);
        // A record of an agent that is long gone: a pid that cannot exist.
        let record = ProcessesFile {
            agents: vec![AgentProcess {
                member: "m0".into(),
                agent: "127.0.0.1:1".into(),
                pid: u32::MAX - 1,
                start_ticks: 1,
            }],
        };
        write_processes(&path, &record).unwrap();
        let report = down(dir.path(), false).await.unwrap();
        assert!(report.existed);
        assert!(!report.was_running(), "{report:?}");
        assert_eq!(report.members[0].etcd, EtcdStop::AgentGone);
        assert_eq!(report.members[0].agent_process, Some(Ended::AlreadyGone));
        assert!(path.exists(), "files are kept without --purge");

        let report = down(dir.path(), true).await.unwrap();
        assert!(report.purged);
        assert!(!dir.path().exists());
        let report = down(dir.path(), true).await.unwrap();
        assert!(!report.existed && !report.purged);
    }
}
