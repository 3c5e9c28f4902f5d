//! Benchmark: the same 3.4 -> 3.5 roll of a fresh 3-member cluster, under
//! the same availability probe, done by `steward upgrade` and by the
//! guides' manual procedure (per member: move-leader away from the leader
//! with etcdctl, SIGTERM, start the new binary with the same flags, poll
//! `etcdctl endpoint health`; followers first, the leader last).
//!
//! `scripts/bench` (release binaries, then `cargo bench -p steward-tests
//! --bench rolling`) prints total time,
//! per-member time, the longest write stall and failed writes for both.
//! Goal: steward's longest stall no worse than the manual procedure's, and
//! its total time, backup excluded, within 2x.

// A benchmark harness: a failed step ends the measurement with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// A benchmark's whole purpose is to print its figures on stdout.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use steward_coordinator::engine::cluster::probe::{Probe, ProbeWindow};
use steward_coordinator::engine::connect::Connector;
use steward_coordinator::engine::connect::agent::AgentAddress;
use steward_coordinator::engine::events::Discard;
use steward_coordinator::engine::roll::plan::Direction;
use steward_coordinator::engine::roll::{self, Outcome, RollOptions};
use steward_tests::bench::{count_from_env, median};
use steward_tests::binaries::binaries_dir;
use steward_tests::cluster::kill_processes_mentioning;
use steward_tests::ports::{PortLease, lease};
use steward_tests::{ClusterBuilder, Release, newest};

struct Row {
    name: &'static str,
    total_ms: u64,
    excluded_ms: u64,
    staging_ms: u64,
    members_ms: Vec<(String, u64)>,
    stall_ms: u64,
    failed: u64,
    writes: u64,
    steps: Vec<ProbeWindow>,
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
}

async fn steward_roll(from: &Release, to: &Release) -> Row {
    let cluster = ClusterBuilder::new(3, from.clone()).start().await;
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
        stall_ms: probe.longest_stall_ms,
        failed: probe.failed,
        writes: probe.writes,
        steps: probe.steps,
    };
    cluster.cleanup();
    row
}

/// A member run by hand, as in the guides.
struct Manual {
    name: String,
    args: Vec<String>,
    client_url: String,
    child: Child,
}

fn start_etcd(binary: &Path, args: &[String], log: &Path) -> Child {
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)
        .expect("log");
    Command::new(binary)
        .args(args)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("start etcd")
}

fn etcdctl(release: &Release, endpoints: &str, args: &[&str]) -> std::process::Output {
    Command::new(release.etcdctl())
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .args(args)
        .output()
        .expect("run etcdctl")
}

async fn manual_roll(from: &Release, to: &Release) -> Row {
    let dir = tempfile::Builder::new()
        .prefix("steward-manual-")
        .tempdir()
        .expect("dir");
    let leases: Vec<PortLease> = (0..6).map(|_| lease()).collect();
    let peers: Vec<String> = (0..3)
        .map(|i| format!("http://127.0.0.1:{}", leases[2 * i + 1].port()))
        .collect();
    let initial = (0..3)
        .map(|i| format!("m{i}={}", peers[i]))
        .collect::<Vec<_>>()
        .join(",");
    let mut members: Vec<Manual> = (0..3)
        .map(|i| {
            let client = format!("http://127.0.0.1:{}", leases[2 * i].port());
            let args = vec![
                format!("--name=m{i}"),
                format!("--data-dir={}", dir.path().join(format!("m{i}")).display()),
                format!("--listen-client-urls={client}"),
                format!("--advertise-client-urls={client}"),
                format!("--listen-peer-urls={}", peers[i]),
                format!("--initial-advertise-peer-urls={}", peers[i]),
                format!("--initial-cluster={initial}"),
                "--initial-cluster-state=new".into(),
                "--initial-cluster-token=manual".into(),
            ];
            let child = start_etcd(&from.etcd(), &args, &dir.path().join(format!("m{i}.log")));
            Manual {
                name: format!("m{i}"),
                args,
                client_url: client,
                child,
            }
        })
        .collect();
    let all = members
        .iter()
        .map(|m| m.client_url.clone())
        .collect::<Vec<_>>()
        .join(",");
    wait_healthy(from, &all).await;

    let probe = Probe::start(
        &Connector::default(),
        members.iter().map(|m| m.client_url.clone()).collect(),
        "/manual",
    )
    .await;
    let began = Instant::now();
    // Followers first, the leader last (found with endpoint status).
    let leader = leader_index(from, &members);
    let mut order: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    order.push(leader);
    let mut members_ms = Vec::new();
    for i in order {
        probe.enter(&members[i].name);
        let step = Instant::now();
        if i == leader {
            // etcdctl move-leader needs the target's hex id.
            let to_member = (0..3).find(|j| *j != i).expect("another member");
            let id = member_id(to, &members[to_member].client_url);
            let out = etcdctl(to, &members[i].client_url, &["move-leader", &id]);
            assert!(
                out.status.success(),
                "move-leader: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let pid = nix::unistd::Pid::from_raw(i32::try_from(members[i].child.id()).expect("pid"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        members[i].child.wait().expect("etcd exits");
        let log = dir.path().join(format!("{}.log", members[i].name));
        members[i].child = start_etcd(&to.etcd(), &members[i].args, &log);
        wait_healthy(to, &members[i].client_url).await;
        members_ms.push((members[i].name.clone(), millis(step.elapsed())));
    }
    // The guides' last step: wait until every member reports the new
    // cluster version (steward does the same).
    let want = format!("\"etcdcluster\":\"{}.{}.0\"", to.version.major(), to.version.minor());
    let deadline = Instant::now() + Duration::from_secs(90);
    while !members.iter().all(|m| http_version(&m.client_url).contains(&want)) {
        assert!(Instant::now() < deadline, "the cluster version did not flip");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let total_ms = millis(began.elapsed());
    let report = probe.stop().await;
    for m in &mut members {
        let _ = m.child.kill();
        let _ = m.child.wait();
    }
    kill_processes_mentioning(dir.path());
    Row {
        name: "manual",
        total_ms,
        excluded_ms: 0,
        staging_ms: 0,
        members_ms,
        stall_ms: report.longest_stall_ms,
        failed: report.failed,
        writes: report.writes,
        steps: report.steps,
    }
}

/// `curl <client url>/version`, by hand.
fn http_version(client_url: &str) -> String {
    use std::io::{Read, Write};
    let address = client_url.trim_start_matches("http://");
    let Ok(mut stream) = std::net::TcpStream::connect(address) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = write!(stream, "GET /version HTTP/1.0\r\nHost: {address}\r\n\r\n");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

fn member_id(release: &Release, endpoint: &str) -> String {
    let out = etcdctl(release, endpoint, &["endpoint", "status", "-w", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("endpoint status JSON");
    let id = json[0]["Status"]["header"]["member_id"].as_u64().expect("member id");
    format!("{id:x}")
}

fn leader_index(release: &Release, members: &[Manual]) -> usize {
    for (i, m) in members.iter().enumerate() {
        let out = etcdctl(release, &m.client_url, &["endpoint", "status", "-w", "json"]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("endpoint status JSON");
        let status = &json[0]["Status"];
        if status["header"]["member_id"] == status["leader"] {
            return i;
        }
    }
    panic!("no leader");
}

/// `etcdctl endpoint health` until it says healthy (what an operator does).
async fn wait_healthy(release: &Release, endpoints: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = etcdctl(release, endpoints, &["endpoint", "health"]);
        if out.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not healthy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Rounds to run: `STEWARD_BENCH_ROUNDS`, 5 by default. One run of each is
/// dominated by noise (a stall is a few probe intervals); the verdict is
/// on the medians.
fn rounds() -> u64 {
    count_from_env("STEWARD_BENCH_ROUNDS", 5)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let from = newest(3, 4);
    let to = newest(3, 5);
    println!(
        "{} -> {}, 3 members, probe writing through every endpoint, {} rounds",
        from.version,
        to.version,
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
                (steward, manual_roll(&from, &to).await)
            } else {
                let manual = manual_roll(&from, &to).await;
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
        "\nsteward vs manual: longest stall {s_stall} ms vs {m_stall} ms ({}), time without backup {ratio:.2}x the manual procedure's ({})",
        if s_stall <= m_stall { "goal met" } else { "goal missed" },
        if ratio <= 2.0 {
            "goal met: within 2x"
        } else {
            "goal missed: over 2x"
        }
    );
}
