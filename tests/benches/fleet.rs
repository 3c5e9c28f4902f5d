//! Benchmark: `steward fleet upgrade` of 8 fresh 3-member clusters with
//! `--parallel 8`, against the same command on one such cluster alone, in
//! the same run (3.4 -> 3.5, the release `steward` binary, each cluster with
//! its own agent CA from its own cluster file).
//!
//! `scripts/bench` runs it after the rolling benchmark and prints, per
//! round and as medians: the wall time of each fleet command, the median
//! time of one cluster's change inside it, and the ratio of the 8-cluster
//! run to the single one. Goal: 8 clusters within 2x the time of one.
//! `STEWARD_FLEET_ROUNDS` sets the number of rounds (3 by default; the
//! median of an even count is its upper value, so 2 rounds judge the worse).

// A benchmark harness: a failed step ends the measurement with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// A benchmark's whole purpose is to print its figures on stdout.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use steward_tests::bench::{self, count_from_env, median};
use steward_tests::binaries::binaries_dir;
use steward_tests::fleet::{steward_by_cluster_files, write_cluster_file, write_inventory};
use steward_tests::{ClusterBuilder, Release, newest};

struct Row {
    clusters: usize,
    total_ms: u64,
    median_cluster_ms: u64,
    slowest_cluster_ms: u64,
}

fn rounds() -> u64 {
    count_from_env("STEWARD_FLEET_ROUNDS", 3)
}

/// Starts `n` clusters on `from`, then times `steward fleet upgrade
/// --parallel n` of all of them to `to`.
async fn fleet_upgrade(n: usize, from: &Release, to: &Release) -> Row {
    let mut clusters = Vec::new();
    for _ in 0..n {
        clusters.push(ClusterBuilder::new(3, from.clone()).start().await);
    }
    let work = tempfile::tempdir().expect("a work dir");
    let names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    let files: Vec<_> = names
        .iter()
        .zip(&clusters)
        .map(|(name, cluster)| write_cluster_file(work.path(), name, cluster))
        .collect();
    let entries: Vec<(&str, &std::path::Path, &[&str])> = names
        .iter()
        .zip(&files)
        .map(|(name, file)| (name.as_str(), file.as_path(), [].as_slice()))
        .collect();
    let inventory = write_inventory(work.path(), &entries);
    let parallel = n.to_string();
    let began = Instant::now();
    let output = steward_by_cluster_files(&[
        "fleet",
        "upgrade",
        "--inventory",
        inventory.to_str().expect("utf-8"),
        "--to",
        &to.version.to_string(),
        "--binaries",
        binaries_dir().to_str().expect("utf-8"),
        "--parallel",
        &parallel,
        "-w",
        "json",
    ]);
    let total_ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
    assert!(
        output.status.success(),
        "fleet upgrade of {n}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("the fleet report");
    let took: Vec<u64> = report["clusters"]
        .as_array()
        .expect("clusters")
        .iter()
        .map(|c| {
            assert_eq!(c["result"], "succeeded", "{c}");
            c["took_ms"].as_u64().unwrap_or(0)
        })
        .collect();
    drop(clusters);
    Row {
        clusters: n,
        total_ms,
        median_cluster_ms: median(took.clone()),
        slowest_cluster_ms: took.into_iter().max().unwrap_or(0),
    }
}

fn print(rows: &[&Row]) {
    println!(
        "{:<10} {:>9} {:>10} {:>18} {:>19}",
        "clusters", "parallel", "total ms", "median cluster ms", "slowest cluster ms"
    );
    for r in rows {
        println!(
            "{:<10} {:>9} {:>10} {:>18} {:>19}",
            r.clusters, r.clusters, r.total_ms, r.median_cluster_ms, r.slowest_cluster_ms
        );
    }
}

fn main() {
    let runtime = bench::runtime();
    let from = newest(3, 4);
    let to = newest(3, 5);
    println!(
        "steward fleet upgrade {} -> {}, 3-member clusters: 8 with --parallel 8 against 1 alone, {} rounds, {} cores",
        from.version,
        to.version,
        rounds(),
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    let mut ones = Vec::new();
    let mut eights = Vec::new();
    for round in 0..rounds() {
        let (one, eight) = runtime.block_on(async {
            // Alternate which goes first, so neither always runs on the
            // warmer machine.
            if round % 2 == 0 {
                let one = fleet_upgrade(1, &from, &to).await;
                (one, fleet_upgrade(8, &from, &to).await)
            } else {
                let eight = fleet_upgrade(8, &from, &to).await;
                (fleet_upgrade(1, &from, &to).await, eight)
            }
        });
        println!("\nround {}", round + 1);
        print(&[&one, &eight]);
        ones.push(one);
        eights.push(eight);
    }
    let one = median(ones.iter().map(|r| r.total_ms).collect());
    let eight = median(eights.iter().map(|r| r.total_ms).collect());
    println!("\nmedians of {} rounds", ones.len());
    println!("1 cluster alone:          {one} ms");
    println!("8 clusters, --parallel 8: {eight} ms");
    #[allow(clippy::cast_precision_loss)]
    let ratio = eight as f64 / one.max(1) as f64;
    println!("ratio: {ratio:.2}x (goal: within 2x)");
    bench::verdict(&bench::Verdict {
        what: format!("fleet {} -> {}: 8 clusters, --parallel 8", from.version, to.version),
        steward: bench::seconds(eight),
        baseline: bench::seconds(one),
        ratio: format!("{ratio:.2}x time"),
        goal: "within 2x",
        met: ratio <= 2.0,
    });
}
