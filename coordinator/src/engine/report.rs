//! What every report begins with, so a script reading reports of many
//! clusters and many steward versions knows what it holds: the schema
//! and its version, the cluster, when the run began, which steward ran it,
//! and the fencing token it held.

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The schema of `steward upgrade|downgrade|rollback -w json`.
pub const ROLL_SCHEMA: &str = "steward.report/v1";
/// The schema of `steward restore -w json` and `rollback --to-snapshot`.
pub const RESTORE_SCHEMA: &str = "steward.restore-report/v1";
/// The schema of `steward fleet ... -w json`.
pub const FLEET_SCHEMA: &str = "steward.fleet-report/v1";
/// The schema of every `--events` line.
pub const EVENT_SCHEMA: &str = "steward.event/v1";

/// Which run, and which cluster, a report or an event line belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunContext {
    /// The run's id: one per `steward` invocation, shared by every cluster
    /// of a fleet run.
    pub run: String,
    /// The cluster's name, when it has one.
    pub cluster: Option<String>,
}

impl RunContext {
    /// A new run on `cluster`.
    #[must_use]
    pub fn new(cluster: Option<String>) -> Self {
        Self {
            run: new_run_id(),
            cluster,
        }
    }

    /// The same run on another cluster.
    #[must_use]
    pub fn for_cluster(&self, cluster: &str) -> Self {
        Self {
            run: self.run.clone(),
            cluster: Some(cluster.to_owned()),
        }
    }
}

/// A run id that sorts by time: UTC start to the microsecond, and the
/// process id (`20261204T153012.123456Z-4242`).
#[must_use]
pub fn new_run_id() -> String {
    let now = OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}.{:06}Z-{}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.microsecond(),
        std::process::id()
    )
}

/// The first fields of every report.
#[derive(Clone, Debug, Serialize)]
pub struct ReportHeader {
    /// What the report is and its version, e.g. `steward.report/v1`. A
    /// field is only ever added within one version.
    pub schema: &'static str,
    /// The run's id (the `run` of its event lines).
    pub run: String,
    /// The cluster's name (the cluster file's `name`, or the inventory's).
    pub cluster: Option<String>,
    /// etcd's cluster id, hex, once the cluster was reached.
    pub cluster_id: Option<String>,
    /// When the run began, RFC 3339 in UTC.
    pub started_at: String,
    /// The steward that ran it.
    pub steward_version: &'static str,
    /// The fencing token of the cluster lock the run held (0: it took
    /// none).
    pub fencing_token: i64,
}

impl ReportHeader {
    /// A header for a run of `schema` that begins now.
    #[must_use]
    pub fn begin(schema: &'static str, context: &RunContext) -> Self {
        Self {
            schema,
            run: context.run.clone(),
            cluster: context.cluster.clone(),
            cluster_id: None,
            started_at: now_rfc3339(),
            steward_version: env!("CARGO_PKG_VERSION"),
            fencing_token: 0,
        }
    }

    /// Records etcd's cluster id (0 means it was not known).
    pub fn set_cluster_id(&mut self, id: u64) {
        if id != 0 {
            self.cluster_id = Some(format!("{id:016x}"));
        }
    }
}

/// Now, as RFC 3339 in UTC.
#[must_use]
pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default()
}

/// A duration as the whole milliseconds every report's `_ms` field holds
/// (a duration too long for `u64` saturates).
#[must_use]
pub fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_names_its_schema_version_and_start() {
        let context = RunContext::new(Some("eu-1".into()));
        let mut header = ReportHeader::begin(ROLL_SCHEMA, &context);
        header.set_cluster_id(0);
        assert_eq!(header.cluster_id, None);
        header.set_cluster_id(0xdead_beef);
        let json = serde_json::to_value(&header).unwrap();
        assert_eq!(json["schema"], "steward.report/v1");
        assert_eq!(json["cluster"], "eu-1");
        assert_eq!(json["run"], context.run.as_str());
        assert_eq!(context.for_cluster("us-1").run, context.run);
        assert_eq!(json["cluster_id"], "00000000deadbeef");
        assert_eq!(json["steward_version"], env!("CARGO_PKG_VERSION"));
        assert!(
            OffsetDateTime::parse(json["started_at"].as_str().unwrap(), &Rfc3339).is_ok(),
            "{json}"
        );
    }
}
