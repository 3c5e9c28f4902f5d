//! HTTP/2 flow-control windows for connections that carry snapshots: the
//! agent's to etcd, and the coordinator's to the agent, both ways.
//!
//! A sender may have at most one window of data in flight before the
//! receiver acknowledges what it read. HTTP/2's default of 64 KiB paces a
//! stream of 32 KiB messages by those round trips instead of by how fast
//! either side reads and writes; Go's gRPC (etcdctl) grows its windows up
//! to 16 MiB. The receiver buffers at most a window per stream.

/// How much one stream may have in flight towards the receiver.
pub const STREAM_WINDOW: u32 = 4 << 20;
/// How much all streams of one connection together may have in flight.
pub const CONNECTION_WINDOW: u32 = 8 << 20;
