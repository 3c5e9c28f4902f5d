//! Backups kept in a directory on a schedule: each file named after its
//! cluster, time and revision, and the oldest of the cluster's files
//! removed beyond a count. Pure functions; the command does the I/O.

use std::time::SystemTime;

/// The name a backup gets while it is copied, before its revision is
/// known: `<cluster>-<UTC time>.db`, e.g. `prod-east-20261205T020000.000Z.db`
/// (milliseconds, so that two runs in one second do not collide).
#[must_use]
pub fn pending_name(cluster: &str, taken: SystemTime) -> String {
    format!("{cluster}-{}.db", utc_stamp(taken))
}

/// The name of a finished backup: `<cluster>-<UTC time>-r<revision>.db`.
/// Names sort by time, so the oldest come first.
#[must_use]
pub fn final_name(cluster: &str, taken: SystemTime, revision: i64) -> String {
    format!("{cluster}-{}-r{revision}.db", utc_stamp(taken))
}

fn utc_stamp(time: SystemTime) -> String {
    let text = humantime::format_rfc3339_millis(time).to_string();
    // 2026-12-05T02:00:00.123Z -> 20261205T020000.123Z
    text.chars().filter(|c| *c != '-' && *c != ':').collect()
}

/// Whether `name` is a finished backup of `cluster` as [`final_name`]
/// makes them (and not, say, one of a cluster whose name extends this one).
#[must_use]
pub fn is_backup_of(cluster: &str, name: &str) -> bool {
    let Some(rest) = name.strip_prefix(cluster).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    let Some(rest) = rest.strip_suffix(".db") else {
        return false;
    };
    let Some((stamp, revision)) = rest.split_once("-r") else {
        return false;
    };
    let stamp_ok = stamp.len() == 20
        && stamp.as_bytes()[8] == b'T'
        && stamp.as_bytes()[15] == b'.'
        && stamp.as_bytes()[19] == b'Z'
        && stamp
            .char_indices()
            .all(|(i, c)| matches!(i, 8 | 15 | 19) || c.is_ascii_digit());
    stamp_ok && !revision.is_empty() && revision.chars().all(|c| c.is_ascii_digit())
}

/// Which of `names` (a directory's entries) to remove so that `keep` of
/// `cluster`'s backups remain: the oldest first. Other files are never
/// named. `keep` 0 keeps everything.
#[must_use]
pub fn to_remove(cluster: &str, names: &[String], keep: usize) -> Vec<String> {
    if keep == 0 {
        return Vec::new();
    }
    let mut ours: Vec<&String> = names.iter().filter(|n| is_backup_of(cluster, n)).collect();
    ours.sort();
    let excess = ours.len().saturating_sub(keep);
    ours.into_iter().take(excess).cloned().collect()
}

/// A cluster name usable in a file name: letters, digits, '.', '_' and
/// '-' kept, anything else replaced by '_'.
#[must_use]
pub fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn names_carry_cluster_time_and_revision() {
        let taken = at(1_796_436_000); // 2026-12-05T02:00:00Z
        assert_eq!(pending_name("prod", taken), "prod-20261205T020000.000Z.db");
        assert_eq!(final_name("prod", taken, 1234), "prod-20261205T020000.000Z-r1234.db");
        assert!(is_backup_of("prod", &final_name("prod", taken, 1234)));
    }

    #[test]
    fn only_this_clusters_finished_backups_are_recognised() {
        assert!(!is_backup_of("prod", "prod-east-20261205T020000.000Z-r1.db"));
        assert!(!is_backup_of("prod", "prod-20261205T020000.000Z.db"), "not finished");
        assert!(!is_backup_of("prod", "prod-20261205T020000.000Z-r1.db.part"));
        assert!(!is_backup_of("prod", "prod-2026120XT020000.000Z-r1.db"));
        assert!(!is_backup_of("prod", "notes.txt"));
        assert!(is_backup_of("prod-east", "prod-east-20261205T020000.000Z-r1.db"));
    }

    #[test]
    fn the_oldest_go_beyond_the_count() {
        let names: Vec<String> = [
            "prod-20261203T020000.000Z-r10.db",
            "prod-20261205T020000.000Z-r30.db",
            "prod-20261204T020000.000Z-r20.db",
            "prod-east-20261201T020000.000Z-r1.db",
            "README",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(to_remove("prod", &names, 2), vec!["prod-20261203T020000.000Z-r10.db"]);
        assert_eq!(to_remove("prod", &names, 1).len(), 2);
        assert!(to_remove("prod", &names, 3).is_empty());
        assert!(to_remove("prod", &names, 0).is_empty());
    }

    #[test]
    fn cluster_names_become_file_safe() {
        assert_eq!(file_safe("prod east/1"), "prod_east_1");
        assert_eq!(file_safe("a.b-c_d"), "a.b-c_d");
    }
}
