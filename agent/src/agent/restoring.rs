//! The agent's part in a cluster-wide restore: receiving snapshots,
//! checking a restore (also as a dry run, while etcd still runs), replacing
//! the data dir under the state machine, and marking the restore finished.

use std::path::Path;
use std::sync::Arc;

use steward_proto::EtcdVersion;

use super::Agent;
use crate::error::{AgentError, error_chain};
use crate::restore::RestoreTool;
use crate::snapshot::{SnapshotMeta, SnapshotUpload, UploadDeclared};
use crate::state::{AgentState, Operation, RestoreLayout, RestorePhase, RestoreRecord, transition};
use crate::store::Tool;

/// Room the restore tool needs besides the database: etcd preallocates its
/// first WAL segment (64 MiB).
const WAL_SEGMENT: u64 = 64 * 1024 * 1024;

/// What RestoreMember asks for, validated.
#[derive(Clone, Debug)]
pub struct RestoreRequest {
    /// The cluster-wide restore's id.
    pub id: String,
    /// The stored snapshot.
    pub snapshot_id: String,
    /// The version that restores and runs the member.
    pub version: EtcdVersion,
    /// `--initial-cluster` of the restored cluster.
    pub initial_cluster: String,
    /// Its token.
    pub initial_cluster_token: String,
}

impl RestoreRequest {
    fn matches(&self, record: &RestoreRecord) -> bool {
        self.snapshot_id == record.snapshot_id
            && self.version.to_string() == record.version
            && self.initial_cluster == record.initial_cluster
            && self.initial_cluster_token == record.initial_cluster_token
    }
}

/// A restore that passed its checks.
enum Checked {
    /// This restore is done already.
    Done(RestoreRecord),
    /// The record to write before anything changes, the tool, and the
    /// staging dir of an earlier attempt (or restore) to remove.
    Ready {
        record: RestoreRecord,
        tool: RestoreTool,
        stale_staging: Option<std::path::PathBuf>,
    },
}

impl Agent {
    /// The snapshot an unfinished restore still needs, kept by retention
    /// until the restore is finished.
    pub(super) fn protected_snapshot(&self) -> Vec<String> {
        self.state
            .get()
            .restore
            .filter(|r| r.phase != RestorePhase::Finished)
            .map(|r| r.snapshot_id)
            .into_iter()
            .collect()
    }

    /// Receives an uploaded snapshot and stores it once verified.
    pub async fn upload_snapshot(
        &self,
        upload: SnapshotUpload,
        declared: &UploadDeclared,
    ) -> Result<(SnapshotMeta, bool), AgentError> {
        let tool = self.status_tool();
        let protected = self.protected_snapshot();
        self.snapshots.finish_upload(upload, declared, tool, &protected).await
    }

    /// Replaces the member's data with a stored snapshot (see
    /// [`crate::restore`]); `version` becomes active and etcd stays stopped.
    /// With `dry_run`, only checks whether it could (etcd may run), and
    /// changes nothing.
    pub async fn restore_member(
        self: &Arc<Self>,
        request: RestoreRequest,
        dry_run: bool,
    ) -> Result<RestoreRecord, AgentError> {
        if dry_run {
            return match self.check_restore(&request, true).await? {
                Checked::Done(record) | Checked::Ready { record, .. } => Ok(record),
            };
        }
        Box::pin(self.exclusive(Operation::Restore, move |agent| async move {
            agent.restore_now(request).await
        }))
        .await
    }

    /// Every check of a restore, before anything changes. A dry run skips
    /// those that only hold once etcd is stopped.
    async fn check_restore(&self, request: &RestoreRequest, dry_run: bool) -> Result<Checked, AgentError> {
        let persisted = self.state.get();
        let mut stale_staging = None;
        let resumed = match persisted.restore.clone() {
            Some(record) if record.id == request.id => {
                if !request.matches(&record) {
                    return Err(AgentError::InvalidArgument {
                        field: "restore_id",
                        reason: format!(
                            "restore {} was recorded with snapshot {}, version {}, initial cluster {} and token {}; a resumed restore must ask for the same",
                            record.id,
                            record.snapshot_id,
                            record.version,
                            record.initial_cluster,
                            record.initial_cluster_token
                        ),
                    });
                }
                if !record.unfinished() {
                    return Ok(Checked::Done(record));
                }
                Some(record)
            }
            Some(record) if record.unfinished() => {
                if record.moved_aside_to.exists() {
                    // The old data dir is already aside: only that restore
                    // can put a data dir back in place.
                    return Err(AgentError::RestoreRefused {
                        rule: "one-restore-at-a-time",
                        reason: format!(
                            "restore {} of snapshot {} is unfinished on this member and has moved its data dir to {}; finish it first (the same restore_id)",
                            record.id,
                            record.snapshot_id,
                            record.moved_aside_to.display()
                        ),
                    });
                }
                // Its data dir is untouched: a new restore may take over
                // (its snapshot may be gone, its version unusable).
                tracing::warn!(old = %record.id, new = %request.id, "a new restore takes over an unfinished one that changed nothing yet");
                stale_staging = Some(record.staging_dir);
                None
            }
            _ => None,
        };
        if !dry_run {
            transition(Operation::Restore, persisted.state)?;
            if let Some(process) = self.supervisor.status().record {
                return Err(AgentError::Precondition {
                    operation: Operation::Restore,
                    reason: format!("etcd is running (pid {}); stop it first", process.pid),
                });
            }
        }
        let member = &self.config.member;
        if let Some(flag) = member.extra_flags.iter().find(|f| f.starts_with("--wal-dir")) {
            return Err(AgentError::RestoreRefused {
                rule: "no-separate-wal-dir",
                reason: format!("the member keeps its WAL apart ({flag}); restore it by hand"),
            });
        }
        crate::restore::check_initial_cluster(
            &request.initial_cluster,
            &member.name,
            &member.initial_advertise_peer_urls,
        )
        .map_err(|reason| AgentError::InvalidArgument {
            field: "initial_cluster",
            reason,
        })?;
        // The version must be able to run here, and bring its restore tool.
        self.launch_for(&request.version, None)?;
        let tool = if request.version.restore_tool() == Tool::Etcdutl.file_name() {
            Tool::Etcdutl
        } else {
            Tool::Etcdctl
        };
        let program = self
            .store
            .tool_path(&request.version, tool)
            .ok_or_else(|| AgentError::RestoreRefused {
                rule: "restore-tool-staged",
                reason: format!(
                    "{} {} is not staged here; a {}.{} member is restored with {} (stage it with ImportBinary or UploadBinary)",
                    tool.file_name(),
                    request.version,
                    request.version.major(),
                    request.version.minor(),
                    tool.file_name()
                ),
            })?;
        let snapshot = self.snapshots.get_verified(&request.snapshot_id)?;
        if let Some(record) = &resumed
            && record.snapshot_sha256 != snapshot.sha256
        {
            return Err(AgentError::Precondition {
                operation: Operation::Restore,
                reason: format!(
                    "snapshot {} has sha256 {} now, but restore {} began with {}",
                    snapshot.id, snapshot.sha256, record.id, record.snapshot_sha256
                ),
            });
        }
        let db_version =
            crate::snapshot::db_cluster_version(&snapshot.path).map_err(|source| AgentError::SnapshotInvalid {
                path: snapshot.path.clone(),
                source,
            })?;
        check_not_newer(&snapshot.id, &db_version, &request.version)?;
        self.snapshots
            .check_database_of(&program, tool.file_name(), &snapshot)
            .await
            .map_err(|source| AgentError::SnapshotInvalid {
                path: snapshot.path.clone(),
                source,
            })?;

        let aside_exists = resumed.as_ref().is_some_and(|r| r.moved_aside_to.exists());
        if !aside_exists {
            let layout = resumed.as_ref().map_or(RestoreLayout::InsideDataDir, |r| r.layout);
            check_room(layout, &member.data_dir, snapshot.size)?;
        }
        let now = crate::snapshot::now_ms();
        let record = match resumed {
            // The tool finished before the old data dir was moved aside:
            // its staging dir is complete, keep it.
            Some(record) if aside_exists => record,
            // A new attempt writes into a staging dir of its own: a tool
            // that a killed agent left running keeps writing into the old.
            Some(mut record) => {
                stale_staging = Some(record.staging_dir.clone());
                record.attempt += 1;
                record.staging_dir =
                    crate::restore::paths(record.layout, &record.data_dir, &record.id, record.attempt).staging;
                record.updated_at_ms = now;
                record
            }
            None => {
                let layout = RestoreLayout::InsideDataDir;
                let paths = crate::restore::paths(layout, &member.data_dir, &request.id, 1);
                RestoreRecord {
                    id: request.id.clone(),
                    phase: RestorePhase::Restoring,
                    snapshot_id: snapshot.id.clone(),
                    snapshot_sha256: snapshot.sha256.clone(),
                    snapshot_revision: snapshot.revision,
                    version: request.version.to_string(),
                    initial_cluster: request.initial_cluster.clone(),
                    initial_cluster_token: request.initial_cluster_token.clone(),
                    data_dir: member.data_dir.clone(),
                    layout,
                    had_data_dir: crate::restore::current_member_data(layout, &member.data_dir).exists(),
                    moved_aside_to: paths.aside,
                    staging_dir: paths.staging,
                    attempt: 1,
                    started_at_ms: now,
                    updated_at_ms: now,
                }
            }
        };
        let tool = RestoreTool {
            program,
            name: tool.file_name(),
            snapshot: snapshot.path.clone(),
            member_name: member.name.clone(),
            initial_cluster: record.initial_cluster.clone(),
            initial_cluster_token: record.initial_cluster_token.clone(),
            peer_urls: member.initial_advertise_peer_urls.clone(),
        };
        Ok(Checked::Ready {
            record,
            tool,
            stale_staging: stale_staging.filter(|p| *p != member.data_dir),
        })
    }

    async fn restore_now(&self, request: RestoreRequest) -> Result<RestoreRecord, AgentError> {
        let (record, tool, stale_staging) = match self.check_restore(&request, false).await? {
            Checked::Done(record) => return Ok(record),
            Checked::Ready {
                record,
                tool,
                stale_staging,
            } => (record, tool, stale_staging),
        };
        let step = transition(Operation::Restore, self.state.get().state)?;
        // Recorded before anything on disk changes: a crash from here on is
        // finished by the same call, and nothing starts etcd meanwhile.
        self.state.update(|s| {
            s.state = step.during;
            s.restore = Some(record.clone());
        })?;
        if let Some(stale) = stale_staging
            && stale != record.staging_dir
            && stale.exists()
        {
            // Only ever a restore's own `.part` output, never a data dir.
            tracing::info!(path = %stale.display(), "removing the staging dir of an earlier attempt");
            if let Err(error) = std::fs::remove_dir_all(&stale) {
                tracing::warn!(path = %stale.display(), %error, "cannot remove an earlier attempt's staging dir");
            }
        }
        tracing::info!(restore = %record.id, snapshot = %record.snapshot_id, version = %record.version, attempt = record.attempt, "restoring the member's data");
        match crate::restore::replace_data_dir(&record, |staging| async move { tool.run(staging).await }).await {
            Ok(()) => {
                let done = self.state.update(|s| {
                    s.state = step.after;
                    s.state_reason.clear();
                    s.active_version = Some(record.version.clone());
                    // A fresh data dir: no earlier version ran on it, so
                    // there is nothing to roll back to and no switch context.
                    s.active_from = None;
                    s.previous_version = None;
                    s.previous_from = None;
                    s.restart_count = 0;
                    // The restored cluster's lock revisions start again from
                    // the snapshot's: tokens of the old history mean nothing.
                    s.fencing_token = 0;
                    let restore = s.restore.get_or_insert_with(|| record.clone());
                    restore.phase = RestorePhase::Restored;
                    restore.updated_at_ms = crate::snapshot::now_ms();
                    restore.clone()
                })?;
                tracing::info!(restore = %done.id, moved_aside_to = %done.moved_aside_to.display(), "member data restored");
                Ok(done)
            }
            Err(error) => {
                let reason = format!(
                    "restore {} unfinished: {}; RestoreMember with the same restore_id retries it",
                    record.id,
                    error_chain(&error)
                );
                tracing::error!(%reason);
                let _ = self.state.update(|s| {
                    s.state = AgentState::Stopped;
                    s.state_reason = reason;
                });
                Err(error)
            }
        }
    }

    /// Marks restore `id` finished (the cluster runs from it).
    pub fn finish_restore(&self, id: &str) -> Result<RestoreRecord, AgentError> {
        self.state.update(|s| match s.restore.as_mut() {
            Some(restore) if restore.id == id && restore.phase != RestorePhase::Restoring => {
                if restore.phase != RestorePhase::Finished {
                    restore.phase = RestorePhase::Finished;
                    restore.updated_at_ms = crate::snapshot::now_ms();
                }
                Ok(restore.clone())
            }
            Some(restore) if restore.id == id => Err(AgentError::Precondition {
                operation: Operation::FinishRestore,
                reason: format!("restore {id} has not put its data dir in place yet"),
            }),
            other => Err(AgentError::Precondition {
                operation: Operation::FinishRestore,
                reason: format!(
                    "this member has no restore {id} (its last restore: {})",
                    other.map_or("none", |r| r.id.as_str())
                ),
            }),
        })?
    }

    /// Refuses `operation`, which would start etcd, while a restore has not
    /// put its data dir in place: etcd would find no data dir, or the old
    /// one, and bootstrap or rejoin the wrong cluster.
    pub(super) fn refuse_during_restore(&self, operation: Operation) -> Result<(), AgentError> {
        match self.state.get().restore {
            Some(restore) if restore.unfinished() => Err(AgentError::Precondition {
                operation,
                reason: format!(
                    "restore {} of snapshot {} is unfinished; RestoreMember with the same restore_id (steward restore run again) finishes it",
                    restore.id, restore.snapshot_id
                ),
            }),
            _ => Ok(()),
        }
    }
}

/// Everything a restore writes must be possible before any member stops:
/// the dir it writes into must take a new directory from this agent (its
/// user, inside its unit's sandbox), the member data it renames must not be
/// a mount point, and the file system must take the restored database and
/// the first WAL segment.
fn check_room(layout: RestoreLayout, data_dir: &Path, snapshot_size: u64) -> Result<(), AgentError> {
    let current = crate::restore::current_member_data(layout, data_dir);
    if crate::restore::is_mount_point(&current) {
        let hint = match layout {
            RestoreLayout::InsideDataDir => "mount the disk at the data dir itself, not at its member dir",
            RestoreLayout::BesideDataDir => "finish this restore by hand, or start a new one",
        };
        return Err(AgentError::RestoreRefused {
            rule: "data-dir-not-a-mount-point",
            reason: format!(
                "{} is a mount point, which cannot be renamed aside; {hint}",
                current.display()
            ),
        });
    }
    // Where the staging dir goes: the data dir itself, or (for a data dir
    // not made yet) the parent the agent would create it in.
    let writes_in = match layout {
        RestoreLayout::InsideDataDir if data_dir.is_dir() => data_dir,
        _ => data_dir.parent().unwrap_or(Path::new("/")),
    };
    if let Err(error) = crate::restore::probe_writable(writes_in) {
        return Err(AgentError::RestoreRefused {
            rule: "data-dir-writable",
            reason: format!(
                "the agent cannot create a directory in {} ({error}); a restore stages the member data there. Make it writable for the agent's user (for the shipped unit: ReadWritePaths= and owned by etcd)",
                writes_in.display()
            ),
        });
    }
    let free = crate::datadir::disk(writes_in, writes_in).data_dir_free_bytes;
    let needed = snapshot_size.saturating_add(WAL_SEGMENT);
    if free < needed {
        return Err(AgentError::RestoreRefused {
            rule: "restore-disk-space",
            reason: format!(
                "{} has {free} bytes free; the restored member data needs about {needed} (the database and a 64 MiB WAL segment)",
                writes_in.display()
            ),
        });
    }
    Ok(())
}

/// A database written by a newer minor version than `version` would be
/// read by a binary that does not know its format.
fn check_not_newer(id: &str, db_version: &str, version: &EtcdVersion) -> Result<(), AgentError> {
    if db_version.is_empty() {
        return Err(AgentError::RestoreRefused {
            rule: "snapshot-not-newer-than-binary",
            reason: format!("snapshot {id} records no cluster version, so which etcd wrote it is unknown"),
        });
    }
    let recorded: EtcdVersion = db_version.parse().map_err(|_| AgentError::RestoreRefused {
        rule: "snapshot-not-newer-than-binary",
        reason: format!("snapshot {id} records the cluster version {db_version:?}, which is not a version"),
    })?;
    if recorded.minor_version() > version.minor_version() {
        return Err(AgentError::RestoreRefused {
            rule: "snapshot-not-newer-than-binary",
            reason: format!(
                "snapshot {id} was written by a {}.{} cluster, newer than {version}, which would restore and run it",
                recorded.major(),
                recorded.minor()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> EtcdVersion {
        text.parse().unwrap()
    }

    #[test]
    fn a_newer_or_unknown_database_is_refused() {
        assert!(check_not_newer("s", "3.4.0", &v("3.4.23")).is_ok());
        assert!(check_not_newer("s", "3.4.0", &v("3.5.30")).is_ok());
        let newer = check_not_newer("s", "3.5.0", &v("3.4.23")).unwrap_err().to_string();
        assert!(
            newer.contains("snapshot-not-newer-than-binary") && newer.contains("3.5"),
            "{newer}"
        );
        assert!(check_not_newer("s", "", &v("3.4.23")).is_err());
        assert!(check_not_newer("s", "garbage", &v("3.4.23")).is_err());
    }

    #[test]
    fn a_restore_needs_room_and_a_writable_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        assert!(check_room(RestoreLayout::InsideDataDir, &data, 1024).is_ok());
        // A data dir not made yet is made in its parent.
        assert!(check_room(RestoreLayout::InsideDataDir, &dir.path().join("new"), 1024).is_ok());
        let full = check_room(RestoreLayout::InsideDataDir, &data, u64::MAX - 1)
            .unwrap_err()
            .to_string();
        assert!(full.contains("restore-disk-space"), "{full}");
        let unwritable = check_room(RestoreLayout::InsideDataDir, &dir.path().join("no/such/dir"), 0)
            .unwrap_err()
            .to_string();
        assert!(unwritable.contains("data-dir-writable"), "{unwritable}");
        let mounted = check_room(RestoreLayout::BesideDataDir, Path::new("/proc"), 0)
            .unwrap_err()
            .to_string();
        assert!(mounted.contains("data-dir-not-a-mount-point"), "{mounted}");
        // Inside the data dir, the data dir itself may be a mount point.
        let inside = check_room(RestoreLayout::InsideDataDir, Path::new("/proc"), 0)
            .unwrap_err()
            .to_string();
        assert!(!inside.contains("data-dir-not-a-mount-point"), "{inside}");
    }
}
