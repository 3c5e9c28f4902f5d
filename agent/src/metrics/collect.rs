//! The metrics read at scrape time from what the agent knows: its state,
//! its etcd process, the staged versions, snapshots and restores, and the
//! certificates its config names. Nothing here is cached, so a scrape
//! always sees the present, and a renewed certificate shows at once.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::agent::Agent;
use crate::config::Config;
use crate::state::{ALL_STATES, RestorePhase};

/// A certificate file the config names, and what it is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchedCertificate {
    /// The `certificate` label: which of the config's files it is.
    pub role: &'static str,
    /// The file.
    pub path: PathBuf,
}

/// The certificate files of `config` whose expiry is exported.
#[must_use]
pub fn watched_certificates(config: &Config) -> Vec<WatchedCertificate> {
    let member = &config.member.tls;
    let agent = config.tls.as_ref();
    [
        ("agent", agent.map(|t| &t.cert_file)),
        ("agent_client_ca", agent.map(|t| &t.client_ca_file)),
        ("member_client", member.cert_file.as_ref()),
        ("member_client_ca", member.trusted_ca_file.as_ref()),
        ("member_peer", member.peer_cert_file.as_ref()),
        ("member_peer_ca", member.peer_trusted_ca_file.as_ref()),
    ]
    .into_iter()
    .filter_map(|(role, path)| {
        Some(WatchedCertificate {
            role,
            path: path?.clone(),
        })
    })
    .collect()
}

/// When the first certificate of a PEM file expires, in seconds since the
/// epoch; `None` when it cannot be read or parsed.
fn not_after(path: &std::path::Path) -> Option<i64> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let der = CertificateDer::pem_file_iter(path).ok()?.next()?.ok()?;
    let (_, cert) = X509Certificate::from_der(&der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

fn seconds(time: SystemTime) -> f64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[allow(clippy::cast_precision_loss)] // ms since the epoch fit an f64 exactly for ages yet
fn ms_to_seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// Reads the agent on every scrape.
#[derive(Debug)]
pub struct AgentCollector {
    agent: Arc<Agent>,
    certificates: Vec<WatchedCertificate>,
}

impl AgentCollector {
    /// Exports `agent`'s state and the expiry of `certificates`.
    #[must_use]
    pub const fn new(agent: Arc<Agent>, certificates: Vec<WatchedCertificate>) -> Self {
        Self { agent, certificates }
    }
}

/// One metric without labels.
fn single(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// One metric with one series per label set.
fn family<'l, M: EncodeMetric + 'l>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    series: impl IntoIterator<Item = (Vec<(&'static str, String)>, M)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in series {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn flag(on: bool) -> ConstGauge<i64> {
    ConstGauge::new(i64::from(on))
}

impl Collector for AgentCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let state = self.agent.persisted();
        let process = self.agent.process();
        let e = &mut encoder;

        family(
            e,
            "info",
            "The agent's version and its member's name (always 1).",
            MetricType::Gauge,
            [(
                vec![
                    ("version", env!("CARGO_PKG_VERSION").to_owned()),
                    ("member", self.agent.config().member.name.clone()),
                ],
                ConstGauge::new(1_i64),
            )],
        )?;
        family(
            e,
            "state",
            // Every state, so that a dashboard sees a 0 for each state the
            // agent is not in.
            "The agent's state machine: 1 for the state it is in, 0 for the others.",
            MetricType::Gauge,
            ALL_STATES.map(|s| (vec![("state", s.to_string())], flag(s == state.state))),
        )?;
        single(
            e,
            "member_serving",
            "1 while etcd runs under the agent in its steady state (the gRPC health of steward.agent.v1.Member \
             and /healthz).",
            &flag(crate::health::member_serving(&state, &process)),
        )?;
        single(
            e,
            "etcd_up",
            "1 while the agent's etcd process runs.",
            &flag(process.record.is_some()),
        )?;
        single(
            e,
            "etcd_exits",
            "Exits of etcd the agent has seen since it started, asked for or not.",
            &ConstCounter::new(process.exits),
        )?;
        single(
            e,
            "etcd_restarts",
            "Automatic restarts of etcd after it exited on its own, since the last start that was asked for.",
            &ConstGauge::new(i64::from(process.restart_count)),
        )?;
        single(
            e,
            "etcd_crash_loop",
            "1 when the agent gave up restarting etcd after supervision.max_consecutive_crashes crashes.",
            &flag(process.gave_up.is_some()),
        )?;
        let versions = [("active", &state.active_version), ("previous", &state.previous_version)]
            .into_iter()
            .filter_map(|(role, version)| {
                Some((
                    vec![("role", role.to_owned()), ("version", version.clone()?)],
                    ConstGauge::new(1_i64),
                ))
            });
        family(
            e,
            "etcd_version_info",
            "The etcd version the member runs (role=active) and the one a rollback returns to (role=previous).",
            MetricType::Gauge,
            versions,
        )?;
        let staged = self.agent.staged().unwrap_or_default();
        family(
            e,
            "etcd_staged_version_info",
            "One series per etcd version staged in the agent's verified store.",
            MetricType::Gauge,
            staged
                .iter()
                .map(|m| (vec![("version", m.version.to_string())], ConstGauge::new(1_i64))),
        )?;
        let free = crate::datadir::free_bytes(&self.agent.config().state_dir);
        single(
            e,
            "state_dir_free_bytes",
            "Bytes free on the file system of the agent's state dir (snapshots, uploads, staged binaries, logs).",
            &ConstGauge::new(i64::try_from(free).unwrap_or(i64::MAX)),
        )?;
        self.encode_snapshots(e)?;
        if let Some(restore) = &state.restore {
            let phases = [
                (RestorePhase::Restoring, "restoring"),
                (RestorePhase::Restored, "restored"),
                (RestorePhase::Finished, "finished"),
            ];
            family(
                e,
                "restore_phase",
                "How far the member's last restore got: 1 for its phase.",
                MetricType::Gauge,
                phases.map(|(p, name)| (vec![("phase", name.to_owned())], flag(p == restore.phase))),
            )?;
            single(
                e,
                "restore_last_change_timestamp_seconds",
                "When the member's last restore last changed phase.",
                &ConstGauge::new(ms_to_seconds(restore.updated_at_ms)),
            )?;
        }
        let expiries = self.certificates.iter().filter_map(|c| {
            let not_after = not_after(&c.path)?;
            Some((
                vec![
                    ("certificate", c.role.to_owned()),
                    ("path", c.path.display().to_string()),
                ],
                ConstGauge::new(not_after),
            ))
        });
        family(
            e,
            "certificate_expiry_timestamp_seconds",
            "When each certificate the config names expires (the first certificate of each file).",
            MetricType::Gauge,
            expiries,
        )
    }
}

impl AgentCollector {
    fn encode_snapshots(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let attempts = self.agent.snapshot_attempts();
        family(
            e,
            "snapshot_attempts",
            "Snapshots the agent was asked to take since it started, by result.",
            MetricType::Counter,
            [("ok", attempts.succeeded), ("failed", attempts.failed)]
                .map(|(result, n)| (vec![("result", result.to_owned())], ConstCounter::new(n))),
        )?;
        if let Some((at, succeeded)) = attempts.last {
            single(
                e,
                "snapshot_last_attempt_success",
                "1 when the last snapshot asked for since the agent started succeeded, 0 when it failed.",
                &flag(succeeded),
            )?;
            single(
                e,
                "snapshot_last_attempt_timestamp_seconds",
                "When the last snapshot asked for since the agent started ended.",
                &ConstGauge::new(seconds(at)),
            )?;
        }
        // From the stored files: survives the agent's restarts.
        let stored = self.agent.snapshots().list().unwrap_or_default();
        single(
            e,
            "snapshots_stored",
            "Verified snapshots in the agent's store, taken and uploaded.",
            &ConstGauge::new(i64::try_from(stored.len()).unwrap_or(i64::MAX)),
        )?;
        if let Some(newest) = stored.iter().filter(|m| !m.uploaded).max_by_key(|m| m.created_at_ms) {
            single(
                e,
                "snapshot_newest_timestamp_seconds",
                "When the newest snapshot taken from this member and still stored was taken.",
                &ConstGauge::new(ms_to_seconds(newest.created_at_ms)),
            )?;
            single(
                e,
                "snapshot_newest_size_bytes",
                "The size of that snapshot.",
                &ConstGauge::new(i64::try_from(newest.size).unwrap_or(i64::MAX)),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expiry_is_read_from_the_first_certificate_of_a_pem_file() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["x".to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 1, 2);
        let cert = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.pem");
        std::fs::write(&path, cert.pem()).unwrap();
        let expected = time::macros::datetime!(2031-01-02 00:00 UTC).unix_timestamp();
        assert_eq!(not_after(&path), Some(expected));
        std::fs::write(&path, "not a certificate").unwrap();
        assert_eq!(not_after(&path), None);
        assert_eq!(not_after(&dir.path().join("missing")), None);
    }
}
