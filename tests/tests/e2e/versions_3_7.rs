//! etcd 3.7, built from etcd's Go modules by scripts/setup-etcd: a cluster
//! born on the newest 3.5 patch goes up to 3.6 and on to 3.7 (the 3.7
//! upgrade guide's path), then back down to 3.6 through the Downgrade API
//! (the 3.7 downgrade guide). Each roll runs under a writer that fails over
//! between members; every acknowledged key is read back and HashKV agrees
//! at the end.
//!
//! The cluster starts on 3.5 on purpose: its write-ahead log then holds the
//! v2 requests 3.5 writes, which 3.7 can no longer read. A cluster born on
//! 3.6 never has them.

use steward_coordinator::engine::roll::plan::Direction;
use steward_tests::faults::event_name;
use steward_tests::rolling::{assert_all_on, assert_every_etcd_runs_with, roll_under_writer};
use steward_tests::{ClusterBuilder, newest};

/// The 3.5 flags of the spec as 3.6 and 3.7 run them.
const RENDERED_FROM_3_6: [&str; 2] = [
    "--compaction-batch-limit=500",
    "--feature-gates=InitialCorruptCheck=true",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_born_on_3_5_goes_through_3_6_to_3_7_and_back_to_3_6() {
    let (v3_5, v3_6, v3_7) = (newest(3, 5), newest(3, 6), newest(3, 7));
    // Written the 3.5 way: the agents render them for each release.
    let cluster = ClusterBuilder::new(3, v3_5)
        .extra_flag("--experimental-compaction-batch-limit=500")
        .extra_flag("--experimental-initial-corrupt-check=true")
        .start()
        .await;

    let _ = roll_under_writer(&cluster, Direction::Upgrade, &v3_6, "to-3.6/").await;
    assert_all_on(&cluster, &v3_6.version, "3.6.0").await;

    let up = roll_under_writer(&cluster, Direction::Upgrade, &v3_7, "to-3.7/").await;
    assert_all_on(&cluster, &v3_7.version, "3.7.0").await;
    assert_every_etcd_runs_with(&cluster, &RENDERED_FROM_3_6).await;
    let names: Vec<String> = up.iter().map(event_name).collect();
    assert_eq!(
        names.iter().filter(|n| *n == "leader_moved").count(),
        1,
        "the leader is moved once, and changed last: {names:?}"
    );

    let down = roll_under_writer(&cluster, Direction::Downgrade, &v3_6, "back-to-3.6/").await;
    assert_all_on(&cluster, &v3_6.version, "3.6.0").await;
    assert_every_etcd_runs_with(&cluster, &RENDERED_FROM_3_6).await;
    let names: Vec<String> = down.iter().map(event_name).collect();
    let enabled = names.iter().position(|n| n == "downgrade_enabled");
    let migrated = names.iter().position(|n| n == "storage_migrated");
    let first_member = names.iter().position(|n| n == "member_started");
    assert_eq!(
        names.iter().filter(|n| *n == "leader_moved").count(),
        1,
        "the leader is moved once, and swapped last: {names:?}"
    );
    assert!(
        enabled.is_some() && migrated > enabled && first_member > migrated,
        "the Downgrade API is enabled and every storage version reaches 3.6 before any binary is swapped: {names:?}"
    );
    cluster.cleanup();
}
