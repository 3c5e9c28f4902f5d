//! The rolling engine across the versions that can be had here: 3.3 -> 3.5
//! as two passes (with a 3.3-style `--ca-file` member spec that 3.4 would
//! refuse without the flag rule), five members, a patch upgrade (its binary
//! uploaded from outside the agents' import dirs) and a patch downgrade,
//! and a target binary that fails (the member is reverted, the
//! change stops with a report, the cluster stays healthy).

use std::path::PathBuf;
use std::time::Duration;

use steward_coordinator::engine::events::{Event, StageMethod};
use steward_coordinator::engine::roll::plan::Direction;
use steward_coordinator::engine::roll::{Cause, Change, Gate, Outcome, RollOptions, RollRequest};
use steward_proto::EtcdVersion;
use steward_tests::rolling::{assert_all_on, roll};
use steward_tests::{ClusterBuilder, Writer, binaries::binaries_dir, exact, fake, lost_writes, newest, oldest};

fn options(direction: Direction, target: &EtcdVersion) -> RollOptions {
    RollOptions::new(direction, target.clone(), Some(binaries_dir()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_3_3_to_3_5_in_two_passes_with_a_ca_file_spec() {
    let start = exact("3.3.25");
    let middle = newest(3, 4);
    let end = newest(3, 5);
    let cluster = ClusterBuilder::new(3, start)
        .extra_flag("--ca-file=/etc/ssl/certs/ca-certificates.crt")
        .start()
        .await;
    let writer = Writer::start(cluster.all_client_urls(), "passes/").await;
    let (report, events) = roll(&cluster, options(Direction::Upgrade, &end.version)).await;
    let writes = writer.stop().await;
    assert_eq!(
        report.result,
        Outcome::Succeeded,
        "{report:#?}; {}",
        cluster.logs_hint()
    );
    let passes: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::PassDone { target } => Some(target.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(passes, [middle.version.to_string(), end.version.to_string()]);
    let cluster_versions: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::ClusterVersion { version } => Some(version.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        cluster_versions,
        ["3.4.0", "3.5.0"],
        "the cluster version flips after each pass"
    );
    assert_all_on(&cluster, &end.version, "3.5.0").await;
    // The --ca-file of the spec became --trusted-ca-file from 3.4 on.
    let args = cluster.status(0).await.process.unwrap_or_default().args;
    assert!(args.iter().any(|a| a.starts_with("--trusted-ca-file=")), "{args:?}");
    assert!(!args.iter().any(|a| a.starts_with("--ca-file=")), "{args:?}");
    let mut client = cluster.etcd(&[0, 1, 2]).await;
    assert!(lost_writes(&mut client, "passes/", &writes).await.is_empty());
    cluster.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_members_from_3_4_to_3_5() {
    let end = newest(3, 5);
    let cluster = ClusterBuilder::new(5, newest(3, 4)).start().await;
    let (report, _) = roll(&cluster, options(Direction::Upgrade, &end.version)).await;
    assert_eq!(
        report.result,
        Outcome::Succeeded,
        "{report:#?}; {}",
        cluster.logs_hint()
    );
    assert_eq!(report.members.len(), 5);
    assert_eq!(report.members.iter().map(|m| m.leader_moves).sum::<u32>(), 1);
    assert_eq!(report.members.iter().map(|m| m.elections).sum::<u64>(), 0);
    assert_all_on(&cluster, &end.version, "3.5.0").await;
    cluster.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_upgrade_then_a_patch_downgrade() {
    let low = oldest(3, 5);
    let high = newest(3, 5);
    assert!(
        low.version < high.version,
        "two 3.5 patches are needed: {} and {}",
        low.version,
        high.version
    );
    let cluster = ClusterBuilder::new(3, low.clone()).start().await;
    // The new release lies where no agent may import from: every file is
    // streamed to every agent.
    let elsewhere = tempfile::tempdir().expect("a dir outside the import dirs");
    for tool in ["etcd", "etcdctl", "etcdutl"] {
        std::fs::copy(high.dir.join(tool), elsewhere.path().join(tool)).expect("copy the release");
    }
    let upgrade = RollOptions::for_request(RollRequest::Change(Change {
        binary: Some(elsewhere.path().join("etcd")),
        ..Change::new(Direction::Upgrade, high.version.clone(), None)
    }));
    let (report, events) = roll(&cluster, upgrade).await;
    assert_eq!(
        report.result,
        Outcome::Succeeded,
        "{report:#?}; {}",
        cluster.logs_hint()
    );
    assert_all_on(&cluster, &high.version, "3.5.0").await;
    let uploads = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::Staged {
                    method: StageMethod::Uploaded,
                    already_present: false,
                    ..
                }
            )
        })
        .count();
    assert_eq!(uploads, 9, "three files to each of three agents: {events:#?}");
    let (report, _) = roll(&cluster, options(Direction::Downgrade, &low.version)).await;
    assert_eq!(
        report.result,
        Outcome::Succeeded,
        "{report:#?}; {}",
        cluster.logs_hint()
    );
    assert_all_on(&cluster, &low.version, "3.5.0").await;
    cluster.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_exits_at_once_is_reverted_and_stops_the_change() {
    let old = newest(3, 4);
    let cluster = ClusterBuilder::new(3, old.clone())
        .supervision("activate_timeout", "\"20s\"")
        .start()
        .await;
    // A release dir holding a binary that claims 3.5.97 and exits at once.
    let release_dir: PathBuf = cluster.import_dir().join("3.5.97");
    std::fs::create_dir_all(&release_dir).expect("release dir");
    let fake = fake::exits_at_once(&release_dir, "3.5.97");
    std::fs::rename(&fake, release_dir.join("etcd")).expect("name it etcd");
    let opts = RollOptions::for_request(RollRequest::Change(Change {
        binary: Some(release_dir.join("etcd")),
        ..Change::new(Direction::Upgrade, "3.5.97".parse().expect("version"), None)
    }));
    let (report, _) = roll(&cluster, opts).await;

    assert_eq!(report.result, Outcome::Failed, "{report:#?}");
    let failure = report.failure.expect("a failure");
    assert_eq!(failure.gate, "activate");
    assert_eq!(failure.gate, Gate::Activate);
    assert_eq!(failure.cause, Cause::Reverted, "a caller can branch on the revert");
    assert!(failure.reason.contains("reverted the member to"), "{}", failure.reason);
    assert!(
        failure.log_tail.iter().any(|l| l.contains("failing on purpose")),
        "{:?}",
        failure.log_tail
    );
    assert!(report.snapshot.is_some(), "the snapshot came first");
    // Only the first member was tried; every member runs the old version
    // and the cluster is healthy.
    assert_all_on(&cluster, &old.version, "3.4.0").await;
    cluster.wait_ready(Duration::from_secs(30)).await;
    cluster.cleanup();
}
