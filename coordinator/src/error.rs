//! The coordinator's error type, the mapping from an agent's gRPC status to
//! it, and the one function that turns an error into what the operator
//! reads on stderr.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use tonic::{Code, Status};

use crate::agent_client::AgentAddress;
use crate::exit;

/// Everything a `steward` command can fail with. Each variant names the
/// agent or file it concerns; sources are kept as `#[source]` and never
/// repeated in the message.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The connection to the agent failed.
    #[error("cannot reach agent {address}")]
    Unreachable {
        /// The agent.
        address: AgentAddress,
        /// The transport error (refused, no route, DNS, ...).
        #[source]
        source: tonic::transport::Error,
    },
    /// The connection to the agent did not complete in time.
    #[error("cannot reach agent {address}: no connection within {}", humantime::format_duration(*timeout))]
    ConnectTimeout {
        /// The agent.
        address: AgentAddress,
        /// How long we waited.
        timeout: Duration,
    },
    /// The agent answered a call with an error status. The message is the
    /// agent's own, which names the field, state or rule.
    #[error("agent {address} {verb} {rpc}: {code_name}: {message}", verb = refusal_verb(*code), code_name = CodeName(*code))]
    Rpc {
        /// The agent.
        address: AgentAddress,
        /// The RPC, e.g. "Activate".
        rpc: &'static str,
        /// The gRPC status code.
        code: Code,
        /// The agent's message.
        message: String,
    },
    /// An Activate or Rollback failed and the agent put the previous version
    /// back (ABORTED with an `ActivationFailure` in the details).
    #[error("agent {address} {rpc} to {attempted} failed and was reverted to {reverted_to}: {reason}")]
    ActivationReverted {
        /// The agent.
        address: AgentAddress,
        /// "Activate" or "Rollback".
        rpc: &'static str,
        /// The version that was tried.
        attempted: String,
        /// The version running again.
        reverted_to: String,
        /// Why the attempt failed.
        reason: String,
        /// etcd's last lines while the attempted version ran.
        log_tail: Vec<String>,
    },
    /// An Activate or Rollback failed and so did the revert: the member is
    /// left FAILED. The message is the agent's.
    #[error("agent {address} {rpc} failed and could not revert: {code_name}: {message}", code_name = CodeName(*code))]
    RevertFailed {
        /// The agent.
        address: AgentAddress,
        /// "Activate" or "Rollback".
        rpc: &'static str,
        /// The gRPC status code.
        code: Code,
        /// The agent's message (without its log excerpt).
        message: String,
        /// etcd's last lines.
        log_tail: Vec<String>,
    },
    /// The agent's answer broke the contract (a missing required part).
    #[error("agent {address} sent a malformed {rpc} reply: {problem}")]
    MalformedReply {
        /// The agent.
        address: AgentAddress,
        /// The RPC.
        rpc: &'static str,
        /// What is missing or wrong.
        problem: &'static str,
    },
    /// A downloaded snapshot does not verify; nothing was left at the target.
    #[error("snapshot {id} from agent {address} failed verification: {problem}")]
    SnapshotInvalid {
        /// The agent.
        address: AgentAddress,
        /// The snapshot id.
        id: String,
        /// What does not match.
        problem: crate::download::VerifyProblem,
    },
    /// The download target appeared while the download ran.
    #[error("{path} already exists; steward never overwrites a snapshot file (the download is kept at {part})")]
    OutputExists {
        /// The target.
        path: PathBuf,
        /// Where the verified download is.
        part: PathBuf,
    },
    /// The partial file of a download exists already.
    #[error("{part} exists: another download to {path} is running or was interrupted (remove it and retry)")]
    PartExists {
        /// The target.
        path: PathBuf,
        /// The partial file in the way.
        part: PathBuf,
    },
    /// A local file operation failed.
    #[error("cannot {action} {path}")]
    Io {
        /// What we were doing ("read", "create", "fsync", ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Writing the results to stdout failed.
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
    /// The cluster to work on cannot be determined or its description
    /// cannot be used (the inner error names the flag, file and field).
    #[error(transparent)]
    Target(#[from] crate::cluster_file::TargetError),
    /// A local cluster could not be started or stopped (the inner error
    /// names the directory, member or version).
    #[error(transparent)]
    Local(#[from] crate::local::LocalError),
    /// The cluster could not be observed.
    #[error("cannot observe the cluster")]
    Observe(#[from] crate::observe::ObserveError),
    /// The command line is inconsistent in a way clap cannot check.
    #[error("{0}")]
    Usage(String),
    /// A certificate could not be made, read or written.
    #[error(transparent)]
    Certs(#[from] crate::certs::CertError),
    /// `steward status` found members that are not healthy.
    #[error("the cluster is not healthy: {problems}")]
    Unhealthy {
        /// What is wrong, member by member.
        problems: String,
    },
    /// A check refused the change; nothing was touched.
    #[error("refused by {rules}: nothing was changed")]
    Refused {
        /// The rules that failed, with their messages.
        rules: String,
    },
    /// A restore stopped after it began changing members; rerunning the
    /// same command finishes it.
    #[error("restore stopped at {where_}: {reason} (running the same command again finishes what the agents recorded)")]
    RestoreFailed {
        /// The member and step.
        where_: String,
        /// Why.
        reason: String,
    },
    /// A rolling change stopped.
    /// A backup's snapshot was taken and verified on the agent, and its
    /// copy here failed: the snapshot stays on the agent.
    #[error(
        "snapshot {id} was taken and verified, and stays on {member}'s agent {address} \
         (copy it with `steward agent download --agent {address} --id {id} --out FILE`); copying it to {out} failed"
    )]
    BackupCopyFailed {
        /// The agent that keeps it.
        address: AgentAddress,
        /// The member it was taken from.
        member: String,
        /// Its id there.
        id: String,
        /// Where the copy was to go.
        out: std::path::PathBuf,
        /// Why the copy failed.
        #[source]
        source: Box<CliError>,
    },
    #[error("{direction} stopped at {where_}: {reason}")]
    RollFailed {
        /// upgrade or downgrade.
        direction: crate::plan::Direction,
        /// The member and gate.
        where_: String,
        /// Why.
        reason: String,
    },
}

impl CliError {
    /// The process exit code for this error (see [`crate::exit`]).
    #[must_use]
    pub const fn exit_code(&self) -> u8 {
        // Every other error is a failure; REFUSED belongs to the check gates
        // of the rolling commands.
        match self {
            // No cluster named, or named ambiguously: how steward was called.
            Self::Target(error) if error.is_usage() => exit::USAGE,
            Self::Usage(_) => exit::USAGE,
            Self::Refused { .. } => exit::REFUSED,
            _ => exit::FAILURE,
        }
    }

    /// Maps a status from `rpc` on the agent at `address`. ABORTED (and a
    /// failed revert) carry an `ActivationFailure` in the details, which
    /// becomes a report with etcd's log tail.
    #[must_use]
    pub fn from_status(address: &AgentAddress, plaintext: bool, rpc: &'static str, status: &Status) -> Self {
        let failure = steward_proto::details::decode_activation_failure(status.details());
        match failure {
            Some(failure) if status.code() == Code::Aborted && !failure.reverted_to.is_empty() => {
                Self::ActivationReverted {
                    address: address.clone(),
                    rpc,
                    attempted: failure.attempted_version,
                    reverted_to: failure.reverted_to,
                    reason: failure.reason,
                    log_tail: failure.log_tail,
                }
            }
            Some(failure) => Self::RevertFailed {
                address: address.clone(),
                rpc,
                code: status.code(),
                message: without_log_excerpt(status.message()).to_owned(),
                log_tail: failure.log_tail,
            },
            None => Self::Rpc {
                address: address.clone(),
                rpc,
                code: status.code(),
                message: with_transport_hint(status, plaintext),
            },
        }
    }

    /// etcd's log lines that explain this error, if it carries any.
    #[must_use]
    pub fn log_tail(&self) -> &[String] {
        match self {
            Self::ActivationReverted { log_tail, .. } | Self::RevertFailed { log_tail, .. } => log_tail,
            _ => &[],
        }
    }

    /// True when the error is only a closed stdout (`steward ... | head`),
    /// which is not worth a message.
    #[must_use]
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Self::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// A plaintext call to an agent that serves TLS ends in a dropped
/// connection whose error says nothing about TLS; say what it most likely
/// means.
fn with_transport_hint(status: &Status, plaintext: bool) -> String {
    let message = status.message();
    // The agent's own statuses say what went wrong; these are the
    // transport's words for a connection the peer dropped.
    let dropped = [
        "h2 protocol error",
        "operation was canceled",
        "connection closed",
        "connection reset",
        "broken pipe",
        "transport error",
    ]
    .iter()
    .any(|words| message.contains(words));
    if dropped && plaintext {
        format!(
            "{message} (the agent probably serves mutual TLS: give --agent-cacert, --agent-cert and --agent-key, or a \
             cluster file with [agent_tls])"
        )
    } else {
        message.to_owned()
    }
}

/// What the operator reads on stderr: `steward: ` and the error with all its
/// sources on one line, then etcd's log tail (when the error has one),
/// indented.
#[must_use]
pub fn report(error: &CliError) -> String {
    let mut text = format!("steward: {}", chain(error));
    let tail = error.log_tail();
    if !tail.is_empty() {
        text.push_str("\netcd's last lines:");
        for line in tail {
            text.push_str("\n  ");
            text.push_str(line);
        }
    }
    text
}

/// The error and all its sources, joined with ": ".
#[must_use]
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut previous = text.clone();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        // Transport errors wrap each other with the same text ("tcp connect
        // error: tcp connect error: ..."); say it once.
        if part != previous {
            text.push_str(": ");
            text.push_str(&part);
        }
        previous = part;
        source = cause.source();
    }
    text
}

/// The agent appends a short log excerpt to the message of a failed switch
/// for readers without the details; we print the full tail from the
/// details, so the excerpt goes.
fn without_log_excerpt(message: &str) -> &str {
    message.split_once("; etcd log tail:").map_or(message, |(head, _)| head)
}

/// "refused" for codes that mean the agent said no to the request itself,
/// "failed" for codes that mean it tried.
const fn refusal_verb(code: Code) -> &'static str {
    match code {
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::OutOfRange
        | Code::Unimplemented => "refused",
        _ => "failed",
    }
}

/// A gRPC code as the contract and grpcurl spell it (`FAILED_PRECONDITION`).
#[derive(Debug, Clone, Copy)]
pub struct CodeName(pub Code);

impl fmt::Display for CodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use steward_proto::details::encode_activation_failure;
    use steward_proto::v1::ActivationFailure;

    fn address() -> AgentAddress {
        "127.0.0.1:7400".parse().unwrap()
    }

    #[test]
    fn a_refusal_keeps_the_agents_message() {
        let status = Status::failed_precondition("Activate is not allowed while the agent is stopped");
        let error = CliError::from_status(&address(), true, "Activate", &status);
        assert_eq!(
            report(&error),
            "steward: agent 127.0.0.1:7400 refused Activate: FAILED_PRECONDITION: \
             Activate is not allowed while the agent is stopped"
        );
        assert_eq!(error.exit_code(), exit::FAILURE);
    }

    #[test]
    fn an_internal_error_is_a_failure_not_a_refusal() {
        let status = Status::internal("write /x: disk full");
        let error = CliError::from_status(&address(), true, "TakeSnapshot", &status);
        assert!(
            error.to_string().contains("failed TakeSnapshot: INTERNAL: write /x"),
            "{error}"
        );
    }

    #[test]
    fn an_aborted_activation_reports_reason_revert_and_log_tail() {
        let details = ActivationFailure {
            attempted_version: "3.5.16".into(),
            reverted_to: "3.4.23".into(),
            reason: "etcd exited: exit status 1".into(),
            log_tail: vec!["first".into(), "last".into()],
        };
        let status = Status::with_details(
            Code::Aborted,
            "switching to 3.5.16 failed (etcd exited: exit status 1); reverted to 3.4.23; etcd log tail:\n  last",
            encode_activation_failure(Code::Aborted, "switching failed", &details).into(),
        );
        let error = CliError::from_status(&address(), true, "Activate", &status);
        assert_eq!(
            report(&error),
            "steward: agent 127.0.0.1:7400 Activate to 3.5.16 failed and was reverted to 3.4.23: \
             etcd exited: exit status 1\netcd's last lines:\n  first\n  last"
        );
    }

    #[test]
    fn a_failed_revert_drops_the_excerpt_and_keeps_the_tail() {
        let details = ActivationFailure {
            attempted_version: "3.5.16".into(),
            reverted_to: String::new(),
            reason: "timeout".into(),
            log_tail: vec!["boom".into()],
        };
        let status = Status::with_details(
            Code::Internal,
            "switching to 3.5.16 failed (timeout) and the revert to 3.4.23 failed too (x); the member is FAILED; etcd log tail:\n  boom",
            encode_activation_failure(Code::Internal, "switching failed", &details).into(),
        );
        let error = CliError::from_status(&address(), true, "Activate", &status);
        let text = report(&error);
        assert!(text.starts_with("steward: agent 127.0.0.1:7400 Activate failed and could not revert: INTERNAL: switching to 3.5.16 failed (timeout) and the revert to 3.4.23 failed too (x); the member is FAILED\n"), "{text}");
        assert!(text.ends_with("etcd's last lines:\n  boom"), "{text}");
    }

    #[test]
    fn undecodable_details_fall_back_to_the_message() {
        let status = Status::with_details(Code::Aborted, "reverted", vec![0xff, 0xff, 0xff].into());
        let error = CliError::from_status(&address(), true, "Rollback", &status);
        assert!(matches!(error, CliError::Rpc { .. }), "{error:?}");
    }
}
