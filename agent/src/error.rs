//! The agent's error types, and the one place where they become gRPC status
//! codes.

use std::path::PathBuf;

use steward_proto::details::encode_activation_failure;
use steward_proto::v1::ActivationFailure;
use tonic::{Code, Status};

use crate::state::{AgentState, Operation};

/// Why the config file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The config path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for the config schema.
    #[error("config file {path} is not valid")]
    Parse {
        /// The config path.
        path: PathBuf,
        /// What the TOML parser said.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A field has a value the agent cannot work with.
    #[error("config field {field}: {reason}")]
    Invalid {
        /// The field, dotted (`member.data_dir`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Everything an agent operation can fail with. Each variant carries what a
/// caller needs to understand the refusal; `From<AgentError> for Status`
/// decides the gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A request field is malformed.
    #[error("invalid argument {field}: {reason}")]
    InvalidArgument {
        /// The request field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The state machine does not allow the operation in the current state.
    #[error("{operation} is not allowed while the agent is {state} (allowed from: {allowed})")]
    TransitionRefused {
        /// What was asked.
        operation: Operation,
        /// The state the agent is in.
        state: AgentState,
        /// The states the operation is allowed from.
        allowed: String,
    },
    /// Another mutating operation is in progress.
    #[error("{operation} refused: {running} is in progress")]
    Busy {
        /// What was asked.
        operation: Operation,
        /// What is running.
        running: Operation,
    },
    /// A precondition of the operation does not hold.
    #[error("{operation} refused: {reason}")]
    Precondition {
        /// What was asked.
        operation: Operation,
        /// Which condition failed.
        reason: String,
    },
    /// A coordinator whose cluster lock was taken over since.
    #[error(
        "stale fencing token {token}: a coordinator holding token {highest} has acted since (the cluster lock moved on)"
    )]
    StaleFencingToken {
        /// The token sent.
        token: i64,
        /// The highest token seen.
        highest: i64,
    },
    /// A fencing token above the cluster's current revision, which no
    /// lock of this cluster can have.
    #[error(
        "fencing token {token} refused: it is above the cluster's current revision {revision}, so no lock of this \
         cluster made it"
    )]
    FencingTokenAhead {
        /// The token sent.
        token: i64,
        /// The cluster's revision.
        revision: i64,
    },
    /// The disk has no room for an upload or a snapshot.
    #[error(
        "no room on {}: {free} bytes free; this needs {needed}, the uploads and snapshots running now reserve \
         {reserved}, and {headroom} stay free",
        path.display()
    )]
    NoSpace {
        /// The snapshot dir.
        path: std::path::PathBuf,
        /// Bytes free there.
        free: u64,
        /// What the upload declares.
        needed: u64,
        /// What running uploads reserve.
        reserved: u64,
        /// What stays free.
        headroom: u64,
    },
    /// An upload's stream sent nothing for too long.
    #[error("the upload sent nothing for {after:?}: cut, and its part file removed")]
    UploadStalled {
        /// How long it was silent.
        after: std::time::Duration,
    },
    /// A version is not in the binary store.
    #[error("version {version} is not staged (staged: {staged})")]
    VersionNotStaged {
        /// The version asked for.
        version: String,
        /// What is staged.
        staged: String,
    },
    /// A staged file no longer has the content it was staged with.
    #[error("{path} changed on disk since it was staged (sha256 now {actual}, staged {staged}); it is not run")]
    BinaryChanged {
        /// The staged file.
        path: PathBuf,
        /// sha256 recorded at staging.
        staged: String,
        /// sha256 now.
        actual: String,
    },
    /// A version is staged already with other content.
    #[error("{tool} {version} is already staged with sha256 {existing}; the new file has {new}")]
    AlreadyStaged {
        /// Which program.
        tool: &'static str,
        /// The version.
        version: String,
        /// sha256 of the staged file.
        existing: String,
        /// sha256 of the offered file.
        new: String,
    },
    /// A binary was refused by the store's checks.
    #[error("binary refused")]
    BinaryRefused(#[from] BinaryRefusal),
    /// The flag rules refuse the target version for this member.
    #[error("flags refused for {version}: {reasons}")]
    FlagsRefused {
        /// The target version.
        version: String,
        /// The refusals, joined.
        reasons: String,
    },
    /// A snapshot id does not exist.
    #[error("snapshot {id:?} not found")]
    SnapshotNotFound {
        /// The id asked for.
        id: String,
    },
    /// A snapshot failed verification.
    #[error("snapshot {path} failed verification")]
    SnapshotInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: crate::snapshot::VerifyError,
    },
    /// An uploaded snapshot failed verification; it was not kept.
    #[error("snapshot {id} refused")]
    SnapshotRefused {
        /// The id it was uploaded as.
        id: String,
        /// What is wrong.
        #[source]
        source: crate::snapshot::VerifyError,
    },
    /// A snapshot id is stored already with other content.
    #[error("snapshot {id} is already stored with sha256 {existing}; the upload has {new}")]
    SnapshotExists {
        /// The id.
        id: String,
        /// sha256 of the stored snapshot.
        existing: String,
        /// sha256 of the upload.
        new: String,
    },
    /// A restore rule refuses the restore; nothing was changed.
    #[error("restore refused: {reason} [rule {rule}]")]
    RestoreRefused {
        /// The rule's name, as the operator guide lists it.
        rule: &'static str,
        /// Why.
        reason: String,
    },
    /// An activation or rollback failed and the previous version runs again.
    #[error(
        "switching to {attempted} failed ({reason}); reverted to {reverted_to}{}",
        log_excerpt(log_tail)
    )]
    ActivationFailed {
        /// The version that was tried.
        attempted: String,
        /// The version running again.
        reverted_to: String,
        /// Why the attempt failed.
        reason: String,
        /// etcd's last lines during the attempt.
        log_tail: Vec<String>,
    },
    /// An activation failed and putting the previous version back failed too.
    #[error(
        "switching to {attempted} failed ({reason}) and the revert to {previous} failed too ({revert_reason}); the member is FAILED{}",
        log_excerpt(log_tail)
    )]
    RevertFailed {
        /// The version that was tried.
        attempted: String,
        /// The version that could not be restored.
        previous: String,
        /// Why the attempt failed.
        reason: String,
        /// Why the revert failed.
        revert_reason: String,
        /// etcd's last lines.
        log_tail: Vec<String>,
    },
    /// etcd could not be started.
    #[error("cannot start etcd {version}")]
    Spawn {
        /// The version.
        version: String,
        /// The spawn error.
        #[source]
        source: std::io::Error,
    },
    /// The local etcd member did not answer.
    #[error("local etcd member at {endpoint} is unavailable: {reason}")]
    EtcdUnavailable {
        /// The client URL.
        endpoint: String,
        /// What the client said, in words (etcd-client prints its transport
        /// errors with Debug formatting, unreadable in a status message).
        reason: String,
    },
    /// A snapshot stream broke off or was malformed.
    #[error("snapshot stream from {endpoint} failed: {reason}")]
    SnapshotStream {
        /// The client URL.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
    /// A file operation failed.
    #[error("{action} {path}")]
    Io {
        /// What the agent was doing ("write", "rename", ...).
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A state file is unreadable.
    #[error("state file {path} is corrupt")]
    CorruptState {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// No staged release has the tool a check needs.
    #[error("no {tool} of {need} is staged (staged: {staged}); stage one first")]
    ToolNotStaged {
        /// The tool.
        tool: &'static str,
        /// Which versions would do.
        need: String,
        /// What is staged.
        staged: String,
    },
    /// A tool run by the agent (etcdctl, etcdutl) failed.
    #[error("{tool} failed: {reason}")]
    Tool {
        /// The command.
        tool: String,
        /// Its output or exit status.
        reason: String,
    },
    /// The task running an operation ended abnormally (a bug: it panicked).
    #[error("{operation} ended abnormally: {reason}")]
    TaskFailed {
        /// What was running.
        operation: Operation,
        /// The join error.
        reason: String,
    },
    /// The supervisor task is gone (the agent is shutting down).
    #[error("the etcd supervisor has stopped")]
    SupervisorGone,
}

/// Why the binary store refused a file.
#[derive(Debug, thiserror::Error)]
pub enum BinaryRefusal {
    /// The content does not hash to the declared sha256.
    #[error("sha256 mismatch: declared {declared}, content has {actual}")]
    ShaMismatch {
        /// What the caller declared.
        declared: String,
        /// What the content hashes to.
        actual: String,
    },
    /// The size does not match the declared size.
    #[error("size mismatch: declared {declared} bytes, received {actual}")]
    SizeMismatch {
        /// What the caller declared.
        declared: u64,
        /// What arrived.
        actual: u64,
    },
    /// The file is larger than the agent accepts (`limits.max_binary_bytes`).
    #[error("{size} bytes is more than the {limit} bytes this agent accepts (limits.max_binary_bytes)")]
    TooLarge {
        /// The limit.
        limit: u64,
        /// The file's size.
        size: u64,
    },
    /// The file does not behave like the declared etcd program.
    #[error("not an {tool} binary: {reason}")]
    NotEtcd {
        /// Which program was expected.
        tool: &'static str,
        /// What happened when it was asked for its version.
        reason: String,
    },
    /// The binary reports another version than declared.
    #[error("version mismatch: declared {declared}, the binary reports {reported}")]
    VersionMismatch {
        /// What the caller declared.
        declared: String,
        /// What the binary says.
        reported: String,
    },
    /// The agent config pins the checksums of this version, and this file
    /// is not one of them.
    #[error(
        "{tool} {version} with sha256 {sha256} is not one of the checksums pinned for {version} in the agent config (pinned_sha256)"
    )]
    NotPinned {
        /// The program.
        tool: &'static str,
        /// Its version.
        version: String,
        /// The file's sha256.
        sha256: String,
    },
    /// The path is not acceptable.
    #[error("path {path:?} refused: {reason}")]
    Path {
        /// The path as given.
        path: String,
        /// Which rule refused it.
        reason: String,
    },
}

fn log_excerpt(lines: &[String]) -> String {
    // The status message carries a short excerpt so it reads well in a
    // terminal; the full tail travels in the status details.
    const EXCERPT_LINES: usize = 8;
    const MAX_LINE: usize = 240;
    if lines.is_empty() {
        return String::new();
    }
    let start = lines.len().saturating_sub(EXCERPT_LINES);
    let mut out = String::from("; etcd log tail:");
    for line in &lines[start..] {
        out.push_str("\n  ");
        out.push_str(truncate(line, MAX_LINE));
    }
    out
}

fn truncate(line: &str, max: usize) -> &str {
    if line.len() <= max {
        return line;
    }
    let mut end = max;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}

/// Lines and bytes of log tail carried in status details; gRPC trailers are
/// headers, and peers commonly refuse header blocks above 16 KiB.
const DETAILS_MAX_LINES: usize = 50;
const DETAILS_MAX_BYTES: usize = 8 * 1024;

fn bounded_tail(lines: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut bytes = 0;
    for line in lines.iter().rev().take(DETAILS_MAX_LINES) {
        let line = truncate(line, 400);
        bytes += line.len();
        if bytes > DETAILS_MAX_BYTES {
            break;
        }
        out.push(line.to_owned());
    }
    out.reverse();
    out
}

impl From<AgentError> for Status {
    fn from(error: AgentError) -> Self {
        use AgentError as E;
        let code = match &error {
            E::InvalidArgument { .. } | E::BinaryRefused(_) | E::SnapshotRefused { .. } => Code::InvalidArgument,
            E::TransitionRefused { .. }
            | E::ToolNotStaged { .. }
            | E::RestoreRefused { .. }
            | E::Busy { .. }
            | E::Precondition { .. }
            | E::FlagsRefused { .. }
            | E::BinaryChanged { .. }
            | E::StaleFencingToken { .. }
            | E::FencingTokenAhead { .. } => Code::FailedPrecondition,
            E::NoSpace { .. } => Code::ResourceExhausted,
            E::UploadStalled { .. } => Code::DeadlineExceeded,
            E::VersionNotStaged { .. } | E::SnapshotNotFound { .. } => Code::NotFound,
            E::AlreadyStaged { .. } | E::SnapshotExists { .. } => Code::AlreadyExists,
            E::ActivationFailed { .. } => Code::Aborted,
            E::EtcdUnavailable { .. } | E::SupervisorGone => Code::Unavailable,
            E::SnapshotInvalid { .. } => Code::DataLoss,
            E::RevertFailed { .. }
            | E::Spawn { .. }
            | E::SnapshotStream { .. }
            | E::Io { .. }
            | E::CorruptState { .. }
            | E::Tool { .. }
            | E::TaskFailed { .. } => Code::Internal,
        };
        let message = error_chain(&error);
        match error {
            E::ActivationFailed {
                attempted,
                reverted_to,
                reason,
                log_tail,
            } => {
                let details = ActivationFailure {
                    attempted_version: attempted,
                    reverted_to,
                    reason,
                    log_tail: bounded_tail(&log_tail),
                };
                let bytes = encode_activation_failure(code, &message, &details);
                Status::with_details(code, message, bytes.into())
            }
            E::RevertFailed {
                attempted,
                reason,
                log_tail,
                ..
            } => {
                let details = ActivationFailure {
                    attempted_version: attempted,
                    reverted_to: String::new(),
                    reason,
                    log_tail: bounded_tail(&log_tail),
                };
                let bytes = encode_activation_failure(code, &message, &details);
                Status::with_details(code, message, bytes.into())
            }
            _ => Status::new(code, message),
        }
    }
}

/// The error and all its sources, joined with ": ", as logs and status
/// messages show it.
#[must_use]
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_contract() {
        let status = Status::from(AgentError::InvalidArgument {
            field: "version",
            reason: "empty".into(),
        });
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("version"));

        let status = Status::from(AgentError::BinaryRefused(BinaryRefusal::ShaMismatch {
            declared: "aa".into(),
            actual: "bb".into(),
        }));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("sha256 mismatch"));

        let status = Status::from(AgentError::VersionNotStaged {
            version: "3.5.1".into(),
            staged: "3.4.23".into(),
        });
        assert_eq!(status.code(), Code::NotFound);
    }

    #[test]
    fn activation_failure_carries_the_log_tail_in_details() {
        let tail: Vec<String> = (0..200).map(|i| format!("line {i}")).collect();
        let status = Status::from(AgentError::ActivationFailed {
            attempted: "3.5.16".into(),
            reverted_to: "3.4.23".into(),
            reason: "etcd exited: exit status 1".into(),
            log_tail: tail,
        });
        assert_eq!(status.code(), Code::Aborted);
        assert!(status.message().contains("line 199"), "{}", status.message());
        assert!(!status.message().contains("line 150"));
        let details = steward_proto::details::decode_activation_failure(status.details()).unwrap();
        assert_eq!(details.reverted_to, "3.4.23");
        assert_eq!(details.log_tail.len(), DETAILS_MAX_LINES);
        assert_eq!(details.log_tail.last().unwrap(), "line 199");
    }

    #[test]
    fn error_chain_joins_sources() {
        let error = AgentError::Io {
            action: "write",
            path: "/x".into(),
            source: std::io::Error::other("disk full"),
        };
        assert_eq!(error_chain(&error), "write /x: disk full");
    }
}
