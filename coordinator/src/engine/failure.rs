//! Why a run stopped: the member, the gate or step (a [`Gate`]), the cause
//! kind (a [`Cause`]) a caller can branch on, and the reason in words. The
//! JSON report keeps its field names: `gate` is the gate's name, `reason`
//! the words; the cause is for Rust callers.

use std::fmt;

use serde::Serialize;

/// The gate or step a run stopped at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Gate {
    /// Observing the cluster.
    #[default]
    Observe,
    /// A member's agent (none, or its address).
    Agent,
    /// Connecting to an agent.
    Connect,
    /// The agents of the cluster, asked together.
    Agents,
    /// Staging a binary on an agent.
    Stage,
    /// Taking the pre-change snapshot.
    Snapshot,
    /// Pinning the pre-change snapshot.
    SnapshotPin,
    /// The cluster lock.
    Lock,
    /// Recording the change in the cluster.
    LastRoll,
    /// etcd's Downgrade API (validate).
    DowngradeValidate,
    /// etcd's Downgrade API (enable).
    DowngradeEnable,
    /// etcd's Downgrade API (cancel).
    DowngradeCancel,
    /// Waiting for the Downgrade API's state.
    DowngradeApi,
    /// Waiting for the members' storage version.
    StorageVersion,
    /// Moving leadership away.
    MoveLeader,
    /// The agent's switch of the member (Activate or Rollback).
    Activate,
    /// Undoing a member whose gate failed.
    Rollback,
    /// Observing inside a member's gate.
    Gate,
    /// The member is not healthy after its switch.
    Health,
    /// The member does not report the target.
    Version,
    /// The member has not caught up with the leader.
    CaughtUp,
    /// The members disagree on HashKV.
    HashKv,
    /// A new alarm appeared.
    NoNewAlarm,
    /// Waiting for the cluster version.
    ClusterVersion,
    /// A restore's stop of a member.
    Stop,
    /// A restore's data swap on a member.
    Restore,
    /// A restore's start of a member.
    Start,
    /// Waiting for the restored cluster.
    RestoredCluster,
    /// Sending the snapshot to the agents.
    SendSnapshot,
    /// The restored cluster's member list.
    InitialCluster,
    /// Resuming an unfinished restore.
    Resume,
    /// Telling the agents a restore finished.
    Finish,
    /// The run was cancelled.
    Cancelled,
    /// A rule refused the step; its id.
    Rule(&'static str),
}

impl Gate {
    /// The name reports and events use.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Observe => "observe",
            Self::Agent => "agent",
            Self::Connect => "connect",
            Self::Agents => "agents",
            Self::Stage => "stage",
            Self::Snapshot => "snapshot",
            Self::SnapshotPin => "snapshot-pin",
            Self::Lock => "lock",
            Self::LastRoll => "last-roll",
            Self::DowngradeValidate => "downgrade-validate",
            Self::DowngradeEnable => "downgrade-enable",
            Self::DowngradeCancel => "downgrade-cancel",
            Self::DowngradeApi => "downgrade-api",
            Self::StorageVersion => "storage-version",
            Self::MoveLeader => "move-leader",
            Self::Activate => "activate",
            Self::Rollback => "rollback",
            Self::Gate => "gate",
            Self::Health => "health",
            Self::Version => "version",
            Self::CaughtUp => "caught-up",
            Self::HashKv => "hash-kv",
            Self::NoNewAlarm => "no-new-alarm",
            Self::ClusterVersion => "cluster-version",
            Self::Stop => "stop",
            Self::Restore => "restore",
            Self::Start => "start",
            Self::RestoredCluster => "restored cluster",
            Self::SendSnapshot => "send snapshot",
            Self::InitialCluster => "initial cluster",
            Self::Resume => "resume",
            Self::Finish => "finish",
            Self::Cancelled => "cancelled",
            Self::Rule(id) => id,
        }
    }
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Gate {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl PartialEq<&str> for Gate {
    fn eq(&self, other: &&str) -> bool {
        self.name() == *other
    }
}

impl PartialEq<str> for Gate {
    fn eq(&self, other: &str) -> bool {
        self.name() == other
    }
}

/// What kind of cause stopped the run, for callers that branch on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    /// An agent refused or failed a call, or could not be reached.
    Agent,
    /// The agent's switch failed and it put the previous version back.
    Reverted,
    /// etcd refused or failed a call, or could not be reached.
    Etcd,
    /// A wait ran out of time.
    Timeout,
    /// The cluster lock was lost (its lease expired or was revoked).
    LockLost,
    /// A rule refused the step (the gate names the rule).
    Rule,
    /// The cluster is not in the state the step needs (a member left, no
    /// leader, a binary missing).
    State,
    /// The run was cancelled at a safe point.
    Cancelled,
    /// Anything else.
    #[default]
    Other,
}

/// Why a run stopped.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Failure {
    /// The member being changed.
    pub member: Option<String>,
    /// The gate or step that failed.
    pub gate: Gate,
    /// What kind of cause.
    pub cause: Cause,
    /// Why, in words.
    pub reason: String,
    /// etcd's last lines on the member, when the agent sent them.
    pub log_tail: Vec<String>,
}

impl Failure {
    /// A failure at `gate` on `member` for `reason`; the cause follows from
    /// the gate where it can (timeouts are said with [`Failure::because`]).
    #[must_use]
    pub fn new(member: Option<&str>, gate: Gate, reason: impl Into<String>) -> Self {
        let cause = match gate {
            Gate::Agent | Gate::Connect | Gate::Agents | Gate::Stage | Gate::SnapshotPin | Gate::Snapshot => {
                Cause::Agent
            }
            Gate::Activate | Gate::Stop | Gate::Restore | Gate::Start => Cause::Agent,
            Gate::LastRoll | Gate::DowngradeValidate | Gate::DowngradeEnable | Gate::DowngradeCancel => Cause::Etcd,
            Gate::Lock => Cause::LockLost,
            Gate::Rule(_) => Cause::Rule,
            Gate::Cancelled => Cause::Cancelled,
            Gate::Health | Gate::Version | Gate::CaughtUp | Gate::HashKv | Gate::NoNewAlarm => Cause::State,
            _ => Cause::Other,
        };
        Self {
            member: member.map(str::to_owned),
            gate,
            cause,
            reason: reason.into(),
            log_tail: Vec::new(),
        }
    }

    /// The same failure with `cause`.
    #[must_use]
    pub const fn because(mut self, cause: Cause) -> Self {
        self.cause = cause;
        self
    }

    /// A wait at `gate` that ran out of time.
    #[must_use]
    pub fn timed_out(member: Option<&str>, gate: Gate, reason: impl Into<String>) -> Self {
        Self::new(member, gate, reason).because(Cause::Timeout)
    }

    /// Where it stopped, for people: "m1 gate", or the step alone.
    #[must_use]
    pub fn location(&self) -> String {
        format!("{} {}", self.member.clone().unwrap_or_default(), self.gate)
            .trim()
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_keeps_gate_names_and_adds_the_cause() {
        let failure = Failure::new(Some("m1"), Gate::HashKv, "members disagree");
        let json = serde_json::to_value(&failure).unwrap();
        assert_eq!(json["gate"], "hash-kv");
        assert_eq!(json["cause"], "state");
        assert_eq!(json["reason"], "members disagree");
        assert_eq!(failure.location(), "m1 hash-kv");
        assert!(failure.gate == "hash-kv");
        let rule = Failure::new(None, Gate::Rule("quorum-safety"), "m2 is down");
        assert_eq!(serde_json::to_value(&rule).unwrap()["gate"], "quorum-safety");
        assert_eq!(rule.cause, Cause::Rule);
        let slow = Failure::timed_out(Some("m0"), Gate::Health, "not passed");
        assert_eq!(slow.cause, Cause::Timeout);
    }
}
