//! The rolling engine run in-process against a test cluster, for the
//! scenarios that look at its report and events rather than the CLI's.

use steward_coordinator::engine::connect::agent::AgentAddress;
use steward_coordinator::engine::events::{Event, Lines, Recorder};
use steward_coordinator::engine::roll::{self, RollOptions, RollReport};
use steward_proto::EtcdVersion;

use crate::Cluster;

/// Every member's agent address.
///
/// # Panics
/// When an address does not parse.
#[must_use]
pub fn agents(cluster: &Cluster) -> Vec<AgentAddress> {
    cluster
        .members
        .iter()
        .map(|m| m.agent_addr.parse().expect("agent address"))
        .collect()
}

/// Runs a roll with `options`, printing its events and returning them
/// with the report.
pub async fn roll(cluster: &Cluster, options: RollOptions) -> (RollReport, Vec<Event>) {
    let mut events = Recorder {
        events: Vec::new(),
        inner: Lines(std::io::stderr()),
    };
    let report = roll::run(cluster.connector(), agents(cluster), options, &mut events).await;
    (report, events.events)
}

/// Asserts that every member runs `version` and reports `cluster_version`.
///
/// # Panics
/// When one does not.
pub async fn assert_all_on(cluster: &Cluster, version: &EtcdVersion, cluster_version: &str) {
    for i in 0..cluster.members.len() {
        let member = cluster.status(i).await.member.unwrap_or_default();
        assert_eq!(member.version, version.to_string(), "{}", cluster.members[i].name);
        assert_eq!(member.cluster_version, cluster_version, "{}", cluster.members[i].name);
    }
}

/// Asserts that every member's etcd runs with each of `args` (as its
/// agent reports the running process's command line).
///
/// # Panics
/// When one does not.
pub async fn assert_every_etcd_runs_with(cluster: &Cluster, args: &[&str]) {
    for i in 0..cluster.members.len() {
        let running = cluster.status(i).await.process.unwrap_or_default().args;
        for arg in args {
            assert!(
                running.iter().any(|a| a == arg),
                "{} runs without {arg}: {running:?}",
                cluster.members[i].name
            );
        }
    }
}

/// Rolls `cluster` to `target` (binaries from `scripts/setup-etcd`'s
/// directory) under a writer that fails over between members, and checks
/// the invariants: the roll succeeds, every acknowledged write reads back,
/// HashKV agrees. Returns the roll's events.
///
/// # Panics
/// When an invariant does not hold.
pub async fn roll_under_writer(
    cluster: &Cluster,
    direction: steward_coordinator::engine::roll::plan::Direction,
    target: &crate::Release,
    prefix: &str,
) -> Vec<Event> {
    let writer = crate::Writer::start(cluster.all_client_urls(), prefix).await;
    writer.wait_for_more(20, std::time::Duration::from_secs(20)).await;
    let options = RollOptions::new(direction, target.version.clone(), Some(crate::binaries::binaries_dir()));
    let (report, events) = roll(cluster, options).await;
    let writes = writer.stop().await;
    assert_eq!(
        report.result,
        roll::Outcome::Succeeded,
        "{direction} to {}: {report:#?}; {}",
        target.version,
        cluster.logs_hint()
    );
    let mut client = cluster.etcd(&(0..cluster.members.len()).collect::<Vec<_>>()).await;
    let lost = crate::lost_writes(&mut client, prefix, &writes).await;
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    crate::faults::assert_hash_kv_agrees(cluster).await;
    events
}
