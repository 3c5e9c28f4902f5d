//! The real etcd release binaries the tests run, as `scripts/setup-etcd`
//! lays them out: `<dir>/<version>/{etcd,etcdctl,etcdutl}`.
//!
//! A test that needs a version that is not there fails loudly with the
//! command that fetches it; it never skips.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use steward_proto::EtcdVersion;

/// One etcd release on disk.
#[derive(Clone, Debug)]
pub struct Release {
    /// The version `etcd --version` reports.
    pub version: EtcdVersion,
    /// The directory holding its programs.
    pub dir: PathBuf,
}

impl Release {
    /// The server binary.
    #[must_use]
    pub fn etcd(&self) -> PathBuf {
        self.dir.join("etcd")
    }

    /// The client binary.
    #[must_use]
    pub fn etcdctl(&self) -> PathBuf {
        self.dir.join("etcdctl")
    }

    /// The offline utility (3.5+ only).
    #[must_use]
    pub fn etcdutl(&self) -> Option<PathBuf> {
        let path = self.dir.join("etcdutl");
        path.is_file().then_some(path)
    }
}

/// The directory the setup script fills: `STEWARD_ETCD_DIR`, or
/// `$XDG_CACHE_HOME/steward/etcd`, or `~/.cache/steward/etcd`.
#[must_use]
pub fn binaries_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("STEWARD_ETCD_DIR") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache"),
        PathBuf::from,
    );
    cache.join("steward").join("etcd")
}

/// Every release found, ascending, each version read from `etcd --version`.
pub fn releases() -> &'static [Release] {
    static RELEASES: OnceLock<Vec<Release>> = OnceLock::new();
    RELEASES.get_or_init(|| scan(&binaries_dir()))
}

fn scan(dir: &Path) -> Vec<Release> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let etcd = entry.path().join("etcd");
        if !etcd.is_file() {
            continue;
        }
        let Ok(output) = std::process::Command::new(&etcd).arg("--version").output() else {
            continue;
        };
        let text = String::from_utf8_lossy(&output.stdout);
        if let Some(version) = text
            .lines()
            .find_map(|l| l.strip_prefix("etcd Version:"))
            .and_then(|v| v.trim().parse().ok())
        {
            out.push(Release {
                version,
                dir: entry.path(),
            });
        }
    }
    out.sort_by(|a, b| a.version.cmp(&b.version));
    out
}

fn missing(what: &str) -> ! {
    panic!(
        "no etcd {what} in {}: run `scripts/setup-etcd` (the README's test command does) \
         or point STEWARD_ETCD_DIR at a directory it filled; found: [{}]",
        binaries_dir().display(),
        releases()
            .iter()
            .map(|r| r.version.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The releases of `major.minor` that are safe to run, ascending (3.5.0 to
/// 3.5.2 are left out: they have a known data-inconsistency bug).
fn safe_releases(major: u64, minor: u64) -> impl DoubleEndedIterator<Item = &'static Release> {
    releases().iter().filter(move |r| {
        r.version.minor_version() == (major, minor) && !(r.version.minor_version() == (3, 5) && r.version.patch() < 3)
    })
}

/// The newest safe release of `major.minor`.
#[must_use]
pub fn newest(major: u64, minor: u64) -> Release {
    safe_releases(major, minor)
        .next_back()
        .cloned()
        .unwrap_or_else(|| missing(&format!("{major}.{minor}.x")))
}

/// The oldest safe release of `major.minor` (for patch upgrades).
#[must_use]
pub fn oldest(major: u64, minor: u64) -> Release {
    safe_releases(major, minor)
        .next()
        .cloned()
        .unwrap_or_else(|| missing(&format!("{major}.{minor}.x")))
}

/// Exactly this version.
#[must_use]
pub fn exact(version: &str) -> Release {
    let wanted: EtcdVersion = version.parse().unwrap_or_else(|e| panic!("bad version {version}: {e}"));
    releases()
        .iter()
        .find(|r| r.version == wanted)
        .cloned()
        .unwrap_or_else(|| missing(version))
}
