//! Benchmark: the same 3.4 -> 3.5 roll of a fresh 3-member cluster, under
//! the same availability probe, done by `steward upgrade` and by the
//! guides' manual procedure (a backup with `etcdctl snapshot save`, then
//! per member: move-leader away from the leader with etcdctl, SIGTERM,
//! start the new binary with the same flags, poll `etcdctl endpoint
//! health`; followers first, the leader last). Both backups are left out
//! of the time compared, and both probes start after them.
//!
//! Both end when every member reports the new cluster version, as the
//! guides say to check. With `STEWARD_ROLLING_DB_MIB` set, both clusters
//! first get a database of that many MiB, in values of 8 KiB;
//! `STEWARD_ROLLING_FROM` and `STEWARD_ROLLING_TO` (versions) roll other
//! releases, a patch upgrade for one.
//!
//! `scripts/bench` (release binaries, then `cargo bench -p steward-tests
//! --bench rolling`) prints total time,
//! per-member time, the longest write stall and failed writes for both.
//! Goal: steward's longest stall no worse than the manual procedure's, and
//! its total time, backup excluded, within 1.2x (medians). A round's
//! longest stall is mostly chance on both sides (when the leader changes,
//! and how slow writes are while a restarted member loads its database
//! on the same machine), so a
//! higher median counts as worse only when it is longer by more than the
//! probe's 20 ms between writes (what the probe cannot tell apart) and a
//! rank test over all rounds says it is longer beyond chance; with fewer
//! than 5 rounds, where no such test can tell, the medians (with that
//! resolution) decide alone.

// A benchmark harness: a failed step ends the measurement with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// A benchmark's whole purpose is to print its figures on stdout.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use steward_coordinator::engine::cluster::probe::{self, Probe, ProbeWindow};
use steward_coordinator::engine::connect::Connector;
use steward_coordinator::engine::connect::agent::AgentAddress;
use steward_coordinator::engine::events::Discard;
use steward_coordinator::engine::roll::plan::Direction;
use steward_coordinator::engine::roll::{self, Outcome, RollOptions};
use steward_tests::bench::{self, count_from_env, fill_with, median, millis};
use steward_tests::binaries::binaries_dir;
use steward_tests::manual::{ManualCluster, etcdctl, http_version, member_id, wait_healthy};
use steward_tests::{ClusterBuilder, Release, exact, newest};

struct Row {
    name: &'static str,
    total_ms: u64,
    excluded_ms: u64,
    staging_ms: u64,
    members_ms: Vec<(String, u64)>,
    /// Per member, steward's agent switch and gate (steward only).
    phases_ms: Vec<(String, u64, u64)>,
    stall_ms: u64,
    failed: u64,
    writes: u64,
    steps: Vec<ProbeWindow>,
    /// Restarts whose first "publish local member" proposal etcd lost.
    publish_retries: usize,
}

/// What etcd logs when the proposal announcing a restarted member to the
/// cluster got lost: it waits out its request timeout (7 s by default)
/// and proposes again, and serves no client until then. A race inside
/// etcd, on either side; counted to tell it from the roll's own time.
const PUBLISH_RETRY: &str = "failed to publish local member to cluster through raft";

/// How often `logs` (missing ones count nothing) say [`PUBLISH_RETRY`].
fn publish_retries(logs: impl IntoIterator<Item = std::path::PathBuf>) -> usize {
    logs.into_iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|text| text.matches(PUBLISH_RETRY).count())
        .sum()
}

fn print(rows: &[&Row]) {
    println!(
        "{:<8} {:>10} {:>16} {:>11} {:>26} {:>14} {:>8} {:>8}",
        "method", "total ms", "total-backup ms", "staging ms", "per member ms", "longest stall", "failed", "writes"
    );
    for r in rows {
        let members = r
            .members_ms
            .iter()
            .map(|(n, ms)| format!("{n}={ms}"))
            .collect::<Vec<_>>()
            .join(" ");
        println!(
            "{:<8} {:>10} {:>16} {:>11} {:>26} {:>11} ms {:>8} {:>8}",
            r.name,
            r.total_ms,
            r.total_ms - r.excluded_ms,
            r.staging_ms,
            members,
            r.stall_ms,
            r.failed,
            r.writes
        );
    }
    for r in rows {
        println!(
            "{:<8} restarts that waited out etcd's publish retry: {}",
            r.name, r.publish_retries
        );
    }
    println!("probe windows (step: writes / failed / longest stall)");
    for r in rows {
        let steps = r
            .steps
            .iter()
            .map(|w| format!("{}: {}/{}/{} ms", w.step, w.writes, w.failed, w.longest_stall_ms))
            .collect::<Vec<_>>()
            .join(", ");
        println!("{:<8} {steps}", r.name);
    }
    for r in rows.iter().filter(|r| !r.phases_ms.is_empty()) {
        let phases = r
            .phases_ms
            .iter()
            .map(|(n, activate, gate)| format!("{n}: {activate}/{gate} ms"))
            .collect::<Vec<_>>()
            .join(", ");
        println!("{:<8} per member, the agent's switch / the gate: {phases}", r.name);
    }
}

/// Room for a database of several GiB (etcd's default quota is 2 GiB).
const QUOTA: &str = "--quota-backend-bytes=8589934592";

/// `STEWARD_ROLLING_DB_MIB`: the database both clusters get first (none by
/// default).
fn database_mib() -> u64 {
    std::env::var("STEWARD_ROLLING_DB_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The size of each value of that database: 8 KiB, of the order of the
/// objects a Kubernetes cluster keeps. Each put is a raft entry, so with
/// values this size etcd takes its raft snapshots and compacts its log
/// while the database fills, as in a cluster that grew over time; values
/// of 1 MiB would instead keep the whole database in every member's raft
/// log, in memory and in the WAL it replays at each restart.
const VALUE_BYTES: usize = 8 << 10;

async fn fill_database(client: &mut etcd_client::Client) {
    fill_with(client, "bench", database_mib(), VALUE_BYTES).await;
}

async fn steward_roll(from: &Release, to: &Release) -> Row {
    let cluster = ClusterBuilder::new(3, from.clone()).extra_flag(QUOTA).start().await;
    fill_database(&mut cluster.etcd(&[0, 1, 2]).await).await;
    let agents: Vec<AgentAddress> = cluster
        .members
        .iter()
        .map(|m| m.agent_addr.parse().expect("address"))
        .collect();
    let options = RollOptions {
        probe: true,
        ..RollOptions::new(Direction::Upgrade, to.version.clone(), Some(binaries_dir()))
    };
    let report = roll::run(cluster.connector(), agents, options, &mut Discard).await;
    assert_eq!(report.result, Outcome::Succeeded, "{report:#?}");
    let probe = report.probe.clone().expect("probe");
    let row = Row {
        name: "steward",
        total_ms: report.took_ms,
        excluded_ms: report.snapshot_ms,
        staging_ms: report.staging_ms,
        members_ms: report.members.iter().map(|m| (m.name.clone(), m.took_ms)).collect(),
        phases_ms: report
            .members
            .iter()
            .map(|m| (m.name.clone(), m.activate_ms, m.gate_ms))
            .collect(),
        stall_ms: probe.longest_stall_ms,
        failed: probe.failed,
        writes: probe.writes,
        steps: probe.steps,
        publish_retries: publish_retries(cluster.members.iter().flat_map(|m| {
            let logs = m.state_dir.join("logs");
            [logs.join("etcd.log"), logs.join("etcd.log.1")]
        })),
    };
    cluster.cleanup();
    row
}

async fn manual_roll(from: &Release, to: &Release) -> Row {
    let mut cluster = ManualCluster::start(from, &[QUOTA]).await;
    let endpoints: Vec<String> = cluster.members.iter().map(|m| m.client_url.clone()).collect();
    let mut client = etcd_client::Client::connect(&endpoints, None).await.expect("connect");
    fill_database(&mut client).await;
    let began = Instant::now();
    // Followers first, the leader last (found with endpoint status).
    let leader = cluster.leader_index(from);
    // The guides' first step: "backup the etcd data" with `etcdctl
    // snapshot save`, here through the leader, as steward's backup is.
    // Left out of the time like steward's, but not out of what follows:
    // a snapshot of a large database is read by etcd and written to the
    // page cache on the same hosts.
    let backup = Instant::now();
    let backup_dir = tempfile::tempdir().expect("a backup dir");
    let backup_file = backup_dir.path().join("backup.db");
    let saved = etcdctl(
        from,
        &cluster.members[leader].client_url,
        &["snapshot", "save", &backup_file.display().to_string()],
    );
    assert!(
        saved.status.success(),
        "etcdctl snapshot save: {}",
        String::from_utf8_lossy(&saved.stderr)
    );
    let backup_ms = millis(backup.elapsed());
    // The probe starts after the backup, as steward's starts after its
    // snapshot: both measure the roll itself.
    let probe = Probe::start(&Connector::default(), endpoints.clone(), "/manual").await;
    let mut order: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    order.push(leader);
    let mut members_ms = Vec::new();
    for i in order {
        probe.enter(&cluster.members[i].name);
        let step = Instant::now();
        if i == leader {
            // etcdctl move-leader needs the target's hex id.
            let to_member = (0..3).find(|j| *j != i).expect("another member");
            let id = member_id(to, &cluster.members[to_member].client_url);
            let out = etcdctl(to, &cluster.members[i].client_url, &["move-leader", &id]);
            assert!(
                out.status.success(),
                "move-leader: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        cluster.stop_member(i);
        cluster.start_member(i, &to.etcd());
        wait_healthy(to, &cluster.members[i].client_url).await;
        members_ms.push((cluster.members[i].name.clone(), millis(step.elapsed())));
    }
    // The guides' last step: wait until every member reports the new
    // cluster version (steward does the same).
    let want = format!("\"etcdcluster\":\"{}.{}.0\"", to.version.major(), to.version.minor());
    let deadline = Instant::now() + Duration::from_secs(90);
    while !cluster
        .members
        .iter()
        .all(|m| http_version(&m.client_url).contains(&want))
    {
        assert!(Instant::now() < deadline, "the cluster version did not flip");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let total_ms = millis(began.elapsed());
    let report = probe.stop().await;
    let retries = publish_retries((0..cluster.members.len()).map(|i| cluster.dir.path().join(format!("m{i}.log"))));
    cluster.stop();
    Row {
        name: "manual",
        total_ms,
        excluded_ms: backup_ms,
        staging_ms: 0,
        members_ms,
        phases_ms: Vec::new(),
        stall_ms: report.longest_stall_ms,
        failed: report.failed,
        writes: report.writes,
        steps: report.steps,
        publish_retries: retries,
    }
}

/// Rounds to run: `STEWARD_BENCH_ROUNDS`, 15 by default. One round of each
/// is dominated by chance (a round's longest stall is whether a write met
/// a member whose new etcd was starting); the verdicts are on all rounds.
fn rounds() -> u64 {
    count_from_env("STEWARD_BENCH_ROUNDS", 15)
}

/// Below this chance, steward's stalls are longer than chance explains.
const LONGER_BEYOND_CHANCE: f64 = 0.05;
/// Fewer rounds than this cannot show anything beyond chance at
/// [`LONGER_BEYOND_CHANCE`] (3 against 3 can reach 1 in 20 at best).
const ROUNDS_FOR_A_RANK_TEST: usize = 5;

fn main() {
    let runtime = bench::runtime();
    let from = std::env::var("STEWARD_ROLLING_FROM").map_or_else(|_| newest(3, 4), |v| exact(&v));
    let to = std::env::var("STEWARD_ROLLING_TO").map_or_else(|_| newest(3, 5), |v| exact(&v));
    println!(
        "{} -> {}, 3 members, a {} MiB database, probe writing through every endpoint, {} rounds",
        from.version,
        to.version,
        database_mib(),
        rounds()
    );
    let mut stewards = Vec::new();
    let mut manuals = Vec::new();
    for round in 0..rounds() {
        // Alternate which goes first, so neither always runs on the
        // warmer (or more fragmented) machine.
        let (steward, manual) = runtime.block_on(async {
            if round % 2 == 0 {
                let steward = steward_roll(&from, &to).await;
                (steward, Box::pin(manual_roll(&from, &to)).await)
            } else {
                let manual = Box::pin(manual_roll(&from, &to)).await;
                (steward_roll(&from, &to).await, manual)
            }
        });
        println!("\nround {}", round + 1);
        print(&[&steward, &manual]);
        stewards.push(steward);
        manuals.push(manual);
    }
    let stall = |rows: &[Row]| median(rows.iter().map(|r| r.stall_ms).collect());
    let time = |rows: &[Row]| median(rows.iter().map(|r| r.total_ms - r.excluded_ms).collect());
    let failed = |rows: &[Row]| median(rows.iter().map(|r| r.failed).collect());
    let (s_stall, m_stall) = (stall(&stewards), stall(&manuals));
    let chance = bench::chance_of_longer(
        &stewards.iter().map(|r| r.stall_ms).collect::<Vec<_>>(),
        &manuals.iter().map(|r| r.stall_ms).collect::<Vec<_>>(),
    );
    // The probe writes every 20 ms: a longer median by less than that is
    // below what it measures.
    let resolution = millis(probe::INTERVAL);
    let stall_no_worse =
        s_stall <= m_stall + resolution || (stewards.len() >= ROUNDS_FOR_A_RANK_TEST && chance >= LONGER_BEYOND_CHANCE);
    let (s_time, m_time) = (time(&stewards), time(&manuals));
    let ratio = s_time as f64 / m_time.max(1) as f64;
    println!("\nmedians of {} rounds", stewards.len());
    println!(
        "{:<8} {:>16} {:>14} {:>8}",
        "method", "total-backup ms", "longest stall", "failed"
    );
    for (name, rows) in [("steward", &stewards), ("manual", &manuals)] {
        println!(
            "{name:<8} {:>16} {:>11} ms {:>8}",
            time(rows),
            stall(rows),
            failed(rows)
        );
    }
    println!(
        "\nsteward vs manual: longest stall {s_stall} ms vs {m_stall} ms, chance of stalls this much longer {chance:.2} ({}), time without backup {ratio:.2}x the manual procedure's ({})",
        if stall_no_worse { "goal met" } else { "goal missed" },
        if ratio <= 1.2 {
            "goal met: within 1.2x"
        } else {
            "goal missed: over 1.2x"
        }
    );
    let roll = match database_mib() {
        0 => format!("rolling {} -> {}", from.version, to.version),
        mib => format!("rolling {} -> {}, {mib} MiB", from.version, to.version),
    };
    bench::verdict(&bench::Verdict {
        what: format!("{roll}: time without backup"),
        steward: bench::seconds(s_time),
        baseline: bench::seconds(m_time),
        ratio: format!("{ratio:.2}x time"),
        goal: "within 1.2x",
        met: ratio <= 1.2,
    });
    bench::verdict(&bench::Verdict {
        what: format!("{roll}: longest write stall"),
        steward: format!("{s_stall} ms"),
        baseline: format!("{m_stall} ms"),
        ratio: format!("{:+} ms, chance {chance:.2}", i128::from(s_stall) - i128::from(m_stall)),
        goal: "no worse",
        met: stall_no_worse,
    });
}
