//! The processes of a local cluster as operating-system processes:
//! starting an agent so it outlives `steward`, recognising it again later by
//! pid and start time (never by a bare pid), signalling it, and finding
//! every process whose command line names the cluster's directory.
//!
//! A process is identified by its pid and its start time in clock ticks
//! since boot (field 22 of `/proc/<pid>/stat`), which differs when the
//! kernel hands the pid to another process.

use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::engine::process_id::read_stat;
pub use crate::engine::process_id::{Liveness, ProcessId};

/// How often a wait for processes to exit looks again.
const POLL: Duration = Duration::from_millis(100);

/// Environment variables of a systemd unit that must not reach the agents:
/// an agent would notify systemd on `steward`'s behalf or try to take over
/// its sockets. `RUST_LOG` is meant for `steward` itself; the agents log at
/// their own default level into their log files.
const SCRUBBED_ENV: &[&str] = &[
    "NOTIFY_SOCKET",
    "WATCHDOG_PID",
    "WATCHDOG_USEC",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "RUST_LOG",
];

/// A process found by its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its identity.
    pub id: ProcessId,
    /// Its command line, arguments joined by spaces (for reports).
    pub command: String,
}

/// Starts `steward-agent --config CONFIG` in its own process group, stdin
/// from /dev/null and stdout and stderr appended to `log`, so it outlives
/// `steward` and neither a terminal's Ctrl-C nor a closed pipe reaches it.
///
/// # Errors
/// The log file cannot be opened or the agent cannot be started.
pub fn spawn_agent(binary: &Path, config: &Path, log: &Path) -> std::io::Result<(Child, ProcessId)> {
    let stdout = File::options().create(true).append(true).open(log)?;
    let stderr = stdout.try_clone()?;
    let mut command = Command::new(binary);
    command
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0);
    for name in SCRUBBED_ENV {
        command.env_remove(name);
    }
    let child = command.spawn()?;
    // The child exists from fork on, and its start time does not change at
    // exec, so this reads the right process even before it runs the agent.
    let id = ProcessId::of(child.id()).unwrap_or(ProcessId {
        pid: child.id(),
        start_ticks: 0,
    });
    Ok((child, id))
}

/// Waits until none of `ids` is alive or `limit` passes; returns those
/// still alive.
pub async fn wait_gone(ids: &[ProcessId], limit: Duration) -> Vec<ProcessId> {
    let deadline = Instant::now() + limit;
    loop {
        let alive: Vec<ProcessId> = ids
            .iter()
            .copied()
            .filter(|id| id.liveness() == Liveness::Alive)
            .collect();
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// How a process was ended by [`terminate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It had exited already (or its pid belongs to another process now).
    AlreadyGone,
    /// It exited after SIGTERM.
    Terminated,
    /// It needed SIGKILL.
    Killed,
    /// It survived SIGKILL (uninterruptible sleep, or not ours to kill).
    Survived,
}

/// SIGTERM to every process of `ids` that is still alive, up to `grace` for
/// them to exit, then SIGKILL and up to five seconds more. Returns how each
/// ended, in order.
pub async fn terminate(ids: &[ProcessId], grace: Duration) -> Vec<Ended> {
    let mut ended: Vec<Ended> = ids
        .iter()
        .map(|id| {
            if id.signal(Signal::SIGTERM) {
                Ended::Terminated
            } else {
                Ended::AlreadyGone
            }
        })
        .collect();
    let stubborn = wait_gone(ids, grace).await;
    if stubborn.is_empty() {
        return ended;
    }
    for id in &stubborn {
        let _sent = id.signal(Signal::SIGKILL);
    }
    let survivors = wait_gone(&stubborn, Duration::from_secs(5)).await;
    for (id, outcome) in ids.iter().zip(ended.iter_mut()) {
        if survivors.contains(id) {
            *outcome = Ended::Survived;
        } else if stubborn.contains(id) {
            *outcome = Ended::Killed;
        }
    }
    ended
}

/// Every live process whose command line names `dir` or a path inside it,
/// except this process and its ancestors (a shell running `steward local
/// down --dir D` names D too). Zombies are left out: they are dead already.
#[must_use]
pub fn mentioning(dir: &Path) -> Vec<Found> {
    let needle = dir.to_string_lossy().into_owned();
    let spared = own_lineage();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if spared.contains(&pid) {
            continue;
        }
        let Some(stat) = read_stat(pid) else {
            continue;
        };
        if matches!(stat.state, 'Z' | 'X') {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|arg| !arg.is_empty())
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect();
        if args.iter().any(|arg| mentions(arg, &needle)) {
            found.push(Found {
                id: ProcessId {
                    pid,
                    start_ticks: stat.start_ticks,
                },
                command: args.join(" "),
            });
        }
    }
    found.sort_by_key(|f| f.id.pid);
    found
}

/// This process and its ancestors up to init.
fn own_lineage() -> Vec<u32> {
    let mut lineage = vec![std::process::id()];
    while let Some(&last) = lineage.last() {
        match read_stat(last) {
            Some(stat) if stat.parent > 1 && !lineage.contains(&stat.parent) => lineage.push(stat.parent),
            _ => break,
        }
    }
    lineage
}

/// True when `arg` names `dir` or a path inside it as a whole path: the
/// match starts the argument or follows `=`, `,`, `:`, a quote or
/// whitespace, and ends the argument or is followed by `/` or one of those.
/// So `/tmp/demo` is named by `--data-dir=/tmp/demo/m0/data` but not by
/// `/tmp/demo2` or `/var/tmp/demo`.
#[must_use]
pub fn mentions(arg: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    if dir.is_empty() {
        return false;
    }
    let separator = |c: char| matches!(c, '=' | ',' | ':' | '"' | '\'') || c.is_whitespace();
    arg.match_indices(dir).any(|(at, _)| {
        let before = arg[..at].chars().next_back();
        let after = arg[at + dir.len()..].chars().next();
        before.is_none_or(separator) && after.is_none_or(|c| c == '/' || separator(c))
    })
}

/// `path` made absolute against the working directory, without touching
/// the filesystem (for a dir that may not exist yet).
#[must_use]
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_changed_start_time_is_reuse() {
        let me = ProcessId::of(std::process::id()).unwrap();
        assert_eq!(me.liveness(), Liveness::Alive);
        let other = ProcessId {
            start_ticks: me.start_ticks + 1,
            ..me
        };
        assert_eq!(other.liveness(), Liveness::Reused);
        assert!(!other.signal(Signal::SIGTERM), "a reused pid is never signalled");
        let gone = ProcessId {
            pid: u32::MAX - 1,
            start_ticks: 1,
        };
        assert_eq!(gone.liveness(), Liveness::Gone);
    }

    #[test]
    fn mentions_needs_whole_paths() {
        let dir = "/tmp/demo";
        assert!(mentions("/tmp/demo", dir));
        assert!(mentions("/tmp/demo/m0/agent.toml", dir));
        assert!(mentions("--data-dir=/tmp/demo/m0/data", dir));
        assert!(mentions("a,/tmp/demo/x", dir));
        assert!(mentions("/tmp/demo/", "/tmp/demo/"));
        assert!(!mentions("/tmp/demo2/m0", dir));
        assert!(!mentions("/var/tmp/demo/m0", dir));
        assert!(!mentions("--data-dir=/tmp/demonic", dir));
        assert!(!mentions("anything", "/"));
        assert!(!mentions("anything", ""));
    }

    #[tokio::test]
    async fn terminate_ends_a_child_and_spares_the_unrelated() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("sleeper");
        // A real process whose command line names the dir, in its own group
        // like the agents.
        std::fs::write(&marker, b"").unwrap();
        let mut child = Command::new("tail")
            .arg("-f")
            .arg(&marker)
            .process_group(0)
            .spawn()
            .unwrap();
        let id = ProcessId::of(child.id()).unwrap();
        // Under load the new process may not show its command line at once:
        // look again until it does (bounded).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut found = mentioning(dir.path());
        while found.is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            found = mentioning(dir.path());
        }
        assert_eq!(found.iter().map(|f| f.id).collect::<Vec<_>>(), [id], "{found:?}");
        assert!(found[0].command.starts_with("tail -f "), "{found:?}");
        // Not this test process, although nothing of it names the dir.
        assert!(mentioning(Path::new("/nonexistent/steward-test")).is_empty());

        // A zombie counts as gone, so terminate returns before the reap.
        let ended = terminate(&[id], Duration::from_secs(5)).await;
        assert_eq!(ended, [Ended::Terminated]);
        child.wait().unwrap();
        assert_eq!(terminate(&[id], Duration::from_secs(1)).await, [Ended::AlreadyGone]);
        assert!(mentioning(dir.path()).is_empty());
    }
}
