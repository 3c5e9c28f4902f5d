//! Many clusters at once: an [`inventory`] of cluster files, grouped into
//! [`waves`], each cluster's job run by [`schedule`] under its own lock,
//! journal and connection settings, and one [`FleetReport`] at the end.
//!
//! The jobs are the single-cluster engine's: [`roll::run`] for a change,
//! [`backup::backup`], [`observe_target`] and [`roll::preflight`] for
//! status and plan. A rerun of the same change skips the clusters already
//! done and resumes the one that was interrupted, as a rerun of one
//! cluster does.

pub mod inventory;
pub mod schedule;
pub mod waves;

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use serde_json::json;

use crate::engine::backup::{self, BackupRequest};
use crate::engine::cluster::file::{ClusterFile, ClusterFileError, ClusterTarget};
use crate::engine::cluster::observe::{Observation, ObserveError, observe_target};
use crate::engine::cluster::observed::Observed;
use crate::engine::connect::Connector;
use crate::engine::error::{Error, chain};
use crate::engine::events::EventSink;
use crate::engine::report::{FLEET_SCHEMA, RunContext, millis, now_rfc3339};
use crate::engine::roll::last_roll;
use crate::engine::roll::{self, Change, Outcome, RollOptions, RollRequest};
use inventory::{FleetCluster, Inventory};
use schedule::{ClusterOutcome, ClusterResult, StopRule, run_waves};
use waves::Wave;

/// Makes the event sink of one cluster's run.
pub type SinkFactory<'a> = dyn Fn(&RunContext) -> Box<dyn EventSink> + 'a;

/// What every fleet command needs.
pub struct Fleet<'a> {
    /// Connection settings the command line chose; each cluster file adds
    /// its own where these say nothing.
    pub connector: &'a Connector,
    /// The clusters.
    pub inventory: &'a Inventory,
    /// In which order.
    pub waves: Vec<Wave>,
    /// When to stop starting clusters.
    pub stop: StopRule,
    /// The run (one id for every cluster).
    pub context: RunContext,
    /// Where each cluster's events go.
    pub events: &'a SinkFactory<'a>,
}

impl std::fmt::Debug for Fleet<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("inventory", &self.inventory.path)
            .field("waves", &self.waves)
            .field("stop", &self.stop)
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

/// The report of a fleet command (`steward.fleet-report/v1`).
#[derive(Debug, Clone, Serialize)]
pub struct FleetReport {
    /// `steward.fleet-report/v1`.
    pub schema: &'static str,
    /// The run's id, also in every cluster's report and event line.
    pub run: String,
    /// What was asked: `upgrade to 3.5.16`, `status`, ...
    pub command: String,
    /// The inventory file.
    pub inventory: String,
    /// When the run began, RFC 3339 in UTC.
    pub started_at: String,
    /// The steward that ran it.
    pub steward_version: &'static str,
    /// The worst cluster result (`succeeded` when every cluster succeeded
    /// or had nothing to do).
    pub result: ClusterOutcome,
    /// The waves, in order.
    pub waves: Vec<Wave>,
    /// Milliseconds in all.
    pub took_ms: u64,
    /// One line per cluster, in inventory order.
    pub clusters: Vec<ClusterResult>,
}

/// The worst of `results` (see [`ClusterOutcome::severity`]).
#[must_use]
pub fn worst(results: &[ClusterResult]) -> ClusterOutcome {
    results
        .iter()
        .map(|r| r.result)
        .filter(|r| r.severity() > 0)
        .max_by_key(|r| r.severity())
        .unwrap_or(ClusterOutcome::Succeeded)
}

/// Why a cluster of the fleet could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ReachError {
    /// Its cluster file cannot be used.
    #[error(transparent)]
    File(#[from] ClusterFileError),
    /// Its TLS or password files cannot be read.
    #[error(transparent)]
    Connect(#[from] Error),
    /// It could not be observed.
    #[error("cannot observe the cluster: {}", chain(.0))]
    Observe(#[from] ObserveError),
}

/// The cluster file of `cluster` and how to reach it.
///
/// # Errors
/// The cluster file cannot be used, or its TLS or password files cannot be
/// read.
pub fn open(connector: &Connector, cluster: &FleetCluster) -> Result<(ClusterTarget, Connector), ReachError> {
    let file = ClusterFile::load(&cluster.file)?;
    let target = ClusterTarget::from_file(&cluster.file, file);
    let connector = target.connector(connector)?;
    Ok((target, connector))
}

/// Opens and observes `cluster`, or says why it cannot be.
async fn reach(
    connector: &Connector,
    cluster: &FleetCluster,
) -> Result<(ClusterTarget, Connector, Observation), ReachError> {
    let (target, connector) = open(connector, cluster)?;
    let observation = observe_target(&connector, &target).await?;
    Ok((target, connector, observation))
}

/// When a fleet command began: the wall clock for the report, the
/// monotonic clock for its duration.
struct Began {
    at: String,
    clock: Instant,
}

impl Began {
    fn now() -> Self {
        Self {
            at: now_rfc3339(),
            clock: Instant::now(),
        }
    }
}

async fn finish(fleet: &Fleet<'_>, command: String, began: Began, clusters: Vec<ClusterResult>) -> FleetReport {
    FleetReport {
        schema: FLEET_SCHEMA,
        run: fleet.context.run.clone(),
        command,
        inventory: fleet.inventory.path.display().to_string(),
        started_at: began.at,
        steward_version: env!("CARGO_PKG_VERSION"),
        result: worst(&clusters),
        waves: fleet.waves.clone(),
        took_ms: millis(began.clock.elapsed()),
        clusters,
    }
}

/// True when every member runs `target` and the cluster version has
/// followed: a change to `target` has nothing left to do.
#[must_use]
pub fn already_on(observed: &Observed, target: &steward_proto::EtcdVersion) -> bool {
    !observed.members.is_empty()
        && observed.members.iter().all(|m| m.version.as_ref() == Some(target))
        && observed
            .cluster_version
            .as_ref()
            .is_some_and(|v| v.minor_version() == target.minor_version())
}

/// `steward fleet upgrade|downgrade`: `change` on every cluster, with the
/// run settings of `template` (gate timeout, probe, lock prefix).
pub async fn change(fleet: &Fleet<'_>, change: &Change, template: &RollOptions) -> FleetReport {
    let began = Began::now();
    let command = format!("{} to {}", change.direction, change.target);
    let results = run_waves(fleet.inventory, &fleet.waves, &fleet.stop, |cluster, wave| async move {
        let (target, connector, observation) = match reach(fleet.connector, &cluster).await {
            Ok(reached) => reached,
            Err(error) => return ClusterResult::new(&cluster, &wave, ClusterOutcome::Failed).because(chain(&error)),
        };
        if already_on(&observation.observed, &change.target) {
            return ClusterResult::new(&cluster, &wave, ClusterOutcome::Skipped)
                .because(format!("already on {}", change.target));
        }
        let context = fleet.context.for_cluster(&cluster.name);
        let options = RollOptions {
            request: RollRequest::Change(change.clone()),
            context: context.clone(),
            cancel: fleet.stop.cancel.child_token(),
            ..template.clone()
        };
        let agents = target.members.iter().map(|m| m.agent.clone()).collect();
        let mut sink = (fleet.events)(&context);
        let report = Box::pin(roll::run(&connector, agents, options, &mut *sink)).await;
        let outcome = match report.result {
            Outcome::Succeeded => ClusterOutcome::Succeeded,
            Outcome::Failed => ClusterOutcome::Failed,
            Outcome::Refused => ClusterOutcome::Refused,
            Outcome::Cancelled => ClusterOutcome::Cancelled,
        };
        let mut result = ClusterResult::new(&cluster, &wave, outcome);
        result.reason = match outcome {
            ClusterOutcome::Refused => Some(refusals(&report.checks)),
            _ => report
                .failure
                .as_ref()
                .map(|f| format!("{}: {}", f.location(), f.reason)),
        };
        result.report = serde_json::to_value(&report).ok();
        result
    })
    .await;
    finish(fleet, command, began, results).await
}

/// The failed checks, `rule: message; ...`.
fn refusals(checks: &[roll::rules::Check]) -> String {
    checks
        .iter()
        .filter(|c| c.verdict == roll::rules::Verdict::Fail)
        .map(|c| format!("{}: {}", c.rule, c.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `steward fleet plan`: what `change` would do on every cluster, and
/// whether a check refuses it; nothing is changed.
pub async fn plan(fleet: &Fleet<'_>, change: &Change) -> FleetReport {
    let began = Began::now();
    let command = format!("plan {} to {}", change.direction, change.target);
    let results = run_waves(fleet.inventory, &fleet.waves, &fleet.stop, |cluster, wave| async move {
        let (_, connector, observation) = match reach(fleet.connector, &cluster).await {
            Ok(reached) => reached,
            Err(error) => return ClusterResult::new(&cluster, &wave, ClusterOutcome::Failed).because(chain(&error)),
        };
        if already_on(&observation.observed, &change.target) {
            return ClusterResult::new(&cluster, &wave, ClusterOutcome::Skipped)
                .because(format!("already on {}", change.target));
        }
        let preflight = roll::preflight(&connector, &observation, change).await;
        let passes: Vec<serde_json::Value> = preflight.planned.as_ref().map_or_else(
            |_| Vec::new(),
            |plan| {
                plan.passes
                    .iter()
                    .map(|p| {
                        json!({
                            "target": p.target.to_string(),
                            "order": p.order.iter().filter(|s| !s.done).map(|s| s.member.clone()).collect::<Vec<_>>(),
                        })
                    })
                    .collect()
            },
        );
        let outcome = if preflight.refused() {
            ClusterOutcome::Refused
        } else {
            ClusterOutcome::Succeeded
        };
        let mut result = ClusterResult::new(&cluster, &wave, outcome);
        result.reason = match (&preflight.planned, outcome) {
            (Err(error), _) => Some(error.to_string()),
            (Ok(_), ClusterOutcome::Refused) => Some(refusals(&preflight.checks)),
            _ => None,
        };
        result.report = Some(json!({
            "from": preflight.planned.as_ref().ok().map(|p| p.from.to_string()),
            "passes": passes,
            "checks": preflight.checks,
        }));
        result
    })
    .await;
    finish(fleet, command, began, results).await
}

/// `steward fleet status`: each cluster's health, versions, leader and
/// last change; a cluster that is not healthy or cannot be reached fails.
pub async fn status(fleet: &Fleet<'_>, lock_prefix: &str) -> FleetReport {
    let began = Began::now();
    let results = run_waves(fleet.inventory, &fleet.waves, &fleet.stop, |cluster, wave| async move {
        let (_, connector, observation) = match reach(fleet.connector, &cluster).await {
            Ok(reached) => reached,
            Err(error) => return ClusterResult::new(&cluster, &wave, ClusterOutcome::Failed).because(chain(&error)),
        };
        let observed = &observation.observed;
        let endpoints: Vec<String> = observed
            .members
            .iter()
            .filter(|m| m.healthy)
            .map(|m| m.client_url.clone())
            .collect();
        let last = last_roll::read(&connector, &endpoints, lock_prefix)
            .await
            .ok()
            .flatten();
        let healthy = observed.members.iter().filter(|m| m.healthy).count();
        let sick: Vec<String> = observed
            .members
            .iter()
            .filter(|m| !m.healthy)
            .map(|m| format!("{}: {}", m.name, m.health_error))
            .collect();
        let versions = match (observed.lowest_version(), observed.highest_version()) {
            (Some(low), Some(high)) if low == high => low.to_string(),
            (Some(low), Some(high)) => format!("{low}..{high}"),
            _ => String::new(),
        };
        let mut result = ClusterResult::new(
            &cluster,
            &wave,
            if sick.is_empty() {
                ClusterOutcome::Succeeded
            } else {
                ClusterOutcome::Failed
            },
        );
        if !sick.is_empty() {
            result.reason = Some(format!("not healthy: {}", sick.join("; ")));
        }
        result.report = Some(json!({
            "cluster_id": (observed.cluster_id != 0).then(|| format!("{:016x}", observed.cluster_id)),
            "healthy": healthy,
            "members": observed.members.len(),
            "versions": versions,
            "cluster_version": observed.cluster_version.as_ref().map(ToString::to_string),
            "leader": observed.leader().map(|l| l.name.clone()),
            "last_change": last.map(|l| format!("{} {} -> {}", l.direction, l.from, l.to)),
        }));
        result
    })
    .await;
    finish(fleet, "status".into(), began, results).await
}

/// `steward fleet backup`: a verified snapshot of every cluster through its
/// leader's agent, copied to `<out_dir>/<cluster>-<run>.db`.
pub async fn backup(fleet: &Fleet<'_>, out_dir: &Path) -> FleetReport {
    let began = Began::now();
    let command = format!("backup to {}", out_dir.display());
    let results = run_waves(fleet.inventory, &fleet.waves, &fleet.stop, |cluster, wave| async move {
        let (_, connector, observation) = match reach(fleet.connector, &cluster).await {
            Ok(reached) => reached,
            Err(error) => return ClusterResult::new(&cluster, &wave, ClusterOutcome::Failed).because(chain(&error)),
        };
        let out: PathBuf = out_dir.join(format!("{}-{}.db", cluster.name, fleet.context.run));
        let request = BackupRequest {
            member: None,
            out: Some(crate::engine::transfer::download::CopyTo::File(out)),
        };
        match backup::backup(&connector, &observation.observed, &request).await {
            Ok(taken) => {
                let mut result = ClusterResult::new(&cluster, &wave, ClusterOutcome::Succeeded);
                result.report = Some(json!({
                    "member": taken.member,
                    "agent": taken.agent.to_string(),
                    "id": taken.snapshot.id,
                    "revision": taken.snapshot.revision,
                    "sha256": taken.snapshot.sha256,
                    "size": taken.snapshot.size,
                    "copied_to": taken.copied_to.map(|p| p.display().to_string()),
                }));
                result
            }
            Err(error) => ClusterResult::new(&cluster, &wave, ClusterOutcome::Failed).because(chain(&error)),
        }
    })
    .await;
    finish(fleet, command, began, results).await
}
