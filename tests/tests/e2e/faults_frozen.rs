//! A member frozen (SIGSTOP) at each point of a 3.4 -> 3.5 roll and
//! thawed 20 s later: steward never takes another member down while one
//! is frozen, waits (saying for what) until it thaws, then finishes; no
//! acknowledged write is lost, HashKV agrees, the member list is
//! unchanged, and steward's own steps stall writes for less than a second.
//!
//! The points: before the roll (preflight refuses; a rerun after the thaw
//! finishes), before the first member (a follower), right after the first
//! member (the leader: once the middle member by name, once the last, so
//! that after the election the member next in order is likely the new
//! leader), after the second member (the member just changed), and
//! during the leader's move (the new leader, right after it took over).
//!
//! A frozen leader may revoke every lease it thinks expired as it thaws,
//! before it learns it lost its leadership (every etcd release does when
//! its whole process was paused), steward's lock among them. steward then
//! stops, as it must: the scenario checks that it says etcd revoked a lease
//! it kept renewing, and that the same roll run again finishes. The
//! scenarios that freeze a leader on the old release roll 3.5 -> 3.6,
//! whose releases at least do not revoke after a stall of the raft loop
//! alone.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use steward_coordinator::engine::events::Event;
use steward_coordinator::engine::failure::Gate;
use steward_coordinator::engine::roll::plan::Direction;
use steward_coordinator::engine::roll::{self, Outcome, RollOptions};
use steward_tests::binaries::binaries_dir;
use steward_tests::faults::{self, SharedFreeze, Timeline};
use steward_tests::{ClusterBuilder, Writer, lost_writes, newest};

/// How long the member stays frozen.
const FROZEN_FOR: Duration = Duration::from_secs(20);
/// How a stopped roll says etcd revoked the lock's lease while steward
/// kept renewing it.
const REVOKED_WHILE_RENEWED: &str = "etcd revoked its lease although steward had renewed it";
/// The longest write stall steward's own steps may cause (one member
/// restart or one leader move, never a lost quorum).
const STALL_BOUND: Duration = Duration::from_secs(1);

/// Which member to freeze when the event comes.
#[derive(Clone, Copy, Debug)]
enum Pick {
    /// This one.
    Member(usize),
    /// The member the event names (`member`).
    Named,
    /// The member leadership moved to (`leader_moved.to`).
    NewLeader,
}

fn index_of(name: &str) -> usize {
    name.trim_start_matches('m').parse().expect("member names are m<index>")
}

/// The roll of a scenario: from the newest release of one minor to the
/// newest of the next.
#[derive(Clone, Copy, Debug)]
enum Roll {
    /// 3.4 -> 3.5.
    From3_4,
    /// 3.5 -> 3.6: every release involved keeps leases a thawed leader
    /// thinks expired.
    From3_5,
}

/// Rolls under a writer, freezing a member at the `nth` event called `on`,
/// and checks everything the scenarios promise.
async fn frozen_at(roll_of: Roll, leader: usize, on: &'static str, nth: usize, pick: Pick) {
    let (old, new) = match roll_of {
        Roll::From3_4 => (newest(3, 4), newest(3, 5)),
        Roll::From3_5 => (newest(3, 5), newest(3, 6)),
    };
    let cluster = ClusterBuilder::new(3, old.clone()).start().await;
    faults::move_leader_to(&cluster, leader).await;
    let ids_before = faults::member_ids(&cluster).await;
    let data_dirs: Vec<PathBuf> = cluster.members.iter().map(|m| m.data_dir.clone()).collect();

    let writer = Writer::start(cluster.all_client_urls(), "frozen/").await;
    writer.wait_for_more(20, Duration::from_secs(30)).await;
    let freeze: Arc<Mutex<Option<(String, SharedFreeze)>>> = Arc::default();
    let slot = Arc::clone(&freeze);
    let mut seen = 0;
    let mut timeline = Timeline::with_hook(move |event| {
        if faults::event_name(event) != on {
            return;
        }
        seen += 1;
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if seen != nth || slot.is_some() {
            return;
        }
        let target = match (pick, event) {
            (Pick::Member(i), _) => i,
            (Pick::Named, Event::MemberDone { member, .. } | Event::MemberStarted { member, .. }) => index_of(member),
            (Pick::NewLeader, Event::LeaderMoved { to, .. }) => index_of(to),
            _ => panic!("{on} names no member to freeze"),
        };
        let pid = steward_coordinator::local::process::mentioning(&data_dirs[target])
            .first()
            .map(|f| f.id.pid)
            .expect("the member's etcd runs");
        *slot = Some((format!("m{target}"), faults::freeze_for(pid, FROZEN_FOR)));
    });
    let options = RollOptions::new(Direction::Upgrade, new.version.clone(), Some(binaries_dir()));
    let mut report = Box::pin(roll::run(
        cluster.connector(),
        cluster.agent_addresses(),
        options.clone(),
        &mut timeline,
    ))
    .await;
    let revoked = report
        .failure
        .as_ref()
        .filter(|f| f.gate == Gate::Lock && f.reason.contains(REVOKED_WHILE_RENEWED))
        .map(|f| f.reason.clone());
    if let Some(reason) = &revoked {
        eprintln!(
            "etcd revoked the lock as {frozen_on} thawed: {reason}; running the roll again",
            frozen_on = on
        );
        report = Box::pin(roll::run(
            cluster.connector(),
            cluster.agent_addresses(),
            options,
            &mut timeline,
        ))
        .await;
    }
    let ended = Instant::now();
    writer.wait_for_more(20, Duration::from_secs(30)).await;
    let writes = writer.stop().await;

    let (frozen_name, freeze) = freeze
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .unwrap_or_else(|| panic!("no member was frozen at {on} #{nth}"));
    let (frozen_at, thawed_at) = faults::freeze_window(&freeze).expect("frozen");
    let thawed_at = thawed_at.expect("thawed before the roll ended");
    if revoked.is_some() {
        assert!(
            on == "leader_moved" || matches!(pick, Pick::Member(i) if i == leader),
            "the lock was revoked although no leader was frozen"
        );
    }

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
    // The freeze itself may cost an election (a frozen leader); from the
    // first write taken after it, every stall is steward's.
    let recovered = writes.recovered_after(frozen_at, Duration::from_secs(1));
    let stall = writes.longest_stall_between(recovered, ended);
    eprintln!(
        "writer: {} acknowledged, {} failed attempts; the freeze of {frozen_name} stalled writes {:?}; longest \
         stall after it {stall:?}",
        writes.acked.len(),
        writes.failures,
        recovered - frozen_at
    );
    assert!(stall < STALL_BOUND, "a write stall of {stall:?} after the freeze");
    cluster.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_that_is_next_in_order_is_waited_for() {
    Box::pin(frozen_at(Roll::From3_5, 1, "member_done", 1, Pick::Member(1))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_listed_last_is_waited_for_and_the_new_leader_moved_first() {
    Box::pin(frozen_at(Roll::From3_5, 2, "member_done", 1, Pick::Member(2))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_frozen_before_the_first_member_is_waited_for() {
    // Leader m2: m0 changes first.
    Box::pin(frozen_at(Roll::From3_4, 2, "snapshot", 1, Pick::Member(0))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_frozen_right_after_its_change_holds_back_the_leader() {
    Box::pin(frozen_at(Roll::From3_4, 2, "member_done", 2, Pick::Named)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_frozen_right_after_the_move_holds_back_the_old_one() {
    Box::pin(frozen_at(Roll::From3_4, 2, "leader_moved", 1, Pick::NewLeader)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_frozen_before_the_roll_is_refused_and_a_rerun_after_the_thaw_finishes() {
    let old = newest(3, 4);
    let new = newest(3, 5);
    let cluster = ClusterBuilder::new(3, old).start().await;
    let pid = faults::etcd_pid(&cluster, 1).await;
    let mut frozen = faults::Frozen::now(pid);
    let options = RollOptions::new(Direction::Upgrade, new.version.clone(), Some(binaries_dir()));
    let mut timeline = Timeline::with_hook(|_| {});
    let report = Box::pin(roll::run(
        cluster.connector(),
        cluster.agent_addresses(),
        options.clone(),
        &mut timeline,
    ))
    .await;
    assert_eq!(report.result, Outcome::Refused, "{report:#?}");
    let unhealthy = report
        .checks
        .iter()
        .find(|c| c.rule == "cluster-healthy")
        .expect("the health check");
    assert!(unhealthy.message.contains("m1"), "{unhealthy:?}");
    assert!(timeline.named("member_started").is_empty());
    frozen.thaw();
    cluster.wait_ready(Duration::from_secs(30)).await;
    let report = Box::pin(roll::run(
        cluster.connector(),
        cluster.agent_addresses(),
        options,
        &mut timeline,
    ))
    .await;
    assert_eq!(report.result, Outcome::Succeeded, "{report:#?}");
    faults::assert_hash_kv_agrees(&cluster).await;
    cluster.cleanup();
}
