//! Benchmark: what one call to an agent costs, beside one call to etcd.
//! A fresh 3-member cluster whose agents serve mutual TLS; in interleaved
//! rounds (`STEWARD_CALLS_ROUNDS`, 200 by default):
//! - the agent's `GetStatus` on a kept connection, against etcd's own
//!   `Status` on a kept connection (the baseline; the agent's answer
//!   includes one such call to its member);
//! - a new connection to the agent (TLS handshake and the health check
//!   the coordinator makes on every new connection) and its first
//!   `GetStatus`, against a new connection to etcd and its first `Status`.
//!
//! A roll makes dozens of agent calls, a fleet roll hundreds, so a fixed
//! cost per call shows in every command. Goal: a call on a kept connection
//! within 10 ms, a new connection and its first call within 20 ms
//! (medians).

// A benchmark harness: a failed step ends the measurement with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// A benchmark's whole purpose is to print its figures on stdout.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use steward_coordinator::engine::connect::agent;
use steward_proto::v1 as pb;
use steward_proto::v1::agent_client::AgentClient;
use steward_tests::bench::{self, count_from_env, spread};
use steward_tests::{ClusterBuilder, newest};
use tonic::transport::Channel;

/// How long `call` takes, in microseconds.
async fn timed<T>(call: impl std::future::Future<Output = T>) -> u64 {
    let began = Instant::now();
    call.await;
    u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX)
}

async fn get_status(agent: &mut AgentClient<Channel>) {
    agent.get_status(pb::GetStatusRequest {}).await.expect("GetStatus");
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

/// Prints the medians and spread of both sides and their verdict.
fn report(what: &str, steward: &[u64], baseline: &[u64], goal_us: u64, goal: &str) {
    let (s, s_low, s_high) = spread(steward);
    let (b, b_low, b_high) = spread(baseline);
    println!(
        "{what}: agent median {} ({}-{}), etcd median {} ({}-{}), {} calls each",
        ms(s),
        ms(s_low),
        ms(s_high),
        ms(b),
        ms(b_low),
        ms(b_high),
        steward.len()
    );
    bench::verdict(&bench::Verdict {
        what: format!("agent calls: {what}"),
        steward: ms(s),
        baseline: ms(b),
        ratio: format!("+{}", ms(s.saturating_sub(b))),
        goal,
        met: s <= goal_us,
    });
}

fn main() {
    let runtime = bench::runtime();
    let rounds = count_from_env("STEWARD_CALLS_ROUNDS", 200);
    runtime.block_on(async {
        let cluster = ClusterBuilder::new(3, newest(3, 5)).start().await;
        let connector = cluster.connector();
        let address = cluster.agent_addresses()[1].clone();
        let url = cluster.client_urls(&[1]);
        println!("one agent (mutual TLS) and its etcd member on loopback, {rounds} rounds");

        let mut kept_agent = agent::connect(connector, &address).await.expect("connect to the agent");
        let mut kept_etcd = cluster.etcd(&[1]).await;
        let (mut agent_us, mut etcd_us) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            agent_us.push(timed(get_status(&mut kept_agent.agent)).await);
            etcd_us.push(timed(async { kept_etcd.status().await.expect("Status") }).await);
        }
        report(
            "one call on a kept connection",
            &agent_us,
            &etcd_us,
            10_000,
            "within 10 ms",
        );

        let (mut agent_us, mut etcd_us) = (Vec::new(), Vec::new());
        for _ in 0..rounds.div_ceil(10) {
            agent_us.push(
                timed(async {
                    let mut fresh = agent::connect(connector, &address).await.expect("connect to the agent");
                    get_status(&mut fresh.agent).await;
                })
                .await,
            );
            etcd_us.push(
                timed(async {
                    let mut fresh = etcd_client::Client::connect(&url, None).await.expect("connect to etcd");
                    fresh.status().await.expect("Status")
                })
                .await,
            );
        }
        report(
            "a new connection and its first call",
            &agent_us,
            &etcd_us,
            20_000,
            "within 20 ms",
        );
        cluster.cleanup();
    });
}
