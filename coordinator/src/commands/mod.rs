//! One module per command group. Each turns parsed arguments into calls
//! and views; connecting, formatting and errors live in their own modules.

pub mod agent;
pub mod backup;
pub mod certs;
pub mod cluster;
pub mod local;
pub mod restore;
pub mod roll;
pub mod take_down;

use crate::cli::ClusterArgs;
use crate::cluster_file::ClusterTarget;
use crate::error::CliError;

/// The cluster a command works on; its file's `[agent_tls]` applies unless
/// the `--agent-*` flags (or their variables) already chose an identity.
///
/// # Errors
/// The target cannot be resolved, or its TLS files cannot be read.
pub fn cluster_target(args: &ClusterArgs) -> Result<ClusterTarget, CliError> {
    let target = ClusterTarget::from_args(args)?;
    if !crate::agent_client::uses_tls() && target.agent_tls.is_some() {
        crate::agent_client::use_tls(target.agent_tls.as_ref())?;
    }
    if !crate::etcd::uses_tls()
        && let Some(base) = target.file_dir()
    {
        let files = target.etcd.tls_files(&base);
        if !files.is_empty() {
            crate::etcd::use_tls(Some(&files)).map_err(CliError::Usage)?;
        }
    }
    Ok(target)
}
