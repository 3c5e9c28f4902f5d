//! The process exit codes of `steward`, in one place so the CLI help, the
//! error type and the later rolling commands agree on them.

/// The command did what it was asked.
pub const SUCCESS: u8 = 0;
/// The command failed: the agent was unreachable, refused or failed the
/// call (a reverted activation among them), or a local file could not be
/// read or written.
pub const FAILURE: u8 = 1;
/// The command line is malformed (clap reports these itself, before any
/// call is made).
pub const USAGE: u8 = 2;
/// A named check refused the operation (preflight gates of the rolling
/// commands); nothing was changed.
pub const REFUSED: u8 = 3;

/// The run was cancelled (Ctrl-C or SIGTERM) and stopped at a safe point
/// with the lock released; the same command finishes the job.
pub const CANCELLED: u8 = 4;

/// What an exit code means, in a few words (the JSON error object's
/// `meaning`).
#[must_use]
pub const fn meaning(code: u8) -> &'static str {
    match code {
        SUCCESS => "success",
        USAGE => "usage error: a flag is missing or malformed (checked before any call)",
        REFUSED => "refused by a check; nothing was changed",
        CANCELLED => "cancelled: stopped at a safe point, the lock released",
        _ => "failure",
    }
}

/// The exit codes as `--help` lists them.
pub const HELP: &str = "\
Exit codes:
  0  success
  1  failure: the agent is unreachable, refused or failed the call (a version
     switch that was reverted included), or a local file could not be used
  2  usage error: a flag is missing or malformed (checked before any call)
  3  refused by a check (the preflight gates of upgrade, downgrade, rollback and
     restore); nothing was changed
  4  cancelled (Ctrl-C, SIGTERM): stopped at a safe point, the lock released;
     the same command finishes the job";

/// The exit codes of `steward fleet`, as `--help` lists them.
pub const FLEET_HELP: &str = "\
Exit codes (the worst cluster wins: failed over cancelled over refused):
  0  every cluster succeeded or had nothing to do
  1  a cluster failed (or, for status, is not healthy or cannot be reached)
  2  usage error: a flag, the inventory or a --canary/--waves name is wrong
  3  a cluster was refused by a check; nothing was changed on it
  4  cancelled (Ctrl-C, SIGTERM): clusters stopped at a safe point
Clusters not started because the fleet stopped are listed as not-started.";

/// The exit code of a fleet run whose worst cluster ended `worst`.
#[must_use]
pub const fn for_fleet(worst: crate::engine::fleet::schedule::ClusterOutcome) -> u8 {
    use crate::engine::fleet::schedule::ClusterOutcome;
    match worst {
        ClusterOutcome::Succeeded | ClusterOutcome::Skipped | ClusterOutcome::NotStarted => SUCCESS,
        ClusterOutcome::Refused => REFUSED,
        ClusterOutcome::Cancelled => CANCELLED,
        ClusterOutcome::Failed => FAILURE,
    }
}
