//! `steward local up|down`: a cluster of real etcd members on this
//! machine. Turns the flags into a [`crate::local::UpSpec`] or a directory,
//! runs [`crate::local::up()`] or [`crate::local::down()`], and prints what
//! happened as a table or JSON. The views here are part of the stable JSON
//! output: add fields, never rename or retype one.

use std::io::Write;
use std::path::{Path, PathBuf};

use comfy_table::{Cell, Table, presets};
use serde::Serialize;

use crate::cli::error::CliError;
use crate::cli::{LocalCommand, LocalDownArgs, LocalUpArgs};
use crate::engine::cluster::file::ClusterFile;
use crate::format::{self, non_empty, optional_hex_id, yes_no};
use crate::local::ports::PortSource;
use crate::local::process::{Ended, absolute};
use crate::local::releases::{self, VersionSpec};
use crate::local::{self, DownReport, EtcdStop, UpReport, UpSpec};
use crate::output;
use crate::output::table::Tabular;

/// Runs one local subcommand, writing its result to `out`.
///
/// # Errors
/// [`CliError::Local`] naming the directory, version or member that failed.
pub async fn run(command: LocalCommand, out: &mut dyn Write) -> Result<(), CliError> {
    match command {
        LocalCommand::Up(args) => Box::pin(up(args, out)).await,
        LocalCommand::Down(args) => Box::pin(down(&args, out)).await,
    }
}

async fn up(args: LocalUpArgs, out: &mut dyn Write) -> Result<(), CliError> {
    // Everything that can be checked without touching the directory is
    // checked first, so a wrong version or a missing agent leaves nothing.
    let binaries = resolved(&args.binaries.unwrap_or_else(releases::default_dir));
    let release = releases::choose(&binaries, &args.version)?;
    if let VersionSpec::Exact(version) = &args.version
        && releases::is_unsafe(version)
    {
        tracing::warn!(
            %version,
            "this release has a known data-inconsistency bug (3.5.0-3.5.2, fixed in 3.5.3); used because it was given exactly"
        );
    }
    let spec = UpSpec {
        dir: absolute(&args.dir),
        members: usize::from(args.members),
        release,
        binaries,
        token: args.token,
        ports: args.port_range.map_or(PortSource::Kernel, PortSource::Range),
        agent_binary: local::agent_binary()?,
        ready_timeout: local::READY_TIMEOUT,
        insecure: args.insecure,
        etcd_tls: args.etcd_tls,
    };
    tracing::info!(dir = %spec.dir.display(), version = %spec.release.version, members = spec.members, "starting a local cluster");
    let report = local::up(&spec).await?;
    output::emit(out, args.output.format, &LocalUpView::from(&report)).map_err(CliError::from)
}

async fn down(args: &LocalDownArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let report = local::down(&args.dir, args.purge).await?;
    output::emit(out, args.output.format, &LocalDownView::from(&report)).map_err(CliError::from)
}

/// An absolute path with symlinks resolved when it exists (the agents check
/// imports against resolved paths), else just absolute.
fn resolved(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| absolute(path))
}

fn table() -> Table {
    let mut table = Table::new();
    // As every steward table: ASCII, no terminal-dependent layout.
    table.load_style(presets::ASCII_FULL_CONDENSED);
    table
}

fn key_values(rows: impl IntoIterator<Item = (&'static str, String)>) -> Table {
    let mut table = table();
    for (key, value) in rows {
        table.add_row(vec![Cell::new(key), Cell::new(value)]);
    }
    table
}

/// `steward local up`: the cluster description and every member's status.
#[derive(Debug, Clone, Serialize)]
pub struct LocalUpView {
    /// The cluster directory.
    pub dir: String,
    /// The cluster description's path.
    pub cluster_file: String,
    /// The cluster description as written.
    pub cluster: ClusterFile,
    /// The etcd release every member started with.
    pub version: String,
    /// The leader's member name.
    pub leader: Option<String>,
    /// Each member.
    pub members: Vec<LocalMemberView>,
    /// Attempts it took (more than 1 when other programs took chosen ports).
    pub attempts: usize,
}

/// One member of a started local cluster.
#[derive(Debug, Clone, Serialize)]
pub struct LocalMemberView {
    /// etcd's `--name`.
    pub name: String,
    /// The agent's gRPC address.
    pub agent: String,
    /// etcd's client URL.
    pub client_url: String,
    /// etcd's peer URL.
    pub peer_url: String,
    /// The member id, hex.
    pub member_id: Option<String>,
    /// The version the member reports.
    pub version: Option<String>,
    /// Whether it is the leader.
    pub is_leader: bool,
    /// The agent's pid.
    pub agent_pid: u32,
    /// The agent's log.
    pub agent_log: String,
    /// etcd's log.
    pub etcd_log: String,
}

impl From<&UpReport> for LocalUpView {
    fn from(report: &UpReport) -> Self {
        let members: Vec<LocalMemberView> = report
            .members
            .iter()
            .map(|m| {
                let member = m.status.member.clone().unwrap_or_default();
                LocalMemberView {
                    name: m.layout.name.clone(),
                    agent: m.layout.agent_address().to_string(),
                    client_url: m.layout.client_url(),
                    peer_url: m.layout.peer_url(),
                    member_id: optional_hex_id(member.member_id),
                    version: non_empty(&member.version),
                    is_leader: member.is_leader,
                    agent_pid: m.agent_pid,
                    agent_log: m.layout.log_path().display().to_string(),
                    etcd_log: m.layout.etcd_log_path().display().to_string(),
                }
            })
            .collect();
        Self {
            dir: report.dir.display().to_string(),
            cluster_file: report.cluster_path.display().to_string(),
            cluster: report.cluster.clone(),
            version: report.version.to_string(),
            leader: members.iter().find(|m| m.is_leader).map(|m| m.name.clone()),
            members,
            attempts: report.attempts,
        }
    }
}

impl Tabular for LocalUpView {
    fn tables(&self) -> Vec<Table> {
        let mut members = table();
        members.set_header(vec!["member", "agent", "client URL", "version", "leader"]);
        for m in &self.members {
            members.add_row(vec![
                Cell::new(&m.name),
                Cell::new(&m.agent),
                Cell::new(&m.client_url),
                Cell::new(format::or_dash(m.version.as_deref())),
                Cell::new(yes_no(m.is_leader)),
            ]);
        }
        let access = match &self.cluster.agent_tls {
            Some(_) => format!(
                "mutual TLS; CA and certificates in {}/pki, steward calls as admin (the cluster file's [agent_tls])",
                self.dir
            ),
            None => "INSECURE: plaintext, no authentication (--insecure; loopback only)".to_owned(),
        };
        let summary = key_values([
            ("cluster file", self.cluster_file.clone()),
            ("agent API", access),
            (
                "etcd",
                if self.cluster.etcd.cacert.is_some() {
                    format!(
                        "TLS on client and peer URLs, client certificates required; CA and certificates in {}/etcd-pki (the cluster file's [etcd])",
                        self.dir
                    )
                } else {
                    "plain http".to_owned()
                },
            ),
            (
                "logs",
                format!("{0}/m*/agent.log, {0}/m*/state/logs/etcd.log", self.dir),
            ),
            ("stop with", format!("steward local down --dir {}", self.dir)),
        ]);
        vec![members, summary]
    }
}

/// `steward local down`.
#[derive(Debug, Clone, Serialize)]
pub struct LocalDownView {
    /// The cluster directory.
    pub dir: String,
    /// False when the directory did not exist.
    pub existed: bool,
    /// Whether anything was running (false when the cluster was down already).
    pub was_running: bool,
    /// Each member.
    pub members: Vec<MemberDownView>,
    /// Other processes naming the directory that were ended (etcd whose agent could not stop it).
    pub killed: Vec<KilledView>,
    /// `kept`, `removed` (with --purge) or `absent`.
    pub files: &'static str,
}

/// One member in `steward local down`.
#[derive(Debug, Clone, Serialize)]
pub struct MemberDownView {
    /// The member name.
    pub name: String,
    /// The agent's address.
    pub agent: String,
    /// `stopped`, `not_running`, `agent_gone`, `unreachable`, `not_ours` or `refused`.
    pub etcd: &'static str,
    /// The agent's state, error or refusal behind `etcd`, when there is one.
    pub etcd_detail: Option<String>,
    /// `terminated`, `killed`, `already_gone`, `survived`, or null when no process was recorded.
    pub agent_process: Option<&'static str>,
    /// The etcd column for tables.
    #[serde(skip)]
    pub etcd_text: String,
    /// The agent process column for tables.
    #[serde(skip)]
    pub agent_process_text: &'static str,
}

/// A process ended because it named the directory.
#[derive(Debug, Clone, Serialize)]
pub struct KilledView {
    /// Its pid.
    pub pid: u32,
    /// Its command line.
    pub command: String,
    /// `terminated`, `killed`, `already_gone` or `survived`.
    pub ended: &'static str,
    /// The ended column for tables.
    #[serde(skip)]
    pub ended_text: &'static str,
}

const fn ended_word(ended: Ended) -> &'static str {
    match ended {
        Ended::AlreadyGone => "already_gone",
        Ended::Terminated => "terminated",
        Ended::Killed => "killed",
        Ended::Survived => "survived",
    }
}

const fn ended_text(ended: Ended) -> &'static str {
    match ended {
        Ended::AlreadyGone => "had exited",
        Ended::Terminated => "stopped (SIGTERM)",
        Ended::Killed => "killed (SIGKILL)",
        Ended::Survived => "alive after SIGKILL",
    }
}

/// The JSON word, the detail, and the table text of an [`EtcdStop`].
fn etcd_words(stop: &EtcdStop) -> (&'static str, Option<String>, String) {
    match stop {
        EtcdStop::Stopped => ("stopped", None, "stopped".to_owned()),
        EtcdStop::NotRunning(state) => (
            "not_running",
            Some(state.clone()),
            format!("not running (agent {state})"),
        ),
        EtcdStop::AgentGone => ("agent_gone", None, "not running (agent gone)".to_owned()),
        EtcdStop::Unreachable(error) => (
            "unreachable",
            Some(error.clone()),
            format!("agent unreachable: {error}"),
        ),
        EtcdStop::NotOurs(detail) => ("not_ours", Some(detail.clone()), format!("not asked: {detail}")),
        EtcdStop::Refused(detail) => ("refused", Some(detail.clone()), format!("Stop refused: {detail}")),
    }
}

impl From<&DownReport> for LocalDownView {
    fn from(report: &DownReport) -> Self {
        Self {
            dir: report.dir.display().to_string(),
            existed: report.existed,
            was_running: report.was_running(),
            members: report
                .members
                .iter()
                .map(|m| {
                    let (etcd, etcd_detail, etcd_text) = etcd_words(&m.etcd);
                    MemberDownView {
                        name: m.name.clone(),
                        agent: m.agent.clone(),
                        etcd,
                        etcd_detail,
                        agent_process: m.agent_process.map(ended_word),
                        etcd_text,
                        agent_process_text: m.agent_process.map_or("not recorded", ended_text),
                    }
                })
                .collect(),
            killed: report
                .leftovers
                .iter()
                .map(|l| KilledView {
                    pid: l.pid,
                    command: l.command.clone(),
                    ended: ended_word(l.ended),
                    ended_text: ended_text(l.ended),
                })
                .collect(),
            files: if !report.existed {
                "absent"
            } else if report.purged {
                "removed"
            } else {
                "kept"
            },
        }
    }
}

impl Tabular for LocalDownView {
    fn tables(&self) -> Vec<Table> {
        if !self.existed {
            return vec![key_values([(
                "result",
                format!("{} does not exist; nothing to stop", self.dir),
            )])];
        }
        let mut tables = Vec::new();
        if !self.members.is_empty() {
            let mut members = table();
            members.set_header(vec!["member", "agent", "etcd", "agent process"]);
            for m in &self.members {
                members.add_row(vec![
                    Cell::new(&m.name),
                    Cell::new(&m.agent),
                    Cell::new(&m.etcd_text),
                    Cell::new(m.agent_process_text),
                ]);
            }
            tables.push(members);
        }
        if !self.killed.is_empty() {
            let mut killed = table();
            killed.set_header(vec!["pid", "other process naming the directory", "ended"]);
            for k in &self.killed {
                killed.add_row(vec![
                    Cell::new(k.pid),
                    Cell::new(shortened(&k.command)),
                    Cell::new(k.ended_text),
                ]);
            }
            tables.push(killed);
        }
        let result = if self.was_running {
            "stopped".to_owned()
        } else {
            "nothing was running (already down)".to_owned()
        };
        let files = match self.files {
            "removed" => format!("removed {}", self.dir),
            _ => format!("kept in {} (remove them with --purge)", self.dir),
        };
        tables.push(key_values([("result", result), ("files", files)]));
        tables
    }
}

/// A command line cut to a table cell's width (JSON keeps it whole).
fn shortened(command: &str) -> String {
    const WIDTH: usize = 100;
    if command.chars().count() <= WIDTH {
        command.to_owned()
    } else {
        let head: String = command.chars().take(WIDTH - 3).collect();
        format!("{head}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::{LeftoverDown, MemberDown};

    fn render(view: &impl Tabular) -> String {
        view.tables()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn down_says_what_it_stopped_and_what_it_kept() {
        let report = DownReport {
            dir: PathBuf::from("/tmp/demo"),
            existed: true,
            members: vec![
                MemberDown {
                    name: "m0".into(),
                    agent: "127.0.0.1:40002".into(),
                    etcd: EtcdStop::Stopped,
                    agent_process: Some(Ended::Terminated),
                },
                MemberDown {
                    name: "m1".into(),
                    agent: "127.0.0.1:40005".into(),
                    etcd: EtcdStop::AgentGone,
                    agent_process: Some(Ended::AlreadyGone),
                },
            ],
            leftovers: vec![LeftoverDown {
                pid: 77,
                command: "etcd --data-dir=/tmp/demo/m1/data".into(),
                ended: Ended::Terminated,
            }],
            purged: false,
        };
        let view = LocalDownView::from(&report);
        let text = render(&view);
        assert!(text.contains("| m0     | 127.0.0.1:40002 | stopped"), "{text}");
        assert!(text.contains("not running (agent gone)"), "{text}");
        assert!(text.contains("etcd --data-dir=/tmp/demo/m1/data"), "{text}");
        assert_eq!(shortened(&"x".repeat(150)).len(), 100);
        assert!(text.contains("kept in /tmp/demo"), "{text}");
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["members"][1]["etcd"], "agent_gone");
        assert_eq!(json["members"][0]["agent_process"], "terminated");
        assert_eq!(json["killed"][0]["pid"], 77);
        assert_eq!(json["files"], "kept");
        assert_eq!(json["was_running"], true);
    }

    #[test]
    fn down_of_nothing_says_so() {
        let report = DownReport {
            dir: PathBuf::from("/tmp/gone"),
            existed: false,
            members: Vec::new(),
            leftovers: Vec::new(),
            purged: false,
        };
        let text = render(&LocalDownView::from(&report));
        assert!(text.contains("/tmp/gone does not exist; nothing to stop"), "{text}");
    }
}
