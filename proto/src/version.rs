//! etcd release versions as both sides of the contract read them.
//!
//! Versions cross the wire as strings ("3.5.16"); this type is the one place
//! that parses them, so the agent and the coordinator agree on what a valid
//! version is and on how two versions compare.

use std::fmt;
use std::str::FromStr;

/// An etcd release version such as `3.5.16` (a leading `v` is accepted when
/// parsing, and never printed).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EtcdVersion(semver::Version);

/// Why a string is not an etcd version.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    /// The string is empty.
    #[error("version is empty")]
    Empty,
    /// The string is not `MAJOR.MINOR.PATCH`.
    #[error("{input:?} is not a version of the form MAJOR.MINOR.PATCH")]
    Malformed {
        /// What was given.
        input: String,
        /// What semver said.
        #[source]
        source: semver::Error,
    },
}

impl EtcdVersion {
    /// A version from its parts.
    #[must_use]
    pub const fn new(major: u64, minor: u64, patch: u64) -> Self {
        Self(semver::Version::new(major, minor, patch))
    }

    /// The major version.
    #[must_use]
    pub const fn major(&self) -> u64 {
        self.0.major
    }

    /// The minor version.
    #[must_use]
    pub const fn minor(&self) -> u64 {
        self.0.minor
    }

    /// The patch version.
    #[must_use]
    pub const fn patch(&self) -> u64 {
        self.0.patch
    }

    /// `(major, minor)`: the part that decides cluster versions and which
    /// upgrade rules apply.
    #[must_use]
    pub const fn minor_version(&self) -> (u64, u64) {
        (self.0.major, self.0.minor)
    }

    /// True when `self` is at least `major.minor` (any patch).
    #[must_use]
    pub fn at_least_minor(&self, major: u64, minor: u64) -> bool {
        self.minor_version() >= (major, minor)
    }

    /// The program that restores a snapshot for this version: `etcdutl`
    /// from 3.5 (where `etcdctl snapshot restore` was deprecated), `etcdctl`
    /// before.
    #[must_use]
    pub fn restore_tool(&self) -> &'static str {
        if self.at_least_minor(3, 5) {
            "etcdutl"
        } else {
            "etcdctl"
        }
    }

    /// True when both versions share `major.minor`.
    #[must_use]
    pub fn same_minor(&self, other: &Self) -> bool {
        self.minor_version() == other.minor_version()
    }
}

impl FromStr for EtcdVersion {
    type Err = VersionError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(VersionError::Empty);
        }
        let bare = trimmed.strip_prefix('v').unwrap_or(trimmed);
        semver::Version::parse(bare)
            .map(Self)
            .map_err(|source| VersionError::Malformed {
                input: input.to_owned(),
                source,
            })
    }
}

impl fmt::Display for EtcdVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl serde::Serialize for EtcdVersion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for EtcdVersion {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_and_without_v() {
        assert_eq!("v3.5.16".parse::<EtcdVersion>().unwrap(), EtcdVersion::new(3, 5, 16));
        assert_eq!("3.4.23".parse::<EtcdVersion>().unwrap(), EtcdVersion::new(3, 4, 23));
    }

    #[test]
    fn the_restore_tool_follows_the_version() {
        for (version, tool) in [
            ("3.3.25", "etcdctl"),
            ("3.4.23", "etcdctl"),
            ("3.5.0", "etcdutl"),
            ("3.6.1", "etcdutl"),
        ] {
            assert_eq!(
                version.parse::<EtcdVersion>().unwrap().restore_tool(),
                tool,
                "{version}"
            );
        }
    }

    #[test]
    fn refuses_garbage() {
        assert!(matches!("".parse::<EtcdVersion>(), Err(VersionError::Empty)));
        let err = "3.5".parse::<EtcdVersion>().unwrap_err();
        assert!(err.to_string().contains("\"3.5\""), "{err}");
        assert!("three".parse::<EtcdVersion>().is_err());
    }

    #[test]
    fn orders_by_semver() {
        let a: EtcdVersion = "3.4.23".parse().unwrap();
        let b: EtcdVersion = "3.5.0".parse().unwrap();
        assert!(a < b);
        assert!(b.at_least_minor(3, 5));
        assert!(!a.at_least_minor(3, 5));
        assert!(!a.same_minor(&b));
        assert_eq!(b.to_string(), "3.5.0");
    }
}
