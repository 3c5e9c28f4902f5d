//! Mutual TLS on the agent API, over real TLS connections to real agents:
//! every RPC refuses a caller without a client certificate
//! (UNAUTHENTICATED), and the TLS handshake one with a certificate from
//! another CA or an expired one; roles limit what a valid caller may do
//! (PERMISSION_DENIED naming the role needed); the audit log records every
//! call of an identified caller that changes something, refused ones
//! included; and `steward` works with its identity given by flags or by the
//! cluster file.

use std::process::{Command, Output};

use steward_proto::Role;
use steward_proto::v1 as pb;
use steward_proto::v1::{
    agent_client::AgentClient, binaries_client::BinariesClient, snapshots_client::SnapshotsClient,
};
use steward_tests::cluster::{ChannelIdentity, steward_binary};
use steward_tests::tls_probe::{Probe, probe, tls_connector};
use steward_tests::{Cluster, ClusterBuilder, newest};
use tonic::Code;
use tonic::transport::Channel;

/// Calls every RPC of the three services once; the code each answered
/// with (Ok for success).
async fn call_every_rpc(channel: &Channel) -> Vec<(&'static str, Code)> {
    let mut agent = AgentClient::new(channel.clone());
    let mut binaries = BinariesClient::new(channel.clone());
    let mut snapshots = SnapshotsClient::new(channel.clone());
    fn code<T>(result: Result<T, tonic::Status>) -> Code {
        result.map_or_else(|s| s.code(), |_| Code::Ok)
    }
    let upload = tokio_stream::iter(vec![pb::UploadBinaryRequest {
        part: Some(pb::upload_binary_request::Part::Header(pb::UploadHeader::default())),
    }]);
    vec![
        ("GetStatus", code(agent.get_status(pb::GetStatusRequest {}).await)),
        (
            "CheckFlags",
            code(agent.check_flags(pb::CheckFlagsRequest::default()).await),
        ),
        ("Activate", code(agent.activate(pb::ActivateRequest::default()).await)),
        ("Rollback", code(agent.rollback(pb::RollbackRequest::default()).await)),
        ("Start", code(agent.start(pb::StartRequest::default()).await)),
        ("Stop", code(agent.stop(pb::StopRequest::default()).await)),
        ("Restart", code(agent.restart(pb::RestartRequest::default()).await)),
        ("TailLogs", code(agent.tail_logs(pb::TailLogsRequest::default()).await)),
        (
            "ListBinaries",
            code(binaries.list_binaries(pb::ListBinariesRequest {}).await),
        ),
        (
            "ImportBinary",
            code(binaries.import_binary(pb::ImportBinaryRequest::default()).await),
        ),
        ("UploadBinary", code(binaries.upload_binary(upload).await)),
        (
            "TakeSnapshot",
            code(snapshots.take_snapshot(pb::TakeSnapshotRequest::default()).await),
        ),
        (
            "ListSnapshots",
            code(snapshots.list_snapshots(pb::ListSnapshotsRequest {}).await),
        ),
        (
            "DownloadSnapshot",
            code(
                snapshots
                    .download_snapshot(pb::DownloadSnapshotRequest::default())
                    .await,
            ),
        ),
    ]
}

async fn connect(cluster: &Cluster, identity: ChannelIdentity) -> Channel {
    cluster
        .channel_with(0, Some(identity))
        .await
        .unwrap_or_else(|e| panic!("the TLS handshake itself should succeed: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_refuses_a_caller_it_cannot_identify() {
    let cluster = ClusterBuilder::new(1, newest(3, 5)).start().await;
    let pki = cluster.pki.clone().expect("pki");
    let before = cluster.status(0).await;

    // Without a certificate: the handshake completes, every call is
    // refused with a clear UNAUTHENTICATED, health too (unless the config
    // opens it).
    let channel = connect(&cluster, ChannelIdentity::NoCertificate(pki.ca_cert())).await;
    for (rpc, code) in call_every_rpc(&channel).await {
        assert_eq!(code, Code::Unauthenticated, "{rpc} without a certificate");
    }
    let status = AgentClient::new(channel.clone())
        .get_status(pb::GetStatusRequest {})
        .await
        .expect_err("no certificate");
    assert!(
        status
            .message()
            .contains("client certificate signed by the agent's client CA is required"),
        "{}",
        status.message()
    );
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect_err("health needs a certificate unless the config opens it");
    assert_eq!(status.code(), Code::Unauthenticated);

    // A certificate of another CA, or an expired one: refused in the TLS
    // handshake, before any call is read; the caller's own is served.
    let address = cluster.members[0].agent_addr.parse().expect("the agent's address");
    for (who, files, expected) in [
        (
            "a certificate from another CA",
            pki.foreign(Role::Admin, "intruder"),
            Probe::Refused,
        ),
        (
            "an expired certificate",
            pki.expired(Role::Admin, "old-admin"),
            Probe::Refused,
        ),
        ("the admin's certificate", pki.client("admin"), Probe::Served),
    ] {
        assert_eq!(probe(address, &tls_connector(&files)).await, expected, "{who}");
    }
    // What steward says when its own certificate is refused.
    let expired = pki.client("old-admin");
    let said = Command::new(steward_binary())
        .args(["agent", "status", "--agent", &cluster.members[0].agent_addr])
        .env("STEWARD_AGENT_CACERT", &expired.cacert)
        .env("STEWARD_AGENT_CERT", &expired.cert)
        .env("STEWARD_AGENT_KEY", &expired.key)
        .output()
        .expect("run steward");
    let stderr = String::from_utf8_lossy(&said.stderr);
    assert_eq!(said.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refused this caller's certificate in the TLS handshake"),
        "{stderr}"
    );
    // Plaintext does not even get a gRPC answer.
    let plain = cluster.channel_with(0, None).await;
    if let Ok(channel) = plain {
        assert!(
            AgentClient::new(channel)
                .get_status(pb::GetStatusRequest {})
                .await
                .is_err()
        );
    }
    // Nobody was identified, so the audit log has nothing to say: the
    // refusals are counted and logged in aggregate instead.
    let lines = std::fs::read_to_string(cluster.members[0].state_dir.join("audit.log")).unwrap_or_default();
    assert!(lines.is_empty(), "{lines}");
    // Nothing changed: the same etcd process, still running.
    let after = cluster.status(0).await;
    assert_eq!(
        before.process.unwrap_or_default().pid,
        after.process.unwrap_or_default().pid
    );
    cluster.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_limit_what_a_caller_may_do() {
    let cluster = ClusterBuilder::new(1, newest(3, 5)).start().await;
    let pki = cluster.pki.clone().expect("pki");
    let as_role = |name: &str| ChannelIdentity::Client(pki.client(name));

    let reader = connect(&cluster, as_role("reader")).await;
    AgentClient::new(reader.clone())
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("a reader reads status");
    SnapshotsClient::new(reader.clone())
        .list_snapshots(pb::ListSnapshotsRequest {})
        .await
        .expect("a reader lists snapshots");
    let denied = AgentClient::new(reader.clone())
        .activate(pb::ActivateRequest::default())
        .await
        .expect_err("a reader may not activate");
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(
        denied.message().contains("needs the role admin"),
        "{}",
        denied.message()
    );
    assert!(denied.message().contains("has the role reader"), "{}", denied.message());
    let denied = SnapshotsClient::new(reader)
        .take_snapshot(pb::TakeSnapshotRequest::default())
        .await
        .expect_err("a reader may not take snapshots");
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(
        denied.message().contains("admin or operator or backup"),
        "{}",
        denied.message()
    );

    let backup = connect(&cluster, as_role("backup")).await;
    let taken = SnapshotsClient::new(backup.clone())
        .take_snapshot(pb::TakeSnapshotRequest::default())
        .await
        .expect("a backup caller takes a snapshot")
        .into_inner();
    assert!(taken.snapshot.is_some());
    let denied = AgentClient::new(backup.clone())
        .activate(pb::ActivateRequest::default())
        .await
        .expect_err("a backup caller may not activate");
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(
        denied.message().contains("needs the role admin"),
        "{}",
        denied.message()
    );
    // Status, to find the leader, but not the binaries.
    AgentClient::new(backup.clone())
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("a backup caller reads the status");
    let denied = BinariesClient::new(backup)
        .list_binaries(pb::ListBinariesRequest {})
        .await
        .expect_err("a backup caller may not list binaries");
    assert_eq!(denied.code(), Code::PermissionDenied);

    let operator = connect(&cluster, as_role("operator")).await;
    AgentClient::new(operator.clone())
        .check_flags(pb::CheckFlagsRequest {
            target_version: newest(3, 5).version.to_string(),
            from_version: String::new(),
        })
        .await
        .expect("an operator checks flags");
    let denied = AgentClient::new(operator)
        .stop(pb::StopRequest::default())
        .await
        .expect_err("an operator may not stop etcd");
    assert_eq!(denied.code(), Code::PermissionDenied);

    // Every refused call left etcd as it was.
    assert_eq!(
        cluster.status(0).await.agent.unwrap_or_default().state,
        pb::AgentState::Running as i32
    );

    // The audit log has one line per call that changes something or takes
    // a copy, refused ones included, and none for reads.
    let lines = audit_log(&cluster, 0);
    let summary: Vec<(String, String, String)> = lines
        .iter()
        .map(|l| {
            (
                l["rpc"].as_str().unwrap_or_default().to_owned(),
                l["caller"].as_str().unwrap_or_default().to_owned(),
                l["outcome"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let expect = [
        ("Activate", "CN=reader", "PermissionDenied"),
        ("TakeSnapshot", "CN=reader", "PermissionDenied"),
        ("TakeSnapshot", "CN=backup", "ok"),
        ("Activate", "CN=backup", "PermissionDenied"),
        ("Stop", "CN=operator", "PermissionDenied"),
    ];
    assert_eq!(summary.len(), expect.len(), "{summary:#?}");
    for ((rpc, caller, outcome), (want_rpc, want_caller, want_outcome)) in summary.iter().zip(expect) {
        assert_eq!(rpc, want_rpc, "{summary:#?}");
        assert!(caller.contains(want_caller), "{summary:#?}");
        assert!(outcome.starts_with(want_outcome), "{summary:#?}");
    }
    let taken = &lines[2];
    assert_eq!(taken["role"], "backup");
    assert!(taken["args"]["id"].as_str().is_some_and(|id| !id.is_empty()), "{taken}");
    cluster.cleanup();
}

/// The audit log of member `i`'s agent, line by line.
fn audit_log(cluster: &Cluster, i: usize) -> Vec<serde_json::Value> {
    let path = cluster.members[i].state_dir.join("audit.log");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

fn steward(args: &[String]) -> Output {
    Command::new(steward_binary())
        .args(args)
        .env_remove("STEWARD_AGENT_CACERT")
        .env_remove("STEWARD_AGENT_CERT")
        .env_remove("STEWARD_AGENT_KEY")
        .output()
        .expect("run steward")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steward_calls_agents_with_its_certificate() {
    let cluster = ClusterBuilder::new(3, newest(3, 4)).start().await;
    let pki = cluster.pki.clone().expect("pki");
    let agents = cluster.agents_arg();
    let identity = |name: &str| {
        let files = pki.client(name);
        vec![
            "--agent-cacert".to_owned(),
            files.cacert.display().to_string(),
            "--agent-cert".to_owned(),
            files.cert.display().to_string(),
            "--agent-key".to_owned(),
            files.key.display().to_string(),
        ]
    };
    let mut status = vec!["status".to_owned(), "--agents".to_owned(), agents.clone()];
    let plain = steward(&status);
    assert_eq!(
        plain.status.code(),
        Some(1),
        "without an identity the agents answer nothing"
    );
    status.extend(identity("reader"));
    let read = steward(&status);
    assert_eq!(read.status.code(), Some(0), "{}", String::from_utf8_lossy(&read.stderr));

    // The backup role runs `steward backup`, which reads every agent's
    // status first, and gets its verified copy.
    let scratch = tempfile::tempdir().expect("scratch");
    let out = scratch.path().join("as-backup.db");
    let mut backup = vec![
        "backup".to_owned(),
        "--agents".to_owned(),
        agents.clone(),
        "--out".to_owned(),
        out.display().to_string(),
    ];
    backup.extend(identity("backup"));
    let taken = steward(&backup);
    assert_eq!(
        taken.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&taken.stderr)
    );
    assert!(steward_agent::snapshot::verify_file(&out).is_ok());

    // A reader cannot upgrade: the first call that changes something is
    // refused, and nothing changed.
    let to = newest(3, 5).version.to_string();
    let mut upgrade = vec![
        "upgrade".to_owned(),
        "--agents".to_owned(),
        agents.clone(),
        "--to".to_owned(),
        to.clone(),
        "-w".to_owned(),
        "json".to_owned(),
    ];
    let mut as_reader = upgrade.clone();
    as_reader.extend(identity("reader"));
    let refused = steward(&as_reader);
    assert_ne!(refused.status.code(), Some(0));
    let report = String::from_utf8_lossy(&refused.stdout);
    assert!(
        report.contains("PermissionDenied") || report.contains("needs the role"),
        "{report}"
    );
    for i in 0..3 {
        assert_eq!(
            cluster.status(i).await.member.unwrap_or_default().version,
            newest(3, 4).version.to_string()
        );
    }

    // The whole rolling upgrade as admin, every agent over mutual TLS.
    upgrade.extend(identity("admin"));
    let upgraded = steward(&upgrade);
    assert_eq!(
        upgraded.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&upgraded.stderr)
    );
    for i in 0..3 {
        assert_eq!(cluster.status(i).await.member.unwrap_or_default().version, to);
        // Each agent wrote down who switched it, with the coordinator's
        // fencing token.
        let lines = audit_log(&cluster, i);
        let activate = lines
            .iter()
            .find(|l| l["rpc"] == "Activate" && l["outcome"] == "ok")
            .unwrap_or_else(|| panic!("no Activate in the audit log of m{i}: {lines:#?}"));
        assert!(
            activate["caller"].as_str().unwrap_or_default().contains("CN=admin"),
            "{activate}"
        );
        assert_eq!(activate["role"], "admin");
        assert_eq!(activate["args"]["version"], to.as_str());
        assert!(activate["fencing_token"].as_i64().unwrap_or(0) > 0, "{activate}");
        assert!(
            lines.iter().any(|l| l["rpc"] == "ImportBinary" && l["outcome"] == "ok"),
            "{lines:#?}"
        );
    }
    cluster.cleanup();
}
