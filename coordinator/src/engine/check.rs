//! A check and its verdict, and the one registry of every rule id the
//! coordinator enforces (the agent's flag rules have their own, in
//! `agent/src/flags.rs`). Reports, events and refusals name rules by these
//! ids; the operator guide lists each one.

/// Every rule id, as the operator guide lists them.
pub mod ids {
    /// Every member answers a quorum read.
    pub const HEALTH: &str = "cluster-healthy";
    /// No NOSPACE or CORRUPT alarm.
    pub const ALARMS: &str = "no-alarms";
    /// Every member has an agent, every agent a member.
    pub const AGENTS: &str = "every-member-has-agent";
    /// Every agent is ready to act (not FAILED, not mid-switch).
    pub const AGENTS_READY: &str = "agents-ready";
    /// Every agent runs the coordinator's own steward version (a warning).
    pub const AGENT_VERSION_SKEW: &str = "agent-version-skew";
    /// The target lies in the direction asked, within major 3.
    pub const DIRECTION: &str = "direction";
    /// One minor per pass.
    pub const ADJACENT_MINORS: &str = "adjacent-minors";
    /// Downgrades go one minor at most.
    pub const DOWNGRADE_ONE_MINOR: &str = "downgrade-one-minor";
    /// Never to 3.5.0-3.5.2.
    pub const UNSAFE_3_5: &str = "no-3.5.0-3.5.2";
    /// No rolling change between 3.4 and 3.5 with auth enabled.
    pub const AUTH_3_4_3_5: &str = "auth-3.4-3.5";
    /// A 3.5 -> 3.4 downgrade needs 3.4.32 or later.
    pub const DOWNGRADE_MIN_3_4_32: &str = "downgrade-3.4-min-3.4.32";
    /// v2-migrated data without a v3 db makes 3.2+ panic.
    pub const V2_WITHOUT_V3: &str = "v2-data-without-v3-db";
    /// Large v2 data: wait between members.
    pub const V2_SIZE: &str = "v2-data-size";
    /// 3.2 -> 3.3 with auth and leases needs 3.2.31.
    pub const AUTH_LEASES_3_2_31: &str = "auth-leases-3.2.31";
    /// 3.5 -> 3.6 needs the 3.5 patch the 3.6 guide names.
    pub const MIN_3_5_FOR_3_6: &str = "3.6-needs-3.5.32";
    /// 3.6 -> 3.7 only from 3.6.11 or later.
    pub const MIN_3_6_FOR_3_7: &str = "3.7-needs-3.6.11";
    /// Enough members to keep quorum while one restarts.
    pub const QUORUM: &str = "quorum-headroom";
    /// A member is taken down only while the others carry quorum (checked
    /// right before every step that stops one).
    pub const QUORUM_SAFETY: &str = "quorum-safety";
    /// Room for the pre-change snapshot.
    pub const SNAPSHOT_SPACE: &str = "snapshot-disk-space";
    /// Whether the gate compares HashKV, given the database's size.
    pub const HASH_KV_GATE: &str = "hash-kv-gate";
    /// A binary for every pass target.
    pub const BINARIES: &str = "binaries-available";
    /// Learners are changed but never lead.
    pub const LEARNERS: &str = "learners";
    /// Swapping binaries back only works before the cluster version flips.
    pub const ROLLBACK_BEFORE_FLIP: &str = "rollback-before-flip";

    /// One coordinator at a time: the cluster lock.
    pub const ONE_COORDINATOR: &str = "one-coordinator";
    /// Every local binary reports the version it is used for.
    pub const BINARY_VERSION: &str = "binary-version-matches";
    /// `--binary` has the `--sha256` given.
    pub const BINARY_SHA256: &str = "binary-sha256-matches";
    /// `steward rollback` undoes the change recorded in the cluster.
    pub const ROLLBACK_DIRECTION: &str = "rollback-direction";
    /// Every member's flags render for the target (asked of its agent).
    pub const MEMBER_FLAGS: &str = "member-flags-render";
    /// No v2 store content a 3.6 member would refuse (`etcdutl check v2store`).
    pub const V2STORE_CLEAN: &str = "3.6-v2store-clean";
    /// The snapshot's sha256 trailer and its database check out.
    pub const SNAPSHOT_VERIFIED: &str = "snapshot-verified";
    /// No binary restores or runs a database a newer minor wrote.
    pub const NOT_NEWER: &str = "snapshot-not-newer-than-binary";
    /// Every member has the restore tool of its version staged.
    pub const RESTORE_TOOL: &str = "restore-tool-staged";
    /// Every member has a version to restore with.
    pub const RESTORE_VERSION: &str = "restore-version";
    /// An unfinished restore is finished before another begins.
    pub const UNFINISHED: &str = "finish-unfinished-restore";
    /// Every agent's own checks, asked as a dry run.
    pub const AGENT_CHECKS: &str = "agent-restore-checks";
    /// The operator confirmed a restore (or gave --yes).
    pub const CONFIRMED: &str = "confirmed";

    /// Every id above, for the test that keeps them unique.
    pub const ALL: &[&str] = &[
        HEALTH,
        ALARMS,
        AGENTS,
        AGENTS_READY,
        AGENT_VERSION_SKEW,
        DIRECTION,
        ADJACENT_MINORS,
        DOWNGRADE_ONE_MINOR,
        UNSAFE_3_5,
        AUTH_3_4_3_5,
        DOWNGRADE_MIN_3_4_32,
        V2_WITHOUT_V3,
        V2_SIZE,
        AUTH_LEASES_3_2_31,
        MIN_3_5_FOR_3_6,
        MIN_3_6_FOR_3_7,
        QUORUM,
        QUORUM_SAFETY,
        SNAPSHOT_SPACE,
        HASH_KV_GATE,
        BINARIES,
        LEARNERS,
        ROLLBACK_BEFORE_FLIP,
        ONE_COORDINATOR,
        BINARY_VERSION,
        BINARY_SHA256,
        ROLLBACK_DIRECTION,
        MEMBER_FLAGS,
        V2STORE_CLEAN,
        SNAPSHOT_VERIFIED,
        NOT_NEWER,
        RESTORE_TOOL,
        RESTORE_VERSION,
        UNFINISHED,
        AGENT_CHECKS,
        CONFIRMED,
    ];
}

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Fine.
    Pass,
    /// Proceeds, but the operator should know.
    Warn,
    /// Refused.
    Fail,
}

/// One named check with its reason and the rule it enforces.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    /// The rule id.
    pub rule: &'static str,
    /// The verdict.
    pub verdict: Verdict,
    /// What was found, in a sentence.
    pub message: String,
    /// Where the rule comes from.
    pub source: &'static str,
}

/// True when any check failed.
#[must_use]
pub fn refused(checks: &[Check]) -> bool {
    checks.iter().any(|c| c.verdict == Verdict::Fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_ids_are_unique_and_kebab_case() {
        let mut seen = std::collections::BTreeSet::new();
        for id in ids::ALL {
            assert!(seen.insert(*id), "{id} is registered twice");
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.')),
                "{id}"
            );
        }
    }

    #[test]
    fn one_failed_check_refuses() {
        let check = |verdict| Check {
            rule: ids::HEALTH,
            verdict,
            message: String::new(),
            source: "steward",
        };
        assert!(!refused(&[check(Verdict::Pass), check(Verdict::Warn)]));
        assert!(refused(&[check(Verdict::Pass), check(Verdict::Fail)]));
    }
}
