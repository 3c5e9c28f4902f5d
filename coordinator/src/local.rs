//! Local clusters: real etcd members on loopback, each owned by its own
//! `steward-agent` process, all in one directory on this machine. `steward
//! local up` makes one for trying steward out and for the demo; `steward
//! local down` stops it. The agents run in the background and outlive
//! `steward`, like agents under systemd do.
//!
//! [`up()`] picks free ports, writes each member's agent config, starts the
//! agents, waits until every member answers and all agree on a leader, and
//! writes the cluster description (`cluster.toml`) that the cluster-wide
//! commands take. [`down()`] asks each agent to stop etcd, stops the agents
//! (recognised by pid and start time, never a bare pid), and ends whatever
//! else still names the directory.
//!
//! Submodules: [`releases`] (which etcd binary), [`ports`] (free ports),
//! [`layout`] (the directory and the agent configs), [`process`] (starting,
//! recognising and signalling processes), [`mod@up`] and [`mod@down`] (the two
//! procedures). This module holds what they share: the error type, the
//! process record, and the grace periods.

pub mod down;
pub mod layout;
pub mod pki;
pub mod ports;
pub mod process;
pub mod releases;
pub mod up;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::engine::cluster::file::{self as cluster_file, ClusterFileError, WriteError};
pub use down::{DownReport, EtcdStop, LeftoverDown, MemberDown, down};
use layout::{PROCESSES_FILE, ProcessesFile};
pub use up::{MemberReport, READY_TIMEOUT, UpReport, UpSpec, up};

/// SIGTERM to SIGKILL for an agent (it drains its RPCs, etcd keeps running).
const AGENT_GRACE: Duration = Duration::from_secs(15);
/// SIGTERM to SIGKILL for what remains after the agents (etcd whose agent
/// could not stop it): longer than etcd needs to shut down cleanly.
const LEFTOVER_GRACE: Duration = Duration::from_secs(10);
/// Bound on one GetStatus or TailLogs call (an agent that accepts and then
/// stalls must not stall `up` or `down`).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The most members a local cluster may have (etcd's recommended maximum).
pub const MAX_MEMBERS: usize = 7;

/// Why a local cluster cannot be started or stopped. Each names the
/// directory, member, file or version it concerns.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The cluster's certificates could not be made or used.
    #[error("the local cluster's certificates: {0}")]
    Tls(String),
    /// The target directory is in use.
    #[error("{dir} exists and is not empty; steward local up only writes into a new or empty directory")]
    DirNotEmpty {
        /// The directory.
        dir: PathBuf,
    },
    /// The target directory holds a local cluster already.
    #[error(
        "{dir} already holds a local cluster; stop and remove it with `steward local down --dir {dir} --purge`, \
         or choose another directory"
    )]
    DirHasCluster {
        /// The directory.
        dir: PathBuf,
    },
    /// The target exists and is not a directory.
    #[error("{dir} exists and is not a directory")]
    NotADirectory {
        /// The path.
        dir: PathBuf,
    },
    /// A local file operation failed.
    #[error("cannot {action} {path}")]
    Io {
        /// What we were doing.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The release directory cannot be listed.
    #[error("cannot list the etcd release directory {dir} (fill it with scripts/setup-etcd, or pass --binaries DIR)")]
    BinariesDir {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// No release matches the requested version.
    #[error("no etcd {wanted} in {dir} (found: {found}); fetch it with scripts/setup-etcd or pass --binaries DIR")]
    VersionMissing {
        /// The version or minor asked for.
        wanted: String,
        /// The release directory.
        dir: PathBuf,
        /// The versions that are there.
        found: String,
    },
    /// A minor has only releases that a minor never picks.
    #[error("no usable etcd {wanted} in {dir}: skipped {skipped} because {reason}", reason = releases::UNSAFE_REASON)]
    OnlyUnsafe {
        /// The minor asked for.
        wanted: String,
        /// The release directory.
        dir: PathBuf,
        /// The releases passed over.
        skipped: String,
    },
    /// The agent executable is not where it is looked for.
    #[error(
        "steward-agent is not at {path} ({how}); build it with `cargo build --workspace --bins`, or set STEWARD_AGENT_BIN"
    )]
    AgentBinaryMissing {
        /// Where it was looked for.
        path: PathBuf,
        /// Why there: "from STEWARD_AGENT_BIN" or "next to steward".
        how: &'static str,
    },
    /// Not enough free ports.
    #[error("cannot find {wanted} free loopback ports in {source_text}")]
    NoFreePorts {
        /// How many were needed.
        wanted: usize,
        /// Where they were looked for.
        source_text: String,
    },
    /// An agent process could not be started.
    #[error("cannot start the agent of {member} ({binary})")]
    Spawn {
        /// The member.
        member: String,
        /// The agent executable.
        binary: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An agent exited while the cluster was coming up.
    #[error("the agent of {member} exited ({status}) before the cluster was ready; see {log}")]
    AgentExited {
        /// The member.
        member: String,
        /// How it exited.
        status: String,
        /// Its log.
        log: PathBuf,
    },
    /// An agent gave up on its member.
    #[error("the agent of {member} reports FAILED: {reason}")]
    AgentFailed {
        /// The member.
        member: String,
        /// The agent's reason.
        reason: String,
    },
    /// The cluster did not become ready in time.
    #[error("the cluster was not ready within {}; last seen: {last}", humantime::format_duration(*timeout))]
    NotReady {
        /// How long we waited.
        timeout: Duration,
        /// What was still missing at the end.
        last: String,
    },
    /// Other programs kept taking the chosen ports.
    #[error("other programs took the chosen ports in {attempts} attempts; the last time: {last}")]
    PortsInUse {
        /// How many attempts were made.
        attempts: usize,
        /// The last conflict seen.
        last: String,
    },
    /// Ctrl-C while waiting.
    #[error("interrupted")]
    Interrupted,
    /// Starting failed after processes were started; they were stopped.
    #[error(
        "the local cluster in {dir} did not start; everything it started was stopped \
         (logs kept in {dir}/m*/agent.log and {dir}/m*/state/logs/etcd.log)"
    )]
    StartFailed {
        /// The cluster directory.
        dir: PathBuf,
        /// What went wrong.
        #[source]
        cause: Box<LocalError>,
    },
    /// The cluster file describes real hosts.
    #[error(
        "{path} has no [local] table: it describes a cluster of real hosts, and steward local down only \
         stops clusters made by steward local up"
    )]
    NotLocal {
        /// The cluster file.
        path: PathBuf,
    },
    /// The directory was not made by `steward local up`.
    #[error(
        "{dir} is not a local cluster's directory: it has neither {} nor {PROCESSES_FILE}",
        cluster_file::FILE_NAME
    )]
    NotLocalDir {
        /// The directory.
        dir: PathBuf,
    },
    /// The process record does not parse.
    #[error("the process record {path} is malformed")]
    ProcessesParse {
        /// The file.
        path: PathBuf,
        /// The TOML error.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A file could not be encoded (a bug, not an input problem).
    #[error("cannot encode {path}")]
    Encode {
        /// The file.
        path: PathBuf,
        /// The TOML error.
        #[source]
        source: toml::ser::Error,
    },
    /// Processes of the cluster survived SIGKILL.
    #[error("processes of the cluster in {dir} are still alive after SIGKILL ({pids}); the directory was kept")]
    Survivors {
        /// The directory.
        dir: PathBuf,
        /// Their pids.
        pids: String,
    },
    /// The cluster file cannot be used.
    #[error(transparent)]
    ClusterFile(#[from] ClusterFileError),
    /// A file could not be written.
    #[error(transparent)]
    Write(#[from] WriteError),
}

pub(crate) fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LocalError {
    let path = path.to_owned();
    move |source| LocalError::Io { action, path, source }
}
/// The `steward-agent` executable for local clusters: `STEWARD_AGENT_BIN`,
/// or `steward-agent` next to the running `steward`.
///
/// # Errors
/// [`LocalError::AgentBinaryMissing`] when there is no file there.
pub fn agent_binary() -> Result<PathBuf, LocalError> {
    let (path, how) = match std::env::var_os("STEWARD_AGENT_BIN").filter(|v| !v.is_empty()) {
        Some(path) => (PathBuf::from(path), "from STEWARD_AGENT_BIN"),
        None => {
            let exe = std::env::current_exe().map_err(io_error("find", Path::new("the steward executable")))?;
            let dir = exe.parent().map_or_else(|| PathBuf::from("."), Path::to_owned);
            (dir.join("steward-agent"), "next to steward")
        }
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(LocalError::AgentBinaryMissing { path, how })
    }
}
/// Writes the process record atomically.
fn write_processes(path: &Path, file: &ProcessesFile) -> Result<(), LocalError> {
    let body = toml::to_string_pretty(file).map_err(|source| LocalError::Encode {
        path: path.to_owned(),
        source,
    })?;
    let text = format!("# The agents `steward local up` started; `steward local down` stops them.\n{body}");
    cluster_file::write_atomic(path, text.as_bytes())?;
    Ok(())
}

/// Reads the process record; `None` when there is none.
fn read_processes(path: &Path) -> Result<Option<ProcessesFile>, LocalError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("read", path)(e)),
    };
    toml::from_str(&text)
        .map(Some)
        .map_err(|source| LocalError::ProcessesParse {
            path: path.to_owned(),
            source: Box::new(source),
        })
}
