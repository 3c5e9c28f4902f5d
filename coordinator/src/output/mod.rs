//! Writing a result to stdout as a table or as JSON. Every command prints
//! through [`emit`], so the format flag means the same everywhere.

pub mod live;
pub mod table;
pub mod view;

use std::io::Write;

use serde::Serialize;

use crate::output::table::Tabular;

/// Writing the results to stdout failed (a closed pipe, a full disk).
#[derive(Debug, thiserror::Error)]
#[error("cannot write the output")]
pub struct OutputError(#[source] pub std::io::Error);

/// `-w/--write-out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// Tables for people.
    #[default]
    Table,
    /// Stable JSON for scripts (ids as hex strings, times RFC 3339, durations in seconds).
    Json,
    /// Tables with every column (`status`: 120 columns are not enough for them).
    Wide,
}

/// Writes `view` to `out` in `format`: its tables separated by blank lines,
/// or one pretty-printed JSON document.
///
/// # Errors
/// [`OutputError`] when `out` cannot be written.
pub fn emit<V: Serialize + Tabular>(out: &mut dyn Write, format: OutputFormat, view: &V) -> Result<(), OutputError> {
    match format {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, view).map_err(|e| OutputError(e.into()))?;
            writeln!(out).map_err(OutputError)?;
        }
        OutputFormat::Table | OutputFormat::Wide => {
            let tables = if format == OutputFormat::Wide {
                view.wide_tables()
            } else {
                view.tables()
            };
            for (index, table) in tables.iter().enumerate() {
                if index > 0 {
                    writeln!(out).map_err(OutputError)?;
                }
                writeln!(out, "{table}").map_err(OutputError)?;
            }
        }
    }
    out.flush().map_err(OutputError)
}

/// Writes the final report of a changing command: one more NDJSON line
/// after the events (stdout stays valid NDJSON), else in `format`.
///
/// # Errors
/// [`OutputError`] when `out` cannot be written.
pub fn report<V: Serialize + Tabular>(
    out: &mut dyn Write,
    events: bool,
    format: OutputFormat,
    view: &V,
) -> Result<(), OutputError> {
    if events {
        let line = serde_json::to_string(view).map_err(|e| OutputError(std::io::Error::other(e)))?;
        writeln!(out, "{line}").map_err(OutputError)
    } else {
        emit(out, format, view)
    }
}

/// Writes lines as they are (etcd's log lines), flushing so `--follow` shows
/// them at once.
///
/// # Errors
/// [`OutputError`] when `out` cannot be written.
pub fn lines(out: &mut dyn Write, lines: &[String]) -> Result<(), OutputError> {
    for line in lines {
        writeln!(out, "{line}").map_err(OutputError)?;
    }
    out.flush().map_err(OutputError)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::view::LifecycleView;

    #[test]
    fn json_is_one_document_with_a_trailing_newline() {
        let view = LifecycleView {
            state: "running".into(),
            pid: Some(7),
        };
        let mut out = Vec::new();
        emit(&mut out, OutputFormat::Json, &view).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("}\n"));
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value, serde_json::json!({"state": "running", "pid": 7}));
    }

    #[test]
    fn tables_are_plain_ascii() {
        let view = LifecycleView {
            state: "stopped".into(),
            pid: None,
        };
        let mut out = Vec::new();
        emit(&mut out, OutputFormat::Table, &view).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("| state | stopped |"), "{text}");
        assert!(text.contains("| pid   | -       |"), "{text}");
        assert!(text.is_ascii());
    }
}
