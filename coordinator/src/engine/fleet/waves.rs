//! The order a fleet command works in, decided before anything runs: the
//! canary clusters first and one at a time, then one wave per label asked
//! for, then the rest; inside a wave, up to `--parallel` clusters at once.

use serde::Serialize;

use super::inventory::{FleetCluster, Inventory};

/// One wave: clusters that may run side by side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Wave {
    /// `canary`, the label, or `rest`.
    pub name: String,
    /// The clusters, in inventory order.
    pub clusters: Vec<String>,
    /// How many may run at once.
    pub parallel: usize,
}

/// How the clusters are grouped.
#[derive(Debug, Clone, Default)]
pub struct WaveSpec {
    /// Names or labels of the canary clusters: they go first, alone.
    pub canary: Vec<String>,
    /// Labels, one wave each, in this order, after the canaries.
    pub waves: Vec<String>,
    /// Clusters at once inside a wave (at least 1).
    pub parallel: usize,
}

/// Why the waves cannot be formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaveError {
    /// A selector matches no cluster: a typo must not silently skip the
    /// canary.
    #[error("{flag} {selector}: no cluster has this {what}")]
    NoMatch {
        /// `--canary` or `--waves`.
        flag: &'static str,
        /// What was asked for.
        selector: String,
        /// "name or label", or "label".
        what: &'static str,
    },
    /// `--parallel 0`.
    #[error("--parallel must be at least 1")]
    NoParallelism,
}

/// Groups the inventory's clusters into waves. Each cluster is in exactly
/// one wave: the first that selects it.
///
/// # Errors
/// [`WaveError`]: a canary or wave selector matches no cluster, or
/// `parallel` is 0.
pub fn plan_waves(inventory: &Inventory, spec: &WaveSpec) -> Result<Vec<Wave>, WaveError> {
    if spec.parallel == 0 {
        return Err(WaveError::NoParallelism);
    }
    let mut placed = vec![false; inventory.clusters.len()];
    let mut take = |select: &dyn Fn(&FleetCluster) -> bool| -> Vec<String> {
        inventory
            .clusters
            .iter()
            .zip(placed.iter_mut())
            .filter(|(cluster, done)| !**done && select(cluster))
            .map(|(cluster, done)| {
                *done = true;
                cluster.name.clone()
            })
            .collect()
    };
    let mut waves = Vec::new();
    for selector in &spec.canary {
        if !inventory.clusters.iter().any(|c| c.matches(selector)) {
            return Err(WaveError::NoMatch {
                flag: "--canary",
                selector: selector.clone(),
                what: "name or label",
            });
        }
    }
    let canaries = take(&|c| spec.canary.iter().any(|s| c.matches(s)));
    if !canaries.is_empty() {
        waves.push(Wave {
            name: "canary".into(),
            clusters: canaries,
            parallel: 1,
        });
    }
    for label in &spec.waves {
        if !inventory.clusters.iter().any(|c| c.labels.contains(label)) {
            return Err(WaveError::NoMatch {
                flag: "--waves",
                selector: label.clone(),
                what: "label",
            });
        }
        let clusters = take(&|c| c.labels.contains(label));
        if !clusters.is_empty() {
            waves.push(Wave {
                name: label.clone(),
                clusters,
                parallel: spec.parallel,
            });
        }
    }
    let rest = take(&|_| true);
    if !rest.is_empty() {
        waves.push(Wave {
            name: "rest".into(),
            clusters: rest,
            parallel: spec.parallel,
        });
    }
    Ok(waves)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn inventory() -> Inventory {
        Inventory::parse(
            Path::new("/f/inventory.toml"),
            r#"
            [[clusters]]
            name = "a"
            file = "a.toml"
            labels = ["eu"]
            [[clusters]]
            name = "b"
            file = "b.toml"
            labels = ["eu", "canary"]
            [[clusters]]
            name = "c"
            file = "c.toml"
            labels = ["us"]
            [[clusters]]
            name = "d"
            file = "d.toml"
            "#,
        )
        .unwrap()
    }

    fn names(waves: &[Wave]) -> Vec<(String, Vec<String>, usize)> {
        waves
            .iter()
            .map(|w| (w.name.clone(), w.clusters.clone(), w.parallel))
            .collect()
    }

    fn spec(canary: &[&str], waves: &[&str], parallel: usize) -> WaveSpec {
        WaveSpec {
            canary: canary.iter().map(|s| (*s).to_owned()).collect(),
            waves: waves.iter().map(|s| (*s).to_owned()).collect(),
            parallel,
        }
    }

    fn wave(name: &str, clusters: &[&str], parallel: usize) -> (String, Vec<String>, usize) {
        (
            name.into(),
            clusters.iter().map(|s| (*s).to_owned()).collect(),
            parallel,
        )
    }

    #[test]
    fn without_canary_or_waves_everything_is_one_wave() {
        let waves = plan_waves(&inventory(), &spec(&[], &[], 2)).unwrap();
        assert_eq!(names(&waves), vec![wave("rest", &["a", "b", "c", "d"], 2)]);
    }

    #[test]
    fn the_canary_goes_first_and_alone_by_name_or_label() {
        let waves = plan_waves(&inventory(), &spec(&["canary"], &[], 4)).unwrap();
        assert_eq!(
            names(&waves),
            vec![wave("canary", &["b"], 1), wave("rest", &["a", "c", "d"], 4)]
        );
        let waves = plan_waves(&inventory(), &spec(&["c", "a"], &[], 4)).unwrap();
        assert_eq!(
            names(&waves),
            vec![wave("canary", &["a", "c"], 1), wave("rest", &["b", "d"], 4)]
        );
    }

    #[test]
    fn waves_follow_the_labels_in_order_and_the_rest_goes_last() {
        let waves = plan_waves(&inventory(), &spec(&["b"], &["us", "eu"], 2)).unwrap();
        assert_eq!(
            names(&waves),
            vec![
                wave("canary", &["b"], 1),
                wave("us", &["c"], 2),
                wave("eu", &["a"], 2),
                wave("rest", &["d"], 2)
            ]
        );
    }

    #[test]
    fn a_selector_that_matches_nothing_is_refused() {
        assert_eq!(
            plan_waves(&inventory(), &spec(&["canery"], &[], 1)).unwrap_err(),
            WaveError::NoMatch {
                flag: "--canary",
                selector: "canery".into(),
                what: "name or label",
            }
        );
        assert_eq!(
            plan_waves(&inventory(), &spec(&[], &["a"], 1)).unwrap_err().to_string(),
            "--waves a: no cluster has this label"
        );
        assert_eq!(
            plan_waves(&inventory(), &spec(&[], &[], 0)).unwrap_err(),
            WaveError::NoParallelism
        );
    }
}
