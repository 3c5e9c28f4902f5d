//! The engine's error type, and the mapping from an agent's gRPC status to
//! it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use tonic::{Code, Status};

use crate::engine::address::AgentAddress;

/// Everything the engine can fail with. Each variant names the
/// agent or file it concerns; sources are kept as `#[source]` and never
/// repeated in the message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection to the agent failed.
    #[error("cannot reach agent {address}")]
    Unreachable {
        /// The agent.
        address: AgentAddress,
        /// The transport error (refused, no route, DNS, ...).
        #[source]
        source: tonic::transport::Error,
    },
    /// The agent ended the TLS handshake over this caller's certificate.
    #[error("agent {address}: {CERTIFICATE_REFUSED} (the agent answered: {alert})")]
    CertificateRefused {
        /// The agent.
        address: AgentAddress,
        /// The TLS alert it sent.
        alert: String,
    },
    /// The address's scheme says plaintext where the caller has agent TLS,
    /// or TLS where it has none.
    #[error("agent {address}: {problem}")]
    SchemeMismatch {
        /// The agent.
        address: AgentAddress,
        /// What does not match, and how to write it instead.
        problem: &'static str,
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
        problem: VerifyProblem,
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
    /// The request cannot be carried out as given (a path, a setting); the
    /// message names it and what is wrong. Nothing was changed.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// True for errors about how the engine was asked (no cluster named, an
    /// unusable path or setting) rather than about the cluster.
    #[must_use]
    pub const fn is_usage(&self) -> bool {
        matches!(self, Self::Invalid(_) | Self::SchemeMismatch { .. })
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
    } else if message.contains("received fatal alert") {
        format!("{message} ({CERTIFICATE_REFUSED})")
    } else {
        message.to_owned()
    }
}

/// What a TLS alert from an agent means for the caller.
pub const CERTIFICATE_REFUSED: &str = "the agent refused this caller's certificate in the TLS handshake: it must be \
     signed by the agent's client CA, valid now, a client certificate (clientAuth) with a CN, and not issued by an \
     intermediate CA the client CA does not allow; `steward certs issue` makes such certificates";

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

/// Why a value from a file or a flag is not acceptable, in words that follow
/// the value's name: `is empty`, `"a b" must not contain whitespace`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unacceptable(pub String);

/// Why a downloaded snapshot is not what the agent says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyProblem {
    /// The file cannot even hold a trailer.
    TooShort {
        /// Bytes received.
        size: u64,
    },
    /// The trailer is not the sha256 of the content before it.
    TrailerMismatch {
        /// The trailer, hex.
        trailer: String,
        /// What the content hashes to, hex.
        content: String,
    },
    /// The trailer is not the sha256 the agent recorded.
    RecordMismatch {
        /// The agent's record, hex.
        recorded: String,
        /// The trailer, hex.
        trailer: String,
    },
    /// The size is not the size the agent recorded.
    SizeMismatch {
        /// The agent's record.
        recorded: u64,
        /// Bytes received.
        received: u64,
    },
    /// The copy's CRC-32 is not the one of the bytes the agent sent.
    CrcMismatch {
        /// What the agent sent, by its count.
        sent: u32,
        /// What arrived here.
        received: u32,
    },
}

impl fmt::Display for VerifyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { size } => write!(f, "{size} bytes is shorter than the 32-byte sha256 trailer"),
            Self::TrailerMismatch { trailer, content } => {
                write!(f, "the sha256 trailer is {trailer} but the content hashes to {content}")
            }
            Self::RecordMismatch { recorded, trailer } => {
                write!(
                    f,
                    "the agent recorded sha256 {recorded} but the file's trailer is {trailer}"
                )
            }
            Self::SizeMismatch { recorded, received } => {
                write!(f, "the agent recorded {recorded} bytes but {received} arrived")
            }
            Self::CrcMismatch { sent, received } => write!(
                f,
                "the bytes that arrived have CRC-32 {received:08x} but the agent sent bytes with CRC-32 {sent:08x}"
            ),
        }
    }
}
