//! A 3-member etcd 3.4 cluster under three agents: every agent's GetStatus
//! reports real values for the agent, the process, the versions, the member,
//! the data dir and the disk; gRPC health (the member's own too, which
//! follows its etcd) and reflection are served.

use steward_proto::v1 as pb;
use steward_tests::{ClusterBuilder, newest};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_member_cluster_reports_real_status_everywhere() {
    let release = newest(3, 4);
    let cluster = ClusterBuilder::new(3, release.clone()).start().await;
    let version = release.version.to_string();

    let mut member_ids = Vec::new();
    let mut leaders = Vec::new();
    for i in 0..3 {
        let status = cluster.status(i).await;
        let agent = status.agent.expect("agent info");
        assert_eq!(agent.state(), pb::AgentState::Running);
        assert_eq!(agent.member_name, format!("m{i}"));
        assert_eq!(agent.version, env!("CARGO_PKG_VERSION"));
        assert!(agent.started_at.is_some());
        assert_eq!(agent.client_urls, [cluster.members[i].client_url.clone()]);

        let process = status.process.expect("process info");
        assert!(process.running);
        assert!(process.pid > 1);
        assert!(process.uptime.is_some());
        assert_eq!(process.restart_count, 0);
        assert!(!process.adopted);
        assert!(
            process.executable.ends_with(&format!("binaries/{version}/etcd")),
            "{}",
            process.executable
        );
        assert!(process.args.contains(&format!("--name=m{i}")), "{:?}", process.args);
        // The pid is etcd's: /proc agrees.
        let exe = std::fs::read_link(format!("/proc/{}/exe", process.pid)).expect("etcd process exists");
        assert_eq!(exe.display().to_string(), process.executable);

        let versions = status.versions.expect("versions");
        assert_eq!(versions.active, version);
        assert_eq!(versions.previous, "");
        assert_eq!(versions.staged, std::slice::from_ref(&version));

        let member = status.member.expect("member status");
        assert!(member.reachable, "{}", member.error);
        assert_eq!(member.version, version);
        assert_eq!(
            member.cluster_version,
            format!("{}.{}.0", release.version.major(), release.version.minor())
        );
        assert_ne!(member.member_id, 0);
        assert_ne!(member.cluster_id, 0);
        assert!(member.raft_term >= 2, "term {}", member.raft_term);
        assert!(member.raft_index > 0);
        assert!(member.raft_applied_index > 0, "3.4 reports the applied index");
        assert!(member.db_size > 0);
        assert!(member.db_size_in_use > 0, "3.4 reports the size in use");
        assert!(member.revision >= 1);
        assert!(member.errors.is_empty(), "{:?}", member.errors);
        member_ids.push(member.member_id);
        leaders.push((member.leader_id, member.is_leader));

        let data_dir = status.data_dir.expect("data dir facts");
        assert!(data_dir.initialised);
        assert!(data_dir.v3_db_present);
        assert_eq!(data_dir.path, cluster.members[i].data_dir.display().to_string());

        let disk = status.disk.expect("disk");
        assert!(disk.state_dir_free_bytes > 0 && disk.data_dir_free_bytes > 0);
    }
    member_ids.sort_unstable();
    member_ids.dedup();
    assert_eq!(member_ids.len(), 3, "three distinct members");
    let leader_id = leaders[0].0;
    assert!(
        leaders.iter().all(|(id, _)| *id == leader_id),
        "one leader: {leaders:x?}"
    );
    assert_eq!(
        leaders.iter().filter(|(_, is)| *is).count(),
        1,
        "exactly one member is the leader"
    );

    // gRPC health, per service.
    let mut health = HealthClient::new(cluster.channel(0).await);
    for service in [
        "",
        "steward.agent.v1.Agent",
        "steward.agent.v1.Binaries",
        "steward.agent.v1.Snapshots",
    ] {
        let answer = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|s| panic!("health of {service:?}: {s}"))
            .into_inner();
        assert_eq!(answer.status(), ServingStatus::Serving, "{service:?}");
    }

    // The member's own health: SERVING while its etcd runs, NOT_SERVING
    // once it is stopped (the agent's services keep serving), and back.
    let member_health = |mut health: HealthClient<tonic::transport::Channel>| async move {
        health
            .check(HealthCheckRequest {
                service: "steward.agent.v1.Member".into(),
            })
            .await
            .expect("the member's health")
            .into_inner()
            .status()
    };
    let wait_for = |want: ServingStatus| {
        let health = health.clone();
        async move {
            let began = std::time::Instant::now();
            loop {
                let now = member_health(health.clone()).await;
                if now == want {
                    return;
                }
                assert!(
                    began.elapsed() < std::time::Duration::from_secs(10),
                    "still {now:?}, not {want:?}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };
    wait_for(ServingStatus::Serving).await;
    let mut agent = pb::agent_client::AgentClient::new(cluster.channel(0).await);
    agent
        .stop(pb::StopRequest { fencing_token: 0 })
        .await
        .expect("stop m0's etcd");
    wait_for(ServingStatus::NotServing).await;
    let overall = HealthClient::new(cluster.channel(0).await)
        .check(HealthCheckRequest { service: String::new() })
        .await
        .expect("the agent's health")
        .into_inner();
    assert_eq!(
        overall.status(),
        ServingStatus::Serving,
        "the agent itself still serves"
    );
    agent
        .start(pb::StartRequest { fencing_token: 0 })
        .await
        .expect("start m0's etcd");
    wait_for(ServingStatus::Serving).await;

    // Reflection, v1 and v1alpha, lists the three services.
    let services = reflection_services(&cluster).await;
    let services_alpha = reflection_services_v1alpha(&cluster).await;
    for service in [
        "steward.agent.v1.Agent",
        "steward.agent.v1.Binaries",
        "steward.agent.v1.Snapshots",
    ] {
        assert!(
            services.iter().any(|s| s == service),
            "{service} missing from {services:?}"
        );
        assert!(
            services_alpha.iter().any(|s| s == service),
            "{service} missing from {services_alpha:?}"
        );
    }

    // The state dir and everything in it is the agent's alone.
    for i in 0..3 {
        let state_dir = &cluster.members[i].state_dir;
        assert_eq!(mode(state_dir), 0o700, "{}", state_dir.display());
        assert_eq!(mode(&state_dir.join("state.json")), 0o600);
        assert_eq!(mode(&state_dir.join("agent.lock")), 0o600);
    }
    cluster.cleanup();
}

/// Lists services through reflection; v1 and v1alpha have the same shape
/// in two generated modules.
macro_rules! list_services {
    ($cluster:expr, $version:ident) => {{
        use tonic_reflection::pb::$version::ServerReflectionRequest;
        use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;

        let mut client = ServerReflectionClient::new($cluster.channel(0).await);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = client
            .server_reflection_info(tokio_stream::once(request))
            .await
            .expect("reflection answers")
            .into_inner();
        let response = responses
            .message()
            .await
            .expect("a reflection response")
            .expect("not empty");
        match response.message_response {
            Some(MessageResponse::ListServicesResponse(list)) => {
                list.service.into_iter().map(|s| s.name).collect::<Vec<String>>()
            }
            other => panic!("unexpected reflection answer {other:?}"),
        }
    }};
}

async fn reflection_services(cluster: &steward_tests::Cluster) -> Vec<String> {
    list_services!(cluster, v1)
}

async fn reflection_services_v1alpha(cluster: &steward_tests::Cluster) -> Vec<String> {
    list_services!(cluster, v1alpha)
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}
