//! The rolling upgrade on real etcd: 3.4 -> 3.5 on three members under a
//! continuous writer succeeds, the cluster version flips, every
//! acknowledged write is read back, leadership moves exactly once (the
//! leader goes last) and no unplanned election happens.

use std::time::Duration;

use steward_coordinator::engine::connect::agent::AgentAddress;
use steward_coordinator::engine::events::{Event, Lines, Recorder, StageMethod};
use steward_coordinator::engine::roll::plan::Direction;
use steward_coordinator::engine::roll::{self, Outcome, RollOptions};
use steward_tests::{ClusterBuilder, Writer, binaries::binaries_dir, lost_writes, newest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_from_3_4_to_3_5_under_writes() {
    let old = newest(3, 4);
    let new = newest(3, 5);
    let cluster = ClusterBuilder::new(3, old.clone()).start().await;
    let agents: Vec<AgentAddress> = cluster
        .members
        .iter()
        .map(|m| m.agent_addr.parse().expect("agent address"))
        .collect();
    let leader_before = cluster.leader_index().await;

    let writer = Writer::start(cluster.all_client_urls(), "upgrade/").await;
    writer.wait_for_more(20, Duration::from_secs(30)).await;
    let options = RollOptions::new(Direction::Upgrade, new.version.clone(), Some(binaries_dir()));
    let mut events = Recorder {
        events: Vec::new(),
        inner: Lines(std::io::stderr()),
    };
    let report = roll::run(cluster.connector(), agents, options, &mut events).await;
    // The cluster still takes writes after the change.
    writer.wait_for_more(20, Duration::from_secs(30)).await;
    let writes = writer.stop().await;

    assert_eq!(
        report.result,
        Outcome::Succeeded,
        "{report:#?}; {}",
        cluster.logs_hint()
    );
    assert_eq!(report.cluster_version.as_deref(), Some("3.5.0"));
    assert_eq!(report.from.as_deref(), Some(old.version.to_string().as_str()));
    for member in &report.members {
        assert_eq!(
            member.to.as_deref(),
            Some(new.version.to_string().as_str()),
            "{member:?}"
        );
    }
    let moves: u32 = report.members.iter().map(|m| m.leader_moves).sum();
    assert_eq!(moves, 1, "exactly one planned leader move: {:?}", report.members);
    let elections: u64 = report.members.iter().map(|m| m.elections).sum();
    assert_eq!(elections, 0, "no unplanned election: {:?}", report.members);
    let snapshot = report.snapshot.as_ref().expect("a snapshot before the change");
    assert!(snapshot.revision > 0);
    assert_eq!(snapshot.etcd_version, old.version.to_string());

    // The agents' hosts hold the release in an import dir: nothing is
    // streamed.
    let staged: Vec<&Event> = events
        .events
        .iter()
        .filter(|e| matches!(e, Event::Staged { .. }))
        .collect();
    assert!(!staged.is_empty());
    assert!(
        staged.iter().all(|e| matches!(
            e,
            Event::Staged {
                method: StageMethod::Imported,
                ..
            }
        )),
        "{staged:#?}"
    );

    // The leader went last.
    let started: Vec<&str> = events
        .events
        .iter()
        .filter_map(|e| match e {
            Event::MemberStarted { member, .. } => Some(member.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(started.len(), 3);
    assert_eq!(
        started[2], cluster.members[leader_before].name,
        "the leader changes last"
    );
    let moved_at = events
        .events
        .iter()
        .position(|e| matches!(e, Event::LeaderMoved { .. }))
        .expect("a move");
    let leader_started_at = events
        .events
        .iter()
        .position(
            |e| matches!(e, Event::MemberStarted { member, .. } if *member == cluster.members[leader_before].name),
        )
        .expect("leader started");
    assert!(moved_at < leader_started_at, "MoveLeader before the leader changes");

    // Every member reports 3.5, and no acknowledged write is lost.
    for i in 0..3 {
        let status = cluster.status(i).await.member.unwrap_or_default();
        assert_eq!(status.version, new.version.to_string());
        assert_eq!(status.cluster_version, "3.5.0");
    }
    let mut client = cluster.etcd(&[0, 1, 2]).await;
    let lost = lost_writes(&mut client, "upgrade/", &writes).await;
    assert!(lost.is_empty(), "lost {} acknowledged writes", lost.len());
    eprintln!(
        "writer: {} acknowledged, {} failed, longest stall {:?}",
        writes.acked.len(),
        writes.failures,
        writes.longest_stall
    );
    cluster.cleanup();
}
