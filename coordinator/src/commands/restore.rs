//! `steward restore` and `steward rollback --to-snapshot`: decide the
//! snapshot and versions, ask the operator (unless `--yes`), run the
//! restore engine with a line per step on stderr (or NDJSON on stdout),
//! print the report, and turn the outcome into the exit code.

use std::io::{BufRead, IsTerminal, Write};

use comfy_table::Table;
use steward_proto::EtcdVersion;
use steward_proto::v1 as pb;

use crate::cli::error::CliError;
use crate::cli::{RestoreArgs, RollbackArgs};
use crate::commands::cluster::failed_rules;
use crate::engine::connect::Connector;
use crate::engine::connect::agent::{self, AgentAddress};
use crate::engine::events::{EventSink, Lines, Ndjson};
use crate::engine::report::RunContext;
use crate::engine::restore::{self, AssumeYes, Confirm, Purpose, RestoreOptions, RestoreReport, SnapshotSource};
use crate::engine::roll::Outcome;
use crate::engine::roll::plan::Direction;
use crate::engine::roll::rules::{Check, Verdict};
use crate::output::table::{Tabular, with_header};
use crate::output::{self, OutputFormat};

/// The rule `rollback --to-snapshot` refuses by.
pub const AFTER_FLIP: &str = "rollback-to-snapshot-after-flip";

impl Tabular for RestoreReport {
    fn tables(&self) -> Vec<Table> {
        let mut summary = with_header(&["RESTORE", ""]);
        let mut row = |key: &str, value: String| {
            summary.add_row(vec![key.to_owned(), value]);
        };
        row("result", format!("{:?}", self.result).to_lowercase());
        if let Some(question) = self.would_ask.as_ref().filter(|_| self.dry_run) {
            row(
                "dry run",
                format!("every check ran and nothing was stopped; a real run asks: {question}"),
            );
        }
        row("restore id", self.restore_id.clone().unwrap_or_else(|| "-".into()));
        if self.resumed {
            row("resumed", "finished a restore an earlier run began".into());
        }
        if let Some(snapshot) = &self.snapshot {
            row(
                "snapshot",
                format!(
                    "{}: revision {}, {} bytes, sha256 {}, written by a {} cluster",
                    snapshot.id, snapshot.revision, snapshot.size, snapshot.sha256, snapshot.db_cluster_version
                ),
            );
        }
        if let (Some(before), Some(lost)) = (self.revision_before, self.revisions_lost) {
            row(
                "revisions lost",
                format!("{lost} (the cluster was at revision {before})"),
            );
        }
        if let Some(revision) = self.revision {
            row("revision now", revision.to_string());
        }
        row("took", format!("{:.1}s", self.took_ms as f64 / 1000.0));
        let seconds = |ms: u64| format!("{:.1}s", ms as f64 / 1000.0);
        let phases = &self.phases;
        row(
            "where the time went",
            format!(
                "decide {}, send {}, dry run {}, stopping and restoring {}, start {}, wait {}",
                seconds(phases.decide_ms),
                seconds(phases.send_ms),
                seconds(phases.dry_run_ms),
                seconds(phases.replace_ms),
                seconds(phases.start_ms),
                seconds(phases.wait_ms)
            ),
        );
        if let Some(failure) = &self.failure {
            row(
                "failed at",
                format!("{} {}", failure.member.clone().unwrap_or_default(), failure.gate)
                    .trim()
                    .to_owned(),
            );
            row("reason", failure.reason.clone());
        }
        let failed = failed_rules(&self.checks);
        if !failed.is_empty() {
            row("refused by", failed);
        }
        let mut members = with_header(&["MEMBER", "NEW ID", "VERSION", "DATA DIR", "OLD DATA DIR KEPT AT"]);
        for m in &self.members {
            members.add_row(vec![
                m.name.clone(),
                m.id.clone(),
                m.version.clone(),
                m.data_dir.clone(),
                if m.moved_aside_to.is_empty() {
                    "-".into()
                } else {
                    m.moved_aside_to.clone()
                },
            ]);
        }
        if self.members.is_empty() {
            vec![summary]
        } else {
            vec![summary, members]
        }
    }
}

/// Asks on the terminal: the question, then a line that must be `yes`.
struct Prompt;

impl Confirm for Prompt {
    fn confirm(&mut self, question: &str) -> bool {
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "\n{question}");
        let _ = write!(stderr, "Type yes to go on: ");
        let _ = stderr.flush();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer).is_ok() && answer.trim() == "yes"
    }
}

/// `--yes`, or a terminal to ask on; refused before anything else.
fn confirmation(yes: bool, flag: &str) -> Result<Box<dyn Confirm>, CliError> {
    if yes {
        Ok(Box::new(AssumeYes))
    } else if std::io::stdin().is_terminal() {
        Ok(Box::new(Prompt))
    } else {
        Err(CliError::Usage(format!(
            "{flag} asks for a confirmation, and stdin is not a terminal: add --yes to go ahead without asking"
        )))
    }
}

/// `steward restore`.
///
/// # Errors
/// Refused (exit 3), failed (exit 1), or a usage error (exit 2).
pub async fn restore(connector: &Connector, args: RestoreArgs, out: &mut dyn Write) -> Result<(), CliError> {
    // A dry run asks nothing: it stops where the question would come.
    let mut confirm = confirmation(args.yes || args.dry_run, "restore")?;
    let (target, connector) = super::cluster_target(&args.cluster, connector)?;
    let agents = target.members.iter().map(|m| m.agent.clone()).collect();
    let options = RestoreOptions {
        source: SnapshotSource::parse(&args.snapshot),
        version: args.version,
        label: target.name.clone(),
        lock_prefix: args.lock_prefix,
        timeout: args.timeout,
        purpose: Purpose::Restore,
        member_names: member_names(&target),
        context: RunContext::new(target.name.clone()),
        dry_run: args.dry_run,
    };
    report(
        &connector,
        agents,
        options,
        &mut *confirm,
        args.events,
        args.output.format,
        out,
    )
    .await
}

/// `steward rollback --to-snapshot`: the upgrade recorded in the cluster
/// undone from its pre-upgrade snapshot, with the version it started from.
///
/// # Errors
/// Refused (exit 3), failed (exit 1), or a usage error (exit 2).
pub async fn rollback_to_snapshot(
    connector: &Connector,
    args: RollbackArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let mut confirm = confirmation(args.yes, "rollback --to-snapshot")?;
    let (target, connector) = super::cluster_target(&args.cluster, connector)?;
    let agents: Vec<AgentAddress> = target.members.iter().map(|m| m.agent.clone()).collect();
    let (snapshot, from) = match unfinished_restore(&connector, &agents).await? {
        // A rollback whose restore an earlier run began: finish it (the
        // cluster may be down, and with it the record of the upgrade).
        Some(unfinished) => unfinished,
        None => undo_target(&connector, &agents, &args.run.lock_prefix).await?,
    };
    let options = RestoreOptions {
        source: SnapshotSource::Id(snapshot),
        version: Some(from.clone()),
        label: target.name.clone(),
        lock_prefix: args.run.lock_prefix.clone(),
        timeout: args.run.gate_timeout.max(std::time::Duration::from_secs(60)),
        purpose: Purpose::RollbackToSnapshot { upgraded_from: from },
        member_names: member_names(&target),
        context: RunContext::new(target.name.clone()),
        dry_run: false,
    };
    report(
        &connector,
        agents,
        options,
        &mut *confirm,
        args.run.events,
        args.run.output.format,
        out,
    )
    .await
}

/// The member each agent serves, as the cluster file names them.
fn member_names(target: &crate::engine::cluster::file::ClusterTarget) -> Vec<(AgentAddress, String)> {
    target
        .members
        .iter()
        .filter_map(|m| m.name.clone().map(|name| (m.agent.clone(), name)))
        .collect()
}

/// The snapshot and version of a restore the agents recorded unfinished.
/// An agent that does not answer is passed over here: the restore's
/// preflight refuses to begin without every member's agent
/// (`every-member-has-agent`), naming it.
async fn unfinished_restore(
    connector: &Connector,
    agents: &[AgentAddress],
) -> Result<Option<(String, EtcdVersion)>, CliError> {
    for address in agents {
        let Ok(mut clients) = agent::connect(connector, address).await else {
            continue;
        };
        let Ok(status) = clients.agent.get_status(pb::GetStatusRequest {}).await else {
            continue;
        };
        let status = status.into_inner();
        if let Some(restore) = status.restore
            && restore.phase != i32::from(pb::RestorePhase::Finished)
            && let Ok(version) = restore.version.parse()
        {
            return Ok(Some((restore.snapshot_id, version)));
        }
    }
    Ok(None)
}

/// The pre-upgrade snapshot and the version to go back to, from the
/// cluster's last-roll record, once the upgrade is known to have finished
/// and flipped the cluster version (before that, `steward rollback` swaps
/// binaries back without losing anything).
async fn undo_target(
    connector: &Connector,
    agents: &[AgentAddress],
    prefix: &str,
) -> Result<(String, EtcdVersion), CliError> {
    let refuse = |message: String| CliError::Refused {
        rules: failed_rules(&[Check {
            rule: AFTER_FLIP,
            verdict: Verdict::Fail,
            message,
            source: "steward",
        }]),
    };
    let observation = crate::engine::cluster::observe::observe(connector, agents, &[]).await?;
    let observed = observation.observed;
    let endpoints: Vec<String> = observed
        .members
        .iter()
        .filter(|m| m.healthy)
        .map(|m| m.client_url.clone())
        .collect();
    let record = crate::engine::roll::last_roll::read(connector, &endpoints, prefix)
        .await
        .map_err(|e| refuse(format!("cannot read the last-roll record: {e}")))?
        .ok_or_else(|| refuse("this cluster has no record of an upgrade to undo".into()))?;
    let from: EtcdVersion = record
        .from
        .parse()
        .map_err(|_| refuse(format!("the last-roll record names {:?} as its start", record.from)))?;
    let to: EtcdVersion = record
        .to
        .parse()
        .map_err(|_| refuse(format!("the last-roll record names {:?} as its target", record.to)))?;
    if record.direction != Direction::Upgrade || from.minor_version() >= to.minor_version() {
        return Err(refuse(format!(
            "the last change was a {} from {from} to {to}, not a minor upgrade; there is no version flip to undo",
            record.direction
        )));
    }
    // Whether the upgrade finished is only known with every member seen;
    // and the restore that follows replaces every member's data.
    let unseen: Vec<String> = observed
        .members
        .iter()
        .filter(|m| m.agent.is_none() || m.version.is_none())
        .map(|m| {
            if m.agent.is_none() {
                format!("{} ({})", m.name, m.why_no_agent())
            } else {
                format!("{} (its etcd does not answer: {})", m.name, m.health_error)
            }
        })
        .collect();
    if !unseen.is_empty() {
        return Err(CliError::Refused {
            rules: failed_rules(&[Check {
                rule: crate::engine::restore::plan::ids::AGENTS,
                verdict: Verdict::Fail,
                message: format!(
                    "a rollback to the pre-upgrade snapshot replaces every member's data, and every member and its \
                     agent must answer first: {}",
                    unseen.join(", ")
                ),
                source: "steward",
            }]),
        });
    }
    let flipped = observed
        .cluster_version
        .as_ref()
        .is_some_and(|v| v.minor_version() == to.minor_version());
    let all_upgraded = observed.members.iter().all(|m| {
        m.version
            .as_ref()
            .is_some_and(|v| v.minor_version() == to.minor_version())
    });
    if !flipped || !all_upgraded {
        return Err(refuse(format!(
            "the upgrade from {from} to {to} has not finished (cluster version {}): `steward rollback` swaps the \
             binaries back without losing data, or `steward upgrade --to {to}` finishes it",
            observed
                .cluster_version
                .as_ref()
                .map_or_else(|| "undecided".to_owned(), ToString::to_string)
        )));
    }
    let snapshot = record.snapshot.ok_or_else(|| {
        refuse(format!(
            "the upgrade from {from} to {to} recorded no pre-upgrade snapshot; restore one with `steward restore \
             --snapshot ID|FILE --version {from}`"
        ))
    })?;
    Ok((snapshot.id, from))
}

/// Runs the engine, prints the report, and maps the outcome to the exit
/// code.
async fn report(
    connector: &Connector,
    agents: Vec<AgentAddress>,
    options: RestoreOptions,
    confirm: &mut dyn Confirm,
    events: bool,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let report = if events {
        let mut sink = Ndjson::new(&mut *out, options.context.clone());
        Box::pin(restore::run(connector, agents, options, &mut sink, confirm)).await
    } else {
        // Lines, not the live status line: the confirmation question and
        // its answer share the terminal.
        let mut sink: Lines<std::io::Stderr> = Lines(std::io::stderr());
        Box::pin(restore::run(
            connector,
            agents,
            options,
            &mut sink as &mut dyn EventSink,
            confirm,
        ))
        .await
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
            Err(CliError::RestoreFailed {
                where_: failure.location(),
                reason: failure.reason,
            })
        }
    }
}
