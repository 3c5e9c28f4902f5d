//! The engine used from Rust, as a program driving many clusters would:
//! two clusters with different agent CAs, different etcd CAs and (on one)
//! an etcd user, reached from one process through one connector each made
//! from its cluster file; one is upgraded while the other is backed up, at
//! the same time.

use steward_coordinator::engine::backup::{self, BackupRequest};
use steward_coordinator::engine::cluster::file::{ClusterFile, ClusterTarget};
use steward_coordinator::engine::cluster::observe::observe_target;
use steward_coordinator::engine::connect::Connector;
use steward_coordinator::engine::events::Discard;
use steward_coordinator::engine::report::RunContext;
use steward_coordinator::engine::roll::plan::Direction;
use steward_coordinator::engine::roll::{self, Outcome, RollOptions};
use steward_coordinator::engine::transfer::download::CopyTo;
use steward_tests::binaries::binaries_dir;
use steward_tests::fleet::write_cluster_file;
use steward_tests::{Cluster, ClusterBuilder, newest};

const PASSWORD: &str = "b-root-password";

async fn versions(cluster: &Cluster) -> Vec<String> {
    let mut versions = Vec::new();
    for i in 0..cluster.members.len() {
        versions.push(cluster.status(i).await.member.unwrap_or_default().version);
    }
    versions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_with_their_own_cas_one_upgraded_one_backed_up_at_once() {
    let old = newest(3, 4);
    let new = newest(3, 5);
    let a = ClusterBuilder::new(3, old.clone()).etcd_tls().start().await;
    let b = ClusterBuilder::new(3, old.clone())
        .etcd_tls()
        .member_auth("root", PASSWORD)
        .start()
        .await;
    // B runs with auth: steward must log in as root there, and only there.
    let mut client = b.etcd(&[0, 1, 2]).await;
    client.user_add("root", PASSWORD, None).await.expect("add root");
    client.user_grant_role("root", "root").await.expect("grant root");
    client.auth_enable().await.expect("enable auth");

    let work = tempfile::tempdir().expect("a work dir");
    let path_a = write_cluster_file(work.path(), "a", &a);
    let path_b = write_cluster_file(work.path(), "b", &b);
    std::fs::write(work.path().join("b.password"), format!("{PASSWORD}\n")).expect("password file");
    let target_a = ClusterTarget::from_file(&path_a, ClusterFile::load(&path_a).expect("a's cluster file"));
    let mut file_b = ClusterFile::load(&path_b).expect("b's cluster file");
    file_b.etcd.user = Some("root".into());
    file_b.etcd.password_file = Some("b.password".into());
    let target_b = ClusterTarget::from_file(&path_b, file_b);

    // Nothing process-wide: one connector per cluster, from its file.
    let base = Connector::default();
    let to_a = target_a.connector(&base).expect("a's connector");
    let to_b = target_b.connector(&base).expect("b's connector");
    assert!(
        observe_target(&to_a, &target_b).await.is_err(),
        "a's identity must not reach b: the CAs differ"
    );

    let agents_a = target_a.members.iter().map(|m| m.agent.clone()).collect();
    let options = RollOptions {
        context: RunContext::new(Some("a".into())),
        ..RollOptions::new(Direction::Upgrade, new.version.clone(), Some(binaries_dir()))
    };
    let copy = work.path().join("b.db");
    let mut discard = Discard;
    let upgrade_a = roll::run(&to_a, agents_a, options, &mut discard);
    let backup_b = async {
        let observation = observe_target(&to_b, &target_b).await.expect("observe b");
        let request = BackupRequest {
            member: None,
            out: Some(CopyTo::File(copy.clone())),
        };
        backup::backup(&to_b, &observation.observed, &request).await
    };
    let (report, backup) = tokio::join!(upgrade_a, backup_b);

    assert_eq!(report.result, Outcome::Succeeded, "{report:#?}; {}", a.logs_hint());
    assert_eq!(report.header.cluster.as_deref(), Some("a"));
    assert!(report.header.cluster_id.is_some() && report.header.fencing_token > 0);
    let backup = backup.unwrap_or_else(|e| panic!("b's backup: {e}; {}", b.logs_hint()));
    let size = std::fs::metadata(&copy).expect("the copy of b's snapshot").len();
    assert_eq!(size, backup.snapshot.size, "the verified copy is whole");
    assert_eq!(backup.copied_to.as_deref(), Some(copy.as_path()));

    let on = |v: &str| vec![v.to_owned(); 3];
    assert_eq!(versions(&a).await, on(&new.version.to_string()));
    assert_eq!(versions(&b).await, on(&old.version.to_string()), "b was only backed up");
}
