//! The rolling plan: which versions a cluster passes through on its way to
//! a target (one minor per pass), and in which order its members change in
//! each pass (followers first, the leader last).
//!
//! Everything here is a pure function of an [`Observed`] cluster, so the
//! same code prints `steward plan`, drives `steward upgrade`, and decides
//! where a resumed run stands: the next step is always computed from what
//! the cluster looks like now, never from what a previous run remembered.

use std::fmt;

use steward_proto::EtcdVersion;

use crate::engine::cluster::observed::{Observed, ObservedMember};

/// Which way the versions move.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// To a higher version.
    Upgrade,
    /// To a lower version.
    Downgrade,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Upgrade => "upgrade",
            Self::Downgrade => "downgrade",
        })
    }
}

/// Why no plan can be made at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// No member reported a version.
    #[error("no member reported its version; is the cluster up?")]
    NoVersions,
    /// The target is on the wrong side of the cluster's versions.
    #[error("{target} is not an {direction} of a cluster running {lowest}..{highest}; use `steward {other}`")]
    WrongDirection {
        /// What was asked.
        direction: Direction,
        /// The other command.
        other: Direction,
        /// The target.
        target: EtcdVersion,
        /// The lowest member version.
        lowest: EtcdVersion,
        /// The highest member version.
        highest: EtcdVersion,
    },
    /// Another major version.
    #[error("{target} is another major version than the cluster's {current}; steward moves etcd 3.x only")]
    OtherMajor {
        /// The target.
        target: EtcdVersion,
        /// The cluster's version.
        current: EtcdVersion,
    },
    /// A minor in between has no binary to run.
    #[error(
        "reaching {target} from {from} passes through {major}.{minor}, and no {major}.{minor}.x binary was given \
         (one minor per pass: add one to --binaries, or upgrade to {major}.{minor} first)"
    )]
    MissingHop {
        /// Where the cluster is.
        from: EtcdVersion,
        /// Where it should go.
        target: EtcdVersion,
        /// The major of the missing minor.
        major: u64,
        /// The minor without a binary.
        minor: u64,
    },
    /// A downgrade of more than one minor.
    #[error(
        "{from} -> {target} is a downgrade of more than one minor; etcd supports one minor at a time (3.6 -> 3.5, 3.5 -> 3.4)"
    )]
    DowngradeTooFar {
        /// Where the cluster is.
        from: EtcdVersion,
        /// Where it should go.
        target: EtcdVersion,
    },
}

impl PlanError {
    /// The rule the refusal enforces.
    #[must_use]
    pub const fn rule(&self) -> &'static str {
        match self {
            Self::NoVersions => crate::engine::roll::rules::ids::HEALTH,
            Self::WrongDirection { .. } | Self::OtherMajor { .. } => crate::engine::roll::rules::ids::DIRECTION,
            Self::MissingHop { .. } => crate::engine::roll::rules::ids::ADJACENT_MINORS,
            Self::DowngradeTooFar { .. } => crate::engine::roll::rules::ids::DOWNGRADE_ONE_MINOR,
        }
    }
}

/// One pass: every member moves to `target`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Pass {
    /// The version every member runs at the end of the pass.
    pub target: EtcdVersion,
    /// The cluster's minor version before the pass.
    pub from: EtcdVersion,
    /// Whether the pass changes the minor version (the cluster version
    /// flips when its last member is done).
    pub changes_minor: bool,
    /// 3.6 -> 3.5: the cluster must be told through the Downgrade API.
    pub uses_downgrade_api: bool,
    /// Members in the order they change: followers by name, leader last.
    pub order: Vec<PlannedStep>,
}

/// One member's change within a pass.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PlannedStep {
    /// Member name.
    pub member: String,
    /// Member id.
    pub id: u64,
    /// The version it runs before the step (as far as the plan knows).
    pub from: Option<EtcdVersion>,
    /// The leader at planning time: leadership moves away first.
    pub is_leader: bool,
    /// Already at the pass target (a resumed run skips it).
    pub done: bool,
}

/// The whole plan.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Plan {
    /// Upgrade or downgrade.
    pub direction: Direction,
    /// The lowest (upgrade) or highest (downgrade) member version now.
    pub from: EtcdVersion,
    /// The final version.
    pub to: EtcdVersion,
    /// The passes, in order.
    pub passes: Vec<Pass>,
}

impl Plan {
    /// True when no member has anything left to do.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.passes.iter().all(|p| p.order.iter().all(|s| s.done))
    }
}

/// True for 3.5.0, 3.5.1 and 3.5.2, which have a known data-inconsistency
/// bug and are never picked as an intermediate hop.
#[must_use]
pub fn is_unsafe_3_5(version: &EtcdVersion) -> bool {
    version.minor_version() == (3, 5) && version.patch() < 3
}

/// The versions a cluster passes through to reach `target`: one minor per
/// pass, each intermediate minor at the newest safe version in `available`.
pub fn hops(
    observed: &Observed,
    direction: Direction,
    target: &EtcdVersion,
    available: &[EtcdVersion],
) -> Result<(EtcdVersion, Vec<EtcdVersion>), PlanError> {
    let lowest = observed.lowest_version().ok_or(PlanError::NoVersions)?.clone();
    let highest = observed.highest_version().ok_or(PlanError::NoVersions)?.clone();
    if target.major() != lowest.major() {
        return Err(PlanError::OtherMajor {
            target: target.clone(),
            current: lowest,
        });
    }
    let wrong = |other| PlanError::WrongDirection {
        direction,
        other,
        target: target.clone(),
        lowest: lowest.clone(),
        highest: highest.clone(),
    };
    match direction {
        Direction::Upgrade => {
            if *target < highest {
                return Err(wrong(Direction::Downgrade));
            }
            let newest_in = |minor: u64| {
                available
                    .iter()
                    .filter(|v| v.minor_version() == (target.major(), minor) && !is_unsafe_3_5(v))
                    .max()
            };
            let mut passes = Vec::new();
            let mut at = lowest.clone();
            for minor in lowest.minor() + 1..=target.minor() {
                // A guide that names a minimum patch before the next minor
                // gets a patch pass first, when a binary for it is given;
                // without one the rule refuses the plan.
                if let Some(rule) = crate::engine::roll::rules::minimum_patch_out_of(&at)
                    && at < rule.minimum
                    && let Some(patch) = newest_in(at.minor()).filter(|p| **p >= rule.minimum)
                {
                    passes.push(patch.clone());
                }
                let hop = if minor == target.minor() {
                    target
                } else {
                    newest_in(minor).ok_or(PlanError::MissingHop {
                        from: lowest.clone(),
                        target: target.clone(),
                        major: target.major(),
                        minor,
                    })?
                };
                passes.push(hop.clone());
                at = hop.clone();
            }
            if passes.is_empty() {
                // A patch upgrade within the minor.
                passes.push(target.clone());
            }
            Ok((lowest, passes))
        }
        Direction::Downgrade => {
            if *target > lowest {
                return Err(wrong(Direction::Upgrade));
            }
            if highest.minor() > target.minor() + 1 {
                return Err(PlanError::DowngradeTooFar {
                    from: highest,
                    target: target.clone(),
                });
            }
            Ok((highest, vec![target.clone()]))
        }
    }
}

/// Whether `member` has finished a pass to `target`.
fn done(member: &ObservedMember, direction: Direction, target: &EtcdVersion) -> bool {
    member.version.as_ref().is_some_and(|v| match direction {
        // A member past the target's patch in the same minor is done too:
        // an upgrade never moves a member down.
        Direction::Upgrade => v >= target,
        Direction::Downgrade => v == target,
    })
}

/// Builds the full plan for `target`.
pub fn plan(
    observed: &Observed,
    direction: Direction,
    target: &EtcdVersion,
    available: &[EtcdVersion],
) -> Result<Plan, PlanError> {
    let (from, targets) = hops(observed, direction, target, available)?;
    let mut passes = Vec::new();
    let mut pass_from = from.clone();
    for (index, pass_target) in targets.iter().enumerate() {
        let first = index == 0;
        let order = member_order(observed)
            .into_iter()
            .map(|m| PlannedStep {
                member: m.name.clone(),
                id: m.id,
                // Later passes start from the previous pass's target.
                from: if first {
                    m.version.clone()
                } else {
                    Some(pass_from.clone())
                },
                is_leader: m.is_leader,
                // Marked below, for every pass at once.
                done: false,
            })
            .collect();
        passes.push(Pass {
            target: pass_target.clone(),
            from: pass_from.clone(),
            changes_minor: !pass_from.same_minor(pass_target),
            uses_downgrade_api: direction == Direction::Downgrade
                && pass_from.at_least_minor(3, 6)
                && !pass_from.same_minor(pass_target),
            order,
        });
        pass_from = pass_target.clone();
    }
    // A member already past an intermediate pass (a resumed multi-pass run)
    // is done in that pass as well.
    for pass in &mut passes {
        for step in &mut pass.order {
            if let Some(member) = observed.members.iter().find(|m| m.id == step.id)
                && done(member, direction, &pass.target)
            {
                step.done = true;
                step.from = member.version.clone();
            }
        }
    }
    Ok(Plan {
        direction,
        from,
        to: target.clone(),
        passes,
    })
}

/// Followers first (learners, then voters, by name), the leader last.
fn member_order(observed: &Observed) -> Vec<&ObservedMember> {
    let mut members: Vec<&ObservedMember> = observed.members.iter().collect();
    members.sort_by(|a, b| (a.is_leader, !a.is_learner, &a.name).cmp(&(b.is_leader, !b.is_learner, &b.name)));
    members
}

/// What to do next in a pass, decided from the cluster as it is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NextStep {
    /// Change this member (not the leader).
    Change {
        /// Member name.
        member: String,
    },
    /// The leader is the only one left: move leadership to `to`, then
    /// change it.
    MoveLeaderThenChange {
        /// The leader's name.
        leader: String,
        /// The member that takes over.
        to: String,
        /// Its id (MoveLeader's argument).
        to_id: u64,
    },
    /// The leader is the only one left and no member can take over (a
    /// single-member cluster): change it in place.
    ChangeLeaderInPlace {
        /// The leader's name.
        leader: String,
    },
    /// Every member runs the pass target.
    PassDone,
}

/// The next step towards `target`: a follower that is not done yet, or,
/// when only the leader is left, the leader after MoveLeader to a healthy,
/// caught-up voting member, one that already runs the target if there is
/// one (else the most caught-up). Whether the step may be taken now is for
/// [`crate::engine::roll::safety::clearance`] to say, on the same observation.
#[must_use]
pub fn next_step(observed: &Observed, direction: Direction, target: &EtcdVersion) -> NextStep {
    let pending: Vec<&ObservedMember> = member_order(observed)
        .into_iter()
        .filter(|m| !done(m, direction, target))
        .collect();
    let Some(first) = pending.first() else {
        return NextStep::PassDone;
    };
    if !first.is_leader {
        return NextStep::Change {
            member: first.name.clone(),
        };
    }
    match best_transferee(observed, first, |m| done(m, direction, target)) {
        Some(to) => NextStep::MoveLeaderThenChange {
            leader: first.name.clone(),
            to: to.name.clone(),
            to_id: to.id,
        },
        None => NextStep::ChangeLeaderInPlace {
            leader: first.name.clone(),
        },
    }
}

/// The member leadership should move to away from `leader`: a healthy,
/// caught-up voting member, the most caught-up one.
#[must_use]
pub fn transferee<'a>(observed: &'a Observed, leader: &str) -> Option<&'a ObservedMember> {
    let leader = observed.members.iter().find(|m| m.name == leader)?;
    best_transferee(observed, leader, |_| false)
}

/// A healthy, caught-up voting member other than `leader`: one `preferred`
/// if there is one, then the most caught-up, then by name.
fn best_transferee<'a>(
    observed: &'a Observed,
    leader: &ObservedMember,
    preferred: impl Fn(&ObservedMember) -> bool,
) -> Option<&'a ObservedMember> {
    observed
        .members
        .iter()
        .filter(|m| {
            m.name != leader.name && !m.is_learner && m.healthy && crate::engine::roll::safety::caught_up(m, leader)
        })
        .max_by_key(|m| (preferred(m), m.applied_index, std::cmp::Reverse(m.name.clone())))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn v(text: &str) -> EtcdVersion {
        text.parse().unwrap()
    }

    pub(crate) fn member(name: &str, id: u64, version: &str, leader: bool) -> ObservedMember {
        ObservedMember {
            name: name.into(),
            id,
            agent: Some(format!("127.0.0.1:{}", 7400 + id)),
            version: Some(v(version)),
            healthy: true,
            is_leader: leader,
            applied_index: 100,
            db_size: 1 << 20,
            v3_db_present: true,
            staged: vec![v(version)],
            agent_state: "running".into(),
            state_dir_free_bytes: 10 << 30,
            ..ObservedMember::default()
        }
    }

    pub(crate) fn cluster(versions: &[&str], leader: usize) -> Observed {
        Observed {
            members: versions
                .iter()
                .enumerate()
                .map(|(i, ver)| member(&format!("m{i}"), i as u64 + 1, ver, i == leader))
                .collect(),
            cluster_version: Some(v(&format!("{}.0", &versions[0][..3]))),
            ..Observed::default()
        }
    }

    #[test]
    fn one_minor_is_one_pass() {
        let (from, passes) = hops(&cluster(&["3.4.23"; 3], 0), Direction::Upgrade, &v("3.5.16"), &[]).unwrap();
        assert_eq!(from, v("3.4.23"));
        assert_eq!(passes, [v("3.5.16")]);
    }

    #[test]
    fn two_minors_are_two_passes_through_the_newest_safe_middle() {
        let available = [v("3.4.20"), v("3.4.23"), v("3.5.0"), v("3.5.16")];
        let (_, passes) = hops(
            &cluster(&["3.3.25"; 3], 0),
            Direction::Upgrade,
            &v("3.5.16"),
            &available,
        )
        .unwrap();
        assert_eq!(passes, [v("3.4.23"), v("3.5.16")]);
        let (_, passes) = hops(
            &cluster(&["3.3.25"; 3], 0),
            Direction::Upgrade,
            &v("3.6.0"),
            &[v("3.4.23"), v("3.5.1"), v("3.5.30")],
        )
        .unwrap();
        assert_eq!(
            passes,
            [v("3.4.23"), v("3.5.30"), v("3.6.0")],
            "3.5.0-3.5.2 are never a hop"
        );
    }

    #[test]
    fn a_guides_minimum_patch_comes_first_as_its_own_pass() {
        let available = [v("3.5.30"), v("3.5.36"), v("3.6.10"), v("3.6.17"), v("3.7.3")];
        let (_, passes) = hops(
            &cluster(&["3.5.16"; 3], 0),
            Direction::Upgrade,
            &v("3.6.17"),
            &available,
        )
        .unwrap();
        assert_eq!(passes, [v("3.5.36"), v("3.6.17")], "3.5.16 -> the newest 3.5 -> 3.6");
        let (_, passes) = hops(&cluster(&["3.6.5"; 3], 0), Direction::Upgrade, &v("3.7.3"), &available).unwrap();
        assert_eq!(passes, [v("3.6.17"), v("3.7.3")], "3.6.5 -> the newest 3.6 -> 3.7");
        let (_, passes) = hops(&cluster(&["3.4.23"; 3], 0), Direction::Upgrade, &v("3.7.3"), &available).unwrap();
        assert_eq!(passes, [v("3.5.36"), v("3.6.17"), v("3.7.3")]);
        let (_, passes) = hops(
            &cluster(&["3.5.36"; 3], 0),
            Direction::Upgrade,
            &v("3.6.17"),
            &available,
        )
        .unwrap();
        assert_eq!(passes, [v("3.6.17")], "no patch pass when the cluster is new enough");
        let (_, passes) = hops(
            &cluster(&["3.5.16"; 3], 0),
            Direction::Upgrade,
            &v("3.5.30"),
            &available,
        )
        .unwrap();
        assert_eq!(passes, [v("3.5.30")], "a patch upgrade is one pass");
        let (_, passes) = hops(
            &cluster(&["3.5.16"; 3], 0),
            Direction::Upgrade,
            &v("3.6.17"),
            &[v("3.5.30"), v("3.6.17")],
        )
        .unwrap();
        assert_eq!(
            passes,
            [v("3.6.17")],
            "no binary of the minimum: the rule refuses the plan instead"
        );
        let p = plan(
            &cluster(&["3.5.16", "3.5.36", "3.5.16"], 1),
            Direction::Upgrade,
            &v("3.6.17"),
            &available,
        )
        .unwrap();
        let done: Vec<bool> = p.passes[0].order.iter().map(|s| s.done).collect();
        assert_eq!(
            done,
            [false, false, true],
            "a member already on the patch is done in that pass"
        );
        assert!(!p.passes[0].changes_minor && p.passes[1].changes_minor);
    }

    #[test]
    fn a_missing_middle_minor_is_refused() {
        let err = hops(&cluster(&["3.3.25"; 3], 0), Direction::Upgrade, &v("3.5.16"), &[]).unwrap_err();
        assert!(matches!(err, PlanError::MissingHop { minor: 4, .. }), "{err}");
        assert_eq!(err.rule(), crate::engine::roll::rules::ids::ADJACENT_MINORS);
        assert!(err.to_string().contains("3.4"));
    }

    #[test]
    fn the_wrong_direction_is_refused() {
        let err = hops(&cluster(&["3.5.16"; 3], 0), Direction::Upgrade, &v("3.4.23"), &[]).unwrap_err();
        assert!(err.to_string().contains("steward downgrade"), "{err}");
        let err = hops(&cluster(&["3.4.23"; 3], 0), Direction::Downgrade, &v("3.5.16"), &[]).unwrap_err();
        assert!(err.to_string().contains("steward upgrade"), "{err}");
        let err = hops(&cluster(&["3.4.23"; 3], 0), Direction::Upgrade, &v("4.0.0"), &[]).unwrap_err();
        assert!(matches!(err, PlanError::OtherMajor { .. }));
    }

    #[test]
    fn downgrades_go_one_minor_at_most() {
        let (_, passes) = hops(&cluster(&["3.5.16"; 3], 0), Direction::Downgrade, &v("3.4.33"), &[]).unwrap();
        assert_eq!(passes, [v("3.4.33")]);
        let err = hops(&cluster(&["3.5.16"; 3], 0), Direction::Downgrade, &v("3.3.25"), &[]).unwrap_err();
        assert!(matches!(err, PlanError::DowngradeTooFar { .. }));
        let (_, passes) = hops(&cluster(&["3.5.30"; 3], 0), Direction::Downgrade, &v("3.5.16"), &[]).unwrap();
        assert_eq!(passes, [v("3.5.16")], "a patch downgrade");
    }

    #[test]
    fn followers_go_first_and_the_leader_last() {
        let p = plan(&cluster(&["3.4.23"; 3], 0), Direction::Upgrade, &v("3.5.16"), &[]).unwrap();
        let order: Vec<&str> = p.passes[0].order.iter().map(|s| s.member.as_str()).collect();
        assert_eq!(order, ["m1", "m2", "m0"]);
        assert!(p.passes[0].order[2].is_leader);
        assert!(p.passes[0].changes_minor);
        assert!(!p.is_complete());
    }

    #[test]
    fn learners_go_before_voting_followers() {
        let mut observed = cluster(&["3.4.23"; 3], 2);
        observed.members[1].is_learner = true;
        let p = plan(&observed, Direction::Upgrade, &v("3.5.16"), &[]).unwrap();
        let order: Vec<&str> = p.passes[0].order.iter().map(|s| s.member.as_str()).collect();
        assert_eq!(order, ["m1", "m0", "m2"]);
    }

    #[test]
    fn a_resumed_run_skips_members_already_done() {
        let observed = cluster(&["3.5.16", "3.4.23", "3.5.16"], 1);
        let p = plan(&observed, Direction::Upgrade, &v("3.5.16"), &[]).unwrap();
        let done: Vec<(&str, bool)> = p.passes[0].order.iter().map(|s| (s.member.as_str(), s.done)).collect();
        assert_eq!(done, [("m0", true), ("m2", true), ("m1", false)]);
        let finished = cluster(&["3.5.16"; 3], 0);
        assert!(
            plan(&finished, Direction::Upgrade, &v("3.5.16"), &[])
                .unwrap()
                .is_complete()
        );
    }

    #[test]
    fn two_passes_know_where_each_member_stands() {
        // A run stopped in the middle of the second pass.
        let observed = cluster(&["3.5.16", "3.4.23", "3.4.23"], 2);
        let p = plan(&observed, Direction::Upgrade, &v("3.5.16"), &[v("3.4.23")]).unwrap();
        assert_eq!(p.from, v("3.4.23"));
        assert_eq!(p.passes.len(), 1, "3.4 -> 3.5 is left");
        let observed = cluster(&["3.4.23", "3.3.25", "3.3.25"], 2);
        let p = plan(&observed, Direction::Upgrade, &v("3.5.16"), &[v("3.4.23")]).unwrap();
        assert_eq!(p.passes.len(), 2);
        assert!(p.passes[0].order.iter().find(|s| s.member == "m0").unwrap().done);
        assert!(!p.passes[1].order.iter().any(|s| s.done));
        assert_eq!(p.passes[1].order[0].from, Some(v("3.4.23")));
    }

    #[test]
    fn a_3_6_downgrade_uses_the_downgrade_api() {
        let p = plan(&cluster(&["3.6.0"; 3], 0), Direction::Downgrade, &v("3.5.26"), &[]).unwrap();
        assert!(p.passes[0].uses_downgrade_api);
        let p = plan(&cluster(&["3.5.16"; 3], 0), Direction::Downgrade, &v("3.4.33"), &[]).unwrap();
        assert!(!p.passes[0].uses_downgrade_api);
    }

    #[test]
    fn next_step_changes_followers_then_moves_the_leader_to_the_most_caught_up() {
        let mut observed = cluster(&["3.4.23"; 3], 0);
        assert_eq!(
            next_step(&observed, Direction::Upgrade, &v("3.5.16")),
            NextStep::Change { member: "m1".into() }
        );
        observed.members[1].version = Some(v("3.5.16"));
        observed.members[1].applied_index = 90;
        assert_eq!(
            next_step(&observed, Direction::Upgrade, &v("3.5.16")),
            NextStep::Change { member: "m2".into() }
        );
        observed.members[2].version = Some(v("3.5.16"));
        observed.members[2].applied_index = 120;
        assert_eq!(
            next_step(&observed, Direction::Upgrade, &v("3.5.16")),
            NextStep::MoveLeaderThenChange {
                leader: "m0".into(),
                to: "m2".into(),
                to_id: 3
            }
        );
        observed.members[0].version = Some(v("3.5.16"));
        assert_eq!(
            next_step(&observed, Direction::Upgrade, &v("3.5.16")),
            NextStep::PassDone
        );
    }

    #[test]
    fn leadership_never_moves_to_a_learner_or_an_unhealthy_member() {
        let mut observed = cluster(&["3.4.23", "3.5.16", "3.5.16"], 0);
        observed.members[1].is_learner = true;
        observed.members[2].healthy = false;
        assert_eq!(
            next_step(&observed, Direction::Upgrade, &v("3.5.16")),
            NextStep::ChangeLeaderInPlace { leader: "m0".into() }
        );
    }

    #[test]
    fn leadership_prefers_a_member_on_the_target_and_never_one_far_behind() {
        let mut observed = cluster(&["3.4.23", "3.5.16", "3.4.23"], 0);
        observed.members[2].applied_index = 150;
        let step = next_step(&observed, Direction::Downgrade, &v("3.4.23"));
        assert_eq!(step, NextStep::Change { member: "m1".into() });
        // Only the leader left: m2 is done and caught up.
        observed.members[1].version = Some(v("3.4.23"));
        observed.members[0].version = Some(v("3.5.16"));
        observed.members[1].applied_index = 90;
        assert_eq!(
            next_step(&observed, Direction::Downgrade, &v("3.4.23")),
            NextStep::MoveLeaderThenChange {
                leader: "m0".into(),
                to: "m2".into(),
                to_id: 3
            }
        );
        // A member thousands of entries behind never takes over.
        observed.members[0].applied_index = 100_000;
        observed.members[2].applied_index = 100;
        observed.members[1].applied_index = 99_000;
        assert_eq!(
            next_step(&observed, Direction::Downgrade, &v("3.4.23")),
            NextStep::MoveLeaderThenChange {
                leader: "m0".into(),
                to: "m1".into(),
                to_id: 2
            }
        );
    }

    #[test]
    fn a_single_member_changes_in_place() {
        let observed = cluster(&["3.4.23"], 0);
        assert_eq!(
            next_step(&observed, Direction::Upgrade, &v("3.5.16")),
            NextStep::ChangeLeaderInPlace { leader: "m0".into() }
        );
    }
}
