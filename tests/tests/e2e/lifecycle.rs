//! Start, Stop and TailLogs through the agent, under the state machine:
//! a stopped member is really down, a second Stop is refused naming the
//! state, Start brings it back, and TailLogs shows etcd's own output, then
//! follows new lines as etcd writes them.

use std::time::Duration;

use steward_proto::v1 as pb;
use steward_tests::{ClusterBuilder, newest};
use tokio_stream::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_start_and_logs() {
    let cluster = ClusterBuilder::new(1, newest(3, 5)).start().await;
    let mut agent = cluster.agent(0).await;

    // TailLogs: the last lines are etcd's (3.5 logs JSON with a "msg").
    let first = agent
        .tail_logs(pb::TailLogsRequest {
            lines: 5,
            follow: false,
        })
        .await
        .expect("tail")
        .into_inner()
        .next()
        .await
        .expect("one message")
        .expect("ok");
    assert_eq!(first.lines.len(), 5, "{:?}", first.lines);
    assert!(first.lines.iter().all(|l| l.contains("\"msg\"")), "{:?}", first.lines);
    let too_many = agent
        .tail_logs(pb::TailLogsRequest {
            lines: 1_000_000,
            follow: false,
        })
        .await;
    assert_eq!(
        too_many.expect_err("too many lines").code(),
        tonic::Code::InvalidArgument
    );

    // Follow, then stop etcd: its shutdown lines arrive on the stream.
    let mut follow = agent
        .tail_logs(pb::TailLogsRequest { lines: 1, follow: true })
        .await
        .expect("follow")
        .into_inner();
    let _ = follow.next().await.expect("the initial tail");

    let pid = cluster.status(0).await.process.unwrap_or_default().pid;
    let stopped = agent.stop(pb::StopRequest::default()).await.expect("stop").into_inner();
    assert_eq!(stopped.state(), pb::AgentState::Stopped);
    assert_eq!(stopped.pid, 0);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}/exe")).exists(),
        "etcd is gone"
    );
    let followed = tokio::time::timeout(Duration::from_secs(10), follow.next())
        .await
        .expect("a followed line within 10s")
        .expect("stream open")
        .expect("ok");
    assert!(!followed.lines.is_empty());

    let status = cluster.status(0).await;
    assert_eq!(status.agent.unwrap_or_default().state(), pb::AgentState::Stopped);
    assert!(!status.process.unwrap_or_default().running);
    let member = status.member.unwrap_or_default();
    assert!(!member.reachable);
    assert!(member.error.contains("unavailable"), "{}", member.error);

    // The state machine refuses a second Stop, naming the state.
    let again = agent
        .stop(pb::StopRequest::default())
        .await
        .expect_err("already stopped");
    assert_eq!(again.code(), tonic::Code::FailedPrecondition);
    assert!(again.message().contains("STOPPED"), "{}", again.message());
    let restart = agent
        .restart(pb::RestartRequest::default())
        .await
        .expect_err("nothing to restart");
    assert_eq!(restart.code(), tonic::Code::FailedPrecondition);

    let started = agent
        .start(pb::StartRequest::default())
        .await
        .expect("start")
        .into_inner();
    assert_eq!(started.state(), pb::AgentState::Running);
    assert_ne!(started.pid, pid);
    cluster.wait_ready(Duration::from_secs(30)).await;

    // A staged binary changed on disk is never run: the re-hash before the
    // start refuses it, and the running etcd is left alone.
    let version = cluster.status(0).await.versions.unwrap_or_default().active;
    cluster.tamper_with_staged_binary(0, &version);
    let refused = agent
        .restart(pb::RestartRequest::default())
        .await
        .expect_err("a changed binary");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(refused.message().contains("changed on disk"), "{}", refused.message());
    let status = cluster.status(0).await;
    assert_eq!(status.process.unwrap_or_default().pid, started.pid, "etcd untouched");
    assert_eq!(status.agent.unwrap_or_default().state(), pb::AgentState::Running);
    cluster.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_follow_stream_does_not_hold_the_agent_at_shutdown() {
    let mut cluster = ClusterBuilder::new(1, newest(3, 4)).start().await;
    let etcd_pid = cluster.status(0).await.process.unwrap_or_default().pid;
    let mut follow = cluster
        .agent(0)
        .await
        .tail_logs(pb::TailLogsRequest { lines: 1, follow: true })
        .await
        .expect("follow")
        .into_inner();
    let _ = follow.next().await.expect("the initial tail");

    let took = cluster.terminate_agent(0, Duration::from_secs(15)).await;
    assert!(
        took.is_some(),
        "the agent did not exit within 15s of SIGTERM with a follow stream open"
    );
    // The stream ended rather than hanging, and etcd keeps running.
    let rest = tokio::time::timeout(Duration::from_secs(5), async { while follow.next().await.is_some() {} }).await;
    assert!(rest.is_ok(), "the follow stream did not end");
    assert!(
        std::path::Path::new(&format!("/proc/{etcd_pid}/exe")).exists(),
        "etcd outlives its agent"
    );
    cluster.cleanup();
}
