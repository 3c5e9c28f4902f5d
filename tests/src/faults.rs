//! Real faults for the fault-matrix scenarios: a member frozen with
//! SIGSTOP (alive to the kernel, silent to everyone), thawed later; an
//! event sink that acts at an exact step of a running change (so a fault
//! lands before the coordinator's next decision, not somewhere after it);
//! and the end-of-test checks every fault scenario repeats.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use steward_coordinator::engine::events::{Event, EventSink};

use crate::cluster::Cluster;

/// A process stopped with SIGSTOP; continued with SIGCONT on [`thaw`] or
/// when dropped, so a failing test never leaves a frozen etcd behind.
///
/// [`thaw`]: Frozen::thaw
#[derive(Debug)]
pub struct Frozen {
    pid: Pid,
    /// When it was frozen.
    pub at: Instant,
    thawed: Option<Instant>,
}

impl Frozen {
    /// Freezes `pid` now.
    ///
    /// # Panics
    /// When the signal cannot be sent.
    #[must_use]
    pub fn now(pid: u32) -> Self {
        let pid = Pid::from_raw(i32::try_from(pid).unwrap_or_else(|_| panic!("pid {pid} out of range")));
        kill(pid, Signal::SIGSTOP).unwrap_or_else(|e| panic!("SIGSTOP {pid}: {e}"));
        Self {
            pid,
            at: Instant::now(),
            thawed: None,
        }
    }

    /// Continues the process (once); returns when it was thawed.
    pub fn thaw(&mut self) -> Instant {
        *self.thawed.get_or_insert_with(|| {
            let _ = kill(self.pid, Signal::SIGCONT);
            Instant::now()
        })
    }

    /// When it was thawed, if it was.
    #[must_use]
    pub const fn thawed(&self) -> Option<Instant> {
        self.thawed
    }

    /// Whether it is frozen now: not thawed, and the process still exists
    /// (an agent activating a frozen member SIGKILLs it after its grace
    /// period and starts a new, unfrozen one).
    #[must_use]
    pub fn is_frozen(&self) -> bool {
        let alive = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|stat| stat.rsplit_once(") ").map(|(_, rest)| !rest.starts_with(['Z', 'X'])))
            .unwrap_or(false);
        self.thawed.is_none() && alive
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        self.thaw();
    }
}

/// A freeze shared between the hook that makes it and the test that
/// checks it.
pub type SharedFreeze = Arc<Mutex<Option<Frozen>>>;

/// Freezes `pid` now and thaws it after `for_how_long` (from a task of the
/// current runtime). The returned handle tells when both happened.
#[must_use]
pub fn freeze_for(pid: u32, for_how_long: Duration) -> SharedFreeze {
    let shared = Arc::new(Mutex::new(Some(Frozen::now(pid))));
    let later = Arc::clone(&shared);
    tokio::spawn(async move {
        tokio::time::sleep(for_how_long).await;
        if let Some(frozen) = later.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
            frozen.thaw();
        }
    });
    shared
}

/// (frozen at, thawed at) of a shared freeze; `None` if it never froze.
#[must_use]
pub fn freeze_window(shared: &SharedFreeze) -> Option<(Instant, Option<Instant>)> {
    shared
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .map(|f| (f.at, f.thawed()))
}

/// Every event with the moment it was emitted, and a hook that runs
/// synchronously on each one: the change does not go on until the hook
/// returns, so a fault made there precedes the next step.
pub struct Timeline {
    /// What happened, in order.
    pub events: Vec<(Instant, Event)>,
    hook: Box<dyn FnMut(&Event) + Send>,
}

impl std::fmt::Debug for Timeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Timeline({} events)", self.events.len())
    }
}

impl Timeline {
    /// A timeline that runs `hook` on every event (and prints the events
    /// to stderr, for the test's log).
    #[must_use]
    pub fn with_hook(hook: impl FnMut(&Event) + Send + 'static) -> Self {
        Self {
            events: Vec::new(),
            hook: Box::new(hook),
        }
    }

    /// Events of one kind ("member_started") emitted between `from` and
    /// `to`.
    #[must_use]
    pub fn between(&self, name: &str, from: Instant, to: Instant) -> Vec<&Event> {
        self.events
            .iter()
            .filter(|(at, event)| *at >= from && *at <= to && event_name(event) == name)
            .map(|(_, event)| event)
            .collect()
    }

    /// Every event of one kind.
    #[must_use]
    pub fn named(&self, name: &str) -> Vec<&Event> {
        self.events
            .iter()
            .filter(|(_, event)| event_name(event) == name)
            .map(|(_, event)| event)
            .collect()
    }
}

impl EventSink for Timeline {
    fn emit(&mut self, event: &Event) {
        eprintln!("{}", steward_coordinator::engine::events::human(event));
        self.events.push((Instant::now(), event.clone()));
        (self.hook)(event);
    }
}

/// An event's NDJSON name ("member_done").
#[must_use]
pub fn event_name(event: &Event) -> String {
    serde_json::to_value(event)
        .ok()
        .and_then(|v| v["event"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The pid of the one live process whose command line names `path`
/// (etcd names its data dir, an agent its config file); read from
/// `/proc`, so a synchronous event hook can use it.
#[must_use]
pub fn pid_mentioning(path: &std::path::Path) -> Option<u32> {
    steward_coordinator::local::process::mentioning(path)
        .first()
        .map(|found| found.id.pid)
}

/// The pid of member `i`'s etcd now, from `/proc` (synchronous).
#[must_use]
pub fn etcd_pid_now(cluster: &Cluster, i: usize) -> Option<u32> {
    pid_mentioning(&cluster.members[i].data_dir)
}

/// SIGKILLs `pid` (no-op when it is gone).
pub fn kill_now(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// The etcd pid member `i`'s agent reports.
///
/// # Panics
/// When the agent reports no running etcd.
pub async fn etcd_pid(cluster: &Cluster, i: usize) -> u32 {
    let process = cluster.status(i).await.process.unwrap_or_default();
    assert!(
        process.running && process.pid != 0,
        "member {i} runs no etcd: {process:?}"
    );
    process.pid
}

/// Moves leadership to member `i` (through the current leader) and waits
/// until every member agrees.
///
/// # Panics
/// When the move is refused or not confirmed within 15 s.
pub async fn move_leader_to(cluster: &Cluster, i: usize) {
    let leader = cluster.leader_index().await;
    if leader == i {
        return;
    }
    let target = cluster.status(i).await.member.unwrap_or_default().member_id;
    cluster
        .etcd(&[leader])
        .await
        .move_leader(target)
        .await
        .unwrap_or_else(|e| panic!("MoveLeader to m{i}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(15);
    while cluster.leader_index().await != i {
        assert!(Instant::now() < deadline, "m{i} did not become the leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Member ids in member-list order.
pub async fn member_ids(cluster: &Cluster) -> Vec<u64> {
    let mut ids: Vec<u64> = cluster
        .etcd(&(0..cluster.members.len()).collect::<Vec<_>>())
        .await
        .member_list()
        .await
        .unwrap_or_else(|e| panic!("member list: {e}"))
        .members()
        .iter()
        .map(etcd_client::Member::id)
        .collect();
    ids.sort_unstable();
    ids
}

/// HashKV of every member at the lowest revision they all have, as
/// (member name, hash); waits up to 30 s for every member to answer.
///
/// # Panics
/// When a member does not answer in time.
pub async fn hash_kv(cluster: &Cluster) -> Vec<(String, u32)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Box::pin(try_hash_kv(cluster)).await {
            Ok(hashes) => return hashes,
            Err(error) => {
                assert!(Instant::now() < deadline, "HashKV: {error}; {}", cluster.logs_hint());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn try_hash_kv(cluster: &Cluster) -> Result<Vec<(String, u32)>, String> {
    let mut revisions = Vec::new();
    for i in 0..cluster.members.len() {
        let status = cluster.etcd(&[i]).await.status().await.map_err(|e| e.to_string())?;
        revisions.push(status.header().map_or(0, etcd_client::ResponseHeader::revision));
    }
    let revision = revisions.into_iter().min().unwrap_or(0);
    let mut hashes = Vec::new();
    for (i, member) in cluster.members.iter().enumerate() {
        let answer = cluster
            .etcd(&[i])
            .await
            .hash_kv(revision)
            .await
            .map_err(|e| format!("{}: {e}", member.name))?;
        hashes.push((member.name.clone(), answer.hash()));
    }
    Ok(hashes)
}

/// Asserts that every member has the same HashKV.
///
/// # Panics
/// When they differ.
pub async fn assert_hash_kv_agrees(cluster: &Cluster) {
    let hashes = hash_kv(cluster).await;
    assert!(
        hashes.windows(2).all(|w| w[0].1 == w[1].1),
        "HashKV differs: {hashes:?}; {}",
        cluster.logs_hint()
    );
}
