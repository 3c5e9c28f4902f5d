//! Which etcd release a local cluster runs: the release directory laid out
//! by `scripts/setup-etcd` (`<dir>/<version>/etcd`), and the choice of a
//! version from an exact version or a minor.
//!
//! A minor (`3.5`) means the newest patch of it that is safe to run. etcd
//! 3.5.0 to 3.5.2 have a known data-inconsistency bug (fixed in 3.5.3), so a
//! minor never picks them; given exactly (`3.5.1`) they are used, because
//! the upgrade rules themselves must be testable against them.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use steward_proto::EtcdVersion;

use super::LocalError;

/// Why versions 3.5.0 to 3.5.2 are never picked for a minor.
pub const UNSAFE_REASON: &str = "etcd 3.5.0-3.5.2 have a known data-inconsistency bug (fixed in 3.5.3); \
     give the version exactly to use one anyway";

/// `--version`: an exact version or a minor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSpec {
    /// Exactly this release (`3.4.23`).
    Exact(EtcdVersion),
    /// The newest safe patch of `major.minor` (`3.4`).
    Minor(u64, u64),
}

impl FromStr for VersionSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        let bare = trimmed.strip_prefix('v').unwrap_or(trimmed);
        let parts: Vec<&str> = bare.split('.').collect();
        if let [major, minor] = parts.as_slice()
            && let (Ok(major), Ok(minor)) = (major.parse(), minor.parse())
        {
            return Ok(Self::Minor(major, minor));
        }
        bare.parse::<EtcdVersion>()
            .map(Self::Exact)
            .map_err(|_| format!("{text:?} is neither a version (3.4.23) nor a minor (3.4)"))
    }
}

impl fmt::Display for VersionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(version) => version.fmt(f),
            Self::Minor(major, minor) => write!(f, "{major}.{minor}"),
        }
    }
}

/// A release found in the release directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// The version (the directory's name; `scripts/setup-etcd` names it
    /// after what `etcd --version` reports, and the agent checks that again
    /// when it stages the binary).
    pub version: EtcdVersion,
    /// `<dir>/<version>/etcd`.
    pub etcd: PathBuf,
}

/// The default release directory, as `scripts/setup-etcd` computes it:
/// `$STEWARD_ETCD_DIR`, else `${XDG_CACHE_HOME:-$HOME/.cache}/steward/etcd`.
#[must_use]
pub fn default_dir() -> PathBuf {
    default_dir_from(|name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from))
}

fn default_dir_from(env: impl Fn(&str) -> Option<PathBuf>) -> PathBuf {
    if let Some(dir) = env("STEWARD_ETCD_DIR") {
        return dir;
    }
    let cache = env("XDG_CACHE_HOME").unwrap_or_else(|| env("HOME").unwrap_or_else(|| "/".into()).join(".cache"));
    cache.join("steward").join("etcd")
}

/// True for the releases a minor never picks.
#[must_use]
pub fn is_unsafe(version: &EtcdVersion) -> bool {
    version.minor_version() == (3, 5) && version.patch() < 3
}

/// Every release in `dir`: subdirectories named as a version that hold an
/// `etcd` file, ascending.
///
/// # Errors
/// [`LocalError::BinariesDir`] when `dir` cannot be listed.
pub fn scan(dir: &Path) -> Result<Vec<Release>, LocalError> {
    let entries = std::fs::read_dir(dir).map_err(|source| LocalError::BinariesDir {
        dir: dir.to_owned(),
        source,
    })?;
    let mut releases: Vec<Release> = entries
        .flatten()
        .filter_map(|entry| {
            let version: EtcdVersion = entry.file_name().to_str()?.parse().ok()?;
            let etcd = entry.path().join("etcd");
            etcd.is_file().then_some(Release { version, etcd })
        })
        .collect();
    releases.sort_by(|a, b| a.version.cmp(&b.version));
    Ok(releases)
}

/// Picks the release `wanted` names from those in `dir`.
///
/// # Errors
/// [`LocalError::BinariesDir`] when `dir` cannot be listed,
/// [`LocalError::VersionMissing`] when no release matches, and
/// [`LocalError::OnlyUnsafe`] when a minor has only unsafe releases (the
/// message says why they were skipped).
pub fn choose(dir: &Path, wanted: &VersionSpec) -> Result<Release, LocalError> {
    let releases = scan(dir)?;
    let missing = || LocalError::VersionMissing {
        wanted: wanted.to_string(),
        dir: dir.to_owned(),
        found: releases
            .iter()
            .map(|r| r.version.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    };
    match wanted {
        VersionSpec::Exact(version) => releases
            .iter()
            .find(|r| r.version == *version)
            .cloned()
            .ok_or_else(missing),
        VersionSpec::Minor(major, minor) => {
            let of_minor: Vec<&Release> = releases
                .iter()
                .filter(|r| r.version.minor_version() == (*major, *minor))
                .collect();
            // Unsafe releases are all older than the safe ones of their
            // minor, so they only ever matter when nothing else is there.
            if let Some(newest_safe) = of_minor.iter().rev().find(|r| !is_unsafe(&r.version)) {
                return Ok((*newest_safe).clone());
            }
            if of_minor.is_empty() {
                return Err(missing());
            }
            Err(LocalError::OnlyUnsafe {
                wanted: wanted.to_string(),
                dir: dir.to_owned(),
                skipped: of_minor
                    .iter()
                    .map(|r| r.version.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(versions: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for version in versions {
            std::fs::create_dir(dir.path().join(version)).unwrap();
            std::fs::write(dir.path().join(version).join("etcd"), b"").unwrap();
        }
        // Not releases: no etcd inside, or not a version name.
        std::fs::create_dir(dir.path().join("3.6.0")).unwrap();
        std::fs::create_dir(dir.path().join(".apt")).unwrap();
        std::fs::write(dir.path().join("versions.txt"), b"").unwrap();
        dir
    }

    fn v(text: &str) -> EtcdVersion {
        text.parse().unwrap()
    }

    #[test]
    fn specs_are_versions_or_minors() {
        assert_eq!("3.4".parse::<VersionSpec>().unwrap(), VersionSpec::Minor(3, 4));
        assert_eq!(
            "v3.5.16".parse::<VersionSpec>().unwrap(),
            VersionSpec::Exact(v("3.5.16"))
        );
        assert!("3".parse::<VersionSpec>().unwrap_err().contains("neither"));
        assert!("3.x".parse::<VersionSpec>().is_err());
        assert!("latest".parse::<VersionSpec>().is_err());
        assert_eq!(VersionSpec::Minor(3, 5).to_string(), "3.5");
    }

    #[test]
    fn a_minor_picks_its_newest_safe_patch() {
        let dir = dir_with(&["3.4.23", "3.4.9", "3.5.0", "3.5.1", "3.5.16", "3.5.30"]);
        let release = choose(dir.path(), &VersionSpec::Minor(3, 4)).unwrap();
        assert_eq!(release.version, v("3.4.23"));
        assert_eq!(release.etcd, dir.path().join("3.4.23/etcd"));
        assert_eq!(
            choose(dir.path(), &VersionSpec::Minor(3, 5)).unwrap().version,
            v("3.5.30")
        );
    }

    #[test]
    fn unsafe_patches_are_skipped_with_a_reason_unless_exact() {
        let dir = dir_with(&["3.4.23", "3.5.0", "3.5.1"]);
        let error = choose(dir.path(), &VersionSpec::Minor(3, 5)).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("3.5.0, 3.5.1"), "{text}");
        assert!(text.contains("data-inconsistency"), "{text}");
        let exact = choose(dir.path(), &VersionSpec::Exact(v("3.5.1"))).unwrap();
        assert_eq!(exact.version, v("3.5.1"));
        assert!(is_unsafe(&v("3.5.2")) && !is_unsafe(&v("3.5.3")) && !is_unsafe(&v("3.4.1")));
    }

    #[test]
    fn a_missing_version_names_the_dir_and_the_setup_script() {
        let dir = dir_with(&["3.4.23"]);
        for wanted in [
            VersionSpec::Minor(3, 3),
            VersionSpec::Exact(v("3.4.22")),
            VersionSpec::Minor(3, 6),
        ] {
            let text = choose(dir.path(), &wanted).unwrap_err().to_string();
            assert!(text.contains(&dir.path().display().to_string()), "{text}");
            assert!(text.contains("scripts/setup-etcd"), "{text}");
            assert!(text.contains("found: 3.4.23"), "{text}");
        }
        let error = choose(Path::new("/nonexistent/etcd"), &VersionSpec::Minor(3, 4)).unwrap_err();
        let text = crate::engine::error::chain(&error);
        assert!(text.contains("/nonexistent/etcd"), "{text}");
        assert!(text.contains("scripts/setup-etcd"), "{text}");
    }

    #[test]
    fn the_default_dir_follows_the_setup_script() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| PathBuf::from(v))
        };
        assert_eq!(
            default_dir_from(env(&[("STEWARD_ETCD_DIR", "/e"), ("HOME", "/h")])),
            PathBuf::from("/e")
        );
        assert_eq!(
            default_dir_from(env(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/h")])),
            PathBuf::from("/x/steward/etcd")
        );
        assert_eq!(
            default_dir_from(env(&[("HOME", "/h")])),
            PathBuf::from("/h/.cache/steward/etcd")
        );
    }
}
