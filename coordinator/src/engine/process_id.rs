//! Which process is which: a pid and its start time in clock ticks since
//! boot (field 22 of `/proc/<pid>/stat`), which differs when the kernel
//! hands the pid to another process. The cluster lock records its holder
//! this way, and local clusters their agents.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// What identifies a process: its pid and its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    /// The pid.
    pub pid: u32,
    /// Start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start_ticks: u64,
}

/// What `/proc` says about a recorded process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The recorded process is running.
    Alive,
    /// It has exited (or is a zombie waiting to be reaped).
    Gone,
    /// The pid now belongs to another process.
    Reused,
}

pub(crate) struct Stat {
    pub(crate) state: char,
    pub(crate) parent: u32,
    pub(crate) start_ticks: u64,
}

pub(crate) fn read_stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or
    // parentheses itself; the fields after the last ')' are plain.
    let rest = text.get(text.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): field 4 (ppid) is index 1 and field
    // 22 (starttime) index 19.
    Some(Stat {
        state: fields.first()?.chars().next()?,
        parent: fields.get(1)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

impl ProcessId {
    /// The identity of the running process `pid`, if there is one.
    #[must_use]
    pub fn of(pid: u32) -> Option<Self> {
        read_stat(pid).map(|stat| Self {
            pid,
            start_ticks: stat.start_ticks,
        })
    }

    /// Checks the recorded process against `/proc`.
    #[must_use]
    pub fn liveness(&self) -> Liveness {
        match read_stat(self.pid) {
            None => Liveness::Gone,
            Some(stat) if stat.start_ticks != self.start_ticks => Liveness::Reused,
            Some(stat) if matches!(stat.state, 'Z' | 'X') => Liveness::Gone,
            Some(_) => Liveness::Alive,
        }
    }

    /// Sends `signal` if the recorded process is still the one running
    /// under its pid. Returns whether it was sent.
    #[must_use]
    pub fn signal(&self, signal: Signal) -> bool {
        if self.liveness() != Liveness::Alive {
            return false;
        }
        let Ok(pid) = i32::try_from(self.pid) else {
            return false;
        };
        // The check and the kill are not atomic, but a pid is reused only
        // after the process was reaped and the kernel cycled through the
        // pid space; a window of microseconds is acceptable here.
        kill(Pid::from_raw(pid), signal).is_ok()
    }
}
