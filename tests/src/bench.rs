//! What the benchmarks share: their settings from the environment, the
//! median they judge on, and a large database to work on.

/// The runtime every benchmark runs on: two workers, like the machines
/// the figures come from.
#[must_use]
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Whole milliseconds of a duration, as steward's reports count them.
pub use steward_coordinator::engine::report::millis;

/// The median, lowest and highest of `values` (0s for none).
#[must_use]
pub fn spread(values: &[u64]) -> (u64, u64, u64) {
    let low = values.iter().min().copied().unwrap_or(0);
    let high = values.iter().max().copied().unwrap_or(0);
    (median(values.to_vec()), low, high)
}

/// The order in which round `round` runs `N` ways of doing the same
/// thing (their indices): each goes first, second, ... equally often over
/// every `N` rounds, so that none always runs on a machine that the same
/// other one has just worked (its page cache, its writeback).
#[must_use]
pub fn turn_order<const N: usize>(round: u64) -> [usize; N] {
    let first = usize::try_from(round).unwrap_or(0) % N;
    std::array::from_fn(|turn| (first + turn) % N)
}

/// A positive count from the variable `name`, else `default`.
#[must_use]
pub fn count_from_env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// The median (the upper one of an even count; 0 for none).
#[must_use]
pub fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

/// How likely a `steward` sample this much longer than `baseline` is by
/// chance alone, when both come from the same distribution: a one-sided
/// rank test (Mann-Whitney's U, ties counted half) whose null distribution
/// comes from 20 000 reshufflings of the pooled values. Small means
/// steward's values are longer than chance explains.
///
/// A longest write stall is decided by whether one of the probe's writes
/// reaches a member in the few dozen milliseconds its new etcd takes to
/// serve after opening its port: a lottery on both sides, so comparing
/// two medians of a few rounds says "worse" half the time even when
/// nothing differs.
#[must_use]
#[allow(clippy::cast_precision_loss)]
pub fn chance_of_longer(steward: &[u64], baseline: &[u64]) -> f64 {
    const SHUFFLES: u32 = 20_000;
    // Twice U, to stay in integers.
    let doubled_u = |ours: &[u64], theirs: &[u64]| -> u64 {
        ours.iter()
            .flat_map(|a| theirs.iter().map(move |b| u64::from(a > b) * 2 + u64::from(a == b)))
            .sum()
    };
    if steward.is_empty() || baseline.is_empty() {
        return 1.0;
    }
    let observed = doubled_u(steward, baseline);
    let mut pooled: Vec<u64> = steward.iter().chain(baseline).copied().collect();
    // A fixed seed: the same figures always get the same verdict.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |bound: usize| usize::try_from(xorshift(&mut state) % bound as u64).unwrap_or(0);
    let mut as_extreme = 0_u32;
    for _ in 0..SHUFFLES {
        for i in (1..pooled.len()).rev() {
            pooled.swap(i, next(i + 1));
        }
        let (ours, theirs) = pooled.split_at(steward.len());
        if doubled_u(ours, theirs) >= observed {
            as_extreme += 1;
        }
    }
    f64::from(as_extreme + 1) / f64::from(SHUFFLES + 1)
}

/// The next value of a xorshift generator: cheap, repeatable numbers for
/// benchmark content and reshuffles, not for anything secret.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Puts `mib` values of 1 MiB through `client`, so that the database
/// holds about `mib` MiB.
pub async fn fill(client: &mut etcd_client::Client, mib: u64) {
    fill_with(client, "bench", mib, 1 << 20).await;
}

/// Puts about `mib` MiB through `client` as values of `value_bytes`
/// each, under keys `{prefix}/00000000` on (a new prefix adds to a
/// database, the same one overwrites), many at a time. Each put is a raft
/// entry: small values fill as a long-lived cluster grows, with etcd's
/// raft snapshots and log compaction along the way.
///
/// # Panics
/// `value_bytes` is 0 or above 1 MiB, or a put fails other than for a
/// while (see [`put_until_taken`]).
pub async fn fill_with(client: &mut etcd_client::Client, prefix: &str, mib: u64, value_bytes: usize) {
    const BLOCK: usize = 1 << 20;
    const IN_FLIGHT: usize = 64;
    assert!((1..=BLOCK).contains(&value_bytes), "a value of 1 byte to 1 MiB");
    // Incompressible content: a simple generator is enough, bbolt does not
    // compress, but the copies steward makes must not get it for free.
    // Values are windows of one random block, at different offsets.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let block: std::sync::Arc<Vec<u8>> =
        std::sync::Arc::new((0..2 * BLOCK).map(|_| xorshift(&mut state).to_le_bytes()[0]).collect());
    let puts = usize::try_from(mib << 20)
        .expect("a database this machine can address")
        .div_ceil(value_bytes);
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..IN_FLIGHT.min(puts) {
        let mut client = client.clone();
        let block = block.clone();
        let prefix = prefix.to_owned();
        workers.spawn(async move {
            for i in (worker..puts).step_by(IN_FLIGHT) {
                let offset = i * 4099 % BLOCK;
                put_until_taken(
                    &mut client,
                    format!("{prefix}/{i:08}"),
                    &block[offset..offset + value_bytes],
                )
                .await;
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done.expect("a fill worker");
    }
}

/// Puts `value` under `key`, again when a put times out or finds no
/// leader: a fill of gigabytes, many puts at a time, can outlast the
/// client's timeout while etcd commits or compacts, and writing the same
/// key twice leaves the same database.
///
/// # Panics
/// A put fails for another reason, or still fails after a few attempts.
async fn put_until_taken(client: &mut etcd_client::Client, key: String, value: &[u8]) {
    const ATTEMPTS: u32 = 5;
    for attempt in 1..=ATTEMPTS {
        match client.put(key.as_str(), value, None).await {
            Ok(_) => return,
            Err(etcd_client::Error::GRpcStatus(status))
                if attempt < ATTEMPTS
                    && matches!(
                        status.code(),
                        tonic::Code::Cancelled | tonic::Code::DeadlineExceeded | tonic::Code::Unavailable
                    ) =>
            {
                tokio::time::sleep(std::time::Duration::from_secs(u64::from(attempt))).await;
            }
            Err(error) => panic!("fill the database: put {key} failed at attempt {attempt}: {error}"),
        }
    }
}

/// One line of the table `scripts/bench` prints after every benchmark ran.
#[derive(Debug)]
pub struct Verdict<'a> {
    /// The benchmark and what of it is compared ("snapshot, backup --out").
    pub what: String,
    /// steward's figure, with its unit ("7.62 s").
    pub steward: String,
    /// The baseline's figure, with its unit.
    pub baseline: String,
    /// How the two compare ("0.86x throughput").
    pub ratio: String,
    /// The goal ("at least 0.9x").
    pub goal: &'a str,
    /// Whether the goal is met.
    pub met: bool,
}

/// Prints `verdict` and, when `STEWARD_BENCH_SUMMARY` names a file,
/// appends it there as a tab-separated line, so that one run of every
/// benchmark ends with one table of them all.
///
/// # Panics
/// The summary file cannot be written: the table would silently miss a line.
// A benchmark's result is what it prints.
#[allow(clippy::print_stdout)]
pub fn verdict(verdict: &Verdict<'_>) {
    let Verdict {
        what,
        steward,
        baseline,
        ratio,
        goal,
        met,
    } = verdict;
    let met = if *met { "met" } else { "missed" };
    println!("{what}: steward {steward}, baseline {baseline}, {ratio} (goal {goal}: {met})");
    let line = format!("{what}\t{steward}\t{baseline}\t{ratio}\t{goal}\t{met}");
    if let Some(path) = std::env::var_os("STEWARD_BENCH_SUMMARY") {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("open the benchmark summary");
        writeln!(file, "{line}").expect("append to the benchmark summary");
    }
}

/// Seconds of `ms`, with two decimals and the unit.
#[must_use]
#[allow(clippy::cast_precision_loss)]
pub fn seconds(ms: u64) -> String {
    format!("{:.2} s", ms as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_way_takes_every_turn_once_in_as_many_rounds() {
        assert_eq!(turn_order::<3>(0), [0, 1, 2]);
        assert_eq!(turn_order::<3>(1), [1, 2, 0]);
        assert_eq!(turn_order::<3>(5), [2, 0, 1]);
        for turn in 0..3 {
            let mut firsts: Vec<usize> = (0..3).map(|round| turn_order::<3>(round)[turn]).collect();
            firsts.sort_unstable();
            assert_eq!(firsts, [0, 1, 2], "turn {turn}");
        }
        assert_eq!(turn_order::<2>(3), [1, 0]);
    }

    #[test]
    fn the_median_is_the_middle_value_or_the_upper_of_two() {
        assert_eq!(median(vec![5, 1, 3]), 3);
        assert_eq!(median(vec![4, 1]), 4);
        assert_eq!(median(Vec::new()), 0);
    }

    #[test]
    fn only_a_consistently_longer_sample_is_called_longer_than_chance() {
        let baseline = [53, 69, 60, 73, 115, 48, 95, 62, 71, 131, 52];
        // The same values: nothing to explain.
        assert!(chance_of_longer(&baseline, &baseline) > 0.3);
        // Shorter everywhere: as unlike "longer" as can be.
        let shorter: Vec<u64> = baseline.iter().map(|v| v - 40).collect();
        assert!(chance_of_longer(&shorter, &baseline) > 0.9);
        // Longer by more than the baseline's own spread: not chance.
        let longer: Vec<u64> = baseline.iter().map(|v| v + 80).collect();
        assert!(chance_of_longer(&longer, &baseline) < 0.01);
        // One long round among ordinary ones is chance.
        let mut one_long = baseline.to_vec();
        one_long[0] = 400;
        assert!(chance_of_longer(&one_long, &baseline) > 0.05);
        assert!((chance_of_longer(&[], &baseline) - 1.0).abs() < f64::EPSILON);
    }
}
