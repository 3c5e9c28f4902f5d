//! The fleet inventory: the clusters one `steward fleet` command works on,
//! each by its cluster file, with a name and labels.
//!
//! ```toml
//! # steward fleet inventory
//! [[clusters]]
//! name = "eu-1"                       # unique; used in reports, events and --canary
//! file = "clusters/eu-1.toml"         # its cluster file, relative to this file
//! labels = ["canary", "eu"]           # optional: for --canary and --waves
//!
//! [[clusters]]
//! name = "us-1"
//! file = "/etc/steward/us-1.toml"
//! labels = ["us"]
//! ```
//!
//! Each cluster file keeps its own `[agent_tls]`, `[etcd]` TLS and etcd
//! user, so one fleet run reaches clusters with different CAs and
//! credentials. Unknown fields are refused.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::engine::error::Unacceptable;

/// What the file holds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InventoryFile {
    clusters: Vec<Entry>,
}

/// One `[[clusters]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    file: PathBuf,
    #[serde(default)]
    labels: Vec<String>,
}

/// A validated inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    /// Where it was read from.
    pub path: PathBuf,
    /// The clusters, in the file's order.
    pub clusters: Vec<FleetCluster>,
}

/// One cluster of the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetCluster {
    /// Its name, unique in the inventory.
    pub name: String,
    /// Its cluster file, resolved against the inventory's directory.
    pub file: PathBuf,
    /// Its labels.
    pub labels: Vec<String>,
}

impl FleetCluster {
    /// True when `selector` is its name or one of its labels.
    #[must_use]
    pub fn matches(&self, selector: &str) -> bool {
        self.name == selector || self.labels.iter().any(|l| l == selector)
    }
}

/// Why an inventory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The file cannot be read.
    #[error("cannot read the inventory {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The TOML does not parse or has fields steward does not know.
    #[error("the inventory {}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What toml says.
        source: toml::de::Error,
    },
    /// A field is wrong.
    #[error("the inventory {}: {problem}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the cluster and field.
        problem: String,
    },
}

impl Inventory {
    /// Reads and validates the inventory at `path`.
    ///
    /// # Errors
    /// [`InventoryError`] naming the file and what is wrong with it.
    pub fn load(path: &Path) -> Result<Self, InventoryError> {
        let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Validates `text` as the inventory at `path` (relative cluster files
    /// are taken from its directory).
    ///
    /// # Errors
    /// [`InventoryError`]: no clusters, a name that is empty, repeated or
    /// not a plain word, a cluster file named twice, an empty label.
    pub fn parse(path: &Path, text: &str) -> Result<Self, InventoryError> {
        let file: InventoryFile = toml::from_str(text).map_err(|source| InventoryError::Parse {
            path: path.to_owned(),
            source,
        })?;
        let invalid = |problem: String| InventoryError::Invalid {
            path: path.to_owned(),
            problem,
        };
        if file.clusters.is_empty() {
            return Err(invalid("lists no [[clusters]]".into()));
        }
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        let mut names = BTreeSet::new();
        let mut files = BTreeSet::new();
        let mut clusters = Vec::new();
        for (i, entry) in file.clusters.into_iter().enumerate() {
            let at = format!("clusters[{i}]");
            check_word(&entry.name).map_err(|why| invalid(format!("{at}.name {why}")))?;
            if !names.insert(entry.name.clone()) {
                return Err(invalid(format!("{at}.name {:?} is listed twice", entry.name)));
            }
            for label in &entry.labels {
                check_word(label).map_err(|why| invalid(format!("{}: label {why}", entry.name)))?;
            }
            if entry.file.as_os_str().is_empty() {
                return Err(invalid(format!("{}: file is empty", entry.name)));
            }
            let resolved = if entry.file.is_absolute() {
                entry.file
            } else {
                base.join(entry.file)
            };
            if !files.insert(resolved.clone()) {
                return Err(invalid(format!(
                    "{}: the cluster file {} is listed twice",
                    entry.name,
                    resolved.display()
                )));
            }
            clusters.push(FleetCluster {
                name: entry.name,
                file: resolved,
                labels: entry.labels,
            });
        }
        Ok(Self {
            path: path.to_owned(),
            clusters,
        })
    }
}

/// Names and labels are plain words: they appear in flags, tables and
/// file names.
fn check_word(word: &str) -> Result<(), Unacceptable> {
    if word.is_empty() {
        return Err(Unacceptable("is empty".into()));
    }
    if !word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(Unacceptable(format!(
            "{word:?} may hold only letters, digits, '-', '_' and '.'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Inventory, InventoryError> {
        Inventory::parse(Path::new("/srv/fleet/inventory.toml"), text)
    }

    #[test]
    fn clusters_resolve_against_the_inventory_directory() {
        let inventory = parse(
            r#"
            [[clusters]]
            name = "eu-1"
            file = "clusters/eu-1.toml"
            labels = ["canary", "eu"]

            [[clusters]]
            name = "us-1"
            file = "/etc/steward/us-1.toml"
            "#,
        )
        .unwrap();
        assert_eq!(inventory.clusters.len(), 2);
        assert_eq!(inventory.clusters[0].file, Path::new("/srv/fleet/clusters/eu-1.toml"));
        assert_eq!(inventory.clusters[1].file, Path::new("/etc/steward/us-1.toml"));
        assert!(inventory.clusters[0].matches("canary"));
        assert!(inventory.clusters[0].matches("eu-1"));
        assert!(!inventory.clusters[1].matches("eu"));
    }

    #[test]
    fn mistakes_are_refused_naming_the_cluster_and_field() {
        let cases = [
            ("clusters = []", "lists no [[clusters]]"),
            (
                "[[clusters]]\nname = \"a\"\nfile = \"a.toml\"\n[[clusters]]\nname = \"a\"\nfile = \"b.toml\"",
                "clusters[1].name \"a\" is listed twice",
            ),
            (
                "[[clusters]]\nname = \"a\"\nfile = \"x.toml\"\n[[clusters]]\nname = \"b\"\nfile = \"x.toml\"",
                "b: the cluster file /srv/fleet/x.toml is listed twice",
            ),
            (
                "[[clusters]]\nname = \"a b\"\nfile = \"a.toml\"",
                "clusters[0].name \"a b\" may hold only",
            ),
            (
                "[[clusters]]\nname = \"a\"\nfile = \"a.toml\"\nlabels = [\"\"]",
                "a: label is empty",
            ),
            ("[[clusters]]\nname = \"a\"\nfile = \"\"", "a: file is empty"),
        ];
        for (text, expected) in cases {
            let error = parse(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
        let error = parse("[[clusters]]\nname = \"a\"\nfile = \"a.toml\"\nlable = []").unwrap_err();
        assert!(error.to_string().contains("unknown field `lable`"), "{error}");
    }
}
