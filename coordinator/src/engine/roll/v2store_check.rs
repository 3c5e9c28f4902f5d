//! The 3.6 upgrade guide's v2store check as a rule: before a 3.5 -> 3.6
//! pass, every member still on 3.5 runs `etcdutl check v2store` through
//! its agent (CheckV2Store), and custom v2 content anywhere refuses the
//! pass, naming the member and the guide's remedy.
//!
//! When the cluster is on 3.5 now, the check is part of the preflight (and
//! of `steward plan`). When the 3.5 -> 3.6 pass comes after another pass
//! (3.4 -> 3.5 -> 3.6, or a patch pass to 3.5.32+ first), the members do
//! not run that 3.5 yet and may have no etcdutl that can check: the engine
//! runs the same check when that pass begins.

use steward_proto::v1 as pb;

use crate::engine::cluster::observed::Observed;
use crate::engine::connect::Connector;
use crate::engine::connect::agent::AnswerError;
use crate::engine::roll::plan::{Pass, Plan};
use crate::engine::roll::rules::{Check, Verdict};

/// The rule id.
pub const RULE: &str = crate::engine::check::ids::V2STORE_CLEAN;

const SOURCE: &str = "3.6 upgrade guide (V2 Store)";

/// What to do about custom v2 content, from the guide.
const REMEDY: &str = "the 3.6 upgrade guide's remedy: migrate the v2 data to v3 (v2 migration guide) or delete it, \
     or, if it is not needed, start 3.6 with --v2-deprecation=write-only-skip-check at your own risk; custom v2 \
     content only in the WAL goes away with the next v2 snapshot (wait, or restart the member once with \
     --snapshot-count=1); then run the check again";

/// True for a pass from 3.5 to 3.6.
#[must_use]
pub fn crosses(pass: &Pass) -> bool {
    pass.from.minor_version() == (3, 5) && pass.target.minor_version() == (3, 6)
}

/// Where the check belongs for `plan`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// No 3.5 -> 3.6 pass has members left to change.
    NotNeeded,
    /// The first pass with work left is the 3.5 -> 3.6 one: check now.
    Now,
    /// A 3.5 -> 3.6 pass comes after another one: check when it begins.
    WhenThePassBegins,
}

/// Where the check belongs for `plan`.
#[must_use]
pub fn when(plan: &Plan) -> When {
    let mut open = plan.passes.iter().filter(|p| p.order.iter().any(|s| !s.done));
    match open.next() {
        Some(first) if crosses(first) => When::Now,
        Some(_) if open.any(crosses) => When::WhenThePassBegins,
        _ => When::NotNeeded,
    }
}

/// One member's answer.
#[derive(Clone, Debug)]
pub struct MemberV2Store {
    /// The member's name.
    pub member: String,
    /// The agent's answer, or why it could not be had.
    pub answer: Result<pb::CheckV2StoreResponse, String>,
}

/// Asks the agent of every member that runs 3.5.
pub async fn ask_all(connector: &Connector, observed: &Observed) -> Vec<MemberV2Store> {
    let mut answers = Vec::new();
    for member in observed
        .members
        .iter()
        .filter(|m| m.version.as_ref().is_some_and(|v| v.minor_version() == (3, 5)))
    {
        let answer = match &member.agent {
            Some(agent) => ask(connector, agent).await.map_err(|e| e.to_string()),
            None => Err("no agent".to_owned()),
        };
        answers.push(MemberV2Store {
            member: member.name.clone(),
            answer,
        });
    }
    answers
}

async fn ask(connector: &Connector, agent: &str) -> Result<pb::CheckV2StoreResponse, AnswerError> {
    let mut clients = AnswerError::connect(connector, agent).await?;
    clients
        .agent
        .check_v2_store(pb::CheckV2StoreRequest {})
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| AnswerError::refused("CheckV2Store", &s))
}

/// The check over every answer: refused when a member has custom v2
/// content (named, with etcdutl's verdict and the guide's remedy) or its
/// agent cannot run the check.
#[must_use]
pub fn check(answers: &[MemberV2Store]) -> Check {
    let mut dirty = Vec::new();
    let mut unknown = Vec::new();
    for answer in answers {
        match &answer.answer {
            Ok(response) if response.clean => {}
            Ok(response) => dirty.push(format!(
                "{}: {} (etcdutl {} check v2store)",
                answer.member, response.verdict, response.etcdutl_version
            )),
            Err(error) => unknown.push(format!("{}: the v2store cannot be checked: {error}", answer.member)),
        }
    }
    let (verdict, message) = if dirty.is_empty() && unknown.is_empty() {
        (
            Verdict::Pass,
            format!(
                "no custom v2 content on {} member{} (etcdutl check v2store)",
                answers.len(),
                if answers.len() == 1 { "" } else { "s" }
            ),
        )
    } else {
        let mut parts = dirty.clone();
        parts.extend(unknown);
        if !dirty.is_empty() {
            parts.push(REMEDY.to_owned());
        }
        (Verdict::Fail, parts.join("; "))
    };
    Check {
        rule: RULE,
        verdict,
        message,
        source: SOURCE,
    }
}

/// The preflight's line for `plan`: the check itself when the cluster is
/// on 3.5 now, a note when the pass comes later, nothing when there is no
/// such pass.
pub async fn preflight(connector: &Connector, plan: &Plan, observed: &Observed) -> Option<Check> {
    match when(plan) {
        When::Now => Some(check(&ask_all(connector, observed).await)),
        When::WhenThePassBegins => Some(deferred()),
        When::NotNeeded => None,
    }
}

/// The check's line when the pass comes later.
#[must_use]
pub fn deferred() -> Check {
    Check {
        rule: RULE,
        verdict: Verdict::Pass,
        message: "checked when the 3.5 -> 3.6 pass begins, after the passes before it".to_owned(),
        source: SOURCE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::roll::plan::tests::{cluster, v};
    use crate::engine::roll::plan::{Direction, plan};

    fn answer(member: &str, clean: bool, verdict: &str) -> MemberV2Store {
        MemberV2Store {
            member: member.into(),
            answer: Ok(pb::CheckV2StoreResponse {
                clean,
                verdict: verdict.into(),
                etcdutl_version: "3.5.36".into(),
            }),
        }
    }

    #[test]
    fn custom_content_is_refused_naming_the_member_and_the_remedy() {
        let result = check(&[
            answer("m0", true, "No custom content found in both v2store and WAL records"),
            answer("m1", false, "detected custom content in v2store"),
        ]);
        assert_eq!(result.verdict, Verdict::Fail);
        assert!(
            result.message.contains("m1: detected custom content in v2store"),
            "{}",
            result.message
        );
        assert!(!result.message.contains("m0"), "{}", result.message);
        assert!(result.message.contains("write-only-skip-check"), "{}", result.message);
    }

    #[test]
    fn clean_members_pass_and_an_unanswered_one_fails() {
        let clean = answer("m0", true, "No custom content found");
        assert_eq!(check(&[clean.clone(), clean.clone()]).verdict, Verdict::Pass);
        let unknown = MemberV2Store {
            member: "m2".into(),
            answer: Err("FailedPrecondition: no etcdutl of 3.5.32 ...".into()),
        };
        let result = check(&[clean, unknown]);
        assert_eq!(result.verdict, Verdict::Fail);
        assert!(
            result.message.contains("m2: the v2store cannot be checked"),
            "{}",
            result.message
        );
    }

    #[test]
    fn the_check_runs_now_or_when_its_pass_begins() {
        let available = [v("3.5.36"), v("3.6.17"), v("3.7.3")];
        let now = plan(
            &cluster(&["3.5.36"; 3], 0),
            Direction::Upgrade,
            &v("3.6.17"),
            &available,
        )
        .unwrap();
        assert_eq!(when(&now), When::Now);
        let later = plan(
            &cluster(&["3.4.23"; 3], 0),
            Direction::Upgrade,
            &v("3.6.17"),
            &available,
        )
        .unwrap();
        assert_eq!(when(&later), When::WhenThePassBegins);
        let patch_first = plan(
            &cluster(&["3.5.16"; 3], 0),
            Direction::Upgrade,
            &v("3.6.17"),
            &available,
        )
        .unwrap();
        assert_eq!(when(&patch_first), When::WhenThePassBegins, "after the patch pass");
        let beyond = plan(&cluster(&["3.6.17"; 3], 0), Direction::Upgrade, &v("3.7.3"), &available).unwrap();
        assert_eq!(when(&beyond), When::NotNeeded);
        let down = plan(
            &cluster(&["3.6.17"; 3], 0),
            Direction::Downgrade,
            &v("3.5.36"),
            &available,
        )
        .unwrap();
        assert_eq!(when(&down), When::NotNeeded);
    }
}
