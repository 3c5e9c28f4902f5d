//! `steward agent ...`: one call to one agent per command, printed as a
//! table or JSON.

use std::io::Write;

use serde::Serialize;
use steward_proto::v1 as pb;
use tonic::Status;

use crate::cli::AgentCommand;
use crate::cli::error::CliError;
use crate::engine::connect::Connector;
use crate::engine::connect::agent::{self, AgentAddress, AgentClients};
use crate::engine::error::Error;
use crate::output::view::{
    BinariesView, DownloadView, FlagsView, LifecycleView, SnapshotView, SnapshotsView, StagedView, StatusView,
    SwitchView,
};
use crate::output::{self, OutputFormat};

/// Runs one agent subcommand, writing its result to `out`.
///
/// # Errors
/// The agent is unreachable or refused or failed the call, or a local file
/// could not be used.
pub async fn run(connector: &Connector, command: AgentCommand, out: &mut dyn Write) -> Result<(), CliError> {
    let plaintext = !connector.agent_uses_tls();
    match command {
        AgentCommand::Status { target, output } => {
            let mut clients = agent::connect(connector, &target.agent).await?;
            let response = call(
                &target.agent,
                plaintext,
                "GetStatus",
                clients.agent.get_status(pb::GetStatusRequest {}),
            )
            .await?;
            let view = StatusView::new(&target.agent.to_string(), &response);
            output::emit(out, output.format, &view).map_err(CliError::from)
        }
        AgentCommand::Binaries { target, output } => {
            let mut clients = agent::connect(connector, &target.agent).await?;
            let response = call(
                &target.agent,
                plaintext,
                "ListBinaries",
                clients.binaries.list_binaries(pb::ListBinariesRequest {}),
            )
            .await?;
            output::emit(out, output.format, &BinariesView::from(&response)).map_err(CliError::from)
        }
        AgentCommand::Import {
            target,
            path,
            version,
            tool,
            sha256,
            output,
        } => {
            let mut clients = agent::connect(connector, &target.agent).await?;
            let request = pb::ImportBinaryRequest {
                path: path.display().to_string(),
                tool: tool.to_pb().into(),
                version: version.to_string(),
                sha256: sha256.unwrap_or_default(),
                fencing_token: 0,
            };
            let response = call(
                &target.agent,
                plaintext,
                "ImportBinary",
                clients.binaries.import_binary(request),
            )
            .await?;
            output::emit(out, output.format, &StagedView::from(&response)).map_err(CliError::from)
        }
        AgentCommand::Upload {
            target,
            file,
            version,
            tool,
            output,
        } => {
            let mut clients = agent::connect(connector, &target.agent).await?;
            let fingerprint = crate::engine::transfer::upload::fingerprint(&file).await?;
            let upload =
                crate::engine::transfer::upload::upload(&mut clients, &file, &fingerprint, &version, tool.to_pb(), 0);
            let response = Box::pin(upload).await?;
            output::emit(out, output.format, &StagedView::from(&response)).map_err(CliError::from)
        }
        AgentCommand::Flags { target, to, output } => {
            let mut clients = agent::connect(connector, &target.agent).await?;
            let request = pb::CheckFlagsRequest {
                target_version: to.to_string(),
                from_version: String::new(),
            };
            let response = call(
                &target.agent,
                plaintext,
                "CheckFlags",
                clients.agent.check_flags(request),
            )
            .await?;
            output::emit(out, output.format, &FlagsView::new(&to.to_string(), &response)).map_err(CliError::from)
        }
        AgentCommand::Activate {
            target,
            to,
            timeout,
            force,
            output,
        } => {
            let mut clients = agent::connect(connector, &target.agent).await?;
            super::take_down::clear(connector, &target.agent, &mut clients, force).await?;
            let request = pb::ActivateRequest {
                version: to.to_string(),
                timeout: timeout.map(wire_duration),
                fencing_token: 0,
            };
            tracing::info!(agent = %target.agent, version = %to, "activating");
            let response = call(&target.agent, plaintext, "Activate", clients.agent.activate(request)).await?;
            output::emit(out, output.format, &SwitchView::from(&response)).map_err(CliError::from)
        }
        AgentCommand::Rollback {
            target,
            timeout,
            force,
            output,
        } => {
            let mut clients = agent::connect(connector, &target.agent).await?;
            super::take_down::clear(connector, &target.agent, &mut clients, force).await?;
            let request = pb::RollbackRequest {
                timeout: timeout.map(wire_duration),
                fencing_token: 0,
            };
            tracing::info!(agent = %target.agent, "rolling back");
            let response = call(&target.agent, plaintext, "Rollback", clients.agent.rollback(request)).await?;
            output::emit(out, output.format, &SwitchView::from(&response)).map_err(CliError::from)
        }
        AgentCommand::Start { target, output } => {
            let mut clients = agent::connect(connector, &target.agent).await?;
            let response = call(
                &target.agent,
                plaintext,
                "Start",
                clients.agent.start(pb::StartRequest::default()),
            )
            .await?;
            output::emit(out, output.format, &LifecycleView::from(&response)).map_err(CliError::from)
        }
        AgentCommand::Stop { target, force, output } => {
            let mut clients = agent::connect(connector, &target.agent).await?;
            super::take_down::clear(connector, &target.agent, &mut clients, force).await?;
            let response = call(
                &target.agent,
                plaintext,
                "Stop",
                clients.agent.stop(pb::StopRequest::default()),
            )
            .await?;
            output::emit(out, output.format, &LifecycleView::from(&response)).map_err(CliError::from)
        }
        AgentCommand::Restart { target, force, output } => {
            let mut clients = agent::connect(connector, &target.agent).await?;
            super::take_down::clear(connector, &target.agent, &mut clients, force).await?;
            let response = call(
                &target.agent,
                plaintext,
                "Restart",
                clients.agent.restart(pb::RestartRequest::default()),
            )
            .await?;
            output::emit(out, output.format, &LifecycleView::from(&response)).map_err(CliError::from)
        }
        AgentCommand::Snapshot { target, output } => {
            let mut clients = agent::connect(connector, &target.agent).await?;
            let response = call(
                &target.agent,
                plaintext,
                "TakeSnapshot",
                clients.snapshots.take_snapshot(pb::TakeSnapshotRequest::default()),
            )
            .await?;
            let info = response.snapshot.ok_or_else(|| {
                CliError::Engine(Error::MalformedReply {
                    address: target.agent.clone(),
                    rpc: "TakeSnapshot",
                    problem: "no snapshot info",
                })
            })?;
            output::emit(out, output.format, &SnapshotView::from(&info)).map_err(CliError::from)
        }
        AgentCommand::Snapshots { target, output } => {
            let mut clients = agent::connect(connector, &target.agent).await?;
            let response = call(
                &target.agent,
                plaintext,
                "ListSnapshots",
                clients.snapshots.list_snapshots(pb::ListSnapshotsRequest {}),
            )
            .await?;
            output::emit(out, output.format, &SnapshotsView::from(&response)).map_err(CliError::from)
        }
        AgentCommand::Download {
            target,
            id,
            out: file,
            output,
        } => {
            let mut clients = agent::connect(connector, &target.agent).await?;
            let (info, size) = Box::pin(crate::engine::transfer::download::download(&mut clients, &id, &file)).await?;
            tracing::info!(file = %file.display(), size, "snapshot downloaded and verified");
            output::emit(out, output.format, &DownloadView::new(&file, size, &info)).map_err(CliError::from)
        }
        AgentCommand::Logs {
            target,
            lines,
            follow,
            format,
        } => {
            let mut clients = agent::connect(connector, &target.agent).await?;
            Box::pin(logs(&mut clients, lines, follow, format, out)).await
        }
    }
}

/// Prints the last `lines` of etcd's output and, with `follow`, new lines
/// until the agent closes the stream (or the process is interrupted): as
/// etcd wrote them, or as NDJSON ([`log_lines_ndjson`]).
async fn logs(
    clients: &mut AgentClients,
    lines: Option<u32>,
    follow: bool,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    const RPC: &str = "TailLogs";
    let address = clients.address.clone();
    let plaintext = clients.plaintext;
    let mut stream = call(
        &address,
        plaintext,
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
        .map_err(|s| CliError::from_status(&address, plaintext, RPC, &s))?
    {
        match format {
            OutputFormat::Table | OutputFormat::Wide => output::lines(out, &message.lines)?,
            OutputFormat::Json => {
                let text = log_lines_ndjson(&address, &message.lines).map_err(|e| CliError::Output(e.into()))?;
                out.write_all(text.as_bytes()).map_err(CliError::Output)?;
                // Flushed per message, so `--follow` shows each line at once.
                out.flush().map_err(CliError::Output)?;
            }
        }
    }
    Ok(())
}

/// One line of etcd's output as `steward agent logs -w json` prints it.
#[derive(Debug, Serialize)]
struct LogLine<'a> {
    /// The agent the line came from, `host:port` as given with `--agent`.
    agent: &'a str,
    /// The line as the agent sent it (etcd's stdout and stderr, without the
    /// newline; bytes that were not UTF-8 replaced by the agent).
    line: &'a str,
}

/// `lines` from `agent` as NDJSON: one `{"agent":..,"line":..}` object per
/// line, each ending in a newline. etcd's own JSON log lines stay strings,
/// so every object has the same shape whatever etcd's log format is.
///
/// # Errors
/// When a line cannot be serialized (it cannot: both fields are strings).
fn log_lines_ndjson(agent: &AgentAddress, lines: &[String]) -> Result<String, serde_json::Error> {
    let agent = agent.to_string();
    let mut text = String::new();
    for line in lines {
        text.push_str(&serde_json::to_string(&LogLine { agent: &agent, line })?);
        text.push('\n');
    }
    Ok(text)
}

/// Awaits a unary (or stream-opening) call and maps its status.
async fn call<T>(
    address: &AgentAddress,
    plaintext: bool,
    rpc: &'static str,
    future: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, CliError> {
    tracing::debug!(%address, rpc, "calling the agent");
    match future.await {
        Ok(response) => Ok(response.into_inner()),
        Err(status) => Err(CliError::from_status(address, plaintext, rpc, &status)),
    }
}

fn wire_duration(duration: std::time::Duration) -> prost_types::Duration {
    // Only fails beyond ~292 billion years; clap's parser never yields that.
    prost_types::Duration::try_from(duration).unwrap_or(prost_types::Duration {
        seconds: i64::MAX,
        nanos: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address() -> AgentAddress {
        "http://10.0.0.11:7400".parse().unwrap()
    }

    #[test]
    fn json_logs_are_one_object_per_line_with_the_agent_and_the_line() {
        let lines = vec![
            "2026-11-21 08:41:02.512 I | etcdserver: published".to_owned(),
            String::new(),
            "[steward-agent: 3 lines skipped: the reader fell behind]".to_owned(),
        ];
        let text = log_lines_ndjson(&address(), &lines).unwrap();
        assert!(text.ends_with('\n'), "{text:?}");
        let objects: Vec<serde_json::Value> = text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        assert_eq!(
            objects,
            [
                serde_json::json!({"agent": "10.0.0.11:7400", "line": lines[0]}),
                serde_json::json!({"agent": "10.0.0.11:7400", "line": ""}),
                serde_json::json!({"agent": "10.0.0.11:7400", "line": lines[2]}),
            ]
        );
    }

    #[test]
    fn json_logs_keep_etcds_json_lines_as_strings_on_one_line() {
        let etcd = r#"{"level":"info","ts":"2026-11-21T08:41:02.512Z","msg":"ready to serve client requests"}"#;
        let lines = vec![etcd.to_owned(), "a\ttab and a \"quote\"".to_owned()];
        let text = log_lines_ndjson(&address(), &lines).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["line"], etcd);
        let second: serde_json::Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
        assert_eq!(second["line"], lines[1]);
    }

    #[test]
    fn json_logs_of_no_lines_print_nothing() {
        assert_eq!(log_lines_ndjson(&address(), &[]).unwrap(), "");
    }
}
