//! The longest value each string field of a request may have, checked
//! before anything else reads it. A longer one is refused
//! `INVALID_ARGUMENT` naming the field and its limit, without echoing the
//! value: a caller decides neither the size of an answer nor of a log line.
//! docs/api.md lists every limit.

use steward_proto::v1 as pb;

use crate::error::AgentError;

/// An etcd version (`3.5.30`, `v3.6.0-rc.1`).
pub const VERSION: usize = 32;
/// A sha256, in hex.
pub const SHA256: usize = 64;
/// A snapshot or restore id, a pin label, a member name, a cluster token.
pub const NAME: usize = 128;
/// A path on the agent's host (Linux's PATH_MAX).
pub const PATH: usize = 4096;
/// `--initial-cluster`: every member's name and peer URLs.
pub const INITIAL_CLUSTER: usize = 16 * 1024;

/// The string fields of a request, each with its limit.
pub trait Limited {
    /// `(field, value, longest)` for every string field.
    fn strings(&self) -> Vec<(&'static str, &str, usize)>;

    /// Refuses the first field over its limit.
    ///
    /// # Errors
    /// [`AgentError::InvalidArgument`] naming it.
    fn check_lengths(&self) -> Result<(), AgentError> {
        for (field, value, longest) in self.strings() {
            if value.len() > longest {
                return Err(AgentError::InvalidArgument {
                    field,
                    reason: format!("is {} bytes long; at most {longest} are accepted", value.len()),
                });
            }
        }
        Ok(())
    }
}

impl Limited for pb::CheckFlagsRequest {
    fn strings(&self) -> Vec<(&'static str, &str, usize)> {
        vec![
            ("target_version", &self.target_version, VERSION),
            ("from_version", &self.from_version, VERSION),
        ]
    }
}

impl Limited for pb::ActivateRequest {
    fn strings(&self) -> Vec<(&'static str, &str, usize)> {
        vec![("version", &self.version, VERSION)]
    }
}

impl Limited for pb::RestoreMemberRequest {
    fn strings(&self) -> Vec<(&'static str, &str, usize)> {
        vec![
            ("restore_id", &self.restore_id, NAME),
            ("snapshot_id", &self.snapshot_id, NAME),
            ("version", &self.version, VERSION),
            ("initial_cluster", &self.initial_cluster, INITIAL_CLUSTER),
            ("initial_cluster_token", &self.initial_cluster_token, NAME),
        ]
    }
}

impl Limited for pb::FinishRestoreRequest {
    fn strings(&self) -> Vec<(&'static str, &str, usize)> {
        vec![("restore_id", &self.restore_id, NAME)]
    }
}

impl Limited for pb::ImportBinaryRequest {
    fn strings(&self) -> Vec<(&'static str, &str, usize)> {
        vec![
            ("path", &self.path, PATH),
            ("version", &self.version, VERSION),
            ("sha256", &self.sha256, SHA256),
        ]
    }
}

impl Limited for pb::UploadHeader {
    fn strings(&self) -> Vec<(&'static str, &str, usize)> {
        vec![
            ("header.version", &self.version, VERSION),
            ("header.sha256", &self.sha256, SHA256),
        ]
    }
}

impl Limited for pb::PinSnapshotRequest {
    fn strings(&self) -> Vec<(&'static str, &str, usize)> {
        vec![("id", &self.id, NAME), ("pin", &self.pin, NAME)]
    }
}

impl Limited for pb::DownloadSnapshotRequest {
    fn strings(&self) -> Vec<(&'static str, &str, usize)> {
        vec![("id", &self.id, NAME)]
    }
}

impl Limited for pb::SnapshotUploadHeader {
    fn strings(&self) -> Vec<(&'static str, &str, usize)> {
        vec![
            ("header.id", &self.id, NAME),
            ("header.sha256", &self.sha256, SHA256),
            ("header.member_name", &self.member_name, NAME),
            ("header.etcd_version", &self.etcd_version, VERSION),
            ("header.cluster_version", &self.cluster_version, VERSION),
        ]
    }
}

impl Limited for pb::ImportSnapshotRequest {
    fn strings(&self) -> Vec<(&'static str, &str, usize)> {
        let mut strings = vec![("path", self.path.as_str(), PATH)];
        if let Some(header) = &self.header {
            strings.extend(header.strings());
        }
        strings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_over_its_limit_is_named_and_not_echoed() {
        let request = pb::RestoreMemberRequest {
            initial_cluster: "m=".repeat(60_000),
            ..pb::RestoreMemberRequest::default()
        };
        let error = request.check_lengths().unwrap_err().to_string();
        assert!(error.contains("initial_cluster") && error.contains("16384"), "{error}");
        assert!(error.len() < 200, "{error}");
        let fine = pb::ActivateRequest {
            version: "3.5.30".into(),
            ..pb::ActivateRequest::default()
        };
        assert!(fine.check_lengths().is_ok());
    }
}
