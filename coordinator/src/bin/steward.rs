//! `steward`: parse the command line, set up logging on stderr, run the
//! command from the library, and turn its error into an exit code.

use std::process::ExitCode;

use steward_coordinator::cli::invocation::{self, Invocation, Watched};
use steward_coordinator::cli::{error, exit};
use steward_coordinator::output::OutputFormat;

fn main() -> ExitCode {
    // Usage errors end the process here, with code 2 (exit::USAGE).
    let Invocation { cli, format } = invocation::parse(std::env::args_os().collect());
    steward_coordinator::cli::logging::init();

    // Two workers: the cluster lock's keepalive must run on time while the
    // command itself streams binaries or waits on members.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("steward: cannot start the async runtime: {error}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    // A command that writes data to stdout (`backup --out -`) reports on
    // stderr, so that the data reaches its reader alone.
    let report_to: Box<dyn std::io::Write> = if cli.stdout_carries_data() {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let mut stdout = Watched::new(report_to);
    match runtime.block_on(Box::pin(steward_coordinator::run(cli, &mut stdout))) {
        Ok(()) => ExitCode::from(exit::SUCCESS),
        // `steward ... | head` closing the pipe is not a failure.
        Err(error) if error.is_broken_pipe() => ExitCode::from(exit::SUCCESS),
        Err(error) => {
            tracing::debug!(?error, "command failed");
            let report = error::report(&error);
            // Under -w json stdout holds one JSON document: the command's
            // report when it wrote one, this object otherwise.
            if format == OutputFormat::Json && !stdout.written() {
                let message = steward_coordinator::engine::error::chain(&error);
                let _ = invocation::write_json_error(&mut stdout, error.exit_code(), &message);
            }
            eprintln!("{report}");
            ExitCode::from(error.exit_code())
        }
    }
}
