//! Restarting the agent never restarts etcd: after `kill -9` of an agent and
//! a new start, the same etcd process is adopted (checked by pid, start time
//! and executable), the agent's state is intact, and the new agent really
//! owns etcd (it can restart it). A second agent on the same state dir is
//! refused.

use std::process::Command;

use steward_proto::v1 as pb;
use steward_tests::{ClusterBuilder, cluster::agent_binary, newest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_adopts_the_running_etcd() {
    let mut cluster = ClusterBuilder::new(3, newest(3, 4)).start().await;
    let before = cluster.status(1).await;
    let pid = before.process.clone().unwrap_or_default().pid;
    let state_before = std::fs::read_to_string(cluster.members[1].state_dir.join("state.json")).expect("state.json");

    // A second agent on the same state dir is refused while the first runs.
    let second = Command::new(agent_binary())
        .arg("--config")
        .arg(&cluster.members[1].config_path)
        .output()
        .expect("run a second agent");
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("locked by another steward-agent"), "{stderr}");

    cluster.kill_agent(1);
    // etcd survives its agent and keeps serving.
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "etcd died with its agent"
    );
    let mut client = cluster.etcd(&[1]).await;
    client
        .put("adoption/while-no-agent", "ok", None)
        .await
        .expect("etcd serves without its agent");

    cluster.start_agent(1);
    let after = cluster.status(1).await;
    let process = after.process.clone().unwrap_or_default();
    assert_eq!(process.pid, pid, "the same etcd process");
    assert!(process.adopted);
    assert!(process.running);
    assert_eq!(process.restart_count, 0);
    assert_eq!(process.started_at, before.process.unwrap_or_default().started_at);
    assert_eq!(after.agent.clone().unwrap_or_default().state(), pb::AgentState::Running);
    assert_eq!(after.versions, before.versions, "versions intact");
    let state_after = std::fs::read_to_string(cluster.members[1].state_dir.join("state.json")).expect("state.json");
    assert_eq!(state_after, state_before, "state.json intact");
    assert!(after.member.unwrap_or_default().reachable);

    // The new agent owns the adopted etcd: it can stop it and start another.
    let restarted = cluster
        .agent(1)
        .await
        .restart(pb::RestartRequest::default())
        .await
        .expect("restart the adopted etcd")
        .into_inner();
    assert_ne!(restarted.pid, pid);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}/exe")).exists(),
        "the adopted process is gone"
    );
    cluster.wait_ready(std::time::Duration::from_secs(30)).await;
    let status = cluster.status(1).await.process.unwrap_or_default();
    assert_eq!(status.pid, restarted.pid);
    assert!(!status.adopted);
    cluster.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_cannot_recover_serves_failed_and_still_owns_etcd() {
    let mut cluster = ClusterBuilder::new(1, newest(3, 4)).start().await;
    let status = cluster.status(0).await;
    let pid = status.process.unwrap_or_default().pid;
    let version = status.versions.unwrap_or_default().active;

    // While the agent is down, the staged binary of the running version is
    // swapped for other content.
    cluster.kill_agent(0);
    cluster.tamper_with_staged_binary(0, &version);

    // The agent starts, serves, says why it is FAILED, and owns the etcd
    // that still runs.
    cluster.start_agent(0);
    let status = cluster.status(0).await;
    let agent = status.agent.unwrap_or_default();
    assert_eq!(agent.state(), pb::AgentState::Failed);
    assert!(agent.state_reason.contains("changed on disk"), "{}", agent.state_reason);
    let process = status.process.unwrap_or_default();
    assert_eq!(process.pid, pid);
    assert!(process.adopted);
    assert!(status.member.unwrap_or_default().reachable, "etcd keeps serving");

    // It can be stopped through the agent; it will not be started from a
    // binary that changed.
    cluster
        .agent(0)
        .await
        .stop(pb::StopRequest::default())
        .await
        .expect("stop the adopted etcd");
    assert!(!std::path::Path::new(&format!("/proc/{pid}/exe")).exists());
    let refused = cluster
        .agent(0)
        .await
        .start(pb::StartRequest::default())
        .await
        .expect_err("changed binary");
    assert!(refused.message().contains("changed on disk"), "{}", refused.message());
    cluster.cleanup();
}
