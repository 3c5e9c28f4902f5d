//! The audit log: one JSON line per call that changes something on the
//! host (or takes a copy of etcd's data), in `<state_dir>/audit.log`,
//! opened append-only with mode 0600 and synced line by line. Each line
//! says when, who (the certificate's subject and role), which RPC with the
//! arguments that matter, the fencing token, and the outcome. A call whose
//! caller goes away before the answer is still written, with that outcome.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;
use tonic::Status;

use crate::access::Caller;

/// The file name inside the state dir.
pub const FILE_NAME: &str = "audit.log";

/// One line.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Entry {
    /// When the call arrived, RFC 3339 UTC.
    pub time: String,
    /// The caller's certificate subject.
    pub caller: String,
    /// The role it called with (`null` on an insecure agent).
    pub role: Option<String>,
    /// The RPC, e.g. `Activate`.
    pub rpc: &'static str,
    /// The arguments that matter (versions, paths, checksums, sizes, ids).
    pub args: Value,
    /// The coordinator's fencing token (0: none).
    pub fencing_token: i64,
    /// `ok`, or the status code and message of the refusal or failure.
    pub outcome: String,
    /// Milliseconds from arrival to answer.
    pub took_ms: u64,
}

/// How large the audit log grows before it is rotated, and how many
/// rotated files are kept (`audit.log.1` the newest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// Bytes of `audit.log` before it is rotated.
    pub max_bytes: u64,
    /// Rotated files kept.
    pub keep: usize,
}

impl Default for Rotation {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024 * 1024,
            keep: 5,
        }
    }
}

/// The open audit log.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<File>,
    rotation: Rotation,
}

impl AuditLog {
    /// Opens (creating) `state_dir/audit.log` for appending, mode 0600.
    ///
    /// # Errors
    /// The file cannot be opened.
    pub fn open(state_dir: &Path) -> std::io::Result<Self> {
        Self::open_with(state_dir, Rotation::default())
    }

    /// Opens it, rotating it by `rotation`.
    ///
    /// # Errors
    /// The file cannot be opened.
    pub fn open_with(state_dir: &Path, rotation: Rotation) -> std::io::Result<Self> {
        let path = state_dir.join(FILE_NAME);
        let file = open_append(&path)?;
        Ok(Self {
            path,
            file: Mutex::new(file),
            rotation,
        })
    }

    /// Moves `audit.log` to `audit.log.1` (and each older one up, the
    /// oldest beyond `keep` removed) and starts a new one.
    fn rotate(&self, file: &mut File) -> std::io::Result<()> {
        let numbered = |n: usize| {
            let mut name = self.path.as_os_str().to_owned();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        let _ = std::fs::remove_file(numbered(self.rotation.keep));
        for n in (1..self.rotation.keep).rev() {
            let _ = std::fs::rename(numbered(n), numbered(n + 1));
        }
        if self.rotation.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            std::fs::rename(&self.path, numbered(1))?;
        }
        *file = open_append(&self.path)?;
        Ok(())
    }

    /// Appends one line and syncs it. A write that fails is logged: the
    /// call it describes has already happened.
    pub fn record(&self, entry: &Entry) {
        let Ok(mut line) = serde_json::to_string(entry) else {
            return;
        };
        line.push('\n');
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        let full = file
            .metadata()
            .is_ok_and(|m| m.len() + line.len() as u64 > self.rotation.max_bytes);
        if full && let Err(error) = self.rotate(&mut file) {
            tracing::error!(path = %self.path.display(), %error, "cannot rotate the audit log");
        }
        if let Err(error) = file.write_all(line.as_bytes()).and_then(|()| file.sync_data()) {
            tracing::error!(path = %self.path.display(), %error, rpc = entry.rpc, "cannot write the audit log");
        }
    }
}

/// Opens (creating) `path` for appending, private, refusing a symlink.
fn open_append(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)?;
    // An existing file keeps its mode on open: make it private again.
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(file)
}

/// A call being audited: written when [`Pending::finish`] gives its
/// outcome, or when dropped before that (the caller went away).
#[derive(Debug)]
pub struct Pending {
    log: Arc<AuditLog>,
    entry: Option<Entry>,
    began: Instant,
}

impl Pending {
    /// Starts auditing `rpc` by `caller`.
    #[must_use]
    pub fn start(log: &Arc<AuditLog>, caller: Option<&Caller>, rpc: &'static str, fencing_token: i64) -> Self {
        let time = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        Self {
            log: Arc::clone(log),
            entry: Some(Entry {
                time,
                caller: caller.map_or_else(
                    || "unknown".to_owned(),
                    |c| crate::bounded::bounded(&c.subject, crate::bounded::LOG_TEXT),
                ),
                role: caller.and_then(|c| c.role).map(|r| r.to_string()),
                rpc,
                args: Value::Object(serde_json::Map::new()),
                fencing_token,
                outcome: String::new(),
                took_ms: 0,
            }),
            began: Instant::now(),
        }
    }

    /// Adds an argument.
    pub fn arg(&mut self, name: &str, value: impl Into<Value>) {
        if let Some(Value::Object(args)) = self.entry.as_mut().map(|e| &mut e.args) {
            // What a caller sends is cut: it decides no line's length.
            args.insert(
                name.to_owned(),
                crate::bounded::bounded_value(value.into(), crate::bounded::LOG_TEXT),
            );
        }
    }

    /// Sets the fencing token (known only once a stream's header is read).
    pub fn fencing_token(&mut self, token: i64) {
        if let Some(entry) = self.entry.as_mut() {
            entry.fencing_token = token;
        }
    }

    /// Writes the line with the call's outcome, and passes it on.
    pub fn finish<T>(mut self, result: Result<T, Status>) -> Result<T, Status> {
        let outcome = match &result {
            Ok(_) => "ok".to_owned(),
            Err(status) => format!(
                "{:?}: {}",
                status.code(),
                crate::bounded::bounded(status.message(), 4 * crate::bounded::LOG_TEXT)
            ),
        };
        self.write(outcome);
        result
    }

    fn write(&mut self, outcome: String) {
        if let Some(mut entry) = self.entry.take() {
            entry.outcome = outcome;
            entry.took_ms = u64::try_from(self.began.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.log.record(&entry);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.write("the caller went away before the answer (an operation it started runs to its end)".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use steward_proto::Role;

    fn lines(dir: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.join(FILE_NAME))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn the_log_rotates_by_size_and_keeps_a_bounded_number_of_files() {
        let dir = tempfile::tempdir().unwrap();
        let rotation = Rotation {
            max_bytes: 4096,
            keep: 2,
        };
        let log = Arc::new(AuditLog::open_with(dir.path(), rotation).unwrap());
        let caller = Caller {
            subject: "CN=ops, O=steward, OU=admin".into(),
            role: Some(Role::Admin),
        };
        for _ in 0..1000 {
            let mut call = Pending::start(&log, Some(&caller), "Activate", 1);
            call.arg("version", "3.5.30");
            let _ = call.finish(Ok(()));
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["audit.log", "audit.log.1", "audit.log.2"]);
        let total: u64 = names
            .iter()
            .map(|n| std::fs::metadata(dir.path().join(n)).unwrap().len())
            .sum();
        assert!(total <= 3 * 4096, "{total} bytes");
        for name in names {
            let mode = std::fs::metadata(dir.path().join(name)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn one_line_per_call_with_who_what_and_how_it_ended() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(AuditLog::open(dir.path()).unwrap());
        let caller = Caller {
            subject: "CN=ops, O=steward, OU=admin".into(),
            role: Some(Role::Admin),
        };
        let mut call = Pending::start(&log, Some(&caller), "Activate", 42);
        call.arg("version", "3.5.30");
        let _ = call.finish(Ok(()));
        let call = Pending::start(&log, Some(&caller), "Stop", 0);
        let _: Result<(), Status> = call.finish(Err(Status::failed_precondition("stale fencing token 1")));
        drop(Pending::start(&log, None, "Restart", 7));

        let lines = lines(dir.path());
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["caller"], "CN=ops, O=steward, OU=admin");
        assert_eq!(lines[0]["role"], "admin");
        assert_eq!(lines[0]["rpc"], "Activate");
        assert_eq!(lines[0]["args"]["version"], "3.5.30");
        assert_eq!(lines[0]["fencing_token"], 42);
        assert_eq!(lines[0]["outcome"], "ok");
        assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(lines[1]["outcome"], "FailedPrecondition: stale fencing token 1");
        assert!(lines[2]["outcome"].as_str().unwrap().contains("went away"));
        assert_eq!(lines[2]["caller"], "unknown");
        let mode = std::fs::metadata(dir.path().join(FILE_NAME))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn an_existing_log_is_made_private_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let _log = AuditLog::open(dir.path()).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn the_log_is_appended_to_across_opens() {
        let dir = tempfile::tempdir().unwrap();
        for rpc in ["Start", "Stop"] {
            let log = Arc::new(AuditLog::open(dir.path()).unwrap());
            let _ = Pending::start(&log, None, rpc, 0).finish(Ok(()));
        }
        let rpcs: Vec<_> = lines(dir.path()).iter().map(|l| l["rpc"].clone()).collect();
        assert_eq!(rpcs, ["Start", "Stop"]);
    }
}
