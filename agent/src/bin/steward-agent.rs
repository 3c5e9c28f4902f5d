//! `steward-agent --config FILE`: load the config, serve until SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

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
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("steward-agent: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let config = steward_agent::config::Config::load_with(&args.config, args.insecure)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(steward_agent::server::run(config, steward_agent::signal::shutdown()))?;
    Ok(())
}
