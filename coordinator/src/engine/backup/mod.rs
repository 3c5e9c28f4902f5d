//! A verified snapshot of a cluster through one member's agent (the
//! leader's unless one is named), optionally copied to a local file that
//! is verified against its sha256 trailer and never overwritten.

pub mod rotation;

use std::path::PathBuf;

use steward_proto::v1 as pb;

use crate::engine::cluster::observed::Observed;
use crate::engine::connect::Connector;
use crate::engine::connect::agent::{self, AgentAddress};
use crate::engine::error::Error;
use crate::engine::transfer::download::{self, CopyTo, TakeAndDownloadError};

/// What to back up and where to.
#[derive(Clone, Debug, Default)]
pub struct BackupRequest {
    /// Take it through this member's agent instead of the leader's.
    pub member: Option<String>,
    /// Also copy it here: a new local file, or a stream.
    pub out: Option<CopyTo>,
}

/// A backup taken.
#[derive(Clone, Debug)]
pub struct Backup {
    /// The member it was taken from.
    pub member: String,
    /// The agent that keeps it.
    pub agent: AgentAddress,
    /// The snapshot as the agent describes it.
    pub snapshot: pb::SnapshotInfo,
    /// Where the verified copy is, when one was asked for.
    pub copied_to: Option<PathBuf>,
}

/// Why a backup was not taken, or not copied.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The named member is not in the cluster.
    #[error("--member {name}: the cluster has no such member (it has {members})")]
    NoSuchMember {
        /// The name asked for.
        name: String,
        /// The members there are.
        members: String,
    },
    /// No member was named and no single leader was found.
    #[error("the cluster is not healthy: no single leader to take the snapshot from; name a member with --member")]
    NoLeader,
    /// The member has no agent that answers.
    #[error("the cluster is not healthy: {member} has no agent: {why}")]
    NoAgent {
        /// The member.
        member: String,
        /// Why.
        why: String,
    },
    /// The agent refused or failed the snapshot, or the destination cannot
    /// take it (nothing was taken then).
    #[error(transparent)]
    Failed(#[from] Error),
    /// The snapshot was taken and verified, and stays on the agent; its
    /// copy here failed.
    #[error(
        "snapshot {id} was taken and verified, and stays on {member}'s agent {address} \
         (copy it with `steward agent download --agent {address} --id {id} --out FILE`); copying it to {out} failed"
    )]
    CopyFailed {
        /// The agent that keeps it.
        address: AgentAddress,
        /// The member it was taken from.
        member: String,
        /// Its id there.
        id: String,
        /// Where the copy was to go (a file, or a stream's name).
        out: String,
        /// Why the copy failed.
        #[source]
        source: Box<Error>,
    },
}

impl BackupError {
    /// True for errors about how the backup was asked for.
    #[must_use]
    pub const fn is_usage(&self) -> bool {
        match self {
            Self::NoSuchMember { .. } => true,
            Self::Failed(error) => error.is_usage(),
            _ => false,
        }
    }
}

/// Takes a verified snapshot of the `observed` cluster as `request` says.
///
/// # Errors
/// [`BackupError`]: no member to take it from, the agent refuses or fails,
/// or the copy fails (the snapshot then stays on the agent).
pub async fn backup(
    connector: &Connector,
    observed: &Observed,
    request: &BackupRequest,
) -> Result<Backup, BackupError> {
    if let Some(file) = request.out.as_ref().and_then(CopyTo::file) {
        download::check_destination(file, 0)?;
    }
    let member = match &request.member {
        Some(name) => observed
            .members
            .iter()
            .find(|m| m.name == *name)
            .ok_or_else(|| BackupError::NoSuchMember {
                name: name.clone(),
                members: observed
                    .members
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?,
        None => observed.leader().ok_or(BackupError::NoLeader)?,
    };
    let no_agent = |why: String| BackupError::NoAgent {
        member: member.name.clone(),
        why,
    };
    let agent: AgentAddress = member
        .agent
        .as_deref()
        .ok_or_else(|| no_agent(member.why_no_agent().to_owned()))?
        .parse()
        .map_err(|e| no_agent(format!("its address: {e}")))?;
    // A copy that could not be written is refused before the snapshot is
    // taken, not after: a failed backup leaves nothing on the agent.
    if let Some(file) = request.out.as_ref().and_then(CopyTo::file) {
        download::check_destination(file, member.db_size)?;
    }
    let mut clients = agent::connect(connector, &agent).await?;
    let snapshot = match &request.out {
        None => take(&mut clients).await?,
        Some(to) => {
            let copy_failed = |snapshot: &pb::SnapshotInfo, source: Error| BackupError::CopyFailed {
                address: agent.clone(),
                member: member.name.clone(),
                id: snapshot.id.clone(),
                out: to.describe(),
                source: Box::new(source),
            };
            // One pass from etcd to the agent's store and to the file; an
            // agent without that call takes, then sends the stored file.
            match Box::pin(download::take_and_download(&mut clients, 0, to)).await {
                Ok(snapshot) => snapshot,
                Err(TakeAndDownloadError::NotTaken(error)) => return Err(error.into()),
                Err(TakeAndDownloadError::NotCopied { snapshot, source }) => {
                    return Err(copy_failed(&snapshot, source));
                }
                Err(TakeAndDownloadError::Unsupported) => {
                    let snapshot = take(&mut clients).await?;
                    Box::pin(download::download_to(&mut clients, &snapshot.id, to))
                        .await
                        .map_err(|source| copy_failed(&snapshot, source))?;
                    snapshot
                }
            }
        }
    };
    Ok(Backup {
        member: member.name.clone(),
        agent,
        snapshot,
        copied_to: request.out.as_ref().and_then(CopyTo::file).map(ToOwned::to_owned),
    })
}

/// Takes a snapshot that stays on the agent.
async fn take(clients: &mut agent::AgentClients) -> Result<pb::SnapshotInfo, Error> {
    let address = clients.address.clone();
    clients
        .snapshots
        .take_snapshot(pb::TakeSnapshotRequest::default())
        .await
        .map_err(|s| Error::from_status(&address, clients.plaintext, "TakeSnapshot", &s))?
        .into_inner()
        .snapshot
        .ok_or(Error::MalformedReply {
            address,
            rpc: "TakeSnapshot",
            problem: "no snapshot info",
        })
}

/// A backup copied into a directory kept on a schedule: where it ended up
/// and what was removed to keep the count.
#[derive(Clone, Debug, Default)]
pub struct Kept {
    /// The backup's final name, with its revision.
    pub path: PathBuf,
    /// The oldest backups of the same cluster removed beyond the count.
    pub removed: Vec<PathBuf>,
}

/// Gives the verified copy at `pending` (named by [`rotation::pending_name`])
/// its final name with the snapshot's revision, then removes the oldest of
/// `cluster`'s backups in its directory beyond `keep` (0: none). Files of
/// other clusters and other files are never touched.
///
/// # Errors
/// The rename, the listing or a removal failed (the new backup is kept
/// whatever failed after its rename).
pub async fn keep_in_dir(
    pending: &std::path::Path,
    cluster: &str,
    taken: std::time::SystemTime,
    revision: i64,
    keep: usize,
) -> Result<Kept, Error> {
    let dir = pending.parent().unwrap_or_else(|| std::path::Path::new("."));
    let path = dir.join(rotation::final_name(cluster, taken, revision));
    download::put_in_place(pending, &path).await?;
    let io = |action: &'static str, path: &std::path::Path| {
        let path = path.to_owned();
        move |source| Error::Io { action, path, source }
    };
    let mut names = Vec::new();
    let mut entries = tokio::fs::read_dir(dir).await.map_err(io("list", dir))?;
    while let Some(entry) = entries.next_entry().await.map_err(io("list", dir))? {
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    let mut removed = Vec::new();
    for name in rotation::to_remove(cluster, &names, keep) {
        let old = dir.join(&name);
        tokio::fs::remove_file(&old).await.map_err(io("remove", &old))?;
        tracing::info!(removed = %old.display(), keep, "backup beyond the count removed");
        removed.push(old);
    }
    if !removed.is_empty() {
        download::sync_parent(&path).await?;
    }
    Ok(Kept { path, removed })
}
