//! The rolling change: `steward upgrade` and `steward downgrade`.
//!
//! Observe, plan, preflight; stage the target binaries on every agent
//! before any member is touched; take a verified snapshot through the
//! leader's agent; then, one member at a time, as the planner's
//! [`next_step`] says from the cluster as it is now: move leadership away
//! from the leader before it changes, ask the member's agent to activate
//! the target (the agent reverts on failure), and gate before the next
//! member. Finally wait for the cluster version. Every outcome, refusals
//! and failures included, ends in a [`RollReport`].

pub mod change_state;
pub mod downgrade_api;
pub mod flag_check;
pub mod large_db;
pub mod last_roll;
pub mod plan;
pub mod rules;
pub mod safety;
pub mod v2store_check;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use steward_proto::EtcdVersion;
use steward_proto::v1 as pb;
use tokio_util::sync::CancellationToken;

use crate::engine::cluster::lock::{self, ClusterLock, Journal, LockError};
use crate::engine::cluster::observe::{Observation, observe_with};
use crate::engine::cluster::observed::{Observed, ObservedMember};
use crate::engine::cluster::probe::{Probe, ProbeReport};
use crate::engine::connect::Connector;
use crate::engine::connect::agent::{self, AgentAddress, AgentClients};
use crate::engine::connect::etcd;
use crate::engine::error::Error;
use crate::engine::events::{Event, EventSink, StageMethod};
use crate::engine::report::{ROLL_SCHEMA, ReportHeader, RunContext, millis};
use crate::engine::roll::plan::{Direction, NextStep, Pass, Plan, PlanError, next_step, plan};
use downgrade_api::Phase;
use last_roll::LastRoll;
use rules::{Check, Request, Verdict};
use safety::{Clearance, Unsafe};

/// How often gates and waits observe the cluster again.
const POLL: Duration = Duration::from_millis(250);
/// How often the last wait, for the cluster version, asks: the flip
/// comes at a moment of etcd's choosing (its leader checks the members'
/// versions every few seconds), and the run is done within this of it.
const CLUSTER_VERSION_POLL: Duration = Duration::from_millis(100);
/// How long one member's `/version` may take to answer in that wait; a
/// member that does not answer has not reported the new version yet.
const VERSION_ANSWER_WITHIN: Duration = Duration::from_secs(1);
/// How long a new leader may take to confirm after MoveLeader.
const MOVE_LEADER_TIMEOUT: Duration = Duration::from_secs(15);
/// The label the pre-change snapshot of the last change is pinned under on
/// its agent.
pub const PRE_CHANGE_PIN: &str = "last-change";
/// How many times leadership may move away from one member in one step;
/// when it has come back that often, the step fails (something keeps
/// electing it).
const MAX_LEADER_MOVES: u32 = 3;
/// How long the cluster version may take to follow the last member.
const CLUSTER_VERSION_TIMEOUT: Duration = Duration::from_secs(90);

/// What the operator asked for.
#[derive(Clone, Debug)]
pub enum RollRequest {
    /// Change every member to a version (`steward upgrade|downgrade`).
    Change(Change),
    /// Return the members the recorded change touched to their previous
    /// version through their agents' Rollback (`steward rollback`); the
    /// direction and the version are decided from the cluster.
    Rollback,
}

/// A change of every member to one version.
#[derive(Clone, Debug)]
pub struct Change {
    /// Upgrade or downgrade.
    pub direction: Direction,
    /// The final version.
    pub target: EtcdVersion,
    /// A directory laid out as `<dir>/<version>/{etcd,etcdctl,etcdutl}`.
    pub binaries: Option<PathBuf>,
    /// One etcd binary for the final target (tools next to it go along).
    pub binary: Option<PathBuf>,
    /// The sha256 `binary` must have.
    pub binary_sha256: Option<String>,
    /// Allow what the rules refuse unless forced (3.5.0-3.5.2).
    pub force: bool,
}

impl Change {
    /// A change to `target` with binaries from `binaries`, nothing forced.
    #[must_use]
    pub const fn new(direction: Direction, target: EtcdVersion, binaries: Option<PathBuf>) -> Self {
        Self {
            direction,
            target,
            binaries,
            binary: None,
            binary_sha256: None,
            force: false,
        }
    }
}

/// How a run goes about it.
#[derive(Clone, Debug)]
pub struct RollOptions {
    /// What to do.
    pub request: RollRequest,
    /// How long a member may take to pass its gate after activation; the
    /// gate gets more for a large database ([`large_db::gate_timeout`]).
    pub gate_timeout: Duration,
    /// The gate compares HashKV while every member's database is at most
    /// this many MiB; 0 never ([`large_db`] says why).
    pub hash_kv_max_db_mib: u64,
    /// How long each agent waits for its member on the new version.
    pub activate_timeout: Option<Duration>,
    /// The key prefix of the cluster lock, the journal and the probe.
    pub lock_prefix: String,
    /// Run the availability probe during the change.
    pub probe: bool,
    /// The run and the cluster's name, for the report.
    pub context: RunContext,
    /// Stops the run at the next safe point: before a member is touched,
    /// or inside a wait (for safety, a gate, leadership, the cluster
    /// version). An activation in flight is never cut short. The run ends
    /// `cancelled` and releases the lock; the same request later finishes
    /// the job.
    pub cancel: CancellationToken,
}

impl RollOptions {
    /// Options for a change to `target` with the defaults the CLI uses:
    /// binaries from `binaries`, a 60 s gate, the agents' own activation
    /// timeout, the default lock prefix, no probe, never cancelled.
    #[must_use]
    pub fn new(direction: Direction, target: EtcdVersion, binaries: Option<PathBuf>) -> Self {
        Self::for_request(RollRequest::Change(Change::new(direction, target, binaries)))
    }

    /// Options for `request` with the CLI's defaults.
    #[must_use]
    pub fn for_request(request: RollRequest) -> Self {
        Self {
            request,
            gate_timeout: Duration::from_secs(60),
            hash_kv_max_db_mib: large_db::DEFAULT_HASH_KV_MAX_DB_MIB,
            activate_timeout: None,
            lock_prefix: crate::engine::cluster::lock::DEFAULT_PREFIX.to_owned(),
            probe: false,
            context: RunContext::new(None),
            cancel: CancellationToken::new(),
        }
    }
}

/// How the change ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Every member runs the target and the cluster version follows.
    Succeeded,
    /// A step failed; the failing member was reverted and the change stopped.
    Failed,
    /// A check refused the change before anything was touched.
    Refused,
    /// The run was cancelled and stopped at a safe point: no member was
    /// left between versions by steward, and the lock was released.
    /// The same request finishes the job.
    Cancelled,
}

/// One member's part in the change.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MemberReport {
    /// Member name.
    pub name: String,
    /// Member id, hex.
    pub id: String,
    /// Version before.
    pub from: Option<String>,
    /// Version after.
    pub to: Option<String>,
    /// Milliseconds its steps took.
    pub took_ms: u64,
    /// Milliseconds its agent took to switch it (stop, swap, start, ready).
    pub activate_ms: u64,
    /// Milliseconds its gate took (health, catch-up, HashKV).
    pub gate_ms: u64,
    /// Times leadership moved away from it.
    pub leader_moves: u32,
    /// Raft term changes during its steps not caused by our MoveLeader.
    pub elections: u64,
}

/// The verified snapshot taken before the first member changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SnapshotRecord {
    /// The member it came from.
    pub member: String,
    /// Its agent.
    pub agent: String,
    /// Snapshot id on that agent.
    pub id: String,
    /// Path on the agent's host.
    pub path: String,
    /// Store revision.
    pub revision: i64,
    /// sha256.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
    /// Member version at the time.
    pub etcd_version: String,
    /// Cluster version at the time.
    pub cluster_version: String,
}

pub use crate::engine::failure::{Cause, Failure, Gate};

/// The final report (`-w json`).
#[derive(Clone, Debug, Serialize)]
pub struct RollReport {
    /// Schema, cluster, start, steward version, fencing token.
    #[serde(flatten)]
    pub header: ReportHeader,
    /// How it ended.
    pub result: Outcome,
    /// Upgrade or downgrade.
    pub direction: Direction,
    /// The cluster's version before (lowest member for an upgrade).
    pub from: Option<String>,
    /// The target.
    pub to: String,
    /// The cluster version at the end.
    pub cluster_version: Option<String>,
    /// Per member.
    pub members: Vec<MemberReport>,
    /// Every preflight check.
    pub checks: Vec<Check>,
    /// The pre-change snapshot.
    pub snapshot: Option<SnapshotRecord>,
    /// Why it stopped, when it did not succeed.
    pub failure: Option<Failure>,
    /// What the availability probe saw (with --probe).
    pub probe: Option<ProbeReport>,
    /// Milliseconds in all.
    pub took_ms: u64,
    /// Milliseconds spent staging binaries on the agents (at the same time
    /// as the snapshot).
    pub staging_ms: u64,
    /// Milliseconds spent taking, recording and pinning the snapshot
    /// (staging ran meanwhile).
    pub snapshot_ms: u64,
}

struct Roll<'a> {
    /// How the agents and members are reached.
    connector: Connector,
    agents: Vec<AgentAddress>,
    /// Which agent served which member when last seen, so that an agent
    /// that stops answering is named with its member.
    known_agents: Vec<(String, AgentAddress)>,
    /// Each member's etcd version when last seen, to explain a lost lock.
    member_versions: Vec<(String, EtcdVersion)>,
    /// The cluster lock, once taken; its token fences every agent call.
    lock: Option<ClusterLock>,
    journal: Option<Journal>,
    probe: Option<Probe>,
    options: RollOptions,
    events: &'a mut dyn EventSink,
    /// Local binaries by version: etcd and the tools next to it.
    local: BTreeMap<EtcdVersion, LocalRelease>,
    report: RollReport,
    began: Instant,
    /// The largest member database when the change was planned: it decides
    /// whether the gate compares HashKV, and how long a gate may take.
    largest_db: u64,
}

/// Since when a step has waited for the safety invariant, and what it
/// waited for when that was last said.
#[derive(Debug, Default)]
struct SafetyWait {
    since: Option<Instant>,
    member: String,
    named: Option<Vec<String>>,
}

/// One local etcd release: the server and the tools next to it.
#[derive(Clone, Debug)]
pub struct LocalRelease {
    /// The etcd binary.
    pub etcd: PathBuf,
    /// etcdctl and etcdutl, where present.
    pub tools: Vec<(pb::Tool, PathBuf)>,
}

/// The local binaries: `binaries/<version>/etcd` for every version dir, and
/// `binary` as the target's (its version is checked before it is used).
#[must_use]
pub fn local_releases(
    binaries: Option<&Path>,
    binary: Option<&Path>,
    target: &EtcdVersion,
) -> BTreeMap<EtcdVersion, LocalRelease> {
    let mut local = BTreeMap::new();
    if let Some(dir) = binaries
        && let Ok(entries) = std::fs::read_dir(dir)
    {
        for entry in entries.flatten() {
            let Some(version) = entry.file_name().to_str().and_then(|n| n.parse::<EtcdVersion>().ok()) else {
                continue;
            };
            let etcd = entry.path().join("etcd");
            if etcd.is_file() {
                local.insert(version, release_at(&etcd));
            }
        }
    }
    if let Some(binary) = binary {
        local.insert(target.clone(), release_at(binary));
    }
    local
}

/// Runs the change. Never returns an error: refusals and failures are
/// reports too, and the report says which.
pub async fn run(
    connector: &Connector,
    agents: Vec<AgentAddress>,
    options: RollOptions,
    events: &mut dyn EventSink,
) -> RollReport {
    let (direction, to) = match &options.request {
        RollRequest::Change(change) => (change.direction, change.target.to_string()),
        // Decided from the cluster once it is observed.
        RollRequest::Rollback => (Direction::Downgrade, String::new()),
    };
    let report = RollReport {
        header: ReportHeader::begin(ROLL_SCHEMA, &options.context),
        result: Outcome::Failed,
        direction,
        from: None,
        to,
        cluster_version: None,
        members: Vec::new(),
        checks: Vec::new(),
        snapshot: None,
        failure: None,
        probe: None,
        took_ms: 0,
        staging_ms: 0,
        snapshot_ms: 0,
    };
    let mut roll = Roll {
        connector: connector.clone(),
        agents,
        known_agents: Vec::new(),
        member_versions: Vec::new(),
        lock: None,
        journal: None,
        probe: None,
        options,
        events,
        local: BTreeMap::new(),
        report,
        began: Instant::now(),
        largest_db: 0,
    };
    let outcome = Box::pin(roll.run()).await;
    Box::pin(roll.finish(outcome)).await
}

/// Why a step stopped the change.
enum Stop {
    Refused,
    Failed(Failure),
}

impl From<Failure> for Stop {
    fn from(failure: Failure) -> Self {
        Self::Failed(failure)
    }
}

/// The gate of a run that stopped because it was cancelled.
pub const CANCELLED: Gate = Gate::Cancelled;

fn failure(member: Option<&str>, gate: Gate, reason: impl Into<String>) -> Failure {
    Failure::new(member, gate, reason)
}

impl Roll<'_> {
    async fn observe(&mut self, gate: Gate) -> Result<Observation, Failure> {
        let observation = observe_with(&self.connector, &self.agents, &[], &self.known_agents)
            .await
            .map_err(|e| failure(None, gate, crate::engine::error::chain(&e)))?;
        for member in &observation.observed.members {
            if let Some(address) = member.agent.as_deref().and_then(|a| a.parse::<AgentAddress>().ok()) {
                self.known_agents.retain(|(name, _)| *name != member.name);
                self.known_agents.push((member.name.clone(), address));
            }
            if let Some(version) = &member.version {
                self.member_versions.retain(|(name, _)| *name != member.name);
                self.member_versions.push((member.name.clone(), version.clone()));
            }
        }
        Ok(observation)
    }

    async fn run(&mut self) -> Result<(), Stop> {
        // The lock comes first: a second coordinator is refused for being
        // second, whatever state the first left the cluster in, and every
        // decision below is made on an observation taken under the lock.
        let first = self.observe(Gate::Observe).await?;
        let locked = Box::pin(self.take_lock(&first.observed)).await?;
        let observation = if locked {
            self.observe(Gate::Observe).await?
        } else {
            first
        };
        let observed = observation.observed.clone();
        self.report.header.set_cluster_id(observed.cluster_id);
        self.emit(&Event::Observed {
            members: observed.members.len(),
            leader: observed.leader().map(|l| l.name.clone()),
            cluster_version: observed.cluster_version.as_ref().map(ToString::to_string),
            versions: format!(
                "{}..{}",
                observed.lowest_version().map(ToString::to_string).unwrap_or_default(),
                observed.highest_version().map(ToString::to_string).unwrap_or_default()
            ),
        });
        self.report.from = match self.report.direction {
            Direction::Upgrade => observed.lowest_version(),
            Direction::Downgrade => observed.highest_version(),
        }
        .map(ToString::to_string);
        self.report.members = observed
            .members
            .iter()
            .map(|m| MemberReport {
                name: m.name.clone(),
                id: format!("{:016x}", m.id),
                from: m.version.as_ref().map(ToString::to_string),
                ..MemberReport::default()
            })
            .collect();

        let change = match &self.options.request {
            RollRequest::Rollback => return self.run_rollback(&observed, locked).await,
            RollRequest::Change(change) => change.clone(),
        };
        let Preflight {
            local,
            planned,
            checks,
            v2store_checked,
            ..
        } = preflight(&self.connector, &observation, &change).await;
        self.local = local;
        self.largest_db = large_db::largest_db(&observed);
        let mut checks = checks;
        checks.push(large_db::hash_kv_check(
            self.largest_db,
            self.options.hash_kv_max_db_mib,
        ));
        let mut v2store_checked = v2store_checked;
        for check in &checks {
            self.emit(&Event::Check(check.clone()));
        }
        // Keep the lock's own check, if it failed.
        let lock_checks = std::mem::take(&mut self.report.checks);
        self.report.checks = lock_checks.into_iter().chain(checks).collect();
        if !locked || rules::refused(&self.report.checks) {
            return Err(Stop::Refused);
        }
        let Ok(plan) = planned else { return Err(Stop::Refused) };
        self.emit(&Event::Planned {
            passes: plan.passes.iter().map(|p| p.target.to_string()).collect(),
            order: plan.passes[0].order.iter().map(|s| s.member.clone()).collect(),
        });
        if plan.is_complete() {
            return self.wait_cluster_version(&plan.to).await.map_err(Stop::from);
        }

        self.ensure_lock().await?;
        let endpoints = healthy_endpoints(&observed);
        // A run that resumes a change some members already went through
        // keeps the snapshot taken before the first of them: that is the
        // backup of the old version, not a copy of the mixed state.
        let previous = last_roll::read(&self.connector, &endpoints, &self.options.lock_prefix)
            .await
            .ok()
            .flatten();
        let earlier = snapshot_to_keep(previous.as_ref(), &plan);
        let mut record = LastRoll {
            direction: change.direction,
            from: plan.from.to_string(),
            to: plan.to.to_string(),
            token: self.token(),
            snapshot: earlier.clone(),
        };
        self.stop_if_cancelled()?;
        self.record(&endpoints, &record).await?;
        if earlier.is_none() {
            self.ensure_lock().await?;
        }
        // Staging and the backup run at the same time: neither touches a
        // member, and both are done before the first member is changed.
        let (staged, taken) = futures::join!(
            async {
                let began = Instant::now();
                let staged = self.stage(&plan, &observed).await;
                (staged, millis(began.elapsed()))
            },
            async {
                let began = Instant::now();
                let taken = match &earlier {
                    Some(_) => None,
                    None => Some(self.snapshot(&observed).await),
                };
                (taken, millis(began.elapsed()))
            }
        );
        let ((staged_events, staged), staging_ms) = staged;
        let (taken, snapshot_ms) = taken;
        let after_both = Instant::now();
        self.report.staging_ms = staging_ms;
        staged_events.iter().for_each(|event| self.emit(event));
        let taken = match taken {
            Some(Ok((snapshot, event))) => {
                self.emit(&event);
                self.report.snapshot = Some(snapshot);
                Ok(true)
            }
            Some(Err(failure)) => Err(failure),
            None => Ok(false),
        };
        match (staged, taken) {
            (Err(mut staging), Err(backup)) => {
                staging
                    .reason
                    .push_str(&format!("; the backup failed too: {}", backup.reason));
                return Err(staging.into());
            }
            (Err(staging), Ok(_)) | (Ok(()), Err(staging)) => return Err(staging.into()),
            (Ok(()), Ok(true)) => {
                record.snapshot.clone_from(&self.report.snapshot);
                self.record(&endpoints, &record).await?;
            }
            (Ok(()), Ok(false)) => {
                if let Some(earlier) = earlier {
                    self.emit(&Event::Snapshot {
                        member: earlier.member.clone(),
                        id: earlier.id.clone(),
                        path: earlier.path.clone(),
                        revision: earlier.revision,
                        sha256: earlier.sha256.clone(),
                        size: earlier.size,
                        earlier_run: true,
                    });
                    self.report.snapshot = Some(earlier);
                }
            }
        }
        // The backup of this change stays until a later change replaces
        // it: pinned on its agent, and the previous change's released.
        if let Some(snapshot) = self.report.snapshot.clone() {
            self.pin(&snapshot, PRE_CHANGE_PIN).await?;
            if let Some(old) = previous.and_then(|p| p.snapshot)
                && (old.agent != snapshot.agent || old.id != snapshot.id)
                && let Err(failure) = self.pin(&old, "").await
            {
                tracing::warn!(id = %old.id, agent = %old.agent, reason = %failure.reason, "cannot release the previous change's snapshot; it stays pinned");
            }
        }
        // The backup's own time: what staging took beyond it is the roll's.
        self.report.snapshot_ms = snapshot_ms + millis(after_both.elapsed());
        self.start_probe(&observed).await;
        let v2_wait = rules::v2_wait(&observed);
        for pass in &plan.passes {
            if v2store_check::crosses(pass) && !v2store_checked {
                self.check_v2store_now().await?;
                v2store_checked = true;
            }
            if pass.uses_downgrade_api {
                self.enable_downgrade(&pass.target).await?;
                self.run_pass(&pass.target, change.direction, v2_wait)
                    .await
                    .map_err(|mut f| {
                        f.reason.push_str(&format!(
                            "; the downgrade stays enabled in etcd (cluster version {}): run the same command again \
                         to finish it, or `steward rollback` to cancel it and return the changed members to {}",
                            downgrade_api::api_version(&pass.target),
                            pass.from
                        ));
                        f
                    })?;
            } else {
                self.run_pass(&pass.target, change.direction, v2_wait).await?;
            }
            self.emit(&Event::PassDone {
                target: pass.target.to_string(),
            });
            if pass.changes_minor || pass == plan.passes.last().unwrap_or(pass) {
                self.wait_cluster_version(&pass.target).await?;
            }
        }
        Ok(())
    }

    /// The v2store check of a 3.5 -> 3.6 pass that follows another pass,
    /// when it begins: the members run 3.5 only now.
    async fn check_v2store_now(&mut self) -> Result<(), Failure> {
        let observed = self.observe(Gate::Observe).await?.observed;
        let check = v2store_check::check(&v2store_check::ask_all(&self.connector, &observed).await);
        self.emit(&Event::Check(check.clone()));
        let refused = check.verdict == Verdict::Fail;
        let message = check.message.clone();
        self.report.checks.push(check);
        if refused {
            return Err(failure(None, Gate::Rule(v2store_check::RULE), message));
        }
        Ok(())
    }

    /// Undoes the recorded change while the cluster version has not
    /// flipped: after an upgrade, every member newer than the lowest goes
    /// back to its previous version; after a downgrade, every member older
    /// than the highest (an enabled Downgrade-API downgrade is cancelled
    /// first).
    async fn run_rollback(&mut self, observed: &Observed, locked: bool) -> Result<(), Stop> {
        let endpoints = healthy_endpoints(observed);
        let (undo, direction_check) =
            match last_roll::read(&self.connector, &endpoints, &self.options.lock_prefix).await {
                Ok(Some(last)) => (
                    last.direction,
                    Check {
                        rule: rules::ids::ROLLBACK_DIRECTION,
                        verdict: Verdict::Pass,
                        message: format!(
                            "the last change recorded is the {} from {} to {}",
                            last.direction, last.from, last.to
                        ),
                        source: "steward",
                    },
                ),
                Ok(None) => (
                    Direction::Upgrade,
                    Check {
                        rule: rules::ids::ROLLBACK_DIRECTION,
                        verdict: Verdict::Warn,
                        message: format!(
                            "no change is recorded under {}/last-roll: undoing an upgrade",
                            self.options.lock_prefix.trim_end_matches('/')
                        ),
                        source: "steward",
                    },
                ),
                Err(error) => {
                    return Err(failure(None, Gate::Rule(rules::ids::ROLLBACK_DIRECTION), error.to_string()).into());
                }
            };
        let mut checks = vec![direction_check];
        checks.extend(rules::rollback_checks(observed, undo));
        for check in &checks {
            self.emit(&Event::Check(check.clone()));
        }
        let lock_checks = std::mem::take(&mut self.report.checks);
        self.report.checks = lock_checks.into_iter().chain(checks).collect();
        if !locked || rules::refused(&self.report.checks) {
            return Err(Stop::Refused);
        }
        let Some(baseline) = rules::rollback_baseline(observed, undo).cloned() else {
            return Err(Stop::Refused);
        };
        // The pass that undoes the change moves the other way.
        let direction = match undo {
            Direction::Upgrade => Direction::Downgrade,
            Direction::Downgrade => Direction::Upgrade,
        };
        self.report.direction = direction;
        self.report.to = baseline.to_string();
        self.report.from = match undo {
            Direction::Upgrade => observed.highest_version(),
            Direction::Downgrade => observed.lowest_version(),
        }
        .map(ToString::to_string);
        if observed.members.iter().all(|m| m.version.as_ref() == Some(&baseline)) {
            self.report.cluster_version = observed.cluster_version.as_ref().map(ToString::to_string);
            return Ok(());
        }
        self.emit(&Event::Planned {
            passes: vec![baseline.to_string()],
            order: observed
                .members
                .iter()
                .filter(|m| m.version.as_ref() != Some(&baseline))
                .map(|m| m.name.clone())
                .collect(),
        });
        self.ensure_lock().await?;
        if undo == Direction::Downgrade && observed.downgrade_target().is_some() {
            downgrade_api::cancel(&self.connector, &downgrade_api::endpoints(observed))
                .await
                .map_err(|e| failure(None, Gate::DowngradeCancel, e.to_string()))?;
            self.emit(&Event::DowngradeCancelled {
                reason: "steward rollback".into(),
            });
        }
        self.snapshot(observed).await?;
        self.start_probe(observed).await;
        self.run_pass(&baseline, direction, Duration::ZERO).await?;
        self.emit(&Event::PassDone {
            target: baseline.to_string(),
        });
        self.wait_cluster_version(&baseline).await?;
        Ok(())
    }

    /// A safe point: a cancelled run stops here, before it touches another
    /// member.
    fn stop_if_cancelled(&self) -> Result<(), Failure> {
        if self.options.cancel.is_cancelled() {
            return Err(failure(
                None,
                CANCELLED,
                "cancelled; no member was left changing, and the same command finishes the job",
            ));
        }
        Ok(())
    }

    /// A pause inside a wait, which is a safe point too: a cancelled run
    /// stops here rather than sleeping on.
    async fn pause(&self, duration: Duration) -> Result<(), Failure> {
        tokio::select! {
            () = self.options.cancel.cancelled() => self.stop_if_cancelled(),
            () = tokio::time::sleep(duration) => Ok(()),
        }
    }

    fn emit(&mut self, event: &Event) {
        self.events.emit(event);
        if let Some(journal) = &mut self.journal {
            journal.emit(event);
        }
    }

    async fn start_probe(&mut self, observed: &Observed) {
        if self.options.probe {
            let endpoints = observed.members.iter().map(|m| m.client_url.clone()).collect();
            self.probe = Some(Probe::start(&self.connector, endpoints, &self.options.lock_prefix).await);
        }
    }

    /// Writes the last-roll record; a change that cannot be recorded is not
    /// made.
    async fn record(&self, endpoints: &[String], record: &LastRoll) -> Result<(), Failure> {
        last_roll::record(&self.connector, endpoints, &self.options.lock_prefix, record)
            .await
            .map_err(|e| failure(None, Gate::LastRoll, format!("cannot record the change: {e}")))
    }

    /// Stops the run when the cluster lock was lost (its lease expired or
    /// was revoked): another coordinator may hold it by now. When etcd
    /// revoked it, the reason says why etcd does that.
    async fn ensure_lock(&mut self) -> Result<(), Failure> {
        if let Some(lock) = &mut self.lock
            && let Err(lost) = lock.ensure_held().await
        {
            let reason = match lock::revocation_hint(lost.loss, &self.member_versions) {
                Some(hint) => format!("{lost}; {hint}"),
                None => lost.to_string(),
            };
            return Err(failure(None, Gate::Lock, reason));
        }
        Ok(())
    }

    /// The fencing token of the lock this run holds (0 before it is taken).
    fn token(&self) -> i64 {
        self.lock.as_ref().map_or(0, ClusterLock::token)
    }

    /// Takes the cluster lock before the first change; another live
    /// coordinator makes this a refusal that names it.
    /// Ok(false): the lock could not be taken for another reason than a
    /// live holder (no quorum, no space); the preflight still runs so the
    /// refusal names the cause, and nothing is changed.
    async fn take_lock(&mut self, observed: &Observed) -> Result<bool, Stop> {
        let endpoints: Vec<String> = observed
            .members
            .iter()
            .filter(|m| m.healthy)
            .map(|m| m.client_url.clone())
            .collect();
        let command = match &self.options.request {
            RollRequest::Rollback => "rollback".to_owned(),
            RollRequest::Change(change) => format!("{} to {}", change.direction, change.target),
        };
        let prefix = self.options.lock_prefix.clone();
        match lock::take_for_run(&self.connector, &endpoints, &prefix, &command, &mut *self.events).await {
            Ok(mut taken) => {
                taken.prune_journals(lock::JOURNALS_KEPT).await;
                self.journal = Some(taken.journal());
                self.report.header.fencing_token = taken.token();
                self.lock = Some(taken);
                Ok(true)
            }
            Err(error) => {
                // Without the lock nothing may change: a refusal either
                // way. A live holder ends the run here; etcd that cannot
                // give the lock lets the preflight run on, so the refusal
                // also names what else is wrong.
                let check = lock::refusal(&error, Verdict::Fail);
                self.emit(&Event::Check(check.clone()));
                self.report.checks.push(check);
                match error {
                    LockError::Held { .. } => Err(Stop::Refused),
                    LockError::Etcd { .. } => Ok(false),
                }
            }
        }
    }

    async fn finish(mut self, outcome: Result<(), Stop>) -> RollReport {
        self.report.took_ms = millis(self.began.elapsed());
        match outcome {
            Ok(()) => {
                self.report.result = Outcome::Succeeded;
                let event = Event::Finished {
                    cluster_version: self.report.cluster_version.clone().unwrap_or_default(),
                    took_ms: self.report.took_ms,
                };
                self.emit(&event);
            }
            Err(Stop::Refused) => self.report.result = Outcome::Refused,
            Err(Stop::Failed(failure)) => {
                self.report.result = if failure.gate == CANCELLED {
                    Outcome::Cancelled
                } else {
                    Outcome::Failed
                };
                let event = Event::failed(&failure);
                self.emit(&event);
                self.report.failure = Some(failure);
            }
        }
        if let Some(probe) = self.probe.take() {
            self.report.probe = Some(probe.stop().await);
        }
        if let Some(journal) = self.journal.take() {
            journal.flush().await;
        }
        if let Some(lock) = self.lock.take() {
            lock.release().await;
        }
        self.report
    }

    /// True for `steward rollback`: members go back through their agents'
    /// Rollback rather than forward through Activate.
    const fn is_rollback(&self) -> bool {
        matches!(self.options.request, RollRequest::Rollback)
    }

    async fn clients(&self, member: &ObservedMember) -> Result<AgentClients, Failure> {
        let Some(agent) = member.agent.as_deref() else {
            return Err(failure(
                Some(&member.name),
                Gate::Agent,
                format!("{} has no agent: {}", member.name, member.why_no_agent()),
            ));
        };
        let address: AgentAddress = agent
            .parse()
            .map_err(|e| failure(Some(&member.name), Gate::Agent, format!("agent address {agent:?}: {e}")))?;
        agent::connect(&self.connector, &address)
            .await
            .map_err(|e| failure(Some(&member.name), Gate::Agent, crate::engine::error::chain(&e)))
    }

    /// Stages every pass target on every agent that lacks it, before any
    /// member changes. Each file is hashed once; the agents receive their
    /// copies at the same time. Returns the events to emit, in order (those
    /// of every agent that staged a version, a failure or not), and the
    /// first failure.
    async fn stage(&self, plan: &Plan, observed: &Observed) -> (Vec<Event>, Result<(), Failure>) {
        let mut events = Vec::new();
        for (pass, lacking) in staging_targets(plan, observed) {
            if let Err(failure) = self.stage_pass(pass, &lacking, &mut events).await {
                return (events, Err(failure));
            }
        }
        (events, Ok(()))
    }

    /// Stages one pass's target on the agents in `lacking`, adding the
    /// events of every agent that staged it to `events`.
    async fn stage_pass(
        &self,
        pass: &Pass,
        lacking: &[&ObservedMember],
        events: &mut Vec<Event>,
    ) -> Result<(), Failure> {
        let Some(first) = lacking.first() else {
            return Ok(());
        };
        let Some(release) = self.local.get(&pass.target).cloned() else {
            return Err(failure(
                Some(&first.name),
                Gate::Stage,
                format!("no local binary for {}", pass.target),
            ));
        };
        // Every file is hashed at once, each on a blocking thread.
        let tools: Vec<_> = std::iter::once((pb::Tool::Etcd, release.etcd.clone()))
            .chain(release.tools)
            .collect();
        let fingerprints = futures::future::try_join_all(
            tools
                .iter()
                .map(|(_, path)| crate::engine::transfer::upload::fingerprint(path)),
        )
        .await
        .map_err(|e| failure(None, Gate::Stage, crate::engine::error::chain(&e)))?;
        let files: Vec<_> = tools
            .into_iter()
            .zip(fingerprints)
            .map(|((tool, path), fingerprint)| (tool, path, fingerprint))
            .collect();
        let token = self.token();
        let uploads = lacking
            .iter()
            .map(|member| self.stage_on(member, &pass.target, &files, token));
        let mut first_failure = None;
        for result in futures::future::join_all(uploads).await {
            match result {
                Ok(staged) => events.extend(staged),
                Err(failure) => {
                    first_failure.get_or_insert(failure);
                }
            }
        }
        first_failure.map_or(Ok(()), Err)
    }

    /// Stages `files` of `version` on one member's agent, all at once: each
    /// imported when the agent's host has the same file at the same path
    /// inside its import dirs (checked by sha256 there), uploaded
    /// otherwise. The events to emit once every agent is done, in the
    /// order of `files`.
    async fn stage_on(
        &self,
        member: &ObservedMember,
        version: &EtcdVersion,
        files: &[(pb::Tool, PathBuf, crate::engine::transfer::upload::Fingerprint)],
        token: i64,
    ) -> Result<Vec<Event>, Failure> {
        let clients = self.clients(member).await?;
        let staged = futures::future::join_all(files.iter().map(|(tool, path, fingerprint)| {
            stage_file(clients.clone(), &member.name, version, *tool, path, fingerprint, token)
        }))
        .await;
        let mut events = Vec::new();
        for ((tool, _, _), result) in files.iter().zip(staged) {
            let (answer, method) = result?;
            events.push(Event::Staged {
                member: member.name.clone(),
                version: version.to_string(),
                tool: tool.as_str_name().trim_start_matches("TOOL_").to_lowercase(),
                already_present: answer.already_present,
                method,
            });
        }
        Ok(events)
    }

    /// A verified snapshot through the leader's agent, before any change:
    /// its record, and the event that tells of it.
    async fn snapshot(&self, observed: &Observed) -> Result<(SnapshotRecord, Event), Failure> {
        let leader = observed
            .leader()
            .ok_or_else(|| failure(None, Gate::Snapshot, "no single leader to take the snapshot from"))?;
        let mut clients = self.clients(leader).await?;
        let info = clients
            .snapshots
            .take_snapshot(pb::TakeSnapshotRequest {
                fencing_token: self.token(),
            })
            .await
            .map_err(|s| {
                failure(
                    Some(&leader.name),
                    Gate::Snapshot,
                    format!("{:?}: {}", s.code(), s.message()),
                )
            })?
            .into_inner()
            .snapshot
            .unwrap_or_default();
        let record = SnapshotRecord {
            member: leader.name.clone(),
            agent: leader.agent.clone().unwrap_or_default(),
            id: info.id.clone(),
            path: info.path.clone(),
            revision: info.revision,
            sha256: info.sha256.clone(),
            size: info.size,
            etcd_version: info.etcd_version.clone(),
            cluster_version: info.cluster_version.clone(),
        };
        let event = Event::Snapshot {
            member: leader.name.clone(),
            id: info.id,
            path: info.path,
            revision: info.revision,
            sha256: info.sha256,
            size: info.size,
            earlier_run: false,
        };
        Ok((record, event))
    }

    /// Pins `snapshot` on its agent under `label` (an empty label unpins).
    async fn pin(&self, snapshot: &SnapshotRecord, label: &str) -> Result<(), Failure> {
        let address: AgentAddress = snapshot.agent.parse().map_err(|e| {
            failure(
                Some(&snapshot.member),
                Gate::SnapshotPin,
                format!("agent address {:?}: {e}", snapshot.agent),
            )
        })?;
        let mut clients = agent::connect(&self.connector, &address).await.map_err(|e| {
            failure(
                Some(&snapshot.member),
                Gate::SnapshotPin,
                crate::engine::error::chain(&e),
            )
        })?;
        let pinned = clients
            .snapshots
            .pin_snapshot(pb::PinSnapshotRequest {
                id: snapshot.id.clone(),
                pin: label.to_owned(),
                fencing_token: self.token(),
            })
            .await;
        match pinned {
            Ok(_) => Ok(()),
            // An agent older than pins: the change goes on, the operator is told.
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                tracing::warn!(agent = %address, id = %snapshot.id, "the agent cannot pin snapshots (older than this steward); retention may remove the backup of this change");
                Ok(())
            }
            Err(status) => Err(failure(
                Some(&snapshot.member),
                Gate::SnapshotPin,
                crate::engine::error::Error::from_status(&address, clients.plaintext, "PinSnapshot", &status)
                    .to_string(),
            )),
        }
    }

    /// Changes every member that is not at `target` yet, one at a time:
    /// each round observes the cluster afresh, lets the planner pick the
    /// member, and asks [`safety::clearance`] on that same observation
    /// whether it may go down now. A leader gives its leadership away
    /// first (then the round starts over); an unsafe step waits, saying
    /// for what, up to the gate timeout.
    async fn run_pass(&mut self, target: &EtcdVersion, direction: Direction, v2_wait: Duration) -> Result<(), Failure> {
        let mut waiting = SafetyWait::default();
        // The step in progress: its member, when it began, the raft term
        // then, and how often leadership moved away from it.
        let mut step_began: Option<(String, Instant, u64, u32)> = None;
        loop {
            // Between members: the safe point of a cancelled run.
            self.stop_if_cancelled()?;
            // Always afresh, even right after the previous member's own
            // observation: a member may freeze or fail in between, and the
            // next one must not go down on a view older than that.
            let observed = self.observe(Gate::Observe).await?.observed;
            let step = next_step(&observed, direction, target);
            let name = match &step {
                NextStep::PassDone => return Ok(()),
                NextStep::Change { member } => member.clone(),
                NextStep::ChangeLeaderInPlace { leader } | NextStep::MoveLeaderThenChange { leader, .. } => {
                    leader.clone()
                }
            };
            let clearance = match safety::clearance(&observed, &name) {
                Ok(clearance) => clearance,
                Err(unsafe_) => {
                    self.wait_for_safety(&mut waiting, &unsafe_)?;
                    self.pause(POLL).await?;
                    continue;
                }
            };
            // The step's clock starts once it may begin: a wait for the
            // cluster is not the member's time, nor its elections.
            if step_began.as_ref().is_none_or(|(member, ..)| *member != name) {
                step_began = Some((name.clone(), Instant::now(), max_term(&observed), 0));
            }
            if clearance == Clearance::AfterLeaderMoves {
                let NextStep::MoveLeaderThenChange { leader, to, to_id } = step else {
                    let stuck = Unsafe {
                        member: name.clone(),
                        problems: vec![safety::Problem {
                            member: name.clone(),
                            what: "leads, and no healthy, caught-up voting member can take over".into(),
                        }],
                    };
                    self.wait_for_safety(&mut waiting, &stuck)?;
                    self.pause(POLL).await?;
                    continue;
                };
                waiting = SafetyWait::default();
                if let Some((_, _, _, moves)) = &mut step_began {
                    if *moves >= MAX_LEADER_MOVES {
                        return Err(failure(
                            Some(&leader),
                            Gate::MoveLeader,
                            format!("leadership came back to {leader} after {MAX_LEADER_MOVES} moves"),
                        ));
                    }
                    *moves += 1;
                }
                self.ensure_lock().await?;
                if let Some(probe) = &self.probe {
                    probe.enter(&leader);
                }
                Box::pin(self.move_leader(&observed, &leader, &to, to_id)).await?;
                // Observe again: the member is changed only once a fresh
                // observation clears it.
                continue;
            }
            waiting = SafetyWait::default();
            // Every member change starts under a lock still held.
            self.ensure_lock().await?;
            if let Some(probe) = &self.probe {
                probe.enter(&name);
            }
            let member = find(&observed, &name)?.clone();
            // What the member's gate passed on: the step's account (its
            // elections) only. The next step is decided on a fresh one.
            let after = Box::pin(self.change(&member, target)).await?;
            let (_, began, term_before, moves) = step_began.take().unwrap_or((name.clone(), Instant::now(), 0, 0));
            let elections = max_term(&after)
                .saturating_sub(term_before)
                .saturating_sub(u64::from(moves));
            let took_ms = millis(began.elapsed());
            if let Some(entry) = self.report.members.iter_mut().find(|m| m.name == name) {
                entry.to = Some(target.to_string());
                entry.took_ms += took_ms;
                entry.elections += elections;
                entry.leader_moves += moves;
            }
            self.emit(&Event::MemberDone {
                member: name,
                took_ms,
                elections,
            });
            if !v2_wait.is_zero() && next_step(&after, direction, target) != NextStep::PassDone {
                self.emit(&Event::Waiting {
                    seconds: v2_wait.as_secs(),
                    reason: "v2 data above 50 MB: members need time to catch up".into(),
                });
                self.pause(v2_wait).await?;
            }
        }
    }

    /// Waits while a step is unsafe: says so when what it waits for
    /// changes, and stops the change once the gate timeout has passed with
    /// the step still unsafe (nothing was taken down for it).
    fn wait_for_safety(&mut self, waiting: &mut SafetyWait, unsafe_: &Unsafe) -> Result<(), Failure> {
        let now = Instant::now();
        let since = *waiting.since.get_or_insert(now);
        let named: Vec<String> = unsafe_.named().into_iter().map(str::to_owned).collect();
        if waiting.named.as_ref() != Some(&named) || waiting.member != unsafe_.member {
            waiting.named = Some(named);
            waiting.member.clone_from(&unsafe_.member);
            self.emit(&Event::WaitingFor {
                member: Some(unsafe_.member.clone()),
                check: rules::ids::QUORUM_SAFETY.into(),
                reason: unsafe_
                    .problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
                up_to_seconds: self.options.gate_timeout.saturating_sub(now - since).as_secs(),
            });
        }
        if now - since > self.options.gate_timeout {
            return Err(failure(
                Some(&unsafe_.member),
                Gate::Rule(rules::ids::QUORUM_SAFETY),
                format!(
                    "{unsafe_} (still so after {:?}); {} was not taken down: bring the cluster back to health, \
                     then run the same command again",
                    self.options.gate_timeout, unsafe_.member
                ),
            ));
        }
        Ok(())
    }

    /// The Downgrade API part of a 3.6 -> 3.5 pass, before any binary is
    /// swapped: validate, enable, and wait until every member on the newer
    /// binary reports the target's storage version. Resumes wherever a
    /// previous run stopped. When the storage does not migrate in time the
    /// downgrade is cancelled: no member has been swapped yet, so the
    /// cluster is back where it was.
    async fn enable_downgrade(&mut self, target: &EtcdVersion) -> Result<(), Failure> {
        let deadline = Instant::now() + self.options.gate_timeout;
        let mut enabled_here = false;
        loop {
            let observed = self.observe(Gate::DowngradeApi).await?.observed;
            if next_step(&observed, Direction::Downgrade, target) == NextStep::PassDone {
                return Ok(());
            }
            let endpoints = downgrade_api::endpoints(&observed);
            let waiting_for = match downgrade_api::phase(&observed, target) {
                Phase::Swap => {
                    self.emit(&Event::StorageMigrated {
                        version: downgrade_api::api_version(target),
                    });
                    return Ok(());
                }
                Phase::OtherTarget(other) => {
                    return Err(failure(
                        None,
                        Gate::DowngradeApi,
                        format!(
                            "a downgrade to {other} is already enabled in etcd; steward does not override it \
                             (etcdctl downgrade cancel, then run again)"
                        ),
                    ));
                }
                Phase::Enable if !enabled_here => {
                    self.ensure_lock().await?;
                    downgrade_api::validate(&self.connector, &endpoints, target)
                        .await
                        .map_err(|e| failure(None, Gate::DowngradeValidate, e.to_string()))?;
                    downgrade_api::enable(&self.connector, &endpoints, target)
                        .await
                        .map_err(|e| failure(None, Gate::DowngradeEnable, e.to_string()))?;
                    enabled_here = true;
                    self.emit(&Event::DowngradeEnabled {
                        target: downgrade_api::api_version(target),
                    });
                    "the members to report the enabled downgrade".to_owned()
                }
                Phase::Enable => "the members to report the enabled downgrade".to_owned(),
                Phase::MigratingStorage { members } => {
                    format!("{} to migrate their storage version", members.join(", "))
                }
            };
            if Instant::now() > deadline && !enabled_here {
                return Err(failure(
                    None,
                    Gate::StorageVersion,
                    format!(
                        "waited {:?} for {waiting_for}; the downgrade was enabled by an earlier run and is left as it is",
                        self.options.gate_timeout
                    ),
                ));
            }
            if Instant::now() > deadline {
                let reason = format!("waited {:?} for {waiting_for}", self.options.gate_timeout);
                let cancelled = match downgrade_api::cancel(&self.connector, &endpoints).await {
                    Ok(()) => {
                        self.emit(&Event::DowngradeCancelled { reason: reason.clone() });
                        "the downgrade was cancelled; no member was changed".to_owned()
                    }
                    Err(error) => {
                        format!("cancelling the downgrade failed too ({error}): run `etcdctl downgrade cancel`")
                    }
                };
                return Err(failure(None, Gate::StorageVersion, format!("{reason}; {cancelled}")));
            }
            self.pause(POLL).await?;
        }
    }

    /// MoveLeader, sent to the leader itself, then confirmed by Status:
    /// done once one member other than `leader` leads (normally `to`; if
    /// `to` failed right after, the cluster may have elected another, and
    /// the next round decides from that).
    async fn move_leader(&mut self, observed: &Observed, leader: &str, to: &str, to_id: u64) -> Result<(), Failure> {
        let began = Instant::now();
        let leader_member = find(observed, leader)?;
        let mut client = etcd::connect_member(&self.connector, &leader_member.client_url, "MoveLeader")
            .await
            .map_err(|e| failure(Some(leader), Gate::MoveLeader, e.to_string()))?;
        let sent = client.move_leader(to_id).await;
        let deadline = Instant::now() + MOVE_LEADER_TIMEOUT;
        loop {
            let observed = self.observe(Gate::MoveLeader).await?.observed;
            if let Some(now) = observed.leader().filter(|l| l.name != leader) {
                self.emit(&Event::LeaderMoved {
                    from: leader.to_owned(),
                    to: now.name.clone(),
                    took_ms: millis(began.elapsed()),
                });
                return Ok(());
            }
            if let Err(error) = &sent {
                return Err(failure(Some(leader), Gate::MoveLeader, etcd::describe(error)));
            }
            if Instant::now() > deadline {
                return Err(Failure::timed_out(
                    Some(leader),
                    Gate::MoveLeader,
                    format!("{to} did not confirm leadership within {MOVE_LEADER_TIMEOUT:?}"),
                ));
            }
            self.pause(POLL).await?;
        }
    }

    /// Activates `target` on `member` through its agent and gates it.
    /// Returns the observation the gate passed on.
    async fn change(&mut self, member: &ObservedMember, target: &EtcdVersion) -> Result<Observed, Failure> {
        self.emit(&Event::MemberStarted {
            member: member.name.clone(),
            from: member.version.as_ref().map(ToString::to_string).unwrap_or_default(),
            to: target.to_string(),
        });
        let mut clients = self.clients(member).await?;
        let token = self.token();
        let timeout = self
            .options
            .activate_timeout
            .and_then(|t| prost_types::Duration::try_from(t).ok());
        // etcd 3.5 and later wait up to 7 s for open streams to end when
        // they stop: the lock's renewals leave this member first.
        if let Some(lock) = &self.lock
            && !lock.move_off(&member.client_url).await
        {
            tracing::debug!(member = %member.name, "the lock's renewals stay on the member it stops");
        }
        let answer = if self.is_rollback() {
            clients
                .agent
                .rollback(pb::RollbackRequest {
                    timeout,
                    fencing_token: token,
                })
                .await
        } else {
            let request = pb::ActivateRequest {
                version: target.to_string(),
                timeout,
                fencing_token: token,
            };
            clients.agent.activate(request).await
        };
        let activated = match answer {
            Ok(response) => response.into_inner(),
            Err(status) => {
                let details = steward_proto::details::decode_activation_failure(status.details());
                return Err(Failure {
                    member: Some(member.name.clone()),
                    gate: Gate::Activate,
                    cause: if details.as_ref().is_some_and(|d| !d.reverted_to.is_empty()) {
                        Cause::Reverted
                    } else {
                        Cause::Agent
                    },
                    reason: match &details {
                        Some(d) if !d.reverted_to.is_empty() => {
                            format!("{} (the agent reverted the member to {})", d.reason, d.reverted_to)
                        }
                        Some(d) => d.reason.clone(),
                        None => format!("{:?}: {}", status.code(), status.message()),
                    },
                    log_tail: details.map(|d| d.log_tail).unwrap_or_default(),
                });
            }
        };
        let activate_ms = activated
            .took
            .and_then(|d| Duration::try_from(d).ok())
            .map_or(0, millis);
        self.emit(&Event::Activated {
            member: member.name.clone(),
            version: activated.active_version.clone(),
            took_ms: activate_ms,
        });
        let gate_began = Instant::now();
        let gated = self.gate(&member.name, target).await;
        if let Some(entry) = self.report.members.iter_mut().find(|m| m.name == member.name) {
            entry.activate_ms += activate_ms;
            entry.gate_ms += millis(gate_began.elapsed());
        }
        let mut gate_failure = match gated {
            Ok(passed) => return Ok(passed),
            Err(failure) => failure,
        };
        if self.is_rollback() {
            // This member was already going back; another Rollback
            // would swap it forward again.
            return Err(gate_failure);
        }
        // The agent saw the member healthy, but the cluster does not
        // agree: put the old version back before stopping, if taking
        // the member down again is safe.
        gate_failure.reason = match self.undo_clearance(&member.name).await {
            Ok(()) => {
                let rollback = clients
                    .agent
                    .rollback(pb::RollbackRequest {
                        timeout: None,
                        fencing_token: token,
                    })
                    .await;
                match rollback {
                    Ok(_) => format!("{}; the member was rolled back", gate_failure.reason),
                    Err(s) => format!(
                        "{}; rolling the member back failed too: {}",
                        gate_failure.reason,
                        s.message()
                    ),
                }
            }
            Err(why) => format!(
                "{}; {} was left on {target}, not rolled back: {why}",
                gate_failure.reason, member.name
            ),
        };
        Err(gate_failure)
    }

    /// Whether `name` may be taken down again to undo its change, from a
    /// fresh observation (moving leadership away from it first if it
    /// leads); the reason when not.
    async fn undo_clearance(&mut self, name: &str) -> Result<(), NoUndo> {
        for _ in 0..2 {
            let observed = self.observe(Gate::Rollback).await.map_err(NoUndo::Step)?.observed;
            match safety::clearance_to_undo(&observed, name) {
                Ok(Clearance::Now) => return Ok(()),
                Ok(Clearance::AfterLeaderMoves) => {
                    let Some(to) = crate::engine::roll::plan::transferee(&observed, name) else {
                        return Err(NoUndo::NoTransferee(name.to_owned()));
                    };
                    let (to, to_id) = (to.name.clone(), to.id);
                    Box::pin(self.move_leader(&observed, name, &to, to_id))
                        .await
                        .map_err(NoUndo::Step)?;
                }
                Err(why) => return Err(NoUndo::Unsafe(why)),
            }
        }
        Err(NoUndo::LeadershipReturns(name.to_owned()))
    }

    /// The member is healthy, runs the target, has applied what the leader
    /// had applied when the gate began, agrees with every member on HashKV
    /// at a common revision (while the databases are small enough, see
    /// [`large_db`]), and no new alarm went off. Returns the observation
    /// it passed on.
    ///
    /// The first observation is also the first one judged: a member that
    /// had, in it, applied what the leader had applied in it has applied
    /// what the leader had when the gate began (applied indexes only grow).
    async fn gate(&mut self, name: &str, target: &EtcdVersion) -> Result<Observed, Failure> {
        let mut observed = self.observe(Gate::Gate).await?.observed;
        let leader_applied = observed.leader().map_or(0, |l| l.applied_index);
        let alarms_before = observed.alarms.clone();
        let timeout = large_db::gate_timeout(self.options.gate_timeout, self.largest_db);
        let deadline = Instant::now() + timeout;
        let hash_kv = large_db::hash_kv_at_gates(self.largest_db, self.options.hash_kv_max_db_mib);
        let mut waiting_for: Option<String> = None;
        loop {
            let problem = match gate_verdict(&observed, name, target, leader_applied, &alarms_before) {
                GateVerdict::Fail(gate, reason) => return Err(failure(Some(name), gate, reason)),
                GateVerdict::Wait(gate, reason) => {
                    // Another member is not healthy: not this member's
                    // doing, and not its success either; say so once.
                    if gate == Gate::Rule(rules::ids::HEALTH) && waiting_for.as_deref() != Some(reason.as_str()) {
                        waiting_for = Some(reason.clone());
                        self.emit(&Event::WaitingFor {
                            member: Some(name.to_owned()),
                            check: rules::ids::HEALTH.into(),
                            reason: reason.clone(),
                            up_to_seconds: deadline.saturating_duration_since(Instant::now()).as_secs(),
                        });
                    }
                    Some((gate, reason))
                }
                GateVerdict::HashKvLeft if !hash_kv => None,
                GateVerdict::HashKvLeft => hash_kv_disagreement(&self.connector, &observed)
                    .await
                    .map(|p| (Gate::HashKv, p)),
            };
            let Some((gate, reason)) = problem else {
                return Ok(observed);
            };
            if Instant::now() > deadline {
                return Err(Failure::timed_out(
                    Some(name),
                    gate,
                    format!("not passed within {timeout:?}: {reason}"),
                ));
            }
            tokio::time::sleep(POLL).await;
            observed = self.observe(Gate::Gate).await?.observed;
        }
    }

    /// Waits until every member reports the target's minor as the cluster
    /// version. One full observation names the members; the wait then asks
    /// only each member's `/version`, as the guide's own check does: polling
    /// every 100 ms with whole observations (a quorum read and fresh
    /// connections per member, each agent's status) would load the cluster
    /// while it takes writes, for an answer `/version` gives alone.
    async fn wait_cluster_version(&mut self, target: &EtcdVersion) -> Result<(), Failure> {
        let deadline = Instant::now() + CLUSTER_VERSION_TIMEOUT;
        let urls: Vec<String> = self
            .observe(Gate::ClusterVersion)
            .await?
            .observed
            .members
            .iter()
            .map(|m| m.client_url.clone())
            .collect();
        let http = etcd::http_client(&self.connector)
            .map_err(|e| failure(None, Gate::ClusterVersion, crate::engine::error::chain(&e)))?;
        loop {
            let versions: Vec<Option<EtcdVersion>> = futures::future::join_all(urls.iter().map(|url| async {
                tokio::time::timeout(VERSION_ANSWER_WITHIN, etcd::cluster_version(&http, url))
                    .await
                    .ok()
                    .flatten()
            }))
            .await;
            if let Some(reached) = cluster_version_reached(&versions, target) {
                let version = reached.to_string();
                self.report.cluster_version = Some(version.clone());
                self.emit(&Event::ClusterVersion { version });
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Failure::timed_out(
                    None,
                    Gate::ClusterVersion,
                    format!(
                        "members report {:?} after {CLUSTER_VERSION_TIMEOUT:?}, expected {}.{}",
                        versions
                            .iter()
                            .map(|v| v.as_ref().map(ToString::to_string))
                            .collect::<Vec<_>>(),
                        target.major(),
                        target.minor()
                    ),
                ));
            }
            self.pause(CLUSTER_VERSION_POLL).await?;
        }
    }
}

/// The cluster version every member reports, once all of them report
/// `target`'s minor; `None` while any member reports another or none.
fn cluster_version_reached<'a>(versions: &'a [Option<EtcdVersion>], target: &EtcdVersion) -> Option<&'a EtcdVersion> {
    let first = versions.first()?.as_ref()?;
    versions
        .iter()
        .all(|v| v.as_ref().is_some_and(|v| v.same_minor(target)))
        .then_some(first)
}

/// The plan of a change and every check on it, decided from one
/// observation with nothing changed: what `steward plan` shows, what a run
/// refuses on, and what `steward fleet plan` shows per cluster.
#[derive(Debug)]
pub struct Preflight {
    /// The local binaries by version.
    pub local: BTreeMap<EtcdVersion, LocalRelease>,
    /// The passes, or why there are none.
    pub planned: Result<Plan, PlanError>,
    /// Every check, in the order they ran.
    pub checks: Vec<Check>,
    /// Each agent's answer on how its member's flags render for each pass
    /// target still to come.
    pub flags: Vec<flag_check::MemberFlags>,
    /// Whether the v2store check ran already (the cluster is on 3.5 now).
    pub v2store_checked: bool,
}

impl Preflight {
    /// True when a check refuses the change or there is no plan.
    #[must_use]
    pub fn refused(&self) -> bool {
        self.planned.is_err() || rules::refused(&self.checks)
    }
}

/// Stages one file on one agent: imported from the same path when the
/// agent's host has it inside its import dirs, uploaded otherwise.
async fn stage_file(
    mut clients: AgentClients,
    member: &str,
    version: &EtcdVersion,
    tool: pb::Tool,
    path: &Path,
    fingerprint: &crate::engine::transfer::upload::Fingerprint,
    token: i64,
) -> Result<(pb::ImportBinaryResponse, StageMethod), Failure> {
    let import = pb::ImportBinaryRequest {
        path: path.display().to_string(),
        tool: tool.into(),
        version: version.to_string(),
        sha256: fingerprint.sha256.clone(),
        fencing_token: token,
    };
    match clients.binaries.import_binary(import).await {
        Ok(answer) => Ok((answer.into_inner(), StageMethod::Imported)),
        // Anything but "not importable from that path" (a stale token, a
        // busy agent, a role that may not) would refuse the upload just the
        // same.
        Err(refused)
            if !matches!(
                refused.code(),
                tonic::Code::InvalidArgument | tonic::Code::NotFound | tonic::Code::AlreadyExists
            ) =>
        {
            Err(failure(
                Some(member),
                Gate::Stage,
                format!("ImportBinary: {:?}: {}", refused.code(), refused.message()),
            ))
        }
        Err(refused) => {
            tracing::debug!(member, path = %path.display(), reason = %refused.message(), "not importable there; uploading");
            let answer = crate::engine::transfer::upload::upload(&mut clients, path, fingerprint, version, tool, token)
                .await
                .map_err(|e| failure(Some(member), Gate::Stage, crate::engine::error::chain(&e)))?;
            Ok((answer, StageMethod::Uploaded))
        }
    }
}

/// Plans `change` on the observed cluster and runs every preflight check:
/// the rules, the local binaries' versions and checksum, the members'
/// flags on the target, and the v2store check of a 3.5 -> 3.6 change.
pub async fn preflight(connector: &Connector, observation: &Observation, change: &Change) -> Preflight {
    let observed = &observation.observed;
    let local = local_releases(change.binaries.as_deref(), change.binary.as_deref(), &change.target);
    let request = Request {
        force: change.force,
        available: local.keys().cloned().collect(),
        leases_in_use: observation.leases_in_use,
        binaries_dir: change.binaries.clone(),
    };
    let planned = plan(observed, change.direction, &change.target, &request.available);
    let mut checks = rules::preflight(observed, &request, &planned);
    checks.push(verify_local_binaries(&local, planned.as_ref().ok()).await);
    if let (Some(path), Some(expected)) = (&change.binary, &change.binary_sha256) {
        checks.push(binary_sha256_check(path, expected).await);
    }
    let mut v2store_checked = false;
    let mut flags = Vec::new();
    if let Ok(plan) = &planned {
        flags = flag_check::ask_all(connector, observed, plan).await;
        checks.push(flag_check::check(&flags));
        v2store_checked = v2store_check::when(plan) == v2store_check::When::Now;
        checks.extend(v2store_check::preflight(connector, plan, observed).await);
    }
    Preflight {
        local,
        planned,
        checks,
        flags,
        v2store_checked,
    }
}

/// Every local binary a pass needs must report its version.
async fn verify_local_binaries(local: &BTreeMap<EtcdVersion, LocalRelease>, plan: Option<&Plan>) -> Check {
    let rule = rules::ids::BINARY_VERSION;
    let Some(plan) = plan else {
        return Check {
            rule,
            verdict: Verdict::Pass,
            message: "no plan, nothing to verify".into(),
            source: "steward",
        };
    };
    let mut problems = Vec::new();
    for pass in &plan.passes {
        let Some(release) = local.get(&pass.target) else {
            continue;
        };
        match reported_version(&release.etcd).await {
            Ok(reported) if reported == pass.target => {}
            Ok(reported) => problems.push(format!(
                "{} reports {reported}, not {}",
                release.etcd.display(),
                pass.target
            )),
            Err(error) => problems.push(crate::engine::error::chain(&error)),
        }
    }
    if problems.is_empty() {
        Check {
            rule,
            verdict: Verdict::Pass,
            message: "every local binary reports its version".into(),
            source: "steward",
        }
    } else {
        Check {
            rule,
            verdict: Verdict::Fail,
            message: problems.join("; "),
            source: "steward",
        }
    }
}

/// The `--binary` file has the sha256 the operator expects.
pub async fn binary_sha256_check(path: &Path, expected: &str) -> Check {
    let (verdict, message) = match crate::engine::transfer::upload::fingerprint(path).await {
        Ok(print) if print.sha256 == expected => (Verdict::Pass, format!("{} has the expected sha256", path.display())),
        Ok(print) => (
            Verdict::Fail,
            format!(
                "{} has sha256 {}, not the expected {expected}",
                path.display(),
                print.sha256
            ),
        ),
        Err(error) => (Verdict::Fail, crate::engine::error::chain(&error)),
    };
    Check {
        rule: rules::ids::BINARY_SHA256,
        verdict,
        message,
        source: "steward",
    }
}

/// The client URLs of the members that answered a quorum read.
fn healthy_endpoints(observed: &Observed) -> Vec<String> {
    observed
        .members
        .iter()
        .filter(|m| m.healthy)
        .map(|m| m.client_url.clone())
        .collect()
}

/// Differences of HashKV at the lowest revision every member has.
pub(crate) async fn hash_kv_disagreement(connector: &Connector, observed: &Observed) -> Option<String> {
    let revision = observed.members.iter().map(|m| m.revision).min()?;
    let mut hashes = Vec::new();
    for member in &observed.members {
        let mut client = match etcd::connect_member(connector, &member.client_url, "HashKV").await {
            Ok(client) => client,
            Err(error) => return Some(error.to_string()),
        };
        match client.hash_kv(revision).await {
            Ok(answer) => hashes.push((member.name.clone(), answer.hash(), answer.compact_version())),
            Err(error) => return Some(format!("HashKV on {}: {}", member.name, etcd::describe(&error))),
        }
    }
    let first = hashes.first()?;
    let differ = hashes
        .iter()
        .any(|(_, hash, compact)| (*hash, *compact) != (first.1, first.2));
    differ.then(|| {
        format!(
            "HashKV at revision {revision} differs: {}",
            hashes
                .iter()
                .map(|(name, hash, _)| format!("{name}={hash:08x}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

fn find<'a>(observed: &'a Observed, name: &str) -> Result<&'a ObservedMember, Failure> {
    observed
        .members
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| failure(Some(name), Gate::Observe, "the member left the member list"))
}

fn max_term(observed: &Observed) -> u64 {
    observed.members.iter().map(|m| m.raft_term).max().unwrap_or(0)
}

/// etcd and the tools next to it.
fn release_at(etcd: &Path) -> LocalRelease {
    let tools = [(pb::Tool::Etcdctl, "etcdctl"), (pb::Tool::Etcdutl, "etcdutl")]
        .into_iter()
        .map(|(tool, name)| (tool, etcd.with_file_name(name)))
        .filter(|(_, path)| path.is_file())
        .collect();
    LocalRelease {
        etcd: etcd.to_owned(),
        tools,
    }
}

/// What staging has to do before the first member changes: for every pass
/// with a member still to change, the members whose agents lack the pass's
/// target. Every member gets every target, those already changed too: a
/// member that must be reverted, or a rerun after a crash, finds the
/// binaries in place. Passes that are done, and passes every agent already
/// has, are left out.
#[must_use]
pub fn staging_targets<'a>(plan: &'a Plan, observed: &'a Observed) -> Vec<(&'a Pass, Vec<&'a ObservedMember>)> {
    plan.passes
        .iter()
        .filter(|pass| !pass.order.iter().all(|s| s.done))
        .map(|pass| {
            let lacking = observed
                .members
                .iter()
                .filter(|m| !m.staged.contains(&pass.target))
                .collect::<Vec<_>>();
            (pass, lacking)
        })
        .filter(|(_, lacking)| !lacking.is_empty())
        .collect()
}

/// The snapshot a run keeps from an earlier run of the same change: when
/// the recorded change (`previous`) goes the same way to the same target
/// and some member already went through it, its pre-change snapshot is
/// the backup of the old version, and a new one would only copy the mixed
/// state. `None`: take a new snapshot.
#[must_use]
pub fn snapshot_to_keep(previous: Option<&LastRoll>, plan: &Plan) -> Option<SnapshotRecord> {
    let last = previous?;
    let same_change = last.direction == plan.direction && last.to == plan.to.to_string();
    let started = plan.passes.iter().any(|p| p.order.iter().any(|s| s.done));
    if same_change && started {
        last.snapshot.clone()
    } else {
        None
    }
}

/// What one observation says about a member's gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateVerdict {
    /// The gate fails at once (a new alarm, the member left).
    Fail(Gate, String),
    /// Not yet: the gate that is not passed, and why.
    Wait(Gate, String),
    /// Everything the observation shows is passed; HashKV is left to ask.
    HashKvLeft,
}

/// The gate of member `name` after its switch to `target`, from one
/// observation: no alarm that was not there at the start
/// (`alarms_before`), the member healthy, on `target`, caught up with the
/// leader's applied index at the start (`leader_applied`), and every other
/// member healthy. Pure; the HashKV comparison is asked separately.
#[must_use]
pub fn gate_verdict(
    observed: &Observed,
    name: &str,
    target: &EtcdVersion,
    leader_applied: u64,
    alarms_before: &[(u64, String)],
) -> GateVerdict {
    if let Some(alarm) = observed.alarms.iter().find(|a| !alarms_before.contains(a)) {
        return GateVerdict::Fail(Gate::NoNewAlarm, format!("alarm {} on {:016x}", alarm.1, alarm.0));
    }
    let Some(member) = observed.members.iter().find(|m| m.name == name) else {
        return GateVerdict::Fail(Gate::Observe, "the member left the member list".into());
    };
    if !member.healthy {
        return GateVerdict::Wait(Gate::Health, member.health_error.clone());
    }
    if member.version.as_ref() != Some(target) {
        let reports = member.version.as_ref().map(ToString::to_string).unwrap_or_default();
        return GateVerdict::Wait(Gate::Version, format!("reports {reports}"));
    }
    if member.applied_index < leader_applied {
        return GateVerdict::Wait(
            Gate::CaughtUp,
            format!(
                "applied index {} behind the leader's {leader_applied}",
                member.applied_index
            ),
        );
    }
    if let Some(sick) = observed.members.iter().find(|m| m.name != name && !m.healthy) {
        return GateVerdict::Wait(
            Gate::Rule(rules::ids::HEALTH),
            format!("{} is not healthy ({})", sick.name, sick.health_error),
        );
    }
    GateVerdict::HashKvLeft
}

/// The version a local etcd binary reports.
async fn reported_version(path: &Path) -> Result<EtcdVersion, Error> {
    let output = tokio::process::Command::new(path)
        .arg("--version")
        .output()
        .await
        .map_err(|source| Error::Io {
            action: "run",
            path: path.to_owned(),
            source,
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("etcd Version:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| Error::Invalid(format!("{} does not report an etcd version", path.display())))
}

/// Why a member whose gate failed was left on the new version rather than
/// rolled back.
#[derive(Debug, thiserror::Error)]
enum NoUndo {
    /// Observing or moving leadership failed.
    #[error("{}", .0.reason)]
    Step(Failure),
    /// It leads and no member can take over.
    #[error("{0} leads and no member can take over")]
    NoTransferee(String),
    /// Taking it down again would cost quorum.
    #[error("{0}")]
    Unsafe(Unsafe),
    /// Leadership kept coming back to it.
    #[error("leadership kept coming back to {0}")]
    LeadershipReturns(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::roll::plan::tests::{cluster, v};

    #[test]
    fn the_cluster_version_is_reached_only_when_every_member_reports_it() {
        let target = v("3.5.36");
        let flipped = [Some(v("3.5.0")), Some(v("3.5.0")), Some(v("3.5.0"))];
        assert_eq!(cluster_version_reached(&flipped, &target), Some(&v("3.5.0")));
        let one_behind = [Some(v("3.5.0")), Some(v("3.4.0")), Some(v("3.5.0"))];
        assert_eq!(cluster_version_reached(&one_behind, &target), None);
        let one_silent = [Some(v("3.5.0")), None, Some(v("3.5.0"))];
        assert_eq!(cluster_version_reached(&one_silent, &target), None);
        assert_eq!(cluster_version_reached(&[], &target), None);
        let downgraded = [Some(v("3.4.0")), Some(v("3.4.0"))];
        assert_eq!(cluster_version_reached(&downgraded, &v("3.4.23")), Some(&v("3.4.0")));
    }

    #[test]
    fn a_gate_passes_once_the_member_is_healthy_on_the_target_and_caught_up() {
        let observed = cluster(&["3.5.16", "3.5.16", "3.4.23"], 1);
        assert_eq!(
            gate_verdict(&observed, "m0", &v("3.5.16"), 100, &[]),
            GateVerdict::HashKvLeft
        );
    }

    #[test]
    fn a_gate_waits_for_health_version_catch_up_and_the_other_members() {
        let target = v("3.5.16");
        let mut observed = cluster(&["3.5.16", "3.5.16", "3.4.23"], 1);
        observed.members[0].healthy = false;
        observed.members[0].health_error = "connection refused".into();
        assert_eq!(
            gate_verdict(&observed, "m0", &target, 100, &[]),
            GateVerdict::Wait(Gate::Health, "connection refused".into())
        );
        observed.members[0].healthy = true;
        observed.members[0].version = Some(v("3.4.23"));
        assert!(matches!(
            gate_verdict(&observed, "m0", &target, 100, &[]),
            GateVerdict::Wait(Gate::Version, _)
        ));
        observed.members[0].version = Some(target.clone());
        assert!(matches!(
            gate_verdict(&observed, "m0", &target, 150, &[]),
            GateVerdict::Wait(Gate::CaughtUp, _)
        ));
        observed.members[2].healthy = false;
        assert_eq!(
            gate_verdict(&observed, "m0", &target, 100, &[]),
            GateVerdict::Wait(Gate::Rule(rules::ids::HEALTH), "m2 is not healthy ()".into())
        );
    }

    #[test]
    fn staging_covers_every_lacking_agent_of_every_pass_left() {
        let mut observed = cluster(&["3.3.25", "3.3.25", "3.3.25"], 1);
        let available = [v("3.4.23"), v("3.5.16")];
        let planned = plan(&observed, Direction::Upgrade, &v("3.5.16"), &available).unwrap();
        let names = |targets: Vec<(&Pass, Vec<&ObservedMember>)>| -> Vec<(String, Vec<String>)> {
            targets
                .into_iter()
                .map(|(p, m)| (p.target.to_string(), m.iter().map(|m| m.name.clone()).collect()))
                .collect()
        };
        let all = || vec!["m0".to_owned(), "m1".into(), "m2".into()];
        assert_eq!(
            names(staging_targets(&planned, &observed)),
            vec![("3.4.23".to_owned(), all()), ("3.5.16".to_owned(), all())]
        );
        // m1's agent has 3.5.16 already; every agent has 3.4.23.
        for member in &mut observed.members {
            member.staged.push(v("3.4.23"));
        }
        observed.members[1].staged.push(v("3.5.16"));
        assert_eq!(
            names(staging_targets(&planned, &observed)),
            vec![("3.5.16".to_owned(), vec!["m0".to_owned(), "m2".into()])]
        );
    }

    #[test]
    fn a_rerun_of_the_same_started_change_keeps_its_snapshot() {
        let observed = cluster(&["3.5.16", "3.4.23", "3.4.23"], 1);
        let planned = plan(&observed, Direction::Upgrade, &v("3.5.16"), &[v("3.5.16")]).unwrap();
        let snapshot = SnapshotRecord {
            member: "m1".into(),
            id: "m1-1".into(),
            ..SnapshotRecord::default()
        };
        let record = |direction, to: &str| LastRoll {
            direction,
            from: "3.4.23".into(),
            to: to.into(),
            token: 7,
            snapshot: Some(snapshot.clone()),
        };
        let same = record(Direction::Upgrade, "3.5.16");
        assert_eq!(snapshot_to_keep(Some(&same), &planned), Some(snapshot.clone()));
        assert_eq!(snapshot_to_keep(None, &planned), None);
        let other_target = record(Direction::Upgrade, "3.5.17");
        assert_eq!(snapshot_to_keep(Some(&other_target), &planned), None);
        let other_way = record(Direction::Downgrade, "3.5.16");
        assert_eq!(snapshot_to_keep(Some(&other_way), &planned), None);
        let untouched = cluster(&["3.4.23", "3.4.23", "3.4.23"], 1);
        let fresh = plan(&untouched, Direction::Upgrade, &v("3.5.16"), &[v("3.5.16")]).unwrap();
        assert_eq!(
            snapshot_to_keep(Some(&same), &fresh),
            None,
            "no member went through it yet: a new snapshot"
        );
    }

    #[test]
    fn a_new_alarm_or_a_vanished_member_fails_the_gate_at_once() {
        let target = v("3.5.16");
        let mut observed = cluster(&["3.5.16", "3.5.16", "3.5.16"], 1);
        let old = vec![(1, "NOSPACE".to_owned())];
        observed.alarms = old.clone();
        assert_eq!(
            gate_verdict(&observed, "m0", &target, 100, &old),
            GateVerdict::HashKvLeft,
            "an alarm from before the switch is not this member's doing"
        );
        observed.alarms.push((2, "CORRUPT".into()));
        assert!(matches!(
            gate_verdict(&observed, "m0", &target, 100, &old),
            GateVerdict::Fail(Gate::NoNewAlarm, _)
        ));
        observed.alarms.clear();
        assert!(matches!(
            gate_verdict(&observed, "m9", &target, 100, &[]),
            GateVerdict::Fail(Gate::Observe, _)
        ));
    }
}
