//! The coordinator's observation of a real cluster: members, leader,
//! versions, agents paired with members, health; and the preflight rules
//! refusing what they must when a member is down or has lost its agent.

use steward_coordinator::engine::cluster::observe::observe;
use steward_coordinator::engine::connect::agent::AgentAddress;
use steward_coordinator::engine::roll::plan::{Direction, plan};
use steward_coordinator::engine::roll::rules::{self, Request, Verdict, ids};
use steward_proto::v1 as pb;
use steward_tests::{ClusterBuilder, newest};

fn addresses(cluster: &steward_tests::Cluster) -> Vec<AgentAddress> {
    cluster
        .members
        .iter()
        .map(|m| m.agent_addr.parse().expect("agent address"))
        .collect()
}

fn verdict(checks: &[rules::Check], rule: &str) -> Verdict {
    checks.iter().find(|c| c.rule == rule).expect("check present").verdict
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observes_a_real_cluster_and_refuses_what_the_rules_refuse() {
    let old = newest(3, 4);
    let new = newest(3, 5);
    let mut cluster = ClusterBuilder::new(3, old.clone()).start().await;
    let agents = addresses(&cluster);

    let observation = observe(cluster.connector(), &agents, &[]).await.expect("observe");
    let observed = &observation.observed;
    assert_eq!(observed.members.len(), 3);
    for member in &observed.members {
        assert!(member.healthy, "{}: {}", member.name, member.health_error);
        assert!(member.agent.is_some(), "{} has its agent", member.name);
        assert_eq!(member.version.as_ref(), Some(&old.version));
        assert_eq!(member.agent_state, "running");
        assert!(member.staged.contains(&old.version));
        assert!(member.v3_db_present);
        assert!(member.applied_index > 0);
    }
    assert!(observed.leader().is_some(), "exactly one leader");
    assert_eq!(
        observed.cluster_version.as_ref().map(ToString::to_string).as_deref(),
        Some(format!("{}.{}.0", old.version.major(), old.version.minor()).as_str())
    );
    assert!(!observed.auth_enabled);
    assert!(observed.alarms.is_empty());
    assert!(observed.stray_agents.is_empty());

    let request = Request {
        available: vec![new.version.clone()],
        ..Request::default()
    };
    let checks = rules::preflight(
        observed,
        &request,
        &plan(observed, Direction::Upgrade, &new.version, &request.available),
    );
    assert!(!rules::refused(&checks), "{checks:#?}");

    // A member whose etcd is down: the health rule refuses.
    cluster
        .agent(2)
        .await
        .stop(pb::StopRequest::default())
        .await
        .expect("stop m2's etcd");
    let observed = observe(cluster.connector(), &agents, &[])
        .await
        .expect("observe")
        .observed;
    let m2 = observed.members.iter().find(|m| m.name == "m2").expect("m2 listed");
    assert!(!m2.healthy);
    assert!(!m2.health_error.is_empty());
    let checks = rules::preflight(
        &observed,
        &request,
        &plan(&observed, Direction::Upgrade, &new.version, &request.available),
    );
    assert_eq!(verdict(&checks, ids::HEALTH), Verdict::Fail);
    assert_eq!(
        verdict(&checks, ids::AGENTS_READY),
        Verdict::Fail,
        "m2's agent is stopped"
    );
    cluster
        .agent(2)
        .await
        .start(pb::StartRequest::default())
        .await
        .expect("start m2's etcd");
    cluster.wait_ready(std::time::Duration::from_secs(30)).await;

    // Observations keep one channel per agent rather than a TLS handshake
    // per agent per poll.
    assert_eq!(cluster.connector().session().kept(), 3, "one kept channel per agent");

    // A member whose agent is gone: the agents rule refuses, and the kept
    // channel does not hide why: the fresh connection's error is reported.
    cluster.kill_agent(1);
    let observation = observe(cluster.connector(), &agents, &[])
        .await
        .expect("observe without one agent");
    let why = observation.agents[1].status.as_ref().expect_err("m1's agent is gone");
    assert!(why.contains("cannot reach agent"), "{why}");
    assert_eq!(
        cluster.connector().session().kept(),
        2,
        "the dead agent's channel is dropped"
    );
    let observed = observation.observed;
    assert_eq!(
        observed.members.iter().find(|m| m.name == "m1").expect("m1").agent,
        None
    );
    let checks = rules::preflight(
        &observed,
        &request,
        &plan(&observed, Direction::Upgrade, &new.version, &request.available),
    );
    assert_eq!(verdict(&checks, ids::AGENTS), Verdict::Fail);
    cluster.cleanup();
}
