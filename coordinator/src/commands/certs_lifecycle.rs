//! `steward certs check` and `steward certs renew`: certificates over time.
//! check lists every certificate of a directory with its expiry and fails
//! inside a threshold; renew gives a certificate `certs issue` made a new
//! key and a new validity, with the same name, role and names, keeping the
//! old pair aside (under names `certs check` passes over).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use comfy_table::Table;
use serde::Serialize;

use crate::certs::inspect::{self, Expiry};
use crate::certs::{self, CA_CERT};
use crate::cli::ClusterArgs;
use crate::cli::error::CliError;
use crate::engine::connect::Connector;
use crate::output::table::{Tabular, with_header};
use crate::output::{self, OutputFormat};

/// One certificate's line in `steward certs check`.
#[derive(Debug, Serialize)]
pub struct CheckedCert {
    /// Where it was found: its file, or `agent of NAME (ADDRESS)` for the
    /// certificate an agent serves.
    pub source: String,
    /// CN.
    pub name: String,
    /// Its steward role, `ca`, or none (an etcd certificate).
    pub role: Option<String>,
    /// When it ends, RFC 3339.
    pub not_after: String,
    /// Whole days left (0 once expired).
    pub days_left: u64,
    /// ok, soon or expired.
    pub expiry: Expiry,
}

/// What `steward certs check` prints.
#[derive(Debug, Serialize)]
pub struct CheckView {
    /// The threshold, in days.
    pub within_days: u64,
    /// Every certificate found, soonest first.
    pub certificates: Vec<CheckedCert>,
    /// Files ending in .crt that are not certificates.
    pub unreadable: Vec<String>,
    /// With a cluster: what could not be checked, and why.
    pub unchecked: Vec<String>,
}

impl Tabular for CheckView {
    fn tables(&self) -> Vec<Table> {
        let mut table = with_header(&["CERTIFICATE", "NAME", "ROLE", "EXPIRES", "DAYS LEFT", "VERDICT"]);
        for cert in &self.certificates {
            table.add_row(vec![
                cert.source.clone(),
                cert.name.clone(),
                cert.role.clone().unwrap_or_else(|| "-".into()),
                cert.not_after.clone(),
                cert.days_left.to_string(),
                match cert.expiry {
                    Expiry::Ok => "ok".to_owned(),
                    Expiry::Soon => format!("EXPIRES within {} days", self.within_days),
                    Expiry::Expired => "EXPIRED".to_owned(),
                },
            ]);
        }
        for (what, verdict) in self
            .unreadable
            .iter()
            .map(|f| (f.clone(), "not a certificate".to_owned()))
            .chain(self.unchecked.iter().map(|u| (u.clone(), "NOT CHECKED".to_owned())))
        {
            table.add_row(vec![what, "-".into(), "-".into(), "-".into(), "-".into(), verdict]);
        }
        vec![table]
    }
}

const DAY: u64 = 86_400;

impl CheckView {
    fn new(within: Duration) -> Self {
        Self {
            within_days: within.as_secs() / DAY,
            certificates: Vec::new(),
            unreadable: Vec::new(),
            unchecked: Vec::new(),
        }
    }

    fn add(&mut self, source: String, name: String, role: Option<String>, not_after_unix: i64, within: Duration) {
        let now = SystemTime::now();
        self.certificates.push(CheckedCert {
            source,
            name,
            role,
            not_after: rfc3339(not_after_unix),
            days_left: inspect::remaining(not_after_unix, now).map_or(0, |d| d.as_secs() / DAY),
            expiry: inspect::judge(not_after_unix, now, within),
        });
    }

    /// Adds the certificate in `file` under `source`; `false` when it is
    /// not one.
    fn add_file(&mut self, source: String, file: &Path, within: Duration) -> bool {
        match inspect::read(file) {
            Ok(facts) => {
                self.add(source, facts.name, facts.role, facts.not_after_unix, within);
                true
            }
            Err(_) => false,
        }
    }

    /// Prints the view soonest first, then fails naming what expires and
    /// what could not be checked.
    fn finish(mut self, format: OutputFormat, out: &mut dyn Write) -> Result<(), CliError> {
        self.certificates.sort_by_key(|c| (c.days_left, c.source.clone()));
        output::emit(out, format, &self)?;
        let due: Vec<String> = self
            .certificates
            .iter()
            .filter(|c| c.expiry != Expiry::Ok)
            .map(|c| {
                format!(
                    "{} ({}{})",
                    c.source,
                    c.name,
                    if c.expiry == Expiry::Expired {
                        ", expired".to_owned()
                    } else {
                        format!(", {} days left", c.days_left)
                    }
                )
            })
            .collect();
        if !due.is_empty() {
            return Err(CliError::CertsExpiring {
                within_days: self.within_days,
                certificates: due.join(", "),
            });
        }
        if !self.unchecked.is_empty() {
            return Err(CliError::CertsUnchecked {
                what: self.unchecked.join("; "),
            });
        }
        Ok(())
    }
}

/// `steward certs check --dir DIR`: exit 1 when one expires within
/// `within` or has expired.
///
/// # Errors
/// The directory cannot be read, a certificate is inside the threshold,
/// or stdout is closed.
pub fn check(dir: &Path, within: Duration, format: OutputFormat, out: &mut dyn Write) -> Result<(), CliError> {
    let io = |source| {
        CliError::Certs(certs::CertError::Io {
            action: "list",
            path: dir.to_owned(),
            source,
        })
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "crt"))
        .collect();
    files.sort();
    let mut view = CheckView::new(within);
    for file in files {
        let source = file.display().to_string();
        if !view.add_file(source.clone(), &file, within) {
            view.unreadable.push(source);
        }
    }
    view.finish(format, out)
}

/// One attribute of a subject as x509-parser writes it
/// (`CN=m0, O=steward, OU=agent`).
fn subject_part<'s>(subject: &'s str, key: &str) -> Option<&'s str> {
    subject
        .split(", ")
        .find_map(|part| part.strip_prefix(key)?.strip_prefix('='))
}

/// `steward certs check --cluster F`: the certificate every agent serves
/// (as it says in GetStatus), and this caller's own certificate and CA;
/// exit 1 when one expires within `within`, or an agent cannot say.
///
/// # Errors
/// The cluster cannot be observed, the agents serve plaintext, a
/// certificate is inside the threshold or could not be checked, or stdout
/// is closed.
pub async fn check_cluster(
    connector: &Connector,
    cluster: &ClusterArgs,
    within: Duration,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    if !super::version::names_a_cluster(cluster) {
        return Err(CliError::Usage(
            "certs check needs --dir DIR, or a cluster (--cluster FILE or --agents ADDR,...) whose agents to ask"
                .into(),
        ));
    }
    let (observation, connector) = super::cluster::observe_target(connector, cluster).await?;
    let Some(files) = connector.agent_tls_files().cloned() else {
        return Err(CliError::Usage(
            "certs check --cluster: steward has no agent identity (--agent-cert, --agent-key, --agent-cacert, or the \
             cluster file's [agent_tls]), so the agents serve plaintext and there is no certificate to check"
                .into(),
        ));
    };
    let mut view = CheckView::new(within);
    for member in &observation.observed.members {
        let Some(address) = &member.agent else {
            view.unchecked.push(format!(
                "member {}: no agent answered{}",
                member.name,
                member
                    .agent_error
                    .as_ref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ));
            continue;
        };
        let source = format!("agent of {} ({address})", member.name);
        match &member.agent_certificate {
            Some(served) => view.add(
                source,
                subject_part(&served.subject, "CN")
                    .unwrap_or(&served.subject)
                    .to_owned(),
                subject_part(&served.subject, "OU").map(str::to_owned),
                served.not_after_unix,
                within,
            ),
            None => view.unchecked.push(format!(
                "{source}: it does not say which certificate it serves (an agent older than this CLI?)"
            )),
        }
    }
    for (what, file) in [("this caller", &files.cert), ("the agents' CA", &files.cacert)] {
        if !view.add_file(format!("{what}: {}", file.display()), file, within) {
            view.unchecked
                .push(format!("{what}: {} is not a readable certificate", file.display()));
        }
    }
    view.finish(format, out)
}

fn rfc3339(unix: i64) -> String {
    u64::try_from(unix).map_or_else(
        |_| "before 1970".to_owned(),
        |secs| humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)).to_string(),
    )
}

/// What `steward certs renew` did.
#[derive(Debug, Serialize)]
pub struct RenewedView {
    /// CN.
    pub name: String,
    /// The role kept.
    pub role: String,
    /// The names kept.
    pub sans: Vec<String>,
    /// The new certificate, in the old one's place.
    pub certificate: String,
    /// The new key (0600), in the old one's place.
    pub key: String,
    /// Days the new certificate is valid.
    pub days: u32,
    /// Where the old certificate and key were moved.
    pub previous: Vec<String>,
}

impl Tabular for RenewedView {
    fn tables(&self) -> Vec<Table> {
        let mut table = with_header(&["RENEWED", ""]);
        for (key, value) in [
            ("name", self.name.clone()),
            ("role", self.role.clone()),
            (
                "names",
                if self.sans.is_empty() {
                    "-".into()
                } else {
                    self.sans.join(", ")
                },
            ),
            ("certificate", self.certificate.clone()),
            ("key (0600, new)", self.key.clone()),
            ("valid", format!("{} days", self.days)),
            ("old pair kept as", self.previous.join(", ")),
        ] {
            table.add_row(vec![key.to_owned(), value]);
        }
        vec![table]
    }
}

/// `steward certs renew --dir DIR --name NAME`: a new key and certificate
/// for DIR/NAME.crt, signed by DIR's CA with the same role and names; the
/// old pair is renamed NAME.crt.replaced-<UTC time> (and .key). The agent, or
/// the caller, uses the new pair once it reads it again (an agent at its
/// restart).
///
/// # Errors
/// The certificate is the CA, is not one of steward's, or a file cannot
/// be read or written.
pub fn renew(dir: &Path, name: &str, days: u32, format: OutputFormat, out: &mut dyn Write) -> Result<(), CliError> {
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    let refuse = |reason: String| CliError::Usage(format!("certs renew {}: {reason}", cert_path.display()));
    let facts = inspect::read(&cert_path).map_err(|e| refuse(e.to_string()))?;
    if facts.is_ca || cert_path.file_name().is_some_and(|f| f == CA_CERT) {
        return Err(refuse(
            "this is the CA: a new CA means new certificates for every agent and caller; make one with \
             `steward certs init` in a new directory and issue them from it"
                .into(),
        ));
    }
    let role: steward_proto::Role =
        facts.role.as_deref().and_then(|r| r.parse().ok()).ok_or_else(|| {
            refuse("it names no steward role (OU): renew only what `steward certs issue` made".into())
        })?;
    let ca = certs::read_ca(dir)?;
    let issued = certs::issue(&ca, role, &facts.name, &facts.sans, days)?;
    // The new pair is written beside the old one first, so that a failure
    // leaves the old pair in place.
    let stamp: String = humantime::format_rfc3339_seconds(SystemTime::now())
        .to_string()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    let new_cert = dir.join(format!(".{name}.crt.new"));
    let new_key = dir.join(format!(".{name}.key.new"));
    certs::write_new(&new_key, &issued.key_pem)?;
    certs::write_new(&new_cert, &issued.cert_pem)?;
    // Not *.crt any more: `certs check` does not count them.
    let old_cert = dir.join(format!("{name}.crt.replaced-{stamp}"));
    let old_key = dir.join(format!("{name}.key.replaced-{stamp}"));
    let rename = |from: &Path, to: &Path| {
        std::fs::rename(from, to).map_err(|source| {
            CliError::Certs(certs::CertError::Io {
                action: "rename",
                path: from.to_owned(),
                source,
            })
        })
    };
    rename(&cert_path, &old_cert)?;
    if key_path.exists() {
        rename(&key_path, &old_key)?;
    }
    rename(&new_key, &key_path)?;
    rename(&new_cert, &cert_path)?;
    let view = RenewedView {
        name: facts.name,
        role: role.to_string(),
        sans: facts.sans,
        certificate: cert_path.display().to_string(),
        key: key_path.display().to_string(),
        days,
        previous: vec![old_cert.display().to_string(), old_key.display().to_string()],
    };
    output::emit(out, format, &view).map_err(CliError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_parts_are_found_by_their_key() {
        let subject = "CN=m0, O=steward, OU=agent";
        assert_eq!(subject_part(subject, "CN"), Some("m0"));
        assert_eq!(subject_part(subject, "OU"), Some("agent"));
        assert_eq!(subject_part(subject, "C"), None);
        assert_eq!(subject_part("", "CN"), None);
    }
}
