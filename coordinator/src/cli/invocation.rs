//! From the process's arguments to a parsed command line, with the habits of
//! kubectl and etcdctl: connection and output flags may come before the
//! subcommand as well as after it, and under `-w json` a failure is also a
//! JSON object on stdout.

use std::ffi::{OsStr, OsString};

use clap::{ArgMatches, CommandFactory, FromArgMatches};

use crate::cli::args::Cli;
use crate::cli::exit;
use crate::output::OutputFormat;

/// Flags that belong to the subcommands but are also taken before the
/// subcommand's name, each with one value. The TLS and credential flags are
/// global in clap already.
const MOVABLE: &[&str] = &["--cluster", "--agents", "--agent", "--inventory", "--write-out", "-w"];

/// A command line parsed, and how its result is to be written.
#[derive(Debug)]
pub struct Invocation {
    /// The command.
    pub cli: Cli,
    /// The `-w` of the command that runs (a table when it has none).
    pub format: OutputFormat,
}

/// Parses `args` (the program name first). A usage error, `--help` and
/// `--version` end the process here as clap ends it (exit 2, or 0), after a
/// JSON error object on stdout when the command line asked for `-w json`.
#[must_use]
pub fn parse(args: Vec<OsString>) -> Invocation {
    let args = hoist_flags(args, &global_value_flags());
    let matches = match Cli::command().try_get_matches_from(&args) {
        Ok(matches) => matches,
        Err(error) => exit_on_usage_error(&error, &args),
    };
    match Cli::from_arg_matches(&matches) {
        Ok(cli) => Invocation {
            format: leaf_format(&matches),
            cli,
        },
        Err(error) => exit_on_usage_error(&error, &args),
    }
}

fn exit_on_usage_error(error: &clap::Error, args: &[OsString]) -> ! {
    // Help and version go to stdout and are not failures.
    if error.use_stderr() && requested_format(args) == Some(OutputFormat::Json) {
        let message = first_error_line(&error.to_string()).unwrap_or_else(|| "usage error".to_owned());
        let _ = write_json_error(&mut std::io::stdout(), exit::USAGE, &message);
    }
    error.exit()
}

/// clap's message without its `error: ` prefix and usage lines.
fn first_error_line(rendered: &str) -> Option<String> {
    rendered
        .lines()
        .find(|line| !line.trim().is_empty())
        .map(|line| line.trim_start_matches("error: ").to_owned())
}

/// Writes the error object `-w json` promises on failure:
/// `{"error": {"message", "exit_code", "meaning"}}`, one line.
///
/// # Errors
/// `out` cannot be written.
pub fn write_json_error(out: &mut dyn std::io::Write, code: u8, message: &str) -> std::io::Result<()> {
    let object = serde_json::json!({
        "error": {
            "message": message,
            "exit_code": code,
            "meaning": exit::meaning(code),
        }
    });
    writeln!(out, "{object}")
}

/// The long flags of the top-level command that take a value: kept in place
/// (with their values) when they come before the subcommand.
fn global_value_flags() -> Vec<String> {
    Cli::command()
        .get_arguments()
        .filter(|arg| arg.get_action().takes_values())
        .filter_map(|arg| arg.get_long().map(|long| format!("--{long}")))
        .collect()
}

/// Moves the [`MOVABLE`] flags found before the subcommand's name (and
/// their values) to the end of the command line, before a `--` if there is
/// one, where the subcommand takes them. Everything else keeps its place.
#[must_use]
pub fn hoist_flags(args: Vec<OsString>, global_value_flags: &[String]) -> Vec<OsString> {
    let mut args = args.into_iter();
    let mut kept: Vec<OsString> = args.next().into_iter().collect();
    let mut moved = Vec::new();
    let mut rest = Vec::new();
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str().filter(|t| t.starts_with('-') && *t != "-" && *t != "--") else {
            // The subcommand's name (or `--`): the leading flags end here.
            rest.push(arg);
            break;
        };
        let name = flag_name(text);
        let inline = text.len() > name.len();
        let target = if MOVABLE.contains(&name) { &mut moved } else { &mut kept };
        let takes_value = MOVABLE.contains(&name) || global_value_flags.iter().any(|f| f == name);
        target.push(arg);
        if takes_value
            && !inline
            && let Some(value) = args.next()
        {
            target.push(value);
        }
    }
    rest.extend(args);
    let at = rest.iter().position(|a| a == OsStr::new("--")).unwrap_or(rest.len());
    let tail = rest.split_off(at);
    kept.extend(rest);
    kept.extend(moved);
    kept.extend(tail);
    kept
}

/// `--cluster` of `--cluster=f`, `-w` of `-wjson` and `-w=json`.
fn flag_name(text: &str) -> &str {
    if text.starts_with("--") {
        text.split_once('=').map_or(text, |(name, _)| name)
    } else {
        text.get(..2).unwrap_or(text)
    }
}

/// The `-w` a command line asks for, read from its words alone (for a
/// command line clap refused): the last one wins, as in clap.
#[must_use]
pub fn requested_format(args: &[OsString]) -> Option<OutputFormat> {
    let mut format = None;
    let mut words = args.iter().filter_map(|a| a.to_str());
    while let Some(word) = words.next() {
        if word == "--" {
            break;
        }
        let name = flag_name(word);
        let value = match name {
            "-w" | "--write-out" if word.len() > name.len() => Some(word[name.len()..].trim_start_matches('=')),
            "-w" | "--write-out" => words.next(),
            _ => None,
        };
        if let Some(value) = value {
            format = <OutputFormat as clap::ValueEnum>::from_str(value, false).ok();
        }
    }
    format
}

/// The output format of the subcommand that runs: the innermost `-w`.
fn leaf_format(matches: &ArgMatches) -> OutputFormat {
    let mut format = OutputFormat::default();
    let mut current = Some(matches);
    while let Some(level) = current {
        if let Ok(Some(found)) = level.try_get_one::<OutputFormat>("format") {
            format = *found;
        }
        current = level.subcommand().map(|(_, sub)| sub);
    }
    format
}

/// Stdout that remembers whether anything was written to it, so that a
/// failed command under `-w json` adds its error object only when it has
/// not written a report of its own.
#[derive(Debug)]
pub struct Watched<W> {
    inner: W,
    written: bool,
}

impl<W: std::io::Write> Watched<W> {
    /// Wraps `inner`.
    pub const fn new(inner: W) -> Self {
        Self { inner, written: false }
    }

    /// Whether any byte was written.
    #[must_use]
    pub const fn written(&self) -> bool {
        self.written
    }
}

impl<W: std::io::Write> std::io::Write for Watched<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written |= n > 0;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    fn hoisted(line: &str) -> String {
        let globals = vec!["--cacert".to_owned(), "--user".to_owned()];
        hoist_flags(words(line), &globals)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn connection_and_output_flags_move_after_the_subcommand() {
        assert_eq!(hoisted("steward --cluster f status"), "steward status --cluster f");
        assert_eq!(hoisted("steward -w json status"), "steward status -w json");
        assert_eq!(
            hoisted("steward -wjson --cluster=f backup --out x"),
            "steward backup --out x -wjson --cluster=f"
        );
        assert_eq!(
            hoisted("steward --agent h:1 agent status"),
            "steward agent status --agent h:1"
        );
    }

    #[test]
    fn global_flags_and_their_values_stay_where_they_are() {
        assert_eq!(
            hoisted("steward --cacert ca.pem -w json --user root status"),
            "steward --cacert ca.pem --user root status -w json"
        );
        assert_eq!(hoisted("steward --help"), "steward --help");
        assert_eq!(hoisted("steward status -w json"), "steward status -w json");
    }

    #[test]
    fn moved_flags_go_before_a_double_dash() {
        assert_eq!(
            hoisted("steward -w json agent x -- a b"),
            "steward agent x -w json -- a b"
        );
    }

    #[test]
    fn the_last_write_out_is_the_requested_format() {
        assert_eq!(
            requested_format(&words("steward -w json status")),
            Some(OutputFormat::Json)
        );
        assert_eq!(
            requested_format(&words("steward status --write-out=json")),
            Some(OutputFormat::Json)
        );
        assert_eq!(
            requested_format(&words("steward status -wjson -w table")),
            Some(OutputFormat::Table)
        );
        assert_eq!(requested_format(&words("steward status")), None);
        assert_eq!(requested_format(&words("steward status -- -w json")), None);
    }

    #[test]
    fn the_format_is_the_subcommands_own() {
        let args = hoist_flags(words("steward -w json backups --agents h:1"), &global_value_flags());
        let matches = Cli::command().try_get_matches_from(&args).unwrap();
        assert_eq!(leaf_format(&matches), OutputFormat::Json);
        let matches = Cli::command()
            .try_get_matches_from(words("steward backups --agents h:1"))
            .unwrap();
        assert_eq!(leaf_format(&matches), OutputFormat::Table);
    }

    #[test]
    fn the_json_error_names_the_exit_codes_meaning() {
        let mut out = Vec::new();
        write_json_error(&mut out, exit::REFUSED, "no").unwrap();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["error"]["exit_code"], 3);
        assert_eq!(value["error"]["message"], "no");
        assert!(value["error"]["meaning"].as_str().unwrap().contains("refused"));
    }
}
