//! The gate and the database's size: above `--hash-kv-max-db-mib` the
//! preflight warns and no gate asks etcd for HashKV (it would stop a
//! member's writes while it reads the whole database); at or below it,
//! every gate does. etcd's debug log names every gRPC call it served, so
//! the proof is read from etcd itself.

use steward_coordinator::engine::check::Verdict;
use steward_coordinator::engine::events::{Lines, Recorder};
use steward_coordinator::engine::roll::plan::Direction;
use steward_coordinator::engine::roll::{self, Outcome, RollOptions, RollReport};
use steward_tests::bench::fill;
use steward_tests::{Cluster, ClusterBuilder, binaries::binaries_dir, exact};

/// HashKV calls each member's etcd logged so far.
fn hash_kv_calls(cluster: &Cluster) -> usize {
    cluster
        .members
        .iter()
        .flat_map(|m| std::fs::read_dir(m.state_dir.join("logs")).expect("the etcd logs"))
        .map(|entry| std::fs::read_to_string(entry.expect("a log").path()).unwrap_or_default())
        .map(|log| log.matches("/etcdserverpb.Maintenance/HashKV").count())
        .sum()
}

async fn roll_to(cluster: &Cluster, direction: Direction, to: &str, hash_kv_max_db_mib: u64) -> RollReport {
    let mut options = RollOptions::new(direction, to.parse().expect("a version"), Some(binaries_dir()));
    options.hash_kv_max_db_mib = hash_kv_max_db_mib;
    let mut events = Recorder {
        events: Vec::new(),
        inner: Lines(std::io::stderr()),
    };
    let report = roll::run(cluster.connector(), cluster.agent_addresses(), options, &mut events).await;
    assert_eq!(
        report.result,
        Outcome::Succeeded,
        "{report:#?}; {}",
        cluster.logs_hint()
    );
    report
}

fn hash_kv_check(report: &RollReport) -> (Verdict, String) {
    report
        .checks
        .iter()
        .find(|c| c.rule == "hash-kv-gate")
        .map(|c| (c.verdict, c.message.clone()))
        .expect("the hash-kv-gate check")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_above_the_hash_kv_limit_is_not_hashed_at_the_gates() {
    let (low, high) = (exact("3.5.30"), newest_3_5());
    let cluster = ClusterBuilder::new(3, low.clone())
        .extra_flag("--log-level=debug")
        .start()
        .await;
    let mut client = cluster.etcd(&[0, 1, 2]).await;
    fill(&mut client, 3).await;

    // 3 MiB of data, a limit of 1 MiB: no HashKV, and the preflight says so.
    let before = hash_kv_calls(&cluster);
    let report = roll_to(&cluster, Direction::Upgrade, &high, 1).await;
    let (verdict, message) = hash_kv_check(&report);
    assert_eq!(verdict, Verdict::Warn, "{message}");
    assert!(message.contains("above 1 MiB"), "{message}");
    assert_eq!(
        hash_kv_calls(&cluster),
        before,
        "HashKV was asked although the database is above the limit"
    );
    for member in &report.members {
        assert!(
            member.activate_ms > 0 && member.gate_ms > 0,
            "where the time went: {member:?}"
        );
    }

    // The default limit: every gate compares HashKV on every member.
    let report = roll_to(&cluster, Direction::Downgrade, &low.version.to_string(), 512).await;
    assert_eq!(hash_kv_check(&report).0, Verdict::Pass);
    let asked = hash_kv_calls(&cluster) - before;
    assert!(asked >= 9, "3 gates of 3 members each ask HashKV, logged {asked}");
    cluster.cleanup();
}

fn newest_3_5() -> String {
    steward_tests::newest(3, 5).version.to_string()
}
