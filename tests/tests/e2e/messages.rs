//! What steward says when something is off, as operators read it: an
//! agent that does not answer is named with its address and the
//! connection error (mid-roll, in status, in preflight), without facts
//! derived from its silence; a wait for another holder's lock says who
//! holds it and until when; a directory without binaries is named; a
//! normal roll warns about nothing.

use std::process::Output;
use std::time::Duration;

use etcd_client::{PutOptions, Txn, TxnOp};
use steward_tests::cluster::steward;
use steward_tests::{ClusterBuilder, coordinator, newest};

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_goes_down_mid_roll_is_named_with_its_address_and_error() {
    let mut cluster = ClusterBuilder::new(3, newest(3, 4)).start().await;
    let agents = cluster.agents_arg();
    let to = newest(3, 5).version.to_string();
    let leader = cluster.leader_index().await;
    let leader_agent = cluster.members[leader].agent_addr.clone();
    let leader_name = cluster.members[leader].name.clone();
    // The leader changes last: its agent is gone long before its turn.
    let roll = coordinator::start(&["upgrade", "--agents", &agents, "--to", &to]);
    roll.wait_for("member_done");
    cluster.kill_agent(leader);
    let failed = roll.wait_for("failed");
    let (status, report) = roll.finish();
    assert_eq!(status.code(), Some(1), "{report}");
    let reason = failed["reason"].as_str().unwrap_or_default();
    assert_eq!(failed["member"], leader_name.as_str(), "{failed}");
    assert!(
        reason.contains(&format!(
            "{leader_name} has no agent: its agent {leader_agent} does not answer"
        )),
        "{reason}"
    );
    assert!(
        reason.to_lowercase().contains("connection refused"),
        "the connection error: {reason}"
    );
    assert!(!reason.contains("address is empty"), "{reason}");
    cluster.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_agent_port_is_named_and_no_free_space_is_made_up() {
    let cluster = ClusterBuilder::new(3, newest(3, 4)).start().await;
    let leader = cluster.leader_index().await;
    let wrong = steward_tests::ports::lease();
    let wrong_address = format!("127.0.0.1:{}", wrong.port());
    let agents: Vec<String> = cluster
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if i == leader {
                wrong_address.clone()
            } else {
                m.agent_addr.clone()
            }
        })
        .collect();
    let agents = agents.join(",");
    let name = cluster.members[leader].name.clone();
    let expected = format!("{name} has no agent: its agent {wrong_address} does not answer");

    let status = steward(&["status", "--agents", &agents]);
    let text = format!("{}{}", String::from_utf8_lossy(&status.stdout), stderr(&status));
    assert_eq!(status.status.code(), Some(1), "{text}");
    assert!(text.contains(&expected), "status: {text}");

    let upgrade = steward(&[
        "upgrade",
        "--agents",
        &agents,
        "--to",
        &newest(3, 5).version.to_string(),
    ]);
    let text = stderr(&upgrade);
    assert_eq!(upgrade.status.code(), Some(3), "{text}");
    assert!(text.contains("every-member-has-agent"), "{text}");
    assert!(
        text.contains(&format!("{name} (its agent {wrong_address} does not answer")),
        "preflight: {text}"
    );
    assert!(!text.contains("0 bytes free"), "no made-up free space: {text}");
    assert!(
        text.contains(&format!(
            "cannot tell whether the leader {name} has room for the snapshot"
        )),
        "{text}"
    );
    drop(wrong);
    cluster.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_for_another_holders_lock_says_who_and_until_when() {
    let cluster = ClusterBuilder::new(3, newest(3, 5)).start().await;
    let agents = cluster.agents_arg();
    // A holder on another host whose lease nobody renews.
    let mut client = cluster.etcd(&[0, 1, 2]).await;
    let lease = client.lease_grant(10, None).await.expect("lease").id();
    let holder = r#"{"host":"elsewhere","pid":4242,"command":"upgrade to 3.5.99","since":"2026-01-01T00:00:00Z"}"#;
    let txn = Txn::new().and_then([TxnOp::put(
        "/steward/lock",
        holder,
        Some(PutOptions::new().with_lease(lease)),
    )]);
    client.txn(txn).await.expect("write the lock");
    let version = newest(3, 5).version.to_string();
    let began = std::time::Instant::now();
    let rerun = steward(&["upgrade", "--agents", &agents, "--to", &version]);
    let text = stderr(&rerun);
    assert_eq!(rerun.status.code(), Some(0), "{text}");
    assert!(
        text.contains(
            "the cluster lock is held by upgrade to 3.5.99 (pid 4242 on elsewhere, since 2026-01-01T00:00:00Z)"
        ),
        "who: {text}"
    );
    assert!(text.contains("unless renewed: watching 6s whether it is"), "{text}");
    assert!(
        text.contains("does not renew its lease: waiting") && text.contains("to expire (at 20"),
        "until when: {text}"
    );
    assert!(began.elapsed() >= Duration::from_secs(6), "it waited for the lease");
    cluster.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_normal_roll_warns_about_nothing_and_missing_binaries_name_their_directory() {
    let cluster = ClusterBuilder::new(3, newest(3, 4)).start().await;
    let agents = cluster.agents_arg();
    let to = newest(3, 5).version.to_string();

    let empty = cluster.dir().join("empty-binaries");
    std::fs::create_dir(&empty).expect("an empty dir");
    for (dir, said) in [
        (cluster.dir().join("no-binaries-here"), "the directory does not exist"),
        (empty, "it holds no such version dir"),
    ] {
        let dir = dir.display().to_string();
        let refused = steward(&["upgrade", "--agents", &agents, "--to", &to, "--binaries", &dir]);
        let text = stderr(&refused);
        assert_eq!(refused.status.code(), Some(3), "{text}");
        assert!(text.contains("binaries-available"), "{text}");
        assert!(text.contains(&format!("in {dir} ({said})")), "{text}");
    }

    let upgrade = steward(&["upgrade", "--agents", &agents, "--to", &to]);
    let text = stderr(&upgrade);
    assert_eq!(upgrade.status.code(), Some(0), "{text}");
    assert!(!text.contains("WARN"), "a normal roll warns about nothing: {text}");
    assert!(!text.contains("cannot renew the cluster lock"), "{text}");
    cluster.cleanup();
}
