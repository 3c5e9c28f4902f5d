//! `steward restore` on real clusters: a snapshot taken by an agent
//! restored on 3.4 (etcdctl restores it), a snapshot file restored on 3.5
//! (etcdutl restores it). The keys from before the snapshot come back with
//! their values, the later ones are gone, the cluster is healthy with new
//! member ids, every old data dir is kept, and the restored cluster keeps
//! working with steward (a write, a backup, the lock). A file the agents
//! can read on their own hosts (in an import dir) is read there instead of
//! being streamed to them.

use std::path::PathBuf;
use std::process::Output;

use steward_proto::v1 as pb;
use steward_tests::cluster::steward_command;
use steward_tests::{Cluster, ClusterBuilder, newest};

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
    // With -w json the report is the whole of stdout.
    serde_json::from_slice(&output.stdout).expect("JSON")
}

/// Writes `count` keys under `prefix`; returns the last revision.
async fn write(client: &mut etcd_client::Client, prefix: &str, count: usize, value: &str) -> i64 {
    let mut revision = 0;
    for i in 0..count {
        let put = client
            .put(format!("{prefix}/{i:03}"), format!("{value}-{i}"), None)
            .await
            .expect("put");
        revision = put.header().map_or(0, etcd_client::ResponseHeader::revision);
    }
    revision
}

async fn values(client: &mut etcd_client::Client, prefix: &str) -> Vec<(String, String)> {
    let answer = client
        .get(prefix, Some(etcd_client::GetOptions::new().with_prefix()))
        .await
        .expect("get");
    answer
        .kvs()
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).into_owned(),
                String::from_utf8_lossy(kv.value()).into_owned(),
            )
        })
        .collect()
}

async fn member_ids(cluster: &Cluster) -> Vec<u64> {
    let mut ids = Vec::new();
    for i in 0..cluster.members.len() {
        ids.push(cluster.status(i).await.member.unwrap_or_default().member_id);
    }
    ids
}

/// What every restore must leave: the data from before the snapshot, none
/// from after, three healthy members with new ids, the old data dirs kept
/// beside the new ones, and every agent's restore finished.
async fn assert_restored(cluster: &Cluster, report: &serde_json::Value, ids_before: &[u64]) {
    assert_eq!(report["result"], "succeeded", "{report:#}");
    cluster.wait_ready(std::time::Duration::from_secs(30)).await;
    let mut client = cluster.etcd(&[0, 1, 2]).await;
    let before = values(&mut client, "before/").await;
    assert_eq!(before.len(), 50, "every key from before the snapshot");
    for (key, value) in &before {
        let i = key.trim_start_matches("before/");
        assert_eq!(
            *value,
            format!("v1-{}", i.trim_start_matches('0').parse::<u32>().unwrap_or(0)),
            "{key}"
        );
    }
    assert!(
        values(&mut client, "after/").await.is_empty(),
        "no key from after the snapshot"
    );

    let ids_after = member_ids(cluster).await;
    for (old, new) in ids_before.iter().zip(&ids_after) {
        assert_ne!(old, new, "a restored cluster has new member ids");
    }
    let members = report["members"].as_array().expect("members");
    assert_eq!(members.len(), 3, "{report:#}");
    for (i, member) in cluster.members.iter().enumerate() {
        let status = cluster.status(i).await;
        let restore = status.restore.expect("the agent reports the restore");
        assert_eq!(restore.restore_id, report["restore_id"].as_str().unwrap_or_default());
        assert_eq!(restore.phase, i32::from(pb::RestorePhase::Finished));
        let aside = PathBuf::from(&restore.moved_aside_to);
        assert!(
            aside.join("snap/db").is_file() && aside.starts_with(&member.data_dir),
            "{}'s old member dir is kept inside its data dir, at {}",
            member.name,
            aside.display()
        );
        assert!(member.data_dir.join("member/snap/db").is_file());
        let reported = members
            .iter()
            .find(|m| m["name"] == member.name.as_str())
            .expect("the member in the report");
        assert_eq!(reported["moved_aside_to"], restore.moved_aside_to.as_str());
        assert_eq!(
            reported["id"].as_str(),
            Some(format!("{:016x}", ids_after[i]).as_str()),
            "the report names the new id"
        );
        // `steward agent status` shows it too.
        let shown = json(&steward(&[
            "agent",
            "status",
            "--agent",
            &member.agent_addr,
            "-w",
            "json",
        ]));
        assert_eq!(shown["restore"]["phase"], "finished", "{shown:#}");
        assert_eq!(shown["restore"]["moved_aside_to"], restore.moved_aside_to.as_str());
        // The command line says what the data dir holds: the restored
        // cluster's token.
        let args = status.process.unwrap_or_default().args.join(" ");
        assert!(args.contains(&restore.initial_cluster_token), "{args}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_snapshot_is_restored_on_3_4_with_etcdctl() {
    let cluster = ClusterBuilder::new(3, newest(3, 4)).start().await;
    let agents = cluster.agents_arg();
    let mut client = cluster.etcd(&[0, 1, 2]).await;
    write(&mut client, "before", 50, "v1").await;
    let ids_before = member_ids(&cluster).await;

    let taken = json(&steward(&["backup", "--agents", &agents, "-w", "json"]));
    let id = taken["snapshot"]["id"].as_str().expect("snapshot id").to_owned();
    let snapshot_revision = taken["snapshot"]["revision"].as_i64().expect("revision");
    // Later writes: new keys, and new values for the old ones.
    write(&mut client, "after", 20, "v2").await;
    let last = write(&mut client, "before", 50, "v2").await;

    let report = json(&steward(&[
        "restore",
        "--agents",
        &agents,
        "--snapshot",
        &id,
        "--yes",
        "-w",
        "json",
    ]));
    assert_eq!(report["snapshot"]["id"], id.as_str());
    assert_eq!(report["snapshot"]["db_cluster_version"], "3.4.0");
    assert_eq!(report["revision_before"].as_i64(), Some(last));
    assert_eq!(report["revisions_lost"].as_i64(), Some(last - snapshot_revision));
    assert!(
        report["revision"].as_i64().unwrap_or(0) >= snapshot_revision,
        "{report:#}"
    );
    assert_restored(&cluster, &report, &ids_before).await;
    for i in 0..3 {
        let status = cluster.status(i).await;
        assert_eq!(
            status.versions.unwrap_or_default().active,
            newest(3, 4).version.to_string()
        );
    }

    // The restored cluster keeps working: writes, and steward's own
    // snapshot through the lock-free path.
    let mut client = cluster.etcd(&[0, 1, 2]).await;
    client.put("after-restore", "yes", None).await.expect("a write");
    json(&steward(&["backup", "--agents", &agents, "-w", "json"]));
    cluster.cleanup();
}

/// A 3.5 cluster with keys `before/*`, backed up with `backup --out` to
/// `cluster.db` in the dir `place` names, then changed (new `after/*`
/// keys, new values for `before/*`). Returns the cluster, its agents, the
/// member ids and the file's path.
async fn backed_up_to_file(place: impl FnOnce(&Cluster) -> PathBuf) -> (Cluster, String, Vec<u64>, String) {
    let cluster = ClusterBuilder::new(3, newest(3, 5)).start().await;
    let agents = cluster.agents_arg();
    let mut client = cluster.etcd(&[0, 1, 2]).await;
    write(&mut client, "before", 50, "v1").await;
    let ids_before = member_ids(&cluster).await;
    let dir = place(&cluster);
    std::fs::create_dir_all(&dir).expect("the file's dir");
    let file_text = dir.join("cluster.db").display().to_string();
    json(&steward(&[
        "backup", "--agents", &agents, "--out", &file_text, "-w", "json",
    ]));
    write(&mut client, "after", 20, "v2").await;
    write(&mut client, "before", 50, "v2").await;
    (cluster, agents, ids_before, file_text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_file_is_restored_on_3_5_with_etcdutl() {
    let scratch = tempfile::tempdir().expect("scratch");
    let (cluster, agents, ids_before, file_text) = backed_up_to_file(|_| scratch.path().to_owned()).await;

    // A dry run: every check, no question (stdin is no terminal and there
    // is no --yes), and nothing stopped or lost.
    let dry = json(&steward(&[
        "restore",
        "--agents",
        &agents,
        "--snapshot",
        &file_text,
        "--dry-run",
        "-w",
        "json",
    ]));
    assert_eq!(dry["dry_run"], true, "{dry:#}");
    assert_eq!(dry["result"], "succeeded", "{dry:#}");
    let question = dry["would_ask"]
        .as_str()
        .unwrap_or_else(|| panic!("would_ask: {dry:#}"));
    assert!(question.contains("revision"), "{question}");
    let checks = dry["checks"].as_array().expect("checks");
    assert!(checks.iter().all(|c| c["verdict"] != "fail"), "{dry:#}");
    for rule in ["snapshot-verified", "agent-restore-checks", "restore-tool-staged"] {
        assert!(checks.iter().any(|c| c["rule"] == rule), "{rule}: {dry:#}");
    }
    assert_eq!(member_ids(&cluster).await, ids_before, "no member was replaced");
    let mut client = cluster.etcd(&[0, 1, 2]).await;
    assert_eq!(
        values(&mut client, "after").await.len(),
        20,
        "the writes after the snapshot are still there"
    );
    for i in 0..3 {
        assert!(cluster.status(i).await.restore.is_none(), "m{i} recorded no restore");
    }

    let report = json(&steward(&[
        "restore",
        "--agents",
        &agents,
        "--snapshot",
        &file_text,
        "--yes",
        "-w",
        "json",
    ]));
    assert_eq!(report["snapshot"]["db_cluster_version"], "3.5.0");
    assert_restored(&cluster, &report, &ids_before).await;
    // Where the time went: every phase, within the whole.
    let phase = |name: &str| {
        report["phases"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("phases.{name}: {report:#}"))
    };
    let names = [
        "decide_ms",
        "send_ms",
        "dry_run_ms",
        "replace_ms",
        "start_ms",
        "wait_ms",
    ];
    let sum: u64 = names.iter().map(|name| phase(name)).sum();
    assert!(phase("replace_ms") > 0 && phase("wait_ms") > 0, "{report:#}");
    assert!(sum <= report["took_ms"].as_u64().unwrap_or(0), "{report:#}");
    // The file went to every agent, which verified and kept it.
    let id = report["snapshot"]["id"].as_str().expect("id");
    for i in 0..3 {
        let listed = cluster.snapshot_list(i).await;
        let kept = listed.iter().find(|s| s.id == id).expect("uploaded");
        assert!(kept.uploaded);
        assert_eq!(kept.db_cluster_version, "3.5.0");
    }
    // The file lies outside the agents' import dirs: each refused to read
    // it there, and got it streamed instead.
    for member in &cluster.members {
        let audit = std::fs::read_to_string(member.state_dir.join("audit.log")).expect("audit log");
        let entries: Vec<serde_json::Value> = audit
            .lines()
            .map(|l| serde_json::from_str(l).expect("an audit line"))
            .collect();
        let import = entries
            .iter()
            .find(|e| e["rpc"] == "ImportSnapshot")
            .unwrap_or_else(|| panic!("no ImportSnapshot in {audit}"));
        let outcome = import["outcome"].as_str().unwrap_or_default();
        assert!(
            outcome.starts_with("FailedPrecondition") && outcome.contains("outside the import dirs"),
            "{outcome}"
        );
        assert!(
            entries
                .iter()
                .any(|e| e["rpc"] == "UploadSnapshot" && e["outcome"] == "ok"),
            "{audit}"
        );
    }

    // A second restore of the same file: a new restore id, and the first
    // restore's data dirs are kept too.
    let again = json(&steward(&[
        "restore",
        "--agents",
        &agents,
        "--snapshot",
        &file_text,
        "--yes",
        "-w",
        "json",
    ]));
    assert_ne!(again["restore_id"], report["restore_id"]);
    let kept = std::fs::read_dir(&cluster.members[0].data_dir)
        .expect("read the data dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".before-restore-"))
        .count();
    assert_eq!(kept, 2, "both replaced member dirs are kept inside the data dir");
    cluster.cleanup();
}

/// `steward restore --snapshot FILE --yes --events`: its output, and
/// its events (the report last).
fn restore_with_events(agents: &str, file_text: &str) -> (String, Vec<serde_json::Value>) {
    let output = steward(&[
        "restore",
        "--agents",
        agents,
        "--snapshot",
        file_text,
        "--yes",
        "--events",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let lines = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("NDJSON"))
        .collect();
    (stdout, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_file_in_the_agents_import_dir_is_read_there() {
    // Every agent of the test cluster may import from this dir; the
    // coordinator names the file by the same path.
    let (cluster, agents, ids_before, file_text) = backed_up_to_file(Cluster::import_dir).await;

    let (stdout, lines) = restore_with_events(&agents, &file_text);
    let sent: Vec<&serde_json::Value> = lines.iter().filter(|l| l["event"] == "snapshot_sent").collect();
    assert_eq!(sent.len(), 3, "{stdout}");
    for line in &sent {
        assert_eq!(line["method"], "imported", "{line}");
        assert_eq!(line["already_present"], false, "{line}");
    }
    let report = lines.last().expect("the report");
    assert_restored(&cluster, report, &ids_before).await;
    // Each agent recorded the import, with the path it read.
    for member in &cluster.members {
        let audit = std::fs::read_to_string(member.state_dir.join("audit.log")).expect("audit log");
        let imports: Vec<&str> = audit.lines().filter(|l| l.contains("\"ImportSnapshot\"")).collect();
        assert_eq!(imports.len(), 1, "{audit}");
        assert!(imports[0].contains(&file_text), "{}", imports[0]);
    }
    cluster.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_cannot_import_the_file_is_sent_it_while_the_others_import_it() {
    let (mut cluster, agents, ids_before, file_text) = backed_up_to_file(Cluster::import_dir).await;
    // Member 1's agent no longer imports from that dir.
    let config_path = cluster.members[1].config_path.clone();
    let config = std::fs::read_to_string(&config_path).expect("the agent's config");
    let import = format!(", \"{}\"", cluster.import_dir().display());
    assert!(config.contains(&import), "{config}");
    std::fs::write(&config_path, config.replace(&import, "")).expect("rewrite the agent's config");
    cluster.kill_agent(1);
    cluster.start_agent(1);
    cluster.status(1).await;

    let (stdout, lines) = restore_with_events(&agents, &file_text);
    let mut methods: Vec<(String, String)> = lines
        .iter()
        .filter(|l| l["event"] == "snapshot_sent")
        .map(|l| {
            (
                l["member"].as_str().unwrap_or("").to_owned(),
                l["method"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    methods.sort();
    let names: Vec<&str> = cluster.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        methods,
        [
            (names[0].to_owned(), "imported".to_owned()),
            (names[1].to_owned(), "uploaded".to_owned()),
            (names[2].to_owned(), "imported".to_owned()),
        ],
        "{stdout}"
    );
    let report = lines.last().expect("the report");
    assert_restored(&cluster, report, &ids_before).await;
    cluster.cleanup();
}
