//! One module per command group. Each turns parsed arguments into calls
//! and views; connecting, formatting and errors live in their own modules.

pub mod agent;
pub mod backup;
pub mod certs;
pub mod certs_lifecycle;
pub mod cluster;
pub mod fleet;
pub mod generate;
pub mod local;
pub mod restore;
pub mod roll;
pub mod signals;
pub mod snapshot;
pub mod take_down;
pub mod version;

use crate::cli::ClusterArgs;
use crate::cli::error::CliError;
use crate::engine::cluster::file::ClusterTarget;
use crate::engine::connect::Connector;

/// The cluster a command works on, and how to reach it: the cluster file's
/// `[agent_tls]`, etcd TLS and etcd user apply unless the flags (or their
/// variables) already chose them in `connector`.
///
/// # Errors
/// The target cannot be resolved, or its TLS files cannot be read.
pub fn cluster_target(args: &ClusterArgs, connector: &Connector) -> Result<(ClusterTarget, Connector), CliError> {
    let target = ClusterTarget::resolve(args.cluster.as_deref(), args.agents.as_deref(), |name| {
        std::env::var(name).ok()
    })?;
    let connector = target.connector(connector)?;
    Ok((target, connector))
}
