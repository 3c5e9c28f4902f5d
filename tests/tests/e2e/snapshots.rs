//! TakeSnapshot stores a verified snapshot with its metadata; the same
//! verifier catches a flipped byte and a truncation in a copy; Download
//! streams exactly the stored bytes; retention keeps the newest.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use steward_agent::snapshot::{VerifyError, verify_file};
use steward_proto::v1 as pb;
use steward_tests::{Cluster, ClusterBuilder, newest};
use tokio_stream::StreamExt;

async fn take(cluster: &Cluster) -> pb::SnapshotInfo {
    cluster
        .snapshots(0)
        .await
        .take_snapshot(pb::TakeSnapshotRequest::default())
        .await
        .unwrap_or_else(|s| panic!("snapshot: {s}; {}", cluster.logs_hint()))
        .into_inner()
        .snapshot
        .expect("snapshot info")
}

async fn download(cluster: &Cluster, id: &str) -> Result<(Option<pb::SnapshotInfo>, Vec<u8>), tonic::Status> {
    let mut stream = cluster
        .snapshots(0)
        .await
        .download_snapshot(pb::DownloadSnapshotRequest { id: id.to_owned() })
        .await?
        .into_inner();
    let mut info = None;
    let mut bytes = Vec::new();
    while let Some(message) = stream.next().await {
        let message = message?;
        if message.info.is_some() {
            assert!(info.is_none(), "info only in the first message");
            info = message.info;
        }
        bytes.extend_from_slice(&message.chunk);
    }
    Ok((info, bytes))
}

async fn snapshot_with_keys(release: steward_tests::Release) {
    let cluster = ClusterBuilder::new(1, release.clone())
        .retain_snapshots(2)
        .start()
        .await;
    let mut client = cluster.etcd(&[0]).await;
    let mut last_revision = 0;
    for i in 0..100 {
        let put = client
            .put(format!("snap/{i:03}"), format!("v{i}"), None)
            .await
            .expect("put");
        last_revision = put.header().expect("header").revision();
    }
    let member_id = cluster.status(0).await.member.unwrap_or_default().member_id;

    let info = take(&cluster).await;
    let path = Path::new(&info.path);
    assert!(path.starts_with(&cluster.members[0].state_dir), "{}", info.path);
    assert_eq!(std::fs::metadata(path).expect("file").len(), info.size);
    assert_eq!(
        std::fs::metadata(path).expect("file").permissions().mode() & 0o777,
        0o600
    );
    let verified = verify_file(path).expect("verified");
    assert_eq!(verified.sha256, info.sha256);
    assert!(
        info.revision >= last_revision,
        "revision {} < {last_revision}",
        info.revision
    );
    assert!(info.total_keys >= 100, "{} keys", info.total_keys);
    assert_eq!(info.etcd_version, release.version.to_string());
    assert_eq!(
        info.cluster_version,
        format!("{}.{}.0", release.version.major(), release.version.minor())
    );
    assert_eq!(info.member_name, "m0");
    assert_eq!(info.member_id, member_id);
    assert!(info.created_at.is_some());
    let meta = path.with_extension("json");
    assert!(meta.is_file(), "metadata next to the snapshot");

    assert_eq!(cluster.snapshot_list(0).await, std::slice::from_ref(&info));

    // Download streams the stored bytes exactly.
    let (first, bytes) = download(&cluster, &info.id).await.expect("download");
    assert_eq!(first.as_ref(), Some(&info));
    assert_eq!(bytes, std::fs::read(path).expect("read snapshot"));

    // The verifier catches damage in copies.
    let copy = cluster.dir().join("copy.db");
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x40;
    std::fs::write(&copy, &flipped).expect("write copy");
    assert!(matches!(verify_file(&copy), Err(VerifyError::Mismatch { .. })));
    std::fs::write(&copy, &bytes[..bytes.len() - 100]).expect("write copy");
    assert!(matches!(verify_file(&copy), Err(VerifyError::NoTrailer { .. })));

    // A damaged stored snapshot is refused for download.
    let mut damaged = bytes.clone();
    damaged[100] ^= 0x01;
    std::fs::write(path, &damaged).expect("damage the stored file");
    let status = download(&cluster, &info.id).await.expect_err("damaged");
    assert_eq!(status.code(), tonic::Code::DataLoss, "{status}");
    // So is one of another size, before a byte is sent.
    std::fs::write(path, &bytes[..bytes.len() - 512]).expect("truncate the stored file");
    let status = download(&cluster, &info.id).await.expect_err("truncated");
    assert_eq!(status.code(), tonic::Code::DataLoss, "{status}");
    assert!(status.message().contains("were recorded"), "{status}");
    std::fs::write(path, &bytes).expect("repair");

    // Bad ids.
    assert_eq!(
        download(&cluster, "no-such-id").await.expect_err("unknown").code(),
        tonic::Code::NotFound
    );
    assert_eq!(
        download(&cluster, "../state").await.expect_err("traversal").code(),
        tonic::Code::InvalidArgument
    );

    // Retention keeps the two newest.
    let second = take(&cluster).await;
    let third = take(&cluster).await;
    let listed = cluster.snapshot_list(0).await;
    let ids: Vec<&str> = listed.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, [third.id.as_str(), second.id.as_str()]);
    assert!(!meta.exists(), "the oldest snapshot is no longer described");
    // Its file goes in the background, after the call that took the third.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while path.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!path.exists(), "the oldest snapshot's file was removed");
    cluster.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_of_a_3_5_member_are_verified_and_streamed() {
    snapshot_with_keys(newest(3, 5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_of_a_3_4_member_are_verified_and_streamed() {
    snapshot_with_keys(newest(3, 4)).await;
}

/// Everything TakeAndSendSnapshot sent: the chunks, in order, the stored
/// snapshot's info, which must come last, and the CRC-32 sent with it.
async fn take_and_send(cluster: &Cluster) -> (Vec<u8>, pb::SnapshotInfo, Option<u32>) {
    use pb::take_and_send_snapshot_response::Part;
    let mut stream = cluster
        .snapshots(0)
        .await
        .take_and_send_snapshot(pb::TakeSnapshotRequest::default())
        .await
        .unwrap_or_else(|s| panic!("take and send: {s}; {}", cluster.logs_hint()))
        .into_inner();
    let mut bytes = Vec::new();
    let mut stored = None;
    let mut crc = None;
    // The empty chunk that marks the end of the chunks, with their CRC.
    let mut marked = None;
    while let Some(message) = stream.next().await {
        let message = message.expect("a message");
        match message.part {
            Some(Part::Chunk(chunk)) => {
                assert!(stored.is_none(), "no chunk after the stored snapshot's info");
                assert!(marked.is_none(), "no chunk after the one marked last");
                if let Some(crc) = message.chunks_crc32 {
                    assert!(chunk.is_empty(), "only the empty chunk after the last carries the CRC");
                    marked = Some(crc);
                }
                bytes.extend_from_slice(&chunk);
            }
            Some(Part::Stored(info)) => {
                stored = Some(info);
                crc = message.chunks_crc32;
            }
            None => panic!("a message with no part"),
        }
    }
    assert!(crc.is_some(), "the stored snapshot's info carries the CRC");
    assert_eq!(marked, crc, "the end of the chunks is marked with the same CRC");
    (bytes, stored.expect("the stored snapshot's info comes last"), crc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn take_and_send_streams_the_stored_bytes_and_a_caller_leaving_does_not_stop_it() {
    let cluster = ClusterBuilder::new(1, newest(3, 5)).retain_snapshots(5).start().await;
    let mut client = cluster.etcd(&[0]).await;
    // Several MiB: more than the agent buffers for a slow caller.
    let value = vec![b'x'; 1 << 20];
    for i in 0..8 {
        client.put(format!("big/{i}"), value.clone(), None).await.expect("put");
    }

    let (sent, stored, crc) = take_and_send(&cluster).await;
    let path = Path::new(&stored.path);
    assert_eq!(
        sent,
        std::fs::read(path).expect("the stored file"),
        "the caller got the stored bytes"
    );
    assert_eq!(sent.len() as u64, stored.size);
    assert_eq!(
        crc,
        Some(crc32fast::hash(&sent)),
        "the CRC-32 of exactly the chunks sent"
    );
    assert_eq!(verify_file(path).expect("verified").sha256, stored.sha256);
    assert!(stored.total_keys >= 8, "{stored:?}");
    assert_eq!(cluster.snapshot_list(0).await, std::slice::from_ref(&stored));
    let audit = std::fs::read_to_string(cluster.members[0].state_dir.join("audit.log")).expect("the audit log");
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"TakeAndSendSnapshot\"") && l.contains(&stored.id)),
        "audited with its id: {audit}"
    );

    // A caller that reads one chunk and goes away: the snapshot is still
    // taken, verified and stored.
    let mut stream = cluster
        .snapshots(0)
        .await
        .take_and_send_snapshot(pb::TakeSnapshotRequest::default())
        .await
        .expect("take and send")
        .into_inner();
    let first = stream.next().await.expect("a first message").expect("a chunk");
    assert!(matches!(
        first.part,
        Some(pb::take_and_send_snapshot_response::Part::Chunk(_))
    ));
    drop(stream);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let second = loop {
        let listed = cluster.snapshot_list(0).await;
        if let Some(newer) = listed.iter().find(|s| s.id != stored.id) {
            break newer.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no snapshot stored after the caller left; {}",
            cluster.logs_hint()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(
        verify_file(Path::new(&second.path)).expect("verified").sha256,
        second.sha256
    );

    // The caller's fencing token is checked like TakeSnapshot's: one
    // older than the newest the agent has seen is refused, and nothing is
    // taken.
    // A token is a revision of the cluster (where a lock was created).
    let token = {
        let mut client = cluster.etcd(&[0]).await;
        let put = client.put("snapshots/token", "x", None).await.expect("a write");
        put.header()
            .map(etcd_client::ResponseHeader::revision)
            .expect("a revision")
    };
    let mut snapshots = cluster.snapshots(0).await;
    snapshots
        .take_snapshot(pb::TakeSnapshotRequest { fencing_token: token })
        .await
        .expect("a snapshot with the newest token");
    let before = cluster.snapshot_list(0).await.len();
    let refused = snapshots
        .take_and_send_snapshot(pb::TakeSnapshotRequest {
            fencing_token: token - 1,
        })
        .await
        .expect_err("a stale token");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused}");
    assert_eq!(cluster.snapshot_list(0).await.len(), before, "nothing taken");
    cluster.cleanup();
}
