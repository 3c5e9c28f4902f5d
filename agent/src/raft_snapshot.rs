//! A fresh raft snapshot on 3.6 before a member starts 3.7.
//!
//! etcd 3.7 no longer reads the v2 requests etcd 3.5 wrote into the
//! write-ahead log (3.5 publishes its members and, as leader, syncs through
//! them). On start etcd replays every log entry after its newest raft
//! snapshot, so a member whose newest snapshot is older than its last 3.5
//! entry panics on 3.7 ("unmarshal should never fail"). 3.6 writes no v2
//! requests but snapshots only every `--snapshot-count` entries (10000 by
//! default), so a cluster that went from 3.5 to 3.6 recently still has them.
//!
//! The remedy is the 3.6 upgrade guide's own for v2 entries in the log: run
//! the member once with `--snapshot-count=1`, wait for the snapshot, then
//! go on. The agent does this inside the switch to 3.7, while the member is
//! down anyway, so the coordinator's quorum gate covers it.

use std::path::Path;

use steward_proto::EtcdVersion;

/// The flag the snapshot run sets.
pub const SNAPSHOT_COUNT_FLAG: &str = "--snapshot-count";

/// True when switching from `active` to `target` needs a fresh raft snapshot
/// first: 3.6 to 3.7 or later.
#[must_use]
pub fn needed(active: Option<&EtcdVersion>, target: &EtcdVersion) -> bool {
    active.is_some_and(|a| a.minor_version() == (3, 6)) && target.at_least_minor(3, 7)
}

/// The raft index of the newest snapshot file in the member's snap dir
/// (`member/snap/<term>-<index>.snap`, both in hex); `None` when there is
/// none.
#[must_use]
pub fn newest_index(data_dir: &Path) -> Option<u64> {
    let entries = std::fs::read_dir(data_dir.join("member").join("snap")).ok()?;
    entries
        .flatten()
        .filter_map(|entry| index_of(&entry.file_name().to_string_lossy()))
        .max()
}

fn index_of(file_name: &str) -> Option<u64> {
    let stem = file_name.strip_suffix(".snap")?;
    let (term, index) = stem.split_once('-')?;
    if term.len() != 16 || index.len() != 16 {
        return None;
    }
    u64::from_str_radix(term, 16).ok()?;
    u64::from_str_radix(index, 16).ok()
}

/// `args` with `--snapshot-count=1` in place of any snapshot count they set.
#[must_use]
pub fn with_snapshot_every_entry(args: &[String]) -> Vec<String> {
    let mut out: Vec<String> = args
        .iter()
        .filter(|a| a.as_str() != SNAPSHOT_COUNT_FLAG && !a.starts_with(&format!("{SNAPSHOT_COUNT_FLAG}=")))
        .cloned()
        .collect();
    out.push(format!("{SNAPSHOT_COUNT_FLAG}=1"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> EtcdVersion {
        text.parse().unwrap()
    }

    #[test]
    fn only_3_6_to_3_7_needs_it() {
        assert!(needed(Some(&v("3.6.17")), &v("3.7.3")));
        assert!(!needed(Some(&v("3.5.36")), &v("3.6.17")), "3.6 still reads v2 entries");
        assert!(
            !needed(Some(&v("3.7.3")), &v("3.6.17")),
            "a downgrade writes no v2 entries"
        );
        assert!(!needed(Some(&v("3.6.10")), &v("3.6.17")));
        assert!(!needed(None, &v("3.7.3")), "a first start has no log to replay");
    }

    #[test]
    fn reads_the_newest_snapshot_index() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(newest_index(dir.path()), None);
        let snap = dir.path().join("member/snap");
        std::fs::create_dir_all(&snap).unwrap();
        for name in [
            "0000000000000002-0000000000002711.snap",
            "0000000000000003-000000000000a000.snap",
            "0000000000000003-000000000000b000.snap.broken",
            "db",
            "0000000000000003-zz.snap",
        ] {
            std::fs::write(snap.join(name), b"x").unwrap();
        }
        assert_eq!(newest_index(dir.path()), Some(0xa000));
    }

    #[test]
    fn the_snapshot_count_is_replaced() {
        let args: Vec<String> = [
            "--name=m0",
            "--snapshot-count=50000",
            "--snapshot-count",
            "--quota-backend-bytes=1",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            with_snapshot_every_entry(&args),
            ["--name=m0", "--quota-backend-bytes=1", "--snapshot-count=1"]
        );
    }
}
