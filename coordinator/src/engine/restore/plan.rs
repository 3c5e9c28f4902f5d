//! Deciding a restore: whether one is unfinished and must be resumed, what
//! the restored cluster bootstraps from, which version each member restores
//! with, the checks that must pass before any member is stopped, and what
//! is left to do on each member. Pure: the agents' answers come in as
//! plain data, and the unit tests build them by hand.

use steward_proto::EtcdVersion;

use crate::engine::check::{Check, Verdict};

pub use crate::engine::check::ids;

const SOURCE: &str = "etcd disaster recovery guide (snapshot restore)";

/// How far a member's restore got, as its agent reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Recorded; the data dir may not be in place yet.
    Restoring,
    /// The data dir is in place; etcd may start.
    Restored,
    /// The cluster ran from it and the coordinator said so.
    Finished,
}

/// A restore an agent has recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRestore {
    /// The cluster-wide restore id.
    pub id: String,
    /// How far it got.
    pub phase: Phase,
    /// The snapshot.
    pub snapshot_id: String,
    /// Its sha256.
    pub snapshot_sha256: String,
    /// The version that restores and runs the member.
    pub version: String,
    /// `--initial-cluster`.
    pub initial_cluster: String,
    /// `--initial-cluster-token`.
    pub initial_cluster_token: String,
}

/// One member as its agent describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberFacts {
    /// etcd's member name.
    pub name: String,
    /// The agent's address.
    pub agent: String,
    /// An etcd process runs.
    pub running: bool,
    /// The agent supervises etcd (state RUNNING), whether or not a process
    /// runs right now (a crash-loop backoff).
    pub supervised: bool,
    /// The agent's active version.
    pub active: Option<EtcdVersion>,
    /// The peer URLs the member advertises.
    pub peer_urls: Vec<String>,
    /// The last restore the agent recorded.
    pub restore: Option<RecordedRestore>,
    /// Staged versions with the tools staged for each ("etcdctl", "etcdutl").
    pub staged_tools: Vec<(EtcdVersion, Vec<String>)>,
}

/// A restore that some agents recorded and the cluster does not run from
/// yet: rerunning finishes it with the same parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resume {
    /// Its id.
    pub id: String,
    /// The snapshot.
    pub snapshot_id: String,
    /// Its sha256.
    pub snapshot_sha256: String,
    /// `--initial-cluster`.
    pub initial_cluster: String,
    /// `--initial-cluster-token`.
    pub initial_cluster_token: String,
    /// The version each member that recorded it restores with.
    pub versions: Vec<(String, EtcdVersion)>,
}

/// The unfinished restore the agents recorded, if any.
///
/// # Errors
/// Agents recorded different unfinished restores (two coordinators were at
/// work, or a record was damaged): steward does not pick one.
pub fn unfinished(members: &[MemberFacts]) -> Result<Option<Resume>, PlanRefusal> {
    let open: Vec<(&MemberFacts, &RecordedRestore)> = members
        .iter()
        .filter_map(|m| m.restore.as_ref().map(|r| (m, r)))
        .filter(|(_, r)| r.phase != Phase::Finished)
        .collect();
    let Some((_, first)) = open.first() else {
        return Ok(None);
    };
    if let Some((member, other)) = open.iter().find(|(_, r)| r.id != first.id) {
        return Err(PlanRefusal::TwoUnfinished {
            first: first.id.clone(),
            other: other.id.clone(),
            on: member.name.clone(),
        });
    }
    let mut versions = Vec::new();
    for (member, record) in &open {
        let version = record.version.parse().map_err(|_| PlanRefusal::BadRecordedVersion {
            member: member.name.clone(),
            version: record.version.clone(),
        })?;
        versions.push((member.name.clone(), version));
    }
    Ok(Some(Resume {
        id: first.id.clone(),
        snapshot_id: first.snapshot_id.clone(),
        snapshot_sha256: first.snapshot_sha256.clone(),
        initial_cluster: first.initial_cluster.clone(),
        initial_cluster_token: first.initial_cluster_token.clone(),
        versions,
    }))
}

/// `--initial-cluster` of the restored cluster: every member with the peer
/// URLs it advertises, by name.
///
/// # Errors
/// A member advertises no peer URL.
pub fn initial_cluster(members: &[MemberFacts]) -> Result<String, PlanRefusal> {
    let mut sorted: Vec<&MemberFacts> = members.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut entries = Vec::new();
    for member in sorted {
        if member.peer_urls.is_empty() {
            return Err(PlanRefusal::NoPeerUrl(member.name.clone()));
        }
        entries.extend(member.peer_urls.iter().map(|url| format!("{}={url}", member.name)));
    }
    Ok(entries.join(","))
}

/// A restore id from the time it starts: sortable, and safe in file names.
#[must_use]
pub fn restore_id(now: time::OffsetDateTime) -> String {
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// The restored cluster's token: new for every restore, so a member of the
/// old cluster can never join it, and named so a person can tell.
#[must_use]
pub fn cluster_token(label: Option<&str>, id: &str) -> String {
    let label: String = label
        .unwrap_or("etcd")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    let label = label.trim_start_matches(['-', '_']);
    format!("{}-restore-{id}", if label.is_empty() { "etcd" } else { label })
}

/// The version `member` restores with and runs: the one the command asks
/// for, else the one the member ran.
///
/// # Errors
/// Neither exists.
pub fn version_for(member: &MemberFacts, asked: Option<&EtcdVersion>) -> Result<EtcdVersion, PlanRefusal> {
    asked
        .or(member.active.as_ref())
        .cloned()
        .ok_or_else(|| PlanRefusal::NoVersion(member.name.clone()))
}

/// Why the restore cannot be planned from what the agents report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanRefusal {
    /// The agents recorded different unfinished restores.
    #[error(
        "the agents recorded two unfinished restores: {first} and {other} (on {on}); finish or inspect them one by one"
    )]
    TwoUnfinished {
        /// One restore id.
        first: String,
        /// The other.
        other: String,
        /// The member that recorded the other.
        on: String,
    },
    /// A restore record names a version that does not parse.
    #[error("{member}'s restore record names version {version:?}")]
    BadRecordedVersion {
        /// The member.
        member: String,
        /// What the record says.
        version: String,
    },
    /// A member advertises no peer URL.
    #[error("{0}'s agent reports no peer URL")]
    NoPeerUrl(String),
    /// No version was asked for and the member has none active.
    #[error("{0} has no active version to restore with; name one with --version")]
    NoVersion(String),
}

fn check(rule: &'static str, verdict: Verdict, message: impl Into<String>) -> Check {
    Check {
        rule,
        verdict,
        message: message.into(),
        source: SOURCE,
    }
}

/// The checks on the members' versions against the snapshot, before any
/// member is stopped: the database must not come from a newer minor than
/// any binary that restores it, and every member needs its restore tool.
#[must_use]
pub fn version_checks(
    members: &[MemberFacts],
    versions: &[(String, EtcdVersion)],
    snapshot_id: &str,
    db_cluster_version: &str,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let recorded: Option<EtcdVersion> = db_cluster_version.parse().ok();
    let newer: Vec<String> = versions
        .iter()
        .filter(|(_, v)| recorded.as_ref().is_none_or(|r| r.minor_version() > v.minor_version()))
        .map(|(name, v)| format!("{name} ({v})"))
        .collect();
    checks.push(match (&recorded, newer.is_empty()) {
        (None, _) => check(
            ids::NOT_NEWER,
            Verdict::Fail,
            format!(
                "snapshot {snapshot_id} records no readable cluster version ({db_cluster_version:?}), so which etcd \
                 wrote it is unknown"
            ),
        ),
        (Some(r), true) => check(
            ids::NOT_NEWER,
            Verdict::Pass,
            format!(
                "snapshot {snapshot_id} was written by a {}.{} cluster; every member restores it with {}.{} or later",
                r.major(),
                r.minor(),
                r.major(),
                r.minor()
            ),
        ),
        (Some(r), false) => check(
            ids::NOT_NEWER,
            Verdict::Fail,
            format!(
                "snapshot {snapshot_id} was written by a {}.{} cluster, newer than the binary that would restore and \
                 run it on {}",
                r.major(),
                r.minor(),
                newer.join(", ")
            ),
        ),
    });
    let mut missing = Vec::new();
    for (name, version) in versions {
        let staged: &[String] = members
            .iter()
            .filter(|m| m.name == *name)
            .flat_map(|m| m.staged_tools.iter())
            .find(|(v, _)| v == version)
            .map_or(&[], |(_, tools)| tools.as_slice());
        for tool in ["etcd", version.restore_tool()] {
            if !staged.iter().any(|t| t == tool) {
                missing.push(format!("{name} needs {tool} {version}"));
            }
        }
    }
    checks.push(if missing.is_empty() {
        check(
            ids::RESTORE_TOOL,
            Verdict::Pass,
            "every member has etcd and the restore tool of its version staged (etcdutl from 3.5, etcdctl before)",
        )
    } else {
        check(
            ids::RESTORE_TOOL,
            Verdict::Fail,
            format!(
                "{}; stage it next to etcd (steward agent import/upload --tool)",
                missing.join(", ")
            ),
        )
    });
    checks
}

/// What is left to do on a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Stop etcd (it runs the old data).
    Stop,
    /// Replace the data dir.
    Restore,
    /// Start etcd on the restored data.
    Start,
}

/// The steps `member` still needs for restore `id`.
#[must_use]
pub fn steps(member: &MemberFacts, id: &str) -> Vec<Step> {
    let restored = member
        .restore
        .as_ref()
        .is_some_and(|r| r.id == id && r.phase != Phase::Restoring);
    let mut steps = Vec::new();
    if !restored {
        if member.running || member.supervised {
            steps.push(Step::Stop);
        }
        steps.push(Step::Restore);
    }
    if !restored || !member.running {
        steps.push(Step::Start);
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> EtcdVersion {
        text.parse().unwrap()
    }

    fn member(name: &str) -> MemberFacts {
        MemberFacts {
            name: name.into(),
            agent: format!("{name}:7400"),
            running: true,
            supervised: true,
            active: Some(v("3.4.23")),
            peer_urls: vec![format!("http://{name}:2380")],
            restore: None,
            staged_tools: vec![(v("3.4.23"), vec!["etcd".into(), "etcdctl".into()])],
        }
    }

    fn recorded(id: &str, phase: Phase) -> RecordedRestore {
        RecordedRestore {
            id: id.into(),
            phase,
            snapshot_id: "m0-snap".into(),
            snapshot_sha256: "ab".into(),
            version: "3.4.23".into(),
            initial_cluster: "m0=http://m0:2380".into(),
            initial_cluster_token: "etcd-restore-x".into(),
        }
    }

    #[test]
    fn finished_restores_are_history_and_open_ones_are_resumed() {
        let mut members = vec![member("m0"), member("m1"), member("m2")];
        assert_eq!(unfinished(&members).unwrap(), None);
        members[0].restore = Some(recorded("old", Phase::Finished));
        assert_eq!(unfinished(&members).unwrap(), None);
        members[1].restore = Some(recorded("r2", Phase::Restored));
        members[2].restore = Some(recorded("r2", Phase::Restoring));
        let resume = unfinished(&members).unwrap().unwrap();
        assert_eq!(resume.id, "r2");
        assert_eq!(resume.snapshot_id, "m0-snap");
        assert_eq!(resume.versions.len(), 2);
    }

    #[test]
    fn two_open_restores_are_not_guessed_between() {
        let mut members = vec![member("m0"), member("m1")];
        members[0].restore = Some(recorded("r1", Phase::Restored));
        members[1].restore = Some(recorded("r2", Phase::Restoring));
        let error = unfinished(&members).unwrap_err().to_string();
        assert!(error.contains("r1") && error.contains("r2"), "{error}");
    }

    #[test]
    fn the_initial_cluster_lists_every_member_by_name() {
        let mut members = vec![member("m2"), member("m0"), member("m1")];
        members[1].peer_urls.push("http://m0b:2380".into());
        assert_eq!(
            initial_cluster(&members).unwrap(),
            "m0=http://m0:2380,m0=http://m0b:2380,m1=http://m1:2380,m2=http://m2:2380"
        );
        members[0].peer_urls.clear();
        assert_eq!(
            initial_cluster(&members).unwrap_err(),
            PlanRefusal::NoPeerUrl("m2".into())
        );
    }

    #[test]
    fn ids_and_tokens_are_safe_names() {
        let now = time::macros::datetime!(2026-11-21 09:05:07 UTC);
        assert_eq!(restore_id(now), "20261121T090507Z");
        assert_eq!(cluster_token(Some("local-3"), "X"), "local-3-restore-X");
        assert_eq!(cluster_token(Some("prod east/1"), "X"), "prod-east-1-restore-X");
        assert_eq!(cluster_token(None, "X"), "etcd-restore-X");
        assert_eq!(cluster_token(Some("--"), "X"), "etcd-restore-X");
    }

    #[test]
    fn the_version_is_the_asked_one_else_the_active_one() {
        let mut m = member("m0");
        assert_eq!(version_for(&m, None).unwrap(), v("3.4.23"));
        assert_eq!(version_for(&m, Some(&v("3.5.30"))).unwrap(), v("3.5.30"));
        m.active = None;
        assert!(version_for(&m, None).unwrap_err().to_string().contains("--version"));
    }

    #[test]
    fn a_newer_snapshot_and_a_missing_tool_are_refused() {
        let members = vec![member("m0"), member("m1")];
        let versions = vec![("m0".to_owned(), v("3.4.23")), ("m1".to_owned(), v("3.4.23"))];
        let ok = version_checks(&members, &versions, "s", "3.4.0");
        assert!(ok.iter().all(|c| c.verdict == Verdict::Pass), "{ok:?}");

        let newer = version_checks(&members, &versions, "s", "3.5.0");
        let not_newer = newer.iter().find(|c| c.rule == ids::NOT_NEWER).unwrap();
        assert_eq!(not_newer.verdict, Verdict::Fail);
        assert!(not_newer.message.contains("3.5 cluster"), "{}", not_newer.message);
        assert!(not_newer.message.contains("m0 (3.4.23)"), "{}", not_newer.message);

        let unknown = version_checks(&members, &versions, "s", "");
        assert_eq!(unknown[0].verdict, Verdict::Fail);

        // 3.5 restores with etcdutl, which is not staged.
        let versions = vec![("m0".to_owned(), v("3.5.30"))];
        let checks = version_checks(&members, &versions, "s", "3.4.0");
        let tool = checks.iter().find(|c| c.rule == ids::RESTORE_TOOL).unwrap();
        assert_eq!(tool.verdict, Verdict::Fail);
        assert!(tool.message.contains("etcdutl 3.5.30"), "{}", tool.message);
    }

    #[test]
    fn steps_skip_what_is_done() {
        let mut m = member("m0");
        assert_eq!(steps(&m, "r"), [Step::Stop, Step::Restore, Step::Start]);
        // Supervised but between two crashes: stopped all the same.
        m.running = false;
        assert_eq!(steps(&m, "r"), [Step::Stop, Step::Restore, Step::Start]);
        m.supervised = false;
        assert_eq!(steps(&m, "r"), [Step::Restore, Step::Start]);
        m.restore = Some(recorded("r", Phase::Restoring));
        assert_eq!(steps(&m, "r"), [Step::Restore, Step::Start]);
        m.restore = Some(recorded("r", Phase::Restored));
        assert_eq!(steps(&m, "r"), [Step::Start]);
        m.running = true;
        m.supervised = true;
        assert!(steps(&m, "r").is_empty());
        // A restore recorded under another id is an earlier one.
        m.restore = Some(recorded("older", Phase::Finished));
        assert_eq!(steps(&m, "r"), [Step::Stop, Step::Restore, Step::Start]);
    }
}
