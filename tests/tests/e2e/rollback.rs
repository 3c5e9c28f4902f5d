//! `steward rollback`: after a partial upgrade (some members on 3.5, the
//! cluster version still 3.4) the changed members go back to 3.4 one at a
//! time; after a finished upgrade it refuses (exit 3) and says why; after a
//! partial downgrade the downgraded members go back up, and only they.

use std::process::Output;

use steward_proto::v1 as pb;
use steward_tests::cluster::steward_command;
use steward_tests::{ClusterBuilder, coordinator, exact, newest};

fn steward(args: &[&str]) -> Output {
    steward_command().args(args).output().expect("run steward")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_returns_changed_members_until_the_version_flips() {
    let old = newest(3, 4);
    let new = newest(3, 5);
    let cluster = ClusterBuilder::new(3, old.clone()).start().await;
    let agents = cluster.agents_arg();

    // A partial upgrade: two members (the leader among them) run 3.5.
    let leader = cluster.leader_index().await;
    let follower = (leader + 1) % 3;
    for i in [follower, leader] {
        cluster.import_etcd(i, &new.etcd(), &new.version.to_string()).await;
        cluster
            .agent(i)
            .await
            .activate(pb::ActivateRequest {
                version: new.version.to_string(),
                timeout: None,
                fencing_token: 0,
            })
            .await
            .expect("activate 3.5");
    }
    cluster.wait_ready(std::time::Duration::from_secs(30)).await;
    assert_eq!(
        cluster.status(0).await.member.unwrap_or_default().cluster_version,
        "3.4.0"
    );

    let leader_now = cluster.members[cluster.leader_index().await].name.clone();
    let rolled = steward(&["rollback", "--agents", &agents, "-w", "json"]);
    let stderr = String::from_utf8_lossy(&rolled.stderr);
    assert_eq!(rolled.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&rolled.stdout).expect("report JSON");
    assert_eq!(report["result"], "succeeded");
    assert_eq!(report["to"], old.version.to_string());
    for i in 0..3 {
        let status = cluster.status(i).await;
        assert_eq!(status.member.unwrap_or_default().version, old.version.to_string());
        // Back with the flags it ran with before: no downgrade rules.
        let args = status.process.unwrap_or_default().args;
        assert!(
            !args.iter().any(|a| a.contains("next-cluster-version-compatible")),
            "{args:?}"
        );
    }
    // Exactly the changed members went back, and if the leader was one of
    // them, it went last.
    let order: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("member    "))
        .map(|l| l.split(':').next().unwrap_or_default())
        .collect();
    let mut changed = vec![
        cluster.members[follower].name.as_str(),
        cluster.members[leader].name.as_str(),
    ];
    let mut seen = order.clone();
    changed.sort_unstable();
    seen.sort_unstable();
    assert_eq!(seen, changed, "{stderr}");
    if order.contains(&leader_now.as_str()) {
        assert_eq!(
            order.last(),
            Some(&leader_now.as_str()),
            "the leader goes last: {stderr}"
        );
    }

    // After a finished upgrade the cluster version has flipped: refused.
    let upgraded = steward(&["upgrade", "--agents", &agents, "--to", &new.version.to_string()]);
    assert_eq!(
        upgraded.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&upgraded.stderr)
    );
    let refused = steward(&["rollback", "--agents", &agents]);
    assert_eq!(refused.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("rollback-before-flip") && stderr.contains("restore the snapshot"),
        "{stderr}"
    );
    for i in 0..3 {
        assert_eq!(
            cluster.status(i).await.member.unwrap_or_default().version,
            new.version.to_string()
        );
    }
    cluster.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_after_a_partial_downgrade_returns_the_downgraded_members_up() {
    let low = exact("3.5.16");
    let high = newest(3, 5);
    let cluster = ClusterBuilder::new(3, low.clone()).start().await;
    let agents = cluster.agents_arg();
    // An upgrade first: every member's previous version is now the low
    // one, so member versions alone would make the members a downgrade
    // has not reached yet look like changed members.
    let upgraded = steward(&["upgrade", "--agents", &agents, "--to", &high.version.to_string()]);
    assert_eq!(
        upgraded.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&upgraded.stderr)
    );
    let downgrade = coordinator::start(&["downgrade", "--agents", &agents, "--to", &low.version.to_string()]);
    downgrade.wait_for("member_done");
    downgrade.kill();
    let mut downgraded = Vec::new();
    for i in 0..3 {
        if cluster.status(i).await.member.unwrap_or_default().version == low.version.to_string() {
            downgraded.push(cluster.members[i].name.clone());
        }
    }
    assert!(
        !downgraded.is_empty() && downgraded.len() < 3,
        "the downgrade was interrupted after a member: {downgraded:?}"
    );

    let rolled = steward(&["rollback", "--agents", &agents, "-w", "json"]);
    let stderr = String::from_utf8_lossy(&rolled.stderr);
    assert_eq!(rolled.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&rolled.stdout).expect("report JSON");
    assert_eq!(report["result"], "succeeded", "{report}");
    assert_eq!(report["to"], high.version.to_string());
    assert!(
        report["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .any(|c| c["rule"] == "rollback-direction"
                && c["message"].as_str().unwrap_or_default().contains("downgrade")),
        "{report}"
    );
    for i in 0..3 {
        assert_eq!(
            cluster.status(i).await.member.unwrap_or_default().version,
            high.version.to_string(),
            "every member back on {}",
            high.version
        );
    }
    let mut changed: Vec<String> = report["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter(|m| m["to"].is_string())
        .map(|m| m["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    changed.sort();
    downgraded.sort();
    assert_eq!(changed, downgraded, "exactly the downgraded members changed: {report}");
    cluster.cleanup();
}
