//! gRPC health that means something: besides the agent's own services,
//! which serve from start to shutdown, the named service
//! [`service_names::MEMBER`] is SERVING only while the agent's etcd member
//! runs under it, and NOT_SERVING while it is stopped, failed, crashed and
//! being restarted, switching versions or being restored.

use std::sync::Arc;
use std::time::Duration;

use steward_proto::service_names;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::agent::Agent;
use crate::state::{AgentState, PersistedState};
use crate::supervisor::ProcessStatus;

/// How often the member's health is looked at.
const POLL: Duration = Duration::from_millis(500);

/// The services that serve as long as the agent does.
pub const AGENT_SERVICES: [&str; 4] = [
    "",
    service_names::AGENT,
    service_names::BINARIES,
    service_names::SNAPSHOTS,
];

/// Whether the member is up: etcd runs, under an agent in its steady state.
#[must_use]
pub fn member_serving(state: &PersistedState, process: &ProcessStatus) -> bool {
    process.record.is_some() && state.state == AgentState::Running
}

/// Keeps [`service_names::MEMBER`] in step with the member until `stop`.
pub fn spawn_member_health(agent: Arc<Agent>, health: HealthReporter, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut current = None;
        let mut ticker = tokio::time::interval(POLL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let serving = member_serving(&agent.persisted(), &agent.process());
            if current != Some(serving) {
                let status = if serving {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                health.set_service_status(service_names::MEMBER, status).await;
                tracing::info!(serving, "member health changed");
                current = Some(serving);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::tests::{running, state};

    #[test]
    fn the_member_serves_only_while_etcd_runs_in_the_steady_state() {
        let up = running("3.5.30", 42);
        let down = ProcessStatus::default();
        assert!(member_serving(&state(AgentState::Running, Some("3.5.30")), &up));
        // Crashed and being restarted, stopped, failed: not serving.
        assert!(!member_serving(&state(AgentState::Running, Some("3.5.30")), &down));
        assert!(!member_serving(&state(AgentState::Stopped, Some("3.5.30")), &down));
        assert!(!member_serving(&state(AgentState::Failed, Some("3.5.30")), &up));
        // Switching versions or restoring: etcd may run, the member is in
        // the middle of a change.
        assert!(!member_serving(&state(AgentState::Activating, Some("3.5.30")), &up));
        assert!(!member_serving(&state(AgentState::Restoring, Some("3.5.30")), &up));
        assert!(!member_serving(&state(AgentState::Empty, None), &down));
    }
}
