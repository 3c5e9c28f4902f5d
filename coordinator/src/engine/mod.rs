//! The engine: everything steward does to clusters, without a command line.
//!
//! - [`address`]: an agent's address, validated.
//! - [`connect`]: how one cluster is reached (agents' mutual TLS, etcd's TLS
//!   and credentials) as a value, and the session that keeps the
//!   connections of one cluster.
//! - [`cluster`]: the cluster file, observing the cluster, the cluster lock
//!   and journal, the record of the last change, the availability probe.
//! - [`roll`]: the rolling upgrade and downgrade: plan, rules, staging,
//!   passes, the Downgrade API, rollback and the report.
//! - [`backup`]: a verified snapshot through one member's agent.
//! - [`restore`]: restoring a cluster from a verified snapshot.
//! - [`failure`]: why a run stopped: the gate, the cause kind, the words.
//! - [`fleet`]: many clusters at once, from an inventory.
//! - [`transfer`]: binaries to the agents, snapshots from them.
//! - [`check`]: a check, its verdict, and the registry of rule ids.
//! - [`events`]: what a run says while it runs.
//! - [`report`]: the header every report begins with.
//! - [`error`]: what the engine fails with.
//! - [`process_id`]: a process recognised by pid and start time.
//!
//! The command line (`cli`, `commands`, `output`) is built on this module
//! and never the other way round: the engine compiles without the `cli`
//! feature.

pub mod address;
pub mod backup;
pub mod check;
pub mod cluster;
pub mod connect;
pub mod error;
pub mod events;
pub mod failure;
pub mod fleet;
pub mod process_id;
pub mod report;
pub mod restore;
pub mod roll;
pub mod transfer;
