//! What the agent tells systemd (`Type=notify`): READY=1 once it serves,
//! STATUS= lines saying what it is doing (`systemctl status` shows the
//! latest), STOPPING=1 when shutdown begins. Outside systemd
//! (`NOTIFY_SOCKET` unset) all of this does nothing.
//!
//! The status line is a pure function of the persisted state and the
//! supervisor's view of etcd ([`describe`]), sent by one task whenever it
//! changes.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use crate::agent::Agent;
use crate::state::{AgentState, PersistedState};
use crate::supervisor::ProcessStatus;

/// How often the status task looks for a change. The state has no change
/// notification of its own; a second of delay is nothing for a status line.
const STATUS_POLL: Duration = Duration::from_secs(1);

/// The longest status line sent; `systemctl status` shows one line.
const MAX_STATUS_CHARS: usize = 300;

fn send(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::debug!(%error, "sd_notify failed");
    }
}

/// Whether systemd listens (`NOTIFY_SOCKET` is set).
#[must_use]
pub fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// READY=1 with a status line.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(&one_line(status))]);
}

/// A status line.
pub fn status(status: &str) {
    send(&[NotifyState::Status(&one_line(status))]);
}

/// STOPPING=1 with a status line.
pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(&one_line(status))]);
}

/// The status as one line of bounded length: a newline would end the
/// STATUS= assignment and start another one.
fn one_line(text: &str) -> String {
    let mut line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_STATUS_CHARS)
        .collect();
    if text.chars().count() > MAX_STATUS_CHARS {
        line.push_str("...");
    }
    line
}

/// The status line for `state` and `process`, e.g. `serving; etcd 3.5.30
/// running (pid 1234)` or `activating 3.5.30 (from 3.4.23)`.
#[must_use]
pub fn describe(state: &PersistedState, process: &ProcessStatus) -> String {
    let etcd = match &process.record {
        Some(record) => {
            let mut text = format!("etcd {} running (pid {}", record.version, record.pid);
            if process.adopted {
                text.push_str(", adopted");
            }
            if process.restart_count > 0 {
                text.push_str(&format!(", {} restarts", process.restart_count));
            }
            text.push(')');
            text
        }
        None => {
            let exit = process
                .last_exit
                .as_deref()
                .map_or(String::new(), |exit| format!(" (last: {exit})"));
            let restarting = if process.supervised { "; restarting it" } else { "" };
            match &state.active_version {
                Some(version) => format!("etcd {version} not running{exit}{restarting}"),
                None => format!("etcd not running{exit}"),
            }
        }
    };
    let switch = state.switch.as_ref();
    let to = switch.map_or("?", |s| s.to.as_str());
    let from = switch.and_then(|s| s.from.as_deref()).unwrap_or("none");
    match state.state {
        AgentState::Activating => format!("activating {to} (from {from}); {etcd}"),
        AgentState::RollingBack => format!("rolling back to {to} (from {from}); {etcd}"),
        AgentState::Restoring => {
            let snapshot = state.restore.as_ref().map_or("?", |r| r.snapshot_id.as_str());
            format!("restoring the member's data from snapshot {snapshot}; {etcd}")
        }
        AgentState::Running => format!("serving; {etcd}"),
        AgentState::Empty if process.record.is_none() => "serving; no etcd version active yet".to_owned(),
        AgentState::Empty => format!("serving; no etcd version active yet; {etcd}"),
        AgentState::Stopped if process.record.is_none() => with_reason("serving; etcd stopped", &state.state_reason),
        AgentState::Stopped => with_reason(&format!("serving; member STOPPED; {etcd}"), &state.state_reason),
        AgentState::Failed => with_reason(&format!("serving; member FAILED; {etcd}"), &state.state_reason),
    }
}

fn with_reason(text: &str, reason: &str) -> String {
    if reason.is_empty() {
        text.to_owned()
    } else {
        format!("{text}: {reason}")
    }
}

/// Sends the agent's status line whenever it changes, until `stop`; does
/// nothing outside systemd.
pub fn spawn_status(agent: Arc<Agent>, stop: CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
    if !enabled() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut sent = String::new();
        let mut ticker = tokio::time::interval(STATUS_POLL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let line = describe(&agent.persisted(), &agent.process());
            if line != sent {
                status(&line);
                sent = line;
            }
        }
    }))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::process::ProcessRecord;
    use crate::state::Switch;

    pub(crate) fn running(version: &str, pid: u32) -> ProcessStatus {
        ProcessStatus {
            record: Some(ProcessRecord {
                pid,
                start_ticks: 1,
                executable: "/x/etcd".into(),
                executable_file: None,
                args: Vec::new(),
                version: version.into(),
                started_at_ms: 0,
            }),
            supervised: true,
            ..ProcessStatus::default()
        }
    }

    pub(crate) fn state(state: AgentState, active: Option<&str>) -> PersistedState {
        PersistedState {
            state,
            active_version: active.map(Into::into),
            ..PersistedState::default()
        }
    }

    #[test]
    fn a_running_member_says_version_and_pid() {
        let persisted = state(AgentState::Running, Some("3.5.30"));
        assert_eq!(
            describe(&persisted, &running("3.5.30", 1234)),
            "serving; etcd 3.5.30 running (pid 1234)"
        );
        let mut adopted = running("3.5.30", 1234);
        adopted.adopted = true;
        adopted.restart_count = 2;
        assert_eq!(
            describe(&persisted, &adopted),
            "serving; etcd 3.5.30 running (pid 1234, adopted, 2 restarts)"
        );
    }

    #[test]
    fn a_crashed_member_says_it_is_restarted() {
        let persisted = state(AgentState::Running, Some("3.5.30"));
        let process = ProcessStatus {
            last_exit: Some("exit status 1".into()),
            supervised: true,
            ..ProcessStatus::default()
        };
        assert_eq!(
            describe(&persisted, &process),
            "serving; etcd 3.5.30 not running (last: exit status 1); restarting it"
        );
    }

    #[test]
    fn switches_and_restores_say_so() {
        let mut persisted = state(AgentState::Activating, Some("3.4.23"));
        persisted.switch = Some(Switch {
            from: Some("3.4.23".into()),
            to: "3.5.30".into(),
        });
        let text = describe(&persisted, &ProcessStatus::default());
        assert!(text.starts_with("activating 3.5.30 (from 3.4.23); "), "{text}");

        persisted.state = AgentState::RollingBack;
        let text = describe(&persisted, &running("3.5.30", 7));
        assert_eq!(
            text,
            "rolling back to 3.5.30 (from 3.4.23); etcd 3.5.30 running (pid 7)"
        );

        let persisted = state(AgentState::Restoring, Some("3.5.30"));
        let text = describe(&persisted, &ProcessStatus::default());
        assert!(text.starts_with("restoring the member's data"), "{text}");
    }

    #[test]
    fn stopped_failed_and_empty_members() {
        assert_eq!(
            describe(&state(AgentState::Empty, None), &ProcessStatus::default()),
            "serving; no etcd version active yet"
        );
        assert_eq!(
            describe(&state(AgentState::Stopped, Some("3.5.30")), &ProcessStatus::default()),
            "serving; etcd stopped"
        );
        let mut failed = state(AgentState::Failed, Some("3.5.30"));
        failed.state_reason = "etcd exited 5 times in a row\n(last: killed by SIGKILL)".into();
        let text = describe(&failed, &ProcessStatus::default());
        assert!(
            text.starts_with("serving; member FAILED; etcd 3.5.30 not running"),
            "{text}"
        );
        let line = one_line(&text);
        assert!(!line.contains('\n') && line.contains("in a row (last"), "{line}");
    }

    #[test]
    fn status_lines_are_one_bounded_line() {
        let long = "x".repeat(1000);
        let line = one_line(&format!("a\nb\r{long}"));
        assert!(line.starts_with("a b x"));
        assert_eq!(line.chars().count(), MAX_STATUS_CHARS + 3);
    }
}
