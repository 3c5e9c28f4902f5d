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
use crate::cli::error::CliError;
use crate::output::table::{Tabular, with_header};
use crate::output::{self, OutputFormat};

/// One certificate's line in `steward certs check`.
#[derive(Debug, Serialize)]
pub struct CheckedCert {
    /// The file.
    pub file: String,
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
}

impl Tabular for CheckView {
    fn tables(&self) -> Vec<Table> {
        let mut table = with_header(&["FILE", "NAME", "ROLE", "EXPIRES", "DAYS LEFT", "VERDICT"]);
        for cert in &self.certificates {
            table.add_row(vec![
                cert.file.clone(),
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
        for file in &self.unreadable {
            table.add_row(vec![
                file.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "not a certificate".into(),
            ]);
        }
        vec![table]
    }
}

const DAY: u64 = 86_400;

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
    let now = SystemTime::now();
    let mut view = CheckView {
        within_days: within.as_secs() / DAY,
        certificates: Vec::new(),
        unreadable: Vec::new(),
    };
    for file in files {
        match inspect::read(&file) {
            Ok(facts) => view.certificates.push(CheckedCert {
                file: file.display().to_string(),
                name: facts.name,
                role: facts.role,
                not_after: rfc3339(facts.not_after_unix),
                days_left: inspect::remaining(facts.not_after_unix, now).map_or(0, |d| d.as_secs() / DAY),
                expiry: inspect::judge(facts.not_after_unix, now, within),
            }),
            Err(_) => view.unreadable.push(file.display().to_string()),
        }
    }
    view.certificates.sort_by_key(|c| (c.days_left, c.file.clone()));
    output::emit(out, format, &view)?;
    let due: Vec<String> = view
        .certificates
        .iter()
        .filter(|c| c.expiry != Expiry::Ok)
        .map(|c| {
            format!(
                "{} ({}{})",
                c.file,
                c.name,
                if c.expiry == Expiry::Expired {
                    ", expired".to_owned()
                } else {
                    format!(", {} days left", c.days_left)
                }
            )
        })
        .collect();
    if due.is_empty() {
        Ok(())
    } else {
        Err(CliError::CertsExpiring {
            within_days: view.within_days,
            certificates: due.join(", "),
        })
    }
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
