//! Restoring a whole cluster from one verified snapshot, through the agents:
//! check everything while the cluster still runs (the snapshot on every
//! agent, its database, the versions that will restore it, the lock), ask
//! for a confirmation that says what is lost, then member by member stop
//! etcd and replace its data dir (the old one is kept aside), start every
//! member, and wait until the restored cluster is healthy, agrees on
//! HashKV and holds at least the snapshot's revision.
//!
//! Every agent records the restore before it changes anything, so a rerun
//! after a crash of the coordinator or of an agent finds the unfinished
//! restore and finishes it with the same id, snapshot, token and versions.

pub mod plan;
mod source_file;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use steward_proto::EtcdVersion;
use steward_proto::v1 as pb;

use crate::engine::cluster::lock::{self, ClusterLock};
use crate::engine::cluster::observe::observe;
use crate::engine::connect::Connector;
use crate::engine::connect::agent::{self, AgentAddress, AgentClients};
use crate::engine::connect::etcd::{self, EtcdError};
use crate::engine::error::Error;
use crate::engine::events::{Event, EventSink, StageMethod};
use crate::engine::report::{RESTORE_SCHEMA, ReportHeader, RunContext, millis};
use crate::engine::restore::plan::{MemberFacts, Phase, RecordedRestore, Step, ids};
use crate::engine::roll::rules::{Check, Verdict};
use crate::engine::roll::{Failure, Gate, Outcome};

use source_file::{LocalCheck, read_claim};
pub use source_file::{SnapshotFileError, verify_local};

/// How often the wait for the restored cluster looks again.
const POLL: Duration = Duration::from_millis(500);

/// Where the snapshot comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotSource {
    /// A snapshot an agent keeps (`steward backups` lists them).
    Id(String),
    /// A snapshot file on this machine (`steward backup --out`, or
    /// `etcdctl snapshot save`).
    File(PathBuf),
}

impl SnapshotSource {
    /// A path (it has a `/`, or names an existing file) is a file; anything
    /// else is an id.
    #[must_use]
    pub fn parse(text: &str) -> Self {
        let path = Path::new(text);
        if text.contains('/') || path.is_file() {
            Self::File(path.to_owned())
        } else {
            Self::Id(text.to_owned())
        }
    }
}

/// Why the restore runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// `steward restore`.
    Restore,
    /// `steward rollback --to-snapshot`: undoing the upgrade from this
    /// version. The restored keyspace still holds that upgrade's last-roll
    /// record (written before its snapshot); it goes, so `steward rollback`
    /// and `plan` do not see an upgrade in progress.
    RollbackToSnapshot {
        /// The version the upgrade started from.
        upgraded_from: EtcdVersion,
    },
}

/// What the restore is asked to do.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// The snapshot.
    pub source: SnapshotSource,
    /// The version every member restores with and runs; default: the one
    /// each member runs now.
    pub version: Option<EtcdVersion>,
    /// A label for the new cluster token (the cluster file's name).
    pub label: Option<String>,
    /// The run and the cluster's name, for the report.
    pub context: RunContext,
    /// The etcd key prefix of the cluster lock.
    pub lock_prefix: String,
    /// How long the restored cluster may take to be healthy.
    pub timeout: Duration,
    /// Why.
    pub purpose: Purpose,
    /// The member each agent serves, as far as the cluster file names
    /// them: for messages about an agent that does not answer.
    pub member_names: Vec<(AgentAddress, String)>,
    /// Run every check (the snapshot sent to the agents that lack it and
    /// each agent's own dry run included), then stop where the operator
    /// would be asked: no member is stopped.
    pub dry_run: bool,
}

/// The snapshot restored.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RestoredSnapshot {
    /// Its id on the agents.
    pub id: String,
    /// sha256 of the content.
    pub sha256: String,
    /// Bytes, trailer included.
    pub size: u64,
    /// Store revision.
    pub revision: i64,
    /// The cluster version recorded in its database.
    pub db_cluster_version: String,
    /// Where it was taken (member name), when known.
    pub taken_from: String,
    /// When it was taken (RFC 3339), when known.
    pub created_at: String,
}

/// One member after the restore.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RestoredMember {
    /// Name.
    pub name: String,
    /// Its new member id, hex.
    pub id: String,
    /// The version it runs.
    pub version: String,
    /// Its data dir.
    pub data_dir: String,
    /// Where its old data dir is kept (empty when it had none).
    pub moved_aside_to: String,
}

/// The final report (`-w json`).
#[derive(Clone, Debug, Serialize)]
pub struct RestoreReport {
    /// Schema, cluster, start, steward version, fencing token.
    #[serde(flatten)]
    pub header: ReportHeader,
    /// How it ended.
    pub result: Outcome,
    /// The restore id (the same on every agent).
    pub restore_id: Option<String>,
    /// This run finished a restore an earlier run began.
    pub resumed: bool,
    /// The snapshot.
    pub snapshot: Option<RestoredSnapshot>,
    /// The cluster's revision before, when it could be read.
    pub revision_before: Option<i64>,
    /// Revisions written after the snapshot, lost (when the revision
    /// before could be read).
    pub revisions_lost: Option<i64>,
    /// The cluster's revision after.
    pub revision: Option<i64>,
    /// Per member.
    pub members: Vec<RestoredMember>,
    /// Every check.
    pub checks: Vec<Check>,
    /// Why it stopped, when it did not succeed.
    pub failure: Option<Failure>,
    /// Milliseconds in all.
    pub took_ms: u64,
    /// Where the time went.
    pub phases: RestorePhases,
    /// A dry run: every check ran, nothing was stopped.
    pub dry_run: bool,
    /// In a dry run, the question a real run asks: what it would replace
    /// and lose.
    pub would_ask: Option<String>,
}

/// Milliseconds per phase of a restore (0 for a phase it did not reach or
/// skip). The wait for the operator's confirmation is in none of them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RestorePhases {
    /// Asking every agent, deciding the snapshot and versions, the
    /// snapshot file's own check.
    pub decide_ms: u64,
    /// Sending the snapshot to every agent that lacks it, each checking it.
    pub send_ms: u64,
    /// Every agent's dry run.
    pub dry_run_ms: u64,
    /// Stopping every member and restoring its data dir.
    pub replace_ms: u64,
    /// Starting every member.
    pub start_ms: u64,
    /// Waiting for a healthy cluster in HashKV agreement at the snapshot's
    /// revision.
    pub wait_ms: u64,
}

/// Asks the operator; `true` goes on.
pub trait Confirm {
    /// Shows `question` and reads the answer.
    fn confirm(&mut self, question: &str) -> bool;
}

/// Always yes (`--yes`).
#[derive(Debug)]
pub struct AssumeYes;

impl Confirm for AssumeYes {
    fn confirm(&mut self, _: &str) -> bool {
        true
    }
}

enum Stop {
    Refused,
    Declined,
    Failed(Failure),
}

impl From<Failure> for Stop {
    fn from(failure: Failure) -> Self {
        Self::Failed(failure)
    }
}

fn failure(member: Option<&str>, gate: Gate, reason: impl Into<String>) -> Failure {
    Failure::new(member, gate, reason)
}

/// One member and its agent.
struct Member {
    facts: MemberFacts,
    address: AgentAddress,
    status: pb::GetStatusResponse,
    snapshots: Vec<pb::SnapshotInfo>,
}

/// What the restore settled on before anything is stopped.
struct Decided {
    id: String,
    snapshot: RestoredSnapshot,
    initial_cluster: String,
    token: String,
    versions: Vec<(String, EtcdVersion)>,
    fencing_token: i64,
}

struct Restore<'a> {
    /// How the agents and members are reached.
    connector: Connector,
    agents: Vec<AgentAddress>,
    options: RestoreOptions,
    events: &'a mut dyn EventSink,
    confirm: &'a mut dyn Confirm,
    report: RestoreReport,
    /// Held from the checks to the first stop; the old cluster it lives in
    /// goes away with the restore.
    lock: Option<ClusterLock>,
    /// A temp dir for a snapshot passed from one agent to others.
    relay: Option<tempfile::TempDir>,
    /// The operator's snapshot file, being hashed against its trailer.
    local_check: Option<LocalCheck>,
    /// A member was stopped: the old cluster is being replaced.
    stopped_any: bool,
    began: Instant,
}

/// Runs the restore. Never returns an error: refusals and failures are
/// reports too.
pub async fn run(
    connector: &Connector,
    agents: Vec<AgentAddress>,
    options: RestoreOptions,
    events: &mut dyn EventSink,
    confirm: &mut dyn Confirm,
) -> RestoreReport {
    let header = ReportHeader::begin(RESTORE_SCHEMA, &options.context);
    let mut restore = Restore {
        connector: connector.clone(),
        agents,
        options,
        events,
        confirm,
        report: RestoreReport {
            header,
            result: Outcome::Failed,
            restore_id: None,
            resumed: false,
            snapshot: None,
            revision_before: None,
            revisions_lost: None,
            revision: None,
            members: Vec::new(),
            checks: Vec::new(),
            failure: None,
            took_ms: 0,
            phases: RestorePhases::default(),
            dry_run: false,
            would_ask: None,
        },
        lock: None,
        relay: None,
        local_check: None,
        stopped_any: false,
        began: Instant::now(),
    };
    let outcome = Box::pin(restore.run()).await;
    if let Some(lock) = restore.lock.take() {
        if restore.stopped_any {
            // Members were stopped: no other coordinator may take the old
            // cluster's lock before this one expires (a rerun needs none).
            lock.abandon();
        } else {
            // Nothing stopped: the old cluster runs on, and the next
            // coordinator must not wait for this lock to expire.
            lock.release().await;
        }
    }
    restore.report.result = match outcome {
        Ok(()) => Outcome::Succeeded,
        Err(Stop::Refused | Stop::Declined) => Outcome::Refused,
        Err(Stop::Failed(failure)) => {
            restore.events.emit(&Event::failed(&failure));
            restore.report.failure = Some(failure);
            Outcome::Failed
        }
    };
    restore.report.took_ms = millis(restore.began.elapsed());
    restore.report
}

impl Restore<'_> {
    fn emit(&mut self, event: &Event) {
        self.events.emit(event);
    }

    fn check(&mut self, check: Check) -> Result<(), Stop> {
        self.emit(&Event::Check(check.clone()));
        let failed = check.verdict == Verdict::Fail;
        self.report.checks.push(check);
        if failed { Err(Stop::Refused) } else { Ok(()) }
    }

    async fn run(&mut self) -> Result<(), Stop> {
        let mut phase = Instant::now();
        let mut lap = move || {
            let took = millis(phase.elapsed());
            phase = Instant::now();
            took
        };
        let members = self.gather().await?;
        let facts: Vec<MemberFacts> = members.iter().map(|m| m.facts.clone()).collect();
        let resume = plan::unfinished(&facts).map_err(|reason| failure(None, Gate::Resume, reason.to_string()))?;
        let decided = match resume {
            Some(resume) => self.decide_resume(&members, resume).await?,
            None => self.decide_fresh(&members).await?,
        };
        // A rerun whose members are all restored only starts and waits:
        // the snapshot may be gone from the agents by now.
        let to_restore = members
            .iter()
            .any(|m| plan::steps(&m.facts, &decided.id).contains(&Step::Restore));
        self.report.phases.decide_ms = lap();
        let members = if to_restore {
            let members = self.distribute(members, &decided).await?;
            self.report.phases.send_ms = lap();
            self.dry_run(&members, &decided).await?;
            self.report.phases.dry_run_ms = lap();
            members
        } else {
            members
        };
        // Judged during the sends, when there are any; never left behind.
        self.local_file_verified().await?;
        let question = self.question(&decided, &members);
        if self.options.dry_run {
            self.report.dry_run = true;
            self.report.would_ask = Some(question);
            return Ok(());
        }
        let confirmed = self.confirm.confirm(&question);
        lap();
        if !confirmed {
            let check = Check {
                rule: ids::CONFIRMED,
                verdict: Verdict::Fail,
                message: "the operator did not confirm; nothing was stopped".into(),
                source: "steward",
            };
            self.emit(&Event::Check(check.clone()));
            self.report.checks.push(check);
            return Err(Stop::Declined);
        }
        self.emit(&Event::RestoreBegan {
            restore_id: decided.id.clone(),
            snapshot: decided.snapshot.id.clone(),
            revision: decided.snapshot.revision,
            members: members.iter().map(|m| m.facts.name.clone()).collect(),
            resumed: self.report.resumed,
        });
        Box::pin(self.replace(&members, &decided)).await?;
        self.report.phases.replace_ms = lap();
        Box::pin(self.start(&members)).await?;
        self.report.phases.start_ms = lap();
        Box::pin(self.wait_restored(&members, &decided)).await?;
        self.report.phases.wait_ms = lap();
        self.clean_up(&members, &decided).await?;
        Ok(())
    }

    /// Every agent's status, staged tools and snapshots.
    async fn gather(&mut self) -> Result<Vec<Member>, Stop> {
        let mut members = Vec::new();
        for address in self.agents.clone() {
            let address = &address;
            let gate = Gate::Agents;
            // Nothing has changed yet: an agent that does not answer makes
            // this a refusal, naming the member it serves.
            let mut clients = match agent::connect(&self.connector, address).await {
                Ok(clients) => clients,
                Err(error) => return Err(self.refuse_unanswered(address, &error.to_string())),
            };
            let plaintext = clients.plaintext;
            let refused = |rpc: &'static str| {
                move |s: tonic::Status| failure(None, gate, Error::from_status(address, plaintext, rpc, &s).to_string())
            };
            let status = match clients.agent.get_status(pb::GetStatusRequest {}).await {
                Ok(status) => status.into_inner(),
                Err(status) => {
                    let error = Error::from_status(address, plaintext, "GetStatus", &status).to_string();
                    return Err(self.refuse_unanswered(address, &error));
                }
            };
            let binaries = clients
                .binaries
                .list_binaries(pb::ListBinariesRequest {})
                .await
                .map_err(refused("ListBinaries"))?
                .into_inner();
            let snapshots = clients
                .snapshots
                .list_snapshots(pb::ListSnapshotsRequest {})
                .await
                .map_err(refused("ListSnapshots"))?
                .into_inner()
                .snapshots;
            let facts = facts_of(address, &status, &binaries);
            if members.iter().any(|m: &Member| m.facts.name == facts.name) {
                return Err(failure(None, gate, format!("two agents serve a member named {}", facts.name)).into());
            }
            members.push(Member {
                facts,
                address: address.clone(),
                status,
                snapshots,
            });
        }
        Ok(members)
    }

    /// An unfinished restore: the same id, snapshot, token and cluster.
    async fn decide_resume(&mut self, members: &[Member], resume: plan::Resume) -> Result<Decided, Stop> {
        self.report.resumed = true;
        match self.options.source.clone() {
            SnapshotSource::Id(id) if id != resume.snapshot_id => {
                return Err(self.refuse(
                    ids::UNFINISHED,
                    format!(
                        "restore {} of snapshot {} is unfinished; finish it first (steward restore --snapshot {})",
                        resume.id, resume.snapshot_id, resume.snapshot_id
                    ),
                ));
            }
            SnapshotSource::File(path) => {
                let (sha256, _) = verify_local(&path)
                    .await
                    .map_err(|e| self.refuse(ids::SNAPSHOT_VERIFIED, e.to_string()))?;
                if sha256 != resume.snapshot_sha256 {
                    return Err(self.refuse(
                        ids::UNFINISHED,
                        format!(
                            "restore {} of snapshot {} is unfinished, and {} is another snapshot; finish it first \
                         (steward restore --snapshot {})",
                            resume.id,
                            resume.snapshot_id,
                            path.display(),
                            resume.snapshot_id
                        ),
                    ));
                }
            }
            SnapshotSource::Id(_) => {}
        }
        // Members the earlier run did not reach restore with the version
        // the others recorded, when they all agree (a rollback to a
        // snapshot), else as a fresh restore would.
        let common = resume
            .versions
            .first()
            .map(|(_, v)| v.clone())
            .filter(|first| resume.versions.iter().all(|(_, v)| v == first));
        let asked = self.options.version.clone().or(common);
        let mut versions = Vec::new();
        for member in members {
            let version = match resume.versions.iter().find(|(name, _)| *name == member.facts.name) {
                Some((_, version)) => version.clone(),
                None => plan::version_for(&member.facts, asked.as_ref())
                    .map_err(|e| self.refuse(ids::RESTORE_VERSION, e.to_string()))?,
            };
            versions.push((member.facts.name.clone(), version));
        }
        let snapshot = members
            .iter()
            .flat_map(|m| m.snapshots.iter())
            .find(|s| s.id == resume.snapshot_id)
            .map(restored_snapshot)
            .unwrap_or_else(|| RestoredSnapshot {
                id: resume.snapshot_id.clone(),
                sha256: resume.snapshot_sha256.clone(),
                ..RestoredSnapshot::default()
            });
        self.report.restore_id = Some(resume.id.clone());
        self.report.snapshot = Some(snapshot.clone());
        Ok(Decided {
            id: resume.id,
            snapshot,
            initial_cluster: resume.initial_cluster,
            token: resume.initial_cluster_token,
            versions,
            fencing_token: 0,
        })
    }

    /// A new restore: the lock, the cluster as it is, the snapshot, the
    /// versions. Everything here is read-only on the members.
    async fn decide_fresh(&mut self, members: &[Member]) -> Result<Decided, Stop> {
        // Observed first: the lock's own write is no revision the operator
        // loses.
        self.observe_cluster(members).await?;
        let fencing_token = self.take_lock(members).await?;
        let snapshot = self.locate_snapshot(members).await?;
        let mut versions = Vec::new();
        for member in members {
            let version = plan::version_for(&member.facts, self.options.version.as_ref())
                .map_err(|e| self.refuse(ids::RESTORE_VERSION, e.to_string()))?;
            versions.push((member.facts.name.clone(), version));
        }
        let facts: Vec<MemberFacts> = members.iter().map(|m| m.facts.clone()).collect();
        let initial_cluster =
            plan::initial_cluster(&facts).map_err(|e| failure(None, Gate::InitialCluster, e.to_string()))?;
        let id = plan::restore_id(time::OffsetDateTime::now_utc());
        let token = plan::cluster_token(self.options.label.as_deref(), &id);
        self.report.restore_id = Some(id.clone());
        self.report.snapshot = Some(snapshot.clone());
        if let Some(before) = self.report.revision_before {
            self.report.revisions_lost = Some((before - snapshot.revision).max(0));
        }
        Ok(Decided {
            id,
            snapshot,
            initial_cluster,
            token,
            versions,
            fencing_token,
        })
    }

    /// A refusal, as a failed check naming its rule.
    /// Refuses the restore because the agent at `address` does not answer.
    fn refuse_unanswered(&mut self, address: &AgentAddress, error: &str) -> Stop {
        let member = self
            .options
            .member_names
            .iter()
            .find(|(a, _)| a == address)
            .map_or_else(|| "a member".to_owned(), |(_, name)| name.clone());
        let why = if error.contains(&address.to_string()) {
            error.to_owned()
        } else {
            format!("its agent {address} does not answer ({error})")
        };
        self.refuse(
            ids::AGENTS,
            format!("{member} has no agent: {why}; a restore needs every member's agent"),
        )
    }

    fn refuse(&mut self, rule: &'static str, reason: impl Into<String>) -> Stop {
        let check = Check {
            rule,
            verdict: Verdict::Fail,
            message: reason.into(),
            source: "steward",
        };
        self.emit(&Event::Check(check.clone()));
        self.report.checks.push(check);
        Stop::Refused
    }

    /// Takes the cluster lock. A cluster that does not answer cannot hold
    /// a lock for anyone: the restore goes on without (a warning says so).
    async fn take_lock(&mut self, members: &[Member]) -> Result<i64, Stop> {
        let endpoints = client_urls(members);
        let command = format!("restore from {}", self.source_text());
        let prefix = self.options.lock_prefix.clone();
        match lock::take_for_run(&self.connector, &endpoints, &prefix, &command, &mut *self.events).await {
            Ok(taken) => {
                let token = taken.token();
                self.report.header.fencing_token = token;
                self.lock = Some(taken);
                self.check(lock::one_coordinator(
                    Verdict::Pass,
                    format!("took the cluster lock (fencing token {token})"),
                ))?;
                Ok(token)
            }
            Err(error) => {
                // A cluster without quorum holds no lock for anyone: the
                // restore goes on without, and says so.
                let mut check = lock::refusal(&error, Verdict::Warn);
                if check.verdict == Verdict::Warn {
                    check.message.push_str(
                        "; a cluster without quorum holds no lock for anyone, so the restore goes on without",
                    );
                }
                self.check(check)?;
                Ok(0)
            }
        }
    }

    /// The member list against the agents, and the revision that will be
    /// lost, when etcd answers.
    async fn observe_cluster(&mut self, members: &[Member]) -> Result<(), Stop> {
        match observe(&self.connector, &self.agents, &[]).await {
            Ok(observation) => {
                let observed = observation.observed;
                self.report.header.set_cluster_id(observed.cluster_id);
                let without: Vec<&str> = observed
                    .members
                    .iter()
                    .filter(|m| !members.iter().any(|a| a.facts.name == m.name))
                    .map(|m| m.name.as_str())
                    .collect();
                self.report.revision_before = observed.members.iter().map(|m| m.revision).max();
                let check = if without.is_empty() {
                    Check {
                        rule: ids::AGENTS,
                        verdict: Verdict::Pass,
                        message: format!("every one of the {} members has an agent", observed.members.len()),
                        source: "steward",
                    }
                } else {
                    Check {
                        rule: ids::AGENTS,
                        verdict: Verdict::Fail,
                        message: format!(
                            "{} {} no agent among those given; a restore replaces every member's data",
                            without.join(", "),
                            if without.len() == 1 { "has" } else { "have" }
                        ),
                        source: "steward",
                    }
                };
                self.check(check)
            }
            Err(error) => self.check(Check {
                rule: ids::AGENTS,
                verdict: Verdict::Warn,
                message: format!(
                    "etcd does not answer ({}); restoring the {} members the agents serve",
                    crate::engine::error::chain(&error),
                    members.len()
                ),
                source: "steward",
            }),
        }
    }

    fn source_text(&self) -> String {
        match &self.options.source {
            SnapshotSource::Id(id) => format!("snapshot {id}"),
            SnapshotSource::File(path) => path.display().to_string(),
        }
    }

    /// The snapshot to restore, verified: an agent's (verified again when
    /// it is downloaded or restored), or a local file (its trailer checked
    /// here, its database by every agent it is sent to).
    async fn locate_snapshot(&mut self, members: &[Member]) -> Result<RestoredSnapshot, Stop> {
        match self.options.source.clone() {
            SnapshotSource::Id(id) => {
                let found = members.iter().flat_map(|m| m.snapshots.iter()).find(|s| s.id == id);
                match found {
                    Some(info) => {
                        let snapshot = restored_snapshot(info);
                        self.check(Check {
                            rule: ids::SNAPSHOT_VERIFIED,
                            verdict: Verdict::Pass,
                            message: format!(
                                "snapshot {id}: revision {}, {} bytes, sha256 {}, written by a {} cluster",
                                snapshot.revision, snapshot.size, snapshot.sha256, snapshot.db_cluster_version
                            ),
                            source: "steward",
                        })?;
                        Ok(snapshot)
                    }
                    None => {
                        let kept: std::collections::BTreeSet<&str> = members
                            .iter()
                            .flat_map(|m| m.snapshots.iter().map(|s| s.id.as_str()))
                            .collect();
                        Err(self.refuse(ids::SNAPSHOT_VERIFIED, format!(
                            "no agent keeps a snapshot {id:?} (they keep: {}); give its id from `steward backups`, or \
                             a file",
                            if kept.is_empty() {
                                "none".to_owned()
                            } else {
                                kept.into_iter().collect::<Vec<_>>().join(", ")
                            }
                        )))
                    }
                }
            }
            SnapshotSource::File(path) => {
                // Only the trailer is read now. The content is hashed
                // while the agents receive their copies (each checks its
                // own against the same trailer), and the verdict comes
                // before anything relies on the snapshot: see
                // `local_file_verified`.
                let claim = read_claim(&path)
                    .await
                    .map_err(|e| self.refuse(ids::SNAPSHOT_VERIFIED, e.to_string()))?;
                let snapshot = RestoredSnapshot {
                    id: format!("file-{}", &claim.sha256[..16]),
                    sha256: claim.sha256.clone(),
                    size: claim.size,
                    taken_from: path.display().to_string(),
                    ..RestoredSnapshot::default()
                };
                self.local_check = Some(LocalCheck::start(path, claim));
                Ok(snapshot)
            }
        }
    }

    /// The verdict on the operator's snapshot file, once its hash is done;
    /// nothing when the snapshot is no local file or was judged already.
    /// It comes before any agent's verdict on its copy of the same bytes,
    /// so a damaged file is refused for what it is, in the same words
    /// every time.
    async fn local_file_verified(&mut self) -> Result<(), Stop> {
        let Some(check) = self.local_check.take() else {
            return Ok(());
        };
        let path = check.path().display().to_string();
        match check.finish().await {
            Ok((sha256, size)) => self.check(Check {
                rule: ids::SNAPSHOT_VERIFIED,
                verdict: Verdict::Pass,
                message: format!("{path}: {size} bytes, sha256 trailer {sha256} matches"),
                source: "steward",
            }),
            Err(error) => Err(self.refuse(ids::SNAPSHOT_VERIFIED, error.to_string())),
        }
    }

    /// Puts the snapshot on every agent that lacks it (each verifies it and
    /// checks its database), all at once, then checks the versions against
    /// it.
    async fn distribute(&mut self, mut members: Vec<Member>, decided: &Decided) -> Result<Vec<Member>, Stop> {
        let id = decided.snapshot.id.clone();
        let mut snapshot = decided.snapshot.clone();
        let mut lacking = Vec::new();
        for (i, member) in members.iter().enumerate() {
            let Some(info) = member.snapshots.iter().find(|s| s.id == id) else {
                lacking.push(i);
                continue;
            };
            if !decided.snapshot.sha256.is_empty() && info.sha256 != decided.snapshot.sha256 {
                return Err(self.refuse(
                    ids::SNAPSHOT_VERIFIED,
                    format!(
                        "{} keeps a snapshot {id} with sha256 {}, not {}; remove it there or restore another",
                        member.facts.name, info.sha256, decided.snapshot.sha256
                    ),
                ));
            }
            learn(&mut snapshot, info);
        }
        if lacking.is_empty() {
            self.local_file_verified().await?;
            return self.versions_against(members, decided, snapshot);
        }
        let source = self.source_file(&members, &id).await?;
        // An operator's file may also lie on the agents' hosts, in a
        // directory they import from (shared storage, or one machine):
        // each agent then reads it there instead of receiving a stream.
        let importable = match &self.options.source {
            SnapshotSource::File(path) => std::fs::canonicalize(path).ok(),
            SnapshotSource::Id(_) => None,
        };
        let header = pb::SnapshotUploadHeader {
            id: id.clone(),
            sha256: snapshot.sha256.clone(),
            size: snapshot.size,
            member_name: snapshot.taken_from.clone(),
            etcd_version: String::new(),
            cluster_version: snapshot.db_cluster_version.clone(),
            created_at: None,
            fencing_token: decided.fencing_token,
        };
        let mut connected = Vec::new();
        for &i in &lacking {
            let name = members[i].facts.name.clone();
            connected.push((i, self.connect(&members[i].address, &name).await?));
        }
        // Every agent receives and checks its copy at the same time: on
        // separate hosts the restore waits for the slowest, not the sum.
        // Those that can read the file on their own host do; the others
        // get one stream each from a single read of the file here, once
        // the imports answered. An agent refuses an import it cannot do
        // at once, before it reads anything, so when no agent imports (a
        // file on the operator's machine) the streams start at once; when
        // some import and others cannot, the streams follow the imports.
        let mut answers = Vec::new();
        let mut uploads = Vec::new();
        match importable {
            Some(path) => {
                let imports = connected.into_iter().map(|(i, mut clients)| {
                    let (path, header) = (path.clone(), header.clone());
                    async move {
                        let answer =
                            crate::engine::transfer::upload::import_snapshot(&mut clients, &path, header).await;
                        (i, clients, answer)
                    }
                });
                for (i, clients, answer) in futures::future::join_all(imports).await {
                    match answer {
                        Ok(Some(answer)) => answers.push((i, Ok((answer, StageMethod::Imported)))),
                        Ok(None) => uploads.push((i, clients)),
                        Err(error) => answers.push((i, Err(error))),
                    }
                }
            }
            None => uploads = connected,
        }
        if !uploads.is_empty() {
            let (indexes, clients): (Vec<usize>, Vec<AgentClients>) = uploads.into_iter().unzip();
            let sent = match crate::engine::transfer::upload::upload_snapshot_to_all(clients, &source, &header).await {
                Ok(sent) => sent,
                Err(error) => {
                    // A file that changed under the read is refused for
                    // that first.
                    self.local_file_verified().await?;
                    return Err(failure(None, Gate::SendSnapshot, error.to_string()).into());
                }
            };
            answers.extend(
                indexes
                    .into_iter()
                    .zip(sent)
                    .map(|(i, answer)| (i, answer.map(|answer| (answer, StageMethod::Uploaded)))),
            );
        }
        self.local_file_verified().await?;
        for (i, answer) in answers {
            let name = members[i].facts.name.clone();
            match answer {
                Ok((answer, method)) => {
                    let info = answer.snapshot.unwrap_or_default();
                    self.emit(&Event::SnapshotSent {
                        member: name.clone(),
                        id: id.clone(),
                        already_present: answer.already_present,
                        method,
                    });
                    learn(&mut snapshot, &info);
                    members[i].snapshots.push(info);
                }
                Err(Error::Rpc {
                    code: tonic::Code::InvalidArgument | tonic::Code::AlreadyExists,
                    message,
                    ..
                }) => {
                    return Err(self.refuse(
                        ids::SNAPSHOT_VERIFIED,
                        format!("{name}'s agent refused the snapshot: {message}"),
                    ));
                }
                Err(error) => return Err(failure(Some(&name), Gate::SendSnapshot, error.to_string()).into()),
            }
        }
        self.versions_against(members, decided, snapshot)
    }

    /// Records the snapshot in the report and checks every member's
    /// version against it.
    fn versions_against(
        &mut self,
        members: Vec<Member>,
        decided: &Decided,
        snapshot: RestoredSnapshot,
    ) -> Result<Vec<Member>, Stop> {
        let id = &decided.snapshot.id;
        if self.report.revision_before.is_some() && snapshot.revision > 0 {
            self.report.revisions_lost = self.report.revision_before.map(|b| (b - snapshot.revision).max(0));
        }
        let db_cluster_version = snapshot.db_cluster_version.clone();
        self.report.snapshot = Some(snapshot);
        let facts: Vec<MemberFacts> = members.iter().map(|m| m.facts.clone()).collect();
        for check in plan::version_checks(&facts, &decided.versions, id, &db_cluster_version) {
            self.check(check)?;
        }
        Ok(members)
    }

    /// A local file holding snapshot `id`: the operator's file, or a copy
    /// downloaded (and verified) once from an agent that keeps it.
    async fn source_file(&mut self, members: &[Member], id: &str) -> Result<PathBuf, Stop> {
        if let SnapshotSource::File(path) = &self.options.source {
            return Ok(path.clone());
        }
        if let Some(dir) = &self.relay {
            return Ok(dir.path().join("snapshot.db"));
        }
        let holder = members
            .iter()
            .find(|m| m.snapshots.iter().any(|s| s.id == id))
            .ok_or_else(|| {
                failure(
                    None,
                    Gate::SendSnapshot,
                    format!("no agent keeps snapshot {id} any more"),
                )
            })?;
        let dir = tempfile::Builder::new()
            .prefix("steward-restore-")
            .tempdir()
            .map_err(|e| failure(None, Gate::SendSnapshot, format!("cannot create a temp dir: {e}")))?;
        let file = dir.path().join("snapshot.db");
        let name = holder.facts.name.clone();
        let mut clients = self.connect(&holder.address, &name).await?;
        Box::pin(crate::engine::transfer::download::download(&mut clients, id, &file))
            .await
            .map_err(|e| failure(Some(&name), Gate::SendSnapshot, e.to_string()))?;
        self.relay = Some(dir);
        Ok(file)
    }

    async fn connect(&self, address: &AgentAddress, member: &str) -> Result<AgentClients, Stop> {
        agent::connect(&self.connector, address)
            .await
            .map_err(|e| failure(Some(member), Gate::Connect, e.to_string()).into())
    }

    /// Asks every agent that will restore whether it could, changing
    /// nothing: its own checks (the version's flags and restore tool, the
    /// snapshot's database with that tool, the data dir's filesystem and
    /// free space, no separate WAL dir) run while the cluster still runs.
    async fn dry_run(&mut self, members: &[Member], decided: &Decided) -> Result<(), Stop> {
        let mut asked = Vec::new();
        for member in members {
            if !plan::steps(&member.facts, &decided.id).contains(&Step::Restore) {
                continue;
            }
            let name = member.facts.name.clone();
            let request = restore_request(decided, &name, true)?;
            asked.push((name.clone(), self.connect(&member.address, &name).await?, request));
        }
        // All agents at once: each checks the snapshot's database, which
        // takes as long as reading it.
        let answers = asked
            .into_iter()
            .map(|(name, mut clients, request)| async move { (name, clients.agent.restore_member(request).await) });
        let problems: Vec<String> = futures::future::join_all(answers)
            .await
            .into_iter()
            .filter_map(|(name, answer)| answer.err().map(|status| format!("{name}: {}", status.message())))
            .collect();
        let check = if problems.is_empty() {
            Check {
                rule: ids::AGENT_CHECKS,
                verdict: Verdict::Pass,
                message: "every agent would restore its member (a dry run of RestoreMember)".into(),
                source: "steward",
            }
        } else {
            Check {
                rule: ids::AGENT_CHECKS,
                verdict: Verdict::Fail,
                message: problems.join("; "),
                source: "steward",
            }
        };
        self.check(check)
    }

    /// What the operator confirms: what is replaced, what is lost, what is
    /// kept.
    fn question(&self, decided: &Decided, members: &[Member]) -> String {
        let snapshot = &decided.snapshot;
        let names: Vec<&str> = members.iter().map(|m| m.facts.name.as_str()).collect();
        let lost = match (self.report.revision_before, self.report.revisions_lost) {
            (Some(before), Some(lost)) => format!(
                "The cluster is at revision {before}: the {lost} revisions written after the snapshot are lost."
            ),
            _ => "The cluster's current revision cannot be read: everything written after the snapshot is lost."
                .to_owned(),
        };
        let versions: Vec<String> = decided.versions.iter().map(|(n, v)| format!("{n} {v}")).collect();
        let verb = if self.report.resumed {
            "Finish restoring"
        } else {
            "Restore"
        };
        format!(
            "{verb} snapshot {} (revision {}, sha256 {}) onto all {} members ({}), running {}.\n{lost}\nEvery \
             member's current data is kept inside its data dir, as <data dir>/.before-restore-{}.",
            snapshot.id,
            snapshot.revision,
            snapshot.sha256,
            names.len(),
            names.join(", "),
            versions.join(", "),
            decided.id
        )
    }

    /// Stops every member (the leader last, so the old cluster elects as
    /// little as possible), then replaces every data dir at once: the
    /// cluster is down from the second stop on anyway, and on separate
    /// hosts the restores take as long as the slowest, not the sum.
    async fn replace(&mut self, members: &[Member], decided: &Decided) -> Result<(), Stop> {
        let mut order: Vec<&Member> = members.iter().collect();
        order.sort_by_key(|m| m.status.member.as_ref().is_some_and(|s| s.is_leader));
        let mut to_restore = Vec::new();
        for member in order {
            let name = member.facts.name.clone();
            let steps = plan::steps(&member.facts, &decided.id);
            let mut clients = self.connect(&member.address, &name).await?;
            if steps.contains(&Step::Stop) {
                if !self.stopped_any
                    && let Some(mut lock) = self.lock.take()
                {
                    lock.ensure_held()
                        .await
                        .map_err(|lost| failure(Some(&name), Gate::Lock, lost.to_string()))?;
                    // From here on the old cluster goes away, and with it
                    // the lock. Its lease is left to expire: no other
                    // coordinator takes it while members stop. The renewal
                    // stream goes now, or etcd 3.5 waits for it to end
                    // before it stops (seconds per member).
                    lock.abandon();
                }
                self.stopped_any = true;
                clients
                    .agent
                    .stop(pb::StopRequest {
                        fencing_token: decided.fencing_token,
                    })
                    .await
                    .map_err(|s| {
                        failure(
                            Some(&name),
                            Gate::Stop,
                            Error::from_status(&member.address, !self.connector.agent_uses_tls(), "Stop", &s)
                                .to_string(),
                        )
                    })?;
                self.emit(&Event::MemberStopped { member: name.clone() });
            }
            if steps.contains(&Step::Restore) {
                let request = restore_request(decided, &name, false)?;
                to_restore.push((member, clients, request));
            }
        }
        for (member, _, request) in &to_restore {
            self.emit(&Event::MemberRestoring {
                member: member.facts.name.clone(),
                version: request.version.clone(),
            });
        }
        let plaintext = !self.connector.agent_uses_tls();
        let restores = to_restore.into_iter().map(|(member, mut clients, request)| async move {
            let began = Instant::now();
            let answer = clients.agent.restore_member(request).await;
            (member, answer, millis(began.elapsed()))
        });
        // Every member that was restored is said so, even when another
        // failed: a rerun goes on from what each agent did.
        let mut failed = None;
        for (member, answer, took_ms) in futures::future::join_all(restores).await {
            let name = member.facts.name.clone();
            match answer {
                Ok(answer) => {
                    let info = answer.into_inner().restore.unwrap_or_default();
                    self.emit(&Event::MemberRestored {
                        member: name,
                        version: info.version.clone(),
                        moved_aside_to: info.moved_aside_to.clone(),
                        took_ms,
                    });
                }
                Err(status) if failed.is_none() => {
                    failed = Some(failure(
                        Some(&name),
                        Gate::Restore,
                        Error::from_status(&member.address, plaintext, "RestoreMember", &status).to_string(),
                    ));
                }
                Err(status) => {
                    tracing::warn!(member = %name, error = %status.message(), "this member's restore failed too");
                }
            }
        }
        failed.map_or(Ok(()), |failure| Err(failure.into()))
    }

    /// Starts every member that does not run yet. Restored members each
    /// wait for the others to form a quorum, so they start together.
    async fn start(&mut self, members: &[Member]) -> Result<(), Stop> {
        for member in members {
            let name = member.facts.name.clone();
            let mut clients = self.connect(&member.address, &name).await?;
            let status = clients
                .agent
                .get_status(pb::GetStatusRequest {})
                .await
                .map_err(|s| {
                    failure(
                        Some(&name),
                        Gate::Start,
                        Error::from_status(&member.address, !self.connector.agent_uses_tls(), "GetStatus", &s)
                            .to_string(),
                    )
                })?
                .into_inner();
            if status.process.as_ref().is_some_and(|p| p.running) {
                continue;
            }
            // The restore reset the agent's fencing mark: the old cluster's
            // lock revisions mean nothing in the restored one.
            let started = clients
                .agent
                .start(pb::StartRequest { fencing_token: 0 })
                .await
                .map_err(|s| {
                    failure(
                        Some(&name),
                        Gate::Start,
                        Error::from_status(&member.address, !self.connector.agent_uses_tls(), "Start", &s).to_string(),
                    )
                })?
                .into_inner();
            self.emit(&Event::EtcdStarted {
                member: name,
                pid: started.pid,
            });
        }
        Ok(())
    }

    /// Waits until the restored cluster has every member, is healthy with
    /// one leader, agrees on HashKV, and holds the snapshot's revision.
    async fn wait_restored(&mut self, members: &[Member], decided: &Decided) -> Result<(), Stop> {
        let deadline = Instant::now() + self.options.timeout;
        let names: Vec<&str> = members.iter().map(|m| m.facts.name.as_str()).collect();
        loop {
            let problem = match observe(&self.connector, &self.agents, &[]).await {
                Ok(observation) => {
                    let observed = observation.observed;
                    let mut listed: Vec<&str> = observed.members.iter().map(|m| m.name.as_str()).collect();
                    listed.sort_unstable();
                    let mut wanted = names.clone();
                    wanted.sort_unstable();
                    let revision = observed.members.iter().map(|m| m.revision).min().unwrap_or(0);
                    if listed != wanted {
                        Some(format!("the member list is {}", listed.join(", ")))
                    } else if let Some(sick) = observed.members.iter().find(|m| !m.healthy) {
                        Some(format!("{} is not healthy: {}", sick.name, sick.health_error))
                    } else if observed.leader().is_none() {
                        Some("no single leader".into())
                    } else if revision < decided.snapshot.revision {
                        Some(format!(
                            "revision {revision} is below the snapshot's {}",
                            decided.snapshot.revision
                        ))
                    } else if let Some(differ) =
                        crate::engine::roll::hash_kv_disagreement(&self.connector, &observed).await
                    {
                        Some(differ)
                    } else {
                        self.report.revision = observed.members.iter().map(|m| m.revision).max();
                        self.report.members = members
                            .iter()
                            .map(|m| {
                                let now = observed.members.iter().find(|o| o.name == m.facts.name);
                                RestoredMember {
                                    name: m.facts.name.clone(),
                                    id: now.map(|o| format!("{:016x}", o.id)).unwrap_or_default(),
                                    version: now
                                        .and_then(|o| o.version.as_ref())
                                        .map(ToString::to_string)
                                        .unwrap_or_default(),
                                    data_dir: m.status.data_dir.as_ref().map(|d| d.path.clone()).unwrap_or_default(),
                                    moved_aside_to: String::new(),
                                }
                            })
                            .collect();
                        None
                    }
                }
                Err(error) => Some(crate::engine::error::chain(&error)),
            };
            match problem {
                None => return Ok(()),
                Some(problem) if Instant::now() >= deadline => {
                    return Err(failure(
                        None,
                        Gate::RestoredCluster,
                        format!(
                            "not healthy within {}: {problem}",
                            humantime::format_duration(self.options.timeout)
                        ),
                    )
                    .into());
                }
                Some(_) => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// Removes what the snapshot brought back from before it (the cluster
    /// lock of a coordinator that is gone, the record of the upgrade that
    /// was undone), and tells every agent the restore is finished.
    async fn clean_up(&mut self, members: &[Member], decided: &Decided) -> Result<(), Failure> {
        let endpoints = client_urls(members);
        if let Err(error) = self.drop_stale_keys(&endpoints, decided).await {
            tracing::warn!(%error, "cannot remove keys the snapshot brought back");
        }
        let mut kept = Vec::new();
        for member in members {
            let name = member.facts.name.clone();
            let mut clients = agent::connect(&self.connector, &member.address)
                .await
                .map_err(|e| failure(Some(&name), Gate::Finish, e.to_string()))?;
            match clients
                .agent
                .finish_restore(pb::FinishRestoreRequest {
                    restore_id: decided.id.clone(),
                })
                .await
            {
                Ok(answer) => {
                    if let Some(info) = answer.into_inner().restore {
                        kept.push((name, info.moved_aside_to));
                    }
                }
                Err(status) => {
                    return Err(failure(
                        Some(&name),
                        Gate::Finish,
                        format!(
                            "{}; the cluster runs from the restore, and running the same command again marks it finished",
                            Error::from_status(
                                &member.address,
                                !self.connector.agent_uses_tls(),
                                "FinishRestore",
                                &status
                            )
                        ),
                    ));
                }
            }
        }
        for member in &mut self.report.members {
            if let Some((_, aside)) = kept.iter().find(|(n, _)| *n == member.name) {
                member.moved_aside_to.clone_from(aside);
            }
        }
        self.emit(&Event::ClusterRestored {
            restore_id: decided.id.clone(),
            revision: self.report.revision.unwrap_or_default(),
            members: self
                .report
                .members
                .iter()
                .map(|m| format!("{}={}", m.name, m.id))
                .collect(),
            took_ms: millis(self.began.elapsed()),
        });
        Ok(())
    }

    async fn drop_stale_keys(&self, endpoints: &[String], decided: &Decided) -> Result<(), EtcdError> {
        let mut client = etcd::connect(&self.connector, endpoints, "the restored cluster").await?;
        let prefix = self.options.lock_prefix.trim_end_matches('/');
        let key = format!("{prefix}/lock");
        let answer = client.get(key.as_str(), None).await.map_err(|e| EtcdError {
            endpoints: endpoints.join(","),
            what: "the restored cluster's lock",
            reason: etcd::describe(&e),
        })?;
        if let Some(kv) = answer.kvs().first()
            && kv.create_revision() <= decided.snapshot.revision
        {
            tracing::info!(%key, "removing the cluster lock the snapshot brought back");
            if kv.lease() != 0 {
                let _ = client.lease_revoke(kv.lease()).await;
            }
            let _ = client.delete(key.as_str(), None).await;
        }
        if let Purpose::RollbackToSnapshot { upgraded_from } = &self.options.purpose
            && let Ok(Some(record)) = crate::engine::roll::last_roll::read(&self.connector, endpoints, prefix).await
            && record.direction == crate::engine::roll::plan::Direction::Upgrade
            && record.from == upgraded_from.to_string()
        {
            crate::engine::roll::last_roll::remove(&self.connector, endpoints, prefix).await?;
        }
        Ok(())
    }
}

/// What an agent found out about the snapshot (its database's cluster
/// version, its revision when the agent could read it).
/// The RestoreMember call for member `name`.
fn restore_request(decided: &Decided, name: &str, dry_run: bool) -> Result<pb::RestoreMemberRequest, Failure> {
    Ok(pb::RestoreMemberRequest {
        restore_id: decided.id.clone(),
        snapshot_id: decided.snapshot.id.clone(),
        version: version_of(decided, name)?.to_string(),
        initial_cluster: decided.initial_cluster.clone(),
        initial_cluster_token: decided.token.clone(),
        fencing_token: decided.fencing_token,
        dry_run,
    })
}

fn learn(snapshot: &mut RestoredSnapshot, info: &pb::SnapshotInfo) {
    if snapshot.db_cluster_version.is_empty() {
        snapshot.db_cluster_version.clone_from(&info.db_cluster_version);
    }
    snapshot.revision = snapshot.revision.max(info.revision);
}

fn version_of(decided: &Decided, name: &str) -> Result<EtcdVersion, Failure> {
    decided
        .versions
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
        .ok_or_else(|| failure(Some(name), Gate::Restore, "no version was decided for this member"))
}

fn client_urls(members: &[Member]) -> Vec<String> {
    members
        .iter()
        .filter_map(|m| m.status.agent.as_ref().and_then(|a| a.client_urls.first().cloned()))
        .collect()
}

fn restored_snapshot(info: &pb::SnapshotInfo) -> RestoredSnapshot {
    RestoredSnapshot {
        id: info.id.clone(),
        sha256: info.sha256.clone(),
        size: info.size,
        revision: info.revision,
        db_cluster_version: info.db_cluster_version.clone(),
        taken_from: info.member_name.clone(),
        created_at: info
            .created_at
            .as_ref()
            .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.seconds).ok())
            .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
            .unwrap_or_default(),
    }
}

/// The agent's answers as the planner reads them.
fn facts_of(
    address: &AgentAddress,
    status: &pb::GetStatusResponse,
    binaries: &pb::ListBinariesResponse,
) -> MemberFacts {
    let agent = status.agent.clone().unwrap_or_default();
    let restore = status.restore.as_ref().map(|r| RecordedRestore {
        id: r.restore_id.clone(),
        phase: match pb::RestorePhase::try_from(r.phase) {
            Ok(pb::RestorePhase::Finished) => Phase::Finished,
            Ok(pb::RestorePhase::Restored) => Phase::Restored,
            _ => Phase::Restoring,
        },
        snapshot_id: r.snapshot_id.clone(),
        snapshot_sha256: r.snapshot_sha256.clone(),
        version: r.version.clone(),
        initial_cluster: r.initial_cluster.clone(),
        initial_cluster_token: r.initial_cluster_token.clone(),
    });
    MemberFacts {
        name: agent.member_name,
        agent: address.to_string(),
        running: status.process.as_ref().is_some_and(|p| p.running),
        supervised: agent.state == i32::from(pb::AgentState::Running),
        active: status.versions.as_ref().and_then(|v| v.active.parse().ok()),
        peer_urls: agent.peer_urls,
        restore,
        staged_tools: binaries
            .versions
            .iter()
            .filter_map(|v| {
                let version = v.version.parse().ok()?;
                let tools = v.files.iter().map(|f| crate::format::tool(f.tool)).collect();
                Some((version, tools))
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_a_file_and_a_name_is_an_id() {
        assert_eq!(
            SnapshotSource::parse("./backup.db"),
            SnapshotSource::File("./backup.db".into())
        );
        assert_eq!(
            SnapshotSource::parse("m0-20261121T100000.123Z"),
            SnapshotSource::Id("m0-20261121T100000.123Z".into())
        );
    }
}
