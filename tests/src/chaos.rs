//! The seeded fault runner behind `scripts/chaos`: full patch rolls up and
//! back down on a real 3-member cluster, each with one fault whose kind,
//! victim and moment come from the run's seed, under a failing-over
//! writer. After every run the same invariants as the fault matrix:
//! the change is finished by reruns once the fault is gone, no member was
//! started while another was frozen, every acknowledged write is read
//! back, HashKV agrees and the member list is unchanged. A failure names
//! the run's seed, so `scripts/chaos --runs 1 --seed S` replays it.

use std::time::{Duration, Instant};

use crate::cluster::{Cluster, steward_command};
use crate::faults::{self, SharedFreeze};
use crate::{ClusterBuilder, Writer, coordinator, exact, lost_writes, newest};

/// How long after a freeze a step may still have been cleared on an
/// observation that began before it: every observation ends within 3 s
/// (`observe`'s bound on one member), plus a margin.
const OBSERVATION_BOUND: Duration = Duration::from_millis(3500);

/// A small deterministic generator (splitmix64): the same seed gives the
/// same faults at the same steps.
#[derive(Clone, Debug)]
pub struct Seeded(u64);

impl Seeded {
    /// From a seed.
    #[must_use]
    pub const fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next number.
    pub const fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `low..=high`.
    pub const fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

/// One fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// No fault: the roll must simply work.
    None,
    /// A member's etcd frozen for some seconds.
    Freeze {
        /// The member.
        member: usize,
        /// Seconds.
        seconds: u64,
    },
    /// A member's etcd SIGKILLed (its agent restarts it).
    KillEtcd {
        /// The member.
        member: usize,
    },
    /// A member's agent SIGKILLed, started again after some seconds.
    KillAgent {
        /// The member.
        member: usize,
        /// Seconds until it is back.
        seconds: u64,
    },
    /// The coordinator SIGKILLed.
    KillCoordinator,
}

/// What a run does: its fault and the step (event) after which it lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The member that leads when the roll begins (it changes last).
    pub leader: usize,
    /// The fault.
    pub fault: Fault,
    /// After this many events of the roll (the checks count as one).
    pub after_step: u64,
}

impl Plan {
    /// The plan of a run with `seed`.
    #[must_use]
    pub fn from_seed(seed: u64) -> Self {
        let mut random = Seeded::new(seed);
        let member = usize::try_from(random.between(0, 2)).unwrap_or(0);
        let fault = match random.between(0, 4) {
            0 => Fault::None,
            1 => Fault::Freeze {
                member,
                seconds: random.between(3, 15),
            },
            2 => Fault::KillEtcd { member },
            3 => Fault::KillAgent {
                member,
                seconds: random.between(1, 5),
            },
            _ => Fault::KillCoordinator,
        };
        let after_step = random.between(1, 14);
        let leader = usize::try_from(random.between(0, 2)).unwrap_or(0);
        Self {
            leader,
            fault,
            after_step,
        }
    }
}

/// Runs `runs` runs, seeds `seed`, `seed + 1`, ...; each run rolls up and
/// back down, one fault per roll (the roll down uses the next seed's
/// generator). Returns the first failure, naming its seed.
///
/// # Errors
/// The first run whose invariants do not hold, with its seed.
pub async fn run(seed: u64, runs: u64) -> Result<(), String> {
    let low = exact("3.5.16");
    let high = newest(3, 5);
    let mut cluster = ClusterBuilder::new(3, low.clone()).start().await;
    let ids_before = faults::member_ids(&cluster).await;
    let writer = Writer::start(cluster.all_client_urls(), "chaos/").await;
    writer.wait_for_more(20, Duration::from_secs(30)).await;
    for run in 0..runs {
        let run_seed = seed.wrapping_add(run);
        for (direction, to) in [
            ("upgrade", high.version.to_string()),
            ("downgrade", low.version.to_string()),
        ] {
            let plan = Plan::from_seed(
                run_seed
                    .wrapping_mul(2)
                    .wrapping_add(u64::from(direction == "downgrade")),
            );
            eprintln!("chaos: seed {run_seed}, {direction} to {to}: {plan:?}");
            Box::pin(one_roll(&mut cluster, direction, &to, plan))
                .await
                .map_err(|e| format!("seed {run_seed} ({direction} to {to}, {plan:?}): {e}"))?;
        }
    }
    writer.wait_for_more(20, Duration::from_secs(30)).await;
    let writes = writer.stop().await;
    let mut client = cluster.etcd(&[0, 1, 2]).await;
    let lost = lost_writes(&mut client, "chaos/", &writes).await;
    if !lost.is_empty() {
        return Err(format!(
            "seeds {seed}..{}: lost {} acknowledged writes",
            seed + runs,
            lost.len()
        ));
    }
    faults::assert_hash_kv_agrees(&cluster).await;
    if faults::member_ids(&cluster).await != ids_before {
        return Err(format!("seeds {seed}..{}: the member list changed", seed + runs));
    }
    eprintln!(
        "chaos: {runs} runs from seed {seed}: {} writes acknowledged, none lost, longest stall {:?}",
        writes.acked.len(),
        writes.longest_stall
    );
    cluster.cleanup();
    Ok(())
}

/// One roll with its fault, then reruns until it is finished.
async fn one_roll(cluster: &mut Cluster, direction: &str, to: &str, plan: Plan) -> Result<(), String> {
    // The same seed, the same order of members: the seed picks the leader.
    faults::move_leader_to(cluster, plan.leader).await;
    let agents = cluster.agents_arg();
    let args = [direction, "--agents", &agents, "--to", to, "--gate-timeout", "90s"];
    let running = coordinator::start(&args);
    let mut frozen: Option<SharedFreeze> = None;
    let mut agent_down: Option<(usize, Instant)> = None;
    let mut started_while_frozen = Vec::new();
    let mut steps = 0;
    let mut last = String::new();
    let mut killed = false;
    while let Some(line) = running.next() {
        let Some(name) = line["event"].as_str() else { break };
        // The fault lands after the event is read from the coordinator's
        // pipe, so a step may have been cleared on an observation that
        // began just before the freeze (and then finishes during it). An
        // observation ends within 3 s, a frozen member answering nothing:
        // a member started later than that was cleared on an observation
        // that saw the frozen member, and that must not happen.
        let frozen_long = frozen.as_ref().is_some_and(|shared| {
            shared
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .as_ref()
                .is_some_and(|f| f.is_frozen() && f.at.elapsed() > OBSERVATION_BOUND)
        });
        if frozen_long && name == "member_started" {
            started_while_frozen.push(line.to_string());
        }
        if !(name == "check" && last == "check") {
            steps += 1;
        }
        name.clone_into(&mut last);
        if steps != plan.after_step || frozen.is_some() || agent_down.is_some() || killed {
            continue;
        }
        match plan.fault {
            Fault::None => {}
            Fault::Freeze { member, seconds } => {
                if let Some(pid) = faults::etcd_pid_now(cluster, member) {
                    frozen = Some(faults::freeze_for(pid, Duration::from_secs(seconds)));
                }
            }
            Fault::KillEtcd { member } => {
                if let Some(pid) = faults::etcd_pid_now(cluster, member) {
                    faults::kill_now(pid);
                }
            }
            Fault::KillAgent { member, seconds } => {
                if let Some(pid) = cluster.agent_pid(member) {
                    faults::kill_now(pid);
                    agent_down = Some((member, Instant::now() + Duration::from_secs(seconds)));
                }
            }
            Fault::KillCoordinator => {
                killed = true;
                break;
            }
        }
    }
    if killed {
        running.kill();
    } else {
        // The run ends by itself (it may fail: the fault may stop it).
        let mut running = running;
        let _ = running.child.wait();
    }
    // The fault goes away: thawed, the agent back.
    if let Some(shared) = frozen {
        while faults::freeze_window(&shared).is_some_and(|(_, thawed)| thawed.is_none()) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    if let Some((member, back_at)) = agent_down {
        tokio::time::sleep(back_at.saturating_duration_since(Instant::now())).await;
        cluster.kill_agent(member);
        cluster.start_agent(member);
    }
    if !started_while_frozen.is_empty() {
        return Err(format!(
            "members started while one was frozen: {started_while_frozen:?}"
        ));
    }
    // The same command again until it finishes (the cluster may need a
    // moment to settle after the fault).
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        cluster.wait_ready(Duration::from_secs(60)).await;
        let rerun = steward_command().args(args).output().map_err(|e| e.to_string())?;
        if rerun.status.success() {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the rerun keeps failing: {}; {}",
                String::from_utf8_lossy(&rerun.stderr),
                cluster.logs_hint()
            ));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    for i in 0..3 {
        let version = cluster.status(i).await.member.unwrap_or_default().version;
        if version != to {
            return Err(format!("m{i} runs {version}, not {to}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_plan_and_seeds_cover_every_fault() {
        assert_eq!(Plan::from_seed(7), Plan::from_seed(7));
        let kinds: std::collections::BTreeSet<String> = (0..64)
            .map(|seed| {
                format!("{:?}", Plan::from_seed(seed).fault)
                    .split([' ', '{'])
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        assert_eq!(kinds.len(), 5, "{kinds:?}");
    }
}
