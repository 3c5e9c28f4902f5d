//! The availability probe (`--probe`) against a member that hangs: frozen
//! with SIGSTOP, it fails every probe write through its endpoint, but the
//! writes through the other members go on meanwhile, so the stall the
//! probe reports is the cluster's, not the probe's own 2 s timeout on the
//! member that hangs.

use std::time::Duration;

use steward_coordinator::engine::cluster::probe::Probe;
use steward_tests::faults::{Frozen, etcd_pid};
use steward_tests::{ClusterBuilder, newest};

/// Longer than the probe's timeout on one attempt, so that several
/// attempts through the frozen member time out.
const FROZEN_FOR: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_follower_fails_its_own_writes_and_stalls_nobody_else() {
    let cluster = ClusterBuilder::new(3, newest(3, 5)).start().await;
    let leader = cluster.leader_index().await;
    let follower = (0..3).find(|i| *i != leader).expect("a follower");
    let probe = Probe::start(cluster.connector(), cluster.all_client_urls(), "/steward-test").await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    probe.enter("frozen");
    let mut frozen = Frozen::now(etcd_pid(&cluster, follower).await);
    tokio::time::sleep(FROZEN_FOR).await;
    frozen.thaw();
    probe.enter("thawed");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let report = probe.stop().await;

    let window = report
        .steps
        .iter()
        .find(|w| w.step == "frozen")
        .expect("the frozen window");
    eprintln!(
        "frozen for {FROZEN_FOR:?}: {} writes, {} failed attempts, longest stall {} ms; in the whole run {} ms",
        window.writes, window.failed, window.longest_stall_ms, report.longest_stall_ms
    );
    assert!(
        window.failed >= 2,
        "the writes through the frozen member time out: {report:#?}"
    );
    // Two writers, an attempt every 20 ms plus the write's own time: many
    // hundreds in 5 s; a probe held up by the frozen member's timeouts
    // writes a handful.
    assert!(
        window.writes >= 100,
        "the writes through the other members go on: {report:#?}"
    );
    // Only while frozen: as it thaws, the member may hold the cluster's
    // writes up for a moment while it catches up, which is etcd's doing.
    assert!(
        window.longest_stall_ms < 1000,
        "the probe reports the cluster's stall, not its own timeout on the frozen member: {report:#?}"
    );
    assert!(
        report
            .steps
            .iter()
            .find(|w| w.step == "thawed")
            .is_some_and(|w| w.writes > 0),
        "writes go on after the thaw: {report:#?}"
    );
}
