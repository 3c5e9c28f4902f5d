//! Activate through the agent on a live cluster: a member goes from 3.4 to
//! 3.5 while a writer keeps writing through the other members; failures of
//! the new binary are reverted automatically.

use std::time::Duration;

use steward_proto::v1 as pb;
use steward_tests::{ClusterBuilder, Writer, fake, lost_writes, newest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_moves_from_3_4_to_3_5_under_writes_without_losing_any() {
    let old = newest(3, 4);
    let new = newest(3, 5);
    let cluster = ClusterBuilder::new(3, old.clone()).start().await;
    let target = new.version.to_string();
    cluster.import_etcd(0, &new.etcd(), &target).await;

    let writer = Writer::start(cluster.client_urls(&[1, 2]), "activate/").await;
    // The writer is going before the member changes.
    writer.wait_for_more(20, Duration::from_secs(30)).await;

    let pid_before = cluster.status(0).await.process.unwrap_or_default().pid;
    let response = cluster
        .agent(0)
        .await
        .activate(pb::ActivateRequest {
            version: target.clone(),
            timeout: None,
            fencing_token: 0,
        })
        .await
        .unwrap_or_else(|s| panic!("activate failed: {s}; {}", cluster.logs_hint()))
        .into_inner();
    assert_eq!(response.active_version, target);
    assert_eq!(response.previous_version, old.version.to_string());
    assert_ne!(response.pid, pid_before, "a new etcd process runs");

    // And it keeps going after.
    writer.wait_for_more(20, Duration::from_secs(30)).await;
    let report = writer.stop().await;

    let status = cluster.status(0).await;
    assert_eq!(status.member.clone().unwrap_or_default().version, target);
    assert_eq!(status.versions.clone().unwrap_or_default().active, target);
    assert_eq!(status.versions.unwrap_or_default().previous, old.version.to_string());
    assert_eq!(status.agent.unwrap_or_default().state(), pb::AgentState::Running);
    assert_eq!(status.process.unwrap_or_default().pid, response.pid);
    // The other members still run the old version, and the cluster is whole.
    for i in 1..3 {
        assert_eq!(
            cluster.status(i).await.member.unwrap_or_default().version,
            old.version.to_string()
        );
    }
    cluster.wait_ready(Duration::from_secs(30)).await;

    // Every acknowledged write is there, read through the upgraded member.
    let mut client = cluster.etcd(&[0]).await;
    let lost = lost_writes(&mut client, "activate/", &report).await;
    assert!(
        lost.is_empty(),
        "lost {} acknowledged writes: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );

    // While the cluster version is still 3.4, going back is a binary swap:
    // Rollback restores 3.4 with the flags it ran with before (no 3.5 -> 3.4
    // downgrade rules, which would refuse a 3.4 below 3.4.32).
    let writer = Writer::start(cluster.client_urls(&[1, 2]), "rollback/").await;
    let rolled = cluster
        .agent(0)
        .await
        .rollback(pb::RollbackRequest {
            timeout: None,
            fencing_token: 0,
        })
        .await
        .unwrap_or_else(|s| panic!("rollback failed: {s}; {}", cluster.logs_hint()))
        .into_inner();
    let report = writer.stop().await;
    assert_eq!(rolled.active_version, old.version.to_string());
    assert_eq!(rolled.previous_version, target);
    assert!(rolled.changes.is_empty(), "{:?}", rolled.changes);
    assert!(
        !rolled
            .args
            .iter()
            .any(|a| a.contains("next-cluster-version-compatible"))
    );
    let status = cluster.status(0).await;
    assert_eq!(status.member.unwrap_or_default().version, old.version.to_string());
    let versions = status.versions.unwrap_or_default();
    assert_eq!(versions.active, old.version.to_string());
    assert_eq!(versions.previous, target);
    cluster.wait_ready(Duration::from_secs(30)).await;
    let lost = lost_writes(&mut client, "rollback/", &report).await;
    assert!(
        lost.is_empty(),
        "lost {} acknowledged writes during the rollback",
        lost.len()
    );

    // Activating the version that already runs changes nothing.
    let pid = cluster.status(0).await.process.unwrap_or_default().pid;
    let again = cluster
        .agent(0)
        .await
        .activate(pb::ActivateRequest {
            version: old.version.to_string(),
            timeout: None,
            fencing_token: 0,
        })
        .await
        .expect("activate the active version")
        .into_inner();
    assert_eq!(again.pid, pid);
    assert_eq!(again.previous_version, target, "the rollback target is kept");
    cluster.cleanup();
}

fn failure_details(status: &tonic::Status) -> pb::ActivationFailure {
    assert_eq!(status.code(), tonic::Code::Aborted, "{status}");
    steward_proto::details::decode_activation_failure(status.details())
        .unwrap_or_else(|| panic!("no ActivationFailure in the details of {status}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_activations_revert_to_the_previous_version() {
    let old = newest(3, 4);
    let real_new = newest(3, 5);
    let cluster = ClusterBuilder::new(3, old.clone())
        .supervision("activate_timeout", "\"20s\"")
        .start()
        .await;
    let previous = old.version.to_string();

    // A binary that exits at once.
    let exits = fake::exits_at_once(&cluster.import_dir(), "3.5.97");
    cluster.import_etcd(1, &exits, "3.5.97").await;
    let status = cluster
        .agent(1)
        .await
        .activate(pb::ActivateRequest {
            version: "3.5.97".into(),
            timeout: None,
            fencing_token: 0,
        })
        .await
        .expect_err("the activation must fail");
    let details = failure_details(&status);
    assert_eq!(details.attempted_version, "3.5.97");
    assert_eq!(details.reverted_to, previous);
    assert!(details.reason.contains("etcd exited"), "{}", details.reason);
    assert!(
        details.log_tail.iter().any(|l| l.contains("failing on purpose")),
        "the log tail carries etcd's output: {:?}",
        details.log_tail
    );
    assert!(status.message().contains("failing on purpose"), "{}", status.message());
    assert_back_on(&cluster, 1, &previous).await;

    // A binary that claims 3.5.98 but runs another release.
    let liar = fake::reports_wrong_version(&cluster.import_dir(), "3.5.98", &real_new.etcd());
    cluster.import_etcd(1, &liar, "3.5.98").await;
    let status = cluster
        .agent(1)
        .await
        .activate(pb::ActivateRequest {
            version: "3.5.98".into(),
            timeout: None,
            fencing_token: 0,
        })
        .await
        .expect_err("the activation must fail");
    let details = failure_details(&status);
    assert_eq!(details.reverted_to, previous);
    assert!(
        details
            .reason
            .contains(&format!("reports version {}", real_new.version)),
        "{}",
        details.reason
    );
    assert!(!details.log_tail.is_empty());
    assert_back_on(&cluster, 1, &previous).await;
    cluster.cleanup();
}

async fn assert_back_on(cluster: &steward_tests::Cluster, member: usize, version: &str) {
    let status = cluster.status(member).await;
    assert_eq!(status.agent.unwrap_or_default().state(), pb::AgentState::Running);
    let versions = status.versions.unwrap_or_default();
    assert_eq!(versions.active, version);
    let m = status.member.unwrap_or_default();
    assert!(m.reachable, "{}", m.error);
    assert_eq!(m.version, version);
    cluster.wait_ready(Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activation_whose_caller_gives_up_still_finishes() {
    let old = newest(3, 4);
    let new = newest(3, 5);
    let cluster = ClusterBuilder::new(1, old.clone()).start().await;
    let target = new.version.to_string();
    cluster.import_etcd(0, &new.etcd(), &target).await;

    // The caller's deadline passes long before the switch is done.
    let mut request = tonic::Request::new(pb::ActivateRequest {
        version: target.clone(),
        timeout: None,
        fencing_token: 0,
    });
    request.set_timeout(Duration::from_millis(100));
    let status = cluster
        .agent(0)
        .await
        .activate(request)
        .await
        .expect_err("the deadline passes");
    // tonic reports its own client-side deadline as CANCELLED.
    assert!(
        matches!(status.code(), tonic::Code::DeadlineExceeded | tonic::Code::Cancelled),
        "{status}"
    );

    // The agent finishes the switch anyway, instead of leaving the member
    // stopped halfway.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = cluster.status(0).await;
        let state = status.agent.clone().unwrap_or_default().state();
        let member = status.member.clone().unwrap_or_default();
        if state == pb::AgentState::Running && member.reachable && member.version == target {
            assert_eq!(status.versions.unwrap_or_default().active, target);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the switch did not finish: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster.cleanup();
}
