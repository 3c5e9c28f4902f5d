//! What steward prints, as plain serializable structs built from the
//! contract's messages (which are not `Serialize`). The JSON output is these
//! structs, so their field names are a stable interface: add fields, never
//! rename or retype one. Ids are hex strings, timestamps RFC 3339, durations
//! seconds, sizes bytes, and "not set" is `null` rather than "" or 0.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use steward_proto::v1 as pb;

use crate::format::{self, non_empty, optional_hex_id};

/// `steward agent status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    /// The address the status was read from.
    pub agent_address: String,
    /// The agent itself.
    pub agent: AgentInfoView,
    /// The etcd process.
    pub process: ProcessView,
    /// Active, previous and staged versions.
    pub versions: VersionsView,
    /// The local member as etcd reports it.
    pub member: MemberView,
    /// Facts about the data dir.
    pub data_dir: DataDirView,
    /// Free space.
    pub disk: DiskView,
    /// The last restore of the member's data; `null` when there was none.
    pub restore: Option<RestoreView>,
}

/// The last restore of a member's data (`steward restore`).
#[derive(Debug, Clone, Serialize)]
pub struct RestoreView {
    /// The restore id, the same on every member.
    pub restore_id: String,
    /// `restoring`, `restored` or `finished`.
    pub phase: String,
    /// The snapshot restored.
    pub snapshot_id: String,
    /// Its revision.
    pub snapshot_revision: i64,
    /// The version that restored the data and runs it.
    pub version: String,
    /// The restored cluster's token.
    pub initial_cluster_token: String,
    /// Where the replaced data dir is kept; `null` when there was none.
    pub moved_aside_to: Option<String>,
    /// When it began.
    pub started_at: Option<String>,
    /// When its phase last changed.
    pub updated_at: Option<String>,
}

impl RestoreView {
    fn new(info: &pb::RestoreInfo) -> Self {
        let phase = match pb::RestorePhase::try_from(info.phase) {
            Ok(pb::RestorePhase::Restoring) => "restoring".to_owned(),
            Ok(pb::RestorePhase::Restored) => "restored".to_owned(),
            Ok(pb::RestorePhase::Finished) => "finished".to_owned(),
            _ => format!("unknown({})", info.phase),
        };
        Self {
            restore_id: info.restore_id.clone(),
            phase,
            snapshot_id: info.snapshot_id.clone(),
            snapshot_revision: info.snapshot_revision,
            version: info.version.clone(),
            initial_cluster_token: info.initial_cluster_token.clone(),
            moved_aside_to: non_empty(&info.moved_aside_to),
            started_at: format::rfc3339(info.started_at.as_ref()),
            updated_at: format::rfc3339(info.updated_at.as_ref()),
        }
    }
}

/// The agent process and its state machine.
#[derive(Debug, Clone, Serialize)]
pub struct AgentInfoView {
    /// The steward-agent build version.
    pub version: String,
    /// `running`, `stopped`, `failed`, ...
    pub state: String,
    /// Why the agent is in its state, when it says.
    pub state_reason: Option<String>,
    /// etcd's `--name`.
    pub member_name: String,
    /// The agent's state dir on its host.
    pub state_dir: String,
    /// When the agent process started.
    pub started_at: Option<String>,
    /// The member's client URLs.
    pub client_urls: Vec<String>,
    /// The member's advertised peer URLs.
    pub peer_urls: Vec<String>,
    /// The certificate the agent serves its API with: subject and end.
    pub tls_certificate: Option<ServedCertificateView>,
}

/// The certificate an agent serves its API with, as it read it at start.
#[derive(Debug, Clone, Serialize)]
pub struct ServedCertificateView {
    /// The subject.
    pub subject: String,
    /// When it ends, RFC 3339.
    pub not_after: Option<String>,
    /// Its names.
    pub sans: Vec<String>,
}

/// The etcd process the agent supervises.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessView {
    /// Whether etcd is alive.
    pub running: bool,
    /// etcd's pid, when running.
    pub pid: Option<u32>,
    /// When etcd started.
    pub started_at: Option<String>,
    /// How long etcd has been up, in seconds.
    pub uptime_seconds: Option<f64>,
    /// Restarts after etcd exited on its own.
    pub restart_count: u32,
    /// How the last etcd process ended.
    pub last_exit: Option<String>,
    /// The executable etcd runs from.
    pub executable: Option<String>,
    /// etcd's arguments.
    pub args: Vec<String>,
    /// Whether this etcd was adopted from an earlier agent process.
    pub adopted: bool,
    /// The uptime for tables.
    #[serde(skip)]
    pub uptime: Option<Duration>,
}

/// The versions the agent knows.
#[derive(Debug, Clone, Serialize)]
pub struct VersionsView {
    /// The version etcd runs with.
    pub active: Option<String>,
    /// The rollback target.
    pub previous: Option<String>,
    /// Every staged version, ascending.
    pub staged: Vec<String>,
}

/// The local member's Status. The raft and db fields are `null` when the
/// member did not answer.
#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    /// Whether the member answered.
    pub reachable: bool,
    /// Why it did not.
    pub error: Option<String>,
    /// The member id, hex.
    pub member_id: Option<String>,
    /// The cluster id, hex.
    pub cluster_id: Option<String>,
    /// Whether this member is the leader.
    pub is_leader: bool,
    /// The leader this member knows, hex; `null` when none.
    pub leader_id: Option<String>,
    /// Whether this member is a learner.
    pub is_learner: bool,
    /// The member's binary version.
    pub version: Option<String>,
    /// The cluster version.
    pub cluster_version: Option<String>,
    /// Raft term.
    pub raft_term: Option<u64>,
    /// Raft index.
    pub raft_index: Option<u64>,
    /// Raft applied index (0 on etcd 3.3).
    pub raft_applied_index: Option<u64>,
    /// The member's store revision.
    pub revision: Option<i64>,
    /// Backend size.
    pub db_size_bytes: Option<u64>,
    /// Backend size in use (0 on etcd 3.3).
    pub db_size_in_use_bytes: Option<u64>,
    /// Errors and alarms the member reports.
    pub errors: Vec<String>,
}

/// Facts about the member's data dir.
#[derive(Debug, Clone, Serialize)]
pub struct DataDirView {
    /// The data dir on the agent's host.
    pub path: String,
    /// `member/` exists.
    pub initialised: bool,
    /// `member/snap/db` exists.
    pub v3_db_present: bool,
    /// `member/snap/*.snap` files exist (v2 data).
    pub v2_snap_present: bool,
    /// Size of the newest `.snap` file.
    pub newest_v2_snap_bytes: u64,
}

/// Free space on the agent's host.
#[derive(Debug, Clone, Serialize)]
pub struct DiskView {
    /// Free bytes on the state dir's filesystem.
    pub state_dir_free_bytes: u64,
    /// Free bytes on the data dir's filesystem.
    pub data_dir_free_bytes: u64,
}

impl StatusView {
    /// The view of a GetStatus answer from the agent at `address`.
    #[must_use]
    pub fn new(address: &str, status: &pb::GetStatusResponse) -> Self {
        let agent = status.agent.clone().unwrap_or_default();
        let process = status.process.clone().unwrap_or_default();
        let versions = status.versions.clone().unwrap_or_default();
        let member = status.member.clone().unwrap_or_default();
        let data_dir = status.data_dir.clone().unwrap_or_default();
        let disk = status.disk.unwrap_or_default();
        let uptime = format::duration(process.uptime.as_ref()).filter(|_| process.running);
        let answered = |value| member.reachable.then_some(value);
        Self {
            agent_address: address.to_owned(),
            agent: AgentInfoView {
                version: agent.version,
                state: format::agent_state(agent.state),
                state_reason: non_empty(&agent.state_reason),
                member_name: agent.member_name,
                state_dir: agent.state_dir,
                started_at: format::rfc3339(agent.started_at.as_ref()),
                client_urls: agent.client_urls,
                peer_urls: agent.peer_urls,
                tls_certificate: agent.tls_certificate.map(|c| ServedCertificateView {
                    subject: c.subject,
                    not_after: format::rfc3339(c.not_after.as_ref()),
                    sans: c.sans,
                }),
            },
            process: ProcessView {
                running: process.running,
                pid: (process.pid != 0).then_some(process.pid),
                started_at: format::rfc3339(process.started_at.as_ref()).filter(|_| process.running),
                uptime_seconds: format::seconds(uptime),
                restart_count: process.restart_count,
                last_exit: non_empty(&process.last_exit),
                executable: non_empty(&process.executable),
                args: process.args,
                adopted: process.adopted,
                uptime,
            },
            versions: VersionsView {
                active: non_empty(&versions.active),
                previous: non_empty(&versions.previous),
                staged: versions.staged,
            },
            member: MemberView {
                reachable: member.reachable,
                error: non_empty(&member.error),
                member_id: optional_hex_id(member.member_id),
                cluster_id: optional_hex_id(member.cluster_id),
                is_leader: member.is_leader,
                leader_id: optional_hex_id(member.leader_id),
                is_learner: member.is_learner,
                version: non_empty(&member.version),
                cluster_version: non_empty(&member.cluster_version),
                raft_term: answered(member.raft_term),
                raft_index: answered(member.raft_index),
                raft_applied_index: answered(member.raft_applied_index),
                revision: member.reachable.then_some(member.revision),
                db_size_bytes: answered(member.db_size),
                db_size_in_use_bytes: answered(member.db_size_in_use),
                errors: member.errors,
            },
            data_dir: DataDirView {
                path: data_dir.path,
                initialised: data_dir.initialised,
                v3_db_present: data_dir.v3_db_present,
                v2_snap_present: data_dir.v2_snap_present,
                newest_v2_snap_bytes: data_dir.newest_v2_snap_bytes,
            },
            disk: DiskView {
                state_dir_free_bytes: disk.state_dir_free_bytes,
                data_dir_free_bytes: disk.data_dir_free_bytes,
            },
            restore: status.restore.as_ref().map(RestoreView::new),
        }
    }
}

/// `steward agent binaries`.
#[derive(Debug, Clone, Serialize)]
pub struct BinariesView {
    /// Every staged version, as the agent lists them.
    pub versions: Vec<StagedVersionView>,
}

/// One staged version.
#[derive(Debug, Clone, Serialize)]
pub struct StagedVersionView {
    /// The version the binary reports.
    pub version: String,
    /// Whether etcd runs (or would run) this version.
    pub active: bool,
    /// Whether this is the rollback target.
    pub previous: bool,
    /// When it was staged.
    pub staged_at: Option<String>,
    /// The release's files.
    pub files: Vec<StagedFileView>,
}

/// One file of a staged version.
#[derive(Debug, Clone, Serialize)]
pub struct StagedFileView {
    /// `etcd`, `etcdctl` or `etcdutl`.
    pub tool: String,
    /// sha256, 64 hex digits.
    pub sha256: String,
    /// Size.
    pub size_bytes: u64,
}

impl From<&pb::StagedVersion> for StagedVersionView {
    fn from(staged: &pb::StagedVersion) -> Self {
        Self {
            version: staged.version.clone(),
            active: staged.active,
            previous: staged.previous,
            staged_at: format::rfc3339(staged.staged_at.as_ref()),
            files: staged
                .files
                .iter()
                .map(|file| StagedFileView {
                    tool: format::tool(file.tool),
                    sha256: file.sha256.clone(),
                    size_bytes: file.size,
                })
                .collect(),
        }
    }
}

impl From<&pb::ListBinariesResponse> for BinariesView {
    fn from(list: &pb::ListBinariesResponse) -> Self {
        Self {
            versions: list.versions.iter().map(StagedVersionView::from).collect(),
        }
    }
}

/// `steward agent import` and `upload`.
#[derive(Debug, Clone, Serialize)]
pub struct StagedView {
    /// True when the identical file was staged already.
    pub already_present: bool,
    /// The version as staged now.
    pub staged: Option<StagedVersionView>,
}

impl From<&pb::ImportBinaryResponse> for StagedView {
    fn from(response: &pb::ImportBinaryResponse) -> Self {
        Self {
            already_present: response.already_present,
            staged: response.staged.as_ref().map(StagedVersionView::from),
        }
    }
}

/// `steward agent flags`.
#[derive(Debug, Clone, Serialize)]
pub struct FlagsView {
    /// The version etcd runs now.
    pub current_version: Option<String>,
    /// The version asked about.
    pub target_version: String,
    /// True when a change is refused: activating the target will be refused.
    pub refused: bool,
    /// etcd's arguments now.
    pub current_args: Vec<String>,
    /// etcd's arguments under the target version.
    pub target_args: Vec<String>,
    /// What the version rules changed, in argument order.
    pub changes: Vec<FlagChangeView>,
}

/// One flag difference.
#[derive(Debug, Clone, Serialize)]
pub struct FlagChangeView {
    /// `added`, `removed`, `renamed`, `changed` or `refused`.
    pub kind: String,
    /// The flag as in the member spec.
    pub flag: String,
    /// The flag as rendered for the target.
    pub new_flag: Option<String>,
    /// The old value.
    pub old_value: Option<String>,
    /// The new value.
    pub new_value: Option<String>,
    /// The rule from the etcd guides.
    pub rule: String,
    /// Why.
    pub reason: String,
}

impl From<&pb::FlagChange> for FlagChangeView {
    fn from(change: &pb::FlagChange) -> Self {
        Self {
            kind: format::change_kind(change.kind),
            flag: change.flag.clone(),
            new_flag: non_empty(&change.new_flag),
            old_value: non_empty(&change.old_value),
            new_value: non_empty(&change.new_value),
            rule: change.rule.clone(),
            reason: change.reason.clone(),
        }
    }
}

impl FlagsView {
    /// The view of a CheckFlags answer for `target_version`.
    #[must_use]
    pub fn new(target_version: &str, response: &pb::CheckFlagsResponse) -> Self {
        Self {
            current_version: non_empty(&response.current_version),
            target_version: target_version.to_owned(),
            refused: response.refused,
            current_args: response.current_args.clone(),
            target_args: response.target_args.clone(),
            changes: response.changes.iter().map(FlagChangeView::from).collect(),
        }
    }
}

/// `steward agent activate` and `rollback`.
#[derive(Debug, Clone, Serialize)]
pub struct SwitchView {
    /// The version now active.
    pub active_version: String,
    /// The version active before.
    pub previous_version: Option<String>,
    /// etcd's new pid.
    pub pid: u32,
    /// From the stop of the old etcd to the member being healthy, seconds.
    pub took_seconds: Option<f64>,
    /// etcd's arguments.
    pub args: Vec<String>,
    /// The flag changes applied.
    pub changes: Vec<FlagChangeView>,
    /// `took` for tables.
    #[serde(skip)]
    pub took: Option<Duration>,
}

impl From<&pb::ActivateResponse> for SwitchView {
    fn from(response: &pb::ActivateResponse) -> Self {
        let took = format::duration(response.took.as_ref());
        Self {
            active_version: response.active_version.clone(),
            previous_version: non_empty(&response.previous_version),
            pid: response.pid,
            took_seconds: format::seconds(took),
            args: response.args.clone(),
            changes: response.changes.iter().map(FlagChangeView::from).collect(),
            took,
        }
    }
}

/// `steward agent start|stop|restart`.
#[derive(Debug, Clone, Serialize)]
pub struct LifecycleView {
    /// The agent's state after the call.
    pub state: String,
    /// etcd's pid; `null` when stopped.
    pub pid: Option<u32>,
}

impl From<&pb::LifecycleResponse> for LifecycleView {
    fn from(response: &pb::LifecycleResponse) -> Self {
        Self {
            state: format::agent_state(response.state),
            pid: (response.pid != 0).then_some(response.pid),
        }
    }
}

/// One snapshot the agent keeps.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotView {
    /// The id for download.
    pub id: String,
    /// When it was taken.
    pub created_at: Option<String>,
    /// The store revision it holds.
    pub revision: i64,
    /// How many keys it holds.
    pub total_keys: u64,
    /// File size including the 32-byte sha256 trailer.
    pub size_bytes: u64,
    /// The trailer's sha256.
    pub sha256: String,
    /// The member's binary version at the time.
    pub etcd_version: String,
    /// The cluster version at the time.
    pub cluster_version: Option<String>,
    /// The member it was taken from.
    pub member_name: String,
    /// That member's id, hex.
    pub member_id: Option<String>,
    /// The file on the agent's host.
    pub path: String,
    /// The label it is pinned under ("last-change": the backup of the last
    /// change), `null` when retention may remove it.
    pub pin: Option<String>,
}

impl From<&pb::SnapshotInfo> for SnapshotView {
    fn from(info: &pb::SnapshotInfo) -> Self {
        Self {
            id: info.id.clone(),
            created_at: format::rfc3339(info.created_at.as_ref()),
            revision: info.revision,
            total_keys: info.total_keys,
            size_bytes: info.size,
            sha256: info.sha256.clone(),
            etcd_version: info.etcd_version.clone(),
            cluster_version: non_empty(&info.cluster_version),
            member_name: info.member_name.clone(),
            member_id: optional_hex_id(info.member_id),
            path: info.path.clone(),
            pin: non_empty(&info.pin),
        }
    }
}

/// `steward backup`: the verified snapshot and where it is.
#[derive(Debug, Clone, Serialize)]
pub struct BackupView {
    /// The agent that took it.
    pub agent: String,
    /// The snapshot.
    pub snapshot: SnapshotView,
    /// The local copy, when `--out` or `--out-dir` was given (verified).
    pub downloaded_to: Option<String>,
    /// With `--out-dir --keep`: the older backups removed beyond the count.
    pub removed: Vec<String>,
}

/// `steward agent snapshots`.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotsView {
    /// Newest first.
    pub snapshots: Vec<SnapshotView>,
}

impl From<&pb::ListSnapshotsResponse> for SnapshotsView {
    fn from(list: &pb::ListSnapshotsResponse) -> Self {
        Self {
            snapshots: list.snapshots.iter().map(SnapshotView::from).collect(),
        }
    }
}

/// `steward agent download`.
#[derive(Debug, Clone, Serialize)]
pub struct DownloadView {
    /// The local file written.
    pub file: String,
    /// Bytes written (the snapshot's size).
    pub size_bytes: u64,
    /// Always true: an unverified download is never left at `file`.
    pub verified: bool,
    /// The snapshot's metadata as the agent sent it.
    pub snapshot: SnapshotView,
}

impl DownloadView {
    /// The view of a verified download of `info` to `file`.
    #[must_use]
    pub fn new(file: &Path, size_bytes: u64, info: &pb::SnapshotInfo) -> Self {
        Self {
            file: file.display().to_string(),
            size_bytes,
            verified: true,
            snapshot: SnapshotView::from(info),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status() -> pb::GetStatusResponse {
        pb::GetStatusResponse {
            agent: Some(pb::AgentInfo {
                version: "0.1.0".into(),
                state: pb::AgentState::Running.into(),
                member_name: "m1".into(),
                state_dir: "/var/lib/steward".into(),
                started_at: Some(prost_types::Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 0,
                }),
                client_urls: vec!["http://127.0.0.1:2379".into()],
                peer_urls: vec!["http://127.0.0.1:2380".into()],
                state_reason: String::new(),
                tls_certificate: None,
            }),
            process: Some(pb::ProcessInfo {
                running: true,
                pid: 42,
                uptime: Some(prost_types::Duration { seconds: 90, nanos: 0 }),
                args: vec!["--name".into(), "m1".into()],
                ..Default::default()
            }),
            versions: Some(pb::Versions {
                active: "3.5.16".into(),
                previous: String::new(),
                staged: vec!["3.4.23".into(), "3.5.16".into()],
            }),
            member: Some(pb::MemberStatus {
                reachable: true,
                member_id: 0x8e9e_05c5_2164_694d,
                leader_id: 0x8e9e_05c5_2164_694d,
                is_leader: true,
                version: "3.5.16".into(),
                cluster_version: "3.5.0".into(),
                raft_term: 2,
                raft_index: 10,
                raft_applied_index: 10,
                db_size: 20480,
                db_size_in_use: 16384,
                cluster_id: 0x0123_4567_89ab_cdef,
                revision: 1,
                ..Default::default()
            }),
            data_dir: Some(pb::DataDirFacts {
                path: "/var/lib/etcd".into(),
                v3_db_present: true,
                initialised: true,
                ..Default::default()
            }),
            disk: Some(pb::DiskSpace {
                state_dir_free_bytes: 1 << 30,
                data_dir_free_bytes: 1 << 30,
            }),
            restore: None,
        }
    }

    #[test]
    fn status_json_has_hex_ids_rfc3339_and_nulls() {
        let value = serde_json::to_value(StatusView::new("127.0.0.1:7400", &status())).unwrap();
        assert_eq!(value["agent_address"], "127.0.0.1:7400");
        assert_eq!(value["agent"]["state"], "running");
        assert_eq!(value["agent"]["state_reason"], json!(null));
        assert_eq!(value["agent"]["started_at"], "2023-11-14T22:13:20Z");
        assert_eq!(value["process"]["pid"], 42);
        assert_eq!(value["process"]["uptime_seconds"], 90.0);
        assert!(
            value["process"].get("uptime").is_none(),
            "table-only fields stay out of JSON"
        );
        assert_eq!(value["versions"]["previous"], json!(null));
        assert_eq!(value["member"]["member_id"], "8e9e05c52164694d");
        assert_eq!(value["member"]["leader_id"], "8e9e05c52164694d");
        assert_eq!(value["member"]["cluster_id"], "0123456789abcdef");
        assert_eq!(value["member"]["db_size_bytes"], 20480);
        assert_eq!(value["data_dir"]["v3_db_present"], true);
        assert_eq!(value["restore"], json!(null), "no restore yet");
        let keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "agent",
                "agent_address",
                "data_dir",
                "disk",
                "member",
                "process",
                "restore",
                "versions"
            ]
        );
    }

    #[test]
    fn an_unreachable_member_has_null_raft_fields() {
        let mut response = status();
        response.member = Some(pb::MemberStatus {
            reachable: false,
            error: "connection refused".into(),
            ..Default::default()
        });
        let value = serde_json::to_value(StatusView::new("a:1", &response)).unwrap();
        assert_eq!(value["member"]["error"], "connection refused");
        assert_eq!(value["member"]["member_id"], json!(null));
        assert_eq!(value["member"]["raft_term"], json!(null));
        assert_eq!(value["member"]["revision"], json!(null));
    }

    #[test]
    fn flag_changes_use_words_and_nulls() {
        let response = pb::CheckFlagsResponse {
            current_version: "3.4.23".into(),
            changes: vec![pb::FlagChange {
                kind: pb::flag_change::Kind::Removed.into(),
                flag: "--enable-v2".into(),
                old_value: "true".into(),
                reason: "3.6 has no v2 store".into(),
                rule: "flags-3.6-enable-v2".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let value = serde_json::to_value(FlagsView::new("3.5.16", &response)).unwrap();
        assert_eq!(value["target_version"], "3.5.16");
        assert_eq!(value["changes"][0]["kind"], "removed");
        assert_eq!(value["changes"][0]["new_flag"], json!(null));
        assert_eq!(value["changes"][0]["old_value"], "true");
    }

    #[test]
    fn snapshots_carry_hex_member_ids() {
        let info = pb::SnapshotInfo {
            id: "s1".into(),
            member_id: 1,
            size: 64,
            ..Default::default()
        };
        let value = serde_json::to_value(SnapshotsView::from(&pb::ListSnapshotsResponse {
            snapshots: vec![info],
        }))
        .unwrap();
        assert_eq!(value["snapshots"][0]["member_id"], "0000000000000001");
        assert_eq!(value["snapshots"][0]["size_bytes"], 64);
        assert_eq!(value["snapshots"][0]["cluster_version"], json!(null));
    }
}
