//! What a large database changes in a roll: whether the gate compares
//! HashKV, and how long a gate may take.
//!
//! etcd computes HashKV by reading every revision of the key space while it
//! holds its backend's read lock, and the backend cannot commit meanwhile:
//! the member stops applying writes for as long as the read takes (about
//! 6 s per GiB from a cold page cache here). On the leader that also holds
//! back lease renewals, which wait for the applied index: a long enough
//! HashKV on the leader expires leases its holders kept renewing. So the
//! gate compares HashKV only while every member's database is small enough
//! for that pause to stay short, and says so when it does not.

use std::time::Duration;

use crate::engine::check::{Check, Verdict, ids};
use crate::engine::cluster::observed::Observed;
use crate::format::human_bytes;

/// The largest database the gate hashes by default, in MiB.
pub const DEFAULT_HASH_KV_MAX_DB_MIB: u64 = 512;

/// What a gate gets on top of its timeout per GiB of the largest database:
/// a restarted member reads its database back before it can catch up.
pub const GATE_ALLOWANCE_PER_GIB: Duration = Duration::from_secs(10);

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// The largest database file among the members, in bytes.
#[must_use]
pub fn largest_db(observed: &Observed) -> u64 {
    observed.members.iter().map(|m| m.db_size).max().unwrap_or(0)
}

/// Whether the gate compares HashKV: while the largest database is at most
/// `max_db_mib` MiB; 0 turns it off.
#[must_use]
pub const fn hash_kv_at_gates(largest_db: u64, max_db_mib: u64) -> bool {
    max_db_mib > 0 && largest_db <= max_db_mib.saturating_mul(MIB)
}

/// The preflight line that says whether the gate compares HashKV, and why.
#[must_use]
pub fn hash_kv_check(largest_db: u64, max_db_mib: u64) -> Check {
    let size = human_bytes(largest_db);
    let (verdict, message) = if max_db_mib == 0 {
        (
            Verdict::Warn,
            "HashKV is not compared between members (--hash-kv-max-db-mib 0)".to_owned(),
        )
    } else if hash_kv_at_gates(largest_db, max_db_mib) {
        (
            Verdict::Pass,
            format!("largest database {size}, at most {max_db_mib} MiB: HashKV compared after each member"),
        )
    } else {
        (
            Verdict::Warn,
            format!(
                "largest database {size}, above {max_db_mib} MiB: HashKV is not compared between members, since \
                 it stops a member's writes (and on the leader its lease renewals) while it reads the whole \
                 database; --hash-kv-max-db-mib raises the limit"
            ),
        )
    };
    Check {
        rule: ids::HASH_KV_GATE,
        verdict,
        message,
        source: "steward",
    }
}

/// How long a gate may take: `base` and [`GATE_ALLOWANCE_PER_GIB`] for
/// every started GiB of the largest database.
#[must_use]
pub fn gate_timeout(base: Duration, largest_db: u64) -> Duration {
    let gib = u32::try_from(largest_db.div_ceil(GIB)).unwrap_or(u32::MAX);
    base.saturating_add(GATE_ALLOWANCE_PER_GIB.saturating_mul(gib))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_kv_runs_up_to_the_limit_and_never_at_zero() {
        assert!(hash_kv_at_gates(45_000, 512));
        assert!(hash_kv_at_gates(512 * MIB, 512));
        assert!(!hash_kv_at_gates(512 * MIB + 1, 512));
        assert!(!hash_kv_at_gates(0, 0));
        assert!(hash_kv_at_gates(u64::MAX, u64::MAX));
    }

    #[test]
    fn the_check_warns_and_says_why_when_hash_kv_is_left_out() {
        let small = hash_kv_check(45_000, 512);
        assert_eq!((small.rule, small.verdict), (ids::HASH_KV_GATE, Verdict::Pass));
        assert!(
            small.message.contains("compared after each member"),
            "{}",
            small.message
        );
        let large = hash_kv_check(2300 * MIB, 512);
        assert_eq!(large.verdict, Verdict::Warn);
        assert!(large.message.contains("above 512 MiB"), "{}", large.message);
        assert!(large.message.contains("--hash-kv-max-db-mib"), "{}", large.message);
        assert_eq!(hash_kv_check(0, 0).verdict, Verdict::Warn);
    }

    #[test]
    fn the_gate_gets_ten_seconds_per_started_gib() {
        let base = Duration::from_secs(60);
        assert_eq!(gate_timeout(base, 0), base);
        assert_eq!(gate_timeout(base, 45_000), Duration::from_secs(70));
        assert_eq!(gate_timeout(base, 2 * GIB), Duration::from_secs(80));
        assert_eq!(gate_timeout(base, 2 * GIB + 1), Duration::from_secs(90));
    }
}
