//! The safety invariant for `steward agent stop|restart|activate|rollback`:
//! the same check a roll makes before it takes a member down, for an
//! operator's direct call to one agent. The cluster is observed through
//! that agent's member; a member that does not answer carries no part of
//! the quorum and may be taken down; one that leads gives its leadership
//! away first; anything else that could cost the quorum is refused with
//! exit 3 naming `quorum-safety`, unless `--force`.

use std::time::{Duration, Instant};

use steward_proto::v1 as pb;

use crate::cli::error::CliError;
use crate::engine::cluster::observe::observe;
use crate::engine::connect::Connector;
use crate::engine::connect::agent::{AgentAddress, AgentClients};
use crate::engine::connect::etcd;
use crate::engine::roll::rules::ids::QUORUM_SAFETY;
use crate::engine::roll::safety::{self, Clearance};

/// How long a leadership move may take to be confirmed.
const MOVE_LEADER_TIMEOUT: Duration = Duration::from_secs(15);

fn refused(reason: impl std::fmt::Display) -> CliError {
    CliError::Refused {
        rules: format!("{QUORUM_SAFETY} ({reason}; --force takes the member down anyway)"),
    }
}

/// Clears the agent's member to be taken down (moving leadership away from
/// it first), or refuses. `force` skips the check.
///
/// # Errors
/// [`CliError::Refused`] naming `quorum-safety`, or the agent's error.
pub async fn clear(
    connector: &Connector,
    address: &AgentAddress,
    clients: &mut AgentClients,
    force: bool,
) -> Result<(), CliError> {
    if force {
        tracing::warn!(agent = %address, "--force: taking the member down without the quorum check");
        return Ok(());
    }
    let status = clients
        .agent
        .get_status(pb::GetStatusRequest {})
        .await
        .map_err(|s| CliError::from_status(address, clients.plaintext, "GetStatus", &s))?
        .into_inner();
    if !status.member.as_ref().is_some_and(|m| m.reachable) {
        // Not serving: taking it down takes nothing away.
        return Ok(());
    }
    let name = status.agent.map(|a| a.member_name).unwrap_or_default();
    for _ in 0..3 {
        let observation = observe(connector, std::slice::from_ref(address), &[])
            .await
            .map_err(|e| {
                refused(format!(
                    "cannot tell whether the others carry quorum: {}",
                    crate::engine::error::chain(&e)
                ))
            })?;
        let observed = observation.observed;
        match safety::clearance_to_undo(&observed, &name) {
            Ok(Clearance::Now) => return Ok(()),
            Ok(Clearance::AfterLeaderMoves) => {
                let to = crate::engine::roll::plan::transferee(&observed, &name).ok_or_else(|| {
                    refused(format!(
                        "{name} leads and no healthy, caught-up voting member can take over"
                    ))
                })?;
                let leader = observed
                    .members
                    .iter()
                    .find(|m| m.name == name)
                    .ok_or_else(|| refused(format!("{name} left the member list")))?;
                tracing::info!(from = %name, to = %to.name, "moving leadership away first");
                let mut client = etcd::connect_member(connector, &leader.client_url, "MoveLeader")
                    .await
                    .map_err(|e| refused(format!("cannot move leadership away from {name}: {e}")))?;
                client.move_leader(to.id).await.map_err(|e| {
                    refused(format!(
                        "cannot move leadership away from {name}: {}",
                        etcd::describe(&e)
                    ))
                })?;
                wait_for_other_leader(connector, address, &name).await?;
            }
            Err(why) => return Err(refused(why)),
        }
    }
    Err(refused(format!("leadership kept coming back to {name}")))
}

async fn wait_for_other_leader(connector: &Connector, address: &AgentAddress, name: &str) -> Result<(), CliError> {
    let deadline = Instant::now() + MOVE_LEADER_TIMEOUT;
    loop {
        if let Ok(observation) = observe(connector, std::slice::from_ref(address), &[]).await
            && observation.observed.leader().is_some_and(|l| l.name != name)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(refused(format!(
                "leadership did not move away from {name} within {MOVE_LEADER_TIMEOUT:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
