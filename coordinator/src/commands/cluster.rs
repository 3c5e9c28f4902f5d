//! `steward status` and `steward plan`: the cluster as observed, and what a
//! change would do. Neither changes anything. The views are part of the
//! stable JSON output: add fields, never rename or retype one.

use std::io::Write;

use comfy_table::Table;
use serde::Serialize;
use steward_proto::v1 as pb;

use crate::cli::error::CliError;
use crate::cli::{ClusterArgs, PlanArgs, StatusArgs};
use crate::engine::cluster::observe::Observation;
use crate::engine::cluster::observed::Observed;
use crate::engine::connect::Connector;
use crate::engine::roll::Preflight;
use crate::engine::roll::plan::Direction;
use crate::engine::roll::rules::{self, Check, Verdict};
use crate::format::{hex_id, human_bytes};
use crate::output;
use crate::output::table::{Tabular, narrow, with_header as table};

/// Observes the cluster the arguments name; returns how it is reached too.
pub async fn observe_target(connector: &Connector, args: &ClusterArgs) -> Result<(Observation, Connector), CliError> {
    let (target, connector) = super::cluster_target(args, connector)?;
    let observation = crate::engine::cluster::observe::observe_target(&connector, &target).await?;
    Ok((observation, connector))
}

/// One member row of `steward status`.
#[derive(Debug, Serialize)]
pub struct MemberRow {
    /// Member name.
    pub name: String,
    /// Member id, 16 hex digits.
    pub id: String,
    /// The client URL.
    pub endpoint: String,
    /// The agent serving it.
    pub agent: Option<String>,
    /// Binary version (Status).
    pub version: Option<String>,
    /// Cluster version as this member reports it.
    pub cluster_version: Option<String>,
    /// The leader.
    pub leader: bool,
    /// A learner.
    pub learner: bool,
    /// Answers a quorum read.
    pub healthy: bool,
    /// Why not.
    pub error: Option<String>,
    /// Raft term.
    pub raft_term: u64,
    /// Raft index.
    pub raft_index: u64,
    /// Applied index.
    pub applied_index: u64,
    /// Database size in bytes.
    pub db_size: u64,
    /// Database bytes in use.
    pub db_size_in_use: u64,
    /// Alarms on this member.
    pub alarms: Vec<String>,
    /// Errors the member reports.
    pub errors: Vec<String>,
    /// The agent's state.
    pub agent_state: Option<String>,
    /// The agent's active version.
    pub active_version: Option<String>,
    /// Versions staged on the agent.
    pub staged_versions: Vec<String>,
}

/// `steward status`.
#[derive(Debug, Serialize)]
pub struct StatusView {
    /// Everything healthy.
    pub healthy: bool,
    /// The cluster version.
    pub cluster_version: Option<String>,
    /// The leader's name.
    pub leader: Option<String>,
    /// Every member.
    pub members: Vec<MemberRow>,
    /// Agents serving no listed member.
    pub stray_agents: Vec<String>,
    /// The cluster lock, when a coordinator holds it.
    pub lock: Option<crate::engine::roll::change_state::LockView>,
    /// The last change recorded (`null` when none).
    pub last_change: Option<crate::engine::roll::change_state::ChangeView>,
    /// What is wrong, if anything.
    pub problems: Vec<String>,
}

fn problems(observed: &Observed) -> Vec<String> {
    let mut out = Vec::new();
    for member in &observed.members {
        if !member.healthy {
            out.push(format!("{} is not healthy: {}", member.name, member.health_error));
        }
        if member.agent.is_none() {
            out.push(format!("{} has no agent: {}", member.name, member.why_no_agent()));
        } else if member.agent_state != "running" {
            out.push(format!("{}'s agent is {}", member.name, member.agent_state));
        }
    }
    for (id, alarm) in &observed.alarms {
        out.push(format!("alarm {alarm} on {}", hex_id(*id)));
    }
    for agent in &observed.stray_agents {
        out.push(format!("agent {agent} serves no member of the member list"));
    }
    if observed.leader().is_none() {
        out.push("no single leader".into());
    }
    out
}

impl StatusView {
    fn new(observed: &Observed, found: &crate::engine::roll::change_state::Found) -> Self {
        let last_change = crate::engine::roll::change_state::assess(observed, found);
        let mut problems = problems(observed);
        problems.extend(crate::engine::roll::change_state::problems(
            last_change.as_ref(),
            found.lock.as_ref(),
        ));
        Self {
            healthy: problems.is_empty(),
            cluster_version: observed.cluster_version.as_ref().map(ToString::to_string),
            leader: observed.leader().map(|l| l.name.clone()),
            members: observed
                .members
                .iter()
                .map(|m| MemberRow {
                    name: m.name.clone(),
                    id: hex_id(m.id),
                    endpoint: m.client_url.clone(),
                    agent: m.agent.clone(),
                    version: m.version.as_ref().map(ToString::to_string),
                    cluster_version: m.cluster_version.as_ref().map(ToString::to_string),
                    leader: m.is_leader,
                    learner: m.is_learner,
                    healthy: m.healthy,
                    error: (!m.health_error.is_empty()).then(|| m.health_error.clone()),
                    raft_term: m.raft_term,
                    raft_index: m.raft_index,
                    applied_index: m.applied_index,
                    db_size: m.db_size,
                    db_size_in_use: m.db_size_in_use,
                    alarms: observed
                        .alarms
                        .iter()
                        .filter(|(id, _)| *id == m.id)
                        .map(|(_, a)| a.clone())
                        .collect(),
                    errors: m.errors.clone(),
                    agent_state: m.agent.as_ref().map(|_| m.agent_state.clone()),
                    active_version: m.agent_active.as_ref().map(ToString::to_string),
                    staged_versions: m.staged.iter().map(ToString::to_string).collect(),
                })
                .collect(),
            stray_agents: observed.stray_agents.clone(),
            lock: found.lock.clone(),
            last_change,
            problems,
        }
    }
}

fn yes(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

impl StatusView {
    /// Every column of every member (`-w wide`).
    fn wide_members(&self) -> Table {
        let mut members = table(&[
            "NAME",
            "ID",
            "ENDPOINT",
            "AGENT",
            "VERSION",
            "CLUSTER",
            "LEADER",
            "LEARNER",
            "TERM",
            "INDEX",
            "APPLIED",
            "DB / IN USE",
            "ALARMS / ERRORS",
            "AGENT STATE",
            "ACTIVE",
            "STAGED",
        ]);
        for m in &self.members {
            members.add_row(vec![
                m.name.clone(),
                m.id.clone(),
                m.endpoint.clone(),
                m.agent.clone().unwrap_or_else(|| "-".into()),
                m.version.clone().unwrap_or_else(|| "-".into()),
                m.cluster_version.clone().unwrap_or_else(|| "-".into()),
                yes(m.leader).into(),
                yes(m.learner).into(),
                m.raft_term.to_string(),
                m.raft_index.to_string(),
                m.applied_index.to_string(),
                format!("{} / {}", human_bytes(m.db_size), human_bytes(m.db_size_in_use)),
                problems_of(m),
                m.agent_state.clone().unwrap_or_else(|| "-".into()),
                m.active_version.clone().unwrap_or_else(|| "-".into()),
                m.staged_versions.join(", "),
            ]);
        }
        members
    }

    /// What fits 120 columns: who, where, which version, leader, progress,
    /// size, the agent's state and anything wrong (wrapped).
    fn narrow_members(&self) -> Table {
        let mut members = table(&[
            "NAME",
            "ENDPOINT",
            "VERSION",
            "LEADER",
            "APPLIED",
            "DB SIZE",
            "AGENT",
            "ALARMS / ERRORS",
        ]);
        for m in &self.members {
            members.add_row(vec![
                m.name.clone(),
                m.endpoint.clone(),
                m.version.clone().unwrap_or_else(|| "-".into()),
                yes(m.leader).into(),
                m.applied_index.to_string(),
                human_bytes(m.db_size),
                m.agent_state.clone().unwrap_or_else(|| "-".into()),
                problems_of(m),
            ]);
        }
        narrow(members)
    }

    /// The cluster as a whole: health, versions, leader, lock, last change.
    fn summary(&self) -> Table {
        let mut summary = table(&["CLUSTER", ""]);
        summary.add_row(vec!["healthy".to_owned(), yes(self.healthy).to_owned()]);
        summary.add_row(vec![
            "cluster version".to_owned(),
            self.cluster_version.clone().unwrap_or_else(|| "-".into()),
        ]);
        summary.add_row(vec![
            "leader".to_owned(),
            self.leader.clone().unwrap_or_else(|| "-".into()),
        ]);
        if let Some(lock) = &self.lock {
            summary.add_row(vec![
                "lock".to_owned(),
                format!(
                    "held by {}{}{}",
                    lock.holder,
                    lock.expires_in_seconds
                        .map(|s| format!("; lease expires in {s}s unless renewed"))
                        .unwrap_or_default(),
                    if lock.holder_gone == Some(true) {
                        "; the holder no longer runs"
                    } else {
                        ""
                    }
                ),
            ]);
        }
        if let Some(change) = &self.last_change {
            summary.add_row(vec![
                "last change".to_owned(),
                format!(
                    "{} {} -> {}: {} ({}/{} members on {}){}",
                    change.direction,
                    change.from,
                    change.to,
                    change.state,
                    change.members_done,
                    change.members,
                    change.to,
                    change
                        .last_event
                        .as_ref()
                        .map(|e| format!(", last step {e}"))
                        .unwrap_or_default()
                ),
            ]);
        }
        for problem in &self.problems {
            summary.add_row(vec!["problem".to_owned(), problem.clone()]);
        }
        summary
    }
}

/// A member's alarms, errors and observation error, or `-`.
fn problems_of(m: &MemberRow) -> String {
    let mut alarms: Vec<String> = m.alarms.clone();
    alarms.extend(m.errors.iter().cloned());
    if let Some(error) = &m.error {
        alarms.push(error.clone());
    }
    if alarms.is_empty() {
        "-".into()
    } else {
        alarms.join("; ")
    }
}

impl Tabular for StatusView {
    fn tables(&self) -> Vec<Table> {
        vec![self.narrow_members(), narrow(self.summary())]
    }

    fn wide_tables(&self) -> Vec<Table> {
        vec![self.wide_members(), self.summary()]
    }
}

/// `steward status`: one row per member; exit 1 when not healthy.
pub async fn status(connector: &Connector, args: &StatusArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let (observation, connector) = observe_target(connector, &args.cluster).await?;
    let endpoints: Vec<String> = observation
        .observed
        .members
        .iter()
        .filter(|m| m.healthy)
        .map(|m| m.client_url.clone())
        .collect();
    let found = if endpoints.is_empty() {
        crate::engine::roll::change_state::Found::default()
    } else {
        crate::engine::roll::change_state::read(&connector, &endpoints, &args.lock_prefix).await
    };
    let view = StatusView::new(&observation.observed, &found);
    output::emit(out, args.output.format, &view)?;
    if view.problems.is_empty() {
        Ok(())
    } else {
        Err(CliError::Unhealthy {
            problems: view.problems.join("; "),
        })
    }
}

/// One member's part in one pass of `steward plan`.
#[derive(Debug, Serialize)]
pub struct PlanStepView {
    /// Member name.
    pub member: String,
    /// Version before the step.
    pub from: Option<String>,
    /// The leader: leadership moves away first.
    pub leader: bool,
    /// Already at the pass target.
    pub done: bool,
    /// The flag changes the member's agent reports for the pass target.
    pub flag_changes: Vec<FlagChangeView>,
    /// The agent refuses the target's flags.
    pub flags_refused: bool,
    /// Why the flags could not be asked.
    pub flags_error: Option<String>,
}

/// One flag change.
#[derive(Debug, Serialize)]
pub struct FlagChangeView {
    /// added, removed, renamed, changed, refused.
    pub kind: String,
    /// The flag as written.
    pub flag: String,
    /// The flag as rendered.
    pub new_flag: String,
    /// The value rendered.
    pub new_value: String,
    /// Why.
    pub reason: String,
    /// The rule.
    pub rule: String,
}

/// One pass of `steward plan`.
#[derive(Debug, Serialize)]
pub struct PassView {
    /// Every member runs this at the end of the pass.
    pub target: String,
    /// The cluster version flips at the end of the pass.
    pub changes_minor: bool,
    /// Members in order, the leader last.
    pub order: Vec<PlanStepView>,
}

/// `steward plan`.
#[derive(Debug, Serialize)]
pub struct PlanView {
    /// upgrade or downgrade.
    pub direction: Direction,
    /// The version the cluster runs now.
    pub from: Option<String>,
    /// The target.
    pub to: String,
    /// The passes (empty when no plan can be made; see the checks).
    pub passes: Vec<PassView>,
    /// Every check, with its verdict and rule.
    pub checks: Vec<Check>,
    /// Whether a check refuses the change.
    pub refused: bool,
}

impl Tabular for PlanView {
    fn tables(&self) -> Vec<Table> {
        let mut tables = Vec::new();
        for (i, pass) in self.passes.iter().enumerate() {
            let mut t = table(&[
                &format!("PASS {} -> {}", i + 1, pass.target),
                "FROM",
                "LEADER",
                "STATUS",
                "FLAG CHANGES",
            ]);
            for step in &pass.order {
                let changes = if let Some(error) = &step.flags_error {
                    format!("(not asked: {error})")
                } else if step.flag_changes.is_empty() {
                    "none".to_owned()
                } else {
                    step.flag_changes
                        .iter()
                        .map(|c| {
                            let subject = if c.flag.is_empty() {
                                c.new_value.clone()
                            } else {
                                c.flag.clone()
                            };
                            format!("{} {subject}: {} [{}]", c.kind, c.reason, c.rule)
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                t.add_row(vec![
                    step.member.clone(),
                    step.from.clone().unwrap_or_else(|| "-".into()),
                    if step.leader {
                        "yes (goes last, after MoveLeader)"
                    } else {
                        "no"
                    }
                    .to_owned(),
                    if step.done { "done" } else { "to change" }.to_owned(),
                    changes,
                ]);
            }
            tables.push(t);
        }
        let mut checks = table(&["CHECK", "VERDICT", "MESSAGE", "SOURCE"]);
        for check in &self.checks {
            checks.add_row(vec![
                check.rule.to_owned(),
                match check.verdict {
                    Verdict::Pass => "pass",
                    Verdict::Warn => "WARN",
                    Verdict::Fail => "FAIL",
                }
                .to_owned(),
                check.message.clone(),
                check.source.to_owned(),
            ]);
        }
        tables.push(checks);
        tables
    }
}

/// The failed checks as "rule (message); ...".
#[must_use]
pub fn failed_rules(checks: &[Check]) -> String {
    checks
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .map(|c| format!("{} ({})", c.rule, c.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `steward plan`: passes, order, flag changes and checks; changes nothing.
pub async fn plan(connector: &Connector, args: &PlanArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let direction = if args.downgrade {
        Direction::Downgrade
    } else {
        Direction::Upgrade
    };
    let (observation, connector) = observe_target(connector, &args.cluster).await?;
    let observed = &observation.observed;
    let change = args.source.change(direction, args.to.clone());
    // The same plan and checks a run decides on, with each agent's answer
    // on its member's flags shown per step.
    let Preflight {
        planned, checks, flags, ..
    } = crate::engine::roll::preflight(&connector, &observation, &change).await;
    let mut passes = Vec::new();
    if let Ok(plan) = &planned {
        for pass in &plan.passes {
            let mut order = Vec::new();
            for step in &pass.order {
                let has_agent = observed
                    .members
                    .iter()
                    .find(|m| m.id == step.id)
                    .is_some_and(|m| m.agent.is_some());
                let answer = flags
                    .iter()
                    .find(|f| f.member == step.member && f.target == pass.target);
                let (flag_changes, flags_refused, flags_error) = match answer {
                    _ if step.done => (Vec::new(), false, None),
                    _ if !has_agent => (Vec::new(), false, Some("no agent".to_owned())),
                    Some(answer) => flags_view(&answer.answer),
                    None => (Vec::new(), false, None),
                };
                order.push(PlanStepView {
                    member: step.member.clone(),
                    from: step.from.as_ref().map(ToString::to_string),
                    leader: step.is_leader,
                    done: step.done,
                    flag_changes,
                    flags_refused,
                    flags_error,
                });
            }
            passes.push(PassView {
                target: pass.target.to_string(),
                changes_minor: pass.changes_minor,
                order,
            });
        }
    }
    let refused = rules::refused(&checks);
    let view = PlanView {
        direction,
        from: planned.as_ref().ok().map(|p| p.from.to_string()),
        to: args.to.to_string(),
        passes,
        checks,
        refused,
    };
    output::emit(out, args.output.format, &view)?;
    if view.refused {
        return Err(CliError::Refused {
            rules: failed_rules(&view.checks),
        });
    }
    Ok(())
}

/// The plan's view of one agent's CheckFlags answer: the changes, whether
/// they refuse the target, and why the agent could not be asked.
fn flags_view(answer: &Result<pb::CheckFlagsResponse, String>) -> (Vec<FlagChangeView>, bool, Option<String>) {
    match answer {
        Ok(response) => {
            let changes = response
                .changes
                .iter()
                .map(|c| FlagChangeView {
                    kind: crate::format::change_kind(c.kind),
                    flag: c.flag.clone(),
                    new_flag: c.new_flag.clone(),
                    new_value: c.new_value.clone(),
                    reason: c.reason.clone(),
                    rule: c.rule.clone(),
                })
                .collect();
            (changes, response.refused, None)
        }
        Err(error) => (Vec::new(), false, Some(error.clone())),
    }
}
