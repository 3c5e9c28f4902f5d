//! `steward local up|down` as an operator runs them: the real `steward`
//! binary starts a 3-member etcd 3.4 cluster under real agents that keep
//! running after it exits, the cluster description it writes is usable, and
//! `steward local down` stops everything and keeps the files, twice in a
//! row. Refusals (a used directory, a missing version) start nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use steward_coordinator::engine::cluster::file::ClusterFile;
use steward_coordinator::engine::connect::Connector;
use steward_coordinator::engine::connect::agent;
use steward_coordinator::local::process::{Liveness, ProcessId, mentioning};
use steward_proto::v1 as pb;
use steward_proto::v1::agent_client::AgentClient;
use steward_tests::binaries::binaries_dir;
use steward_tests::cluster::{agent_binary, kill_processes_mentioning, steward_binary};
use steward_tests::newest;

/// A scratch dir whose processes are killed however the test ends (a
/// panicking test included), so no agent or etcd outlives it.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("steward-local-test-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
        Self { dir }
    }

    /// The canonical path (what `steward local up` writes into configs).
    fn path(&self) -> PathBuf {
        std::fs::canonicalize(self.dir.path()).unwrap_or_else(|e| panic!("cannot resolve the temp dir: {e}"))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        kill_processes_mentioning(self.dir.path());
    }
}

/// Runs the real `steward` with `args`, using the agent binary under test.
fn steward(args: &[&str]) -> Output {
    Command::new(steward_binary())
        .args(args)
        .env("STEWARD_AGENT_BIN", agent_binary())
        .env_remove("RUST_LOG")
        .env_remove("STEWARD_AGENT")
        .output()
        .unwrap_or_else(|e| panic!("cannot run steward: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr)
    )
}

fn logs_hint(dir: &Path) -> String {
    format!(
        "agent logs in {}/m*/agent.log, etcd logs in {}/m*/state/logs/etcd.log",
        dir.display(),
        dir.display()
    )
}

/// GetStatus as `steward` makes it: over mutual TLS with the identity the
/// cluster file names.
async fn status(connector: &Connector, agent: &str) -> pb::GetStatusResponse {
    let address = agent.parse().unwrap_or_else(|e| panic!("{agent}: {e}"));
    let mut clients = agent::connect(connector, &address)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the agent at {agent}: {e}"));
    clients
        .agent
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap_or_else(|s| panic!("GetStatus on {agent}: {s}"))
        .into_inner()
}

#[tokio::test]
async fn up_runs_in_the_background_and_down_stops_everything_twice() {
    let release = newest(3, 4);
    let scratch = Scratch::new();
    let dir = scratch.path().join("cluster");
    let dir_text = dir.display().to_string();
    let binaries = binaries_dir().display().to_string();

    let up = steward(&[
        "local",
        "up",
        "--dir",
        &dir_text,
        "--members",
        "3",
        "--version",
        "3.4",
        "--binaries",
        &binaries,
        "-w",
        "json",
    ]);
    // `output()` returned: the steward process has exited.
    assert_eq!(up.status.code(), Some(0), "{}; {}", describe(&up), logs_hint(&dir));
    let report: serde_json::Value =
        serde_json::from_slice(&up.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(&up)));
    assert_eq!(report["version"], release.version.to_string());
    assert_eq!(report["members"].as_array().map(Vec::len), Some(3), "{report:#}");
    assert!(report["leader"].is_string(), "{report:#}");

    // The cluster description loads with the library's own rules.
    let cluster = ClusterFile::load(&dir.join("cluster.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cluster.members.len(), 3);
    let local = cluster.local.as_ref().expect("a [local] table");
    assert_eq!(local.dir, dir);

    // The agents serve mutual TLS with the cluster's own CA; plaintext gets
    // no answer, the cluster file's identity does.
    let identity = cluster.agent_tls.clone().expect("an [agent_tls] table");
    let plain = AgentClient::connect(format!("http://{}", cluster.members[0].agent)).await;
    if let Ok(mut plain) = plain {
        assert!(plain.get_status(pb::GetStatusRequest {}).await.is_err());
    }
    let connector = Connector::default()
        .with_agent_tls(Some(&identity.relative_to(&dir)))
        .unwrap_or_else(|e| panic!("{e}"));

    // Every agent answers for its member, which is reachable and runs 3.4.
    let mut etcd_pids = Vec::new();
    for member in &cluster.members {
        let status = status(&connector, &member.agent.to_string()).await;
        let agent = status.agent.unwrap_or_default();
        assert_eq!(agent.member_name, member.name);
        let reported = status.member.unwrap_or_default();
        assert!(reported.reachable, "{}: {}", member.name, reported.error);
        assert_eq!(reported.version, release.version.to_string());
        let process = status.process.unwrap_or_default();
        assert!(process.running);
        etcd_pids.push(ProcessId::of(process.pid).expect("etcd is running"));
    }

    // The agents outlived steward, and etcd takes writes.
    let records: toml::Table = toml::from_str(&std::fs::read_to_string(dir.join("local-processes.toml")).unwrap())
        .unwrap_or_else(|e| panic!("{e}"));
    let agent_pids: Vec<ProcessId> = records["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .map(|a| ProcessId {
            pid: u32::try_from(a["pid"].as_integer().expect("pid")).expect("pid fits"),
            start_ticks: u64::try_from(a["start_ticks"].as_integer().expect("start_ticks")).expect("ticks fit"),
        })
        .collect();
    assert_eq!(agent_pids.len(), 3);
    for id in &agent_pids {
        assert_eq!(id.liveness(), Liveness::Alive, "agent {id:?}");
    }
    let client_url = cluster.members[1].client_url.clone().expect("a client URL");
    let options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(5));
    let mut etcd = etcd_client::Client::connect([client_url.as_str()], Some(options))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {client_url}: {e}"));
    etcd.put("local/hello", "world", None)
        .await
        .unwrap_or_else(|e| panic!("put through {client_url}: {e}; {}", logs_hint(&dir)));

    // The agent commands work against it.
    let agent0 = cluster.members[0].agent.to_string();
    let plain = steward(&["agent", "status", "--agent", &agent0]);
    assert_eq!(plain.status.code(), Some(1), "{}", describe(&plain));
    assert!(text(&plain.stderr).contains("--agent-cacert"), "{}", describe(&plain));
    let files = identity.relative_to(&dir);
    let agent_status = steward(&[
        "agent",
        "status",
        "--agent",
        &agent0,
        "--agent-cacert",
        &files.cacert.display().to_string(),
        "--agent-cert",
        &files.cert.display().to_string(),
        "--agent-key",
        &files.key.display().to_string(),
    ]);
    assert_eq!(agent_status.status.code(), Some(0), "{}", describe(&agent_status));
    assert!(
        text(&agent_status.stdout).contains("| member name          | m0"),
        "{}",
        describe(&agent_status)
    );

    let down = steward(&["local", "down", "--dir", &dir_text, "-w", "json"]);
    assert_eq!(down.status.code(), Some(0), "{}", describe(&down));
    let report: serde_json::Value = serde_json::from_slice(&down.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report["was_running"], true, "{report:#}");
    for member in report["members"].as_array().expect("members") {
        assert_eq!(member["etcd"], "stopped", "etcd stopped through its agent: {report:#}");
        assert_eq!(member["agent_process"], "terminated", "{report:#}");
    }
    assert_eq!(report["files"], "kept");
    assert!(mentioning(&dir).is_empty(), "left running: {:?}", mentioning(&dir));
    for id in agent_pids.iter().chain(&etcd_pids) {
        assert_ne!(id.liveness(), Liveness::Alive, "{id:?} survived");
    }
    for kept in [
        "cluster.toml",
        "local-processes.toml",
        "m0/agent.log",
        "m0/agent.toml",
        "m2/data",
    ] {
        assert!(dir.join(kept).exists(), "{kept} was not kept");
    }

    let again = steward(&["local", "down", "--dir", &dir_text]);
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    let table = text(&again.stdout);
    assert!(table.contains("nothing was running (already down)"), "{table}");
    assert!(dir.join("cluster.toml").exists());
}
#[test]
fn up_refuses_a_used_directory_and_starts_nothing() {
    let scratch = Scratch::new();
    let dir = scratch.path();
    std::fs::write(dir.join("notes.txt"), b"mine").unwrap();
    let dir_text = dir.display().to_string();
    let output = steward(&["local", "up", "--dir", &dir_text, "--version", "3.4"]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!("{dir_text} exists and is not empty")),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["notes.txt"], "nothing was written");
    assert!(mentioning(&dir).is_empty());
}

#[test]
fn up_with_a_missing_version_names_the_binaries_dir() {
    let scratch = Scratch::new();
    let dir = scratch.path().join("cluster");
    let binaries = binaries_dir().display().to_string();
    let output = steward(&[
        "local",
        "up",
        "--dir",
        &dir.display().to_string(),
        "--version",
        "9.9",
        "--binaries",
        &binaries,
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = text(&output.stderr);
    assert!(stderr.contains(&format!("no etcd 9.9 in {binaries}")), "{stderr}");
    assert!(stderr.contains("scripts/setup-etcd"), "{stderr}");
    assert!(!dir.exists(), "nothing was created");
}

#[tokio::test]
async fn up_with_etcd_tls_builds_a_cluster_steward_reaches_over_tls() {
    let scratch = Scratch::new();
    let dir = scratch.path().join("cluster");
    let dir_text = dir.display().to_string();
    let binaries = binaries_dir().display().to_string();
    let up = steward(&[
        "local",
        "up",
        "--dir",
        &dir_text,
        "--members",
        "1",
        "--version",
        "3.5",
        "--binaries",
        &binaries,
        "--etcd-tls",
    ]);
    assert_eq!(up.status.code(), Some(0), "{}; {}", describe(&up), logs_hint(&dir));
    let cluster = ClusterFile::load(&dir.join("cluster.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(cluster.etcd.cacert.is_some(), "an [etcd] table with the CA");
    let cluster_file = dir.join("cluster.toml").display().to_string();
    let status = steward(&["status", "--cluster", &cluster_file, "-w", "json"]);
    assert_eq!(status.status.code(), Some(0), "{}", describe(&status));
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap_or_else(|e| panic!("{e}"));
    let endpoint = report["members"][0]["endpoint"].as_str().unwrap_or_default().to_owned();
    assert!(endpoint.starts_with("https://"), "{report:#}");
    // etcd refuses a client without a certificate.
    let plain = etcd_client::Client::connect(
        [endpoint.as_str()],
        Some(etcd_client::ConnectOptions::new().with_timeout(Duration::from_secs(2))),
    )
    .await;
    if let Ok(mut plain) = plain {
        assert!(plain.get("x", None).await.is_err());
    }
    let down = steward(&["local", "down", "--dir", &dir_text]);
    assert_eq!(down.status.code(), Some(0), "{}", describe(&down));
    assert!(mentioning(&dir).is_empty(), "left running: {:?}", mentioning(&dir));
}
