//! The agent's own log on stderr, and the one line a fatal error gets.
//!
//! On a terminal the text format is coloured and timestamped, as usual. Under
//! journald (stderr is the stream `JOURNAL_STREAM` names), colour codes are
//! left out, the timestamp too (the journal has its own), and every line
//! starts with its syslog priority, the sd-daemon(3) prefix (`<3>` error,
//! `<4>` warn, `<6>` info, `<7>` debug and trace) that journald strips and
//! turns into PRIORITY=, so `journalctl -p err` finds the agent's errors. In
//! the JSON format every line is one JSON object; under journald the prefix
//! precedes it, and journald's MESSAGE= is the object.

use std::io::{IsTerminal, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// The format of the agent's log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Where stderr goes, as far as the log format cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stderr {
    /// stderr is a journald stream: lines carry their priority prefix.
    pub journald: bool,
    /// stderr is a terminal: text lines may be coloured.
    pub terminal: bool,
}

impl Stderr {
    /// Looks at the process's stderr and `JOURNAL_STREAM`. The variable alone
    /// is not enough: it is inherited by processes whose stderr was
    /// redirected elsewhere, so its device and inode must be stderr's own
    /// (systemd.exec(5)).
    #[must_use]
    pub fn detect() -> Self {
        let stderr = std::io::stderr();
        let journald = std::env::var("JOURNAL_STREAM")
            .ok()
            .and_then(|value| parse_journal_stream(&value))
            .is_some_and(|stream| stderr_identity().is_some_and(|own| own == stream));
        Self {
            journald,
            terminal: stderr.is_terminal(),
        }
    }
}

/// `JOURNAL_STREAM` is `<device>:<inode>` in decimal.
fn parse_journal_stream(value: &str) -> Option<(u64, u64)> {
    let (device, inode) = value.trim().split_once(':')?;
    Some((device.parse().ok()?, inode.parse().ok()?))
}

/// Device and inode of the file (or socket) behind fd 2.
fn stderr_identity() -> Option<(u64, u64)> {
    // A duplicate of fd 2 as a File, for its metadata; closed at once.
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let metadata = std::fs::File::from(fd).metadata().ok()?;
    Some((metadata.dev(), metadata.ino()))
}

/// The sd-daemon(3) prefix of a level.
#[must_use]
pub fn priority_prefix(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "<3>",
        Level::WARN => "<4>",
        Level::INFO => "<6>",
        Level::DEBUG | Level::TRACE => "<7>",
    }
}

/// Installs the agent's log subscriber on stderr. The filter comes from
/// `RUST_LOG` (default `info`).
pub fn init(format: LogFormat, stderr: Stderr) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let writer = Prefixing {
        inner: std::io::stderr,
        prefix: stderr.journald,
    };
    // A second call (tests, embedders) keeps the first subscriber.
    let _ = tracing::subscriber::set_global_default(subscriber(format, stderr, filter, writer));
}

/// The subscriber [`init`] installs, writing to `writer`.
pub fn subscriber<W>(
    format: LogFormat,
    stderr: Stderr,
    filter: tracing_subscriber::EnvFilter,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(stderr.terminal && !stderr.journald);
    match (format, stderr.journald) {
        (LogFormat::Text, true) => Box::new(builder.without_time().finish()),
        (LogFormat::Text, false) => Box::new(builder.finish()),
        (LogFormat::Json, _) => Box::new(builder.json().finish()),
    }
}

/// Writes the error that ends the agent: once, whatever `RUST_LOG` filters,
/// in the log format (`steward-agent: <error>` as text, one JSON object
/// shaped like the other lines as JSON), with the error priority under
/// journald.
pub fn fatal(format: LogFormat, stderr: Stderr, message: &str, out: &mut impl Write) {
    let line = match format {
        // journald makes one entry of every line of a stream: the error
        // (a TOML parse error draws its place over several lines) becomes
        // one entry, its lines joined.
        LogFormat::Text if stderr.journald => format!("steward-agent: {}\n", one_line(message)),
        LogFormat::Text => format!("steward-agent: {message}\n"),
        LogFormat::Json => {
            let timestamp = time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            // The shape and key order of tracing-subscriber's JSON lines.
            #[derive(serde::Serialize)]
            struct Line<'a> {
                timestamp: String,
                level: &'static str,
                fields: Fields<'a>,
                target: &'static str,
            }
            #[derive(serde::Serialize)]
            struct Fields<'a> {
                message: &'a str,
            }
            let line = Line {
                timestamp,
                level: "ERROR",
                fields: Fields { message },
                target: "steward_agent",
            };
            // Serializing strings into a String cannot fail.
            format!("{}\n", serde_json::to_string(&line).unwrap_or_default())
        }
    };
    let mut writer = PrefixedWriter::new(out, stderr.journald.then_some("<3>"));
    // Nothing is left to report a failed write of the last words to.
    let _ = writer.write_all(line.as_bytes());
    let _ = writer.flush();
}

/// `text`'s non-blank lines, trimmed, joined with "; ".
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Reports panics like [`fatal`] errors (the default hook would write plain
/// text, which breaks the JSON format and reaches the journal as info). A
/// panic in a task ends only that task; the panic of the supervisor is
/// caught by the systemd watchdog.
pub fn install_panic_hook(format: LogFormat, stderr: Stderr) {
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let mut message = format!("thread '{}' {info}", thread.name().unwrap_or("<unnamed>"));
        // Captured only when RUST_BACKTRACE asks for it.
        let backtrace = std::backtrace::Backtrace::capture();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            message.push_str(&format!("\nstack backtrace:\n{backtrace}"));
        }
        fatal(format, stderr, &message, &mut std::io::stderr());
    }));
}

/// A [`MakeWriter`] that, when `prefix` is on, starts every line of an
/// event with the event's priority prefix.
#[derive(Clone, Copy, Debug)]
pub struct Prefixing<M> {
    /// Where the lines go.
    pub inner: M,
    /// Whether to prefix.
    pub prefix: bool,
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Prefixing<M> {
    type Writer = PrefixedWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        PrefixedWriter::new(self.inner.make_writer(), self.prefix.then_some("<6>"))
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        PrefixedWriter::new(
            self.inner.make_writer_for(meta),
            self.prefix.then(|| priority_prefix(meta.level())),
        )
    }
}

/// Puts `prefix` in front of every line written through it. An event is
/// written with one `write_all`, so each event becomes one write to stderr
/// and lines of concurrent events do not mix.
#[derive(Debug)]
pub struct PrefixedWriter<W> {
    inner: W,
    prefix: Option<&'static str>,
    at_line_start: bool,
}

impl<W> PrefixedWriter<W> {
    fn new(inner: W, prefix: Option<&'static str>) -> Self {
        Self {
            inner,
            prefix,
            at_line_start: true,
        }
    }
}

impl<W: Write> Write for PrefixedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let Some(prefix) = self.prefix else {
            return self.inner.write(buf);
        };
        let mut out = Vec::with_capacity(buf.len() + 2 * prefix.len());
        for line in buf.split_inclusive(|b| *b == b'\n') {
            if self.at_line_start {
                out.extend_from_slice(prefix.as_bytes());
            }
            out.extend_from_slice(line);
            self.at_line_start = line.ends_with(b"\n");
        }
        self.inner.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Self;
        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }

    const JOURNALD: Stderr = Stderr {
        journald: true,
        terminal: false,
    };
    const TERMINAL: Stderr = Stderr {
        journald: false,
        terminal: true,
    };
    const FILE: Stderr = Stderr {
        journald: false,
        terminal: false,
    };

    fn log_all_levels(format: LogFormat, stderr: Stderr) -> String {
        let captured = Captured::default();
        let writer = Prefixing {
            inner: captured.clone(),
            prefix: stderr.journald,
        };
        let filter = tracing_subscriber::EnvFilter::new("trace");
        tracing::subscriber::with_default(subscriber(format, stderr, filter, writer), || {
            tracing::error!(member = "m1", "cannot do it");
            tracing::warn!("careful");
            tracing::info!("serving");
            tracing::debug!("details");
            tracing::trace!("more details");
            tracing::error!("first line\nsecond line");
        });
        captured.text()
    }

    #[test]
    fn under_journald_every_line_carries_its_priority_and_no_colour() {
        let text = log_all_levels(LogFormat::Text, JOURNALD);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 7, "{text}");
        for (line, prefix) in lines.iter().zip(["<3>", "<4>", "<6>", "<7>", "<7>", "<3>", "<3>"]) {
            assert!(line.starts_with(prefix), "{line:?} should start with {prefix}");
        }
        assert!(lines[0].contains("cannot do it") && lines[0].contains("member=\"m1\""));
        assert_eq!(lines[6], "<3>second line");
        assert!(!text.contains('\u{1b}'), "no ANSI escapes: {text:?}");
        // The journal has its own timestamps.
        assert!(lines[2].starts_with("<6> INFO"), "{}", lines[2]);
    }

    #[test]
    fn json_lines_are_json_and_prefixed_only_under_journald() {
        for stderr in [JOURNALD, FILE, TERMINAL] {
            let text = log_all_levels(LogFormat::Json, stderr);
            assert_eq!(text.lines().count(), 6, "{text}");
            for line in text.lines() {
                let json = if stderr.journald {
                    assert!(line.starts_with('<') && line.as_bytes()[2] == b'>', "{line}");
                    &line[3..]
                } else {
                    line
                };
                let value: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {line}"));
                assert!(value["level"].is_string(), "{line}");
            }
            assert!(!text.contains('\u{1b}'), "{text:?}");
        }
    }

    #[test]
    fn text_is_coloured_only_on_a_terminal() {
        assert!(log_all_levels(LogFormat::Text, TERMINAL).contains('\u{1b}'));
        let file = log_all_levels(LogFormat::Text, FILE);
        assert!(!file.contains('\u{1b}'), "{file:?}");
        assert!(file.lines().all(|l| !l.starts_with('<')), "{file}");
    }

    #[test]
    fn the_fatal_error_is_one_line_in_the_log_format() {
        let mut out = Vec::new();
        fatal(LogFormat::Text, FILE, "cannot listen on 127.0.0.1:1: denied", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "steward-agent: cannot listen on 127.0.0.1:1: denied\n"
        );

        let mut out = Vec::new();
        fatal(
            LogFormat::Text,
            JOURNALD,
            "config file /x is not valid: line 1\n   |\n  line 2\n",
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<3>steward-agent: config file /x is not valid: line 1; |; line 2\n",
            "one journal entry"
        );

        for stderr in [FILE, JOURNALD] {
            let mut out = Vec::new();
            fatal(LogFormat::Json, stderr, "two\nlines", &mut out);
            let text = String::from_utf8(out).unwrap();
            assert_eq!(text.lines().count(), 1, "{text}");
            let json = text.trim_end().trim_start_matches("<3>");
            let value: serde_json::Value = serde_json::from_str(json).unwrap();
            assert_eq!(value["level"], "ERROR");
            assert_eq!(value["fields"]["message"], "two\nlines");
            assert_eq!(text.starts_with("<3>"), stderr.journald);
        }
    }

    #[test]
    fn journal_stream_is_device_colon_inode() {
        assert_eq!(parse_journal_stream("8:12345"), Some((8, 12345)));
        assert_eq!(parse_journal_stream("8:12345\n"), Some((8, 12345)));
        assert_eq!(parse_journal_stream("8"), None);
        assert_eq!(parse_journal_stream("a:b"), None);
    }

    #[test]
    fn a_prefixed_writer_handles_lines_split_across_writes() {
        let mut out = Vec::new();
        let mut writer = PrefixedWriter::new(&mut out, Some("<4>"));
        writer.write_all(b"one\ntw").unwrap();
        writer.write_all(b"o\nthree\n").unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "<4>one\n<4>two\n<4>three\n");
    }
}
