//! `steward snapshot status FILE`: what a snapshot file holds, read on this
//! machine without etcd or an agent, as `etcdutl snapshot status` reads it,
//! and whether its sha256 trailer checks out.

use std::io::Write;
use std::path::Path;

use comfy_table::Table;
use serde::Serialize;
use steward_proto::bolt;
use steward_proto::trailer::hash_reader;

use crate::cli::error::CliError;
use crate::format::human_bytes;
use crate::output::table::{Tabular, with_header};
use crate::output::{self, OutputFormat};

/// What `steward snapshot status` prints.
#[derive(Debug, Serialize)]
pub struct SnapshotStatusView {
    /// The file.
    pub file: String,
    /// Bytes, trailer included.
    pub size_bytes: u64,
    /// sha256 of the content (everything but the trailer), hex.
    pub sha256: String,
    /// `matches`, `mismatch` (damaged or cut), or `missing` (a database
    /// copied from a data dir has none).
    pub trailer: &'static str,
    /// The store's revision.
    pub revision: Option<i64>,
    /// Entries of every bucket, as etcdutl counts total keys.
    pub total_keys: Option<u64>,
    /// The cluster version etcd recorded in the database ("3.5.0").
    pub cluster_version: Option<String>,
    /// Why the database could not be read, when it could not.
    pub database_error: Option<String>,
}

impl Tabular for SnapshotStatusView {
    fn tables(&self) -> Vec<Table> {
        let mut table = with_header(&["SNAPSHOT", ""]);
        let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        for (key, value) in [
            ("file", self.file.clone()),
            (
                "size",
                format!("{} ({} bytes)", human_bytes(self.size_bytes), self.size_bytes),
            ),
            ("sha256", self.sha256.clone()),
            ("trailer", self.trailer.to_owned()),
            ("revision", or_dash(self.revision.map(|r| r.to_string()))),
            ("total keys", or_dash(self.total_keys.map(|k| k.to_string()))),
            ("written by a cluster of", or_dash(self.cluster_version.clone())),
            (
                "database",
                self.database_error.clone().unwrap_or_else(|| "readable".into()),
            ),
        ] {
            table.add_row(vec![key.to_owned(), value]);
        }
        vec![table]
    }
}

/// `steward snapshot status FILE`: exit 1 when the trailer does not match
/// or the database cannot be read.
///
/// # Errors
/// The file cannot be read, it does not check out, or stdout is closed.
pub fn status(file: &Path, format: OutputFormat, out: &mut dyn Write) -> Result<(), CliError> {
    let unreadable = |source| CliError::SnapshotFile {
        path: file.to_owned(),
        reason: format!("cannot read it: {source}"),
    };
    let mut reader = std::fs::File::open(file).map_err(unreadable)?;
    let hashed = hash_reader(&mut reader).map_err(unreadable)?;
    let trailer = if hashed.trailer_matches() {
        "matches"
    } else if hashed.size % 512 == 0 {
        // Whole bbolt pages and nothing after them: no trailer at all.
        "missing"
    } else {
        "mismatch"
    };
    let database = bolt::summary(file);
    let view = SnapshotStatusView {
        file: file.display().to_string(),
        size_bytes: hashed.size,
        sha256: hashed.content_sha256.clone(),
        trailer,
        revision: database.as_ref().ok().map(|d| d.revision),
        total_keys: database.as_ref().ok().map(|d| d.total_keys),
        cluster_version: database.as_ref().ok().and_then(|d| d.cluster_version.clone()),
        database_error: database.as_ref().err().map(ToString::to_string),
    };
    output::emit(out, format, &view)?;
    let problem = match (trailer, &view.database_error) {
        ("mismatch", _) => Some(format!(
            "its sha256 trailer does not match its content ({}): the file is damaged or cut",
            hashed.content_sha256
        )),
        (_, Some(error)) => Some(format!("its database cannot be read: {error}")),
        _ => None,
    };
    match problem {
        Some(reason) => Err(CliError::SnapshotFile {
            path: file.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}
