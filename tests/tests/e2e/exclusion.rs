//! One coordinator at a time, and a coordinator killed at any point is
//! finished by running the same command again: a second `steward upgrade`
//! during a roll is refused naming the holder; after `kill -9` of the
//! coordinator mid-roll status shows the interrupted change, and the rerun
//! takes over the dead holder's lock at once (its process is gone) and
//! completes; an agent refuses a stale fencing token; the journal is kept
//! under the lock's prefix; a coordinator whose lock lease is gone stops
//! before its next member.

use std::process::Output;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use steward_coordinator::engine::events::Event;
use steward_coordinator::engine::roll::plan::Direction;
use steward_coordinator::engine::roll::{self, Outcome, RollOptions};
use steward_proto::v1 as pb;
use steward_tests::binaries::binaries_dir;
use steward_tests::cluster::steward_command;
use steward_tests::faults::Timeline;
use steward_tests::{ClusterBuilder, coordinator, newest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_coordinator_is_refused_naming_the_holder() {
    let cluster = ClusterBuilder::new(5, newest(3, 4)).start().await;
    let agents = cluster.agents_arg();
    let to = newest(3, 5).version.clone();
    // The first coordinator is this process. Once its first member is done
    // it runs the second one and waits for it, holding the lock (renewed
    // by its own task meanwhile): the second meets a live holder however
    // quickly or slowly the members go.
    let second: Arc<Mutex<Option<Output>>> = Arc::default();
    let slot = Arc::clone(&second);
    let args = [
        "upgrade".to_owned(),
        "--agents".into(),
        agents,
        "--to".into(),
        to.to_string(),
    ];
    let mut timeline = Timeline::with_hook(move |event| {
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(event, Event::MemberDone { .. }) && slot.is_none() {
            let output = tokio::task::block_in_place(|| steward_command().args(&args).output());
            *slot = Some(output.expect("run a second coordinator"));
        }
    });
    let report = Box::pin(roll::run(
        cluster.connector(),
        cluster.agent_addresses(),
        RollOptions::new(Direction::Upgrade, to.clone(), Some(binaries_dir())),
        &mut timeline,
    ))
    .await;
    assert_eq!(
        report.result,
        Outcome::Succeeded,
        "the first coordinator finished its roll: {report:#?}"
    );
    let second = second
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .expect("the second coordinator ran during the roll");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("one-coordinator"), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {}", std::process::id())),
        "the holder is named: {stderr}"
    );
    for i in 0..5 {
        assert_eq!(
            cluster.status(i).await.member.unwrap_or_default().version,
            to.to_string()
        );
    }
    cluster.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_coordinator_is_finished_by_running_it_again() {
    let cluster = ClusterBuilder::new(3, newest(3, 4)).start().await;
    let agents = cluster.agents_arg();
    let to = newest(3, 5).version.to_string();
    let first = coordinator::start(&["upgrade", "--agents", &agents, "--to", &to]);
    let snapshot = first.wait_for("snapshot");
    first.wait_for("member_done");
    first.kill();
    let versions: Vec<String> = {
        let mut v = Vec::new();
        for i in 0..3 {
            v.push(cluster.status(i).await.member.unwrap_or_default().version);
        }
        v
    };
    assert!(versions.contains(&to), "at least one member was done: {versions:?}");
    assert!(
        versions.iter().any(|v| *v != to),
        "the roll was interrupted: {versions:?}"
    );

    // Status shows the interrupted change and the dead holder's lock.
    let status = steward_command()
        .args(["status", "--agents", &agents])
        .output()
        .expect("run steward status");
    let shown = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains(&format!(
            "the upgrade from {} to {to} was interrupted with 1 of 3 members",
            cluster.release().version
        )),
        "{shown}"
    );
    assert!(shown.contains("which no longer runs"), "{shown}");

    let rerun = steward_command()
        .args(["upgrade", "--agents", &agents, "--to", &to, "-w", "json"])
        .output()
        .expect("run the same command again");
    let stderr = String::from_utf8_lossy(&rerun.stderr);
    assert_eq!(rerun.status.code(), Some(0), "{stderr}");
    // The dead holder ran on this host: no wait for its lease.
    assert!(
        stderr.contains("no longer runs on this host: its lease was revoked"),
        "{stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&rerun.stdout).expect("report JSON");
    assert_eq!(report["result"], "succeeded");
    assert_eq!(report["cluster_version"], "3.5.0");
    // The backup of the old version is the one taken before the first
    // member changed, not a copy of the mixed state the rerun found.
    assert_eq!(report["snapshot"]["id"], snapshot["id"], "{report}");
    assert!(stderr.contains("taken by the earlier run"), "{stderr}");
    for i in 0..3 {
        assert_eq!(cluster.status(i).await.member.unwrap_or_default().version, to);
    }

    // The journal of both runs is in the cluster.
    let mut client = cluster.etcd(&[0]).await;
    let journal = client
        .get(
            "/steward/journal/",
            Some(etcd_client::GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .expect("read the journal");
    assert!(journal.count() > 10, "{} journal entries", journal.count());
    let lock = client.get("/steward/lock", None).await.expect("read the lock");
    assert!(lock.kvs().is_empty(), "the lock was released");

    // Two runs, two tokens, the newer one higher. Once an agent has seen
    // the newer token, the older run's token is stale there.
    let mut tokens = journal_tokens(&mut client).await;
    tokens.sort_unstable();
    tokens.dedup();
    assert_eq!(tokens.len(), 2, "one token per run: {tokens:?}");
    let (older, newer) = (tokens[0], tokens[1]);
    assert!(newer > older);
    cluster
        .agent(0)
        .await
        .restart(pb::RestartRequest { fencing_token: newer })
        .await
        .expect("the current token is admitted");
    cluster.wait_ready(Duration::from_secs(30)).await;
    let stale = cluster
        .agent(0)
        .await
        .restart(pb::RestartRequest { fencing_token: older })
        .await
        .expect_err("a stale token");
    assert_eq!(stale.code(), tonic::Code::FailedPrecondition);
    assert!(stale.message().contains("stale fencing token"), "{}", stale.message());
    cluster
        .agent(0)
        .await
        .restart(pb::RestartRequest { fencing_token: 0 })
        .await
        .expect("an operator's direct call has no token and is admitted");
    cluster.cleanup();
}

/// The tokens of the runs in the journal (`/steward/journal/<token>/<seq>`).
async fn journal_tokens(client: &mut etcd_client::Client) -> Vec<i64> {
    let keys = client
        .get(
            "/steward/journal/",
            Some(etcd_client::GetOptions::new().with_prefix().with_keys_only()),
        )
        .await
        .expect("journal keys");
    keys.kvs()
        .iter()
        .filter_map(|kv| {
            String::from_utf8_lossy(kv.key())
                .split('/')
                .nth(3)
                .and_then(|t| t.parse().ok())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_that_loses_its_lock_stops_before_the_next_member() {
    let cluster = ClusterBuilder::new(3, newest(3, 4)).start().await;
    let agents = cluster.agents_arg();
    let old = newest(3, 4).version.to_string();
    let to = newest(3, 5).version.to_string();
    let running = coordinator::start(&["upgrade", "--agents", &agents, "--to", &to]);
    running.wait_for("member_done");
    // What an expired lease looks like to the holder: the key and its
    // lease are gone.
    let mut client = cluster.etcd(&[0, 1, 2]).await;
    let lock = client.get("/steward/lock", None).await.expect("read the lock");
    let lease = lock.kvs().first().expect("the lock is held").lease();
    client.lease_revoke(lease).await.expect("revoke the lock's lease");

    let (status, report) = running.finish();
    assert_eq!(status.code(), Some(1), "{report}");
    assert_eq!(report["result"], "failed", "{report}");
    assert_eq!(report["failure"]["gate"], "lock", "{report}");
    assert!(
        report["failure"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("was lost"),
        "{report}"
    );
    let mut versions = Vec::new();
    for i in 0..3 {
        versions.push(cluster.status(i).await.member.unwrap_or_default().version);
    }
    assert!(versions.contains(&to), "{versions:?}");
    assert!(
        versions.contains(&old),
        "it stopped before the last member: {versions:?}"
    );
    cluster.wait_ready(Duration::from_secs(30)).await;
    cluster.cleanup();
}
