//! Fencing tokens come from the cluster lock, and only an admin's move the
//! agent's mark: a backup (or reader, or operator) certificate sending an
//! absurd token cannot lock coordinators out; an admin's token above the
//! cluster's revision is refused; and a mark poisoned by an earlier agent
//! heals at the next admin call, without editing any file.

use steward_proto::v1 as pb;
use steward_tests::cluster::ChannelIdentity;
use steward_tests::{Cluster, ClusterBuilder, newest};
use tonic::Code;

async fn snapshots_as(
    cluster: &Cluster,
    name: &str,
) -> pb::snapshots_client::SnapshotsClient<tonic::transport::Channel> {
    let pki = cluster.pki.as_ref().expect("mutual TLS");
    let channel = cluster
        .channel_with(0, Some(ChannelIdentity::Client(pki.client(name))))
        .await
        .unwrap_or_else(|e| panic!("a channel as {name}: {e}"));
    pb::snapshots_client::SnapshotsClient::new(channel)
}

async fn take(
    client: &mut pb::snapshots_client::SnapshotsClient<tonic::transport::Channel>,
    fencing_token: i64,
) -> Result<(), tonic::Status> {
    client
        .take_snapshot(pb::TakeSnapshotRequest { fencing_token })
        .await
        .map(|_| ())
}

/// The cluster's revision now, as a coordinator's new lock would see it.
async fn revision(cluster: &Cluster) -> i64 {
    let mut client = cluster.etcd(&[0]).await;
    let put = client.put("fencing/now", "x", None).await.expect("a write");
    put.header()
        .map(etcd_client::ResponseHeader::revision)
        .expect("a revision")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_admin_moves_the_fencing_mark_and_never_past_the_cluster() {
    let mut cluster = ClusterBuilder::new(1, newest(3, 5)).start().await;

    // A backup certificate with the largest token: its snapshot may be
    // taken, but the mark does not move.
    let mut backup = snapshots_as(&cluster, "backup").await;
    let _ = take(&mut backup, i64::MAX).await;
    let mut admin = snapshots_as(&cluster, "admin").await;
    let token = revision(&cluster).await;
    take(&mut admin, token)
        .await
        .unwrap_or_else(|s| panic!("a backup certificate blocked the admin: {s}"));
    // Now the admin's token is the mark: an older one is stale, for anyone.
    let stale = take(&mut admin, token - 1).await.expect_err("stale");
    assert_eq!(stale.code(), Code::FailedPrecondition);
    assert!(stale.message().contains("stale fencing token"), "{}", stale.message());

    // An admin's token above the cluster's revision was made by no lock.
    let ahead = take(&mut admin, i64::MAX).await.expect_err("ahead of the cluster");
    assert_eq!(ahead.code(), Code::FailedPrecondition);
    assert!(
        ahead.message().contains("above the cluster's current revision"),
        "{}",
        ahead.message()
    );

    // A mark poisoned by an earlier agent (any caller could raise it):
    // the next admin call lowers it to the cluster's revision and passes.
    cluster.kill_agent(0);
    let state_path = cluster.members[0].state_dir.join("state.json");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).expect("state.json")).expect("JSON");
    state["fencing_token"] = serde_json::json!(i64::MAX);
    std::fs::write(&state_path, serde_json::to_vec_pretty(&state).expect("JSON")).expect("write state.json");
    cluster.start_agent(0);
    cluster.wait_ready(std::time::Duration::from_secs(30)).await;
    let mut admin = snapshots_as(&cluster, "admin").await;
    let token = revision(&cluster).await;
    take(&mut admin, token)
        .await
        .unwrap_or_else(|s| panic!("the poisoned mark did not heal: {s}"));
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).expect("state.json")).expect("JSON");
    assert_eq!(state["fencing_token"], token, "the admin's token is the mark again");
    cluster.cleanup();
}
