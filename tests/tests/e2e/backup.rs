//! `steward backup` and `steward backups` on a real cluster: a verified
//! snapshot through the leader's agent (or a named member's), copied here
//! with `--out` and never over an existing file, and read offline by
//! `steward snapshot status`; every agent's snapshots
//! listed newest first; an unknown member refused with the members named.

use std::process::Output;

use steward_tests::cluster::steward_command;
use steward_tests::{ClusterBuilder, newest};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_takes_a_verified_snapshot_and_backups_lists_them() {
    let cluster = ClusterBuilder::new(3, newest(3, 5)).start().await;
    let agents = cluster.agents_arg();
    let mut client = cluster.etcd(&[0, 1, 2]).await;
    let mut last_revision = 0;
    for i in 0..100 {
        let put = client
            .put(format!("backup/{i:03}"), format!("value-{i}"), None)
            .await
            .expect("put");
        last_revision = put.header().map_or(0, etcd_client::ResponseHeader::revision);
    }
    let leader = cluster.members[cluster.leader_index().await].name.clone();
    let scratch = tempfile::tempdir().expect("scratch");
    let file = scratch.path().join("cluster.db");
    let file_text = file.display().to_string();

    let taken = json(&steward(&[
        "backup", "--agents", &agents, "--out", &file_text, "-w", "json",
    ]));
    let snapshot = &taken["snapshot"];
    assert_eq!(
        snapshot["member_name"],
        leader.as_str(),
        "the leader's agent by default"
    );
    assert!(snapshot["revision"].as_i64().unwrap_or(0) >= last_revision, "{taken:#}");
    assert!(snapshot["total_keys"].as_u64().unwrap_or(0) >= 100, "{taken:#}");
    assert_eq!(snapshot["etcd_version"], newest(3, 5).version.to_string());
    assert_eq!(snapshot["cluster_version"], "3.5.0");
    assert_eq!(taken["downloaded_to"], file_text.as_str());
    let local = std::fs::metadata(&file).expect("the local copy");
    // In one pass: taken and sent by one call, not a take and a download.
    let leader_index = cluster.leader_index().await;
    let audit = std::fs::read_to_string(cluster.members[leader_index].state_dir.join("audit.log")).expect("audit log");
    let id = snapshot["id"].as_str().expect("an id");
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"TakeAndSendSnapshot\"") && l.contains(id)),
        "{audit}"
    );
    assert!(!audit.contains("\"DownloadSnapshot\""), "{audit}");
    assert_eq!(
        steward_agent::snapshot::verify_file(&file)
            .expect("the copy verifies")
            .sha256,
        snapshot["sha256"].as_str().expect("a sha256")
    );
    assert_eq!(Some(local.len()), snapshot["size_bytes"].as_u64());
    // It holds every secret stored in etcd: readable by its owner only.
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&local.permissions()) & 0o777,
        0o600
    );

    // The copy read offline, without etcd or an agent: the same revision,
    // key count (the agent's come from etcd's own status tool), version
    // and sha256.
    let offline = json(&steward(&["snapshot", "status", &file_text, "-w", "json"]));
    assert_eq!(offline["trailer"], "matches", "{offline:#}");
    assert_eq!(offline["sha256"], snapshot["sha256"], "{offline:#}");
    assert_eq!(offline["revision"], snapshot["revision"], "{offline:#}");
    assert_eq!(offline["total_keys"], snapshot["total_keys"], "{offline:#}");
    assert_eq!(offline["cluster_version"], "3.5.0", "{offline:#}");
    assert_eq!(offline["size_bytes"], snapshot["size_bytes"], "{offline:#}");
    // A damaged copy: exit 1, naming the trailer.
    let mut bytes = std::fs::read(&file).expect("the copy");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    let damaged = scratch.path().join("damaged.db");
    std::fs::write(&damaged, &bytes).expect("a damaged copy");
    let checked = steward(&["snapshot", "status", &damaged.display().to_string()]);
    assert_eq!(checked.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert!(stderr.contains("sha256 trailer does not match"), "{stderr}");

    // Never over an existing file, and refused before a snapshot is taken.
    let again = steward(&["backup", "--agents", &agents, "--out", &file_text]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwrites"));
    assert_eq!(std::fs::metadata(&file).expect("still there").len(), local.len());

    let other = cluster.members[(cluster.leader_index().await + 1) % 3].name.clone();
    let named = json(&steward(&[
        "backup", "--agents", &agents, "--member", &other, "-w", "json",
    ]));
    assert_eq!(named["snapshot"]["member_name"], other.as_str());
    assert!(named["downloaded_to"].is_null());

    let unknown = steward(&["backup", "--agents", &agents, "--member", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("no such member") && stderr.contains("m0"), "{stderr}");

    // Every agent's snapshots: the leader's and the named member's, newest
    // first.
    let listed = json(&steward(&["backups", "--agents", &agents, "-w", "json"]));
    let snapshots = listed["snapshots"].as_array().expect("snapshots");
    assert_eq!(snapshots.len(), 2, "{listed:#}");
    assert_eq!(snapshots[0]["member_name"], other.as_str(), "newest first: {listed:#}");
    let created: Vec<&str> = snapshots.iter().filter_map(|s| s["created_at"].as_str()).collect();
    let mut sorted = created.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(created, sorted);
    cluster.cleanup();
}
