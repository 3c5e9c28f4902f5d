//! Going back past the version flip, and restores that are interrupted:
//! `steward rollback --to-snapshot` after a finished 3.4 -> 3.5 upgrade
//! brings the cluster back to 3.4 with the pre-upgrade data (and steward
//! can upgrade it again); a restore whose coordinator is SIGKILLed after
//! its first member, or whose agent is SIGKILLed during a member's
//! restore, is finished by running the same command again, and no data dir
//! is lost; and the disaster itself: a cluster that lost its quorum is
//! restored without its lock or its revision.

use std::process::Output;
use std::time::Duration;

use steward_proto::v1 as pb;
use steward_tests::cluster::steward_command;
use steward_tests::{Cluster, ClusterBuilder, coordinator, newest};

fn steward(args: &[&str]) -> Output {
    steward_command().args(args).output().expect("run steward")
}

fn json(output: &Output) -> serde_json::Value {
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON")
}

async fn put_many(client: &mut etcd_client::Client, prefix: &str, count: usize) {
    for i in 0..count {
        client
            .put(format!("{prefix}/{i:03}"), format!("{prefix}-{i}"), None)
            .await
            .expect("put");
    }
}

async fn count(client: &mut etcd_client::Client, prefix: &str) -> usize {
    client
        .get(
            prefix,
            Some(etcd_client::GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .expect("count")
        .count()
        .try_into()
        .unwrap_or(usize::MAX)
}

/// Every data dir there is: the members' own and those kept aside.
/// Every member data dir with a database: each data dir in place, and
/// inside it the member dirs a restore kept aside and any staging dir.
fn data_dirs(cluster: &Cluster) -> Vec<String> {
    let mut dirs = Vec::new();
    for member in &cluster.members {
        if member.data_dir.join("member/snap/db").is_file() {
            dirs.push(member.data_dir.display().to_string());
        }
        for entry in std::fs::read_dir(&member.data_dir)
            .expect("read the data dir")
            .flatten()
        {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let kept = name.starts_with(".before-restore-") && path.join("snap/db").is_file();
            let staging = name.ends_with(".part");
            if kept || staging {
                dirs.push(path.display().to_string());
            }
        }
    }
    dirs.sort();
    dirs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_to_snapshot_undoes_a_finished_3_4_to_3_5_upgrade() {
    let old = newest(3, 4);
    let new = newest(3, 5);
    let cluster = ClusterBuilder::new(3, old.clone()).start().await;
    let agents = cluster.agents_arg();
    let mut client = cluster.etcd(&[0, 1, 2]).await;
    put_many(&mut client, "before", 40).await;

    // Nothing to undo yet.
    let early = steward(&["rollback", "--agents", &agents, "--to-snapshot", "--yes"]);
    assert_eq!(
        early.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&early.stderr)
    );
    assert!(String::from_utf8_lossy(&early.stderr).contains("rollback-to-snapshot-after-flip"));

    let binaries = old.dir.parent().expect("binaries dir").display().to_string();
    let target = new.version.to_string();
    let upgrade_all = || {
        json(&steward(&[
            "upgrade",
            "--agents",
            &agents,
            "--to",
            &target,
            "--binaries",
            &binaries,
            "-w",
            "json",
        ]))
    };
    let upgrade = upgrade_all();
    let snapshot = upgrade["snapshot"]["id"]
        .as_str()
        .expect("pre-upgrade snapshot")
        .to_owned();
    let mut client = cluster.etcd(&[0, 1, 2]).await;
    put_many(&mut client, "after", 30).await;

    // The binary-swap rollback cannot go past the flip; this one can.
    let swap = steward(&["rollback", "--agents", &agents]);
    assert_eq!(swap.status.code(), Some(3));
    let status = client.status().await.expect("status");
    let revision_now = status.header().map_or(0, etcd_client::ResponseHeader::revision);
    let report = json(&steward(&[
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
    assert_eq!(report["snapshot"]["db_cluster_version"], "3.4.0");
    let lost = report["revisions_lost"].as_i64().expect("revisions lost");
    let snapshot_revision = report["snapshot"]["revision"].as_i64().expect("revision");
    assert_eq!(lost, revision_now - snapshot_revision, "{report:#}");
    assert!(
        lost >= 30,
        "the 30 writes after the upgrade are among the lost: {report:#}"
    );

    cluster.wait_ready(Duration::from_secs(30)).await;
    let mut client = cluster.etcd(&[0, 1, 2]).await;
    assert_eq!(count(&mut client, "before/").await, 40);
    assert_eq!(count(&mut client, "after/").await, 0);
    for i in 0..3 {
        let status = cluster.status(i).await;
        assert_eq!(status.versions.unwrap_or_default().active, old.version.to_string());
        let member = status.member.unwrap_or_default();
        assert_eq!(member.version, old.version.to_string());
        assert_eq!(member.cluster_version, "3.4.0");
    }
    // The undone upgrade's record and lock, which the snapshot brought
    // back, are gone.
    assert!(
        client
            .get("/steward/last-roll", None)
            .await
            .expect("get")
            .kvs()
            .is_empty()
    );
    assert!(client.get("/steward/lock", None).await.expect("get").kvs().is_empty());

    // steward keeps working on the restored cluster: the lock, the fencing
    // tokens, the agents. The same upgrade again.
    let again = upgrade_all();
    assert_eq!(again["result"], "succeeded", "{again:#}");
    cluster.cleanup();
}

/// Snapshot id of a fresh backup, after `before/` keys, followed by
/// `after/` keys.
async fn backup_between_writes(cluster: &Cluster) -> String {
    let agents = cluster.agents_arg();
    let mut client = cluster.etcd(&[0, 1, 2]).await;
    put_many(&mut client, "before", 40).await;
    let taken = json(&steward(&["backup", "--agents", &agents, "-w", "json"]));
    put_many(&mut client, "after", 30).await;
    taken["snapshot"]["id"].as_str().expect("id").to_owned()
}

async fn assert_finished(cluster: &Cluster, report: &serde_json::Value) {
    assert_eq!(report["result"], "succeeded", "{report:#}");
    assert_eq!(report["resumed"], true, "{report:#}");
    cluster.wait_ready(Duration::from_secs(30)).await;
    let mut client = cluster.etcd(&[0, 1, 2]).await;
    assert_eq!(count(&mut client, "before/").await, 40);
    assert_eq!(count(&mut client, "after/").await, 0);
    for i in 0..3 {
        let restore = cluster.status(i).await.restore.expect("restore");
        assert_eq!(restore.restore_id, report["restore_id"].as_str().unwrap_or_default());
        assert_eq!(restore.phase, i32::from(pb::RestorePhase::Finished));
    }
    // Every member's old data dir is kept, and its new one is in place.
    let dirs = data_dirs(cluster);
    assert_eq!(dirs.len(), 6, "three data dirs and three kept aside: {dirs:?}");
    assert!(
        dirs.iter().all(|d| !d.ends_with(".part")),
        "no half-written data dir is left: {dirs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_whose_coordinator_is_killed_finishes_when_run_again() {
    let cluster = ClusterBuilder::new(3, newest(3, 5)).start().await;
    let agents = cluster.agents_arg();
    let snapshot = backup_between_writes(&cluster).await;
    let args = ["restore", "--agents", &agents, "--snapshot", &snapshot, "--yes"];

    // A killed steward cannot remove its relay copy of the snapshot: keep it
    // in the cluster's dir, which goes with the cluster.
    let mut command = steward_tests::cluster::steward_command();
    command.args(args).env("TMPDIR", cluster.dir());
    let running = coordinator::start_command(command);
    running.wait_for("member_restored");
    running.kill();
    // Every member is stopped by then, and at least one holds the restored
    // data; the others may be halfway.
    let restored: Vec<usize> = {
        let mut restored = Vec::new();
        for i in 0..3 {
            if cluster.status(i).await.restore.is_some() {
                restored.push(i);
            }
        }
        restored
    };
    assert!(!restored.is_empty(), "the agents recorded the restore");

    let report = json(&steward(&[&args[..], &["-w", "json"]].concat()));
    assert_finished(&cluster, &report).await;
    cluster.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_whose_agent_is_killed_finishes_when_run_again() {
    let mut cluster = ClusterBuilder::new(3, newest(3, 4)).start().await;
    let agents = cluster.agents_arg();
    let snapshot = backup_between_writes(&cluster).await;
    let args = ["restore", "--agents", &agents, "--snapshot", &snapshot, "--yes"];

    let running = coordinator::start(&args);
    // Every member's restore runs at once: one agent dies while they work.
    let event = running.wait_for("member_restoring");
    let victim = cluster
        .members
        .iter()
        .position(|m| event["member"] == m.name.as_str())
        .expect("a member");
    cluster.kill_agent(victim);
    let (status, report) = running.finish();
    assert!(!status.success(), "the coordinator lost an agent: {report:#}");
    assert_eq!(report["result"], "failed", "{report:#}");

    // The agent comes back (as systemd restarts it) and does not start
    // etcd on a half-replaced data dir.
    cluster.start_agent(victim);
    let back = wait_status(&cluster, victim).await;
    assert!(!back.process.unwrap_or_default().running, "etcd stays stopped");

    let report = json(&steward(&[&args[..], &["-w", "json"]].concat()));
    assert_finished(&cluster, &report).await;
    cluster.cleanup();
}

async fn wait_status(cluster: &Cluster, i: usize) -> pb::GetStatusResponse {
    for _ in 0..100 {
        if let Ok(mut agent) = tokio::time::timeout(Duration::from_secs(1), cluster.agent(i)).await
            && let Ok(status) = agent.get_status(pb::GetStatusRequest {}).await
        {
            return status.into_inner();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("agent {i} did not come back; {}", cluster.logs_hint());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_lost_its_quorum_is_restored() {
    let cluster = ClusterBuilder::new(3, newest(3, 5)).start().await;
    let agents = cluster.agents_arg();
    let snapshot = backup_between_writes(&cluster).await;
    // Two of three members gone: no quorum, so no lock.
    for i in [1, 2] {
        cluster
            .agent(i)
            .await
            .stop(pb::StopRequest { fencing_token: 0 })
            .await
            .expect("stop");
    }
    let output = steward(&[
        "restore",
        "--agents",
        &agents,
        "--snapshot",
        &snapshot,
        "--yes",
        "-w",
        "json",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = json(&output);
    assert_eq!(report["result"], "succeeded", "{report:#}");
    // The one member left still answers its Status: what is lost is known.
    assert!(report["revisions_lost"].as_i64().unwrap_or(0) >= 30, "{report:#}");
    let warned: Vec<&str> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["verdict"] == "warn")
        .filter_map(|c| c["rule"].as_str())
        .collect();
    assert_eq!(warned, ["one-coordinator"], "no quorum, no lock: {report:#}");
    assert!(stderr.contains("restored  "), "{stderr}");

    cluster.wait_ready(Duration::from_secs(30)).await;
    let mut client = cluster.etcd(&[0, 1, 2]).await;
    assert_eq!(count(&mut client, "before/").await, 40);
    assert_eq!(count(&mut client, "after/").await, 0);
    assert_eq!(data_dirs(&cluster).len(), 6, "three in place and three kept");
    cluster.cleanup();
}
