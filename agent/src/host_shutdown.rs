//! Telling a host's shutdown from an agent restart.
//!
//! Both end the agent with SIGTERM. On `systemctl stop` or `restart` etcd
//! must keep running (the next agent adopts it); when the host shuts down,
//! etcd must be stopped cleanly while the network is still up, instead of
//! being killed at the very end by systemd-shutdown, after the network is
//! gone. The unit is ordered after `network-online.target` (and
//! `dbus.service`), so systemd stops it before either; the agent asks
//! systemd which of the two is happening.

use std::time::Duration;

/// How long systemd may take to answer.
const ASK_WITHIN: Duration = Duration::from_secs(3);

/// What systemd says about the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostState {
    /// The system is going down (`systemctl is-system-running`: `stopping`).
    ShuttingDown,
    /// Anything else: the agent alone is stopped or restarted.
    Running(String),
    /// Not under systemd, or systemd could not be asked.
    Unknown(String),
}

/// Asks systemd (`systemctl is-system-running`, over D-Bus for the agent's
/// unprivileged user) whether the host is shutting down. Only under
/// systemd (`NOTIFY_SOCKET` set); elsewhere nobody shuts a host down
/// around the agent.
pub async fn host_state() -> HostState {
    if !crate::notify::enabled() {
        return HostState::Unknown("not started by systemd".into());
    }
    let asked = tokio::process::Command::new("systemctl")
        .arg("is-system-running")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(ASK_WITHIN, asked).await {
        Err(_) => HostState::Unknown(format!(
            "systemctl is-system-running did not answer within {ASK_WITHIN:?}"
        )),
        Ok(Err(error)) => HostState::Unknown(format!("cannot run systemctl: {error}")),
        // It exits non-zero for every state but "running", so only its
        // output counts.
        Ok(Ok(output)) => parse(&String::from_utf8_lossy(&output.stdout)),
    }
}

fn parse(answer: &str) -> HostState {
    match answer.trim() {
        "stopping" => HostState::ShuttingDown,
        "" => HostState::Unknown("systemctl is-system-running printed nothing".into()),
        other => HostState::Running(other.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stopping_means_the_host_goes_down() {
        assert_eq!(parse("stopping\n"), HostState::ShuttingDown);
        assert_eq!(parse("running\n"), HostState::Running("running".into()));
        assert_eq!(parse("degraded\n"), HostState::Running("degraded".into()));
        assert!(matches!(parse(""), HostState::Unknown(_)));
    }
}
