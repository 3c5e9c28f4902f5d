//! Every bad input to `steward restore` is refused before any member is
//! stopped, naming the check: a truncated snapshot, a corrupted one, a file
//! that is no snapshot, one whose trailer matches but holds no database, a
//! snapshot from a newer etcd than the binary that would restore it, a
//! restore while another coordinator holds the lock, no confirmation, and
//! a member the agent itself cannot restore (its WAL kept apart), which the
//! coordinator learns from every agent's dry run, and a copy the agents
//! verified as it arrived and that was damaged on its host since.
//! After each, every etcd process is the one from before and no data dir
//! was touched.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use sha2::{Digest, Sha256};
use steward_tests::cluster::steward_command;
use steward_tests::{Cluster, ClusterBuilder, newest};

fn steward(args: &[&str]) -> Output {
    steward_command()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run steward")
}

async fn pids(cluster: &Cluster) -> Vec<u32> {
    let mut pids = Vec::new();
    for i in 0..cluster.members.len() {
        let process = cluster.status(i).await.process.unwrap_or_default();
        assert!(process.running, "{} runs", cluster.members[i].name);
        pids.push(process.pid);
    }
    pids
}

fn moved_aside(cluster: &Cluster) -> usize {
    cluster
        .members
        .iter()
        .filter_map(|m| std::fs::read_dir(m.data_dir.parent()?).ok())
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("restore-"))
        .count()
}

/// `args` is refused with `code`, stderr naming `rule`, and nothing
/// changed: the same etcd processes, no data dir moved. Returns stderr.
async fn refused(cluster: &Cluster, args: &[&str], code: i32, rule: &str) -> String {
    let before = pids(cluster).await;
    let output = steward(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
    assert!(stderr.contains(rule), "{args:?} names {rule}: {stderr}");
    assert!(
        !stderr.contains("member_stopped") && !stderr.contains("stop      "),
        "{stderr}"
    );
    assert_eq!(pids(cluster).await, before, "{args:?}: no member was stopped");
    assert_eq!(moved_aside(cluster), 0, "{args:?}: no data dir was touched");
    stderr.into_owned()
}

/// `steward backup --out file`, which must succeed; the file's path.
fn backup_to(agents: &str, file: &Path) -> String {
    let text = file.display().to_string();
    let backup = steward(&["backup", "--agents", agents, "--out", &text]);
    assert_eq!(
        backup.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&backup.stderr)
    );
    text
}

fn with_trailer(content: &[u8]) -> Vec<u8> {
    let mut bytes = content.to_vec();
    bytes.extend_from_slice(&Sha256::digest(content));
    bytes
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write a test file");
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_snapshots_are_refused_before_any_member_stops() {
    let cluster = ClusterBuilder::new(3, newest(3, 4)).start().await;
    let agents = cluster.agents_arg();
    let scratch = tempfile::tempdir().expect("scratch");
    let good = scratch.path().join("good.db");
    let good_text = backup_to(&agents, &good);
    let bytes = std::fs::read(&good).expect("the backup");

    let truncated = write(scratch.path(), "truncated.db", &bytes[..bytes.len() / 2]);
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 3] ^= 0xff;
    let corrupted = write(scratch.path(), "corrupted.db", &flipped);
    let text = write(scratch.path(), "notes.txt", b"not a snapshot at all\n");
    // The right shape and a matching trailer, but no database inside: the
    // agents' bbolt check refuses it.
    let garbage: Vec<u8> = (0..512 * 40)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let no_database = write(scratch.path(), "no-database.db", &with_trailer(&garbage));

    let restore = |file: &str| -> Vec<String> {
        ["restore", "--agents", &agents, "--snapshot", file, "--yes"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    };
    for (file, what) in [
        (&truncated, "not a database plus a 32-byte sha256 trailer"),
        (&corrupted, "the content hashes to"),
        (&text, "not a database plus a 32-byte sha256 trailer"),
        (&no_database, "not an etcd database"),
    ] {
        let args = restore(file);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let stderr = refused(&cluster, &args, 3, "snapshot-verified").await;
        assert!(stderr.contains(what), "{file}: {stderr}");
        // A file that is no intact snapshot is refused for its own reason,
        // though its content is hashed while the agents receive (and
        // refuse) their copies; a database check is the agents' refusal.
        assert_eq!(
            stderr.contains("agent refused the snapshot"),
            file == &no_database,
            "{file}: {stderr}"
        );
    }

    // A snapshot written by a 3.5 cluster (etcd 3.5.30's own `etcdctl
    // snapshot save`), for members that run 3.4.
    let newer = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../proto/testdata/snapshot-3.5.30.db")
        .display()
        .to_string();
    let args = restore(&newer);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let stderr = refused(&cluster, &args, 3, "snapshot-not-newer-than-binary").await;
    assert!(stderr.contains("written by a 3.5 cluster"), "{stderr}");

    // An unknown id, and no confirmation without a terminal: usage errors.
    refused(
        &cluster,
        &[
            "restore",
            "--agents",
            &agents,
            "--snapshot",
            "no-such-snapshot",
            "--yes",
        ],
        3,
        "no agent keeps a snapshot",
    )
    .await;
    refused(
        &cluster,
        &["restore", "--agents", &agents, "--snapshot", &good_text],
        2,
        "--yes",
    )
    .await;
    cluster.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_is_refused_while_another_coordinator_holds_the_lock() {
    let cluster = ClusterBuilder::new(3, newest(3, 4)).start().await;
    let agents = cluster.agents_arg();
    let scratch = tempfile::tempdir().expect("scratch");
    let file = backup_to(&agents, &scratch.path().join("good.db"));

    // Another coordinator: the lock key on a lease it keeps renewing.
    let mut client = cluster.etcd(&[0, 1, 2]).await;
    let lease = client.lease_grant(10, None).await.expect("lease").id();
    let holder = r#"{"host":"elsewhere","pid":1,"command":"upgrade to 3.5.30","since":"2026-11-21T00:00:00Z"}"#;
    client
        .put(
            "/steward/lock",
            holder,
            Some(etcd_client::PutOptions::new().with_lease(lease)),
        )
        .await
        .expect("take the lock");
    let (mut keeper, mut responses) = client.lease_keep_alive(lease).await.expect("keepalive");
    let renewing = tokio::spawn(async move {
        loop {
            if keeper.keep_alive().await.is_err() || responses.message().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    refused(
        &cluster,
        &["restore", "--agents", &agents, "--snapshot", &file, "--yes"],
        3,
        "one-coordinator",
    )
    .await;
    renewing.abort();
    cluster.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_only_an_agent_can_check_is_asked_before_any_member_stops() {
    let cluster = ClusterBuilder::new(3, newest(3, 5))
        .extra_flag("--wal-dir={member_dir}/wal")
        .start()
        .await;
    let agents = cluster.agents_arg();
    let scratch = tempfile::tempdir().expect("scratch");
    let file = backup_to(&agents, &scratch.path().join("good.db"));
    let stderr = refused(
        &cluster,
        &["restore", "--agents", &agents, "--snapshot", &file, "--yes"],
        3,
        "agent-restore-checks",
    )
    .await;
    assert!(stderr.contains("no-separate-wal-dir"), "{stderr}");
    cluster.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_copy_damaged_after_it_was_verified_is_refused_before_any_member_stops() {
    let cluster = ClusterBuilder::new(3, newest(3, 5)).start().await;
    let agents = cluster.agents_arg();
    let scratch = tempfile::tempdir().expect("scratch");
    let file = backup_to(&agents, &scratch.path().join("good.db"));
    // A dry run sends the file to every agent, which verifies and keeps it.
    let dry = steward(&["restore", "--agents", &agents, "--snapshot", &file, "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", String::from_utf8_lossy(&dry.stderr));
    let kept: Vec<_> = std::fs::read_dir(cluster.members[1].state_dir.join("snapshots"))
        .expect("the snapshot dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("file-")))
        .filter(|p| p.extension().is_some_and(|e| e == "db"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    // One byte of member 1's copy changes in place; its size stays.
    let mut bytes = std::fs::read(&kept[0]).expect("the kept copy");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&kept[0], &bytes).expect("damage the kept copy");
    let stderr = refused(
        &cluster,
        &["restore", "--agents", &agents, "--snapshot", &file, "--yes"],
        3,
        "agent-restore-checks",
    )
    .await;
    assert!(stderr.contains(&cluster.members[1].name), "{stderr}");
    assert!(stderr.contains("does not match the trailer"), "{stderr}");
    cluster.cleanup();
}
