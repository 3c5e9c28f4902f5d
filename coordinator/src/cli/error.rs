//! What a `steward` command can fail with, the exit code of each, and the
//! one function that turns an error into what the operator reads on
//! stderr.

use crate::cli::exit;
use crate::engine::cluster::file::TargetError;
use crate::engine::cluster::observe::ObserveError;
use crate::engine::connect::agent::AgentAddress;
use crate::engine::error::{Error, chain};

/// Everything a `steward` command can fail with: the engine's errors, and
/// what only the command line knows (flags, stdout, verdicts it turns into
/// exit codes).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The engine failed; its error names the agent, file or member.
    #[error(transparent)]
    Engine(#[from] Error),
    /// The cluster to work on cannot be determined or its description
    /// cannot be used (the inner error names the flag, file and field).
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The cluster could not be observed.
    #[error("cannot observe the cluster")]
    Observe(#[from] ObserveError),
    /// A file this command makes could not be written.
    #[error(transparent)]
    Write(#[from] crate::engine::cluster::file::WriteError),
    /// Writing the results to stdout failed.
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
    /// A local cluster could not be started or stopped (the inner error
    /// names the directory, member or version).
    #[error(transparent)]
    Local(#[from] crate::local::LocalError),
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
    /// Certificates expire within the threshold, or have expired.
    #[error("certificates expire within {within_days} days or have expired: {certificates}")]
    CertsExpiring {
        /// The threshold.
        within_days: u64,
        /// Each, with its file and days left.
        certificates: String,
    },
    /// Some certificates of a cluster could not be checked.
    #[error("certificates could not be checked: {what}")]
    CertsUnchecked {
        /// What, and why.
        what: String,
    },
    /// A snapshot file does not check out.
    #[error("snapshot file {}: {reason}", path.display())]
    SnapshotFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A backup was not taken, or not copied here.
    #[error(transparent)]
    Backup(#[from] crate::engine::backup::BackupError),
    /// A fleet command did not succeed on every cluster; the report says
    /// which and why.
    #[error("fleet {command}: {summary}")]
    Fleet {
        /// What was asked.
        command: String,
        /// The worst cluster result.
        result: crate::engine::fleet::schedule::ClusterOutcome,
        /// Which clusters ended how.
        summary: String,
    },
    /// The run was cancelled (Ctrl-C, SIGTERM) and stopped at a safe point.
    #[error("cancelled at {where_}: the lock is released; running the same command again finishes the job")]
    Cancelled {
        /// Where it stopped.
        where_: String,
    },
    /// A rolling change stopped.
    #[error("{direction} stopped at {where_}: {reason}")]
    RollFailed {
        /// upgrade or downgrade.
        direction: crate::engine::roll::plan::Direction,
        /// The member and gate.
        where_: String,
        /// Why.
        reason: String,
    },
}

impl From<crate::output::OutputError> for CliError {
    fn from(error: crate::output::OutputError) -> Self {
        Self::Output(error.0)
    }
}

impl CliError {
    /// The process exit code for this error (see [`crate::cli::exit`]).
    #[must_use]
    pub const fn exit_code(&self) -> u8 {
        // Every other error is a failure; REFUSED belongs to the check gates
        // of the rolling commands.
        match self {
            // No cluster named, or named ambiguously: how steward was called.
            Self::Engine(error) if error.is_usage() => exit::USAGE,
            Self::Target(error) if error.is_usage() => exit::USAGE,
            Self::Backup(error) if error.is_usage() => exit::USAGE,
            Self::Usage(_) => exit::USAGE,
            Self::Refused { .. } => exit::REFUSED,
            Self::Cancelled { .. } => exit::CANCELLED,
            Self::Fleet { result, .. } => exit::for_fleet(*result),
            _ => exit::FAILURE,
        }
    }

    /// etcd's log lines that explain this error, if it carries any.
    #[must_use]
    pub fn log_tail(&self) -> &[String] {
        match self {
            Self::Engine(error) => error.log_tail(),
            _ => &[],
        }
    }

    /// True when the error is only a closed stdout (`steward ... | head`),
    /// which is not worth a message.
    #[must_use]
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Self::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }

    /// Shorthand for the engine's mapping of an agent's status.
    #[must_use]
    pub fn from_status(address: &AgentAddress, plaintext: bool, rpc: &'static str, status: &tonic::Status) -> Self {
        Self::Engine(Error::from_status(address, plaintext, rpc, status))
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

#[cfg(test)]
mod tests {
    use super::*;
    use steward_proto::details::encode_activation_failure;
    use steward_proto::v1::ActivationFailure;
    use tonic::{Code, Status};

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
        assert!(matches!(error, CliError::Engine(Error::Rpc { .. })), "{error:?}");
    }
}
