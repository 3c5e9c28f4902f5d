//! Rich error details in the form every gRPC implementation understands:
//! the `grpc-status-details-bin` trailer holds a `google.rpc.Status` whose
//! `details` carry `google.protobuf.Any` messages. steward puts an
//! `ActivationFailure` there when an Activate or Rollback is reverted.

use prost::Message;

use crate::v1::ActivationFailure;

/// `google.rpc.Status`, declared here so that no extra crate is needed.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    /// The gRPC status code.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// The status message.
    #[prost(string, tag = "2")]
    pub message: String,
    /// Typed details.
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<prost_types::Any>,
}

/// The `Any` type URL of [`ActivationFailure`].
pub const ACTIVATION_FAILURE_TYPE_URL: &str = "type.googleapis.com/steward.agent.v1.ActivationFailure";

/// Encodes the details bytes of a status carrying `failure`.
#[must_use]
pub fn encode_activation_failure(code: tonic::Code, message: &str, failure: &ActivationFailure) -> Vec<u8> {
    RpcStatus {
        code: code as i32,
        message: message.to_owned(),
        details: vec![prost_types::Any {
            type_url: ACTIVATION_FAILURE_TYPE_URL.to_owned(),
            value: failure.encode_to_vec(),
        }],
    }
    .encode_to_vec()
}

/// Finds the [`ActivationFailure`] in a status's details, if there is one.
#[must_use]
pub fn decode_activation_failure(details: &[u8]) -> Option<ActivationFailure> {
    let status = RpcStatus::decode(details).ok()?;
    status
        .details
        .iter()
        .find(|any| any.type_url == ACTIVATION_FAILURE_TYPE_URL)
        .and_then(|any| ActivationFailure::decode(any.value.as_slice()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let failure = ActivationFailure {
            attempted_version: "3.5.16".into(),
            reverted_to: "3.4.23".into(),
            reason: "etcd exited".into(),
            log_tail: vec!["a".into(), "b".into()],
        };
        let bytes = encode_activation_failure(tonic::Code::Aborted, "failed", &failure);
        assert_eq!(decode_activation_failure(&bytes), Some(failure));
        assert_eq!(decode_activation_failure(b"garbage"), None);
        assert_eq!(decode_activation_failure(&[]), None);
    }
}
