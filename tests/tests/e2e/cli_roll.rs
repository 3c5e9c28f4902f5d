//! The rolling upgrade as an operator runs it: `steward local up`, `steward
//! status`, `steward plan` (a refused target exits 3, names its rule and
//! changes nothing), `steward upgrade -w json`, `steward local down`, all
//! through the real binaries.

use std::path::Path;
use std::process::{Command, Output};

use steward_tests::cluster::{kill_processes_mentioning, steward_binary};
use steward_tests::newest;

fn steward(args: &[&str]) -> Output {
    Command::new(steward_binary()).args(args).output().expect("run steward")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Kills whatever the test started, even when it panics.
struct Cleanup<'a>(&'a Path);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        kill_processes_mentioning(self.0);
    }
}

fn endpoints(cluster: &str) -> Vec<String> {
    let out = steward(&["status", "--cluster", cluster, "-w", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    json["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["endpoint"].as_str().map(str::to_owned))
        .collect()
}

fn member_versions(cluster: &str) -> Vec<String> {
    let out = steward(&["status", "--cluster", cluster, "-w", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    json["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["version"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn operator_upgrades_a_local_cluster_from_3_4_to_3_5() {
    let old = newest(3, 4);
    let new = newest(3, 5);
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster_dir = dir.path().join("cluster");
    let _cleanup = Cleanup(dir.path());
    let cluster_dir_str = cluster_dir.to_str().expect("utf-8 path");
    let cluster = cluster_dir.join("cluster.toml");
    let cluster = cluster.to_str().expect("utf-8 path");

    let up = steward(&[
        "local",
        "up",
        "--dir",
        cluster_dir_str,
        "--members",
        "3",
        "--version",
        &old.version.to_string(),
    ]);
    assert!(up.status.success(), "local up: {}", text(&up.stderr));

    let status = steward(&["status", "--cluster", cluster]);
    assert_eq!(status.status.code(), Some(0), "{}", text(&status.stderr));
    assert_eq!(member_versions(cluster), vec![old.version.to_string(); 3]);

    // 3.5.1 is refused by its rule, with exit code 3, and nothing changes.
    let refused = steward(&["plan", "--cluster", cluster, "--to", "3.5.1"]);
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused.stderr));
    assert!(
        text(&refused.stderr).contains("no-3.5.0-3.5.2"),
        "{}",
        text(&refused.stderr)
    );
    let refused = steward(&["upgrade", "--cluster", cluster, "--to", "3.5.1", "-w", "json"]);
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused.stderr));
    let report: serde_json::Value = serde_json::from_slice(&refused.stdout).expect("report JSON");
    assert_eq!(report["result"], "refused");
    assert!(
        report["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .any(|c| c["rule"] == "no-3.5.0-3.5.2" && c["verdict"] == "fail")
    );
    assert_eq!(
        member_versions(cluster),
        vec![old.version.to_string(); 3],
        "nothing changed"
    );

    // The plan for the real target shows one pass, the leader last.
    let plan = steward(&[
        "plan",
        "--cluster",
        cluster,
        "--to",
        &new.version.to_string(),
        "-w",
        "json",
    ]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("plan JSON");
    let order = plan["passes"][0]["order"].as_array().expect("order");
    assert_eq!(order.len(), 3);
    assert_eq!(order[2]["leader"], true, "the leader goes last");

    let upgrade = steward(&[
        "upgrade",
        "--cluster",
        cluster,
        "--to",
        &new.version.to_string(),
        "--probe",
        "-w",
        "json",
    ]);
    assert_eq!(upgrade.status.code(), Some(0), "{}", text(&upgrade.stderr));
    let report: serde_json::Value = serde_json::from_slice(&upgrade.stdout).expect("report JSON");
    assert_eq!(report["result"], "succeeded");
    assert_eq!(report["cluster_version"], "3.5.0");
    // The header every report carries.
    assert_eq!(report["schema"], "steward.report/v1");
    let name = std::path::Path::new(cluster_dir_str)
        .file_name()
        .and_then(|n| n.to_str())
        .expect("the cluster dir's name");
    assert_eq!(report["cluster"], name, "{report}");
    assert!(
        report["cluster_id"].as_str().is_some_and(|id| id.len() == 16),
        "{report}"
    );
    assert!(
        report["started_at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{report}"
    );
    assert_eq!(report["steward_version"], env!("CARGO_PKG_VERSION"));
    assert!(report["fencing_token"].as_i64().is_some_and(|t| t > 0), "{report}");
    assert!(report["run"].as_str().is_some_and(|r| !r.is_empty()), "{report}");
    assert!(report["snapshot"]["sha256"].as_str().is_some_and(|s| s.len() == 64));
    assert!(
        text(&upgrade.stderr).contains("leader    moved"),
        "{}",
        text(&upgrade.stderr)
    );
    assert_eq!(member_versions(cluster), vec![new.version.to_string(); 3]);

    // The probe saw every member's step and cleaned up after itself.
    let probe = &report["probe"];
    assert!(probe["writes"].as_u64().is_some_and(|w| w > 20), "{probe}");
    let steps: Vec<&str> = probe["steps"]
        .as_array()
        .expect("probe steps")
        .iter()
        .filter_map(|s| s["step"].as_str())
        .collect();
    for name in ["m0", "m1", "m2"] {
        assert!(steps.contains(&name), "{steps:?}");
    }
    assert!(probe["longest_stall_ms"].as_u64().is_some(), "{probe}");
    eprintln!(
        "probe: {} writes, {} failed attempts, longest stall {} ms",
        probe["writes"], probe["failed"], probe["longest_stall_ms"]
    );
    let endpoints = endpoints(cluster);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let left = runtime.block_on(async {
        let mut client = etcd_client::Client::connect(&endpoints, None).await.expect("connect");
        client
            .get(
                "/steward/probe/",
                Some(etcd_client::GetOptions::new().with_prefix().with_count_only()),
            )
            .await
            .expect("read probe keys")
            .count()
    });
    assert_eq!(left, 0, "the probe keys are removed");

    // Running it again is a no-op that succeeds; with --events every line
    // names its time, schema, run and cluster, and the report ends it.
    let again = steward(&[
        "upgrade",
        "--cluster",
        cluster,
        "--to",
        &new.version.to_string(),
        "--events",
    ]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    let lines: Vec<serde_json::Value> = text(&again.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("an NDJSON line"))
        .collect();
    let (last, events) = lines.split_last().expect("events and the report");
    assert!(!events.is_empty());
    for event in events {
        assert_eq!(event["schema"], "steward.event/v1", "{event}");
        assert_eq!(event["cluster"], name, "{event}");
        assert_eq!(event["run"], last["run"], "{event}");
        assert!(event["ts"].as_str().is_some_and(|t| t.ends_with('Z')), "{event}");
        assert!(event["event"].is_string(), "{event}");
    }
    assert_eq!(last["schema"], "steward.report/v1");
    assert_eq!(last["result"], "succeeded");

    let down = steward(&["local", "down", "--dir", cluster_dir_str]);
    assert!(down.status.success(), "local down: {}", text(&down.stderr));
}
