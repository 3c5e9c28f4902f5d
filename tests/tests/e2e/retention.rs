//! Snapshot retention by owner: a backup job's snapshots never push out
//! an admin's or uploaded ones, and every removal is in the audit log.

use steward_proto::v1 as pb;
use steward_tests::cluster::ChannelIdentity;
use steward_tests::{ClusterBuilder, newest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_jobs_snapshots_push_out_only_its_own() {
    let cluster = ClusterBuilder::new(1, newest(3, 5)).retain_snapshots(3).start().await;
    let mut admin = cluster.snapshots(0).await;

    // An admin's snapshot, and two uploads of a copy of it.
    let taken = admin
        .take_snapshot(pb::TakeSnapshotRequest::default())
        .await
        .expect("an admin's snapshot")
        .into_inner()
        .snapshot
        .expect("info");
    let bytes = std::fs::read(&taken.path).expect("the stored snapshot");
    let trailer = hex::encode(&bytes[bytes.len() - 32..]);
    for id in ["uploaded-1", "uploaded-2"] {
        let header = pb::UploadSnapshotRequest {
            part: Some(pb::upload_snapshot_request::Part::Header(pb::SnapshotUploadHeader {
                id: id.into(),
                sha256: trailer.clone(),
                size: bytes.len() as u64,
                member_name: "m0".into(),
                ..pb::SnapshotUploadHeader::default()
            })),
        };
        let chunk = pb::UploadSnapshotRequest {
            part: Some(pb::upload_snapshot_request::Part::Chunk(bytes.clone().into())),
        };
        admin
            .upload_snapshot(tokio_stream::iter(vec![header, chunk]))
            .await
            .unwrap_or_else(|s| panic!("upload {id}: {s}"));
    }

    // A backup certificate takes five in a row.
    let pki = cluster.pki.as_ref().expect("mutual TLS");
    let channel = cluster
        .channel_with(0, Some(ChannelIdentity::Client(pki.client("backup"))))
        .await
        .expect("a channel as backup");
    let mut backup = pb::snapshots_client::SnapshotsClient::new(channel);
    let mut backups = Vec::new();
    for _ in 0..5 {
        let snapshot = backup
            .take_snapshot(pb::TakeSnapshotRequest::default())
            .await
            .expect("a backup's snapshot")
            .into_inner()
            .snapshot
            .expect("info");
        backups.push(snapshot.id);
    }

    let listed: Vec<String> = admin
        .list_snapshots(pb::ListSnapshotsRequest {})
        .await
        .expect("list")
        .into_inner()
        .snapshots
        .into_iter()
        .map(|s| s.id)
        .collect();
    for kept in [taken.id.as_str(), "uploaded-1", "uploaded-2"] {
        assert!(listed.iter().any(|id| id == kept), "{kept} was pushed out: {listed:?}");
    }
    for (i, id) in backups.iter().enumerate() {
        assert_eq!(listed.contains(id), i >= 2, "backup {i} ({id}) in {listed:?}");
    }
    // The two removals are in the audit log.
    let audit = std::fs::read_to_string(cluster.members[0].state_dir.join("audit.log")).expect("the audit log");
    let removed: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON"))
        .filter(|e| e["rpc"] == "RemoveSnapshot")
        .collect();
    assert_eq!(removed.len(), 2, "{audit}");
    assert_eq!(removed[0]["args"]["id"], backups[0].as_str());
    assert_eq!(removed[1]["args"]["id"], backups[1].as_str());
    assert!(removed.iter().all(|e| e["args"]["bucket"] == "backup"));
    cluster.cleanup();
}
