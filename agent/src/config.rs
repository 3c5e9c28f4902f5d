//! The agent's TOML configuration: where it listens, where it keeps its
//! state, which directories binaries may be imported from, how it supervises
//! etcd, and the member spec that etcd's command line is rendered from.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use steward_proto::EtcdVersion;

use crate::error::ConfigError;

/// The whole agent configuration (`steward-agent --config FILE`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The gRPC listen address.
    pub listen: SocketAddr,
    /// The agent's own directory (binaries, snapshots, state, logs). Created
    /// 0700 if missing; exclusively locked while the agent runs.
    pub state_dir: PathBuf,
    /// Directories that ImportBinary may read from. Empty: imports refused.
    #[serde(default)]
    pub import_dirs: Vec<PathBuf>,
    /// An etcd binary imported and activated on the first start, when no
    /// version is active yet. Must lie inside `import_dirs`.
    #[serde(default)]
    pub initial_binary: Option<PathBuf>,
    /// How etcd is supervised.
    #[serde(default)]
    pub supervision: Supervision,
    /// Snapshot settings.
    #[serde(default)]
    pub snapshots: SnapshotSettings,
    /// Limits on what callers may send.
    #[serde(default)]
    pub limits: Limits,
    /// The etcd member this agent owns.
    pub member: MemberSpec,
    /// Per etcd version, the only sha256 values its files (etcd, etcdctl,
    /// etcdutl) may have; a version not listed takes any verified file.
    #[serde(default)]
    pub pinned_sha256: BTreeMap<String, Vec<String>>,
    /// Mutual TLS on the agent API. Required unless `insecure`.
    #[serde(default)]
    pub tls: Option<AgentTls>,
    /// Serve the API in plaintext, without authentication: a development
    /// mode, allowed only on a loopback `listen` address.
    #[serde(default)]
    pub insecure: bool,
    /// A Prometheus `/metrics` and `/healthz` listener. Absent: none.
    #[serde(default)]
    pub metrics: Option<MetricsSettings>,
}

/// `[metrics]`: where the agent serves Prometheus metrics and `/healthz`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// Its own listen address, apart from the gRPC API; loopback unless
    /// set otherwise.
    pub listen: SocketAddr,
    /// Serve HTTPS with the agent's `[tls]` certificate and key (no client
    /// certificate is asked for); plain HTTP otherwise.
    pub tls: bool,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9479)),
            tls: false,
        }
    }
}

/// The agent's own certificate, and the CA its callers' certificates must
/// come from. Every caller needs a certificate of that CA carrying a role
/// (see `steward certs`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentTls {
    /// The agent's certificate (PEM), with its chain.
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
    /// The CA that signs the callers' certificates (PEM).
    pub client_ca_file: PathBuf,
    /// Let gRPC health checks through without a client certificate (for
    /// load balancers and probes); everything else still needs one.
    #[serde(default)]
    pub health_without_client_cert: bool,
}

/// How the agent runs and restarts etcd.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Supervision {
    /// Time between SIGTERM and SIGKILL when stopping etcd.
    #[serde(with = "humantime_serde")]
    pub stop_grace: Duration,
    /// How long Activate and Rollback wait for the member to be healthy on
    /// the new version before reverting (a request may ask for another).
    #[serde(with = "humantime_serde")]
    pub activate_timeout: Duration,
    /// First wait before restarting etcd after it exited on its own.
    #[serde(with = "humantime_serde")]
    pub restart_backoff_initial: Duration,
    /// Upper bound of the doubling restart wait.
    #[serde(with = "humantime_serde")]
    pub restart_backoff_max: Duration,
    /// Consecutive crashes after which the member is marked FAILED instead of
    /// being restarted again.
    pub max_consecutive_crashes: u32,
    /// A run at least this long resets the crash count.
    #[serde(with = "humantime_serde")]
    pub stable_after: Duration,
    /// Size of etcd's log file before it is rotated to `etcd.log.1`.
    pub log_max_bytes: u64,
    /// Lines of etcd output kept in memory for TailLogs and failure reports.
    pub log_tail_lines: usize,
}

impl Default for Supervision {
    fn default() -> Self {
        Self {
            stop_grace: Duration::from_secs(30),
            activate_timeout: Duration::from_secs(120),
            restart_backoff_initial: Duration::from_secs(1),
            restart_backoff_max: Duration::from_secs(60),
            max_consecutive_crashes: 5,
            stable_after: Duration::from_secs(60),
            log_max_bytes: 64 * 1024 * 1024,
            log_tail_lines: 1000,
        }
    }
}

/// Snapshot settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotSettings {
    /// How many snapshots to keep; older ones are deleted after a new one is
    /// stored. At least 1.
    pub retain: usize,
}

impl Default for SnapshotSettings {
    fn default() -> Self {
        Self { retain: 5 }
    }
}

/// Limits on caller input.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// The largest binary UploadBinary or ImportBinary accepts.
    pub max_binary_bytes: u64,
    /// Connections to the API open at once (TLS handshakes included);
    /// one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// Connections open at once from one peer address.
    pub max_connections_per_peer: usize,
    /// An upload stream that sends nothing for this long is cut, and its
    /// part file removed.
    #[serde(with = "humantime_serde")]
    pub upload_stall_timeout: Duration,
    /// Bytes of the audit log before it is rotated to `audit.log.1`.
    pub audit_log_max_bytes: u64,
    /// Rotated audit logs kept (`audit.log.1` ... `audit.log.N`).
    pub audit_log_files: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_binary_bytes: 512 * 1024 * 1024,
            max_connections: 1024,
            max_connections_per_peer: 64,
            upload_stall_timeout: Duration::from_secs(60),
            audit_log_max_bytes: 64 * 1024 * 1024,
            audit_log_files: 5,
        }
    }
}

/// The etcd member: what its command line is rendered from, for every etcd
/// version it may run.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberSpec {
    /// `--name`.
    pub name: String,
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// `--listen-client-urls`.
    pub listen_client_urls: Vec<String>,
    /// `--advertise-client-urls`; the agent reaches the member through the
    /// first one.
    pub advertise_client_urls: Vec<String>,
    /// `--listen-peer-urls`.
    pub listen_peer_urls: Vec<String>,
    /// `--initial-advertise-peer-urls`.
    pub initial_advertise_peer_urls: Vec<String>,
    /// `--initial-cluster`, e.g. `m1=http://10.0.0.1:2380,m2=...`.
    pub initial_cluster: String,
    /// `--initial-cluster-state`: `new` or `existing`.
    #[serde(default = "default_cluster_state")]
    pub initial_cluster_state: String,
    /// `--initial-cluster-token`.
    #[serde(default)]
    pub initial_cluster_token: Option<String>,
    /// TLS files of the member.
    /// The etcd user the agent's own calls to its member run as, once
    /// auth is enabled in the cluster (a snapshot then needs a root user).
    #[serde(default)]
    pub auth: Option<MemberAuth>,
    #[serde(default)]
    pub tls: MemberTls,
    /// Further etcd flags as written for the version the member runs now
    /// (`--flag=value` or `--flag`); the version rules translate them.
    #[serde(default)]
    pub extra_flags: Vec<String>,
}

fn default_cluster_state() -> String {
    "new".to_owned()
}

/// `[member.auth]`: the etcd user of the agent's own calls.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberAuth {
    /// The etcd user (with the root role, for snapshots).
    pub user: String,
    /// A file holding its password (one line; keep it 0600). The password
    /// is never written into the agent's config, logs or answers.
    pub password_file: PathBuf,
}

/// TLS file paths of the member (client and peer side).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberTls {
    /// `--cert-file`.
    pub cert_file: Option<PathBuf>,
    /// `--key-file`.
    pub key_file: Option<PathBuf>,
    /// `--trusted-ca-file`.
    pub trusted_ca_file: Option<PathBuf>,
    /// `--client-cert-auth`.
    #[serde(default)]
    pub client_cert_auth: bool,
    /// `--peer-cert-file`.
    pub peer_cert_file: Option<PathBuf>,
    /// `--peer-key-file`.
    pub peer_key_file: Option<PathBuf>,
    /// `--peer-trusted-ca-file`.
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// `--peer-client-cert-auth`.
    #[serde(default)]
    pub peer_client_cert_auth: bool,
}

impl Config {
    /// The pinned checksums by version, lowercase (validated: every key is
    /// a version).
    #[must_use]
    pub fn pinned(&self) -> BTreeMap<EtcdVersion, Vec<String>> {
        self.pinned_sha256
            .iter()
            .filter_map(|(version, sums)| {
                Some((
                    version.parse().ok()?,
                    sums.iter().map(|s| s.to_ascii_lowercase()).collect(),
                ))
            })
            .collect()
    }

    /// Reads and validates a config file; `insecure` (the agent's
    /// `--insecure` flag) sets `insecure = true` before validation.
    pub fn load_with(path: &Path, insecure: bool) -> Result<Self, ConfigError> {
        let text = fs_err::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config: Self = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        config.insecure |= insecure;
        config.validate()?;
        Ok(config)
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = fs_err::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config: Self = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: non-empty names and lists, absolute paths,
    /// URL schemes, sane limits. Each error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, reason: String| ConfigError::Invalid {
            field: field.to_owned(),
            reason,
        };
        if !self.state_dir.is_absolute() {
            return Err(invalid("state_dir", "must be an absolute path".into()));
        }
        for (i, dir) in self.import_dirs.iter().enumerate() {
            if !dir.is_absolute() {
                return Err(invalid(&format!("import_dirs[{i}]"), "must be an absolute path".into()));
            }
        }
        if let Some(binary) = &self.initial_binary {
            if !binary.is_absolute() {
                return Err(invalid("initial_binary", "must be an absolute path".into()));
            }
            // Checked again after resolving symlinks when it is imported.
            if !self.import_dirs.iter().any(|dir| binary.starts_with(dir)) {
                return Err(invalid("initial_binary", "must lie inside one of import_dirs".into()));
            }
        }
        match (&self.tls, self.insecure) {
            (None, false) => {
                return Err(invalid(
                    "tls",
                    "the agent API needs mutual TLS: set [tls] cert_file, key_file and client_ca_file (see `steward \
                     certs`), or insecure = true for a development agent on a loopback address"
                        .into(),
                ));
            }
            (Some(_), true) => {
                return Err(invalid(
                    "insecure",
                    "set either [tls] or insecure = true, not both".into(),
                ));
            }
            (None, true) if !self.listen.ip().is_loopback() => {
                return Err(invalid(
                    "insecure",
                    format!(
                        "plaintext without authentication is allowed only on a loopback address, and {} is not one",
                        self.listen
                    ),
                ));
            }
            (Some(tls), false) => {
                for (field, path) in [
                    ("tls.cert_file", &tls.cert_file),
                    ("tls.key_file", &tls.key_file),
                    ("tls.client_ca_file", &tls.client_ca_file),
                ] {
                    if !path.is_absolute() {
                        return Err(invalid(field, "must be an absolute path".into()));
                    }
                }
            }
            (None, true) => {}
        }
        for (version, sums) in &self.pinned_sha256 {
            let field = format!("pinned_sha256.{version:?}");
            if version.parse::<EtcdVersion>().is_err() {
                return Err(invalid(&field, "must be an etcd version such as \"3.5.30\"".into()));
            }
            if sums.is_empty() {
                return Err(invalid(&field, "must list at least one sha256".into()));
            }
            for sum in sums {
                if sum.len() != 64 || !sum.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(invalid(&field, format!("{sum:?} is not a sha256 (64 hex digits)")));
                }
            }
        }
        if self.snapshots.retain == 0 {
            return Err(invalid("snapshots.retain", "must be at least 1".into()));
        }
        if self.supervision.max_consecutive_crashes == 0 {
            return Err(invalid(
                "supervision.max_consecutive_crashes",
                "must be at least 1".into(),
            ));
        }
        if self.supervision.log_tail_lines == 0 {
            return Err(invalid("supervision.log_tail_lines", "must be at least 1".into()));
        }
        if self.supervision.log_max_bytes < 4096 {
            return Err(invalid("supervision.log_max_bytes", "must be at least 4096".into()));
        }
        if self.limits.audit_log_max_bytes < 4096 {
            return Err(invalid("limits.audit_log_max_bytes", "must be at least 4096".into()));
        }
        if self.limits.upload_stall_timeout.is_zero() {
            return Err(invalid("limits.upload_stall_timeout", "must be more than 0s".into()));
        }
        if self.limits.max_connections == 0 {
            return Err(invalid("limits.max_connections", "must be at least 1".into()));
        }
        if self.limits.max_connections_per_peer == 0 {
            return Err(invalid("limits.max_connections_per_peer", "must be at least 1".into()));
        }
        if let Some(metrics) = &self.metrics {
            if metrics.tls && self.tls.is_none() {
                return Err(invalid(
                    "metrics.tls",
                    "HTTPS on the metrics listener uses the agent's [tls] certificate, and there is none".into(),
                ));
            }
            if metrics.listen == self.listen {
                return Err(invalid(
                    "metrics.listen",
                    format!(
                        "{} is the gRPC listen address; the metrics need their own",
                        metrics.listen
                    ),
                ));
            }
        }
        self.member.validate()
    }
}

/// Checks a member URL as etcd does when it starts (`types.NewURLs`):
/// `http://` or `https://`, then `host:port` (an IPv6 host in brackets), and
/// no path, not even `/`.
fn check_url(url: &str) -> Result<(), String> {
    let Some(authority) = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) else {
        return Err(format!("{url:?} must start with http:// or https://"));
    };
    if authority.contains('/') {
        return Err(format!(
            "{url:?} must not have a path (etcd refuses one, even a lone '/')"
        ));
    }
    let port = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once("]:").map(|(_, port)| port),
        None => authority
            .rsplit_once(':')
            .filter(|(host, _)| !host.contains(':'))
            .map(|(_, port)| port),
    };
    match port.map(str::parse::<u16>) {
        Some(Ok(_)) => Ok(()),
        _ => Err(format!(
            "{url:?} must name host and port (http://HOST:PORT, an IPv6 address in brackets)"
        )),
    }
}

impl MemberSpec {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, reason: String| ConfigError::Invalid {
            field: format!("member.{field}"),
            reason,
        };
        if self.name.trim().is_empty() || self.name.contains(['=', ',']) {
            return Err(invalid("name", "must be non-empty without '=' or ','".into()));
        }
        if !self.data_dir.is_absolute() {
            return Err(invalid("data_dir", "must be an absolute path".into()));
        }
        if let Some(auth) = &self.auth {
            if auth.user.trim().is_empty() {
                return Err(invalid("auth.user", "must not be empty".into()));
            }
            if !auth.password_file.is_absolute() {
                return Err(invalid("auth.password_file", "must be an absolute path".into()));
            }
        }
        if self
            .advertise_client_urls
            .first()
            .is_some_and(|u| u.starts_with("https://"))
            && self.tls.trusted_ca_file.is_none()
        {
            return Err(invalid(
                "tls.trusted_ca_file",
                "is needed: the agent reaches its member at the first advertise_client_urls entry, which is https://"
                    .into(),
            ));
        }
        for (field, urls) in [
            ("listen_client_urls", &self.listen_client_urls),
            ("advertise_client_urls", &self.advertise_client_urls),
            ("listen_peer_urls", &self.listen_peer_urls),
            ("initial_advertise_peer_urls", &self.initial_advertise_peer_urls),
        ] {
            if urls.is_empty() {
                return Err(invalid(field, "must list at least one URL".into()));
            }
            for url in urls {
                check_url(url).map_err(|reason| invalid(field, reason))?;
            }
        }
        for entry in self.initial_cluster.split(',') {
            let Some((_, url)) = entry.split_once('=') else {
                return Err(invalid("initial_cluster", format!("{entry:?} must look like NAME=URL")));
            };
            check_url(url).map_err(|reason| invalid("initial_cluster", reason))?;
        }
        if !self
            .initial_cluster
            .split(',')
            .any(|entry| entry.split_once('=').is_some_and(|(name, _)| name == self.name))
        {
            return Err(invalid(
                "initial_cluster",
                format!("must contain an entry for this member ({}=URL)", self.name),
            ));
        }
        if !matches!(self.initial_cluster_state.as_str(), "new" | "existing") {
            return Err(invalid(
                "initial_cluster_state",
                "must be \"new\" or \"existing\"".into(),
            ));
        }
        for (i, flag) in self.extra_flags.iter().enumerate() {
            crate::flags::check_extra_flag(flag).map_err(|reason| invalid(&format!("extra_flags[{i}]"), reason))?;
        }
        Ok(())
    }

    /// The client URL the agent uses to reach its own member.
    #[must_use]
    pub fn local_client_url(&self) -> &str {
        // validate() guarantees at least one advertise URL.
        self.advertise_client_urls.first().map_or("", String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        listen = "127.0.0.1:7400"
        state_dir = "/var/lib/steward"
        insecure = true
        [member]
        name = "m1"
        data_dir = "/var/lib/etcd"
        listen_client_urls = ["http://127.0.0.1:2379"]
        advertise_client_urls = ["http://127.0.0.1:2379"]
        listen_peer_urls = ["http://127.0.0.1:2380"]
        initial_advertise_peer_urls = ["http://127.0.0.1:2380"]
        initial_cluster = "m1=http://127.0.0.1:2380"
    "#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: "test.toml".into(),
            source: Box::new(source),
        })?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.snapshots.retain, 5);
        assert_eq!(config.member.initial_cluster_state, "new");
        assert_eq!(config.supervision.stop_grace, Duration::from_secs(30));
        assert_eq!(config.member.local_client_url(), "http://127.0.0.1:2379");
    }

    #[test]
    fn the_api_needs_tls_unless_insecure_on_loopback() {
        let no_tls = MINIMAL.replace("insecure = true\n", "");
        let err = parse(&no_tls).unwrap_err().to_string();
        assert!(err.contains("tls") && err.contains("mutual TLS"), "{err}");

        let everywhere = MINIMAL.replace("127.0.0.1:7400", "0.0.0.0:7400");
        let err = parse(&everywhere).unwrap_err().to_string();
        assert!(err.contains("insecure") && err.contains("loopback"), "{err}");
        let ipv6 = MINIMAL.replace("127.0.0.1:7400", "[::1]:7400");
        assert!(parse(&ipv6).is_ok());

        let tls = no_tls.replace(
            "[member]",
            "[tls]\n cert_file = \"/etc/steward/m1.crt\"\n key_file = \"/etc/steward/m1.key\"\n client_ca_file = \"/etc/steward/ca.crt\"\n[member]",
        );
        let config = parse(&tls.replace("127.0.0.1:7400", "0.0.0.0:7400")).unwrap();
        assert!(!config.tls.unwrap().health_without_client_cert);

        let both = tls.replace("state_dir", "insecure = true\nstate_dir");
        assert!(parse(&both).unwrap_err().to_string().contains("not both"));

        let relative = tls.replace("\"/etc/steward/m1.key\"", "\"m1.key\"");
        assert!(parse(&relative).unwrap_err().to_string().contains("tls.key_file"));
    }

    #[test]
    fn metrics_are_off_unless_asked_for_and_loopback_by_default() {
        assert!(parse(MINIMAL).unwrap().metrics.is_none());
        let on = MINIMAL.replace("[member]", "[metrics]\n[member]");
        let metrics = parse(&on).unwrap().metrics.unwrap();
        assert_eq!(metrics.listen, SocketAddr::from(([127, 0, 0, 1], 9479)));
        assert!(!metrics.tls);

        let https = MINIMAL.replace("[member]", "[metrics]\ntls = true\n[member]");
        let err = parse(&https).unwrap_err().to_string();
        assert!(err.contains("metrics.tls") && err.contains("[tls]"), "{err}");
        let same = MINIMAL.replace("[member]", "[metrics]\nlisten = \"127.0.0.1:7400\"\n[member]");
        let err = parse(&same).unwrap_err().to_string();
        assert!(err.contains("metrics.listen") && err.contains("their own"), "{err}");
        let typo = MINIMAL.replace("[member]", "[metrics]\nlisten_on = \"127.0.0.1:9\"\n[member]");
        assert!(parse(&typo).is_err());
    }

    #[test]
    fn pinned_checksums_are_versions_and_sha256s() {
        let sha = "AB".repeat(32);
        let pinned = MINIMAL.replace(
            "[member]",
            &format!("[pinned_sha256]\n\"3.5.30\" = [\"{sha}\"]\n[member]"),
        );
        let config = parse(&pinned).unwrap();
        assert_eq!(
            config.pinned(),
            BTreeMap::from([(EtcdVersion::new(3, 5, 30), vec!["ab".repeat(32)])])
        );
        let bad_version = pinned.replace("\"3.5.30\" =", "\"latest\" =");
        assert!(
            parse(&bad_version)
                .unwrap_err()
                .to_string()
                .contains("pinned_sha256.\"latest\"")
        );
        let bad_sum = pinned.replace(&sha, "abc");
        assert!(parse(&bad_sum).unwrap_err().to_string().contains("not a sha256"));
        let empty = pinned.replace(&format!("[\"{sha}\"]"), "[]");
        assert!(parse(&empty).unwrap_err().to_string().contains("at least one"));
    }

    #[test]
    fn member_urls_are_checked_as_etcd_checks_them() {
        for good in [
            "http://127.0.0.1:2379",
            "https://etcd-1.example.com:2379",
            "http://[::1]:2379",
            "http://0.0.0.0:2380",
        ] {
            assert_eq!(check_url(good), Ok(()), "{good}");
        }
        for (bad, says) in [
            ("127.0.0.1:2379", "must start with http"),
            ("unix://x", "must start with http"),
            ("http://127.0.0.1:2379/", "must not have a path"),
            ("http://127.0.0.1", "host and port"),
            ("http://127.0.0.1:port", "host and port"),
            ("http://127.0.0.1:99999", "host and port"),
            ("http://::1:2379", "host and port"),
            ("http://[::1]", "host and port"),
        ] {
            let err = check_url(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }

        let bad = MINIMAL.replace("m1=http://127.0.0.1:2380", "m1=http://127.0.0.1:2380,m2");
        let err = parse(&bad).unwrap_err().to_string();
        assert!(
            err.contains("member.initial_cluster") && err.contains("NAME=URL"),
            "{err}"
        );
        let bad = MINIMAL.replace("m1=http://127.0.0.1:2380", "m1=http://127.0.0.1:2380,m2=http://h");
        assert!(parse(&bad).unwrap_err().to_string().contains("host and port"));
        let bad = MINIMAL.replace(
            "listen_client_urls = [\"http://127.0.0.1:2379\"]",
            "listen_client_urls = [\"http://127.0.0.1:2379/\"]",
        );
        let err = parse(&bad).unwrap_err().to_string();
        assert!(
            err.contains("member.listen_client_urls") && err.contains("path"),
            "{err}"
        );
    }

    #[test]
    fn unknown_field_is_refused() {
        let err = parse(&format!("{MINIMAL}\nbogus = 1")).unwrap_err();
        assert!(err.to_string().contains("test.toml"), "{err}");
    }

    #[test]
    fn errors_name_the_field() {
        let bad = MINIMAL.replace("m1=http", "other=http");
        let err = parse(&bad).unwrap_err();
        assert!(err.to_string().contains("member.initial_cluster"), "{err}");

        let bad = MINIMAL.replace("state_dir = \"/var", "state_dir = \"var");
        assert!(parse(&bad).unwrap_err().to_string().contains("state_dir"));

        let bad = MINIMAL.replace(
            "[\"http://127.0.0.1:2380\"]\n        initial_cluster",
            "[\"127.0.0.1:2380\"]\n        initial_cluster",
        );
        assert!(
            parse(&bad)
                .unwrap_err()
                .to_string()
                .contains("initial_advertise_peer_urls")
        );

        let bad = MINIMAL.replace(
            "initial_cluster = ",
            "extra_flags = [\"-x\"]\n        initial_cluster = ",
        );
        assert!(parse(&bad).unwrap_err().to_string().contains("extra_flags[0]"));

        let bad = MINIMAL.replace(
            "initial_cluster = ",
            "extra_flags = [\"--config-file=/etc/etcd.yaml\"]\n        initial_cluster = ",
        );
        let err = parse(&bad).unwrap_err().to_string();
        assert!(
            err.contains("member.extra_flags[0]") && err.contains("--config-file is refused"),
            "{err}"
        );

        let bad = MINIMAL.replace(
            "initial_cluster = ",
            "extra_flags = [\"--data-dir=/x\"]\n        initial_cluster = ",
        );
        assert!(
            parse(&bad)
                .unwrap_err()
                .to_string()
                .contains("set by its own member field")
        );
    }
}
