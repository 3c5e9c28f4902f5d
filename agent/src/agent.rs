//! The agent's core: one value that owns the state dir, the binary store,
//! the snapshots, etcd's log and the supervisor, and carries out every
//! operation the RPCs ask for under the state machine's rules.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use nix::fcntl::{Flock, FlockArg};
use steward_proto::EtcdVersion;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::{AgentError, error_chain};
use crate::flags::{self, Rendered};
use crate::fsutil;
use crate::logs::LogTail;
use crate::member::LocalMember;
use crate::process::{self, Launch, Liveness, ProcessRecord};
use crate::snapshot::{SnapshotDir, SnapshotMeta};
use crate::state::{AgentState, Operation, PersistedState, StateStore, Switch, transition};
use crate::store::{BinaryStore, Declared, Incoming, Manifest, Tool};
use crate::supervisor::{ProcessStatus, Supervisor};

mod attempts;
mod restoring;
pub use attempts::SnapshotAttempts;
pub use restoring::RestoreRequest;

/// How long admitting a fencing token waits for the cluster's revision.
const REVISION_READ: Duration = Duration::from_secs(1);

/// Whether a caller's fencing token may raise the agent's mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenAuthority {
    /// An admin (or anyone on an insecure agent): a newer token raises it.
    MayRaise,
    /// A reader, backup or operator: checked against the mark, never
    /// raising it, so such a certificate cannot lock coordinators out.
    CheckOnly,
}

/// How long a switch waits before it checks again whether the member is
/// healthy yet: soon at first, since a small member answers within a few
/// hundred milliseconds of its start and the member's step (and the
/// roll's) waits on that answer; then every 300 ms for one that loads a
/// large database or catches up.
fn health_poll(attempt: u32) -> Duration {
    const FIRST: Duration = Duration::from_millis(25);
    const LONGEST: Duration = Duration::from_millis(300);
    FIRST.saturating_mul(1 << attempt.min(8)).min(LONGEST)
}

/// The outcome of a successful Activate or Rollback.
#[derive(Clone, Debug)]
pub struct Switched {
    /// The version now active.
    pub active: EtcdVersion,
    /// The version active before.
    pub previous: Option<EtcdVersion>,
    /// etcd's arguments.
    pub rendered: Rendered,
    /// etcd's pid.
    pub pid: u32,
    /// How long the switch took.
    pub took: Duration,
}

/// What CheckFlags answers.
#[derive(Clone, Debug)]
pub struct FlagCheck {
    /// The active version.
    pub current_version: Option<EtcdVersion>,
    /// The arguments the running etcd was started with.
    pub current_args: Vec<String>,
    /// The rendering for the target.
    pub target: Rendered,
}

/// The agent.
#[derive(Debug)]
pub struct Agent {
    config: Config,
    state: Arc<StateStore>,
    store: BinaryStore,
    snapshots: SnapshotDir,
    logs: LogTail,
    supervisor: Supervisor,
    member: LocalMember,
    op_lock: tokio::sync::Mutex<()>,
    running_op: std::sync::Mutex<Option<Operation>>,
    started_at: SystemTime,
    snapshot_attempts: std::sync::Mutex<SnapshotAttempts>,
    _dir_lock: Flock<File>,
}

impl Agent {
    /// Takes the state dir, restores the persisted state, adopts a running
    /// etcd or starts the active version, and stages and starts the
    /// configured initial binary on a first start.
    pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Arc<Self>, AgentError> {
        let dir = config.state_dir.clone();
        fsutil::ensure_dir(&dir, 0o700)?;
        let dir_lock = lock_state_dir(&dir)?;
        fsutil::ensure_dir(&dir.join("logs"), 0o700)?;
        let state = Arc::new(StateStore::open(&dir)?);
        let store = BinaryStore::open(dir.join("binaries"), config.import_dirs.clone())?.with_pinned(config.pinned());
        let snapshots = SnapshotDir::open(dir.join("snapshots"), config.snapshots.retain)?;
        let logs = LogTail::new(
            dir.join("logs").join("etcd.log"),
            config.supervision.log_tail_lines,
            config.supervision.log_max_bytes,
        );
        logs.spawn_follower(shutdown.clone());
        let supervisor = Supervisor::spawn(config.supervision.clone(), state.clone(), shutdown);
        let member_tls = crate::member::MemberClientTls::read(&config.member.tls)?;
        let credentials = config
            .member
            .auth
            .as_ref()
            .map(crate::member::MemberCredentials::read)
            .transpose()?;
        let member =
            LocalMember::new(config.member.local_client_url().to_owned(), member_tls)?.with_credentials(credentials);
        let agent = Arc::new(Self {
            config,
            state,
            store,
            snapshots,
            logs,
            supervisor,
            member,
            op_lock: tokio::sync::Mutex::new(()),
            running_op: std::sync::Mutex::new(None),
            started_at: SystemTime::now(),
            snapshot_attempts: std::sync::Mutex::default(),
            _dir_lock: dir_lock,
        });
        agent.recover().await;
        Ok(agent)
    }

    /// Brings the process in line with the persisted state after a start.
    /// A failure marks the member FAILED with the reason; the agent keeps
    /// serving, so an operator can see why and act (a restart loop under
    /// systemd would only hide it).
    async fn recover(&self) {
        if let Err(error) = self.try_recover().await {
            let reason = format!("recovery at agent start failed: {}", error_chain(&error));
            tracing::error!(%reason);
            if let Err(error) = self.state.update(|s| {
                s.state = AgentState::Failed;
                s.state_reason = reason;
                s.switch = None;
            }) {
                tracing::error!(error = %error_chain(&error), "cannot persist the FAILED state");
            }
        }
    }

    async fn try_recover(&self) -> Result<(), AgentError> {
        let persisted = self.state.get();
        let recorded = persisted
            .process
            .clone()
            .filter(|record| process::liveness(record) == Liveness::Alive);
        let live = match recorded {
            Some(record) => Some(record),
            None => self.find_unrecorded_start(&persisted)?,
        };

        if let Some(switch) = persisted.switch.clone() {
            return self.recover_switch(&persisted, switch, live).await;
        }
        if persisted.state == AgentState::Restoring {
            // Nothing may start etcd now: the data dir may be half replaced.
            // The same RestoreMember finishes it from what is on disk.
            let id = persisted
                .restore
                .as_ref()
                .map_or("(unknown)", |r| r.id.as_str())
                .to_owned();
            tracing::warn!(restore = %id, "a restore was interrupted; etcd stays stopped until it is finished");
            return self.state.update(|s| {
                s.state = AgentState::Stopped;
                s.state_reason = format!(
                    "restore {id} was interrupted; RestoreMember with the same restore_id (steward restore run again) finishes it"
                );
            });
        }

        match (persisted.state, live) {
            (_, Some(record)) => {
                // Own the running etcd first, whatever comes next.
                let version = self.parse_recorded(&record.version)?;
                let launch = self.launch_for(&version, active_from_of(&persisted).as_ref());
                self.supervisor
                    .adopt(record.clone(), launch.as_ref().ok().cloned(), persisted.restart_count)
                    .await?;
                self.state.update(|s| {
                    s.state = AgentState::Running;
                    // The agent may have died between starting its first etcd
                    // and recording the version; the process knows it.
                    s.active_version.get_or_insert(record.version);
                })?;
                // Adopted but not restartable (its binary changed, its flags
                // are refused): say so through FAILED.
                launch.map(|_| ())
            }
            (AgentState::Running, None) => {
                let version = active_of(&persisted).ok_or_else(|| self.corrupt_version("(none)"))?;
                tracing::info!(%version, "etcd is not running; starting it");
                let launch = self.launch_for(&version, active_from_of(&persisted).as_ref())?;
                self.supervisor.start(launch, true).await?;
                Ok(())
            }
            (AgentState::Empty, None) => match self.config.initial_binary.clone() {
                Some(initial) => self.install_initial(&initial).await,
                None => Ok(()),
            },
            (
                AgentState::Stopped
                | AgentState::Failed
                | AgentState::Activating
                | AgentState::RollingBack
                | AgentState::Restoring,
                None,
            ) => Ok(()),
        }
    }

    /// The etcd an earlier agent started but died before recording, found
    /// by the start it recorded first. It is recorded now, so that it is
    /// adopted like any recorded process; a second etcd started beside it
    /// would only fail on the member's ports while it served unowned.
    fn find_unrecorded_start(&self, persisted: &PersistedState) -> Result<Option<ProcessRecord>, AgentError> {
        let Some(pending) = persisted.starting.as_ref() else {
            return Ok(None);
        };
        let found = match process::find_started(pending).as_slice() {
            [] => None,
            [record] => Some(record.clone()),
            many => {
                let pids: Vec<String> = many.iter().map(|r| r.pid.to_string()).collect();
                return Err(AgentError::Precondition {
                    operation: Operation::Start,
                    reason: format!(
                        "{} processes (pids {}) run {} with the arguments of the start an earlier agent made; \
                         only one may run: stop the others",
                        many.len(),
                        pids.join(", "),
                        pending.executable.display()
                    ),
                });
            }
        };
        if let Some(record) = &found {
            tracing::warn!(
                pid = record.pid,
                version = %record.version,
                "found the etcd an earlier agent started but had not recorded"
            );
        }
        // Memory holds the record even when the write fails; the process
        // is adopted either way.
        let recorded = self.state.update(|s| {
            s.starting = None;
            if found.is_some() {
                s.process.clone_from(&found);
            }
        });
        if let Err(error) = recorded {
            tracing::error!(error = %error_chain(&error), "cannot persist the found etcd process");
        }
        Ok(found)
    }

    /// Finishes a switch the agent died in the middle of, by going back to
    /// the version that was known good; the coordinator decides again.
    async fn recover_switch(
        &self,
        persisted: &PersistedState,
        switch: Switch,
        live: Option<ProcessRecord>,
    ) -> Result<(), AgentError> {
        tracing::warn!(from = ?switch.from, to = %switch.to, "an interrupted version switch is reverted");
        // A switch is persisted before anything changes, so the active
        // version and its flag context are still the old ones.
        let from = switch.from.as_deref().map(|v| self.parse_recorded(v)).transpose();
        let launch = from.and_then(|from| {
            from.map(|version| self.launch_for(&version, active_from_of(persisted).as_ref()))
                .transpose()
        });
        if let Some(record) = live {
            let unchanged = launch.as_ref().is_ok_and(|l| {
                l.as_ref()
                    .is_some_and(|l| record.version == l.version && record.args == l.args)
            });
            if unchanged {
                // The agent died before it stopped the old etcd: keep it.
                self.supervisor.adopt(record, launch?, persisted.restart_count).await?;
                return self.state.update(|s| {
                    s.switch = None;
                    s.state = AgentState::Running;
                });
            }
            // Own it before anything can fail, so it can always be stopped.
            self.supervisor.adopt(record, None, 0).await?;
            if launch.is_err() {
                // The old version cannot be started: leave the running etcd
                // alone (adopted, stoppable) and let FAILED say why.
                return launch.map(|_| ());
            }
            self.supervisor.stop().await?;
        }
        match launch? {
            Some(launch) => {
                self.supervisor.start(launch, true).await?;
                self.state.update(|s| {
                    s.switch = None;
                    s.state = AgentState::Running;
                })
            }
            None => self.state.update(|s| {
                s.switch = None;
                s.state = AgentState::Empty;
            }),
        }
    }

    fn parse_recorded(&self, version: &str) -> Result<EtcdVersion, AgentError> {
        version.parse().map_err(|_| self.corrupt_version(version))
    }

    fn corrupt_version(&self, version: &str) -> AgentError {
        AgentError::Precondition {
            operation: Operation::Start,
            reason: format!("state.json names version {version:?}, which is not a version"),
        }
    }

    /// Stages the configured initial binary (and etcdctl/etcdutl next to it)
    /// and starts it, on the very first start of an agent.
    async fn install_initial(&self, path: &std::path::Path) -> Result<(), AgentError> {
        let max = self.config.limits.max_binary_bytes;
        let incoming = self.store.receive_import(&path.display().to_string(), max).await?;
        let declared = Declared {
            tool: Tool::Etcd,
            version: None,
            sha256: None,
            size: None,
        };
        let (manifest, _) = self.store.stage(incoming, &declared).await?;
        for tool in [Tool::Etcdctl, Tool::Etcdutl] {
            let sibling = path.with_file_name(tool.file_name());
            if sibling.is_file() {
                let incoming = self.store.receive_import(&sibling.display().to_string(), max).await?;
                let declared = Declared {
                    tool,
                    version: Some(manifest.version.clone()),
                    sha256: None,
                    size: None,
                };
                self.store.stage(incoming, &declared).await?;
            }
        }
        let launch = self.launch_for(&manifest.version, None)?;
        tracing::info!(version = %manifest.version, "starting the initial etcd");
        self.supervisor.start(launch, true).await?;
        self.state.update(|s| {
            s.active_version = Some(manifest.version.to_string());
            s.state = AgentState::Running;
        })
    }

    fn launch_for(&self, version: &EtcdVersion, previous: Option<&EtcdVersion>) -> Result<Launch, AgentError> {
        let rendered = self.render(version, previous)?;
        if rendered.is_refused() {
            return Err(flags_refused(version, &rendered));
        }
        Ok(Launch {
            executable: self.store.verified_path(version, Tool::Etcd)?,
            args: rendered.args,
            version: version.to_string(),
            log_file: self.logs.path().to_owned(),
        })
    }

    fn render(&self, version: &EtcdVersion, previous: Option<&EtcdVersion>) -> Result<Rendered, AgentError> {
        let spec = self.member_spec();
        flags::render(&spec, version, previous).map_err(|e| AgentError::InvalidArgument {
            field: "version",
            reason: e.to_string(),
        })
    }

    /// The member spec etcd runs with: the config's, except that a restored
    /// member bootstraps from the restored cluster. etcd reads these flags
    /// only when its data dir is empty, but the command line should say
    /// what the data dir holds.
    fn member_spec(&self) -> std::borrow::Cow<'_, crate::config::MemberSpec> {
        match self.state.get().restore {
            Some(restore) => {
                let mut spec = self.config.member.clone();
                spec.initial_cluster = restore.initial_cluster;
                spec.initial_cluster_token = Some(restore.initial_cluster_token);
                spec.initial_cluster_state = "new".into();
                std::borrow::Cow::Owned(spec)
            }
            None => std::borrow::Cow::Borrowed(&self.config.member),
        }
    }

    /// Runs `work` as the one mutating operation in progress, in a task of
    /// its own: once accepted, an operation runs to its end even when the
    /// caller goes away (a cancelled RPC, a client deadline). Stopping
    /// halfway would leave etcd down with the state saying otherwise.
    async fn exclusive<T, F, Fut>(self: &Arc<Self>, operation: Operation, work: F) -> Result<T, AgentError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Self>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, AgentError>> + Send + 'static,
    {
        let agent = Arc::clone(self);
        let task = tokio::spawn(async move {
            let Ok(_guard) = agent.op_lock.try_lock() else {
                let running = agent.running_op().unwrap_or(operation);
                return Err(AgentError::Busy { operation, running });
            };
            agent.set_running_op(Some(operation));
            let result = Box::pin(work(Arc::clone(&agent))).await;
            agent.set_running_op(None);
            result
        });
        task.await.map_err(|error| AgentError::TaskFailed {
            operation,
            reason: error.to_string(),
        })?
    }

    /// Admits a mutating call carrying a coordinator's fencing token (the
    /// revision that created the cluster lock): a token below the highest
    /// seen (the mark) is refused. Only a caller that may raise the mark
    /// (an admin) does, and only up to the cluster's current revision, which
    /// no lock of this cluster can be above. A mark above that revision
    /// came from no lock of this cluster (an older agent let any caller set
    /// it): it is lowered to the revision first, which is how a poisoned
    /// mark heals. 0 is an operator's direct call and always admitted.
    pub async fn admit(&self, token: i64, authority: TokenAuthority) -> Result<(), AgentError> {
        if token <= 0 {
            return Ok(());
        }
        // Read only when it can matter: the token is not the mark itself
        // (every call of a run after its first carries the mark), and etcd
        // runs here. None when the member does not answer in time (stopped
        // for the very change the token belongs to, or a cluster without
        // quorum being restored): the token is then checked against the
        // mark alone.
        let revision = if token == self.state.get().fencing_token || self.process().record.is_none() {
            None
        } else {
            self.member.linearized_revision(REVISION_READ).await
        };
        // Compare and raise under one lock: of two callers racing with
        // different tokens, the older one can never be admitted after the
        // newer one raised the mark.
        self.state.update(|s| {
            if let Some(revision) = revision
                && s.fencing_token > revision
            {
                tracing::warn!(
                    mark = s.fencing_token,
                    revision,
                    "the fencing mark is above the cluster's revision, which no lock of this cluster can be: lowering it"
                );
                s.fencing_token = revision;
            }
            if token < s.fencing_token {
                return Err(AgentError::StaleFencingToken {
                    token,
                    highest: s.fencing_token,
                });
            }
            if authority == TokenAuthority::CheckOnly {
                return Ok(());
            }
            if let Some(revision) = revision
                && token > revision
            {
                return Err(AgentError::FencingTokenAhead { token, revision });
            }
            s.fencing_token = token;
            Ok(())
        })?
    }

    /// Waits until no operation runs (up to `limit`), so shutdown does not
    /// drop a version switch halfway; returns what was still running.
    pub async fn drain(&self, limit: Duration) -> Option<Operation> {
        match tokio::time::timeout(limit, self.op_lock.lock()).await {
            Ok(_guard) => None,
            Err(_) => self.running_op(),
        }
    }

    fn running_op(&self) -> Option<Operation> {
        *self
            .running_op
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_running_op(&self, op: Option<Operation>) {
        *self
            .running_op
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = op;
    }

    // ------------------------------------------------------------ queries

    /// The persisted state.
    #[must_use]
    pub fn persisted(&self) -> PersistedState {
        self.state.get()
    }

    /// The supervisor's view of the process.
    #[must_use]
    pub fn process(&self) -> ProcessStatus {
        self.supervisor.status()
    }

    /// The supervisor task's proof of life, for the systemd watchdog.
    #[must_use]
    pub fn supervisor_heartbeat(&self) -> crate::watchdog::Heartbeat {
        self.supervisor.heartbeat()
    }

    /// The config.
    #[must_use]
    pub const fn config(&self) -> &Config {
        &self.config
    }

    /// When this agent process started.
    #[must_use]
    pub const fn started_at(&self) -> SystemTime {
        self.started_at
    }

    /// The local member.
    #[must_use]
    pub const fn member(&self) -> &LocalMember {
        &self.member
    }

    /// etcd's log tail.
    #[must_use]
    pub const fn logs(&self) -> &LogTail {
        &self.logs
    }

    /// The binary store.
    #[must_use]
    pub const fn store(&self) -> &BinaryStore {
        &self.store
    }

    /// The snapshot dir.
    #[must_use]
    pub const fn snapshots(&self) -> &SnapshotDir {
        &self.snapshots
    }

    /// The flags for `target` and what changes compared with now.
    /// `from` renders as a switch from that version instead of the active
    /// one (a later pass of a multi-pass plan).
    pub fn check_flags(&self, target: &EtcdVersion, from: Option<&EtcdVersion>) -> Result<FlagCheck, AgentError> {
        let persisted = self.state.get();
        let current = active_of(&persisted);
        let current_args = match &current {
            Some(version) => self.render(version, active_from_of(&persisted).as_ref())?.args,
            None => Vec::new(),
        };
        let target = self.render(target, from.or(current.as_ref())).map_err(|e| match e {
            AgentError::InvalidArgument { reason, .. } => AgentError::InvalidArgument {
                field: "target_version",
                reason,
            },
            other => other,
        })?;
        Ok(FlagCheck {
            target,
            current_version: current,
            current_args,
        })
    }

    // ---------------------------------------------------------- mutations

    /// Stages a file after verifying it against what was declared.
    pub async fn stage(&self, incoming: Incoming, declared: &Declared) -> Result<(Manifest, bool), AgentError> {
        self.store.stage(incoming, declared).await
    }

    /// Switches to a staged version; reverts on failure. Activating the
    /// version that already runs changes nothing.
    pub async fn activate(
        self: &Arc<Self>,
        version: EtcdVersion,
        timeout: Option<Duration>,
    ) -> Result<Switched, AgentError> {
        Box::pin(self.exclusive(Operation::Activate, move |agent| async move {
            agent.activate_now(version, timeout).await
        }))
        .await
    }

    async fn activate_now(&self, version: EtcdVersion, timeout: Option<Duration>) -> Result<Switched, AgentError> {
        {
            let persisted = self.state.get();
            let active = active_of(&persisted);
            if active.as_ref() == Some(&version) {
                // Already there: a coordinator re-running its plan must not
                // restart the member, nor lose the rollback target. A member
                // that is not running is a job for Start, which keeps the
                // flags' context; a switch "from itself" would lose it.
                let running = self.supervisor.status().record;
                return match running {
                    Some(record) if persisted.state == AgentState::Running => Ok(Switched {
                        active: version.clone(),
                        previous: previous_of(&persisted),
                        rendered: self.render(&version, active_from_of(&persisted).as_ref())?,
                        pid: record.pid,
                        took: Duration::ZERO,
                    }),
                    _ => Err(AgentError::Precondition {
                        operation: Operation::Activate,
                        reason: format!(
                            "{version} is already the active version and etcd is not running ({}); use Start or Restart",
                            persisted.state
                        ),
                    }),
                };
            }
            Box::pin(self.switch(Operation::Activate, version, active, timeout)).await
        }
    }

    /// Switches back to the previous version, in the flag context it ran in
    /// before; reverts on failure.
    pub async fn rollback(self: &Arc<Self>, timeout: Option<Duration>) -> Result<Switched, AgentError> {
        Box::pin(self.exclusive(Operation::Rollback, move |agent| async move {
            let persisted = agent.state.get();
            let Some(previous) = previous_of(&persisted) else {
                return Err(AgentError::Precondition {
                    operation: Operation::Rollback,
                    reason: "there is no previous version to roll back to".into(),
                });
            };
            let context = previous_from_of(&persisted);
            Box::pin(agent.switch(Operation::Rollback, previous, context, timeout)).await
        }))
        .await
    }

    /// Switches from the active version to `target`, rendering its flags in
    /// the context `from` (the active version for Activate; for Rollback the
    /// context the previous version originally ran in).
    async fn switch(
        &self,
        operation: Operation,
        target: EtcdVersion,
        from: Option<EtcdVersion>,
        timeout: Option<Duration>,
    ) -> Result<Switched, AgentError> {
        let persisted = self.state.get();
        let step = transition(operation, persisted.state)?;
        self.refuse_during_restore(operation)?;
        let active = active_of(&persisted);
        let timeout = timeout.unwrap_or(self.config.supervision.activate_timeout);
        let launch = self.launch_for(&target, from.as_ref())?;
        let rendered = self.render(&target, from.as_ref())?;

        let recorded = self.state.update(|s| {
            s.state = step.during;
            s.switch = Some(Switch {
                from: active.as_ref().map(ToString::to_string),
                to: target.to_string(),
            });
        });
        if let Err(error) = recorded {
            // Nothing has changed yet, and a switch that cannot be recorded
            // must not start: put memory back as it was.
            let _ = self.state.update(|s| {
                s.state = persisted.state;
                s.switch = None;
            });
            return Err(error);
        }
        let began = Instant::now();
        tracing::info!(%operation, from = ?active.as_ref().map(ToString::to_string), to = %target, "switching version");
        // Stop first and read the log up to here, so a failure report only
        // carries what the new version wrote.
        self.supervisor.stop().await?;
        let mark = self.logs.mark_now();

        let prepared = if crate::raft_snapshot::needed(active.as_ref(), &target) {
            self.fresh_raft_snapshot(&persisted, timeout).await
        } else {
            Ok(())
        };
        let started = match prepared {
            Ok(()) => self.start_and_wait(launch, &target, timeout).await,
            Err(reason) => Err(reason),
        };
        match started {
            Ok(pid) => {
                self.supervisor.supervise().await?;
                self.state.update(|s| {
                    let (old_active, old_from) = (s.active_version.take(), s.active_from.take());
                    s.state = step.after;
                    s.state_reason.clear();
                    s.active_version = Some(target.to_string());
                    s.active_from = from.as_ref().map(ToString::to_string);
                    s.previous_version = old_active;
                    s.previous_from = old_from;
                    s.switch = None;
                    s.restart_count = 0;
                })?;
                tracing::info!(%target, took = ?began.elapsed(), "version switch succeeded");
                Ok(Switched {
                    active: target,
                    previous: active,
                    rendered,
                    pid,
                    took: began.elapsed(),
                })
            }
            Err(reason) => {
                let log_tail = self.logs.since(mark);
                tracing::warn!(%target, %reason, "version switch failed; reverting");
                self.revert(&persisted, &target, reason, log_tail, timeout).await
            }
        }
    }

    /// Puts the version that ran before a failed switch back.
    async fn revert<T>(
        &self,
        before: &PersistedState,
        attempted: &EtcdVersion,
        reason: String,
        log_tail: Vec<String>,
        timeout: Duration,
    ) -> Result<T, AgentError> {
        let Some(from) = active_of(before) else {
            // A first activation has nothing to go back to.
            self.supervisor.stop().await?;
            self.state.update(|s| {
                s.state = AgentState::Empty;
                s.switch = None;
            })?;
            return Err(AgentError::ActivationFailed {
                attempted: attempted.to_string(),
                reverted_to: "(none: etcd stays stopped)".into(),
                reason,
                log_tail,
            });
        };
        // The caller's timeout was for the new version; the known-good one
        // always gets at least the configured time.
        let timeout = timeout.max(self.config.supervision.activate_timeout);
        let restored = async {
            let launch = self
                .launch_for(&from, active_from_of(before).as_ref())
                .map_err(|e| error_chain(&e))?;
            self.start_and_wait(launch, &from, timeout).await
        }
        .await;
        match restored {
            Ok(_) => {
                self.supervisor.supervise().await?;
                self.state.update(|s| {
                    s.state = AgentState::Running;
                    s.state_reason.clear();
                    s.switch = None;
                })?;
                Err(AgentError::ActivationFailed {
                    attempted: attempted.to_string(),
                    reverted_to: from.to_string(),
                    reason,
                    log_tail,
                })
            }
            Err(revert_reason) => {
                let message = format!("revert to {from} failed: {revert_reason}");
                self.state.update(|s| {
                    s.state = AgentState::Failed;
                    s.state_reason = message;
                    s.switch = None;
                })?;
                Err(AgentError::RevertFailed {
                    attempted: attempted.to_string(),
                    previous: from.to_string(),
                    reason,
                    revert_reason,
                    log_tail,
                })
            }
        }
    }

    /// Runs the active version once more with `--snapshot-count=1` until it
    /// has written a raft snapshot newer than any it had, then stops it (see
    /// [`crate::raft_snapshot`]). etcd is stopped on entry and on return.
    async fn fresh_raft_snapshot(&self, before: &PersistedState, timeout: Duration) -> Result<(), String> {
        let Some(active) = active_of(before) else {
            return Ok(());
        };
        let data_dir = &self.config.member.data_dir;
        let had = crate::raft_snapshot::newest_index(data_dir);
        let mut launch = self
            .launch_for(&active, active_from_of(before).as_ref())
            .map_err(|e| error_chain(&e))?;
        launch.args = crate::raft_snapshot::with_snapshot_every_entry(&launch.args);
        tracing::info!(version = %active, newest_snapshot = ?had, "taking a fresh raft snapshot before the switch");
        let why = |reason: String| format!("no fresh raft snapshot on {active} before the switch: {reason}");
        self.start_and_wait(launch, &active, timeout).await.map_err(why)?;
        let deadline = Instant::now() + timeout;
        let mut attempt = 0;
        loop {
            let now = crate::raft_snapshot::newest_index(data_dir);
            if now > had {
                tracing::info!(index = ?now, "raft snapshot written");
                break;
            }
            if Instant::now() >= deadline {
                self.supervisor.stop().await.map_err(|e| error_chain(&e))?;
                return Err(why(format!(
                    "none newer than index {} within {timeout:?}",
                    had.map_or_else(|| "0".to_owned(), |i| i.to_string())
                )));
            }
            tokio::time::sleep(health_poll(attempt)).await;
            attempt += 1;
        }
        // A graceful stop lets etcd finish the snapshot (the file, then its
        // record in the log) before it exits.
        self.supervisor.stop().await.map_err(|e| error_chain(&e))
    }

    /// Starts `launch` unsupervised and waits until the member is healthy
    /// and reports `version`. Returns the pid, or why it did not get there.
    async fn start_and_wait(&self, launch: Launch, version: &EtcdVersion, timeout: Duration) -> Result<u32, String> {
        let exits_before = self.supervisor.status().exits;
        let record = self
            .supervisor
            .start(launch, false)
            .await
            .map_err(|e| error_chain(&e))?;
        // The stop inside start() counts as an exit; only later ones matter.
        let exits_started = self.supervisor.status().exits.max(exits_before);
        let deadline = Instant::now() + timeout;
        let mut attempt = 0;
        loop {
            let status = self.supervisor.status();
            if status.exits > exits_started || status.record.as_ref().is_none_or(|r| r.pid != record.pid) {
                let exit = status.last_exit.unwrap_or_else(|| "unknown".into());
                return Err(format!("etcd exited: {exit}"));
            }
            let member = self.member.status().await;
            let last_problem;
            if member.reachable {
                if member.version != version.to_string() {
                    self.supervisor.stop().await.map_err(|e| error_chain(&e))?;
                    return Err(format!(
                        "the member reports version {} instead of {version}",
                        member.version
                    ));
                }
                match self.member.check_health().await {
                    Ok(()) => return Ok(record.pid),
                    Err(problem) => last_problem = problem,
                }
            } else {
                last_problem = member.error;
            }
            if Instant::now() >= deadline {
                self.supervisor.stop().await.map_err(|e| error_chain(&e))?;
                return Err(format!("not healthy within {timeout:?}: {last_problem}"));
            }
            tokio::time::sleep(health_poll(attempt)).await;
            attempt += 1;
        }
    }

    /// Starts etcd with the active version.
    pub async fn start_member(self: &Arc<Self>) -> Result<u32, AgentError> {
        self.exclusive(Operation::Start, |agent| async move {
            agent.restart_with(Operation::Start).await
        })
        .await
    }

    /// Stops and starts etcd with the active version.
    pub async fn restart_member(self: &Arc<Self>) -> Result<u32, AgentError> {
        self.exclusive(Operation::Restart, |agent| async move {
            agent.restart_with(Operation::Restart).await
        })
        .await
    }

    async fn restart_with(&self, operation: Operation) -> Result<u32, AgentError> {
        let persisted = self.state.get();
        let step = transition(operation, persisted.state)?;
        self.refuse_during_restore(operation)?;
        let version = active_of(&persisted).ok_or_else(|| AgentError::Precondition {
            operation,
            reason: "no version is active".into(),
        })?;
        let launch = self.launch_for(&version, active_from_of(&persisted).as_ref())?;
        match self.supervisor.start(launch, true).await {
            Ok(record) => {
                self.state.update(|s| {
                    s.state = step.after;
                    s.state_reason.clear();
                    s.restart_count = 0;
                })?;
                Ok(record.pid)
            }
            Err(error) => {
                // The old process is gone and no new one runs: say so.
                let reason = format!("{operation} failed: {}", error_chain(&error));
                self.state.update(|s| {
                    s.state = AgentState::Failed;
                    s.state_reason = reason;
                })?;
                Err(error)
            }
        }
    }

    /// Stops etcd (SIGTERM, the grace period, SIGKILL) because the host
    /// shuts down, once the API no longer serves. Unlike [`Agent::stop_member`]
    /// nothing is recorded: the member was not stopped by anyone, and the
    /// agent starts etcd again when the host boots.
    pub async fn stop_etcd_for_host_shutdown(&self) -> Result<(), AgentError> {
        if self.supervisor.status().record.is_none() {
            return Ok(());
        }
        self.supervisor.stop().await
    }

    /// Stops etcd.
    pub async fn stop_member(self: &Arc<Self>) -> Result<(), AgentError> {
        self.exclusive(Operation::Stop, |agent| async move {
            let step = transition(Operation::Stop, agent.state.get().state)?;
            agent.supervisor.stop().await?;
            agent.state.update(|s| {
                s.state = step.after;
                s.state_reason.clear();
            })
        })
        .await
    }

    /// Takes a verified snapshot of the local member, its chunks also sent
    /// to `tee` when there is one. It runs as an operation of its own, so a
    /// version switch never stops etcd under a snapshot stream.
    /// `owner` is the role of the caller that asked: its snapshots count
    /// in a retention bucket of their own.
    pub async fn take_snapshot(
        self: &Arc<Self>,
        tee: Option<crate::snapshot::Tee>,
        owner: &str,
    ) -> Result<SnapshotMeta, AgentError> {
        let owner = owner.to_owned();
        let result = self
            .exclusive(Operation::TakeSnapshot, |agent| async move {
                transition(Operation::TakeSnapshot, agent.state.get().state)?;
                let protected = agent.protected_snapshot();
                agent
                    .snapshots
                    .take(&agent.member, &agent.config.member.name, &protected, tee, &owner)
                    .await
            })
            .await;
        // A call refused before it began (another operation runs, the
        // state forbids it) took no snapshot and is not an attempt.
        if !matches!(
            result,
            Err(AgentError::Busy { .. } | AgentError::TransitionRefused { .. })
        ) {
            self.snapshot_attempts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .record(SystemTime::now(), result.is_ok());
        }
        result
    }

    /// The snapshots asked for since the agent started, and how they ended.
    pub fn snapshot_attempts(&self) -> SnapshotAttempts {
        *self
            .snapshot_attempts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The staged etcd versions.
    pub fn staged(&self) -> Result<Vec<Manifest>, AgentError> {
        self.store.list()
    }

    /// Pins a stored snapshot under `label` (or unpins it, with an empty
    /// label); see [`crate::snapshot::SnapshotDir::pin`].
    pub fn pin_snapshot(&self, id: &str, label: &str) -> Result<(SnapshotMeta, Vec<String>), AgentError> {
        let protected = self.protected_snapshot();
        self.snapshots.pin(id, label, &protected)
    }

    /// The 3.6 upgrade guide's v2store check on a frozen view of the
    /// member's data (see [`crate::v2store`]), with the newest staged
    /// etcdutl that has it. Changes nothing; etcd keeps running.
    pub async fn check_v2store(&self) -> Result<(crate::v2store::Finding, EtcdVersion), AgentError> {
        let with_etcdutl: Vec<EtcdVersion> = self
            .store
            .list()?
            .into_iter()
            .filter(|m| m.files.contains_key(&Tool::Etcdutl))
            .map(|m| m.version)
            .collect();
        let version = crate::v2store::pick_tool(&with_etcdutl)
            .ok_or_else(|| AgentError::ToolNotStaged {
                tool: "etcdutl",
                need: format!("3.5.{} or a later 3.5 patch", crate::v2store::MIN_TOOL.patch()),
                staged: self.store.staged_summary(),
            })?
            .clone();
        let etcdutl = self.store.verified_path(&version, Tool::Etcdutl)?;
        let spec = self.member_spec();
        let wal_dir = spec
            .extra_flags
            .iter()
            .find_map(|f| f.strip_prefix("--wal-dir="))
            .map(std::path::Path::new);
        let view = crate::v2store::FrozenView::new(&spec.data_dir, wal_dir)?;
        let finding = crate::v2store::run(&etcdutl, &view).await?;
        Ok((finding, version))
    }

    /// etcdutl of the active version, or its etcdctl before 3.5.
    fn status_tool(&self) -> Option<(PathBuf, &'static str)> {
        let version = active_of(&self.state.get())?;
        [Tool::Etcdutl, Tool::Etcdctl]
            .into_iter()
            .find_map(|tool| self.store.tool_path(&version, tool).map(|p| (p, tool.file_name())))
    }
}

fn active_of(state: &PersistedState) -> Option<EtcdVersion> {
    state.active_version.as_deref().and_then(|v| v.parse().ok())
}

fn previous_of(state: &PersistedState) -> Option<EtcdVersion> {
    state.previous_version.as_deref().and_then(|v| v.parse().ok())
}

/// The render context of the active version.
fn active_from_of(state: &PersistedState) -> Option<EtcdVersion> {
    state.active_from.as_deref().and_then(|v| v.parse().ok())
}

/// The render context of the previous version.
fn previous_from_of(state: &PersistedState) -> Option<EtcdVersion> {
    state.previous_from.as_deref().and_then(|v| v.parse().ok())
}

fn flags_refused(version: &EtcdVersion, rendered: &Rendered) -> AgentError {
    let reasons: Vec<String> = rendered
        .refusals()
        .map(|c| {
            if c.flag.is_empty() {
                format!("{} [rule {}]", c.reason, c.rule)
            } else {
                format!("{}: {} [rule {}]", c.flag, c.reason, c.rule)
            }
        })
        .collect();
    AgentError::FlagsRefused {
        version: version.to_string(),
        reasons: reasons.join("; "),
    }
}

fn lock_state_dir(dir: &std::path::Path) -> Result<Flock<File>, AgentError> {
    let path = dir.join("agent.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(fsutil::io_err("open", &path))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| AgentError::Precondition {
        operation: Operation::Start,
        reason: format!(
            "state dir {} is locked by another steward-agent ({errno})",
            dir.display()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_polls_start_soon_and_settle_at_300_ms() {
        let waits: Vec<u128> = (0..7).map(|attempt| health_poll(attempt).as_millis()).collect();
        assert_eq!(waits, [25, 50, 100, 200, 300, 300, 300]);
        assert_eq!(health_poll(u32::MAX), Duration::from_millis(300));
        // What a member that answers after 2 s is waited for, in all: the
        // checks add no more than one last wait to its start.
        let mut waited = Duration::ZERO;
        let mut attempt = 0;
        while waited < Duration::from_secs(2) {
            waited += health_poll(attempt);
            attempt += 1;
        }
        assert!(waited < Duration::from_millis(2300), "{waited:?}");
    }
}
