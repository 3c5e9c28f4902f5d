//! The agent's lifecycle state machine and its persisted state.
//!
//! The state machine is a table: [`transition`] lists every (operation,
//! state) pair that is allowed; everything else is refused with a
//! FAILED_PRECONDITION that names the states the operation is allowed from.
//! The persisted state (`state.json` in the state dir) is rewritten
//! atomically on every change, so a restarted agent knows which version is
//! active, which was before, and which etcd process it owns.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::AgentError;
use crate::fsutil;
use crate::process::{PendingStart, ProcessRecord};

/// The agent's lifecycle state (mirrors `steward.agent.v1.AgentState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// No version active yet.
    Empty,
    /// etcd stopped on request.
    Stopped,
    /// etcd supervised.
    Running,
    /// Switching to another version.
    Activating,
    /// Switching back to the previous version.
    RollingBack,
    /// Crash loop or failed revert; not restarted automatically.
    Failed,
    /// Replacing the data dir with a snapshot.
    Restoring,
}

impl fmt::Display for AgentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "EMPTY",
            Self::Stopped => "STOPPED",
            Self::Running => "RUNNING",
            Self::Activating => "ACTIVATING",
            Self::RollingBack => "ROLLING_BACK",
            Self::Failed => "FAILED",
            Self::Restoring => "RESTORING",
        })
    }
}

/// Everything that moves the state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Start RPC.
    Start,
    /// Stop RPC.
    Stop,
    /// Restart RPC.
    Restart,
    /// Activate RPC.
    Activate,
    /// Rollback RPC.
    Rollback,
    /// TakeSnapshot RPC (needs a running member, changes no state).
    TakeSnapshot,
    /// UploadSnapshot RPC (changes no state).
    UploadSnapshot,
    /// ImportSnapshot RPC (changes no state).
    ImportSnapshot,
    /// RestoreMember RPC.
    Restore,
    /// FinishRestore RPC (changes no state).
    FinishRestore,
    /// The supervisor gave up after repeated crashes.
    CrashLoop,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Start => "Start",
            Self::Stop => "Stop",
            Self::Restart => "Restart",
            Self::Activate => "Activate",
            Self::Rollback => "Rollback",
            Self::TakeSnapshot => "TakeSnapshot",
            Self::UploadSnapshot => "UploadSnapshot",
            Self::ImportSnapshot => "ImportSnapshot",
            Self::Restore => "RestoreMember",
            Self::FinishRestore => "FinishRestore",
            Self::CrashLoop => "crash loop",
        })
    }
}

/// Where an allowed operation takes the state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The state while the operation runs.
    pub during: AgentState,
    /// The state when it succeeds.
    pub after: AgentState,
}

/// The transition table. Every pair not listed is refused.
fn table(operation: Operation, state: AgentState) -> Option<Transition> {
    use AgentState as S;
    use Operation as O;
    let t = |during, after| Some(Transition { during, after });
    match (operation, state) {
        (O::Start, S::Stopped | S::Failed) => t(S::Running, S::Running),
        (O::Stop, S::Running | S::Failed) => t(state, S::Stopped),
        (O::Restart, S::Running | S::Failed) => t(S::Running, S::Running),
        (O::Activate, S::Empty | S::Stopped | S::Running | S::Failed) => t(S::Activating, S::Running),
        (O::Rollback, S::Stopped | S::Running | S::Failed) => t(S::RollingBack, S::Running),
        (O::TakeSnapshot, S::Running) => t(S::Running, S::Running),
        // etcd must not run while its data dir is replaced.
        (O::Restore, S::Empty | S::Stopped | S::Failed) => t(S::Restoring, S::Stopped),
        (O::UploadSnapshot | O::ImportSnapshot | O::FinishRestore, _) => t(state, state),
        (O::CrashLoop, S::Running) => t(S::Failed, S::Failed),
        _ => None,
    }
}

/// Every state, in the order they are listed to people.
pub const ALL_STATES: [AgentState; 7] = [
    AgentState::Empty,
    AgentState::Stopped,
    AgentState::Running,
    AgentState::Activating,
    AgentState::RollingBack,
    AgentState::Failed,
    AgentState::Restoring,
];

/// Looks `operation` up in the transition table for `state`; a refusal names
/// the states the operation is allowed from.
pub fn transition(operation: Operation, state: AgentState) -> Result<Transition, AgentError> {
    table(operation, state).ok_or_else(|| AgentError::TransitionRefused {
        operation,
        state,
        allowed: ALL_STATES
            .into_iter()
            .filter(|s| table(operation, *s).is_some())
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// A version switch in progress, persisted so a restarted agent can finish
/// it (by reverting to `from`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Switch {
    /// The version active before the switch (none on a first activation).
    pub from: Option<String>,
    /// The version being switched to.
    pub to: String,
}

/// What `state.json` holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedState {
    /// The lifecycle state.
    pub state: AgentState,
    /// Why, when it is FAILED.
    #[serde(default)]
    pub state_reason: String,
    /// The active version.
    pub active_version: Option<String>,
    /// The version `active_version` was switched to from: the context its
    /// flags are rendered in (downgrade rules), kept so that every restart
    /// renders the same command line.
    #[serde(default)]
    pub active_from: Option<String>,
    /// The version before the last switch.
    pub previous_version: Option<String>,
    /// `active_from` of the previous version, restored by Rollback.
    #[serde(default)]
    pub previous_from: Option<String>,
    /// The switch in progress, if any.
    #[serde(default)]
    pub switch: Option<Switch>,
    /// The etcd process the agent owns.
    #[serde(default)]
    pub process: Option<ProcessRecord>,
    /// The start of etcd under way: written before the spawn, replaced by
    /// `process` once the process is recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting: Option<PendingStart>,
    /// Automatic restarts since the last requested start.
    #[serde(default)]
    pub restart_count: u32,
    /// The highest coordinator fencing token seen; a lower one is stale.
    #[serde(default)]
    pub fencing_token: i64,
    /// The last restore of the member's data, if any.
    #[serde(default)]
    pub restore: Option<RestoreRecord>,
}

/// How far a restore got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestorePhase {
    /// Recorded; the fresh data dir may not be in place yet.
    Restoring,
    /// The fresh data dir is in place; etcd may start.
    Restored,
    /// The cluster runs from the restore.
    Finished,
}

/// Where a restore stages the fresh member data and keeps the replaced one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreLayout {
    /// Inside the data dir: the tool writes `<data dir>/.restore-*.part`,
    /// and the `member` dirs are swapped. Needs nothing writable but the
    /// data dir, which etcd needs anyway; works when the data dir is a
    /// mount point or the only writable path of a sandboxed unit.
    InsideDataDir,
    /// Beside the data dir (`<data dir>.restore-*.part`), swapping the data
    /// dir itself: what earlier agents recorded, finished the same way.
    BesideDataDir,
}

impl RestoreLayout {
    /// The layout of a record that names none.
    #[must_use]
    pub const fn legacy() -> Self {
        Self::BesideDataDir
    }
}

/// A restore of the member's data, persisted before anything changes so
/// that the same request finishes it after a crash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreRecord {
    /// The cluster-wide restore's id.
    pub id: String,
    /// How far it got.
    pub phase: RestorePhase,
    /// The snapshot restored.
    pub snapshot_id: String,
    /// Its sha256.
    pub snapshot_sha256: String,
    /// Its revision.
    pub snapshot_revision: i64,
    /// The version whose tool restores and which runs the result.
    pub version: String,
    /// `--initial-cluster` of the restored cluster.
    pub initial_cluster: String,
    /// `--initial-cluster-token` of the restored cluster.
    pub initial_cluster_token: String,
    /// The member's data dir.
    pub data_dir: PathBuf,
    /// Where the restore writes and what it swaps (records written before
    /// layouts were recorded swapped the data dir beside itself).
    #[serde(default = "RestoreLayout::legacy")]
    pub layout: RestoreLayout,
    /// Whether member data (the data dir, or its `member` dir with
    /// [`RestoreLayout::InsideDataDir`]) existed when the restore began.
    pub had_data_dir: bool,
    /// Where the replaced data dir goes.
    pub moved_aside_to: PathBuf,
    /// Where the restore tool writes (one dir per attempt: a tool left
    /// running by a killed agent never writes into the next attempt's).
    pub staging_dir: PathBuf,
    /// Which attempt the staging dir belongs to.
    #[serde(default)]
    pub attempt: u32,
    /// When it began, ms since the epoch.
    pub started_at_ms: i64,
    /// When the phase last changed, ms since the epoch.
    pub updated_at_ms: i64,
}

impl RestoreRecord {
    /// True until the fresh data dir is in place.
    #[must_use]
    pub fn unfinished(&self) -> bool {
        self.phase == RestorePhase::Restoring
    }
}

impl Default for PersistedState {
    fn default() -> Self {
        Self {
            state: AgentState::Empty,
            state_reason: String::new(),
            active_version: None,
            active_from: None,
            previous_version: None,
            previous_from: None,
            switch: None,
            process: None,
            starting: None,
            restart_count: 0,
            fencing_token: 0,
            restore: None,
        }
    }
}

/// The persisted state with its file; every update is written through.
#[derive(Debug)]
pub struct StateStore {
    path: PathBuf,
    current: Mutex<PersistedState>,
    /// Memory holds changes the last write could not persist.
    dirty: std::sync::atomic::AtomicBool,
}

impl StateStore {
    /// Loads `state.json` from `dir`, or starts empty when there is none.
    pub fn open(dir: &Path) -> Result<Self, AgentError> {
        let path = dir.join("state.json");
        let current = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| AgentError::CorruptState {
                path: path.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => PersistedState::default(),
            Err(source) => {
                return Err(AgentError::Io {
                    action: "read",
                    path,
                    source,
                });
            }
        };
        Ok(Self {
            path,
            current: Mutex::new(current),
            dirty: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// A copy of the current state.
    pub fn get(&self) -> PersistedState {
        self.lock().clone()
    }

    /// Applies `change` and writes the result atomically.
    ///
    /// The change describes something that already happened (a process
    /// started, a version switched), so memory follows it even when the
    /// write fails (a full disk): the agent keeps describing reality, the
    /// caller gets the write error, and the next successful write persists
    /// everything. The file is never half written.
    pub fn update<T>(&self, change: impl FnOnce(&mut PersistedState) -> T) -> Result<T, AgentError> {
        let mut guard = self.lock();
        let mut next = guard.clone();
        let out = change(&mut next);
        if next != *guard || self.dirty.load(std::sync::atomic::Ordering::Relaxed) {
            let written = serde_json::to_vec_pretty(&next)
                .map_err(|source| AgentError::CorruptState {
                    path: self.path.clone(),
                    source,
                })
                .and_then(|bytes| fsutil::write_atomic(&self.path, &bytes, 0o600));
            *guard = next;
            self.dirty.store(written.is_err(), std::sync::atomic::Ordering::Relaxed);
            written?;
        }
        Ok(out)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PersistedState> {
        // A panic while holding this lock cannot leave a half-updated state:
        // updates are applied to a copy first. So a poisoned lock is usable.
        self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_allows_the_documented_pairs() {
        use AgentState as S;
        use Operation as O;
        assert_eq!(transition(O::Start, S::Stopped).unwrap().after, S::Running);
        assert_eq!(transition(O::Stop, S::Running).unwrap().after, S::Stopped);
        assert_eq!(transition(O::Activate, S::Running).unwrap().during, S::Activating);
        assert_eq!(transition(O::Activate, S::Empty).unwrap().after, S::Running);
        assert_eq!(transition(O::Rollback, S::Failed).unwrap().during, S::RollingBack);
        assert_eq!(transition(O::CrashLoop, S::Running).unwrap().after, S::Failed);
    }

    #[test]
    fn table_refuses_everything_else() {
        use AgentState as S;
        use Operation as O;
        for (op, state) in [
            (O::Start, S::Running),
            (O::Start, S::Empty),
            (O::Stop, S::Stopped),
            (O::Stop, S::Empty),
            (O::Activate, S::Activating),
            (O::Activate, S::RollingBack),
            (O::Rollback, S::Empty),
            (O::Rollback, S::Activating),
            (O::TakeSnapshot, S::Stopped),
            (O::Restart, S::Stopped),
            (O::CrashLoop, S::Stopped),
        ] {
            let err = transition(op, state).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(&state.to_string()), "{text}");
            assert!(text.contains("allowed from"), "{text}");
        }
    }

    #[test]
    fn store_persists_updates() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        assert_eq!(store.get().state, AgentState::Empty);
        store
            .update(|s| {
                s.state = AgentState::Running;
                s.active_version = Some("3.4.23".into());
            })
            .unwrap();
        let reopened = StateStore::open(dir.path()).unwrap();
        assert_eq!(reopened.get().active_version.as_deref(), Some("3.4.23"));
        assert_eq!(reopened.get().state, AgentState::Running);
    }

    #[test]
    fn memory_follows_a_change_whose_write_failed() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        // A directory where the file should be makes the rename fail.
        std::fs::create_dir(dir.path().join("state.json")).unwrap();
        let err = store.update(|s| s.state = AgentState::Running).unwrap_err();
        assert!(err.to_string().contains("state.json"), "{err}");
        assert_eq!(store.get().state, AgentState::Running, "memory follows reality");
        // Once writing works again, the pending change is persisted.
        std::fs::remove_dir(dir.path().join("state.json")).unwrap();
        store.update(|_| ()).unwrap();
        assert_eq!(StateStore::open(dir.path()).unwrap().get().state, AgentState::Running);
    }

    #[test]
    fn corrupt_state_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("state.json"), b"{not json").unwrap();
        let err = StateStore::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("state.json"));
    }
}
