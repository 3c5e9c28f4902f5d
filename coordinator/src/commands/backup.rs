//! `steward backup` and `steward backups`: a verified snapshot of the
//! cluster through one member's agent (the leader's unless named), copied
//! here on request; and what every agent keeps.

use std::io::Write;

use steward_proto::v1 as pb;

use crate::cli::error::CliError;
use crate::cli::{BackupArgs, ClusterArgs, OutputArgs};
use crate::engine;
use crate::engine::backup::{BackupRequest, rotation};
use crate::engine::connect::Connector;
use crate::engine::connect::agent;
use crate::engine::transfer::download::CopyTo;
use crate::output;
use crate::output::view::{BackupView, SnapshotView, SnapshotsView};

/// Standard output as the copy's destination: refused on a terminal,
/// where a binary snapshot is of no use and would garble it.
fn standard_output() -> Result<CopyTo, CliError> {
    use std::io::IsTerminal;
    use std::os::fd::AsFd;
    let stdout = std::io::stdout();
    if stdout.is_terminal() {
        return Err(CliError::Usage(
            "--out -: standard output is a terminal; pipe it to a program (steward backup --out - | ...) or give \
             --out FILE"
                .into(),
        ));
    }
    let fd = stdout.as_fd().try_clone_to_owned().map_err(CliError::Output)?;
    Ok(CopyTo::Stream {
        stream: std::sync::Arc::new(std::fs::File::from(fd)),
        name: "standard output".into(),
    })
}

/// `steward backup`.
///
/// # Errors
/// The cluster cannot be observed, the member is unknown or has no agent,
/// or the agent refuses or fails the snapshot or its download.
pub async fn backup(connector: &Connector, args: &BackupArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let (target, connector) = super::cluster_target(&args.cluster, connector)?;
    let observation = crate::engine::cluster::observe::observe_target(&connector, &target).await?;
    let observed = &observation.observed;
    // In a directory: named after the cluster and the time now, and after
    // its revision once it is known.
    let taken_at = std::time::SystemTime::now();
    let cluster = rotation::file_safe(
        &target
            .name
            .clone()
            .unwrap_or_else(|| format!("{:016x}", observed.cluster_id)),
    );
    let copy = match (&args.out, &args.out_dir) {
        (Some(file), _) if file.as_os_str() == crate::cli::STDOUT => Some(standard_output()?),
        (Some(file), _) => Some(CopyTo::File(file.clone())),
        (None, Some(dir)) => Some(CopyTo::File(dir.join(rotation::pending_name(&cluster, taken_at)))),
        (None, None) => None,
    };
    if let Some(file) = copy.as_ref().and_then(CopyTo::file) {
        crate::engine::transfer::download::check_destination(file, 0)?;
    }
    let copied_to = copy.as_ref().map(CopyTo::describe);
    let request = BackupRequest {
        member: args.member.clone(),
        out: copy,
    };
    let taken = engine::backup::backup(&connector, observed, &request).await?;
    let mut view = BackupView {
        agent: taken.agent.to_string(),
        snapshot: SnapshotView::from(&taken.snapshot),
        downloaded_to: copied_to,
        removed: Vec::new(),
    };
    if let (Some(pending), Some(_)) = (&taken.copied_to, &args.out_dir) {
        let kept = engine::backup::keep_in_dir(pending, &cluster, taken_at, taken.snapshot.revision, args.keep).await?;
        view.downloaded_to = Some(kept.path.display().to_string());
        view.removed = kept.removed.iter().map(|p| p.display().to_string()).collect();
    }
    output::emit(out, args.output.format, &view).map_err(CliError::from)
}

/// `steward backups`: every agent's snapshots, newest first.
///
/// # Errors
/// The cluster cannot be resolved, or an agent cannot be asked.
pub async fn backups(
    connector: &Connector,
    cluster: &ClusterArgs,
    output: OutputArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let (target, connector) = super::cluster_target(cluster, connector)?;
    let mut snapshots = Vec::new();
    for member in &target.members {
        let mut clients = agent::connect(&connector, &member.agent).await?;
        let list = clients
            .snapshots
            .list_snapshots(pb::ListSnapshotsRequest {})
            .await
            .map_err(|s| CliError::from_status(&member.agent, clients.plaintext, "ListSnapshots", &s))?
            .into_inner();
        snapshots.extend(list.snapshots.iter().map(SnapshotView::from));
    }
    snapshots.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| a.member_name.cmp(&b.member_name))
    });
    output::emit(out, output.format, &SnapshotsView { snapshots }).map_err(CliError::from)
}
