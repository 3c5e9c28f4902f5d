//! A continuous writer, as an independent client of the cluster would be:
//! it puts numbered keys through one member at a time, moves on to the
//! next member when a write fails or takes too long, remembers every
//! acknowledged write and when it was acknowledged, and checks afterwards
//! that each one is still there with its value.
//!
//! One client per member (not one balanced over all of them): a balanced
//! client keeps sending a share of its writes to a member that is down or
//! frozen, and would measure its own bad luck instead of the cluster.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Pause between writes.
const INTERVAL: Duration = Duration::from_millis(10);
/// How long one write through one member may take before the writer
/// gives up on that member and tries the next. Short, so a frozen member
/// costs the writer one timeout, not seconds.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(400);

/// What the writer saw.
#[derive(Debug, Default)]
pub struct WriterReport {
    /// Acknowledged writes, in order: (key, value).
    pub acked: Vec<(String, String)>,
    /// When each write of `acked` was acknowledged.
    pub acked_at: Vec<Instant>,
    /// Attempts that failed (not acknowledged through that member; the
    /// same write is then tried through the next one).
    pub failures: u64,
    /// The longest time between two acknowledged writes.
    pub longest_stall: Duration,
    /// When the writer started.
    pub started: Option<Instant>,
}

impl WriterReport {
    /// The longest time without an acknowledged write between `from` and
    /// `to`: the gap from `from` to the first ack after it counts, as does
    /// the gap from the last ack before `to` up to `to`.
    #[must_use]
    pub fn longest_stall_between(&self, from: Instant, to: Instant) -> Duration {
        let mut last = from;
        let mut longest = Duration::ZERO;
        for at in self.acked_at.iter().copied().filter(|at| *at > from && *at <= to) {
            longest = longest.max(at - last);
            last = at;
        }
        longest.max(to.saturating_duration_since(last))
    }

    /// When writes flowed again after a fault at `fault`: the end of the
    /// first stall (a gap of 300 ms or more) that began within `grace` of
    /// it, which is the fault's own cost (a frozen leader's election);
    /// `fault` itself when there was none.
    #[must_use]
    pub fn recovered_after(&self, fault: Instant, grace: Duration) -> Instant {
        let mut last = fault;
        for at in self.acked_at.iter().copied().filter(|at| *at > fault) {
            if last > fault + grace {
                break;
            }
            if at - last >= Duration::from_millis(300) {
                return at;
            }
            last = at;
        }
        fault
    }
}

/// A running writer.
#[derive(Debug)]
pub struct Writer {
    stop: oneshot::Sender<()>,
    task: JoinHandle<WriterReport>,
    acked: Arc<AtomicU64>,
}

impl Writer {
    /// Starts writing `<prefix><n>` = `value-<n>` through `endpoints`, one
    /// member at a time, failing over to the next on an error or a write
    /// that takes longer than 400 ms.
    pub async fn start(endpoints: Vec<String>, prefix: &str) -> Self {
        let options = crate::cluster::etcd_options()
            .with_connect_timeout(ATTEMPT_TIMEOUT)
            .with_timeout(ATTEMPT_TIMEOUT);
        let mut clients = Vec::new();
        for endpoint in &endpoints {
            let client = etcd_client::Client::connect([endpoint.as_str()], Some(options.clone()))
                .await
                .unwrap_or_else(|e| panic!("writer cannot connect to {endpoint}: {e}"));
            clients.push(client);
        }
        assert!(!clients.is_empty(), "the writer needs at least one endpoint");
        let prefix = prefix.to_owned();
        let (stop, mut stopped) = oneshot::channel();
        let acked = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&acked);
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut report = WriterReport {
                started: Some(started),
                ..WriterReport::default()
            };
            let mut last_ack = started;
            let mut current = 0;
            for n in 0_u64.. {
                if stopped.try_recv().is_ok() {
                    break;
                }
                let key = format!("{prefix}{n:08}");
                let value = format!("value-{n}");
                // Every member once, starting with the one that answered
                // last; a write nobody took is not acknowledged.
                for _ in 0..clients.len() {
                    let attempt = clients[current].put(key.as_str(), value.as_str(), None);
                    match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt).await {
                        Ok(Ok(_)) => {
                            let now = Instant::now();
                            report.longest_stall = report.longest_stall.max(now - last_ack);
                            last_ack = now;
                            report.acked.push((key.clone(), value.clone()));
                            report.acked_at.push(now);
                            counter.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        Ok(Err(_)) | Err(_) => {
                            report.failures += 1;
                            current = (current + 1) % clients.len();
                        }
                    }
                }
                tokio::time::sleep(INTERVAL).await;
            }
            report
        });
        Self { stop, task, acked }
    }

    /// Writes acknowledged so far.
    #[must_use]
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::SeqCst)
    }

    /// Waits until `more` writes beyond those acknowledged now are
    /// acknowledged: proof that the cluster takes writes (no figure of
    /// writes per second is assumed).
    ///
    /// # Panics
    /// When that takes longer than `timeout`.
    pub async fn wait_for_more(&self, more: u64, timeout: Duration) {
        let goal = self.acked() + more;
        let deadline = Instant::now() + timeout;
        while self.acked() < goal {
            assert!(
                Instant::now() < deadline,
                "the writer got {} of {more} more writes acknowledged within {timeout:?}",
                more - (goal - self.acked())
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops writing and returns what happened.
    pub async fn stop(self) -> WriterReport {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_else(|e| panic!("writer task failed: {e}"))
    }
}

/// Reads every acknowledged key back and returns the ones that are missing
/// or hold another value.
pub async fn lost_writes(client: &mut etcd_client::Client, prefix: &str, report: &WriterReport) -> Vec<String> {
    let response = client
        .get(prefix, Some(etcd_client::GetOptions::new().with_prefix()))
        .await
        .unwrap_or_else(|e| panic!("cannot read back {prefix}*: {e}"));
    let stored: std::collections::HashMap<String, String> = response
        .kvs()
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).into_owned(),
                String::from_utf8_lossy(kv.value()).into_owned(),
            )
        })
        .collect();
    report
        .acked
        .iter()
        .filter(|(key, value)| stored.get(key) != Some(value))
        .map(|(key, _)| key.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalls_are_measured_inside_the_window_only() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let report = WriterReport {
            acked_at: vec![at(10), at(20), at(2000), at(2010), at(2300)],
            ..WriterReport::default()
        };
        assert_eq!(
            report.longest_stall_between(at(0), at(3000)),
            Duration::from_millis(1980)
        );
        assert_eq!(
            report.longest_stall_between(at(2000), at(2400)),
            Duration::from_millis(290)
        );
        // A fault at 15 ms: writes acknowledged in flight, then the stall.
        assert_eq!(report.recovered_after(at(15), Duration::from_secs(1)), at(2000));
        // A fault long before any stall: no stall of its own.
        let steady = WriterReport {
            acked_at: (0..100).map(|i| at(i * 10)).collect(),
            ..WriterReport::default()
        };
        assert_eq!(steady.recovered_after(at(5), Duration::from_secs(1)), at(5));
    }
}
