//! Every string a caller sends has a limit: a value over it is refused
//! INVALID_ARGUMENT naming the field and its limit, without being echoed,
//! and the audit line stays short.

use steward_proto::v1 as pb;
use steward_tests::{ClusterBuilder, newest};
use tonic::Code;

fn refused_naming(result: Result<impl std::fmt::Debug, tonic::Status>, field: &str) {
    let status = result.expect_err("over the limit");
    assert_eq!(status.code(), Code::InvalidArgument, "{field}: {}", status.code());
    assert!(status.message().contains(field), "{}", status.message());
    assert!(status.message().contains("at most"), "{}", status.message());
    assert!(
        status.message().len() < 300,
        "the value is not echoed: {} bytes",
        status.message().len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_strings_are_refused_by_field_and_leave_short_audit_lines() {
    let cluster = ClusterBuilder::new(1, newest(3, 5)).start().await;
    let huge = "x".repeat(100 * 1024);
    let mut agent = cluster.agent(0).await;
    let mut binaries = cluster.binaries(0).await;
    let mut snapshots = cluster.snapshots(0).await;

    refused_naming(
        agent
            .restore_member(pb::RestoreMemberRequest {
                restore_id: "r1".into(),
                snapshot_id: "s1".into(),
                version: "3.5.30".into(),
                initial_cluster: huge.clone(),
                initial_cluster_token: "t".into(),
                dry_run: true,
                ..pb::RestoreMemberRequest::default()
            })
            .await,
        "initial_cluster",
    );
    refused_naming(
        agent
            .activate(pb::ActivateRequest {
                version: huge.clone(),
                ..pb::ActivateRequest::default()
            })
            .await,
        "version",
    );
    refused_naming(
        binaries
            .import_binary(pb::ImportBinaryRequest {
                path: format!("/{huge}"),
                ..pb::ImportBinaryRequest::default()
            })
            .await,
        "path",
    );
    refused_naming(
        snapshots
            .pin_snapshot(pb::PinSnapshotRequest {
                id: huge.clone(),
                ..pb::PinSnapshotRequest::default()
            })
            .await,
        "id",
    );
    refused_naming(
        agent
            .check_flags(pb::CheckFlagsRequest {
                target_version: huge.clone(),
                ..pb::CheckFlagsRequest::default()
            })
            .await,
        "target_version",
    );

    let audit = std::fs::read_to_string(cluster.members[0].state_dir.join("audit.log")).expect("the audit log");
    let lines: Vec<&str> = audit.lines().collect();
    assert_eq!(
        lines.len(),
        4,
        "RestoreMember, Activate, ImportBinary, PinSnapshot: {lines:#?}"
    );
    for line in lines {
        assert!(line.len() < 2048, "an audit line of {} bytes", line.len());
        assert!(line.contains("InvalidArgument"), "{line}");
    }
    cluster.cleanup();
}
