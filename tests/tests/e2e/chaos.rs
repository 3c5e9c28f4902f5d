//! The seeded fault runner on a small fixed set of seeds (every fault kind
//! among them); `scripts/chaos --runs N --seed S` runs as many as wanted.
//! `STEWARD_CHAOS_SEED` and `STEWARD_CHAOS_RUNS` choose other seeds here.

fn from_env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().map_or(default, |v| {
        v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_fault_runs_keep_every_invariant() {
    let seed = from_env("STEWARD_CHAOS_SEED", 1);
    let runs = from_env("STEWARD_CHAOS_RUNS", 3);
    if let Err(failure) = Box::pin(steward_tests::chaos::run(seed, runs)).await {
        panic!("chaos: {failure}\nreplay it with: scripts/chaos --runs 1 --seed <the seed named above>");
    }
}
