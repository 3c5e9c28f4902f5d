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
    let restarted = restart_adopted(&cluster, 1, pid).await;
    let status = cluster.status(1).await.process.unwrap_or_default();
    assert_eq!(status.pid, restarted);
    assert!(!status.adopted);
    cluster.cleanup();
}

/// An agent killed after it started etcd but before it recorded the process
/// leaves `state.json` naming the start it was making (`starting`) and no
/// process. The etcd it started keeps running and holds the member's ports,
/// so a new agent that started another etcd would only crash-loop it: it
/// finds the running one by its executable and arguments and adopts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_started_but_not_yet_recorded_is_found_and_adopted() {
    let mut cluster = ClusterBuilder::new(1, newest(3, 4)).start().await;
    let pid = cluster.status(0).await.process.unwrap_or_default().pid;
    cluster.kill_agent(0);

    // The state an agent leaves when it dies between the spawn and the
    // record: the start it was making, no process.
    let path = cluster.members[0].state_dir.join("state.json");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("state.json")).expect("parse state.json");
    let process = state["process"].take();
    assert_eq!(process["pid"].as_u64(), Some(u64::from(pid)), "{state}");
    state["starting"] = serde_json::json!({
        "executable": process["executable"],
        "executable_file": process["executable_file"],
        "args": process["args"],
        "version": process["version"],
        "requested_at_ms": process["started_at_ms"],
    });
    std::fs::write(&path, serde_json::to_vec_pretty(&state).expect("json")).expect("write state.json");

    cluster.start_agent(0);
    let status = cluster.status(0).await;
    let found = status.process.clone().unwrap_or_default();
    assert_eq!(
        found.pid, pid,
        "the running etcd is adopted, no second one started: {status:?}"
    );
    assert!(found.adopted && found.running, "{status:?}");
    let agent = status.agent.clone().unwrap_or_default();
    assert_eq!(agent.state(), pb::AgentState::Running, "{}", agent.state_reason);
    assert!(status.member.unwrap_or_default().reachable);
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("state.json")).expect("parse state.json");
    assert_eq!(
        state["process"]["pid"].as_u64(),
        Some(u64::from(pid)),
        "recorded now: {state}"
    );
    assert!(state.get("starting").is_none_or(serde_json::Value::is_null), "{state}");

    // Owned: the agent can restart it, and no etcd of an earlier start
    // is left behind.
    restart_adopted(&cluster, 0, pid).await;
    cluster.cleanup();
}

/// Restarts member `i`'s adopted etcd (`pid`) through its agent, checks the
/// adopted process is gone and the member serves again; returns the new
/// pid.
async fn restart_adopted(cluster: &steward_tests::Cluster, i: usize, pid: u32) -> u32 {
    let restarted = cluster
        .agent(i)
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
    restarted.pid
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
