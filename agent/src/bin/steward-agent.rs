//! `steward-agent --config FILE`: load the config, serve until SIGTERM.
//! `steward-agent --check-config --config FILE`: check it and exit.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use steward_agent::logging::{self, LogFormat, Stderr};

/// The steward agent: owns one etcd member and answers the coordinator.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The agent's TOML config file.
    #[arg(long, env = "STEWARD_AGENT_CONFIG")]
    config: PathBuf,
    /// Serve the API in plaintext without authentication (development only; refused unless the listen
    /// address is loopback). The same as `insecure = true` in the config.
    #[arg(long, env = "STEWARD_AGENT_INSECURE")]
    insecure: bool,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text", env = "STEWARD_AGENT_LOG_FORMAT")]
    log_format: LogFormat,
    /// Check the config and everything it names (files, directories, addresses, certificates) as the
    /// user running this, print one line per check on stdout, and exit: 0 when all pass, 2 when not.
    /// Takes no lock and starts nothing; run it as the agent's user.
    #[arg(long)]
    check_config: bool,
}

/// The exit status of `--check-config` when a check failed.
const CHECK_FAILED: u8 = 2;

fn main() -> ExitCode {
    let args = Args::parse();
    let stderr = Stderr::detect();
    logging::init(args.log_format, stderr);
    logging::install_panic_hook(args.log_format, stderr);
    if args.check_config {
        return check(&args);
    }
    match run(&args, stderr) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            logging::fatal(args.log_format, stderr, &format!("{error:#}"), &mut std::io::stderr());
            ExitCode::FAILURE
        }
    }
}

fn check(args: &Args) -> ExitCode {
    let checks = steward_agent::check::run(&args.config, args.insecure);
    match steward_agent::check::report(&checks, &mut std::io::stdout().lock()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) | Err(_) => ExitCode::from(CHECK_FAILED),
    }
}

fn run(args: &Args, stderr: Stderr) -> anyhow::Result<()> {
    let config = steward_agent::config::Config::load_with(&args.config, args.insecure)?;
    let options = steward_agent::server::Options {
        etcd_log_to_journal: stderr.journald.then(|| PathBuf::from(steward_agent::journal::SOCKET)),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        // At once, so that no signal meets its default action while the
        // agent is still starting.
        let signals = steward_agent::signal::Signals::install()?;
        steward_agent::server::run(config, options, signals.shutdown()).await?;
        anyhow::Ok(())
    })
}
