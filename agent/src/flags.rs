//! Renders etcd's command line for a member under a given etcd version.
//!
//! The member spec is written once; etcd's flags changed between releases.
//! `render` turns the spec into arguments for one target version and applies
//! every flag rule of the etcd upgrade and downgrade guides, recording each
//! difference as a [`FlagChange`] with the rule that caused it. It is a pure
//! function: the agent's CheckFlags and Activate both call it, and the unit
//! tests below cover every rule.

use steward_proto::EtcdVersion;

use crate::config::MemberSpec;

mod v3_6;

/// What a rule did to one flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// Added for the target version.
    Added,
    /// Dropped: the target version does not have the flag.
    Removed,
    /// Renamed to the target version's name.
    Renamed,
    /// Same flag, other value.
    Changed,
    /// The target cannot run with this flag; the spec must change first.
    Refused,
}

/// One difference between the spec as written and the rendered arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlagChange {
    /// What happened.
    pub kind: ChangeKind,
    /// The flag as written in the spec (or added).
    pub flag: String,
    /// The flag as rendered (empty when removed or refused).
    pub new_flag: String,
    /// The value as written.
    pub old_value: String,
    /// The value as rendered.
    pub new_value: String,
    /// Why, in a sentence.
    pub reason: String,
    /// The rule's id (see the operator guide's rule table).
    pub rule: &'static str,
}

/// The arguments for one target version and how they differ from the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// etcd's arguments, without argv[0].
    pub args: Vec<String>,
    /// What the rules changed.
    pub changes: Vec<FlagChange>,
}

impl Rendered {
    /// The refusals among the changes.
    pub fn refusals(&self) -> impl Iterator<Item = &FlagChange> {
        self.changes.iter().filter(|c| c.kind == ChangeKind::Refused)
    }

    /// True when the target version must not be started with this spec.
    #[must_use]
    pub fn is_refused(&self) -> bool {
        self.refusals().next().is_some()
    }
}

/// The oldest etcd the renderer knows the flags of.
pub const OLDEST_SUPPORTED: (u64, u64) = (3, 0);

/// Why no arguments can be rendered at all.
#[derive(Debug, thiserror::Error)]
#[error("etcd {version} is not supported: the agent renders flags for etcd 3.0 and later")]
pub struct UnsupportedVersion {
    /// The version asked for.
    pub version: EtcdVersion,
}

/// Flags the member spec's own fields set; `extra_flags` may not repeat them.
pub const MANAGED_FLAGS: &[&str] = &[
    "--name",
    "--data-dir",
    "--listen-client-urls",
    "--advertise-client-urls",
    "--listen-peer-urls",
    "--initial-advertise-peer-urls",
    "--initial-cluster",
    "--initial-cluster-state",
    "--initial-cluster-token",
    "--cert-file",
    "--key-file",
    "--trusted-ca-file",
    "--client-cert-auth",
    "--peer-cert-file",
    "--peer-key-file",
    "--peer-trusted-ca-file",
    "--peer-client-cert-auth",
];

/// Flags `extra_flags` may not hold at all, with the reason.
pub const REFUSED_FLAGS: &[(&str, &str)] = &[(
    "--config-file",
    "etcd ignores every other command-line flag when it is given a config file, so the member spec and the version \
     rules would not apply; write the settings as member fields and extra_flags instead",
)];

/// Checks one `extra_flags` entry: `--flag` or `--flag=value`, not a flag
/// the member spec sets itself ([`MANAGED_FLAGS`]), not one of
/// [`REFUSED_FLAGS`]. The error says why.
pub fn check_extra_flag(flag: &str) -> Result<(), String> {
    if !flag.starts_with("--") || flag.len() < 3 {
        return Err(format!("{flag:?} must look like --flag or --flag=value"));
    }
    let name = flag.split_once('=').map_or(flag, |(name, _)| name);
    if MANAGED_FLAGS.contains(&name) {
        return Err(format!("{name} is set by its own member field, not by extra_flags"));
    }
    if let Some((_, reason)) = REFUSED_FLAGS.iter().find(|(refused, _)| *refused == name) {
        return Err(format!("{name} is refused: {reason}"));
    }
    Ok(())
}

/// Flags of etcd 3.5 that 3.4 does not have (the 3.5 -> 3.4 downgrade guide,
/// diffed on 3.5.14 and 3.4.33).
const FLAGS_NOT_IN_3_4: &[&str] = &[
    "--socket-reuse-port",
    "--socket-reuse-address",
    "--raft-read-timeout",
    "--raft-write-timeout",
    "--v2-deprecation",
    "--client-cert-file",
    "--client-key-file",
    "--peer-client-cert-file",
    "--peer-client-key-file",
    "--self-signed-cert-validity",
    "--enable-log-rotation",
    "--log-rotation-config-json",
    "--experimental-enable-distributed-tracing",
    "--experimental-distributed-tracing-address",
    "--experimental-distributed-tracing-service-name",
    "--experimental-distributed-tracing-instance-id",
    "--experimental-distributed-tracing-sampling-rate",
    "--experimental-compact-hash-check-enabled",
    "--experimental-compact-hash-check-time",
    "--experimental-downgrade-check-time",
    "--experimental-memory-mlock",
    "--experimental-txn-mode-write-with-shared-buffer",
    "--experimental-bootstrap-defrag-threshold-megabytes",
    "--experimental-stop-grpc-service-on-defrag",
];

/// Flags of etcd 3.4 that 3.3 does not have (`etcd --help` of 3.3.25 and
/// 3.4.23 compared); `--logger` and `--log-outputs` have rules of their own.
const FLAGS_NOT_IN_3_3: &[&str] = &[
    "--backend-batch-interval",
    "--backend-batch-limit",
    "--bcrypt-cost",
    "--client-cert-allowed-hostname",
    "--peer-cert-allowed-hostname",
    "--discovery-srv-name",
    "--host-whitelist",
    "--log-level",
    "--max-concurrent-streams",
    "--pre-vote",
    "--experimental-backend-bbolt-freelist-type",
    "--experimental-compaction-batch-limit",
    "--experimental-enable-lease-checkpoint",
    "--experimental-warning-apply-duration",
    "--experimental-watch-progress-notify-interval",
];

/// Rule ids, as the operator guide lists them.
pub mod rules {
    /// `--ca-file` / `--peer-ca-file` became `--trusted-ca-file` /
    /// `--peer-trusted-ca-file` in 3.4.
    pub const CA_FILE_3_4: &str = "flags-3.4-trusted-ca-file";
    /// Flags 3.4 lacks are removed when running 3.4.
    pub const NOT_IN_3_4: &str = "flags-3.4-not-available";
    /// The bbolt freelist flag is experimental in 3.4.
    pub const FREELIST_3_4: &str = "flags-3.4-bbolt-freelist";
    /// The bbolt freelist flag lost its experimental prefix in 3.5.
    pub const FREELIST_3_5: &str = "flags-3.5-bbolt-freelist";
    /// 3.4 members of a downgraded 3.5 cluster need
    /// `--next-cluster-version-compatible` (3.4.32 and later).
    pub const NEXT_CLUSTER_COMPAT: &str = "downgrade-3.4-next-cluster-version-compatible";
    /// A 3.5 -> 3.4 downgrade needs 3.4.32 or later.
    pub const DOWNGRADE_MIN_3_4_32: &str = "downgrade-3.4-min-3.4.32";
    /// Keep 3.5's pre-vote behaviour explicit on 3.4.
    pub const PRE_VOTE_3_4: &str = "downgrade-3.4-pre-vote";
    /// Keep 3.5's zap logger explicit on 3.4.
    pub const LOGGER_3_4: &str = "downgrade-3.4-logger";
    /// capnslog is deprecated in 3.5 (and gone in 3.6).
    pub const CAPNSLOG_3_5: &str = "flags-3.5-logger-capnslog";
    /// `--enable-v2` must go before 3.6.
    pub const ENABLE_V2_3_6: &str = "flags-3.6-enable-v2";
    /// 3.3's `--log-output` became `--log-outputs` in 3.4.
    pub const LOG_OUTPUTS_3_4: &str = "flags-3.4-log-outputs";
    /// 3.3 has no `--logger` (it always logs with capnslog).
    pub const NO_LOGGER_3_3: &str = "flags-3.3-no-logger";
    /// 3.5 removed `--debug` (use `--log-level=debug`).
    pub const DEBUG_3_5: &str = "flags-3.5-debug";
    /// 3.5 removed `--log-package-levels`.
    pub const LOG_PACKAGE_LEVELS_3_5: &str = "flags-3.5-log-package-levels";
    /// 3.4's `--log-outputs` is `--log-output` in 3.3.
    pub const LOG_OUTPUT_3_3: &str = "flags-3.3-log-output";
    /// Flags 3.4 added are removed when running 3.3.
    pub const NOT_IN_3_3: &str = "flags-3.3-not-available";
    /// 3.6 renamed most `--experimental-*` flags to the name without the
    /// prefix.
    pub const EXPERIMENTAL_3_6: &str = "flags-3.6-experimental-renamed";
    /// 3.6 turned the boolean `--experimental-*` switches into
    /// `--feature-gates` entries.
    pub const FEATURE_GATES_3_6: &str = "flags-3.6-feature-gates";
    /// 3.6 removed `--experimental-enable-v2v3`.
    pub const V2V3_3_6: &str = "flags-3.6-enable-v2v3";
    /// 3.6 does not support `--v2-deprecation=not-yet`.
    pub const V2_DEPRECATION_3_6: &str = "flags-3.6-v2-deprecation";
    /// 3.6 removed the v2 proxy and its flags.
    pub const PROXY_3_6: &str = "flags-3.6-proxy";
    /// 3.7 removed v2 discovery (`--discovery`, `--discovery-proxy`).
    pub const V2_DISCOVERY_3_7: &str = "flags-3.7-v2-discovery";
    /// 3.7 removed every `--experimental-*` flag.
    pub const EXPERIMENTAL_3_7: &str = "flags-3.7-experimental-removed";
    /// Before 3.6 the renamed flags only have their experimental names.
    pub const EXPERIMENTAL_NAMES_3_5: &str = "flags-3.5-experimental-names";
    /// Before 3.6 there are no feature gates, only experimental switches.
    pub const FEATURE_GATES_3_5: &str = "flags-3.5-feature-gates";
    /// Flags 3.6 added are removed when running 3.5 or older.
    pub const NOT_IN_3_5: &str = "flags-3.5-not-available";
    /// Only adjacent minors: a member moves one minor version at a time.
    pub const ADJACENT_MINORS: &str = "version-adjacent-minors";
}

/// One flag as an ordered `(name, value)` pair.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Flag {
    name: String,
    value: Option<String>,
}

impl Flag {
    fn new(name: &str, value: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            value: Some(value.into()),
        }
    }

    fn switch(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            value: None,
        }
    }

    fn parse(text: &str) -> Self {
        match text.split_once('=') {
            Some((name, value)) => Self::new(name, value),
            None => Self::switch(text),
        }
    }

    fn value_text(&self) -> String {
        self.value.clone().unwrap_or_default()
    }

    fn render(&self) -> String {
        match &self.value {
            Some(value) => format!("{}={value}", self.name),
            None => self.name.clone(),
        }
    }
}

/// The spec as etcd flags, before any version rule.
fn spec_flags(spec: &MemberSpec) -> Vec<Flag> {
    let mut flags = vec![
        Flag::new("--name", &spec.name),
        Flag::new("--data-dir", spec.data_dir.display().to_string()),
        Flag::new("--listen-client-urls", spec.listen_client_urls.join(",")),
        Flag::new("--advertise-client-urls", spec.advertise_client_urls.join(",")),
        Flag::new("--listen-peer-urls", spec.listen_peer_urls.join(",")),
        Flag::new(
            "--initial-advertise-peer-urls",
            spec.initial_advertise_peer_urls.join(","),
        ),
        Flag::new("--initial-cluster", &spec.initial_cluster),
        Flag::new("--initial-cluster-state", &spec.initial_cluster_state),
    ];
    if let Some(token) = &spec.initial_cluster_token {
        flags.push(Flag::new("--initial-cluster-token", token));
    }
    let tls = &spec.tls;
    for (name, path) in [
        ("--cert-file", &tls.cert_file),
        ("--key-file", &tls.key_file),
        ("--trusted-ca-file", &tls.trusted_ca_file),
        ("--peer-cert-file", &tls.peer_cert_file),
        ("--peer-key-file", &tls.peer_key_file),
        ("--peer-trusted-ca-file", &tls.peer_trusted_ca_file),
    ] {
        if let Some(path) = path {
            flags.push(Flag::new(name, path.display().to_string()));
        }
    }
    if tls.client_cert_auth {
        flags.push(Flag::switch("--client-cert-auth"));
    }
    if tls.peer_client_cert_auth {
        flags.push(Flag::switch("--peer-client-cert-auth"));
    }
    flags.extend(spec.extra_flags.iter().map(|f| Flag::parse(f)));
    flags
}

/// Renders the member's etcd arguments for `target`. `from` is the version
/// the member switches (or switched) to `target` from; the rules that only
/// apply to a downgrade, such as 3.5 -> 3.4, and the adjacent-minor rule
/// look at it. `None` is a first start.
pub fn render(
    spec: &MemberSpec,
    target: &EtcdVersion,
    from: Option<&EtcdVersion>,
) -> Result<Rendered, UnsupportedVersion> {
    let previous = from;
    if target.minor_version() < OLDEST_SUPPORTED {
        return Err(UnsupportedVersion {
            version: target.clone(),
        });
    }
    let mut rules = Rules {
        flags: spec_flags(spec),
        changes: Vec::new(),
    };
    let from_3_5 = previous.is_some_and(|p| p.at_least_minor(3, 5));

    if let Some(from) = previous
        && from.major() == target.major()
        && from.minor().abs_diff(target.minor()) > 1
    {
        rules.refuse_version(
            target,
            rules::ADJACENT_MINORS,
            &format!("{from} -> {target} skips a minor version; move one minor at a time"),
        );
    }

    if !target.at_least_minor(3, 6) {
        v3_6::down_to_3_5(&mut rules);
    }

    if !target.at_least_minor(3, 4) {
        rules.remove(
            "--logger",
            rules::NO_LOGGER_3_3,
            "etcd before 3.4 has no --logger (it logs with capnslog)",
        );
        rules.rename(
            "--log-outputs",
            "--log-output",
            rules::LOG_OUTPUT_3_3,
            "3.3 names it --log-output",
        );
        for name in FLAGS_NOT_IN_3_3 {
            rules.remove(name, rules::NOT_IN_3_3, "etcd 3.3 does not have this flag");
        }
    }

    if target.at_least_minor(3, 4) {
        rules.rename(
            "--log-output",
            "--log-outputs",
            rules::LOG_OUTPUTS_3_4,
            "3.4 renamed --log-output to --log-outputs",
        );
        rules.rename(
            "--ca-file",
            "--trusted-ca-file",
            rules::CA_FILE_3_4,
            "3.4 removed --ca-file",
        );
        rules.rename(
            "--peer-ca-file",
            "--peer-trusted-ca-file",
            rules::CA_FILE_3_4,
            "3.4 removed --peer-ca-file",
        );
    }

    if target.minor_version() == (3, 4) {
        for name in FLAGS_NOT_IN_3_4 {
            rules.remove(name, rules::NOT_IN_3_4, "etcd 3.4 does not have this flag");
        }
        rules.rename(
            "--backend-bbolt-freelist-type",
            "--experimental-backend-bbolt-freelist-type",
            rules::FREELIST_3_4,
            "3.4 only has the experimental name",
        );
        if from_3_5 {
            if target >= &EtcdVersion::new(3, 4, 32) {
                rules.add(
                    Flag::switch("--next-cluster-version-compatible"),
                    rules::NEXT_CLUSTER_COMPAT,
                    "lets 3.4 run on data a 3.5 member has written (3.4.32 and later have it)",
                );
            } else {
                rules.refuse_version(
                    target,
                    rules::DOWNGRADE_MIN_3_4_32,
                    "a 3.5 -> 3.4 downgrade needs 3.4.32 or later",
                );
            }
            rules.add(
                Flag::new("--pre-vote", "true"),
                rules::PRE_VOTE_3_4,
                "3.5 defaults to --pre-vote=true, 3.4 to false: keep the 3.5 behaviour explicit",
            );
            rules.add(
                Flag::new("--logger", "zap"),
                rules::LOGGER_3_4,
                "3.5 defaults to the zap logger, 3.4 to capnslog: keep the 3.5 behaviour explicit",
            );
        }
    }

    if target.at_least_minor(3, 5) {
        rules.rename_switch_to(
            "--debug",
            Flag::new("--log-level", "debug"),
            rules::DEBUG_3_5,
            "3.5 removed --debug; --log-level=debug does the same",
        );
        rules.remove(
            "--log-package-levels",
            rules::LOG_PACKAGE_LEVELS_3_5,
            "3.5 removed --log-package-levels (per-package levels are gone with capnslog)",
        );
        rules.rename(
            "--experimental-backend-bbolt-freelist-type",
            "--backend-bbolt-freelist-type",
            rules::FREELIST_3_5,
            "3.5 dropped the experimental prefix",
        );
        rules.change_value(
            "--logger",
            "capnslog",
            "zap",
            rules::CAPNSLOG_3_5,
            "capnslog is deprecated in 3.5 and removed in 3.6",
        );
    }

    if target.at_least_minor(3, 6) {
        v3_6::up_to_3_6(&mut rules);
        rules.refuse_if(
            |f| f.name == "--enable-v2" && f.value.as_deref() != Some("false"),
            rules::ENABLE_V2_3_6,
            "etcd 3.6 has no v2 API: remove --enable-v2 (and migrate v2 data) first",
        );
        rules.remove("--enable-v2", rules::ENABLE_V2_3_6, "etcd 3.6 has no --enable-v2");
    }

    if target.at_least_minor(3, 7) {
        v3_6::up_to_3_7(&mut rules);
    }

    Ok(Rendered {
        args: rules.flags.iter().map(Flag::render).collect(),
        changes: rules.changes,
    })
}

/// The flags being rendered and the changes made so far.
struct Rules {
    flags: Vec<Flag>,
    changes: Vec<FlagChange>,
}

impl Rules {
    fn position(&self, name: &str) -> Option<usize> {
        self.flags.iter().position(|f| f.name == name)
    }

    fn rename(&mut self, from: &str, to: &str, rule: &'static str, reason: &str) {
        let Some(index) = self.position(from) else { return };
        let flag = self.flags[index].clone();
        if let Some(existing) = self.position(to) {
            // Both spellings given: equal values collapse into the new name,
            // different values cannot be decided for the operator.
            if self.flags[existing].value == flag.value {
                self.flags.remove(index);
                self.push(
                    ChangeKind::Removed,
                    &flag,
                    "",
                    "",
                    rule,
                    &format!("{reason}; {to} is already set"),
                );
            } else {
                self.push(
                    ChangeKind::Refused,
                    &flag,
                    "",
                    "",
                    rule,
                    &format!("{reason}, and {to} is set to another value"),
                );
            }
            return;
        }
        self.flags[index].name = to.to_owned();
        let value = flag.value_text();
        self.push(ChangeKind::Renamed, &flag, to, &value, rule, reason);
    }

    /// Replaces an enabled switch (`--flag` or `--flag=true`) with another
    /// flag; a disabled one is simply dropped.
    fn rename_switch_to(&mut self, name: &str, replacement: Flag, rule: &'static str, reason: &str) {
        let Some(index) = self.position(name) else { return };
        let flag = self.flags.remove(index);
        if matches!(flag.value.as_deref(), None | Some("true")) && self.position(&replacement.name).is_none() {
            let (new_flag, new_value) = (replacement.name.clone(), replacement.value_text());
            self.flags.insert(index, replacement);
            self.push(ChangeKind::Renamed, &flag, &new_flag, &new_value, rule, reason);
        } else {
            self.push(ChangeKind::Removed, &flag, "", "", rule, reason);
        }
    }

    fn remove(&mut self, name: &str, rule: &'static str, reason: &str) {
        while let Some(index) = self.position(name) {
            let flag = self.flags.remove(index);
            self.push(ChangeKind::Removed, &flag, "", "", rule, reason);
        }
    }

    fn add(&mut self, flag: Flag, rule: &'static str, reason: &str) {
        if self.position(&flag.name).is_some() {
            return; // the spec says it explicitly; it wins
        }
        self.changes.push(FlagChange {
            kind: ChangeKind::Added,
            flag: flag.name.clone(),
            new_flag: flag.name.clone(),
            old_value: String::new(),
            new_value: flag.value_text(),
            reason: reason.to_owned(),
            rule,
        });
        self.flags.push(flag);
    }

    fn change_value(&mut self, name: &str, from: &str, to: &str, rule: &'static str, reason: &str) {
        for index in 0..self.flags.len() {
            if self.flags[index].name == name && self.flags[index].value.as_deref() == Some(from) {
                let flag = self.flags[index].clone();
                self.flags[index].value = Some(to.to_owned());
                self.push(ChangeKind::Changed, &flag, name, to, rule, reason);
            }
        }
    }

    fn refuse_if(&mut self, matches: impl Fn(&Flag) -> bool, rule: &'static str, reason: &str) {
        let refused: Vec<Flag> = self.flags.iter().filter(|f| matches(f)).cloned().collect();
        for flag in refused {
            self.push(ChangeKind::Refused, &flag, "", "", rule, reason);
        }
    }

    fn refuse_version(&mut self, target: &EtcdVersion, rule: &'static str, reason: &str) {
        self.changes.push(FlagChange {
            kind: ChangeKind::Refused,
            flag: String::new(),
            new_flag: String::new(),
            old_value: String::new(),
            new_value: target.to_string(),
            reason: reason.to_owned(),
            rule,
        });
    }

    fn push(
        &mut self,
        kind: ChangeKind,
        flag: &Flag,
        new_flag: &str,
        new_value: &str,
        rule: &'static str,
        reason: &str,
    ) {
        self.changes.push(FlagChange {
            kind,
            flag: flag.name.clone(),
            new_flag: new_flag.to_owned(),
            old_value: flag.value_text(),
            new_value: new_value.to_owned(),
            reason: reason.to_owned(),
            rule,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MemberTls;

    fn v(text: &str) -> EtcdVersion {
        text.parse().unwrap()
    }

    fn spec(extra: &[&str]) -> MemberSpec {
        MemberSpec {
            name: "m1".into(),
            data_dir: "/var/lib/etcd".into(),
            listen_client_urls: vec!["http://127.0.0.1:2379".into()],
            advertise_client_urls: vec!["http://127.0.0.1:2379".into()],
            listen_peer_urls: vec!["http://127.0.0.1:2380".into()],
            initial_advertise_peer_urls: vec!["http://127.0.0.1:2380".into()],
            initial_cluster: "m1=http://127.0.0.1:2380".into(),
            initial_cluster_state: "new".into(),
            initial_cluster_token: Some("tok".into()),
            auth: None,
            tls: MemberTls::default(),
            extra_flags: extra.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn has(rendered: &Rendered, arg: &str) -> bool {
        rendered.args.iter().any(|a| a == arg)
    }

    fn rule_applied(rendered: &Rendered, rule: &str, kind: ChangeKind) -> bool {
        rendered.changes.iter().any(|c| c.rule == rule && c.kind == kind)
    }

    #[test]
    fn base_flags_come_from_the_spec() {
        let r = render(&spec(&[]), &v("3.4.23"), None).unwrap();
        assert_eq!(r.args[0], "--name=m1");
        assert!(has(&r, "--data-dir=/var/lib/etcd"));
        assert!(has(&r, "--initial-cluster=m1=http://127.0.0.1:2380"));
        assert!(has(&r, "--initial-cluster-token=tok"));
        assert!(r.changes.is_empty(), "{:?}", r.changes);
    }

    #[test]
    fn tls_fields_render_as_flags() {
        let mut s = spec(&[]);
        s.tls.cert_file = Some("/tls/server.crt".into());
        s.tls.key_file = Some("/tls/server.key".into());
        s.tls.trusted_ca_file = Some("/tls/ca.crt".into());
        s.tls.client_cert_auth = true;
        s.tls.peer_client_cert_auth = true;
        let r = render(&s, &v("3.5.16"), None).unwrap();
        assert!(has(&r, "--cert-file=/tls/server.crt"));
        assert!(has(&r, "--trusted-ca-file=/tls/ca.crt"));
        assert!(has(&r, "--client-cert-auth"));
        assert!(has(&r, "--peer-client-cert-auth"));
    }

    #[test]
    fn ca_file_is_kept_on_3_3() {
        let r = render(
            &spec(&["--ca-file=/ca.crt", "--peer-ca-file=/peer.crt"]),
            &v("3.3.25"),
            None,
        )
        .unwrap();
        assert!(has(&r, "--ca-file=/ca.crt"));
        assert!(has(&r, "--peer-ca-file=/peer.crt"));
        assert!(r.changes.is_empty());
    }

    #[test]
    fn ca_file_becomes_trusted_ca_file_from_3_4() {
        for (target, from) in [("3.4.23", "3.3.25"), ("3.5.16", "3.4.23")] {
            let r = render(
                &spec(&["--ca-file=/ca.crt", "--peer-ca-file=/peer.crt"]),
                &v(target),
                Some(&v(from)),
            )
            .unwrap();
            assert!(has(&r, "--trusted-ca-file=/ca.crt"), "{target}: {:?}", r.args);
            assert!(has(&r, "--peer-trusted-ca-file=/peer.crt"));
            assert!(!r.args.iter().any(|a| a.starts_with("--ca-file")));
            let change = &r.changes[0];
            assert_eq!(change.kind, ChangeKind::Renamed);
            assert_eq!(change.flag, "--ca-file");
            assert_eq!(change.new_flag, "--trusted-ca-file");
            assert_eq!(change.rule, rules::CA_FILE_3_4);
        }
    }

    #[test]
    fn ca_file_next_to_trusted_ca_file() {
        let mut s = spec(&["--ca-file=/ca.crt"]);
        s.tls.trusted_ca_file = Some("/ca.crt".into());
        let r = render(&s, &v("3.4.23"), None).unwrap();
        assert_eq!(r.args.iter().filter(|a| a.starts_with("--trusted-ca-file")).count(), 1);
        assert!(rule_applied(&r, rules::CA_FILE_3_4, ChangeKind::Removed));
        assert!(!r.is_refused());

        s.tls.trusted_ca_file = Some("/other.crt".into());
        let r = render(&s, &v("3.4.23"), None).unwrap();
        assert!(r.is_refused());
    }

    #[test]
    fn flags_3_4_lacks_are_removed_on_downgrade() {
        let r = render(
            &spec(&[
                "--socket-reuse-port=true",
                "--experimental-memory-mlock",
                "--client-cert-file=/c.crt",
                "--snapshot-count=10000",
            ]),
            &v("3.4.33"),
            Some(&v("3.5.16")),
        )
        .unwrap();
        assert!(!r.args.iter().any(|a| a.contains("socket-reuse-port")));
        assert!(!r.args.iter().any(|a| a.contains("memory-mlock")));
        assert!(!r.args.iter().any(|a| a.contains("client-cert-file")));
        assert!(has(&r, "--snapshot-count=10000"));
        let removed = r
            .changes
            .iter()
            .filter(|c| c.kind == ChangeKind::Removed && c.rule == rules::NOT_IN_3_4)
            .count();
        assert_eq!(removed, 3);
    }

    #[test]
    fn freelist_flag_is_renamed_both_ways() {
        let r = render(
            &spec(&["--backend-bbolt-freelist-type=map"]),
            &v("3.4.33"),
            Some(&v("3.5.16")),
        )
        .unwrap();
        assert!(has(&r, "--experimental-backend-bbolt-freelist-type=map"));
        assert!(rule_applied(&r, rules::FREELIST_3_4, ChangeKind::Renamed));

        let r = render(
            &spec(&["--experimental-backend-bbolt-freelist-type=array"]),
            &v("3.5.16"),
            Some(&v("3.4.23")),
        )
        .unwrap();
        assert!(has(&r, "--backend-bbolt-freelist-type=array"));
        assert!(rule_applied(&r, rules::FREELIST_3_5, ChangeKind::Renamed));
    }

    #[test]
    fn downgrade_to_3_4_adds_compat_and_pins_3_5_defaults() {
        let r = render(&spec(&[]), &v("3.4.33"), Some(&v("3.5.16"))).unwrap();
        assert!(has(&r, "--next-cluster-version-compatible"));
        assert!(has(&r, "--pre-vote=true"));
        assert!(has(&r, "--logger=zap"));
        assert!(rule_applied(&r, rules::NEXT_CLUSTER_COMPAT, ChangeKind::Added));
        assert!(rule_applied(&r, rules::PRE_VOTE_3_4, ChangeKind::Added));
        assert!(rule_applied(&r, rules::LOGGER_3_4, ChangeKind::Added));
        assert!(!r.is_refused());
    }

    #[test]
    fn explicit_spec_values_win_over_pinned_defaults() {
        let r = render(
            &spec(&["--pre-vote=false", "--logger=capnslog"]),
            &v("3.4.33"),
            Some(&v("3.5.16")),
        )
        .unwrap();
        assert!(has(&r, "--pre-vote=false"));
        assert!(has(&r, "--logger=capnslog"));
        assert!(!rule_applied(&r, rules::PRE_VOTE_3_4, ChangeKind::Added));
    }

    #[test]
    fn downgrade_below_3_4_32_is_refused() {
        let r = render(&spec(&[]), &v("3.4.23"), Some(&v("3.5.16"))).unwrap();
        assert!(r.is_refused());
        assert!(rule_applied(&r, rules::DOWNGRADE_MIN_3_4_32, ChangeKind::Refused));
        assert!(
            !has(&r, "--next-cluster-version-compatible"),
            "3.4.23 does not know the flag"
        );
    }

    #[test]
    fn plain_3_4_needs_no_downgrade_rules() {
        let r = render(&spec(&[]), &v("3.4.23"), Some(&v("3.3.25"))).unwrap();
        assert!(r.changes.is_empty(), "{:?}", r.changes);
        let r = render(&spec(&[]), &v("3.4.23"), None).unwrap();
        assert!(r.changes.is_empty());
    }

    #[test]
    fn capnslog_becomes_zap_from_3_5() {
        let r = render(&spec(&["--logger=capnslog"]), &v("3.5.16"), Some(&v("3.4.23"))).unwrap();
        assert!(has(&r, "--logger=zap"));
        assert!(rule_applied(&r, rules::CAPNSLOG_3_5, ChangeKind::Changed));
        let r = render(&spec(&["--logger=capnslog"]), &v("3.4.23"), Some(&v("3.3.25"))).unwrap();
        assert!(has(&r, "--logger=capnslog"));
    }

    #[test]
    fn enable_v2_is_refused_for_3_6() {
        let r = render(&spec(&["--enable-v2=true"]), &v("3.6.0"), Some(&v("3.5.26"))).unwrap();
        assert!(r.is_refused());
        assert!(rule_applied(&r, rules::ENABLE_V2_3_6, ChangeKind::Refused));
        let r = render(&spec(&["--enable-v2"]), &v("3.6.0"), Some(&v("3.5.26"))).unwrap();
        assert!(r.is_refused());
        let r = render(&spec(&["--enable-v2=false"]), &v("3.6.0"), Some(&v("3.5.26"))).unwrap();
        assert!(!r.is_refused());
        assert!(!r.args.iter().any(|a| a.contains("enable-v2")));
        let r = render(&spec(&["--enable-v2=true"]), &v("3.5.16"), None).unwrap();
        assert!(has(&r, "--enable-v2=true"));
    }

    #[test]
    fn experimental_flags_take_their_3_6_names_and_get_them_back_for_3_5() {
        let written = [
            "--experimental-compaction-batch-limit=500",
            "--experimental-watch-progress-notify-interval=5s",
        ];
        let r = render(&spec(&written), &v("3.6.17"), Some(&v("3.5.36"))).unwrap();
        assert!(has(&r, "--compaction-batch-limit=500") && has(&r, "--watch-progress-notify-interval=5s"));
        assert!(!r.args.iter().any(|a| a.starts_with("--experimental-")), "{:?}", r.args);
        assert!(rule_applied(&r, rules::EXPERIMENTAL_3_6, ChangeKind::Renamed));
        assert!(!r.is_refused());
        let r = render(&spec(&written), &v("3.7.3"), Some(&v("3.6.17"))).unwrap();
        assert!(has(&r, "--compaction-batch-limit=500") && !r.is_refused());

        // Written with the 3.6 names, the spec still runs 3.5 (a downgrade).
        let r = render(
            &spec(&["--compaction-batch-limit=500"]),
            &v("3.5.36"),
            Some(&v("3.6.17")),
        )
        .unwrap();
        assert!(has(&r, "--experimental-compaction-batch-limit=500"), "{:?}", r.args);
        assert!(rule_applied(&r, rules::EXPERIMENTAL_NAMES_3_5, ChangeKind::Renamed));
        let r = render(&spec(&["--max-learners=2", "--log-format=console"]), &v("3.5.36"), None).unwrap();
        assert!(
            !r.args
                .iter()
                .any(|a| a.starts_with("--max-learners") || a.starts_with("--log-format"))
        );
        assert!(rule_applied(&r, rules::NOT_IN_3_5, ChangeKind::Removed));
    }

    #[test]
    fn experimental_switches_become_feature_gates_and_back() {
        let written = [
            "--experimental-initial-corrupt-check",
            "--experimental-txn-mode-write-with-shared-buffer=false",
        ];
        let r = render(&spec(&written), &v("3.6.17"), Some(&v("3.5.36"))).unwrap();
        assert!(
            has(
                &r,
                "--feature-gates=InitialCorruptCheck=true,TxnModeWriteWithSharedBuffer=false"
            ),
            "{:?}",
            r.args
        );
        assert!(rule_applied(&r, rules::FEATURE_GATES_3_6, ChangeKind::Renamed) && !r.is_refused());

        let both = [
            "--feature-gates=InitialCorruptCheck=true",
            "--experimental-initial-corrupt-check=true",
        ];
        let r = render(&spec(&both), &v("3.6.17"), None).unwrap();
        assert!(has(&r, "--feature-gates=InitialCorruptCheck=true") && !r.is_refused());
        let clash = [
            "--feature-gates=InitialCorruptCheck=false",
            "--experimental-initial-corrupt-check=true",
        ];
        let r = render(&spec(&clash), &v("3.6.17"), None).unwrap();
        assert!(rule_applied(&r, rules::FEATURE_GATES_3_6, ChangeKind::Refused));

        let gates = ["--feature-gates=InitialCorruptCheck=true,CompactHashCheck=false"];
        let r = render(&spec(&gates), &v("3.5.36"), Some(&v("3.6.17"))).unwrap();
        assert!(has(&r, "--experimental-initial-corrupt-check=true"), "{:?}", r.args);
        assert!(has(&r, "--experimental-compact-hash-check-enabled=false"));
        assert!(!r.args.iter().any(|a| a.starts_with("--feature-gates")));
        let r = render(&spec(&["--feature-gates=FastLeaseKeepAlive=true"]), &v("3.5.36"), None).unwrap();
        assert!(
            rule_applied(&r, rules::FEATURE_GATES_3_5, ChangeKind::Refused),
            "a feature 3.5 lacks"
        );
        let r = render(&spec(&["--feature-gates=FastLeaseKeepAlive=false"]), &v("3.5.36"), None).unwrap();
        assert!(!r.is_refused() && !r.args.iter().any(|a| a.starts_with("--feature-gates")));
    }

    #[test]
    fn v2_leftovers_are_refused_or_dropped_from_3_6_on() {
        let r = render(
            &spec(&["--experimental-enable-v2v3=/v2"]),
            &v("3.6.17"),
            Some(&v("3.5.36")),
        )
        .unwrap();
        assert!(rule_applied(&r, rules::V2V3_3_6, ChangeKind::Refused));
        let r = render(&spec(&["--v2-deprecation=not-yet"]), &v("3.6.17"), None).unwrap();
        assert!(rule_applied(&r, rules::V2_DEPRECATION_3_6, ChangeKind::Refused));
        let r = render(&spec(&["--v2-deprecation=write-only"]), &v("3.6.17"), None).unwrap();
        assert!(!r.is_refused() && has(&r, "--v2-deprecation=write-only"));
        let r = render(&spec(&["--proxy=on"]), &v("3.6.17"), None).unwrap();
        assert!(rule_applied(&r, rules::PROXY_3_6, ChangeKind::Refused));
        let r = render(&spec(&["--proxy=off", "--proxy-dial-timeout=1000"]), &v("3.6.17"), None).unwrap();
        assert!(!r.is_refused() && !r.args.iter().any(|a| a.starts_with("--proxy")));
        let r = render(&spec(&["--proxy=off"]), &v("3.5.36"), None).unwrap();
        assert!(has(&r, "--proxy=off"), "3.5 keeps it");
    }

    #[test]
    fn etcd_3_7_drops_v2_discovery_and_refuses_unknown_experimental_flags() {
        let r = render(
            &spec(&["--discovery=https://d.example/x"]),
            &v("3.7.3"),
            Some(&v("3.6.17")),
        )
        .unwrap();
        assert!(!r.args.iter().any(|a| a.starts_with("--discovery")) && !r.is_refused());
        assert!(rule_applied(&r, rules::V2_DISCOVERY_3_7, ChangeKind::Removed));
        let r = render(&spec(&["--discovery=https://d.example/x"]), &v("3.6.17"), None).unwrap();
        assert!(has(&r, "--discovery=https://d.example/x"), "3.6 keeps it");
        let r = render(
            &spec(&["--experimental-something-new=1"]),
            &v("3.7.3"),
            Some(&v("3.6.17")),
        )
        .unwrap();
        assert!(rule_applied(&r, rules::EXPERIMENTAL_3_7, ChangeKind::Refused));
        let r = render(&spec(&["--experimental-something-new=1"]), &v("3.6.17"), None).unwrap();
        assert!(!r.is_refused(), "3.6 still takes experimental flags");
    }

    #[test]
    fn logging_flags_follow_each_release() {
        let r = render(&spec(&["--logger=zap"]), &v("3.3.25"), None).unwrap();
        assert!(!r.args.iter().any(|a| a.starts_with("--logger")));
        assert!(rule_applied(&r, rules::NO_LOGGER_3_3, ChangeKind::Removed));

        let r = render(&spec(&["--log-output=stderr"]), &v("3.4.23"), Some(&v("3.3.25"))).unwrap();
        assert!(has(&r, "--log-outputs=stderr"));
        assert!(rule_applied(&r, rules::LOG_OUTPUTS_3_4, ChangeKind::Renamed));

        let r = render(
            &spec(&["--debug", "--log-package-levels=etcdserver=DEBUG"]),
            &v("3.5.16"),
            Some(&v("3.4.23")),
        )
        .unwrap();
        assert!(has(&r, "--log-level=debug"));
        assert!(
            !r.args
                .iter()
                .any(|a| a.starts_with("--debug") || a.starts_with("--log-package-levels"))
        );
        assert!(rule_applied(&r, rules::DEBUG_3_5, ChangeKind::Renamed));
        assert!(rule_applied(&r, rules::LOG_PACKAGE_LEVELS_3_5, ChangeKind::Removed));

        let r = render(&spec(&["--debug=false"]), &v("3.5.16"), None).unwrap();
        assert!(!r.args.iter().any(|a| a.starts_with("--log-level")));
    }

    #[test]
    fn skipping_a_minor_is_refused_both_ways() {
        let r = render(&spec(&[]), &v("3.5.16"), Some(&v("3.3.25"))).unwrap();
        assert!(rule_applied(&r, rules::ADJACENT_MINORS, ChangeKind::Refused));
        let r = render(&spec(&[]), &v("3.3.25"), Some(&v("3.5.16"))).unwrap();
        assert!(rule_applied(&r, rules::ADJACENT_MINORS, ChangeKind::Refused));
        let r = render(&spec(&[]), &v("3.5.30"), Some(&v("3.5.16"))).unwrap();
        assert!(!r.is_refused());
        let r = render(&spec(&[]), &v("3.4.23"), Some(&v("3.3.25"))).unwrap();
        assert!(!r.is_refused());
    }

    #[test]
    fn flags_3_3_lacks_are_removed_or_renamed() {
        let r = render(
            &spec(&[
                "--pre-vote=true",
                "--log-level=info",
                "--log-outputs=stderr",
                "--snapshot-count=100",
            ]),
            &v("3.3.25"),
            Some(&v("3.4.23")),
        )
        .unwrap();
        assert!(has(&r, "--log-output=stderr"));
        assert!(has(&r, "--snapshot-count=100"));
        assert!(
            !r.args
                .iter()
                .any(|a| a.starts_with("--pre-vote") || a.starts_with("--log-level"))
        );
        assert!(rule_applied(&r, rules::LOG_OUTPUT_3_3, ChangeKind::Renamed));
        assert_eq!(r.changes.iter().filter(|c| c.rule == rules::NOT_IN_3_3).count(), 2);
    }

    #[test]
    fn a_plain_3_4_start_gets_no_compat_flag() {
        let r = render(&spec(&[]), &v("3.4.33"), Some(&v("3.4.23"))).unwrap();
        assert!(!has(&r, "--next-cluster-version-compatible"));
        assert!(r.changes.is_empty());
    }

    #[test]
    fn extra_flags_may_not_hand_etcd_a_config_file() {
        for flag in ["--config-file=/etc/etcd/etcd.yaml", "--config-file"] {
            let err = check_extra_flag(flag).unwrap_err();
            assert!(err.contains("--config-file is refused"), "{err}");
            assert!(err.contains("ignores every other command-line flag"), "{err}");
        }
        // Only the exact name: other flags with the same start are fine.
        assert!(check_extra_flag("--config-file-x=1").is_ok());
        assert!(check_extra_flag("--snapshot-count=10000").is_ok());
        assert!(
            check_extra_flag("--data-dir=/x")
                .unwrap_err()
                .contains("own member field")
        );
        assert!(
            check_extra_flag("-config-file=/x")
                .unwrap_err()
                .contains("must look like")
        );
        assert!(check_extra_flag("--").unwrap_err().contains("must look like"));
    }

    #[test]
    fn v2_era_is_unsupported() {
        let err = render(&spec(&[]), &v("2.3.8"), None).unwrap_err();
        assert!(err.to_string().contains("2.3.8"));
    }
}
