//! What the last rolling change set out to do, kept in the cluster under
//! `<prefix>/last-roll`: `steward upgrade` and `downgrade` write it once
//! their checks have passed and before they change anything, and
//! `steward rollback` reads it to know which way to undo. Member versions
//! alone cannot tell: after an older upgrade, the members a later
//! downgrade has not reached yet look exactly like changed members.

use serde::{Deserialize, Serialize};

use crate::engine::connect::Connector;
use crate::engine::connect::etcd::{self, EtcdError};
use crate::engine::roll::SnapshotRecord;
use crate::engine::roll::plan::Direction;

/// The record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRoll {
    /// Which way the versions moved.
    pub direction: Direction,
    /// The version the cluster started from.
    pub from: String,
    /// The target.
    pub to: String,
    /// The fencing token of the run that wrote it.
    pub token: i64,
    /// The verified snapshot taken before the first member changed, once
    /// there is one.
    #[serde(default)]
    pub snapshot: Option<SnapshotRecord>,
}

fn key(prefix: &str) -> String {
    format!("{}/last-roll", prefix.trim_end_matches('/'))
}

/// Writes `roll` through `endpoints`.
///
/// # Errors
/// etcd's error, described.
pub async fn record(
    connector: &Connector,
    endpoints: &[String],
    prefix: &str,
    roll: &LastRoll,
) -> Result<(), LastRollError> {
    let value = serde_json::to_string(roll).map_err(|e| LastRollError::Malformed {
        key: key(prefix),
        reason: e.to_string(),
    })?;
    etcd::through_any(connector, endpoints, "the last-roll record", |mut client| {
        let value = value.clone();
        async move { client.put(key(prefix), value, None).await.map(|_| ()) }
    })
    .await?;
    Ok(())
}

/// Why the record could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum LastRollError {
    /// etcd did not answer.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// The record is not what steward writes.
    #[error("{key} is not a last-roll record: {reason}")]
    Malformed {
        /// Its key.
        key: String,
        /// What serde said.
        reason: String,
    },
}

/// Reads the record; `Ok(None)` when there is none (no change recorded yet).
///
/// # Errors
/// etcd's error, or a record that is not valid JSON.
pub async fn read(
    connector: &Connector,
    endpoints: &[String],
    prefix: &str,
) -> Result<Option<LastRoll>, LastRollError> {
    let answer = etcd::through_any(connector, endpoints, "the last-roll record", |mut client| async move {
        client.get(key(prefix), None).await
    })
    .await?;
    answer
        .kvs()
        .first()
        .map(|kv| {
            serde_json::from_slice(kv.value()).map_err(|e| LastRollError::Malformed {
                key: key(prefix),
                reason: e.to_string(),
            })
        })
        .transpose()
}

/// Deletes the record (the change it describes was undone by a restore).
///
/// # Errors
/// etcd's error, described.
pub async fn remove(connector: &Connector, endpoints: &[String], prefix: &str) -> Result<(), EtcdError> {
    etcd::through_any(connector, endpoints, "the last-roll record", |mut client| async move {
        client.delete(key(prefix), None).await.map(|_| ())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_is_plain_json_under_the_prefix() {
        let roll = LastRoll {
            direction: Direction::Downgrade,
            from: "3.5.30".into(),
            to: "3.5.16".into(),
            token: 42,
            snapshot: None,
        };
        let text = serde_json::to_string(&roll).unwrap();
        assert_eq!(
            text,
            r#"{"direction":"downgrade","from":"3.5.30","to":"3.5.16","token":42,"snapshot":null}"#
        );
        // A record without a snapshot field (written before it existed).
        let older = r#"{"direction":"downgrade","from":"3.5.30","to":"3.5.16","token":42}"#;
        assert_eq!(serde_json::from_str::<LastRoll>(older).unwrap(), roll);
        assert_eq!(serde_json::from_str::<LastRoll>(&text).unwrap(), roll);
        assert_eq!(key("/steward/"), "/steward/last-roll");
    }
}
