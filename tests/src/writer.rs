//! A continuous writer: puts numbered keys through some members while a
//! test changes the cluster, remembers every acknowledged write, and checks
//! afterwards that each one is still there with its value.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Pause between writes.
const INTERVAL: Duration = Duration::from_millis(10);

/// What the writer saw.
#[derive(Debug, Default)]
pub struct WriterReport {
    /// Acknowledged writes, in order: (key, value).
    pub acked: Vec<(String, String)>,
    /// Writes that failed (not acknowledged; they may or may not exist).
    pub failures: u64,
    /// The longest time between two acknowledged writes.
    pub longest_stall: Duration,
}

/// A running writer.
#[derive(Debug)]
pub struct Writer {
    stop: oneshot::Sender<()>,
    task: JoinHandle<WriterReport>,
    acked: Arc<AtomicU64>,
}

impl Writer {
    /// Starts writing `<prefix><n>` = `value-<n>` through `endpoints`.
    pub async fn start(endpoints: Vec<String>, prefix: &str) -> Self {
        let options = crate::cluster::etcd_options()
            .with_connect_timeout(Duration::from_secs(1))
            .with_timeout(Duration::from_secs(2));
        let mut client = etcd_client::Client::connect(&endpoints, Some(options))
            .await
            .unwrap_or_else(|e| panic!("writer cannot connect to {endpoints:?}: {e}"));
        let prefix = prefix.to_owned();
        let (stop, mut stopped) = oneshot::channel();
        let acked = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&acked);
        let task = tokio::spawn(async move {
            let mut report = WriterReport::default();
            let mut last_ack = Instant::now();
            for n in 0_u64.. {
                if stopped.try_recv().is_ok() {
                    break;
                }
                let key = format!("{prefix}{n:08}");
                let value = format!("value-{n}");
                match client.put(key.as_str(), value.as_str(), None).await {
                    Ok(_) => {
                        report.longest_stall = report.longest_stall.max(last_ack.elapsed());
                        last_ack = Instant::now();
                        report.acked.push((key, value));
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => report.failures += 1,
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
