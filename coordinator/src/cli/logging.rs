//! Logs on stderr, at `warn` unless `RUST_LOG` says otherwise; on a
//! terminal, with the byte progress of snapshot transfers drawn as bars
//! (see [`crate::engine::transfer::progress`]) that log lines print above.

use std::io::IsTerminal;

use tracing_indicatif::IndicatifLayer;
use tracing_indicatif::filter::{IndicatifFilter, hide_indicatif_span_fields};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::format::DefaultFields;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

fn log_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"))
}

/// Installs the process's logging.
pub fn init() {
    if !std::io::stderr().is_terminal() {
        tracing_subscriber::fmt()
            .with_env_filter(log_filter())
            .with_writer(std::io::stderr)
            .init();
        return;
    }
    // Each layer filters on its own: the log level does not hide the
    // transfer spans the bars are drawn from.
    let bars = IndicatifLayer::new().with_span_field_formatter(hide_indicatif_span_fields(DefaultFields::new()));
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(bars.get_stderr_writer())
        .with_filter(log_filter());
    tracing_subscriber::registry()
        .with(logs)
        .with(bars.with_filter(IndicatifFilter::new(false)))
        .init();
}
