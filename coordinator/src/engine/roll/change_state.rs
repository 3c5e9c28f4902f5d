//! Where the last change stands, for `steward status`: the cluster lock
//! (who holds it, whether that process still runs, when its lease
//! expires), the last-roll record, and the last event its run wrote to
//! the journal. A run killed mid-change leaves a journal that ends
//! without `finished` or `failed`, members on two versions, and a lock
//! whose holder is gone: status says so instead of showing a healthy
//! mixed-version cluster.

use serde::Serialize;

use crate::engine::cluster::lock::Holder;
use crate::engine::cluster::observed::Observed;
use crate::engine::connect::Connector;
use crate::engine::connect::etcd;
use crate::engine::roll::last_roll::LastRoll;
use crate::engine::roll::plan::Direction;

/// The cluster lock as found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LockView {
    /// Who holds it, in words.
    pub holder: String,
    /// Seconds left on its lease (a live holder renews every second).
    pub expires_in_seconds: Option<i64>,
    /// True when the holder was a process of this host that no longer
    /// runs; `null` when that cannot be told from here.
    pub holder_gone: Option<bool>,
}

/// The last change as found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChangeView {
    /// upgrade or downgrade.
    pub direction: Direction,
    /// From.
    pub from: String,
    /// To.
    pub to: String,
    /// "finished", "running" (its holder has the lock), "interrupted", or
    /// "undone" (no member runs the target: rolled back, or stopped
    /// before its first member).
    pub state: String,
    /// Members at the target.
    pub members_done: usize,
    /// Members in all.
    pub members: usize,
    /// The last event its run wrote to the journal ("member_done m0").
    pub last_event: Option<String>,
}

/// What status reads besides the observation.
#[derive(Clone, Debug, Default)]
pub struct Found {
    /// The lock, when held.
    pub lock: Option<LockView>,
    /// The last-roll record.
    pub last_roll: Option<LastRoll>,
    /// The last journal event of that record's run.
    pub last_event: Option<serde_json::Value>,
}

/// Reads the lock, the last-roll record and its run's last journal event
/// through `endpoints`. Missing pieces are `None`; errors are logged and
/// leave the piece out (status shows what it can).
pub async fn read(connector: &Connector, endpoints: &[String], prefix: &str) -> Found {
    let prefix = prefix.trim_end_matches('/');
    let mut client = match etcd::connect(connector, endpoints, "the cluster lock").await {
        Ok(client) => client,
        Err(error) => {
            tracing::debug!(%error, "cannot read the lock and the last change");
            return Found::default();
        }
    };
    let mut found = Found::default();
    if let Ok(answer) = client.get(format!("{prefix}/lock"), None).await
        && let Some(kv) = answer.kvs().first()
    {
        let text = String::from_utf8_lossy(kv.value()).into_owned();
        let holder = serde_json::from_str::<Holder>(&text).ok();
        let ttl = client
            .lease_time_to_live(kv.lease(), None)
            .await
            .ok()
            .map(|r| r.ttl())
            .filter(|ttl| *ttl > 0);
        found.lock = Some(LockView {
            holder: holder.as_ref().map_or(text, ToString::to_string),
            expires_in_seconds: ttl,
            holder_gone: holder.map(|h| h.is_gone_from_this_host()).filter(|gone| *gone),
        });
    }
    found.last_roll = crate::engine::roll::last_roll::read(connector, endpoints, prefix)
        .await
        .ok()
        .flatten();
    if let Some(last) = &found.last_roll {
        let journal = format!("{prefix}/journal/{:020}/", last.token);
        let options = etcd_client::GetOptions::new()
            .with_prefix()
            .with_sort(etcd_client::SortTarget::Key, etcd_client::SortOrder::Descend)
            .with_limit(1);
        if let Ok(answer) = client.get(journal, Some(options)).await
            && let Some(kv) = answer.kvs().first()
        {
            found.last_event = serde_json::from_slice(kv.value()).ok();
        }
    }
    found
}

/// Where the last change stands, from the record, the journal, the lock
/// and the members' versions now.
#[must_use]
pub fn assess(observed: &Observed, found: &Found) -> Option<ChangeView> {
    let last = found.last_roll.as_ref()?;
    let target = last.to.parse::<steward_proto::EtcdVersion>().ok()?;
    let members_done = observed
        .members
        .iter()
        .filter(|m| {
            m.version.as_ref().is_some_and(|v| match last.direction {
                Direction::Upgrade => *v >= target,
                Direction::Downgrade => *v == target,
            })
        })
        .count();
    let event_name = found
        .last_event
        .as_ref()
        .and_then(|e| e["event"].as_str().map(str::to_owned));
    let ended = matches!(event_name.as_deref(), Some("finished" | "failed"));
    let held_by_live = found.lock.as_ref().is_some_and(|l| l.holder_gone != Some(true));
    let state = if members_done == observed.members.len() && !observed.members.is_empty() {
        "finished"
    } else if held_by_live && !ended {
        "running"
    } else if members_done == 0 {
        "undone"
    } else {
        "interrupted"
    };
    Some(ChangeView {
        direction: last.direction,
        from: last.from.clone(),
        to: last.to.clone(),
        state: state.to_owned(),
        members_done,
        members: observed.members.len(),
        last_event: found.last_event.as_ref().map(describe_event),
    })
}

/// "member_done m0", "failed m1 activate", "snapshot".
fn describe_event(event: &serde_json::Value) -> String {
    let name = event["event"].as_str().unwrap_or("?");
    let mut text = name.to_owned();
    for field in ["member", "gate"] {
        if let Some(value) = event[field].as_str() {
            text.push(' ');
            text.push_str(value);
        }
    }
    text
}

/// The problems status reports about the change and the lock.
#[must_use]
pub fn problems(change: Option<&ChangeView>, lock: Option<&LockView>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(change) = change.filter(|c| c.state == "interrupted") {
        out.push(format!(
            "the {} from {} to {} was interrupted with {} of {} members on {}{}: run the same command again to \
             finish it, or `steward rollback` to undo it",
            change.direction,
            change.from,
            change.to,
            change.members_done,
            change.members,
            change.to,
            change
                .last_event
                .as_ref()
                .map(|e| format!(" (its last step: {e})"))
                .unwrap_or_default()
        ));
    }
    if let Some(lock) = lock.filter(|l| l.holder_gone == Some(true)) {
        out.push(format!(
            "the cluster lock is held by {}, which no longer runs; the lease expires{} (the next steward command \
             takes it over at once)",
            lock.holder,
            lock.expires_in_seconds.map(|s| format!(" in {s}s")).unwrap_or_default()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::roll::plan::tests::cluster;

    fn record() -> LastRoll {
        LastRoll {
            direction: Direction::Upgrade,
            from: "3.4.23".into(),
            to: "3.5.30".into(),
            token: 7,
            snapshot: None,
        }
    }

    #[test]
    fn a_change_killed_midway_is_interrupted_and_names_its_last_step() {
        let observed = cluster(&["3.5.30", "3.4.23", "3.4.23"], 1);
        let found = Found {
            lock: Some(LockView {
                holder: "upgrade to 3.5.30 (pid 1 on h, since t)".into(),
                expires_in_seconds: Some(4),
                holder_gone: Some(true),
            }),
            last_roll: Some(record()),
            last_event: Some(serde_json::json!({"event": "member_done", "member": "m0"})),
        };
        let change = assess(&observed, &found).unwrap();
        assert_eq!(change.state, "interrupted");
        assert_eq!((change.members_done, change.members), (1, 3));
        let problems = problems(Some(&change), found.lock.as_ref());
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with(
                "the upgrade from 3.4.23 to 3.5.30 was interrupted with 1 of 3 members on 3.5.30 (its last step: \
                 member_done m0)"
            ),
            "{problems:?}"
        );
        assert!(
            problems[1].contains("which no longer runs; the lease expires in 4s"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_live_run_is_running_and_a_finished_one_finished() {
        let observed = cluster(&["3.5.30", "3.4.23", "3.4.23"], 1);
        let mut found = Found {
            lock: Some(LockView {
                holder: "upgrade".into(),
                expires_in_seconds: Some(10),
                holder_gone: None,
            }),
            last_roll: Some(record()),
            last_event: Some(serde_json::json!({"event": "activated", "member": "m1"})),
        };
        assert_eq!(assess(&observed, &found).unwrap().state, "running");
        assert!(problems(assess(&observed, &found).as_ref(), found.lock.as_ref()).is_empty());
        // A run that stopped on a failure and released the lock.
        found.lock = None;
        found.last_event = Some(serde_json::json!({"event": "failed", "member": "m1", "gate": "activate"}));
        let change = assess(&observed, &found).unwrap();
        assert_eq!(change.state, "interrupted");
        assert_eq!(change.last_event.as_deref(), Some("failed m1 activate"));
        let done = cluster(&["3.5.30"; 3], 1);
        assert_eq!(assess(&done, &found).unwrap().state, "finished");
        // `steward rollback` brought every member back: nothing to finish.
        let undone = cluster(&["3.4.23"; 3], 1);
        let change = assess(&undone, &found).unwrap();
        assert_eq!(change.state, "undone");
        assert!(problems(Some(&change), None).is_empty());
        assert!(assess(&done, &Found::default()).is_none());
    }
}
