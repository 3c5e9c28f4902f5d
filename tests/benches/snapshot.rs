//! Benchmark: a snapshot of a large database, side by side with its
//! baseline. A fresh 3-member etcd cluster is filled to
//! `STEWARD_BENCH_DB_MIB` (1024 by default) of values of
//! `STEWARD_SNAPSHOT_VALUE_BYTES` (1 MiB by default; 8192 gives a leaf
//! page per value, as a cluster of small values has), then, in
//! interleaved rounds (`STEWARD_SNAPSHOT_ROUNDS`, 6 by default), each
//! of the three below, in an order that rotates from round to round
//! (each goes first, second and third equally often in every three):
//! - `etcdctl snapshot save FILE` through the leader's client URL (the
//!   baseline);
//! - `steward backup` (the snapshot is taken, verified and kept on the
//!   leader's host);
//! - `steward backup --out FILE` (also copied here and verified).
//!
//! A round's files are removed, and the removals synced, untimed, before
//! the next round. So are the files an agent's retention removes: it
//! removes them after the call that took a snapshot returns, and they
//! are gone and synced, untimed, before the next method runs.
//!
//! It prints each round, then the medians with their spread and each
//! method's throughput against etcdctl's. Then the database grows to
//! `STEWARD_MEMORY_DB_MIB` (2048 by default) for one `steward backup` and
//! one `steward backup --out` more, and it prints the agent's resident
//! memory idle (before the first round) and at its peak during those two
//! and during the rounds.

// A benchmark harness: a failed step ends the measurement with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// A benchmark's whole purpose is to print its figures on stdout.
#![allow(clippy::print_stdout)]

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use steward_tests::bench::{self, count_from_env, fill_with, median, spread};
use steward_tests::cluster::steward_command;
use steward_tests::{ClusterBuilder, newest};

/// Resident memory of `pid` in KiB (`VmRSS`), 0 when it cannot be read.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Samples the resident memory of `pid` every 10 ms on the runtime until
/// asked for the peak.
struct PeakRss {
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl PeakRss {
    fn watch(runtime: &tokio::runtime::Runtime, pid: u32) -> Self {
        let peak = Arc::new(AtomicU64::new(0));
        let sampled = peak.clone();
        let task = runtime.spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(10));
            loop {
                every.tick().await;
                sampled.fetch_max(rss_kib(pid), Ordering::Relaxed);
            }
        });
        Self { peak, task }
    }

    fn peak_kib(self) -> u64 {
        self.task.abort();
        self.peak.load(Ordering::Relaxed)
    }
}

/// The three ways a round takes a snapshot.
#[derive(Clone, Copy)]
enum Method {
    Etcdctl,
    Kept,
    Copied,
}

impl Method {
    /// Indexed by [`bench::turn_order`].
    const ALL: [Self; 3] = [Self::Etcdctl, Self::Kept, Self::Copied];
}

struct Round {
    etcdctl_ms: u64,
    kept_ms: u64,
    copied_ms: u64,
    size: u64,
}

fn timed(mut command: Command) -> u64 {
    let began = Instant::now();
    let output = command.output().expect("run the command");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    bench::millis(began.elapsed())
}

fn etcdctl_save(etcdctl: &std::path::Path, endpoint: &str, out: &std::path::Path) -> u64 {
    let mut command = Command::new(etcdctl);
    command
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint, "snapshot", "save"])
        .arg(out);
    timed(command)
}

fn steward_backup(agents: &str, member: &str, out: Option<&std::path::Path>) -> u64 {
    let mut command = steward_command();
    command.args(["backup", "--agents", agents, "--member", member]);
    if let Some(out) = out {
        command.arg("--out").arg(out);
    }
    timed(command)
}

/// Waits (untimed) until the agent's retention has removed the files of
/// the snapshots it no longer lists (every `.db` has its `.json` again),
/// then syncs: the next method does not pay for the one before.
fn settle_retention(runtime: &tokio::runtime::Runtime, snapshots: &std::path::Path) {
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let names: Vec<std::path::PathBuf> = std::fs::read_dir(snapshots)
            .expect("the agent's snapshot dir")
            .flatten()
            .map(|e| e.path())
            .collect();
        let undescribed = names
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "db"))
            .any(|p| !p.with_extension("json").exists());
        if !undescribed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retention left files in {}",
            snapshots.display()
        );
        runtime.block_on(tokio::time::sleep(std::time::Duration::from_millis(20)));
    }
    nix::unistd::sync();
}

fn main() {
    let runtime = bench::runtime();
    let release = newest(3, 5);
    let mib = count_from_env("STEWARD_BENCH_DB_MIB", 1024);
    let rounds = count_from_env("STEWARD_SNAPSHOT_ROUNDS", 6);
    let value_bytes = usize::try_from(count_from_env("STEWARD_SNAPSHOT_VALUE_BYTES", 1 << 20)).unwrap();
    let value_size = if value_bytes >= 1 << 20 {
        format!("{} MiB values", value_bytes >> 20)
    } else {
        format!("{} KiB values", value_bytes >> 10)
    };
    let (cluster, leader) = runtime.block_on(async {
        let cluster = ClusterBuilder::new(3, release.clone())
            .extra_flag("--quota-backend-bytes=8589934592")
            .retain_snapshots(2)
            .start()
            .await;
        let began = Instant::now();
        fill_with(&mut cluster.etcd(&[0, 1, 2]).await, "bench", mib, value_bytes).await;
        println!(
            "filled {mib} MiB of {value_size} in {:.1} s",
            began.elapsed().as_secs_f64()
        );
        let leader = cluster.leader_index().await;
        (cluster, leader)
    });
    let etcdctl = release.dir.join("etcdctl");
    let endpoint = cluster.members[leader].client_url.clone();
    let member = cluster.members[leader].name.clone();
    let agents = cluster.agents_arg();
    let agent_pid = cluster.agent_pid(leader).expect("the leader's agent pid");
    let snapshots = cluster.members[leader].state_dir.join("snapshots");
    let idle_kib = rss_kib(agent_pid);
    let work = tempfile::tempdir().expect("a work dir");
    println!(
        "etcd {}, 3 members on loopback, snapshot through {member}, {rounds} rounds, {} cores",
        release.version,
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    println!(
        "{:<7} {:>12} {:>16} {:>21} {:>10}",
        "round", "etcdctl ms", "steward kept ms", "steward --out ms", "size MiB"
    );
    let mut results = Vec::new();
    let mut peak_kib = 0;
    for round in 0..rounds {
        let ours = work.path().join(format!("etcdctl-{round}.db"));
        let copy = work.path().join(format!("steward-{round}.db"));
        let watch = PeakRss::watch(&runtime, agent_pid);
        let (mut etcdctl_ms, mut kept_ms, mut copied_ms) = (0, 0, 0);
        for way in bench::turn_order::<3>(round) {
            match Method::ALL[way] {
                Method::Etcdctl => etcdctl_ms = etcdctl_save(&etcdctl, &endpoint, &ours),
                Method::Kept => kept_ms = steward_backup(&agents, &member, None),
                Method::Copied => copied_ms = steward_backup(&agents, &member, Some(&copy)),
            }
            // Whatever a method leaves to the disk goes there, untimed,
            // before the next one starts.
            settle_retention(&runtime, &snapshots);
        }
        let size = std::fs::metadata(&ours).map(|m| m.len()).unwrap_or(0);
        peak_kib = peak_kib.max(watch.peak_kib());
        let _ = std::fs::remove_file(&ours);
        let _ = std::fs::remove_file(&copy);
        // The removals go to disk now, untimed: freeing 2 GiB on a disk
        // mounted with online discard holds up the next fsync for about
        // a second, and that would be the next round's etcdctl.
        nix::unistd::sync();
        println!(
            "{:<7} {:>12} {:>16} {:>21} {:>10}",
            round + 1,
            etcdctl_ms,
            kept_ms,
            copied_ms,
            size >> 20
        );
        results.push(Round {
            etcdctl_ms,
            kept_ms,
            copied_ms,
            size,
        });
    }
    let size = median(results.iter().map(|r| r.size).collect());
    #[allow(clippy::cast_precision_loss)]
    let throughput = |ms: u64| (size as f64 / f64::from(1 << 20)) / (ms.max(1) as f64 / 1000.0);
    let (etcdctl, e_low, e_high) = spread(&results.iter().map(|r| r.etcdctl_ms).collect::<Vec<_>>());
    println!("\nmedians of {} rounds, database {} MiB", results.len(), size >> 20);
    println!(
        "{:<24} {:>9} {:>18} {:>10} {:>16}",
        "method", "median ms", "spread ms", "MiB/s", "vs etcdctl"
    );
    println!(
        "{:<24} {:>9} {:>18} {:>10.0} {:>16}",
        "etcdctl snapshot save",
        etcdctl,
        format!("{e_low}-{e_high}"),
        throughput(etcdctl),
        "1.00x"
    );
    let mut verdicts = Vec::new();
    for (name, values) in [
        ("steward backup", results.iter().map(|r| r.kept_ms).collect::<Vec<_>>()),
        ("steward backup --out", results.iter().map(|r| r.copied_ms).collect()),
    ] {
        let (ms, low, high) = spread(&values);
        #[allow(clippy::cast_precision_loss)]
        let ratio = etcdctl as f64 / ms.max(1) as f64;
        println!(
            "{:<24} {:>9} {:>18} {:>10.0} {:>15.2}x",
            name,
            ms,
            format!("{low}-{high}"),
            throughput(ms),
            ratio
        );
        verdicts.push(bench::Verdict {
            what: format!("snapshot {mib} MiB, {value_size}: {name}"),
            steward: bench::seconds(ms),
            baseline: bench::seconds(etcdctl),
            ratio: format!("{ratio:.2}x throughput"),
            goal: "at least 0.9x",
            met: ratio >= 0.9,
        });
    }
    // The memory goal is for a 2 GiB snapshot: grow the same database
    // (new keys, values of the same size) and watch two more.
    let memory_mib = count_from_env("STEWARD_MEMORY_DB_MIB", 2048);
    if memory_mib > mib {
        runtime.block_on(async {
            let began = Instant::now();
            fill_with(
                &mut cluster.etcd(&[0, 1, 2]).await,
                "memory",
                memory_mib - mib,
                value_bytes,
            )
            .await;
            println!(
                "\ngrew the database to {memory_mib} MiB in {:.1} s",
                began.elapsed().as_secs_f64()
            );
        });
    }
    let copy = work.path().join("steward-memory.db");
    let watch = PeakRss::watch(&runtime, agent_pid);
    let kept_ms = steward_backup(&agents, &member, None);
    let copied_ms = steward_backup(&agents, &member, Some(&copy));
    let large_peak_kib = watch.peak_kib();
    let large_size = std::fs::metadata(&copy).map(|m| m.len()).unwrap_or(0);
    let _ = std::fs::remove_file(&copy);
    println!(
        "a {} MiB snapshot: steward backup {kept_ms} ms, steward backup --out {copied_ms} ms",
        large_size >> 20
    );
    #[allow(clippy::cast_precision_loss)]
    let mib_of = |kib: u64| kib as f64 / 1024.0;
    println!(
        "\nagent resident memory: idle {:.1} MiB, peak during the {} MiB snapshots {:.1} MiB, during the two of {} MiB {:.1} MiB",
        mib_of(idle_kib),
        size >> 20,
        mib_of(peak_kib),
        large_size >> 20,
        mib_of(large_peak_kib)
    );
    // The goals are in MB (10^6 bytes); /proc counts KiB.
    #[allow(clippy::cast_precision_loss)]
    let mb = |kib: u64| format!("{:.1} MB", (kib * 1024) as f64 / 1e6);
    verdicts.push(bench::Verdict {
        what: format!("agent memory, idle ({value_size})"),
        steward: mb(idle_kib),
        baseline: "-".to_owned(),
        ratio: "-".to_owned(),
        goal: "at most 15 MB",
        met: idle_kib > 0 && idle_kib * 1024 <= 15_000_000,
    });
    verdicts.push(bench::Verdict {
        what: format!(
            "agent memory, peak (snapshots up to {} MiB, {value_size})",
            large_size >> 20
        ),
        steward: mb(peak_kib.max(large_peak_kib)),
        baseline: "-".to_owned(),
        ratio: "-".to_owned(),
        goal: "at most 64 MB",
        met: large_size > 0 && large_peak_kib > 0 && peak_kib.max(large_peak_kib) * 1024 <= 64_000_000,
    });
    for verdict in &verdicts {
        bench::verdict(verdict);
    }
    drop(cluster);
}
