//! `steward agent ...`: one call to one agent per command, printed as a
//! table or JSON.

use std::io::Write;

use steward_proto::v1 as pb;
use tonic::Status;

use crate::agent_client::{self, AgentAddress, AgentClients};
use crate::cli::AgentCommand;
use crate::error::CliError;
use crate::output;
use crate::view::{
    BinariesView, DownloadView, FlagsView, LifecycleView, SnapshotView, SnapshotsView, StagedView, StatusView,
    SwitchView,
};

/// Runs one agent subcommand, writing its result to `out`.
///
/// # Errors
/// The agent is unreachable or refused or failed the call, or a local file
/// could not be used.
pub async fn run(command: AgentCommand, out: &mut dyn Write) -> Result<(), CliError> {
    match command {
        AgentCommand::Status { target, output } => {
            let mut clients = agent_client::connect(&target.agent).await?;
            let response = call(
                &target.agent,
                "GetStatus",
                clients.agent.get_status(pb::GetStatusRequest {}),
            )
            .await?;
            let view = StatusView::new(&target.agent.to_string(), &response);
            output::emit(out, output.format, &view)
        }
        AgentCommand::Binaries { target, output } => {
            let mut clients = agent_client::connect(&target.agent).await?;
            let response = call(
                &target.agent,
                "ListBinaries",
                clients.binaries.list_binaries(pb::ListBinariesRequest {}),
            )
            .await?;
            output::emit(out, output.format, &BinariesView::from(&response))
        }
        AgentCommand::Import {
            target,
            path,
            version,
            tool,
            sha256,
            output,
        } => {
            let mut clients = agent_client::connect(&target.agent).await?;
            let request = pb::ImportBinaryRequest {
                path: path.display().to_string(),
                tool: tool.to_pb().into(),
                version: version.to_string(),
                sha256: sha256.unwrap_or_default(),
                fencing_token: 0,
            };
            let response = call(&target.agent, "ImportBinary", clients.binaries.import_binary(request)).await?;
            output::emit(out, output.format, &StagedView::from(&response))
        }
        AgentCommand::Upload {
            target,
            file,
            version,
            tool,
            output,
        } => {
            let mut clients = agent_client::connect(&target.agent).await?;
            let fingerprint = crate::upload::fingerprint(&file).await?;
            let upload = crate::upload::upload(&mut clients, &file, &fingerprint, &version, tool.to_pb(), 0);
            let response = Box::pin(upload).await?;
            output::emit(out, output.format, &StagedView::from(&response))
        }
        AgentCommand::Flags { target, to, output } => {
            let mut clients = agent_client::connect(&target.agent).await?;
            let request = pb::CheckFlagsRequest {
                target_version: to.to_string(),
                from_version: String::new(),
            };
            let response = call(&target.agent, "CheckFlags", clients.agent.check_flags(request)).await?;
            output::emit(out, output.format, &FlagsView::new(&to.to_string(), &response))
        }
        AgentCommand::Activate {
            target,
            to,
            timeout,
            force,
            output,
        } => {
            let mut clients = agent_client::connect(&target.agent).await?;
            super::take_down::clear(&target.agent, &mut clients, force).await?;
            let request = pb::ActivateRequest {
                version: to.to_string(),
                timeout: timeout.map(wire_duration),
                fencing_token: 0,
            };
            tracing::info!(agent = %target.agent, version = %to, "activating");
            let response = call(&target.agent, "Activate", clients.agent.activate(request)).await?;
            output::emit(out, output.format, &SwitchView::from(&response))
        }
        AgentCommand::Rollback {
            target,
            timeout,
            force,
            output,
        } => {
            let mut clients = agent_client::connect(&target.agent).await?;
            super::take_down::clear(&target.agent, &mut clients, force).await?;
            let request = pb::RollbackRequest {
                timeout: timeout.map(wire_duration),
                fencing_token: 0,
            };
            tracing::info!(agent = %target.agent, "rolling back");
            let response = call(&target.agent, "Rollback", clients.agent.rollback(request)).await?;
            output::emit(out, output.format, &SwitchView::from(&response))
        }
        AgentCommand::Start { target, output } => {
            let mut clients = agent_client::connect(&target.agent).await?;
            let response = call(&target.agent, "Start", clients.agent.start(pb::StartRequest::default())).await?;
            output::emit(out, output.format, &LifecycleView::from(&response))
        }
        AgentCommand::Stop { target, force, output } => {
            let mut clients = agent_client::connect(&target.agent).await?;
            super::take_down::clear(&target.agent, &mut clients, force).await?;
            let response = call(&target.agent, "Stop", clients.agent.stop(pb::StopRequest::default())).await?;
            output::emit(out, output.format, &LifecycleView::from(&response))
        }
        AgentCommand::Restart { target, force, output } => {
            let mut clients = agent_client::connect(&target.agent).await?;
            super::take_down::clear(&target.agent, &mut clients, force).await?;
            let response = call(
                &target.agent,
                "Restart",
                clients.agent.restart(pb::RestartRequest::default()),
            )
            .await?;
            output::emit(out, output.format, &LifecycleView::from(&response))
        }
        AgentCommand::Snapshot { target, output } => {
            let mut clients = agent_client::connect(&target.agent).await?;
            let response = call(
                &target.agent,
                "TakeSnapshot",
                clients.snapshots.take_snapshot(pb::TakeSnapshotRequest::default()),
            )
            .await?;
            let info = response.snapshot.ok_or_else(|| CliError::MalformedReply {
                address: target.agent.clone(),
                rpc: "TakeSnapshot",
                problem: "no snapshot info",
            })?;
            output::emit(out, output.format, &SnapshotView::from(&info))
        }
        AgentCommand::Snapshots { target, output } => {
            let mut clients = agent_client::connect(&target.agent).await?;
            let response = call(
                &target.agent,
                "ListSnapshots",
                clients.snapshots.list_snapshots(pb::ListSnapshotsRequest {}),
            )
            .await?;
            output::emit(out, output.format, &SnapshotsView::from(&response))
        }
        AgentCommand::Download {
            target,
            id,
            out: file,
            output,
        } => {
            let mut clients = agent_client::connect(&target.agent).await?;
            let (info, size) = Box::pin(crate::download::download(&mut clients, &id, &file)).await?;
            tracing::info!(file = %file.display(), size, "snapshot downloaded and verified");
            output::emit(out, output.format, &DownloadView::new(&file, size, &info))
        }
        AgentCommand::Logs { target, lines, follow } => {
            let mut clients = agent_client::connect(&target.agent).await?;
            Box::pin(logs(&mut clients, lines, follow, out)).await
        }
    }
}

/// Prints the last `lines` of etcd's output and, with `follow`, new lines
/// until the agent closes the stream (or the process is interrupted).
async fn logs(
    clients: &mut AgentClients,
    lines: Option<u32>,
    follow: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    const RPC: &str = "TailLogs";
    let address = clients.address.clone();
    let mut stream = call(
        &address,
        RPC,
        // 0 asks for the agent's default, which fits its configured tail.
        clients.agent.tail_logs(pb::TailLogsRequest {
            lines: lines.unwrap_or(0),
            follow,
        }),
    )
    .await?;
    while let Some(message) = stream
        .message()
        .await
        .map_err(|s| CliError::from_status(&address, RPC, &s))?
    {
        output::lines(out, &message.lines)?;
    }
    Ok(())
}

/// Awaits a unary (or stream-opening) call and maps its status.
async fn call<T>(
    address: &AgentAddress,
    rpc: &'static str,
    future: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, CliError> {
    tracing::debug!(%address, rpc, "calling the agent");
    match future.await {
        Ok(response) => Ok(response.into_inner()),
        Err(status) => Err(CliError::from_status(address, rpc, &status)),
    }
}

fn wire_duration(duration: std::time::Duration) -> prost_types::Duration {
    // Only fails beyond ~292 billion years; clap's parser never yields that.
    prost_types::Duration::try_from(duration).unwrap_or(prost_types::Duration {
        seconds: i64::MAX,
        nanos: 0,
    })
}
