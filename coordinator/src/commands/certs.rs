//! `steward certs init` and `steward certs issue`: the files of steward's
//! mutual TLS (see [`crate::certs`]).

use std::io::Write;
use std::path::Path;

use comfy_table::Table;
use serde::Serialize;

use crate::certs::{self, CA_CERT, CA_KEY, Issued};
use crate::cli::CertsCommand;
use crate::cli::error::CliError;
use crate::engine::connect::Connector;
use crate::output;
use crate::output::table::{Tabular, with_header};

/// What was written.
#[derive(Debug, Serialize)]
pub struct WrittenView {
    /// The certificate's role ("ca" for the authority).
    pub role: String,
    /// Its name (CN).
    pub name: String,
    /// The certificate file.
    pub certificate: String,
    /// The private key file (0600).
    pub key: String,
    /// Days it is valid.
    pub days: u32,
    /// Subject alternative names (agents).
    pub sans: Vec<String>,
}

impl Tabular for WrittenView {
    fn tables(&self) -> Vec<Table> {
        let mut table = with_header(&["ROLE", "NAME", "CERTIFICATE", "KEY (0600)", "VALID", "NAMES"]);
        table.add_row(vec![
            self.role.clone(),
            self.name.clone(),
            self.certificate.clone(),
            self.key.clone(),
            format!("{} days", self.days),
            if self.sans.is_empty() {
                "-".to_owned()
            } else {
                self.sans.join(", ")
            },
        ]);
        vec![table]
    }
}

fn write_pair(dir: &Path, stem: &str, issued: &Issued) -> Result<(String, String), CliError> {
    let cert = dir.join(format!("{stem}.crt"));
    let key = dir.join(format!("{stem}.key"));
    // Refuse before writing anything, so a refusal leaves no half pair.
    for path in [&cert, &key] {
        if path.exists() {
            return Err(certs::CertError::Exists(path.clone()).into());
        }
    }
    certs::write_new(&key, &issued.key_pem)?;
    certs::write_new(&cert, &issued.cert_pem)?;
    Ok((cert.display().to_string(), key.display().to_string()))
}

/// Runs a `steward certs` subcommand.
///
/// # Errors
/// A file that exists, or one that cannot be read or written.
pub async fn run(connector: &Connector, command: CertsCommand, out: &mut dyn Write) -> Result<(), CliError> {
    match command {
        CertsCommand::Check {
            dir: Some(dir),
            within,
            output,
            ..
        } => super::certs_lifecycle::check(&dir, within, output.format, out),
        CertsCommand::Check {
            dir: None,
            cluster,
            within,
            output,
        } => super::certs_lifecycle::check_cluster(connector, &cluster, within, output.format, out).await,
        CertsCommand::Renew {
            dir,
            name,
            days,
            output,
        } => super::certs_lifecycle::renew(&dir, &name, days, output.format, out),
        CertsCommand::Init {
            dir,
            name,
            days,
            output,
        } => {
            let ca = certs::new_ca(&name, days)?;
            let stem = CA_CERT.trim_end_matches(".crt");
            debug_assert_eq!(CA_KEY, format!("{stem}.key"));
            let (certificate, key) = write_pair(&dir, stem, &ca)?;
            output::emit(
                out,
                output.format,
                &WrittenView {
                    role: "ca".into(),
                    name,
                    certificate,
                    key,
                    days,
                    sans: Vec::new(),
                },
            )
            .map_err(CliError::from)
        }
        CertsCommand::Issue {
            dir,
            role,
            name,
            sans,
            days,
            output,
        } => {
            let ca = certs::read_ca(&dir)?;
            let issued = certs::issue(&ca, role, &name, &sans, days)?;
            let (certificate, key) = write_pair(&dir, &name, &issued)?;
            output::emit(
                out,
                output.format,
                &WrittenView {
                    role: role.to_string(),
                    name,
                    certificate,
                    key,
                    days,
                    sans,
                },
            )
            .map_err(CliError::from)
        }
    }
}
