//! steward-agent: the daemon next to every etcd member. It owns the local
//! etcd process (supervision, adoption after its own restart), the etcd
//! binaries (a verified store, one directory per version), the member's
//! flags for every etcd version, and verified snapshots; it answers the
//! coordinator over gRPC (`steward.agent.v1`).

pub mod accept;
pub mod access;
pub mod agent;
pub mod audit;
pub mod beneath;
pub mod bounded;
pub mod caller_cert;
pub mod check;
pub mod config;
pub mod datadir;
pub mod error;
pub mod etcd_channel;
pub mod etcd_snapshot;
pub mod flags;
pub mod fsutil;
pub mod hashing;
pub mod health;
pub mod host_shutdown;
pub mod input_limits;
pub mod journal;
pub mod logging;
pub mod logs;
pub mod member;
pub mod metrics;
pub mod notify;
pub mod process;
pub mod raft_snapshot;
pub mod refusal_log;
pub mod restore;
pub mod server;
pub mod service;
pub mod signal;
pub mod snapshot;
pub mod state;
pub mod store;
pub mod supervisor;
pub mod tls;
pub mod v2store;
pub mod watchdog;
