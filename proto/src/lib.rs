//! The gRPC contract between the steward coordinator and its agents
//! (`steward.agent.v1`), and the few plain types both sides share, with
//! what both read snapshots with (their trailer, and etcd's bbolt file).

pub mod bolt;
pub mod details;
pub mod error_text;
pub mod role;
pub mod trailer;
pub mod version;
pub mod windows;

pub use role::Role;
pub use version::{EtcdVersion, VersionError};

/// Generated code for `steward.agent.v1` (messages, clients, servers).
pub mod v1 {
    #![allow(missing_docs, clippy::all, clippy::pedantic, missing_debug_implementations)]
    tonic::include_proto!("steward.agent.v1");
}

/// The encoded file descriptor set of `steward.agent.v1`, served by the
/// agent through gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/steward_agent_v1_descriptor.bin"));

/// Fully qualified gRPC service names, for health checks and reflection.
pub mod service_names {
    /// The member lifecycle service.
    pub const AGENT: &str = "steward.agent.v1.Agent";
    /// The binary store service.
    pub const BINARIES: &str = "steward.agent.v1.Binaries";
    /// The snapshot service.
    pub const SNAPSHOTS: &str = "steward.agent.v1.Snapshots";
    /// Not an RPC service: the gRPC health name that is SERVING only while
    /// the agent's etcd member runs in its steady state.
    pub const MEMBER: &str = "steward.agent.v1.Member";
}
