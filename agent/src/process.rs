//! etcd as an operating-system process: spawning it in its own process
//! group, recognising it again after an agent restart, and signalling it.
//!
//! A running etcd is identified by pid, the process start time (field 22 of
//! `/proc/<pid>/stat`, which changes when a pid is reused) and the
//! executable. Adoption checks all three, never a bare pid.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// Environment variables that belong to the agent's own systemd unit and must
/// not leak into etcd: etcd would otherwise notify systemd on the agent's
/// behalf (and a watchdog meant for the agent would wait for etcd's pings)
/// or try to take over its sockets. `JOURNAL_STREAM` names the agent's
/// stderr; etcd's goes to its log file.
const SCRUBBED_ENV: &[&str] = &[
    "NOTIFY_SOCKET",
    "WATCHDOG_PID",
    "WATCHDOG_USEC",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "JOURNAL_STREAM",
];

/// What identifies the etcd process the agent owns; persisted in the state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    /// The pid (also the process group id: etcd leads its own group).
    pub pid: u32,
    /// Start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start_ticks: u64,
    /// The executable etcd was started from.
    pub executable: PathBuf,
    /// That file's identity (device and inode, read through
    /// `/proc/<pid>/exe` right after the start). An agent started again in
    /// another mount namespace (every start of a sandboxed systemd unit
    /// makes a new one) reads another path from `/proc/<pid>/exe` for the
    /// same file; the identity still matches. Absent in records of earlier
    /// agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable_file: Option<FileId>,
    /// The arguments (without argv[0]).
    pub args: Vec<String>,
    /// The version the executable reported when it was staged.
    pub version: String,
    /// Wall-clock start, in milliseconds since the Unix epoch.
    pub started_at_ms: i64,
}

impl ProcessRecord {
    /// The wall-clock start time.
    #[must_use]
    pub fn started_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(u64::try_from(self.started_at_ms).unwrap_or(0))
    }
}

/// An etcd about to be started, persisted before the spawn. An agent that
/// dies between the spawn and recording the process leaves this behind; the
/// next agent finds the process by it ([`find_started`]) instead of starting
/// a second etcd that the running one would keep off the member's ports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingStart {
    /// The executable that is started.
    pub executable: PathBuf,
    /// That file's identity (see [`ProcessRecord::executable_file`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable_file: Option<FileId>,
    /// The exact arguments (without argv[0]).
    pub args: Vec<String>,
    /// The version the executable reported when it was staged.
    pub version: String,
    /// Wall-clock time of the request, in milliseconds since the Unix epoch:
    /// the start time of a process found by it.
    pub requested_at_ms: i64,
}

impl PendingStart {
    /// The start [`spawn`] is about to make for `launch`.
    #[must_use]
    pub fn of(launch: &Launch) -> Self {
        let executable = canonical_or_same(&launch.executable);
        Self {
            executable_file: FileId::of(&executable),
            executable,
            args: launch.args.clone(),
            version: launch.version.clone(),
            requested_at_ms: now_ms(),
        }
    }

    /// True when process `pid` runs this start's executable with exactly
    /// its arguments.
    fn started_as(&self, pid: u32) -> bool {
        let exe = PathBuf::from(format!("/proc/{pid}/exe"));
        let same_file = match self.executable_file {
            Some(id) => FileId::of(&exe) == Some(id),
            None => std::fs::read_link(&exe).is_ok_and(|path| path == self.executable),
        };
        if !same_file {
            return false;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            return false;
        };
        // NUL-terminated arguments, argv[0] first.
        let mut args = cmdline
            .strip_suffix(&[0])
            .unwrap_or(&cmdline)
            .split(|b| *b == 0)
            .skip(1);
        self.args.iter().all(|want| args.next() == Some(want.as_bytes())) && args.next().is_none()
    }
}

/// The running processes that `pending` started: its executable file with
/// exactly its arguments (the arguments name the member's data dir, so
/// another member's etcd on the same host does not match).
#[must_use]
pub fn find_started(pending: &PendingStart) -> Vec<ProcessRecord> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<ProcessRecord> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| pending.started_as(*pid))
        .filter_map(|pid| {
            let stat = read_stat(pid).filter(|stat| stat.state != 'Z' && stat.state != 'X')?;
            Some(ProcessRecord {
                pid,
                start_ticks: stat.start_ticks,
                executable: pending.executable.clone(),
                executable_file: pending.executable_file,
                args: pending.args.clone(),
                version: pending.version.clone(),
                started_at_ms: pending.requested_at_ms,
            })
        })
        .collect();
    found.sort_by_key(|record| record.pid);
    found
}

/// A file's identity on this host: its device and inode numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
}

impl FileId {
    /// The identity of the file `path` names (following links, the
    /// `/proc/<pid>/exe` magic link included).
    #[must_use]
    pub fn of(path: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| Self {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

/// What `/proc` says about a recorded process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// The recorded process is running.
    Alive,
    /// It has exited (or is a zombie waiting to be reaped).
    Gone,
    /// The pid now belongs to another process.
    Reused,
}

/// Checks the recorded process against `/proc`.
#[must_use]
pub fn liveness(record: &ProcessRecord) -> Liveness {
    let Some(stat) = read_stat(record.pid) else {
        return Liveness::Gone;
    };
    if stat.start_ticks != record.start_ticks {
        return Liveness::Reused;
    }
    if stat.state == 'Z' || stat.state == 'X' {
        return Liveness::Gone;
    }
    let link = PathBuf::from(format!("/proc/{}/exe", record.pid));
    match std::fs::read_link(&link) {
        // An executable unlinked while running reads "<path> (deleted)"; it
        // is still the same process (start time matched).
        Ok(exe) if exe == record.executable || exe.as_os_str() == deleted(&record.executable).as_os_str() => {
            Liveness::Alive
        }
        // Read from another mount namespace than the one etcd was started
        // in, the path is relative to a mount this agent does not see; the
        // file is the same.
        Ok(_) if same_executable(record, &link) => Liveness::Alive,
        Ok(_) => Liveness::Reused,
        // The process may have exited between the two reads.
        Err(_) => Liveness::Gone,
    }
}

/// True when the running executable is the recorded file: by the identity
/// recorded at the start, or (records of earlier agents) the file now at
/// the recorded path.
fn same_executable(record: &ProcessRecord, link: &Path) -> bool {
    let Some(running) = FileId::of(link) else {
        return false;
    };
    let recorded = record.executable_file.or_else(|| FileId::of(&record.executable));
    recorded == Some(running)
}

fn deleted(path: &Path) -> std::ffi::OsString {
    let mut name = path.as_os_str().to_owned();
    name.push(" (deleted)");
    name
}

struct Stat {
    state: char,
    start_ticks: u64,
}

fn read_stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or
    // parentheses itself; the fields after the last ')' are plain.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); field 22 (starttime) is index 19.
    Some(Stat {
        state: fields.first()?.chars().next()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

/// How to start etcd.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The etcd executable.
    pub executable: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// The version it reports.
    pub version: String,
    /// The file etcd's stdout and stderr are appended to.
    pub log_file: PathBuf,
}

/// Starts etcd in its own process group with stdout and stderr appended to
/// the log file. Output goes to a file rather than a pipe so etcd survives
/// the agent: a write to a pipe whose reader died would kill it (SIGPIPE).
pub fn spawn(launch: &Launch) -> std::io::Result<(tokio::process::Child, ProcessRecord)> {
    let child = command(launch)?.spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| std::io::Error::other("spawned process has no pid"))?;
    let start_ticks = read_stat(pid)
        .map(|s| s.start_ticks)
        .ok_or_else(|| std::io::Error::other(format!("cannot read /proc/{pid}/stat of the new process")))?;
    let started_at_ms = now_ms();
    let record = ProcessRecord {
        pid,
        start_ticks,
        executable: canonical_or_same(&launch.executable),
        executable_file: FileId::of(Path::new(&format!("/proc/{pid}/exe"))).or_else(|| FileId::of(&launch.executable)),
        args: launch.args.clone(),
        version: launch.version.clone(),
        started_at_ms,
    };
    Ok((child, record))
}

/// The command [`spawn`] runs.
fn command(launch: &Launch) -> std::io::Result<tokio::process::Command> {
    let log = File::options().create(true).append(true).open(&launch.log_file)?;
    let mut command = tokio::process::Command::new(&launch.executable);
    command
        .args(&launch.args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        // etcd must outlive the agent: dropping the handle must not kill it.
        .kill_on_drop(false);
    for var in SCRUBBED_ENV {
        command.env_remove(var);
    }
    Ok(command)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn canonical_or_same(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

/// Sends `signal` to the process group of an adopted etcd, after checking
/// that the recorded process is still the one running under that pid.
pub fn signal_adopted_group(record: &ProcessRecord, signal: Signal) -> nix::Result<()> {
    if liveness(record) != Liveness::Alive {
        return Ok(());
    }
    signal_child_group(record.pid, signal)
}

/// Sends `signal` to the process group led by our own, not yet reaped
/// child. Its pid cannot have been reused (we have not waited on it), so no
/// identity check applies: the child may even have exec'd another program.
pub fn signal_child_group(pid: u32, signal: Signal) -> nix::Result<()> {
    let pgid = Pid::from_raw(i32::try_from(pid).map_err(|_| nix::Error::EINVAL)?);
    match killpg(pgid, signal) {
        Err(nix::Error::ESRCH) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_variables_of_the_agent_do_not_reach_etcd() {
        let dir = tempfile::tempdir().unwrap();
        let launch = Launch {
            executable: "/bin/true".into(),
            args: Vec::new(),
            version: "test".into(),
            log_file: dir.path().join("out.log"),
        };
        let command = command(&launch).unwrap();
        let removed: Vec<String> = command
            .as_std()
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect();
        for var in [
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
            "JOURNAL_STREAM",
            "LISTEN_FDS",
        ] {
            assert!(removed.iter().any(|r| r == var), "{var} is not removed: {removed:?}");
        }
    }

    #[tokio::test]
    async fn a_started_process_is_found_by_its_pending_start_and_only_it() {
        let dir = tempfile::tempdir().unwrap();
        // An argument no other process on the machine has.
        let unique = format!("3{}.5", std::process::id());
        let launch = Launch {
            executable: "/bin/sleep".into(),
            args: vec![unique.clone()],
            version: "test".into(),
            log_file: dir.path().join("out.log"),
        };
        let pending = PendingStart::of(&launch);
        assert!(find_started(&pending).is_empty(), "nothing started yet");
        let (mut child, record) = spawn(&launch).unwrap();

        // The spawn returns once the new program is mapped; its arguments
        // show in /proc a moment later.
        let mut found = find_started(&pending);
        for _ in 0..100 {
            if !found.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            found = find_started(&pending);
        }
        assert_eq!(found.len(), 1, "{found:?}");
        let found = &found[0];
        assert_eq!(found.pid, record.pid);
        assert_eq!(found.start_ticks, record.start_ticks);
        assert_eq!(found.executable_file, record.executable_file);
        assert_eq!(found.args, record.args);
        assert_eq!(found.version, "test");
        assert_eq!(
            liveness(found),
            Liveness::Alive,
            "a found process passes the adoption check"
        );

        // Other arguments (another member's data dir), a prefix of them, or
        // another executable: not this start.
        let other_args = PendingStart {
            args: vec![format!("{unique}0")],
            ..pending.clone()
        };
        assert!(find_started(&other_args).is_empty());
        let more_args = PendingStart {
            args: vec![unique.clone(), "x".into()],
            ..pending.clone()
        };
        assert!(find_started(&more_args).is_empty());
        let other_file = PendingStart {
            executable_file: FileId::of(Path::new("/bin/sh")),
            ..pending.clone()
        };
        assert!(find_started(&other_file).is_empty());

        signal_adopted_group(&record, Signal::SIGKILL).unwrap();
        child.wait().await.unwrap();
        assert!(find_started(&pending).is_empty(), "an exited process is not found");
    }

    #[tokio::test]
    async fn spawned_process_is_recognised_and_reuse_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let launch = Launch {
            executable: "/bin/sleep".into(),
            args: vec!["30".into()],
            version: "test".into(),
            log_file: dir.path().join("out.log"),
        };
        let (mut child, record) = spawn(&launch).unwrap();
        assert_eq!(liveness(&record), Liveness::Alive);

        let mut reused = record.clone();
        reused.start_ticks += 1;
        assert_eq!(liveness(&reused), Liveness::Reused);

        // Seen from another mount namespace, /proc/<pid>/exe names another
        // path: the recorded file identity still finds the same process.
        assert!(record.executable_file.is_some());
        let mut elsewhere = record.clone();
        elsewhere.executable = "/binaries/test/sleep".into();
        assert_eq!(liveness(&elsewhere), Liveness::Alive);
        let mut other_file = elsewhere.clone();
        other_file.executable_file = FileId::of(Path::new("/bin/sh"));
        assert_eq!(liveness(&other_file), Liveness::Reused);

        signal_adopted_group(&record, Signal::SIGKILL).unwrap();
        child.wait().await.unwrap();
        assert_eq!(liveness(&record), Liveness::Gone);
    }
}
