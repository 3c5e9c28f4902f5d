//! Backup, restore and rollback to the pre-change snapshot on separate
//! hosts, each agent installed by `deploy/install-agent` under the shipped
//! unit, with the documented layout (`data_dir = "/var/lib/etcd"`, the
//! unit's `ProtectSystem=strict` with `ReadWritePaths=/var/lib/steward
//! /var/lib/etcd`, `User=etcd`): a restore must work inside what the unit
//! lets the agent write.

use std::time::Duration;

use steward_tests::binaries::binaries_dir;
use steward_tests::cluster::json_of as json;
use steward_tests::hosts::TestbedBuilder;
use steward_tests::{Writer, lost_writes, newest};

async fn put_all(client: &mut etcd_client::Client, prefix: &str, count: usize) {
    for i in 0..count {
        client
            .put(format!("{prefix}/{i}"), "v", None)
            .await
            .unwrap_or_else(|e| panic!("put {prefix}/{i}: {e}"));
    }
}

async fn count(client: &mut etcd_client::Client, prefix: &str) -> i64 {
    client
        .get(
            format!("{prefix}/"),
            Some(etcd_client::GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap_or_else(|e| panic!("count {prefix}/: {e}"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_restore_and_rollback_to_the_snapshot_work_under_the_shipped_unit() {
    let old = newest(3, 4);
    let new = newest(3, 5);
    let testbed = TestbedBuilder::new(3, old.clone())
        .with_release(new.clone())
        .start()
        .await;
    let cluster = testbed.cluster_file();
    let mut client = testbed.etcd().await;
    put_all(&mut client, "before", 50).await;

    let file = testbed.dir().join("cluster.db").display().to_string();
    let _ = json(&testbed.steward(&["backup", "--cluster", &cluster, "--out", &file, "-w", "json"]));
    put_all(&mut client, "after", 20).await;

    let restore = testbed.steward(&[
        "restore",
        "--cluster",
        &cluster,
        "--snapshot",
        &file,
        "--yes",
        "-w",
        "json",
    ]);
    let report = json(&restore);
    assert_eq!(report["result"], "succeeded", "{report:#}");
    let mut client = testbed.etcd().await;
    assert_eq!(count(&mut client, "before").await, 50, "the snapshot's keys are back");
    assert_eq!(
        count(&mut client, "after").await,
        0,
        "later keys are not in the snapshot"
    );
    testbed.wait_healthy(Duration::from_secs(60)).await;
    // The replaced data stays on each host, inside the data dir the unit
    // lets the agent write.
    for host in &testbed.hosts {
        let kept = std::fs::read_dir(host.root().join("var/lib/etcd"))
            .expect("the data dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".before-restore-"))
            .count();
        assert_eq!(kept, 1, "{}: the replaced member data is kept", host.name);
    }

    // An upgrade under a writer, then back to its pre-change snapshot.
    let binaries = binaries_dir().display().to_string();
    let writer = Writer::start(testbed.client_urls(), "roll").await;
    writer.wait_for_more(20, Duration::from_secs(20)).await;
    let upgrade = json(&testbed.steward(&[
        "upgrade",
        "--cluster",
        &cluster,
        "--to",
        &new.version.to_string(),
        "--binaries",
        &binaries,
        "--probe",
        "-w",
        "json",
    ]));
    assert_eq!(upgrade["result"], "succeeded", "{upgrade:#}");
    let report = writer.stop().await;
    let mut client = testbed.etcd().await;
    let lost = lost_writes(&mut client, "roll", &report).await;
    assert!(lost.is_empty(), "acknowledged writes lost in the upgrade: {lost:?}");

    let rollback = json(&testbed.steward(&[
        "rollback",
        "--cluster",
        &cluster,
        "--to-snapshot",
        "--yes",
        "-w",
        "json",
    ]));
    assert_eq!(rollback["result"], "succeeded", "{rollback:#}");
    testbed.wait_healthy(Duration::from_secs(60)).await;
    let status = json(&testbed.steward(&["status", "--cluster", &cluster, "-w", "json"]));
    for member in status["members"].as_array().expect("members") {
        assert_eq!(member["version"], old.version.to_string().as_str(), "{status:#}");
    }
    let mut client = testbed.etcd().await;
    assert_eq!(count(&mut client, "before").await, 50);
}

/// A restore that could not finish is refused before any member stops: a
/// member dir that is a mount point (a bind mount, with its parent's device
/// number) cannot be renamed aside, and the dry run finds it in the
/// kernel's mount table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_that_could_not_finish_is_refused_before_any_member_stops() {
    let testbed = TestbedBuilder::new(3, newest(3, 5)).start().await;
    let cluster = testbed.cluster_file();
    let file = testbed.dir().join("cluster.db").display().to_string();
    let _ = json(&testbed.steward(&["backup", "--cluster", &cluster, "--out", &file, "-w", "json"]));
    let host = &testbed.hosts[1];
    let _ = host.exec_ok(&["mount", "--bind", "/var/lib/etcd/member", "/var/lib/etcd/member"]);
    // As a disk mounted at boot: the unit's own mount namespace, made at
    // its start, has it (etcd keeps running through the agent's restart).
    let _ = host.exec_ok(&["systemctl", "restart", "steward-agent"]);
    testbed.wait_healthy(Duration::from_secs(30)).await;
    let pids_before: Vec<String> = testbed
        .hosts
        .iter()
        .map(|h| h.unit_property("steward-agent", "MainPID"))
        .collect();

    let refused = testbed.steward(&["restore", "--cluster", &cluster, "--snapshot", &file, "--yes"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    let stdout = String::from_utf8_lossy(&refused.stdout);
    assert_eq!(refused.status.code(), Some(3), "{stdout}{stderr}");
    assert!(
        stdout.contains("data-dir-not-a-mount-point") && stdout.contains("m1"),
        "the refusal names the rule and the member:\n{stdout}{stderr}"
    );
    assert!(stdout.contains("/var/lib/etcd/member is a mount point"), "{stdout}");
    assert!(!stdout.contains("stop "), "no member was stopped:\n{stdout}");
    let status = testbed.steward(&["status", "--cluster", &cluster]);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stdout));
    let pids_after: Vec<String> = testbed
        .hosts
        .iter()
        .map(|h| h.unit_property("steward-agent", "MainPID"))
        .collect();
    assert_eq!(pids_before, pids_after, "no agent restarted");
}
