//! The one task that owns the etcd process.
//!
//! Only this task starts, waits on and signals etcd; everything else sends it
//! a [`Command`] and watches [`ProcessStatus`]. When etcd exits on its own
//! while supervised, the task restarts it after a doubling backoff; after too
//! many consecutive crashes it gives up and the member becomes FAILED. A
//! process started by an earlier agent is adopted and watched through
//! `/proc`, since only its real parent could wait on it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::config::Supervision;
use crate::error::AgentError;
use crate::process::{self, Launch, Liveness, ProcessRecord};
use crate::state::{Operation, StateStore, transition};
use crate::watchdog::{self, Heartbeat};

/// How often an adopted process is checked.
const ADOPTED_POLL: Duration = Duration::from_millis(250);

/// How long etcd may take to be gone after SIGKILL. A command still running
/// after `stop_grace` and this much more is stuck: its heartbeat stops, and
/// the systemd watchdog restarts the agent.
const KILL_WAIT: Duration = Duration::from_secs(30);

/// What the supervisor publishes after every change.
#[derive(Clone, Debug, Default)]
pub struct ProcessStatus {
    /// The running etcd, if any.
    pub record: Option<ProcessRecord>,
    /// Started by an earlier agent process.
    pub adopted: bool,
    /// How the last process ended.
    pub last_exit: Option<String>,
    /// Number of exits seen so far (lets waiters notice an exit).
    pub exits: u64,
    /// Automatic restarts since the last requested start.
    pub restart_count: u32,
    /// Whether an exit leads to a restart.
    pub supervised: bool,
    /// Set when the supervisor gave up restarting (crash loop).
    pub gave_up: Option<String>,
}

/// When a stop is written to the state.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Record {
    /// At once.
    Now,
    /// With the start that follows it, one write fewer while the member
    /// is down.
    WithTheStart,
}

/// Why the supervisor starts etcd.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Spawn {
    /// A Start command.
    Requested,
    /// After an exit of its own.
    Restart,
}

enum Command {
    Start {
        launch: Launch,
        supervised: bool,
        reply: oneshot::Sender<Result<ProcessRecord, AgentError>>,
    },
    Adopt {
        record: ProcessRecord,
        launch: Option<Launch>,
        restart_count: u32,
    },
    Supervise,
    Stop {
        reply: oneshot::Sender<()>,
    },
}

/// The handle other tasks use to talk to the supervisor.
#[derive(Clone, Debug)]
pub struct Supervisor {
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<ProcessStatus>,
    heartbeat: Heartbeat,
}

impl Command {
    const fn name(&self) -> &'static str {
        match self {
            Self::Start { .. } => "Start",
            Self::Adopt { .. } => "Adopt",
            Self::Supervise => "Supervise",
            Self::Stop { .. } => "Stop",
        }
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Supervisor {
    /// Starts the supervisor task. It ends at `shutdown` and leaves etcd
    /// running: restarting the agent never restarts etcd.
    pub fn spawn(settings: Supervision, state: Arc<StateStore>, shutdown: CancellationToken) -> Self {
        let (commands, receiver) = mpsc::channel(16);
        let (status_tx, status) = watch::channel(ProcessStatus::default());
        let heartbeat = Heartbeat::new();
        let task = Task {
            settings,
            state,
            status: status_tx,
            current: None,
            launch: None,
            consecutive_crashes: 0,
            restart_at: None,
            heartbeat: heartbeat.clone(),
        };
        tokio::spawn(task.run(receiver, shutdown));
        Self {
            commands,
            status,
            heartbeat,
        }
    }

    /// The supervisor task's proof of life, for the systemd watchdog.
    #[must_use]
    pub fn heartbeat(&self) -> Heartbeat {
        self.heartbeat.clone()
    }

    /// Starts etcd (stopping a running one first). With `supervised`, exits
    /// are followed by restarts; without, an exit is only reported (used
    /// while an activation waits for the new version to prove healthy).
    pub async fn start(&self, launch: Launch, supervised: bool) -> Result<ProcessRecord, AgentError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Start {
            launch,
            supervised,
            reply,
        })
        .await?;
        answer.await.map_err(|_| AgentError::SupervisorGone)?
    }

    /// Adopts an etcd started by an earlier agent process. Without a
    /// `launch` it is owned (it can be stopped) but not restarted.
    pub async fn adopt(
        &self,
        record: ProcessRecord,
        launch: Option<Launch>,
        restart_count: u32,
    ) -> Result<(), AgentError> {
        self.send(Command::Adopt {
            record,
            launch,
            restart_count,
        })
        .await
    }

    /// Turns restart-on-exit on for the running process.
    pub async fn supervise(&self) -> Result<(), AgentError> {
        self.send(Command::Supervise).await
    }

    /// Stops etcd: SIGTERM to its process group, SIGKILL after the grace
    /// period. Returns when it has exited. No restart follows.
    pub async fn stop(&self) -> Result<(), AgentError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Stop { reply }).await?;
        answer.await.map_err(|_| AgentError::SupervisorGone)
    }

    /// The latest published status.
    #[must_use]
    pub fn status(&self) -> ProcessStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every published status.
    #[must_use]
    pub fn watch(&self) -> watch::Receiver<ProcessStatus> {
        self.status.clone()
    }

    async fn send(&self, command: Command) -> Result<(), AgentError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| AgentError::SupervisorGone)
    }
}

enum Handle {
    Child(tokio::process::Child),
    Adopted,
}

struct Running {
    record: ProcessRecord,
    handle: Handle,
    started: Instant,
}

impl Running {
    /// Signals etcd's process group: our own child directly, an adopted
    /// process only after checking it is still the recorded one.
    fn signal(&self, signal: Signal) -> nix::Result<()> {
        match self.handle {
            Handle::Child(_) => process::signal_child_group(self.record.pid, signal),
            Handle::Adopted => process::signal_adopted_group(&self.record, signal),
        }
    }
}

struct Task {
    settings: Supervision,
    state: Arc<StateStore>,
    status: watch::Sender<ProcessStatus>,
    current: Option<Running>,
    launch: Option<Launch>,
    consecutive_crashes: u32,
    restart_at: Option<tokio::time::Instant>,
    heartbeat: Heartbeat,
}

impl Task {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>, shutdown: CancellationToken) {
        let mut beat = tokio::time::interval(watchdog::BEAT_INTERVAL);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let restart_at = self.restart_at;
            tokio::select! {
                () = shutdown.cancelled() => break,
                command = commands.recv() => match command {
                    Some(command) => {
                        // Stopping etcd may take the whole grace period and
                        // the wait after SIGKILL; longer than that is stuck.
                        let heartbeat = self.heartbeat.clone();
                        let limit = self.settings.stop_grace.saturating_add(KILL_WAIT);
                        watchdog::beating(&heartbeat, command.name(), limit, self.handle(command)).await;
                    }
                    None => break,
                },
                exit = wait_exit(self.current.as_mut()) => self.on_exit(&exit),
                () = sleep_until(restart_at) => self.restart(),
                _ = beat.tick() => {}
            }
            self.heartbeat.beat("idle");
        }
        // Leave etcd running; a new agent adopts it.
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Start {
                launch,
                supervised,
                reply,
            } => {
                // The start that follows records the stop in the same
                // write as itself (see `spawn`); until then the old record
                // names a process that is gone, which every reader of it
                // checks.
                self.terminate(Record::WithTheStart).await;
                self.consecutive_crashes = 0;
                self.restart_at = None;
                self.status.send_modify(|s| {
                    s.restart_count = 0;
                    s.gave_up = None;
                    s.supervised = supervised;
                });
                let result = self.spawn(&launch, Spawn::Requested);
                self.launch = Some(launch);
                let _ = reply.send(result);
            }
            Command::Adopt {
                record,
                launch,
                restart_count,
            } => {
                tracing::info!(pid = record.pid, version = %record.version, "adopted running etcd");
                self.current = Some(Running {
                    record: record.clone(),
                    handle: Handle::Adopted,
                    started: Instant::now(),
                });
                let supervised = launch.is_some();
                self.launch = launch;
                self.status.send_modify(|s| {
                    s.record = Some(record);
                    s.adopted = true;
                    s.supervised = supervised;
                    s.restart_count = restart_count;
                });
            }
            Command::Supervise => {
                self.consecutive_crashes = 0;
                self.status.send_modify(|s| s.supervised = true);
                if self.current.is_none() {
                    // It exited in the moment between its health check and
                    // this command, unsupervised: restart it as a crash.
                    self.consecutive_crashes = 1;
                    self.restart_at = Some(tokio::time::Instant::now());
                }
            }
            Command::Stop { reply } => {
                self.restart_at = None;
                self.status.send_modify(|s| s.supervised = false);
                self.terminate(Record::Now).await;
                let _ = reply.send(());
            }
        }
    }

    fn spawn(&mut self, launch: &Launch, why: Spawn) -> Result<ProcessRecord, AgentError> {
        // Recorded first: an agent that dies after the spawn but before the
        // process is recorded leaves enough behind for the next one to find
        // the process. A write that fails (a full disk) does not stop the
        // start: refusing would leave the member down over the agent's own
        // bookkeeping; memory holds the start, and the next write that
        // succeeds persists it, as for every other state change.
        let pending = process::PendingStart::of(launch);
        let recorded = self.state.update(|s| {
            s.process = None;
            s.starting = Some(pending);
        });
        if let Err(error) = recorded {
            tracing::error!(error = %crate::error::error_chain(&error), "cannot persist the pending start");
        }
        let (child, record) = process::spawn(launch).map_err(|source| {
            if let Err(error) = self.state.update(|s| s.starting = None) {
                tracing::error!(error = %crate::error::error_chain(&error), "cannot clear the pending start");
            }
            AgentError::Spawn {
                version: launch.version.clone(),
                source,
            }
        })?;
        tracing::info!(pid = record.pid, version = %record.version, "started etcd");
        self.persist(Some(record.clone()));
        self.current = Some(Running {
            record: record.clone(),
            handle: Handle::Child(child),
            started: Instant::now(),
        });
        // One change: a reader that sees the new process also sees its
        // restart counted.
        self.status.send_modify(|s| {
            s.record = Some(record.clone());
            s.adopted = false;
            if why == Spawn::Restart {
                s.restart_count += 1;
            }
        });
        Ok(record)
    }

    fn on_exit(&mut self, exit: &str) {
        let Some(running) = self.current.take() else { return };
        let ran_for = running.started.elapsed();
        tracing::warn!(pid = running.record.pid, %exit, ?ran_for, "etcd exited");
        self.persist(None);
        let supervised = self.status.borrow().supervised;
        self.status.send_modify(|s| {
            s.record = None;
            s.adopted = false;
            s.last_exit = Some(exit.to_owned());
            s.exits += 1;
        });
        if !supervised {
            return;
        }
        if ran_for >= self.settings.stable_after {
            self.consecutive_crashes = 0;
        }
        self.consecutive_crashes += 1;
        if self.consecutive_crashes >= self.settings.max_consecutive_crashes {
            let reason = format!(
                "etcd exited {} times in a row (last: {exit}); not restarting it again",
                self.consecutive_crashes
            );
            tracing::error!(%reason, "crash loop");
            self.give_up(reason);
            return;
        }
        let delay = self.backoff();
        tracing::info!(
            ?delay,
            crashes = self.consecutive_crashes,
            "restarting etcd after backoff"
        );
        self.restart_at = Some(tokio::time::Instant::now() + delay);
    }

    fn backoff(&self) -> Duration {
        let doublings = self.consecutive_crashes.saturating_sub(1).min(16);
        self.settings
            .restart_backoff_initial
            .saturating_mul(1 << doublings)
            .min(self.settings.restart_backoff_max)
    }

    fn restart(&mut self) {
        self.restart_at = None;
        let Some(launch) = self.launch.clone() else { return };
        match self.spawn(&launch, Spawn::Restart) {
            Ok(_) => {
                let count = self.status.borrow().restart_count;
                if let Err(error) = self.state.update(|s| s.restart_count = count) {
                    tracing::error!(error = %crate::error::error_chain(&error), "cannot persist restart count");
                }
            }
            Err(error) => {
                // A binary that cannot even be executed will not get better.
                self.give_up(crate::error::error_chain(&error));
            }
        }
    }

    fn give_up(&mut self, reason: String) {
        self.status.send_modify(|s| {
            s.gave_up = Some(reason.clone());
            s.supervised = false;
        });
        let result = self.state.update(|s| {
            if let Ok(t) = transition(Operation::CrashLoop, s.state) {
                s.state = t.after;
                s.state_reason = reason;
            }
        });
        if let Err(error) = result {
            tracing::error!(error = %crate::error::error_chain(&error), "cannot persist FAILED state");
        }
    }

    /// Stops the current process, if any: SIGTERM, grace, SIGKILL.
    async fn terminate(&mut self, record: Record) {
        let Some(mut running) = self.current.take() else { return };
        let pid = running.record.pid;
        tracing::info!(pid, "stopping etcd");
        if let Err(error) = running.signal(Signal::SIGTERM) {
            tracing::warn!(pid, %error, "SIGTERM failed");
        }
        let exit = match tokio::time::timeout(self.settings.stop_grace, wait_exit(Some(&mut running))).await {
            Ok(exit) => exit,
            Err(_) => {
                tracing::warn!(pid, grace = ?self.settings.stop_grace, "etcd ignored SIGTERM; sending SIGKILL");
                if let Err(error) = running.signal(Signal::SIGKILL) {
                    tracing::warn!(pid, %error, "SIGKILL failed");
                }
                wait_exit(Some(&mut running)).await
            }
        };
        tracing::info!(pid, %exit, "etcd stopped");
        if record == Record::Now {
            self.persist(None);
        }
        self.status.send_modify(|s| {
            s.record = None;
            s.adopted = false;
            s.last_exit = Some(exit);
            s.exits += 1;
        });
    }

    fn persist(&self, record: Option<ProcessRecord>) {
        let result = self.state.update(|s| {
            s.process = record;
            s.starting = None;
        });
        if let Err(error) = result {
            tracing::error!(error = %crate::error::error_chain(&error), "cannot persist etcd process record");
        }
    }
}

/// Resolves when the process exits, with a description of how; never
/// resolves when there is no process.
async fn wait_exit(running: Option<&mut Running>) -> String {
    let Some(running) = running else {
        return std::future::pending().await;
    };
    match &mut running.handle {
        Handle::Child(child) => match child.wait().await {
            Ok(status) => describe_exit(status),
            Err(error) => format!("cannot wait for etcd: {error}"),
        },
        Handle::Adopted => loop {
            if process::liveness(&running.record) != Liveness::Alive {
                return "exited (adopted process; exit status unknown)".to_owned();
            }
            tokio::time::sleep(ADOPTED_POLL).await;
        },
    }
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => {
            let name = Signal::try_from(signal).map_or_else(|_| signal.to_string(), |s| s.as_str().to_owned());
            format!("killed by {name}")
        }
        _ => status.to_string(),
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_idle_supervisor_beats() {
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(StateStore::open(dir.path()).unwrap());
        let stop = CancellationToken::new();
        let supervisor = Supervisor::spawn(Supervision::default(), state, stop.clone());
        let heartbeat = supervisor.heartbeat();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while heartbeat.last(tokio::time::Instant::now()).1 != "idle" {
            assert!(tokio::time::Instant::now() < deadline, "the supervisor never beat");
            tokio::task::yield_now().await;
        }
        let (silent, _) = heartbeat.last(tokio::time::Instant::now());
        assert!(silent <= watchdog::BEAT_INTERVAL, "{silent:?}");
        stop.cancel();
    }

    /// A reader must never see the restarted process without its restart
    /// counted: status pollers take "running with a new pid" as "restarted".
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restart_is_published_with_its_count_in_one_change() {
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(StateStore::open(dir.path()).unwrap());
        let stop = CancellationToken::new();
        let settings = Supervision {
            restart_backoff_initial: Duration::from_millis(1),
            restart_backoff_max: Duration::from_millis(1),
            max_consecutive_crashes: 300,
            ..Supervision::default()
        };
        let supervisor = Supervisor::spawn(settings, state, stop.clone());
        let watch = supervisor.watch();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let observer = std::thread::spawn({
            let done = Arc::clone(&done);
            move || {
                let mut seen = 0_u64;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let status = watch.borrow().clone();
                    // Every exit of this crash loop is followed by a restart.
                    if status.record.is_some() && u64::from(status.restart_count) != status.exits {
                        return Err(format!(
                            "running after {} exits but {} restarts",
                            status.exits, status.restart_count
                        ));
                    }
                    seen += 1;
                }
                Ok(seen)
            }
        });
        let launch = Launch {
            executable: "/bin/false".into(),
            args: Vec::new(),
            version: "0.0.0".to_owned(),
            log_file: dir.path().join("false.log"),
        };
        supervisor.start(launch, true).await.unwrap();
        let mut changes = supervisor.watch();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while changes.borrow().gave_up.is_none() {
            assert!(tokio::time::Instant::now() < deadline, "the crash loop never ended");
            let _ = tokio::time::timeout(Duration::from_millis(100), changes.changed()).await;
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let seen = observer.join().unwrap().unwrap();
        assert!(seen > 0);
        assert_eq!(supervisor.status().restart_count, 299);
        stop.cancel();
    }
}
