//! `steward upgrade` and `steward downgrade`: run the rolling engine,
//! print a line per step on stderr (or NDJSON events on stdout), then the
//! report, and turn the outcome into the exit code (0, 1, 3 refused, or 4
//! cancelled).

use std::io::Write;

use comfy_table::Table;

use crate::cli::error::CliError;
use crate::cli::{RollArgs, RollbackArgs};
use crate::commands::cluster::failed_rules;
use crate::commands::signals::cancel_on_signal;
use crate::engine::connect::Connector;
use crate::engine::events::{EventSink, Lines, Ndjson};
use crate::engine::report::RunContext;
use crate::engine::roll::plan::Direction;
use crate::engine::roll::{self, Outcome, RollOptions, RollReport, RollRequest};
use crate::output;
use crate::output::live::Live;
use crate::output::table::{Tabular, with_header};

impl Tabular for RollReport {
    fn tables(&self) -> Vec<Table> {
        let direction = self.direction.to_string().to_uppercase();
        let mut summary = with_header(&[direction.as_str(), ""]);
        let mut row = |key: &str, value: String| {
            summary.add_row(vec![key.to_owned(), value]);
        };
        row("result", format!("{:?}", self.result).to_lowercase());
        row("from", self.from.clone().unwrap_or_else(|| "-".into()));
        row("to", self.to.clone());
        row(
            "cluster version",
            self.cluster_version.clone().unwrap_or_else(|| "-".into()),
        );
        row("took", format!("{:.1}s", self.took_ms as f64 / 1000.0));
        if let Some(snapshot) = &self.snapshot {
            row(
                "snapshot",
                format!(
                    "{} on {} ({}), revision {}, sha256 {}",
                    snapshot.id, snapshot.member, snapshot.path, snapshot.revision, snapshot.sha256
                ),
            );
        }
        if let Some(failure) = &self.failure {
            row(
                "failed at",
                format!("{} {}", failure.member.clone().unwrap_or_default(), failure.gate),
            );
            row("reason", failure.reason.clone());
            if !failure.log_tail.is_empty() {
                row("etcd log tail", failure.log_tail.join("\n"));
            }
        }
        if let Some(probe) = &self.probe {
            row(
                "probe",
                format!(
                    "{} writes, {} failed attempts, longest stall {} ms",
                    probe.writes, probe.failed, probe.longest_stall_ms
                ),
            );
            for step in &probe.steps {
                row(
                    &format!("probe: {}", step.step),
                    format!(
                        "{} writes, {} failed, longest stall {} ms",
                        step.writes, step.failed, step.longest_stall_ms
                    ),
                );
            }
        }
        let failed = failed_rules(&self.checks);
        if !failed.is_empty() {
            row("refused by", failed);
        }
        let mut members = with_header(&["MEMBER", "ID", "FROM", "TO", "TOOK", "LEADER MOVES", "ELECTIONS"]);
        for m in &self.members {
            members.add_row(vec![
                m.name.clone(),
                m.id.clone(),
                m.from.clone().unwrap_or_else(|| "-".into()),
                m.to.clone().unwrap_or_else(|| "-".into()),
                format!("{:.1}s", m.took_ms as f64 / 1000.0),
                m.leader_moves.to_string(),
                m.elections.to_string(),
            ]);
        }
        vec![summary, members]
    }
}

/// `steward rollback`: the changed members back to their previous version.
pub async fn rollback(connector: &Connector, args: RollbackArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let (target, connector) = super::cluster_target(&args.cluster, connector)?;
    let agents = target.members.iter().map(|m| m.agent.clone()).collect();
    let options = args
        .run
        .options(RollRequest::Rollback, RunContext::new(target.name.clone()));
    report(
        &connector,
        agents,
        options,
        args.run.events,
        args.run.output.format,
        out,
    )
    .await
}

/// Runs the change and reports it.
pub async fn run(
    connector: &Connector,
    direction: Direction,
    args: RollArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let (target, connector) = super::cluster_target(&args.cluster, connector)?;
    let agents = target.members.iter().map(|m| m.agent.clone()).collect();
    let change = args.source.change(direction, args.to.clone());
    let options = RollOptions {
        activate_timeout: args.activate_timeout,
        ..args
            .run
            .options(RollRequest::Change(change), RunContext::new(target.name.clone()))
    };
    report(
        &connector,
        agents,
        options,
        args.run.events,
        args.run.output.format,
        out,
    )
    .await
}

/// Runs the engine with the chosen event sink, prints the report, and maps
/// the outcome to the exit code.
async fn report(
    connector: &Connector,
    agents: Vec<crate::engine::connect::agent::AgentAddress>,
    options: RollOptions,
    events: bool,
    format: crate::output::OutputFormat,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    // Ctrl-C or SIGTERM stops the run at its next safe point, with the
    // lock released; a second one ends steward at once.
    let _stop_on_signal = cancel_on_signal(options.cancel.clone());
    let report = if events {
        let mut sink = Ndjson::new(&mut *out, options.context.clone());
        Box::pin(roll::run(connector, agents, options, &mut sink)).await
    } else if Live::wanted() {
        let mut sink = Live::start();
        Box::pin(roll::run(connector, agents, options, &mut sink as &mut dyn EventSink)).await
    } else {
        let mut sink: Lines<std::io::Stderr> = Lines(std::io::stderr());
        Box::pin(roll::run(connector, agents, options, &mut sink as &mut dyn EventSink)).await
    };
    output::report(out, events, format, &report)?;
    match report.result {
        Outcome::Succeeded => Ok(()),
        Outcome::Refused => Err(CliError::Refused {
            rules: failed_rules(&report.checks),
        }),
        Outcome::Cancelled => Err(CliError::Cancelled {
            where_: report.failure.unwrap_or_default().location(),
        }),
        Outcome::Failed => {
            let failure = report.failure.unwrap_or_default();
            Err(CliError::RollFailed {
                direction: report.direction,
                where_: failure.location(),
                reason: failure.reason,
            })
        }
    }
}
