//! etcd's snapshot stream (`Maintenance/Snapshot`), decoded without a copy
//! of its chunks. etcd-client decodes every 32 KiB chunk into a fresh
//! `Vec`, a copy of each byte of a database the agent then hashes, writes
//! and sends on: here a chunk is a slice of the buffer the message
//! arrived in. The call goes over the channel under the member's etcd
//! client (see [`crate::etcd_channel::WideWindows`]), so it has the same
//! endpoint, TLS and flow-control windows.

use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::AsciiMetadataValue;

/// The method's path on etcd's gRPC server.
const SNAPSHOT_PATH: &str = "/etcdserverpb.Maintenance/Snapshot";
/// The request metadata etcd reads the auth token from (as etcd-client
/// sends it).
const TOKEN_HEADER: &str = "token";

/// One message of the stream: the parts of etcd's `SnapshotResponse` the
/// agent reads. Fields not named here (the header, `remaining_bytes`, the
/// version) are skipped when decoding.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SnapshotPiece {
    /// The next bytes of the snapshot.
    #[prost(bytes = "bytes", tag = "3")]
    pub blob: bytes::Bytes,
}

/// What opens a snapshot stream on a member: the channel of its client
/// and, when etcd authentication is on, the token of the client's user.
#[derive(Clone, Debug)]
pub struct EtcdSnapshots {
    channel: tonic::transport::Channel,
    token: Option<AsciiMetadataValue>,
}

impl EtcdSnapshots {
    /// Calls over `channel`, with `token` when authentication is on.
    #[must_use]
    pub const fn new(channel: tonic::transport::Channel, token: Option<AsciiMetadataValue>) -> Self {
        Self { channel, token }
    }

    /// Starts the stream.
    ///
    /// # Errors
    /// etcd's refusal, or the channel's failure, as a status.
    pub async fn open(&self) -> Result<tonic::Streaming<SnapshotPiece>, tonic::Status> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready()
            .await
            .map_err(|error| tonic::Status::unavailable(format!("the member's channel is not ready: {error}")))?;
        // etcd's SnapshotRequest has no fields: an empty message.
        let mut request = tonic::Request::new(());
        if let Some(token) = &self.token {
            request.metadata_mut().insert(TOKEN_HEADER, token.clone());
        }
        let response = grpc
            .server_streaming(
                request,
                PathAndQuery::from_static(SNAPSHOT_PATH),
                tonic_prost::ProstCodec::<(), SnapshotPiece>::default(),
            )
            .await?;
        Ok(response.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// etcd's `SnapshotResponse` as etcd sends it: header (1),
    /// remaining_bytes (2), blob (3), version (4).
    fn etcd_response(blob: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        // header: a message with cluster_id (1) = 7.
        out.extend_from_slice(&[0x0a, 0x02, 0x08, 0x07]);
        // remaining_bytes = 300.
        out.extend_from_slice(&[0x10, 0xac, 0x02]);
        out.push(0x1a);
        prost::encoding::encode_varint(blob.len() as u64, &mut out);
        out.extend_from_slice(blob);
        // version = "3.6.0".
        out.extend_from_slice(&[0x22, 0x05]);
        out.extend_from_slice(b"3.6.0");
        out
    }

    #[test]
    fn the_blob_is_read_and_the_other_fields_are_skipped() {
        let blob: Vec<u8> = (0..=255).cycle().take(40_000).collect();
        let encoded = bytes::Bytes::from(etcd_response(&blob));
        let piece = <SnapshotPiece as prost::Message>::decode(encoded).expect("decodes");
        assert_eq!(piece.blob, blob);
    }

    #[test]
    fn the_blob_is_a_slice_of_the_buffer_it_arrived_in() {
        let blob = vec![9_u8; 32 << 10];
        let encoded = bytes::Bytes::from(etcd_response(&blob));
        let range = encoded.as_ptr_range();
        let piece = <SnapshotPiece as prost::Message>::decode(encoded.clone()).expect("decodes");
        assert!(
            range.contains(&piece.blob.as_ptr()),
            "the blob points into the message's buffer, not a copy"
        );
    }
}
