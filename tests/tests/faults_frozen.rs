//! A member frozen (SIGSTOP) in the middle of a roll: steward never takes
//! another member down while one is frozen, waits (saying for what) until
//! it thaws, then finishes; no acknowledged write is lost, HashKV agrees,
//! the member list is unchanged, and steward's own steps stall writes for
//! less than a second.
//!
//! Both runs freeze the leader right after the first member is done:
//! - the leader is the middle member by name, so the frozen member is
//!   the next one in the plan's order;
//! - the leader is the last member by name, so after the election the
//!   member next in order is likely the new leader.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use steward_coordinator::agent_client::AgentAddress;
use steward_coordinator::events::Event;
use steward_coordinator::plan::Direction;
use steward_coordinator::roll::{self, Outcome, RollOptions};
use steward_tests::binaries::binaries_dir;
use steward_tests::faults::{self, SharedFreeze, Timeline};
use steward_tests::{ClusterBuilder, Writer, lost_writes, newest};

/// How long the member stays frozen.
const FROZEN_FOR: Duration = Duration::from_secs(20);
/// The longest write stall steward's own steps may cause (one member
/// restart or one leader move, never a lost quorum).
const STALL_BOUND: Duration = Duration::from_secs(1);

async fn leader_frozen_after_the_first_member(leader: usize) {
    let old = newest(3, 4);
    let new = newest(3, 5);
    let cluster = ClusterBuilder::new(3, old.clone()).start().await;
    faults::move_leader_to(&cluster, leader).await;
    let ids_before = faults::member_ids(&cluster).await;
    let leader_pid = faults::etcd_pid(&cluster, leader).await;
    let agents: Vec<AgentAddress> = cluster
        .members
        .iter()
        .map(|m| m.agent_addr.parse().expect("agent address"))
        .collect();

    let writer = Writer::start(cluster.all_client_urls(), "frozen/").await;
    writer.wait_for_more(20, Duration::from_secs(30)).await;
    let freeze: Arc<Mutex<Option<SharedFreeze>>> = Arc::default();
    let slot = Arc::clone(&freeze);
    let mut timeline = Timeline::with_hook(move |event| {
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(event, Event::MemberDone { .. }) && slot.is_none() {
            *slot = Some(faults::freeze_for(leader_pid, FROZEN_FOR));
        }
    });
    let options = RollOptions::new(Direction::Upgrade, new.version.clone(), Some(binaries_dir()));
    let report = Box::pin(roll::run(agents, options, &mut timeline)).await;
    let ended = Instant::now();
    writer.wait_for_more(20, Duration::from_secs(30)).await;
    let writes = writer.stop().await;

    let freeze = freeze
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .expect("the leader was frozen after the first member");
    let (frozen_at, thawed_at) = faults::freeze_window(&freeze).expect("frozen");
    let thawed_at = thawed_at.expect("thawed before the roll ended");
    let frozen_name = cluster.members[leader].name.clone();

    // Nothing was taken down while the member was frozen.
    for kind in ["member_started", "activated"] {
        let during = timeline.between(kind, frozen_at, thawed_at);
        assert!(
            during.is_empty(),
            "{kind} while {frozen_name} was frozen: {during:?}; {}",
            cluster.logs_hint()
        );
    }
    // steward said what it waited for.
    let waits = timeline.between("waiting_for", frozen_at, thawed_at);
    assert!(
        waits.iter().any(|e| format!("{e:?}").contains(&frozen_name)),
        "a wait naming {frozen_name}: {waits:?}"
    );
    assert_eq!(
        report.result,
        Outcome::Succeeded,
        "{report:#?}; {}",
        cluster.logs_hint()
    );
    for i in 0..3 {
        assert_eq!(
            cluster.status(i).await.member.unwrap_or_default().version,
            new.version.to_string()
        );
    }

    let mut client = cluster.etcd(&[0, 1, 2]).await;
    let lost = lost_writes(&mut client, "frozen/", &writes).await;
    assert!(lost.is_empty(), "lost {} acknowledged writes: {lost:?}", lost.len());
    faults::assert_hash_kv_agrees(&cluster).await;
    assert_eq!(
        faults::member_ids(&cluster).await,
        ids_before,
        "the member list is unchanged"
    );
    // The freeze itself costs one election; from the first write the new
    // leader took, every stall is steward's.
    let recovered = writes.first_ack_after(frozen_at).expect("writes after the freeze");
    let stall = writes.longest_stall_between(recovered, ended);
    eprintln!(
        "writer: {} acknowledged, {} failed attempts; the freeze stalled writes {:?}; longest stall after it {stall:?}",
        writes.acked.len(),
        writes.failures,
        recovered - frozen_at
    );
    assert!(stall < STALL_BOUND, "a write stall of {stall:?} after the freeze");
    cluster.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_that_is_next_in_order_is_waited_for() {
    Box::pin(leader_frozen_after_the_first_member(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_listed_last_is_waited_for_and_the_new_leader_moved_first() {
    Box::pin(leader_frozen_after_the_first_member(2)).await;
}
