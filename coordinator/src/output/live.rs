//! The live display on a terminal: the same one line per step as
//! [`crate::engine::events::Lines`], plus a status line at the bottom that says what
//! the change is doing now, how many members are done and for how long,
//! redrawn a few times a second so a long gate wait is visibly alive.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::engine::events::{Event, EventSink, human};

/// How often the status line is redrawn between events.
const REDRAW: Duration = Duration::from_millis(250);

/// Erase the current terminal line and return to its start.
const CLEAR_LINE: &str = "\r\x1b[2K";

/// What the status line shows.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Status {
    activity: String,
    since: Instant,
    began: Instant,
    done: usize,
    total: usize,
}

impl Status {
    fn new(now: Instant) -> Self {
        Self {
            activity: "observing the cluster".into(),
            since: now,
            began: now,
            done: 0,
            total: 0,
        }
    }

    /// Follows one event; `None` as activity ends the display.
    fn follow(&mut self, event: &Event, now: Instant) {
        let activity = match event {
            Event::Observed { .. } => Some("preflight checks".to_owned()),
            Event::Check(_) => None,
            Event::Planned { order, .. } => {
                self.total = order.len();
                Some("staging binaries and taking the snapshot".to_owned())
            }
            Event::Staged { .. } => Some("staging binaries and taking the snapshot".to_owned()),
            Event::Snapshot { .. } => Some("choosing the next member".to_owned()),
            Event::MemberStarted { member, to, .. } => Some(format!("{member}: switching to {to}")),
            Event::LeaderMoved { to, .. } => Some(format!("leadership moved to {to}")),
            Event::Activated { member, .. } => Some(format!("{member}: gate (health, version, applied index, HashKV)")),
            Event::MemberDone { .. } => {
                self.done += 1;
                Some("choosing the next member".to_owned())
            }
            Event::Waiting { seconds, .. } => Some(format!("waiting {seconds}s between members")),
            Event::WaitingFor {
                member, check, reason, ..
            } => Some(format!(
                "{}waiting ({check}): {reason}",
                member.as_ref().map(|m| format!("{m}: ")).unwrap_or_default()
            )),
            Event::DowngradeEnabled { .. } => Some("waiting for the storage version to migrate".to_owned()),
            Event::StorageMigrated { .. } => Some("choosing the next member".to_owned()),
            Event::DowngradeCancelled { .. } => Some("downgrade cancelled".to_owned()),
            Event::PassDone { .. } => Some("waiting for the cluster version".to_owned()),
            Event::ClusterVersion { .. } => Some("finishing".to_owned()),
            Event::RestoreBegan { members, .. } => {
                self.total = members.len();
                Some("stopping and restoring members".to_owned())
            }
            Event::SnapshotSent { member, .. } => Some(format!("sent the snapshot to {member}")),
            Event::MemberStopped { member } => Some(format!("{member}: stopped")),
            Event::MemberRestoring { member, .. } => Some(format!("{member}: replacing its data dir")),
            Event::MemberRestored { .. } => {
                self.done += 1;
                Some("restoring the next member".to_owned())
            }
            Event::EtcdStarted { .. } => Some("waiting for the restored cluster".to_owned()),
            Event::Failed { .. } | Event::Finished { .. } | Event::ClusterRestored { .. } => Some(String::new()),
        };
        if let Some(activity) = activity
            && activity != self.activity
        {
            self.activity = activity;
            self.since = now;
        }
    }

    /// The status line, or nothing once the change has ended.
    fn line(&self, now: Instant) -> Option<String> {
        if self.activity.is_empty() {
            return None;
        }
        let members = if self.total > 0 {
            format!("[{}/{} members] ", self.done.min(self.total), self.total)
        } else {
            String::new()
        };
        Some(format!(
            "{members}{} · {:.1}s · total {:.0}s",
            self.activity,
            now.duration_since(self.since).as_secs_f64(),
            now.duration_since(self.began).as_secs_f64()
        ))
    }
}

fn lock(status: &Mutex<Status>) -> MutexGuard<'_, Status> {
    // Plain display state: a panic elsewhere cannot leave it inconsistent.
    status.lock().unwrap_or_else(PoisonError::into_inner)
}

fn redraw(status: &Status) {
    let mut stderr = std::io::stderr().lock();
    let _ = match status.line(Instant::now()) {
        Some(line) => write!(stderr, "{CLEAR_LINE}{line}"),
        None => write!(stderr, "{CLEAR_LINE}"),
    };
    let _ = stderr.flush();
}

/// The live display; clears its status line when dropped.
#[derive(Debug)]
pub struct Live {
    status: Arc<Mutex<Status>>,
    ticker: JoinHandle<()>,
}

impl Live {
    /// Starts the display (inside a tokio runtime).
    #[must_use]
    pub fn start() -> Self {
        let status = Arc::new(Mutex::new(Status::new(Instant::now())));
        let shared = Arc::clone(&status);
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(REDRAW).await;
                let status = lock(&shared).clone();
                redraw(&status);
            }
        });
        Self { status, ticker }
    }

    /// Whether stderr is a terminal that can show it.
    #[must_use]
    pub fn wanted() -> bool {
        std::io::stderr().is_terminal() && std::env::var_os("TERM").is_some_and(|t| t != "dumb")
    }
}

impl EventSink for Live {
    fn emit(&mut self, event: &Event) {
        let mut status = lock(&self.status);
        status.follow(event, Instant::now());
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "{CLEAR_LINE}{}", human(event));
        drop(stderr);
        redraw(&status);
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.ticker.abort();
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "{CLEAR_LINE}");
        let _ = stderr.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_follows_the_members() {
        let start = Instant::now();
        let mut status = Status::new(start);
        status.follow(
            &Event::Planned {
                passes: vec!["3.5.30".into()],
                order: vec!["m1".into(), "m2".into(), "m0".into()],
            },
            start,
        );
        status.follow(
            &Event::MemberStarted {
                member: "m1".into(),
                from: "3.4.23".into(),
                to: "3.5.30".into(),
            },
            start,
        );
        let line = status.line(start + Duration::from_millis(2500)).unwrap();
        assert_eq!(line, "[0/3 members] m1: switching to 3.5.30 · 2.5s · total 2s");
        status.follow(
            &Event::MemberDone {
                member: "m1".into(),
                took_ms: 900,
                elections: 0,
            },
            start + Duration::from_secs(3),
        );
        let line = status.line(start + Duration::from_secs(3)).unwrap();
        assert!(
            line.starts_with("[1/3 members] choosing the next member · 0.0s"),
            "{line}"
        );
    }

    #[test]
    fn checks_do_not_reset_the_activity_clock() {
        let start = Instant::now();
        let mut status = Status::new(start);
        status.follow(
            &Event::Observed {
                members: 3,
                leader: Some("m0".into()),
                cluster_version: Some("3.4.0".into()),
                versions: "3.4.23..3.4.23".into(),
            },
            start,
        );
        let before = status.since;
        status.follow(
            &Event::Check(crate::engine::roll::rules::Check {
                rule: "cluster-healthy",
                verdict: crate::engine::roll::rules::Verdict::Pass,
                message: String::new(),
                source: "",
            }),
            start + Duration::from_secs(1),
        );
        assert_eq!(status.since, before);
    }

    #[test]
    fn the_end_clears_the_line() {
        let start = Instant::now();
        let mut status = Status::new(start);
        status.follow(
            &Event::Finished {
                cluster_version: "3.5.0".into(),
                took_ms: 1,
            },
            start,
        );
        assert_eq!(status.line(start), None);
    }
}
