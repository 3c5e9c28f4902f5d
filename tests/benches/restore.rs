//! Benchmark: restoring a 3-member cluster from a snapshot file of a large
//! database (`STEWARD_BENCH_DB_MIB`, 1024 by default), side by side with the
//! guides' manual procedure, in interleaved rounds
//! (`STEWARD_RESTORE_ROUNDS`, 3 by default), each from the command to a
//! healthy cluster:
//! - `steward restore --snapshot FILE --yes` on a cluster with agents, twice:
//!   with the file in the agents' import dir (each agent reads it on its own
//!   host, as from shared storage) and elsewhere (streamed to every agent);
//!   each agent verifies its copy, every member is stopped, restored with
//!   etcdutl and started, and the cluster checked;
//! - by hand, on the same release without agents: the file copied next to
//!   every member (scp, on separate hosts), every member stopped, `etcdutl
//!   snapshot restore` on every member at once (as on separate hosts),
//!   every member started on its new data dir, and `etcdctl endpoint
//!   health` polled until it passes.
//!
//! Each round restores a snapshot taken for it (a file an agent already
//! keeps is not sent again, which would flatter steward), the three ways in
//! a rotating order, each after a `sync` (untimed) that writes back what
//! the one before left dirty. Goal: steward within 1.5x of the manual
//! procedure.

// A benchmark harness: a failed step ends the measurement with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// A benchmark's whole purpose is to print its figures on stdout.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use steward_tests::bench::{self, count_from_env, fill, millis, spread};
use steward_tests::cluster::steward_command;
use steward_tests::manual::{ManualCluster, wait_healthy};
use steward_tests::{Cluster, ClusterBuilder, Release, newest};

/// Room for a database of several GiB (etcd's default quota is 2 GiB).
const QUOTA: &str = "--quota-backend-bytes=8589934592";

/// The phases of steward's restore report, in the order they run.
const PHASES: [&str; 6] = ["decide", "send", "dry_run", "replace", "start", "wait"];

/// `steward restore` of `file`: its time, and where the time went as its
/// report says (milliseconds per phase, in the order of [`PHASES`]).
fn steward_restore(agents: &str, file: &Path) -> (u64, Vec<u64>) {
    let began = Instant::now();
    let output = steward_command()
        .args(["restore", "--agents", agents, "--snapshot"])
        .arg(file)
        .args(["--yes", "-w", "json"])
        .output()
        .expect("run steward restore");
    assert!(
        output.status.success(),
        "steward restore: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let took = millis(began.elapsed());
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("the restore report");
    let phases = PHASES
        .iter()
        .map(|phase| {
            report["phases"][format!("{phase}_ms")]
                .as_u64()
                .unwrap_or_else(|| panic!("no {phase}_ms in the report: {report:#}"))
        })
        .collect();
    (took, phases)
}

async fn manual_restore(cluster: &mut ManualCluster, release: &Release, file: &Path, round: u64) -> u64 {
    let etcdutl = release.etcdutl().expect("etcdutl (3.5+)");
    let began = Instant::now();
    let copies: Vec<_> = (0..3)
        .map(|i| {
            let copy = cluster.path(&format!("m{i}-round{round}.snapshot"));
            std::fs::copy(file, &copy).expect("copy the snapshot next to the member");
            copy
        })
        .collect();
    for i in 0..3 {
        cluster.stop_member(i);
    }
    let restored: Vec<_> = (0..3).map(|i| cluster.path(&format!("m{i}-round{round}"))).collect();
    let restores: Vec<_> = (0..3)
        .map(|i| {
            let member = &cluster.members[i];
            Command::new(&etcdutl)
                .args(["snapshot", "restore"])
                .arg(&copies[i])
                .args(["--name", &member.name, "--initial-cluster", &cluster.initial_cluster])
                .args(["--initial-cluster-token", &format!("manual-round{round}")])
                .args(["--initial-advertise-peer-urls", &member.peer_url])
                .arg("--data-dir")
                .arg(&restored[i])
                .output()
        })
        .collect();
    for output in restores {
        let output = output.expect("run etcdutl");
        assert!(
            output.status.success(),
            "etcdutl snapshot restore: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    for (i, data_dir) in restored.iter().enumerate() {
        cluster.set_data_dir(i, data_dir);
        cluster.start_member(i, &release.etcd());
    }
    wait_healthy(release, &cluster.endpoints()).await;
    let took = millis(began.elapsed());
    for copy in copies {
        let _ = std::fs::remove_file(copy);
    }
    took
}

/// A key written (so that no earlier snapshot has the same bytes), then
/// `steward backup --out file`; the file's size.
fn fresh_snapshot(runtime: &tokio::runtime::Runtime, cluster: &Cluster, file: &Path) -> u64 {
    runtime.block_on(async {
        let mut client = cluster.etcd(&[0, 1, 2]).await;
        let stamp = format!("{:?}", std::time::SystemTime::now());
        client.put("bench/stamp", stamp, None).await.expect("a put");
    });
    let backup = steward_command()
        .args(["backup", "--agents", &cluster.agents_arg(), "--out"])
        .arg(file)
        .output()
        .expect("run steward backup");
    assert!(backup.status.success(), "{}", String::from_utf8_lossy(&backup.stderr));
    std::fs::metadata(file).map(|m| m.len()).unwrap_or(0)
}

fn main() {
    let runtime = bench::runtime();
    let release = newest(3, 5);
    let mib = count_from_env("STEWARD_BENCH_DB_MIB", 1024);
    let rounds = count_from_env("STEWARD_RESTORE_ROUNDS", 3);
    let work = tempfile::tempdir().expect("a work dir");
    let (cluster, mut manual) = runtime.block_on(async {
        let cluster = ClusterBuilder::new(3, release.clone())
            .extra_flag(QUOTA)
            .retain_snapshots(2)
            .start()
            .await;
        let began = Instant::now();
        fill(&mut cluster.etcd(&[0, 1, 2]).await, mib).await;
        println!("filled {mib} MiB in {:.1} s", began.elapsed().as_secs_f64());
        let manual = ManualCluster::start(&release, &[QUOTA]).await;
        (cluster, manual)
    });
    let agents = cluster.agents_arg();
    let size = fresh_snapshot(&runtime, &cluster, &work.path().join("size.db"));
    println!(
        "etcd {}, 3 members on loopback, a {} MiB snapshot file, {rounds} rounds, {} cores",
        release.version,
        size >> 20,
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    println!(
        "{:<7} {:>19} {:>19} {:>10}",
        "round", "steward streamed ms", "steward imported ms", "manual ms"
    );
    let import_dir = cluster.import_dir();
    std::fs::create_dir_all(&import_dir).expect("the agents' import dir");
    let mut streamed = Vec::new();
    let mut imported = Vec::new();
    let mut manuals = Vec::new();
    for round in 0..rounds {
        // A snapshot of its own per round and way: an agent that keeps a
        // file's snapshot already would not be sent it again.
        let streamed_file = work.path().join(format!("round{round}.db"));
        fresh_snapshot(&runtime, &cluster, &streamed_file);
        let imported_file = import_dir.join(format!("round{round}.db"));
        fresh_snapshot(&runtime, &cluster, &imported_file);
        // Rotate which goes first, so that none always runs on the
        // warmest page cache.
        let mut times = [0_u64; 3];
        let mut phases = [Vec::new(), Vec::new()];
        for way in bench::turn_order::<3>(round) {
            // What the previous turn left in the page cache goes to disk
            // first, untimed: the manual procedure does not sync its
            // copies, and their writeback would stall the next turn's
            // fsyncs (on separate hosts it would not be in the way).
            nix::unistd::sync();
            times[way] = match way {
                0 | 1 => {
                    let file = if way == 0 { &streamed_file } else { &imported_file };
                    let (took, spent) = steward_restore(&agents, file);
                    phases[way] = spent;
                    took
                }
                _ => runtime.block_on(manual_restore(&mut manual, &release, &streamed_file, round)),
            };
        }
        let _ = std::fs::remove_file(&imported_file);
        println!("{:<7} {:>19} {:>19} {:>10}", round + 1, times[0], times[1], times[2]);
        for (phase, (streamed, imported)) in PHASES.iter().zip(phases[0].iter().zip(&phases[1])) {
            println!("  {phase:<8} {streamed:>16} {imported:>19}");
        }
        streamed.push(times[0]);
        imported.push(times[1]);
        manuals.push(times[2]);
    }
    let range = |values: &[u64]| {
        let (_, low, high) = spread(values);
        format!("{low}-{high}")
    };
    let manual_ms = spread(&manuals).0;
    #[allow(clippy::cast_precision_loss)]
    let ratio = |values: &[u64]| spread(values).0 as f64 / manual_ms.max(1) as f64;
    println!("\nmedians of {rounds} rounds, snapshot {} MiB", size >> 20);
    println!("{:<34} {:>9} {:>14} {:>7}", "method", "median ms", "spread ms", "ratio");
    println!(
        "{:<34} {:>9} {:>14} {:>7}",
        "manual (copy, etcdutl)",
        manual_ms,
        range(&manuals),
        "1.00x"
    );
    for (name, values) in [
        ("steward restore, file imported", &imported),
        ("steward restore, file streamed", &streamed),
    ] {
        println!(
            "{:<34} {:>9} {:>14} {:>6.2}x",
            name,
            spread(values).0,
            range(values),
            ratio(values)
        );
    }
    println!(
        "\nsteward restore takes {:.2}x the manual procedure's time with the file in the agents' import dir \
         ({}), {:.2}x when it is streamed to them",
        ratio(&imported),
        if ratio(&imported) <= 1.5 {
            "goal met: within 1.5x"
        } else {
            "goal missed: over 1.5x"
        },
        ratio(&streamed)
    );
    for (name, values) in [("file imported", &imported), ("file streamed", &streamed)] {
        bench::verdict(&bench::Verdict {
            what: format!("restore {} MiB: steward restore, {name}", size >> 20),
            steward: bench::seconds(spread(values).0),
            baseline: bench::seconds(manual_ms),
            ratio: format!("{:.2}x time", ratio(values)),
            goal: "within 1.5x",
            met: ratio(values) <= 1.5,
        });
    }
    manual.stop();
    cluster.cleanup();
}
