//! Upgrades one cluster while backing up another, from one process, each
//! reached with the connection settings of its own cluster file. The code
//! of docs/library.md; run it with two cluster files in `clusters/`:
//! `cargo run -p steward-coordinator --example two_clusters`.

// An example prints what it did.
#![allow(clippy::print_stdout)]

use steward_coordinator::engine::backup::{self, BackupRequest};
use steward_coordinator::engine::cluster::file::{ClusterFile, ClusterTarget};
use steward_coordinator::engine::cluster::observe::observe_target;
use steward_coordinator::engine::connect::Connector;
use steward_coordinator::engine::events::Discard;
use steward_coordinator::engine::report::RunContext;
use steward_coordinator::engine::roll::plan::Direction;
use steward_coordinator::engine::roll::{self, Outcome, RollOptions};
use steward_coordinator::engine::transfer::download::CopyTo;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let open = |path: &str| -> Result<ClusterTarget, Box<dyn std::error::Error>> {
        let path = std::path::Path::new(path);
        Ok(ClusterTarget::from_file(path, ClusterFile::load(path)?))
    };
    let eu = open("clusters/eu-1.toml")?;
    let us = open("clusters/us-1.toml")?;
    // Each cluster's own CAs, client certificates and etcd user, from its file.
    let to_eu = eu.connector(&Connector::default())?;
    let to_us = us.connector(&Connector::default())?;

    let options = RollOptions {
        context: RunContext::new(Some("eu-1".into())),
        ..RollOptions::new(Direction::Upgrade, "3.5.16".parse()?, Some("/srv/etcd-releases".into()))
    };
    let agents = eu.members.iter().map(|m| m.agent.clone()).collect();
    let mut events = Discard;
    let upgrade = roll::run(&to_eu, agents, options, &mut events);
    let snapshot = async {
        let observed = observe_target(&to_us, &us).await?.observed;
        let request = BackupRequest {
            member: None,
            out: Some(CopyTo::File("us-1.db".into())),
        };
        Ok::<_, Box<dyn std::error::Error>>(backup::backup(&to_us, &observed, &request).await?)
    };
    let (report, backup) = tokio::join!(upgrade, snapshot);

    match report.result {
        Outcome::Succeeded => println!("eu-1 on {} (fencing token {})", report.to, report.header.fencing_token),
        Outcome::Refused => println!("refused: {:?}", report.checks),
        Outcome::Failed | Outcome::Cancelled => println!("stopped: {:?}", report.failure),
    }
    let backup = backup?;
    println!("us-1 snapshot {} ({} bytes)", backup.snapshot.id, backup.snapshot.size);
    Ok(())
}
