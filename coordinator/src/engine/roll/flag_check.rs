//! The agents' flag rules as one preflight check: every member that a plan
//! will change is asked (CheckFlags) how its flags render for the pass
//! target, and a member whose spec the target cannot run refuses the whole
//! change before anything is staged, as `steward plan` shows it.

use steward_proto::EtcdVersion;
use steward_proto::v1 as pb;

use crate::engine::cluster::observed::Observed;
use crate::engine::connect::Connector;
use crate::engine::connect::agent::AnswerError;
use crate::engine::roll::plan::Plan;
use crate::engine::roll::rules::{Check, Verdict};

/// The rule id of the check.
pub const RULE: &str = crate::engine::check::ids::MEMBER_FLAGS;

/// Where the flag rules come from.
const SOURCE: &str = "the upgrade guides' flag changes (CheckFlags on every agent)";

/// One member's answer for one pass.
#[derive(Clone, Debug)]
pub struct MemberFlags {
    /// The member's name.
    pub member: String,
    /// The pass target.
    pub target: EtcdVersion,
    /// The agent's answer, or why it could not be had.
    pub answer: Result<pb::CheckFlagsResponse, String>,
}

/// Asks one agent how the member's flags render for `target`, switching
/// from `from` (the version the member will run by then).
pub async fn ask(
    connector: &Connector,
    agent: &str,
    target: &EtcdVersion,
    from: Option<&EtcdVersion>,
) -> Result<pb::CheckFlagsResponse, AnswerError> {
    let mut clients = AnswerError::connect(connector, agent).await?;
    let request = pb::CheckFlagsRequest {
        target_version: target.to_string(),
        from_version: from.map(ToString::to_string).unwrap_or_default(),
    };
    clients
        .agent
        .check_flags(request)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| AnswerError::refused("CheckFlags", &s))
}

/// Asks every agent of every member a step of `plan` still has to change.
pub async fn ask_all(connector: &Connector, observed: &Observed, plan: &Plan) -> Vec<MemberFlags> {
    // Every agent is asked at once; the answers keep the plan's order.
    let questions = plan.passes.iter().flat_map(|pass| {
        pass.order.iter().filter(|s| !s.done).map(move |step| {
            let agent = observed
                .members
                .iter()
                .find(|m| m.id == step.id)
                .and_then(|m| m.agent.clone());
            async move {
                let answer = match agent {
                    Some(agent) => ask(connector, &agent, &pass.target, step.from.as_ref())
                        .await
                        .map_err(|e| e.to_string()),
                    None => Err("no agent".to_owned()),
                };
                MemberFlags {
                    member: step.member.clone(),
                    target: pass.target.clone(),
                    answer,
                }
            }
        })
    });
    futures::future::join_all(questions).await
}

/// The check over every answer: refused when an agent refuses the target's
/// flags (naming the member, the flag and the agent's rule) or cannot be
/// asked.
#[must_use]
pub fn check(answers: &[MemberFlags]) -> Check {
    let mut problems = Vec::new();
    let mut changes = 0;
    for flags in answers {
        match &flags.answer {
            Ok(response) => {
                changes += response.changes.len();
                for change in response
                    .changes
                    .iter()
                    .filter(|c| c.kind() == pb::flag_change::Kind::Refused)
                {
                    let subject = if change.flag.is_empty() {
                        String::new()
                    } else {
                        format!("{} ", change.flag)
                    };
                    problems.push(format!(
                        "{} cannot run {}: {subject}{} (rule {})",
                        flags.member, flags.target, change.reason, change.rule
                    ));
                }
                if response.refused
                    && !response
                        .changes
                        .iter()
                        .any(|c| c.kind() == pb::flag_change::Kind::Refused)
                {
                    problems.push(format!(
                        "{} cannot run {}: its agent refuses the flags",
                        flags.member, flags.target
                    ));
                }
            }
            Err(error) => problems.push(format!(
                "{}: the flags for {} cannot be checked: {error}",
                flags.member, flags.target
            )),
        }
    }
    let (verdict, message) = if problems.is_empty() {
        (
            Verdict::Pass,
            format!(
                "every member's flags render for its target ({changes} change{} in all, see the plan)",
                if changes == 1 { "" } else { "s" }
            ),
        )
    } else {
        (Verdict::Fail, problems.join("; "))
    };
    Check {
        rule: RULE,
        verdict,
        message,
        source: SOURCE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(member: &str, changes: Vec<pb::FlagChange>) -> MemberFlags {
        let refused = changes.iter().any(|c| c.kind() == pb::flag_change::Kind::Refused);
        MemberFlags {
            member: member.into(),
            target: "3.4.23".parse().unwrap(),
            answer: Ok(pb::CheckFlagsResponse {
                changes,
                refused,
                ..Default::default()
            }),
        }
    }

    fn change(kind: pb::flag_change::Kind, flag: &str, rule: &str) -> pb::FlagChange {
        pb::FlagChange {
            kind: kind.into(),
            flag: flag.into(),
            reason: "etcd 3.4 does not know it".into(),
            rule: rule.into(),
            ..Default::default()
        }
    }

    #[test]
    fn renames_pass_and_are_counted() {
        let rename = change(pb::flag_change::Kind::Renamed, "--ca-file", "flags-3.4-trusted-ca-file");
        let result = check(&[answer("m0", vec![rename.clone()]), answer("m1", vec![rename])]);
        assert_eq!(result.verdict, Verdict::Pass);
        assert_eq!(result.rule, RULE);
        assert!(result.message.contains("2 changes"), "{}", result.message);
    }

    #[test]
    fn a_refused_flag_fails_naming_member_flag_and_rule() {
        let refused = change(pb::flag_change::Kind::Refused, "--experimental-x", "flags-removed");
        let result = check(&[answer("m0", vec![]), answer("m2", vec![refused])]);
        assert_eq!(result.verdict, Verdict::Fail);
        assert!(result.message.contains("m2 cannot run 3.4.23"), "{}", result.message);
        assert!(result.message.contains("--experimental-x"), "{}", result.message);
        assert!(result.message.contains("rule flags-removed"), "{}", result.message);
        assert!(!result.message.contains("m0"), "{}", result.message);
    }

    #[test]
    fn an_agent_that_cannot_be_asked_fails_the_check() {
        let unreachable = MemberFlags {
            member: "m1".into(),
            target: "3.5.30".parse().unwrap(),
            answer: Err("connection refused".into()),
        };
        let result = check(&[unreachable]);
        assert_eq!(result.verdict, Verdict::Fail);
        assert!(
            result
                .message
                .contains("m1: the flags for 3.5.30 cannot be checked: connection refused")
        );
    }

    #[test]
    fn nothing_to_ask_passes() {
        assert_eq!(check(&[]).verdict, Verdict::Pass);
    }
}
