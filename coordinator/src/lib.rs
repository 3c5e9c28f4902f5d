//! The steward coordinator as a library: the command line (`cli`), the
//! connection to agents (`agent_client`), the cluster description
//! (`cluster_file`), local clusters (`local`), the commands, and the views
//! and tables they print. The `steward` binary only parses, sets up logging,
//! calls [`run`] and turns the error into an exit code, so everything here
//! can be tested in-process.

pub mod agent_client;
pub mod certs;
pub mod change_state;
pub mod cli;
pub mod cluster_file;
pub mod commands;
pub mod connect;
pub mod downgrade_api;
pub mod download;
pub mod error;
pub mod etcd;
pub mod events;
pub mod exit;
pub mod flag_check;
pub mod format;
pub mod last_roll;
pub mod live;
pub mod local;
pub mod lock;
pub mod observe;
pub mod observed;
pub mod output;
pub mod plan;
pub mod probe;
pub mod restore;
pub mod restore_plan;
pub mod roll;
pub mod rules;
pub mod safety;
pub mod table;
pub mod upload;
pub mod v2store_check;
pub mod view;

use std::io::Write;

pub use cli::Cli;
pub use error::CliError;

/// Runs one parsed command line, writing results to `out` (stdout in the
/// binary). Logs go through `tracing`, never to `out`.
///
/// # Errors
/// Whatever the command fails with; [`CliError::exit_code`] says how the
/// process should exit.
pub async fn run(cli: Cli, out: &mut dyn Write) -> Result<(), CliError> {
    // What the flags (and their variables) say about connections; a
    // cluster file may add its own TLS where they say nothing.
    let connector = connect::Connector::default()
        .with_credentials(cli.etcd_auth.credentials().map_err(CliError::Usage)?)
        .with_etcd_tls(Some(&cli.etcd_tls.files()))
        .map_err(CliError::Usage)?
        .with_agent_tls(cli.agent_tls.files().as_ref())?;
    let c = &connector;
    match cli.command {
        cli::Command::Agent(agent) => Box::pin(commands::agent::run(c, agent.command, out)).await,
        cli::Command::Local(local) => Box::pin(commands::local::run(local.command, out)).await,
        cli::Command::Certs(certs) => commands::certs::run(certs.command, out),
        cli::Command::Status(args) => Box::pin(commands::cluster::status(c, &args, out)).await,
        cli::Command::Plan(args) => Box::pin(commands::cluster::plan(c, &args, out)).await,
        cli::Command::Upgrade(args) => Box::pin(commands::roll::run(c, plan::Direction::Upgrade, args, out)).await,
        cli::Command::Downgrade(args) => Box::pin(commands::roll::run(c, plan::Direction::Downgrade, args, out)).await,
        cli::Command::Backup(args) => Box::pin(commands::backup::backup(c, &args, out)).await,
        cli::Command::Backups(args) => Box::pin(commands::backup::backups(c, &args.cluster, args.output, out)).await,
        cli::Command::Restore(args) => Box::pin(commands::restore::restore(c, args, out)).await,
        cli::Command::Rollback(args) if args.to_snapshot => {
            Box::pin(commands::restore::rollback_to_snapshot(c, args, out)).await
        }
        cli::Command::Rollback(args) => Box::pin(commands::roll::rollback(c, args, out)).await,
    }
}
