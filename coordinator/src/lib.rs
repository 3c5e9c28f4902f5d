//! The steward coordinator as a library.
//!
//! - [`engine`]: everything steward does to etcd clusters (connect, observe,
//!   lock, roll, restore, back up), usable from Rust without a command line.
//! - [`local`]: local clusters of etcd members with agents, for demos and
//!   tests; [`certs`]: the certificates steward makes.
//! - With the default `cli` feature: the command line (`cli`), one module
//!   per command group (`commands`) and what they print (`output`). The
//!   `steward` binary only parses, sets up logging, calls `run` and turns
//!   the error into an exit code, so everything here can be tested
//!   in-process.

pub mod certs;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "cli")]
pub mod commands;
pub mod engine;
pub mod format;
pub mod local;
#[cfg(feature = "cli")]
pub mod output;

#[cfg(feature = "cli")]
use std::io::Write;

#[cfg(feature = "cli")]
pub use cli::Cli;
#[cfg(feature = "cli")]
pub use cli::error::CliError;

/// Runs one parsed command line, writing results to `out` (stdout in the
/// binary). Logs go through `tracing`, never to `out`.
///
/// # Errors
/// Whatever the command fails with; [`CliError::exit_code`] says how the
/// process should exit.
#[cfg(feature = "cli")]
pub async fn run(cli: Cli, out: &mut dyn Write) -> Result<(), CliError> {
    // What the flags (and their variables) say about connections; a
    // cluster file may add its own TLS where they say nothing.
    let connector = engine::connect::Connector::default()
        .with_credentials(cli.etcd_auth.credentials().map_err(CliError::Usage)?)
        .with_etcd_tls(Some(&cli.etcd_tls.files()))?
        .with_agent_tls(cli.agent_tls.files().as_ref())?;
    let c = &connector;
    match cli.command {
        cli::Command::Agent(agent) => Box::pin(commands::agent::run(c, agent.command, out)).await,
        cli::Command::Local(local) => Box::pin(commands::local::run(local.command, out)).await,
        cli::Command::Certs(certs) => Box::pin(commands::certs::run(c, certs.command, out)).await,
        cli::Command::Status(args) => Box::pin(commands::cluster::status(c, &args, out)).await,
        cli::Command::Plan(args) => Box::pin(commands::cluster::plan(c, &args, out)).await,
        cli::Command::Upgrade(args) => {
            Box::pin(commands::roll::run(
                c,
                engine::roll::plan::Direction::Upgrade,
                args,
                out,
            ))
            .await
        }
        cli::Command::Downgrade(args) => {
            Box::pin(commands::roll::run(
                c,
                engine::roll::plan::Direction::Downgrade,
                args,
                out,
            ))
            .await
        }
        cli::Command::Backup(args) => Box::pin(commands::backup::backup(c, &args, out)).await,
        cli::Command::Backups(args) => Box::pin(commands::backup::backups(c, &args.cluster, args.output, out)).await,
        cli::Command::Restore(args) => Box::pin(commands::restore::restore(c, args, out)).await,
        cli::Command::Rollback(args) if args.to_snapshot => {
            Box::pin(commands::restore::rollback_to_snapshot(c, args, out)).await
        }
        cli::Command::Rollback(args) => Box::pin(commands::roll::rollback(c, args, out)).await,
        cli::Command::Fleet(fleet) => Box::pin(commands::fleet::run(c, fleet.command, out)).await,
        cli::Command::Snapshot(snapshot) => match snapshot.command {
            cli::SnapshotCommand::Status { file, output } => commands::snapshot::status(&file, output.format, out),
        },
        cli::Command::Version(args) => Box::pin(commands::version::version(c, &args, out)).await,
        cli::Command::Completion { shell } => commands::generate::completion(shell, out),
        cli::Command::Man { dir } => {
            for page in commands::generate::man_pages(&dir)? {
                writeln!(out, "{}", dir.join(page).display()).map_err(CliError::Output)?;
            }
            Ok(())
        }
    }
}
