//! `steward fleet`: the engine's fleet over an inventory, with a line per
//! step of every cluster on stderr (or NDJSON events on stdout), a summary
//! table or JSON report, and the worst cluster's exit code.

use std::io::Write;
use std::time::Duration;

use comfy_table::Table;

use crate::cli::error::CliError;
use crate::cli::{FleetCommand, FleetRollArgs, FleetSelection, OutputArgs};
use crate::commands::signals::cancel_on_signal;
use crate::engine::connect::Connector;
use crate::engine::error::chain;
use crate::engine::events::{EventSink, Labelled, Ndjson};
use crate::engine::fleet::inventory::Inventory;
use crate::engine::fleet::schedule::{ClusterOutcome, StopRule};
use crate::engine::fleet::waves::{WaveSpec, plan_waves};
use crate::engine::fleet::{self, Fleet, FleetReport};
use crate::engine::report::RunContext;
use crate::engine::roll::plan::Direction;
use crate::engine::roll::{RollOptions, RollRequest};
use crate::format::human_duration_millis;
use crate::output;
use crate::output::table::{Tabular, with_header};

/// Runs one fleet subcommand.
///
/// # Errors
/// A usage error (the inventory, a selector), or [`CliError::Fleet`] when
/// a cluster did not succeed.
pub async fn run(connector: &Connector, command: FleetCommand, out: &mut dyn Write) -> Result<(), CliError> {
    match command {
        FleetCommand::Status {
            fleet,
            lock_prefix,
            output,
        } => {
            let setup = Setup::new(&fleet)?;
            let report = fleet::status(&setup.fleet(connector, &discard), &lock_prefix).await;
            finish(out, false, output, &report)
        }
        FleetCommand::Plan {
            fleet,
            to,
            downgrade,
            source,
            output,
        } => {
            let setup = Setup::new(&fleet)?;
            let direction = if downgrade {
                Direction::Downgrade
            } else {
                Direction::Upgrade
            };
            let change = source.change(direction, to);
            let report = fleet::plan(&setup.fleet(connector, &discard), &change).await;
            finish(out, false, output, &report)
        }
        FleetCommand::Upgrade(args) => roll(connector, Direction::Upgrade, args, out).await,
        FleetCommand::Downgrade(args) => roll(connector, Direction::Downgrade, args, out).await,
        FleetCommand::Backup { fleet, out_dir, output } => {
            if !out_dir.is_dir() {
                return Err(CliError::Usage(format!(
                    "--out-dir {}: not a directory (create it first)",
                    out_dir.display()
                )));
            }
            let setup = Setup::new(&fleet)?;
            let _stop_on_signal = cancel_on_signal(setup.stop.cancel.clone());
            let report = fleet::backup(&setup.fleet(connector, &discard), &out_dir).await;
            finish(out, false, output, &report)
        }
    }
}

/// Events of the commands that change nothing are not shown.
fn discard(_: &RunContext) -> Box<dyn EventSink> {
    Box::new(crate::engine::events::Discard)
}

/// The inventory, the waves and the stop rule of one fleet command.
struct Setup {
    inventory: Inventory,
    waves: Vec<crate::engine::fleet::waves::Wave>,
    stop: StopRule,
    context: RunContext,
}

impl Setup {
    fn new(selection: &FleetSelection) -> Result<Self, CliError> {
        let inventory = Inventory::load(&selection.inventory).map_err(|e| CliError::Usage(chain(&e)))?;
        let spec = WaveSpec {
            canary: selection.canary.clone(),
            waves: selection.waves.clone(),
            parallel: usize::from(selection.parallel),
        };
        let waves = plan_waves(&inventory, &spec).map_err(|e| CliError::Usage(e.to_string()))?;
        Ok(Self {
            inventory,
            waves,
            stop: StopRule {
                max_failures: selection.max_failures,
                ..StopRule::default()
            },
            context: RunContext::new(None),
        })
    }

    fn fleet<'a>(&'a self, connector: &'a Connector, events: &'a fleet::SinkFactory<'a>) -> Fleet<'a> {
        Fleet {
            connector,
            inventory: &self.inventory,
            waves: self.waves.clone(),
            stop: self.stop.clone(),
            context: self.context.clone(),
            events,
        }
    }
}

async fn roll(
    connector: &Connector,
    direction: Direction,
    args: FleetRollArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let setup = Setup::new(&args.fleet)?;
    let change = args.source.change(direction, args.to.clone());
    let template = RollOptions {
        activate_timeout: args.activate_timeout,
        ..args
            .run
            .options(RollRequest::Change(change.clone()), setup.context.clone())
    };
    let events = args.run.events;
    let sinks = move |context: &RunContext| -> Box<dyn EventSink> {
        if events {
            Box::new(Ndjson::new(std::io::stdout(), context.clone()))
        } else {
            Box::new(Labelled {
                out: std::io::stderr(),
                label: context.cluster.clone().unwrap_or_default(),
            })
        }
    };
    let _stop_on_signal = cancel_on_signal(setup.stop.cancel.clone());
    let report = Box::pin(fleet::change(&setup.fleet(connector, &sinks), &change, &template)).await;
    finish(out, events, args.run.output, &report)
}

/// Prints the report and turns the worst cluster into the exit code.
fn finish(out: &mut dyn Write, events: bool, output: OutputArgs, report: &FleetReport) -> Result<(), CliError> {
    output::report(out, events, output.format, report)?;
    if report.result.severity() == 0 {
        return Ok(());
    }
    Err(CliError::Fleet {
        command: report.command.clone(),
        result: report.result,
        summary: summary(report),
    })
}

/// "failed: c (where: why); not started: d; succeeded: a, b".
fn summary(report: &FleetReport) -> String {
    let mut parts = Vec::new();
    for outcome in [
        ClusterOutcome::Failed,
        ClusterOutcome::Refused,
        ClusterOutcome::Cancelled,
        ClusterOutcome::NotStarted,
        ClusterOutcome::Succeeded,
        ClusterOutcome::Skipped,
    ] {
        let names: Vec<String> = report
            .clusters
            .iter()
            .filter(|c| c.result == outcome)
            .map(|c| match (&c.reason, outcome.severity()) {
                (Some(reason), 1..) => format!("{} ({reason})", c.name),
                _ => c.name.clone(),
            })
            .collect();
        if !names.is_empty() {
            parts.push(format!("{}: {}", outcome_word(outcome), names.join(", ")));
        }
    }
    parts.join("; ")
}

fn outcome_word(outcome: ClusterOutcome) -> &'static str {
    match outcome {
        ClusterOutcome::Succeeded => "succeeded",
        ClusterOutcome::Skipped => "skipped",
        ClusterOutcome::Refused => "refused",
        ClusterOutcome::Failed => "failed",
        ClusterOutcome::Cancelled => "cancelled",
        ClusterOutcome::NotStarted => "not started",
    }
}

/// A field of a cluster's report as text, `-` when absent.
fn field(report: Option<&serde_json::Value>, key: &str) -> String {
    match report.and_then(|r| r.get(key)) {
        Some(serde_json::Value::String(text)) => text.clone(),
        Some(serde_json::Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

impl Tabular for FleetReport {
    fn tables(&self) -> Vec<Table> {
        let clusters = if self.command == "status" {
            let mut table = with_header(&[
                "CLUSTER",
                "HEALTH",
                "VERSIONS",
                "CLUSTER VERSION",
                "LEADER",
                "LAST CHANGE",
                "RESULT",
            ]);
            for c in &self.clusters {
                let report = c.report.as_ref();
                table.add_row(vec![
                    c.name.clone(),
                    report.map_or_else(
                        || "-".into(),
                        |_| format!("{}/{} healthy", field(report, "healthy"), field(report, "members")),
                    ),
                    field(report, "versions"),
                    field(report, "cluster_version"),
                    field(report, "leader"),
                    field(report, "last_change"),
                    with_reason(outcome_word(c.result), c.reason.as_deref()),
                ]);
            }
            table
        } else {
            let mut table = with_header(&["CLUSTER", "WAVE", "RESULT", "TOOK", "DETAIL"]);
            for c in &self.clusters {
                table.add_row(vec![
                    c.name.clone(),
                    c.wave.clone(),
                    outcome_word(c.result).to_owned(),
                    if c.result == ClusterOutcome::NotStarted {
                        "-".into()
                    } else {
                        human_duration_millis(Duration::from_millis(c.took_ms))
                    },
                    c.reason.clone().unwrap_or_default(),
                ]);
            }
            table
        };
        let mut summary = with_header(&[format!("FLEET {}", self.command.to_uppercase()).as_str(), ""]);
        summary.add_row(vec!["result".to_owned(), outcome_word(self.result).to_owned()]);
        summary.add_row(vec!["run".to_owned(), self.run.clone()]);
        summary.add_row(vec![
            "waves".to_owned(),
            self.waves
                .iter()
                .map(|w| format!("{} ({}, {} at once)", w.name, w.clusters.join(" "), w.parallel))
                .collect::<Vec<_>>()
                .join(", "),
        ]);
        summary.add_row(vec![
            "took".to_owned(),
            human_duration_millis(Duration::from_millis(self.took_ms)),
        ]);
        vec![summary, clusters]
    }
}

fn with_reason(word: &str, reason: Option<&str>) -> String {
    reason.map_or_else(|| word.to_owned(), |r| format!("{word}: {r}"))
}
