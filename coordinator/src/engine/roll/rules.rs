//! The rules of the etcd upgrade and downgrade guides, as named checks.
//!
//! [`preflight`] runs every check against an observed cluster and a plan
//! and returns one [`Check`] per rule, passed or not, so `steward plan`
//! shows all of them and a refusal always names its rule. Pure: the unit
//! tests below build clusters by hand for every refusal.

use std::time::Duration;

use steward_proto::EtcdVersion;

pub use crate::engine::check::{Check, Verdict, ids, refused};
use crate::engine::cluster::observed::Observed;
use crate::engine::roll::plan::{Direction, Plan, PlanError, is_unsafe_3_5};

/// What the operator asked for, beyond the target.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// Allow targets the rules otherwise refuse (3.5.0-3.5.2).
    pub force: bool,
    /// Versions the coordinator has binaries for (`--binaries`, `--binary`).
    pub available: Vec<EtcdVersion>,
    /// Whether leases are in use (for the 3.2 -> 3.3 auth rule).
    pub leases_in_use: bool,
    /// Where the binaries were looked for (`--binaries`, or the default
    /// directory), for the refusal that finds none.
    pub binaries_dir: Option<std::path::PathBuf>,
}

/// v2 data above this needs a pause between members.
pub const V2_WAIT_BYTES: u64 = 50 * 1000 * 1000;
/// v2 data above this deserves a loud warning.
pub const V2_LARGE_BYTES: u64 = 100 * 1000 * 1000;
/// The pause between members for large v2 data.
pub const V2_WAIT: Duration = Duration::from_secs(120);

/// How long to wait between members because of v2 data size.
#[must_use]
pub fn v2_wait(observed: &Observed) -> Duration {
    let largest = observed
        .members
        .iter()
        .map(|m| m.newest_v2_snap_bytes)
        .max()
        .unwrap_or(0);
    if largest > V2_WAIT_BYTES {
        V2_WAIT
    } else {
        Duration::ZERO
    }
}

fn check(rule: &'static str, source: &'static str, verdict: Verdict, message: impl Into<String>) -> Check {
    Check {
        rule,
        verdict,
        message: message.into(),
        source,
    }
}

const EVERY_GUIDE: &str = "every etcd upgrade/downgrade guide";

/// Runs every check. `plan` is the planner's answer for the same request.
#[must_use]
pub fn preflight(observed: &Observed, request: &Request, plan: &Result<Plan, PlanError>) -> Vec<Check> {
    let mut checks = vec![
        health(observed),
        alarms(observed),
        agents(observed),
        agents_ready(observed),
        agent_version_skew(observed, env!("CARGO_PKG_VERSION")),
        quorum(observed),
        learners(observed),
        v2_without_v3(observed),
        v2_size(observed),
        snapshot_space(observed),
    ];
    match plan {
        Err(error) => checks.push(check(error.rule(), EVERY_GUIDE, Verdict::Fail, error.to_string())),
        Ok(plan) => {
            checks.push(check(
                ids::ADJACENT_MINORS,
                EVERY_GUIDE,
                Verdict::Pass,
                format!(
                    "{} pass(es): {}",
                    plan.passes.len(),
                    plan.passes
                        .iter()
                        .map(|p| p.target.to_string())
                        .collect::<Vec<_>>()
                        .join(" -> ")
                ),
            ));
            checks.push(unsafe_3_5(plan, request));
            checks.push(auth_3_4_3_5(observed, plan));
            checks.push(downgrade_min_3_4_32(plan));
            checks.push(auth_leases(observed, plan, request));
            checks.extend(MINIMUM_PATCHES.iter().map(|rule| minimum_patch(plan, rule)));
            checks.push(binaries(observed, plan, request));
        }
    }
    checks
}

/// The checks of `steward rollback`: the cluster must be able to take a
/// rolling restart, and the members to roll back must be changed members
/// of a cluster whose version has not flipped yet. `undo` is the direction
/// of the change being undone (an upgrade unless a downgrade is recorded).
#[must_use]
pub fn rollback_checks(observed: &Observed, undo: Direction) -> Vec<Check> {
    vec![
        health(observed),
        alarms(observed),
        agents(observed),
        quorum(observed),
        before_flip(observed, undo),
    ]
}

/// The version the unchanged members run, which a rollback returns the
/// changed ones to: the lowest after an upgrade, the highest after a
/// downgrade.
#[must_use]
pub fn rollback_baseline(observed: &Observed, undo: Direction) -> Option<&EtcdVersion> {
    match undo {
        Direction::Upgrade => observed.lowest_version(),
        Direction::Downgrade => observed.highest_version(),
    }
}

fn before_flip(observed: &Observed, undo: Direction) -> Check {
    let source = "every upgrade and downgrade guide (mixed versions)";
    let Some(baseline) = rollback_baseline(observed, undo) else {
        return check(
            ids::ROLLBACK_BEFORE_FLIP,
            source,
            Verdict::Fail,
            "no member reported its version",
        );
    };
    let changed: Vec<_> = observed
        .members
        .iter()
        .filter(|m| m.version.as_ref().is_some_and(|v| v != baseline))
        .collect();
    if changed.is_empty() {
        // Everyone runs the same version. Did a change of minor finish?
        let finished = observed
            .members
            .iter()
            .filter_map(|m| m.agent_previous.as_ref())
            .find(|previous| match undo {
                Direction::Upgrade => previous.minor_version() < baseline.minor_version(),
                Direction::Downgrade => previous.minor_version() > baseline.minor_version(),
            });
        let cluster_version = observed
            .cluster_version
            .as_ref()
            .map_or_else(|| "decided".to_owned(), ToString::to_string);
        return match (finished, undo) {
            (Some(_), Direction::Upgrade) => check(
                ids::ROLLBACK_BEFORE_FLIP,
                source,
                Verdict::Fail,
                format!(
                    "every member runs {baseline} and the cluster version is {cluster_version}: it flipped, and \
                     swapping binaries back is no longer possible; restore the snapshot taken before the upgrade \
                     (steward rollback --to-snapshot, losing what was written since), or downgrade where the guides \
                     allow it (3.5 -> 3.4.32 or later: steward downgrade)"
                ),
            ),
            (Some(previous), Direction::Downgrade) => check(
                ids::ROLLBACK_BEFORE_FLIP,
                source,
                Verdict::Fail,
                format!(
                    "every member runs {baseline} and the cluster version is {cluster_version}: the downgrade \
                     finished; go back with `steward upgrade --to {previous}`"
                ),
            ),
            (None, _) => check(
                ids::ROLLBACK_BEFORE_FLIP,
                source,
                Verdict::Pass,
                format!("every member runs {baseline}: nothing to roll back"),
            ),
        };
    }
    let mut problems = Vec::new();
    if let Some(version) = &observed.cluster_version
        && !version.same_minor(baseline)
    {
        // etcd's Downgrade API lowers the cluster version as soon as it is
        // enabled; cancelling it lets the version rise again once every
        // member runs the newer binary.
        let cancellable = undo == Direction::Downgrade && observed.downgrade_target().is_some();
        if !cancellable {
            problems.push(format!("the cluster version is already {version}"));
        }
    }
    for member in &changed {
        match &member.agent_previous {
            Some(previous) if previous == baseline => {}
            Some(previous) => problems.push(format!(
                "{}'s previous version is {previous}, not {baseline}, which the unchanged members run",
                member.name
            )),
            None => problems.push(format!("{}'s agent has no previous version to return to", member.name)),
        }
    }
    if problems.is_empty() {
        check(
            ids::ROLLBACK_BEFORE_FLIP,
            source,
            Verdict::Pass,
            format!(
                "undoing the {undo}: {} back to {baseline} while the cluster version is still {}.{}{}",
                changed.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", "),
                baseline.major(),
                baseline.minor(),
                if observed.downgrade_target().is_some() {
                    " (the downgrade enabled in etcd is cancelled first)"
                } else {
                    ""
                }
            ),
        )
    } else {
        check(ids::ROLLBACK_BEFORE_FLIP, source, Verdict::Fail, problems.join("; "))
    }
}

fn health(observed: &Observed) -> Check {
    let sick: Vec<String> = observed
        .members
        .iter()
        .filter(|m| !m.healthy)
        .map(|m| format!("{} ({})", m.name, m.health_error))
        .collect();
    if observed.members.is_empty() {
        return check(ids::HEALTH, EVERY_GUIDE, Verdict::Fail, "no members observed");
    }
    if sick.is_empty() {
        check(
            ids::HEALTH,
            EVERY_GUIDE,
            Verdict::Pass,
            format!("all {} members healthy", observed.members.len()),
        )
    } else {
        check(
            ids::HEALTH,
            EVERY_GUIDE,
            Verdict::Fail,
            format!("not healthy: {}", sick.join(", ")),
        )
    }
}

fn alarms(observed: &Observed) -> Check {
    if let Some(error) = &observed.alarms_error {
        return check(
            ids::ALARMS,
            EVERY_GUIDE,
            Verdict::Fail,
            format!("cannot read the alarms, so none can be ruled out: {error}"),
        );
    }
    if observed.alarms.is_empty() {
        return check(ids::ALARMS, EVERY_GUIDE, Verdict::Pass, "no alarms");
    }
    let list: Vec<String> = observed
        .alarms
        .iter()
        .map(|(id, alarm)| format!("{alarm} on {id:016x}"))
        .collect();
    check(
        ids::ALARMS,
        EVERY_GUIDE,
        Verdict::Fail,
        format!("active alarms: {} (resolve and disarm them first)", list.join(", ")),
    )
}

fn agents(observed: &Observed) -> Check {
    let missing: Vec<String> = observed
        .members
        .iter()
        .filter(|m| m.agent.is_none())
        .map(|m| format!("{} ({})", m.name, m.why_no_agent()))
        .collect();
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!("members without an agent: {}", missing.join(", ")));
    }
    if !observed.stray_agents.is_empty() {
        problems.push(format!(
            "agents serving no member of the member list: {}",
            observed.stray_agents.join(", ")
        ));
    }
    if problems.is_empty() {
        check(ids::AGENTS, "steward", Verdict::Pass, "every member has its agent")
    } else {
        check(ids::AGENTS, "steward", Verdict::Fail, problems.join("; "))
    }
}

fn agents_ready(observed: &Observed) -> Check {
    let not_ready: Vec<String> = observed
        .members
        .iter()
        .filter(|m| m.agent.is_some() && m.agent_state != "running")
        .map(|m| format!("{} is {}", m.name, m.agent_state))
        .collect();
    if not_ready.is_empty() {
        check(
            ids::AGENTS_READY,
            "steward",
            Verdict::Pass,
            "every agent is running its member",
        )
    } else {
        check(ids::AGENTS_READY, "steward", Verdict::Fail, not_ready.join(", "))
    }
}

/// One line per agent that answered with another steward version than
/// `coordinator`: `m2 runs steward-agent 0.0.9`.
#[must_use]
pub fn skewed_agents(observed: &Observed, coordinator: &str) -> Vec<String> {
    observed
        .members
        .iter()
        .filter(|m| m.agent.is_some() && !m.agent_version.is_empty() && m.agent_version != coordinator)
        .map(|m| format!("{} runs steward-agent {}", m.name, m.agent_version))
        .collect()
}

/// Agents of another steward version than this coordinator's: allowed
/// (the API is versioned and each side refuses what it does not know),
/// but worth knowing before a change, and the usual cause of a surprise.
#[must_use]
pub fn agent_version_skew(observed: &Observed, coordinator: &str) -> Check {
    let skewed = skewed_agents(observed, coordinator);
    if skewed.is_empty() {
        check(
            ids::AGENT_VERSION_SKEW,
            "steward",
            Verdict::Pass,
            format!("every agent runs steward {coordinator}, as this coordinator does"),
        )
    } else {
        check(
            ids::AGENT_VERSION_SKEW,
            "steward",
            Verdict::Warn,
            format!(
                "{}, this coordinator is {coordinator}: upgrade the agents (or this CLI) to one version",
                skewed.join(", ")
            ),
        )
    }
}

fn quorum(observed: &Observed) -> Check {
    let voters = observed.members.iter().filter(|m| !m.is_learner).count();
    match voters {
        0 => check(ids::QUORUM, "etcd raft", Verdict::Fail, "no voting members"),
        1 => check(
            ids::QUORUM,
            "etcd raft",
            Verdict::Warn,
            "a single-member cluster cannot serve while its member restarts: expect a short outage",
        ),
        2 => check(
            ids::QUORUM,
            "etcd raft",
            Verdict::Warn,
            "with two voting members, either one restarting loses quorum: writes stall during each restart",
        ),
        n => check(
            ids::QUORUM,
            "etcd raft",
            Verdict::Pass,
            format!("{n} voting members: quorum holds while one restarts"),
        ),
    }
}

fn learners(observed: &Observed) -> Check {
    let learners: Vec<&str> = observed
        .members
        .iter()
        .filter(|m| m.is_learner)
        .map(|m| m.name.as_str())
        .collect();
    if learners.is_empty() {
        check(ids::LEARNERS, "etcd 3.4+ learners", Verdict::Pass, "no learners")
    } else {
        check(
            ids::LEARNERS,
            "etcd 3.4+ learners",
            Verdict::Warn,
            format!(
                "learners {} change first and never receive leadership",
                learners.join(", ")
            ),
        )
    }
}

fn v2_without_v3(observed: &Observed) -> Check {
    let bad: Vec<&str> = observed
        .members
        .iter()
        .filter(|m| m.v2_snap_present && !m.v3_db_present)
        .map(|m| m.name.as_str())
        .collect();
    if bad.is_empty() {
        check(
            ids::V2_WITHOUT_V3,
            "3.3, 3.4, 3.5 guides",
            Verdict::Pass,
            "every member with v2 data has a v3 db",
        )
    } else {
        check(
            ids::V2_WITHOUT_V3,
            "3.3, 3.4, 3.5 guides",
            Verdict::Fail,
            format!(
                "{} have v2 snapshots but no member/snap/db: etcd 3.2+ panics on such data; \
                 write v3 data with the current version first",
                bad.join(", ")
            ),
        )
    }
}

fn v2_size(observed: &Observed) -> Check {
    let largest = observed
        .members
        .iter()
        .map(|m| m.newest_v2_snap_bytes)
        .max()
        .unwrap_or(0);
    let source = "3.3, 3.4, 3.5 guides, 3.5 -> 3.4 guide";
    if largest > V2_LARGE_BYTES {
        check(
            ids::V2_SIZE,
            source,
            Verdict::Warn,
            format!(
                "v2 data of about {} MB: each member may take well over 2 minutes to catch up; \
                 steward waits {}s between members, consider asking the etcd team for advice",
                largest / 1_000_000,
                V2_WAIT.as_secs()
            ),
        )
    } else if largest > V2_WAIT_BYTES {
        check(
            ids::V2_SIZE,
            source,
            Verdict::Warn,
            format!(
                "v2 data of about {} MB: steward waits {}s between members",
                largest / 1_000_000,
                V2_WAIT.as_secs()
            ),
        )
    } else {
        check(
            ids::V2_SIZE,
            source,
            Verdict::Pass,
            "v2 data below 50 MB: no wait between members",
        )
    }
}

fn snapshot_space(observed: &Observed) -> Check {
    let Some(leader) = observed.leader() else {
        return check(
            ids::SNAPSHOT_SPACE,
            "steward",
            Verdict::Fail,
            "no single leader to take the snapshot from",
        );
    };
    if leader.agent.is_none() {
        // Its free space is unknown, not zero.
        return check(
            ids::SNAPSHOT_SPACE,
            "steward",
            Verdict::Fail,
            format!(
                "cannot tell whether the leader {} has room for the snapshot: it has no agent ({})",
                leader.name,
                leader.why_no_agent()
            ),
        );
    }
    let needed = leader.db_size.saturating_mul(2);
    if leader.state_dir_free_bytes >= needed {
        check(
            ids::SNAPSHOT_SPACE,
            "steward",
            Verdict::Pass,
            format!("{} has room for the snapshot", leader.name),
        )
    } else {
        check(
            ids::SNAPSHOT_SPACE,
            "steward",
            Verdict::Fail,
            format!(
                "{}'s agent has {} bytes free, twice the db size ({needed}) is needed for the snapshot",
                leader.name, leader.state_dir_free_bytes
            ),
        )
    }
}

fn unsafe_3_5(plan: &Plan, request: &Request) -> Check {
    let source = "etcd 3.5 data inconsistency postmortem (etcd issue 13766)";
    let bad: Vec<String> = plan
        .passes
        .iter()
        .filter(|p| is_unsafe_3_5(&p.target))
        .map(|p| p.target.to_string())
        .collect();
    if bad.is_empty() {
        check(ids::UNSAFE_3_5, source, Verdict::Pass, "no target among 3.5.0-3.5.2")
    } else if request.force {
        check(
            ids::UNSAFE_3_5,
            source,
            Verdict::Warn,
            format!(
                "forced to {}: 3.5.0-3.5.2 can corrupt data after a crash (fixed in 3.5.3)",
                bad.join(", ")
            ),
        )
    } else {
        check(
            ids::UNSAFE_3_5,
            source,
            Verdict::Fail,
            format!(
                "{} is 3.5.0-3.5.2, which can corrupt data after a crash (fixed in 3.5.3); \
                 pick 3.5.3 or later, or --force",
                bad.join(", ")
            ),
        )
    }
}

fn crosses_3_4_3_5(plan: &Plan) -> bool {
    plan.passes.iter().any(|p| {
        let pair = (p.from.minor_version(), p.target.minor_version());
        pair == ((3, 4), (3, 5)) || pair == ((3, 5), (3, 4))
    })
}

fn auth_3_4_3_5(observed: &Observed, plan: &Plan) -> Check {
    let source = "3.5 upgrade guide, 3.5 -> 3.4 downgrade guide";
    if !crosses_3_4_3_5(plan) {
        return check(ids::AUTH_3_4_3_5, source, Verdict::Pass, "no pass between 3.4 and 3.5");
    }
    if let Some(error) = &observed.auth_error {
        return check(
            ids::AUTH_3_4_3_5,
            source,
            Verdict::Fail,
            format!("cannot tell whether auth is enabled: {error}"),
        );
    }
    if observed.auth_enabled {
        check(
            ids::AUTH_3_4_3_5,
            source,
            Verdict::Fail,
            "auth is enabled: a rolling change between 3.4 and 3.5 is not supported (3.5 changed the \
             format of auth WAL entries); disable auth and delete all users first",
        )
    } else {
        check(ids::AUTH_3_4_3_5, source, Verdict::Pass, "auth is disabled")
    }
}

fn downgrade_min_3_4_32(plan: &Plan) -> Check {
    let source = "3.5 -> 3.4 downgrade guide";
    let too_old = plan.direction == Direction::Downgrade
        && plan.passes.iter().any(|p| {
            p.from.at_least_minor(3, 5) && p.target.minor_version() == (3, 4) && p.target < EtcdVersion::new(3, 4, 32)
        });
    if too_old {
        check(
            ids::DOWNGRADE_MIN_3_4_32,
            source,
            Verdict::Fail,
            format!(
                "a 3.5 -> 3.4 downgrade needs 3.4.32 or later (the first with --next-cluster-version-compatible); {} is older",
                plan.to
            ),
        )
    } else {
        check(
            ids::DOWNGRADE_MIN_3_4_32,
            source,
            Verdict::Pass,
            "not a 3.5 -> 3.4 downgrade below 3.4.32",
        )
    }
}

fn auth_leases(observed: &Observed, plan: &Plan, request: &Request) -> Check {
    let source = "3.3 upgrade guide (etcd issue 11691)";
    let risky = plan.passes.iter().any(|p| {
        p.from.minor_version() == (3, 2) && p.target.minor_version() == (3, 3) && p.from < EtcdVersion::new(3, 2, 31)
    });
    if risky && observed.auth_enabled && request.leases_in_use {
        check(
            ids::AUTH_LEASES_3_2_31,
            source,
            Verdict::Fail,
            "auth is enabled and leases are in use: upgrade 3.2 to 3.2.31 or later before 3.3 (data inconsistency)",
        )
    } else {
        check(
            ids::AUTH_LEASES_3_2_31,
            source,
            Verdict::Pass,
            "not a 3.2 (< 3.2.31) -> 3.3 pass with auth and leases",
        )
    }
}

/// The oldest 3.5 patch a 3.5 -> 3.6 pass may start from. The 3.6 upgrade
/// guide has raised it with the releases that fixed what broke such
/// upgrades: 3.5.20 ("too many learner members"), 3.5.24, 3.5.26 (zombie
/// members), and 3.5.32 in its newest revision (etcd-io/website,
/// content/en/docs/v3.6/upgrades/upgrade_3_6.md, 2026-08-14: the release
/// that brings `--v2-deprecation=write-only-skip-check` and the WAL-aware
/// `etcdutl check v2store`). The newest figure wins.
pub const MIN_3_5_BEFORE_3_6: EtcdVersion = EtcdVersion::new(3, 5, 32);

/// The oldest 3.6 patch a 3.6 -> 3.7 pass may start from: "Before
/// upgrading to 3.7, make sure that all of your 3.6 members are updated to
/// 3.6.11 or later" (etcd-io/website,
/// content/en/docs/v3.7/upgrades/upgrade_3_7.md).
pub const MIN_3_6_BEFORE_3_7: EtcdVersion = EtcdVersion::new(3, 6, 11);

/// A minimum patch release a cluster must run before it moves to the next
/// minor.
#[derive(Clone, Debug)]
pub struct MinimumPatch {
    /// The oldest patch of the minor the pass starts from.
    pub minimum: EtcdVersion,
    /// The rule's id.
    pub rule: &'static str,
    /// The guide that says so.
    pub source: &'static str,
}

/// Every minimum patch the guides name, by the minor they lead out of.
pub const MINIMUM_PATCHES: &[MinimumPatch] = &[
    MinimumPatch {
        minimum: MIN_3_5_BEFORE_3_6,
        rule: ids::MIN_3_5_FOR_3_6,
        source: "3.6 upgrade guide",
    },
    MinimumPatch {
        minimum: MIN_3_6_BEFORE_3_7,
        rule: ids::MIN_3_6_FOR_3_7,
        source: "3.7 upgrade guide",
    },
];

/// The minimum patch a pass out of `from`'s minor into the next one must
/// start from, if a guide names one.
#[must_use]
pub fn minimum_patch_out_of(from: &EtcdVersion) -> Option<&'static MinimumPatch> {
    MINIMUM_PATCHES
        .iter()
        .find(|m| m.minimum.minor_version() == from.minor_version())
}

fn minimum_patch(plan: &Plan, rule: &MinimumPatch) -> Check {
    let (major, minor) = rule.minimum.minor_version();
    let too_old = plan.passes.iter().find(|p| {
        p.from.minor_version() == (major, minor)
            && p.target.minor_version() == (major, minor + 1)
            && p.from < rule.minimum
    });
    match too_old {
        Some(pass) => check(
            rule.rule,
            rule.source,
            Verdict::Fail,
            format!(
                "{major}.{next} needs the cluster at {min} or later first; it would start from {from} (give a \
                 {major}.{minor} binary of {min} or later, e.g. the newest {major}.{minor} patch, and the plan \
                 adds that patch pass first)",
                next = minor + 1,
                min = rule.minimum,
                from = pass.from
            ),
        ),
        None => check(
            rule.rule,
            rule.source,
            Verdict::Pass,
            format!("no {major}.{minor} (< {}) -> {major}.{} pass", rule.minimum, minor + 1),
        ),
    }
}

fn binaries(observed: &Observed, plan: &Plan, request: &Request) -> Check {
    let missing: Vec<String> = plan
        .passes
        .iter()
        .filter(|p| p.order.iter().any(|s| !s.done))
        .map(|p| &p.target)
        .filter(|target| {
            !request.available.contains(target) && !observed.members.iter().all(|m| m.staged.contains(target))
        })
        .map(ToString::to_string)
        .collect();
    if missing.is_empty() {
        check(ids::BINARIES, "steward", Verdict::Pass, "a binary for every pass")
    } else {
        check(
            ids::BINARIES,
            "steward",
            Verdict::Fail,
            format!(
                "no binary for {} {}: give --binaries DIR (as scripts/setup-etcd lays it out) or --binary PATH",
                missing.join(", "),
                match &request.binaries_dir {
                    Some(dir) if dir.is_dir() => format!("in {} (it holds no such version dir)", dir.display()),
                    Some(dir) => format!("in {} (the directory does not exist)", dir.display()),
                    None => "(no binaries directory was given)".to_owned(),
                }
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::roll::plan::tests::{cluster, v};

    fn run(observed: &Observed, direction: Direction, target: &str, request: &Request) -> Vec<Check> {
        let plan = crate::engine::roll::plan::plan(observed, direction, &v(target), &request.available);
        preflight(observed, request, &plan)
    }

    fn verdict(checks: &[Check], rule: &str) -> Verdict {
        checks
            .iter()
            .find(|c| c.rule == rule)
            .unwrap_or_else(|| panic!("no check {rule} in {checks:?}"))
            .verdict
    }

    fn with_binaries(versions: &[&str]) -> Request {
        Request {
            available: versions.iter().map(|s| v(s)).collect(),
            ..Request::default()
        }
    }

    #[test]
    fn a_healthy_cluster_passes_everything() {
        let checks = run(
            &cluster(&["3.4.23"; 3], 0),
            Direction::Upgrade,
            "3.5.16",
            &with_binaries(&["3.5.16"]),
        );
        assert!(!refused(&checks), "{checks:#?}");
        assert!(checks.iter().all(|c| c.verdict == Verdict::Pass), "{checks:#?}");
    }

    #[test]
    fn agents_of_another_steward_version_are_a_warning_naming_them() {
        let mut observed = cluster(&["3.4.23"; 3], 0);
        for m in &mut observed.members {
            m.agent_version = "0.1.0".into();
        }
        assert_eq!(agent_version_skew(&observed, "0.1.0").verdict, Verdict::Pass);
        observed.members[2].agent_version = "0.0.9".into();
        let skew = agent_version_skew(&observed, "0.1.0");
        assert_eq!(skew.verdict, Verdict::Warn);
        assert!(
            skew.message
                .starts_with("m2 runs steward-agent 0.0.9, this coordinator is 0.1.0"),
            "{skew:?}"
        );
        let checks = run(&observed, Direction::Upgrade, "3.5.16", &with_binaries(&["3.5.16"]));
        assert!(!refused(&checks), "a warning only: {checks:#?}");
    }

    #[test]
    fn an_unhealthy_member_is_refused() {
        let mut observed = cluster(&["3.4.23"; 3], 0);
        observed.members[1].healthy = false;
        observed.members[1].health_error = "connection refused".into();
        let checks = run(&observed, Direction::Upgrade, "3.5.16", &with_binaries(&["3.5.16"]));
        assert_eq!(verdict(&checks, ids::HEALTH), Verdict::Fail);
        assert!(checks.iter().any(|c| c.message.contains("m1 (connection refused)")));
    }

    #[test]
    fn unknown_alarms_and_auth_are_refused_not_assumed_away() {
        let mut observed = cluster(&["3.4.23"; 3], 0);
        observed.alarms_error = Some("Unavailable".into());
        observed.auth_error = Some("Unavailable".into());
        let checks = run(&observed, Direction::Upgrade, "3.5.16", &with_binaries(&["3.5.16"]));
        assert_eq!(verdict(&checks, ids::ALARMS), Verdict::Fail);
        assert_eq!(verdict(&checks, ids::AUTH_3_4_3_5), Verdict::Fail);
        // A patch change does not depend on auth.
        let mut patch = cluster(&["3.5.16"; 3], 0);
        patch.auth_error = Some("Unavailable".into());
        let checks = run(&patch, Direction::Upgrade, "3.5.30", &with_binaries(&["3.5.30"]));
        assert_eq!(verdict(&checks, ids::AUTH_3_4_3_5), Verdict::Pass);
    }

    #[test]
    fn an_alarm_is_refused() {
        let mut observed = cluster(&["3.4.23"; 3], 0);
        observed.alarms.push((2, "NOSPACE".into()));
        let checks = run(&observed, Direction::Upgrade, "3.5.16", &with_binaries(&["3.5.16"]));
        assert_eq!(verdict(&checks, ids::ALARMS), Verdict::Fail);
    }

    #[test]
    fn a_member_without_agent_and_a_stray_agent_are_refused() {
        let mut observed = cluster(&["3.4.23"; 3], 0);
        observed.members[2].agent = None;
        let checks = run(&observed, Direction::Upgrade, "3.5.16", &with_binaries(&["3.5.16"]));
        assert_eq!(verdict(&checks, ids::AGENTS), Verdict::Fail);
        let mut observed = cluster(&["3.4.23"; 3], 0);
        observed.stray_agents.push("10.0.0.9:7400".into());
        let checks = run(&observed, Direction::Upgrade, "3.5.16", &with_binaries(&["3.5.16"]));
        assert_eq!(verdict(&checks, ids::AGENTS), Verdict::Fail);
    }

    #[test]
    fn a_skipped_minor_without_a_binary_is_refused_and_with_one_planned() {
        let checks = run(
            &cluster(&["3.3.25"; 3], 0),
            Direction::Upgrade,
            "3.5.16",
            &with_binaries(&["3.5.16"]),
        );
        assert_eq!(verdict(&checks, ids::ADJACENT_MINORS), Verdict::Fail);
        let checks = run(
            &cluster(&["3.3.25"; 3], 0),
            Direction::Upgrade,
            "3.5.16",
            &with_binaries(&["3.4.23", "3.5.16"]),
        );
        assert_eq!(verdict(&checks, ids::ADJACENT_MINORS), Verdict::Pass);
    }

    #[test]
    fn unsafe_3_5_targets_need_force() {
        let checks = run(
            &cluster(&["3.4.23"; 3], 0),
            Direction::Upgrade,
            "3.5.1",
            &with_binaries(&["3.5.1"]),
        );
        assert_eq!(verdict(&checks, ids::UNSAFE_3_5), Verdict::Fail);
        let mut forced = with_binaries(&["3.5.1"]);
        forced.force = true;
        let checks = run(&cluster(&["3.4.23"; 3], 0), Direction::Upgrade, "3.5.1", &forced);
        assert_eq!(verdict(&checks, ids::UNSAFE_3_5), Verdict::Warn);
        assert!(!refused(&checks));
    }

    #[test]
    fn auth_across_3_4_and_3_5_is_refused_both_ways() {
        let mut observed = cluster(&["3.4.23"; 3], 0);
        observed.auth_enabled = true;
        let checks = run(&observed, Direction::Upgrade, "3.5.16", &with_binaries(&["3.5.16"]));
        assert_eq!(verdict(&checks, ids::AUTH_3_4_3_5), Verdict::Fail);
        let mut observed = cluster(&["3.5.16"; 3], 0);
        observed.auth_enabled = true;
        let checks = run(&observed, Direction::Downgrade, "3.4.33", &with_binaries(&["3.4.33"]));
        assert_eq!(verdict(&checks, ids::AUTH_3_4_3_5), Verdict::Fail);
        // Patch changes with auth are fine.
        let mut observed = cluster(&["3.5.16"; 3], 0);
        observed.auth_enabled = true;
        let checks = run(&observed, Direction::Upgrade, "3.5.30", &with_binaries(&["3.5.30"]));
        assert_eq!(verdict(&checks, ids::AUTH_3_4_3_5), Verdict::Pass);
    }

    #[test]
    fn a_3_4_downgrade_target_below_3_4_32_is_refused() {
        let checks = run(
            &cluster(&["3.5.16"; 3], 0),
            Direction::Downgrade,
            "3.4.23",
            &with_binaries(&["3.4.23"]),
        );
        assert_eq!(verdict(&checks, ids::DOWNGRADE_MIN_3_4_32), Verdict::Fail);
        let checks = run(
            &cluster(&["3.5.16"; 3], 0),
            Direction::Downgrade,
            "3.4.32",
            &with_binaries(&["3.4.32"]),
        );
        assert_eq!(verdict(&checks, ids::DOWNGRADE_MIN_3_4_32), Verdict::Pass);
    }

    #[test]
    fn v2_data_without_v3_db_is_refused() {
        let mut observed = cluster(&["3.4.23"; 3], 0);
        observed.members[0].v2_snap_present = true;
        observed.members[0].v3_db_present = false;
        let checks = run(&observed, Direction::Upgrade, "3.5.16", &with_binaries(&["3.5.16"]));
        assert_eq!(verdict(&checks, ids::V2_WITHOUT_V3), Verdict::Fail);
    }

    #[test]
    fn large_v2_data_waits_and_warns() {
        let mut observed = cluster(&["3.4.23"; 3], 0);
        assert_eq!(v2_wait(&observed), Duration::ZERO);
        observed.members[1].newest_v2_snap_bytes = 60_000_000;
        let checks = run(&observed, Direction::Upgrade, "3.5.16", &with_binaries(&["3.5.16"]));
        assert_eq!(verdict(&checks, ids::V2_SIZE), Verdict::Warn);
        assert_eq!(v2_wait(&observed), V2_WAIT);
        observed.members[1].newest_v2_snap_bytes = 150_000_000;
        let checks = run(&observed, Direction::Upgrade, "3.5.16", &with_binaries(&["3.5.16"]));
        assert!(
            checks
                .iter()
                .any(|c| c.rule == ids::V2_SIZE && c.message.contains("etcd team"))
        );
    }

    #[test]
    fn auth_with_leases_from_old_3_2_is_refused() {
        let mut observed = cluster(&["3.2.20"; 3], 0);
        observed.auth_enabled = true;
        let mut request = with_binaries(&["3.3.25"]);
        request.leases_in_use = true;
        let checks = run(&observed, Direction::Upgrade, "3.3.25", &request);
        assert_eq!(verdict(&checks, ids::AUTH_LEASES_3_2_31), Verdict::Fail);
        request.leases_in_use = false;
        let checks = run(&observed, Direction::Upgrade, "3.3.25", &request);
        assert_eq!(verdict(&checks, ids::AUTH_LEASES_3_2_31), Verdict::Pass);
    }

    #[test]
    fn the_3_6_upgrade_needs_the_newest_guides_3_5_patch() {
        let checks = run(
            &cluster(&["3.5.31"; 3], 0),
            Direction::Upgrade,
            "3.6.0",
            &with_binaries(&["3.6.0"]),
        );
        assert_eq!(verdict(&checks, ids::MIN_3_5_FOR_3_6), Verdict::Fail);
        let checks = run(
            &cluster(&["3.5.32"; 3], 0),
            Direction::Upgrade,
            "3.6.0",
            &with_binaries(&["3.6.0"]),
        );
        assert_eq!(verdict(&checks, ids::MIN_3_5_FOR_3_6), Verdict::Pass);
    }

    #[test]
    fn the_3_7_upgrade_needs_3_6_11() {
        let checks = run(
            &cluster(&["3.6.10"; 3], 0),
            Direction::Upgrade,
            "3.7.3",
            &with_binaries(&["3.7.3"]),
        );
        let refusal = checks.iter().find(|c| c.rule == ids::MIN_3_6_FOR_3_7).unwrap();
        assert_eq!(refusal.verdict, Verdict::Fail);
        assert!(
            refusal.message.contains("3.6.11") && refusal.message.contains("3.6.10"),
            "{refusal:?}"
        );
        let checks = run(
            &cluster(&["3.6.10"; 3], 0),
            Direction::Upgrade,
            "3.7.3",
            &with_binaries(&["3.6.17", "3.7.3"]),
        );
        assert_eq!(
            verdict(&checks, ids::MIN_3_6_FOR_3_7),
            Verdict::Pass,
            "with a newer 3.6 given, the plan passes through it"
        );
        let checks = run(
            &cluster(&["3.5.36"; 3], 0),
            Direction::Upgrade,
            "3.7.3",
            &with_binaries(&["3.6.10", "3.7.3"]),
        );
        assert_eq!(
            verdict(&checks, ids::MIN_3_6_FOR_3_7),
            Verdict::Fail,
            "a middle hop below the minimum is refused too"
        );
    }

    #[test]
    fn missing_binaries_are_refused_unless_staged_everywhere() {
        let observed = cluster(&["3.4.23"; 3], 0);
        let checks = run(&observed, Direction::Upgrade, "3.5.16", &Request::default());
        assert_eq!(verdict(&checks, ids::BINARIES), Verdict::Fail);
        let mut staged = observed.clone();
        for m in &mut staged.members {
            m.staged.push(v("3.5.16"));
        }
        let checks = run(&staged, Direction::Upgrade, "3.5.16", &Request::default());
        assert_eq!(verdict(&checks, ids::BINARIES), Verdict::Pass);
    }

    #[test]
    fn small_clusters_warn_about_quorum() {
        let checks = run(
            &cluster(&["3.4.23"], 0),
            Direction::Upgrade,
            "3.5.16",
            &with_binaries(&["3.5.16"]),
        );
        assert_eq!(verdict(&checks, ids::QUORUM), Verdict::Warn);
        let checks = run(
            &cluster(&["3.4.23"; 2], 0),
            Direction::Upgrade,
            "3.5.16",
            &with_binaries(&["3.5.16"]),
        );
        assert_eq!(verdict(&checks, ids::QUORUM), Verdict::Warn);
    }

    #[test]
    fn no_room_for_the_snapshot_is_refused() {
        let mut observed = cluster(&["3.4.23"; 3], 0);
        observed.members[0].state_dir_free_bytes = 1024;
        let checks = run(&observed, Direction::Upgrade, "3.5.16", &with_binaries(&["3.5.16"]));
        assert_eq!(verdict(&checks, ids::SNAPSHOT_SPACE), Verdict::Fail);
    }

    #[test]
    fn rollback_before_the_flip_only() {
        // Two members changed, the cluster version still 3.4.
        let mut partial = cluster(&["3.5.16", "3.5.16", "3.4.23"], 2);
        partial.cluster_version = Some(v("3.4.0"));
        for m in &mut partial.members[..2] {
            m.agent_previous = Some(v("3.4.23"));
        }
        let checks = rollback_checks(&partial, Direction::Upgrade);
        assert_eq!(
            verdict(&checks, ids::ROLLBACK_BEFORE_FLIP),
            Verdict::Pass,
            "{checks:#?}"
        );

        // Everyone on 3.5 after an upgrade from 3.4: flipped.
        let mut done = cluster(&["3.5.16"; 3], 0);
        done.cluster_version = Some(v("3.5.0"));
        for m in &mut done.members {
            m.agent_previous = Some(v("3.4.23"));
        }
        let checks = rollback_checks(&done, Direction::Upgrade);
        assert_eq!(verdict(&checks, ids::ROLLBACK_BEFORE_FLIP), Verdict::Fail);
        assert!(checks.iter().any(|c| c.message.contains("restore the snapshot")));

        // A changed member whose agent has nothing to go back to.
        let mut lost = cluster(&["3.5.16", "3.4.23", "3.4.23"], 1);
        lost.cluster_version = Some(v("3.4.0"));
        lost.members[0].agent_previous = None;
        assert_eq!(
            verdict(&rollback_checks(&lost, Direction::Upgrade), ids::ROLLBACK_BEFORE_FLIP),
            Verdict::Fail
        );

        // Nothing changed at all: a no-op.
        let same = cluster(&["3.4.23"; 3], 0);
        assert_eq!(
            verdict(&rollback_checks(&same, Direction::Upgrade), ids::ROLLBACK_BEFORE_FLIP),
            Verdict::Pass
        );
    }

    #[test]
    fn rollback_wants_exactly_the_version_the_unchanged_members_run() {
        let mut partial = cluster(&["3.5.16", "3.4.23", "3.4.23"], 2);
        partial.cluster_version = Some(v("3.4.0"));
        partial.members[0].agent_previous = Some(v("3.4.20"));
        let checks = rollback_checks(&partial, Direction::Upgrade);
        assert_eq!(verdict(&checks, ids::ROLLBACK_BEFORE_FLIP), Verdict::Fail);
        assert!(
            checks
                .iter()
                .any(|c| c.message.contains("m0's previous version is 3.4.20, not 3.4.23")),
            "{checks:#?}"
        );
    }

    #[test]
    fn a_partial_downgrade_is_undone_upwards() {
        // m1 was downgraded to 3.5.16; m0 and m2 still run 3.5.30, and their
        // own previous version (from an older upgrade) is 3.5.16: undoing
        // the upgrade would finish the downgrade instead.
        let mut partial = cluster(&["3.5.30", "3.5.16", "3.5.30"], 0);
        partial.members[1].agent_previous = Some(v("3.5.30"));
        partial.members[0].agent_previous = Some(v("3.5.16"));
        partial.members[2].agent_previous = Some(v("3.5.16"));
        let checks = rollback_checks(&partial, Direction::Downgrade);
        assert_eq!(
            verdict(&checks, ids::ROLLBACK_BEFORE_FLIP),
            Verdict::Pass,
            "{checks:#?}"
        );
        let message = &checks
            .iter()
            .find(|c| c.rule == ids::ROLLBACK_BEFORE_FLIP)
            .unwrap()
            .message;
        assert!(message.contains("m1 back to 3.5.30"), "{message}");
        assert_eq!(rollback_baseline(&partial, Direction::Downgrade), Some(&v("3.5.30")));
    }

    #[test]
    fn a_finished_downgrade_points_at_upgrade() {
        let mut done = cluster(&["3.4.33"; 3], 0);
        done.cluster_version = Some(v("3.4.0"));
        for m in &mut done.members {
            m.agent_previous = Some(v("3.5.30"));
        }
        let checks = rollback_checks(&done, Direction::Downgrade);
        assert_eq!(verdict(&checks, ids::ROLLBACK_BEFORE_FLIP), Verdict::Fail);
        assert!(
            checks.iter().any(|c| c.message.contains("steward upgrade --to 3.5.30")),
            "{checks:#?}"
        );
    }

    #[test]
    fn an_enabled_downgrade_api_downgrade_can_be_undone() {
        // 3.6 -> 3.5 through the Downgrade API: the cluster version dropped
        // to 3.5 when the downgrade was enabled; m2 already runs 3.5.
        let mut partial = cluster(&["3.6.0", "3.6.0", "3.5.26"], 0);
        partial.cluster_version = Some(v("3.5.0"));
        partial.members[2].agent_previous = Some(v("3.6.0"));
        for m in &mut partial.members[..2] {
            m.downgrade_target = Some(v("3.5.0"));
        }
        let checks = rollback_checks(&partial, Direction::Downgrade);
        assert_eq!(
            verdict(&checks, ids::ROLLBACK_BEFORE_FLIP),
            Verdict::Pass,
            "{checks:#?}"
        );
        assert!(checks.iter().any(|c| c.message.contains("cancelled first")));
        // Without the enabled downgrade, a lower cluster version means the
        // change cannot be undone by swapping binaries.
        for m in &mut partial.members {
            m.downgrade_target = None;
        }
        let checks = rollback_checks(&partial, Direction::Downgrade);
        assert_eq!(verdict(&checks, ids::ROLLBACK_BEFORE_FLIP), Verdict::Fail);
    }

    #[test]
    fn a_failed_agent_is_refused() {
        let mut observed = cluster(&["3.4.23"; 3], 0);
        observed.members[1].agent_state = "failed".into();
        let checks = run(&observed, Direction::Upgrade, "3.5.16", &with_binaries(&["3.5.16"]));
        assert_eq!(verdict(&checks, ids::AGENTS_READY), Verdict::Fail);
    }
}
