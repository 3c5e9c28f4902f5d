//! What became of the snapshots the agent was asked to take since it
//! started, for its metrics: the stored snapshots say when the last one
//! succeeded, but not that the ones after it failed.

use std::time::SystemTime;

/// Snapshot attempts since the agent started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotAttempts {
    /// Attempts that stored a verified snapshot.
    pub succeeded: u64,
    /// Attempts that failed.
    pub failed: u64,
    /// When the last attempt ended, and whether it succeeded.
    pub last: Option<(SystemTime, bool)>,
}

impl SnapshotAttempts {
    /// Counts one attempt that ended at `at`.
    pub fn record(&mut self, at: SystemTime, succeeded: bool) {
        if succeeded {
            self.succeeded += 1;
        } else {
            self.failed += 1;
        }
        self.last = Some((at, succeeded));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_attempt_wins_and_both_counts_grow() {
        let mut attempts = SnapshotAttempts::default();
        let t0 = SystemTime::UNIX_EPOCH;
        let t1 = t0 + std::time::Duration::from_secs(1);
        attempts.record(t0, true);
        attempts.record(t1, false);
        assert_eq!(attempts.succeeded, 1);
        assert_eq!(attempts.failed, 1);
        assert_eq!(attempts.last, Some((t1, false)));
    }
}
