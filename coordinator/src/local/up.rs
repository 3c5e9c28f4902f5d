//! `steward local up`: pick ports, write the agent configs, start the
//! agents in the background, wait until the cluster has one leader, write
//! `cluster.toml`; on a failure, stop whatever was started.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use steward_proto::EtcdVersion;
use steward_proto::v1 as pb;

use super::layout::{self, AgentProcess, MemberLayout, PROCESSES_FILE, ProcessesFile};
use super::ports::{self, PortSource};
use super::process::{self, ProcessId};
use super::releases::Release;
use super::{AGENT_GRACE, CALL_TIMEOUT, LEFTOVER_GRACE, LocalError, io_error, write_processes};
use crate::engine::cluster::file::{self as cluster_file, ClusterFile, LocalSection, MemberEntry};
use crate::engine::connect::Connector;
use crate::engine::connect::agent;

/// How long [`up`] waits for the cluster to be ready, per attempt.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How often [`up`] looks at the agents while it waits.
const POLL: Duration = Duration::from_millis(200);
/// Attempts with fresh ports when another program took one of ours.
const ATTEMPTS: usize = 3;
/// Lines of etcd's output read to explain a member that does not come up.
const TAIL_LINES: u32 = 200;

/// What [`up`] starts.
#[derive(Debug, Clone)]
pub struct UpSpec {
    /// The cluster directory: must not exist or be empty.
    pub dir: PathBuf,
    /// How many members, 1 to [`super::MAX_MEMBERS`].
    pub members: usize,
    /// The etcd release every member starts with.
    pub release: Release,
    /// The release directory the agents may import from (absolute).
    pub binaries: PathBuf,
    /// `--initial-cluster-token`; `None` for one unique to this cluster.
    pub token: Option<String>,
    /// Where ports come from.
    pub ports: PortSource,
    /// The `steward-agent` executable.
    pub agent_binary: PathBuf,
    /// How long to wait for the cluster, per attempt.
    pub ready_timeout: Duration,
    /// Agents in plaintext development mode instead of mutual TLS.
    pub insecure: bool,
    /// etcd serves TLS on its client and peer URLs, client certificates
    /// required.
    pub etcd_tls: bool,
}

/// A started and ready local cluster.
#[derive(Debug, Clone)]
pub struct UpReport {
    /// The cluster directory (absolute).
    pub dir: PathBuf,
    /// `dir/cluster.toml`.
    pub cluster_path: PathBuf,
    /// What was written there.
    pub cluster: ClusterFile,
    /// The release the members run.
    pub version: EtcdVersion,
    /// Each member, in order.
    pub members: Vec<MemberReport>,
    /// How many attempts it took (more than one when ports were taken).
    pub attempts: usize,
}

/// One member of a started cluster.
#[derive(Debug, Clone)]
pub struct MemberReport {
    /// Its files and ports.
    pub layout: MemberLayout,
    /// The agent's pid.
    pub agent_pid: u32,
    /// The agent's status once the cluster was ready.
    pub status: pb::GetStatusResponse,
}
/// Starts a local cluster as `spec` says and waits until it is ready (every
/// agent answers with a reachable member and all agree on one leader), then
/// writes `cluster.toml`. When another program takes a chosen port, the
/// attempt is stopped and its member dirs removed, and it is tried again
/// with other ports, up to three times. On any failure after processes were
/// started they are all stopped and the directory (with the logs) is kept.
///
/// # Errors
/// [`LocalError`]; after processes were started, [`LocalError::StartFailed`]
/// with the cause.
pub async fn up(spec: &UpSpec) -> Result<UpReport, LocalError> {
    let dir = prepare_dir(&spec.dir)?;
    let processes_path = dir.join(PROCESSES_FILE);
    // The record exists before the first agent starts: it marks the
    // directory as a local cluster's for `down`, even after a crash.
    write_processes(&processes_path, &ProcessesFile::default())?;
    let token = spec.token.clone().unwrap_or_else(|| default_token(&dir));
    let mut connector = Connector::default();
    if !spec.insecure {
        let pki = super::pki::create(&dir, spec.members)?;
        connector = connector
            .with_agent_tls(Some(&pki.admin()))
            .map_err(|e| LocalError::Tls(e.to_string()))?;
    }
    if spec.etcd_tls {
        super::pki::create_etcd(&dir, spec.members)?;
        connector = connector
            .with_etcd_tls(super::pki::etcd_client(&dir).as_ref())
            .map_err(|e| LocalError::Tls(crate::engine::error::chain(&e)))?;
    }
    let mut avoid = BTreeSet::new();
    let mut last_conflict = String::new();
    for attempt in 1..=ATTEMPTS {
        // After the first attempt, processes were started (and stopped):
        // every error then says so and where the logs are.
        let started_before = |cause: LocalError| {
            if attempt > 1 {
                LocalError::StartFailed {
                    dir: dir.clone(),
                    cause: Box::new(cause),
                }
            } else {
                cause
            }
        };
        let ports = ports::pick(spec.members * 3, spec.ports, &avoid).map_err(started_before)?;
        avoid.extend(ports.iter().copied());
        let layouts: Vec<MemberLayout> = ports
            .chunks_exact(3)
            .enumerate()
            .map(|(i, p)| MemberLayout::new(&dir, i, [p[0], p[1], p[2]]).with_etcd_tls(spec.etcd_tls))
            .collect();
        let mut started = Vec::new();
        let outcome = start_and_wait(&connector, spec, &dir, &layouts, &token, &mut started).await;
        let failure = match outcome {
            Ok(statuses) => match finish(spec, &dir, &layouts, &started, statuses, attempt) {
                Ok(report) => return Ok(report),
                Err(error) => Attempt::Failed(error),
            },
            Err(failure) => failure,
        };
        stop_started(&dir, &mut started).await;
        let problem = match failure {
            Attempt::PortsTaken(problem) => problem,
            Attempt::Failed(cause) => {
                return Err(LocalError::StartFailed {
                    dir,
                    cause: Box::new(cause),
                });
            }
        };
        tracing::warn!(attempt, %problem, "a chosen port was taken by another program; trying other ports");
        let restart = || -> Result<(), LocalError> {
            for member in &layouts {
                if member.dir.exists() {
                    std::fs::remove_dir_all(&member.dir).map_err(io_error("remove", &member.dir))?;
                }
            }
            write_processes(&processes_path, &ProcessesFile::default())
        };
        restart().map_err(|cause| LocalError::StartFailed {
            dir: dir.clone(),
            cause: Box::new(cause),
        })?;
        last_conflict = problem;
    }
    Err(LocalError::StartFailed {
        dir,
        cause: Box::new(LocalError::PortsInUse {
            attempts: ATTEMPTS,
            last: last_conflict,
        }),
    })
}

/// Creates `dir` if it is missing, refuses it if it holds anything, and
/// returns its canonical path (which every config and record uses, so the
/// processes' command lines name it exactly).
fn prepare_dir(dir: &Path) -> Result<PathBuf, LocalError> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            let mut entries = std::fs::read_dir(dir).map_err(io_error("list", dir))?;
            if entries.next().is_some() {
                let ours = [cluster_file::FILE_NAME, PROCESSES_FILE]
                    .iter()
                    .any(|name| dir.join(name).exists());
                return Err(if ours {
                    LocalError::DirHasCluster { dir: dir.to_owned() }
                } else {
                    LocalError::DirNotEmpty { dir: dir.to_owned() }
                });
            }
        }
        Ok(_) => return Err(LocalError::NotADirectory { dir: dir.to_owned() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(io_error("create", dir))?;
        }
        Err(e) => return Err(io_error("inspect", dir)(e)),
    }
    std::fs::canonicalize(dir).map_err(io_error("resolve", dir))
}

/// A token unique to this cluster, so members of two local clusters never
/// join each other even when one reuses the other's old ports.
fn default_token(dir: &Path) -> String {
    let base: String = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' })
        .collect();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("steward-local-{base}-{:x}", nanos ^ u128::from(std::process::id()))
}

/// An agent this `steward` started; the handle reaps it if it dies while
/// `up` runs, and is dropped (without killing) when `up` succeeds.
#[derive(Debug)]
struct Started {
    child: Child,
    id: ProcessId,
}

/// Why an attempt did not produce a ready cluster.
#[derive(Debug)]
enum Attempt {
    /// A port was taken by another program: worth another attempt.
    PortsTaken(String),
    /// Anything else.
    Failed(LocalError),
}

impl From<LocalError> for Attempt {
    fn from(error: LocalError) -> Self {
        Self::Failed(error)
    }
}

/// Writes the configs, starts the agents (recording each) and waits.
async fn start_and_wait(
    connector: &Connector,
    spec: &UpSpec,
    dir: &Path,
    layouts: &[MemberLayout],
    token: &str,
    started: &mut Vec<Started>,
) -> Result<Vec<pb::GetStatusResponse>, Attempt> {
    let cluster = layout::initial_cluster(layouts);
    for member in layouts {
        std::fs::create_dir_all(&member.dir).map_err(io_error("create", &member.dir))?;
        let tls = (!spec.insecure).then(|| super::pki::Pki::at(dir).agent_tls(&member.name));
        let config = layout::agent_config(
            member,
            &cluster,
            token,
            &spec.binaries,
            &spec.release.etcd,
            tls.as_ref(),
        )
        .map_err(|source| LocalError::Encode {
            path: member.config_path(),
            source,
        })?;
        cluster_file::write_atomic(&member.config_path(), config.as_bytes()).map_err(LocalError::from)?;
    }
    let mut record = ProcessesFile::default();
    for member in layouts {
        let (child, id) =
            process::spawn_agent(&spec.agent_binary, &member.config_path(), &member.log_path()).map_err(|source| {
                LocalError::Spawn {
                    member: member.name.clone(),
                    binary: spec.agent_binary.clone(),
                    source,
                }
            })?;
        tracing::info!(member = %member.name, pid = id.pid, agent = %member.agent_address(), "agent started");
        started.push(Started { child, id });
        record.agents.push(AgentProcess {
            member: member.name.clone(),
            agent: member.agent_address().to_string(),
            pid: id.pid,
            start_ticks: id.start_ticks,
        });
        write_processes(&dir.join(PROCESSES_FILE), &record)?;
    }
    tokio::select! {
        result = wait_ready(connector, layouts, started, spec.ready_timeout) => result,
        _ = tokio::signal::ctrl_c() => Err(Attempt::Failed(LocalError::Interrupted)),
    }
}

/// Polls until [`observe`] sees a ready cluster, a failure, or the deadline.
async fn wait_ready(
    connector: &Connector,
    layouts: &[MemberLayout],
    started: &mut [Started],
    timeout: Duration,
) -> Result<Vec<pb::GetStatusResponse>, Attempt> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match observe(connector, layouts, started).await {
            Observation::Ready(statuses) => return Ok(statuses),
            Observation::Waiting(problem) => problem,
            Observation::PortsTaken(problem) => return Err(Attempt::PortsTaken(problem)),
            Observation::Failed(error) => return Err(Attempt::Failed(error)),
        };
        if Instant::now() >= deadline {
            return Err(Attempt::Failed(LocalError::NotReady { timeout, last }));
        }
        tracing::debug!(%last, "waiting for the cluster");
        tokio::time::sleep(POLL).await;
    }
}

/// What one look at the agents found.
#[derive(Debug)]
enum Observation {
    /// Every member is reachable and all agree on one leader.
    Ready(Vec<pb::GetStatusResponse>),
    /// Not yet; the first thing missing.
    Waiting(String),
    /// A port was taken.
    PortsTaken(String),
    /// Something that waiting will not fix.
    Failed(LocalError),
}

/// Looks at every agent once.
async fn observe(connector: &Connector, layouts: &[MemberLayout], started: &mut [Started]) -> Observation {
    let mut statuses = Vec::with_capacity(layouts.len());
    let mut waiting = None;
    for (member, agent) in layouts.iter().zip(started.iter_mut()) {
        if let Ok(Some(status)) = agent.child.try_wait() {
            let log = member.log_path();
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(line) = address_in_use(text.lines()) {
                return Observation::PortsTaken(format!("the agent of {}: {line}", member.name));
            }
            return Observation::Failed(LocalError::AgentExited {
                member: member.name.clone(),
                status: status.to_string(),
                log,
            });
        }
        match member_state(connector, member).await {
            MemberState::Ready(status) => statuses.push(*status),
            MemberState::Waiting(problem) => {
                waiting.get_or_insert(problem);
            }
            MemberState::PortsTaken(problem) => return Observation::PortsTaken(problem),
            MemberState::Failed(error) => return Observation::Failed(error),
        }
    }
    if let Some(problem) = waiting {
        return Observation::Waiting(problem);
    }
    let mut leaders: Vec<u64> = statuses
        .iter()
        .map(|s| s.member.as_ref().map_or(0, |m| m.leader_id))
        .collect();
    leaders.dedup();
    if leaders.len() != 1 {
        return Observation::Waiting(format!(
            "the members do not agree on a leader yet ({})",
            leaders
                .iter()
                .map(|l| format!("{l:016x}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Observation::Ready(statuses)
}

/// One member as its agent reports it.
#[derive(Debug)]
enum MemberState {
    Ready(Box<pb::GetStatusResponse>),
    Waiting(String),
    PortsTaken(String),
    Failed(LocalError),
}

async fn member_state(connector: &Connector, member: &MemberLayout) -> MemberState {
    let address = member.agent_address();
    let mut clients = match agent::connect(connector, &address).await {
        Ok(clients) => clients,
        Err(error) => {
            return MemberState::Waiting(format!(
                "the agent of {} does not answer yet: {}",
                member.name,
                crate::engine::error::chain(&error)
            ));
        }
    };
    let status = match tokio::time::timeout(CALL_TIMEOUT, clients.agent.get_status(pb::GetStatusRequest {})).await {
        Ok(Ok(response)) => response.into_inner(),
        Ok(Err(status)) => {
            return MemberState::Waiting(format!(
                "GetStatus on the agent of {}: {}",
                member.name,
                status.message()
            ));
        }
        Err(_) => return MemberState::Waiting(format!("the agent of {} does not answer GetStatus", member.name)),
    };
    let agent = status.agent.clone().unwrap_or_default();
    if agent.state_dir != member.state_dir().to_string_lossy() {
        // Another agent holds our port; ours will fail to bind and exit,
        // which the next look sees.
        return MemberState::Waiting(format!(
            "{address} answers for another agent (state dir {}), not the one started for {}",
            agent.state_dir, member.name
        ));
    }
    let process = status.process.clone().unwrap_or_default();
    let reported = status.member.clone().unwrap_or_default();
    let failed = agent.state == pb::AgentState::Failed as i32;
    if failed || (!reported.reachable && (!process.running || process.restart_count > 0)) {
        if let Some(line) = etcd_address_in_use(&mut clients).await {
            return MemberState::PortsTaken(format!("etcd of {}: {line}", member.name));
        }
        if failed {
            return MemberState::Failed(LocalError::AgentFailed {
                member: member.name.clone(),
                reason: agent.state_reason,
            });
        }
    }
    if !reported.reachable {
        return MemberState::Waiting(format!("{} does not answer yet: {}", member.name, reported.error));
    }
    if reported.leader_id == 0 {
        return MemberState::Waiting(format!("{} has no leader yet", member.name));
    }
    MemberState::Ready(Box::new(status))
}

/// The line of etcd's recent output that says a port was taken, if any.
async fn etcd_address_in_use(clients: &mut agent::AgentClients) -> Option<String> {
    let request = pb::TailLogsRequest {
        lines: TAIL_LINES,
        follow: false,
    };
    let read = async {
        let mut stream = clients.agent.tail_logs(request).await.ok()?.into_inner();
        let mut lines = Vec::new();
        while let Ok(Some(message)) = stream.message().await {
            lines.extend(message.lines);
        }
        Some(lines)
    };
    let lines = tokio::time::timeout(CALL_TIMEOUT, read).await.ok()??;
    address_in_use(lines.iter().map(String::as_str))
}

/// The first line saying "address already in use" (Rust's io::Error and
/// Go's net package both word it so).
fn address_in_use<'a>(lines: impl Iterator<Item = &'a str>) -> Option<String> {
    lines
        .into_iter()
        .find(|line| line.to_ascii_lowercase().contains("address already in use"))
        .map(|line| line.trim().to_owned())
}

/// Writes `cluster.toml` and builds the report.
fn finish(
    spec: &UpSpec,
    dir: &Path,
    layouts: &[MemberLayout],
    started: &[Started],
    statuses: Vec<pb::GetStatusResponse>,
    attempts: usize,
) -> Result<UpReport, LocalError> {
    let cluster = ClusterFile {
        name: dir.file_name().map(|n| n.to_string_lossy().into_owned()),
        etcd: if spec.etcd_tls {
            super::pki::cluster_file_etcd()
        } else {
            cluster_file::EtcdSettings::default()
        },
        agent_tls: (!spec.insecure).then(super::pki::Pki::cluster_file_identity),
        members: layouts
            .iter()
            .map(|m| MemberEntry {
                name: m.name.clone(),
                agent: m.agent_address(),
                client_url: Some(m.client_url()),
            })
            .collect(),
        local: Some(LocalSection {
            dir: dir.to_owned(),
            binaries: spec.binaries.clone(),
        }),
    };
    let cluster_path = dir.join(cluster_file::FILE_NAME);
    cluster.write_atomic(&cluster_path)?;
    let members = layouts
        .iter()
        .zip(started)
        .zip(statuses)
        .map(|((layout, started), status)| MemberReport {
            layout: layout.clone(),
            agent_pid: started.id.pid,
            status,
        })
        .collect();
    Ok(UpReport {
        dir: dir.to_owned(),
        cluster_path,
        cluster,
        version: spec.release.version.clone(),
        members,
        attempts,
    })
}

/// Stops the agents of a failed attempt, and then everything else that
/// names the directory (etcd runs in its own process group and outlives
/// its agent).
async fn stop_started(dir: &Path, started: &mut Vec<Started>) {
    let ids: Vec<ProcessId> = started.iter().map(|s| s.id).collect();
    let _ended = process::terminate(&ids, AGENT_GRACE).await;
    for agent in started.iter_mut() {
        // Reap: they are ours and dead (or survived SIGKILL, reported below).
        let _status = agent.child.try_wait();
    }
    started.clear();
    let leftovers: Vec<ProcessId> = process::mentioning(dir).iter().map(|f| f.id).collect();
    let _ended = process::terminate(&leftovers, LEFTOVER_GRACE).await;
    let survivors = process::mentioning(dir);
    if !survivors.is_empty() {
        tracing::warn!(?survivors, "processes of the failed local cluster survived SIGKILL");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_refuses_a_used_directory_and_a_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x"), b"").unwrap();
        let error = prepare_dir(dir.path()).unwrap_err();
        assert!(matches!(error, LocalError::DirNotEmpty { .. }), "{error}");
        assert!(error.to_string().starts_with(&dir.path().display().to_string()));
        std::fs::write(dir.path().join(PROCESSES_FILE), b"").unwrap();
        let error = prepare_dir(dir.path()).unwrap_err();
        assert!(matches!(error, LocalError::DirHasCluster { .. }), "{error}");
        assert!(error.to_string().contains("--purge"), "{error}");
        let error = prepare_dir(&dir.path().join("x")).unwrap_err();
        assert!(matches!(error, LocalError::NotADirectory { .. }), "{error}");
        // New and empty directories are fine.
        let made = prepare_dir(&dir.path().join("new/cluster")).unwrap();
        assert!(made.is_absolute() && made.is_dir());
        assert_eq!(prepare_dir(&made).unwrap(), made);
    }

    #[test]
    fn tokens_are_unique_and_tidy() {
        let a = default_token(Path::new("/tmp/my demo"));
        assert!(a.starts_with("steward-local-my-demo-"), "{a}");
        assert!(!a.contains(' '));
    }

    #[test]
    fn port_conflicts_are_recognised_in_both_wordings() {
        let agent = "Error: cannot bind 127.0.0.1:40002: Address already in use (os error 98)";
        let etcd = r#"{"level":"fatal","msg":"listen tcp 127.0.0.1:40001: bind: address already in use"}"#;
        assert_eq!(address_in_use(["ok", agent].into_iter()).as_deref(), Some(agent));
        assert_eq!(address_in_use([etcd].into_iter()).as_deref(), Some(etcd));
        assert_eq!(address_in_use(["connection refused"].into_iter()), None);
    }
}
