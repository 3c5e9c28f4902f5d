//! The availability probe: while a rolling change runs, write a probe key
//! continuously through every member's endpoint, one writer per endpoint
//! side by side, read each write back, and count, for each step of the
//! change, the writes, the failed attempts and the longest stall: the
//! longest time without an acknowledged, read-back write through any
//! endpoint. The writers run side by side so that an attempt hanging on
//! the member being restarted (up to the 2 s timeout) does not hold back
//! the writes through the others: the stall is the cluster's, not the
//! probe's. The probe keys are removed at the end.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::engine::connect::Connector;
use crate::engine::connect::etcd;
use crate::engine::report::millis;

/// Pause between one writer's writes: stalls that differ by less than
/// this are not told apart.
pub const INTERVAL: Duration = Duration::from_millis(20);

/// How long one write and its read-back may take before the attempt
/// counts as failed.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// What the probe saw during one step (or before the first, "start").
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ProbeWindow {
    /// The step: a member's name, or "start".
    pub step: String,
    /// Writes acknowledged and read back with their value.
    pub writes: u64,
    /// Attempts that failed (write or read-back).
    pub failed: u64,
    /// The longest time without a good write, in milliseconds.
    pub longest_stall_ms: u64,
}

/// The probe's report.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ProbeReport {
    /// Per step, in order.
    pub steps: Vec<ProbeWindow>,
    /// Good writes in all.
    pub writes: u64,
    /// Failed attempts in all.
    pub failed: u64,
    /// The longest stall of the whole change, in milliseconds.
    pub longest_stall_ms: u64,
}

#[derive(Debug)]
struct Shared {
    windows: Vec<ProbeWindow>,
    last_good: Instant,
}

/// A running probe.
#[derive(Debug)]
pub struct Probe {
    shared: Arc<Mutex<Shared>>,
    stop: CancellationToken,
    /// The writers, one per endpoint; a join set aborts its tasks when
    /// dropped, so a probe dropped without [`Probe::stop`] leaves nothing
    /// writing.
    writers: JoinSet<()>,
    prefix: String,
    endpoints: Vec<String>,
    connector: Connector,
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    // Plain counters: a panic elsewhere cannot leave them inconsistent.
    shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Probe {
    /// Starts probing through `endpoints`, with keys under `prefix`.
    pub async fn start(connector: &Connector, endpoints: Vec<String>, prefix: &str) -> Self {
        let prefix = format!("{}/probe/", prefix.trim_end_matches('/'));
        let shared = Arc::new(Mutex::new(Shared {
            windows: vec![ProbeWindow {
                step: "start".into(),
                ..ProbeWindow::default()
            }],
            last_good: Instant::now(),
        }));
        let stop = CancellationToken::new();
        let mut writers = JoinSet::new();
        for endpoint in &endpoints {
            writers.spawn(write_through(
                connector.clone(),
                endpoint.clone(),
                prefix.clone(),
                Arc::clone(&shared),
                stop.clone(),
            ));
        }
        Self {
            shared,
            stop,
            writers,
            prefix,
            endpoints,
            connector: connector.clone(),
        }
    }

    /// From now on, attribute what the probe sees to `step`.
    pub fn enter(&self, step: &str) {
        lock(&self.shared).windows.push(ProbeWindow {
            step: step.to_owned(),
            ..ProbeWindow::default()
        });
    }

    /// Stops probing, removes the probe keys, and reports.
    pub async fn stop(mut self) -> ProbeReport {
        self.stop.cancel();
        while self.writers.join_next().await.is_some() {}
        // A stall still going on at the end counts too.
        lock(&self.shared).note_stall(Instant::now());
        if let Ok(mut client) = etcd::connect(&self.connector, &self.endpoints, "probe cleanup").await
            && let Err(error) = client
                .delete(
                    self.prefix.as_str(),
                    Some(etcd_client::DeleteOptions::new().with_prefix()),
                )
                .await
        {
            tracing::warn!(error = %etcd::describe(&error), prefix = %self.prefix, "cannot remove the probe keys");
        }
        let windows = lock(&self.shared).windows.clone();
        ProbeReport {
            writes: windows.iter().map(|w| w.writes).sum(),
            failed: windows.iter().map(|w| w.failed).sum(),
            longest_stall_ms: windows.iter().map(|w| w.longest_stall_ms).max().unwrap_or(0),
            steps: windows,
        }
    }
}

/// Counts one attempt in the current window (in a plain function: the
/// guard must never live across an await).
fn record(shared: &Mutex<Shared>, good: bool) {
    let mut shared = lock(shared);
    let now = Instant::now();
    shared.note_stall(now);
    if let Some(window) = shared.windows.last_mut() {
        if good {
            window.writes += 1;
        } else {
            window.failed += 1;
        }
    }
    if good {
        shared.last_good = now;
    }
}

impl Shared {
    /// Counts the time since the last good write, up to `now`, as a stall
    /// of the current window.
    fn note_stall(&mut self, now: Instant) {
        let stall_ms = millis(now.duration_since(self.last_good));
        if let Some(window) = self.windows.last_mut() {
            window.longest_stall_ms = window.longest_stall_ms.max(stall_ms);
        }
    }
}

/// One writer: writes through `endpoint` until `stop`, an attempt every
/// [`INTERVAL`], counting each in the shared windows. An attempt cut
/// short by `stop` is not counted.
async fn write_through(
    connector: Connector,
    endpoint: String,
    prefix: String,
    shared: Arc<Mutex<Shared>>,
    stop: CancellationToken,
) {
    // One key per endpoint, rewritten: the probe leaves no history behind
    // but the revisions it creates.
    let key = format!("{prefix}{}", endpoint.replace(['/', ':'], "_"));
    let mut client = None;
    for n in 0_u64.. {
        let good = tokio::select! {
            () = stop.cancelled() => return,
            good = probe_once(&connector, &endpoint, &mut client, &key, n) => good,
        };
        record(&shared, good);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(INTERVAL) => {}
        }
    }
}

/// One write through one member and its read-back; true when both worked
/// and the value matches. The client is (re)connected as needed.
async fn probe_once(
    connector: &Connector,
    endpoint: &str,
    client: &mut Option<etcd_client::Client>,
    key: &str,
    n: u64,
) -> bool {
    if client.is_none() {
        *client = etcd::connect_member(connector, endpoint, "the probe").await.ok();
    }
    let Some(client) = client.as_mut() else {
        return false;
    };
    let value = n.to_string();
    let result = tokio::time::timeout(ATTEMPT_TIMEOUT, async {
        client.put(key, value.as_str(), None).await?;
        client.get(key, None).await
    })
    .await;
    match result {
        Ok(Ok(read)) => read.kvs().first().is_some_and(|kv| kv.value() == value.as_bytes()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dropped_probe_stops_its_task() {
        // Nothing listens on port 1: every attempt fails, the task loops.
        let probe = Probe::start(&Connector::default(), vec!["http://127.0.0.1:1".into()], "/test").await;
        let shared = Arc::clone(&probe.shared);
        assert_eq!(Arc::strong_count(&shared), 3, "the probe, its writer and this test");
        drop(probe);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&shared) > 1 {
            assert!(
                Instant::now() < deadline,
                "the probe's writer still runs after the drop"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
