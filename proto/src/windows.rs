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

/// The largest HTTP/2 frame the coordinator and the agent accept from
/// each other (a receiver sets what its peer may send). HTTP/2's default,
/// 16 KiB, cuts a stream of 1 MiB messages into frames of which each
/// takes a full TLS record and a second one for the frame's 9-byte
/// header, a write of its own by the sender, and a wakeup of the
/// receiver; frames of this size fill whole records, written several at
/// a time. etcd's gRPC server sends 16 KiB frames whatever its peer
/// accepts, so the agent's channel to etcd does not ask for more.
pub const MAX_FRAME: u32 = 1 << 20;
// HTTP/2 allows frames from 16 KiB up to 16 MiB - 1; h2 panics outside.
const _: () = assert!(MAX_FRAME >= 16 << 10 && MAX_FRAME < 1 << 24);
