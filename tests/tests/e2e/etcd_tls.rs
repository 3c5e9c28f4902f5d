//! A cluster whose members serve TLS on their client and peer URLs and
//! require client certificates on both: the agents reach their members
//! with the members' certificates, steward reaches etcd with
//! `--cacert/--cert/--key` (here etcdctl's variables) and the agents with
//! mutual TLS, and the whole rolling upgrade 3.4 -> 3.5 runs under a writer
//! without losing a write.

use std::time::Duration;

use steward_tests::cluster::steward_command;
use steward_tests::{ClusterBuilder, Writer, lost_writes, newest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_upgrade_of_a_cluster_with_client_and_peer_tls() {
    let old = newest(3, 4);
    let new = newest(3, 5);
    let cluster = ClusterBuilder::new(3, old.clone()).etcd_tls().start().await;
    assert!(cluster.members.iter().all(|m| m.client_url.starts_with("https://")));
    let agents = cluster.agents_arg();

    // Without etcd's CA and a client certificate steward cannot talk to etcd.
    let plain = steward_command()
        .args(["status", "--agents", &agents])
        .env_remove("ETCDCTL_CACERT")
        .env_remove("ETCDCTL_CERT")
        .env_remove("ETCDCTL_KEY")
        .output()
        .expect("run steward");
    assert_ne!(plain.status.code(), Some(0));

    let status = steward_command()
        .args(["status", "--agents", &agents])
        .output()
        .expect("run steward");
    assert_eq!(
        status.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );

    let writer = Writer::start(cluster.all_client_urls(), "tls/").await;
    writer.wait_for_more(20, Duration::from_secs(30)).await;
    let to = new.version.to_string();
    let upgraded = steward_command()
        .args(["upgrade", "--agents", &agents, "--to", &to, "--probe", "-w", "json"])
        .output()
        .expect("run steward");
    assert_eq!(
        upgraded.status.code(),
        Some(0),
        "{}; {}",
        String::from_utf8_lossy(&upgraded.stderr),
        cluster.logs_hint()
    );
    writer.wait_for_more(20, Duration::from_secs(30)).await;
    let writes = writer.stop().await;
    let report: serde_json::Value = serde_json::from_slice(&upgraded.stdout).expect("report JSON");
    assert_eq!(report["result"], "succeeded");
    assert_eq!(report["cluster_version"], "3.5.0");
    for i in 0..3 {
        let status = cluster.status(i).await;
        let member = status.member.unwrap_or_default();
        assert_eq!(member.version, to);
        assert!(
            member.reachable,
            "the agent reaches its member over TLS: {}",
            member.error
        );
        let args = status.process.unwrap_or_default().args;
        for flag in ["--client-cert-auth", "--peer-client-cert-auth"] {
            assert!(args.iter().any(|a| a.starts_with(flag)), "{flag} in {args:?}");
        }
    }
    let mut client = cluster.etcd(&[0, 1, 2]).await;
    let lost = lost_writes(&mut client, "tls/", &writes).await;
    assert!(lost.is_empty(), "lost {} acknowledged writes", lost.len());
    cluster.cleanup();
}
