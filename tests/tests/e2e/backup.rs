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
    // key count, version and sha256; revision and key count as etcd's own
    // status tool reads them.
    let offline = json(&steward(&["snapshot", "status", &file_text, "-w", "json"]));
    let etcds = etcdutl_status(&file);
    assert_eq!(snapshot["revision"], etcds["revision"], "{etcds:#}");
    assert_eq!(snapshot["total_keys"], etcds["totalKey"], "{etcds:#}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_into_a_directory_are_named_and_rotated() {
    let cluster = ClusterBuilder::new(3, newest(3, 5)).start().await;
    let agents = cluster.agents_arg();
    let mut client = cluster.etcd(&[0, 1, 2]).await;
    let dir = tempfile::tempdir().expect("a backup dir");
    let dir_text = dir.path().display().to_string();
    // Files that are not this cluster's backups stay whatever --keep says.
    std::fs::write(dir.path().join("notes.txt"), b"keep me").expect("a file");
    let other = "othercluster-20261201T000000.000Z-r1.db";
    std::fs::write(dir.path().join(other), b"another cluster's").expect("a file");

    let mut kept = Vec::new();
    for round in 0..4 {
        client.put(format!("rotation/{round}"), "v", None).await.expect("put");
        let taken = json(&steward(&[
            "backup",
            "--agents",
            &agents,
            "--out-dir",
            &dir_text,
            "--keep",
            "2",
            "-w",
            "json",
        ]));
        let path = taken["downloaded_to"].as_str().expect("a copy").to_owned();
        let name = std::path::Path::new(&path)
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a file name")
            .to_owned();
        // <cluster id>-<UTC time>-r<revision>.db
        let revision = taken["snapshot"]["revision"].as_i64().expect("a revision");
        assert!(name.ends_with(&format!("-r{revision}.db")), "{name}");
        assert!(
            name.starts_with(&format!("{:016x}-", cluster_id(&mut client).await)),
            "{name}"
        );
        assert!(steward_agent::snapshot::verify_file(std::path::Path::new(&path)).is_ok());
        let removed = taken["removed"].as_array().expect("removed").len();
        assert_eq!(removed, usize::from(round >= 2), "round {round}: {taken:#}");
        kept.push(name);
    }
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .expect("the dir")
        .map(|e| e.expect("an entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    let mut expected = vec![
        kept[2].clone(),
        kept[3].clone(),
        "notes.txt".to_owned(),
        other.to_owned(),
    ];
    expected.sort();
    assert_eq!(left, expected, "the two newest, and the files that are not its backups");

    // --keep without --out-dir is a usage error.
    let usage = steward(&["backup", "--agents", &agents, "--keep", "2"]);
    assert_eq!(usage.status.code(), Some(2));
}

/// Runs `steward <args>` on a pseudo-terminal (util-linux `script`), as a
/// person at a terminal would; its exit code and everything it showed.
fn on_terminal(args: &str) -> (Option<i32>, String) {
    let command = format!("{} {args}", steward_tests::cluster::steward_binary().display());
    let mut terminal = std::process::Command::new("script");
    terminal.args(["-qec", &command, "/dev/null"]);
    for (name, value) in steward_command().get_envs() {
        match value {
            Some(value) => terminal.env(name, value),
            None => terminal.env_remove(name),
        };
    }
    let output = terminal.output().expect("run steward on a terminal");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// The first JSON document in `text` that starts a line (stderr holds
/// logs too).
fn json_in(text: &str) -> serde_json::Value {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.starts_with('{')
            && let Some(Ok(value)) = serde_json::Deserializer::from_str(&text[offset..])
                .into_iter::<serde_json::Value>()
                .next()
        {
            return value;
        }
        offset += line.len();
    }
    panic!("no JSON document in {text:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_to_standard_output_pipes_a_verified_snapshot() {
    let cluster = ClusterBuilder::new(3, newest(3, 5)).start().await;
    let agents = cluster.agents_arg();
    let mut client = cluster.etcd(&[0, 1, 2]).await;
    for i in 0..50 {
        client.put(format!("piped/{i:02}"), "v", None).await.expect("put");
    }

    // Into a pipe: the snapshot alone on stdout, the report on stderr.
    let piped = steward(&["backup", "--agents", &agents, "--out", "-", "-w", "json"]);
    let stderr = String::from_utf8_lossy(&piped.stderr).into_owned();
    assert_eq!(piped.status.code(), Some(0), "{stderr}");
    let report = json_in(&stderr);
    assert_eq!(report["downloaded_to"], "standard output", "{report:#}");
    let size = report["snapshot"]["size_bytes"].as_u64().expect("a size");
    assert_eq!(piped.stdout.len() as u64, size, "the whole snapshot, nothing else");
    let scratch = tempfile::tempdir().expect("scratch");
    let file = scratch.path().join("piped.db");
    std::fs::write(&file, &piped.stdout).expect("write the piped snapshot");
    steward_agent::snapshot::verify_file(&file).expect("the piped bytes are a whole snapshot");
    let status = json(&steward(&[
        "snapshot",
        "status",
        &file.display().to_string(),
        "-w",
        "json",
    ]));
    assert!(status["total_keys"].as_u64().unwrap_or(0) >= 50, "{status:#}");

    // A failure before any byte: nothing on stdout, the JSON error object on
    // stderr with the report's place.
    let failed = steward(&[
        "backup", "--agents", &agents, "--out", "-", "--member", "nosuch", "-w", "json",
    ]);
    assert_eq!(
        failed.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&failed.stderr)
    );
    assert!(failed.stdout.is_empty(), "no bytes on stdout");
    let error = json_in(&String::from_utf8_lossy(&failed.stderr));
    assert_eq!(error["error"]["exit_code"], 2, "{error:#}");

    // On a terminal: refused before anything is taken.
    let (code, text) = on_terminal(&format!("backup --agents {agents} --out -"));
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("standard output is a terminal"), "{text}");

    // A copy to a file on a terminal shows its bytes and rate as they go.
    let copy = scratch.path().join("progress.db");
    let (code, text) = on_terminal(&format!("backup --agents {agents} --out {}", copy.display()));
    assert_eq!(code, Some(0), "{text}");
    let progress = text
        .split(['\r', '\n'])
        .find(|line| line.contains("snapshot through ") && line.contains("B/s"))
        .unwrap_or_else(|| panic!("no progress line in {text:?}"));
    assert!(
        progress.contains(" KiB") || progress.contains(" MiB") || progress.contains(" B "),
        "{progress}"
    );
    // And without a terminal, none.
    let plain = steward(&[
        "backup",
        "--agents",
        &agents,
        "--out",
        &scratch.path().join("plain.db").display().to_string(),
    ]);
    assert_eq!(plain.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&plain.stderr).contains("B/s"));
    cluster.cleanup();
}

/// `etcdutl snapshot status -w json` of `file`.
fn etcdutl_status(file: &std::path::Path) -> serde_json::Value {
    let etcdutl = newest(3, 5).etcdutl().expect("etcdutl");
    let output = std::process::Command::new(etcdutl)
        .args(["snapshot", "status", "-w", "json"])
        .arg(file)
        .output()
        .expect("run etcdutl");
    json(&output)
}

/// Values larger than any page the agent reads at once (etcd takes them
/// with a larger --max-request-bytes): the backup and the offline status
/// count them without reading them, as etcd's own tool does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_of_values_larger_than_a_page_read_are_summarised() {
    let cluster = ClusterBuilder::new(3, newest(3, 5))
        .extra_flag("--max-request-bytes=33554432")
        .start()
        .await;
    let agents = cluster.agents_arg();
    let mut client = cluster.etcd(&[0, 1, 2]).await;
    // Enough keys that the key bucket has pages of its own, then a value
    // of 20 MiB.
    for i in 0..300 {
        client
            .put(format!("large/{i:03}"), vec![b'x'; 512], None)
            .await
            .expect("put");
    }
    let put = client
        .put("large/value", vec![0x5a_u8; 20 << 20], None)
        .await
        .expect("a put of 20 MiB");
    let revision = put.header().map_or(0, etcd_client::ResponseHeader::revision);
    let scratch = tempfile::tempdir().expect("scratch");
    let file = scratch.path().join("large.db");
    let file_text = file.display().to_string();
    let taken = json(&steward(&[
        "backup", "--agents", &agents, "--out", &file_text, "-w", "json",
    ]));
    let snapshot = &taken["snapshot"];
    let etcds = etcdutl_status(&file);
    assert_eq!(snapshot["revision"].as_i64(), Some(revision), "{taken:#}");
    assert_eq!(snapshot["revision"], etcds["revision"], "{etcds:#}");
    assert_eq!(snapshot["total_keys"], etcds["totalKey"], "{etcds:#}");
    let offline = json(&steward(&["snapshot", "status", &file_text, "-w", "json"]));
    assert_eq!(offline["revision"], etcds["revision"], "{offline:#}");
    assert_eq!(offline["total_keys"], etcds["totalKey"], "{offline:#}");
    assert_eq!(offline["cluster_version"], "3.5.0", "{offline:#}");
    cluster.cleanup();
}

async fn cluster_id(client: &mut etcd_client::Client) -> u64 {
    client
        .member_list()
        .await
        .expect("member list")
        .header()
        .map_or(0, etcd_client::ResponseHeader::cluster_id)
}
