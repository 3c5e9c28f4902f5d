//! `steward version`: this CLI's version and, given a cluster, every
//! agent's, with a warning for each agent of another version.

use std::io::Write;

use serde::Serialize;

use crate::cli::error::CliError;
use crate::cli::{ClusterArgs, VersionArgs};
use crate::engine::connect::Connector;
use crate::output::table::{Tabular, with_header};
use crate::output::{self};

/// This CLI's version.
pub const OWN: &str = env!("CARGO_PKG_VERSION");

/// What `steward version` prints.
#[derive(Debug, Serialize)]
pub struct VersionView {
    /// This CLI's steward version.
    pub steward: String,
    /// Every member's agent, when a cluster was given.
    pub agents: Vec<AgentVersion>,
    /// One line per agent whose version is not this CLI's.
    pub skew: Vec<String>,
}

/// One member's agent.
#[derive(Debug, Serialize)]
pub struct AgentVersion {
    /// The member.
    pub member: String,
    /// The agent's address, if one serves the member.
    pub agent: Option<String>,
    /// The agent's steward version (empty when it did not answer).
    pub version: String,
    /// The etcd version the member runs.
    pub etcd_version: Option<String>,
}

impl Tabular for VersionView {
    fn tables(&self) -> Vec<comfy_table::Table> {
        let mut table = with_header(&["COMPONENT", "AGENT", "STEWARD", "ETCD"]);
        table.add_row(vec!["steward (this CLI)", "-", &self.steward, "-"]);
        for agent in &self.agents {
            table.add_row(vec![
                format!("agent of {}", agent.member),
                agent.agent.clone().unwrap_or_else(|| "-".into()),
                if agent.version.is_empty() {
                    "-".into()
                } else {
                    agent.version.clone()
                },
                agent.etcd_version.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        vec![table]
    }
}

/// Whether a cluster was named, by a flag or its environment variable.
pub fn names_a_cluster(args: &ClusterArgs) -> bool {
    let set = |name| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    args.cluster.is_some() || args.agents.is_some() || set("STEWARD_CLUSTER") || set("STEWARD_AGENTS")
}

/// `steward version [--cluster F]`.
///
/// # Errors
/// The cluster cannot be observed, or stdout written.
pub async fn version(connector: &Connector, args: &VersionArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let mut view = VersionView {
        steward: OWN.to_owned(),
        agents: Vec::new(),
        skew: Vec::new(),
    };
    if names_a_cluster(&args.cluster) {
        let (observation, _) = super::cluster::observe_target(connector, &args.cluster).await?;
        view.skew = crate::engine::roll::rules::skewed_agents(&observation.observed, OWN)
            .into_iter()
            .map(|line| format!("{line}, this CLI is {OWN}"))
            .collect();
        for member in &observation.observed.members {
            view.agents.push(AgentVersion {
                member: member.name.clone(),
                agent: member.agent.clone(),
                version: member.agent_version.clone(),
                etcd_version: member.version.as_ref().map(ToString::to_string),
            });
        }
    }
    for line in &view.skew {
        eprintln!("warning: version skew: {line}");
    }
    output::emit(out, args.output.format, &view)?;
    Ok(())
}
