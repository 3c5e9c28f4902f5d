//! `steward fleet` over four real 3-member clusters: the canary goes first
//! and alone, then two at a time; a cluster whose target binary fails is
//! reverted by its agents and stops the fleet (the cluster not started
//! stays untouched and the summary says which is which); after the fix, a
//! rerun finishes only what was left.

use steward_tests::fake::fails_where_marked;
use steward_tests::fleet::{steward_by_cluster_files as steward, write_cluster_file, write_inventory};
use steward_tests::{Cluster, ClusterBuilder, newest};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn versions(cluster: &Cluster) -> Vec<String> {
    let mut versions = Vec::new();
    for i in 0..cluster.members.len() {
        versions.push(cluster.status(i).await.member.unwrap_or_default().version);
    }
    versions
}

/// The fleet report's line for `name`.
fn cluster<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["clusters"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("{name} is not in the report: {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_first_a_failure_stops_the_fleet_and_a_rerun_finishes_the_rest() {
    let old = newest(3, 4);
    let new = newest(3, 5);
    let mut clusters = Vec::new();
    for _ in 0..4 {
        clusters.push(ClusterBuilder::new(3, old.clone()).start().await);
    }
    let work = tempfile::tempdir().expect("a work dir");
    let names = ["f0", "f1", "f2", "f3"];
    let files: Vec<_> = names
        .iter()
        .zip(&clusters)
        .map(|(name, cluster)| write_cluster_file(work.path(), name, cluster))
        .collect();
    let inventory = write_inventory(
        work.path(),
        &[
            ("f0", &files[0], &["canary", "eu"]),
            ("f1", &files[1], &["eu"]),
            ("f2", &files[2], &["us"]),
            ("f3", &files[3], &["us"]),
        ],
    );
    // The target release, whose etcd exits at once on the cluster named in
    // the marker file (f2) and is the real one everywhere else.
    let binaries = work.path().join("binaries");
    let release = binaries.join(new.version.to_string());
    std::fs::create_dir_all(&release).expect("release dir");
    for tool in ["etcdctl", "etcdutl"] {
        std::fs::copy(new.dir.join(tool), release.join(tool)).expect("copy the tools");
    }
    let marker = work.path().join("broken-cluster");
    std::fs::write(&marker, clusters[2].dir().display().to_string()).expect("mark f2");
    let _ = fails_where_marked(&release, &new.etcd(), &marker);

    let to = new.version.to_string();
    let upgrade = |events: bool| {
        let mut args = vec![
            "fleet",
            "upgrade",
            "--inventory",
            inventory.to_str().expect("utf-8"),
            "--to",
            to.as_str(),
            "--binaries",
            binaries.to_str().expect("utf-8"),
            "--parallel",
            "2",
            "--canary",
            "canary",
            "--gate-timeout",
            "30s",
        ];
        args.extend(if events {
            ["--events"].as_slice()
        } else {
            ["-w", "json"].as_slice()
        });
        steward(&args)
    };

    // First run: f0 alone, then f1 and f2 together; f2 fails and is
    // reverted, f1 finishes, f3 is never started.
    let first = upgrade(true);
    assert_eq!(first.status.code(), Some(1), "{}", text(&first.stderr));
    let lines: Vec<serde_json::Value> = text(&first.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("an NDJSON line"))
        .collect();
    let (report, events) = lines.split_last().expect("events and the report");
    assert_eq!(report["schema"], "steward.fleet-report/v1", "{report}");
    assert_eq!(report["result"], "failed");
    let result = |name: &str| cluster(report, name)["result"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        names.map(result),
        ["succeeded", "succeeded", "failed", "not-started"],
        "{report:#}"
    );
    assert_eq!(cluster(report, "f0")["wave"], "canary");
    assert_eq!(cluster(report, "f3")["wave"], "rest");
    let f2 = cluster(report, "f2");
    let reason = f2["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("activate") && reason.contains("reverted"), "{f2:#}");
    assert_eq!(f2["report"]["schema"], "steward.report/v1");
    assert_eq!(f2["report"]["cluster"], "f2");
    assert!(
        text(&first.stderr).contains("failed: f2") && text(&first.stderr).contains("not started: f3"),
        "the error names which cluster ended how: {}",
        text(&first.stderr)
    );
    // Every event line names its cluster and the run; the canary's all
    // came before any other cluster's.
    for event in events {
        assert_eq!(event["schema"], "steward.event/v1", "{event}");
        assert_eq!(event["run"], report["run"], "{event}");
        assert!(event["ts"].is_string(), "{event}");
    }
    let of = |event: &serde_json::Value| event["cluster"].as_str().unwrap_or_default().to_owned();
    let last_canary = events.iter().rposition(|e| of(e) == "f0").expect("canary events");
    let first_other = events.iter().position(|e| of(e) != "f0").expect("other events");
    assert!(last_canary < first_other, "the canary ran alone");
    assert!(events.iter().all(|e| of(e) != "f3"), "f3 was not touched");

    let on = |v: &str| vec![v.to_owned(); 3];
    let (old_v, new_v) = (old.version.to_string(), new.version.to_string());
    assert_eq!(versions(&clusters[0]).await, on(&new_v));
    assert_eq!(versions(&clusters[1]).await, on(&new_v));
    assert_eq!(versions(&clusters[2]).await, on(&old_v), "f2 was reverted");
    assert_eq!(versions(&clusters[3]).await, on(&old_v), "f3 is untouched");
    let mut f3 = clusters[3].etcd(&[0, 1, 2]).await;
    let touched = f3
        .get(
            "/steward/",
            Some(etcd_client::GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .expect("read f3's steward keys")
        .count();
    assert_eq!(touched, 0, "no lock, journal or record on f3");

    // The fix, then the same command: only f2 and f3 are worked on.
    std::fs::remove_file(&marker).expect("fix f2");
    let second = upgrade(false);
    assert_eq!(second.status.code(), Some(0), "{}", text(&second.stderr));
    let report: serde_json::Value = serde_json::from_slice(&second.stdout).expect("the fleet report");
    assert_eq!(report["result"], "succeeded");
    assert_eq!(
        names.map(|n| cluster(&report, n)["result"].as_str().unwrap_or_default().to_owned()),
        ["skipped", "skipped", "succeeded", "succeeded"],
        "{report:#}"
    );
    for cluster in &clusters {
        assert_eq!(versions(cluster).await, on(&new_v));
    }

    // The fleet's status says the same, one line per cluster.
    let status = steward(&[
        "fleet",
        "status",
        "--inventory",
        inventory.to_str().expect("utf-8"),
        "--parallel",
        "4",
        "-w",
        "json",
    ]);
    assert_eq!(status.status.code(), Some(0), "{}", text(&status.stderr));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("the status report");
    for name in names {
        let line = &cluster(&status, name)["report"];
        assert_eq!(line["healthy"], 3, "{line}");
        assert_eq!(line["versions"], new_v.as_str(), "{line}");
        assert_eq!(
            line["last_change"],
            format!("upgrade {old_v} -> {new_v}").as_str(),
            "{line}"
        );
    }
    let table = steward(&["fleet", "status", "--inventory", inventory.to_str().expect("utf-8")]);
    assert_eq!(table.status.code(), Some(0), "{}", text(&table.stderr));
    let table = text(&table.stdout);
    for name in names {
        assert!(
            table.lines().any(|l| l.contains(name) && l.contains("3/3 healthy")),
            "{table}"
        );
    }
}
