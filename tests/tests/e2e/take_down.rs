//! `steward agent stop|restart|activate|rollback` keep the safety
//! invariant of a roll: a member is not taken down while another one is
//! frozen (exit 3, `quorum-safety`, nothing stopped) unless `--force`,
//! and a leader hands its leadership over before it restarts.

use steward_tests::cluster::steward;
use steward_tests::faults::{self, Frozen};
use steward_tests::{ClusterBuilder, newest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_stop_is_refused_while_another_member_is_frozen() {
    let cluster = ClusterBuilder::new(3, newest(3, 5)).start().await;
    faults::move_leader_to(&cluster, 0).await;
    let m1 = cluster.members[1].agent_addr.clone();
    let m1_pid = faults::etcd_pid(&cluster, 1).await;
    let mut frozen = Frozen::now(faults::etcd_pid(&cluster, 2).await);

    for verb in ["stop", "restart", "rollback"] {
        let refused = steward(&["agent", verb, "--agent", &m1]);
        let text = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(3), "{verb}: {text}");
        assert!(text.contains("quorum-safety"), "{verb}: {text}");
        assert!(text.contains("m2 is not healthy"), "{verb}: {text}");
        assert!(text.contains("--force"), "{verb}: {text}");
    }
    let refused = steward(&[
        "agent",
        "activate",
        "--agent",
        &m1,
        "--to",
        &newest(3, 5).version.to_string(),
    ]);
    assert_eq!(
        refused.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(faults::etcd_pid_now(&cluster, 1), Some(m1_pid), "m1 was not taken down");

    // --force is the operator's own call.
    let forced = steward(&["agent", "stop", "--agent", &m1, "--force"]);
    assert_eq!(
        forced.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    assert_eq!(faults::etcd_pid_now(&cluster, 1), None, "m1 stopped");
    frozen.thaw();
    let started = steward(&["agent", "start", "--agent", &m1]);
    assert_eq!(
        started.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    cluster.wait_ready(std::time::Duration::from_secs(30)).await;
    cluster.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_hands_leadership_over_before_a_direct_restart() {
    let cluster = ClusterBuilder::new(3, newest(3, 5)).start().await;
    faults::move_leader_to(&cluster, 1).await;
    let restarted = steward(&["agent", "restart", "--agent", &cluster.members[1].agent_addr]);
    assert_eq!(
        restarted.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&restarted.stderr)
    );
    cluster.wait_ready(std::time::Duration::from_secs(30)).await;
    assert_ne!(
        cluster.leader_index().await,
        1,
        "leadership moved away before the restart"
    );
    cluster.cleanup();
}
