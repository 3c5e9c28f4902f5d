//! Faults other than a freeze, each during a real roll under a writer:
//! a member's etcd killed by someone else during another member's gate,
//! an agent SIGKILLed during Activate (before and after it stopped etcd),
//! and an agent's state dir on a full file system during a snapshot and
//! during staging. Every case ends with every acknowledged write read
//! back, HashKV equal and the member list unchanged.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use steward_coordinator::engine::events::Event;
use steward_coordinator::engine::roll::plan::Direction;
use steward_coordinator::engine::roll::{self, Outcome, RollOptions};
use steward_tests::binaries::binaries_dir;
use steward_tests::cluster::steward_command;
use steward_tests::faults::{self, Timeline};
use steward_tests::{Cluster, ClusterBuilder, Writer, WriterReport, lost_writes, newest};

fn upgrade_to_newest_3_5() -> RollOptions {
    RollOptions::new(Direction::Upgrade, newest(3, 5).version.clone(), Some(binaries_dir()))
}

/// The longest write stall these faults and steward's steps may cause
/// together: a killed or frozen follower costs the writer one 400 ms
/// attempt, a member restart a few tens of ms; a lost quorum would cost
/// seconds.
const STALL_BOUND: Duration = Duration::from_secs(1);

/// Every acknowledged write is there, HashKV agrees, the members are the
/// same, and no write stalled longer than [`STALL_BOUND`].
async fn assert_intact(cluster: &Cluster, prefix: &str, writes: &WriterReport, ids_before: &[u64]) {
    eprintln!(
        "writer: {} acknowledged, {} failed attempts, longest stall {:?}",
        writes.acked.len(),
        writes.failures,
        writes.longest_stall
    );
    assert!(
        writes.longest_stall < STALL_BOUND,
        "a write stall of {:?}",
        writes.longest_stall
    );
    let mut client = cluster.etcd(&[0, 1, 2]).await;
    let lost = lost_writes(&mut client, prefix, writes).await;
    assert!(lost.is_empty(), "lost {} acknowledged writes: {lost:?}", lost.len());
    faults::assert_hash_kv_agrees(cluster).await;
    assert_eq!(
        faults::member_ids(cluster).await,
        ids_before,
        "the member list is unchanged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_killed_during_a_gate_is_waited_for_not_counted_as_success() {
    let cluster = ClusterBuilder::new(3, newest(3, 4)).start().await;
    faults::move_leader_to(&cluster, 2).await;
    let ids_before = faults::member_ids(&cluster).await;
    let writer = Writer::start(cluster.all_client_urls(), "gate-kill/").await;
    writer.wait_for_more(20, Duration::from_secs(30)).await;
    // m0 changes first; while its gate runs, m1's etcd is killed (its
    // agent restarts it after a backoff).
    let m1_data = cluster.members[1].data_dir.clone();
    let killed_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let slot = Arc::clone(&killed_at);
    let mut timeline = Timeline::with_hook(move |event| {
        if let Event::Activated { member, .. } = event
            && member == "m0"
        {
            let pid = faults::pid_mentioning(&m1_data).expect("m1's etcd runs");
            faults::kill_now(pid);
            *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        }
    });
    let report = Box::pin(roll::run(
        cluster.connector(),
        cluster.agent_addresses(),
        upgrade_to_newest_3_5(),
        &mut timeline,
    ))
    .await;
    writer.wait_for_more(20, Duration::from_secs(30)).await;
    let writes = writer.stop().await;
    assert_eq!(
        report.result,
        Outcome::Succeeded,
        "{report:#?}; {}",
        cluster.logs_hint()
    );
    assert!(killed_at.lock().unwrap_or_else(PoisonError::into_inner).is_some());
    // The gate noticed m1 and waited for it before m0 counted as done.
    let events: Vec<&Event> = timeline.events.iter().map(|(_, e)| e).collect();
    let waited = events
        .iter()
        .position(|e| matches!(e, Event::WaitingFor { check, reason, .. } if check == "cluster-healthy" && reason.starts_with("m1 is not healthy")))
        .unwrap_or_else(|| panic!("a wait for m1 during m0's gate: {events:#?}"));
    let m0_done = events
        .iter()
        .position(|e| matches!(e, Event::MemberDone { member, .. } if member == "m0"))
        .expect("m0 done");
    assert!(waited < m0_done, "the gate waited before m0 counted as done");
    Box::pin(assert_intact(&cluster, "gate-kill/", &writes, &ids_before)).await;
    cluster.cleanup();
}

/// SIGKILLs member `i`'s agent from a hook once `when` says so; the agent
/// is started again by the test.
async fn agent_killed_during_activate(after_etcd_stopped: bool) {
    let mut cluster = ClusterBuilder::new(3, newest(3, 4)).start().await;
    faults::move_leader_to(&cluster, 2).await;
    let ids_before = faults::member_ids(&cluster).await;
    let writer = Writer::start(cluster.all_client_urls(), "agent-kill/").await;
    writer.wait_for_more(20, Duration::from_secs(30)).await;
    let m0_data = cluster.members[0].data_dir.clone();
    let m0_config = cluster.members[0].config_path.clone();
    let mut timeline = Timeline::with_hook(move |event| {
        let Event::MemberStarted { member, .. } = event else {
            return;
        };
        if member != "m0" {
            return;
        }
        let etcd = faults::pid_mentioning(&m0_data).expect("m0's etcd runs");
        let agent = faults::pid_mentioning(&m0_config).expect("m0's agent runs");
        if after_etcd_stopped {
            // Kill the agent the moment its old etcd is gone.
            let data = m0_data.clone();
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(30);
                while faults::pid_mentioning(&data) == Some(etcd) && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                faults::kill_now(agent);
            });
        } else {
            // etcd is frozen, so the agent's SIGTERM cannot stop it yet;
            // the agent dies while it waits for etcd to exit.
            let mut frozen = faults::Frozen::now(etcd);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                faults::kill_now(agent);
                tokio::time::sleep(Duration::from_millis(200)).await;
                frozen.thaw();
            });
        }
    });
    let report = Box::pin(roll::run(
        cluster.connector(),
        cluster.agent_addresses(),
        upgrade_to_newest_3_5(),
        &mut timeline,
    ))
    .await;
    assert_eq!(
        report.result,
        Outcome::Failed,
        "the agent died under Activate: {report:#?}"
    );
    assert_eq!(
        report.failure.as_ref().and_then(|f| f.member.as_deref()),
        Some("m0"),
        "{report:#?}"
    );

    // The agent comes back (as systemd would restart it) and the same
    // change, run again, finishes.
    cluster.kill_agent(0);
    cluster.start_agent(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    let report = loop {
        let mut timeline = Timeline::with_hook(|_| {});
        let report = Box::pin(roll::run(
            cluster.connector(),
            cluster.agent_addresses(),
            upgrade_to_newest_3_5(),
            &mut timeline,
        ))
        .await;
        if report.result == Outcome::Succeeded || Instant::now() > deadline {
            break report;
        }
        // The agent may still be settling (re-adopting or restarting etcd).
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    assert_eq!(
        report.result,
        Outcome::Succeeded,
        "{report:#?}; {}",
        cluster.logs_hint()
    );
    writer.wait_for_more(20, Duration::from_secs(30)).await;
    let writes = writer.stop().await;
    for i in 0..3 {
        assert_eq!(
            cluster.status(i).await.member.unwrap_or_default().version,
            newest(3, 5).version.to_string()
        );
    }
    Box::pin(assert_intact(&cluster, "agent-kill/", &writes, &ids_before)).await;
    cluster.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_during_activate_before_etcd_stopped_is_finished_by_a_rerun() {
    Box::pin(agent_killed_during_activate(false)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_during_activate_after_etcd_stopped_is_finished_by_a_rerun() {
    Box::pin(agent_killed_during_activate(true)).await;
}

/// Files in `dir` whose names end with one of `suffixes` or start with
/// one of `prefixes` (half-written leftovers).
fn leftovers(dir: &std::path::Path, prefixes: &[&str], suffixes: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| prefixes.iter().any(|p| n.starts_with(p)) || suffixes.iter().any(|s| n.ends_with(s)))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_state_dir_fails_a_snapshot_and_staging_cleanly_and_changes_nothing() {
    let cluster = ClusterBuilder::new(3, newest(3, 4))
        .state_dir_on_tmpfs(0, "400m")
        .start()
        .await;
    // m0 follows: the roll's snapshot comes from the leader, staging
    // reaches m0.
    faults::move_leader_to(&cluster, 2).await;
    let agents_arg = cluster.agents_arg();
    let ids_before = faults::member_ids(&cluster).await;
    let writer = Writer::start(cluster.all_client_urls(), "full/").await;
    writer.wait_for_more(20, Duration::from_secs(30)).await;
    let pids_before: Vec<Option<u32>> = (0..3).map(|i| faults::etcd_pid_now(&cluster, i)).collect();
    let mount = cluster.state_mount(0).expect("m0's state dir is a tmpfs");
    mount.fill();

    // A snapshot on the full agent: refused before it starts, with the
    // numbers, nothing half-written.
    let backup = steward_command()
        .args(["backup", "--agents", &agents_arg, "--member", "m0"])
        .output()
        .expect("run steward backup");
    let text = String::from_utf8_lossy(&backup.stderr);
    assert_eq!(backup.status.code(), Some(1), "{text}");
    assert!(
        text.contains("RESOURCE_EXHAUSTED") && text.contains("no room on"),
        "{text}"
    );
    let snapshots_dir = cluster.members[0].state_dir.join("snapshots");
    assert!(
        leftovers(&snapshots_dir, &[], &[".part", ".db"]).is_empty(),
        "{snapshots_dir:?}"
    );
    let listed = cluster.snapshot_list(0).await;
    assert!(listed.is_empty(), "{listed:?}");

    // Staging the upgrade on the full agent: the roll stops before any
    // member changes, and no partial binary is left.
    let upgrade = steward_command()
        .args([
            "upgrade",
            "--agents",
            &agents_arg,
            "--to",
            &newest(3, 5).version.to_string(),
        ])
        .output()
        .expect("run steward upgrade");
    let text = String::from_utf8_lossy(&upgrade.stderr);
    assert_ne!(upgrade.status.code(), Some(0), "{text}");
    assert!(
        text.contains("stage") && text.contains("No space left on device"),
        "a clear reason: {text}"
    );
    let binaries_dir = cluster.members[0].state_dir.join("binaries");
    assert!(
        leftovers(&binaries_dir, &[".incoming-", ".tmp"], &[]).is_empty(),
        "{:?}",
        std::fs::read_dir(&binaries_dir).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
    let pids_after: Vec<Option<u32>> = (0..3).map(|i| faults::etcd_pid_now(&cluster, i)).collect();
    assert_eq!(pids_before, pids_after, "no member was touched");
    // The snapshot taken on the leader while staging failed is not the
    // backup of any change: nothing pins it.
    let on_leader = cluster.snapshot_list(2).await;
    assert!(on_leader.iter().all(|s| s.pin.is_empty()), "{on_leader:?}");
    for i in 0..3 {
        assert_eq!(
            cluster.status(i).await.member.unwrap_or_default().version,
            newest(3, 4).version.to_string()
        );
    }

    // Room again: the same commands work.
    std::fs::remove_file(mount.dir().join("filler")).expect("remove the filler");
    let report = Box::pin(roll::run(
        cluster.connector(),
        cluster.agent_addresses(),
        upgrade_to_newest_3_5(),
        &mut Timeline::with_hook(|_| {}),
    ))
    .await;
    assert_eq!(report.result, Outcome::Succeeded, "{report:#?}");
    writer.wait_for_more(20, Duration::from_secs(30)).await;
    let writes = writer.stop().await;
    Box::pin(assert_intact(&cluster, "full/", &writes, &ids_before)).await;
    cluster.cleanup();
}
