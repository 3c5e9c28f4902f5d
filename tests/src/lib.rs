//! The steward test harness: real etcd release binaries, real
//! `steward-agent` processes on loopback, real gRPC. The end-to-end
//! scenarios live in `tests/`.

// The test harness: a failed expectation is a failed test, not an error to handle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod bench;
pub mod binaries;
pub mod chaos;
pub mod cluster;
pub mod coordinator;
pub mod fake;
pub mod faults;
pub mod fleet;
pub mod hosts;
pub mod manual;
pub mod mounts;
pub mod pki;
pub mod ports;
pub mod rolling;
pub mod tls_probe;
pub mod writer;

pub use binaries::{Release, exact, newest, oldest};
pub use cluster::{Cluster, ClusterBuilder};
pub use writer::{Writer, WriterReport, lost_writes};
