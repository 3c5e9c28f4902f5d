//! The safety invariant: steward takes a member down only when the others
//! carry quorum without it.
//!
//! Every step that stops a member (a roll's Activate, a rollback's swap,
//! the rollback of a member that failed its gate, `steward agent
//! stop|restart|activate|rollback`) first asks [`clearance`] on an
//! observation taken right before the step, never on the plan's view: a
//! member can freeze, crash or win an election between two steps. The
//! answer is one of
//! - take it down now: the member answers with a known version, every other
//!   voting member answers a linearizable read and has applied nearly what
//!   the leader has, the cluster has one leader and no alarm;
//! - take it down after leadership moves away from it (it leads);
//! - not now, with every reason, each naming a member.
//!
//! The check is strict on purpose: with five members and one of them down,
//! another restart would still leave a quorum (3 of 5), but the cluster
//! would then survive no further failure while a member comes back on a new
//! binary, and the member that is down is an unexplained fault. steward
//! waits instead, and stops naming it if it does not come back.
//!
//! A restore is the one change that takes every member down on purpose,
//! after a confirmation that says so; it does not ask this check.

use std::fmt;

use crate::engine::cluster::observed::{Observed, ObservedMember};

/// How far (in raft entries) a member's applied index may trail the
/// leader's and still count as caught up. etcd keeps this many entries
/// after a raft-log snapshot for slow followers to catch up from
/// (`--snapshot-catchup-entries`, 5000 by default); a member further
/// behind needs a whole snapshot sent and is not ready to carry quorum.
/// Members are observed one after the other under a live writer, so some
/// lag is always seen.
pub const MAX_APPLIED_LAG: u64 = 5000;

/// When a member may be taken down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clearance {
    /// Now.
    Now,
    /// It leads: after leadership moved to another voting member (then
    /// ask again).
    AfterLeaderMoves,
}

/// One reason a member may not be taken down now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The member it concerns, or "cluster".
    pub member: String,
    /// What is wrong, in a phrase.
    pub what: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.member, self.what)
    }
}

/// Why a member may not be taken down now.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("taking {member} down now could cost the cluster its quorum: {}", list(.problems))]
pub struct Unsafe {
    /// The member that was to be taken down.
    pub member: String,
    /// Every reason.
    pub problems: Vec<Problem>,
}

impl Unsafe {
    /// The members named by the reasons, for noticing when the reasons
    /// change (their details, such as a timeout's wording, vary between
    /// observations).
    #[must_use]
    pub fn named(&self) -> Vec<&str> {
        self.problems.iter().map(|p| p.member.as_str()).collect()
    }
}

fn list(problems: &[Problem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Whether `member` may be taken down now, from `observed` (taken right
/// before the step).
///
/// # Errors
/// [`Unsafe`] with every reason, when it may not.
pub fn clearance(observed: &Observed, member: &str) -> Result<Clearance, Unsafe> {
    let mut problems = Vec::new();
    let mut problem = |member: &str, what: String| {
        problems.push(Problem {
            member: member.to_owned(),
            what,
        });
    };
    let Some(this) = observed.members.iter().find(|m| m.name == member) else {
        problem(member, "is not in the member list".into());
        return Err(Unsafe {
            member: member.to_owned(),
            problems,
        });
    };
    if !this.healthy {
        problem(member, format!("does not answer ({})", this.health_error));
    } else if this.version.is_none() {
        problem(member, "does not report its version".into());
    }
    let leader = observed.leader();
    if leader.is_none() {
        problem("cluster", "has no single leader".into());
    }
    if let Some(error) = &observed.alarms_error {
        problem("cluster", format!("alarms cannot be read ({error})"));
    }
    for (id, alarm) in &observed.alarms {
        let on = observed
            .members
            .iter()
            .find(|m| m.id == *id)
            .map_or_else(|| format!("{id:016x}"), |m| m.name.clone());
        problem(&on, format!("has the {alarm} alarm"));
    }
    for other in observed.members.iter().filter(|m| m.name != member && !m.is_learner) {
        if !other.healthy {
            problem(&other.name, format!("is not healthy ({})", other.health_error));
        } else if let Some(leader) = leader
            && !caught_up(other, leader)
        {
            problem(
                &other.name,
                format!(
                    "has applied index {}, {} behind the leader's {}",
                    other.applied_index,
                    leader.applied_index - other.applied_index,
                    leader.applied_index
                ),
            );
        }
    }
    if !problems.is_empty() {
        return Err(Unsafe {
            member: member.to_owned(),
            problems,
        });
    }
    let other_voters = observed
        .members
        .iter()
        .filter(|m| m.name != member && !m.is_learner)
        .count();
    if this.is_leader && other_voters > 0 {
        Ok(Clearance::AfterLeaderMoves)
    } else {
        Ok(Clearance::Now)
    }
}

/// Whether taking `member` down again to undo its own change is safe: a
/// member that does not answer carries no part of the quorum, so putting
/// its old binary back takes nothing away; one that answers is checked
/// like any other.
///
/// # Errors
/// [`Unsafe`] as [`clearance`].
pub fn clearance_to_undo(observed: &Observed, member: &str) -> Result<Clearance, Unsafe> {
    match observed.members.iter().find(|m| m.name == member) {
        Some(this) if !this.healthy => Ok(Clearance::Now),
        _ => clearance(observed, member),
    }
}

/// Whether `member` has applied nearly everything `leader` has.
#[must_use]
pub const fn caught_up(member: &ObservedMember, leader: &ObservedMember) -> bool {
    member.applied_index.saturating_add(MAX_APPLIED_LAG) >= leader.applied_index
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::roll::plan::tests::cluster;

    fn freeze(observed: &mut Observed, i: usize) {
        let member = &mut observed.members[i];
        member.healthy = false;
        member.version = None;
        member.is_leader = false;
        member.health_error = "Status failed: timed out".into();
    }

    fn reasons(result: Result<Clearance, Unsafe>) -> Vec<String> {
        result.unwrap_err().problems.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_follower_of_a_healthy_cluster_goes_now_and_the_leader_after_moving() {
        let observed = cluster(&["3.4.23"; 3], 0);
        assert_eq!(clearance(&observed, "m1"), Ok(Clearance::Now));
        assert_eq!(clearance(&observed, "m0"), Ok(Clearance::AfterLeaderMoves));
    }

    #[test]
    fn a_frozen_leader_blocks_every_member() {
        // Frozen: no answer, and until the election nobody else leads.
        let mut observed = cluster(&["3.5.16", "3.4.23", "3.4.23"], 1);
        freeze(&mut observed, 1);
        let frozen = reasons(clearance(&observed, "m1"));
        assert!(frozen.iter().any(|r| r.starts_with("m1 does not answer")), "{frozen:?}");
        assert!(
            frozen.contains(&"cluster has no single leader".to_owned()),
            "{frozen:?}"
        );
        let other = reasons(clearance(&observed, "m2"));
        assert!(other.iter().any(|r| r.starts_with("m1 is not healthy")), "{other:?}");
        // After the election the others have a leader, and still wait.
        observed.members[2].is_leader = true;
        let after = reasons(clearance(&observed, "m2"));
        assert_eq!(after.len(), 1, "{after:?}");
        assert!(after[0].starts_with("m1 is not healthy"));
    }

    #[test]
    fn a_frozen_follower_blocks_the_others_and_itself() {
        let mut observed = cluster(&["3.4.23"; 3], 0);
        freeze(&mut observed, 2);
        assert!(reasons(clearance(&observed, "m1"))[0].starts_with("m2 is not healthy"));
        assert!(reasons(clearance(&observed, "m0"))[0].starts_with("m2 is not healthy"));
        assert!(reasons(clearance(&observed, "m2"))[0].starts_with("m2 does not answer"));
    }

    #[test]
    fn two_unhealthy_members_are_both_named() {
        let mut observed = cluster(&["3.4.23"; 5], 0);
        freeze(&mut observed, 3);
        freeze(&mut observed, 4);
        let why = clearance(&observed, "m1").unwrap_err();
        assert_eq!(why.named(), ["m3", "m4"]);
        assert!(
            why.to_string()
                .starts_with("taking m1 down now could cost the cluster its quorum: m3 is not healthy")
        );
    }

    #[test]
    fn five_members_with_one_down_still_wait() {
        // 3 of 5 would keep quorum, but nothing could fail any more while
        // the member restarts: steward waits for the fifth.
        let mut observed = cluster(&["3.4.23"; 5], 0);
        freeze(&mut observed, 4);
        assert_eq!(clearance(&observed, "m1").unwrap_err().named(), ["m4"]);
    }

    #[test]
    fn learners_carry_no_quorum_and_are_not_waited_for() {
        let mut observed = cluster(&["3.4.23"; 4], 0);
        observed.members[3].is_learner = true;
        freeze(&mut observed, 3);
        assert_eq!(clearance(&observed, "m1"), Ok(Clearance::Now));
        // A learner itself is taken down only when it answers.
        assert!(clearance(&observed, "m3").is_err());
        observed.members[3].healthy = true;
        observed.members[3].version = observed.members[0].version.clone();
        assert_eq!(clearance(&observed, "m3"), Ok(Clearance::Now));
    }

    #[test]
    fn a_member_far_behind_the_leader_blocks_the_others() {
        let mut observed = cluster(&["3.4.23"; 3], 0);
        observed.members[0].applied_index = 20_000;
        observed.members[1].applied_index = 19_990;
        observed.members[2].applied_index = 20_000 - MAX_APPLIED_LAG - 1;
        let why = reasons(clearance(&observed, "m1"));
        assert_eq!(why, ["m2 has applied index 14999, 5001 behind the leader's 20000"]);
        assert_eq!(
            clearance(&observed, "m2"),
            Ok(Clearance::Now),
            "its own lag does not matter"
        );
    }

    #[test]
    fn alarms_and_unreadable_alarms_block() {
        let mut observed = cluster(&["3.4.23"; 3], 0);
        observed.alarms = vec![(3, "NOSPACE".into())];
        assert_eq!(reasons(clearance(&observed, "m1")), ["m2 has the NOSPACE alarm"]);
        observed.alarms.clear();
        observed.alarms_error = Some("Unavailable".into());
        assert_eq!(
            reasons(clearance(&observed, "m1")),
            ["cluster alarms cannot be read (Unavailable)"]
        );
    }

    #[test]
    fn an_unknown_version_or_an_unknown_member_blocks() {
        let mut observed = cluster(&["3.4.23"; 3], 0);
        observed.members[1].version = None;
        assert_eq!(reasons(clearance(&observed, "m1")), ["m1 does not report its version"]);
        assert_eq!(reasons(clearance(&observed, "m9")), ["m9 is not in the member list"]);
    }

    #[test]
    fn a_single_member_goes_in_place_and_two_members_need_each_other() {
        let observed = cluster(&["3.4.23"], 0);
        assert_eq!(clearance(&observed, "m0"), Ok(Clearance::Now));
        let mut observed = cluster(&["3.4.23"; 2], 0);
        assert_eq!(clearance(&observed, "m1"), Ok(Clearance::Now));
        freeze(&mut observed, 1);
        assert!(clearance(&observed, "m0").is_err());
    }

    #[test]
    fn undoing_a_member_that_does_not_answer_takes_nothing_away() {
        let mut observed = cluster(&["3.4.23"; 3], 0);
        freeze(&mut observed, 1);
        freeze(&mut observed, 2);
        assert_eq!(clearance_to_undo(&observed, "m1"), Ok(Clearance::Now));
        // One that answers while another is down stays up.
        observed.members[1].healthy = true;
        observed.members[1].version = observed.members[0].version.clone();
        assert!(clearance_to_undo(&observed, "m1").is_err());
    }
}
