//! Uploads cannot hold the agent's disk or descriptors: a stream that
//! stalls is cut and its part file removed, and uploads that together
//! declare more than the disk has are refused before they start.

use std::time::{Duration, Instant};

use steward_proto::v1 as pb;
use steward_tests::{ClusterBuilder, newest};
use tonic::Code;

fn header(id: &str, size: u64) -> pb::UploadSnapshotRequest {
    pb::UploadSnapshotRequest {
        part: Some(pb::upload_snapshot_request::Part::Header(pb::SnapshotUploadHeader {
            id: id.into(),
            sha256: "ab".repeat(32),
            size,
            member_name: "m0".into(),
            etcd_version: "3.5.30".into(),
            cluster_version: "3.5.0".into(),
            ..pb::SnapshotUploadHeader::default()
        })),
    }
}

fn chunk(bytes: usize) -> pb::UploadSnapshotRequest {
    pb::UploadSnapshotRequest {
        part: Some(pb::upload_snapshot_request::Part::Chunk(vec![0_u8; bytes].into())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_uploads_are_cut_and_space_is_reserved() {
    let cluster = ClusterBuilder::new(1, newest(3, 5))
        .limit("upload_stall_timeout", "\"2s\"")
        .state_dir_on_tmpfs(0, "400m")
        .start()
        .await;
    let snapshots_dir = cluster.members[0].state_dir.join("snapshots");

    // A stream that sends its header and one chunk, then nothing.
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    sender.send(header("stalled", 1 << 20)).await.expect("send");
    sender.send(chunk(1024)).await.expect("send");
    let mut client = cluster.snapshots(0).await;
    let began = Instant::now();
    let cut = tokio::time::timeout(
        Duration::from_secs(20),
        client.upload_snapshot(tokio_stream::wrappers::ReceiverStream::new(receiver)),
    )
    .await
    .expect("the agent cuts a stalled upload")
    .expect_err("cut");
    assert_eq!(cut.code(), Code::DeadlineExceeded, "{cut}");
    assert!(cut.message().contains("sent nothing"), "{}", cut.message());
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "cut after {:?}",
        began.elapsed()
    );
    assert!(
        !snapshots_dir.join("stalled.db.part").exists(),
        "the part file is removed"
    );
    drop(sender);

    // Two uploads that each fit, but not together: the second is refused
    // at once, while the first holds its reservation.
    let free = {
        let stats = nix::sys::statvfs::statvfs(&snapshots_dir).expect("statvfs");
        stats.blocks_available() * stats.fragment_size()
    };
    let headroom = 64 * 1024 * 1024;
    let each = (free - headroom) * 2 / 3;
    let (first, first_messages) = tokio::sync::mpsc::channel(4);
    first.send(header("first", each)).await.expect("send");
    first.send(chunk(1024)).await.expect("send");
    let mut first_client = cluster.snapshots(0).await;
    let first_call = tokio::spawn(async move {
        first_client
            .upload_snapshot(tokio_stream::wrappers::ReceiverStream::new(first_messages))
            .await
    });
    // The first is admitted once its part file exists.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !snapshots_dir.join("first.db.part").exists() {
        assert!(Instant::now() < deadline, "the first upload was not admitted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = client
        .upload_snapshot(tokio_stream::iter(vec![header("second", each), chunk(1024)]))
        .await
        .expect_err("no room for both");
    assert_eq!(second.code(), Code::ResourceExhausted, "{second}");
    assert!(second.message().contains("reserve"), "{}", second.message());
    assert!(!snapshots_dir.join("second.db.part").exists());
    drop(first);
    let _ = first_call.await;
    cluster.cleanup();
}
