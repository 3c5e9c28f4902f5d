//! etcd killed under its agent is restarted with backoff; repeated crashes
//! end in FAILED, visible in GetStatus, and Start brings the member back.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use steward_proto::v1 as pb;
use steward_tests::{Cluster, ClusterBuilder, newest};

fn kill_etcd(pid: u32) {
    kill(Pid::from_raw(i32::try_from(pid).expect("pid fits")), Signal::SIGKILL).expect("kill etcd");
}

/// Polls member `i`'s status until `done` holds.
async fn wait_for(
    cluster: &Cluster,
    i: usize,
    what: &str,
    done: impl Fn(&pb::GetStatusResponse) -> bool,
) -> pb::GetStatusResponse {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = cluster.status(i).await;
        if done(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {status:?}; {}",
            cluster.logs_hint()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_are_restarted_and_a_crash_loop_ends_in_failed() {
    let cluster = ClusterBuilder::new(3, newest(3, 4))
        .supervision("restart_backoff_initial", "\"200ms\"")
        .supervision("restart_backoff_max", "\"1s\"")
        .supervision("max_consecutive_crashes", "3")
        .supervision("stable_after", "\"60s\"")
        .start()
        .await;

    // One crash: restarted automatically.
    let first = cluster.status(2).await.process.unwrap_or_default().pid;
    kill_etcd(first);
    let status = wait_for(&cluster, 2, "a restarted etcd", |s| {
        let p = s.process.clone().unwrap_or_default();
        p.running && p.pid != first
    })
    .await;
    let process = status.process.unwrap_or_default();
    assert_eq!(process.restart_count, 1);
    assert_eq!(process.last_exit, "killed by SIGKILL");
    assert_eq!(status.agent.unwrap_or_default().state(), pb::AgentState::Running);
    cluster.wait_ready(Duration::from_secs(30)).await;

    // Two more crashes before it ever ran stably: the third in a row gives up.
    let second = process.pid;
    kill_etcd(second);
    let status = wait_for(&cluster, 2, "the second restart", |s| {
        let p = s.process.clone().unwrap_or_default();
        p.running && p.pid != second
    })
    .await;
    assert_eq!(status.process.clone().unwrap_or_default().restart_count, 2);
    kill_etcd(status.process.unwrap_or_default().pid);
    let failed = wait_for(&cluster, 2, "FAILED", |s| {
        s.agent.clone().unwrap_or_default().state() == pb::AgentState::Failed
    })
    .await;
    let agent = failed.agent.unwrap_or_default();
    assert!(
        agent.state_reason.contains("3 times in a row"),
        "{}",
        agent.state_reason
    );
    let process = failed.process.unwrap_or_default();
    assert!(!process.running, "no restart after giving up");
    assert_eq!(process.restart_count, 2);
    // It stays down: no restart sneaks in after the verdict.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!cluster.status(2).await.process.unwrap_or_default().running);

    // The two other members keep the cluster available.
    let mut client = cluster.etcd(&[0, 1]).await;
    client
        .put("crash/while-failed", "ok", None)
        .await
        .expect("quorum without the failed member");

    // Start leaves FAILED.
    let started = cluster
        .agent(2)
        .await
        .start(pb::StartRequest::default())
        .await
        .expect("start")
        .into_inner();
    assert_eq!(started.state(), pb::AgentState::Running);
    assert!(started.pid > 0);
    cluster.wait_ready(Duration::from_secs(30)).await;
    assert_eq!(cluster.status(2).await.process.unwrap_or_default().restart_count, 0);
    cluster.cleanup();
}
