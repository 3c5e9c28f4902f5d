//! Byte progress of snapshot transfers, as tracing spans that a terminal
//! front end draws: the `steward` CLI draws each as a progress bar with
//! its rate when stderr is a terminal. Without such a front end a meter is
//! a span nobody records, and costs next to nothing.

#[cfg(feature = "cli")]
use tracing::Span;
#[cfg(feature = "cli")]
use tracing_indicatif::span_ext::IndicatifSpanExt;

/// How a bar with a known total is drawn.
#[cfg(feature = "cli")]
const WITH_TOTAL: &str = "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}";
/// How a transfer of unknown size is drawn.
#[cfg(feature = "cli")]
const WITHOUT_TOTAL: &str = "{spinner} {msg} {binary_bytes} {binary_bytes_per_sec} {elapsed}";

/// One transfer's progress: bytes moved, out of a total when it is known.
/// Dropping it ends the transfer's bar.
#[derive(Clone, Debug)]
pub struct Meter {
    /// Without the command line nothing draws bars: no span is made.
    #[cfg(feature = "cli")]
    span: Span,
}

impl Meter {
    /// Starts counting a transfer described by `what` (`downloading
    /// snapshot X from ADDR`), of `total` bytes when known.
    #[must_use]
    #[cfg(feature = "cli")]
    pub fn start(what: &str, total: Option<u64>) -> Self {
        let meter = Self {
            span: tracing::info_span!("transfer", indicatif.pb_show = tracing::field::Empty),
        };
        meter.set_style(total.is_some());
        if let Some(total) = total {
            meter.span.pb_set_length(total);
        }
        meter.span.pb_set_message(what);
        meter.span.pb_start();
        meter
    }

    /// Starts counting a transfer (nothing to count without the command
    /// line).
    #[cfg(not(feature = "cli"))]
    #[must_use]
    pub const fn start(_what: &str, _total: Option<u64>) -> Self {
        Self {}
    }

    #[cfg(feature = "cli")]
    fn set_style(&self, with_total: bool) {
        let template = if with_total { WITH_TOTAL } else { WITHOUT_TOTAL };
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            self.span.pb_set_style(&style.progress_chars("=> "));
        }
    }

    /// The total, once it is known.
    pub fn set_total(&self, total: u64) {
        #[cfg(feature = "cli")]
        {
            self.set_style(true);
            self.span.pb_set_length(total);
        }
        #[cfg(not(feature = "cli"))]
        let _ = total;
    }

    /// Counts `bytes` more.
    pub fn advance(&self, bytes: u64) {
        #[cfg(feature = "cli")]
        self.span.pb_inc(bytes);
        #[cfg(not(feature = "cli"))]
        let _ = bytes;
    }
}

#[cfg(all(test, feature = "cli"))]
mod tests {
    #[test]
    fn the_templates_parse() {
        for template in [super::WITH_TOTAL, super::WITHOUT_TOTAL] {
            assert!(indicatif::ProgressStyle::with_template(template).is_ok(), "{template}");
        }
    }
}
