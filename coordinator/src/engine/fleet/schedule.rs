//! Running one job per cluster, wave after wave, up to a wave's
//! parallelism at once, and stopping to start new ones at the first
//! failure (or after `max_failures`) or when the run is cancelled.
//! Clusters already running then finish their own job: cutting a rolling
//! change short is the cluster's own safe-point business, not the fleet's.

use std::future::Future;
use std::time::Instant;

use futures::stream::{FuturesUnordered, StreamExt as _};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::inventory::{FleetCluster, Inventory};
use super::waves::Wave;
use crate::engine::report::millis;

/// How one cluster's job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClusterOutcome {
    /// The job did what it was asked.
    Succeeded,
    /// Nothing to do: the cluster was already where it was asked to be.
    Skipped,
    /// A check refused the job; nothing was changed.
    Refused,
    /// The job failed (the cluster's report says where and why).
    Failed,
    /// The job was cancelled and stopped at a safe point.
    Cancelled,
    /// The fleet stopped before this cluster's turn; it was not touched.
    NotStarted,
}

impl ClusterOutcome {
    /// Whether it counts against `--max-failures`.
    #[must_use]
    pub const fn is_failure(self) -> bool {
        matches!(self, Self::Refused | Self::Failed)
    }

    /// How bad it is, for "the worst wins": success and skip 0, refused 1,
    /// cancelled 2, failed 3. A cluster not started says nothing itself.
    #[must_use]
    pub const fn severity(self) -> u8 {
        match self {
            Self::Succeeded | Self::Skipped | Self::NotStarted => 0,
            Self::Refused => 1,
            Self::Cancelled => 2,
            Self::Failed => 3,
        }
    }
}

/// One cluster's line of the fleet report.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterResult {
    /// The cluster's name.
    pub name: String,
    /// Its labels.
    pub labels: Vec<String>,
    /// The wave it belonged to.
    pub wave: String,
    /// How its job ended.
    pub result: ClusterOutcome,
    /// Milliseconds its job took.
    pub took_ms: u64,
    /// Where and why it did not succeed, or why it was skipped.
    pub reason: Option<String>,
    /// The cluster's own report (`steward.report/v1` for a change), when
    /// its job got that far.
    pub report: Option<serde_json::Value>,
}

impl ClusterResult {
    /// A result for `cluster` in `wave`; the job fills in the rest.
    #[must_use]
    pub fn new(cluster: &FleetCluster, wave: &str, result: ClusterOutcome) -> Self {
        Self {
            name: cluster.name.clone(),
            labels: cluster.labels.clone(),
            wave: wave.to_owned(),
            result,
            took_ms: 0,
            reason: None,
            report: None,
        }
    }

    /// The same, with a reason.
    #[must_use]
    pub fn because(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

/// When the fleet stops starting clusters.
#[derive(Debug, Clone, Default)]
pub struct StopRule {
    /// Failures (refused or failed clusters) tolerated; one more stops the
    /// run. 0: stop at the first.
    pub max_failures: usize,
    /// Cancelling it stops the run too.
    pub cancel: CancellationToken,
}

/// Runs `job` for every cluster of `waves`, in order, each wave up to its
/// parallelism at once. Returns one result per cluster of the inventory
/// that is in a wave, in inventory order.
pub async fn run_waves<F, Fut>(inventory: &Inventory, waves: &[Wave], stop: &StopRule, job: F) -> Vec<ClusterResult>
where
    F: Fn(FleetCluster, String) -> Fut,
    Fut: Future<Output = ClusterResult>,
{
    let mut results: Vec<ClusterResult> = Vec::new();
    let mut failures = 0;
    let mut stopped = false;
    for wave in waves {
        let mut queue = wave
            .clusters
            .iter()
            .filter_map(|name| inventory.clusters.iter().find(|c| c.name == *name))
            .cloned();
        let mut running = FuturesUnordered::new();
        loop {
            stopped = stopped || failures > stop.max_failures || stop.cancel.is_cancelled();
            if !stopped
                && running.len() < wave.parallel.max(1)
                && let Some(cluster) = queue.next()
            {
                let began = Instant::now();
                let job = job(cluster, wave.name.clone());
                running.push(async move {
                    let mut result = job.await;
                    result.took_ms = millis(began.elapsed());
                    result
                });
                continue;
            }
            let Some(result) = running.next().await else { break };
            if result.result.is_failure() {
                failures += 1;
            }
            results.push(result);
        }
        for cluster in queue {
            results.push(ClusterResult::new(&cluster, &wave.name, ClusterOutcome::NotStarted));
        }
    }
    results.sort_by_key(|r| inventory.clusters.iter().position(|c| c.name == r.name));
    results
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::engine::fleet::waves::{WaveSpec, plan_waves};

    fn inventory(n: usize) -> Inventory {
        let text: String = (0..n)
            .map(|i| {
                format!(
                    "[[clusters]]\nname = \"c{i}\"\nfile = \"c{i}.toml\"\nlabels = [\"l{}\"]\n",
                    i % 2
                )
            })
            .collect();
        Inventory::parse(Path::new("/f/i.toml"), &text).unwrap()
    }

    fn outcomes(results: &[ClusterResult]) -> Vec<(String, ClusterOutcome)> {
        results.iter().map(|r| (r.name.clone(), r.result)).collect()
    }

    /// Runs the fleet with jobs that fail for the clusters in `failing`,
    /// recording the order they started in.
    async fn run(
        inventory: &Inventory,
        spec: &WaveSpec,
        stop: &StopRule,
        failing: &[&str],
    ) -> (Vec<ClusterResult>, Vec<String>) {
        let waves = plan_waves(inventory, spec).unwrap();
        let started = std::sync::Mutex::new(Vec::new());
        let results = run_waves(inventory, &waves, stop, |cluster, wave| {
            started.lock().unwrap().push(cluster.name.clone());
            let fails = failing.contains(&cluster.name.as_str());
            async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let outcome = if fails {
                    ClusterOutcome::Failed
                } else {
                    ClusterOutcome::Succeeded
                };
                ClusterResult::new(&cluster, &wave, outcome)
            }
        })
        .await;
        let started = started.into_inner().unwrap();
        (results, started)
    }

    fn spec(canary: &[&str], parallel: usize) -> WaveSpec {
        WaveSpec {
            canary: canary.iter().map(|s| (*s).to_owned()).collect(),
            waves: Vec::new(),
            parallel,
        }
    }

    #[tokio::test]
    async fn every_cluster_runs_and_results_keep_inventory_order() {
        let inventory = inventory(4);
        let (results, started) = run(&inventory, &spec(&["c2"], 2), &StopRule::default(), &[]).await;
        assert_eq!(started[0], "c2", "the canary first");
        assert!(results.iter().all(|r| r.result == ClusterOutcome::Succeeded));
        let names: Vec<&str> = results.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["c0", "c1", "c2", "c3"]);
        assert_eq!(results[2].wave, "canary");
        assert_eq!(results[0].wave, "rest");
    }

    #[tokio::test]
    async fn a_failing_canary_stops_the_fleet_before_anything_else_starts() {
        let inventory = inventory(4);
        let (results, started) = run(&inventory, &spec(&["c1"], 2), &StopRule::default(), &["c1"]).await;
        assert_eq!(started, ["c1"]);
        assert_eq!(
            outcomes(&results),
            [
                ("c0".into(), ClusterOutcome::NotStarted),
                ("c1".into(), ClusterOutcome::Failed),
                ("c2".into(), ClusterOutcome::NotStarted),
                ("c3".into(), ClusterOutcome::NotStarted),
            ]
        );
    }

    #[tokio::test]
    async fn a_failure_lets_running_clusters_finish_and_starts_no_more() {
        let inventory = inventory(5);
        // c0 and c1 run together; c0 fails; c1 finishes; nothing else starts.
        let (results, started) = run(&inventory, &spec(&[], 2), &StopRule::default(), &["c0"]).await;
        assert_eq!(started, ["c0", "c1"]);
        assert_eq!(results[1].result, ClusterOutcome::Succeeded);
        assert!(results[2..].iter().all(|r| r.result == ClusterOutcome::NotStarted));
    }

    #[tokio::test]
    async fn max_failures_tolerates_that_many() {
        let inventory = inventory(4);
        let stop = StopRule {
            max_failures: 1,
            ..StopRule::default()
        };
        let (results, _) = run(&inventory, &spec(&[], 1), &stop, &["c0", "c2"]).await;
        assert_eq!(
            outcomes(&results),
            [
                ("c0".into(), ClusterOutcome::Failed),
                ("c1".into(), ClusterOutcome::Succeeded),
                ("c2".into(), ClusterOutcome::Failed),
                ("c3".into(), ClusterOutcome::NotStarted),
            ]
        );
    }

    #[tokio::test]
    async fn a_cancelled_run_starts_nothing() {
        let inventory = inventory(2);
        let stop = StopRule::default();
        stop.cancel.cancel();
        let (results, started) = run(&inventory, &spec(&[], 2), &stop, &[]).await;
        assert!(started.is_empty());
        assert!(results.iter().all(|r| r.result == ClusterOutcome::NotStarted));
    }

    #[test]
    fn the_worst_outcome_wins() {
        let mut all = [
            ClusterOutcome::Failed,
            ClusterOutcome::Succeeded,
            ClusterOutcome::Cancelled,
            ClusterOutcome::Refused,
            ClusterOutcome::NotStarted,
            ClusterOutcome::Skipped,
        ];
        all.sort_by_key(|o| o.severity());
        assert_eq!(all.last(), Some(&ClusterOutcome::Failed));
        assert!(ClusterOutcome::Cancelled.severity() > ClusterOutcome::Refused.severity());
    }
}
