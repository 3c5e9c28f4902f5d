//! Every refusal of the rolling procedure on a real cluster: exit code 3,
//! the rule named, and nothing changed on any member (same versions,
//! nothing staged, no snapshot taken). The data of a member migrated from
//! etcd 2 without v3 data is laid out by hand next to a running member.

use std::process::Output;

use steward_proto::v1 as pb;
use steward_tests::cluster::steward_command;
use steward_tests::{Cluster, ClusterBuilder, exact, fake, newest};

fn steward(args: &[&str]) -> Output {
    steward_command().args(args).output().expect("run steward")
}

/// What every member looks like: binary version, staged versions, snapshots.
async fn fingerprint(cluster: &Cluster, members: &[usize]) -> Vec<(String, Vec<String>, usize)> {
    let mut out = Vec::new();
    for &i in members {
        let status = cluster.status(i).await;
        let snapshots = cluster.snapshot_list(i).await.len();
        out.push((
            status.versions.clone().unwrap_or_default().active,
            status.versions.unwrap_or_default().staged,
            snapshots,
        ));
    }
    out
}

/// Runs `steward <command> --agents ... <args> -w json` and checks the refusal.
async fn assert_refused(cluster: &Cluster, reachable: &[usize], command: &str, args: &[&str], rule: &str) {
    let before = fingerprint(cluster, reachable).await;
    let agents = cluster.agents_arg();
    let mut full = vec![command, "--agents", agents.as_str(), "-w", "json"];
    full.extend_from_slice(args);
    let output = steward(&full);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{command} {args:?}: {stderr}");
    assert!(stderr.contains(rule), "the refusal names {rule}: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("report JSON");
    assert_eq!(report["result"], "refused");
    assert!(
        report["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .any(|c| c["rule"] == rule && c["verdict"] == "fail"),
        "{report}"
    );
    assert_eq!(
        fingerprint(cluster, reachable).await,
        before,
        "nothing changed on any member"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skipped_minor_without_its_binary() {
    let cluster = ClusterBuilder::new(3, exact("3.3.25")).start().await;
    let target = newest(3, 5);
    let binary = target.etcd().display().to_string();
    let to = target.version.to_string();
    assert_refused(
        &cluster,
        &[0, 1, 2],
        "upgrade",
        &["--to", &to, "--binary", &binary],
        "adjacent-minors",
    )
    .await;
    cluster.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3_5_0_to_3_5_2_target() {
    let cluster = ClusterBuilder::new(3, newest(3, 4)).start().await;
    assert_refused(&cluster, &[0, 1, 2], "upgrade", &["--to", "3.5.1"], "no-3.5.0-3.5.2").await;
    cluster.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_enabled_across_3_4_and_3_5() {
    let cluster = ClusterBuilder::new(3, newest(3, 4)).start().await;
    let mut client = cluster.etcd(&[0]).await;
    client.user_add("root", "rootpw", None).await.expect("add root");
    client.user_grant_role("root", "root").await.expect("grant root");
    client.auth_enable().await.expect("enable auth");
    let to = newest(3, 5).version.to_string();
    assert_refused(&cluster, &[0, 1, 2], "upgrade", &["--to", &to], "auth-3.4-3.5").await;
    cluster.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3_4_downgrade_target_below_3_4_32() {
    let cluster = ClusterBuilder::new(3, newest(3, 5)).start().await;
    let to = newest(3, 4).version.to_string();
    assert_refused(
        &cluster,
        &[0, 1, 2],
        "downgrade",
        &["--to", &to],
        "downgrade-3.4-min-3.4.32",
    )
    .await;
    cluster.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_member() {
    let cluster = ClusterBuilder::new(3, newest(3, 4)).start().await;
    cluster
        .agent(2)
        .await
        .stop(pb::StopRequest::default())
        .await
        .expect("stop m2's etcd");
    let to = newest(3, 5).version.to_string();
    assert_refused(&cluster, &[0, 1, 2], "upgrade", &["--to", &to], "cluster-healthy").await;
    cluster.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_alarm() {
    let cluster = ClusterBuilder::new(3, newest(3, 4)).start().await;
    let member_id = cluster.status(1).await.member.unwrap_or_default().member_id;
    let mut client = cluster.etcd(&[0]).await;
    let mut options = etcd_client::AlarmOptions::new();
    options.with_member(member_id);
    client
        .alarm(
            etcd_client::AlarmAction::Activate,
            etcd_client::AlarmType::Nospace,
            Some(options),
        )
        .await
        .expect("raise NOSPACE");
    let to = newest(3, 5).version.to_string();
    assert_refused(&cluster, &[0, 1, 2], "upgrade", &["--to", &to], "no-alarms").await;
    cluster.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_without_its_agent() {
    let mut cluster = ClusterBuilder::new(3, newest(3, 4)).start().await;
    cluster.kill_agent(2);
    let to = newest(3, 5).version.to_string();
    assert_refused(&cluster, &[0, 1], "upgrade", &["--to", &to], "every-member-has-agent").await;
    cluster.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_that_reports_another_version() {
    let cluster = ClusterBuilder::new(3, newest(3, 4)).start().await;
    // Claims 3.5.95 but is asked to be 3.5.96.
    let binary = fake::exits_at_once(&cluster.import_dir(), "3.5.95");
    let binary = binary.display().to_string();
    assert_refused(
        &cluster,
        &[0, 1, 2],
        "upgrade",
        &["--to", "3.5.96", "--binary", &binary],
        "binary-version-matches",
    )
    .await;
    cluster.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_spec_the_target_cannot_run() {
    // etcd 3.3 takes both spellings of the client CA; 3.4 knows only
    // --trusted-ca-file, and the agent will not pick one of two values for
    // the operator. The same file under two spellings keeps 3.3 happy.
    let cluster = ClusterBuilder::new(3, exact("3.3.25"))
        .extra_flag("--ca-file=/etc/ssl/certs/ca-certificates.crt")
        .member_tls("trusted_ca_file", "\"/etc/ssl/certs/../certs/ca-certificates.crt\"")
        .start()
        .await;
    let to = newest(3, 4).version.to_string();
    assert_refused(&cluster, &[0, 1, 2], "upgrade", &["--to", &to], "member-flags-render").await;
    cluster.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_whose_sha256_is_not_the_expected_one() {
    let cluster = ClusterBuilder::new(3, newest(3, 4)).start().await;
    let target = newest(3, 5);
    let binary = target.etcd().display().to_string();
    let wrong = "0".repeat(64);
    assert_refused(
        &cluster,
        &[0, 1, 2],
        "upgrade",
        &[
            "--to",
            &target.version.to_string(),
            "--binary",
            &binary,
            "--sha256",
            &wrong,
        ],
        "binary-sha256-matches",
    )
    .await;
    cluster.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_data_without_a_v3_db() {
    let cluster = ClusterBuilder::new(3, newest(3, 4)).start().await;
    // What a member migrated from etcd 2 without v3 data looks like on
    // disk: v2 store snapshots and no `member/snap/db`. The running etcd
    // keeps its open database under the new name, so the cluster stays
    // healthy and only this rule refuses.
    let snap = cluster.members[2].data_dir.join("member").join("snap");
    std::fs::rename(snap.join("db"), snap.join("db.moved-by-test")).expect("move the v3 db aside");
    std::fs::write(snap.join("0000000000000002-0000000000000010.snap"), vec![0_u8; 4096]).expect("a v2 snapshot");
    let to = newest(3, 5).version.to_string();
    assert_refused(&cluster, &[0, 1, 2], "upgrade", &["--to", &to], "v2-data-without-v3-db").await;
    cluster.cleanup();
}
