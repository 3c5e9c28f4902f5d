//! How values look in steward's output: member ids as hex, timestamps as
//! RFC 3339, durations and byte counts for people, and the contract's
//! enums as short lowercase words. Views and tables both use these, so
//! table and JSON never disagree on a value.

use std::time::Duration;

use steward_proto::v1 as pb;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A member or cluster id as etcd and etcdctl print it: 16 lowercase hex
/// digits.
#[must_use]
pub fn hex_id(id: u64) -> String {
    format!("{id:016x}")
}

/// A member id where 0 means "none" (no leader, member did not answer).
#[must_use]
pub fn optional_hex_id(id: u64) -> Option<String> {
    (id != 0).then(|| hex_id(id))
}

/// A contract timestamp as RFC 3339 in UTC; `None` when it is absent or out
/// of range.
#[must_use]
pub fn rfc3339(timestamp: Option<&prost_types::Timestamp>) -> Option<String> {
    let timestamp = timestamp?;
    let nanos = i128::from(timestamp.seconds) * 1_000_000_000 + i128::from(timestamp.nanos);
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()?
        .format(&Rfc3339)
        .ok()
}

/// A contract duration as a std duration; `None` when absent or negative.
#[must_use]
pub fn duration(value: Option<&prost_types::Duration>) -> Option<Duration> {
    value.and_then(|d| Duration::try_from(*d).ok())
}

/// A duration in seconds, as JSON carries it, to the millisecond (finer
/// digits are noise for process uptimes and switch times, and a rounded
/// value prints without float artefacts like `1.4337107279999999`).
#[must_use]
pub fn seconds(value: Option<Duration>) -> Option<f64> {
    // Precision loss needs more than 2^53 ms (285,000 years).
    #[allow(clippy::cast_precision_loss)]
    value.map(|d| d.as_millis() as f64 / 1000.0)
}

/// A duration for people, to the second (uptimes: `3h 2m 1s`).
#[must_use]
pub fn human_duration_secs(value: Duration) -> String {
    humantime::format_duration(Duration::from_secs(value.as_secs())).to_string()
}

/// A duration for people, to the millisecond (how long a switch took).
#[must_use]
pub fn human_duration_millis(value: Duration) -> String {
    humantime::format_duration(Duration::from_millis(crate::engine::report::millis(value))).to_string()
}

/// A byte count for people, in binary units: `512 B`, `1.5 KiB`, `24.0 MiB`.
#[must_use]
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    // Precision loss above 2^53 bytes is far below what one decimal shows.
    #[allow(clippy::cast_precision_loss)]
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `yes` / `no`, as tables print booleans.
#[must_use]
pub const fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

/// The text, or `-` when it is empty (tables never show a blank cell for
/// "nothing").
#[must_use]
pub fn or_dash(value: Option<&str>) -> String {
    match value {
        Some(text) if !text.is_empty() => text.to_owned(),
        _ => "-".to_owned(),
    }
}

/// An empty string as `None`: the contract uses "" for "not set", JSON
/// uses null.
#[must_use]
pub fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

/// An agent state as a word: `running`, `failed`, ...
#[must_use]
pub fn agent_state(value: i32) -> String {
    match pb::AgentState::try_from(value) {
        Ok(pb::AgentState::Unspecified) => "unspecified".to_owned(),
        Ok(pb::AgentState::Empty) => "empty".to_owned(),
        Ok(pb::AgentState::Stopped) => "stopped".to_owned(),
        Ok(pb::AgentState::Running) => "running".to_owned(),
        Ok(pb::AgentState::Activating) => "activating".to_owned(),
        Ok(pb::AgentState::RollingBack) => "rolling_back".to_owned(),
        Ok(pb::AgentState::Failed) => "failed".to_owned(),
        Ok(pb::AgentState::Restoring) => "restoring".to_owned(),
        // A newer agent may add states; show the number rather than guess.
        Err(_) => format!("unknown({value})"),
    }
}

/// A tool as its program name: `etcd`, `etcdctl`, `etcdutl`.
#[must_use]
pub fn tool(value: i32) -> String {
    match pb::Tool::try_from(value) {
        Ok(pb::Tool::Etcd) => "etcd".to_owned(),
        Ok(pb::Tool::Etcdctl) => "etcdctl".to_owned(),
        Ok(pb::Tool::Etcdutl) => "etcdutl".to_owned(),
        Ok(pb::Tool::Unspecified) => "unspecified".to_owned(),
        Err(_) => format!("unknown({value})"),
    }
}

/// A flag change kind as a word: `added`, `renamed`, `refused`, ...
#[must_use]
pub fn change_kind(value: i32) -> String {
    use pb::flag_change::Kind;
    match Kind::try_from(value) {
        Ok(Kind::Unspecified) => "unspecified".to_owned(),
        Ok(Kind::Added) => "added".to_owned(),
        Ok(Kind::Removed) => "removed".to_owned(),
        Ok(Kind::Renamed) => "renamed".to_owned(),
        Ok(Kind::Changed) => "changed".to_owned(),
        Ok(Kind::Refused) => "refused".to_owned(),
        Err(_) => format!("unknown({value})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_16_lowercase_hex_digits() {
        assert_eq!(hex_id(0x8e9e_05c5_2164_694d), "8e9e05c52164694d");
        assert_eq!(hex_id(1), "0000000000000001");
        assert_eq!(optional_hex_id(0), None);
        assert_eq!(optional_hex_id(255).as_deref(), Some("00000000000000ff"));
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let ts = prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 250_000_000,
        };
        assert_eq!(rfc3339(Some(&ts)).as_deref(), Some("2023-11-14T22:13:20.25Z"));
        assert_eq!(rfc3339(None), None);
    }

    #[test]
    fn durations_for_people_and_for_json() {
        let d = Duration::from_millis(3_723_456);
        assert_eq!(human_duration_secs(d), "1h 2m 3s");
        assert_eq!(human_duration_millis(Duration::from_millis(1_234)), "1s 234ms");
        assert_eq!(seconds(Some(Duration::from_millis(1_500))), Some(1.5));
        assert_eq!(seconds(Some(Duration::from_nanos(1_433_710_728))), Some(1.433));
        let pd = prost_types::Duration { seconds: 2, nanos: 0 };
        assert_eq!(duration(Some(&pd)), Some(Duration::from_secs(2)));
    }

    #[test]
    fn bytes_in_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(25 * 1024 * 1024), "25.0 MiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn enums_are_words() {
        assert_eq!(agent_state(pb::AgentState::RollingBack.into()), "rolling_back");
        assert_eq!(agent_state(42), "unknown(42)");
        assert_eq!(tool(pb::Tool::Etcdutl.into()), "etcdutl");
        assert_eq!(change_kind(pb::flag_change::Kind::Renamed.into()), "renamed");
    }
}
