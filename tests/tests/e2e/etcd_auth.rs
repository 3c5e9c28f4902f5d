//! A cluster with etcd authentication enabled: steward works with a user
//! and password given as etcdctl takes them, the auth rule refuses a
//! 3.4 -> 3.5 roll with its message (and only that rule: the cluster is
//! healthy with credentials), and the password appears in no output or log.

use std::process::Output;

use steward_tests::cluster::steward_command;
use steward_tests::{ClusterBuilder, newest};

const PASSWORD: &str = "correct-horse-battery-staple";

fn steward(args: &[&str], envs: &[(&str, &str)]) -> Output {
    steward_command()
        .args(args)
        .envs(envs.iter().copied())
        .env("RUST_LOG", "debug")
        .output()
        .expect("run steward")
}

fn assert_no_password(output: &Output) {
    for (stream, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
        assert!(
            !String::from_utf8_lossy(bytes).contains(PASSWORD),
            "the password is in {stream}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steward_works_with_a_user_and_the_auth_rule_refuses_3_4_to_3_5() {
    let cluster = ClusterBuilder::new(3, newest(3, 4)).start().await;
    let mut client = cluster.etcd(&[0, 1, 2]).await;
    client.user_add("root", PASSWORD, None).await.expect("add root");
    client.user_grant_role("root", "root").await.expect("grant root");
    client.auth_enable().await.expect("enable auth");
    let agents = cluster.agents_arg();

    // Without credentials the quorum read cannot be made: not healthy, and
    // the message says what is missing.
    let anonymous = steward(&["status", "--agents", &agents], &[]);
    assert_eq!(anonymous.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&anonymous.stderr).contains("--user"),
        "{}",
        String::from_utf8_lossy(&anonymous.stderr)
    );

    // With a user and password, as flags or as etcdctl's variables.
    let user_flag = format!("root:{PASSWORD}");
    let by_flags = steward(
        &["status", "--agents", &agents, "--user", &user_flag, "-w", "json"],
        &[],
    );
    assert_eq!(
        by_flags.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&by_flags.stderr)
    );
    assert_no_password(&by_flags);
    let by_env = steward(
        &["status", "--agents", &agents],
        &[("ETCDCTL_USER", "root"), ("ETCDCTL_PASSWORD", PASSWORD)],
    );
    assert_eq!(
        by_env.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&by_env.stderr)
    );
    assert_no_password(&by_env);

    // The roll is refused by the auth rule, and only by it.
    let to = newest(3, 5).version.to_string();
    let refused = steward(
        &["upgrade", "--agents", &agents, "--to", &to, "-w", "json"],
        &[("ETCDCTL_USER", "root"), ("ETCDCTL_PASSWORD", PASSWORD)],
    );
    assert_eq!(
        refused.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_no_password(&refused);
    let report: serde_json::Value = serde_json::from_slice(&refused.stdout).expect("report JSON");
    let failed: Vec<&str> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["verdict"] == "fail")
        .filter_map(|c| c["rule"].as_str())
        .collect();
    assert_eq!(failed, ["auth-3.4-3.5"], "{report:#}");
    let auth = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["rule"] == "auth-3.4-3.5")
        .expect("the auth check");
    assert!(
        auth["message"].as_str().unwrap_or_default().contains("disable auth"),
        "{auth}"
    );
    for i in 0..3 {
        assert_eq!(
            cluster.status(i).await.member.unwrap_or_default().version,
            newest(3, 4).version.to_string()
        );
    }

    // A user without a password is a usage error.
    let usage = steward(&["status", "--agents", &agents, "--user", "root"], &[]);
    assert_eq!(usage.status.code(), Some(2));
    cluster.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_upgrade_runs_on_a_cluster_with_auth() {
    let low = steward_tests::exact("3.5.16");
    let high = newest(3, 5);
    let cluster = ClusterBuilder::new(3, low.clone())
        .member_auth("root", PASSWORD)
        .start()
        .await;
    let mut client = cluster.etcd(&[0, 1, 2]).await;
    client.user_add("root", PASSWORD, None).await.expect("add root");
    client.user_grant_role("root", "root").await.expect("grant root");
    client.auth_enable().await.expect("enable auth");

    let to = high.version.to_string();
    let upgraded = steward(
        &["upgrade", "--agents", &cluster.agents_arg(), "--to", &to, "-w", "json"],
        &[("ETCDCTL_USER", "root"), ("ETCDCTL_PASSWORD", PASSWORD)],
    );
    assert_eq!(
        upgraded.status.code(),
        Some(0),
        "{}; {}",
        String::from_utf8_lossy(&upgraded.stderr),
        cluster.logs_hint()
    );
    assert_no_password(&upgraded);
    let report: serde_json::Value = serde_json::from_slice(&upgraded.stdout).expect("report JSON");
    assert!(
        report["snapshot"]["id"].is_string(),
        "the agent took the snapshot as root: {report:#}"
    );
    for i in 0..3 {
        assert_eq!(cluster.status(i).await.member.unwrap_or_default().version, to);
        for log in [
            cluster.members[i].log_path.clone(),
            cluster.members[i].state_dir.join("audit.log"),
        ] {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(!text.contains(PASSWORD), "the password is in {}", log.display());
        }
    }
    cluster.cleanup();
}
