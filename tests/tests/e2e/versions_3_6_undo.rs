//! Undoing a 3.5 -> 3.6 change on real binaries: `steward rollback` while
//! the cluster version is still 3.5 (the changed members go back to 3.5),
//! and `steward rollback --to-snapshot` after the flip (the pre-upgrade
//! snapshot restored with 3.5; what was written since is gone, and the
//! report says how much).

use std::process::Output;
use std::time::Duration;

use steward_proto::v1 as pb;
use steward_tests::cluster::json_of;
use steward_tests::rolling::assert_all_on;
use steward_tests::{ClusterBuilder, binaries::binaries_dir, coordinator, newest};

fn steward(args: &[&str]) -> Output {
    steward_tests::cluster::steward(args)
}

async fn put_many(client: &mut etcd_client::Client, prefix: &str, count: usize) {
    for i in 0..count {
        client.put(format!("{prefix}/{i:03}"), "v", None).await.expect("put");
    }
}

async fn count(client: &mut etcd_client::Client, prefix: &str) -> i64 {
    client
        .get(
            prefix,
            Some(etcd_client::GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .expect("count")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_returns_3_6_members_to_3_5_before_the_flip() {
    let (old, new) = (newest(3, 5), newest(3, 6));
    let cluster = ClusterBuilder::new(3, old.clone()).start().await;

    // A partial upgrade: the leader and one follower run 3.6.
    let leader = cluster.leader_index().await;
    let follower = (leader + 1) % 3;
    for i in [follower, leader] {
        cluster.import_etcd(i, &new.etcd(), &new.version.to_string()).await;
        cluster
            .agent(i)
            .await
            .activate(pb::ActivateRequest {
                version: new.version.to_string(),
                timeout: None,
                fencing_token: 0,
            })
            .await
            .expect("activate 3.6");
    }
    cluster.wait_ready(Duration::from_secs(30)).await;
    let mut client = cluster.etcd(&[0, 1, 2]).await;
    put_many(&mut client, "mixed", 20).await;
    assert_eq!(
        cluster.status(leader).await.member.unwrap_or_default().cluster_version,
        "3.5.0",
        "a mixed cluster keeps the lower version"
    );

    let report = json_of(&steward(&["rollback", "--agents", &cluster.agents_arg(), "-w", "json"]));
    assert_eq!(report["result"], "succeeded", "{report:#}");
    assert_eq!(report["to"], old.version.to_string());
    assert_all_on(&cluster, &old.version, "3.5.0").await;
    let mut client = cluster.etcd(&[0, 1, 2]).await;
    assert_eq!(
        count(&mut client, "mixed/").await,
        20,
        "what the mixed cluster took is kept"
    );
    cluster.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_to_snapshot_undoes_a_finished_3_5_to_3_6_upgrade() {
    let (old, new) = (newest(3, 5), newest(3, 6));
    let cluster = ClusterBuilder::new(3, old.clone()).start().await;
    let agents = cluster.agents_arg();
    let mut client = cluster.etcd(&[0, 1, 2]).await;
    put_many(&mut client, "before", 40).await;

    let binaries = binaries_dir().display().to_string();
    let target = new.version.to_string();
    let upgrade = json_of(&steward(&[
        "upgrade",
        "--agents",
        &agents,
        "--to",
        &target,
        "--binaries",
        &binaries,
        "-w",
        "json",
    ]));
    let snapshot = upgrade["snapshot"]["id"]
        .as_str()
        .expect("pre-upgrade snapshot")
        .to_owned();
    assert_all_on(&cluster, &new.version, "3.6.0").await;
    let mut client = cluster.etcd(&[0, 1, 2]).await;
    put_many(&mut client, "after", 30).await;

    // The binary swap cannot go back past the flip; the snapshot can.
    let swap = steward(&["rollback", "--agents", &agents]);
    let stderr = String::from_utf8_lossy(&swap.stderr);
    assert_eq!(swap.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("rollback-before-flip"), "{stderr}");

    let report = json_of(&steward(&[
        "rollback",
        "--agents",
        &agents,
        "--to-snapshot",
        "--yes",
        "-w",
        "json",
    ]));
    assert_eq!(report["result"], "succeeded", "{report:#}");
    assert_eq!(report["snapshot"]["id"], snapshot.as_str());
    assert_eq!(report["snapshot"]["db_cluster_version"], "3.5.0");
    assert!(
        report["revisions_lost"].as_i64().expect("revisions lost") >= 30,
        "the writes after the upgrade are counted as lost: {report:#}"
    );

    cluster.wait_ready(Duration::from_secs(30)).await;
    assert_all_on(&cluster, &old.version, "3.5.0").await;
    let mut client = cluster.etcd(&[0, 1, 2]).await;
    assert_eq!(count(&mut client, "before/").await, 40);
    assert_eq!(count(&mut client, "after/").await, 0);
    cluster.cleanup();
}

/// A Downgrade-API downgrade (3.6 -> 3.5) interrupted after its first
/// member: `steward rollback` cancels the downgrade in etcd and returns the
/// swapped members to 3.6.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_in_the_middle_of_a_3_6_downgrade_cancels_it_and_swaps_back() {
    let (old, new) = (newest(3, 5), newest(3, 6));
    let cluster = ClusterBuilder::new(3, old.clone()).start().await;
    let agents = cluster.agents_arg();
    let binaries = binaries_dir().display().to_string();
    let up = json_of(&steward(&[
        "upgrade",
        "--agents",
        &agents,
        "--to",
        &new.version.to_string(),
        "--binaries",
        &binaries,
        "-w",
        "json",
    ]));
    assert_eq!(up["result"], "succeeded", "{up:#}");
    let mut client = cluster.etcd(&[0, 1, 2]).await;
    put_many(&mut client, "on-3.6", 20).await;

    let down = coordinator::start(&[
        "downgrade",
        "--agents",
        &agents,
        "--to",
        &old.version.to_string(),
        "--binaries",
        &binaries,
    ]);
    down.wait_for("storage_migrated");
    down.wait_for("member_done");
    down.kill();
    let mut versions = Vec::new();
    for i in 0..3 {
        versions.push(cluster.status(i).await.member.unwrap_or_default().version);
    }
    assert!(
        versions.contains(&old.version.to_string()) && versions.contains(&new.version.to_string()),
        "the downgrade was interrupted half way: {versions:?}"
    );

    let report = json_of(&steward(&["rollback", "--agents", &agents, "-w", "json"]));
    assert_eq!(report["result"], "succeeded", "{report:#}");
    let checks = report["checks"].as_array().expect("checks");
    assert!(
        checks
            .iter()
            .any(|c| c["rule"] == "rollback-direction"
                && c["message"].as_str().unwrap_or_default().contains("downgrade")),
        "the recorded downgrade is what is undone: {report:#}"
    );
    assert_all_on(&cluster, &new.version, "3.6.0").await;
    let mut client = cluster.etcd(&[0, 1, 2]).await;
    assert_eq!(count(&mut client, "on-3.6/").await, 20);
    cluster.cleanup();
}
