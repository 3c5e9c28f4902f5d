//! The systemd watchdog (`WatchdogSec=` in the unit): `WATCHDOG=1` is sent
//! only while the agent is really working.
//!
//! The proof of life is the supervisor's [`Heartbeat`]: the task that owns
//! etcd beats it on every turn of its loop (at least every
//! [`BEAT_INTERVAL`]) and while it carries out a command that may take long,
//! up to the longest that command may legitimately take. The watchdog task
//! checks it every half interval and pings only while it is fresh. If the
//! supervisor is stuck (a deadlock, a blocked call, a wait that never ends)
//! or has died, the pings stop, the reason is logged, and systemd kills the
//! agent (`KillMode=process`: etcd keeps running) and starts a new one,
//! which adopts etcd. A runtime that no longer runs tasks stops the pings by
//! itself, since the watchdog task is one of them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often an idle supervisor beats.
pub const BEAT_INTERVAL: Duration = Duration::from_secs(1);

/// When a task last showed progress, and what it was doing.
#[derive(Clone, Debug)]
pub struct Heartbeat {
    last: Arc<Mutex<(Instant, &'static str)>>,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self::new()
    }
}

impl Heartbeat {
    /// A heartbeat that beat just now.
    #[must_use]
    pub fn new() -> Self {
        Self {
            last: Arc::new(Mutex::new((Instant::now(), "starting"))),
        }
    }

    /// Records progress; `doing` says what the task is busy with.
    pub fn beat(&self, doing: &'static str) {
        *self.lock() = (Instant::now(), doing);
    }

    /// How long before `now` the last beat was, and what the task was
    /// doing then.
    #[must_use]
    pub fn last(&self, now: Instant) -> (Duration, &'static str) {
        let (at, doing) = *self.lock();
        (now.saturating_duration_since(at), doing)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Instant, &'static str)> {
        // A plain value: a panic while it was held cannot have broken it.
        self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Runs `work`, beating `heartbeat` while it runs, but for no longer than
/// `limit`: a command that overruns the longest it may take stops the
/// beats, so the watchdog notices a wait that never ends.
pub async fn beating<F: Future>(heartbeat: &Heartbeat, doing: &'static str, limit: Duration, work: F) -> F::Output {
    let until = Instant::now() + limit;
    let mut ticker = tokio::time::interval(BEAT_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            output = &mut work => return output,
            _ = ticker.tick() => {
                if Instant::now() < until {
                    heartbeat.beat(doing);
                }
            }
        }
    }
}

/// What a check of the heartbeat found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Fresh: ping.
    Alive,
    /// No beat for `silent`; the task was last `doing` that.
    Stuck {
        /// Time since the last beat.
        silent: Duration,
        /// What it was doing.
        doing: &'static str,
    },
}

/// Judges the heartbeat at `now`: stale after `limit` without a beat.
#[must_use]
pub fn verdict(heartbeat: &Heartbeat, limit: Duration, now: Instant) -> Verdict {
    let (silent, doing) = heartbeat.last(now);
    if silent <= limit {
        Verdict::Alive
    } else {
        Verdict::Stuck { silent, doing }
    }
}

/// Whether the previous check found the task stuck, so that a run of
/// failed checks is logged once.
#[derive(Debug, Default)]
struct Pinger {
    stuck: bool,
}

impl Pinger {
    /// Whether to ping after `verdict`; logs when the verdict changes.
    fn should_ping(&mut self, verdict: Verdict) -> bool {
        match verdict {
            Verdict::Alive => {
                if self.stuck {
                    tracing::warn!("the supervisor is making progress again; pinging the systemd watchdog again");
                    self.stuck = false;
                }
                true
            }
            Verdict::Stuck { silent, doing } => {
                if !self.stuck {
                    tracing::error!(
                        ?silent,
                        doing,
                        "the supervisor task has made no progress; no longer pinging the systemd watchdog, which \
                         restarts the agent (etcd keeps running)"
                    );
                    self.stuck = true;
                }
                false
            }
        }
    }
}

/// Starts the watchdog task if systemd asked for one (`WATCHDOG_USEC` set
/// for this process).
pub fn spawn_if_enabled(heartbeat: Heartbeat, shutdown: CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
    let interval = sd_notify::watchdog_enabled()?;
    tracing::info!(
        ?interval,
        "systemd watchdog enabled; pinging every half interval while the supervisor is alive"
    );
    let mut failing = false;
    let ping = move || match sd_notify::notify(&[sd_notify::NotifyState::Watchdog]) {
        Ok(()) => failing = false,
        // Once per run of failures, not at every ping.
        Err(error) if !failing => {
            failing = true;
            tracing::warn!(%error, "cannot ping the systemd watchdog");
        }
        Err(_) => {}
    };
    Some(tokio::spawn(run(interval, heartbeat, ping, shutdown)))
}

/// Every half `interval`, pings if the heartbeat is no older than half
/// `interval`: a supervisor stuck for that long is killed at most one
/// `interval` after the last ping. Pings resume if it recovers in time.
pub async fn run(interval: Duration, heartbeat: Heartbeat, mut ping: impl FnMut(), shutdown: CancellationToken) {
    let period = interval / 2;
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pinger = Pinger::default();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if pinger.should_ping(verdict(&heartbeat, period, Instant::now())) {
            ping();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_heartbeat_is_alive_and_a_silent_one_stuck() {
        let heartbeat = Heartbeat::new();
        let now = Instant::now();
        heartbeat.beat("idle");
        let limit = Duration::from_secs(15);
        assert_eq!(verdict(&heartbeat, limit, now + Duration::from_secs(1)), Verdict::Alive);
        assert_eq!(verdict(&heartbeat, limit, now + limit), Verdict::Alive);
        match verdict(&heartbeat, limit, now + Duration::from_secs(16)) {
            Verdict::Stuck { silent, doing } => {
                assert!(silent > limit, "{silent:?}");
                assert_eq!(doing, "idle");
            }
            Verdict::Alive => panic!("16 s without a beat is stuck"),
        }
    }

    #[test]
    fn pings_stop_while_stuck_and_resume_after() {
        let mut pinger = Pinger::default();
        let stuck = Verdict::Stuck {
            silent: Duration::from_secs(20),
            doing: "Stop",
        };
        assert!(pinger.should_ping(Verdict::Alive));
        assert!(!pinger.should_ping(stuck));
        assert!(!pinger.should_ping(stuck));
        assert!(pinger.should_ping(Verdict::Alive));
    }

    #[tokio::test]
    async fn the_task_pings_a_live_heartbeat_and_stops_at_shutdown() {
        let heartbeat = Heartbeat::new();
        let (pinged, mut pings) = tokio::sync::mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        // The first check is at once, with a beat from just now.
        let task = tokio::spawn(run(
            Duration::from_secs(60),
            heartbeat,
            move || {
                let _ = pinged.send(());
            },
            stop.clone(),
        ));
        tokio::time::timeout(Duration::from_secs(10), pings.recv())
            .await
            .expect("a ping")
            .expect("open");
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn beating_beats_within_the_limit_of_a_command_only() {
        let heartbeat = Heartbeat::new();
        beating(
            &heartbeat,
            "Stop",
            Duration::from_secs(60),
            tokio::time::sleep(Duration::from_millis(50)),
        )
        .await;
        assert_eq!(heartbeat.last(Instant::now()).1, "Stop");

        let heartbeat = Heartbeat::new();
        beating(
            &heartbeat,
            "Stop",
            Duration::ZERO,
            tokio::time::sleep(Duration::from_millis(50)),
        )
        .await;
        assert_eq!(
            heartbeat.last(Instant::now()).1,
            "starting",
            "a command past its limit does not beat"
        );
    }
}
