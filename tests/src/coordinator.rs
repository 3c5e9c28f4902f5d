//! `steward` run in the background with `--events`, for scenarios that act
//! in the middle of a rolling change (kill the coordinator after its first
//! member, start a second one).

use std::io::{BufRead, BufReader};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::cluster::steward_command;

/// A coordinator running in the background.
#[derive(Debug)]
pub struct Running {
    /// The process (kill it with `child.kill()`: SIGKILL).
    pub child: Child,
    events: mpsc::Receiver<serde_json::Value>,
}

/// Starts `steward <args> --events` and a thread forwarding its NDJSON
/// lines as they come (events, then the final report).
#[must_use]
pub fn start(args: &[&str]) -> Running {
    let mut command = steward_command();
    command.args(args);
    start_command(command)
}

/// Starts `command` (a `steward` command line) with `--events`, as
/// [`start`] does.
#[must_use]
pub fn start_command(mut command: std::process::Command) -> Running {
    let args: Vec<String> = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
    let mut child = command
        .arg("--events")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start steward {args:?}: {e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let (sender, events) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let value = serde_json::from_str::<serde_json::Value>(&line).unwrap_or_default();
            if sender.send(value).is_err() {
                break;
            }
        }
    });
    Running { child, events }
}

impl Running {
    /// Waits (up to two minutes) for the next event called `name`, and
    /// returns it.
    ///
    /// # Panics
    /// When the coordinator ends or goes quiet first.
    pub fn wait_for(&self, name: &str) -> serde_json::Value {
        loop {
            match self.events.recv_timeout(Duration::from_secs(120)) {
                Ok(event) if event["event"] == name => return event,
                Ok(_) => {}
                Err(error) => panic!("no {name} event: {error}"),
            }
        }
    }

    /// The next line the coordinator prints (an event, or at the end the
    /// report), or `None` once it has ended or printed nothing for two
    /// minutes.
    #[must_use]
    pub fn next(&self) -> Option<serde_json::Value> {
        self.events.recv_timeout(Duration::from_secs(120)).ok()
    }

    /// Waits for the coordinator to end: its exit status and its final
    /// report (the last line, which is no event).
    ///
    /// # Panics
    /// When it does not end within two minutes or prints no report.
    pub fn finish(mut self) -> (ExitStatus, serde_json::Value) {
        let mut report = None;
        while let Ok(line) = self.events.recv_timeout(Duration::from_secs(120)) {
            if line.get("event").is_none() {
                report = Some(line);
            }
        }
        let status = self.child.wait().unwrap_or_else(|e| panic!("steward did not end: {e}"));
        (
            status,
            report.unwrap_or_else(|| panic!("steward printed no report ({status})")),
        )
    }

    /// SIGKILL, and reap.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
