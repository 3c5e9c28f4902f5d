//! What a rolling change reports while it runs: one [`Event`] per step,
//! printed as a line for people or streamed as NDJSON for automation.

use std::io::Write;

use serde::Serialize;

use crate::engine::check::{Check, Verdict};
use crate::engine::failure::Failure;
use crate::engine::report::{EVENT_SCHEMA, RunContext, now_rfc3339};

/// One step of a rolling change.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The cluster as found.
    Observed {
        /// Member count.
        members: usize,
        /// The leader's name.
        leader: Option<String>,
        /// The cluster version.
        cluster_version: Option<String>,
        /// Member versions, lowest..highest.
        versions: String,
    },
    /// One preflight check.
    Check(Check),
    /// The plan.
    Planned {
        /// Pass targets in order.
        passes: Vec<String>,
        /// Member order of the first pass.
        order: Vec<String>,
    },
    /// A binary was staged on an agent.
    Staged {
        /// The member.
        member: String,
        /// The version.
        version: String,
        /// Which program.
        tool: String,
        /// It was there already.
        already_present: bool,
        /// How it got there.
        method: StageMethod,
    },
    /// The verified pre-change snapshot.
    Snapshot {
        /// The member it was taken from.
        member: String,
        /// Its id on that member's agent.
        id: String,
        /// Its path there.
        path: String,
        /// Store revision.
        revision: i64,
        /// sha256 of the content.
        sha256: String,
        /// Bytes.
        size: u64,
        /// Taken by an earlier run of the same change, before its first
        /// member changed (this run resumes it).
        earlier_run: bool,
    },
    /// A member starts changing.
    MemberStarted {
        /// The member.
        member: String,
        /// Its version before.
        from: String,
        /// Its version after.
        to: String,
    },
    /// Leadership moved before the leader changes.
    LeaderMoved {
        /// The old leader.
        from: String,
        /// The new leader.
        to: String,
        /// Milliseconds until the new leader confirmed.
        took_ms: u64,
    },
    /// The agent switched the member's binary.
    Activated {
        /// The member.
        member: String,
        /// The version it runs.
        version: String,
        /// Milliseconds the agent took.
        took_ms: u64,
    },
    /// The member passed its gate.
    MemberDone {
        /// The member.
        member: String,
        /// Milliseconds from start to gate passed.
        took_ms: u64,
        /// Raft term changes not caused by our MoveLeader during its step.
        elections: u64,
    },
    /// Waiting between members (large v2 data).
    Waiting {
        /// Seconds.
        seconds: u64,
        /// Why.
        reason: String,
    },
    /// The change waits for the cluster before its next step: a check
    /// does not pass yet (repeated when what it waits for changes).
    WaitingFor {
        /// The member the next step concerns, if any.
        member: Option<String>,
        /// The check that holds the step back ("quorum-safety").
        check: String,
        /// What it waits for.
        reason: String,
        /// How long it waits at most, in seconds, before it stops.
        up_to_seconds: u64,
    },
    /// etcd's Downgrade API: the downgrade was enabled (the cluster
    /// version drops to the target minor at once).
    DowngradeEnabled {
        /// The target minor, as the API takes it ("3.5").
        target: String,
    },
    /// etcd's Downgrade API: every member still on the newer binary
    /// migrated its storage version to the target's.
    StorageMigrated {
        /// The storage version now reported.
        version: String,
    },
    /// etcd's Downgrade API: the downgrade was cancelled.
    DowngradeCancelled {
        /// Why.
        reason: String,
    },
    /// Every member runs the pass target.
    PassDone {
        /// The pass target.
        target: String,
    },
    /// The cluster version reached the target.
    ClusterVersion {
        /// The version.
        version: String,
    },
    /// The change stopped.
    Failed {
        /// The member being changed, if any.
        member: Option<String>,
        /// Which gate or step.
        gate: String,
        /// Why.
        reason: String,
    },
    /// A restore passed its checks and was confirmed; members are stopped
    /// and restored from here on.
    RestoreBegan {
        /// The restore id, the same on every agent.
        restore_id: String,
        /// The snapshot id.
        snapshot: String,
        /// Its revision.
        revision: i64,
        /// Every member restored.
        members: Vec<String>,
        /// An earlier run began it.
        resumed: bool,
    },
    /// A snapshot was sent to an agent that lacked it.
    SnapshotSent {
        /// The member.
        member: String,
        /// The snapshot id.
        id: String,
        /// The agent had it already.
        already_present: bool,
        /// How it got there: read by the agent from an import dir on its
        /// host, or streamed from the coordinator.
        method: StageMethod,
    },
    /// etcd was stopped for a restore.
    MemberStopped {
        /// The member.
        member: String,
    },
    /// A member's data dir is being replaced.
    MemberRestoring {
        /// The member.
        member: String,
        /// The version that restores it.
        version: String,
    },
    /// A member's data dir was replaced.
    MemberRestored {
        /// The member.
        member: String,
        /// The version it will run.
        version: String,
        /// Where its old data dir is kept.
        moved_aside_to: String,
        /// Milliseconds the agent took.
        took_ms: u64,
    },
    /// etcd was started on restored data.
    EtcdStarted {
        /// The member.
        member: String,
        /// etcd's pid.
        pid: u32,
    },
    /// The restored cluster is healthy, agrees on HashKV, and holds the
    /// snapshot's revision.
    ClusterRestored {
        /// The restore id.
        restore_id: String,
        /// The revision now.
        revision: i64,
        /// name=new member id, hex.
        members: Vec<String>,
        /// Milliseconds in all.
        took_ms: u64,
    },
    /// The change finished.
    Finished {
        /// The final cluster version.
        cluster_version: String,
        /// Milliseconds in all.
        took_ms: u64,
    },
}

/// How a binary or a snapshot reached an agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StageMethod {
    /// The agent read the file from an import dir on its own host.
    Imported,
    /// Streamed from the coordinator.
    Uploaded,
}

impl Event {
    /// The `failed` event of a run that stopped with `failure` (roll and
    /// restore alike).
    #[must_use]
    pub fn failed(failure: &Failure) -> Self {
        Self::Failed {
            member: failure.member.clone(),
            gate: failure.gate.to_string(),
            reason: failure.reason.clone(),
        }
    }
}

/// Where events go.
pub trait EventSink {
    /// Reports one event.
    fn emit(&mut self, event: &Event);
}

/// Discards events (for callers that only want the report).
#[derive(Debug, Default)]
pub struct Discard;

impl EventSink for Discard {
    fn emit(&mut self, _: &Event) {}
}

/// One NDJSON line per event, each with the time, the schema, the run and
/// the cluster: `{"ts":..,"schema":"steward.event/v1","run":..,"cluster":..,
/// "event":"member_done",..}`.
#[derive(Debug)]
pub struct Ndjson<W: Write> {
    out: W,
    context: RunContext,
}

impl<W: Write> Ndjson<W> {
    /// Lines for `context` to `out`.
    pub const fn new(out: W, context: RunContext) -> Self {
        Self { out, context }
    }

    /// Where the lines went.
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// One event line.
#[derive(Serialize)]
struct EventLine<'a> {
    ts: String,
    schema: &'static str,
    run: &'a str,
    cluster: Option<&'a str>,
    #[serde(flatten)]
    event: &'a Event,
}

impl<W: Write> EventSink for Ndjson<W> {
    fn emit(&mut self, event: &Event) {
        let line = EventLine {
            ts: now_rfc3339(),
            schema: EVENT_SCHEMA,
            run: &self.context.run,
            cluster: self.context.cluster.as_deref(),
            event,
        };
        if let Ok(line) = serde_json::to_string(&line) {
            // A reader that went away must not stop the change.
            let _ = writeln!(self.out, "{line}");
        }
    }
}

/// One line per event for people.
#[derive(Debug)]
pub struct Lines<W: Write>(pub W);

impl<W: Write> EventSink for Lines<W> {
    fn emit(&mut self, event: &Event) {
        let _ = writeln!(self.0, "{}", human(event));
    }
}

/// One line per event for people, each after a label (the cluster's name
/// when several clusters change at once).
#[derive(Debug)]
pub struct Labelled<W: Write> {
    /// Where the lines go.
    pub out: W,
    /// What each line begins with.
    pub label: String,
}

impl<W: Write> EventSink for Labelled<W> {
    fn emit(&mut self, event: &Event) {
        let _ = writeln!(self.out, "{:<12} {}", self.label, human(event));
    }
}

/// Several sinks at once.
pub struct Tee(pub Vec<Box<dyn EventSink>>);

impl std::fmt::Debug for Tee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tee({} sinks)", self.0.len())
    }
}

impl EventSink for Tee {
    fn emit(&mut self, event: &Event) {
        for sink in &mut self.0 {
            sink.emit(event);
        }
    }
}

/// The one-line human form of an event.
#[must_use]
pub fn human(event: &Event) -> String {
    match event {
        Event::Observed {
            members,
            leader,
            cluster_version,
            versions,
        } => format!(
            "observed  {members} members running {versions}, leader {}, cluster version {}",
            leader.as_deref().unwrap_or("none"),
            cluster_version.as_deref().unwrap_or("undecided")
        ),
        Event::Check(check) => format!(
            "check     {:<4} {:<34} {}",
            match check.verdict {
                Verdict::Pass => "ok",
                Verdict::Warn => "WARN",
                Verdict::Fail => "FAIL",
            },
            check.rule,
            check.message
        ),
        Event::Planned { passes, order } => {
            format!("plan      passes {}; order {}", passes.join(" -> "), order.join(", "))
        }
        Event::Staged {
            member,
            version,
            tool,
            already_present,
            method,
        } => format!(
            "stage     {member}: {tool} {version} {}",
            match (already_present, method) {
                (true, _) => "(already staged)",
                (false, StageMethod::Imported) => "(imported on the agent's host)",
                (false, StageMethod::Uploaded) => "(uploaded)",
            }
        ),
        Event::Snapshot {
            member,
            id,
            revision,
            size,
            earlier_run,
            ..
        } => format!(
            "snapshot  {id} from {member}: revision {revision}, {size} bytes, verified{}",
            if *earlier_run {
                " (taken by the earlier run, before its first change)"
            } else {
                ""
            }
        ),
        Event::MemberStarted { member, from, to } => format!("member    {member}: {from} -> {to}"),
        Event::LeaderMoved { from, to, took_ms } => format!("leader    moved {from} -> {to} in {took_ms} ms"),
        Event::Activated {
            member,
            version,
            took_ms,
        } => format!("activate  {member} runs {version} ({took_ms} ms)"),
        Event::MemberDone {
            member,
            took_ms,
            elections,
        } => format!("done      {member} in {took_ms} ms, {elections} unplanned elections"),
        Event::Waiting { seconds, reason } => format!("wait      {seconds}s: {reason}"),
        Event::WaitingFor {
            member,
            check,
            reason,
            up_to_seconds,
        } => format!(
            "wait      {}{check} (up to {up_to_seconds}s): {reason}",
            member.as_ref().map(|m| format!("{m}: ")).unwrap_or_default()
        ),
        Event::DowngradeEnabled { target } => format!("downgrade enabled to {target} (Downgrade API)"),
        Event::StorageMigrated { version } => format!("storage   every newer member reports storage version {version}"),
        Event::DowngradeCancelled { reason } => format!("downgrade cancelled: {reason}"),
        Event::PassDone { target } => format!("pass      every member runs {target}"),
        Event::ClusterVersion { version } => format!("cluster   version {version}"),
        Event::Failed { member, gate, reason } => format!(
            "FAILED    {}{gate}: {reason}",
            member.as_ref().map(|m| format!("{m} ")).unwrap_or_default()
        ),
        Event::RestoreBegan {
            restore_id,
            snapshot,
            revision,
            members,
            resumed,
        } => format!(
            "restore   {restore_id}: snapshot {snapshot} (revision {revision}) onto {}{}",
            members.join(", "),
            if *resumed { " (finishing an earlier run)" } else { "" }
        ),
        Event::SnapshotSent {
            member,
            id,
            already_present,
            method,
        } => format!(
            "send      {id} to {member}{}",
            match (already_present, method) {
                (true, _) => " (already there)",
                (false, StageMethod::Imported) => ": imported on the agent's host, verified there",
                (false, StageMethod::Uploaded) => ", verified there",
            }
        ),
        Event::MemberStopped { member } => format!("stop      {member}"),
        Event::MemberRestoring { member, version } => format!("restore   {member} with {version}"),
        Event::MemberRestored {
            member,
            version,
            moved_aside_to,
            took_ms,
        } => format!(
            "restored  {member}: runs {version}; old data dir kept at {} ({took_ms} ms)",
            if moved_aside_to.is_empty() {
                "(none)"
            } else {
                moved_aside_to
            }
        ),
        Event::EtcdStarted { member, pid } => format!("start     {member} (pid {pid})"),
        Event::ClusterRestored {
            restore_id,
            revision,
            members,
            took_ms,
        } => format!(
            "restored  {restore_id}: healthy, HashKV agrees, revision {revision}, members {} in {took_ms} ms",
            members.join(", ")
        ),
        Event::Finished {
            cluster_version,
            took_ms,
        } => format!("finished  cluster version {cluster_version} in {took_ms} ms"),
    }
}

/// Events kept for the report, forwarded to another sink.
#[derive(Debug)]
pub struct Recorder<S: EventSink> {
    /// Everything emitted so far.
    pub events: Vec<Event>,
    /// Where events also go.
    pub inner: S,
}

impl<S: EventSink> EventSink for Recorder<S> {
    fn emit(&mut self, event: &Event) {
        self.events.push(event.clone());
        self.inner.emit(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_with_their_name() {
        let event = Event::LeaderMoved {
            from: "m0".into(),
            to: "m2".into(),
            took_ms: 12,
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["event"], "leader_moved");
        assert_eq!(json["to"], "m2");
        assert_eq!(human(&event), "leader    moved m0 -> m2 in 12 ms");
    }

    #[test]
    fn ndjson_is_one_line_per_event() {
        let context = RunContext::new(Some("eu-1".into()));
        let mut sink = Ndjson::new(Vec::new(), context.clone());
        sink.emit(&Event::PassDone {
            target: "3.5.16".into(),
        });
        sink.emit(&Event::ClusterVersion {
            version: "3.5.0".into(),
        });
        let text = String::from_utf8(sink.into_inner()).unwrap();
        assert_eq!(text.lines().count(), 2);
        for line in text.lines() {
            let json: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(json["schema"], EVENT_SCHEMA, "{line}");
            assert_eq!(json["run"], context.run.as_str(), "{line}");
            assert_eq!(json["cluster"], "eu-1", "{line}");
            assert!(json["ts"].as_str().is_some_and(|ts| ts.ends_with('Z')), "{line}");
        }
        assert!(
            text.lines()
                .next()
                .unwrap()
                .contains(r#""event":"pass_done","target":"3.5.16""#),
            "{text}"
        );
    }
}
