//! The flag rules of etcd 3.6 and 3.7, both ways.
//!
//! 3.6 deprecated every `--experimental-*` flag: most became the same flag
//! without the prefix, the boolean ones that switch features became
//! `--feature-gates` entries. 3.7 removed the experimental names. It also
//! dropped v2 (`--enable-v2`, `--experimental-enable-v2v3`, the v2 proxy
//! and, in 3.7, v2 discovery). Sources: the 3.6 upgrade guide ("Flags
//! removed", "Flags deprecated", "Equivalent flags of v3.5 feature gates"),
//! the 3.7 upgrade guide ("Flags removed") and the 3.7 -> 3.6 downgrade
//! guide ("Difference in flags"); the lists were checked against each
//! release's flag set.

use super::{Flag, Rules, rules};

/// `--experimental-X` of 3.5 that 3.6 calls `--X`, the same setting.
pub(super) const RENAMED_IN_3_6: &[(&str, &str)] = &[
    (
        "--experimental-bootstrap-defrag-threshold-megabytes",
        "--bootstrap-defrag-threshold-megabytes",
    ),
    ("--experimental-compaction-batch-limit", "--compaction-batch-limit"),
    ("--experimental-compact-hash-check-time", "--compact-hash-check-time"),
    (
        "--experimental-compaction-sleep-interval",
        "--compaction-sleep-interval",
    ),
    ("--experimental-corrupt-check-time", "--corrupt-check-time"),
    (
        "--experimental-enable-distributed-tracing",
        "--enable-distributed-tracing",
    ),
    (
        "--experimental-distributed-tracing-address",
        "--distributed-tracing-address",
    ),
    (
        "--experimental-distributed-tracing-instance-id",
        "--distributed-tracing-instance-id",
    ),
    (
        "--experimental-distributed-tracing-sampling-rate",
        "--distributed-tracing-sampling-rate",
    ),
    (
        "--experimental-distributed-tracing-service-name",
        "--distributed-tracing-service-name",
    ),
    ("--experimental-downgrade-check-time", "--downgrade-check-time"),
    ("--experimental-memory-mlock", "--memory-mlock"),
    (
        "--experimental-peer-skip-client-san-verification",
        "--peer-skip-client-san-verification",
    ),
    ("--experimental-snapshot-catchup-entries", "--snapshot-catchup-entries"),
    ("--experimental-warning-apply-duration", "--warning-apply-duration"),
    (
        "--experimental-watch-progress-notify-interval",
        "--watch-progress-notify-interval",
    ),
];

/// Flags 3.6 has that 3.5 has under no name: dropped on the way down.
const NOT_IN_3_5: &[&str] = &[
    "--warning-unary-request-duration",
    "--max-learners",
    "--log-format",
    "--discovery-token",
    "--discovery-endpoints",
    "--discovery-dial-timeout",
    "--discovery-request-timeout",
    "--discovery-keepalive-time",
    "--discovery-keepalive-timeout",
    "--discovery-insecure-transport",
    "--discovery-insecure-skip-tls-verify",
    "--discovery-cert",
    "--discovery-key",
    "--discovery-cacert",
    "--discovery-user",
    "--discovery-password",
];

/// The boolean `--experimental-X` of 3.5 that 3.6 turns into feature gates.
pub(super) const GATES: &[(&str, &str)] = &[
    ("--experimental-compact-hash-check-enabled", "CompactHashCheck"),
    ("--experimental-initial-corrupt-check", "InitialCorruptCheck"),
    ("--experimental-enable-lease-checkpoint", "LeaseCheckpoint"),
    (
        "--experimental-enable-lease-checkpoint-persist",
        "LeaseCheckpointPersist",
    ),
    ("--experimental-stop-grpc-service-on-defrag", "StopGRPCServiceOnDefrag"),
    (
        "--experimental-txn-mode-write-with-shared-buffer",
        "TxnModeWriteWithSharedBuffer",
    ),
];

const FEATURE_GATES: &str = "--feature-gates";

/// The v2 proxy's flags, gone in 3.6.
const PROXY_FLAGS: &[&str] = &[
    "--proxy-failure-wait",
    "--proxy-refresh-interval",
    "--proxy-dial-timeout",
    "--proxy-write-timeout",
    "--proxy-read-timeout",
];

/// Rules for a target of 3.6 or later.
pub(super) fn up_to_3_6(r: &mut Rules) {
    for (old, new) in RENAMED_IN_3_6 {
        r.rename(
            old,
            new,
            rules::EXPERIMENTAL_3_6,
            "3.6 deprecates the experimental name and 3.7 removes it; the flag without the prefix is the same setting",
        );
    }
    for (old, gate) in GATES {
        r.switch_to_gate(old, gate);
    }
    r.refuse_if(
        |f| f.name == "--experimental-enable-v2v3",
        rules::V2V3_3_6,
        "etcd 3.6 has no v2 emulation: move its v2 clients to the v3 API and remove the flag first",
    );
    r.refuse_if(
        |f| f.name == "--v2-deprecation" && f.value.as_deref() == Some("not-yet"),
        rules::V2_DEPRECATION_3_6,
        "etcd 3.6 does not support --v2-deprecation=not-yet (its default is write-only): remove the flag first",
    );
    r.refuse_if(
        |f| f.name == "--proxy" && f.value.as_deref() != Some("off"),
        rules::PROXY_3_6,
        "etcd 3.6 has no v2 proxy: a member cannot run as one",
    );
    r.remove(
        "--proxy",
        rules::PROXY_3_6,
        "etcd 3.6 has no v2 proxy (--proxy=off is its only mode)",
    );
    for name in PROXY_FLAGS {
        r.remove(name, rules::PROXY_3_6, "etcd 3.6 has no v2 proxy");
    }
}

/// Rules for a target of 3.7 or later, after [`up_to_3_6`].
pub(super) fn up_to_3_7(r: &mut Rules) {
    for name in ["--discovery", "--discovery-proxy"] {
        r.remove(
            name,
            rules::V2_DISCOVERY_3_7,
            "etcd 3.7 has no v2 discovery; the flag only matters when a member first joins, which this one has",
        );
    }
    r.refuse_if(
        |f| f.name.starts_with("--experimental-"),
        rules::EXPERIMENTAL_3_7,
        "etcd 3.7 removed every --experimental-* flag and this one has no known successor: replace it with its \
         3.6 equivalent first",
    );
}

/// Rules for a target before 3.6: the names and gates 3.6 introduced go back
/// to 3.5's experimental flags.
pub(super) fn down_to_3_5(r: &mut Rules) {
    for (old, new) in RENAMED_IN_3_6 {
        r.rename(
            new,
            old,
            rules::EXPERIMENTAL_NAMES_3_5,
            "etcd before 3.6 knows this setting only by its experimental name",
        );
    }
    r.gates_to_switches();
    for name in NOT_IN_3_5 {
        r.remove(name, rules::NOT_IN_3_5, "etcd before 3.6 does not have this flag");
    }
}

impl Rules {
    /// Moves an experimental switch into `--feature-gates` as `gate=value`.
    fn switch_to_gate(&mut self, name: &str, gate: &str) {
        let Some(index) = self.position(name) else { return };
        let flag = self.flags.remove(index);
        let enabled = match flag.value.as_deref() {
            None | Some("true") => "true",
            Some("false") => "false",
            Some(other) => {
                self.flags.insert(index, flag.clone());
                self.push(
                    super::ChangeKind::Refused,
                    &flag,
                    "",
                    "",
                    rules::FEATURE_GATES_3_6,
                    &format!("{name} takes true or false, not {other:?}"),
                );
                return;
            }
        };
        let entry = format!("{gate}={enabled}");
        let reason = format!("3.6 replaces {name} with the feature gate {gate}, and 3.7 removes the flag");
        let gates = match self.position(FEATURE_GATES) {
            Some(at) => {
                let current = self.flags[at].value_text();
                match gate_value(&current, gate) {
                    Some(same) if same == enabled => {
                        self.push(
                            super::ChangeKind::Removed,
                            &flag,
                            "",
                            "",
                            rules::FEATURE_GATES_3_6,
                            &format!("{reason}; {FEATURE_GATES} already sets {gate}={same}"),
                        );
                        return;
                    }
                    Some(other) => {
                        self.flags.insert(index, flag.clone());
                        self.push(
                            super::ChangeKind::Refused,
                            &flag,
                            "",
                            "",
                            rules::FEATURE_GATES_3_6,
                            &format!("{reason}, and {FEATURE_GATES} sets {gate}={other}"),
                        );
                        return;
                    }
                    None => {
                        let merged = if current.is_empty() {
                            entry
                        } else {
                            format!("{current},{entry}")
                        };
                        self.flags[at].value = Some(merged.clone());
                        merged
                    }
                }
            }
            None => {
                self.flags.insert(index, Flag::new(FEATURE_GATES, entry.clone()));
                entry
            }
        };
        self.push(
            super::ChangeKind::Renamed,
            &flag,
            FEATURE_GATES,
            &gates,
            rules::FEATURE_GATES_3_6,
            &reason,
        );
    }

    /// Turns `--feature-gates` back into 3.5's experimental switches; a gate
    /// 3.5 has no switch for is dropped when off and refused when on.
    fn gates_to_switches(&mut self) {
        let Some(index) = self.position(FEATURE_GATES) else {
            return;
        };
        let flag = self.flags.remove(index);
        let mut at = index;
        for entry in flag.value_text().split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (gate, value) = entry.split_once('=').unwrap_or((entry, "true"));
            let original = Flag::new(FEATURE_GATES, entry);
            match GATES.iter().find(|(_, g)| *g == gate) {
                Some((switch, _)) if self.position(switch).is_none() => {
                    self.flags.insert(at, Flag::new(switch, value));
                    at += 1;
                    self.push(
                        super::ChangeKind::Renamed,
                        &original,
                        switch,
                        value,
                        rules::FEATURE_GATES_3_5,
                        &format!("etcd before 3.6 has no feature gates; {gate} is {switch} there"),
                    );
                }
                Some((switch, _)) => self.push(
                    super::ChangeKind::Removed,
                    &original,
                    "",
                    "",
                    rules::FEATURE_GATES_3_5,
                    &format!("etcd before 3.6 has no feature gates, and {switch} is already set"),
                ),
                None if value == "false" => self.push(
                    super::ChangeKind::Removed,
                    &original,
                    "",
                    "",
                    rules::FEATURE_GATES_3_5,
                    &format!("etcd before 3.6 does not have the feature {gate}; it is off here anyway"),
                ),
                None => self.push(
                    super::ChangeKind::Refused,
                    &original,
                    "",
                    "",
                    rules::FEATURE_GATES_3_5,
                    &format!("etcd before 3.6 does not have the feature {gate}: turn it off first"),
                ),
            }
        }
    }
}

/// The value `gates` (`A=true,B=false`) gives `gate`, if any.
fn gate_value<'a>(gates: &'a str, gate: &str) -> Option<&'a str> {
    gates
        .split(',')
        .map(str::trim)
        .find_map(|entry| match entry.split_once('=') {
            Some((name, value)) if name == gate => Some(value),
            None if entry == gate => Some("true"),
            _ => None,
        })
}
