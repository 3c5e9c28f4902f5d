//! The backup of the last change is never evicted: after an upgrade, six
//! `steward backup --out` that cannot write their copy (a missing
//! directory, a read-only mount, a full disk) take no snapshot at all, and
//! six good backups on the same agent do not push the pinned pre-change
//! snapshot out of retention; `steward backups` shows the pin, and
//! `rollback --to-snapshot` still finds its snapshot.

use steward_tests::cluster::{json_of as json, steward};
use steward_tests::mounts::Tmpfs;
use steward_tests::{ClusterBuilder, newest};

/// The snapshots `steward backups` lists, as (id, pin).
fn listed(agents: &str) -> Vec<(String, String)> {
    let list = json(&steward(&["backups", "--agents", agents, "-w", "json"]));
    list["snapshots"]
        .as_array()
        .expect("snapshots")
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap_or_default().to_owned(),
                s["pin"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_later_backups_never_evict_the_snapshot_of_the_last_change() {
    let old = newest(3, 4);
    let new = newest(3, 5);
    let cluster = ClusterBuilder::new(3, old.clone()).retain_snapshots(5).start().await;
    let agents = cluster.agents_arg();
    let binaries = old.dir.parent().expect("binaries dir").display().to_string();
    let upgrade = json(&steward(&[
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
    let snapshot = upgrade["snapshot"]["id"]
        .as_str()
        .expect("pre-change snapshot")
        .to_owned();
    let member = upgrade["snapshot"]["member"].as_str().expect("its member").to_owned();
    assert!(
        listed(&agents).contains(&(snapshot.clone(), "last-change".to_owned())),
        "the pre-change snapshot is pinned: {:?}",
        listed(&agents)
    );

    // Six copies that cannot be written, on the member that keeps it.
    let read_only = Tmpfs::mount(&cluster.dir().join("read-only"), "1m", true);
    let full = Tmpfs::mount(&cluster.dir().join("full"), "64k", false);
    full.fill();
    let missing = cluster.dir().join("no-such-dir");
    let destinations = [
        (missing.join("a.db"), "does not exist"),
        (missing.join("b.db"), "does not exist"),
        (read_only.dir().join("c.db"), "cannot create a file"),
        (read_only.dir().join("d.db"), "cannot create a file"),
        (full.dir().join("e.db"), "bytes free"),
        (full.dir().join("f.db"), "bytes free"),
    ];
    for (out, why) in &destinations {
        let out = out.display().to_string();
        let failed = steward(&["backup", "--agents", &agents, "--member", &member, "--out", &out]);
        let stderr = String::from_utf8_lossy(&failed.stderr);
        assert_eq!(failed.status.code(), Some(2), "{out}: {stderr}");
        assert!(stderr.contains(&format!("--out {out}")), "{stderr}");
        assert!(stderr.contains(why), "{out}: {why}: {stderr}");
        assert!(stderr.contains("no snapshot was taken"), "{stderr}");
    }
    assert_eq!(
        listed(&agents).len(),
        1,
        "failed backups left nothing: {:?}",
        listed(&agents)
    );

    // Six good backups on the same agent: retention (5) counts only them.
    for _ in 0..6 {
        let _ = json(&steward(&[
            "backup", "--agents", &agents, "--member", &member, "-w", "json",
        ]));
    }
    let after = listed(&agents);
    assert_eq!(after.len(), 6, "five unpinned and the pinned one: {after:?}");
    assert!(
        after.contains(&(snapshot.clone(), "last-change".to_owned())),
        "{after:?}"
    );
    let table = steward(&["backups", "--agents", &agents]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("PIN") && table.contains("last-change"), "{table}");

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
    for i in 0..3 {
        assert_eq!(
            cluster.status(i).await.member.unwrap_or_default().version,
            old.version.to_string()
        );
    }
    drop((read_only, full));
    cluster.cleanup();
}
