//! `steward backup` and `steward backups`: a verified snapshot of the
//! cluster through one member's agent (the leader's unless named), copied
//! here on request; and what every agent keeps.

use std::io::Write;

use steward_proto::v1 as pb;

use crate::cli::error::CliError;
use crate::cli::{BackupArgs, ClusterArgs, OutputArgs};
use crate::engine::connect::Connector;
use crate::engine::connect::agent::{self, AgentAddress};
use crate::engine::error::Error;
use crate::output;
use crate::output::view::{BackupView, SnapshotView, SnapshotsView};

/// Why no member can be chosen.
fn no_member(reason: String) -> CliError {
    CliError::Usage(reason)
}

/// `steward backup`.
///
/// # Errors
/// The cluster cannot be observed, the member is unknown or has no agent,
/// or the agent refuses or fails the snapshot or its download.
pub async fn backup(connector: &Connector, args: &BackupArgs, out: &mut dyn Write) -> Result<(), CliError> {
    if let Some(file) = &args.out {
        crate::engine::transfer::download::check_destination(file, 0)?;
    }
    let (observation, connector) = super::cluster::observe_target(connector, &args.cluster).await?;
    let observed = &observation.observed;
    let member = match &args.member {
        Some(name) => observed.members.iter().find(|m| m.name == *name).ok_or_else(|| {
            no_member(format!(
                "--member {name}: the cluster has no such member (it has {})",
                observed
                    .members
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?,
        None => observed.leader().ok_or_else(|| CliError::Unhealthy {
            problems: "no single leader to take the snapshot from; name a member with --member".into(),
        })?,
    };
    let agent: AgentAddress = member
        .agent
        .as_deref()
        .ok_or_else(|| CliError::Unhealthy {
            problems: format!("{} has no agent: {}", member.name, member.why_no_agent()),
        })?
        .parse()
        .map_err(|e| no_member(format!("{}'s agent address: {e}", member.name)))?;
    // A copy that could not be written is refused before the snapshot is
    // taken, not after: a failed backup leaves nothing on the agent.
    if let Some(file) = &args.out {
        crate::engine::transfer::download::check_destination(file, member.db_size)?;
    }
    let mut clients = agent::connect(&connector, &agent).await?;
    let info = clients
        .snapshots
        .take_snapshot(pb::TakeSnapshotRequest::default())
        .await
        .map_err(|s| CliError::from_status(&agent, clients.plaintext, "TakeSnapshot", &s))?
        .into_inner()
        .snapshot
        .ok_or_else(|| {
            CliError::Engine(Error::MalformedReply {
                address: agent.clone(),
                rpc: "TakeSnapshot",
                problem: "no snapshot info",
            })
        })?;
    let downloaded_to = match &args.out {
        Some(file) => {
            Box::pin(crate::engine::transfer::download::download(
                &mut clients,
                &info.id,
                file,
            ))
            .await
            .map_err(|source| CliError::BackupCopyFailed {
                address: agent.clone(),
                member: member.name.clone(),
                id: info.id.clone(),
                out: file.clone(),
                source: Box::new(source),
            })?;
            Some(file.display().to_string())
        }
        None => None,
    };
    output::emit(
        out,
        args.output.format,
        &BackupView {
            agent: agent.to_string(),
            snapshot: SnapshotView::from(&info),
            downloaded_to,
        },
    )
}

/// `steward backups`: every agent's snapshots, newest first.
///
/// # Errors
/// The cluster cannot be resolved, or an agent cannot be asked.
pub async fn backups(
    connector: &Connector,
    cluster: &ClusterArgs,
    output: OutputArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let (target, connector) = super::cluster_target(cluster, connector)?;
    let mut snapshots = Vec::new();
    for member in &target.members {
        let mut clients = agent::connect(&connector, &member.agent).await?;
        let list = clients
            .snapshots
            .list_snapshots(pb::ListSnapshotsRequest {})
            .await
            .map_err(|s| CliError::from_status(&member.agent, clients.plaintext, "ListSnapshots", &s))?
            .into_inner();
        snapshots.extend(list.snapshots.iter().map(SnapshotView::from));
    }
    snapshots.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| a.member_name.cmp(&b.member_name))
    });
    output::emit(out, output.format, &SnapshotsView { snapshots })
}
